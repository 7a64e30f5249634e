//! `deploy/nats-partners.conf` run for real: a partner organisation, connecting with a stock
//! client and only its nkey, reads its own feed (live, and durably from its consumer on
//! CW_FEED) and nothing else: not another partner's feed, not the event log, not the audit
//! log, by no subscription and no JetStream API; it cannot publish into `cw.>`, and a reply
//! subject it chooses cannot make the server publish into the event log.
//!
//! The partner file is generated as an operator would, with `deploy/partners/new-partner.sh`
//! and fresh nkeys, into a temporary copy of `deploy/`. A partner account that imports
//! another organisation's part is refused by the server's configuration check.
//!
//! End to end, with the real command service and gateway each connected with its own
//! identity (`deploy/accounts.conf`): a partner related to a person receives the gateway's
//! numbered `FeedItem`s live and from its durable consumer, and another partner receives none
//! of them.

use anyhow::{Context, Result, bail, ensure};
use async_nats::jetstream::{self, consumer::PullConsumer, consumer::pull, stream};
use async_nats::{Client, Event, ServerError};
use carewoven_domain::values::NhsNumber;
use carewoven_gateway::evaluator::Progress;
use carewoven_proto::v1::{self, command_service_client::CommandServiceClient};
use carewoven_testkit::broker::Identities;
use carewoven_testkit::partners::{all_data_classes, register_partner, signed};
use carewoven_testkit::{ConfiguredServer, free_port, nats_server_binary, repo_root};
use carewoven_testkit::{Running, ctx};
use futures::{FutureExt, StreamExt};
use prost::Message as _;
use std::fmt::Debug;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tonic::transport::Channel;
use uuid::Uuid;

/// Two partners whose codes use every kind of character an organisation code may have.
const A: &str = "North-Care_1";
const B: &str = "SOUTH_HOSP-2";

/// The JetStream domain under which a partner's account imports its consumer's API.
const DOMAIN: &str = "carewoven";

/// How long to wait for something that must happen.
const WAIT: Duration = Duration::from_secs(10);
/// How long a JetStream request the server refused (so will never answer) is given.
const REFUSED: Duration = Duration::from_secs(2);

/// The streams, their subjects, and the identity that owns (creates and writes) each.
const STREAMS: [(&str, &str, &str); 3] = [
    ("CAREWOVEN", "cw.evt.>", "commands"),
    ("CW_FEED", "cw.feed.>", "gateway"),
    ("CW_AUDIT", "cw.audit.>", "commands"),
];

