//! What can go wrong while resolving one field, and how it is shown to the client.
//!
//! Every failure of an upstream call becomes one [`FieldError`]. It is cheap to clone because
//! one batched call can fail many fields at once. [`FieldError::to_server_error`] is the one
//! place that decides what a client sees: a stable `extensions.code`, the upstream's name, and
//! never the upstream's body, URL or headers unless the operator turned on debug errors.

use std::time::Duration;

use async_graphql::{ErrorExtensionValues, PathSegment, Pos, ServerError, Value};

/// The error codes of SPEC section 3, plus `BAD_USER_INPUT` for argument values that Fanout
/// refuses to put into a URL.
pub mod code {
    pub const UPSTREAM_TIMEOUT: &str = "UPSTREAM_TIMEOUT";
    pub const UPSTREAM_HTTP_ERROR: &str = "UPSTREAM_HTTP_ERROR";
    pub const UPSTREAM_UNAVAILABLE: &str = "UPSTREAM_UNAVAILABLE";
    pub const UPSTREAM_BAD_RESPONSE: &str = "UPSTREAM_BAD_RESPONSE";
    pub const BAD_USER_INPUT: &str = "BAD_USER_INPUT";
    pub const RESPONSE_TOO_LARGE: &str = "RESPONSE_TOO_LARGE";
}

/// A failure of one field. `detail` holds what only an operator should see (URL, a snippet of
/// the body, the transport error); it reaches the client only with debug errors on.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldError {
    pub kind: ErrorKind,
    /// The upstream the failing call went to, when there was one.
    pub upstream: Option<String>,
    pub detail: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ErrorKind {
    Timeout(Duration),
    Http(u16),
    Unavailable(&'static str),
    BadResponse(String),
    BadInput(String),
    /// The response grew past this many bytes.
    ResponseTooLarge(usize),
}

impl FieldError {
    pub fn new(kind: ErrorKind, upstream: Option<&str>) -> Self {
        FieldError {
            kind,
            upstream: upstream.map(str::to_owned),
            detail: None,
        }
    }

    pub fn bad_response(upstream: Option<&str>, reason: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadResponse(reason.into()), upstream)
    }

    pub fn bad_input(reason: impl Into<String>) -> Self {
        Self::new(ErrorKind::BadInput(reason.into()), None)
    }

    pub fn with_detail(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }

    pub fn code(&self) -> &'static str {
        match self.kind {
            ErrorKind::Timeout(_) => code::UPSTREAM_TIMEOUT,
            ErrorKind::Http(_) => code::UPSTREAM_HTTP_ERROR,
            ErrorKind::Unavailable(_) => code::UPSTREAM_UNAVAILABLE,
            ErrorKind::BadResponse(_) => code::UPSTREAM_BAD_RESPONSE,
            ErrorKind::BadInput(_) => code::BAD_USER_INPUT,
            ErrorKind::ResponseTooLarge(_) => code::RESPONSE_TOO_LARGE,
        }
    }

    /// The message a client reads: which upstream, what class of failure, nothing more.
    pub fn message(&self) -> String {
        let up = self.upstream.as_deref().unwrap_or("?");
        match &self.kind {
            ErrorKind::Timeout(after) => {
                format!(
                    "upstream \"{up}\" did not answer within {}",
                    fmt_duration(*after)
                )
            }
            ErrorKind::Http(status) => format!("upstream \"{up}\" answered HTTP {status}"),
            ErrorKind::Unavailable(why) => format!("upstream \"{up}\" is unavailable: {why}"),
            ErrorKind::BadResponse(why) => match &self.upstream {
                Some(_) => format!("upstream \"{up}\" sent a bad response: {why}"),
                None => format!("bad value: {why}"),
            },
            ErrorKind::BadInput(why) => why.clone(),
            ErrorKind::ResponseTooLarge(max) => format!(
                "the response grew past {max} bytes at this field; it is not sent (data is null)"
            ),
        }
    }

    pub fn to_server_error(&self, path: Vec<PathSegment>, pos: Pos, debug: bool) -> ServerError {
        let mut ext = ErrorExtensionValues::default();
        ext.set("code", self.code());
        if let Some(up) = &self.upstream {
            ext.set("upstream", up.as_str());
        }
        if let ErrorKind::Http(status) = self.kind {
            ext.set("httpStatus", Value::from(status));
        }
        if debug && let Some(detail) = &self.detail {
            ext.set("detail", detail.as_str());
        }
        let mut err = ServerError::new(self.message(), Some(pos));
        err.path = path;
        err.extensions = Some(ext);
        err
    }
}

/// `1500ms` -> "1.5s", `800ms` -> "800ms": durations as a schema author writes them.
pub fn fmt_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms >= 1000 && ms.is_multiple_of(100) {
        format!("{}s", d.as_secs_f64())
    } else {
        format!("{ms}ms")
    }
}
