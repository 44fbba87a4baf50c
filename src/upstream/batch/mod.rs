//! Batching: N keyed lookups of one field become a few calls, sent exactly when the last
//! call that could still produce a key for them has answered.
//!
//! Each client request has one [`Batcher`]. It owns the readiness counters, the keys waiting
//! per batch field, and the memo of every key loaded (a key is never sent twice in a
//! request); [`load`] sends what is ready, grouped and chunked.
//!
//! **When a batch goes out.** A batch field's keys come from its parents, and its parents
//! from the `@rest` fields above it in the query: its *producers*. Every instance of a
//! `@rest` field counts as pending from the moment it starts until its answer has been
//! expanded one step, which starts every call and adds every key below it (the executor
//! polls the completion once, then releases the field; see `resolve`). A batch field's keys
//! go out when none of its producers has an instance pending: a slower parent holds the
//! batch together instead of splitting it, a slow call elsewhere in the query never delays
//! it, and there is no timer. A producer that fails or times out stops being pending too.
//! Batch fields at the root have no producer in the request: their keys go out once a whole
//! turn of the request's task adds none (the engine starts root fields together).

mod load;

use std::{
    cmp::Ordering,
    hash::{Hash, Hasher},
    sync::{Arc, Mutex},
    time::Duration,
};

use futures::{FutureExt, future::BoxFuture};
use serde_json::{Map, Value as Json};
use tokio::{sync::oneshot, time::Instant};

use super::CallSpec;
use crate::{
    FastHashMap,
    error::{ErrorKind, FieldError},
    sdl::template::{Template, push_text},
};
pub use load::BatchLoader;

/// Everything about a batched call except its keys. Two lookups batch together exactly when
/// their groups have the same `id`.
#[derive(Debug)]
pub struct BatchGroup {
    pub id: String,
    /// The field it serves, as `Type.field`, for the trace.
    pub field: Arc<str>,
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

/// A batch field's request but for its keys (`None`: a path expression is null, there is
/// nothing to fetch), or why it could not be built.
pub type GroupResult = Result<Option<Arc<BatchGroup>>, FieldError>;

/// What one key gets: its item (`Ok(None)` when the upstream has none) or its chunk's error.
pub type Item = Result<Option<Arc<Json>>, FieldError>;

/// A key waiting for its batch, and where its item goes.
pub type Queued = (BatchKey, oneshot::Sender<Item>);

/// One field of the query as it executes: the plan entry's address, stable for the request.
pub type FieldId = usize;

/// Where ready keys go. [`BatchLoader`] sends them; the protocol tests record them.
pub trait Dispatch: Send + Sync {
    /// `keys` are distinct and ready together since `ready`, when their last producer
    /// answered.
    fn dispatch(&self, keys: Vec<Queued>, ready: Instant);
}

type SharedItem = futures::future::Shared<BoxFuture<'static, Item>>;

/// The batch keys of one client request. See the module documentation.
pub struct Batcher {
    dispatch: Arc<dyn Dispatch>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Instances of `@rest` fields that may still produce parents, by field.
    pending: FastHashMap<FieldId, usize>,
    /// Batch fields that have asked for keys.
    fields: FastHashMap<FieldId, BatchField>,
    /// Keys of batch fields without producers, waiting for a turn that adds none.
    loose: Vec<Queued>,
    /// Every key asked for in this request, loading or loaded.
    #[allow(
        clippy::mutable_key_type,
        reason = "a BatchKey hashes only its group id and key text, which never change"
    )]
    memo: FastHashMap<BatchKey, SharedItem>,
}

struct BatchField {
    /// The `@rest` fields above it in the query.
    producers: Vec<FieldId>,
    /// Its request but for the keys, when that is the same for every parent.
    group: Option<GroupResult>,
    waiting: Vec<Queued>,
}

/// An instance of a `@rest` field that may still produce parents; released on drop.
pub struct Producer<'a> {
    batcher: &'a Batcher,
    field: FieldId,
}

impl Batcher {
    pub fn new(dispatch: Arc<dyn Dispatch>) -> Self {
        Batcher {
            dispatch,
            state: Mutex::default(),
        }
    }

