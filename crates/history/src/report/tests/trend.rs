//! The trend view against a hand-worked history: January to March 2025, February empty.
//!
//! Range: the 3 UK calendar months ending with 2025-03, so 2025-01-01 to 2025-03-31. ISO
//! weeks: 2025-W01 (Mon 2024-12-30, cut to 01-01..01-05, partial) to 2025-W14 (Mon 03-31,
//! cut to that one day, partial): 14 weeks. British Summer Time starts 2025-03-30 01:00 UTC.
//!
//! Discharges (person = episode; all admitted 2024-12-20 unless said):
//! - J1 (51, RXH01, 85): DRD 01-06, left Mon 01-06 10:00 (W02): delay 0, pathway 1, handover
//!   16:00 (6 h). Reablement cohort; no later stay: at home on its 91st day (04-07).
//! - J2 (52, RXH01, 85): DRD 01-07, left Thu 01-09 10:00 (W02): delay 2, pathway 0, handover
//!   01-10 10:00 (24 h). Pathway 0: not in the cohort.
//! - J3 (53, RYR02, 85): DRD 01-10, left Wed 01-15 12:00 (W03): delay 5, pathway 2, no
//!   handover. Readmitted 04-10 to 04-20 at RXH01: in hospital on its 91st day (04-16).
//! - M1 (54, RXH01, 85): DRD 03-30, left 2025-03-30 22:30 UTC = Sunday 23:30 UK (W13):
//!   delay 0, pathway 3 (not in the cohort).
//! - M2 (55, RXH01, aged 54): DRD 03-28, left 2025-03-30 23:30 UTC = Monday 03-31 00:30 UK
//!   (W14): delay 3, pathway 1 (too young for the cohort), handover 03-31 11:30 UTC (12 h).
//! - M3 (56, RYR02): left 2025-03-31 23:30 UTC = 04-01 00:30 UK: April, outside the range.
//! - M4 (57, RZZ03, opted out): left 03-03: left out, and RZZ03 appears nowhere.
//! - D8 (58, RXH01): died in hospital 03-05: not a discharge.
//!
//! Referrals (SCC01 and SCC02 are local authorities, CNS01 community nursing):
//! - R1 (51, RXH01 -> SCC01): made Tue 01-07 09:00 (W02), assessed 01-09 09:00: 2 days.
//! - R2 (52, RXH01 -> SCC01): made Wed 01-08 09:00 (W02), assessed 01-12 21:00: 4.5 days.
//! - R3 (53, RYR02 -> SCC01): made Tue 03-04 09:00 (W10), never assessed.
//! - R4 (54, RXH01 -> SCC02): made Wed 03-05 09:00 (W10), assessed 03-06 09:00: 1 day.
//! - R5 (55, RXH01 -> CNS01): made 03-05, not adult social care: not counted.
//!
//! By month, all in scope (Jan, Feb, Mar):
//! - discharges 3, -, 2; delays Jan [0, 2, 5], Mar [0, 3]
//! - on the DRD 33.3, -, 50; delayed 66.7, -, 50; average 2.33, -, 1.5; bed days 7, -, 3
//! - pathway 0: 33.3, -, 0; 1: 33.3, -, 50; 2: 33.3, -, 0; 3: 0, -, 50
//! - handover median: Jan [6, 24] -> rank 1 -> 6; Mar [12] -> 12
//! - referral median: Jan [2, 4.5] -> 2; Mar [1] (R3 not assessed) -> 1
//! - at home after 91 days: Jan 1 of 2 (J1 yes, J3 no) -> 50; Mar no cohort -> -
//!
//! Per site: RXH01 2, -, 2 discharges; RYR02 1, -, - (M3 is April). Per service (referral
//! median): SCC01 2, -, - (R3 not assessed); SCC02 -, -, 1.

use super::*;

const RANGE_END: &str = "2025-06-01T00:00:00Z";

