//! The clinical safety hazard log (`docs/clinical-safety/hazard-log.md`) stays true: every
//! test it names as evidence exists, every link and repository path resolves, every hazard
//! has the DCB0129 fields with a risk the matrix gives, and the hazards the issue requires
//! are there. The format is the one `docs/clinical-safety/README.md` describes; plain line
//! reading, no services.

use std::path::{Path, PathBuf};

const LOG: &str = "docs/clinical-safety/hazard-log.md";

/// The DCB0129 fields of a hazard, in the order they must appear.
const FIELDS: [&str; 7] = [
    "Hazard",
    "Causes",
    "Effect on the person",
    "Initial risk",
    "Mitigations",
    "Residual risk",
    "Status",
];

/// The hazards issue 13 part 4 names: id and words its title must contain.
const REQUIRED: [(&str, &[&str]); 8] = [
    ("H-001", &["record", "wrong organisation"]),
    ("H-002", &["handover", "lost", "wrong provider"]),
    ("H-003", &["delay", "zero"]),
    ("H-004", &["stale plan", "current"]),
    ("H-005", &["objection not applied"]),
    ("H-006", &["two records", "one person"]),
    ("H-007", &["acknowledged command", "lost"]),
    ("H-008", &["feed gap", "not detected"]),
];

const SEVERITIES: [&str; 5] = [
    "minor",
    "significant",
    "considerable",
    "major",
    "catastrophic",
];
const LIKELIHOODS: [&str; 5] = ["very low", "low", "medium", "high", "very high"];

/// NHS Digital's DCB0129 matrix: `MATRIX[likelihood][severity]`, both from the lowest.
const MATRIX: [[u8; 5]; 5] = [
    [1, 1, 2, 2, 3],
    [1, 2, 2, 3, 4],
    [2, 2, 3, 3, 4],
    [2, 3, 3, 4, 5],
    [3, 4, 4, 5, 5],
];

/// Directories a backticked span must start with to be read as a repository path.
const REPO_DIRS: [&str; 6] = [
    "crates/", "tests/", "deploy/", "docs/", "proto/", "scripts/",
];

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests package sits in the repository")
        .to_path_buf()
}

/// One `## H-NNN: title` section.
struct Hazard<'a> {
    id: &'a str,
    title: &'a str,
    /// (line number, line) of the section, heading excluded.
    lines: Vec<(usize, &'a str)>,
}

impl Hazard<'_> {
    /// The text after `- **label:**`, if the field is there.
    fn field(&self, label: &str) -> Option<&str> {
        let prefix = format!("- **{label}:**");
        self.lines
            .iter()
            .find_map(|(_, l)| l.strip_prefix(prefix.as_str()))
            .map(str::trim)
    }
}

fn hazards(doc: &str) -> Vec<Hazard<'_>> {
    let mut out: Vec<Hazard<'_>> = Vec::new();
    for (n, line) in doc.lines().enumerate() {
        if let Some(rest) = line.strip_prefix("## ") {
            let (id, title) = rest.split_once(": ").unwrap_or((rest, ""));
            out.push(Hazard {
                id,
                title,
                lines: Vec::new(),
            });
        } else if let Some(h) = out.last_mut() {
            h.lines.push((n + 1, line));
        }
    }
    out.retain(|h| h.id.starts_with("H-"));
    out
}

/// `severity X, likelihood Y, risk N` (anything after the number is a remark): the stated
/// risk and the matrix's.
fn risk(text: &str) -> Result<(u8, u8), String> {
    let bad = || format!("`{text}` is not `severity <level>, likelihood <level>, risk <n>`");
    let rest = text.strip_prefix("severity ").ok_or_else(bad)?;
    let (severity, rest) = rest.split_once(", likelihood ").ok_or_else(bad)?;
    let (likelihood, rest) = rest.split_once(", risk ").ok_or_else(bad)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let stated: u8 = digits.parse().map_err(|_| bad())?;
    let s = SEVERITIES
        .iter()
        .position(|l| *l == severity)
        .ok_or_else(|| format!("unknown severity `{severity}`"))?;
    let l = LIKELIHOODS
        .iter()
        .position(|x| *x == likelihood)
        .ok_or_else(|| format!("unknown likelihood `{likelihood}`"))?;
    Ok((stated, MATRIX[l][s]))
}

/// The backticked spans of a line.
fn code_spans(line: &str) -> impl Iterator<Item = &str> {
    line.split('`').skip(1).step_by(2)
}

/// The targets of the line's markdown links (`](target)`).
fn link_targets(line: &str) -> Vec<&str> {
    line.match_indices("](")
        .filter_map(|(i, _)| {
            let rest = &line[i + 2..];
            rest.find(')').map(|end| &rest[..end])
        })
        .collect()
}

