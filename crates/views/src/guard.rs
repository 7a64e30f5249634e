//! Who may see what: every call is authenticated by its bearer token, checked against the
//! governance rules (the access index follows the same log as the views), and every record
//! read and every refusal is written to the audit stream.
//!
//! A permitted read is answered only once its audit record is stored; if the audit stream
//! cannot store it, the caller gets UNAVAILABLE and nothing is disclosed. A refusal is
//! audited on a best-effort basis: nothing was disclosed, so the refusal stands even if the
//! audit stream cannot be reached.

use std::time::Duration;

use carewoven_access::grpc::{permission_denied, unauthenticated};
use carewoven_access::{AccessIndex, AuditLog, AuditRecord, Authenticator};
use carewoven_governance::{Denial, Identity, Role};
use carewoven_proto::v1;
use tonic::Status;
use tonic::metadata::MetadataMap;
use uuid::Uuid;

/// The queries open to a citizen identity (the person themself, or a carer as their proxy):
/// every other query refuses them (`NOT_OPEN_TO_CITIZENS`), whatever it would show.
const CITIZEN_QUERIES: [&str; 1] = ["GetCareRecord"];

/// Authentication, authorisation and audit for the views' RPCs.
#[derive(Clone)]
pub struct Guard {
    auth: Authenticator,
    access: AccessIndex,
    audit: AuditLog,
    /// Longest wait for the audit stream to acknowledge.
    timeout: Duration,
}

impl Guard {
    pub fn new(
        auth: Authenticator,
        access: AccessIndex,
        audit: AuditLog,
        timeout: Duration,
    ) -> Self {
        Guard {
            auth,
            access,
            audit,
            timeout,
        }
    }

    /// The live governance state.
    pub fn access(&self) -> &AccessIndex {
        &self.access
    }

    /// How long to wait for NATS (the audit stream, the access index) before giving up.
    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The caller of a query. A call without a valid token is refused (UNAUTHENTICATED)
    /// and the refusal audited; it names no person (the caller is not trusted to name one).
    /// A citizen identity is refused every query but its own record (PERMISSION_DENIED).
    pub async fn identify(&self, metadata: &MetadataMap, rpc: &str) -> Result<Identity, Status> {
        match self.auth.identify(metadata) {
            Ok(identity) if identity.citizen.is_some() && !CITIZEN_QUERIES.contains(&rpc) => {
                let denial = Denial::new(
                    "NOT_OPEN_TO_CITIZENS",
                    format!(
                        "{rpc} is for organisations; a person may read their own record (GetCareRecord)"
                    ),
                );
                Err(self.refuse(&identity, None, rpc, &denial).await)
            }
            Ok(identity) => Ok(identity),
            Err(e) => {
                self.audit_refusal(None, None, rpc, e.reason()).await;
                Err(unauthenticated(&e))
            }
        }
    }

    /// The caller of an administrative call: the governance role is required. Not audited
    /// (no personal data is involved).
    pub fn administrator(&self, metadata: &MetadataMap) -> Result<Identity, Status> {
        let identity = self
            .auth
            .identify(metadata)
            .map_err(|e| unauthenticated(&e))?;
        if identity.has(Role::Governance) {
            Ok(identity)
        } else {
            Err(permission_denied(&Denial::new(
                "GOVERNANCE_ROLE_REQUIRED",
                "only a caller with the governance role may administer the views",
            )))
        }
    }

    /// PERMISSION_DENIED for `denial`, audited.
    pub async fn refuse(
        &self,
        who: &Identity,
        person: Option<Uuid>,
        rpc: &str,
        denial: &Denial,
    ) -> Status {
        self.audit_refusal(Some(who), person, rpc, denial.audit_reason())
            .await;
        permission_denied(denial)
    }

    /// Record a demographics trace (FindPerson), found or not, and wait until it is stored:
    /// a trace is answered only once it is on record.
    pub async fn audit_trace(
        &self,
        who: &Identity,
        person: Option<Uuid>,
        rpc: &str,
    ) -> Result<(), Status> {
        let record = AuditRecord::permitted(who, person, v1::AuditAction::FindPerson).detail(rpc);
        self.audit.record(&record).await.map(|_| ()).map_err(|e| {
            Status::unavailable(format!(
                "the trace could not be audited, so it is not answered; retry: {}",
                e.message()
            ))
        })
    }

    async fn audit_refusal(
        &self,
        who: Option<&Identity>,
        person: Option<Uuid>,
        rpc: &str,
        reason: &str,
    ) {
        // A citizen's refusal says whether they asked as the person or as a proxy.
        let detail = match (who, person) {
            (Some(who), Some(person)) if who.citizen.is_some() => self
                .access
                .with(|g| carewoven_access::citizen::audit_detail(g, who, person, rpc)),
            _ => rpc.to_owned(),
        };
        let record =
            AuditRecord::refused(who, person, v1::AuditAction::RecordRead, reason).detail(detail);
        self.audit.record_refusal(&record).await;
    }

    /// Record that `who` read each of `persons`' records (as of the views' log `position`),
    /// and wait until every record is stored. UNAVAILABLE if they cannot all be stored: the
    /// caller must then not be answered.
    pub async fn audit_reads(
        &self,
        who: &Identity,
        persons: &[Uuid],
        rpc: &str,
        position: u64,
    ) -> Result<(), Status> {
        let unaudited = |e: String| {
            Status::unavailable(format!(
                "the read could not be audited, so it is not answered; retry: {e}"
            ))
        };
        let mut stored = Vec::with_capacity(persons.len());
        for person in persons {
            // A person's own read says `self`; a proxy's, `proxy` and the carer's pseudonym.
            let detail = self
                .access
                .with(|g| carewoven_access::citizen::audit_detail(g, who, *person, rpc));
            let mut record =
                AuditRecord::permitted(who, Some(*person), v1::AuditAction::RecordRead)
                    .detail(detail);
            record.log_position = position;
            // Group-committed with every other read waiting at this moment (one write).
            stored.push(self.audit.submit(&record));
        }
        if stored.is_empty() {
            return Ok(());
        }
        futures::future::try_join_all(stored)
            .await
            .map_err(|e| unaudited(e.message().to_owned()))?;
        Ok(())
    }
}
