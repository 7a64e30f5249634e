//! Shared set-up for the end-to-end tests (`test-util`): a real nats-server per test and the
//! command service serving real gRPC on a loopback port, the views and the gateway beside it,
//! and the requests the journeys send.
//!
//! Every call carries a bearer token from the fixed test issuer ([`signed`]: the token of the
//! organisation the request's context names; [`as_org`]: an explicit one), and
//! [`Stack::start`] registers the synthetic organisations the tests act for
//! ([`STANDARD_ORGS`]) before a test begins, so the log already holds registry events: tests
//! that count messages count from after set-up.

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use carewoven_commands::Config;
use carewoven_eventlog::{EventLog, LogConfig};
use carewoven_proto::v1::{self, command_service_client::CommandServiceClient};
use chrono::{Days, Utc};
use tonic::transport::Channel;
use uuid::Uuid;

use crate::NatsServer;
use crate::service::Running;

pub use crate::partners::{
    GOVERNANCE_ORG, all_data_classes, as_org, governance_token, register_partner,
    register_partner_as, signed, token, token_with_roles,
};

/// The synthetic organisations the tests act for, each with the services (and sites) it
/// owns. Codes and services are the ones the journeys below use:
///
/// - `HOSP-A`: the acute hospital; its site `HOSP-A` admits and manages discharges, and it
///   makes the referrals;
/// - `ASC-D2A`: the council's discharge-to-assess team, which receives referrals;
/// - `ASC`: adult social care (care plans, assessments);
/// - `ASC-REABLE`: the reablement provider that accepts handovers;
/// - `COMM`: community nursing (joint assessments);
/// - `GP-A`: a general practice, the registered GP of people registered with
///   [`register_with_gp`].
pub const STANDARD_ORGS: [(&str, &[&str], v1::OrganisationType); 6] = [
    ("HOSP-A", &["HOSP-A"], v1::OrganisationType::NhsTrust),
    (
        "ASC-D2A",
        &["ASC-D2A"],
        v1::OrganisationType::LocalAuthority,
    ),
    ("ASC", &["ASC"], v1::OrganisationType::LocalAuthority),
    (
        "ASC-REABLE",
        &["ASC-REABLE"],
        v1::OrganisationType::CareProvider,
    ),
    ("COMM", &["COMM"], v1::OrganisationType::CommunityProvider),
    ("GP-A", &["GP-A"], v1::OrganisationType::GeneralPractice),
];

/// Register [`STANDARD_ORGS`], each with a direct-care agreement covering every data class
/// (two events each). Safe to repeat.
pub async fn register_standard_orgs(client: &mut CommandServiceClient<Channel>) -> Result<()> {
    for (code, services, org_type) in STANDARD_ORGS {
        register_partner_as(client, code, services, &all_data_classes(), org_type)
            .await
            .with_context(|| format!("registering {code}"))?;
    }
    Ok(())
}

/// A synthetic NHS number from the 999 test range with a valid check digit.
pub fn test_nhs_number(n: u32) -> String {
    carewoven_domain::values::NhsNumber::synthetic(n)
        .as_str()
        .to_owned()
}

/// The command service with `config`, once healthy.
pub async fn start_commands(config: Config) -> Result<Running> {
    Running::start("carewoven.v1.CommandService", move |listener, stop| {
        carewoven_commands::run(listener, config, stop.cancelled_owned())
    })
    .await
}

impl Running {
    /// A command client on this service's channel.
    pub fn client(&self) -> CommandServiceClient<Channel> {
        CommandServiceClient::new(self.channel())
    }
}

/// The views service with `config`, once its admin API is healthy (its queries are not
/// while the projector has stopped, as at an undecodable event: tests of that start it too).
pub async fn start_views(config: carewoven_views::Config) -> Result<Running> {
    Running::start("carewoven.v1.ViewsAdmin", move |listener, stop| {
        carewoven_views::run(listener, config, stop.cancelled_owned())
    })
    .await
}

