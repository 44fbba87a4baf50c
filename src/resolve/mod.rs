//! Field resolution: Fanout's own executor, run inside async-graphql's.
//!
//! The engine parses and validates the query and answers introspection. It then calls
//! [`root_field`] for each root field. That resolver plans the field's whole subtree
//! ([`plan`]) and runs it ([`complete`]): every field whose inputs are ready starts at once,
//! batch keys go through one batch window per request, every `@rest` field has its deadline,
//! and failures become errors with `path` and `extensions.code`, with nulls propagated as the
//! GraphQL spec says. The engine resolves nothing below the root: the finished values are put
//! into the response by [`Exec::finish`], in the query's field order. This sidesteps two
//! traits of async-graphql's dynamic schemas: nested fields resolve one after another, and a
//! resolver's `Err` drops the field instead of nulling it.

pub(crate) mod coerce;
mod complete;
pub mod plan;

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, OnceLock},
};

use async_graphql::{
    Context, Name, PathSegment, Response, ServerError, Value as ConstValue,
    dynamic::{FieldFuture, FieldValue, ResolverContext},
    parser::types::OperationType,
};
use http::HeaderMap;
use indexmap::IndexMap;
use tokio::time::Instant;
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::{
    gateway::Gateway,
    upstream::{
        Calls, Trace,
        batch::{BatchLoader, Batcher},
    },
};
pub use complete::Propagate;

use plan::{Entry, Planner};

/// The state of one client request.
pub struct Exec {
    gw: Arc<Gateway>,
    client_headers: HeaderMap,
    /// No field outlives this.
    deadline: Instant,
    calls: Calls,
    batcher: Batcher,
    errors: Mutex<Vec<ServerError>>,
    roots: OnceLock<IndexMap<String, Vec<Entry>>>,
    /// Root response keys already taken by a resolver, with their values once done.
    results: Mutex<IndexMap<String, Option<Result<ConstValue, Propagate>>>>,
    /// The response's data so far, in bytes of JSON (about), and whether it went past
    /// `max_response_bytes`: then the request stops and its data is null.
    response_bytes: std::sync::atomic::AtomicUsize,
    too_large: std::sync::atomic::AtomicBool,
    _cancel: DropGuard,
}

impl Exec {
    pub fn new(gw: Arc<Gateway>, client_headers: HeaderMap, trace: bool) -> Self {
        // The request's trace and log context, which every upstream call carries.
        let trace: Trace = crate::observe::Operation::current(trace, gw.options.debug_errors);
        let cancel = CancellationToken::new();
        let loader = BatchLoader {
            trace: trace.clone(),
            cancel: cancel.clone(),
        };
        Exec {
            deadline: Instant::now() + gw.options.request_timeout,
            calls: Calls::new(trace),
            batcher: Batcher::new(std::sync::Arc::new(loader)),
            gw,
            client_headers,
            errors: Mutex::new(Vec::new()),
            roots: OnceLock::new(),
            results: Mutex::new(IndexMap::new()),
            response_bytes: Default::default(),
            too_large: Default::default(),
            _cancel: cancel.drop_guard(),
        }
    }

    async fn resolve_root(&self, ctx: &Context<'_>) {
        let key = ctx.item.node.response_key().node.to_string();
        let bindings = &self.gw.bindings;
        let root_type = match ctx.query_env.operation.node.ty {
            OperationType::Mutation => bindings.mutation.as_deref().unwrap_or_default(),
            _ => bindings.query.as_str(),
        };
        let roots = self.roots.get_or_init(|| {
            let op = &ctx.query_env;
            let name = op.operation_name.as_deref();
            self.calls.trace.selected(op.operation.node.ty, name);
            Planner {
                bindings,
                operation: &ctx.query_env.operation.node,
                fragments: &ctx.query_env.fragments,
                variables: &ctx.query_env.variables,
            }
            .roots(root_type)
        });
        {
            // A response key can appear more than once (fragments): the first resolver for
            // it resolves the merged selection, the others have nothing to do.
            let mut results = self.results.lock().expect("results lock poisoned");
            if results.contains_key(&key) {
                return;
            }
            results.insert(key.clone(), None);
        }
        let (Some(entries), Some(root)) = (roots.get(&key), bindings.object(root_type)) else {
            return;
        };
        let Some(field) = root.fields.get(&entries[0].name) else {
            return;
        };
        let refs: Vec<&Entry> = entries.iter().collect();
        let path = complete::Path::root(&key, complete::producer(field, &refs));
        let value = self
            .field(field, &refs, &serde_json::Value::Null, None, &path)
            .await;
        let mut results = self.results.lock().expect("results lock poisoned");
        results.insert(key, Some(value));
    }

