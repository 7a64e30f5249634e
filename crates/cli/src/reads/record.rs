//! `carectl record`: a person's shared care record (QueryService.GetCareRecord), section by
//! section; `--json` the whole `CareRecord`.

use std::process::ExitCode;

use carewoven_proto::v1::{self, query_service_client::QueryServiceClient};

use comfy_table::Table;

use super::show::{self, fields, instant, rows, section};
use super::{Failure, Reader, json};
use crate::cli::RecordArgs;

pub async fn run(r: &Reader, a: RecordArgs) -> Result<ExitCode, Failure> {
    let mut client = QueryServiceClient::new(r.views().await?);
    let request = r.request(
        v1::GetCareRecordRequest {
            person_id: a.person_id.map(|p| p.to_string()).unwrap_or_default(),
            min_log_position: a.at.min_log_position,
        },
        &[],
    )?;
    let record = client.get_care_record(request).await?.into_inner();
    if r.json() {
        println!("{}", json::value(&record).map_err(Failure::Client)?);
    } else {
        print!("{}", render(&record));
    }
    Ok(ExitCode::SUCCESS)
}

/// The record as sections of tables.
pub fn render(record: &v1::CareRecord) -> String {
    let mut out = String::new();
    let p = record.profile.clone().unwrap_or_default();
    let carers: Vec<String> = p
        .carers
        .iter()
        .map(|c| {
            let contact = if c.contact.is_empty() {
                String::new()
            } else {
                format!(", {}", c.contact)
            };
            format!("{} ({}{contact})", c.name, c.relationship)
        })
        .collect();
    let name = format!("{} {}", p.given_name, p.family_name)
        .trim()
        .to_owned();
    out.push_str("Person\n");
    out.push_str(
        &fields(&[
            ("person id", record.person_id.clone()),
            ("NHS number", p.nhs_number.clone()),
            ("name", name),
            ("date of birth", p.date_of_birth.clone()),
            ("contact", p.contact.clone()),
            ("what matters", p.what_matters.clone()),
            ("communication needs", p.communication_needs.clone()),
            ("registered GP", p.registered_gp.clone()),
            ("carers", carers.join("\n")),
            ("record version", record.person_version.to_string()),
            ("corrections", record.profile_corrections.to_string()),
            ("log position", record.log_position.to_string()),
        ])
        .to_string(),
    );
    out.push('\n');
    if !record.withheld_classes.is_empty() {
        out.push_str(&format!(
            "withheld (outside your agreement, or the person objected): {}\n",
            show::list(&record.withheld_classes, show::data_class)
        ));
    }
    section(&mut out, "Care team", care_team_table(record));
    section(&mut out, "Care plan", care_plan(record));
    section(&mut out, "Referrals", referrals(record));
    section(&mut out, "Assessments", assessments(record));
    section(&mut out, "Consents and objections", consents(record));
    section(&mut out, "Discharge episodes", episodes(record));
    section(&mut out, "Meetings", meetings(record));
    section(&mut out, "Risk flags", risk_flags(record));
    section(&mut out, "Tasks", tasks(record));
    section(&mut out, "Feedback", feedback(record));
    section(&mut out, "Proxies", proxies(record));
    section(&mut out, "Emergency access", emergency(record));
    section(&mut out, "Corrections", corrections(record));
    out
}

fn care_team_table(record: &v1::CareRecord) -> Option<Table> {
    let team = record.care_team.clone().unwrap_or_default();
    let coordinator = show::member(team.coordinator.as_ref());
    let headers = ["Member", "Role", "Since", "Coordinator"];
    rows(&headers, &team.members, |m| {
        let who = show::member(m.member.as_ref());
        let is_coordinator = if who == coordinator { "yes" } else { "" };
        vec![
            who,
            show::care_team_role(m.role),
            m.since.clone(),
            is_coordinator.to_owned(),
        ]
    })
}

fn care_plan(record: &v1::CareRecord) -> Option<Table> {
    let view = record.care_plan.as_ref().filter(|p| p.version > 0)?;
    let plan = view.plan.clone().unwrap_or_default();
    let activities: Vec<String> = plan
        .activities
        .iter()
        .map(|a| format!("{} ({})", a.description, a.responsible_organisation))
        .collect();
    let history: Vec<String> = view
        .history
        .iter()
        .map(|h| {
            show::happened(
                &format!("v{}", h.version),
                &h.organisation,
                h.recorded_at.as_ref(),
                &h.reason,
            )
        })
        .collect();
    Some(fields(&[
        ("version", view.version.to_string()),
        ("goals", plan.goals.join("\n")),
        ("activities", activities.join("\n")),
        ("review date", plan.review_date.clone()),
        ("history", history.join("\n")),
    ]))
}