/// The gateway with `config`, and its evaluator's progress.
pub async fn start_gateway(
    config: carewoven_gateway::Config,
) -> Result<(
    Running,
    tokio::sync::watch::Receiver<carewoven_gateway::evaluator::Progress>,
)> {
    let (tx, rx) = tokio::sync::watch::channel(Default::default());
    let running = Running::start("carewoven.v1.FeedService", move |listener, stop| {
        carewoven_gateway::server::serve(listener, config, stop.cancelled_owned(), tx)
    })
    .await?;
    Ok((running, rx))
}

/// Every audit record stored on `subject` in `CW_AUDIT` of the NATS at `url` (alone on it,
/// or in a group whose record would have had it), oldest first, with its audit stream
/// sequence.
pub async fn audit_records(url: &str, subject: &str) -> Result<Vec<(u64, v1::AuditEvent)>> {
    use async_nats::jetstream::stream::DirectGetErrorKind;
    use carewoven_access::audit::{GROUP_SUBJECT, decode_message, event_subject, subject_matches};
    let js = async_nats::jetstream::new(async_nats::connect(url).await?);
    let stream = js
        .get_stream(carewoven_access::audit::AUDIT_STREAM)
        .await
        .context("opening the audit stream")?;
    let mut out = Vec::new();
    for filter in [subject, GROUP_SUBJECT] {
        let mut from = 1;
        loop {
            match stream.direct_get_next_for_subject(filter, Some(from)).await {
                Ok(message) => {
                    from = message.sequence + 1;
                    for event in decode_message(&message.subject, message.payload.as_ref())? {
                        if subject_matches(subject, &event_subject(&event)) {
                            out.push((message.sequence, event));
                        }
                    }
                }
                Err(e) if e.kind() == DirectGetErrorKind::NotFound => break,
                Err(e) => return Err(e.into()),
            }
        }
    }
    out.sort_by_key(|(sequence, _)| *sequence);
    Ok(out)
}

/// NATS, one command service, a gRPC client and a direct handle on the log for inspection.
pub struct Stack {
    pub nats: NatsServer,
    pub service: Running,
    pub client: CommandServiceClient<Channel>,
    pub log: EventLog,
}

impl Stack {
    /// A fresh NATS and command service with [`STANDARD_ORGS`] registered.
    pub async fn start() -> Result<Self> {
        let nats = NatsServer::start()?;
        Self::on(nats).await
    }

    /// The command service on `nats`, with [`STANDARD_ORGS`] registered.
    pub async fn on(nats: NatsServer) -> Result<Self> {
        let mut stack = Self::unregistered(nats).await?;
        register_standard_orgs(&mut stack.client).await?;
        Ok(stack)
    }

    /// The command service on `nats` with nothing registered.
    pub async fn unregistered(nats: NatsServer) -> Result<Self> {
        let service = start_commands(Config::for_nats(nats.url())).await?;
        let client = service.client();
        let log =
            EventLog::open(async_nats::connect(nats.url()).await?, LogConfig::default()).await?;
        Ok(Stack {
            nats,
            service,
            client,
            log,
        })
    }

    pub fn config(&self) -> Config {
        Config::for_nats(self.nats.url())
    }

    pub async fn count(&self) -> u64 {
        self.log
            .message_count()
            .await
            .expect("counting the log's messages")
    }

    /// Every audit record stored on exactly `subject` in `CW_AUDIT`, oldest first, with its
    /// audit stream sequence. The service stores a refusal's record before it answers, so
    /// this needs no waiting (calls without a valid identity are counted, and written at the
    /// minute's end or when the service stops: see [`Stack::restart_service`]).
    pub async fn audit(&self, subject: &str) -> Result<Vec<(u64, v1::AuditEvent)>> {
        audit_records(&self.nats.url(), subject).await
    }

    /// Stop the command service gracefully (it writes what it has counted) and start a new
    /// one on the same NATS, with `config`.
    pub async fn restart_service(&mut self, config: Config) -> Result<()> {
        let fresh = start_commands(config).await?;
        let old = std::mem::replace(&mut self.service, fresh);
        old.stop().await?;
        self.client = self.service.client();
        Ok(())
    }
}