    /// Counts one instance of `field` as pending until the guard drops.
    pub fn producer(&self, field: FieldId) -> Producer<'_> {
        *self.lock().pending.entry(field).or_default() += 1;
        Producer {
            batcher: self,
            field,
        }
    }

    /// The group of batch field `field`, made once per request by `make`: for a field whose
    /// request reads nothing of the parent but the key, it is the same for every parent.
    pub fn group(
        &self,
        field: FieldId,
        producers: impl FnOnce() -> Vec<FieldId>,
        make: impl FnOnce() -> GroupResult,
    ) -> GroupResult {
        if let Some(known) = self.lock().field(field, producers).group.clone() {
            return known;
        }
        // Made outside the lock: rendering may be slow, and two parents making it at once
        // make the same group.
        let group = make();
        self.lock().field(field, Vec::new).group = Some(group.clone());
        group
    }

    /// The item of `key` for batch field `field`, whose producers `producers` gives (asked
    /// once per field). A key asked for before in this request shares that load.
    pub async fn load(
        &self,
        field: FieldId,
        producers: impl FnOnce() -> Vec<FieldId>,
        key: BatchKey,
    ) -> Item {
        let (item, loose) = {
            let mut state = self.lock();
            match state.memo.get(&key) {
                Some(item) => (item.clone(), false),
                None => {
                    let (tx, rx) = oneshot::channel();
                    let item: BoxFuture<'static, Item> = rx
                        .map(|r| {
                            r.unwrap_or_else(|_| {
                                Err(FieldError::new(
                                    ErrorKind::Unavailable("the batch was cancelled"),
                                    None,
                                ))
                            })
                        })
                        .boxed();
                    let item = item.shared();
                    state.memo.insert(key.clone(), item.clone());
                    let f = state.field(field, producers);
                    if f.producers.is_empty() {
                        state.loose.push((key, tx));
                        (item, true)
                    } else {
                        f.waiting.push((key, tx));
                        let ready = state.take_ready();
                        drop(state);
                        self.send(ready);
                        (item, false)
                    }
                }
            }
        };
        if loose {
            self.flush_loose().await;
        }
        item.await
    }

    /// Sends the keys without producers once a whole turn of the request's task adds none.
    /// The keys of root fields come from sibling futures woken together: yielding lets each
    /// add its key first.
    async fn flush_loose(&self) {
        loop {
            let before = self.lock().loose.len();
            if before == 0 {
                return; // another key's caller sent them
            }
            tokio::task::yield_now().await;
            let keys = {
                let mut state = self.lock();
                if state.loose.len() != before {
                    continue;
                }
                std::mem::take(&mut state.loose)
            };
            self.send(keys);
            return;
        }
    }

    fn send(&self, keys: Vec<Queued>) {
        if !keys.is_empty() {
            self.dispatch.dispatch(keys, Instant::now());
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("batcher lock poisoned")
    }
}

impl State {
    fn field(&mut self, id: FieldId, producers: impl FnOnce() -> Vec<FieldId>) -> &mut BatchField {
        self.fields.entry(id).or_insert_with(|| BatchField {
            producers: producers(),
            group: None,
            waiting: Vec::new(),
        })
    }

    /// The waiting keys of every batch field none of whose producers is pending.
    fn take_ready(&mut self) -> Vec<Queued> {
        let pending = &self.pending;
        let idle = |p: &FieldId| pending.get(p).is_none_or(|n| *n == 0);
        let mut ready = Vec::new();
        for f in self.fields.values_mut() {
            if !f.waiting.is_empty() && f.producers.iter().all(idle) {
                ready.append(&mut f.waiting);
            }
        }
        ready
    }
}

impl Drop for Producer<'_> {
    fn drop(&mut self) {
        let ready = {
            let mut state = self.batcher.lock();
            let n = state.pending.entry(self.field).or_default();
            *n = n.saturating_sub(1);
            if *n > 0 {
                return;
            }
            state.take_ready()
        };
        self.batcher.send(ready);
    }
}

/// The protocol alone: when keys are dispatched, with no sockets (a recorder answers).
#[cfg(test)]
mod tests {
    use super::*;
    use crate::{sdl::Upstream, upstream::resilience::Runtime};

    /// Records each dispatch's key texts and answers every key with no item.
    #[derive(Default)]
    struct Recorder(Mutex<Vec<Vec<String>>>);

    impl Dispatch for Recorder {
        fn dispatch(&self, keys: Vec<Queued>, _ready: Instant) {
            let texts = keys.iter().map(|(k, _)| k.text.to_string()).collect();
            self.0.lock().unwrap().push(texts);
            for (_, tx) in keys {
                let _ = tx.send(Ok(None));
            }
        }
    }

    impl Recorder {
        fn sent(&self) -> Vec<Vec<String>> {
            self.0.lock().unwrap().clone()
        }
    }