fn referrals(record: &v1::CareRecord) -> Option<Table> {
    let headers = [
        "Referral",
        "From",
        "To service",
        "Priority",
        "Status",
        "Submitted",
        "Updated",
        "Reason given",
        "History",
    ];
    rows(&headers, &record.referrals, |r| {
        let referral = r.referral.clone().unwrap_or_default();
        let history: Vec<String> = r
            .history
            .iter()
            .map(|h| show::happened(&h.status, &h.organisation, h.at.as_ref(), &h.reason))
            .collect();
        vec![
            r.referral_id.clone(),
            referral.from_organisation,
            referral.to_service,
            show::priority(referral.priority),
            r.status.clone(),
            instant(r.submitted_at.as_ref()),
            instant(r.updated_at.as_ref()),
            r.reason.clone(),
            history.join("\n"),
        ]
    })
}

fn assessments(record: &v1::CareRecord) -> Option<Table> {
    let headers = [
        "Assessment",
        "Kind",
        "Assessors",
        "Status",
        "Contributions",
        "Eligible",
        "Requested",
        "Completed",
        "Findings",
    ];
    rows(&headers, &record.assessments, |a| {
        let request = a.request.clone().unwrap_or_default();
        let findings = a.findings.clone().unwrap_or_default();
        let eligible = match a.eligible {
            Some(true) => "yes",
            Some(false) => "no",
            None => "",
        };
        let contributions = if a.contributions.is_empty() {
            a.contributors.join(", ")
        } else {
            a.contributions
                .iter()
                .map(|c| {
                    format!(
                        "{} at {}: {}",
                        c.organisation,
                        instant(c.recorded_at.as_ref()),
                        c.summary
                    )
                })
                .collect::<Vec<_>>()
                .join("\n")
        };
        let mut summary = findings.summary.clone();
        if !findings.outcomes_not_achieved.is_empty() {
            summary.push_str("\noutcomes not achieved: ");
            summary.push_str(&show::list(&findings.outcomes_not_achieved, show::outcome));
        }
        vec![
            a.assessment_id.clone(),
            show::assessment_kind(request.kind),
            request.assessors.join(", "),
            a.status.clone(),
            contributions,
            eligible.to_owned(),
            instant(a.requested_at.as_ref()),
            instant(a.completed_at.as_ref()),
            summary,
        ]
    })
}

fn consents(record: &v1::CareRecord) -> Option<Table> {
    let headers = [
        "Consent",
        "Decision",
        "Purpose",
        "Partners",
        "Data classes",
        "From",
        "Until",
        "Withdrawn",
    ];
    rows(&headers, &record.consents, |c| {
        let terms = c.terms.clone().unwrap_or_default();
        let classes = if terms.data_classes.is_empty() {
            "all".to_owned()
        } else {
            show::list(&terms.data_classes, show::data_class)
        };
        vec![
            c.consent_id.clone(),
            show::decision(terms.decision),
            show::purpose(terms.purpose),
            terms.partners.join(", "),
            classes,
            terms.valid_from,
            terms.valid_until,
            if c.withdrawn { "yes" } else { "" }.to_owned(),
        ]
    })
}

fn episodes(record: &v1::CareRecord) -> Option<Table> {
    let headers = [
        "Episode",
        "Site / ward",
        "Admitted",
        "Status",
        "EDD",
        "DRD",
        "Pathway",
        "Service",
        "Planned",
        "Delays",
        "Discharged",
        "Destination",
        "Handover",
        "Home assessment",
    ];
    rows(&headers, &record.discharge_episodes, |e| {
        let mut drd = e.discharge_ready_date.clone();
        if !e.superseded_discharge_ready_dates.is_empty() {
            drd.push_str("\n(was ");
            drd.push_str(&e.superseded_discharge_ready_dates.join(", "));
            drd.push(')');
        }
        let destination = if e.discharge_destination_code.is_empty() {
            e.discharge_destination.clone()
        } else {
            format!(
                "{} ({})",
                e.discharge_destination, e.discharge_destination_code
            )
        };
        vec![
            e.episode_id.clone(),
            format!("{} / {}", e.site, e.ward),
            instant(e.admitted_at.as_ref()),
            e.status.clone(),
            e.expected_discharge_date.clone(),
            drd,
            show::pathway(e.pathway),
            e.service.clone(),
            e.planned_for.clone(),
            delays(&e.delay_reasons, &e.delay_notes),
            instant(e.discharged_at.as_ref()),
            destination,
            e.handover_organisation.clone(),
            home_assessment(e),
        ]
    })
}