/// [`Stack`] with the views (on a fresh redb file) and the gateway beside it: what the
/// suites that read and receive what was written start with.
pub struct Services {
    pub stack: Stack,
    pub views: Running,
    pub gateway: Running,
    /// The gateway evaluator's progress.
    pub progress: tokio::sync::watch::Receiver<carewoven_gateway::evaluator::Progress>,
    /// Holds the views file.
    pub dir: tempfile::TempDir,
}

impl Services {
    /// A fresh stack, views and gateway, all with their test configurations.
    pub async fn start() -> Result<Self> {
        Self::start_with(|_| {}).await
    }

    /// [`Services::start`], with the gateway's configuration changed by `gateway`.
    pub async fn start_with(gateway: impl FnOnce(&mut carewoven_gateway::Config)) -> Result<Self> {
        let stack = Stack::start().await?;
        let dir = tempfile::tempdir()?;
        let views = start_views(carewoven_views::Config::new(
            stack.nats.url(),
            dir.path().join("views.redb"),
        ))
        .await?;
        let mut config = carewoven_gateway::Config::for_nats(stack.nats.url());
        gateway(&mut config);
        let (gateway, progress) = start_gateway(config).await?;
        Ok(Services {
            stack,
            views,
            gateway,
            progress,
            dir,
        })
    }

    /// Stop the gateway, the views and the command service, in that order.
    pub async fn stop(self) -> Result<()> {
        self.gateway.stop().await?;
        self.views.stop().await?;
        self.stack.service.stop().await
    }
}

pub fn ctx(org: &str) -> Option<v1::CommandContext> {
    Some(v1::CommandContext {
        command_id: Uuid::now_v7().to_string(),
        organisation: org.into(),
        user: "tester".into(),
        ..Default::default()
    })
}

pub fn date_days_ago(days: u64) -> String {
    (carewoven_domain::values::uk_date(Utc::now()) - Days::new(days)).to_string()
}

pub fn date_days_ahead(days: u64) -> String {
    (carewoven_domain::values::uk_date(Utc::now()) + Days::new(days)).to_string()
}

pub fn ts_hours_ago(hours: i64) -> Option<prost_types::Timestamp> {
    let t = Utc::now() - chrono::Duration::hours(hours);
    Some(prost_types::Timestamp {
        seconds: t.timestamp(),
        nanos: 0,
    })
}

pub fn register_request(n: u32) -> v1::RegisterPersonRequest {
    v1::RegisterPersonRequest {
        context: ctx("HOSP-A"),
        profile: Some(v1::Profile {
            nhs_number: test_nhs_number(n),
            given_name: "Ada".into(),
            family_name: "Example".into(),
            date_of_birth: "1941-03-02".into(),
            what_matters: "Getting back to my allotment".into(),
            ..Default::default()
        }),
    }
}

/// Register a synthetic person and return their id.
pub async fn register(client: &mut CommandServiceClient<Channel>, n: u32) -> Result<String> {
    let reply = client.register_person(signed(register_request(n))).await?;
    Ok(reply.into_inner().person_id)
}

/// Register a synthetic person with `gp` as their registered GP practice (acting as `gp`).
pub async fn register_with_gp(
    client: &mut CommandServiceClient<Channel>,
    n: u32,
    gp: &str,
) -> Result<String> {
    let mut request = register_request(n);
    request.context = ctx(gp);
    if let Some(p) = request.profile.as_mut() {
        p.registered_gp = gp.into();
    }
    let reply = client.register_person(signed(request)).await?;
    Ok(reply.into_inner().person_id)
}

/// `HOSP-A` admits the person at its site (which gives it the hospital-stay ground); returns
/// the episode id.
pub async fn admit(client: &mut CommandServiceClient<Channel>, person: &str) -> Result<String> {
    Ok(client
        .admit_person(signed(v1::AdmitPersonRequest {
            context: ctx("HOSP-A"),
            person_id: person.into(),
            site: "HOSP-A".into(),
            ward: "Ward 7".into(),
            admitted_at: ts_hours_ago(24 * 5),
        }))
        .await?
        .into_inner()
        .aggregate_id)
}

