//! Who may send what: the send order under the command service's authorisation.

use std::collections::BTreeMap;

use carewoven_proto::v1::progress_discharge_request as pd;
use chrono::{DateTime, Utc};

use crate::enums::{Decision, ReferralAction};
use crate::registry;

use super::organisations::{
    ASC_FRONT_DOOR, CARE_HOMES, COMMUNITY, COMMUNITY_FALLS, COMMUNITY_NURSING, COUNCIL,
    D2A_SERVICE, GPS, HOME_CARE, HOSPITALS, ORGANISATIONS, REABLEMENT, REHAB_BEDS,
};
use super::plan::{Op, Slot, Step};

/// The organisation owning a service or site of the seed's registry.
pub(super) fn owner(service: &str) -> Option<&'static str> {
    registry::owner(&ORGANISATIONS, service)
}

#[derive(Debug)]
pub(super) struct ReferralLink {
    pub(super) from: &'static str,
    pub(super) receiver: Option<&'static str>,
    /// Rejected, cancelled or entered in error: no longer a relationship.
    pub(super) closed: bool,
}

#[derive(Debug, Default)]
pub(super) struct EpisodeLink {
    pub(super) manager: Option<&'static str>,
    pub(super) receiving: Vec<&'static str>,
    /// The organisation of the service the discharge was last agreed with.
    pub(super) agreed: Option<&'static str>,
    pub(super) handover: Option<&'static str>,
}

/// What the command service's authorisation knows of one person, for the commands the seed
/// sends: the same rules as `carewoven_governance::Governance::authorise` (a legitimate
/// relationship as the registered GP, through the care team, as a referral's receiving
/// service or through a discharge episode, never as the referrer; care-team changes by
/// members, and the registered GP and the organisations receiving a referral or managing or
/// receiving a discharge may add themselves; objections by the registered GP; referral
/// steps by the receiving service's organisation, cancelling by the referrer; discharge
/// steps by the organisation owning the site). Every command is recorded now, so no ground
/// lapses with the set period during a seed run.
#[derive(Debug, Default)]
pub(super) struct Access {
    /// The registered GP practice.
    pub(super) gp: Option<&'static str>,
    /// Members in the order they joined: (organisation, practitioner).
    pub(super) team: Vec<(&'static str, String)>,
    pub(super) referrals: BTreeMap<usize, ReferralLink>,
    pub(super) episodes: BTreeMap<usize, EpisodeLink>,
    /// Each task's owner.
    pub(super) tasks: BTreeMap<usize, &'static str>,
}

impl Access {
    pub(super) fn on_team(&self, org: &str) -> bool {
        self.team.iter().any(|(o, _)| *o == org)
    }

    /// Organisations holding a ground other than the care team, in a fixed order: the
    /// registered GP, referrals' receivers, then episodes' organisations. Each may add
    /// itself to the care team.
    pub(super) fn standing_orgs(&self) -> impl Iterator<Item = &'static str> + '_ {
        let referrals = self
            .referrals
            .values()
            .filter(|r| !r.closed)
            .filter_map(|r| r.receiver);
        let episodes = self
            .episodes
            .values()
            .flat_map(|e| e.manager.into_iter().chain(e.receiving.iter().copied()));
        self.gp.into_iter().chain(referrals).chain(episodes)
    }

    pub(super) fn standing(&self, org: &str) -> bool {
        self.standing_orgs().any(|o| o == org)
    }

    pub(super) fn related(&self, org: &str) -> bool {
        self.on_team(org) || self.standing(org)
    }

