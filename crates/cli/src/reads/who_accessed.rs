//! `carectl who-accessed`: who accessed a person's record, and when
//! (AuditService.ListRecordAccess, every page): reads, feed deliveries and refused attempts,
//! oldest first.

use std::process::ExitCode;

use carewoven_proto::v1::{self, audit_service_client::AuditServiceClient};
use serde_json::json;

use super::show::{self, instant, table_of};
use super::{Failure, Reader, json, progress};
use crate::cli::WhoAccessedArgs;

const PAGE_LIMIT: u32 = 1000;

pub async fn run(r: &Reader, a: WhoAccessedArgs) -> Result<ExitCode, Failure> {
    let mut client = AuditServiceClient::new(r.gateway().await?);
    let person_id = a.person_id.map(|p| p.to_string()).unwrap_or_default();
    let bar = progress::counter("accesses");
    let (mut after, mut after_delivery) = (0, 0);
    let mut entries = Vec::new();
    loop {
        let request = r.request(
            v1::ListRecordAccessRequest {
                person_id: person_id.clone(),
                after,
                limit: PAGE_LIMIT,
                after_delivery,
            },
            &[],
        )?;
        let page = client.list_record_access(request).await?.into_inner();
        bar.inc(page.entries.len() as u64);
        for e in &page.entries {
            after = after.max(e.position);
            after_delivery = after_delivery.max(e.delivery_position);
        }
        let empty = page.entries.is_empty();
        entries.extend(page.entries);
        if !page.more || empty {
            break;
        }
    }
    bar.finish_and_clear();
    if r.json() {
        let entries = json::values(&entries).map_err(Failure::Client)?;
        println!(
            "{}",
            json!({"person_id": person_id, "count": entries.len(), "entries": entries})
        );
    } else {
        let headers = [
            "At",
            "Organisation",
            "User",
            "Action",
            "Outcome",
            "Purpose",
            "Reason",
            "Detail",
            "Feed item",
        ];
        let t = table_of(&headers, &entries, |e| {
            let ev = e.event.clone().unwrap_or_default();
            let mut action = show::audit_action(ev.action);
            if ev.count > 1 {
                action.push_str(&format!(" (x{})", ev.count));
            }
            let feed = if ev.feed_number > 0 {
                format!("{} ({})", ev.feed_number, show::disclosure(ev.disclosure))
            } else {
                String::new()
            };
            vec![
                instant(ev.at.as_ref()),
                ev.organisation,
                ev.user,
                action,
                show::audit_outcome(ev.outcome),
                show::purpose(ev.purpose),
                ev.reason,
                ev.detail,
                feed,
            ]
        });
        println!("{t}");
        println!("{} access(es)", entries.len());
    }
    Ok(ExitCode::SUCCESS)
}
