//! Every redb table of the views, in one place. Values are protobuf-encoded view messages
//! from `carewoven.v1` (query-time fields such as `days_delayed` left unset); keys are UUIDs
//! as `u128` and codes as `&str`.

use redb::TableDefinition;

/// Bookkeeping: `position` (last applied log sequence), `format`, `skipped` (events skipped
/// under `--skip-undecodable`). Always written in the same transaction as the views they
/// describe.
pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// person id -> `v1::CareRecord`.
pub const RECORDS: TableDefinition<u128, &[u8]> = TableDefinition::new("care_records");
/// discharge episode id -> `v1::BoardEntry`, for episodes from discharge ready until closed.
pub const BOARD: TableDefinition<u128, &[u8]> = TableDefinition::new("discharge_board");
/// (owner, person id) -> (). Owner is `coordinator:<org>[/<practitioner>]` or
/// `organisation:<org>`.
pub const CASELOAD: TableDefinition<(&str, u128), ()> = TableDefinition::new("caseload");
/// (receiving service, referral id) -> `v1::InboxEntry`, for open referrals.
pub const INBOX: TableDefinition<(&str, u128), &[u8]> = TableDefinition::new("referral_inbox");
/// (receiving service, referral id) -> `v1::InboxEntry`, for ended referrals (completed,
/// rejected, failed, cancelled, entered in error): a referral is in exactly one of the two.
pub const INBOX_CLOSED: TableDefinition<(&str, u128), &[u8]> =
    TableDefinition::new("referral_inbox_closed");

/// (list, sort key, item) -> `v1::WorklistItem`: each organisation's worklists
/// (`crate::worklist`), derived from the records: list `<kind>:<org>`, sort key the due day
/// (`YYYY-MM-DD`, then for tasks the priority rank), item the task, assessment or person id.
pub const WORKLIST: TableDefinition<(&str, &str, u128), &[u8]> = TableDefinition::new("worklist");

pub const POSITION: &str = "position";
pub const FORMAT: &str = "format";
pub const SKIPPED: &str = "skipped";
/// Version of the table layout. A file with another format is refused at start-up.
/// 3: episodes carry their discharge destination, records their corrections.
/// 4: the views say why (delay notes, status histories, contributions, action completions,
/// correction reasons and previous values); the board runs to the home assessment; ended
/// referrals stay in `INBOX_CLOSED`.
/// 5: records carry risk flags and assessor replacements.
/// 6: records carry tasks and care-plan activities with their status; organisations'
/// worklists (`WORKLIST`).
pub const FORMAT_VERSION: u64 = 6;

/// Caseload owner key for a coordinator.
pub fn coordinator_key(organisation: &str, practitioner: &str) -> String {
    if practitioner.is_empty() {
        format!("coordinator:{organisation}")
    } else {
        format!("coordinator:{organisation}/{practitioner}")
    }
}

/// Caseload owner key for an organisation on care teams.
pub fn organisation_key(organisation: &str) -> String {
    format!("organisation:{organisation}")
}
