//! Inputs the fuzzer found failing, kept so they stay fixed.

use carewoven_fuzz::{Verdict, run_one, targets};
use carewoven_proto::v1;
use prost::Message;

fn target(name: &str) -> Box<dyn carewoven_fuzz::Target> {
    targets::by_name(name).unwrap_or_else(|| panic!("no target {name}"))
}

/// A stored feed message numbered at the end of u64 overflowed `decode_items`'s numbering
/// check (`zip(first..)`, `last + 1`): a panic with overflow checks, wrapping without
/// (crates/gateway/src/feed.rs). It is refused as not the expected items now.
#[test]
fn a_feed_message_numbered_at_u64_max_is_refused_not_a_panic() {
    for (first, last, numbers) in [
        (u64::MAX, u64::MAX, vec![u64::MAX]),
        (u64::MAX - 1, u64::MAX, vec![u64::MAX - 1, u64::MAX]),
        (u64::MAX, 0, vec![u64::MAX, 0]),
    ] {
        let batch = v1::FeedBatch {
            first,
            last,
            items: numbers
                .iter()
                .map(|&number| v1::FeedItem {
                    number,
                    ..v1::FeedItem::default()
                })
                .collect(),
        };
        // [flags: a batch, with its number header][header number][expected][payload]
        let mut input = vec![1u8];
        input.extend(last.to_be_bytes());
        input.extend(first.to_be_bytes());
        input.extend(batch.encode_to_vec());
        let (verdict, _) = run_one(target("feed").as_ref(), &input);
        assert!(
            matches!(verdict, Ok(Verdict::Accepted | Verdict::Refused)),
            "{first}..{last}: {verdict:?}"
        );
    }
}

/// `=x` (a parameter without a name) was refused naming an empty parameter; it names the
/// query now, in the FHIR API (crates/fhir/src/api.rs) and the web API
/// (crates/web/src/api.rs).
#[test]
fn a_parameter_without_a_name_is_refused_naming_the_query() {
    let failure = carewoven_fhir::api::search_query("Patient", Some("=hh")).expect_err("refused");
    assert_eq!(failure.status().as_u16(), 400);
    assert_eq!(failure.expression(), Some("query"));
    let failure = carewoven_fhir::api::events_query(Some("=1")).expect_err("refused");
    assert_eq!(failure.expression(), Some("query"));
    let headers = axum::http::HeaderMap::new();
    let failure = carewoven_web::api::inbox_request(Some("=x"), &headers).expect_err("refused");
    assert_eq!(failure.status().as_u16(), 400);
    assert_eq!(failure.field(), Some("query"));
    for (route, text) in [(0u8, "=hh"), (2, "=x"), (3, "=x")] {
        let mut input = vec![route];
        input.extend(text.bytes());
        let (verdict, _) = run_one(target("web_request").as_ref(), &input);
        assert_eq!(verdict, Ok(Verdict::Refused), "{text}");
    }
}
