//! `carectl find-person`: a demographics trace (QueryService.FindPerson). A mismatch and an
//! unknown number are the same NOT_FOUND; finding someone gives no access to their record.

use std::process::ExitCode;

use carewoven_proto::v1::{self, query_service_client::QueryServiceClient};
use serde_json::json;

use super::show::fields;
use super::{Failure, Reader};
use crate::cli::FindPersonArgs;
use crate::parse::date_string;

pub async fn run(r: &Reader, a: FindPersonArgs) -> Result<ExitCode, Failure> {
    let mut client = QueryServiceClient::new(r.views().await?);
    let request = r.request(
        v1::FindPersonRequest {
            nhs_number: a.nhs_number,
            date_of_birth: date_string(&a.date_of_birth),
        },
        &[],
    )?;
    let found = client.find_person(request).await?.into_inner();
    if r.json() {
        println!("{}", json!({"person_id": found.person_id}));
    } else {
        println!("{}", fields(&[("person id", found.person_id)]));
    }
    Ok(ExitCode::SUCCESS)
}