/// Each delay reason recorded, with who recorded it, when, and its note (the reasons alone if no
/// notes came).
fn delays(reasons: &[i32], notes: &[v1::DelayNote]) -> String {
    if notes.is_empty() {
        return show::list(reasons, show::delay_reason);
    }
    notes
        .iter()
        .map(|n| {
            show::happened(
                &show::delay_reason(n.reason),
                &n.organisation,
                n.recorded_at.as_ref(),
                &n.note,
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// When the home assessment was due, and when it was done with what outcome.
fn home_assessment(e: &v1::EpisodeView) -> String {
    let mut lines = Vec::new();
    if !e.home_assessment_due.is_empty() {
        lines.push(format!("due {}", e.home_assessment_due));
    }
    if !e.home_assessment_completed_on.is_empty() {
        lines.push(format!("done {}", e.home_assessment_completed_on));
    }
    if !e.home_assessment_outcome.is_empty() {
        lines.push(e.home_assessment_outcome.clone());
    }
    lines.join("\n")
}

fn meetings(record: &v1::CareRecord) -> Option<Table> {
    let headers = ["Meeting", "Held", "Attendees", "Decisions", "Actions"];
    rows(&headers, &record.meetings, |m| {
        let meeting = m.meeting.clone().unwrap_or_default();
        let actions: Vec<String> = meeting
            .actions
            .iter()
            .zip(1u32..)
            .map(|(a, n)| {
                let done = match m.completions.iter().find(|c| c.action == n) {
                    Some(c) => show::happened(
                        "done",
                        &format!("{}/{}", c.organisation, c.user),
                        c.completed_at.as_ref(),
                        &c.note,
                    ),
                    None if m.completed_actions.contains(&n) => "done".to_owned(),
                    None => "open".to_owned(),
                };
                format!(
                    "{n}. {} ({}, due {}): {done}",
                    a.description, a.owner, a.due_by
                )
            })
            .collect();
        vec![
            m.meeting_id.clone(),
            instant(meeting.held_at.as_ref()),
            meeting.attendees.join(", "),
            meeting.decisions.join("\n"),
            actions.join("\n"),
        ]
    })
}

fn risk_flags(record: &v1::CareRecord) -> Option<Table> {
    let headers = [
        "Flag",
        "Score",
        "From",
        "Until",
        "Raised by",
        "Note / end reason",
    ];
    rows(&headers, &record.risk_flags, |f| {
        let flag = f.flag.clone().unwrap_or_default();
        let code = show::risk_flag(flag.code);
        let score = if flag.frailty_score == 0 {
            String::new()
        } else {
            format!("CFS {}", flag.frailty_score)
        };
        let note = if f.end.is_empty() {
            flag.note
        } else {
            f.end_reason.clone()
        };
        vec![
            code,
            score,
            flag.start,
            f.end.clone(),
            f.organisation.clone(),
            note,
        ]
    })
}

fn tasks(record: &v1::CareRecord) -> Option<Table> {
    let headers = [
        "Task",
        "Due",
        "Priority",
        "Status",
        "Owner",
        "Asked by",
        "Description",
        "Last change",
    ];
    rows(&headers, &record.tasks, |t| {
        let task = t.task.clone().unwrap_or_default();
        let status = show::task_status(t.status);
        let last = t
            .history
            .last()
            .map(|h| show::happened(&status, &h.organisation, h.at.as_ref(), &h.reason))
            .unwrap_or_default();
        vec![
            t.task_id.clone(),
            task.due,
            show::priority(task.priority),
            status,
            show::member(task.owner.as_ref()),
            t.requester.clone(),
            task.description,
            last,
        ]
    })
}

fn feedback(record: &v1::CareRecord) -> Option<Table> {
    let headers = ["Recorded", "Source", "Rating", "Feedback"];
    rows(&headers, &record.feedback, |f| {
        let fb = f.feedback.clone().unwrap_or_default();
        let mut source = show::feedback_source(fb.source);
        if fb.anonymous {
            source.push_str(" (anonymous)");
        }
        let rating = if fb.rating == 0 {
            String::new()
        } else {
            format!("{}/5", fb.rating)
        };
        vec![instant(f.recorded_at.as_ref()), source, rating, fb.text]
    })
}

fn proxies(record: &v1::CareRecord) -> Option<Table> {
    let headers = ["Carer", "Carer's NHS number", "May", "Granted"];
    rows(&headers, &record.proxies, |p| {
        let grant = p.grant.clone().unwrap_or_default();
        vec![
            grant.carer_name,
            grant.carer_nhs_number,
            show::list(&grant.scope, show::proxy_scope),
            instant(p.granted_at.as_ref()),
        ]
    })
}

fn emergency(record: &v1::CareRecord) -> Option<Table> {
    let headers = ["Organisation", "Asserted", "Expires", "Reason"];
    rows(&headers, &record.emergency_accesses, |e| {
        vec![
            e.organisation.clone(),
            instant(e.asserted_at.as_ref()),
            instant(e.expires_at.as_ref()),
            e.reason.clone(),
        ]
    })
}

fn corrections(record: &v1::CareRecord) -> Option<Table> {
    let headers = [
        "Recorded",
        "Organisation",
        "User",
        "Fields",
        "Reason",
        "Before",
        "Version",
    ];
    rows(&headers, &record.corrections, |c| {
        vec![
            instant(c.recorded_at.as_ref()),
            c.organisation.clone(),
            c.user.clone(),
            c.fields.join(", "),
            c.reason.clone(),
            previous(c.previous.as_ref()),
            c.person_version.to_string(),
        ]
    })
}

/// The values corrected fields had before (only those set).
fn previous(p: Option<&v1::Profile>) -> String {
    let Some(p) = p else {
        return String::new();
    };
    let carers: Vec<String> = p
        .carers
        .iter()
        .map(|c| format!("{} ({})", c.name, c.relationship))
        .collect();
    [
        ("nhs_number", p.nhs_number.clone()),
        ("given_name", p.given_name.clone()),
        ("family_name", p.family_name.clone()),
        ("date_of_birth", p.date_of_birth.clone()),
        ("contact", p.contact.clone()),
        ("what_matters", p.what_matters.clone()),
        ("communication_needs", p.communication_needs.clone()),
        ("carers", carers.join(", ")),
        ("registered_gp", p.registered_gp.clone()),
    ]
    .into_iter()
    .filter(|(_, v)| !v.is_empty())
    .map(|(k, v)| format!("{k}: {v}"))
    .collect::<Vec<_>>()
    .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_section_is_shown_and_empty_ones_say_so() {
        let record = v1::CareRecord {
            person_id: "p-1".into(),
            profile: Some(v1::Profile {
                nhs_number: "9990001235".into(),
                given_name: "Ada".into(),
                family_name: "Example".into(),
                ..Default::default()
            }),
            discharge_episodes: vec![v1::EpisodeView {
                episode_id: "e-1".into(),
                site: "HOSP".into(),
                ward: "Ward 7".into(),
                status: "discharge_ready".into(),
                pathway: v1::Pathway::Pathway1 as i32,
                delay_notes: vec![v1::DelayNote {
                    reason: v1::DelayReason::Pathway1NewCare as i32,
                    note: "no carers until Monday".into(),
                    organisation: "HOSP".into(),
                    ..Default::default()
                }],
                home_assessment_due: "2026-12-04".into(),
                ..Default::default()
            }],
            corrections: vec![v1::CorrectionView {
                fields: vec!["family_name".into()],
                reason: "misspelt".into(),
                previous: Some(v1::Profile {
                    family_name: "Exmaple".into(),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            withheld_classes: vec![v1::DataClass::Feedback as i32],
            ..Default::default()
        };
        let text = render(&record);
        for needle in [
            "9990001235",
            "Ada Example",
            "Discharge episodes",
            "Ward 7",
            "discharge_ready",
            "withheld (outside your agreement, or the person objected): feedback",
            "Referrals\n  (none)",
            "pathway-1-new-care by HOSP at : no carers until Monday",
            "due 2026-12-04",
            "family_name: Exmaple",
            "misspelt",
        ] {
            assert!(text.contains(needle), "{needle}:\n{text}");
        }
    }
}
