//! The trend view in the HTML page: per figure, a line chart by month and one by week (inline
//! SVG with its own `<title>` and `<desc>`), each with the same numbers as a table under it
//! (a chart alone is not accessible), and the definition beside.

use std::fmt::Write as _;

use super::html::{Frame, chart_start, escape, section, table};
use super::{Trend, TrendPeriod, TrendTable};

/// Series colours (the first, NHS blue, is the whole scope; the rest are distinguishable
/// with common colour-vision deficiencies) and dash patterns, so no series is told apart by
/// colour alone.
const COLOURS: [&str; 8] = [
    "#005eb8", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#4d4d4d", "#8b5a2b",
];
const DASHES: [&str; 4] = ["", "6 3", "2 3", "8 3 2 3"];

/// The trend: a heading, the conventions, then one section per figure.
pub(super) fn trend_sections(h: &mut String, t: &Trend) {
    let scope = if t.scope.is_empty() {
        "all organisations".to_owned()
    } else {
        t.scope.join(", ")
    };
    let _ = writeln!(
        h,
        "<h2 id=\"trend\">Trend: {} to {}, {}</h2>",
        t.first_day,
        t.last_day,
        escape(&scope)
    );
    let _ = writeln!(h, "<p>{}</p>", escape(&t.definition));
    for f in &t.figures {
        let per = match f.split_by.as_str() {
            "service" => "receiving service",
            "owner" => "owner organisation",
            "none" => "",
            _ => "site",
        };
        let mut extra = String::new();
        for (by, periods, data) in [
            ("month", &t.months, &f.by_month),
            ("week", &t.weeks, &f.by_week),
        ] {
            let id = format!("trend-{}-by-{by}", f.key);
            let title = format!("{} by {by}", f.title);
            extra.push_str(&line_chart(&id, &title, &f.unit, per, periods, data));
            extra.push_str(&trend_table(by, &f.unit, periods, data));
        }
        section(
            h,
            &format!("trend-{}", f.key),
            &format!("Trend: {}", f.title),
            &f.definition,
            &[
                (
                    "Side by side",
                    if per.is_empty() {
                        "none (the whole scope only)".to_owned()
                    } else {
                        format!("per {per}")
                    },
                ),
                ("Unit", f.unit.clone()),
            ],
            &extra,
        );
    }
}

/// The series of a table: the whole scope first, then each site or service.
fn series(data: &TrendTable) -> Vec<(&str, &[Option<f64>])> {
    let mut out: Vec<(&str, &[Option<f64>])> = vec![("All in scope", data.all.as_slice())];
    out.extend(
        data.split
            .iter()
            .map(|s| (s.code.as_str(), s.values.as_slice())),
    );
    out
}

fn period_label(p: &TrendPeriod) -> String {
    if p.partial {
        format!("{} (partial)", p.label)
    } else {
        p.label.clone()
    }
}

/// A number as the tables and charts print it: up to two decimals, no trailing zeros.
fn number(v: f64) -> String {
    let s = format!("{v:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// The numbers of a chart as a table: a row per period, a column per series; a period with
/// nothing to measure is an empty cell.
fn trend_table(by: &str, unit: &str, periods: &[TrendPeriod], data: &TrendTable) -> String {
    let series = series(data);
    let columns: Vec<String> = series
        .iter()
        .map(|(name, _)| format!("{name} ({unit})"))
        .collect();
    let mut header = vec!["Period", "First day", "Last day"];
    header.extend(columns.iter().map(String::as_str));
    let rows: Vec<Vec<String>> = periods
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut row = vec![
                period_label(p),
                p.first_day.to_string(),
                p.last_day.to_string(),
            ];
            row.extend(series.iter().map(|(_, values)| {
                values
                    .get(i)
                    .copied()
                    .flatten()
                    .map_or_else(String::new, number)
            }));
            row
        })
        .collect();
    format!(
        "<details open><summary>The numbers, by {by}</summary>\n<div class=\"numbers\">{}</div>\n\
</details>\n",
        table(&header, &rows)
    )
}

/// The smallest of 1, 2 or 5 times a power of ten at or above `v` (at least 1).
fn nice_ceiling(v: f64) -> f64 {
    if v <= 1.0 {
        return 1.0;
    }
    let magnitude = 10f64.powf(v.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * magnitude)
        .find(|c| *c >= v)
        .unwrap_or(10.0 * magnitude)
}

