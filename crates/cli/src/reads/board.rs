//! `carectl board`: the discharge board. Without `--watch`: every page of
//! QueryService.ListDischargeBoard, sorted here (`--sort`). With `--watch`:
//! WatchDischargeBoard, the board then each change as it happens, until Ctrl-C; on a
//! terminal the table is redrawn, otherwise (and with `--json`, one JSON object per update)
//! each change is printed as a line.

use std::collections::BTreeMap;
use std::io::IsTerminal as _;
use std::process::ExitCode;

use carewoven_proto::v1::{self, board_update::Change, query_service_client::QueryServiceClient};
use chrono::Utc;
use serde_json::json;

use super::show::{self, table_of};
use super::{Failure, PAGE_SIZE, Reader, all_pages, json};
use crate::cli::{BoardArgs, BoardSort};

pub async fn run(r: &Reader, a: BoardArgs) -> Result<ExitCode, Failure> {
    let client = QueryServiceClient::new(r.views().await?);
    let (mut entries, log_position) = all_pages("board entries", |page_token| {
        let mut client = client.clone();
        let request = r.request(
            v1::ListDischargeBoardRequest {
                site: a.site.clone().unwrap_or_default(),
                pathway: a.pathway.map_or(0, |p| p.to_i32()),
                status: a.status.clone().unwrap_or_default(),
                delay_reason: a.delay_reason.map_or(0, |d| d.to_i32()),
                page_size: PAGE_SIZE,
                page_token,
                min_log_position: a.at.min_log_position,
            },
            &[],
        );
        async move {
            let page = client.list_discharge_board(request?).await?.into_inner();
            Ok((page.entries, page.next_page_token, page.log_position))
        }
    })
    .await?;
    sort(&mut entries, a.sort);
    if r.json() {
        let entries = json::values(&entries).map_err(Failure::Client)?;
        println!(
            "{}",
            json!({"count": entries.len(), "entries": entries, "log_position": log_position})
        );
    } else {
        println!("{}", render(&entries));
        println!(
            "{} on the board (log position {log_position})",
            entries.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Sort rows by `by`; ties by episode id, so the order is always the same.
pub fn sort(entries: &mut [v1::BoardEntry], by: BoardSort) {
    entries.sort_by(|a, b| {
        let days = b.days_delayed.cmp(&a.days_delayed);
        let drd = a.discharge_ready_date.cmp(&b.discharge_ready_date);
        let site = (&a.site, &a.ward).cmp(&(&b.site, &b.ward));
        match by {
            BoardSort::Days => days.then(drd),
            BoardSort::Drd => drd.then(days),
            BoardSort::Site => site.then(days),
        }
        .then_with(|| a.episode_id.cmp(&b.episode_id))
    });
}

const COLUMNS: [&str; 11] = [
    "Episode",
    "Person",
    "Site / ward",
    "Pathway",
    "Status",
    "DRD",
    "Days",
    "Delays",
    "Service",
    "Planned",
    "After discharge",
];

/// The person: name and NHS number when the caller's agreement gives them, and the id.
fn person(e: &v1::BoardEntry) -> String {
    let name = format!("{} {}", e.given_name, e.family_name);
    [name.trim(), e.nhs_number.as_str(), e.person_id.as_str()]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Each delay reason recorded, with its note (the reasons alone if no notes came).
fn delays(e: &v1::BoardEntry) -> String {
    if e.delay_notes.is_empty() {
        return show::list(&e.delay_reasons, show::delay_reason);
    }
    e.delay_notes
        .iter()
        .map(|n| {
            let reason = show::delay_reason(n.reason);
            if n.note.is_empty() {
                reason
            } else {
                format!("{reason}: {}", n.note)
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Handover and home assessment.
fn after_discharge(e: &v1::BoardEntry) -> String {
    let mut lines = Vec::new();
    if e.hours_since_discharge > 0 {
        lines.push(format!("{}h without a handover", e.hours_since_discharge));
    }
    if !e.handover_organisation.is_empty() {
        lines.push(format!("handover: {}", e.handover_organisation));
    }
    if !e.home_assessment_completed_on.is_empty() {
        lines.push(format!(
            "home assessment done {}",
            e.home_assessment_completed_on
        ));
    } else if !e.home_assessment_due.is_empty() {
        lines.push(format!("home assessment due {}", e.home_assessment_due));
    }
    lines.join("\n")
}

fn row(e: &v1::BoardEntry) -> Vec<String> {
    vec![
        e.episode_id.clone(),
        person(e),
        format!("{} / {}", e.site, e.ward),
        show::pathway(e.pathway),
        e.status.clone(),
        e.discharge_ready_date.clone(),
        e.days_delayed.to_string(),
        delays(e),
        e.service.clone(),
        e.planned_for.clone(),
        after_discharge(e),
    ]
}

/// The board as a table.
pub fn render(entries: &[v1::BoardEntry]) -> comfy_table::Table {
    table_of(&COLUMNS, entries, row)
}

/// One change as a line (watching without a terminal): the row's cells, `|`-separated.
fn change_line(e: &v1::BoardEntry) -> String {
    let cells: Vec<String> = COLUMNS
        .iter()
        .zip(row(e))
        .map(|(name, cell)| {
            format!(
                "{}: {}",
                name.to_ascii_lowercase(),
                cell.replace('\n', ", ")
            )
        })
        .collect();
    format!(
        "{} changed: {}",
        Utc::now().format("%H:%M:%S"),
        cells.join(" | ")
    )
}

pub async fn watch(r: &Reader, a: BoardArgs) -> Result<ExitCode, Failure> {
    let mut client = QueryServiceClient::new(r.views().await?);
    let mut request = r.stream_request(
        v1::WatchDischargeBoardRequest {
            site: a.site.clone().unwrap_or_default(),
            pathway: a.pathway.map_or(0, |p| p.to_i32()),
            min_log_position: a.at.min_log_position,
            delay_reason: a.delay_reason.map_or(0, |d| d.to_i32()),
        },
        &[],
    )?;
    // The deadline covers reaching --min-log-position and the initial board only.
    request.set_timeout(r.timeout);
    let mut updates = client.watch_discharge_board(request).await?.into_inner();
    // The watch has no status filter: it is applied here, an entry that moves out of the
    // status leaving this board.
    let wanted = |e: &v1::BoardEntry| a.status.as_deref().is_none_or(|s| e.status == s);
    let redraw = !r.json() && std::io::stdout().is_terminal();
    let mut board: BTreeMap<String, v1::BoardEntry> = BTreeMap::new();
    let mut live = false;
    let draw = |board: &BTreeMap<String, v1::BoardEntry>, note: &str| {
        let mut entries: Vec<v1::BoardEntry> = board.values().cloned().collect();
        sort(&mut entries, a.sort);
        if redraw {
            print!("\x1b[2J\x1b[H");
        }
        println!("{}", render(&entries));
        println!("{} on the board; {note}", entries.len());
    };
    loop {
        let update = tokio::select! {
            u = updates.message() => u?,
            _ = tokio::signal::ctrl_c() => return Ok(ExitCode::SUCCESS),
        };
        let Some(update) = update else {
            if !r.json() {
                eprintln!("the views service ended the watch");
            }
            return Ok(ExitCode::SUCCESS);
        };
        // Client-side filtering turns an upsert out of the status into a removal.
        let change = match update.change.clone() {
            Some(Change::Upsert(e)) if !wanted(&e) => {
                if board.remove(&e.episode_id).is_none() {
                    continue;
                }
                Change::RemovedEpisodeId(e.episode_id)
            }
            Some(c) => c,
            None => continue,
        };
        if r.json() {
            let shown = v1::BoardUpdate {
                change: Some(change.clone()),
                log_position: update.log_position,
            };
            println!("{}", json::value(&shown).map_err(Failure::Client)?);
        }
        match change {
            Change::Upsert(e) => {
                if live && !r.json() && !redraw {
                    println!("{}", change_line(&e));
                }
                board.insert(e.episode_id.clone(), e);
            }
            Change::RemovedEpisodeId(id) => {
                board.remove(&id);
                if live && !r.json() && !redraw {
                    println!(
                        "{} left the board: episode {id}",
                        Utc::now().format("%H:%M:%S")
                    );
                }
            }
            Change::SnapshotComplete(_) => {
                live = true;
                if !r.json() {
                    draw(&board, "watching for changes (Ctrl-C to stop)");
                }
                continue;
            }
        }
        if live && redraw {
            draw(
                &board,
                &format!(
                    "last change {} (log position {}); Ctrl-C to stop",
                    Utc::now().format("%H:%M:%S"),
                    update.log_position
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(id: &str, days: u32, drd: &str, site: &str) -> v1::BoardEntry {
        v1::BoardEntry {
            episode_id: id.into(),
            days_delayed: days,
            discharge_ready_date: drd.into(),
            site: site.into(),
            ..Default::default()
        }
    }

    #[test]
    fn sorts() {
        let mut e = vec![
            entry("a", 1, "2026-01-03", "Z"),
            entry("b", 5, "2026-01-01", "Y"),
            entry("c", 5, "2026-01-02", "X"),
        ];
        let ids = |e: &[v1::BoardEntry]| e.iter().map(|x| x.episode_id.clone()).collect::<String>();
        sort(&mut e, BoardSort::Days);
        assert_eq!(ids(&e), "bca");
        sort(&mut e, BoardSort::Site);
        assert_eq!(ids(&e), "cba");
        sort(&mut e, BoardSort::Drd);
        assert_eq!(ids(&e), "bca");
        let text = render(&e).to_string();
        assert!(text.contains("Episode") && text.contains("Days"), "{text}");
        let noted = v1::BoardEntry {
            person_id: "p".into(),
            given_name: "Ada".into(),
            family_name: "Example".into(),
            nhs_number: "9990001235".into(),
            delay_notes: vec![v1::DelayNote {
                reason: v1::DelayReason::Pathway1NewCare as i32,
                note: "no carers until Monday".into(),
                ..Default::default()
            }],
            home_assessment_due: "2026-12-04".into(),
            ..Default::default()
        };
        assert_eq!(person(&noted), "Ada Example\n9990001235\np");
        assert_eq!(delays(&noted), "pathway-1-new-care: no carers until Monday");
        assert_eq!(after_discharge(&noted), "home assessment due 2026-12-04");
        let line = change_line(&noted);
        assert!(
            line.contains("person: Ada Example, 9990001235, p |"),
            "{line}"
        );
    }
}