/// A referral from `HOSP-A` to the `ASC-D2A` service; returns its id.
pub async fn make_referral(
    client: &mut CommandServiceClient<Channel>,
    person: &str,
) -> Result<String> {
    refer(client, person, "HOSP-A", "ASC-D2A").await
}

/// The request for a referral from `from` (acting for itself) to `to_service`.
pub fn referral_request(person: &str, from: &str, to_service: &str) -> v1::MakeReferralRequest {
    v1::MakeReferralRequest {
        context: ctx(from),
        person_id: person.into(),
        referral: Some(v1::Referral {
            from_organisation: from.into(),
            to_service: to_service.into(),
            priority: v1::Priority::Urgent as i32,
            reason: "Needs support at home after discharge".into(),
            replaces: String::new(),
        }),
    }
}

/// A referral from `from` to `to_service` (which starts a legitimate relationship for both
/// organisations); returns its id.
pub async fn refer(
    client: &mut CommandServiceClient<Channel>,
    person: &str,
    from: &str,
    to_service: &str,
) -> Result<String> {
    let reply = client
        .make_referral(signed(referral_request(person, from, to_service)))
        .await?;
    Ok(reply.into_inner().aggregate_id)
}

/// The request adding organisation `member` to the person's care team, made by `by`.
pub fn add_member_request(person: &str, by: &str, member: &str) -> v1::AddCareTeamMemberRequest {
    v1::AddCareTeamMemberRequest {
        context: ctx(by),
        person_id: person.into(),
        member: Some(v1::MemberRef {
            organisation: member.into(),
            practitioner: String::new(),
        }),
        role: v1::CareTeamRole::Other as i32,
        since: date_days_ago(0),
    }
}

/// `by` adds organisation `member` to the person's care team (the first member by an
/// organisation with a relationship, later ones by a member).
pub async fn add_member(
    client: &mut CommandServiceClient<Channel>,
    person: &str,
    by: &str,
    member: &str,
) -> Result<()> {
    client
        .add_care_team_member(signed(add_member_request(person, by, member)))
        .await?;
    Ok(())
}

pub fn referral_action(
    person: &str,
    referral: &str,
    action: v1::ReferralAction,
    org: &str,
) -> v1::ProgressReferralRequest {
    v1::ProgressReferralRequest {
        context: ctx(org),
        person_id: person.into(),
        referral_id: referral.into(),
        action: action as i32,
        reason: "synthetic reason".into(),
    }
}

/// A discharge step by `HOSP-A`, whose site manages the episode.
pub fn discharge_step(
    person: &str,
    episode: &str,
    step: v1::progress_discharge_request::Step,
) -> v1::ProgressDischargeRequest {
    discharge_step_by("HOSP-A", person, episode, step)
}

/// A discharge step by `org`.
pub fn discharge_step_by(
    org: &str,
    person: &str,
    episode: &str,
    step: v1::progress_discharge_request::Step,
) -> v1::ProgressDischargeRequest {
    v1::ProgressDischargeRequest {
        context: ctx(org),
        person_id: person.into(),
        episode_id: episode.into(),
        step: Some(step),
    }
}

/// Admit a person and take the episode to "discharge ready" (DRD yesterday).
pub async fn episode_ready(
    client: &mut CommandServiceClient<Channel>,
    person: &str,
) -> Result<String> {
    use v1::progress_discharge_request::{self as pd, Step};
    let episode = admit(client, person).await?;
    client
        .progress_discharge(signed(discharge_step(
            person,
            &episode,
            Step::SetExpectedDischargeDate(pd::SetExpectedDischargeDate {
                expected: date_days_ahead(1),
            }),
        )))
        .await?;
    client
        .progress_discharge(signed(discharge_step(
            person,
            &episode,
            Step::MarkDischargeReady(pd::MarkDischargeReady {
                discharge_ready_date: date_days_ago(1),
            }),
        )))
        .await?;
    Ok(episode)
}

/// Wait for `condition` with a deadline (never a bare sleep).
pub async fn eventually<F, Fut>(what: &str, timeout: Duration, mut condition: F) -> Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    while !condition().await {
        anyhow::ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(())
}
