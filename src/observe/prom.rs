//! Prometheus: each event counted in [`METRICS`], which `/metrics` renders.

use super::{CallEvent, Observer, RequestEvent, Share};
use crate::{error::FieldError, metrics::METRICS};

pub struct Prometheus;

impl Observer for Prometheus {
    fn call(&self, e: &CallEvent<'_>) {
        if !matches!(e.share, Share::Sent) {
            METRICS.deduplicated();
            return;
        }
        let outcome = e.error.map_or("ok", FieldError::code);
        let retries = e.attempts.saturating_sub(1);
        METRICS.upstream_call(e.upstream, outcome, e.duration, retries);
        if let Some(b) = e.batch {
            METRICS.batch(b.size);
        }
    }

    fn request(&self, e: &RequestEvent<'_>) {
        METRICS.response(e.request.route, e.status);
        if let Some(outcome) = e.graphql.outcome {
            METRICS.request(outcome, e.duration);
        }
    }
}
