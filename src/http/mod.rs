//! The HTTP surface: `/graphql` (POST and GET, GraphiQL for browsers), `/healthz`, `/readyz`.

mod body_deadline;
pub mod edge;
pub mod graphiql;

use std::sync::Arc;

use async_graphql::{
    Request, Response as GqlResponse, Value as ConstValue, parser::types::OperationType,
};
use axum::{
    Router,
    body::Bytes,
    extract::{RawQuery, State},
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{Html, IntoResponse, Response},
    routing::get,
};
use serde_json::json;

use crate::{gateway::Gateway, reload::Live};

/// The request header that asks for the list of upstream calls in `extensions.fanout`.
pub const TRACE_HEADER: &str = "x-fanout-trace";

/// The request header that asks for the plan of upstream calls instead of making them
/// (`extensions.fanoutPlan`; see [`crate::call_plan`]).
pub const PLAN_HEADER: &str = "x-fanout-plan";

/// Options of the HTTP layer.
#[derive(Clone, Debug)]
pub struct HttpOptions {
    /// Larger request bodies are refused with 413.
    pub max_body_bytes: usize,
    /// Refuse POSTs whose Content-Type is not JSON (cross-site request forgery).
    pub csrf_prevention: bool,
    /// Most requests in one JSON-array POST; 0 turns batching off (the default).
    pub max_batch: usize,
    /// CORS allow-list; empty means no CORS headers at all.
    pub cors_origins: Vec<String>,
    pub cors_credentials: bool,
    /// Where GraphiQL's scripts and styles are loaded from.
    pub graphiql_assets: String,
    /// A directory holding GraphiQL's files ([`graphiql::FILES`]): when set, Fanout serves
    /// it at `/graphql/assets/` and the page loads from there, not from `graphiql_assets`.
    pub graphiql_dir: Option<std::path::PathBuf>,
    /// Proxies whose `X-Forwarded-*` headers are believed (see [`edge::client_info`]).
    pub trusted_proxies: Vec<edge::IpNet>,
    /// A request body must have arrived whole this long after its headers, or the request is
    /// answered 408 (and the connection closed); `None`: no limit.
    pub body_read_timeout: Option<std::time::Duration>,
    /// Answer [`PLAN_HEADER`] requests with the plan (the development profile).
    pub allow_plan: bool,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            max_body_bytes: 1 << 20,
            csrf_prevention: true,
            max_batch: 0,
            cors_origins: Vec::new(),
            cors_credentials: false,
            graphiql_assets: graphiql::DEFAULT_ASSETS.to_owned(),
            graphiql_dir: None,
            trusted_proxies: Vec::new(),
            body_read_timeout: Some(std::time::Duration::from_secs(10)),
            allow_plan: false,
        }
    }
}

#[derive(Clone)]
struct AppState {
    live: Arc<Live>,
    opts: Arc<HttpOptions>,
}

/// Fanout's routes for one fixed schema, ready to serve or to nest in another axum app.
pub fn router(gw: Arc<Gateway>, opts: HttpOptions) -> Router {
    live_router(Live::new(gw), opts)
}

/// Fanout's routes over a schema that can be reloaded (see [`crate::reload`]).
///
/// Panics when the CORS settings are contradictory; [`edge::cors`] checks them first.
pub fn live_router(live: Arc<Live>, opts: HttpOptions) -> Router {
    let cors = edge::cors(&opts.cors_origins, opts.cors_credentials).expect("valid CORS settings");
    let router = Router::new()
        .route("/graphql", get(graphql_get).post(graphql_post))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics));
    // `ServeDir` refuses paths that would leave the directory (`..`, absolute) with a 404.
    let router = match &opts.graphiql_dir {
        Some(dir) => router.nest_service(
            graphiql::ASSETS_ROUTE,
            tower_http::services::ServeDir::new(dir),
        ),
        None => router,
    };
    // Inside the request id's layer, so that a 408 carries the id too.
    let router = match opts.body_read_timeout {
        Some(limit) => router.layer(axum::middleware::from_fn_with_state(
            limit,
            body_deadline::layer,
        )),
        None => router,
    };
    let router = router
        .layer(axum::extract::DefaultBodyLimit::max(opts.max_body_bytes))
        .layer(axum::middleware::from_fn_with_state(
            Arc::from(opts.trusted_proxies.as_slice()),
            edge::request_id,
        ))
        .with_state(AppState {
            live,
            opts: Arc::new(opts),
        });
    match cors {
        Some(layer) => router.layer(layer),
        None => router,
    }
}

