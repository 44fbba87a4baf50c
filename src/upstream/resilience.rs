//! Per-upstream protection: a connection pool with its own limits, retries within a budget,
//! and a circuit breaker.
//!
//! Retries are for GET only (the one method Fanout treats as safe to repeat), on failures
//! that say nothing was answered: could not connect, connection reset, 502, 503, 504. Each
//! first attempt earns a fifth of a retry token (at most 10 banked), each retry spends one, so
//! retries add at most about 20% of load to a failing upstream. After `breakerFailures`
//! failures in a row (no connection, cut off, 5xx, or no answer by the deadline) the
//! breaker opens: calls fail at once with `UPSTREAM_UNAVAILABLE`
//! ("circuit open") until `breakerCooldown` passes; then one call probes, and its success
//! closes the breaker again.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use super::InFlight;
use crate::{
    error::{ErrorKind, FieldError},
    sdl::Upstream,
};

const BUDGET_PER_REQUEST: f64 = 0.2;
const BUDGET_MAX: f64 = 10.0;

/// One upstream's settings and shared state, for the lifetime of a loaded schema.
pub struct Runtime {
    pub name: Arc<str>,
    pub base: super::BaseUrl,
    pub http: reqwest::Client,
    pub max_response_bytes: usize,
    pub max_response_nodes: usize,
    /// One permit per call in flight (`maxConnections`).
    pub connections: tokio::sync::Semaphore,
    pub retries: u32,
    /// In-flight GETs shared across client requests, when the upstream opts in (`coalesce`).
    pub(crate) coalesce: Option<Mutex<HashMap<String, InFlight>>>,
    breaker: Mutex<Breaker>,
    budget: Mutex<f64>,
    breaker_failures: u32,
    breaker_cooldown: Duration,
}

#[derive(Debug)]
enum Breaker {
    Closed {
        failures: u32,
    },
    /// Calls fail fast until `until`; the first call after it is the probe.
    Open {
        until: Instant,
    },
}

impl Runtime {
    pub fn new(up: &Upstream) -> Arc<Runtime> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(up.connect_timeout)
            .pool_max_idle_per_host(up.pool_max_idle)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .build()
            .expect("the HTTP client's settings are valid");
        Arc::new(Runtime {
            name: Arc::from(up.name.as_str()),
            base: super::BaseUrl::new(&up.base_url),
            http,
            max_response_bytes: up.max_response_bytes,
            max_response_nodes: up.max_response_nodes,
            connections: tokio::sync::Semaphore::new(up.max_connections),
            retries: up.retries,
            coalesce: up.coalesce.then(Default::default),
            breaker: Mutex::new(Breaker::Closed { failures: 0 }),
            budget: Mutex::new(BUDGET_MAX),
            breaker_failures: up.breaker_failures,
            breaker_cooldown: up.breaker_cooldown,
        })
    }

    /// Whether a call may go out now. While the breaker is open it fails fast; once the
    /// cooldown has passed, one call is let through as a probe and the next wait begins.
    pub fn admit(&self) -> Result<(), FieldError> {
        let mut b = self.breaker.lock().expect("breaker lock poisoned");
        if let Breaker::Open { until } = *b {
            let now = Instant::now();
            if now < until {
                return Err(FieldError::new(
                    ErrorKind::Unavailable("circuit open after repeated failures"),
                    Some(&self.name),
                ));
            }
            *b = Breaker::Open {
                until: now + self.breaker_cooldown,
            };
        }
        Ok(())
    }

    /// The breaker's state, for `/metrics`.
    pub fn breaker_state(&self) -> crate::metrics::BreakerState {
        match *self.breaker.lock().expect("breaker lock poisoned") {
            Breaker::Open { until } if Instant::now() < until => crate::metrics::BreakerState::Open,
            _ => crate::metrics::BreakerState::Closed,
        }
    }

    /// Feeds the breaker with a call's outcome.
    pub fn record(&self, failed: bool) {
        let mut b = self.breaker.lock().expect("breaker lock poisoned");
        *b = match (&*b, failed) {
            (_, false) => Breaker::Closed { failures: 0 },
            (Breaker::Closed { failures }, true) if failures + 1 < self.breaker_failures => {
                Breaker::Closed {
                    failures: failures + 1,
                }
            }
            (_, true) => {
                if !matches!(*b, Breaker::Open { .. }) {
                    tracing::warn!(upstream = %self.name, "circuit opened after repeated failures");
                }
                Breaker::Open {
                    until: Instant::now() + self.breaker_cooldown,
                }
            }
        };
    }

    /// Every first attempt earns part of a retry.
    pub fn earn_retry(&self) {
        let mut t = self.budget.lock().expect("budget lock poisoned");
        *t = (*t + BUDGET_PER_REQUEST).min(BUDGET_MAX);
    }

    /// Spends one retry, if the budget has one.
    pub fn spend_retry(&self) -> bool {
        let mut t = self.budget.lock().expect("budget lock poisoned");
        if *t >= 1.0 {
            *t -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Failures that count against the breaker: the upstream did not answer, or answered that it
/// is failing.
pub fn is_failure(e: &FieldError) -> bool {
    match e.kind {
        ErrorKind::Unavailable(_) | ErrorKind::Timeout(_) => true,
        ErrorKind::Http(status) => status >= 500,
        _ => false,
    }
}

/// Failures worth another try of a GET: nothing useful came back and trying again may work.
pub fn is_retryable(e: &FieldError) -> bool {
    match e.kind {
        ErrorKind::Unavailable(_) => true,
        ErrorKind::Http(status) => matches!(status, 502..=504),
        _ => false,
    }
}

/// 25 ms, 50 ms, 100 ms, ... with up to half again of jitter, so retries spread out.
pub fn backoff(attempt: u32) -> Duration {
    let base = 25u64 << attempt.saturating_sub(1).min(6);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos() as u64)
        .unwrap_or(0);
    Duration::from_millis(base + nanos % (base / 2 + 1))
}