fn trend_history() -> Vec<RecordedEvent> {
    let mut h = History::default();
    h.register_orgs(
        &[
            ("SCC01", OrganisationType::LocalAuthority),
            ("SCC02", OrganisationType::LocalAuthority),
            ("CNS01", OrganisationType::CommunityProvider),
        ],
        "2024-12-01T08:00:00Z",
    );
    for who in 51..=58 {
        let born = if who == 55 {
            "1970-06-01"
        } else {
            "1940-01-01"
        };
        h.register_born(who, "Quentin", "Zephyr-Test", born, "2024-12-01T09:00:00Z");
    }
    h.consent(57, 57, ConsentDecision::Deny, Purpose::Research);
    // (person = episode, site, DRD, left at, pathway)
    let stays: [(u128, &str, &str, &str, Pathway); 7] = [
        (
            51,
            "RXH01",
            "2025-01-06",
            "2025-01-06T10:00:00Z",
            Pathway::P1,
        ),
        (
            52,
            "RXH01",
            "2025-01-07",
            "2025-01-09T10:00:00Z",
            Pathway::P0,
        ),
        (
            53,
            "RYR02",
            "2025-01-10",
            "2025-01-15T12:00:00Z",
            Pathway::P2,
        ),
        (
            54,
            "RXH01",
            "2025-03-30",
            "2025-03-30T22:30:00Z",
            Pathway::P3,
        ),
        (
            55,
            "RXH01",
            "2025-03-28",
            "2025-03-30T23:30:00Z",
            Pathway::P1,
        ),
        (
            56,
            "RYR02",
            "2025-03-31",
            "2025-03-31T23:30:00Z",
            Pathway::P1,
        ),
        (
            57,
            "RZZ03",
            "2025-03-03",
            "2025-03-03T10:00:00Z",
            Pathway::P1,
        ),
    ];
    for (n, site, drd, left, pathway) in stays {
        h.admit(n, n, site, "2024-12-20T08:00:00Z");
        h.ready(n, n, site, &format!("{drd}T06:00:00Z"), drd, None);
        h.pathway(n, n, site, &format!("{drd}T07:00:00Z"), pathway);
        h.discharged(n, n, site, left);
    }
    h.handover(51, 51, "2025-01-06T16:00:00Z");
    h.handover(52, 52, "2025-01-10T10:00:00Z");
    h.handover(55, 55, "2025-03-31T11:30:00Z");
    // J3 is back in hospital on its 91st day.
    h.admit(53, 63, "RXH01", "2025-04-10T09:00:00Z");
    h.discharged(53, 63, "RXH01", "2025-04-20T10:00:00Z");
    // D8 dies in hospital.
    h.admit(58, 58, "RXH01", "2025-03-01T08:00:00Z");
    h.discharge(
        58,
        58,
        "2025-03-05T08:00:00Z",
        "RXH01",
        DischargeEvent::Died {
            died_at: at("2025-03-05T08:00:00Z"),
        },
    );
    // Referrals: (person = referral, from, to, made, assessed)
    let referrals: [(u128, &str, &str, &str, Option<&str>); 5] = [
        (
            51,
            "RXH01",
            "SCC01",
            "2025-01-07T09:00:00Z",
            Some("2025-01-09T09:00:00Z"),
        ),
        (
            52,
            "RXH01",
            "SCC01",
            "2025-01-08T09:00:00Z",
            Some("2025-01-12T21:00:00Z"),
        ),
        (53, "RYR02", "SCC01", "2025-03-04T09:00:00Z", None),
        (
            54,
            "RXH01",
            "SCC02",
            "2025-03-05T09:00:00Z",
            Some("2025-03-06T09:00:00Z"),
        ),
        (55, "RXH01", "CNS01", "2025-03-05T09:00:00Z", None),
    ];
    for (n, from, to, made, assessed) in referrals {
        h.push(
            n,
            referral(n),
            made,
            from,
            Event::Referral(ReferralEvent::Submitted {
                referral: NewReferral {
                    from_organisation: code(from),
                    to_service: code(to),
                    priority: Priority::Routine,
                    reason: long("needs support at home"),
                    replaces: None,
                },
            }),
        );
        if let Some(done) = assessed {
            h.assess(n, n, n, AssessmentKind::CareActNeeds, made, done);
        }
    }
    h.events.reverse();
    h.events
}

fn march_trend(events: &[RecordedEvent], months: u32, scope: &[Code]) -> Trend {
    trend(
        events,
        (2025, 3),
        months,
        scope,
        &opted_out(events),
        at(RANGE_END),
    )
    .expect("a real month")
}