/// 200 while serving; 503 once draining (SIGTERM), so load balancers stop sending traffic.
async fn readyz(State(st): State<AppState>) -> Response {
    let version = st.live.version();
    if st.live.is_draining() {
        let body = json!({ "status": "draining", "schemaVersion": version });
        return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
    }
    let body = json!({ "status": "ready", "schemaVersion": version });
    axum::Json(body).into_response()
}

async fn metrics(State(st): State<AppState>, headers: HeaderMap) -> Response {
    let (ok, refused) = st.live.reloads();
    let version = st.live.version();
    let text = format!(
        "# HELP fanout_schema_version Version of the schema serving new requests (1 at start-up).
# TYPE fanout_schema_version gauge
fanout_schema_version {version}
# HELP fanout_schema_reloads_total Schema reloads since start-up, by result.
# TYPE fanout_schema_reloads_total counter
fanout_schema_reloads_total{{result=\"ok\"}} {ok}
fanout_schema_reloads_total{{result=\"refused\"}} {refused}
"
    );
    let mut text = text;
    let gw = st.live.get();
    let breakers: Vec<_> = gw
        .upstreams
        .iter()
        .map(|up| (&*up.name, up.breaker_state()))
        .collect();
    crate::metrics::METRICS.render(&mut text, &breakers);
    if wants_openmetrics(&headers) {
        let content_type = "application/openmetrics-text; version=1.0.0; charset=utf-8";
        let text = crate::metrics::to_openmetrics(&text);
        return ([(header::CONTENT_TYPE, content_type)], text).into_response();
    }
    let content_type = [(header::CONTENT_TYPE, "text/plain; version=0.0.4")];
    (content_type, text).into_response()
}

/// Whether the scraper names OpenMetrics, and likes it at least as much as the text format
/// (Prometheus asks for both; `*/*` alone gets the text format).
fn wants_openmetrics(headers: &HeaderMap) -> bool {
    let ranges = media_ranges(&accept(headers));
    let om = acceptance(&ranges, "application", "openmetrics-text").filter(|(_, s, _)| *s == 2);
    let text = acceptance(&ranges, "text", "plain");
    om.is_some_and(|(q, _, _)| text.is_none_or(|(t, _, _)| q >= t))
}

/// The media types Fanout answers a GraphQL request with; always UTF-8.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Media {
    /// `application/json`: request errors are 200 (the legacy media type).
    Json,
    /// `application/graphql-response+json`: a response without `data` is 400.
    GraphqlResponse,
}

impl Media {
    fn content_type(self) -> &'static str {
        match self {
            Media::Json => "application/json; charset=utf-8",
            Media::GraphqlResponse => "application/graphql-response+json; charset=utf-8",
        }
    }
}

/// One media range of an `Accept` header, lower-cased.
struct MediaRange {
    ty: String,
    subtype: String,
    q: f32,
    /// False when the range names a charset other than UTF-8, the only one Fanout writes.
    utf8: bool,
}

/// The media ranges of an `Accept` header, in order. Ranges that do not parse are skipped.
fn media_ranges(accept: &str) -> Vec<MediaRange> {
    let accept = accept.to_ascii_lowercase();
    let mut ranges = Vec::new();
    'ranges: for item in accept.split(',') {
        let mut parts = item.split(';').map(str::trim);
        let Some((ty, subtype)) = parts.next().and_then(|t| t.split_once('/')) else {
            continue;
        };
        if ty.is_empty() || subtype.is_empty() || (ty == "*" && subtype != "*") {
            continue;
        }
        let mut range = MediaRange {
            ty: ty.to_owned(),
            subtype: subtype.to_owned(),
            q: 1.0,
            utf8: true,
        };
        for param in parts {
            let Some((name, value)) = param.split_once('=') else {
                continue;
            };
            let value = value.trim().trim_matches('"');
            match name.trim() {
                "q" => match value.parse::<f32>() {
                    Ok(q) if (0.0..=1.0).contains(&q) => range.q = q,
                    _ => continue 'ranges,
                },
                "charset" => range.utf8 = matches!(value, "utf-8" | "utf8"),
                _ => {}
            }
        }
        ranges.push(range);
    }
    ranges
}

/// How well `ranges` accept `ty/subtype`: the quality of the most specific matching range,
/// its specificity (2 exact, 1 `type/*`, 0 `*/*`) and its position. `None` if none matches
/// or the match has quality 0.
fn acceptance(ranges: &[MediaRange], ty: &str, subtype: &str) -> Option<(f32, u8, usize)> {
    let mut best: Option<(f32, u8, usize)> = None;
    for (pos, r) in ranges.iter().enumerate() {
        let specificity = match (r.ty.as_str(), r.subtype.as_str()) {
            (t, s) if t == ty && s == subtype => 2,
            (t, "*") if t == ty => 1,
            ("*", "*") => 0,
            _ => continue,
        };
        if best.is_none_or(|(_, s, _)| specificity > s) {
            best = Some((if r.utf8 { r.q } else { 0.0 }, specificity, pos));
        }
    }
    best.filter(|(q, _, _)| *q > 0.0)
}

/// The response media type for a GraphQL request, from its `Accept` header; `None` when the
/// client accepts neither JSON type (406).
///
/// The highest quality wins; on a tie, the more specific range, then the one listed first,
/// then `application/json`. So `*/*` and `application/*` get `application/json`, and so
/// does a request without `Accept` (or an empty one): the graphql-http audit expects that
/// (80D8), and so do the legacy clients that send none. The spec's post-2025 default would
/// be `application/graphql-response+json`; clients that want it ask for it.
fn negotiate(headers: &HeaderMap) -> Option<Media> {
    let accept = accept(headers);
    if accept.trim().is_empty() {
        return Some(Media::Json);
    }
    let ranges = media_ranges(&accept);
    let json = acceptance(&ranges, "application", "json");
    let modern = acceptance(&ranges, "application", "graphql-response+json");
    match (json, modern) {
        (None, None) => None,
        (Some(_), None) => Some(Media::Json),
        (None, Some(_)) => Some(Media::GraphqlResponse),
        (Some((jq, js, jp)), Some((mq, ms, mp))) => {
            let modern_wins = mq > jq || (mq == jq && (ms > js || (ms == js && mp < jp)));
            Some(if modern_wins {
                Media::GraphqlResponse
            } else {
                Media::Json
            })
        }
    }
}

/// Whether the client names `text/html` (or `text/*`) as acceptable: a browser, for GraphiQL.
/// `*/*` alone does not count, so `curl` without a query gets a 400 that says what is missing.
fn accepts_html(headers: &HeaderMap) -> bool {
    acceptance(&media_ranges(&accept(headers)), "text", "html")
        .is_some_and(|(_, specificity, _)| specificity > 0)
}

/// The `Accept` list: several `Accept` lines make one list; a line that is not visible ASCII
/// is ignored. Empty when there is none.
fn accept(headers: &HeaderMap) -> String {
    let lines: Vec<&str> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    lines.join(",")
}

/// 406: the client accepts no media type Fanout answers GraphQL requests with. The spec
/// recommends this over answering in a type the client did not ask for.
fn not_acceptable() -> Response {
    request_error(
        Media::Json,
        StatusCode::NOT_ACCEPTABLE,
        "/graphql answers with `application/graphql-response+json` or `application/json`; \
         the Accept header allows neither",
    )
}

/// Whether a POST's `Content-Type` is `application/json` in UTF-8 (the charset may be
/// omitted, which means UTF-8).
fn is_json_utf8(headers: &HeaderMap) -> bool {
    let Some(content_type) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let mut parts = content_type.split(';').map(str::trim);
    if !parts
        .next()
        .is_some_and(|essence| essence.eq_ignore_ascii_case("application/json"))
    {
        return false;
    }
    parts.all(|param| match param.split_once('=') {
        Some((name, value)) if name.trim().eq_ignore_ascii_case("charset") => {
            let value = value.trim().trim_matches('"');
            value.eq_ignore_ascii_case("utf-8") || value.eq_ignore_ascii_case("utf8")
        }
        _ => true,
    })
}

async fn graphql_post(State(st): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let Some(media) = negotiate(&headers) else {
        return not_acceptable();
    };
    // CSRF prevention: a browser sends a cross-site "simple" request (text/plain, form,
    // multipart) without a preflight; only application/json forces one.
    if st.opts.csrf_prevention && !is_json_utf8(&headers) {
        return request_error(
            media,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "POST /graphql takes a JSON body with `Content-Type: application/json` (UTF-8)",
        );
    }
    // A compressed body could expand past the size limit once decoded; none is accepted.
    if headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"))
    {
        return request_error(
            media,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "compressed request bodies (Content-Encoding) are not accepted",
        );
    }
    match parse_post(&body, st.opts.max_batch) {
        Ok(Posted::One(request)) => execute(&st, *request, headers, media).await,
        Ok(Posted::Batch(requests)) => execute_batch(&st, requests, headers).await,
        Err(e) => request_error(media, StatusCode::BAD_REQUEST, &e),
    }
}

/// A batch runs its requests one after another, in order (so mutations keep their order),
/// and answers a JSON array of their responses.
async fn execute_batch(st: &AppState, requests: Vec<Request>, headers: HeaderMap) -> Response {
    let trace = wants_trace(&headers);
    let gw = st.live.get();
    let mut responses = Vec::with_capacity(requests.len());
    for request in requests {
        responses.push(run(&gw, request, headers.clone(), trace).await);
    }
    let bodies: Vec<Body<'_>> = responses.iter().map(Body::of).collect();
    let bytes = serde_json::to_vec(&bodies).expect("GraphQL values always serialize");
    with_headers(StatusCode::OK, Media::Json, bytes)
}

fn wants_trace(headers: &HeaderMap) -> bool {
    asks(headers, TRACE_HEADER)
}

fn asks(headers: &HeaderMap, header: &str) -> bool {
    headers
        .get(header)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| !matches!(v, "" | "0" | "false"))
}

