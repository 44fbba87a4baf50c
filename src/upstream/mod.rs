//! Upstream calls: templated requests, one shared HTTP client, deduplication and batching.
//!
//! [`render`] turns a field's `@rest` binding into a concrete [`CallSpec`]; [`Calls`] sends
//! it, making identical GETs of one client request only once; [`batch`] turns many keyed
//! lookups into few calls, each batch sent when its last producer has answered.

pub mod batch;
pub mod resilience;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::{
    FutureExt,
    future::{BoxFuture, Shared, WeakShared},
};
use http::{HeaderMap, HeaderValue, header::CONTENT_TYPE};
use reqwest::Method;
use serde_json::Value as Json;
use url::Url;

use crate::{
    error::{ErrorKind, FieldError},
    observe::{self, CallEvent, Operation, Share, otel::TraceCtx},
    sdl::{HeaderRule, RestBinding, Upstream, template::Scope},
};
use resilience::Runtime;

/// The longest URL an HTTP request can carry here (the `http` crate's limit).
const MAX_URL_BYTES: usize = 65_534;

/// The most of an upstream's error body kept for debug errors.
const DETAIL_BYTES: usize = 300;

/// One concrete upstream request.
#[derive(Clone)]
pub struct CallSpec {
    pub up: Arc<Runtime>,
    pub method: Method,
    pub url: Url,
    pub headers: HeaderMap,
    pub body: Option<Json>,
    /// The field it serves, as `Type.field`.
    pub field: Arc<str>,
    /// When Fanout stops waiting; sent as [`DEADLINE_HEADER`]. Not part of the dedup key.
    pub deadline: Option<tokio::time::Instant>,
}

impl std::fmt::Debug for CallSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {} ({})", self.method, self.url, self.up.name)
    }
}

impl CallSpec {
    /// Identical GETs share this key: method, URL and every header sent but the request id.
    pub(crate) fn dedup_key(&self) -> String {
        let mut headers: Vec<(&str, &[u8])> = self
            .headers
            .iter()
            // The request id differs per client request but asks nothing different.
            .filter(|(k, _)| **k != crate::http::edge::REQUEST_ID)
            .map(|(k, v)| (k.as_str(), v.as_bytes()))
            .collect();
        headers.sort_unstable();
        let url = self.url.as_str();
        let mut key = String::with_capacity(url.len() + 16);
        key.push_str(self.method.as_str());
        key.push(' ');
        key.push_str(url);
        for (name, value) in headers {
            // Names cannot hold `:` or a line break, values cannot hold a line break.
            key.push('\n');
            key.push_str(name);
            key.push(':');
            key.push_str(&String::from_utf8_lossy(value));
        }
        key
    }
}

/// The operation an upstream call serves: its request, its trace, and its `x-fanout-trace`
/// record if the client asked for one.
pub type Trace = Arc<Operation>;

