//! The registry set-up `demo` and `seed` run first: their organisations, the services and
//! sites each owns, and a data-sharing agreement for individual care, registered by the
//! development registrar ([`REGISTRAR`], governance role).
//!
//! Idempotent: every command id is a UUIDv8 over SHA-256 of a fixed namespace, the command's
//! kind, the organisation and the content, and the content does not depend on the day, so a
//! re-run is answered with duplicates. What someone else registered already is accepted as it
//! is: an organisation that exists (ALREADY_EXISTS) gets any missing services added, and an
//! agreement reference already recorded (`organisation.agreement`) is left alone.

use std::time::Duration;

use carewoven_governance::Role;
use carewoven_proto::v1;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tonic::{Code, Status};
use tonic_types::StatusExt;
use uuid::Uuid;

use crate::auth::Auth;
use crate::enums::{DataClass, OrgType, Purpose};
use crate::rpc::{Client, Rpc};

/// The organisation the development registrar acts for (tokens with the governance role).
pub const REGISTRAR: &str = "CW-GOV";
const REGISTRAR_USER: &str = "registrar";
/// Changing this namespace starts a fresh series of registry command ids.
const NAMESPACE: &str = "carewoven.carectl.registry.v1";
/// The development agreements' period: fixed, so a re-run on any day sends the same command.
const AGREEMENT_FROM: &str = "2020-01-01";
const AGREEMENT_UNTIL: &str = "2100-01-01";

/// One organisation to register.
#[derive(Debug, Clone, Copy)]
pub struct OrgSpec {
    pub code: &'static str,
    pub name: &'static str,
    pub org_type: OrgType,
    /// The services and sites it owns (referrals go to services, episodes are managed at
    /// sites).
    pub services: &'static [&'static str],
}

/// The organisation owning `service` among `orgs`.
pub fn owner(orgs: &[OrgSpec], service: &str) -> Option<&'static str> {
    orgs.iter()
        .find(|o| o.services.contains(&service))
        .map(|o| o.code)
}

/// A registry command that failed.
#[derive(Debug)]
pub struct Failure {
    pub step: String,
    pub command_id: Uuid,
    pub status: Status,
}

/// What the set-up sent.
#[derive(Debug, Default, Clone, Copy)]
pub struct Outcome {
    pub organisations: usize,
    pub commands: usize,
    pub appended: usize,
    /// Duplicates of this set-up's earlier runs, and facts someone else registered.
    pub already: usize,
}

impl Outcome {
    pub fn json(&self) -> Value {
        json!({
            "organisations": self.organisations,
            "commands": self.commands,
            "appended": self.appended,
            "already_registered": self.already,
        })
    }

    pub fn line(&self) -> String {
        format!(
            "registry: {} organisations with their services and data-sharing agreements ({} \
             commands: {} new, {} already registered), by {REGISTRAR}",
            self.organisations, self.commands, self.appended, self.already
        )
    }
}

fn command_id(parts: &[&str]) -> Uuid {
    let mut h = Sha256::new();
    h.update(NAMESPACE.as_bytes());
    for p in parts {
        h.update([0]);
        h.update(p.as_bytes());
    }
    let digest = h.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    Uuid::new_v8(bytes)
}

/// The agreement every development organisation gets: individual care, every data class.
fn agreement(code: &str) -> v1::SharingAgreement {
    v1::SharingAgreement {
        reference: format!("{code}-DSA-DEV"),
        purposes: vec![
            Purpose::DirectCare.to_i32(),
            Purpose::CareCoordination.to_i32(),
        ],
        data_classes: <DataClass as clap::ValueEnum>::value_variants()
            .iter()
            .map(|d| d.to_i32())
            .collect(),
        valid_from: AGREEMENT_FROM.to_owned(),
        expires_on: AGREEMENT_UNTIL.to_owned(),
    }
}

