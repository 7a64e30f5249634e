//! Crash and resume, against real processes: a nats-server, the command service, and the
//! views service as a child process that is killed with SIGKILL (three times) while commands are
//! being appended, then restarted on the same file. When everything has been applied, its file
//! must have the same digest as a views file built by a second process from scratch.
//! Every call carries a bearer token from the fixed test issuer, which the views process is
//! told to trust (`CAREWOVEN_TRUSTED_KEYS`); the partners are registered through the command
//! API and act within their roles.

#![allow(clippy::unwrap_used)]

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use carewoven_proto::v1::{
    self, command_service_client::CommandServiceClient, progress_discharge_request as pd,
    query_service_client::QueryServiceClient, views_admin_client::ViewsAdminClient,
};
use carewoven_testkit::{
    NatsServer, Running, all_data_classes, as_org, ctx, date_days_ago, date_days_ahead,
    register_partner, signed, start_commands, test_nhs_number, ts_hours_ago,
};
use tokio::task::JoinHandle;
use tonic::transport::Channel;

const VIEWS_BIN: &str = env!("CARGO_BIN_EXE_carewoven-views");
const PEOPLE: u32 = 30;
/// SIGKILLs of the views process while the load runs.
const KILLS: usize = 3;

// ---------------------------------------------------------------------------------------------
// The views service as a child process

/// A running `carewoven-views serve`. Killed (SIGKILL) and reaped on drop, whatever happens.
struct ViewsProcess {
    child: Option<Child>,
    addr: String,
    log: PathBuf,
}

/// Write the trust file for the fixed test issuer into `dir`; returns its path.
fn trust_file(dir: &Path) -> Result<PathBuf> {
    let path = dir.join("trusted-keys.json");
    std::fs::write(
        &path,
        serde_json::to_vec(&carewoven_access::token::testing::trust())?,
    )?;
    Ok(path)
}