/// The partners' account block, as the operator makes it.
fn partner_block(org: &str, public_key: &str) -> Result<String> {
    let script = repo_root().join("deploy/partners/new-partner.sh");
    let out = std::process::Command::new("bash")
        .arg(&script)
        .args([org, public_key])
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    ensure!(
        out.status.success(),
        "{} {org} failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).context("the generator's output is not UTF-8")
}

/// `deploy/nats-partners.conf` (and the `accounts.conf` it includes) copied into `dir` with
/// `partners` as its partner file; the path of the copy.
fn write_config(dir: &Path, partners: &str) -> Result<PathBuf> {
    let config = dir.join("nats-partners.conf");
    std::fs::copy(repo_root().join("deploy/nats-partners.conf"), &config)
        .context("copying deploy/nats-partners.conf")?;
    std::fs::copy(
        repo_root().join("deploy/accounts.conf"),
        dir.join("accounts.conf"),
    )
    .context("copying deploy/accounts.conf")?;
    std::fs::create_dir_all(dir.join("partners"))?;
    std::fs::write(dir.join("partners/partners.conf"), partners)?;
    Ok(config)
}

/// The server from deploy/, Carewoven's identities (the streams' owners write to them, the
/// operator makes one consumer per partner), and the partners' nkey seeds.
struct Deployment {
    nats: ConfiguredServer,
    _dir: tempfile::TempDir,
    url: String,
    /// Carewoven's identities; each service connects with its own seed.
    ids: Identities,
    /// JetStream as `commands` (CAREWOVEN, CW_AUDIT), `gateway` (CW_FEED) and `ops`.
    commands: jetstream::Context,
    gateway: jetstream::Context,
    ops: jetstream::Context,
    seeds: Vec<(&'static str, String)>,
}

impl Deployment {
    /// [`Deployment::boot`] with partners A and B, the three streams, and each partner's
    /// consumer.
    async fn start() -> Result<Self> {
        let d = Self::boot(&[A, B]).await?;
        for (name, subject, owner) in STREAMS {
            d.as_identity(owner)
                .create_stream(stream::Config {
                    name: name.into(),
                    subjects: vec![subject.into()],
                    allow_direct: true,
                    ..Default::default()
                })
                .await
                .with_context(|| format!("creating stream {name} as {owner}"))?;
        }
        for org in [A, B] {
            d.add_consumer(org).await?;
        }
        Ok(d)
    }

    /// The server with an account for each of `orgs`, and Carewoven's identities'
    /// connections; no streams yet.
    async fn boot(orgs: &[&'static str]) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("carewoven-partners-")
            .tempdir()?;
        let mut partners = String::new();
        let mut seeds = Vec::new();
        for &org in orgs {
            let key = nkeys::KeyPair::new_user();
            partners.push_str(&partner_block(org, &key.public_key())?);
            seeds.push((org, key.seed().context("a new key has a seed")?));
        }
        let config = write_config(dir.path(), &partners)?;

        let ids = Identities::new();
        let port = free_port()?;
        let mut env = ids.env();
        env.push(("CAREWOVEN_NATS_PORT".into(), port.to_string()));
        let nats = ConfiguredServer::start(&config, &env, port)?;
        let url = nats.url();
        let commands = ids.connect("commands", &url).await?.jetstream();
        let gateway = ids.connect("gateway", &url).await?.jetstream();
        let ops = ids.connect("ops", &url).await?.jetstream();
        Ok(Deployment {
            url,
            nats,
            _dir: dir,
            ids,
            commands,
            gateway,
            ops,
            seeds,
        })
    }

    fn as_identity(&self, name: &str) -> &jetstream::Context {
        match name {
            "commands" => &self.commands,
            "gateway" => &self.gateway,
            _ => &self.ops,
        }
    }

    /// What the operator does when registering a partner (deploy/README.md): the pull
    /// consumer `<ORG>` on CW_FEED with the filter `cw.feed.<ORG>.>`, as the operator.
    async fn add_consumer(&self, org: &str) -> Result<()> {
        self.ops
            .create_consumer_on_stream(
                pull::Config {
                    durable_name: Some(org.to_owned()),
                    filter_subject: format!("cw.feed.{org}.>"),
                    ..Default::default()
                },
                "CW_FEED",
            )
            .await
            .with_context(|| format!("creating the consumer of {org}"))?;
        Ok(())
    }

    /// Connect as a partner: its nkey seed and nothing else.
    async fn partner(&self, org: &str) -> Result<Partner> {
        let seed = self
            .seeds
            .iter()
            .find(|(o, _)| *o == org)
            .map(|(_, s)| s.clone())
            .context("no such partner")?;
        let (tx, rx) = mpsc::unbounded_channel();
        let client = async_nats::ConnectOptions::with_nkey(seed)
            .event_callback(move |event| {
                let tx = tx.clone();
                async move {
                    if let Event::ServerError(ServerError::Other(error)) = event {
                        let _ = tx.send(error);
                    }
                }
            })
            .connect(self.url.as_str())
            .await
            .with_context(|| format!("connecting as partner {org}"))?;
        // How a partner reaches its consumer with a stock client: JetStream domain
        // "carewoven" (`nats --js-domain carewoven`, nats.go `jetstream.WithDomain`).
        let js = jetstream::with_domain(client.clone(), DOMAIN);
        Ok(Partner {
            client,
            js,
            errors: ServerErrors {
                rx,
                seen: Vec::new(),
            },
        })
    }

    /// Publish into JetStream as the identity whose job that is (the gateway for feeds, the
    /// command service for events and audit records) and wait for the ack; the sequence.
    async fn publish(&self, subject: String, payload: &'static str) -> Result<u64> {
        let writer = if subject.starts_with("cw.feed.") {
            &self.gateway
        } else {
            &self.commands
        };
        let ack = writer
            .publish(subject.clone(), payload.into())
            .await
            .with_context(|| format!("publishing to {subject}"))?
            .await
            .with_context(|| format!("ack for {subject}"))?;
        Ok(ack.sequence)
    }

    async fn messages_in(&self, stream: &str) -> Result<u64> {
        let mut stream = self.ops.get_stream(stream).await?;
        Ok(stream.info().await?.state.messages)
    }

    async fn message_counts(&self) -> Result<Vec<u64>> {
        let mut counts = Vec::new();
        for (name, _, _) in STREAMS {
            counts.push(self.messages_in(name).await?);
        }
        Ok(counts)
    }
}

struct Partner {
    client: Client,
    js: jetstream::Context,
    errors: ServerErrors,
}

/// The errors the server sent a partner (`-ERR`), in order.
struct ServerErrors {
    rx: mpsc::UnboundedReceiver<String>,
    seen: Vec<String>,
}

impl ServerErrors {
    /// Wait until the server has said `needle`.
    async fn expect(&mut self, needle: &str) -> Result<()> {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if self.seen.iter().any(|e| e.contains(needle)) {
                return Ok(());
            }
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(error)) => self.seen.push(error),
                Ok(None) => bail!("the connection ended before the server said {needle:?}"),
                Err(_) => bail!(
                    "the server did not say {needle:?} within {WAIT:?}; it said {:?}",
                    self.seen
                ),
            }
        }
    }

    /// Every error the server has sent so far.
    fn drain(&mut self) -> Vec<String> {
        while let Ok(error) = self.rx.try_recv() {
            self.seen.push(error);
        }
        self.seen.clone()
    }

    async fn subscription_refused(&mut self, subject: &str) -> Result<()> {
        self.expect(&format!(
            "Permissions Violation for Subscription to \"{subject}\""
        ))
        .await
    }

    async fn publish_refused(&mut self, subject: &str) -> Result<()> {
        self.expect(&format!(
            "Permissions Violation for Publish to \"{subject}\""
        ))
        .await
    }
}

/// The call must fail. The server refused its request, so it gets no answer: it is given
/// [`REFUSED`] (the caller checks the server's refusal itself).
async fn fails<T, E: Debug>(what: &str, call: impl Future<Output = Result<T, E>>) -> Result<()> {
    match tokio::time::timeout(REFUSED, call).await {
        Ok(Ok(_)) => bail!("{what} succeeded for a partner"),
        Ok(Err(_)) | Err(_) => Ok(()),
    }
}