/// A `path::test_name` reference: the file exists and defines `fn test_name(`.
fn check_test(root: &Path, reference: &str) -> Result<(), String> {
    let (path, name) = reference
        .rsplit_once("::")
        .ok_or_else(|| format!("`{reference}` is not path::test_name"))?;
    let file = root.join(path);
    let text = std::fs::read_to_string(&file)
        .map_err(|e| format!("`{reference}`: cannot read {}: {e}", file.display()))?;
    if text.contains(&format!("fn {name}(")) {
        Ok(())
    } else {
        Err(format!("`{reference}`: {path} has no `fn {name}`"))
    }
}

/// Every problem with the document `doc`, which lives in `dir` inside the repository `root`.
fn problems(doc: &str, root: &Path, dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for (n, line) in doc.lines().enumerate() {
        let at = n + 1;
        for span in code_spans(line) {
            if span.contains(".rs::") {
                if let Err(e) = check_test(root, span) {
                    out.push(format!("line {at}: {e}"));
                }
            } else if REPO_DIRS.iter().any(|d| span.starts_with(d))
                && !span.contains(' ')
                && !root.join(span).exists()
            {
                out.push(format!("line {at}: path `{span}` does not exist"));
            }
        }
        for target in link_targets(line) {
            let path = target.split('#').next().unwrap_or_default();
            if path.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            if !dir.join(path).exists() {
                out.push(format!("line {at}: link `{target}` does not resolve"));
            }
        }
    }

    let list = hazards(doc);
    if list.is_empty() {
        out.push("no `## H-NNN: title` section".to_owned());
    }
    let mut previous: Option<&str> = None;
    for h in &list {
        let id_ok = h.id.len() == 5 && h.id[2..].bytes().all(|b| b.is_ascii_digit());
        if !id_ok {
            out.push(format!("{}: the id is not H-NNN", h.id));
        }
        if previous.is_some_and(|p| p >= h.id) {
            out.push(format!("{}: ids must be unique and increasing", h.id));
        }
        previous = Some(h.id);
        if h.title.is_empty() {
            out.push(format!("{}: no title", h.id));
        }
        // Fields: each present, once, in order.
        let mut last = 0;
        for (i, label) in FIELDS.iter().enumerate() {
            let prefix = format!("- **{label}:**");
            let found: Vec<usize> = h
                .lines
                .iter()
                .filter(|(_, l)| l.starts_with(prefix.as_str()))
                .map(|(n, _)| *n)
                .collect();
            match found.as_slice() {
                [] => out.push(format!("{}: no `{prefix}` field", h.id)),
                [n] if *n < last => out.push(format!("{}: `{prefix}` is out of order", h.id)),
                [n] => last = *n,
                _ => out.push(format!("{}: `{prefix}` appears more than once", h.id)),
            }
            if i == 0 && h.field(label).is_some_and(str::is_empty) {
                out.push(format!("{}: the hazard is empty", h.id));
            }
        }
        let evidence = h
            .lines
            .iter()
            .flat_map(|(_, l)| code_spans(l))
            .filter(|s| s.contains(".rs::"))
            .count();
        if evidence == 0 {
            out.push(format!("{}: no test named as evidence", h.id));
        }
        let mut residual = None;
        for label in ["Initial risk", "Residual risk"] {
            let Some(text) = h.field(label) else { continue };
            match risk(text) {
                Ok((stated, matrix)) if stated != matrix => out.push(format!(
                    "{}: {label} states risk {stated}, the matrix gives {matrix}",
                    h.id
                )),
                Ok((stated, _)) => {
                    if label == "Residual risk" {
                        residual = Some(stated);
                    }
                }
                Err(e) => out.push(format!("{}: {label}: {e}", h.id)),
            }
        }
        match h.field("Status") {
            Some("open") | None => {}
            Some("closed") => {
                if residual.is_some_and(|r| r > 2) {
                    out.push(format!("{}: closed with a residual risk above 2", h.id));
                }
            }
            Some(other) => out.push(format!("{}: status `{other}` is not open or closed", h.id)),
        }
        // The summary table's row, if the document has one, agrees with the section.
        let row = doc
            .lines()
            .find(|l| l.starts_with(&format!("| {} |", h.id)));
        if let Some(row) = row {
            let cells: Vec<&str> = row.split('|').map(str::trim).collect();
            let want = [
                h.id.to_owned(),
                h.title.to_owned(),
                residual.map(|r| r.to_string()).unwrap_or_default(),
                h.field("Status").unwrap_or_default().to_owned(),
            ];
            if cells.get(1..5).is_none_or(|c| c != want) {
                out.push(format!(
                    "{}: the summary row `{row}` disagrees with the section",
                    h.id
                ));
            }
        }
    }
    out
}

/// The hazards the issue requires that the document lacks.
fn missing_required(doc: &str) -> Vec<String> {
    let list = hazards(doc);
    REQUIRED
        .iter()
        .filter_map(|(id, words)| {
            let title = list
                .iter()
                .find(|h| h.id == *id)
                .map(|h| h.title.to_lowercase());
            match title {
                Some(t) if words.iter().all(|w| t.contains(w)) => None,
                Some(t) => Some(format!("{id}: the title `{t}` lacks one of {words:?}")),
                None => Some(format!("{id} ({}) is missing", words.join(", "))),
            }
        })
        .collect()
}

