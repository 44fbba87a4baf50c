//! OpenTelemetry traces, exported over OTLP when an endpoint is set (the standard `OTEL_*`
//! variables; see [`Config::from_env`]).
//!
//! A request gets a server span and each upstream call a client span, its child. Their ids
//! are chosen when the request arrives and when the call starts, so that the call's
//! `traceparent` names its own span; the spans themselves are built from the request and call
//! events once they end, and handed to the SDK's batch processor, which exports them from a
//! thread of its own. Nothing on the request path waits for the exporter: when its queue is
//! full a span is dropped, and when the receiver does not answer the batch is, both counted
//! in `fanout_trace_spans_total`.
//!
//! Without an endpoint nothing is exported, and a client's `traceparent` and `tracestate`
//! are passed on to the upstreams unchanged.

use std::{
    borrow::Cow,
    sync::{
        OnceLock,
        atomic::{AtomicBool, AtomicU64, Ordering::Relaxed},
    },
    time::{Duration, SystemTime},
};

use http::{HeaderMap, HeaderName, HeaderValue};
use opentelemetry::{
    Context, InstrumentationScope, KeyValue, Value,
    propagation::{Extractor, Injector, TextMapPropagator},
    trace::{Link, SpanContext, SpanKind, Status, TraceContextExt, TraceFlags, TraceState},
};
use opentelemetry_sdk::{
    Resource,
    error::OTelSdkResult,
    propagation::TraceContextPropagator,
    trace::{
        BatchConfigBuilder, BatchSpanProcessor, IdGenerator, RandomIdGenerator, SpanData,
        SpanEvents, SpanExporter, SpanLinks, SpanProcessor,
    },
};

use super::{CallEvent, Observer, Request, RequestEvent, Share};
use crate::{error::FieldError, metrics::METRICS};

/// A span's trace context, with its parent's span id.
#[derive(Clone, Debug)]
pub struct TraceCtx {
    pub context: SpanContext,
    pub parent: Option<SpanContext>,
    /// Whether the span is Fanout's and exported: export is on and the trace sampled.
    pub exported: bool,
}

/// Where and how to export; `None` from [`Config::from_env`] when traces are off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub protocol: Protocol,
    pub service_name: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    HttpProtobuf,
    Grpc,
}

impl Config {
    /// Reads `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `OTEL_EXPORTER_OTLP_ENDPOINT` (off when
    /// neither is set, or when `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`),
    /// `OTEL_EXPORTER_OTLP_TRACES_PROTOCOL` / `OTEL_EXPORTER_OTLP_PROTOCOL` (`http/protobuf`,
    /// the default, or `grpc`) and `OTEL_SERVICE_NAME` (default `fanout`). The exporter reads
    /// the endpoint itself, and the rest of the standard variables (headers, timeout,
    /// `OTEL_BSP_*`).
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Option<Config>, String> {
        let var = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        if var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
            || var("OTEL_TRACES_EXPORTER").is_some_and(|v| v.trim() == "none")
        {
            return Ok(None);
        }
        if var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
            .or_else(|| var("OTEL_EXPORTER_OTLP_ENDPOINT"))
            .is_none()
        {
            return Ok(None);
        }
        let protocol = var("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL")
            .or_else(|| var("OTEL_EXPORTER_OTLP_PROTOCOL"));
        let protocol = match protocol.as_deref().map(str::trim) {
            None | Some("http/protobuf") => Protocol::HttpProtobuf,
            Some("grpc") => Protocol::Grpc,
            Some(other) => {
                return Err(format!(
                    "OTEL_EXPORTER_OTLP_PROTOCOL={other:?} is not supported: use http/protobuf or grpc"
                ));
            }
        };
        let service_name = var("OTEL_SERVICE_NAME").unwrap_or_else(|| "fanout".to_owned());
        Ok(Some(Config {
            protocol,
            service_name,
        }))
    }
}

struct Exporter {
    processor: BatchSpanProcessor,
    ids: RandomIdGenerator,
    scope: InstrumentationScope,
    /// Spans handed to the processor; those not yet exported or failed are in its queue.
    submitted: AtomicU64,
    max_queue: u64,
}

static EXPORTER: OnceLock<Exporter> = OnceLock::new();

/// Whether spans are exported.
pub fn enabled() -> bool {
    EXPORTER.get().is_some()
}