async fn next_message(
    subscriber: &mut async_nats::Subscriber,
    what: &str,
) -> Result<async_nats::Message> {
    tokio::time::timeout(WAIT, subscriber.next())
        .await
        .with_context(|| format!("no {what} within {WAIT:?}"))?
        .with_context(|| format!("the subscription for {what} ended"))
}

fn nothing_delivered(subscriber: &mut async_nats::Subscriber) -> bool {
    matches!(subscriber.next().now_or_never(), None | Some(None))
}

/// What partner A tries to read or change besides its own consumer, and must not.
struct Refused<'a> {
    /// Sequence of an event in CAREWOVEN.
    event: u64,
    /// Sequence of an event in CW_AUDIT.
    audit: u64,
    /// Sequence and subject of B's message in CW_FEED.
    b_seq: u64,
    b_subject: &'a str,
    person: Uuid,
}

impl Refused<'_> {
    /// Every call, with the JetStream API on `prefix`, fails.
    async fn attempt(&self, client: &Client, prefix: &str) -> Result<()> {
        let p = &jetstream::with_prefix(client.clone(), prefix);
        let carewoven = p.get_stream_no_info("CAREWOVEN").await?;
        let feed = p.get_stream_no_info("CW_FEED").await?;
        let audit = p.get_stream_no_info("CW_AUDIT").await?;
        let audit_subject = format!("cw.audit.{}.read", self.person);
        let pull_b = async_nats::Request::new().payload(r#"{"batch":1,"no_wait":true}"#.into());
        let durable = |name: &str, filter: &str| pull::Config {
            durable_name: Some(name.into()),
            filter_subject: filter.into(),
            ..Default::default()
        };
        let b_feed = format!("cw.feed.{B}.>");
        let a_feed = format!("cw.feed.{A}.>");
        let b_consumer = B.to_owned();
        tokio::try_join!(
            fails("CAREWOVEN info", p.get_stream("CAREWOVEN")),
            fails("CAREWOVEN get", carewoven.get_raw_message(self.event)),
            fails("CAREWOVEN direct get", carewoven.direct_get(self.event)),
            fails(
                "CAREWOVEN consumer",
                p.create_consumer_on_stream(pull::Config::default(), "CAREWOVEN")
            ),
            fails(
                "CAREWOVEN filtered consumer",
                p.create_consumer_on_stream(durable("mine", "cw.evt.>"), "CAREWOVEN")
            ),
            fails("CW_AUDIT get", audit.get_raw_message(self.audit)),
            fails(
                "CW_AUDIT direct get",
                audit.direct_get_last_for_subject(audit_subject.clone())
            ),
            fails("CW_FEED info", p.get_stream("CW_FEED")),
            fails(
                "CW_FEED get of B's message",
                feed.get_raw_message(self.b_seq)
            ),
            fails(
                "CW_FEED direct get of B's message",
                feed.direct_get(self.b_seq)
            ),
            fails(
                "CW_FEED direct get of B's subject",
                feed.direct_get_last_for_subject(self.b_subject.to_owned())
            ),
            fails(
                "CW_FEED consumer without a filter",
                p.create_consumer_on_stream(pull::Config::default(), "CW_FEED")
            ),
            fails(
                "CW_FEED consumer on B's feed",
                p.create_consumer_on_stream(durable("mine", &b_feed), "CW_FEED")
            ),
            fails(
                "CW_FEED consumer on A's own feed",
                p.create_consumer_on_stream(durable("mine", &a_feed), "CW_FEED")
            ),
            fails(
                "B's consumer info",
                p.get_consumer_from_stream::<pull::Config, _, _>(b_consumer.clone(), "CW_FEED")
            ),
            fails(
                "pulling from B's consumer",
                client.send_request(
                    format!("{prefix}.CONSUMER.MSG.NEXT.CW_FEED.{b_consumer}"),
                    pull_b
                )
            ),
            fails(
                "deleting B's consumer",
                p.delete_consumer_from_stream(b_consumer.clone(), "CW_FEED")
            ),
            fails("CW_FEED purge", feed.purge().into_future()),
            fails("CW_AUDIT delete", p.delete_stream("CW_AUDIT")),
            fails("account info", p.query_account()),
        )?;
        Ok(())
    }

    /// The server said it refused each request of [`Refused::attempt`].
    async fn were_refused(&self, errors: &mut ServerErrors, prefix: &str) -> Result<()> {
        let audit_subject = format!("cw.audit.{}.read", self.person);
        let b_feed = format!("cw.feed.{B}.>");
        let a_feed = format!("cw.feed.{A}.>");
        let b_consumer = B.to_owned();
        for api in [
            "STREAM.INFO.CAREWOVEN".to_owned(),
            "STREAM.MSG.GET.CAREWOVEN".to_owned(),
            "DIRECT.GET.CAREWOVEN".to_owned(),
            "CONSUMER.CREATE.CAREWOVEN".to_owned(),
            "CONSUMER.CREATE.CAREWOVEN.mine.cw.evt.>".to_owned(),
            "STREAM.MSG.GET.CW_AUDIT".to_owned(),
            format!("DIRECT.GET.CW_AUDIT.{audit_subject}"),
            "STREAM.INFO.CW_FEED".to_owned(),
            "STREAM.MSG.GET.CW_FEED".to_owned(),
            "DIRECT.GET.CW_FEED".to_owned(),
            format!("DIRECT.GET.CW_FEED.{}", self.b_subject),
            "CONSUMER.CREATE.CW_FEED".to_owned(),
            format!("CONSUMER.CREATE.CW_FEED.mine.{b_feed}"),
            format!("CONSUMER.CREATE.CW_FEED.mine.{a_feed}"),
            format!("CONSUMER.INFO.CW_FEED.{b_consumer}"),
            format!("CONSUMER.MSG.NEXT.CW_FEED.{b_consumer}"),
            format!("CONSUMER.DELETE.CW_FEED.{b_consumer}"),
            "STREAM.PURGE.CW_FEED".to_owned(),
            "STREAM.DELETE.CW_AUDIT".to_owned(),
            "INFO".to_owned(),
        ] {
            let subject = format!("{prefix}.{api}");
            errors
                .publish_refused(&subject)
                .await
                .with_context(|| format!("A's request to {subject}"))?;
        }
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_subscribes_to_its_own_feed_and_nothing_else() -> Result<()> {
    let d = Deployment::start().await?;
    ensure!(
        async_nats::connect(d.url.as_str()).await.is_err(),
        "an anonymous client got in"
    );
    let mut a = d.partner(A).await?;
    let b = d.partner(B).await?;

    let mut own = a.client.subscribe(format!("cw.feed.{A}.>")).await?;
    let mut b_own = b.client.subscribe(format!("cw.feed.{B}.>")).await?;
    let mut refused = Vec::new();
    for subject in [
        format!("cw.feed.{B}.>"),
        format!("cw.feed.{B}.*.referral_submitted"),
        "cw.feed.*.*.referral_submitted".to_owned(),
        "cw.feed.>".to_owned(),
        "cw.evt.>".to_owned(),
        "cw.audit.>".to_owned(),
        "cw.>".to_owned(),
        ">".to_owned(),
        "$JS.>".to_owned(),
    ] {
        refused.push(a.client.subscribe(subject.clone()).await?);
        a.errors
            .subscription_refused(&subject)
            .await
            .with_context(|| format!("subscribing to {subject}"))?;
    }
    a.client.flush().await?;
    b.client.flush().await?;

    // Everything else first, then A's own message: the server delivers a connection's
    // messages in order, so anything a refused subscription could get would come first.
    let person = Uuid::new_v4();
    let referral = Uuid::new_v4();
    d.publish(
        format!("cw.feed.{B}.{person}.referral_submitted"),
        "for partner B",
    )
    .await?;
    d.publish(
        format!("cw.evt.{person}.referral.{referral}.referral_submitted"),
        "domain event",
    )
    .await?;
    d.publish(format!("cw.audit.{person}.read"), "audit event")
        .await?;
    d.publish(
        format!("cw.feed.{A}.{person}.referral_submitted"),
        "for partner A",
    )
    .await?;

    let message = next_message(&mut own, "A's own feed message").await?;
    assert_eq!(
        message.subject.as_str(),
        format!("cw.feed.{A}.{person}.referral_submitted")
    );
    assert_eq!(message.payload.as_ref(), b"for partner A");
    assert!(nothing_delivered(&mut own), "A got only its own message");
    for subscriber in &mut refused {
        assert!(
            nothing_delivered(subscriber),
            "a refused subscription got a message"
        );
    }
    let message = next_message(&mut b_own, "B's own feed message").await?;
    assert_eq!(message.payload.as_ref(), b"for partner B");
    assert!(nothing_delivered(&mut b_own), "B got only its own message");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_reads_its_own_consumer_and_no_other_jetstream_data() -> Result<()> {
    let d = Deployment::start().await?;
    let person = Uuid::new_v4();
    let event = d
        .publish(
            format!(
                "cw.evt.{person}.referral.{}.referral_submitted",
                Uuid::new_v4()
            ),
            "domain event",
        )
        .await?;
    let audit = d
        .publish(format!("cw.audit.{person}.read"), "audit event")
        .await?;
    let b_subject = format!("cw.feed.{B}.{person}.referral_submitted");
    let b_seq = d.publish(b_subject.clone(), "for partner B").await?;
    let a_subjects = [
        format!("cw.feed.{A}.{person}.referral_submitted"),
        format!("cw.feed.{A}.{person}.referral_accepted"),
    ];
    for subject in &a_subjects {
        d.publish(subject.clone(), "for partner A").await?;
    }
    let mut a = d.partner(A).await?;

    // Its own consumer, as a stock client binds to one: by name, then pull and ack.
    let mut consumer: PullConsumer =
        a.js.get_consumer_from_stream(A.to_owned(), "CW_FEED")
            .await
            .context("A binding to its own consumer")?;
    // The continuous pull (with heartbeats) a partner would run, then a one-off fetch.
    let mut messages = consumer.messages().await?;
    let mut received = Vec::new();
    for _ in &a_subjects {
        let message = tokio::time::timeout(WAIT, messages.next())
            .await
            .context("A's pull")?
            .context("A's pull ended")?
            .map_err(|e| anyhow::anyhow!("A pulling: {e}"))?;
        received.push(message.subject.to_string());
        message
            .double_ack()
            .await
            .map_err(|e| anyhow::anyhow!("A acknowledging: {e}"))?;
    }
    drop(messages);
    assert_eq!(received, a_subjects, "A's consumer gives exactly A's feed");
    let info = consumer.info().await?;
    assert_eq!(info.num_ack_pending, 0, "A's acks reached its consumer");
    assert_eq!(info.num_pending, 0, "B's message is not A's to read");
    let later = d
        .publish(format!("cw.feed.{A}.{person}.discharge_agreed"), "later")
        .await?;
    // A request that waits for messages: the consumer may learn of the new message a
    // moment after the stream acknowledged it, and a no_wait fetch then finds nothing.
    let mut batch = consumer
        .batch()
        .max_messages(10)
        .expires(WAIT)
        .messages()
        .await?;
    let message = tokio::time::timeout(WAIT, batch.next())
        .await
        .context("A's fetch")?
        .context("A's fetch got nothing")?
        .map_err(|e| anyhow::anyhow!("A fetching: {e}"))?;
    let info = message
        .info()
        .map_err(|e| anyhow::anyhow!("no ack info: {e}"))?;
    assert_eq!(info.stream_sequence, later);
    message
        .ack()
        .await
        .map_err(|e| anyhow::anyhow!("A acknowledging: {e}"))?;

    // Everything else is refused by the server (and so never answered), under the default
    // API prefix and under the partner's own.
    let refused = Refused {
        event,
        audit,
        b_seq,
        b_subject: &b_subject,
        person,
    };
    let prefixes = ["$JS.API".to_owned(), format!("$JS.{DOMAIN}.API")];
    tokio::try_join!(
        refused.attempt(&a.client, &prefixes[0]),
        refused.attempt(&a.client, &prefixes[1]),
    )?;
    for prefix in &prefixes {
        refused
            .were_refused(&mut a.errors, prefix)
            .await
            .with_context(|| format!("JetStream API {prefix}"))?;
    }

    // Nothing was changed or taken: B's consumer still has its message for B.
    assert_eq!(d.message_counts().await?, vec![1, 4, 1]);
    let b = d.partner(B).await?;
    let b_consumer: PullConsumer =
        b.js.get_consumer_from_stream(B.to_owned(), "CW_FEED")
            .await
            .context("B binding to its own consumer")?;
    let mut batch = b_consumer.fetch().max_messages(10).messages().await?;
    let message = tokio::time::timeout(WAIT, batch.next())
        .await
        .context("B's fetch")?
        .context("B got nothing")?
        .map_err(|e| anyhow::anyhow!("B fetching: {e}"))?;
    assert_eq!(message.subject.as_str(), b_subject);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_cannot_publish_or_redirect_replies_into_the_log() -> Result<()> {
    let d = Deployment::start().await?;
    let mut a = d.partner(A).await?;
    let person = Uuid::new_v4();
    let before = d.message_counts().await?;

    for subject in [
        format!(
            "cw.evt.{person}.referral.{}.referral_submitted",
            Uuid::new_v4()
        ),
        format!("cw.feed.{A}.{person}.referral_submitted"),
        format!("cw.feed.{B}.{person}.referral_submitted"),
        format!("cw.audit.{person}.read"),
        "$JS.API.STREAM.CREATE.MINE".to_owned(),
    ] {
        a.client.publish(subject.clone(), "forged".into()).await?;
        a.errors
            .publish_refused(&subject)
            .await
            .with_context(|| format!("A publishing to {subject}"))?;
    }
    // A refused message is dropped where it is refused: nothing can have been stored.
    assert_eq!(d.message_counts().await?, before, "nothing stored");

    // Pull requests whose reply subjects are Carewoven's own subjects. In the account of the
    // streams (partners as mere users there) the server would publish A's feed messages on
    // them: into the event log, or forged into the feed. In A's own account a reply subject
    // is A's: the second one reaches A's own subscription, and neither reaches a stream.
    let before = d.message_counts().await?;
    d.publish(format!("cw.feed.{A}.{person}.referral_submitted"), "first")
        .await?;
    d.publish(format!("cw.feed.{A}.{person}.referral_accepted"), "second")
        .await?;
    let into_log = format!(
        "cw.evt.{person}.referral.{}.referral_submitted",
        Uuid::new_v4()
    );
    let into_feed = format!("cw.feed.{A}.{person}.redirected");
    let mut own = a.client.subscribe(format!("cw.feed.{A}.>")).await?;
    a.client.flush().await?;
    for reply in [&into_log, &into_feed] {
        a.client
            .publish_with_reply(
                format!("$JS.{DOMAIN}.API.CONSUMER.MSG.NEXT.CW_FEED.{A}"),
                reply.clone(),
                r#"{"batch":1,"no_wait":true}"#.into(),
            )
            .await?;
    }
    // Nothing is published live here: what A's subscription gets is the pull's delivery
    // (with its ack subject), sent to the reply subject in A's account.
    let redirected = next_message(&mut own, "the redirected pull's message").await?;
    let ack = redirected
        .reply
        .as_ref()
        .map(|r| r.as_str())
        .unwrap_or_default();
    assert!(
        ack.starts_with(&format!("$JS.ACK.CW_FEED.{A}.")),
        "a JetStream delivery, not {redirected:?}"
    );
    // nats-server 2.15 drops the pull whose reply nobody in A's account listens to (the
    // first), so the second gets the first message; either way it is A's own message.
    assert!(
        [b"first".as_slice(), b"second"].contains(&redirected.payload.as_ref()),
        "A's own feed message"
    );
    let after = d.message_counts().await?;
    assert_eq!(
        after,
        vec![before[0], before[1] + 2, before[2]],
        "only the two feed messages the gateway's identity published were stored"
    );
    Ok(())
}

#[test]
fn the_example_is_what_the_generator_prints() -> Result<()> {
    let example = std::fs::read_to_string(repo_root().join("deploy/partners/example.conf"))?;
    let mut generated = String::new();
    for line in example.lines() {
        let Some(args) = line
            .trim()
            .strip_prefix("#   deploy/partners/new-partner.sh ")
        else {
            continue;
        };
        let (org, key) = args.split_once(' ').context("ORG and key")?;
        generated.push_str(&partner_block(org, key)?);
    }
    ensure!(
        !generated.is_empty(),
        "the example names its generator calls"
    );
    assert!(
        example.ends_with(&generated),
        "deploy/partners/example.conf is not the generator's output for its partners"
    );
    assert!(
        !example
            .split_whitespace()
            .any(|word| word.starts_with("SU") && word.len() == 58),
        "no seed in the example"
    );
    Ok(())
}

#[test]
fn the_generator_refuses_bad_codes_and_seeds() {
    let key = nkeys::KeyPair::new_user();
    for (org, nkey) in [
        ("A.B", key.public_key()),
        ("A>", key.public_key()),
        ("A B", key.public_key()),
        ("", key.public_key()),
        ("OK", key.seed().unwrap_or_default()),
        ("OK", "UNOTAKEY".to_owned()),
        ("CAREWOVEN", key.public_key()),
        ("CW_EVENTS", key.public_key()),
        ("CW_PARTNER_API", key.public_key()),
    ] {
        assert!(
            partner_block(org, &nkey).is_err(),
            "accepted {org:?} {nkey:?}"
        );
    }
}

/// `nats-server -t`: whether the configuration in `dir` is valid, and what the server said.
fn config_check(dir: &Path, partners: &str) -> Result<(bool, String)> {
    let config = write_config(dir, partners)?;
    let out = std::process::Command::new(nats_server_binary())
        .arg("-c")
        .arg(&config)
        .arg("-t")
        .env("CAREWOVEN_NATS_PORT", "4222")
        .env("CAREWOVEN_NATS_STORE", dir.join("jetstream"))
        .envs(Identities::new().env())
        .output()
        .context("running nats-server -t")?;
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok((out.status.success(), said))
}

#[test]
fn an_account_can_import_only_its_own_organisations_part() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let key = nkeys::KeyPair::new_user().public_key();
    let honest = partner_block("EVIL", &key)?;
    let (valid, said) = config_check(dir.path(), &honest)?;
    ensure!(valid, "the generated account is refused: {said}");

    // The account keeps its name but imports VICTIM's feed and consumer.
    let tampered = honest
        .replace("cw.feed.EVIL.", "cw.feed.VICTIM.")
        .replace("CW_FEED.EVIL", "CW_FEED.VICTIM")
        .replace("consumer.info.EVIL", "consumer.info.VICTIM")
        .replace("consumer.next.EVIL", "consumer.next.VICTIM");
    let (valid, said) = config_check(dir.path(), &tampered)?;
    ensure!(
        !valid,
        "the server accepted an account importing another's part"
    );
    for import in [
        "stream import \"cw.feed.VICTIM.>\": stream import not authorized",
        "service import \"consumer.info.VICTIM\": service import not authorized",
        "service import \"consumer.next.VICTIM\": service import not authorized",
        "service import \"$JS.ACK.CW_FEED.VICTIM.>\": service import not authorized",
    ] {
        ensure!(said.contains(import), "no {import:?} in: {said}");
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// The real services under `deploy/nats-partners.conf`: the command service and the gateway
// connect each with its own identity; a partner reads the gateway's feed with a stock client.

/// Partners of the end-to-end test, and the hospital that relates a person to one of them.
const PARTNER_A: &str = "PARTNER-A";
const PARTNER_B: &str = "PARTNER-B";
const HOSP: &str = "HOSP";
const WARD: &str = "HOSP-WARD";
const A_SERVICE: &str = "PARTNER-A-REABLE";
const B_SERVICE: &str = "PARTNER-B-REABLE";

/// The hospital sets the expected discharge date of `episode`, `days` from today; the
/// event's log position.
async fn expect_discharge(
    commands: &mut CommandServiceClient<Channel>,
    person: &str,
    episode: &str,
    days: u64,
) -> Result<u64> {
    use v1::progress_discharge_request::{SetExpectedDischargeDate, Step};
    let expected = carewoven_domain::values::uk_date(chrono::Utc::now()) + chrono::Days::new(days);
    Ok(commands
        .progress_discharge(signed(v1::ProgressDischargeRequest {
            context: ctx(HOSP),
            person_id: person.into(),
            episode_id: episode.into(),
            step: Some(Step::SetExpectedDischargeDate(SetExpectedDischargeDate {
                expected: expected.to_string(),
            })),
        }))
        .await
        .context("setting the expected discharge date")?
        .into_inner()
        .log_position)
}

/// The items of one stored feed message as a stock client decodes it (deploy/README.md):
/// a `FeedBatch` of consecutive items; checks the subject and headers against them.
fn feed_batch(
    subject: &str,
    headers: Option<&async_nats::HeaderMap>,
    payload: &[u8],
) -> Result<Vec<v1::FeedItem>> {
    let batch = v1::FeedBatch::decode(payload).context("not a FeedBatch")?;
    let header = |name: &str| -> Result<u64> {
        headers
            .and_then(|h| h.get(name))
            .with_context(|| format!("no {name} header on {subject}"))?
            .as_str()
            .parse()
            .with_context(|| format!("{name} is not a number"))
    };
    assert_eq!(subject, format!("cw.feed.{PARTNER_A}.{}", batch.last));
    assert_eq!(header("Carewoven-Feed-First")?, batch.first);
    assert_eq!(header("Carewoven-Feed-Number")?, batch.last);
    let numbers: Vec<u64> = batch.items.iter().map(|i| i.number).collect();
    assert_eq!(numbers, (batch.first..=batch.last).collect::<Vec<_>>());
    let last = batch.items.last().context("an empty feed message")?;
    assert_eq!(header("Carewoven-Source-Sequence")?, last.log_position);
    Ok(batch.items)
}

/// The next item of A's live feed (items of a message already received come first).
async fn next_live_item(
    live: &mut async_nats::Subscriber,
    queued: &mut std::collections::VecDeque<v1::FeedItem>,
) -> Result<v1::FeedItem> {
    if let Some(item) = queued.pop_front() {
        return Ok(item);
    }
    let message = next_message(live, "an item of A's live feed").await?;
    queued.extend(feed_batch(
        &message.subject,
        message.headers.as_ref(),
        message.payload.as_ref(),
    )?);
    queued.pop_front().context("an empty feed message")
}

fn event_type(item: &v1::FeedItem) -> &str {
    item.identifiers
        .as_ref()
        .map(|i| i.event_type.as_str())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partner_reads_the_gateways_feed_with_its_credentials_and_a_stock_client() -> Result<()> {
    let d = Deployment::boot(&[PARTNER_A, PARTNER_B]).await?;

    // The services connect with their own identities and create their streams themselves.
    let mut config = carewoven_commands::Config::for_nats(d.url.clone());
    config.service.nats_nkey_seed = Some(d.ids.seed("commands"));
    let commands = Running::start("carewoven.v1.CommandService", |l, stop| {
        carewoven_commands::run(l, config, stop.cancelled_owned())
    })
    .await
    .with_context(|| format!("nats-server said:\n{}", d.nats.log()))?;
    let mut client = CommandServiceClient::new(commands.channel());
    let all = all_data_classes();
    for (org, service) in [(HOSP, WARD), (PARTNER_A, A_SERVICE), (PARTNER_B, B_SERVICE)] {
        register_partner(&mut client, org, &[service], &all).await?;
    }
    let mut config = carewoven_gateway::Config::for_nats(d.url.clone());
    config.service.nats_nkey_seed = Some(d.ids.seed("gateway"));
    let (progress_tx, mut progress) = watch::channel(Progress::default());
    let gateway = Running::start("carewoven.v1.FeedService", |l, stop| {
        carewoven_gateway::server::serve(l, config, stop.cancelled_owned(), progress_tx)
    })
    .await
    .with_context(|| format!("nats-server said:\n{}", d.nats.log()))?;

    // The partners, each with its nkey seed and nothing else, on their documented subjects.
    let mut a = d.partner(PARTNER_A).await?;
    let mut b = d.partner(PARTNER_B).await?;
    let mut live = a.client.subscribe(format!("cw.feed.{PARTNER_A}.>")).await?;
    let mut b_own = b.client.subscribe(format!("cw.feed.{PARTNER_B}.>")).await?;
    let mut b_on_a = b.client.subscribe(format!("cw.feed.{PARTNER_A}.>")).await?;
    a.client.flush().await?;
    b.client.flush().await?;
    b.errors
        .subscription_refused(&format!("cw.feed.{PARTNER_A}.>"))
        .await
        .context("B subscribing to A's feed")?;

    // The hospital registers and admits a synthetic person: no relationship with A yet.
    let person = client
        .register_person(signed(v1::RegisterPersonRequest {
            context: ctx(HOSP),
            profile: Some(v1::Profile {
                nhs_number: NhsNumber::synthetic(401).as_str().to_owned(),
                given_name: "Ada".into(),
                family_name: "Example".into(),
                date_of_birth: "1941-03-02".into(),
                ..Default::default()
            }),
        }))
        .await
        .context("registering the person")?
        .into_inner()
        .person_id;
    let episode = client
        .admit_person(signed(v1::AdmitPersonRequest {
            context: ctx(HOSP),
            person_id: person.clone(),
            site: WARD.into(),
            ward: "Ward 7".into(),
            admitted_at: Some(prost_types::Timestamp {
                seconds: (chrono::Utc::now() - chrono::Duration::hours(30)).timestamp(),
                nanos: 0,
            }),
        }))
        .await
        .context("admitting the person")?
        .into_inner()
        .aggregate_id;
    expect_discharge(&mut client, &person, &episode, 3).await?;

    // The referral to A's service starts the relationship; each later command reaches A's
    // live subscription as the next numbered item.
    let referred = client
        .make_referral(signed(v1::MakeReferralRequest {
            context: ctx(HOSP),
            person_id: person.clone(),
            referral: Some(v1::Referral {
                from_organisation: HOSP.into(),
                to_service: A_SERVICE.into(),
                priority: v1::Priority::Urgent as i32,
                reason: "Reablement after discharge".into(),
                replaces: String::new(),
            }),
        }))
        .await
        .context("referring to A")?
        .into_inner()
        .log_position;
    let mut queued = std::collections::VecDeque::new();
    let mut items = vec![next_live_item(&mut live, &mut queued).await?];
    let mut positions = vec![referred];
    for days in [4, 5] {
        positions.push(expect_discharge(&mut client, &person, &episode, days).await?);
        items.push(next_live_item(&mut live, &mut queued).await?);
    }
    let numbers: Vec<u64> = items.iter().map(|i| i.number).collect();
    assert_eq!(
        numbers,
        vec![1, 2, 3],
        "numbered from the relationship's start"
    );
    let carried: Vec<u64> = items.iter().map(|i| i.log_position).collect();
    assert_eq!(
        carried, positions,
        "one item per event, in order, nothing before"
    );
    let types: Vec<&str> = items.iter().map(event_type).collect();
    assert_eq!(
        types,
        [
            "referral_submitted",
            "expected_discharge_date_set",
            "expected_discharge_date_set"
        ]
    );
    for item in &items {
        assert_eq!(item.disclosure, v1::Disclosure::Full as i32);
        assert!(item.event.is_some(), "a full disclosure carries the event");
        let ids = item.identifiers.as_ref().context("identifiers")?;
        assert_eq!(ids.person_id, person);
    }

    // Everything is decided and stored: nothing more for A, and nothing at all for B (a
    // round trip to the server delivers anything it had queued for the connection before).
    let last = *positions.last().context("positions")?;
    tokio::time::timeout(WAIT, progress.wait_for(|p| p.delivered_through >= last))
        .await
        .with_context(|| format!("the gateway did not settle position {last}"))??;
    a.client.flush().await?;
    b.client.flush().await?;
    assert!(
        nothing_delivered(&mut live),
        "A got exactly its three items"
    );
    assert!(nothing_delivered(&mut b_own), "B has no relationship");
    assert!(nothing_delivered(&mut b_on_a), "B got nothing of A's");
    assert!(
        d.messages_in("CW_FEED").await? > 3,
        "the feed stream holds the hospital's items too"
    );

    // The durable route: the operator creates A's consumer, A binds to it through JetStream
    // domain "carewoven" and reads the same items from number 1.
    d.add_consumer(PARTNER_A).await?;
    d.add_consumer(PARTNER_B).await?;
    let consumer: PullConsumer =
        a.js.get_consumer_from_stream(PARTNER_A.to_owned(), "CW_FEED")
            .await
            .context("A binding to its consumer")?;
    let mut messages = consumer.messages().await?;
    let mut durable = Vec::new();
    while durable.len() < items.len() {
        let message = tokio::time::timeout(WAIT, messages.next())
            .await
            .context("A's pull")?
            .context("A's pull ended")?
            .map_err(|e| anyhow::anyhow!("A pulling: {e}"))?;
        durable.extend(feed_batch(
            &message.subject,
            message.headers.as_ref(),
            message.payload.as_ref(),
        )?);
        message
            .ack()
            .await
            .map_err(|e| anyhow::anyhow!("A acknowledging: {e}"))?;
    }
    assert_eq!(durable, items, "the durable feed is the live feed");
    // And it continues: the next command's item comes both ways.
    let next = expect_discharge(&mut client, &person, &episode, 6).await?;
    let live_next = next_live_item(&mut live, &mut queued).await?;
    let pulled = tokio::time::timeout(WAIT, messages.next())
        .await
        .context("A's pull")?
        .context("A's pull ended")?
        .map_err(|e| anyhow::anyhow!("A pulling: {e}"))?;
    let durable_next = feed_batch(
        &pulled.subject,
        pulled.headers.as_ref(),
        pulled.payload.as_ref(),
    )?
    .into_iter()
    .next()
    .context("an empty feed message")?;
    assert_eq!((live_next.number, live_next.log_position), (4, next));
    assert_eq!(durable_next, live_next);
    pulled
        .double_ack()
        .await
        .map_err(|e| anyhow::anyhow!("A acknowledging: {e}"))?;
    drop(messages);

    // B's own consumer is empty too.
    tokio::time::timeout(WAIT, progress.wait_for(|p| p.delivered_through >= next))
        .await
        .with_context(|| format!("the gateway did not settle position {next}"))??;
    let mut b_consumer: PullConsumer =
        b.js.get_consumer_from_stream(PARTNER_B.to_owned(), "CW_FEED")
            .await
            .context("B binding to its consumer")?;
    assert_eq!(
        b_consumer.info().await?.num_pending,
        0,
        "B's consumer is empty"
    );
    b.client.flush().await?;
    assert!(nothing_delivered(&mut b_own), "B has no relationship");
    assert!(nothing_delivered(&mut b_on_a), "B got nothing of A's");

    // A used only what deploy/README.md documents: the server refused it nothing.
    assert_eq!(
        a.errors.drain(),
        Vec::<String>::new(),
        "A was refused something"
    );

    gateway.stop().await?;
    commands.stop().await?;
    Ok(())
}