#[test]
fn every_hazard_log_evidence_names_an_existing_test() {
    let root = root();
    let path = root.join(LOG);
    let doc = std::fs::read_to_string(&path).expect("the hazard log is readable");
    let dir = path.parent().expect("the log is in a folder");
    let mut found = problems(&doc, &root, dir);
    found.extend(missing_required(&doc));
    assert!(
        found.is_empty(),
        "{LOG} has {} problem(s):\n{}",
        found.len(),
        found.join("\n")
    );
    // The log is not vacuous: every required hazard, each with evidence, and links checked.
    let references = doc
        .lines()
        .flat_map(code_spans)
        .filter(|s| s.contains(".rs::"))
        .count();
    assert!(hazards(&doc).len() >= REQUIRED.len());
    assert!(references >= 50, "only {references} test references");
    assert!(doc.lines().map(|l| link_targets(l).len()).sum::<usize>() >= 50);
}

/// The checker itself, on a small document: a good one passes, and each kind of fault is
/// named.
#[test]
fn the_checker_names_each_broken_reference_and_missing_field() {
    let root = root();
    let dir = root.join("docs/clinical-safety");
    let good = "\
## H-001: A record shown to the wrong organisation

- **Hazard:** h
- **Causes:** c
- **Effect on the person:** e
- **Initial risk:** severity major, likelihood medium, risk 3
- **Mitigations:**
  - Control in `tests/clinical_safety.rs`. Evidence:
    `tests/clinical_safety.rs::every_hazard_log_evidence_names_an_existing_test`
    ([clinical_safety.rs](../../tests/clinical_safety.rs)).
- **Residual risk:** severity major, likelihood very low, risk 2
- **Status:** closed
";
    assert_eq!(problems(good, &root, &dir), Vec::<String>::new());

    let bogus = good
        .replace(
            "::every_hazard_log_evidence_names_an_existing_test",
            "::no_such_test",
        )
        .replace(
            "(../../tests/clinical_safety.rs)",
            "(../../tests/nowhere.rs)",
        )
        .replace(
            "Control in `tests/clinical_safety.rs`",
            "Control in `crates/nowhere.rs`",
        )
        .replace("- **Causes:** c\n", "")
        .replace("very low, risk 2", "very low, risk 1");
    let found = problems(&bogus, &root, &dir).join("\n");
    for expected in [
        "tests/clinical_safety.rs has no `fn no_such_test`",
        "link `../../tests/nowhere.rs` does not resolve",
        "path `crates/nowhere.rs` does not exist",
        "H-001: no `- **Causes:**` field",
        "H-001: Residual risk states risk 1, the matrix gives 2",
    ] {
        assert!(found.contains(expected), "{expected:?} not in:\n{found}");
    }

    // A closed hazard must have a residual risk of 2 or less, and needs a test.
    let closed_high = good.replace("very low, risk 2", "low, risk 3").replace(
        "`tests/clinical_safety.rs::every_hazard_log_evidence_names_an_existing_test`",
        "",
    );
    let found = problems(&closed_high, &root, &dir).join("\n");
    assert!(
        found.contains("closed with a residual risk above 2"),
        "{found}"
    );
    assert!(found.contains("no test named as evidence"), "{found}");

    // Only H-001 is there: the other seven required hazards are missing.
    let missing = missing_required(good);
    assert_eq!(missing.len(), 7, "{missing:?}");
    assert!(missing[0].starts_with("H-002"), "{missing:?}");
}

/// H-007: every shipped NATS server configuration with JetStream fsyncs each write before
/// acknowledging it (`sync_interval: always`), so an acknowledged command survives a crash.
#[test]
fn every_shipped_server_configuration_fsyncs_before_acknowledging() {
    let root = root();
    let mut servers = Vec::new();
    let mut pending = vec![root.join("deploy")];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).expect("deploy/ is readable") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "conf") {
                let text = std::fs::read_to_string(&path).expect("a readable configuration");
                let uncommented: Vec<&str> = text
                    .lines()
                    .map(|l| l.split('#').next().unwrap_or_default().trim())
                    .collect();
                if uncommented.iter().any(|l| l.starts_with("jetstream {")) {
                    let name = path
                        .strip_prefix(&root)
                        .unwrap_or(&path)
                        .display()
                        .to_string();
                    let fsyncs = uncommented.contains(&"sync_interval: always");
                    servers.push((name, fsyncs));
                }
            }
        }
    }
    servers.sort();
    let names: Vec<&str> = servers.iter().map(|(n, _)| n.as_str()).collect();
    for expected in ["deploy/nats-server.conf", "deploy/cluster/n1.conf"] {
        assert!(
            names.contains(&expected),
            "{expected} not found in {names:?}"
        );
    }
    let without: Vec<&str> = servers
        .iter()
        .filter(|(_, fsyncs)| !fsyncs)
        .map(|(n, _)| n.as_str())
        .collect();
    assert!(
        without.is_empty(),
        "no `sync_interval: always` in {without:?}"
    );
}
