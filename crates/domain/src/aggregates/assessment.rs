//! Assessment (QuestionnaireResponse / Observation): requested, then completed by one or
//! several organisations jointly. A Care Act s.9 needs assessment (or s.10 carer's
//! assessment) ends in an eligibility decision with reasons.
//!
//! A joint assessment cannot deadlock: naming an assessor gives it a ground to contribute
//! (governance: `Ground::Assessing`, until the assessment ends), an assessor that cannot
//! take part can be replaced with a reason, and each assessor may add to its contribution
//! as often as it needs before completion.

use chrono::NaiveDate;
use uuid::Uuid;

use crate::values::{Code, LongText};
use crate::{Aggregate, AggregateKind, DecideContext, DomainError, ReplayError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AssessmentKind {
    /// Care Act 2014 s.9 needs assessment.
    CareActNeeds,
    /// Care Act 2014 s.10 carer's assessment.
    Carers,
    Health,
    Therapy,
}

impl AssessmentKind {
    pub fn is_care_act(self) -> bool {
        matches!(self, AssessmentKind::CareActNeeds | AssessmentKind::Carers)
    }
}

/// The specified outcomes of the Care and Support (Eligibility Criteria) Regulations 2014.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CareActOutcome {
    ManagingNutrition,
    PersonalHygiene,
    ManagingToiletNeeds,
    BeingAppropriatelyClothed,
    UsingTheHomeSafely,
    MaintainingAHabitableHome,
    FamilyAndPersonalRelationships,
    WorkTrainingEducationVolunteering,
    UsingCommunityServices,
    CaringResponsibilities,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssessmentRequest {
    pub kind: AssessmentKind,
    /// The organisations that assess; more than one makes it a joint assessment.
    pub assessors: Vec<Code>,
    pub referral_id: Option<Uuid>,
    pub due_by: Option<NaiveDate>,
}

/// What the assessors found. The eligibility fields are required for Care Act assessments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Findings {
    pub summary: LongText,
    pub outcomes_not_achieved: Vec<CareActOutcome>,
    pub wellbeing_impact: Option<LongText>,
    pub needs_arise_from_impairment_or_illness: bool,
    pub significant_impact_on_wellbeing: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eligibility {
    pub eligible: bool,
    /// One reason per criterion, in plain words.
    pub reasons: Vec<String>,
}

impl Eligibility {
    /// The Care Act eligibility rule: needs arise from impairment or illness, two or more
    /// specified outcomes cannot be achieved, and wellbeing is significantly affected.
    pub fn determine(f: &Findings) -> Eligibility {
        let mut reasons = Vec::with_capacity(3);
        let impairment = f.needs_arise_from_impairment_or_illness;
        reasons.push(if impairment {
            "needs arise from a physical or mental impairment or illness".to_owned()
        } else {
            "needs do not arise from a physical or mental impairment or illness".to_owned()
        });
        // Count distinct outcomes: one outcome listed twice is still one outcome.
        let mut distinct = f.outcomes_not_achieved.clone();
        distinct.sort();
        distinct.dedup();
        let count = distinct.len();
        let outcomes = count >= 2;
        reasons.push(format!(
            "{count} specified outcome(s) cannot be achieved; two or more are required"
        ));
        let wellbeing = f.significant_impact_on_wellbeing;
        reasons.push(if wellbeing {
            "there is a significant impact on wellbeing".to_owned()
        } else {
            "there is no significant impact on wellbeing".to_owned()
        });
        Eligibility {
            eligible: impairment && outcomes && wellbeing,
            reasons,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssessmentCommand {
    Request {
        request: AssessmentRequest,
    },
    Contribute {
        organisation: Code,
        summary: LongText,
    },
    /// Another organisation assesses in place of `replaced`.
    ReplaceAssessor {
        replaced: Code,
        by: Code,
        reason: LongText,
    },
    Complete {
        findings: Findings,
    },
    Cancel {
        reason: LongText,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssessmentEvent {
    Requested {
        request: AssessmentRequest,
    },
    ContributionRecorded {
        organisation: Code,
        summary: LongText,
    },
    AssessorReplaced {
        replaced: Code,
        by: Code,
        reason: LongText,
    },
    Completed {
        findings: Findings,
    },
    EligibilityDetermined {
        eligibility: Eligibility,
    },
    Cancelled {
        reason: LongText,
    },
}

impl AssessmentEvent {
    pub fn name(&self) -> &'static str {
        match self {
            AssessmentEvent::Requested { .. } => "assessment_requested",
            AssessmentEvent::ContributionRecorded { .. } => "assessment_contribution_recorded",
            AssessmentEvent::AssessorReplaced { .. } => "assessor_replaced",
            AssessmentEvent::Completed { .. } => "assessment_completed",
            AssessmentEvent::EligibilityDetermined { .. } => "eligibility_determined",
            AssessmentEvent::Cancelled { .. } => "assessment_cancelled",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AssessmentStatus {
    Requested,
    Completed,
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    pub request: AssessmentRequest,
    pub status: AssessmentStatus,
    pub contributors: Vec<Code>,
    pub findings: Option<Findings>,
    pub eligibility: Option<Eligibility>,
}

impl Aggregate for Assessment {
    const KIND: AggregateKind = AggregateKind::Assessment;
    type Command = AssessmentCommand;
    type Event = AssessmentEvent;

    fn decide(
        state: Option<&Self>,
        command: &AssessmentCommand,
        _ctx: &DecideContext,
    ) -> Result<Vec<AssessmentEvent>, DomainError> {
        use AssessmentCommand as C;
        use AssessmentEvent as E;
        let Some(a) = state else {
            return match command {
                C::Request { request } => {
                    if request.assessors.is_empty() {
                        return Err(DomainError::invalid(
                            "assessors",
                            "needs at least one organisation",
                        ));
                    }
                    let mut seen = request.assessors.clone();
                    seen.sort();
                    seen.dedup();
                    if seen.len() != request.assessors.len() {
                        return Err(DomainError::invalid(
                            "assessors",
                            "lists an organisation twice",
                        ));
                    }
                    Ok(vec![E::Requested {
                        request: request.clone(),
                    }])
                }
                _ => Err(DomainError::NotFound {
                    what: "assessment",
                    id: String::new(),
                }),
            };
        };
        if a.status != AssessmentStatus::Requested && !matches!(command, C::Request { .. }) {
            return Err(DomainError::rule(
                "assessment.lifecycle",
                format!("the assessment is already {:?}", a.status).to_lowercase(),
            ));
        }
        match command {
            C::Request { .. } => Err(DomainError::AlreadyExists {
                what: "assessment",
                id: String::new(),
            }),
            C::Contribute {
                organisation,
                summary,
            } => {
                if !a.request.assessors.contains(organisation) {
                    return Err(DomainError::rule(
                        "assessment.assessors",
                        format!("{organisation} is not one of the assessing organisations"),
                    ));
                }
                // An assessor may add to its contribution: each addition is recorded.
                Ok(vec![E::ContributionRecorded {
                    organisation: organisation.clone(),
                    summary: summary.clone(),
                }])
            }
            C::ReplaceAssessor {
                replaced,
                by,
                reason,
            } => {
                if !a.request.assessors.contains(replaced) {
                    return Err(DomainError::invalid(
                        "replaced",
                        format!("{replaced} is not one of the assessing organisations"),
                    ));
                }
                if a.request.assessors.contains(by) {
                    return Err(DomainError::invalid(
                        "by",
                        format!("{by} is already one of the assessing organisations"),
                    ));
                }
                Ok(vec![E::AssessorReplaced {
                    replaced: replaced.clone(),
                    by: by.clone(),
                    reason: reason.clone(),
                }])
            }
            C::Complete { findings } => {
                if a.request.assessors.len() > 1 {
                    let missing: Vec<&str> = a
                        .request
                        .assessors
                        .iter()
                        .filter(|o| !a.contributors.contains(o))
                        .map(Code::as_str)
                        .collect();
                    if !missing.is_empty() {
                        return Err(DomainError::rule(
                            "assessment.joint",
                            format!(
                                "a joint assessment completes only when every assessor has contributed; missing: {}",
                                missing.join(", ")
                            ),
                        ));
                    }
                }
                let mut events = vec![E::Completed {
                    findings: findings.clone(),
                }];
                // Eligibility is determined for Care Act s.9 needs assessments. A carer's
                // assessment (s.10) has its own criteria, not modelled yet: it records
                // findings only.
                if a.request.kind == AssessmentKind::CareActNeeds {
                    if findings.wellbeing_impact.is_none() {
                        return Err(DomainError::invalid(
                            "findings.wellbeing_impact",
                            "is required for a Care Act assessment",
                        ));
                    }
                    events.push(E::EligibilityDetermined {
                        eligibility: Eligibility::determine(findings),
                    });
                }
                Ok(events)
            }
            C::Cancel { reason } => Ok(vec![E::Cancelled {
                reason: reason.clone(),
            }]),
        }
    }

    fn evolve(state: Option<Self>, event: &AssessmentEvent) -> Result<Self, ReplayError> {
        use AssessmentEvent as E;
        let err = |state: &str| ReplayError {
            event: event.name(),
            state: state.to_owned(),
        };
        match (state, event) {
            (None, E::Requested { request }) => Ok(Assessment {
                request: request.clone(),
                status: AssessmentStatus::Requested,
                contributors: Vec::new(),
                findings: None,
                eligibility: None,
            }),
            (None, _) => Err(err("no assessment")),
            (Some(_), E::Requested { .. }) => Err(err("existing assessment")),
            (Some(mut a), E::ContributionRecorded { organisation, .. }) => {
                if !a.contributors.contains(organisation) {
                    a.contributors.push(organisation.clone());
                }
                Ok(a)
            }
            (Some(mut a), E::AssessorReplaced { replaced, by, .. }) => {
                // The replacement takes the replaced assessor's place in the list; what the
                // replaced one contributed stays in the record but no longer counts.
                for assessor in &mut a.request.assessors {
                    if assessor == replaced {
                        *assessor = by.clone();
                    }
                }
                a.contributors.retain(|c| c != replaced);
                Ok(a)
            }
            (Some(mut a), E::Completed { findings }) => {
                a.status = AssessmentStatus::Completed;
                a.findings = Some(findings.clone());
                Ok(a)
            }
            (Some(mut a), E::EligibilityDetermined { eligibility }) => {
                a.eligibility = Some(eligibility.clone());
                Ok(a)
            }
            (Some(mut a), E::Cancelled { .. }) => {
                a.status = AssessmentStatus::Cancelled;
                Ok(a)
            }
        }
    }
}