/// Builds the request for one field. `Ok(None)` when a path expression is null or absent:
/// there is nothing to fetch and the field is null.
pub fn render(
    up: &Upstream,
    rt: &Arc<Runtime>,
    rest: &RestBinding,
    scope: Scope<'_>,
    client: &HeaderMap,
) -> Result<Option<CallSpec>, FieldError> {
    let Some(path) = rest.path.render_path(scope)? else {
        return Ok(None);
    };
    let mut query = Vec::new();
    for q in &rest.query {
        match q.value.render_json(scope) {
            Json::Null => {}
            Json::Array(items) => {
                let items = items.iter().filter(|i| !i.is_null());
                match &q.join {
                    Some(sep) => query.push(joined_param(&q.name, items, sep)),
                    None => query.extend(items.map(|i| param(&q.name, i))),
                }
            }
            v => query.push(param(&q.name, &v)),
        }
    }
    let query = query.join("&");
    let len = up.base_url.len() + path.len() + query.len() + usize::from(!query.is_empty());
    if len > MAX_URL_BYTES {
        return Err(FieldError::bad_input(
            "an argument makes the upstream URL longer than 64 KiB",
        ));
    }
    let url = rt.base.url(&path, &query).map_err(|e| {
        FieldError::bad_input("the request URL could not be built").with_detail(e.to_string())
    })?;
    let mut headers = HeaderMap::new();
    for rule in up.headers.iter().chain(&rest.headers) {
        match rule {
            HeaderRule::Value { name, value } => {
                let text = value.render_text(scope);
                let v = HeaderValue::from_str(&text).map_err(|_| {
                    FieldError::bad_input(format!("a value for header `{name}` is not allowed"))
                })?;
                headers.insert(name.clone(), v);
            }
            HeaderRule::From { name, from } => {
                if let Some(v) = client.get(from) {
                    headers.insert(name.clone(), v.clone());
                }
            }
        }
    }
    if let Some(id) = client.get(&crate::http::edge::REQUEST_ID) {
        headers.insert(crate::http::edge::REQUEST_ID, id.clone());
    }
    let body = rest.body.as_ref().map(|b| b.render_json(scope));
    if body.is_some() {
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    Ok(Some(CallSpec {
        up: rt.clone(),
        method: rest.method.clone(),
        url,
        headers,
        body,
        field: Arc::from(rest.field.as_str()),
        deadline: None,
    }))
}

/// An upstream's `baseUrl`, parsed once.
#[derive(Debug)]
pub struct BaseUrl {
    text: String,
    parsed: Option<Url>,
    /// The base path (`/api`), or empty for none; the rendered path goes after it.
    path: String,
}

impl BaseUrl {
    /// `text` as checked by the schema loader: http(s), no query or fragment, no trailing `/`.
    pub fn new(text: &str) -> Self {
        let parsed = Url::parse(text).ok();
        let path = match &parsed {
            Some(u) if u.path() != "/" => u.path().to_owned(),
            _ => String::new(),
        };
        BaseUrl {
            text: text.to_owned(),
            parsed,
            path,
        }
    }

    /// The URL of `base + path + ?query`, as `Url::parse` of that text gives it. Parsing the
    /// scheme and host once per upstream instead of once per call saves most of the work.
    pub fn url(&self, path: &str, query: &str) -> Result<Url, url::ParseError> {
        match &self.parsed {
            // `?` or `#` in a path template would start a query or fragment: parse it all.
            Some(base) if !path.contains(['?', '#']) => {
                let mut url = base.clone();
                url.set_path(&format!("{}{path}", self.path));
                if !query.is_empty() {
                    url.set_query(Some(query));
                }
                Ok(url)
            }
            _ => {
                let mut text = format!("{}{path}", self.text);
                if !query.is_empty() {
                    text.push(if text.contains('?') { '&' } else { '?' });
                    text.push_str(query);
                }
                Url::parse(&text)
            }
        }
    }
}

/// `name=value`, both form-encoded.
fn param(name: &str, value: &Json) -> String {
    let mut text = String::new();
    crate::sdl::template::push_text(&mut text, value);
    format!("{}={}", encode(name), encode(&text))
}

/// `name=a,b,c`: each value form-encoded (a `,` inside a value becomes `%2C`), joined by the
/// separator, which stays readable when it is a `,`.
pub fn joined_param<'a>(name: &str, values: impl Iterator<Item = &'a Json>, sep: &str) -> String {
    let sep = if sep == "," {
        ",".to_owned()
    } else {
        encode(sep)
    };
    let values: Vec<String> = values
        .map(|v| {
            let mut text = String::new();
            crate::sdl::template::push_text(&mut text, v);
            encode(&text)
        })
        .collect();
    format!("{}={}", encode(name), values.join(&sep))
}

