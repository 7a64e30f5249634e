//! Identifiers the service chooses.

use carewoven_domain::values::NhsNumber;
use carewoven_proto::convert::IdSource;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use uuid::Uuid;

/// New aggregates get time-ordered UUIDv7s. A person's id is derived from their NHS number
/// with a keyed hash (UUIDv8), so registering the same person twice addresses the same
/// aggregate and is refused, and the id reveals nothing without the key.
#[derive(Clone)]
pub struct Ids {
    key: Vec<u8>,
}

impl Ids {
    pub fn new(key: impl Into<Vec<u8>>) -> Self {
        Ids { key: key.into() }
    }
}

impl IdSource for Ids {
    fn new_aggregate_id(&self) -> Uuid {
        Uuid::now_v7()
    }

    fn person_id_for(&self, nhs: &NhsNumber) -> Uuid {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.key)
            .expect("HMAC takes keys of any length");
        mac.update(b"carewoven.person.v1:");
        mac.update(nhs.as_str().as_bytes());
        let digest = mac.finalize().into_bytes();
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&digest[..16]);
        Uuid::new_v8(bytes)
    }
}

/// Hex SHA-256 of a command's encoded request: a reused command id with different content
/// is refused rather than silently answered with another command's result.
pub fn fingerprint(encoded: &[u8]) -> String {
    use sha2::Digest;
    let digest = Sha256::digest(encoded);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}
