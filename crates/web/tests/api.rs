//! The screens' JSON API over plain HTTP/1.1 on 127.0.0.1, beside a real nats-server, the
//! command service, the views (with the web listener) and the gateway: the same refusals as
//! the gRPC API, the headers every answer carries, the board stream, and referral decisions
//! sent on to the command service.

use std::time::Duration;

use anyhow::{Context, Result};
use carewoven_proto::v1::{self, progress_discharge_request as pd};
use carewoven_testkit::*;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct World {
    stack: Stack,
    views: Running,
    gateway: Running,
    web: String,
    _dir: tempfile::TempDir,
}

struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn json(&self) -> Result<Value> {
        serde_json::from_str(&self.body).with_context(|| format!("not JSON: {}", self.body))
    }

    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }

    /// The error's `field`, for a 400.
    fn field(&self) -> Result<String> {
        Ok(self.json()?["error"]["field"]
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }
}

impl World {
    async fn start() -> Result<Self> {
        let stack = Stack::start().await?;
        let dir = tempfile::tempdir()?;
        let (gateway, _) =
            start_gateway(carewoven_gateway::Config::for_nats(stack.nats.url())).await?;
        let web = format!("127.0.0.1:{}", free_port()?);
        let mut config =
            carewoven_views::Config::new(stack.nats.url(), dir.path().join("views.redb"));
        config.web_listen = Some(web.clone());
        config.web_audit_server = Some(format!("http://{}", gateway.addr));
        config.web_commands_server = Some(format!("http://{}", stack.service.addr));
        let views = start_views(config).await?;
        Ok(World {
            stack,
            views,
            gateway,
            web,
            _dir: dir,
        })
    }

    async fn stop(self) -> Result<()> {
        self.views.stop().await?;
        self.gateway.stop().await?;
        self.stack.service.stop().await
    }

    /// `method path` over a fresh connection as `token`'s holder, after the views reached
    /// `position`.
    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        position: u64,
        body: &str,
    ) -> Result<Answer> {
        let mut stream = tokio::net::TcpStream::connect(&self.web).await?;
        let mut request = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.web,
            body.len()
        );
        if let Some(token) = token {
            request.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        if position > 0 {
            request.push_str(&format!("Carewoven-Min-Log-Position: {position}\r\n"));
        }
        if !body.is_empty() {
            request.push_str("Content-Type: application/json\r\n");
        }
        request.push_str("\r\n");
        request.push_str(body);
        stream.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await?;
        let text = String::from_utf8(raw)?;
        let (head, body) = text.split_once("\r\n\r\n").context("no end of headers")?;
        let status = head
            .split(' ')
            .nth(1)
            .context("no status")?
            .parse()
            .context("status")?;
        Ok(Answer {
            status,
            head: head.to_owned(),
            body: body.to_owned(),
        })
    }

    async fn get(&self, path: &str, org: &str, position: u64) -> Result<Answer> {
        self.call("GET", path, Some(&token(org)), position, "")
            .await
    }

    /// The board stream as `org` sees it, read until the snapshot is complete: its lines.
    async fn board_snapshot(&self, org: &str, position: u64) -> Result<(String, Vec<Value>)> {
        let mut stream = tokio::net::TcpStream::connect(&self.web).await?;
        let request = format!(
            "GET /api/board/watch HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
             Carewoven-Min-Log-Position: {position}\r\n\r\n",
            self.web,
            token(org)
        );
        stream.write_all(request.as_bytes()).await?;
        let mut raw = Vec::new();
        let mut buf = [0u8; 8192];
        let read = async {
            while !String::from_utf8_lossy(&raw).contains("\"snapshot_complete\":true") {
                let n = stream.read(&mut buf).await?;
                anyhow::ensure!(n > 0, "the stream ended before the snapshot was complete");
                raw.extend_from_slice(&buf[..n]);
            }
            Ok(())
        };
        tokio::time::timeout(Duration::from_secs(20), read)
            .await
            .context("timed out reading the board snapshot")??;
        let text = String::from_utf8(raw)?;
        let (head, body) = text.split_once("\r\n\r\n").context("no end of headers")?;
        // Chunked: keep the lines that are JSON.
        let lines = body
            .lines()
            .filter(|l| l.starts_with('{'))
            .map(serde_json::from_str)
            .collect::<Result<Vec<Value>, _>>()?;
        Ok((head.to_owned(), lines))
    }
}