fn encode(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

pub(crate) type CallFuture = BoxFuture<'static, Result<Arc<Json>, FieldError>>;

/// A GET of this client request: still running (weak, so that a call nobody waits for any
/// more is dropped with its connection), or answered.
enum Get {
    InFlight(WeakShared<CallFuture>),
    Done(Result<Arc<Json>, FieldError>),
}

/// A GET in flight that other client requests may join (`coalesce`), and its span.
pub(crate) struct InFlight {
    call: WeakShared<CallFuture>,
    span: Option<TraceCtx>,
}

/// The upstream calls of one operation.
pub struct Calls {
    gets: Mutex<crate::FastHashMap<String, Get>>,
    pub trace: Trace,
}

impl Calls {
    pub fn new(trace: Trace) -> Self {
        Calls {
            gets: Mutex::default(),
            trace,
        }
    }

    /// Sends `spec`, or joins an identical GET already made for this client request (or,
    /// when its upstream coalesces, one in flight for any request).
    pub async fn call(&self, spec: CallSpec) -> Result<Arc<Json>, FieldError> {
        if spec.method != Method::GET {
            let span = observe::otel::client(self.trace.request.trace.as_ref());
            return send(spec, self.trace.clone(), None, span).await;
        }
        let key = spec.dedup_key();
        let (shared, share) = {
            let mut gets = self.gets.lock().expect("dedup lock poisoned");
            let mine = match gets.get(&key) {
                Some(Get::Done(result)) => {
                    let result = result.clone();
                    drop(gets);
                    joined(
                        &self.trace,
                        &spec,
                        None,
                        Share::Deduplicated,
                        Instant::now(),
                        &result,
                    );
                    return result;
                }
                Some(Get::InFlight(weak)) => weak.upgrade(),
                None => None,
            };
            let (shared, share) = match mine {
                Some(shared) => (shared, Some(Share::Deduplicated)),
                None => coalesced(&spec, &key, &self.trace, None),
            };
            if let Some(weak) = shared.downgrade() {
                gets.insert(key.clone(), Get::InFlight(weak));
            }
            (shared, share)
        };
        let started = Instant::now();
        let result = shared.await;
        if let Some(share) = share {
            joined(&self.trace, &spec, None, share, started, &result);
        }
        let mut gets = self.gets.lock().expect("dedup lock poisoned");
        gets.insert(key, Get::Done(result.clone()));
        result
    }
}

/// A call other client requests may join while it is in flight, when its upstream
/// coalesces: the identical one already in flight, or a new one they can find. The call,
/// and how this request shares it when it joined one.
fn coalesced(
    spec: &CallSpec,
    key: &str,
    trace: &Trace,
    batch: Option<BatchCall>,
) -> (Shared<CallFuture>, Option<Share>) {
    let span = observe::otel::client(trace.request.trace.as_ref());
    let start = |span: Option<TraceCtx>| -> Shared<CallFuture> {
        send(spec.clone(), trace.clone(), batch, span)
            .boxed()
            .shared()
    };
    let Some(global) = &spec.up.coalesce else {
        return (start(span), None);
    };
    let mut global = global.lock().expect("coalesce lock poisoned");
    if let Some(theirs) = global.get(key)
        && let Some(call) = theirs.call.upgrade()
    {
        return (call, Some(Share::Coalesced(theirs.span.clone())));
    }
    let fut = start(span.clone());
    if let Some(weak) = fut.downgrade() {
        global.retain(|_, w| w.call.upgrade().is_some());
        global.insert(key.to_owned(), InFlight { call: weak, span });
    }
    (fut, None)
}

/// Sends a batch chunk; a GET to an upstream that coalesces is shared with identical chunks
/// of other client requests in flight at the same time.
pub(crate) async fn shared_call(
    spec: CallSpec,
    trace: Trace,
    batch: Option<BatchCall>,
) -> Result<Arc<Json>, FieldError> {
    if spec.method != Method::GET || spec.up.coalesce.is_none() {
        let span = observe::otel::client(trace.request.trace.as_ref());
        return send(spec, trace, batch, span).await;
    }
    let key = spec.dedup_key();
    let size = batch.as_ref().map(|b| b.size);
    let (shared, share) = coalesced(&spec, &key, &trace, batch);
    let started = Instant::now();
    let result = shared.await;
    if let Some(share) = share {
        joined(&trace, &spec, size, share, started, &result);
    }
    result
}

/// The event of a request's use of an identical call made for it or another request.
fn joined(
    trace: &Trace,
    spec: &CallSpec,
    batch_size: Option<usize>,
    share: Share,
    started: Instant,
    result: &Result<Arc<Json>, FieldError>,
) {
    let batch = batch_size.map(|size| BatchCall {
        size,
        field: spec.field.clone(),
        waited: Duration::ZERO,
    });
    observe::call_done(&CallEvent {
        op: trace,
        upstream: &spec.up.name,
        method: &spec.method,
        url: &spec.url,
        field: &spec.field,
        batch: batch.as_ref(),
        share,
        attempts: 0,
        started,
        duration: started.elapsed(),
        status: None,
        error: result.as_ref().err(),
        span: None,
    });
}

/// What the trace and metrics say about a batch call.
pub struct BatchCall {
    pub size: usize,
    /// The field it serves, as `Type.field`.
    pub field: Arc<str>,
    /// How long its keys waited after their last producer answered.
    pub waited: std::time::Duration,
}

/// The request header that tells an upstream how many milliseconds are left before Fanout
/// stops waiting for it, so it can stop early too.
pub const DEADLINE_HEADER: &str = "x-fanout-deadline-ms";

/// Sends one request, with retries and the breaker of its upstream, and reads its JSON.
/// `span` is the call's trace context, sent as its `traceparent`. Errors name the upstream;
/// URLs and bodies go only into `detail`, which clients see with debug errors on.
pub async fn send(
    mut spec: CallSpec,
    trace: Trace,
    batch: Option<BatchCall>,
    span: Option<TraceCtx>,
) -> Result<Arc<Json>, FieldError> {
    let up = spec.up.clone();
    if let Some(span) = &span {
        observe::otel::inject(span, &mut spec.headers);
    }
    let start = Instant::now();
    let mut attempts = 0;
    up.earn_retry();
    let mut last: Option<Attempt> = None;
    let (status, result) = loop {
        if let Err(open) = up.admit() {
            // The breaker opened: report the last real answer if there was one.
            break last.unwrap_or((None, Err(open)));
        }
        attempts += 1;
        let (status, result) = match spec.deadline {
            Some(deadline) => match tokio::time::timeout_at(deadline, attempt(&spec)).await {
                Ok(r) => r,
                // Not answering in time counts against the upstream like failing does.
                Err(_) => {
                    let waited = deadline.saturating_duration_since(start.into());
                    let err = FieldError::new(ErrorKind::Timeout(waited), Some(&up.name));
                    (None, Err(err))
                }
            },
            None => attempt(&spec).await,
        };
        up.record(result.as_ref().is_err_and(resilience::is_failure));
        let retry = spec.method == Method::GET
            && attempts <= up.retries
            && result.as_ref().is_err_and(resilience::is_retryable)
            && up.spend_retry();
        if !retry {
            break (status, result);
        }
        last = Some((status, result));
        tokio::time::sleep(resilience::backoff(attempts)).await;
    };
    observe::call_done(&CallEvent {
        op: &trace,
        upstream: &up.name,
        method: &spec.method,
        url: &spec.url,
        field: &spec.field,
        batch: batch.as_ref(),
        share: Share::Sent,
        attempts,
        started: start,
        duration: start.elapsed(),
        status,
        error: result.as_ref().err(),
        span,
    });
    result
}

/// One try: the status, if one came back, and the JSON body or the error.
type Attempt = (Option<u16>, Result<Arc<Json>, FieldError>);

async fn attempt(spec: &CallSpec) -> Attempt {
    let up = &spec.up;
    // Held until the body is read: a connection is busy that long.
    let _permit = up
        .connections
        .acquire()
        .await
        .expect("an upstream's semaphore is never closed");
    let mut req = up
        .http
        .request(spec.method.clone(), spec.url.clone())
        .headers(spec.headers.clone());
    if let Some(deadline) = spec.deadline {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        req = req.header(DEADLINE_HEADER, left.as_millis().to_string());
    }
    if let Some(body) = &spec.body {
        req = req.body(serde_json::to_vec(body).expect("JSON values always serialize"));
    }
    let mut resp = match req.send().await {
        Ok(r) => r,
        Err(e) => return (None, Err(transport_error(&up.name, &e))),
    };
    let code = resp.status().as_u16();
    let too_large = || {
        FieldError::bad_response(
            Some(&up.name),
            format!("the body is larger than {} bytes", up.max_response_bytes),
        )
    };
    if resp
        .content_length()
        .is_some_and(|n| n > up.max_response_bytes as u64)
    {
        return (Some(code), Err(too_large()));
    }
    let mut bytes = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(chunk)) => {
                if bytes.len() + chunk.len() > up.max_response_bytes {
                    return (Some(code), Err(too_large()));
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(None) => break,
            Err(e) => return (Some(code), Err(transport_error(&up.name, &e))),
        }
    }
    if !(200..300).contains(&code) {
        let snippet = String::from_utf8_lossy(&bytes[..bytes.len().min(DETAIL_BYTES)]).into_owned();
        let err = FieldError::new(ErrorKind::Http(code), Some(&up.name))
            .with_detail(format!("{} {}: {snippet}", spec.method, spec.url));
        return (Some(code), Err(err));
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return (Some(code), Ok(Arc::new(Json::Null)));
    }
    if json_values_over(&bytes, up.max_response_nodes) {
        let why = format!(
            "the body holds more than {} JSON values",
            up.max_response_nodes
        );
        return (
            Some(code),
            Err(FieldError::bad_response(Some(&up.name), why)),
        );
    }
    let parsed = serde_json::from_slice::<Json>(&bytes)
        .map(Arc::new)
        .map_err(|e| {
            FieldError::bad_response(Some(&up.name), "the body is not JSON")
                .with_detail(format!("{} {}: {e}", spec.method, spec.url))
        });
    (Some(code), parsed)
}

