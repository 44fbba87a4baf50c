//! Batching: N keyed lookups of one field become a few calls.
//!
//! Every parent puts its key into the request's [`Window`]. The window closes once a whole
//! turn of the request's task adds no key, and [`BatchLoader::load`] then groups the keys by
//! [`BatchGroup`] (same upstream request but for the keys), sorts them, sends chunks of at
//! most `maxSize` concurrently, and matches the items of each response back to their keys by
//! the value at `match`.
//!
//! Why not async-graphql's `DataLoader`: in 7.2 its batch window is always a tokio timer,
//! even with a zero delay, and tokio's timer rounds up to its next millisecond tick. That put
//! up to 1 ms of idle time into every level of batched keys. The window here closes on the
//! request's own task turns instead, with no timer.

use std::{
    cmp::Ordering,
    hash::{Hash, Hasher},
    sync::{Arc, Mutex},
    time::Duration,
};

use serde_json::{Map, Value as Json};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::{CallSpec, Trace, joined_param, send};
use crate::{
    FastHashMap,
    error::{ErrorKind, FieldError},
    sdl::template::{Scope, Template, lookup, push_text},
};

/// Everything about a batched call except its keys. Two lookups batch together exactly when
/// their groups have the same `id`.
#[derive(Debug)]
pub struct BatchGroup {
    pub id: String,
    pub spec: CallSpec,
    pub query_param: Option<String>,
    /// The body template with the field's arguments; `{batch.keys}` is filled per chunk.
    pub body: Option<(Template, Map<String, Json>)>,
    pub select: Vec<String>,
    pub match_path: Vec<String>,
    pub max_size: usize,
    pub timeout: Duration,
}

/// One key of one group. Equal keys (by their text) are fetched once.
#[derive(Clone, Debug)]
pub struct BatchKey {
    pub group: Arc<BatchGroup>,
    pub text: Arc<str>,
    pub json: Json,
}

impl BatchKey {
    /// `None` for a null key: it matches nothing and is not sent.
    pub fn new(group: Arc<BatchGroup>, json: &Json) -> Option<Self> {
        let text = key_text(json)?;
        Some(BatchKey {
            group,
            text: text.into(),
            json: json.clone(),
        })
    }
}

impl PartialEq for BatchKey {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text && self.group.id == other.group.id
    }
}

impl Eq for BatchKey {}

impl Hash for BatchKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.group.id.hash(state);
        self.text.hash(state);
    }
}

fn key_text(json: &Json) -> Option<String> {
    match json {
        Json::Null | Json::Array(_) | Json::Object(_) => None,
        other => {
            let mut s = String::new();
            push_text(&mut s, other);
            Some(s)
        }
    }
}

/// Numbers in numeric order, anything else as text.
fn key_order(a: &BatchKey, b: &BatchKey) -> Ordering {
    match (a.text.parse::<f64>(), b.text.parse::<f64>()) {
        (Ok(x), Ok(y)) => x.partial_cmp(&y).unwrap_or(Ordering::Equal),
        _ => a.text.cmp(&b.text),
    }
}

/// What one key gets: its item (`Ok(None)` when the upstream has none) or its chunk's error.
pub type Item = Result<Option<Arc<Json>>, FieldError>;

/// The batch keys of one client request that wait for their batch to go out.
pub struct Window {
    loader: Arc<BatchLoader>,
    pending: Mutex<Vec<(BatchKey, oneshot::Sender<Item>)>>,
}

impl Window {
    pub fn new(loader: BatchLoader) -> Self {
        Window {
            loader: Arc::new(loader),
            pending: Mutex::default(),
        }
    }

    /// Adds a key to the open window. Its item arrives on the receiver once its batch is
    /// answered; the caller then awaits [`Window::flush`] so that the window closes.
    pub fn enqueue(&self, key: BatchKey) -> oneshot::Receiver<Item> {
        let (tx, rx) = oneshot::channel();
        self.lock().push((key, tx));
        rx
    }

    /// Returns once the keys pending now are on their way. Every key's caller awaits this,
    /// so the window closes even when some of them stop waiting.
    ///
    /// The keys of one level come from sibling futures of the request's one task, woken
    /// together. Yielding lets every sibling that is ready add its key; the window closes
    /// after a whole turn adds none (in the tests one turn always sufficed, even for 150
    /// parents; the loop is there for a join that polls its futures over several turns). The batch then runs in its own task, so a field that
    /// stops waiting (its own deadline) does not cancel the other fields' keys.
    pub async fn flush(&self) {
        loop {
            let before = self.lock().len();
            if before == 0 {
                return; // another key's caller sent them
            }
            tokio::task::yield_now().await;
            let batch = {
                let mut pending = self.lock();
                if pending.len() != before {
                    continue;
                }
                std::mem::take(&mut *pending)
            };
            // When the client request ends first, `cancel` stops this batch at once.
            let loader = self.loader.clone();
            tokio::spawn(async move { loader.send(batch).await });
            return;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(BatchKey, oneshot::Sender<Item>)>> {
        self.pending.lock().expect("batch window lock poisoned")
    }
}

/// The per-request loader. `cancel` fires when the client request is over, so a batch that
/// only it needed stops at once.
pub struct BatchLoader {
    pub trace: Trace,
    pub cancel: CancellationToken,
}

impl BatchLoader {
    /// Loads one window's keys and hands each its item.
    async fn send(&self, batch: Vec<(BatchKey, oneshot::Sender<Item>)>) {
        let (keys, senders): (Vec<BatchKey>, Vec<_>) = batch.into_iter().unzip();
        let Some(mut items) = self.load(&keys).await else {
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
    pub async fn load(&self, keys: &[BatchKey]) -> Option<FastHashMap<BatchKey, Item>> {
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
        let work = futures::future::join_all(chunks.into_iter().map(|c| self.chunk(c)));
        let results = tokio::select! {
            r = work => r,
            _ = self.cancel.cancelled() => return None,
        };
        Some(results.into_iter().flatten().collect())
    }

    async fn chunk(&self, keys: Vec<&BatchKey>) -> Vec<(BatchKey, Item)> {
        let group = &keys[0].group;
        let mut spec = group.spec.clone();
        let texts: Vec<&str> = keys.iter().map(|k| &*k.text).collect();
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
        spec.deadline = Some(tokio::time::Instant::now() + group.timeout);
        let call = send(spec, self.trace.clone(), Some(keys.len()));
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
        let Some(Json::Array(items)) = lookup(&body, &group.select) else {
            let e = FieldError::bad_response(Some(&up), "a batch response must be a JSON list");
            return keys
                .into_iter()
                .map(|k| (k.clone(), Err(e.clone())))
                .collect();
        };
        let mut found = FastHashMap::<String, Arc<Json>>::default();
        for item in items {
            let Some(text) = lookup(item, &group.match_path).and_then(key_text) else {
                continue;
            };
            // The first item for a key wins; items for keys nobody asked for are ignored.
            if texts.contains(&text.as_str()) {
                found.entry(text).or_insert_with(|| Arc::new(item.clone()));
            }
        }
        keys.into_iter()
            .map(|k| (k.clone(), Ok(found.get(&*k.text).cloned())))
            .collect()
    }
}
