//! Watching Fanout work: every upstream call and every client request ends in one event, and
//! each observer in [`OBSERVERS`] takes what it needs from it.
//!
//! - [`record`]: the `x-fanout-trace` list of calls in `extensions.fanout`.
//! - [`prom`]: the counters behind `/metrics`.
//! - [`otel`]: OpenTelemetry spans, exported over OTLP when an endpoint is set.
//! - [`log`]: one `info` line per request; upstream failures at `warn`.
//!
//! Adding an observer is a file and a line in [`OBSERVERS`].
//!
//! The edge makes a [`Request`] when a client request arrives and runs the request with it as
//! the task's current one ([`Request::scope`]). Each GraphQL operation of the request gets an
//! [`Operation`] of it, which every upstream call carries (a batch's spawned task too), so a
//! call knows which request, and which trace, it served.

pub mod log;
pub mod otel;
pub mod prom;
pub mod record;

use std::{
    net::IpAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering::Relaxed},
    },
    time::{Duration, Instant},
};

use async_graphql::parser::types::OperationType;
use reqwest::Method;
use url::Url;

use crate::{error::FieldError, upstream::BatchCall};

/// Something that watches calls and requests. Both methods run on the request path: an
/// observer does little and never blocks.
pub trait Observer: Sync {
    fn call(&self, _event: &CallEvent<'_>) {}
    fn request(&self, _event: &RequestEvent<'_>) {}
}

/// Every observer, in the order they see each event.
static OBSERVERS: [&dyn Observer; 4] = [
    &record::TraceRecord,
    &prom::Prometheus,
    &otel::Otel,
    &log::Logs,
];

/// One upstream call that ended, or one client request's use of an identical call already
/// made or in flight.
pub struct CallEvent<'a> {
    pub op: &'a Operation,
    pub upstream: &'a str,
    pub method: &'a Method,
    pub url: &'a Url,
    /// The field it served, as `Type.field`.
    pub field: &'a str,
    pub batch: Option<&'a BatchCall>,
    pub share: Share,
    /// Tries sent (1 without retries; 0 when the breaker refused the call).
    pub attempts: u32,
    pub started: Instant,
    pub duration: Duration,
    pub status: Option<u16>,
    pub error: Option<&'a FieldError>,
    /// The call's own trace context, as sent in its `traceparent`.
    pub span: Option<otel::TraceCtx>,
}

/// How a call event's answer was had.
#[derive(Clone, Debug)]
pub enum Share {
    /// This call went to the upstream.
    Sent,
    /// An identical GET of the same client request answered it.
    Deduplicated,
    /// An identical GET of another client request, in flight (`coalesce`), answered it; its
    /// span, when traced.
    Coalesced(Option<otel::TraceCtx>),
}

/// Hands a finished call to every observer.
pub fn call_done(event: &CallEvent<'_>) {
    if matches!(event.share, Share::Sent) {
        event.op.request.calls.fetch_add(1, Relaxed);
    }
    for o in OBSERVERS {
        o.call(event);
    }
}

/// A client request as the observers see it, from its arrival to its answer.
pub struct Request {
    /// Its `x-request-id`.
    pub id: String,
    pub method: Method,
    /// The path the client asked for, any `--path-prefix` included.
    pub path: String,
    /// The route it matched, for metric labels: one of a fixed few.
    pub route: &'static str,
    pub client: Option<IpAddr>,
    pub started: Instant,
    /// The server span, or the client's context passed on when traces are not exported.
    pub trace: Option<otel::TraceCtx>,
    calls: AtomicUsize,
    graphql: Mutex<Graphql>,
}

/// What the GraphQL operations of a request were and answered.
#[derive(Default, Debug)]
pub struct Graphql {
    /// Name (if any) and type of each operation executed.
    pub operations: Vec<(Option<String>, &'static str)>,
    /// The distinct `extensions.code` values answered, in order of first appearance.
    pub codes: Vec<String>,
    /// `ok`, `field_errors` or `request_error`: the worst of its operations. `None` when the
    /// request executed no GraphQL.
    pub outcome: Option<&'static str>,
    /// Operations answered so far (a batch POST answers several).
    answered: usize,
}

tokio::task_local! {
    static CURRENT: Arc<Request>;
}

impl Request {
    /// A request that arrives now; `trace` continues the client's trace, if it sent one.
    pub fn new(
        id: String,
        method: Method,
        path: String,
        route: &'static str,
        client: Option<IpAddr>,
        trace: Option<otel::TraceCtx>,
    ) -> Arc<Request> {
        Arc::new(Request {
            id,
            method,
            path,
            route,
            client,
            started: Instant::now(),
            trace,
            calls: AtomicUsize::new(0),
            graphql: Mutex::default(),
        })
    }

    /// Runs `fut` with this request as the current one.
    pub async fn scope<F: Future>(self: Arc<Self>, fut: F) -> F::Output {
        CURRENT.scope(self, fut).await
    }

