//! Protobuf messages as JSON: protobuf's canonical JSON mapping (prost-reflect, from the
//! descriptors the services serve for reflection), with the proto field names
//! (`person_id`, as in the `.proto` files), 64-bit integers as JSON numbers, every field
//! present (defaults included, so a script sees the same keys every time) and enums by
//! name. Keys come out in alphabetical order (serde_json's map), so the same message always
//! prints the same.

use std::sync::OnceLock;

use anyhow::{Context as _, Result};
use carewoven_proto::v1;
use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
use serde_json::Value;

/// A message whose full protobuf name is known.
pub trait Named: prost::Message + Sized {
    const NAME: &'static str;
}

macro_rules! named {
    ($($t:ident),+ $(,)?) => {
        $(impl Named for v1::$t {
            const NAME: &'static str = concat!("carewoven.v1.", stringify!($t));
        })+
    };
}

named!(
    CareRecord,
    BoardEntry,
    BoardUpdate,
    InboxEntry,
    WorklistItem,
    FeedItem,
    RecordAccessEntry,
    ViewsStatus,
);

fn pool() -> Result<&'static DescriptorPool> {
    static POOL: OnceLock<Result<DescriptorPool, String>> = OnceLock::new();
    POOL.get_or_init(|| {
        DescriptorPool::decode(carewoven_proto::FILE_DESCRIPTOR_SET).map_err(|e| e.to_string())
    })
    .as_ref()
    .map_err(|e| anyhow::anyhow!("the compiled-in protobuf descriptors: {e}"))
}

/// `message` as JSON.
pub fn value<M: Named>(message: &M) -> Result<Value> {
    let descriptor = pool()?
        .get_message_by_name(M::NAME)
        .with_context(|| format!("no descriptor for {}", M::NAME))?;
    let dynamic = DynamicMessage::decode(descriptor, message.encode_to_vec().as_slice())
        .with_context(|| format!("re-reading a {}", M::NAME))?;
    let options = SerializeOptions::new()
        .use_proto_field_name(true)
        .stringify_64_bit_integers(false)
        .skip_default_fields(false);
    dynamic
        .serialize_with_options(serde_json::value::Serializer, &options)
        .with_context(|| format!("writing a {} as JSON", M::NAME))
}

/// Each of `messages` as JSON.
pub fn values<M: Named>(messages: &[M]) -> Result<Vec<Value>> {
    messages.iter().map(value).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_resolve_and_output_is_the_schemas() {
        let entry = v1::BoardEntry {
            episode_id: "e".into(),
            pathway: v1::Pathway::Pathway1 as i32,
            days_delayed: 3,
            delay_reasons: vec![v1::DelayReason::Pathway1NewCare as i32],
            ..Default::default()
        };
        let v = value(&entry).expect("json");
        assert_eq!(v["episode_id"], "e");
        assert_eq!(v["pathway"], "PATHWAY_1");
        assert_eq!(v["days_delayed"], 3);
        assert_eq!(v["delay_reasons"][0], "DELAY_REASON_PATHWAY_1_NEW_CARE");
        // Defaults are present, so every answer has the same keys.
        assert_eq!(v["ward"], "");
        assert_eq!(value(&entry).expect("json").to_string(), v.to_string());
        for name in [
            v1::CareRecord::NAME,
            v1::BoardUpdate::NAME,
            v1::InboxEntry::NAME,
            v1::FeedItem::NAME,
            v1::RecordAccessEntry::NAME,
            v1::ViewsStatus::NAME,
        ] {
            assert!(
                pool().expect("pool").get_message_by_name(name).is_some(),
                "{name}"
            );
        }
        let status = v1::ViewsStatus {
            log_position: 5,
            ..Default::default()
        };
        assert_eq!(value(&status).expect("json")["log_position"], 5);
    }
}
