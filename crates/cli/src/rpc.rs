//! The gRPC side: connecting, the command context, and one call per request type.

use std::time::Duration;

use anyhow::{Context as _, Result};
use carewoven_proto::v1::{self, command_service_client::CommandServiceClient};
use tonic::transport::{Channel, Endpoint};
use tonic::{Request, Status};
use uuid::Uuid;

pub type Client = CommandServiceClient<Channel>;

/// An endpoint with the connect timeout and per-call deadline applied.
pub fn endpoint(server: &str, timeout: Duration) -> Result<Endpoint> {
    Ok(Endpoint::from_shared(with_scheme(server))
        .with_context(|| format!("invalid server address `{server}`"))?
        .connect_timeout(timeout)
        .timeout(timeout))
}

/// An endpoint with the connect timeout only: unary calls set their own deadline, streams
/// last as long as they are read.
pub fn endpoint_for_streams(server: &str, timeout: Duration) -> Result<Endpoint> {
    Ok(Endpoint::from_shared(with_scheme(server))
        .with_context(|| format!("invalid server address `{server}`"))?
        .connect_timeout(timeout))
}

/// `host:port` means `http://host:port`.
pub fn with_scheme(server: &str) -> String {
    if server.contains("://") {
        server.to_owned()
    } else {
        format!("http://{server}")
    }
}

/// Connect to the command service (eagerly, so a wrong address fails here).
pub async fn connect(server: &str, timeout: Duration) -> Result<Client> {
    let channel = endpoint(server, timeout)?
        .connect()
        .await
        .with_context(|| format!("cannot connect to the command service at {server}"))?;
    Ok(CommandServiceClient::new(channel))
}

/// Who is acting and how the command relates to others.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub command_id: Uuid,
    pub correlation_id: Option<Uuid>,
    pub causation_id: Option<Uuid>,
    pub organisation: String,
    pub user: String,
    pub occurred_at: Option<prost_types::Timestamp>,
}

impl Ctx {
    pub fn wire(&self) -> Option<v1::CommandContext> {
        let id = |u: Option<Uuid>| u.map(|u| u.to_string()).unwrap_or_default();
        Some(v1::CommandContext {
            command_id: self.command_id.to_string(),
            correlation_id: id(self.correlation_id),
            causation_id: id(self.causation_id),
            organisation: self.organisation.clone(),
            user: self.user.clone(),
            occurred_at: self.occurred_at,
        })
    }
}

/// One request of `CommandService`, ready to send.
#[derive(Debug, Clone)]
pub enum Rpc {
    RegisterPerson(v1::RegisterPersonRequest),
    CorrectPersonDetails(v1::CorrectPersonDetailsRequest),
    AssertEmergencyAccess(v1::AssertEmergencyAccessRequest),
    MakeReferral(v1::MakeReferralRequest),
    ProgressReferral(v1::ProgressReferralRequest),
    RequestAssessment(v1::RequestAssessmentRequest),
    ContributeToAssessment(v1::ContributeToAssessmentRequest),
    CompleteAssessment(v1::CompleteAssessmentRequest),
    CancelAssessment(v1::CancelAssessmentRequest),
    ReplaceAssessor(v1::ReplaceAssessorRequest),
    RaiseRiskFlag(v1::RaiseRiskFlagRequest),
    EndRiskFlag(v1::EndRiskFlagRequest),
    CreateTask(v1::CreateTaskRequest),
    ChangeTaskStatus(v1::ChangeTaskStatusRequest),
    ReassignTask(v1::ReassignTaskRequest),
    AgreeCarePlan(v1::AgreeCarePlanRequest),
    ReviseCarePlan(v1::ReviseCarePlanRequest),
    AddCareTeamMember(v1::AddCareTeamMemberRequest),
    RemoveCareTeamMember(v1::RemoveCareTeamMemberRequest),
    NameCareCoordinator(v1::NameCareCoordinatorRequest),
    RecordConsent(v1::RecordConsentRequest),
    WithdrawConsent(v1::WithdrawConsentRequest),
    AdmitPerson(v1::AdmitPersonRequest),
    ProgressDischarge(v1::ProgressDischargeRequest),
    RecordMeeting(v1::RecordMeetingRequest),
    CompleteMeetingAction(v1::CompleteMeetingActionRequest),
    RecordFeedback(v1::RecordFeedbackRequest),
    GrantProxy(v1::GrantProxyRequest),
    RevokeProxy(v1::RevokeProxyRequest),
    RegisterOrganisation(v1::RegisterOrganisationRequest),
    AddOrganisationService(v1::AddOrganisationServiceRequest),
    RecordSharingAgreement(v1::RecordSharingAgreementRequest),
    EndSharingAgreement(v1::EndSharingAgreementRequest),
}

