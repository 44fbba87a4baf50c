//! The HTTP surface: `/graphql` (POST and GET, GraphiQL for browsers), `/healthz`, `/readyz`.

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
const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";

/// Options of the HTTP layer.
#[derive(Clone, Debug)]
pub struct HttpOptions {
    /// Where GraphiQL's scripts and styles are loaded from.
    pub graphiql_assets: String,
}

impl Default for HttpOptions {
    fn default() -> Self {
        HttpOptions {
            graphiql_assets: graphiql::DEFAULT_ASSETS.to_owned(),
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
pub fn live_router(live: Arc<Live>, opts: HttpOptions) -> Router {
    Router::new()
        .route("/graphql", get(graphql_get).post(graphql_post))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(AppState {
            live,
            opts: Arc::new(opts),
        })
}

async fn readyz(State(st): State<AppState>) -> Response {
    let body = json!({ "status": "ready", "schemaVersion": st.live.version() });
    axum::Json(body).into_response()
}

async fn metrics(State(st): State<AppState>) -> Response {
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
    let content_type = [(header::CONTENT_TYPE, "text/plain; version=0.0.4")];
    (content_type, text).into_response()
}

async fn graphql_post(State(st): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !content_type
        .to_ascii_lowercase()
        .starts_with("application/json")
    {
        return request_error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "POST /graphql takes a JSON body with `Content-Type: application/json`",
        );
    }
    let request: Request = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return request_error(
                StatusCode::BAD_REQUEST,
                &format!("the body is not a GraphQL request: {e}"),
            );
        }
    };
    execute(&st, request, headers).await
}

async fn graphql_get(
    State(st): State<AppState>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
) -> Response {
    let query = query.unwrap_or_default();
    let wants_html = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    if wants_html && !query.contains("query=") {
        return Html(graphiql::page(&st.opts.graphiql_assets)).into_response();
    }
    let request = match parse_get(&query) {
        Ok(r) => r,
        Err(e) => return request_error(StatusCode::BAD_REQUEST, &e),
    };
    if is_mutation(&request) {
        let mut resp = request_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "mutations must be sent with POST",
        );
        resp.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("POST"));
        return resp;
    }
    execute(&st, request, headers).await
}

/// A GraphQL-over-HTTP GET: `query`, `operationName`, `variables` and `extensions` (JSON).
fn parse_get(query_string: &str) -> Result<Request, String> {
    let mut query = None;
    let mut request_extras = (None, None);
    for (k, v) in url::form_urlencoded::parse(query_string.as_bytes()) {
        match &*k {
            "query" => query = Some(v.into_owned()),
            "operationName" if !v.is_empty() => request_extras.0 = Some(v.into_owned()),
            "variables" if !v.is_empty() => request_extras.1 = Some(v.into_owned()),
            _ => {}
        }
    }
    let Some(query) = query else {
        return Err("GET /graphql needs a `query` parameter".into());
    };
    let mut request = Request::new(query);
    if let Some(name) = request_extras.0 {
        request = request.operation_name(name);
    }
    if let Some(vars) = request_extras.1 {
        let json: serde_json::Value =
            serde_json::from_str(&vars).map_err(|e| format!("`variables` is not JSON: {e}"))?;
        if !json.is_object() {
            return Err("`variables` must be a JSON object".into());
        }
        request = request.variables(async_graphql::Variables::from_json(json));
    }
    Ok(request)
}

/// Whether the operation the request selects is a mutation. An unparsable query is left to
/// the engine, which reports it properly.
fn is_mutation(request: &Request) -> bool {
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

async fn execute(st: &AppState, request: Request, headers: HeaderMap) -> Response {
    let trace = headers
        .get(TRACE_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| !matches!(v, "" | "0" | "false"));
    let graphql_json = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains(GRAPHQL_RESPONSE));
    let resp = st.live.get().execute(request, headers, trace).await;
    respond(resp, graphql_json)
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

fn respond(resp: GqlResponse, graphql_json: bool) -> Response {
    let request_error = is_request_error(&resp);
    let body = Body {
        data: (!request_error).then_some(&resp.data),
        errors: &resp.errors,
        extensions: &resp.extensions,
    };
    let status = if graphql_json && request_error {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    let content_type = if graphql_json {
        GRAPHQL_RESPONSE
    } else {
        "application/json"
    };
    let bytes = serde_json::to_vec(&body).expect("GraphQL values always serialize");
    (status, [(header::CONTENT_TYPE, content_type)], bytes).into_response()
}

fn request_error(status: StatusCode, message: &str) -> Response {
    let body = json!({ "errors": [{ "message": message }] });
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}
