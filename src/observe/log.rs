//! The logs: one `info` line per request ("request done"; for `/healthz`, `/readyz` and
//! `/metrics` at `debug`), upstream failures at `warn`.
//!
//! The request line is written inside the request's span, so in the text format it reads
//! `request{id=… method=… path=… client=…}: request done status=… ms=… …` and in JSON the
//! span's fields are under `span`. Upstream URLs and error details are logged only with
//! `--debug-errors`, as they are shown to clients only then.

use super::{CallEvent, Observer, RequestEvent, Share};

pub struct Logs;

impl Observer for Logs {
    fn call(&self, e: &CallEvent<'_>) {
        if !matches!(e.share, Share::Sent) {
            return;
        }
        let Some(err) = e.error else {
            if e.attempts > 1 {
                tracing::debug!(upstream = %e.upstream, attempts = e.attempts, "upstream call retried");
            }
            return;
        };
        let (url, detail) = if e.op.debug_errors {
            (Some(e.url.as_str()), err.detail.as_deref())
        } else {
            (None, None)
        };
        tracing::warn!(
            upstream = %e.upstream,
            code = err.code(),
            status = e.status,
            field = e.field,
            attempts = e.attempts,
            ms = super::ms(e.duration),
            request_id = %e.op.request.id,
            url,
            detail,
            "upstream call failed"
        );
    }

    fn request(&self, e: &RequestEvent<'_>) {
        let codes = e.graphql.codes.join(",");
        let names = e.operation_names();
        let ty = e.operation_type();
        let trace_id = e
            .request
            .trace
            .as_ref()
            .filter(|t| t.exported)
            .map(|t| t.context.trace_id());
        macro_rules! line {
            ($level:expr) => {
                tracing::event!(
                    $level,
                    status = e.status,
                    ms = super::ms(e.duration),
                    operation = names.as_deref().map(tracing::field::display),
                    operation_type = ty.as_deref().map(tracing::field::display),
                    codes = %codes,
                    upstream_calls = e.upstream_calls,
                    request_id = %e.request.id,
                    trace_id = trace_id.map(tracing::field::display),
                    "request done"
                )
            };
        }
        // Probes and scrapes come every few seconds: their lines only at debug.
        if super::is_probe(e.request.route) {
            line!(tracing::Level::DEBUG);
        } else {
            line!(tracing::Level::INFO);
        }
    }
}