    fn group() -> Arc<BatchGroup> {
        let up = Upstream {
            name: "u".into(),
            base_url: "http://127.0.0.1:9".into(),
            timeout: None,
            headers: Vec::new(),
            max_batch_size: None,
            connect_timeout: Duration::from_secs(1),
            pool_max_idle: 1,
            max_connections: 1,
            max_response_bytes: 1024,
            max_response_nodes: 1024,
            retries: 0,
            coalesce: false,
            breaker_failures: 5,
            breaker_cooldown: Duration::from_secs(5),
        };
        let spec = CallSpec {
            up: Runtime::new(&up),
            method: reqwest::Method::GET,
            url: "http://127.0.0.1:9/p".parse().unwrap(),
            headers: Default::default(),
            body: None,
            field: "T.p".into(),
            deadline: None,
        };
        Arc::new(BatchGroup {
            id: "g".into(),
            field: "T.p".into(),
            spec,
            query_param: Some("ids".into()),
            body: None,
            select: Vec::new(),
            match_path: vec!["id".into()],
            max_size: 100,
            timeout: Duration::from_secs(1),
        })
    }

    fn key(g: &Arc<BatchGroup>, k: u64) -> BatchKey {
        BatchKey::new(g.clone(), &Json::from(k)).unwrap()
    }

    const P: FieldId = 1; // a @rest field producing parents
    const Q: FieldId = 2; // another, elsewhere in the query
    const B: FieldId = 10; // a batch field below P

    /// Starts `load` for each key without awaiting it; returns the handles.
    fn load_all(
        batcher: &Arc<Batcher>,
        g: &Arc<BatchGroup>,
        keys: &[u64],
    ) -> Vec<tokio::task::JoinHandle<Item>> {
        keys.iter()
            .map(|&k| {
                let (b, k) = (batcher.clone(), key(g, k));
                tokio::spawn(async move { b.load(B, || vec![P], k).await })
            })
            .collect()
    }

    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(flavor = "current_thread")]
    async fn keys_go_out_together_when_the_last_producer_is_released() {
        let rec = Arc::new(Recorder::default());
        let batcher = Arc::new(Batcher::new(rec.clone()));
        let g = group();
        let (p1, p2) = (batcher.producer(P), batcher.producer(P));
        let unrelated = batcher.producer(Q);
        let first = load_all(&batcher, &g, &[3, 1]);
        settle().await;
        drop(p1);
        settle().await;
        assert!(rec.sent().is_empty(), "one producer is still pending");
        let second = load_all(&batcher, &g, &[2, 3]);
        settle().await;
        drop(p2);
        settle().await;
        // The unrelated producer Q is still pending: it delays nothing.
        assert_eq!(rec.sent(), [["3", "1", "2"]]);
        for h in first.into_iter().chain(second) {
            assert_eq!(h.await.unwrap(), Ok(None));
        }
        drop(unrelated);
        assert_eq!(rec.sent().len(), 1, "key 3 was sent once");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn a_key_asked_for_after_its_batch_left_shares_it() {
        let rec = Arc::new(Recorder::default());
        let batcher = Arc::new(Batcher::new(rec.clone()));
        let g = group();
        let p = batcher.producer(P);
        let early = load_all(&batcher, &g, &[5]);
        settle().await;
        drop(p);
        assert_eq!(early.into_iter().next().unwrap().await.unwrap(), Ok(None));
        // A later parent (a retry that answered late) asks for 5 again and 6: with no
        // producer pending they go out at once, and 5 is not sent again.
        let late = load_all(&batcher, &g, &[5, 6]);
        for h in late {
            assert_eq!(h.await.unwrap(), Ok(None));
        }
        assert_eq!(rec.sent(), [vec!["5"], vec!["6"]]);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn keys_without_producers_go_out_after_a_turn_that_adds_none() {
        let rec = Arc::new(Recorder::default());
        let batcher = Arc::new(Batcher::new(rec.clone()));
        let g = group();
        let roots: Vec<_> = [7, 8, 9]
            .into_iter()
            .map(|k| {
                let (b, k) = (batcher.clone(), key(&g, k));
                tokio::spawn(async move { b.load(B, Vec::new, k).await })
            })
            .collect();
        for h in roots {
            assert_eq!(h.await.unwrap(), Ok(None));
        }
        assert_eq!(rec.sent(), [["7", "8", "9"]]);
    }

    #[test]
    fn a_group_is_made_once_per_field() {
        let batcher = Batcher::new(Arc::new(Recorder::default()));
        let made = std::cell::Cell::new(0);
        for _ in 0..3 {
            let g = batcher.group(
                B,
                || vec![P],
                || {
                    made.set(made.get() + 1);
                    Ok(Some(group()))
                },
            );
            assert!(matches!(g, Ok(Some(_))));
        }
        assert_eq!(made.get(), 1);
    }
}