/// A line chart: one line per series over the periods, a point (`<circle class="point">`)
/// for each period with a value, the line broken where a period has none. Percentages are
/// drawn on a 0 to 100 axis.
fn line_chart(
    id: &str,
    title: &str,
    unit: &str,
    per: &str,
    periods: &[TrendPeriod],
    data: &TrendTable,
) -> String {
    const LEFT: f64 = 64.0;
    const RIGHT: f64 = 16.0;
    const TOP: f64 = 36.0;
    const PLOT_W: f64 = 640.0;
    const PLOT_H: f64 = 200.0;
    const LABELS_H: f64 = 44.0;
    const LEGEND_W: f64 = 160.0;
    const LEGEND_ROW: f64 = 18.0;
    let series = series(data);
    let n = periods.len().max(1);
    let step = PLOT_W / n as f64;
    let per_row = ((PLOT_W / LEGEND_W).floor() as usize).max(1);
    let legend_rows = series.len().div_ceil(per_row);
    let width = LEFT + PLOT_W + RIGHT;
    let base = TOP + PLOT_H;
    let height = base + LABELS_H + LEGEND_ROW * legend_rows as f64 + 8.0;
    let max = series
        .iter()
        .flat_map(|(_, v)| v.iter().flatten())
        .copied()
        .fold(0.0_f64, f64::max);
    let top = if unit == "%" {
        100.0
    } else {
        nice_ceiling(max)
    };
    let x = |i: usize| LEFT + step * (i as f64 + 0.5);
    let y = |v: f64| base - (v.max(0.0) / top) * PLOT_H;
    let names: Vec<&str> = series.iter().map(|(name, _)| *name).collect();
    let (first, last) = (
        periods
            .first()
            .map(|p| p.label.as_str())
            .unwrap_or_default(),
        periods.last().map(|p| p.label.as_str()).unwrap_or_default(),
    );
    let lines = if per.is_empty() {
        "one line for all in scope".to_owned()
    } else {
        format!("one line per {per} and one for all in scope")
    };
    let desc = format!(
        "Line chart of {title} ({unit}), {first} to {last}, {lines}: {}. A period with nothing \
to measure has no point. The numbers are in the table under the chart.",
        names.join(", ")
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
            right: LEFT + PLOT_W,
        },
        Some(id),
        title,
        &desc,
    );
    // The y ticks: 0, half, top.
    for fraction in [0.0, 0.5, 1.0] {
        let ty = base - fraction * PLOT_H;
        let _ = writeln!(
            s,
            "<line x1=\"{}\" y1=\"{ty}\" x2=\"{}\" y2=\"{ty}\" stroke=\"#ddd\"/>\
<text x=\"{}\" y=\"{}\" text-anchor=\"end\" font-size=\"11\">{}</text>",
            LEFT,
            LEFT + PLOT_W,
            LEFT - 6.0,
            ty + 4.0,
            number(fraction * top)
        );
    }
    let _ = writeln!(
        s,
        "<text x=\"14\" y=\"{mid}\" text-anchor=\"middle\" font-size=\"12\" \
transform=\"rotate(-90 14 {mid})\">{}</text>",
        escape(unit),
        mid = TOP + PLOT_H / 2.0
    );
    // Period labels, as many as fit (about 56 px each).
    let every = (56.0 / step).ceil().max(1.0) as usize;
    for (i, p) in periods.iter().enumerate().filter(|(i, _)| i % every == 0) {
        let _ = writeln!(
            s,
            "<text x=\"{:.1}\" y=\"{}\" text-anchor=\"middle\" font-size=\"10\">{}</text>",
            x(i),
            base + 16.0,
            escape(&p.label)
        );
    }
    for (k, (name, values)) in series.iter().enumerate() {
        let colour = COLOURS[k % COLOURS.len()];
        let dash = DASHES[(k / COLOURS.len() + k) % DASHES.len()];
        let dash_attr = if dash.is_empty() {
            String::new()
        } else {
            format!(" stroke-dasharray=\"{dash}\"")
        };
        let width_attr = if k == 0 { 3 } else { 2 };
        // One polyline per run of consecutive periods with a value.
        let mut run: Vec<String> = Vec::new();
        let flush = |run: &mut Vec<String>, s: &mut String| {
            if run.len() > 1 {
                let _ = writeln!(
                    s,
                    "<polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\" \
stroke-width=\"{width_attr}\"{dash_attr}/>",
                    run.join(" ")
                );
            }
            run.clear();
        };
        for (i, v) in values.iter().enumerate() {
            match v {
                Some(v) => run.push(format!("{:.1},{:.1}", x(i), y(*v))),
                None => flush(&mut run, &mut s),
            }
        }
        flush(&mut run, &mut s);
        // Legend entry.
        let lx = LEFT + LEGEND_W * (k % per_row) as f64;
        let ly = base + LABELS_H + LEGEND_ROW * (k / per_row) as f64;
        let _ = writeln!(
            s,
            "<line x1=\"{lx}\" y1=\"{ly}\" x2=\"{}\" y2=\"{ly}\" stroke=\"{colour}\" \
stroke-width=\"{width_attr}\"{dash_attr}/><text x=\"{}\" y=\"{}\" font-size=\"11\">{}</text>",
            lx + 24.0,
            lx + 30.0,
            ly + 4.0,
            escape(name)
        );
    }
    // The points over every line, the whole scope's last and largest, so that a site's
    // point with the same value does not hide it.
    for (k, (name, values)) in series.iter().enumerate().rev() {
        let colour = COLOURS[k % COLOURS.len()];
        let r = if k == 0 { 4.5 } else { 3.0 };
        for (i, (p, v)) in periods.iter().zip(values.iter()).enumerate() {
            let Some(v) = v else { continue };
            let _ = writeln!(
                s,
                "<circle class=\"point\" data-series=\"{}\" data-period=\"{}\" cx=\"{:.1}\" \
cy=\"{:.1}\" r=\"{r}\" fill=\"{colour}\" stroke=\"#fff\"><title>{}, {}: {} {}</title></circle>",
                escape(name),
                escape(&p.label),
                x(i),
                y(*v),
                escape(name),
                escape(&period_label(p)),
                number(*v),
                escape(unit)
            );
        }
    }
    s.push_str("</svg>\n");
    s
}
