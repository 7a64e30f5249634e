//! People's own access (co-production, Caldicott principle 8), end to end: a person with a
//! citizen identity, and a carer they named as proxy, against the real command service, the
//! real views service (with its redb file) and the real gateway, over gRPC on loopback, with
//! a real nats-server. Every refusal leaves the log as it was.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use carewoven_access::citizen::testing as citizens;
use carewoven_domain::AggregateKind;
use carewoven_governance::IdentityLevel::{self, P0, P5, P9};
use carewoven_proto::v1::{
    self, audit_service_client::AuditServiceClient, feed_service_client::FeedServiceClient,
    query_service_client::QueryServiceClient,
};
use carewoven_testkit::*;
use futures::StreamExt;
use prost::Message;
use tonic::Code;
use tonic::transport::Channel;
use uuid::Uuid;

/// The command service (through [`Stack`], trusting the test citizens issuer beside the
/// organisations one), the views on a fresh redb file, and the gateway.
struct World {
    stack: Stack,
    views: Running,
    views_channel: Channel,
    gateway: Running,
    gateway_channel: Channel,
    _dir: tempfile::TempDir,
}

impl World {
    async fn start() -> Self {
        let Services {
            stack,
            views,
            gateway,
            dir,
            ..
        } = Services::start().await.unwrap();
        let views_channel = views.channel();
        let gateway_channel = gateway.channel();
        World {
            stack,
            views,
            views_channel,
            gateway,
            gateway_channel,
            _dir: dir,
        }
    }

    fn queries(&self) -> QueryServiceClient<Channel> {
        QueryServiceClient::new(self.views_channel.clone())
    }

    fn audit(&self) -> AuditServiceClient<Channel> {
        AuditServiceClient::new(self.gateway_channel.clone())
    }

    fn feeds(&self) -> FeedServiceClient<Channel> {
        FeedServiceClient::new(self.gateway_channel.clone())
    }

    /// `person`'s record as read with `token` (an empty person: the caller's own).
    async fn record(
        &self,
        token: &str,
        person: &str,
        at_least: u64,
    ) -> Result<v1::CareRecord, tonic::Status> {
        self.queries()
            .get_care_record(bearer(
                token,
                v1::GetCareRecordRequest {
                    person_id: person.into(),
                    min_log_position: at_least,
                },
            ))
            .await
            .map(tonic::Response::into_inner)
    }

    /// Who accessed `person`'s record, as asked with `token`.
    async fn accesses(
        &self,
        token: &str,
        person: &str,
    ) -> Result<Vec<v1::AuditEvent>, tonic::Status> {
        self.audit()
            .list_record_access(bearer(
                token,
                v1::ListRecordAccessRequest {
                    person_id: person.into(),
                    after: 0,
                    limit: 1000,
                    after_delivery: 0,
                },
            ))
            .await
            .map(|r| {
                r.into_inner()
                    .entries
                    .into_iter()
                    .filter_map(|e| e.event)
                    .collect()
            })
    }

    async fn stop(self) {
        self.views.stop().await.unwrap();
        self.gateway.stop().await.unwrap();
        self.stack.service.stop().await.unwrap();
    }
}

fn bearer<T>(token: &str, message: T) -> tonic::Request<T> {
    carewoven_access::grpc::with_token(tonic::Request::new(message), token)
}

/// A person's own citizen token, at `level`.
fn citizen(n: u32, level: IdentityLevel) -> String {
    citizens::token(&test_nhs_number(n), level)
}

/// The pseudonym the services give the test citizen with NHS number `n`.
fn pseudonym(n: u32) -> String {
    carewoven_access::citizen::pseudonym(
        citizens::TEST_CITIZEN_ISSUER,
        &citizens::subject(&test_nhs_number(n)),
    )
    .unwrap()
    .as_str()
    .to_owned()
}

/// A command context for a citizen: the organisation and user come from the token.
fn own_ctx() -> Option<v1::CommandContext> {
    Some(v1::CommandContext {
        command_id: Uuid::now_v7().to_string(),
        ..Default::default()
    })
}