fn pos(reply: tonic::Response<v1::CommandReply>) -> u64 {
    reply.into_inner().log_position
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_the_grpc_apis_and_every_answer_carries_the_headers() -> Result<()> {
    let w = World::start().await?;
    let mut client = w.stack.client.clone();
    let person = register(&mut client, 601).await?;
    let episode = episode_ready(&mut client, &person).await?;
    let at = pos(client
        .progress_discharge(signed(discharge_step(
            &person,
            &episode,
            pd::Step::AssignPathway(pd::AssignPathway {
                pathway: v1::Pathway::Pathway1 as i32,
            }),
        )))
        .await?);

    // The page and its assets, with their types and the policy.
    for (path, kind) in [
        ("/", "text/html"),
        (&format!("/record/{person}"), "text/html"),
        ("/app.js", "text/javascript"),
        ("/app.css", "text/css"),
    ] {
        let a = w.call("GET", path, None, 0, "").await?;
        assert_eq!(a.status, 200, "{path}");
        assert!(
            a.header("content-type")
                .unwrap_or_default()
                .starts_with(kind),
            "{path}"
        );
        let csp = a.header("content-security-policy").unwrap_or_default();
        assert!(
            csp.contains("default-src 'none'") && csp.contains("script-src 'self'"),
            "{csp}"
        );
        assert_eq!(a.header("referrer-policy").as_deref(), Some("no-referrer"));
        assert_eq!(
            a.header("x-content-type-options").as_deref(),
            Some("nosniff")
        );
    }

    // No token, or a bad one: 401, as on gRPC.
    for token in [None, Some("not-a-token")] {
        let a = w
            .call("GET", &format!("/api/record/{person}"), token, 0, "")
            .await?;
        assert_eq!(a.status, 401, "{}", a.body);
        assert_eq!(a.json()?["error"]["code"], "unauthenticated");
        assert!(a.header("www-authenticate").is_some());
        assert_eq!(a.header("cache-control").as_deref(), Some("no-store"));
    }

    // The hospital reads the record; bad input is refused naming the field.
    let record = w
        .get(&format!("/api/record/{person}"), "HOSP-A", at)
        .await?;
    assert_eq!(record.status, 200, "{}", record.body);
    assert_eq!(record.header("cache-control").as_deref(), Some("no-store"));
    let record = record.json()?;
    assert_eq!(record["person_id"], person.as_str());
    assert_eq!(record["profile"]["nhs_number"], test_nhs_number(601));
    assert_eq!(record["discharge_episodes"][0]["pathway"], "PATHWAY_1");
    for (path, field) in [
        ("/api/record/not-a-uuid".to_owned(), "person_id"),
        ("/api/board/watch?pathway=7".to_owned(), "pathway"),
        ("/api/board/watch?site=bad%20site".to_owned(), "site"),
        (
            "/api/board/watch?delay_reason=LATE".to_owned(),
            "delay_reason",
        ),
        (
            "/api/board/watch?nhs_number=9990000018".to_owned(),
            "nhs_number",
        ),
        ("/api/inbox".to_owned(), "service"),
        ("/api/caseload".to_owned(), "organisation"),
    ] {
        let a = w.get(&path, "HOSP-A", 0).await?;
        assert_eq!(a.status, 400, "{path}: {}", a.body);
        assert_eq!(a.field()?, field, "{path}");
    }

    // Someone else's inbox or caseload: 403.
    for path in [
        "/api/inbox?service=ASC-D2A",
        "/api/caseload?organisation=ASC",
    ] {
        let a = w.get(path, "HOSP-A", 0).await?;
        assert_eq!(a.status, 403, "{path}: {}", a.body);
        assert_eq!(a.json()?["error"]["code"], "permission_denied");
    }

    // An organisation with no relationship: the same bytes as for nobody at all.
    let unreadable = w.get(&format!("/api/record/{person}"), "COMM", at).await?;
    let nobody = w
        .get(&format!("/api/record/{}", uuid::Uuid::new_v4()), "COMM", at)
        .await?;
    assert_eq!(unreadable.status, 404);
    assert_eq!(
        (unreadable.status, &unreadable.body),
        (nobody.status, &nobody.body)
    );
    let access = w
        .get(&format!("/api/record/{person}/access"), "COMM", at)
        .await?;
    assert_eq!((access.status, &access.body), (nobody.status, &nobody.body));

    // The board stream: the hospital's holds the episode, the outsider's nothing.
    let (head, lines) = w.board_snapshot("HOSP-A", at).await?;
    assert!(
        head.to_lowercase()
            .contains("content-type: application/x-ndjson"),
        "{head}"
    );
    let upserts: Vec<&Value> = lines.iter().filter_map(|l| l.get("upsert")).collect();
    assert_eq!(upserts.len(), 1, "{lines:?}");
    assert_eq!(upserts[0]["episode_id"], episode.as_str());
    assert_eq!(upserts[0]["pathway"], "PATHWAY_1");
    let (_, lines) = w.board_snapshot("COMM", at).await?;
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["snapshot_complete"], true);

    // Who accessed the record, as the gateway answers the hospital: its own reads.
    let access = w
        .get(&format!("/api/record/{person}/access"), "HOSP-A", at)
        .await?;
    assert_eq!(access.status, 200, "{}", access.body);
    let entries = access.json()?["entries"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        entries
            .iter()
            .any(|e| e["event"]["organisation"] == "HOSP-A"
                && e["event"]["detail"] == "GetCareRecord"),
        "{entries:?}"
    );
    w.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_inbox_accepts_and_rejects_referrals_through_the_command_service() -> Result<()> {
    let w = World::start().await?;
    let mut client = w.stack.client.clone();
    let person = register(&mut client, 602).await?;
    let first = make_referral(&mut client, &person).await?;
    let second = make_referral(&mut client, &person).await?;
    let at = pos(client
        .progress_referral(signed(referral_action(
            &person,
            &second,
            v1::ReferralAction::Receive,
            "ASC-D2A",
        )))
        .await?);
    let inbox = w.get("/api/inbox?service=ASC-D2A", "ASC-D2A", at).await?;
    assert_eq!(inbox.status, 200, "{}", inbox.body);
    let entries = inbox.json()?["entries"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let ids: Vec<&str> = entries
        .iter()
        .filter_map(|e| e["referral_id"].as_str())
        .collect();
    assert_eq!(ids.len(), 2, "{entries:?}");
    assert!(ids.contains(&first.as_str()) && ids.contains(&second.as_str()));
    assert_eq!(entries[0]["priority"], "PRIORITY_URGENT");

    let decide =
        |referral: &str, decision: &str| format!("/api/referrals/{person}/{referral}/{decision}");
    // The referrer may not decide for the receiving service.
    let a = w
        .call(
            "POST",
            &decide(&first, "accept"),
            Some(&token("HOSP-A")),
            0,
            "{}",
        )
        .await?;
    assert!(
        matches!(a.status, 403 | 404 | 409),
        "{} {}",
        a.status,
        a.body
    );
    // A rejection needs a reason, named as the field.
    let a = w
        .call(
            "POST",
            &decide(&first, "reject"),
            Some(&token("ASC-D2A")),
            0,
            "{\"reason\": \"\"}",
        )
        .await?;
    assert_eq!(a.status, 400, "{}", a.body);
    assert_eq!(a.field()?, "reason");
    let a = w
        .call(
            "POST",
            &decide(&first, "maybe"),
            Some(&token("ASC-D2A")),
            0,
            "",
        )
        .await?;
    assert_eq!((a.status, a.field()?.as_str()), (400, "decision"));
    let a = w
        .call(
            "POST",
            &decide(&first, "reject"),
            Some(&token("ASC-D2A")),
            0,
            "{\"reason\": 5}",
        )
        .await?;
    assert_eq!((a.status, a.field()?.as_str()), (400, "reason"));

    let rejected = w
        .call(
            "POST",
            &decide(&first, "reject"),
            Some(&token("ASC-D2A")),
            0,
            "{\"reason\": \"Outside our area: refer to the neighbouring council\"}",
        )
        .await?;
    assert_eq!(rejected.status, 200, "{}", rejected.body);
    let accepted = w
        .call(
            "POST",
            &decide(&second, "accept"),
            Some(&token("ASC-D2A")),
            0,
            "",
        )
        .await?;
    assert_eq!(accepted.status, 200, "{}", accepted.body);
    let at = accepted.json()?["log_position"]
        .as_u64()
        .unwrap_or_default();
    // Deciding again is refused by the domain's rules.
    let again = w
        .call(
            "POST",
            &decide(&first, "accept"),
            Some(&token("ASC-D2A")),
            0,
            "",
        )
        .await?;
    assert_eq!(again.status, 409, "{}", again.body);

    let record = w
        .get(&format!("/api/record/{person}"), "ASC-D2A", at)
        .await?;
    assert_eq!(record.status, 200, "{}", record.body);
    let record = record.json()?;
    let status_of = |id: &str| {
        record["referrals"]
            .as_array()
            .and_then(|rs| rs.iter().find(|r| r["referral_id"] == id))
            .map(|r| (r["status"].clone(), r["reason"].clone()))
    };
    assert_eq!(
        status_of(&first),
        Some((
            "rejected".into(),
            "Outside our area: refer to the neighbouring council".into()
        ))
    );
    assert_eq!(status_of(&second).map(|s| s.0), Some("accepted".into()));

    // Decided referrals leave the default inbox (awaiting a decision); `all` keeps them,
    // the rejection with its reason.
    let open = w
        .get("/api/inbox?service=ASC-D2A", "ASC-D2A", at)
        .await?
        .json()?;
    assert_eq!(open["entries"].as_array().map(Vec::len), Some(0), "{open}");
    let all = w
        .get("/api/inbox?service=ASC-D2A&status=all", "ASC-D2A", at)
        .await?
        .json()?;
    let entries = all["entries"].as_array().cloned().unwrap_or_default();
    assert_eq!(entries.len(), 2, "{all}");
    assert!(entries.iter().any(|e| e["status"] == "rejected"
        && e["reason"] == "Outside our area: refer to the neighbouring council"));
    w.stop().await
}
