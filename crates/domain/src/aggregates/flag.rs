//! Risk flags and conditions (FHIR Flag): a coded flag about a person, raised by an
//! organisation from a day, with an optional end. Flags are their own data class
//! (`DataClass::RiskFlags`): an agreement must name it for a partner to see them.
//! `docs/codes/risk-flags.md` lists the codes and their sources.

use chrono::NaiveDate;

use crate::values::{LongText, not_future_date};
use crate::{Aggregate, AggregateKind, DecideContext, DomainError, ReplayError};

/// What a flag says about the person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RiskFlagCode {
    /// Frailty, with its Clinical Frailty Scale score (1 very fit to 9 terminally ill).
    Frailty,
    FallsRisk,
    /// On the Shielded Patient List (clinically extremely vulnerable).
    ClinicallyExtremelyVulnerable,
    LivesAlone,
    SafeguardingConcern,
    /// In the last year of life.
    EndOfLife,
}

impl RiskFlagCode {
    pub const ALL: [RiskFlagCode; 6] = [
        RiskFlagCode::Frailty,
        RiskFlagCode::FallsRisk,
        RiskFlagCode::ClinicallyExtremelyVulnerable,
        RiskFlagCode::LivesAlone,
        RiskFlagCode::SafeguardingConcern,
        RiskFlagCode::EndOfLife,
    ];