/// Starts exporting as `config` says. Call it once, inside the Tokio runtime (gRPC's client
/// lives on it).
pub fn init(config: &Config) -> Result<(), String> {
    use opentelemetry_otlp::{SpanExporter as Otlp, WithExportConfig};
    let failed = |e: opentelemetry_otlp::ExporterBuildError| format!("OTLP exporter: {e}");
    let exporter = match config.protocol {
        Protocol::HttpProtobuf => Otlp::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .build()
            .map_err(failed)?,
        Protocol::Grpc => Otlp::builder()
            .with_tonic()
            .with_protocol(opentelemetry_otlp::Protocol::Grpc)
            .build()
            .map_err(failed)?,
    };
    let max_queue = std::env::var("OTEL_BSP_MAX_QUEUE_SIZE")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(2048);
    let batch = BatchConfigBuilder::default()
        .with_max_queue_size(max_queue)
        .build();
    let mut processor = BatchSpanProcessor::builder(Counting {
        inner: exporter,
        failing: AtomicBool::new(false),
    })
    .with_batch_config(batch)
    .build();
    let resource = Resource::builder()
        .with_service_name(config.service_name.clone())
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    processor.set_resource(&resource);
    let scope = InstrumentationScope::builder("fanout")
        .with_version(env!("CARGO_PKG_VERSION"))
        .build();
    let exporter = Exporter {
        processor,
        ids: RandomIdGenerator::default(),
        scope,
        submitted: AtomicU64::new(0),
        max_queue: max_queue as u64,
    };
    EXPORTER
        .set(exporter)
        .map_err(|_| "traces were already set up".to_owned())
}

/// Exports what is queued, for at most `limit`; then stops the exporter.
pub async fn shutdown(limit: Duration) {
    let Some(exporter) = EXPORTER.get() else {
        return;
    };
    // It blocks until its thread is done, and gRPC's client needs this runtime meanwhile.
    let done = tokio::task::spawn_blocking(move || exporter.processor.shutdown_with_timeout(limit));
    if let Ok(Ok(Err(e))) = tokio::time::timeout(limit + Duration::from_secs(1), done).await {
        tracing::warn!("trace export did not finish: {e}");
    }
}

/// Counts what the exporter delivered and failed to, and says when export starts and stops
/// failing.
#[derive(Debug)]
struct Counting<E> {
    inner: E,
    failing: AtomicBool,
}

impl<E: SpanExporter> SpanExporter for Counting<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len();
        let result = self.inner.export(batch).await;
        METRICS.spans_exported(n, result.is_ok());
        match &result {
            Err(e) if !self.failing.swap(true, Relaxed) => tracing::warn!(
                "trace export failed ({e}); spans are dropped until it works again \
                 (fanout_trace_spans_total counts them)"
            ),
            Ok(()) if self.failing.swap(false, Relaxed) => {
                tracing::info!("trace export works again");
            }
            _ => {}
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// Hands a finished span to the processor, unless its queue is full: then it is dropped and
/// counted. Never waits.
fn submit(exporter: &Exporter, span: SpanData) {
    let queued = exporter
        .submitted
        .load(Relaxed)
        .saturating_sub(METRICS.spans_settled());
    if queued >= exporter.max_queue {
        METRICS.span_dropped();
        return;
    }
    exporter.submitted.fetch_add(1, Relaxed);
    exporter.processor.on_end(span);
}

struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key)?.to_str().ok()
    }

    fn keys(&self) -> Vec<&str> {
        self.0.keys().map(HeaderName::as_str).collect()
    }
}

struct HeadersMut<'a>(&'a mut HeaderMap);

impl Injector for HeadersMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(key.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            self.0.insert(name, value);
        }
    }
}

const TRACEPARENT: &str = "traceparent";

/// The trace of a request that arrives with `headers`: its server span, a child of the
/// client's `traceparent` if it sent a valid one. Without export, or when the request is not
/// `traced` (a probe), the client's context itself (to pass on), or `None`.
pub fn server(headers: &HeaderMap, traced: bool) -> Option<TraceCtx> {
    let parent = headers
        .contains_key(TRACEPARENT)
        .then(|| {
            let cx = TraceContextPropagator::new().extract(&Headers(headers));
            cx.span().span_context().clone()
        })
        .filter(SpanContext::is_valid);
    let Some(exporter) = EXPORTER.get().filter(|_| traced) else {
        return parent.map(|context| TraceCtx {
            context,
            parent: None,
            exported: false,
        });
    };
    let (trace_id, flags, state) = match &parent {
        Some(p) => (p.trace_id(), p.trace_flags(), p.trace_state().clone()),
        None => (
            exporter.ids.new_trace_id(),
            TraceFlags::SAMPLED,
            TraceState::default(),
        ),
    };
    let span_id = exporter.ids.new_span_id();
    Some(TraceCtx {
        context: SpanContext::new(trace_id, span_id, flags, false, state),
        parent,
        exported: flags.is_sampled(),
    })
}

