//! `carectl inbox`: referrals to a service the acting organisation owns
//! (QueryService.ListReferralInbox, every page; by default those awaiting a decision,
//! `--status` chooses), in the service's order: priority (stat first) then age (oldest
//! first).

use std::process::ExitCode;

use carewoven_proto::v1::{self, query_service_client::QueryServiceClient};
use serde_json::json;

use super::show::{self, instant, table_of};
use super::{Failure, PAGE_SIZE, Reader, all_pages, json};
use crate::cli::InboxArgs;

pub async fn run(r: &Reader, a: InboxArgs) -> Result<ExitCode, Failure> {
    let client = QueryServiceClient::new(r.views().await?);
    let (entries, log_position) = all_pages("referrals", |page_token| {
        let mut client = client.clone();
        let request = r.request(
            v1::ListReferralInboxRequest {
                service: a.service.clone(),
                status: a.status.clone().unwrap_or_default(),
                page_size: PAGE_SIZE,
                page_token,
                min_log_position: a.at.min_log_position,
            },
            &[],
        );
        async move {
            let page = client.list_referral_inbox(request?).await?.into_inner();
            Ok((page.entries, page.next_page_token, page.log_position))
        }
    })
    .await?;
    if r.json() {
        let entries = json::values(&entries).map_err(Failure::Client)?;
        println!(
            "{}",
            json!({"service": a.service, "count": entries.len(), "entries": entries,
                   "log_position": log_position})
        );
    } else {
        let headers = [
            "Referral",
            "Person",
            "From",
            "Priority",
            "Status",
            "Reason given",
            "Submitted",
            "Updated",
            "Age (hours)",
        ];
        let t = table_of(&headers, &entries, |e| {
            vec![
                e.referral_id.clone(),
                e.person_id.clone(),
                e.from_organisation.clone(),
                show::priority(e.priority),
                e.status.clone(),
                e.reason.clone(),
                instant(e.submitted_at.as_ref()),
                instant(e.updated_at.as_ref()),
                e.age_hours.to_string(),
            ]
        });
        println!("{t}");
        println!(
            "{} referral(s) to {} {} (log position {log_position})",
            entries.len(),
            a.service,
            match a.status.as_deref() {
                None | Some("") => "awaiting a decision".to_owned(),
                Some(status) => format!("(status {status})"),
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}