/// Whether the JSON text `bytes` holds more than `max` values. Counted before parsing, from
/// the text alone: each `[`, `{` and `,` outside strings starts at most one more value, so the
/// count is exact for non-empty containers and over by one for each empty one. A byte scan,
/// since no JSON crate bounds what a document expands into.
fn json_values_over(bytes: &[u8], max: usize) -> bool {
    let (mut values, mut in_string, mut escaped) = (1usize, false, false);
    for &b in bytes {
        if in_string {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' | b',' => {
                values += 1;
                if values > max {
                    return true;
                }
            }
            _ => {}
        }
    }
    false
}

fn transport_error(up: &str, e: &reqwest::Error) -> FieldError {
    let why = if e.is_connect() {
        "could not connect"
    } else if e.is_body() || e.is_decode() {
        "the connection closed before the response was complete"
    } else {
        "the request failed"
    };
    FieldError::new(ErrorKind::Unavailable(why), Some(up)).with_detail(format!("{e:?}"))
}

#[cfg(test)]
mod tests {
    use super::{BaseUrl, Url, json_values_over};

    #[test]
    fn json_values_are_counted_outside_strings() {
        let over = |text: &str, max| json_values_over(text.as_bytes(), max);
        // An array and three numbers; an object and two values.
        assert!(!over("[1,2,3]", 4) && over("[1,2,3]", 3));
        assert!(!over(r#"{"a":1,"b":[true]}"#, 4) && over(r#"{"a":1,"b":[true]}"#, 3));
        // Brackets and commas in strings, escaped quotes included, are text.
        assert!(!over(r#"["a,[{b", "c\",{d"]"#, 3));
        assert!(!over("\"just a string\"", 1));
        // Empty containers count one too many, never too few.
        assert!(over("[{},{}]", 3));
    }

    /// The fast way gives what parsing the whole text gives, for awkward paths and queries.
    #[test]
    fn base_url_builds_what_parsing_the_text_builds() {
        let bases = [
            "http://127.0.0.1:4101",
            "https://api.example.com/v1",
            "http://user:pw@example.com:8080/a%20b/c",
            "http://[::1]:9000/base",
            "http://xn--bcher-kva.example",
        ];
        let paths = [
            "",
            "/",
            "/users/1",
            "/users/%2F..%2F/x",
            "/a b/ü/%zz/[]|^`{}",
            "/back\\slash",
            "//double",
            "/with?q=1&r=2",
            "/frag#x",
            "/tab\tnew\nline",
        ];
        let queries = ["", "a=1&b=%20", "x=[1]&y=ü"];
        for base in bases {
            let b = BaseUrl::new(base);
            for path in paths {
                for query in queries {
                    let mut text = format!("{base}{path}");
                    if !query.is_empty() {
                        text.push(if text.contains('?') { '&' } else { '?' });
                        text.push_str(query);
                    }
                    let want = Url::parse(&text).map(String::from);
                    let got = b.url(path, query).map(String::from);
                    assert_eq!(got, want, "base {base:?} path {path:?} query {query:?}");
                }
            }
        }
    }
}
