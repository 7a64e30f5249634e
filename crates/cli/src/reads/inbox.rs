//! `carectl inbox`: open referrals to a service the acting organisation owns
//! (QueryService.ListReferralInbox, every page), in the service's order: priority (stat
//! first) then age (oldest first).

use std::process::ExitCode;

use carewoven_proto::v1::{self, query_service_client::QueryServiceClient};
use serde_json::json;

use super::show::{self, instant, table};
use super::{Failure, Reader, json, progress};
use crate::cli::InboxArgs;

const PAGE_SIZE: u32 = 500;

pub async fn run(r: &Reader, a: InboxArgs) -> Result<ExitCode, Failure> {
    let mut client = QueryServiceClient::new(r.views().await?);
    let bar = progress::counter("referrals");
    let mut entries = Vec::new();
    let mut page_token = String::new();
    let mut log_position;
    loop {
        let request = r.request(
            v1::ListReferralInboxRequest {
                service: a.service.clone(),
                page_size: PAGE_SIZE,
                page_token: page_token.clone(),
                min_log_position: a.at.min_log_position,
            },
            &[],
        )?;
        let page = client.list_referral_inbox(request).await?.into_inner();
        bar.inc(page.entries.len() as u64);
        entries.extend(page.entries);
        log_position = page.log_position;
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    bar.finish_and_clear();
    if r.json() {
        let entries = json::values(&entries).map_err(Failure::Client)?;
        println!(
            "{}",
            json!({"service": a.service, "count": entries.len(), "entries": entries,
                   "log_position": log_position})
        );
    } else {
        let mut t = table(&[
            "Referral",
            "Person",
            "From",
            "Priority",
            "Status",
            "Submitted",
            "Age (hours)",
        ]);
        for e in &entries {
            t.add_row(vec![
                e.referral_id.clone(),
                e.person_id.clone(),
                e.from_organisation.clone(),
                show::priority(e.priority),
                e.status.clone(),
                instant(e.submitted_at.as_ref()),
                e.age_hours.to_string(),
            ]);
        }
        println!("{t}");
        println!(
            "{} open referral(s) to {} (log position {log_position})",
            entries.len(),
            a.service
        );
    }
    Ok(ExitCode::SUCCESS)
}