    /// Carewoven's code (CodeSystem `risk-flag`).
    pub fn code(self) -> &'static str {
        match self {
            RiskFlagCode::Frailty => "frailty",
            RiskFlagCode::FallsRisk => "falls-risk",
            RiskFlagCode::ClinicallyExtremelyVulnerable => "clinically-extremely-vulnerable",
            RiskFlagCode::LivesAlone => "lives-alone",
            RiskFlagCode::SafeguardingConcern => "safeguarding-concern",
            RiskFlagCode::EndOfLife => "end-of-life",
        }
    }

    pub fn display(self) -> &'static str {
        match self {
            RiskFlagCode::Frailty => "Frailty (Clinical Frailty Scale)",
            RiskFlagCode::FallsRisk => "At risk of falls",
            RiskFlagCode::ClinicallyExtremelyVulnerable => "Clinically extremely vulnerable",
            RiskFlagCode::LivesAlone => "Lives alone",
            RiskFlagCode::SafeguardingConcern => "Safeguarding concern",
            RiskFlagCode::EndOfLife => "End of life (last year of life)",
        }
    }

    pub fn parse(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.code() == code)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RiskFlag {
    pub code: RiskFlagCode,
    /// Clinical Frailty Scale score, 1 to 9: required for frailty, refused for any other flag.
    pub frailty_score: Option<u8>,
    /// From this day (UK calendar); not in the future.
    pub start: NaiveDate,
    pub note: Option<LongText>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlagCommand {
    Raise { flag: RiskFlag },
    End { end: NaiveDate, reason: LongText },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlagEvent {
    Raised { flag: RiskFlag },
    Ended { end: NaiveDate, reason: LongText },
}

impl FlagEvent {
    pub fn name(&self) -> &'static str {
        match self {
            FlagEvent::Raised { .. } => "risk_flag_raised",
            FlagEvent::Ended { .. } => "risk_flag_ended",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flag {
    pub flag: RiskFlag,
    pub end: Option<NaiveDate>,
}

impl Aggregate for Flag {
    const KIND: AggregateKind = AggregateKind::Flag;
    type Command = FlagCommand;
    type Event = FlagEvent;

    fn decide(
        state: Option<&Self>,
        command: &FlagCommand,
        ctx: &DecideContext,
    ) -> Result<Vec<FlagEvent>, DomainError> {
        match (state, command) {
            (None, FlagCommand::Raise { flag }) => {
                not_future_date("flag.start", flag.start, ctx.now)?;
                match (flag.code, flag.frailty_score) {
                    (RiskFlagCode::Frailty, None) => {
                        return Err(DomainError::invalid(
                            "flag.frailty_score",
                            "is required for frailty (Clinical Frailty Scale, 1 to 9)",
                        ));
                    }
                    (RiskFlagCode::Frailty, Some(s)) if !(1..=9).contains(&s) => {
                        return Err(DomainError::invalid(
                            "flag.frailty_score",
                            "must be between 1 and 9 (Clinical Frailty Scale)",
                        ));
                    }
                    (code, Some(_)) if code != RiskFlagCode::Frailty => {
                        return Err(DomainError::invalid(
                            "flag.frailty_score",
                            "is given only with the frailty flag",
                        ));
                    }
                    _ => {}
                }
                Ok(vec![FlagEvent::Raised { flag: flag.clone() }])
            }
            (Some(_), FlagCommand::Raise { .. }) => Err(DomainError::AlreadyExists {
                what: "risk flag",
                id: String::new(),
            }),
            (None, FlagCommand::End { .. }) => Err(DomainError::NotFound {
                what: "risk flag",
                id: String::new(),
            }),
            (Some(f), FlagCommand::End { end, reason }) => {
                if f.end.is_some() {
                    return Err(DomainError::rule(
                        "risk_flag.lifecycle",
                        "the flag has ended",
                    ));
                }
                not_future_date("end", *end, ctx.now)?;
                if *end < f.flag.start {
                    return Err(DomainError::invalid("end", "is before the flag's start"));
                }
                Ok(vec![FlagEvent::Ended {
                    end: *end,
                    reason: reason.clone(),
                }])
            }
        }
    }

    fn evolve(state: Option<Self>, event: &FlagEvent) -> Result<Self, ReplayError> {
        let err = |state: &str| ReplayError {
            event: event.name(),
            state: state.to_owned(),
        };
        match (state, event) {
            (None, FlagEvent::Raised { flag }) => Ok(Flag {
                flag: flag.clone(),
                end: None,
            }),
            (None, FlagEvent::Ended { .. }) => Err(err("no risk flag")),
            (Some(_), FlagEvent::Raised { .. }) => Err(err("existing risk flag")),
            (Some(mut f), FlagEvent::Ended { end, .. }) => {
                f.end = Some(*end);
                Ok(f)
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;

    fn ctx() -> DecideContext {
        let code = |s: &str| crate::values::Code::parse("code", s).unwrap();
        DecideContext {
            now: Utc.with_ymd_and_hms(2026, 6, 1, 12, 0, 0).unwrap(),
            actor: crate::Actor {
                organisation: code("GP-A"),
                user: code("user-1"),
            },
        }
    }

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 5, d).unwrap()
    }

    fn raise(code: RiskFlagCode, score: Option<u8>) -> FlagCommand {
        FlagCommand::Raise {
            flag: RiskFlag {
                code,
                frailty_score: score,
                start: day(1),
                note: None,
            },
        }
    }

    fn field(e: DomainError) -> String {
        match e {
            DomainError::Invalid { field, .. } => field,
            other => panic!("not invalid: {other:?}"),
        }
    }

    #[test]
    fn frailty_needs_its_score_and_only_frailty_has_one() {
        let ok = Flag::decide(None, &raise(RiskFlagCode::Frailty, Some(6)), &ctx()).unwrap();
        assert_eq!(ok.len(), 1);
        for bad in [None, Some(0), Some(10)] {
            let e = Flag::decide(None, &raise(RiskFlagCode::Frailty, bad), &ctx()).unwrap_err();
            assert_eq!(field(e), "flag.frailty_score");
        }
        let e = Flag::decide(None, &raise(RiskFlagCode::LivesAlone, Some(3)), &ctx()).unwrap_err();
        assert_eq!(field(e), "flag.frailty_score");
        assert!(Flag::decide(None, &raise(RiskFlagCode::LivesAlone, None), &ctx()).is_ok());
        let future = FlagCommand::Raise {
            flag: RiskFlag {
                code: RiskFlagCode::FallsRisk,
                frailty_score: None,
                start: NaiveDate::from_ymd_opt(2026, 7, 1).unwrap(),
                note: None,
            },
        };
        assert_eq!(
            field(Flag::decide(None, &future, &ctx()).unwrap_err()),
            "flag.start"
        );
    }

    #[test]
    fn a_flag_ends_once_and_not_before_it_started() {
        let raised = Flag::evolve(
            None,
            &Flag::decide(None, &raise(RiskFlagCode::FallsRisk, None), &ctx()).unwrap()[0],
        )
        .unwrap();
        let end = |d: NaiveDate| FlagCommand::End {
            end: d,
            reason: LongText::parse("reason", "Falls clinic discharged").unwrap(),
        };
        let early = NaiveDate::from_ymd_opt(2026, 4, 30).unwrap();
        assert_eq!(
            field(Flag::decide(Some(&raised), &end(early), &ctx()).unwrap_err()),
            "end"
        );
        let events = Flag::decide(Some(&raised), &end(day(20)), &ctx()).unwrap();
        let ended = Flag::evolve(Some(raised), &events[0]).unwrap();
        assert_eq!(ended.end, Some(day(20)));
        assert!(matches!(
            Flag::decide(Some(&ended), &end(day(21)), &ctx()).unwrap_err(),
            DomainError::Rule { .. }
        ));
        for code in RiskFlagCode::ALL {
            assert_eq!(RiskFlagCode::parse(code.code()), Some(code));
        }
    }
}