    /// The request the current task serves; a detached one outside of any (a gateway
    /// executed without the HTTP layer).
    pub fn current() -> Arc<Request> {
        CURRENT.try_with(Arc::clone).unwrap_or_else(|_| {
            Request::new(
                String::new(),
                Method::POST,
                String::new(),
                "other",
                None,
                None,
            )
        })
    }

    /// Upstream calls sent for it so far.
    pub fn calls(&self) -> usize {
        self.calls.load(Relaxed)
    }

    fn graphql(&self) -> std::sync::MutexGuard<'_, Graphql> {
        self.graphql.lock().expect("request notes lock poisoned")
    }

    /// The request was answered `status`: every observer hears of it.
    pub fn finish(&self, status: u16) {
        let graphql = self.graphql();
        let event = RequestEvent {
            request: self,
            status,
            duration: self.started.elapsed(),
            upstream_calls: self.calls(),
            graphql: &graphql,
        };
        for o in OBSERVERS {
            o.request(&event);
        }
    }
}

/// The route label of a path as the router sees it (without any `--path-prefix`).
pub fn route_of(path: &str) -> &'static str {
    match path {
        "/graphql" => "/graphql",
        "/healthz" => "/healthz",
        "/readyz" => "/readyz",
        "/metrics" => "/metrics",
        p if p.starts_with("/graphql/assets/") => "/graphql/assets",
        _ => "other",
    }
}

/// Whether a route is a health probe or the metrics scrape: requests a load balancer and
/// Prometheus send every few seconds, logged at debug and not traced.
pub fn is_probe(route: &str) -> bool {
    matches!(route, "/healthz" | "/readyz" | "/metrics")
}

/// One GraphQL operation answered for the current request: its outcome and error codes go
/// into the request's event. `name` is the operation name the client gave, for operations
/// Fanout's resolvers never saw (introspection only).
pub fn answered(resp: &async_graphql::Response, outcome: &'static str, name: Option<String>) {
    let Ok(req) = CURRENT.try_with(Arc::clone) else {
        return;
    };
    let mut g = req.graphql();
    if g.operations.len() <= g.answered && outcome != "request_error" {
        g.operations.push((name, "query"));
    }
    g.answered = g.operations.len();
    let rank = |o: &str| match o {
        "request_error" => 2,
        "field_errors" => 1,
        _ => 0,
    };
    if g.outcome.is_none_or(|o| rank(outcome) > rank(o)) {
        g.outcome = Some(outcome);
    }
    for e in &resp.errors {
        let code = e.extensions.as_ref().and_then(|x| x.get("code"));
        if let Some(async_graphql::Value::String(code)) = code
            && !g.codes.contains(code)
        {
            g.codes.push(code.clone());
        }
    }
}

/// A client request that was answered.
pub struct RequestEvent<'a> {
    pub request: &'a Request,
    pub status: u16,
    pub duration: Duration,
    pub upstream_calls: usize,
    pub graphql: &'a Graphql,
}

impl RequestEvent<'_> {
    /// The operation names, comma-separated (a batch POST has several); `None` if none had
    /// one.
    pub fn operation_names(&self) -> Option<String> {
        let names: Vec<&str> = self
            .graphql
            .operations
            .iter()
            .filter_map(|(n, _)| n.as_deref())
            .collect();
        (!names.is_empty()).then(|| names.join(","))
    }

    /// The operation type; for a batch POST of several kinds, them all, comma-separated.
    pub fn operation_type(&self) -> Option<String> {
        let mut types: Vec<&str> = Vec::new();
        for (_, t) in &self.graphql.operations {
            if !types.contains(t) {
                types.push(t);
            }
        }
        (!types.is_empty()).then(|| types.join(","))
    }
}

/// One GraphQL operation of a client request: what its upstream calls carry.
pub struct Operation {
    pub request: Arc<Request>,
    /// Upstream URLs and details may be logged (`--debug-errors`).
    pub debug_errors: bool,
    /// The `x-fanout-trace` record, when the client asked for it.
    pub record: Option<record::TraceLog>,
}

impl Operation {
    /// An operation of the current request, starting now.
    pub fn current(trace: bool, debug_errors: bool) -> Arc<Operation> {
        Arc::new(Operation {
            request: Request::current(),
            debug_errors,
            record: trace.then(record::TraceLog::new),
        })
    }

    /// The operation the engine selected: its type, and its name if it has one.
    pub fn selected(&self, ty: OperationType, name: Option<&str>) {
        let ty = match ty {
            OperationType::Query => "query",
            OperationType::Mutation => "mutation",
            OperationType::Subscription => "subscription",
        };
        self.request
            .graphql()
            .operations
            .push((name.map(str::to_owned), ty));
    }
}

/// Milliseconds, to the microsecond.
pub fn ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}