fn figure<'t>(t: &'t Trend, key: &str) -> &'t TrendFigure {
    t.figures
        .iter()
        .find(|f| f.key == key)
        .unwrap_or_else(|| panic!("figure {key}"))
}

fn split<'t>(table: &'t TrendTable, code: &str) -> &'t [Option<f64>] {
    &table
        .split
        .iter()
        .find(|s| s.code == code)
        .unwrap_or_else(|| panic!("series {code}"))
        .values
}

#[test]
fn the_trend_history_replays_with_the_domain_rules() {
    let states = replay(trend_history());
    assert!(matches!(
        states.get(&episode(58)),
        Some(AggregateState::Discharge(_))
    ));
    assert!(opted_out(&trend_history()).contains(&person(57)));
}

#[test]
fn trend_periods_are_whole_uk_months_and_cut_iso_weeks() {
    let t = march_trend(&trend_history(), 3, &[]);
    assert_eq!(
        (t.first_day, t.last_day),
        (day("2025-01-01"), day("2025-03-31"))
    );
    let months: Vec<&str> = t.months.iter().map(|p| p.label.as_str()).collect();
    assert_eq!(months, ["2025-01", "2025-02", "2025-03"]);
    assert_eq!(t.months[1].last_day, day("2025-02-28"));
    assert_eq!(t.weeks.len(), 14);
    let first = &t.weeks[0];
    assert_eq!(
        (
            first.label.as_str(),
            first.first_day,
            first.last_day,
            first.partial
        ),
        ("2025-W01", day("2025-01-01"), day("2025-01-05"), true)
    );
    assert_eq!(
        (
            t.weeks[1].label.as_str(),
            t.weeks[1].first_day,
            t.weeks[1].partial
        ),
        ("2025-W02", day("2025-01-06"), false)
    );
    let last = &t.weeks[13];
    assert_eq!(
        (
            last.label.as_str(),
            last.first_day,
            last.last_day,
            last.partial
        ),
        ("2025-W14", day("2025-03-31"), day("2025-03-31"), true)
    );
    // Across a year end, the ISO year names the week: 2024-12-30 is in 2025-W01.
    let t = trend(&[], (2025, 1), 2, &[], &HashSet::new(), at(RANGE_END)).expect("months");
    assert_eq!(t.first_day, day("2024-12-01"));
    assert_eq!(t.weeks[0].label, "2024-W48");
    assert!(t.weeks.iter().any(|w| w.label == "2025-W01" && !w.partial));
    // Nothing to measure anywhere: every value empty, no per-site series.
    for f in &t.figures {
        assert!(f.by_month.all.iter().all(Option::is_none), "{}", f.key);
        assert!(f.by_week.split.is_empty(), "{}", f.key);
    }
    // Months that do not exist, or a run of none or too many, give nothing.
    assert!(trend(&[], (2025, 13), 3, &[], &HashSet::new(), at(RANGE_END)).is_none());
    assert!(trend(&[], (2025, 3), 0, &[], &HashSet::new(), at(RANGE_END)).is_none());
    assert!(
        trend(
            &[],
            (2025, 3),
            TREND_MAX_MONTHS + 1,
            &[],
            &HashSet::new(),
            at(RANGE_END)
        )
        .is_none()
    );
}

