//! `carectl caseload`: the people a care coordinator, or an organisation on their care
//! teams, is responsible for (QueryService.GetCaseload; the acting organisation's own).

use std::process::ExitCode;

use carewoven_proto::v1::{
    self, get_caseload_request::Owner, query_service_client::QueryServiceClient,
};
use serde_json::json;

use super::show::table_of;
use super::{Failure, Reader};
use crate::cli::CaseloadArgs;

pub async fn run(r: &Reader, a: CaseloadArgs) -> Result<ExitCode, Failure> {
    let owner = match (a.owner.coordinator, a.owner.organisation) {
        (Some(m), _) => Owner::Coordinator(m),
        (None, Some(o)) => Owner::Organisation(o),
        (None, None) => {
            return Err(Failure::Client(anyhow::anyhow!(
                "give --coordinator or --organisation"
            )));
        }
    };
    let mut client = QueryServiceClient::new(r.views().await?);
    let request = r.request(
        v1::GetCaseloadRequest {
            owner: Some(owner),
            min_log_position: a.at.min_log_position,
        },
        &[],
    )?;
    let caseload = client.get_caseload(request).await?.into_inner();
    if r.json() {
        println!(
            "{}",
            json!({"count": caseload.person_ids.len(), "person_ids": caseload.person_ids,
                   "log_position": caseload.log_position})
        );
    } else {
        let t = table_of(&["Person"], &caseload.person_ids, |p| vec![p.clone()]);
        println!("{t}");
        println!(
            "{} person(s) (log position {})",
            caseload.person_ids.len(),
            caseload.log_position
        );
    }
    Ok(ExitCode::SUCCESS)
}