/// The request with its deadline and, if any, its bearer token.
fn request<T>(message: T, timeout: Duration, token: Option<&str>) -> Request<T> {
    let mut request = Request::new(message);
    request.set_timeout(timeout);
    match token {
        Some(token) => carewoven_access::grpc::with_token(request, token),
        None => request,
    }
}

impl Rpc {
    /// Whether this changes the registry (needs the governance role).
    pub fn is_registry(&self) -> bool {
        matches!(
            self,
            Rpc::RegisterOrganisation(_)
                | Rpc::AddOrganisationService(_)
                | Rpc::RecordSharingAgreement(_)
                | Rpc::EndSharingAgreement(_)
        )
    }

    /// Send the request with `timeout` as its gRPC deadline and `token` as its bearer token.
    pub async fn send(
        self,
        client: &mut Client,
        timeout: Duration,
        token: Option<&str>,
    ) -> Result<v1::CommandReply, Status> {
        macro_rules! call {
            ($method:ident, $message:expr) => {
                client
                    .$method(request($message, timeout, token))
                    .await
                    .map(tonic::Response::into_inner)
            };
        }
        match self {
            Rpc::RegisterPerson(m) => call!(register_person, m),
            Rpc::CorrectPersonDetails(m) => call!(correct_person_details, m),
            Rpc::AssertEmergencyAccess(m) => call!(assert_emergency_access, m),
            Rpc::MakeReferral(m) => call!(make_referral, m),
            Rpc::ProgressReferral(m) => call!(progress_referral, m),
            Rpc::RequestAssessment(m) => call!(request_assessment, m),
            Rpc::ContributeToAssessment(m) => call!(contribute_to_assessment, m),
            Rpc::CompleteAssessment(m) => call!(complete_assessment, m),
            Rpc::CancelAssessment(m) => call!(cancel_assessment, m),
            Rpc::ReplaceAssessor(m) => call!(replace_assessor, m),
            Rpc::RaiseRiskFlag(m) => call!(raise_risk_flag, m),
            Rpc::EndRiskFlag(m) => call!(end_risk_flag, m),
            Rpc::CreateTask(m) => call!(create_task, m),
            Rpc::ChangeTaskStatus(m) => call!(change_task_status, m),
            Rpc::ReassignTask(m) => call!(reassign_task, m),
            Rpc::AgreeCarePlan(m) => call!(agree_care_plan, m),
            Rpc::ReviseCarePlan(m) => call!(revise_care_plan, m),
            Rpc::AddCareTeamMember(m) => call!(add_care_team_member, m),
            Rpc::RemoveCareTeamMember(m) => call!(remove_care_team_member, m),
            Rpc::NameCareCoordinator(m) => call!(name_care_coordinator, m),
            Rpc::RecordConsent(m) => call!(record_consent, m),
            Rpc::WithdrawConsent(m) => call!(withdraw_consent, m),
            Rpc::AdmitPerson(m) => call!(admit_person, m),
            Rpc::ProgressDischarge(m) => call!(progress_discharge, m),
            Rpc::RecordMeeting(m) => call!(record_meeting, m),
            Rpc::CompleteMeetingAction(m) => call!(complete_meeting_action, m),
            Rpc::RecordFeedback(m) => call!(record_feedback, m),
            Rpc::GrantProxy(m) => call!(grant_proxy, m),
            Rpc::RevokeProxy(m) => call!(revoke_proxy, m),
            Rpc::RegisterOrganisation(m) => call!(register_organisation, m),
            Rpc::AddOrganisationService(m) => call!(add_organisation_service, m),
            Rpc::RecordSharingAgreement(m) => call!(record_sharing_agreement, m),
            Rpc::EndSharingAgreement(m) => call!(end_sharing_agreement, m),
        }
    }
}
