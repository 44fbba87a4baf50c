//! A deadline on request bodies: a body that has not arrived whole within
//! `HttpOptions::body_read_timeout` of the request's headers is answered 408.
//!
//! tower-http's `DeadlineBody` makes reading the body fail once the deadline passes; the
//! handler then refuses the request as a body it could not read (axum answers 400). This
//! layer notes that the deadline is what failed and answers 408 instead, with
//! `Connection: close`, since the rest of the body may still be on its way.

use std::{
    pin::Pin,
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    task::{Context, Poll, ready},
    time::Duration,
};

use axum::{
    body::{Body, Bytes, HttpBody},
    extract::{Request, State},
    http::{StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use tower_http::timeout::{DeadlineBody, TimeoutError};

/// The middleware (`axum::middleware::from_fn_with_state(limit, layer)`).
pub(crate) async fn layer(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    // Most requests (every GET) have no body: nothing to time.
    if req.body().is_end_stream() {
        return next.run(req).await;
    }
    let expired = Arc::new(AtomicBool::new(false));
    let req = req.map(|body| {
        Body::new(Flagged {
            body: DeadlineBody::new(limit, body),
            expired: expired.clone(),
        })
    });
    let resp = next.run(req).await;
    if !expired.load(Ordering::Relaxed) {
        return resp;
    }
    let message = format!(
        "the request body did not arrive within {} ms of its headers",
        limit.as_millis()
    );
    let body = serde_json::json!({ "errors": [{ "message": message }] });
    (
        StatusCode::REQUEST_TIMEOUT,
        [
            (header::CONTENT_TYPE, "application/json; charset=utf-8"),
            (header::CONNECTION, "close"),
        ],
        body.to_string(),
    )
        .into_response()
}

pin_project_lite::pin_project! {
    /// A body under a deadline that records whether the deadline is what ended it.
    struct Flagged<B> {
        #[pin]
        body: DeadlineBody<B>,
        expired: Arc<AtomicBool>,
    }
}

impl<B> HttpBody for Flagged<B>
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<axum::BoxError>,
{
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        let this = self.project();
        let frame = ready!(this.body.poll_frame(cx));
        if let Some(Err(e)) = &frame
            && e.is::<TimeoutError>()
        {
            this.expired.store(true, Ordering::Relaxed);
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}
