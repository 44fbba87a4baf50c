//! The `x-fanout-trace` record: the list of upstream calls a client sees in
//! `extensions.fanout.calls` when it asks for it.

use std::{sync::Mutex, time::Instant};

use serde::Serialize;

use super::{CallEvent, Observer, Share, ms};
use crate::error::FieldError;

/// What the record shows about one upstream call.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CallRecord {
    pub upstream: String,
    pub method: String,
    pub path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_size: Option<usize>,
    /// The batch field a batch call served, as `Type.field`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch_field: Option<String>,
    /// How long a batch call's keys waited after their last producer answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub keys_waited_ms: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// When the call started, in milliseconds since the operation began.
    pub start_ms: f64,
    pub duration_ms: f64,
    pub deduplicated: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<&'static str>,
}

/// The calls of one operation, when the client asked for them.
pub struct TraceLog {
    start: Instant,
    calls: Mutex<Vec<CallRecord>>,
}

impl TraceLog {
    /// A log for an operation that begins now.
    pub fn new() -> Self {
        TraceLog {
            start: Instant::now(),
            calls: Mutex::default(),
        }
    }

    pub fn calls(&self) -> Vec<CallRecord> {
        self.calls.lock().expect("trace lock poisoned").clone()
    }
}

impl Default for TraceLog {
    fn default() -> Self {
        TraceLog::new()
    }
}

pub struct TraceRecord;

impl Observer for TraceRecord {
    fn call(&self, e: &CallEvent<'_>) {
        let Some(log) = &e.op.record else { return };
        let sent = matches!(e.share, Share::Sent);
        let rec = CallRecord {
            upstream: e.upstream.to_owned(),
            method: e.method.to_string(),
            path: e.url.path().to_owned(),
            batch_size: e.batch.map(|b| b.size),
            batch_field: e.batch.filter(|_| sent).map(|b| b.field.to_string()),
            keys_waited_ms: e.batch.filter(|_| sent).map(|b| ms(b.waited)),
            status: e.status.filter(|_| sent),
            start_ms: ms(e.started.saturating_duration_since(log.start)),
            duration_ms: if sent { ms(e.duration) } else { 0.0 },
            deduplicated: !sent,
            error: e.error.filter(|_| sent).map(FieldError::code),
        };
        log.calls.lock().expect("trace lock poisoned").push(rec);
    }
}
