//! Sending a batch: the keys that went out together are grouped by [`BatchGroup`] (the same
//! upstream request but for the keys), sorted, sent in chunks of at most `maxSize`
//! concurrently, and the items of each response matched back to their keys by the value at
//! `match`.

use std::sync::Arc;

use serde_json::Value as Json;
use tokio::{sync::oneshot, time::Instant};
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use super::{BatchKey, Dispatch, Item, Queued, key_order, key_text};
use crate::{
    FastHashMap,
    error::{ErrorKind, FieldError},
    sdl::template::{Scope, lookup},
    upstream::{BatchCall, Trace, joined_param, shared_call},
};

/// The per-request loader. `cancel` fires when the client request is over, so a batch that
/// only it needed stops at once.
#[derive(Clone)]
pub struct BatchLoader {
    pub trace: Trace,
    pub cancel: CancellationToken,
}

impl Dispatch for BatchLoader {
    /// Sends in a task of its own, so a field that stops waiting (its own deadline) does
    /// not cancel the other fields' keys. The task keeps the request's log span; its calls
    /// carry the request's trace in `self.trace`.
    fn dispatch(&self, keys: Vec<Queued>, ready: Instant) {
        let loader = self.clone();
        let span = tracing::Span::current();
        tokio::spawn(async move { loader.send(keys, ready).await }.instrument(span));
    }
}

impl BatchLoader {
    /// Loads keys that became ready together and hands each its item.
    async fn send(&self, batch: Vec<Queued>, ready: Instant) {
        let (keys, senders): (Vec<BatchKey>, Vec<oneshot::Sender<Item>>) =
            batch.into_iter().unzip();
        let Some(mut items) = self.load(&keys, ready).await else {
            return; // the client request is over
        };
        for (key, tx) in keys.iter().zip(senders) {
            let item = items.remove(key).unwrap_or(Ok(None));
            let _ = tx.send(item); // its field may have stopped waiting
        }
    }

    /// Groups `keys` (distinct) into chunks and sends them concurrently. `None` when the
    /// client request ended first.
    #[allow(
        clippy::mutable_key_type,
        reason = "a BatchKey hashes only its group id and key text, which never change"
    )]
    pub async fn load(
        &self,
        keys: &[BatchKey],
        ready: Instant,
    ) -> Option<FastHashMap<BatchKey, Item>> {
        let mut groups = FastHashMap::<&str, Vec<&BatchKey>>::default();
        for k in keys {
            groups.entry(&k.group.id).or_default().push(k);
        }
        let mut chunks = Vec::new();
        for (_, mut ks) in groups {
            ks.sort_by(|a, b| key_order(a, b));
            let size = ks[0].group.max_size;
            chunks.extend(ks.chunks(size).map(<[&BatchKey]>::to_vec));
        }
        let work = futures::future::join_all(chunks.into_iter().map(|c| self.chunk(c, ready)));
        let results = tokio::select! {
            r = work => r,
            _ = self.cancel.cancelled() => return None,
        };
        Some(results.into_iter().flatten().collect())
    }

    async fn chunk(&self, keys: Vec<&BatchKey>, ready: Instant) -> Vec<(BatchKey, Item)> {
        let group = &keys[0].group;
        let mut spec = group.spec.clone();
        if let Some(param) = &group.query_param {
            let keys = joined_param(param, keys.iter().map(|k| &k.json), ",");
            let query = match spec.url.query() {
                Some(q) if !q.is_empty() => format!("{q}&{keys}"),
                _ => keys,
            };
            spec.url.set_query(Some(&query));
        }
        if let Some((template, args)) = &group.body {
            let key_json = Json::Array(keys.iter().map(|k| k.json.clone()).collect());
            let scope = Scope {
                args,
                parent: &Json::Null,
                keys: Some(&key_json),
            };
            spec.body = Some(template.render_json(scope));
        }
        let up = spec.up.name.clone();
        let now = Instant::now();
        spec.deadline = Some(now + group.timeout);
        let batch = BatchCall {
            size: keys.len(),
            field: group.field.clone(),
            waited: now.saturating_duration_since(ready),
        };
        let call = shared_call(spec, self.trace.clone(), Some(batch));
        let result = match tokio::time::timeout(group.timeout, call).await {
            Ok(r) => r,
            Err(_) => Err(FieldError::new(
                ErrorKind::Timeout(group.timeout),
                Some(&up),
            )),
        };
        let body = match result {
            Ok(body) => body,
            Err(e) => {
                return keys
                    .into_iter()
                    .map(|k| (k.clone(), Err(e.clone())))
                    .collect();
            }
        };
        // Items are moved out of the answer, not copied, unless another request shares it.
        let body = Arc::try_unwrap(body).unwrap_or_else(|shared| (*shared).clone());
        let Some(Json::Array(items)) = take(body, &group.select) else {
            let e = FieldError::bad_response(Some(&up), "a batch response must be a JSON list");
            return keys
                .into_iter()
                .map(|k| (k.clone(), Err(e.clone())))
                .collect();
        };
        // Each key's item: the first item for a key wins; items for keys nobody asked for
        // are ignored.
        let mut found: FastHashMap<&str, Option<Arc<Json>>> =
            keys.iter().map(|k| (&*k.text, None)).collect();
        for item in items {
            let Some(text) = lookup(&item, &group.match_path).and_then(key_text) else {
                continue;
            };
            if let Some(slot @ None) = found.get_mut(text.as_str()) {
                *slot = Some(Arc::new(item));
            }
        }
        keys.into_iter()
            .map(|k| (k.clone(), Ok(found.get(&*k.text).cloned().flatten())))
            .collect()
    }
}

/// The value at `path` inside `value`, taken out of it.
fn take(mut value: Json, path: &[String]) -> Option<Json> {
    for key in path {
        value = match value {
            Json::Object(mut map) => map.remove(key)?,
            _ => return None,
        };
    }
    Some(value)
}
