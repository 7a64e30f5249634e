//! Identities and registry set-up for tests: bearer tokens from the fixed test issuer
//! (`carewoven_access::token::testing`), and partner organisations registered through the
//! real command API.

use std::time::Duration;

use carewoven_governance::Role;
use carewoven_proto::convert::CommandRequest;
use carewoven_proto::v1::{self, command_service_client::CommandServiceClient};
use tonic::transport::Channel;
use uuid::Uuid;

/// The organisation the test governance identity acts for.
pub const GOVERNANCE_ORG: &str = "CW-GOV";

/// A token for `org` from the test issuer, valid for an hour.
pub fn token(org: &str) -> String {
    carewoven_access::token::testing::issuer()
        .token(org, Some("tester"), &[], Duration::from_secs(3600))
        .expect("the test issuer signs")
}

/// A token for `org` with roles.
pub fn token_with_roles(org: &str, roles: &[Role]) -> String {
    carewoven_access::token::testing::issuer()
        .token(org, Some("tester"), roles, Duration::from_secs(3600))
        .expect("the test issuer signs")
}

/// The governance identity's token (may change the registry).
pub fn governance_token() -> String {
    token_with_roles(GOVERNANCE_ORG, &[Role::Governance])
}

/// `message` as a request carrying `org`'s token.
pub fn as_org<T>(org: &str, message: T) -> tonic::Request<T> {
    carewoven_access::grpc::with_token(tonic::Request::new(message), &token(org))
}

/// A command request carrying the token of the organisation its context names.
pub fn signed<T: CommandRequest>(message: T) -> tonic::Request<T> {
    let org = message
        .context()
        .map(|c| c.organisation.clone())
        .unwrap_or_default();
    as_org(&org, message)
}

/// A command id that is the same on every run for the same text (so registry set-up can be
/// repeated).
fn stable_id(text: &str) -> String {
    // FNV-1a over the text, twice with different offsets: unique enough for test set-up.
    let mut a: u64 = 0xcbf2_9ce4_8422_2325;
    let mut b: u64 = 0x8422_2325_cbf2_9ce4;
    for byte in text.bytes() {
        a = (a ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3);
        b = (b ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    Uuid::from_u64_pair(a, b).to_string()
}

fn governance_ctx(what: &str) -> Option<v1::CommandContext> {
    Some(v1::CommandContext {
        command_id: stable_id(what),
        organisation: GOVERNANCE_ORG.to_owned(),
        user: "tester".to_owned(),
        ..Default::default()
    })
}

/// Every data class: a partner that may receive everything.
pub fn all_data_classes() -> Vec<i32> {
    (1..=11).collect()
}

/// Register `code` with its `services` and a data-sharing agreement for direct care
/// covering `data_classes` (wire values of `v1::DataClass`), in force from a year ago for a
/// year ahead. Safe to repeat.
pub async fn register_partner(
    client: &mut CommandServiceClient<Channel>,
    code: &str,
    services: &[&str],
    data_classes: &[i32],
) -> anyhow::Result<()> {
    register_partner_as(
        client,
        code,
        services,
        data_classes,
        v1::OrganisationType::Other,
    )
    .await
}

/// [`register_partner`], registered as `org_type` (a general practice may be a registered
/// GP; direct-care providers may assert emergency access).
pub async fn register_partner_as(
    client: &mut CommandServiceClient<Channel>,
    code: &str,
    services: &[&str],
    data_classes: &[i32],
    org_type: v1::OrganisationType,
) -> anyhow::Result<()> {
    let admin = governance_token();
    let register = v1::RegisterOrganisationRequest {
        context: governance_ctx(&format!("register {code}")),
        code: code.to_owned(),
        profile: Some(v1::OrganisationProfile {
            name: format!("Synthetic organisation {code}"),
            org_type: org_type as i32,
        }),
        services: services.iter().map(|s| (*s).to_owned()).collect(),
    };
    client
        .register_organisation(carewoven_access::grpc::with_token(
            tonic::Request::new(register),
            &admin,
        ))
        .await?;
    let today = carewoven_domain::values::uk_date(chrono::Utc::now());
    record_agreement(
        client,
        code,
        &format!("{code}-DSA"),
        data_classes,
        today - chrono::Days::new(365),
        today + chrono::Days::new(365),
    )
    .await
}

/// Record a data-sharing agreement for direct care.
pub async fn record_agreement(
    client: &mut CommandServiceClient<Channel>,
    code: &str,
    reference: &str,
    data_classes: &[i32],
    valid_from: chrono::NaiveDate,
    expires_on: chrono::NaiveDate,
) -> anyhow::Result<()> {
    let request = v1::RecordSharingAgreementRequest {
        context: governance_ctx(&format!("agreement {code} {reference}")),
        code: code.to_owned(),
        agreement: Some(v1::SharingAgreement {
            reference: reference.to_owned(),
            purposes: vec![v1::Purpose::DirectCare as i32],
            data_classes: data_classes.to_vec(),
            valid_from: valid_from.to_string(),
            expires_on: expires_on.to_string(),
        }),
    };
    client
        .record_sharing_agreement(carewoven_access::grpc::with_token(
            tonic::Request::new(request),
            &governance_token(),
        ))
        .await?;
    Ok(())
}