fn is_rule(status: &Status, rule: &str) -> bool {
    status.code() == Code::FailedPrecondition
        && status
            .get_error_details()
            .precondition_failure()
            .is_some_and(|p| p.violations.iter().any(|v| v.r#type == rule))
}

struct Sender<'a> {
    client: &'a mut Client,
    token: Option<String>,
    timeout: Duration,
    outcome: Outcome,
}

impl Sender<'_> {
    /// Send one registry command; `Ok(true)` if accepted, `Ok(false)` if refused with a
    /// status `tolerated` accepts.
    async fn send(
        &mut self,
        step: String,
        id_parts: &[&str],
        build: impl FnOnce(Option<v1::CommandContext>) -> Rpc,
        tolerated: impl Fn(&Status) -> bool,
    ) -> Result<bool, Failure> {
        let command_id = command_id(id_parts);
        let context = Some(v1::CommandContext {
            command_id: command_id.to_string(),
            organisation: REGISTRAR.to_owned(),
            user: REGISTRAR_USER.to_owned(),
            ..Default::default()
        });
        self.outcome.commands += 1;
        match build(context)
            .send(self.client, self.timeout, self.token.as_deref())
            .await
        {
            Ok(reply) => {
                if reply.duplicate {
                    self.outcome.already += 1;
                } else {
                    self.outcome.appended += 1;
                }
                Ok(true)
            }
            Err(status) if tolerated(&status) => {
                self.outcome.already += 1;
                Ok(false)
            }
            Err(status) => Err(Failure {
                step,
                command_id,
                status,
            }),
        }
    }
}

/// Register `orgs`, each with its services and a development data-sharing agreement.
pub async fn ensure(
    client: &mut Client,
    auth: &Auth,
    orgs: &[OrgSpec],
    timeout: Duration,
) -> Result<Outcome, Failure> {
    let token = auth
        .token(REGISTRAR, REGISTRAR_USER, &[Role::Governance])
        .map_err(|e| Failure {
            step: "governance token".into(),
            command_id: Uuid::nil(),
            status: Status::unauthenticated(format!("{e:#}")),
        })?;
    let mut sender = Sender {
        client,
        token,
        timeout,
        outcome: Outcome {
            organisations: orgs.len(),
            ..Outcome::default()
        },
    };
    for org in orgs {
        let services: Vec<String> = org.services.iter().map(|s| (*s).to_owned()).collect();
        let content = format!("{}|{:?}|{}", org.name, org.org_type, services.join(","));
        let registered = sender
            .send(
                format!("register {}", org.code),
                &["register", org.code, &content],
                |context| {
                    Rpc::RegisterOrganisation(v1::RegisterOrganisationRequest {
                        context,
                        code: org.code.to_owned(),
                        profile: Some(v1::OrganisationProfile {
                            name: org.name.to_owned(),
                            org_type: org.org_type.to_i32(),
                        }),
                        services: services.clone(),
                    })
                },
                |s| s.code() == Code::AlreadyExists,
            )
            .await?;
        if !registered {
            // Registered before, perhaps with other services: add what is missing.
            for service in org.services {
                sender
                    .send(
                        format!("add service {service} to {}", org.code),
                        &["service", org.code, service],
                        |context| {
                            Rpc::AddOrganisationService(v1::AddOrganisationServiceRequest {
                                context,
                                code: org.code.to_owned(),
                                service: (*service).to_owned(),
                            })
                        },
                        |s| is_rule(s, "organisation.service"),
                    )
                    .await?;
            }
        }
        let agreement = agreement(org.code);
        sender
            .send(
                format!("agreement for {}", org.code),
                &["agreement", org.code, &agreement.reference],
                |context| {
                    Rpc::RecordSharingAgreement(v1::RecordSharingAgreementRequest {
                        context,
                        code: org.code.to_owned(),
                        agreement: Some(agreement.clone()),
                    })
                },
                |s| is_rule(s, "organisation.agreement"),
            )
            .await?;
    }
    Ok(sender.outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_depend_on_content() {
        let a = command_id(&["register", "DEMO-GP", "x"]);
        assert_eq!(a, command_id(&["register", "DEMO-GP", "x"]));
        assert_ne!(a, command_id(&["register", "DEMO-GP", "y"]));
        assert_ne!(a, command_id(&["register", "DEMO-G", "Px"]));
        assert_eq!(a.get_version_num(), 8);
    }

    #[test]
    fn the_development_agreement_covers_individual_care_and_every_class() {
        let a = agreement("DEMO-GP");
        assert_eq!(a.data_classes.len(), 11);
        assert!(a.purposes.contains(&(v1::Purpose::DirectCare as i32)));
        assert!(a.valid_from < a.expires_on);
    }
}