impl ViewsProcess {
    /// Start on `file`, on a fresh loopback port, trusting the keys in `trust`, and wait
    /// until its Status RPC answers.
    async fn start(nats_url: &str, file: &Path, log: &Path, trust: &Path) -> Result<Self> {
        let port = carewoven_testkit::free_port()?;
        let addr = format!("127.0.0.1:{port}");
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .context("opening the views log")?;
        let child = Command::new(VIEWS_BIN)
            .arg("serve")
            .arg("--listen")
            .arg(&addr)
            .arg("--file")
            .arg(file)
            .arg("--nats-url")
            .arg(nats_url)
            .env("CAREWOVEN_TRUSTED_KEYS", trust)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {VIEWS_BIN}"))?;
        let mut process = ViewsProcess {
            child: Some(child),
            addr,
            log: log.to_path_buf(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if process.status().await.is_ok() {
                return Ok(process);
            }
            if let Some(status) = process.child_mut()?.try_wait()? {
                bail!(
                    "the views process exited while starting ({status}); its log:\n{}",
                    process.log_text()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "the views process did not answer Status within 30 s; its log:\n{}",
                    process.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn child_mut(&mut self) -> Result<&mut Child> {
        self.child.as_mut().context("the views process is gone")
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn status(&self) -> Result<v1::ViewsStatus> {
        let channel = Channel::from_shared(format!("http://{}", self.addr))?
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(5))
            .connect()
            .await?;
        let request = carewoven_access::grpc::with_token(
            tonic::Request::new(v1::ViewsStatusRequest {}),
            &carewoven_testkit::partners::governance_token(),
        );
        let status = ViewsAdminClient::new(channel)
            .status(request)
            .await?
            .into_inner();
        Ok(status)
    }

    async fn queries(&self) -> Result<QueryServiceClient<Channel>> {
        let channel = Channel::from_shared(format!("http://{}", self.addr))?
            .connect()
            .await?;
        Ok(QueryServiceClient::new(channel))
    }

    /// Wait (with a deadline) until the applied position satisfies `ok`; returns it.
    async fn wait_position(
        &mut self,
        what: &str,
        timeout: Duration,
        ok: impl Fn(&v1::ViewsStatus) -> bool,
    ) -> Result<v1::ViewsStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(status) = self.status().await
                && ok(&status)
            {
                return Ok(status);
            }
            if let Some(status) = self.child_mut()?.try_wait()? {
                bail!(
                    "the views process exited ({status}) while waiting for {what}; its log:\n{}",
                    self.log_text()
                );
            }
            if Instant::now() > deadline {
                bail!(
                    "timed out after {timeout:?} waiting for {what}; last status {:?}; views log:\n{}",
                    self.status().await.ok(),
                    self.log_text()
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL, as a crash would, and reap it.
    fn kill(&mut self) -> Result<()> {
        let mut child = self.child.take().context("already stopped")?;
        child.kill()?;
        child.wait()?;
        Ok(())
    }

    /// SIGTERM and wait for a clean exit, so the file is closed.
    async fn terminate(mut self) -> Result<()> {
        let pid = self.child_mut()?.id();
        let sent = Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .status()
            .context("running kill -TERM")?;
        ensure!(sent.success(), "kill -TERM {pid} failed");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child_mut()?.try_wait()? {
                self.child = None;
                ensure!(
                    status.success(),
                    "the views process exited with {status} after SIGTERM; its log:\n{}",
                    self.log_text()
                );
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "the views process did not exit within 30 s of SIGTERM"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for ViewsProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `carewoven-views digest <file>`: one line, the digest and the position.
fn digest(file: &Path) -> Result<String> {
    let out = Command::new(VIEWS_BIN)
        .arg("digest")
        .arg(file)
        .stdin(Stdio::null())
        .output()
        .context("running carewoven-views digest")?;
    ensure!(
        out.status.success(),
        "digest of {} failed: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

// ---------------------------------------------------------------------------------------------
// The command service and the load

/// The command service in this process, with the partners the load acts for: the hospital
/// owning its site, adult social care owning its discharge-to-assess service, community
/// nursing, a home-care provider.
async fn commands(nats_url: String) -> Result<Running> {
    let service = start_commands(carewoven_commands::Config::for_nats(nats_url)).await?;
    let mut client = service.client();
    for (org, services) in [
        ("HOSP-A", &["HOSP-A"][..]),
        ("ASC", &["ASC-D2A"]),
        ("CNURSE-1", &[]),
        ("HOMECARE", &["HOMECARE-1"]),
    ] {
        register_partner(&mut client, org, services, &all_data_classes()).await?;
    }
    Ok(service)
}

/// What the load did for one person, to check the resumed views against.
#[derive(Debug, Default)]
struct Done {
    person_id: String,
    referrals: usize,
    delay_reasons: usize,
    feedback: usize,
}

fn step(person: &str, episode: &str, step: pd::Step) -> v1::ProgressDischargeRequest {
    v1::ProgressDischargeRequest {
        context: ctx("HOSP-A"),
        person_id: person.into(),
        episode_id: episode.into(),
        step: Some(step),
    }
}

/// Make a referral and take it through receive, accept (and, when `finish`, start and
/// complete).
async fn referral_cycle(
    client: &mut CommandServiceClient<Channel>,
    person: &str,
    finish: bool,
) -> Result<()> {
    let referral = client
        .make_referral(signed(v1::MakeReferralRequest {
            context: ctx("HOSP-A"),
            person_id: person.into(),
            referral: Some(v1::Referral {
                from_organisation: "HOSP-A".into(),
                to_service: "ASC-D2A".into(),
                priority: v1::Priority::Urgent as i32,
                reason: "Needs support at home after discharge".into(),
                replaces: String::new(),
            }),
        }))
        .await?
        .into_inner()
        .aggregate_id;
    let mut actions = vec![v1::ReferralAction::Receive, v1::ReferralAction::Accept];
    if finish {
        actions.extend([v1::ReferralAction::Start, v1::ReferralAction::Complete]);
    }
    for action in actions {
        client
            .progress_referral(signed(v1::ProgressReferralRequest {
                context: ctx("ASC"),
                person_id: person.into(),
                referral_id: referral.clone(),
                action: action as i32,
                reason: "synthetic reason".into(),
            }))
            .await?;
    }
    Ok(())
}

/// One person's story: registration, a referral (which relates the hospital to them), care
/// team (community nursing, added by the hospital) and coordinator, an admission through to
/// pathway 1 awaiting a service; then, round after round until `stop` is set, more referrals,
/// delay reasons and feedback.
async fn person_load(
    mut client: CommandServiceClient<Channel>,
    n: u32,
    stop: Arc<AtomicBool>,
    commands: Arc<AtomicU64>,
) -> Result<Done> {
    let person = client
        .register_person(signed(v1::RegisterPersonRequest {
            context: ctx("HOSP-A"),
            profile: Some(v1::Profile {
                nhs_number: test_nhs_number(n),
                given_name: "Ada".into(),
                family_name: format!("Example{n}"),
                date_of_birth: "1941-03-02".into(),
                what_matters: "Getting back to my allotment".into(),
                ..Default::default()
            }),
        }))
        .await
        .with_context(|| format!("registering person {n}"))?
        .into_inner()
        .person_id;
    let mut done = Done {
        person_id: person.clone(),
        ..Done::default()
    };
    let member = v1::MemberRef {
        organisation: "CNURSE-1".into(),
        practitioner: format!("P{}", n % 4),
    };
    referral_cycle(&mut client, &person, false).await?;
    done.referrals += 1;
    // The admission gives the hospital its ground; it joins the care team and adds
    // community nursing.
    let episode = client
        .admit_person(signed(v1::AdmitPersonRequest {
            context: ctx("HOSP-A"),
            person_id: person.clone(),
            site: "HOSP-A".into(),
            ward: "Ward 7".into(),
            admitted_at: ts_hours_ago(24 * 5),
        }))
        .await?
        .into_inner()
        .aggregate_id;
    for (org, who) in [("HOSP-A", None), ("CNURSE-1", Some(member.clone()))] {
        client
            .add_care_team_member(signed(v1::AddCareTeamMemberRequest {
                context: ctx("HOSP-A"),
                person_id: person.clone(),
                member: Some(who.unwrap_or(v1::MemberRef {
                    organisation: org.into(),
                    practitioner: String::new(),
                })),
                role: v1::CareTeamRole::CommunityNursing as i32,
                since: date_days_ago(30),
            }))
            .await?;
    }
    client
        .name_care_coordinator(signed(v1::NameCareCoordinatorRequest {
            context: ctx("CNURSE-1"),
            person_id: person.clone(),
            member: Some(member),
        }))
        .await?;
    for s in [
        pd::Step::SetExpectedDischargeDate(pd::SetExpectedDischargeDate {
            expected: date_days_ahead(1),
        }),
        pd::Step::MarkDischargeReady(pd::MarkDischargeReady {
            discharge_ready_date: date_days_ago(1),
        }),
        pd::Step::AssignPathway(pd::AssignPathway {
            pathway: v1::Pathway::Pathway1 as i32,
        }),
        pd::Step::RequestService(pd::RequestService {
            service: "HOMECARE-1".into(),
        }),
    ] {
        client
            .progress_discharge(signed(step(&person, &episode, s)))
            .await?;
    }
    commands.fetch_add(11, Ordering::Relaxed);

    // Rounds until told to stop (at least three).
    let mut round = 0u32;
    loop {
        referral_cycle(&mut client, &person, true).await?;
        done.referrals += 1;
        let reason = if round.is_multiple_of(2) {
            v1::DelayReason::AwaitingHomeCare
        } else {
            v1::DelayReason::AwaitingEquipment
        };
        client
            .progress_discharge(signed(step(
                &person,
                &episode,
                pd::Step::RecordDelayReason(pd::RecordDelayReason {
                    reason: reason as i32,
                    note: format!("round {round}"),
                }),
            )))
            .await?;
        done.delay_reasons += 1;
        client
            .record_feedback(signed(v1::RecordFeedbackRequest {
                context: ctx("HOSP-A"),
                person_id: person.clone(),
                feedback: Some(v1::FeedbackRecord {
                    source: v1::FeedbackSource::Carer as i32,
                    anonymous: round.is_multiple_of(3),
                    text: format!("Round {round}: kind staff"),
                    rating: 1 + round % 5,
                }),
            }))
            .await?;
        done.feedback += 1;
        commands.fetch_add(7, Ordering::Relaxed);
        round += 1;
        if round >= 3 && stop.load(Ordering::Relaxed) {
            return Ok(done);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The test

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_views_resume_to_the_same_digest_as_a_fresh_build() -> Result<()> {
    let started = Instant::now();
    let nats = NatsServer::start()?;
    let url = nats.url();
    let commands = commands(url.clone()).await?;
    let dir = tempfile::tempdir()?;
    let crashed_file = dir.path().join("views.redb");
    let crashed_log = dir.path().join("views-crashed.log");
    let trust = trust_file(dir.path())?;

    let mut views = ViewsProcess::start(&url, &crashed_file, &crashed_log, &trust).await?;

    // The load: every person's commands in sequence, all people at once.
    let stop = Arc::new(AtomicBool::new(false));
    let issued = Arc::new(AtomicU64::new(0));
    let mut load = Vec::new();
    for n in 1..=PEOPLE {
        let client = commands.client();
        load.push(tokio::spawn(person_load(
            client,
            n,
            stop.clone(),
            issued.clone(),
        )));
    }
    let load_running = |load: &[JoinHandle<Result<Done>>]| load.iter().any(|t| !t.is_finished());

    // Crash it (three times) while the load runs, each time once it has applied something (new) but
    // is still behind the log, so it is in the middle of its work.
    let mut kills = 0;
    let mut applied_before = 0;
    for _ in 0..KILLS {
        let status = views
            .wait_position(
                "the views to apply something and still be behind",
                Duration::from_secs(60),
                |s| s.log_position > applied_before && s.log_position < s.log_last_sequence,
            )
            .await?;
        ensure!(
            load_running(&load),
            "the load ended before the views were killed"
        );
        views.kill()?;
        kills += 1;
        drop(views);
        views = ViewsProcess::start(&url, &crashed_file, &crashed_log, &trust).await?;
        let resumed = views.status().await?;
        ensure!(
            resumed.log_position >= status.log_position,
            "the views went back from {} to {} after a crash",
            status.log_position,
            resumed.log_position
        );
        applied_before = resumed.log_position;
    }
    // And once more it must make progress after the last restart, still under load.
    views
        .wait_position(
            "the restarted views to apply something new",
            Duration::from_secs(60),
            |s| s.log_position > applied_before,
        )
        .await?;
    ensure!(load_running(&load), "the load ended too early");
    stop.store(true, Ordering::Relaxed);
    let mut done = Vec::new();
    for task in load {
        done.push(task.await??);
    }

    // Everything applied: position equals the stream's last sequence.
    let caught_up = views
        .wait_position(
            "the crashed views to catch up",
            Duration::from_secs(120),
            |s| s.log_position > 0 && s.log_position == s.log_last_sequence,
        )
        .await?;
    let last = caught_up.log_last_sequence;

    // Nothing lost or applied twice (delay reasons, referrals and feedback are appended to
    // lists, so a replayed event would show). Read as the hospital managing the episodes.
    let mut queries = views.queries().await?;
    for d in &done {
        let record = queries
            .get_care_record(as_org(
                "HOSP-A",
                v1::GetCareRecordRequest {
                    person_id: d.person_id.clone(),
                    min_log_position: last,
                },
            ))
            .await?
            .into_inner();
        assert_eq!(record.referrals.len(), d.referrals, "{}", d.person_id);
        assert_eq!(record.feedback.len(), d.feedback, "{}", d.person_id);
        assert_eq!(record.discharge_episodes.len(), 1);
        let episode = &record.discharge_episodes[0];
        assert_eq!(episode.status, "awaiting_service");
        assert_eq!(
            episode.delay_reasons.len(),
            d.delay_reasons,
            "{}",
            d.person_id
        );
        assert_eq!(record.log_position, last);
    }
    views.terminate().await?;

    // A second process, from scratch on a fresh file.
    let fresh_file = dir.path().join("fresh.redb");
    let mut fresh = ViewsProcess::start(
        &url,
        &fresh_file,
        &dir.path().join("views-fresh.log"),
        &trust,
    )
    .await?;
    fresh
        .wait_position(
            "the fresh views to catch up",
            Duration::from_secs(120),
            |s| s.log_position == last,
        )
        .await?;
    fresh.terminate().await?;

    let crashed = digest(&crashed_file)?;
    let rebuilt = digest(&fresh_file)?;
    assert_eq!(
        crashed, rebuilt,
        "crash-resumed and fresh views differ ({kills} kills, log position {last})"
    );
    assert!(
        crashed.ends_with(&format!("position={last}")),
        "digest line {crashed:?} names position {last}"
    );
    let empty = digest(&dir.path().join("empty.redb"))?;
    assert_ne!(crashed, empty, "the digest depends on the content");
    assert!(empty.ends_with("position=0"), "{empty}");

    commands.stop().await?;
    eprintln!(
        "crash test: {} commands, {last} events, {kills} kills, {:.1} s",
        issued.load(Ordering::Relaxed),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
