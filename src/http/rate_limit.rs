//! Request budgets per token and per tenant (token buckets), so one
//! misbehaving IdP cannot starve another tenant or flood the downstream
//! apps its changes fan out to.
//!
//! ```text
//!  bearer ─▶ Actor ─▶ bucket "token:<tenant>/<token>" ┐ both have a request left?
//!                 └─▶ bucket "tenant:<tenant>"        ┘   yes: take one from each
//!                     (or "app:<app>" for a pull token)   no:  429 + Retry-After
//! ```
//! A request refused by one budget costs the other nothing. Buckets live in
//! this process: with several gateways on one PostgreSQL database each
//! process enforces the budget on its own share of the traffic. The admin
//! API is not budgeted here; operators must reach it while a client floods.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::{HttpRequest, web};

use crate::config::{Budget, RateLimitSettings};
use crate::domain::Actor;
use crate::error::ScimError;

/// One token bucket.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    /// Requests left (fractions accumulate between requests).
    tokens: f64,
    /// When `tokens` was last brought up to date.
    at: Instant,
}

impl Bucket {
    fn full(budget: Budget, now: Instant) -> Self {
        Self {
            tokens: f64::from(budget.burst),
            at: now,
        }
    }

    fn refill(&mut self, budget: Budget, now: Instant) {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens =
            (self.tokens + elapsed * budget.requests_per_sec).min(f64::from(budget.burst));
        self.at = now;
    }

    /// How long until one whole request is available (zero if it is now).
    fn wait(&self, budget: Budget) -> Duration {
        if self.tokens >= 1.0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64((1.0 - self.tokens) / budget.requests_per_sec)
    }
}

/// The budgets of this process.
#[derive(Debug)]
pub struct RateLimiter {
    settings: RateLimitSettings,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// Budgets as configured; without any, every request is admitted.
    pub fn new(settings: RateLimitSettings) -> Self {
        Self {
            settings,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one request from the actor's budgets, or says how long to wait.
    pub fn admit(&self, actor: &Actor, now: Instant) -> Result<(), Duration> {
        if self.settings.per_token.is_none() && self.settings.per_tenant.is_none() {
            return Ok(()); // no budgets: no lock, no allocation per request
        }
        let keys = self.keys(actor);
        // A poisoned lock only means another thread panicked mid-update of
        // plain numbers; the buckets are still usable.
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut wait = Duration::ZERO;
        for (key, budget) in &keys {
            let bucket = buckets
                .entry(key.clone())
                .or_insert_with(|| Bucket::full(*budget, now));
            bucket.refill(*budget, now);
            wait = wait.max(bucket.wait(*budget));
        }
        if !wait.is_zero() {
            return Err(wait);
        }
        for (key, _) in &keys {
            if let Some(bucket) = buckets.get_mut(key) {
                bucket.tokens -= 1.0;
            }
        }
        Ok(())
    }

    fn keys(&self, actor: &Actor) -> Vec<(String, Budget)> {
        let mut keys = Vec::with_capacity(2);
        if let Some(b) = self.settings.per_token {
            keys.push((format!("token:{}/{}", actor.tenant, actor.token_id), b));
        }
        if let Some(b) = self.settings.per_tenant {
            let key = match &actor.app {
                Some(app) => format!("app:{app}"),
                None => format!("tenant:{}", actor.tenant),
            };
            keys.push((key, b));
        }
        keys
    }
}

/// Admits an authenticated request against the limiter in the app data
/// (none configured: admitted), or refuses it with 429 and `Retry-After`.
pub fn check(req: &HttpRequest, actor: Actor) -> Result<Actor, ScimError> {
    let Some(limiter) = req.app_data::<web::Data<RateLimiter>>() else {
        return Ok(actor);
    };
    match limiter.admit(&actor, Instant::now()) {
        Ok(()) => Ok(actor),
        Err(wait) => {
            // Debug only: a flooding client would flood the log too; the
            // request line already records each 429.
            tracing::debug!(
                tenant = %actor.tenant,
                token = %actor.token_id,
                "request budget exceeded"
            );
            Err(ScimError::too_many_requests(retry_after_secs(wait)))
        }
    }
}

/// Whole seconds for `Retry-After`: rounded up, at least one.
pub fn retry_after_secs(wait: Duration) -> u64 {
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn actor(tenant: &str, token: &str, app: Option<&str>) -> Actor {
        Actor {
            tenant: tenant.into(),
            token_id: token.into(),
            app: app.map(str::to_string),
        }
    }

    fn budget(rate: f64, burst: u32) -> Option<Budget> {
        Some(Budget {
            requests_per_sec: rate,
            burst,
        })
    }

    #[test]
    fn a_burst_is_admitted_then_the_rate_refills_it() {
        let limiter = RateLimiter::new(RateLimitSettings {
            per_token: budget(2.0, 3),
            per_tenant: None,
        });
        let a = actor("acme", "entra", None);
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.admit(&a, t0), Ok(()));
        }
        let wait = limiter.admit(&a, t0).unwrap_err();
        assert_eq!(wait, Duration::from_millis(500));
        assert_eq!(retry_after_secs(wait), 1);
        // Half a second later exactly one request is back.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(limiter.admit(&a, t1), Ok(()));
        assert!(limiter.admit(&a, t1).is_err());
        // A long pause refills only up to the burst.
        let t2 = t1 + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(limiter.admit(&a, t2), Ok(()));
        }
        assert!(limiter.admit(&a, t2).is_err());
    }

    #[test]
    fn tenants_and_pulling_apps_have_budgets_of_their_own() {
        let limiter = RateLimiter::new(RateLimitSettings {
            per_token: None,
            per_tenant: budget(0.1, 2),
        });
        let now = Instant::now();
        let (entra, okta) = (actor("acme", "entra", None), actor("acme", "okta", None));
        assert_eq!(limiter.admit(&entra, now), Ok(()));
        assert_eq!(limiter.admit(&okta, now), Ok(()));
        // Two tokens of one tenant share its budget …
        let wait = limiter.admit(&entra, now).unwrap_err();
        assert_eq!(retry_after_secs(wait), 10);
        // … another tenant and a pulling app of the same tenant do not.
        assert_eq!(limiter.admit(&actor("globex", "okta", None), now), Ok(()));
        assert_eq!(limiter.admit(&actor("acme", "p", Some("crm")), now), Ok(()));
    }

    #[test]
    fn a_refusal_by_one_budget_costs_the_other_nothing() {
        let limiter = RateLimiter::new(RateLimitSettings {
            per_token: budget(1.0, 1),
            per_tenant: budget(1.0, 2),
        });
        let now = Instant::now();
        let (a, b) = (actor("acme", "a", None), actor("acme", "b", None));
        assert_eq!(limiter.admit(&a, now), Ok(()));
        // Refused by a's token budget: the tenant keeps its second request.
        assert!(limiter.admit(&a, now).is_err());
        assert_eq!(limiter.admit(&b, now), Ok(()));
        assert!(limiter.admit(&b, now).is_err());
    }

    #[test]
    fn without_budgets_everything_is_admitted() {
        let limiter = RateLimiter::new(RateLimitSettings::default());
        let a = actor("acme", "a", None);
        let now = Instant::now();
        for _ in 0..10_000 {
            assert_eq!(limiter.admit(&a, now), Ok(()));
        }
    }

    #[test]
    fn retry_after_rounds_up() {
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_secs(Duration::from_secs(3)), 3);
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
    }
}