    /// Whether `actor` may send `op` now.
    pub(super) fn allows(&self, actor: &str, op: &Op) -> bool {
        match op {
            Op::Register(_) => true,
            Op::AddMember { member, .. } => {
                self.on_team(actor) || (member.organisation == actor && self.standing(actor))
            }
            Op::NameCoordinator(_) | Op::AgreePlan(_) => self.on_team(actor),
            Op::RecordConsent(_, terms) if terms.decision == Decision::Deny.to_i32() => {
                self.gp == Some(actor)
            }
            Op::MakeReferral(_, r) => {
                r.from_organisation == actor && owner(&r.to_service).is_some()
            }
            Op::ProgressReferral {
                referral, action, ..
            } => self.referrals.get(referral).is_some_and(|r| match action {
                ReferralAction::Cancel => r.from == actor,
                ReferralAction::EnteredInError => r.from == actor || r.receiver == Some(actor),
                _ => r.receiver == Some(actor),
            }),
            Op::Contribute { organisation, .. } => *organisation == actor && self.related(actor),
            Op::RequestAssessment { .. }
            | Op::CompleteAssessment { .. }
            | Op::RecordConsent(..)
            | Op::WithdrawConsent { .. }
            | Op::RecordMeeting(..)
            | Op::CompleteAction { .. }
            | Op::RaiseFlag(..)
            | Op::Feedback(_) => self.related(actor),
            // The owner must be related too: a task never hands anyone a record.
            Op::CreateTask(_, task) => {
                self.related(actor)
                    && task
                        .owner
                        .as_ref()
                        .is_some_and(|o| self.related(&o.organisation))
            }
            Op::TaskStatus { task, .. } => {
                self.tasks.get(task) == Some(&actor) && self.related(actor)
            }
            Op::Admit { site, .. } => owner(site) == Some(actor),
            Op::Discharge { episode, step } => {
                self.episodes.get(episode).is_some_and(|e| match step {
                    pd::Step::AcceptHandover(h) => {
                        h.organisation == actor
                            && match e.agreed {
                                Some(agreed) => agreed == actor,
                                None => self.gp == Some(actor) || self.on_team(actor),
                            }
                    }
                    pd::Step::CompleteHomeAssessment(_) => {
                        e.manager == Some(actor) || e.handover == Some(actor)
                    }
                    _ => e.manager == Some(actor),
                })
            }
        }
    }

    /// Who sends `step` now: its own organisation if it may; a care-team change, which any
    /// member may make, by the first member (the first member adds itself, so it waits for
    /// an organisation that may); otherwise nobody yet.
    pub(super) fn actor(&self, step: &Step) -> Option<&'static str> {
        if self.allows(step.org, &step.op) {
            return Some(step.org);
        }
        match &step.op {
            Op::AddMember { member, .. } if self.team.is_empty() => {
                let org = static_org(&member.organisation);
                self.allows(org, &step.op).then_some(org)
            }
            Op::AddMember { .. } | Op::NameCoordinator(_) | Op::AgreePlan(_) => {
                self.team.first().map(|(o, _)| *o)
            }
            _ => None,
        }
    }

