//! What sits in front of the routes: request ids and CORS.

use axum::{
    extract::Request,
    http::{HeaderName, HeaderValue, Method, header},
    middleware::Next,
    response::Response,
};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tracing::Instrument;

/// Taken from the client when present, else generated; sent to every upstream call of the
/// request, written in its log lines, and returned in the response.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Makes sure the request has an id, and runs it inside a log span carrying that id.
pub async fn request_id(mut req: Request, next: Next) -> Response {
    let id = match req.headers().get(&REQUEST_ID) {
        Some(v) if !v.is_empty() && v.len() <= 128 => v.clone(),
        _ => {
            let id = HeaderValue::from_str(&new_id()).expect("hex is a valid header value");
            req.headers_mut().insert(REQUEST_ID, id.clone());
            id
        }
    };
    let span = tracing::info_span!(
        "request",
        id = %String::from_utf8_lossy(id.as_bytes()),
        method = %req.method(),
        path = %req.uri().path(),
    );
    let mut resp = next.run(req).instrument(span).await;
    resp.headers_mut().insert(REQUEST_ID, id);
    resp
}

/// 128 random bits as hex, from the standard library's per-process random hash keys.
fn new_id() -> String {
    use std::hash::{BuildHasher, RandomState};
    let state = RandomState::new();
    let a = state.hash_one(std::time::SystemTime::now());
    let b = state.hash_one(a);
    format!("{a:016x}{b:016x}")
}

/// CORS for an allow-list of origins. `*` allows any origin, and is refused together with
/// credentials: browsers would send cookies to any site's scripts.
pub fn cors(origins: &[String], credentials: bool) -> Result<Option<CorsLayer>, String> {
    if origins.is_empty() {
        return Ok(None);
    }
    let any = origins.iter().any(|o| o == "*");
    if any && credentials {
        return Err("CORS: `*` cannot be combined with credentials; list the origins".into());
    }
    let allow = if any {
        AllowOrigin::any()
    } else {
        let list = origins
            .iter()
            .map(|o| HeaderValue::from_str(o).map_err(|_| format!("CORS: bad origin {o:?}")))
            .collect::<Result<Vec<_>, _>>()?;
        AllowOrigin::list(list)
    };
    let layer = CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            REQUEST_ID,
            HeaderName::from_static(super::TRACE_HEADER),
        ])
        .allow_credentials(credentials)
        .expose_headers([REQUEST_ID]);
    Ok(Some(layer))
}
