//! The web screens in a real browser: a real nats-server, the command service, the views
//! service with its web listener and the gateway, all on 127.0.0.1, and Debian's headless
//! Chromium driven through chromedriver (WebDriver). A discharge coordinator signs in with the
//! development link, watches the board update live when a command is sent, sorts and filters
//! it and opens a record; an unrelated organisation sees no one, and a record it may not read
//! looks exactly like one that does not exist. A screenshot of the board is saved as a test
//! artefact (`target/test-artefacts/board.png`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use carewoven_proto::v1::{self, progress_discharge_request as pd};
use carewoven_testkit::*;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// How long the page may take to show what the test waits for.
const PATIENCE: Duration = Duration::from_secs(20);

/// chromedriver on a free port, killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start() -> Result<Self> {
        for (path, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
            anyhow::ensure!(
                Path::new(path).exists(),
                "{path} is missing: the browser test needs headless Chromium and its driver from \
                 Debian's packages (chromium, chromium-driver); run scripts/tools to install them \
                 (package {package})"
            );
        }
        let port = free_port()?;
        let child = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting chromedriver")?;
        let driver = Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        wait_until("chromedriver to listen", Duration::from_secs(20), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        })?;
        Ok(driver)
    }

    /// A fresh headless browser session (its own profile: nothing shared between sessions).
    async fn session(&self, profile: &Path) -> Result<Client> {
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": CHROMIUM,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--window-size=1400,1000", "--no-first-run",
                    format!("--user-data-dir={}", profile.display()),
                ],
            }),
        );
        ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&self.url)
            .await
            .context("opening a Chromium session through chromedriver")
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Wait until `probe` answers `Some`, with a deadline (never a bare sleep).
async fn until<T, F, Fut>(what: &str, mut probe: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let deadline = Instant::now() + PATIENCE;
    let mut last = None;
    loop {
        match probe().await {
            Ok(Some(v)) => return Ok(v),
            Ok(None) => {}
            Err(e) => last = Some(e),
        }
        if Instant::now() > deadline {
            return Err(match last {
                Some(e) => e.context(format!("timed out waiting for {what}")),
                None => anyhow::anyhow!("timed out after {PATIENCE:?} waiting for {what}"),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The texts of the board's cells in column `col`, top to bottom.
async fn column(c: &Client, col: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    for cell in c
        .find_all(Locator::Css(&format!("#board tbody [data-col=\"{col}\"]")))
        .await?
    {
        out.push(cell.text().await?);
    }
    Ok(out)
}

async fn text(c: &Client, css: &str) -> Result<String> {
    Ok(c.find(Locator::Css(css)).await?.text().await?)
}

/// Wait until the board shows the episodes `expected` (in any order).
async fn board_shows(c: &Client, expected: &[&str]) -> Result<()> {
    let mut want: Vec<String> = expected.iter().map(|s| (*s).to_owned()).collect();
    want.sort();
    until(&format!("the board to show {want:?}"), || async {
        let mut shown = Vec::new();
        for row in c.find_all(Locator::Css("#board tbody tr")).await? {
            shown.push(row.attr("data-episode").await?.unwrap_or_default());
        }
        shown.sort();
        Ok((shown == want).then_some(()))
    })
    .await
}

/// A person registered by `HOSP-A` (`n`: their synthetic NHS number), admitted, discharge
/// ready `days` ago and on `pathway`; returns the person and episode ids.
async fn ready_person(
    client: &mut v1::command_service_client::CommandServiceClient<tonic::transport::Channel>,
    n: u32,
    days: u64,
    pathway: v1::Pathway,
) -> Result<(String, String)> {
    let person = register(client, n).await?;
    let episode = client
        .admit_person(signed(v1::AdmitPersonRequest {
            context: ctx("HOSP-A"),
            person_id: person.clone(),
            site: "HOSP-A".into(),
            ward: "Ward 7".into(),
            admitted_at: ts_hours_ago(24 * 14),
        }))
        .await?
        .into_inner()
        .aggregate_id;
    for step in [
        pd::Step::SetExpectedDischargeDate(pd::SetExpectedDischargeDate {
            expected: date_days_ahead(1),
        }),
        pd::Step::MarkDischargeReady(pd::MarkDischargeReady {
            discharge_ready_date: date_days_ago(days),
        }),
        pd::Step::AssignPathway(pd::AssignPathway {
            pathway: pathway as i32,
        }),
    ] {
        client
            .progress_discharge(signed(discharge_step(&person, &episode, step)))
            .await?;
    }
    Ok((person, episode))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_watches_the_board_live_and_an_outsider_sees_nothing() -> Result<()> {
    let started = Instant::now();
    let driver = Driver::start()?;
    let stack = Stack::start().await?;
    let dir = tempfile::tempdir()?;
    let (gateway, _) = start_gateway(carewoven_gateway::Config::for_nats(stack.nats.url())).await?;
    let web = format!("127.0.0.1:{}", free_port()?);
    let mut config = carewoven_views::Config::new(stack.nats.url(), dir.path().join("views.redb"));
    config.web_listen = Some(web.clone());
    config.web_audit_server = Some(format!("http://{}", gateway.addr));
    config.web_commands_server = Some(format!("http://{}", stack.service.addr));
    let views = start_views(config).await?;
    let mut client = stack.client.clone();

    // Three people on the board: nine, five and two days past their Discharge Ready Date.
    let (p9, e9) = ready_person(&mut client, 501, 9, v1::Pathway::Pathway1).await?;
    let (p5, e5) = ready_person(&mut client, 502, 5, v1::Pathway::Pathway1).await?;
    let (p2, e2) = ready_person(&mut client, 503, 2, v1::Pathway::Pathway2).await?;
    client
        .progress_discharge(signed(discharge_step(
            &p9,
            &e9,
            pd::Step::RecordDelayReason(pd::RecordDelayReason {
                reason: v1::DelayReason::Pathway1NewCare as i32,
                note: "Care provider found, starts Monday".into(),
            }),
        )))
        .await?;

    // The hospital's discharge coordinator signs in with the development link: the token
    // travels in the fragment, which the page moves to the tab's storage and out of the
    // address at once.
    let profiles = tempfile::tempdir()?;
    let coordinator = driver.session(&profiles.path().join("coordinator")).await?;
    coordinator
        .goto(&format!("http://{web}/#token={}", token("HOSP-A")))
        .await?;
    board_shows(&coordinator, &[&e9, &e5, &e2]).await?;
    let address = coordinator.current_url().await?;
    assert!(
        address.fragment().is_none() && address.query().is_none(),
        "the token left the address: {address}"
    );
    until("the board to be live", || async {
        Ok((text(&coordinator, "#board-link").await? == "Live").then_some(()))
    })
    .await?;

    // Sorted by days delayed, most first; the header's button sorts the other way.
    assert_eq!(column(&coordinator, "days").await?, ["9", "5", "2"]);
    coordinator
        .find(Locator::Css("#sort-days"))
        .await?
        .click()
        .await?;
    assert_eq!(column(&coordinator, "days").await?, ["2", "5", "9"]);
    let sorted = coordinator
        .find(Locator::Css("th[data-sort=\"days\"]"))
        .await?
        .attr("aria-sort")
        .await?;
    assert_eq!(sorted.as_deref(), Some("ascending"));
    let reasons = column(&coordinator, "reasons").await?;
    assert!(
        reasons[2].contains("Pathway 1: new care: Care provider found, starts Monday"),
        "delay reason and note of the longest wait: {reasons:?}"
    );
    // The hospital's agreement covers demographics: names and NHS numbers are shown.
    let people = column(&coordinator, "person").await?;
    assert!(
        people[2].contains("Ada Example") && people[2].contains(&test_nhs_number(501)),
        "{people:?}"
    );

    // A command sent through gRPC shows on the open page without a reload.
    coordinator
        .execute("window.notReloaded = true; return true;", vec![])
        .await?;
    client
        .progress_discharge(signed(discharge_step(
            &p2,
            &e2,
            pd::Step::RecordDelayReason(pd::RecordDelayReason {
                reason: v1::DelayReason::AwaitingPatientTransport as i32,
                note: String::new(),
            }),
        )))
        .await?;
    client
        .progress_discharge(signed(discharge_step(
            &p2,
            &e2,
            pd::Step::RequestService(pd::RequestService {
                service: "ASC-REABLE".into(),
            }),
        )))
        .await?;
    for step in [
        pd::Step::RequestService(pd::RequestService {
            service: "ASC-REABLE".into(),
        }),
        pd::Step::AgreeDischarge(pd::AgreeDischarge {
            service: "ASC-REABLE".into(),
            planned_for: date_days_ago(0),
        }),
        pd::Step::Discharge(pd::Discharge {
            discharged_at: ts_hours_ago(3),
            destination: "Home".into(),
            destination_code: "19".into(),
        }),
    ] {
        client
            .progress_discharge(signed(discharge_step(&p5, &e5, step)))
            .await?;
    }
    let row = format!("#board tr[data-episode=\"{e2}\"]");
    until(
        "the board to show the new delay reason and status live",
        || async {
            let status = text(&coordinator, &format!("{row} [data-col=\"status\"]")).await?;
            let reasons = text(&coordinator, &format!("{row} [data-col=\"reasons\"]")).await?;
            Ok(
                (status == "Awaiting service" && reasons.contains("Awaiting patient transport"))
                    .then_some(()),
            )
        },
    )
    .await?;
    let left = format!("#board tr[data-episode=\"{e5}\"]");
    until("the discharge to show live", || async {
        let status = text(&coordinator, &format!("{left} [data-col=\"status\"]")).await?;
        let hours = text(&coordinator, &format!("{left} [data-col=\"hours\"]")).await?;
        let due = text(
            &coordinator,
            &format!("{left} [data-col=\"home-assessment\"]"),
        )
        .await?;
        Ok((status == "Discharged" && hours == "3" && due.starts_with("20")).then_some(()))
    })
    .await?;
    let same_page = coordinator
        .execute("return window.notReloaded === true;", vec![])
        .await?;
    assert_eq!(same_page, json!(true), "the page was reloaded");

    // Filters: by pathway, then by delay reason, then none.
    coordinator
        .find(Locator::Css("#filter-pathway"))
        .await?
        .select_by_value("PATHWAY_2")
        .await?;
    board_shows(&coordinator, &[&e2]).await?;
    coordinator
        .find(Locator::Css("#filter-pathway"))
        .await?
        .select_by_value("")
        .await?;
    coordinator
        .find(Locator::Css("#filter-reason"))
        .await?
        .select_by_value("DELAY_REASON_PATHWAY_1_NEW_CARE")
        .await?;
    board_shows(&coordinator, &[&e9]).await?;
    coordinator
        .find(Locator::Css("#filter-reason"))
        .await?
        .select_by_value("")
        .await?;
    coordinator
        .find(Locator::Css("#filter-status"))
        .await?
        .select_by_value("awaiting_service")
        .await?;
    board_shows(&coordinator, &[&e2]).await?;
    coordinator
        .find(Locator::Css("#filter-status"))
        .await?
        .select_by_value("")
        .await?;
    board_shows(&coordinator, &[&e9, &e5, &e2]).await?;

    // The board as a test artefact.
    let artefacts = target_dir().join("test-artefacts");
    std::fs::create_dir_all(&artefacts)?;
    let png = artefacts.join("board.png");
    std::fs::write(&png, coordinator.screenshot().await?)?;
    println!("screenshot of the board: {}", png.display());

    // Open a record from the board: its sections, and who accessed it (this read included).
    coordinator
        .find(Locator::Css(&format!(
            "#board tr[data-episode=\"{e9}\"] [data-col=\"person\"] a"
        )))
        .await?
        .click()
        .await?;
    until("the record to open", || async {
        Ok((text(&coordinator, "#record-title").await? == "Ada Example").then_some(()))
    })
    .await?;
    assert_eq!(
        coordinator.current_url().await?.path(),
        format!("/record/{p9}")
    );
    let record = text(&coordinator, "#record").await?;
    for expected in [
        "Getting back to my allotment",
        &test_nhs_number(501),
        "Discharge episodes",
        "Pathway 1: new care: Care provider found, starts Monday",
    ] {
        assert!(record.contains(expected), "record lacks {expected:?}");
    }
    until("the access list to show the hospital's reads", || async {
        let record = text(&coordinator, "#record").await?;
        Ok(
            (record.contains("Who accessed this record") && record.contains("HOSP-A"))
                .then_some(()),
        )
    })
    .await?;

    // An organisation with no relationship to anyone here: a live, empty board, and a
    // record it may not read answers exactly as a person who does not exist.
    let outsider = driver.session(&profiles.path().join("outsider")).await?;
    outsider
        .goto(&format!("http://{web}/#token={}", token("COMM")))
        .await?;
    until("the outsider's board to be live", || async {
        Ok((text(&outsider, "#board-link").await? == "Live").then_some(()))
    })
    .await?;
    assert!(
        outsider
            .find_all(Locator::Css("#board tbody tr"))
            .await?
            .is_empty()
    );
    assert_eq!(
        text(&outsider, "#board-count").await?,
        "0 of 0 people shown"
    );
    let refusal = |id: String| {
        let outsider = outsider.clone();
        let web = web.clone();
        async move {
            outsider.goto(&format!("http://{web}/record/{id}")).await?;
            until("the record's refusal", || async {
                let error = text(&outsider, "#record-error").await?;
                let record = text(&outsider, "#record").await?;
                Ok((!error.is_empty()).then_some((error, record)))
            })
            .await
        }
    };
    let unreadable = refusal(p9.clone()).await?;
    let nobody = refusal(uuid::Uuid::new_v4().to_string()).await?;
    assert_eq!(unreadable, nobody);
    assert!(unreadable.0.contains("no such person"), "{unreadable:?}");

    outsider.close().await?;
    coordinator.close().await?;
    views.stop().await?;
    gateway.stop().await?;
    stack.service.stop().await?;
    println!("browser test took {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Cargo's target directory (where test artefacts are kept).
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target"))
}
