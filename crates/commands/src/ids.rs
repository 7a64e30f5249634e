//! Identifiers the service chooses.

use carewoven_domain::AggregateKind;
use carewoven_domain::values::{Code, NhsNumber};
use carewoven_proto::convert::IdSource;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

/// Ids are derived with a keyed hash (UUIDv8), never drawn at random:
///
/// - a person's id from their NHS number, so registering the same person twice addresses the
///   same aggregate and is refused;
/// - a new aggregate's id from its kind, its person and the command id that creates it, so a
///   retried command addresses the aggregate its first attempt created and finds its own
///   events there, and one command id reused for another kind or person cannot collide.
///
/// Without the key an id reveals nothing. The key must be the same on every instance.
#[derive(Clone)]
pub struct Ids {
    key: Vec<u8>,
}

/// The ids for one command.
pub struct CommandIds<'a> {
    ids: &'a Ids,
    command_id: Uuid,
}

impl Ids {
    pub fn new(key: impl Into<Vec<u8>>) -> Self {
        Ids { key: key.into() }
    }

    pub fn for_command(&self, command_id: Uuid) -> CommandIds<'_> {
        CommandIds {
            ids: self,
            command_id,
        }
    }

    fn derive(&self, purpose: &[u8], input: &[u8]) -> Uuid {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .expect("HMAC takes keys of any length");
        mac.update(purpose);
        mac.update(input);
        let digest = mac.finalize().into_bytes();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        Uuid::new_v8(bytes)
    }
}

impl IdSource for CommandIds<'_> {
    fn new_aggregate_id(&self, kind: AggregateKind, person_id: Uuid) -> Uuid {
        let mut input = Vec::with_capacity(48);
        input.extend_from_slice(kind.as_str().as_bytes());
        input.extend_from_slice(person_id.as_bytes());
        input.extend_from_slice(self.command_id.as_bytes());
        self.ids.derive(b"carewoven.aggregate.v1:", &input)
    }

    fn person_id_for(&self, nhs: &NhsNumber) -> Uuid {
        self.ids
            .derive(b"carewoven.person.v1:", nhs.as_str().as_bytes())
    }

    fn organisation_id_for(&self, code: &Code) -> Uuid {
        self.ids
            .derive(b"carewoven.organisation.v1:", code.as_str().as_bytes())
    }
}

/// Hex SHA-256 of a command's encoded request: a reused command id with different content
/// is refused rather than silently answered with another command's result.
pub fn fingerprint(encoded: &[u8]) -> String {
    use sha2::Digest;
    let digest = Sha256::digest(encoded);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}