#[test]
fn trend_by_month_matches_the_hand_calculation() {
    let t = march_trend(&trend_history(), 3, &[]);
    let by_month = |key: &str| figure(&t, key).by_month.all.clone();
    assert_eq!(by_month("discharges"), [Some(3.0), None, Some(2.0)]);
    assert_eq!(
        by_month("discharged_on_drd_percent"),
        [Some(33.3), None, Some(50.0)]
    );
    assert_eq!(
        by_month("delayed_one_day_or_more_percent"),
        [Some(66.7), None, Some(50.0)]
    );
    assert_eq!(
        by_month("average_days_drd_to_discharge"),
        [Some(2.33), None, Some(1.5)]
    );
    assert_eq!(by_month("bed_days_lost"), [Some(7.0), None, Some(3.0)]);
    assert_eq!(by_month("pathway_0_percent"), [Some(33.3), None, Some(0.0)]);
    assert_eq!(
        by_month("pathway_1_percent"),
        [Some(33.3), None, Some(50.0)]
    );
    assert_eq!(by_month("pathway_2_percent"), [Some(33.3), None, Some(0.0)]);
    assert_eq!(by_month("pathway_3_percent"), [Some(0.0), None, Some(50.0)]);
    assert_eq!(
        by_month("handover_median_hours"),
        [Some(6.0), None, Some(12.0)]
    );
    assert_eq!(
        by_month("referral_to_assessment_median_days"),
        [Some(2.0), None, Some(1.0)]
    );
    assert_eq!(
        by_month("at_home_91_days_percent"),
        [Some(50.0), None, None]
    );

    // Side by side: per site, and per receiving service for referrals. The opted-out
    // person's site does not appear at all.
    let discharges = &figure(&t, "discharges").by_month;
    let sites: Vec<&str> = discharges.split.iter().map(|s| s.code.as_str()).collect();
    assert_eq!(sites, ["RXH01", "RYR02"]);
    assert_eq!(split(discharges, "RXH01"), [Some(2.0), None, Some(2.0)]);
    assert_eq!(split(discharges, "RYR02"), [Some(1.0), None, None]);
    let handover = &figure(&t, "handover_median_hours").by_month;
    assert_eq!(split(handover, "RXH01"), [Some(6.0), None, Some(12.0)]);
    assert_eq!(split(handover, "RYR02"), [None, None, None]);
    let referrals = &figure(&t, "referral_to_assessment_median_days");
    assert_eq!(referrals.split_by, "service");
    let services: Vec<&str> = referrals
        .by_month
        .split
        .iter()
        .map(|s| s.code.as_str())
        .collect();
    assert_eq!(services, ["SCC01", "SCC02"]);
    assert_eq!(split(&referrals.by_month, "SCC01"), [Some(2.0), None, None]);
    assert_eq!(split(&referrals.by_month, "SCC02"), [None, None, Some(1.0)]);

    // The chosen month's figures agree with NHS England's tables for it.
    let events = trend_history();
    let tables = nhs_tables(&events, 2025, 1, &[], &opted_out(&events), at(RANGE_END))
        .expect("a real month");
    let d = &tables.drd_statistics;
    assert_eq!(
        (
            Some(d.total_discharges as f64),
            d.discharged_on_drd_percent,
            d.average_days_including_zero,
            Some(d.bed_days_lost as f64),
            tables.reablement.percent,
        ),
        (
            by_month("discharges")[0],
            by_month("discharged_on_drd_percent")[0],
            by_month("average_days_drd_to_discharge")[0],
            by_month("bed_days_lost")[0],
            by_month("at_home_91_days_percent")[0],
        )
    );
}

#[test]
fn trend_by_week_counts_the_uk_calendar_day_of_each_instant() {
    let t = march_trend(&trend_history(), 3, &[]);
    let week = |label: &str| {
        t.weeks
            .iter()
            .position(|w| w.label == label)
            .unwrap_or_else(|| panic!("week {label}"))
    };
    let discharges = &figure(&t, "discharges").by_week.all;
    let with_values: Vec<(&str, f64)> = t
        .weeks
        .iter()
        .zip(discharges)
        .filter_map(|(w, v)| v.map(|v| (w.label.as_str(), v)))
        .collect();
    // Sunday 23:30 UK (22:30 UTC) is in W13; 23:30 UTC the same evening is Monday 00:30 UK,
    // so W14; and 23:30 UTC on 03-31 is already April in the UK.
    assert_eq!(
        with_values,
        [
            ("2025-W02", 2.0),
            ("2025-W03", 1.0),
            ("2025-W13", 1.0),
            ("2025-W14", 1.0)
        ]
    );
    let bed_days = &figure(&t, "bed_days_lost").by_week.all;
    assert_eq!(bed_days[week("2025-W02")], Some(2.0));
    assert_eq!(bed_days[week("2025-W03")], Some(5.0));
    assert_eq!(bed_days[week("2025-W13")], Some(0.0));
    assert_eq!(bed_days[week("2025-W14")], Some(3.0));
    assert_eq!(bed_days[week("2025-W07")], None, "an empty week is not 0");
    let on_drd = &figure(&t, "discharged_on_drd_percent").by_week.all;
    assert_eq!(on_drd[week("2025-W02")], Some(50.0));
    assert_eq!(on_drd[week("2025-W13")], Some(100.0));
    assert_eq!(on_drd[week("2025-W14")], Some(0.0));
    let referrals = &figure(&t, "referral_to_assessment_median_days").by_week.all;
    assert_eq!(referrals[week("2025-W02")], Some(2.0));
    assert_eq!(referrals[week("2025-W10")], Some(1.0));
    let rxh = split(&figure(&t, "discharges").by_week, "RXH01");
    assert_eq!(rxh[week("2025-W03")], None);
    assert_eq!(rxh[week("2025-W13")], Some(1.0));
}

