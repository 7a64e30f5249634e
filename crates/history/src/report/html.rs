//! The report as one self-contained HTML page: no external assets, no JavaScript, charts as
//! inline SVG. Every piece of text from the data is escaped.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use super::{DurationMetric, NhsTables, Report};

/// Escape text for HTML element content and double- or single-quoted attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "\
body{font-family:system-ui,-apple-system,'Segoe UI',Arial,sans-serif;color:#1d1d1b;\
max-width:1100px;margin:2rem auto;padding:0 1rem;line-height:1.45}\
h1{font-size:1.7rem;margin-bottom:.2rem}\
.scope{color:#444;margin-top:0}\
section{border-top:2px solid #005eb8;margin-top:2rem;padding-top:.5rem}\
.row{display:flex;flex-wrap:wrap;gap:1.5rem;align-items:flex-start}\
.figures{flex:2 1 480px}\
.definition{flex:1 1 260px;background:#f0f4f5;border-left:4px solid #005eb8;\
padding:.6rem .9rem;font-size:.95rem}\
.definition h3{margin:.1rem 0 .3rem;font-size:.95rem}\
dl{display:grid;grid-template-columns:max-content auto;gap:.25rem 1rem;margin:.5rem 0 1rem}\
dt{color:#444}dd{margin:0;font-weight:600}\
table{border-collapse:collapse;font-size:.9rem}\
th,td{border:1px solid #ccc;padding:.25rem .5rem;text-align:left}\
th{background:#f0f4f5}\
code{font-size:.85rem}\
svg{max-width:100%;height:auto}\
details{margin:.3rem 0 1.2rem}summary{cursor:pointer}\
.numbers{overflow-x:auto}.numbers td,.numbers th{white-space:nowrap}\
";

/// The report as one self-contained HTML document.
pub fn to_html(report: &Report) -> String {
    let period = format!(
        "{} to {} (end not included)",
        instant(report.period_from),
        instant(report.period_to)
    );
    let organisations = if report.organisations.is_empty() {
        "all organisations".to_owned()
    } else {
        report.organisations.join(", ")
    };
    let mut h = String::new();
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    h.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    let _ = writeln!(
        h,
        "<title>Service review, {}, {}</title>",
        escape(&period),
        escape(&organisations)
    );
    let _ = writeln!(h, "<style>{STYLE}</style>\n</head>\n<body>");
    let _ = writeln!(h, "<h1>Service review</h1>");
    let _ = writeln!(
        h,
        "<p class=\"scope\">Period: {}<br>Organisations: {}</p>",
        escape(&period),
        escape(&organisations)
    );
    let _ = writeln!(h, "<p>{}</p>", escape(&report.opt_out_note));

    // DRD-to-discharge delay.
    let d = &report.drd_to_discharge_delay;
    let bars: Vec<Bar> = d
        .distribution
        .iter()
        .map(|b| Bar {
            label: b.label.clone(),
            value: b.discharges as f64,
            caption: b.discharges.to_string(),
        })
        .collect();
    section(
        &mut h,
        "delay",
        "Delay from Discharge Ready Date to discharge",
        &d.definition,
        &[
            (
                "Discharges with a Discharge Ready Date",
                d.discharges.to_string(),
            ),
            (
                "Discharged on their Discharge Ready Date",
                count_pct(d.discharged_on_drd, d.discharged_on_drd_percent),
            ),
            (
                "Delayed one day or more",
                count_pct(d.delayed_one_day_or_more, d.delayed_one_day_or_more_percent),
            ),
            ("Bed days lost", d.bed_days_lost.to_string()),
        ],
        &bar_chart(
            "Discharges by days of delay after the Discharge Ready Date",
            "Days from Discharge Ready Date to discharge",
            "Discharges",
            None,
            &bars,
        ),
    );

    // Pathway mix.
    let p = &report.pathway_mix;
    let bars: Vec<Bar> = p
        .pathways
        .iter()
        .map(|s| Bar {
            label: format!("Pathway {}", s.pathway),
            value: s.percent.unwrap_or(0.0),
            caption: format!("{} ({})", pct(s.percent), s.discharges),
        })
        .collect();
    let mut figures = vec![("Discharges", p.discharges.to_string())];
    let labels = ["Pathway 0", "Pathway 1", "Pathway 2", "Pathway 3"];
    for (s, label) in p.pathways.iter().zip(labels) {
        figures.push((label, count_pct(s.discharges, s.percent)));
    }
    if p.no_pathway > 0 {
        figures.push(("No pathway recorded", p.no_pathway.to_string()));
    }
    section(
        &mut h,
        "pathways",
        "Pathway mix",
        &p.definition,
        &figures,
        &bar_chart(
            "Share of discharges by pathway",
            "Discharge-to-assess pathway",
            "% of discharges",
            Some(100.0),
            &bars,
        ),
    );

    duration_section(
        &mut h,
        "referral-to-assessment",
        "Referral to needs assessment",
        "Referrals assessed",
        "Referrals not yet assessed",
        &report.referral_to_assessment,
    );
    let rows: Vec<Vec<String>> = report
        .referral_decision_by_service
        .iter()
        .map(|s| {
            vec![
                s.service.clone(),
                s.wait.count.to_string(),
                value(s.wait.median, &s.wait.unit),
                value(s.wait.p90, &s.wait.unit),
                s.wait.not_yet.to_string(),
            ]
        })
        .collect();
    section(
        &mut h,
        "referral-decision",
        "Referral to accepted or rejected, by service",
        super::REFERRAL_DECISION_DEFINITION,
        &[(
            "Services",
            report.referral_decision_by_service.len().to_string(),
        )],
        &table(
            &[
                "Service",
                "Decided",
                "Median",
                "90th percentile",
                "Not yet decided",
            ],
            &rows,
        ),
    );
    duration_section(
        &mut h,
        "handover",
        "Discharge to handover",
        "Discharges handed over",
        "Discharges not yet handed over",
        &report.handover,
    );

    let r = &report.readmission_30_day;
    section(
        &mut h,
        "readmission",
        "Readmission within 30 days",
        &r.definition,
        &[
            ("Discharges", r.discharges.to_string()),
            (
                "Readmitted within 30 days",
                count_pct(r.readmitted_within_30_days, r.percent),
            ),
        ],
        "",
    );

    let l = &report.long_stays;
    let mut table = String::new();
    if !l.episodes.is_empty() {
        table.push_str(
            "<table>\n<thead><tr><th>Episode</th><th>Person (pseudonymous id)</th>\
<th>Site</th><th>Length of stay (days)</th><th>Still in hospital</th>\
<th>Delay reasons</th></tr></thead>\n<tbody>\n",
        );
        for s in &l.episodes {
            let reasons = if s.delay_reasons.is_empty() {
                "none recorded".to_owned()
            } else {
                s.delay_reasons
                    .iter()
                    .map(|(reason, n)| format!("{}: {n}", reason.replace('_', " ")))
                    .collect::<Vec<_>>()
                    .join("; ")
            };
            let _ = writeln!(
                table,
                "<tr><td><code>{}</code></td><td><code>{}</code></td><td>{}</td><td>{}</td>\
<td>{}</td><td>{}</td></tr>",
                escape(&s.episode_id.to_string()),
                escape(&s.person_id.to_string()),
                escape(&s.site),
                s.length_of_stay_days,
                if s.still_in_hospital { "yes" } else { "no" },
                escape(&reasons),
            );
        }
        table.push_str("</tbody>\n</table>\n");
    }
    section(
        &mut h,
        "long-stays",
        &format!("Long stays ({} days or more)", l.threshold_days),
        &l.definition,
        &[("Long stays", l.count.to_string())],
        &table,
    );

    work_sections(&mut h, report);

    if let Some(t) = &report.nhs_tables {
        nhs_sections(&mut h, t);
    }
    if let Some(t) = &report.trend {
        super::trend_html::trend_sections(&mut h, t);
    }

    h.push_str("</body>\n</html>\n");
    h
}

/// Tasks completed on time (a chart of how they ended, a table by owner) and care-plan
/// reviews overdue.
fn work_sections(h: &mut String, report: &Report) {
    let t = &report.tasks_on_time;
    let c = &t.all;
    let bars: Vec<Bar> = [
        ("On time", c.completed_on_time),
        ("Late", c.completed_late),
        ("Cancelled", c.cancelled),
        ("Failed", c.failed),
    ]
    .into_iter()
    .map(|(label, n)| Bar {
        label: label.to_owned(),
        value: n as f64,
        caption: n.to_string(),
    })
    .collect();
    let mut extra = bar_chart(
        "Tasks by how they ended",
        "How the task ended",
        "Tasks",
        None,
        &bars,
    );
    if !t.by_owner.is_empty() {
        let rows: Vec<Vec<String>> = t
            .by_owner
            .iter()
            .map(|o| {
                let c = &o.tasks;
                vec![
                    o.owner.clone(),
                    c.completed.to_string(),
                    c.completed_on_time.to_string(),
                    pct(c.on_time_percent),
                    c.completed_late.to_string(),
                    c.cancelled.to_string(),
                    c.failed.to_string(),
                ]
            })
            .collect();
        extra.push_str(&table(
            &[
                "Owner",
                "Completed",
                "On time",
                "% on time",
                "Late",
                "Cancelled",
                "Failed",
            ],
            &rows,
        ));
    }
    section(
        h,
        "tasks",
        "Tasks completed on time",
        &t.definition,
        &[
            ("Tasks ended in the period", c.finished.to_string()),
            ("Completed", c.completed.to_string()),
            (
                "Completed on or before the due date",
                count_pct(c.completed_on_time, c.on_time_percent),
            ),
            ("Completed late", c.completed_late.to_string()),
            ("Cancelled", c.cancelled.to_string()),
            ("Failed", c.failed.to_string()),
        ],
        &extra,
    );
    let r = &report.care_plan_reviews;
    section(
        h,
        "care-plan-reviews",
        "Care-plan reviews overdue",
        &r.definition,
        &[
            ("Counted at the start of (UK day)", r.as_of_day.to_string()),
            ("People with a care plan", r.people_with_a_plan.to_string()),
            ("Review overdue", count_pct(r.overdue, r.overdue_percent)),
            ("Days overdue, median", value(r.days_overdue_median, "days")),
            (
                "Days overdue, 90th percentile",
                value(r.days_overdue_p90, "days"),
            ),
            (
                "Reviews falling due in the period",
                r.falling_due_in_period.to_string(),
            ),
        ],
        "",
    );
}

/// A table: header cells and rows, every cell escaped.
pub(super) fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut t = String::from("<table>\n<thead><tr>");
    for c in header {
        let _ = write!(t, "<th>{}</th>", escape(c));
    }
    t.push_str("</tr></thead>\n<tbody>\n");
    for r in rows {
        t.push_str("<tr>");
        for c in r {
            let _ = write!(t, "<td>{}</td>", escape(c));
        }
        t.push_str("</tr>\n");
    }
    t.push_str("</tbody>\n</table>\n");
    t
}

fn nhs_sections(h: &mut String, t: &NhsTables) {
    let provider = if t.provider.is_empty() {
        "all sites".to_owned()
    } else {
        t.provider.join(", ")
    };
    let _ = writeln!(
        h,
        "<h2 id=\"nhs-england\">NHS England's tables: {}, {}</h2>",
        escape(&t.month),
        escape(&provider)
    );
    let d = &t.drd_statistics;
    let rows: Vec<Vec<String>> = d
        .bands
        .iter()
        .map(|b| {
            vec![
                b.label.clone(),
                b.discharges.to_string(),
                pct(b.percent),
                b.bed_days_lost.to_string(),
            ]
        })
        .collect();
    section(
        h,
        "drd-statistics",
        "Discharge Ready Date statistics",
        &d.definition,
        &[
            ("Total discharges", d.total_discharges.to_string()),
            (
                "Discharged on the Discharge Ready Date",
                count_pct(d.discharged_on_drd, d.discharged_on_drd_percent),
            ),
            (
                "Discharged 1+ days after",
                count_pct(
                    d.discharged_one_plus_days_after,
                    d.discharged_one_plus_days_after_percent,
                ),
            ),
            ("Bed days lost", d.bed_days_lost.to_string()),
            (
                "Average days, including 0-day delays",
                value(d.average_days_including_zero, "days"),
            ),
            (
                "Average days, excluding 0-day delays",
                value(d.average_days_excluding_zero, "days"),
            ),
        ],
        &table(
            &[
                "Days after the DRD",
                "Discharges",
                "% of discharges",
                "Bed days lost",
            ],
            &rows,
        ),
    );
    let s = &t.sitrep_discharges;
    let rows: Vec<Vec<String>> = s
        .rows
        .iter()
        .map(|r| {
            vec![
                r.pathway
                    .map_or_else(|| "none".to_owned(), |p| p.to_string()),
                r.destination_code.clone().unwrap_or_default(),
                r.destination.clone(),
                r.discharges.to_string(),
            ]
        })
        .collect();
    section(
        h,
        "sitrep-discharges",
        "Discharges by pathway and destination",
        &s.definition,
        &[("Discharges", s.total.to_string())],
        &table(&["Pathway", "Code", "Destination", "Discharges"], &rows),
    );
    let s = &t.sitrep_delays;
    let rows: Vec<Vec<String>> = s
        .rows
        .iter()
        .map(|r| vec![r.reason.clone(), r.people.to_string()])
        .collect();
    section(
        h,
        "sitrep-delays",
        "People not discharged, by delay reason",
        &s.definition,
        &[
            ("At", instant(s.at)),
            ("People ready but not discharged", s.total.to_string()),
        ],
        &table(&["Reason (national list)", "People"], &rows),
    );
    let r = &t.reablement;
    section(
        h,
        "reablement",
        "Still at home 91 days after discharge into reablement (65+)",
        &r.definition,
        &[
            ("People in the cohort", r.cohort.to_string()),
            (
                "At home after 91 days",
                count_pct(r.at_home_after_91_days, r.percent),
            ),
            ("Follow-up incomplete", r.follow_up_incomplete.to_string()),
        ],
        "",
    );
}

fn instant(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn pct(p: Option<f64>) -> String {
    p.map_or_else(|| "n/a".to_owned(), |p| format!("{p:.1}%"))
}

fn count_pct(n: u64, p: Option<f64>) -> String {
    format!("{n} ({})", pct(p))
}

fn value(v: Option<f64>, unit: &str) -> String {
    v.map_or_else(|| "n/a".to_owned(), |v| format!("{v:.1} {unit}"))
}

/// One metric: heading, its figures, the chart or table under them, the definition beside.
/// `figures` and `extra` text: figure labels and values are escaped here; `extra` is markup
/// built (and escaped) by the caller.
pub(super) fn section(
    h: &mut String,
    id: &str,
    title: &str,
    definition: &str,
    figures: &[(&str, String)],
    extra: &str,
) {
    let _ = writeln!(h, "<section id=\"{}\">", escape(id));
    let _ = writeln!(h, "<h2>{}</h2>", escape(title));
    h.push_str("<div class=\"row\">\n<div class=\"figures\">\n<dl>\n");
    for (label, v) in figures {
        let _ = writeln!(h, "<dt>{}</dt><dd>{}</dd>", escape(label), escape(v));
    }
    h.push_str("</dl>\n");
    h.push_str(extra);
    h.push_str("</div>\n");
    let _ = writeln!(
        h,
        "<aside class=\"definition\"><h3>Definition</h3><p>{}</p></aside>",
        escape(definition)
    );
    h.push_str("</div>\n</section>\n");
}

fn duration_section(
    h: &mut String,
    id: &str,
    title: &str,
    measured: &str,
    pending: &str,
    m: &DurationMetric,
) {
    section(
        h,
        id,
        title,
        &m.definition,
        &[
            (measured, m.count.to_string()),
            ("Median", value(m.median, &m.unit)),
            ("90th percentile", value(m.p90, &m.unit)),
            (pending, m.not_yet.to_string()),
        ],
        "",
    );
}

struct Bar {
    label: String,
    value: f64,
    caption: String,
}

/// A vertical bar chart with a labelled y axis (0, half when a whole number, max), each bar's
/// value above it and its category below. `axis_max` fixes the top of the axis (otherwise the
/// largest value rounded up to a whole number).
fn bar_chart(
    title: &str,
    x_title: &str,
    y_title: &str,
    axis_max: Option<f64>,
    bars: &[Bar],
) -> String {
    const LEFT: f64 = 70.0;
    const RIGHT: f64 = 20.0;
    const TOP: f64 = 40.0;
    const BOTTOM: f64 = 60.0;
    const SLOT: f64 = 72.0;
    const PLOT_H: f64 = 200.0;
    let width = LEFT + RIGHT + SLOT * bars.len().max(1) as f64;
    let height = TOP + PLOT_H + BOTTOM;
    let max = bars.iter().map(|b| b.value).fold(0.0_f64, f64::max);
    // Counts get a whole-number axis; a fixed maximum (100 for percentages) wins.
    let scale_max = axis_max.unwrap_or(max.ceil()).max(1.0);
    let base = TOP + PLOT_H;
    let desc = format!(
        "Bar chart. {x_title}: {}. The same figures are listed beside the chart.",
        bars.iter()
            .map(|b| format!("{} {}", b.label, b.caption))
            .collect::<Vec<_>>()
            .join("; ")
    );
    let mut s = String::new();
    chart_start(
        &mut s,
        &Frame {
            width,
            height,
            left: LEFT,
            top: TOP,
            base,
            right: width - RIGHT,
        },
        None,
        title,
        &desc,
    );
    for fraction in [0.0, 0.5, 1.0] {
        let label = fraction * scale_max;
        if label.fract() != 0.0 {
            continue;
        }
        let y = base - fraction * PLOT_H;
        let _ = writeln!(
            s,
            "<line x1=\"{}\" y1=\"{y}\" x2=\"{LEFT}\" y2=\"{y}\" stroke=\"#333\"/>\
<text x=\"{}\" y=\"{}\" text-anchor=\"end\" font-size=\"11\">{}</text>",
            LEFT - 4.0,
            LEFT - 6.0,
            y + 4.0,
            tick(label)
        );
    }
    let _ = writeln!(
        s,
        "<text x=\"16\" y=\"{}\" text-anchor=\"middle\" font-size=\"12\" \
transform=\"rotate(-90 16 {})\">{}</text>",
        TOP + PLOT_H / 2.0,
        TOP + PLOT_H / 2.0,
        escape(y_title)
    );
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-size=\"12\">{}</text>",
        LEFT + (width - LEFT - RIGHT) / 2.0,
        height - 10.0,
        escape(x_title)
    );
    for (i, bar) in bars.iter().enumerate() {
        let x = LEFT + SLOT * i as f64 + SLOT * 0.15;
        let w = SLOT * 0.7;
        let bar_h = (bar.value.max(0.0) / scale_max) * PLOT_H;
        let y = base - bar_h;
        let centre = x + w / 2.0;
        let _ = writeln!(
            s,
            "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{bar_h:.1}\" fill=\"#005eb8\">\
<title>{}: {}</title></rect>",
            escape(&bar.label),
            escape(&bar.caption)
        );
        let _ = writeln!(
            s,
            "<text x=\"{centre:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"11\">{}</text>",
            y - 4.0,
            escape(&bar.caption)
        );
        let _ = writeln!(
            s,
            "<text x=\"{centre:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-size=\"11\">{}</text>",
            base + 16.0,
            escape(&bar.label)
        );
    }
    s.push_str("</svg>\n");
    s
}

/// Where a chart's plot sits: the svg's size, the left, top and right edges of the plot and
/// its base line (the x axis).
pub(super) struct Frame {
    pub width: f64,
    pub height: f64,
    pub left: f64,
    pub top: f64,
    pub base: f64,
    pub right: f64,
}

/// The opening of a chart: the `<svg>` element with its accessible name (`<title>`) and
/// description (`<desc>`; referenced by `aria-labelledby` when the chart has an `id`), the
/// heading, and the two axes. The caller closes the element.
pub(super) fn chart_start(s: &mut String, f: &Frame, id: Option<&str>, title: &str, desc: &str) {
    let Frame {
        width,
        height,
        left,
        top,
        base,
        right,
    } = *f;
    let (label, title_id, desc_id) = match id {
        Some(id) => {
            let id = escape(id);
            (
                format!("aria-labelledby=\"{id}-title {id}-desc\""),
                format!(" id=\"{id}-title\""),
                format!(" id=\"{id}-desc\""),
            )
        }
        None => (
            format!("aria-label=\"{}\"", escape(title)),
            String::new(),
            String::new(),
        ),
    };
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {width} {height}\" \
width=\"{width}\" height=\"{height}\" role=\"img\" {label}>"
    );
    let _ = writeln!(s, "<title{title_id}>{}</title>", escape(title));
    let _ = writeln!(s, "<desc{desc_id}>{}</desc>", escape(desc));
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"20\" text-anchor=\"middle\" font-size=\"14\" font-weight=\"bold\">{}</text>",
        width / 2.0,
        escape(title)
    );
    let _ = writeln!(
        s,
        "<line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{base}\" stroke=\"#333\"/>\
<line x1=\"{left}\" y1=\"{base}\" x2=\"{right}\" y2=\"{base}\" stroke=\"#333\"/>"
    );
}

/// An axis tick (always a whole number, see [`bar_chart`]).
fn tick(v: f64) -> String {
    format!("{v:.0}")
}