    /// The relationships `op` starts or ends once sent.
    pub(super) fn apply(&mut self, op: &Op) {
        match op {
            Op::Register(profile) if !profile.registered_gp.is_empty() => {
                self.gp = Some(static_org(&profile.registered_gp));
            }
            Op::AddMember { member, .. } => {
                let m = (
                    static_org(&member.organisation),
                    member.practitioner.clone(),
                );
                if !self.team.contains(&m) {
                    self.team.push(m);
                }
            }
            Op::MakeReferral(k, r) => {
                self.referrals.insert(
                    *k,
                    ReferralLink {
                        from: static_org(&r.from_organisation),
                        receiver: owner(&r.to_service),
                        closed: false,
                    },
                );
            }
            Op::ProgressReferral {
                referral,
                action:
                    ReferralAction::Reject | ReferralAction::Cancel | ReferralAction::EnteredInError,
                ..
            } => {
                if let Some(r) = self.referrals.get_mut(referral) {
                    r.closed = true;
                }
            }
            Op::Admit { episode, site, .. } => {
                self.episodes.entry(*episode).or_default().manager = owner(site);
            }
            Op::CreateTask(k, task) => {
                if let Some(o) = &task.owner {
                    self.tasks.insert(*k, static_org(&o.organisation));
                }
            }
            Op::Discharge { episode, step } => {
                let e = self.episodes.entry(*episode).or_default();
                match step {
                    pd::Step::RequestService(pd::RequestService { service }) => {
                        e.receiving.extend(owner(service));
                    }
                    pd::Step::AgreeDischarge(pd::AgreeDischarge { service, .. }) => {
                        e.receiving.extend(owner(service));
                        e.agreed = owner(service);
                    }
                    pd::Step::AcceptHandover(h) => {
                        let org = static_org(&h.organisation);
                        e.receiving.push(org);
                        e.handover = Some(org);
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
}

/// The aggregate a step changes: its steps keep their order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(super) enum Target {
    Person,
    Team,
    Plan,
    Slot(Slot),
    /// Feedback: each is its own aggregate.
    Own,
}

pub(super) fn target(op: &Op) -> Target {
    match op {
        Op::Register(_) => Target::Person,
        Op::AddMember { .. } | Op::NameCoordinator(_) => Target::Team,
        Op::AgreePlan(_) => Target::Plan,
        Op::MakeReferral(k, _) | Op::ProgressReferral { referral: k, .. } => {
            Target::Slot(Slot::Referral(*k))
        }
        Op::RequestAssessment { assessment, .. }
        | Op::Contribute { assessment, .. }
        | Op::CompleteAssessment { assessment, .. } => Target::Slot(Slot::Assessment(*assessment)),
        Op::RecordConsent(k, _) | Op::WithdrawConsent { consent: k, .. } => {
            Target::Slot(Slot::Consent(*k))
        }
        Op::Admit { episode, .. } | Op::Discharge { episode, .. } => {
            Target::Slot(Slot::Episode(*episode))
        }
        Op::RecordMeeting(m, _) | Op::CompleteAction { meeting: m, .. } => {
            Target::Slot(Slot::Meeting(*m))
        }
        Op::Feedback(_) => Target::Own,
        Op::RaiseFlag(k, _) => Target::Slot(Slot::Flag(*k)),
        Op::CreateTask(k, _) | Op::TaskStatus { task: k, .. } => Target::Slot(Slot::Task(*k)),
    }
}

/// What must be sent before `op`: earlier steps of its aggregate, and the referral an
/// assessment names.
pub(super) fn waits_for(op: &Op) -> [Option<Target>; 2] {
    let referral = match op {
        Op::RequestAssessment {
            referral: Some(k), ..
        } => Some(Target::Slot(Slot::Referral(*k))),
        _ => None,
    };
    [Some(target(op)).filter(|t| *t != Target::Own), referral]
}

/// The send order under authorisation: each step as soon as an organisation may send it
/// (keeping each aggregate's steps in order), by that organisation. A step sent after one
/// that happened later is marked late-recorded. Returns the steps and how many could not be
/// placed (none, for the seed's plans: the unit tests check).
pub(super) fn schedule(steps: Vec<Step>) -> (Vec<Step>, usize) {
    let mut access = Access::default();
    let mut out: Vec<Step> = Vec::with_capacity(steps.len());
    let mut pending: Vec<Step> = Vec::new();
    let mut latest: Option<DateTime<Utc>> = None;
    for step in steps {
        pending.push(step);
        'place: loop {
            let mut blocked: Vec<Target> = Vec::new();
            for i in 0..pending.len() {
                let free = waits_for(&pending[i].op)
                    .iter()
                    .flatten()
                    .all(|t| !blocked.contains(t));
                match free.then(|| access.actor(&pending[i])).flatten() {
                    Some(actor) => {
                        let mut step = pending.remove(i);
                        step.org = actor;
                        if latest.is_some_and(|l| l > step.at) {
                            step.late = true;
                        }
                        latest = latest.max(Some(step.at));
                        access.apply(&step.op);
                        out.push(step);
                        // What was waiting may go now: look again from the first.
                        continue 'place;
                    }
                    None => blocked.push(target(&pending[i].op)),
                }
            }
            break;
        }
    }
    (out, pending.len())
}

pub(super) fn static_org(org: &str) -> &'static str {
    HOSPITALS
        .iter()
        .chain(GPS.iter())
        .chain(REABLEMENT.iter())
        .chain(HOME_CARE.iter())
        .chain(CARE_HOMES.iter())
        .chain(
            [
                COUNCIL,
                COMMUNITY,
                REHAB_BEDS,
                D2A_SERVICE,
                ASC_FRONT_DOOR,
                COMMUNITY_NURSING,
                COMMUNITY_FALLS,
            ]
            .iter(),
        )
        .find(|o| **o == org)
        .copied()
        .unwrap_or(COUNCIL)
}

/// A plausible acting user code per organisation (codes, never names).
pub(super) fn user_for(org: &str) -> String {
    let kind = if org.starts_with("SYN-HOSP") {
        "flow"
    } else if org.starts_with("SYN-GP") {
        "gp"
    } else if org.starts_with("SYN-ASC") {
        "sw"
    } else if org.starts_with("SYN-COMM") {
        "nurse"
    } else {
        "coord"
    };
    format!("{kind}-01")
}
