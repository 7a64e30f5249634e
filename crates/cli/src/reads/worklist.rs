//! `carectl worklist`: one of the acting organisation's worklists (QueryService.ListWorklist,
//! every page), by due date: open tasks, care-plan reviews due, people on its care teams with
//! no coordinator, assessments awaiting its contribution.

use std::process::ExitCode;

use carewoven_proto::v1::{self, query_service_client::QueryServiceClient};
use serde_json::json;

use super::show::{self, table_of};
use super::{Failure, PAGE_SIZE, Reader, all_pages, json};
use crate::cli::WorklistArgs;

pub async fn run(r: &Reader, a: WorklistArgs) -> Result<ExitCode, Failure> {
    let client = QueryServiceClient::new(r.views().await?);
    let kind = a.kind.wire();
    let kind_i32 = a.kind.to_i32();
    let day = |d: Option<chrono::NaiveDate>| d.map(|d| d.to_string()).unwrap_or_default();
    let (items, log_position) = all_pages("worklist items", |page_token| {
        let mut client = client.clone();
        let request = r.request(
            v1::ListWorklistRequest {
                organisation: String::new(),
                kind: kind_i32,
                due_from: day(a.due_from),
                due_to: day(a.due_to),
                overdue: a.overdue,
                practitioner: a.practitioner.clone().unwrap_or_default(),
                page_size: PAGE_SIZE,
                page_token,
                min_log_position: a.at.min_log_position,
            },
            &[],
        );
        async move {
            let page = client.list_worklist(request?).await?.into_inner();
            Ok((page.items, page.next_page_token, page.log_position))
        }
    })
    .await?;
    let name = show::label(kind.as_str_name(), "WORKLIST_KIND_");
    if r.json() {
        let items = json::values(&items).map_err(Failure::Client)?;
        println!(
            "{}",
            json!({"worklist": name, "count": items.len(), "items": items,
                   "log_position": log_position})
        );
        return Ok(ExitCode::SUCCESS);
    }
    let overdue = |i: &v1::WorklistItem| if i.overdue { "yes" } else { "" }.to_owned();
    let t = match kind {
        v1::WorklistKind::Tasks => table_of(
            &[
                "Due",
                "Overdue",
                "Priority",
                "Status",
                "Person",
                "Task",
                "Practitioner",
                "Description",
            ],
            &items,
            |i| {
                vec![
                    i.due.clone(),
                    overdue(i),
                    show::priority(i.priority),
                    show::task_status(i.status),
                    i.person_id.clone(),
                    i.item_id.clone(),
                    i.practitioner.clone(),
                    i.description.clone(),
                ]
            },
        ),
        v1::WorklistKind::AwaitingContribution => table_of(
            &["Due", "Overdue", "Person", "Assessment", "Kind"],
            &items,
            |i| {
                vec![
                    i.due.clone(),
                    overdue(i),
                    i.person_id.clone(),
                    i.item_id.clone(),
                    show::assessment_kind(i.assessment_kind),
                ]
            },
        ),
        v1::WorklistKind::NoCoordinator => {
            table_of(&["On the team since", "Person"], &items, |i| {
                vec![i.due.clone(), i.person_id.clone()]
            })
        }
        _ => table_of(&["Review due", "Overdue", "Person"], &items, |i| {
            vec![i.due.clone(), overdue(i), i.person_id.clone()]
        }),
    };
    println!("{t}");
    println!(
        "{} item(s) on the {name} worklist (log position {log_position})",
        items.len()
    );
    Ok(ExitCode::SUCCESS)
}