#[test]
fn trend_scope_keeps_the_provider_and_its_referrals() {
    let events = trend_history();
    let t = march_trend(&events, 3, &[code("RYR02")]);
    assert_eq!(t.scope, ["RYR02"]);
    let discharges = &figure(&t, "discharges").by_month;
    assert_eq!(discharges.all, [Some(1.0), None, None]);
    let sites: Vec<&str> = discharges.split.iter().map(|s| s.code.as_str()).collect();
    assert_eq!(sites, ["RYR02"]);
    // Only R3 (from RYR02), never assessed.
    let referrals = &figure(&t, "referral_to_assessment_median_days").by_month;
    assert_eq!(referrals.all, [None, None, None]);
    assert_eq!(referrals.split.len(), 1);
    // One month ending with March.
    let t = march_trend(&events, 1, &[]);
    assert_eq!(t.months.len(), 1);
    assert_eq!(figure(&t, "discharges").by_month.all, [Some(2.0)]);
    // The opted-out person counts once the objection is not known.
    let t = trend(&events, (2025, 3), 1, &[], &HashSet::new(), at(RANGE_END)).expect("trend");
    assert_eq!(figure(&t, "discharges").by_month.all, [Some(3.0)]);
    assert!(
        figure(&t, "discharges")
            .by_month
            .split
            .iter()
            .any(|s| s.code == "RZZ03")
    );
}

#[test]
fn trend_csv_has_a_file_per_table_with_empty_cells_for_no_data() {
    let t = march_trend(&trend_history(), 3, &[]);
    let files = t.csv();
    let names: Vec<String> = files.iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(names, trend_csv_files());
    assert_eq!(names.len(), 28);
    let csv: BTreeMap<String, String> = files.into_iter().collect();
    assert_eq!(
        csv["trend_discharges_by_month.csv"],
        "period,first_day,last_day,partial,all,RXH01,RYR02\n\
2025-01,2025-01-01,2025-01-31,false,3,2,1\n\
2025-02,2025-02-01,2025-02-28,false,,,\n\
2025-03,2025-03-01,2025-03-31,false,2,2,\n"
    );
    let weeks = &csv["trend_average_days_drd_to_discharge_by_week.csv"];
    assert_eq!(weeks.lines().count(), 1 + 14);
    assert_eq!(
        weeks.lines().nth(1),
        Some("2025-W01,2025-01-01,2025-01-05,true,,,")
    );
    assert_eq!(
        weeks.lines().nth(2),
        Some("2025-W02,2025-01-06,2025-01-12,false,1,1,")
    );
    assert_eq!(
        csv["trend_referral_to_assessment_median_days_by_month.csv"]
            .lines()
            .next(),
        Some("period,first_day,last_day,partial,all,SCC01,SCC02")
    );
}

/// Each `<svg>...</svg>` of the page, parsed as XML.
fn svgs(html: &str) -> Vec<String> {
    html.match_indices("<svg")
        .map(|(start, _)| {
            let end = html[start..].find("</svg>").expect("closed") + start + "</svg>".len();
            html[start..end].to_owned()
        })
        .collect()
}