/// The kind of a JSON value, for error messages.
fn kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// A GraphQL-over-HTTP POST body: a JSON object with `query` (a string, required),
/// `operationName` (a string), `variables` and `extensions` (objects); `null` means absent
/// and other members are ignored. Anything else is not a well-formed request (400), which
/// the engine never sees.
///
/// Batching is OFF on purpose: a JSON array of requests is refused with a 400 that says so.
/// One POST is one operation, so the request deadline, the upstream call budget, the trace
/// and the status code all describe a single operation.
fn parse_post(body: &[u8], max_batch: usize) -> Result<Posted, String> {
    use serde_json::Value as Json;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(
            "the body is empty: POST /graphql takes a JSON object with a `query` string".into(),
        );
    }
    let json: Json =
        serde_json::from_slice(body).map_err(|e| format!("the body is not valid JSON: {e}"))?;
    match json {
        Json::Array(_) if max_batch == 0 => Err("batched requests (a JSON array) are not \
             supported: send one JSON object with a `query` per POST"
            .into()),
        Json::Array(items) if items.is_empty() || items.len() > max_batch => Err(format!(
            "a batch holds 1 to {max_batch} requests, not {}",
            items.len()
        )),
        Json::Array(items) => items
            .into_iter()
            .enumerate()
            .map(|(i, item)| {
                parse_object(item).map_err(|e| format!("request {i} of the batch: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Posted::Batch),
        other => parse_object(other).map(|r| Posted::One(Box::new(r))),
    }
}

/// A POST body: one request, or (when batching is on) several.
enum Posted {
    One(Box<Request>),
    Batch(Vec<Request>),
}

fn parse_object(json: serde_json::Value) -> Result<Request, String> {
    use serde_json::Value as Json;
    let mut fields = match json {
        Json::Object(fields) => fields,
        other => {
            return Err(format!(
                "the body must be a JSON object with a `query` string, not {}",
                kind(&other)
            ));
        }
    };
    let query = match fields.remove("query") {
        Some(Json::String(query)) => query,
        None | Some(Json::Null) => return Err("the body has no `query` string".into()),
        Some(other) => return Err(format!("`query` must be a string, not {}", kind(&other))),
    };
    let operation_name = match fields.remove("operationName") {
        None | Some(Json::Null) => None,
        Some(Json::String(name)) => Some(name),
        Some(other) => {
            return Err(format!(
                "`operationName` must be a string, not {}",
                kind(&other)
            ));
        }
    };
    let object = |name: &str, value: Option<Json>| match value {
        None | Some(Json::Null) => Ok(None),
        Some(Json::Object(map)) => Ok(Some(map)),
        Some(other) => Err(format!("`{name}` must be an object, not {}", kind(&other))),
    };
    let variables = object("variables", fields.remove("variables"))?;
    let extensions = object("extensions", fields.remove("extensions"))?;
    build_request(query, operation_name, variables, extensions)
}

/// The engine's request. An empty `operationName` means none, as the spec says for GET.
fn build_request(
    query: String,
    operation_name: Option<String>,
    variables: Option<serde_json::Map<String, serde_json::Value>>,
    extensions: Option<serde_json::Map<String, serde_json::Value>>,
) -> Result<Request, String> {
    let mut request = Request::new(query);
    if let Some(name) = operation_name.filter(|n| !n.is_empty()) {
        request = request.operation_name(name);
    }
    if let Some(vars) = variables {
        request = request.variables(async_graphql::Variables::from_json(vars.into()));
    }
    for (name, value) in extensions.into_iter().flatten() {
        let value = ConstValue::from_json(value)
            .map_err(|e| format!("`extensions.{name}` is not a GraphQL value: {e}"))?;
        request.extensions.0.insert(name, value);
    }
    Ok(request)
}

async fn graphql_get(
    State(st): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let params = GetParams::parse(query.as_deref().unwrap_or_default());
    if params.query.is_none() && accepts_html(&headers) {
        let page = match st.opts.graphiql_dir {
            Some(_) => graphiql::local_page(),
            None => graphiql::page(&st.opts.graphiql_assets),
        };
        let mut resp = Html(page).into_response();
        resp.headers_mut()
            .insert(header::VARY, HeaderValue::from_static("accept"));
        return resp;
    }
    let Some(media) = negotiate(&headers) else {
        return not_acceptable();
    };
    let request = match params.into_request() {
        Ok(r) => r,
        Err(e) => return request_error(media, StatusCode::BAD_REQUEST, &e),
    };
    if is_mutation(&request, &st.live.get().options.limits) {
        let mut resp = request_error(
            media,
            StatusCode::METHOD_NOT_ALLOWED,
            "mutations must be sent with POST",
        );
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return resp;
    }
    execute(&st, request, headers, media).await
}

/// The parameters of a GraphQL-over-HTTP GET, form-encoded in the query string:
/// `query`, `operationName`, and `variables` and `extensions` as JSON.
#[derive(Default)]
struct GetParams {
    query: Option<String>,
    operation_name: Option<String>,
    variables: Option<String>,
    extensions: Option<String>,
}

impl GetParams {
    fn parse(query_string: &str) -> GetParams {
        let mut params = GetParams::default();
        for (k, v) in url::form_urlencoded::parse(query_string.as_bytes()) {
            let slot = match &*k {
                "query" => &mut params.query,
                "operationName" => &mut params.operation_name,
                "variables" => &mut params.variables,
                "extensions" => &mut params.extensions,
                _ => continue,
            };
            *slot = Some(v.into_owned());
        }
        params
    }

    fn into_request(self) -> Result<Request, String> {
        let Some(query) = self.query else {
            return Err("GET /graphql needs a `query` parameter".into());
        };
        let variables = json_object_param("variables", self.variables)?;
        let extensions = json_object_param("extensions", self.extensions)?;
        build_request(query, self.operation_name, variables, extensions)
    }
}

/// A GET parameter that holds a JSON object; empty or `null` mean absent.
fn json_object_param(
    name: &str,
    value: Option<String>,
) -> Result<Option<serde_json::Map<String, serde_json::Value>>, String> {
    let Some(text) = value.filter(|v| !v.trim().is_empty()) else {
        return Ok(None);
    };
    match serde_json::from_str(&text) {
        Ok(serde_json::Value::Object(map)) => Ok(Some(map)),
        Ok(serde_json::Value::Null) => Ok(None),
        Ok(other) => Err(format!(
            "`{name}` must be a JSON object, not {}",
            kind(&other)
        )),
        Err(e) => Err(format!("`{name}` is not JSON: {e}")),
    }
}

/// Whether the operation the request selects is a mutation. A query that the text checks
/// refuse or that does not parse is left to the engine, which reports it properly.
fn is_mutation(request: &Request, limits: &crate::schema::Limits) -> bool {
    // A mutation needs the keyword; without it, the query need not be parsed a second time.
    if !request.query.contains("mutation") {
        return false;
    }
    let (tokens, nesting) = (limits.max_tokens, limits.max_nesting);
    if crate::schema::limits::check_text(&request.query, tokens, nesting).is_err() {
        return false;
    }
    let Ok(doc) = async_graphql::parser::parse_query(&request.query) else {
        return false;
    };
    doc.operations.iter().any(|(name, op)| {
        let selected = match (&request.operation_name, name) {
            (Some(want), Some(name)) => want == name.as_str(),
            (None, _) => true,
            (Some(_), None) => false,
        };
        selected && op.node.ty == OperationType::Mutation
    })
}

async fn execute(st: &AppState, request: Request, headers: HeaderMap, media: Media) -> Response {
    if st.opts.allow_plan && asks(&headers, PLAN_HEADER) {
        return respond(
            crate::call_plan::respond(&st.live.get(), request).await,
            media,
        );
    }
    let trace = wants_trace(&headers);
    let resp = run(&st.live.get(), request, headers, trace).await;
    respond(resp, media)
}

/// Executes one request, and notes its outcome and error codes for the request's event.
async fn run(gw: &Arc<Gateway>, request: Request, headers: HeaderMap, trace: bool) -> GqlResponse {
    let name = request.operation_name.clone();
    let resp = gw.execute(request, headers, trace).await;
    let outcome = if is_request_error(&resp) {
        "request_error"
    } else if resp.errors.is_empty() {
        "ok"
    } else {
        "field_errors"
    };
    crate::observe::answered(&resp, outcome, name);
    resp
}

/// A request error (parse, validation): no `data`, and errors that have no path.
fn is_request_error(resp: &GqlResponse) -> bool {
    resp.data == ConstValue::Null
        && !resp.errors.is_empty()
        && resp.errors.iter().all(|e| e.path.is_empty())
}

/// The response body, serialized straight from the engine's values.
#[derive(serde::Serialize)]
struct Body<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a ConstValue>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    errors: &'a [async_graphql::ServerError],
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    extensions: &'a std::collections::BTreeMap<String, ConstValue>,
}

impl<'a> Body<'a> {
    /// A request error has no `data` at all; anything else has it, possibly null.
    fn of(resp: &'a GqlResponse) -> Self {
        Body {
            data: (!is_request_error(resp)).then_some(&resp.data),
            errors: &resp.errors,
            extensions: &resp.extensions,
        }
    }
}

/// A GraphQL response in `media`. A request error has no `data`; under
/// `application/graphql-response+json` it is 400, under `application/json` 200 (the spec's
/// SHOULD for each). A response with `data`, even `null`, is 200.
fn respond(resp: GqlResponse, media: Media) -> Response {
    let request_error = is_request_error(&resp);
    let body = Body::of(&resp);
    let status = if media == Media::GraphqlResponse && request_error {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let bytes = serde_json::to_vec(&body).expect("GraphQL values always serialize");
    with_headers(status, media, bytes)
}

/// A request Fanout refuses before the engine sees it (not a well-formed GraphQL-over-HTTP
/// request, wrong method or media type): `errors` only, in the negotiated media type.
fn request_error(media: Media, status: StatusCode, message: &str) -> Response {
    let body = json!({ "errors": [{ "message": message }] });
    with_headers(status, media, body.to_string().into_bytes())
}

/// A `/graphql` answer: its media type, and `Vary: Accept` since that header chose it (a
/// cache must not hand a GET's `application/json` answer to a client that asked for
/// `application/graphql-response+json`).
fn with_headers(status: StatusCode, media: Media, body: Vec<u8>) -> Response {
    (
        status,
        [
            (header::CONTENT_TYPE, media.content_type()),
            (header::VARY, "accept"),
        ],
        body,
    )
        .into_response()
}
