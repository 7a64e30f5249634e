//! The reads: the care record, the discharge board (paged, or watched live), a service's
//! referral inbox, a caseload, the partner feed, who accessed a record, a demographics trace
//! and the services' status. One module per read; this one holds what they share: who is
//! asking (the same credentials as the commands), the channels, and how a failure ends the
//! run.
//!
//! Personal data goes to stdout only (the user asked for it); stderr carries progress,
//! refusals and hints, never a name, an NHS number or free text; tokens are never printed.

mod board;
mod caseload;
mod feed;
mod find_person;
mod inbox;
pub mod json;
mod progress;
mod record;
mod show;
mod status;
mod who_accessed;
mod worklist;

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use carewoven_governance::Role;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use crate::auth::Auth;
use crate::cli::{Global, Read};
use crate::output;

/// Why a read ended without its answer.
pub enum Failure {
    /// The service refused or failed the call: its gRPC code and message are printed.
    Status(Status),
    /// A server could not be reached.
    Unreachable(anyhow::Error),
    /// Something on this side (credentials, output).
    Client(anyhow::Error),
}

impl From<Status> for Failure {
    fn from(status: Status) -> Self {
        Failure::Status(status)
    }
}

/// Who is reading, from where, and how answers are shown.
pub struct Reader {
    pub global: Global,
    auth: Auth,
    organisation: String,
    pub timeout: Duration,
}

impl Reader {
    pub fn json(&self) -> bool {
        self.global.json
    }

    /// A unary request with its deadline and the bearer token for the acting organisation
    /// (with `roles`, when minted).
    pub fn request<T>(&self, message: T, roles: &[Role]) -> Result<Request<T>, Failure> {
        let mut request = self.stream_request(message, roles)?;
        request.set_timeout(self.timeout);
        Ok(request)
    }

    /// A streaming request: the token only, no deadline (a stream lasts as long as it is
    /// read).
    pub fn stream_request<T>(&self, message: T, roles: &[Role]) -> Result<Request<T>, Failure> {
        let user = if self.auth.is_citizen_token() {
            ""
        } else {
            self.global.user.as_str()
        };
        let token = self
            .auth
            .token(&self.organisation, user, roles)
            .map_err(Failure::Client)?;
        let request = Request::new(message);
        Ok(match token {
            Some(token) => carewoven_access::grpc::with_token(request, &token),
            None => request,
        })
    }

    /// A channel to the views service.
    pub async fn views(&self) -> Result<Channel, Failure> {
        connect(&self.global.views_server, self.timeout, "the views service").await
    }

    /// A channel to the partner-feed gateway.
    pub async fn gateway(&self) -> Result<Channel, Failure> {
        connect(&self.global.gateway_server, self.timeout, "the gateway").await
    }
}

/// Connect eagerly (a wrong address fails here) with a connect timeout only: unary calls
/// carry their own deadline, streams have none.
async fn connect(server: &str, timeout: Duration, what: &str) -> Result<Channel, Failure> {
    crate::rpc::endpoint_for_streams(server, timeout)
        .map_err(Failure::Client)?
        .connect()
        .await
        .with_context(|| format!("cannot connect to {what} at {server}"))
        .map_err(Failure::Unreachable)
}

/// The largest page the views serve.
pub const PAGE_SIZE: u32 = 500;

/// One page of a paged list: its entries, the next page's token (empty: the last page) and
/// the views' log position.
pub type Page<T> = (Vec<T>, String, u64);

/// Every page, fetched in turn (`fetch` gets each page token, empty for the first), counted
/// on a spinner of `unit`s: the entries in order and the last page's log position.
pub async fn all_pages<T, Fut>(
    unit: &str,
    mut fetch: impl FnMut(String) -> Fut,
) -> Result<(Vec<T>, u64), Failure>
where
    Fut: std::future::Future<Output = Result<Page<T>, Failure>>,
{
    let bar = progress::counter(unit);
    let mut entries = Vec::new();
    let mut token = String::new();
    let mut pages = 0u32;
    loop {
        let (page, next, position) = fetch(token).await?;
        pages += 1;
        bar.inc(page.len() as u64);
        bar.set_message(format!("({pages} page(s))"));
        entries.extend(page);
        if next.is_empty() {
            bar.finish_and_clear();
            return Ok((entries, position));
        }
        token = next;
    }
}

/// Run one read subcommand.
pub async fn run(global: Global, read: Read, timeout: Duration) -> ExitCode {
    let json = global.json;
    let prepared =
        Auth::new(global.token.as_deref(), global.issuer_dir.as_deref()).and_then(|auth| {
            let org = crate::acting_org(&global, &auth, false)?;
            Ok((auth, org))
        });
    let (auth, organisation) = match prepared {
        Ok(p) => p,
        Err(e) => {
            output::report_error(&e, json);
            return ExitCode::from(crate::REFUSED);
        }
    };
    let no_credentials = auth.is_none();
    let reader = Reader {
        global,
        auth,
        organisation,
        timeout,
    };
    let outcome = match read {
        Read::Record(a) => record::run(&reader, a).await,
        Read::Board(a) if a.watch => board::watch(&reader, a).await,
        Read::Board(a) => board::run(&reader, a).await,
        Read::Inbox(a) => inbox::run(&reader, a).await,
        Read::Caseload(a) => caseload::run(&reader, a).await,
        Read::Worklist(a) => worklist::run(&reader, a).await,
        Read::Feed(a) => feed::run(&reader, a).await,
        Read::WhoAccessed(a) => who_accessed::run(&reader, a).await,
        Read::FindPerson(a) => find_person::run(&reader, a).await,
        Read::Status => status::run(&reader).await,
    };
    match outcome {
        Ok(code) => code,
        Err(Failure::Status(status)) => {
            let code = output::report_refusal(&status, json);
            if status.code() == Code::Unauthenticated && no_credentials && !json {
                eprintln!("hint: {}", crate::CREDENTIALS_HINT);
            }
            code
        }
        Err(Failure::Unreachable(e)) => {
            output::report_error(&e, json);
            ExitCode::from(crate::UNREACHABLE)
        }
        Err(Failure::Client(e)) => {
            output::report_error(&e, json);
            ExitCode::FAILURE
        }
    }
}