fn reason(status: &tonic::Status) -> String {
    tonic_types::StatusExt::get_details_error_info(status)
        .map(|i| i.reason)
        .unwrap_or_default()
}

/// What a refusal says: code, message and reason. Two refusals that say the same reveal
/// nothing between them.
fn said(status: &tonic::Status, person: &str) -> (Code, String, String) {
    (
        status.code(),
        status.message().replace(person, "?"),
        reason(status),
    )
}

fn feedback(person: &str, source: v1::FeedbackSource) -> v1::RecordFeedbackRequest {
    v1::RecordFeedbackRequest {
        context: own_ctx(),
        person_id: person.into(),
        feedback: Some(v1::FeedbackRecord {
            source: source as i32,
            anonymous: false,
            text: "The nurse explained everything".into(),
            rating: 5,
        }),
    }
}

/// An objection (Deny for direct care) to `partners`, by the caller.
fn objection(person: &str, partners: &[&str]) -> v1::RecordConsentRequest {
    v1::RecordConsentRequest {
        context: own_ctx(),
        person_id: person.into(),
        terms: Some(v1::ConsentTerms {
            decision: v1::ConsentDecision::Deny as i32,
            purpose: v1::Purpose::DirectCare as i32,
            partners: partners.iter().map(|p| (*p).to_owned()).collect(),
            data_classes: vec![],
            valid_from: date_days_ago(0),
            valid_until: String::new(),
            capacity_assessed: false,
        }),
    }
}

fn grant(person: &str, carer: u32, scope: &[v1::ProxyScope]) -> v1::GrantProxyRequest {
    v1::GrantProxyRequest {
        context: own_ctx(),
        person_id: person.into(),
        grant: Some(v1::ProxyGrant {
            carer_nhs_number: test_nhs_number(carer),
            carer_name: "Bea Example".into(),
            scope: scope.iter().map(|s| *s as i32).collect(),
        }),
    }
}

fn correction(person: &str, version: u64, c: v1::Correction) -> v1::CorrectPersonDetailsRequest {
    v1::CorrectPersonDetailsRequest {
        context: own_ctx(),
        person_id: person.into(),
        correction: Some(c),
        reason: "In my own words".into(),
        based_on_version: version,
    }
}

