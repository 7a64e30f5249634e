//! What must hold, once a service is ready, for its health to say `SERVING`: NATS is
//! reachable and its followers (the access index, the views projector, the gateway's
//! evaluator) are reading the log. [`crate::serve_with`] checks them every
//! [`CHECK_INTERVAL`] and reports `NOT_SERVING` (with the reason in the log, at warn) while
//! one fails, and `SERVING` again once all hold.

use std::sync::Arc;
use std::time::Duration;

use carewoven_eventlog::follow::{FollowHealth, FollowState};

/// How often the vitals are checked.
pub const CHECK_INTERVAL: Duration = Duration::from_millis(200);

type Test = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

#[derive(Clone)]
struct Check {
    /// The APIs it concerns (`None`: every API).
    apis: Option<Vec<&'static str>>,
    test: Test,
}

/// The checks of one service; see the module documentation.
#[derive(Clone, Default)]
pub struct Vitals {
    checks: Vec<Check>,
}

impl Vitals {
    pub fn new() -> Self {
        Self::default()
    }

    /// Any check: `Err(why)` while it fails; `apis` are the APIs it concerns (empty: all).
    pub fn check(
        mut self,
        apis: &[&'static str],
        test: impl Fn() -> Result<(), String> + Send + Sync + 'static,
    ) -> Self {
        self.checks.push(Check {
            apis: (!apis.is_empty()).then(|| apis.to_vec()),
            test: Arc::new(test),
        });
        self
    }

    /// NATS must be connected (every API).
    pub fn nats(self, client: &async_nats::Client) -> Self {
        let client = client.clone();
        self.check(&[], move || match client.connection_state() {
            async_nats::connection::State::Connected => Ok(()),
            state => Err(format!("NATS is unreachable ({state})")),
        })
    }

    /// The follower `what` must be reading the log (for `apis`; empty: every API).
    pub fn follower(self, what: &'static str, health: FollowHealth, apis: &[&'static str]) -> Self {
        self.check(apis, move || match health.state() {
            FollowState::Following => Ok(()),
            FollowState::Starting => Err(format!("the {what} is starting")),
            FollowState::Reconnecting(why) => Err(format!("the {what} cannot read the log: {why}")),
            FollowState::Ended => Err(format!("the {what} has stopped")),
        })
    }

    /// Why `api` (`""`: the server as a whole, which every check concerns) is not serving,
    /// if it is not.
    pub fn failing(&self, api: &str) -> Option<String> {
        let reasons: Vec<String> = self
            .checks
            .iter()
            .filter(|c| api.is_empty() || c.apis.as_ref().is_none_or(|apis| apis.contains(&api)))
            .filter_map(|c| (c.test)().err())
            .collect();
        (!reasons.is_empty()).then(|| reasons.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_check_concerns_its_apis_and_the_whole_server() {
        let v = Vitals::new()
            .check(&["a.A"], || Err("a is down".into()))
            .check(&[], || Ok(()));
        assert_eq!(v.failing("a.A").as_deref(), Some("a is down"));
        assert_eq!(v.failing("b.B"), None);
        assert_eq!(v.failing("").as_deref(), Some("a is down"));
    }

    #[test]
    fn a_follower_is_well_only_while_following() {
        let health = FollowHealth::new();
        let v = Vitals::new().follower("projector", health.clone(), &[]);
        assert_eq!(v.failing("").as_deref(), Some("the projector is starting"));
    }
}