#[test]
fn trend_charts_are_well_formed_svg_with_a_point_per_period_and_a_table() {
    let events = trend_history();
    let mut report = service_review(
        &events,
        at("2025-01-01T00:00:00Z"),
        at("2025-04-01T00:00:00Z"),
        &[],
        &opted_out(&events),
    );
    let t = march_trend(&events, 3, &[]);
    report.trend = Some(t.clone());
    let html = to_html(&report);
    let charts = svgs(&html);
    // The report's own three charts, then two per trend figure.
    assert_eq!(charts.len(), 3 + 2 * t.figures.len());
    for svg in &charts {
        let doc = roxmltree::Document::parse(svg).unwrap_or_else(|e| panic!("{e}: {svg}"));
        let root = doc.root_element();
        assert_eq!(root.tag_name().name(), "svg");
        for name in ["title", "desc"] {
            assert!(
                root.children().any(|n| n.has_tag_name(name)),
                "every chart has a {name}"
            );
        }
    }
    for f in &t.figures {
        for (by, periods, data) in [
            ("month", &t.months, &f.by_month),
            ("week", &t.weeks, &f.by_week),
        ] {
            let id = format!("trend-{}-by-{by}", f.key);
            let svg = charts
                .iter()
                .find(|s| s.contains(&format!("id=\"{id}-title\"")))
                .unwrap_or_else(|| panic!("chart {id}"));
            let doc = roxmltree::Document::parse(svg).expect("well-formed");
            let root = doc.root_element();
            assert_eq!(
                root.attribute("aria-labelledby"),
                Some(format!("{id}-title {id}-desc").as_str())
            );
            let desc = root
                .children()
                .find(|n| n.has_tag_name("desc"))
                .and_then(|n| n.text())
                .expect("a desc");
            assert!(desc.contains("The numbers are in the table"), "{desc}");
            // One point per period with a value, in period order, for every series.
            let mut all_series = vec![("All in scope", &data.all)];
            all_series.extend(data.split.iter().map(|s| (s.code.as_str(), &s.values)));
            for (name, values) in all_series {
                let points: Vec<&str> = root
                    .descendants()
                    .filter(|n| {
                        n.has_tag_name("circle") && n.attribute("data-series") == Some(name)
                    })
                    .map(|n| n.attribute("data-period").expect("period"))
                    .collect();
                let expected: Vec<&str> = periods
                    .iter()
                    .zip(values.iter())
                    .filter(|(_, v)| v.is_some())
                    .map(|(p, _)| p.label.as_str())
                    .collect();
                assert_eq!(points, expected, "{id} {name}");
            }
        }
    }
    // Every period has a point where every period has data: discharges by month for
    // March alone, and its definition beside it.
    let mut one = report.clone();
    one.trend = Some(march_trend(&events, 1, &[]));
    let html_one = to_html(&one);
    let svg = svgs(&html_one)
        .into_iter()
        .find(|s| s.contains("id=\"trend-discharges-by-month-title\""))
        .expect("chart");
    let doc = roxmltree::Document::parse(&svg).expect("well-formed");
    let points = doc
        .descendants()
        .filter(|n| n.has_tag_name("circle") && n.attribute("data-series") == Some("All in scope"))
        .count();
    assert_eq!(points, 1);
    // The numbers under the chart, an empty cell for the empty February, and each
    // figure's definition.
    assert!(html.contains(
        "<tr><td>2025-02</td><td>2025-02-01</td><td>2025-02-28</td><td></td><td></td><td></td></tr>"
    ));
    assert!(html.contains(
        "<tr><td>2025-01</td><td>2025-01-01</td><td>2025-01-31</td><td>3</td><td>2</td><td>1</td></tr>"
    ));
    assert!(html.contains("<td>2025-W01 (partial)</td>"));
    assert!(html.contains(&html::escape(TREND_DEFINITION)));
    for f in &t.figures {
        assert!(html.contains(&html::escape(&f.definition)), "{}", f.key);
    }
    // Self-contained, no script, no names.
    let without_svg_ns = html.replace("http://www.w3.org/2000/svg", "");
    for absent in [
        "<script", "http://", "https://", "src=", "Quentin", "Zephyr", "999",
    ] {
        assert!(!without_svg_ns.contains(absent), "{absent}");
    }
    // JSON round trip with the trend.
    let back: Report = serde_json::from_str(&to_json(&report)).expect("JSON");
    assert_eq!(back, report);
}