    fn error(&self, err: ServerError) {
        self.errors.lock().expect("errors lock poisoned").push(err);
    }

    /// Puts Fanout's values into the engine's response: the query's order, nulls propagated
    /// to the root where needed, Fanout's errors, and the trace when asked for.
    pub fn finish(&self, mut resp: Response) -> Response {
        let results = std::mem::take(&mut *self.results.lock().expect("results lock poisoned"));
        if let Some(roots) = self.roots.get() {
            let mut engine = match std::mem::take(&mut resp.data) {
                ConstValue::Object(map) => map,
                _ => Default::default(),
            };
            let mut data = IndexMap::new();
            let mut null_data = false;
            let mut results = results;
            let ours: std::collections::HashSet<String> = results.keys().cloned().collect();
            for key in roots.keys() {
                let name = Name::new(key);
                match results.shift_remove(key) {
                    Some(Some(Ok(v))) => {
                        data.insert(name, v);
                    }
                    Some(Some(Err(Propagate))) => null_data = true,
                    Some(None) => {}
                    None => {
                        if let Some(v) = engine.shift_remove(&name) {
                            data.insert(name, v);
                        }
                    }
                }
            }
            let too_large = self.too_large.load(std::sync::atomic::Ordering::Relaxed);
            resp.data = if null_data || too_large {
                ConstValue::Null
            } else {
                ConstValue::Object(data)
            };
            // Fanout's root resolvers hand the engine no value; for a non-null root field
            // the engine reports that. The real outcome is in Fanout's own errors.
            resp.errors.retain(|e| {
                !(e.message
                    .starts_with("internal: non-null types require a return value")
                    && matches!(e.path.as_slice(), [PathSegment::Field(k)] if ours.contains(k)))
            });
        }
        let mut ours = std::mem::take(&mut *self.errors.lock().expect("errors lock poisoned"));
        ours.sort_by(|a, b| path_order(&a.path, &b.path));
        resp.errors.extend(ours);
        // A root selection that `@skip`/`@include` left empty is an empty object (spec 6.3);
        // the engine answers null for it. Null data always comes with an error otherwise.
        if resp.data == ConstValue::Null && resp.errors.is_empty() {
            resp.data = ConstValue::Object(Default::default());
        }
        if let Some(record) = &self.calls.trace.record {
            let value = serde_json::json!({ "calls": record.calls() });
            let mut ext = BTreeMap::new();
            ext.insert(
                "fanout".to_owned(),
                ConstValue::from_json(value).unwrap_or_default(),
            );
            resp.extensions.extend(ext);
        }
        resp
    }
}

fn path_order(a: &[PathSegment], b: &[PathSegment]) -> std::cmp::Ordering {
    let seg = |s: &PathSegment| match s {
        PathSegment::Field(f) => (0, f.clone(), 0),
        PathSegment::Index(i) => (1, String::new(), *i),
    };
    a.iter().map(seg).cmp(b.iter().map(seg))
}

/// The resolver of every root field. See the module documentation.
pub fn root_field(ctx: ResolverContext<'_>) -> FieldFuture<'_> {
    FieldFuture::new(async move {
        let exec = ctx.data::<Arc<Exec>>()?;
        exec.resolve_root(ctx.ctx).await;
        Ok(None::<FieldValue>)
    })
}