/// The person's own NHS number appears nowhere in what is recorded about who acted.
fn names_no_nhs_number(event: &v1::AuditEvent, n: u32) {
    let bytes = event.encode_to_vec();
    let nhs = test_nhs_number(n);
    assert!(
        !bytes.windows(nhs.len()).any(|w| w == nhs.as_bytes()),
        "{event:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_reads_their_own_record_and_access_list_and_nobody_else_s() {
    let w = World::start().await;
    let mut c = w.stack.client.clone();
    let person = register_with_gp(&mut c, 70, "GP-A").await.unwrap();
    let other = register_with_gp(&mut c, 71, "GP-A").await.unwrap();
    admit(&mut c, &person).await.unwrap();
    let at = w.stack.log.last_sequence().await.unwrap();
    // HOSP-A reads it for care (so there is someone in the access list).
    w.record(&token("HOSP-A"), &person, at).await.unwrap();

    let me = citizen(70, P9);
    // Their own record, whole: by id, and by asking for "mine".
    let mine = w.record(&me, &person, at).await.unwrap();
    assert_eq!(mine.person_id, person);
    assert_eq!(
        mine.profile.as_ref().unwrap().nhs_number,
        test_nhs_number(70)
    );
    assert_eq!(
        mine.profile.as_ref().unwrap().what_matters,
        "Getting back to my allotment"
    );
    assert!(mine.withheld_classes.is_empty(), "{mine:?}");
    assert_eq!(mine.discharge_episodes.len(), 1);
    let again = w.record(&me, "", at).await.unwrap();
    assert_eq!(again.person_id, person);

    // Each read is audited as the person's own, under their pseudonym, naming no NHS number.
    let reads = w
        .stack
        .audit(&format!("cw.audit.{person}.CITIZEN.record_read"))
        .await
        .unwrap();
    assert_eq!(reads.len(), 2);
    for (_, event) in &reads {
        assert_eq!(event.user, pseudonym(70));
        assert_eq!(event.detail, "GetCareRecord self");
        assert_eq!(event.outcome, v1::AuditOutcome::Permitted as i32);
        names_no_nhs_number(event, 70);
    }

    // Who accessed it: the hospital, and they themself.
    let list = w.accesses(&me, &person).await.unwrap();
    assert!(
        list.iter()
            .any(|e| e.organisation == "HOSP-A" && e.action == v1::AuditAction::RecordRead as i32),
        "{list:?}"
    );
    assert!(list.iter().any(|e| e.detail == "GetCareRecord self"));
    assert_eq!(w.accesses(&me, "").await.unwrap().len(), list.len() + 1);
    let asked = w
        .stack
        .audit(&format!("cw.audit.{person}.CITIZEN.audit_read"))
        .await
        .unwrap();
    assert_eq!(asked.len(), 2);
    assert!(
        asked
            .iter()
            .all(|(_, e)| e.detail == "ListRecordAccess self")
    );

    // Another person's record and access list: the answer for a person who does not exist.
    let before = w.stack.count().await;
    let nobody = Uuid::now_v7().to_string();
    let refused = w.record(&me, &other, at).await.unwrap_err();
    let absent = w.record(&me, &nobody, at).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert_eq!(reason(&refused), "NO_LEGITIMATE_RELATIONSHIP");
    assert_eq!(said(&refused, &other), said(&absent, &nobody));
    let refused = w.accesses(&me, &other).await.unwrap_err();
    let absent = w.accesses(&me, &nobody).await.unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert_eq!(said(&refused, &other), said(&absent, &nobody));
    // A registered person's token for "my record" who is not registered: the same again.
    let unregistered = w.record(&citizen(72, P9), "", at).await.unwrap_err();
    assert_eq!(said(&unregistered, &nobody), said(&absent, &nobody));

    // Boards, caseloads, inboxes, traces, receipts and feeds are for organisations.
    let mut q = w.queries();
    let statuses = [
        q.list_discharge_board(bearer(&me, v1::ListDischargeBoardRequest::default()))
            .await
            .unwrap_err(),
        q.get_caseload(bearer(
            &me,
            v1::GetCaseloadRequest {
                owner: Some(v1::get_caseload_request::Owner::Organisation(
                    "CITIZEN".into(),
                )),
                min_log_position: 0,
            },
        ))
        .await
        .unwrap_err(),
        q.list_referral_inbox(bearer(
            &me,
            v1::ListReferralInboxRequest {
                service: "ASC-D2A".into(),
                ..Default::default()
            },
        ))
        .await
        .unwrap_err(),
        q.find_person(bearer(
            &me,
            v1::FindPersonRequest {
                nhs_number: test_nhs_number(71),
                date_of_birth: "1941-03-02".into(),
            },
        ))
        .await
        .unwrap_err(),
        q.get_referral_receipt(bearer(
            &me,
            v1::GetReferralReceiptRequest {
                person_id: person.clone(),
                referral_id: Uuid::now_v7().to_string(),
                min_log_position: 0,
            },
        ))
        .await
        .unwrap_err(),
    ];
    for status in &statuses {
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        assert_eq!(reason(status), "NOT_OPEN_TO_CITIZENS", "{status:?}");
    }
    let watch = q
        .watch_discharge_board(bearer(&me, v1::WatchDischargeBoardRequest::default()))
        .await;
    let watch = match watch {
        Err(status) => status,
        Ok(stream) => stream.into_inner().next().await.unwrap().unwrap_err(),
    };
    assert_eq!(watch.code(), Code::PermissionDenied);
    let feed = match w
        .feeds()
        .subscribe(bearer(&me, v1::SubscribeRequest::default()))
        .await
    {
        Err(status) => status,
        Ok(stream) => stream.into_inner().next().await.unwrap().unwrap_err(),
    };
    assert_eq!(feed.code(), Code::PermissionDenied);
    assert_eq!(w.stack.count().await, before);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_levels_and_issuer_kinds_decide_what_a_token_may_do() {
    let w = World::start().await;
    let mut c = w.stack.client.clone();
    let person = register_with_gp(&mut c, 73, "GP-A").await.unwrap();
    let at = w.stack.log.last_sequence().await.unwrap();
    let before = w.stack.count().await;

    // P5 may give feedback, and only that.
    let p5 = citizen(73, P5);
    let denied = |status: tonic::Status| {
        assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
        assert_eq!(reason(&status), "IDENTITY_LEVEL_TOO_LOW", "{status:?}");
    };
    denied(w.record(&p5, &person, at).await.unwrap_err());
    denied(w.accesses(&p5, &person).await.unwrap_err());
    denied(
        c.record_consent(bearer(&p5, objection(&person, &["HOSP-A"])))
            .await
            .unwrap_err(),
    );
    denied(
        c.grant_proxy(bearer(
            &p5,
            grant(&person, 74, &[v1::ProxyScope::ReadRecord]),
        ))
        .await
        .unwrap_err(),
    );
    // P0: nothing at all.
    let p0 = citizen(73, P0);
    denied(
        c.record_feedback(bearer(&p0, feedback(&person, v1::FeedbackSource::Person)))
            .await
            .unwrap_err(),
    );
    denied(w.record(&p0, &person, at).await.unwrap_err());
    assert_eq!(w.stack.count().await, before);

    let reply = c
        .record_feedback(bearer(&p5, feedback(&person, v1::FeedbackSource::Person)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(reply.event_types, ["feedback_recorded"]);
    // On record as the person acting for themself: CITIZEN and a pseudonym, no NHS number.
    let stored = w
        .stack
        .log
        .load(
            person.parse().unwrap(),
            AggregateKind::Feedback,
            reply.aggregate_id.parse().unwrap(),
        )
        .await
        .unwrap();
    let meta = &stored.recorded().next().unwrap().meta;
    assert_eq!(meta.organisation.as_str(), "CITIZEN");
    assert_eq!(meta.user.as_str(), pseudonym(73));
    // A person gives feedback as the person, not as a carer.
    let before = w.stack.count().await;
    let status = c
        .record_feedback(bearer(
            &citizen(73, P9),
            feedback(&person, v1::FeedbackSource::Carer),
        ))
        .await
        .unwrap_err();
    assert_eq!(reason(&status), "FEEDBACK_SOURCE_MISMATCH");

    // A citizen token signed by the organisations key, and an organisation token signed by
    // the citizens key: refused by every service, saying why.
    let forged_citizen = carewoven_access::token::testing::issuer()
        .sign(&carewoven_access::citizen::CitizenClaims {
            iss: carewoven_access::token::testing::TEST_ISSUER.into(),
            ..citizens::claims(&test_nhs_number(73), P9)
        })
        .unwrap();
    let forged_org = citizens::issuer()
        .token("HOSP-A", Some("tester"), &[], Duration::from_secs(600))
        .unwrap();
    for forged in [&forged_citizen, &forged_org] {
        let statuses = [
            c.record_feedback(bearer(
                forged,
                feedback(&person, v1::FeedbackSource::Person),
            ))
            .await
            .unwrap_err(),
            w.record(forged, &person, at).await.unwrap_err(),
            w.accesses(forged, &person).await.unwrap_err(),
        ];
        for status in &statuses {
            assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
            assert_eq!(reason(status), "TOKEN_WRONG_ISSUER_KIND", "{status:?}");
        }
    }

    // What matters to them, yes; their NHS number or name, never.
    let version = w
        .record(&citizen(73, P9), "", at)
        .await
        .unwrap()
        .person_version;
    let p9 = citizen(73, P9);
    for change in [
        v1::Correction {
            nhs_number: Some(test_nhs_number(79)),
            ..Default::default()
        },
        v1::Correction {
            given_name: Some("Adeline".into()),
            ..Default::default()
        },
        v1::Correction {
            family_name: Some("Other".into()),
            what_matters: Some("Gardening".into()),
            ..Default::default()
        },
    ] {
        let status = c
            .correct_person_details(bearer(&p9, correction(&person, version, change)))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::PermissionDenied);
        assert_eq!(reason(&status), "IDENTITY_CORRECTION_NOT_ALLOWED");
    }
    let status = c
        .correct_person_details(bearer(
            &p9,
            correction(
                &person,
                version,
                v1::Correction {
                    contact: Some("1 New Street".into()),
                    ..Default::default()
                },
            ),
        ))
        .await
        .unwrap_err();
    assert_eq!(reason(&status), "CORRECTION_NOT_OPEN_TO_CITIZENS");
    // Nor any command of care.
    let status = c
        .admit_person(bearer(
            &p9,
            v1::AdmitPersonRequest {
                context: own_ctx(),
                person_id: person.clone(),
                site: "HOSP-A".into(),
                ward: "Ward 7".into(),
                admitted_at: ts_hours_ago(1),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(reason(&status), "NOT_OPEN_TO_CITIZENS");
    // Bad input is named, as for anyone.
    let status = c
        .grant_proxy(bearer(
            &p9,
            grant(&person, 73, &[v1::ProxyScope::ReadRecord]),
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("grant.carer_nhs_number"),
        "{status:?}"
    );
    let status = c
        .grant_proxy(bearer(&p9, grant(&person, 74, &[])))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(status.message().contains("grant.scope"), "{status:?}");
    assert_eq!(w.stack.count().await, before);

    let reply = c
        .correct_person_details(bearer(
            &p9,
            correction(
                &person,
                version,
                v1::Correction {
                    what_matters: Some("Being home for the grandchildren".into()),
                    communication_needs: Some("Large print, please".into()),
                    ..Default::default()
                },
            ),
        ))
        .await
        .unwrap()
        .into_inner();
    let record = w.record(&p9, "", reply.log_position).await.unwrap();
    let profile = record.profile.unwrap();
    assert_eq!(profile.what_matters, "Being home for the grandchildren");
    assert_eq!(profile.communication_needs, "Large print, please");
    assert_eq!(profile.nhs_number, test_nhs_number(73));
    assert_eq!(profile.given_name, "Ada");

    // No organisation may take the reserved code.
    let before = w.stack.count().await;
    let status = c
        .register_organisation(carewoven_access::grpc::with_token(
            tonic::Request::new(v1::RegisterOrganisationRequest {
                context: Some(v1::CommandContext {
                    command_id: Uuid::now_v7().to_string(),
                    ..Default::default()
                }),
                code: "CITIZEN".into(),
                profile: Some(v1::OrganisationProfile {
                    name: "Not a citizen".into(),
                    org_type: v1::OrganisationType::Other as i32,
                }),
                services: vec![],
            }),
            &governance_token(),
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    let bad = tonic_types::StatusExt::get_details_bad_request(&status).unwrap();
    assert_eq!(bad.field_violations[0].field, "code");
    assert_eq!(w.stack.count().await, before);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_objects_to_an_organisation_and_withdraws_it() {
    let w = World::start().await;
    let mut c = w.stack.client.clone();
    let person = register_with_gp(&mut c, 75, "GP-A").await.unwrap();
    admit(&mut c, &person).await.unwrap();
    let at = w.stack.log.last_sequence().await.unwrap();
    assert!(w.record(&token("HOSP-A"), &person, at).await.is_ok());
    let me = citizen(75, P9);

    let recorded = c
        .record_consent(bearer(&me, objection(&person, &["HOSP-A"])))
        .await
        .unwrap()
        .into_inner();
    // The hospital is now refused exactly as for a person who does not exist.
    let nobody = Uuid::now_v7().to_string();
    let refused = w
        .record(&token("HOSP-A"), &person, recorded.log_position)
        .await
        .unwrap_err();
    let absent = w
        .record(&token("HOSP-A"), &nobody, recorded.log_position)
        .await
        .unwrap_err();
    assert_eq!(refused.code(), Code::PermissionDenied);
    assert_eq!(said(&refused, &person), said(&absent, &nobody));
    // The person still reads everything, their objection included.
    let mine = w.record(&me, "", recorded.log_position).await.unwrap();
    assert_eq!(mine.consents.len(), 1);

    // Withdrawn by the person: the hospital reads again.
    let withdrawn = c
        .withdraw_consent(bearer(
            &me,
            v1::WithdrawConsentRequest {
                context: own_ctx(),
                person_id: person.clone(),
                consent_id: recorded.aggregate_id.clone(),
                reason: "I have talked it through with the ward".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    assert!(
        w.record(&token("HOSP-A"), &person, withdrawn.log_position)
            .await
            .is_ok()
    );
    // Both decisions are on record as the person's own.
    let consent = w
        .stack
        .log
        .load(
            person.parse().unwrap(),
            AggregateKind::Consent,
            recorded.aggregate_id.parse().unwrap(),
        )
        .await
        .unwrap();
    let actors: Vec<(String, String)> = consent
        .recorded()
        .map(|e| {
            (
                e.meta.organisation.as_str().to_owned(),
                e.meta.user.as_str().to_owned(),
            )
        })
        .collect();
    assert_eq!(actors, vec![("CITIZEN".into(), pseudonym(75)); 2]);
    // Withdrawn once; and nobody else may touch the person's objections.
    let before = w.stack.count().await;
    let status = c
        .withdraw_consent(bearer(
            &me,
            v1::WithdrawConsentRequest {
                context: own_ctx(),
                person_id: person.clone(),
                consent_id: recorded.aggregate_id.clone(),
                reason: "again".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    let status = c
        .record_consent(bearer(&citizen(76, P9), objection(&person, &["COMM"])))
        .await
        .unwrap_err();
    assert_eq!(reason(&status), "NO_LEGITIMATE_RELATIONSHIP");
    assert_eq!(w.stack.count().await, before);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_carer_named_as_proxy_reads_and_gives_feedback_until_revoked() {
    let w = World::start().await;
    let mut c = w.stack.client.clone();
    let person = register_with_gp(&mut c, 77, "GP-A").await.unwrap();
    admit(&mut c, &person).await.unwrap();
    let at = w.stack.log.last_sequence().await.unwrap();
    let me = citizen(77, P9);
    // The carer (NHS number 78) need not be anyone's patient here.
    let carer = citizen(78, P9);
    let before = w.stack.count().await;

    // Before any grant the carer is nobody to the person.
    let nobody = Uuid::now_v7().to_string();
    let refused = w.record(&carer, &person, at).await.unwrap_err();
    let absent = w.record(&carer, &nobody, at).await.unwrap_err();
    assert_eq!(said(&refused, &person), said(&absent, &nobody));
    let status = c
        .record_feedback(bearer(&carer, feedback(&person, v1::FeedbackSource::Carer)))
        .await
        .unwrap_err();
    assert_eq!(reason(&status), "NO_LEGITIMATE_RELATIONSHIP");
    // Organisations caring for the person cannot name a proxy for them.
    let status = c
        .grant_proxy(carewoven_access::grpc::with_token(
            tonic::Request::new(v1::GrantProxyRequest {
                context: ctx("GP-A"),
                ..grant(&person, 78, &[v1::ProxyScope::ReadRecord])
            }),
            &token("GP-A"),
        ))
        .await
        .unwrap_err();
    assert_eq!(reason(&status), "PERSON_ONLY");
    assert_eq!(w.stack.count().await, before);

    // The person names the carer: read the record and give feedback.
    let granted = c
        .grant_proxy(bearer(
            &me,
            grant(
                &person,
                78,
                &[v1::ProxyScope::ReadRecord, v1::ProxyScope::Feedback],
            ),
        ))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(granted.event_types, ["proxy_granted"]);
    let record = w
        .record(&carer, &person, granted.log_position)
        .await
        .unwrap();
    assert!(record.withheld_classes.is_empty());
    let proxies: Vec<_> = record
        .proxies
        .iter()
        .filter_map(|p| p.grant.clone())
        .collect();
    assert_eq!(proxies.len(), 1);
    assert_eq!(proxies[0].carer_nhs_number, test_nhs_number(78));
    // The read is audited as the carer's, as proxy.
    let reads = w
        .stack
        .audit(&format!("cw.audit.{person}.CITIZEN.record_read"))
        .await
        .unwrap();
    let (_, read) = reads.last().unwrap();
    assert_eq!(read.user, pseudonym(78));
    assert_eq!(
        read.detail,
        format!("GetCareRecord proxy {}", pseudonym(78))
    );
    names_no_nhs_number(read, 78);

    // Feedback as the carer: audited as proxy before it is recorded.
    let given = c
        .record_feedback(bearer(&carer, feedback(&person, v1::FeedbackSource::Carer)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(given.event_types, ["feedback_recorded"]);
    let commands = w
        .stack
        .audit(&format!("cw.audit.{person}.CITIZEN.command"))
        .await
        .unwrap();
    let proxied: Vec<_> = commands
        .iter()
        .filter(|(_, e)| e.outcome == v1::AuditOutcome::Permitted as i32)
        .collect();
    assert_eq!(proxied.len(), 1, "{commands:?}");
    assert_eq!(
        proxied[0].1.detail,
        format!("record_feedback proxy {}", pseudonym(78))
    );
    names_no_nhs_number(&proxied[0].1, 78);

    // Outside its scope, or as the person, or granting on: refused, nothing appended.
    let before = w.stack.count().await;
    let status = c
        .record_feedback(bearer(
            &carer,
            feedback(&person, v1::FeedbackSource::Person),
        ))
        .await
        .unwrap_err();
    assert_eq!(reason(&status), "FEEDBACK_SOURCE_MISMATCH");
    let status = c
        .record_consent(bearer(&carer, objection(&person, &["HOSP-A"])))
        .await
        .unwrap_err();
    assert_eq!(reason(&status), "OUTSIDE_PROXY_SCOPE");
    let status = w.accesses(&carer, &person).await.unwrap_err();
    assert_eq!(reason(&status), "OUTSIDE_PROXY_SCOPE");
    let status = c
        .grant_proxy(bearer(
            &carer,
            grant(&person, 79, &[v1::ProxyScope::ReadRecord]),
        ))
        .await
        .unwrap_err();
    assert_eq!(reason(&status), "PERSON_ONLY");
    // A refused proxy command is audited as the proxy's too.
    let refusals = w
        .stack
        .audit(&format!("cw.audit.{person}.CITIZEN.command"))
        .await
        .unwrap();
    assert!(
        refusals
            .iter()
            .any(|(_, e)| e.outcome == v1::AuditOutcome::Refused as i32
                && e.reason == "OUTSIDE_PROXY_SCOPE"
                && e.detail == format!("record_consent proxy {}", pseudonym(78))),
        "{refusals:?}"
    );
    assert_eq!(w.stack.count().await, before);

    // The person sees the carer's accesses, marked as proxy.
    let list = w.accesses(&me, &person).await.unwrap();
    assert!(
        list.iter()
            .any(|e| e.user == pseudonym(78) && e.detail.starts_with("GetCareRecord proxy")),
        "{list:?}"
    );

    // Revoked: the carer is nobody again.
    let revoked = c
        .revoke_proxy(bearer(
            &me,
            v1::RevokeProxyRequest {
                context: own_ctx(),
                person_id: person.clone(),
                carer_nhs_number: test_nhs_number(78),
                reason: "My daughter helps me now".into(),
            },
        ))
        .await
        .unwrap()
        .into_inner();
    let before = w.stack.count().await;
    let refused = w
        .record(&carer, &person, revoked.log_position)
        .await
        .unwrap_err();
    assert_eq!(said(&refused, &person), said(&absent, &nobody));
    let status = c
        .record_feedback(bearer(&carer, feedback(&person, v1::FeedbackSource::Carer)))
        .await
        .unwrap_err();
    assert_eq!(reason(&status), "NO_LEGITIMATE_RELATIONSHIP");
    // Revoking again: nothing to revoke.
    let status = c
        .revoke_proxy(bearer(
            &me,
            v1::RevokeProxyRequest {
                context: own_ctx(),
                person_id: person.clone(),
                carer_nhs_number: test_nhs_number(78),
                reason: "again".into(),
            },
        ))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::FailedPrecondition);
    assert_eq!(w.stack.count().await, before);
    // The person's record no longer lists the carer.
    let mine = w.record(&me, "", revoked.log_position).await.unwrap();
    assert!(mine.proxies.is_empty());
    w.stop().await;
}