/// The trace context of an upstream call made for a request traced as `request`: a new
/// child span when Fanout takes part in the trace, the client's own context when it only
/// passes it on.
pub fn client(request: Option<&TraceCtx>) -> Option<TraceCtx> {
    let request = request?;
    let Some(exporter) = EXPORTER.get() else {
        return Some(request.clone());
    };
    let r = &request.context;
    let context = SpanContext::new(
        r.trace_id(),
        exporter.ids.new_span_id(),
        r.trace_flags(),
        false,
        r.trace_state().clone(),
    );
    Some(TraceCtx {
        context,
        parent: Some(r.clone()),
        exported: request.exported,
    })
}

/// Writes `traceparent` (and `tracestate`) for `ctx` into `headers`.
pub fn inject(ctx: &TraceCtx, headers: &mut HeaderMap) {
    let cx = Context::new().with_remote_span_context(ctx.context.clone());
    TraceContextPropagator::new().inject_context(&cx, &mut HeadersMut(headers));
}

pub struct Otel;

impl Observer for Otel {
    fn call(&self, e: &CallEvent<'_>) {
        let Some(exporter) = EXPORTER.get() else {
            return;
        };
        let (span, kind, name, links) = match &e.share {
            Share::Sent => match &e.span {
                Some(span) if span.exported => (
                    span.clone(),
                    SpanKind::Client,
                    format!("{} {}", e.method, e.upstream),
                    Vec::new(),
                ),
                _ => return,
            },
            // Another request's call answered this one: a span of this request's own,
            // linked to the one that went out.
            Share::Coalesced(theirs) => {
                let Some(span) = client(e.op.request.trace.as_ref()).filter(|s| s.exported) else {
                    return;
                };
                let links = theirs
                    .iter()
                    .filter(|t| t.context.trace_id() != span.context.trace_id())
                    .map(|t| Link::with_context(t.context.clone()))
                    .collect();
                let name = format!("{} {} (coalesced)", e.method, e.upstream);
                (span, SpanKind::Internal, name, links)
            }
            Share::Deduplicated => return,
        };
        let url = e.url;
        let mut attributes = vec![
            KeyValue::new("http.request.method", e.method.to_string()),
            KeyValue::new("url.path", url.path().to_owned()),
            KeyValue::new("fanout.upstream", e.upstream.to_owned()),
            KeyValue::new("fanout.field", e.field.to_owned()),
        ];
        if let Some(host) = url.host_str() {
            attributes.push(KeyValue::new("server.address", host.to_owned()));
        }
        if let Some(port) = url.port_or_known_default() {
            attributes.push(KeyValue::new("server.port", i64::from(port)));
        }
        if let Some(status) = e.status {
            attributes.push(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
        }
        if let Some(b) = e.batch {
            attributes.push(KeyValue::new("fanout.batch.size", b.size as i64));
        }
        if e.attempts > 1 {
            let resent = i64::from(e.attempts - 1);
            attributes.push(KeyValue::new("http.request.resend_count", resent));
        }
        if matches!(e.share, Share::Coalesced(_)) {
            attributes.push(KeyValue::new("fanout.coalesced", true));
        }
        let status = match e.error {
            Some(err) => {
                attributes.push(KeyValue::new("error.type", err.code()));
                Status::error(FieldError::code(err))
            }
            None => Status::Unset,
        };
        let end = SystemTime::now();
        submit(
            exporter,
            span_data(
                exporter,
                &span,
                kind,
                name,
                end - e.duration,
                end,
                attributes,
                links,
                status,
            ),
        );
    }

    fn request(&self, e: &RequestEvent<'_>) {
        let Some(exporter) = EXPORTER.get() else {
            return;
        };
        let r: &Request = e.request;
        let Some(span) = r.trace.as_ref().filter(|t| t.exported) else {
            return;
        };
        let mut attributes = vec![
            KeyValue::new("http.request.method", r.method.to_string()),
            KeyValue::new("url.path", r.path.clone()),
            KeyValue::new("url.scheme", "http"),
            KeyValue::new("http.route", r.route),
            KeyValue::new("http.response.status_code", i64::from(e.status)),
            KeyValue::new("fanout.request_id", r.id.clone()),
            KeyValue::new("fanout.upstream_calls", e.upstream_calls as i64),
        ];
        if let Some(client) = r.client {
            attributes.push(KeyValue::new("client.address", client.to_string()));
        }
        let names = e.operation_names();
        let ty = e.operation_type();
        if let Some(n) = &names {
            attributes.push(KeyValue::new("graphql.operation.name", n.clone()));
        }
        if let Some(t) = &ty {
            attributes.push(KeyValue::new("graphql.operation.type", t.clone()));
        }
        if !e.graphql.codes.is_empty() {
            let codes: Vec<opentelemetry::StringValue> =
                e.graphql.codes.iter().map(|c| c.clone().into()).collect();
            attributes.push(KeyValue::new(
                "fanout.error_codes",
                Value::Array(codes.into()),
            ));
        }
        let status = if e.status >= 500 {
            attributes.push(KeyValue::new("error.type", e.status.to_string()));
            Status::error(e.status.to_string())
        } else {
            Status::Unset
        };
        // The GraphQL convention's name when an operation ran, else HTTP's.
        let name = match (ty, names) {
            (Some(t), Some(n)) => format!("{t} {n}"),
            (Some(t), None) => t,
            _ => format!("{} {}", r.method, r.route),
        };
        let end = SystemTime::now();
        let data = span_data(
            exporter,
            span,
            SpanKind::Server,
            name,
            end - e.duration,
            end,
            attributes,
            Vec::new(),
            status,
        );
        submit(exporter, data);
    }
}

#[allow(clippy::too_many_arguments, reason = "one field of SpanData each")]
fn span_data(
    exporter: &Exporter,
    span: &TraceCtx,
    kind: SpanKind,
    name: String,
    start_time: SystemTime,
    end_time: SystemTime,
    attributes: Vec<KeyValue>,
    links: Vec<Link>,
    status: Status,
) -> SpanData {
    let (parent_span_id, parent_span_is_remote) = match &span.parent {
        Some(p) => (p.span_id(), p.is_remote()),
        None => (opentelemetry::trace::SpanId::INVALID, false),
    };
    let mut span_links = SpanLinks::default();
    span_links.links = links;
    SpanData {
        span_context: span.context.clone(),
        parent_span_id,
        parent_span_is_remote,
        span_kind: kind,
        name: Cow::Owned(name),
        start_time,
        end_time,
        attributes,
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: span_links,
        status,
        instrumentation_scope: exporter.scope.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn traces_are_off_without_an_endpoint() {
        assert_eq!(Config::from_env(env(&[])), Ok(None));
        let off = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
            ("OTEL_SDK_DISABLED", "true"),
        ];
        assert_eq!(Config::from_env(env(&off)), Ok(None));
        assert_eq!(
            Config::from_env(env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", " ")])),
            Ok(None)
        );
    }

    #[test]
    fn protocol_and_service_name_come_from_the_standard_variables() {
        let on = [(
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "http://c:4318/v1/traces",
        )];
        assert_eq!(
            Config::from_env(env(&on)),
            Ok(Some(Config {
                protocol: Protocol::HttpProtobuf,
                service_name: "fanout".into()
            }))
        );
        let grpc = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4317"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_SERVICE_NAME", "edge-gateway"),
        ];
        assert_eq!(
            Config::from_env(env(&grpc)),
            Ok(Some(Config {
                protocol: Protocol::Grpc,
                service_name: "edge-gateway".into()
            }))
        );
        let json = [
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/json"),
        ];
        assert!(Config::from_env(env(&json)).is_err());
    }

    #[test]
    fn without_export_the_clients_context_is_passed_on_unchanged() {
        let mut h = HeaderMap::new();
        let tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        h.insert("traceparent", HeaderValue::from_static(tp));
        h.insert("tracestate", HeaderValue::from_static("vendor=1"));
        let req = server(&h, true).expect("a valid traceparent");
        assert!(!req.exported);
        let call = client(Some(&req)).unwrap();
        let mut out = HeaderMap::new();
        inject(&call, &mut out);
        assert_eq!(out["traceparent"], tp);
        assert_eq!(out["tracestate"], "vendor=1");
        // No traceparent, or a malformed one: nothing to pass on.
        assert!(server(&HeaderMap::new(), true).is_none());
        h.insert("traceparent", HeaderValue::from_static("00-xyz-01"));
        assert!(server(&h, true).is_none());
    }
}
