//! The tonic `CommandService`: every RPC converts its request and hands it to the handler.

use carewoven_proto::v1::{self, command_service_server::CommandService};
use tonic::{Request, Response, Status};
use tracing::Instrument;

use carewoven_access::Authenticator;

use crate::handler::Handler;

pub struct Commands {
    handler: Handler,
    auth: Authenticator,
}

impl Commands {
    pub fn new(handler: Handler, auth: Authenticator) -> Self {
        Commands { handler, auth }
    }
}

macro_rules! rpcs {
    ($($method:ident($request:ident);)*) => {
        #[tonic::async_trait]
        impl CommandService for Commands {
            $(
                async fn $method(
                    &self,
                    request: Request<v1::$request>,
                ) -> Result<Response<v1::CommandReply>, Status> {
                    let span = tracing::info_span!("command", rpc = stringify!($method));
                    let identity = self.auth.identify(request.metadata());
                    let result = self
                        .handler
                        .execute(stringify!($method), identity, request.get_ref())
                        .instrument(span)
                        .await;
                    crate::server::trace_outcome(stringify!($method), &result);
                    result.map(Response::new)
                }
            )*
        }
    };
}

rpcs! {
    register_person(RegisterPersonRequest);
    correct_person_details(CorrectPersonDetailsRequest);
    assert_emergency_access(AssertEmergencyAccessRequest);
    make_referral(MakeReferralRequest);
    progress_referral(ProgressReferralRequest);
    request_assessment(RequestAssessmentRequest);
    contribute_to_assessment(ContributeToAssessmentRequest);
    complete_assessment(CompleteAssessmentRequest);
    cancel_assessment(CancelAssessmentRequest);
    replace_assessor(ReplaceAssessorRequest);
    raise_risk_flag(RaiseRiskFlagRequest);
    end_risk_flag(EndRiskFlagRequest);
    create_task(CreateTaskRequest);
    change_task_status(ChangeTaskStatusRequest);
    reassign_task(ReassignTaskRequest);
    agree_care_plan(AgreeCarePlanRequest);
    revise_care_plan(ReviseCarePlanRequest);
    add_care_team_member(AddCareTeamMemberRequest);
    remove_care_team_member(RemoveCareTeamMemberRequest);
    name_care_coordinator(NameCareCoordinatorRequest);
    record_consent(RecordConsentRequest);
    withdraw_consent(WithdrawConsentRequest);
    admit_person(AdmitPersonRequest);
    progress_discharge(ProgressDischargeRequest);
    record_meeting(RecordMeetingRequest);
    complete_meeting_action(CompleteMeetingActionRequest);
    record_feedback(RecordFeedbackRequest);
    grant_proxy(GrantProxyRequest);
    revoke_proxy(RevokeProxyRequest);
    register_organisation(RegisterOrganisationRequest);
    add_organisation_service(AddOrganisationServiceRequest);
    record_sharing_agreement(RecordSharingAgreementRequest);
    end_sharing_agreement(EndSharingAgreementRequest);
}
