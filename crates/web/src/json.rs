//! Proto messages as JSON: proto3's canonical JSON mapping, with the proto field names
//! (`days_delayed`, not `daysDelayed`), enum values by name (`PATHWAY_1`), timestamps as RFC
//! 3339 text and every field present (defaults included), so the page never guesses. Built
//! from the descriptor set the proto crate embeds: a field added to a view reaches the page
//! without a change here.

use std::sync::LazyLock;

use carewoven_proto::FILE_DESCRIPTOR_SET;
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
use serde_json::Value;

static POOL: LazyLock<Option<DescriptorPool>> =
    LazyLock::new(|| DescriptorPool::decode(FILE_DESCRIPTOR_SET).ok());

/// A message the screens answer with, and its full proto name.
pub trait Named: prost::Message + Sized {
    const NAME: &'static str;
}

macro_rules! named {
    ($($t:ident),* $(,)?) => {
        $(impl Named for carewoven_proto::v1::$t {
            const NAME: &'static str = concat!("carewoven.v1.", stringify!($t));
        })*
    };
}

named!(
    BoardUpdate,
    CareRecord,
    ReferralInboxPage,
    Caseload,
    RecordAccessPage,
    CommandReply,
);

/// `message` as JSON; `None` only if the embedded schema lacks the message (a build fault,
/// which the tests below rule out).
pub fn to_json<M: Named>(message: &M) -> Option<Value> {
    let descriptor = POOL.as_ref()?.get_message_by_name(M::NAME)?;
    let dynamic = DynamicMessage::decode(descriptor, message.encode_to_vec().as_slice()).ok()?;
    let options = SerializeOptions::new()
        .use_proto_field_name(true)
        .skip_default_fields(false)
        .stringify_64_bit_integers(false);
    dynamic
        .serialize_with_options(serde_json::value::Serializer, &options)
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use carewoven_proto::v1;

    fn present<M: Named + Default>() {
        assert!(to_json(&M::default()).is_some(), "{} has no JSON", M::NAME);
    }

    #[test]
    fn every_answer_renders() {
        present::<v1::BoardUpdate>();
        present::<v1::CareRecord>();
        present::<v1::ReferralInboxPage>();
        present::<v1::Caseload>();
        present::<v1::RecordAccessPage>();
        present::<v1::CommandReply>();
    }

    #[test]
    fn fields_by_proto_name_enums_by_name_defaults_present() {
        let update = v1::BoardUpdate {
            change: Some(v1::board_update::Change::Upsert(v1::BoardEntry {
                episode_id: "e".into(),
                pathway: v1::Pathway::Pathway1 as i32,
                days_delayed: 3,
                delay_reasons: vec![v1::DelayReason::Pathway1NewCare as i32],
                discharged_at: Some(prost_types_timestamp()),
                ..Default::default()
            })),
            log_position: 7,
        };
        let json = to_json(&update).expect("renders");
        let entry = &json["upsert"];
        assert_eq!(entry["pathway"], "PATHWAY_1");
        assert_eq!(entry["days_delayed"], 3);
        assert_eq!(entry["delay_reasons"][0], "DELAY_REASON_PATHWAY_1_NEW_CARE");
        assert_eq!(entry["site"], "");
        assert_eq!(entry["discharged_at"], "1970-01-01T00:16:40Z");
        assert_eq!(json["log_position"], 7);
        assert!(json.get("snapshot_complete").is_none());
    }

    fn prost_types_timestamp() -> ::prost_types::Timestamp {
        ::prost_types::Timestamp {
            seconds: 1000,
            nanos: 0,
        }
    }
}
