//! Running a plan: fetch, coerce, and complete values as the GraphQL spec's CompleteValue
//! does, with every independent piece of work running concurrently.

use std::sync::Arc;

use async_graphql::{
    Name, PathSegment, Pos, Value as ConstValue,
    parser::types::{BaseType, Type},
};
use futures::future::{BoxFuture, FutureExt, join_all};
use indexmap::IndexMap;
use serde_json::{Map, Value as Json};
use tokio::time::{Instant, timeout_at};

use super::{
    Exec, coerce,
    plan::{self, Entry},
};
use crate::{
    error::{ErrorKind, FieldError},
    sdl::{
        FieldDef, RestBinding, Source, TypeKind,
        template::{Scope, lookup},
    },
    upstream::{
        self,
        batch::{BatchGroup, BatchKey, FieldId, GroupResult},
    },
};

/// A null reached a non-null position; the nearest nullable parent becomes null. The error
/// that caused it has already been recorded.
#[derive(Clone, Copy, Debug)]
pub struct Propagate;

/// Why a value could not be completed at its own position.
enum Fail {
    /// An error at this position, not yet recorded.
    Error(FieldError),
    /// A non-null child failed; its error is recorded.
    Propagated,
}

/// A response path as a linked list on the stack; turned into a `Vec` only for an error.
/// A position whose value a `@rest` field fetches names that field as a batch producer.
pub struct Path<'a> {
    parent: Option<&'a Path<'a>>,
    seg: Seg<'a>,
    producer: Option<FieldId>,
}

/// The batch producer id of a field (its first plan entry), when it is a `@rest` field.
pub(super) fn producer(field: &FieldDef, entries: &[&Entry]) -> Option<FieldId> {
    match field.source {
        Source::Rest(_) => Some(std::ptr::from_ref::<Entry>(entries[0]) as FieldId),
        Source::Key(_) => None,
    }
}

enum Seg<'a> {
    Key(&'a str),
    Index(usize),
}

impl<'a> Path<'a> {
    pub fn root(key: &'a str, producer: Option<FieldId>) -> Self {
        Path {
            parent: None,
            seg: Seg::Key(key),
            producer,
        }
    }

    fn key(&'a self, key: &'a str, producer: Option<FieldId>) -> Path<'a> {
        Path {
            parent: Some(self),
            seg: Seg::Key(key),
            producer,
        }
    }

    fn index(&'a self, i: usize) -> Path<'a> {
        Path {
            parent: Some(self),
            seg: Seg::Index(i),
            producer: None,
        }
    }

    /// The `@rest` fields above this position, nearest first.
    fn producers(&self) -> Vec<FieldId> {
        let mut out = Vec::new();
        let mut at = self.parent;
        while let Some(p) = at {
            out.extend(p.producer);
            at = p.parent;
        }
        out
    }

    fn to_vec(&self) -> Vec<PathSegment> {
        let mut out = match self.parent {
            Some(p) => p.to_vec(),
            None => Vec::new(),
        };
        out.push(match self.seg {
            Seg::Key(k) => PathSegment::Field(k.to_owned()),
            Seg::Index(i) => PathSegment::Index(i),
        });
        out
    }
}

static NULL: Json = Json::Null;

/// About how many bytes `v` takes as JSON: what the response cap counts.
fn json_size(v: &ConstValue) -> usize {
    match v {
        ConstValue::Null => 4,
        ConstValue::Boolean(_) => 5,
        ConstValue::Number(_) => 8,
        ConstValue::String(s) => s.len() + 2,
        ConstValue::Enum(n) => n.len() + 2,
        ConstValue::Binary(b) => b.len() * 4 / 3 + 2,
        ConstValue::List(items) => 2 + items.iter().map(|i| json_size(i) + 1).sum::<usize>(),
        ConstValue::Object(map) => {
            2 + map
                .iter()
                .map(|(k, v)| k.len() + 4 + json_size(v))
                .sum::<usize>()
        }
    }
}

impl Exec {
    fn record(&self, err: &FieldError, path: &Path<'_>, pos: Pos) {
        self.error(err.to_server_error(path.to_vec(), pos, self.gw.options.debug_errors));
    }

    /// Whether the response already went past its cap: nothing more is worth doing.
    fn over_cap(&self) -> bool {
        self.too_large.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Counts `bytes` more of response data. `Err` once the response is past its cap; the
    /// first field past it gets the error.
    fn charge(&self, bytes: usize, path: &Path<'_>, pos: Pos) -> Result<(), Fail> {
        use std::sync::atomic::Ordering::Relaxed;
        let max = self.gw.options.max_response_bytes;
        let total = self.response_bytes.fetch_add(bytes, Relaxed) + bytes;
        if total <= max {
            return Ok(());
        }
        if !self.too_large.swap(true, Relaxed) {
            self.record(
                &FieldError::new(ErrorKind::ResponseTooLarge(max), None),
                path,
                pos,
            );
        }
        Err(Fail::Propagated)
    }

    /// Resolves one field of an object (merged from `entries`, all with one response key).
    pub(super) fn field<'a>(
        &'a self,
        field: &'a FieldDef,
        entries: &'a [&'a Entry],
        parent: &'a Json,
        origin: Option<&'a str>,
        path: &'a Path<'a>,
    ) -> BoxFuture<'a, Result<ConstValue, Propagate>> {
        async move {
            let entry = entries[0];
            let children: Vec<&Entry> = entries.iter().flat_map(|e| &e.children).collect();
            match &field.source {
                Source::Key(key) => {
                    let value = lookup(parent, key).unwrap_or(&NULL);
                    self.complete(&field.ty, value, origin, &children, path, entry.pos)
                        .await
                }
                Source::Rest(_) if self.over_cap() => Err(Propagate),
                Source::Rest(rest) => {
                    let origin = Some(rest.upstream_name.as_str());
                    // Pending as a batch producer until its answer has been expanded.
                    let producer = path.producer.map(|id| self.batcher.producer(id));
                    match self.fetch(rest, &entry.args, parent, path).await {
                        Ok(body) => {
                            let value = if rest.batch.is_some() {
                                &*body
                            } else {
                                lookup(&body, &rest.select).unwrap_or(&NULL)
                            };
                            let completion =
                                self.complete(&field.ty, value, origin, &children, path, entry.pos);
                            // One poll starts every call and adds every batch key below
                            // (none awaits before that); then this field produces no more.
                            let mut completion = std::pin::pin!(completion);
                            let first = futures::poll!(completion.as_mut());
                            drop(producer);
                            match first {
                                std::task::Poll::Ready(v) => v,
                                std::task::Poll::Pending => completion.await,
                            }
                        }
                        Err(e)
                            if e.kind == ErrorKind::Http(404) && self.single_object(&field.ty) =>
                        {
                            Ok(ConstValue::Null)
                        }
                        Err(e) => {
                            self.record(&e, path, entry.pos);
                            if field.ty.nullable {
                                Ok(ConstValue::Null)
                            } else {
                                Err(Propagate)
                            }
                        }
                    }
                }
            }
        }
        .boxed()
    }

    /// A nullable field of one object (not a list, not a scalar): a 404 there means "none".
    fn single_object(&self, ty: &Type) -> bool {
        match &ty.base {
            BaseType::Named(n) => {
                ty.nullable
                    && matches!(
                        self.gw.bindings.types.get(n.as_str()).map(|t| &t.kind),
                        Some(TypeKind::Object(_) | TypeKind::Interface(_) | TypeKind::Union(_))
                    )
            }
            BaseType::List(_) => false,
        }
    }

    fn complete<'a>(
        &'a self,
        ty: &'a Type,
        json: &'a Json,
        origin: Option<&'a str>,
        sel: &'a [&'a Entry],
        path: &'a Path<'a>,
        pos: Pos,
    ) -> BoxFuture<'a, Result<ConstValue, Propagate>> {
        async move {
            let result = self
                .complete_inner(&ty.base, json, origin, sel, path, pos)
                .await;
            self.settle(ty, result, origin, path, pos)
        }
        .boxed()
    }

    /// A completed value at a position of type `ty`: a null where `ty` is non-null, or a
    /// failure, is recorded here and makes the position null or propagates.
    fn settle(
        &self,
        ty: &Type,
        result: Result<ConstValue, Fail>,
        origin: Option<&str>,
        path: &Path<'_>,
        pos: Pos,
    ) -> Result<ConstValue, Propagate> {
        let fail = match result {
            Ok(ConstValue::Null) if !ty.nullable => Fail::Error(FieldError::bad_response(
                origin,
                "a non-null field has no value",
            )),
            Ok(v) => return Ok(v),
            Err(f) => f,
        };
        if let Fail::Error(e) = fail {
            self.record(&e, path, pos);
        }
        if ty.nullable {
            Ok(ConstValue::Null)
        } else {
            Err(Propagate)
        }
    }

    /// Whether values of `ty` are leaves (scalars and enums, or lists of them), which
    /// [`Exec::complete_leaf`] completes without a future.
    fn is_leaf(&self, ty: &Type) -> bool {
        let name = plan::named(ty);
        coerce::is_builtin(name)
            || matches!(
                self.gw.bindings.types.get(name).map(|t| &t.kind),
                Some(TypeKind::Scalar | TypeKind::Enum(_))
            )
    }

    /// [`Exec::complete`] for a leaf type (see [`Exec::is_leaf`]), synchronously: most fields
    /// of an object are leaves, and a future per leaf was a large part of a query's cost.
    fn complete_leaf(
        &self,
        ty: &Type,
        json: &Json,
        origin: Option<&str>,
        path: &Path<'_>,
        pos: Pos,
    ) -> Result<ConstValue, Propagate> {
        let bad = |why: String| Fail::Error(FieldError::bad_response(origin, why));
        let result = match (&ty.base, json) {
            (_, Json::Null) => Ok(ConstValue::Null),
            (BaseType::List(item), Json::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| self.complete_leaf(item, v, origin, &path.index(i), pos))
                // Every item is completed (and its errors recorded) before the list fails.
                .collect::<Vec<_>>()
                .into_iter()
                .collect::<Result<Vec<_>, _>>()
                .map(ConstValue::List)
                .map_err(|_| Fail::Propagated),
            (BaseType::List(_), other) => {
                Err(bad(format!("expected a list, got {}", coerce::kind(other))))
            }
            (BaseType::Named(name), json) => match coerce::builtin(name, json) {
                Some(r) => r.map_err(bad),
                None => match self.gw.bindings.types.get(name.as_str()).map(|t| &t.kind) {
                    Some(TypeKind::Scalar) => Ok(coerce::custom(json)),
                    Some(TypeKind::Enum(values)) => {
                        coerce::enumeration(name, values.iter().map(|v| v.name.as_str()), json)
                            .map_err(bad)
                    }
                    _ => Err(bad(format!("{name} is not a scalar or enum type"))),
                },
            },
        };
        self.settle(ty, result, origin, path, pos)
    }

    async fn complete_inner(
        &self,
        base: &BaseType,
        json: &Json,
        origin: Option<&str>,
        sel: &[&Entry],
        path: &Path<'_>,
        pos: Pos,
    ) -> Result<ConstValue, Fail> {
        let bad = |why: String| Fail::Error(FieldError::bad_response(origin, why));
        if json.is_null() {
            return Ok(ConstValue::Null);
        }
        let name = match base {
            BaseType::List(item) => {
                let Json::Array(items) = json else {
                    return Err(bad(format!("expected a list, got {}", coerce::kind(json))));
                };
                if self.is_leaf(item) {
                    let values: Vec<_> = items
                        .iter()
                        .enumerate()
                        .map(|(i, v)| self.complete_leaf(item, v, origin, &path.index(i), pos))
                        .collect();
                    let list = values
                        .into_iter()
                        .collect::<Result<Vec<_>, _>>()
                        .map(ConstValue::List)
                        .map_err(|_| Fail::Propagated)?;
                    self.charge(json_size(&list), path, pos)?;
                    return Ok(list);
                }
                let values = join_all(items.iter().enumerate().map(|(i, v)| async move {
                    let p = path.index(i);
                    self.complete(item, v, origin, sel, &p, pos).await
                }))
                .await;
                return values
                    .into_iter()
                    .collect::<Result<Vec<_>, _>>()
                    .map(ConstValue::List)
                    .map_err(|_| Fail::Propagated);
            }
            BaseType::Named(name) => name.as_str(),
        };
        let leaf = |value: Result<ConstValue, String>| {
            let value = value.map_err(bad)?;
            self.charge(json_size(&value), path, pos)?;
            Ok(value)
        };
        if let Some(r) = coerce::builtin(name, json) {
            return leaf(r);
        }
        let bindings = &self.gw.bindings;
        let Some(def) = bindings.types.get(name) else {
            return Err(bad(format!("unknown type {name}")));
        };
        match &def.kind {
            TypeKind::Scalar => leaf(Ok(coerce::custom(json))),
            TypeKind::Enum(values) => leaf(coerce::enumeration(
                name,
                values.iter().map(|v| v.name.as_str()),
                json,
            )),
            TypeKind::Object(_) => self.object(name, json, origin, sel, path, pos).await,
            TypeKind::Interface(_) | TypeKind::Union(_) => {
                let possible = bindings.possible_types(name);
                let concrete = match json.get("__typename") {
                    Some(Json::String(t)) if possible.contains(&t.as_str()) => t.as_str(),
                    Some(Json::String(t)) => {
                        return Err(bad(format!(
                            "`__typename` {t:?} is not a possible type of {name}"
                        )));
                    }
                    _ if possible.len() == 1 => possible[0],
                    _ => return Err(bad(format!("an item of {name} has no `__typename`"))),
                };
                self.object(concrete, json, origin, sel, path, pos).await
            }
            TypeKind::InputObject(_) => Err(bad(format!("{name} is an input type"))),
        }
    }

    async fn object(
        &self,
        type_name: &str,
        json: &Json,
        origin: Option<&str>,
        sel: &[&Entry],
        path: &Path<'_>,
        pos: Pos,
    ) -> Result<ConstValue, Fail> {
        if self.over_cap() {
            return Err(Fail::Propagated);
        }
        let obj =
            (self.gw.bindings.object(type_name)).expect("only object types are completed here");
        if !json.is_object() {
            let why = format!(
                "expected an object for {type_name}, got {}",
                coerce::kind(json)
            );
            return Err(Fail::Error(FieldError::bad_response(origin, why)));
        }
        let groups = plan::group(&self.gw.bindings, sel, type_name);
        // Leaves now; fields that fetch or hold objects concurrently, below.
        let ready: Vec<Option<Result<ConstValue, Propagate>>> = groups
            .iter()
            .map(|(key, entries)| {
                let name = entries[0].name.as_str();
                if name == "__typename" {
                    return Some(Ok(ConstValue::String(type_name.to_owned())));
                }
                let Some(field) = obj.fields.get(name) else {
                    return Some(Ok(ConstValue::Null));
                };
                match &field.source {
                    Source::Key(k) if self.is_leaf(&field.ty) => {
                        let value = lookup(json, k).unwrap_or(&NULL);
                        let p = path.key(key, None);
                        Some(self.complete_leaf(&field.ty, value, origin, &p, entries[0].pos))
                    }
                    _ => None,
                }
            })
            .collect();
        let pending = join_all(groups.iter().zip(&ready).filter(|(_, r)| r.is_none()).map(
            |((key, entries), _)| async move {
                let field = &obj.fields[entries[0].name.as_str()];
                let p = path.key(key, producer(field, entries));
                self.field(field, entries, json, origin, &p).await
            },
        ))
        .await;
        let mut pending = pending.into_iter();
        let mut out = IndexMap::with_capacity(groups.len());
        // Braces, keys and leaves here; fields below charged their own values.
        let mut bytes = 2;
        for ((key, _), value) in groups.iter().zip(ready) {
            bytes += key.len() + 4;
            let value = match value {
                Some(leaf) => {
                    if let Ok(v) = &leaf {
                        bytes += json_size(v);
                    }
                    leaf
                }
                None => pending.next().expect("one value per field"),
            };
            out.insert(Name::new(key), value.map_err(|_| Fail::Propagated)?);
        }
        self.charge(bytes, path, pos)?;
        Ok(ConstValue::Object(out))
    }

    /// Calls the upstream for a `@rest` field, within the field's deadline.
    async fn fetch(
        &self,
        rest: &RestBinding,
        args: &Map<String, Json>,
        parent: &Json,
        path: &Path<'_>,
    ) -> Result<Arc<Json>, FieldError> {
        let up = &self.gw.bindings.upstreams[rest.upstream];
        let scope = Scope {
            args,
            parent,
            keys: None,
        };
        let deadline = (Instant::now() + rest.timeout).min(self.deadline);
        let timeout = || {
            let after = rest.timeout.min(self.gw.options.request_timeout);
            FieldError::new(ErrorKind::Timeout(after), Some(&up.name))
        };
        let Some(batch) = &rest.batch else {
            let Some(mut spec) = self.render(rest, scope)? else {
                return Ok(Arc::new(Json::Null));
            };
            spec.deadline = Some(deadline);
            return timeout_at(deadline, self.calls.call(spec))
                .await
                .map_err(|_| timeout())?;
        };
        let id = path.producer.expect("a @rest field's position names it");
        let group = if rest.reads_parent {
            self.batch_group(rest, scope)
        } else {
            let make = || self.batch_group(rest, scope);
            self.batcher.group(id, || path.producers(), make)
        };
        let Some(group) = group? else {
            return Ok(Arc::new(Json::Null));
        };
        let load = |k: &Json| {
            let key = BatchKey::new(group.clone(), k);
            async move {
                match key {
                    Some(k) => self.batcher.load(id, || path.producers(), k).await,
                    None => Ok(None),
                }
            }
        };
        let load = async {
            match batch.key.render_json(scope) {
                Json::Array(keys) => {
                    let items = join_all(keys.iter().map(load)).await;
                    let mut out = Vec::with_capacity(items.len());
                    for item in items {
                        out.push(item?.map(|i| (*i).clone()).unwrap_or(Json::Null));
                    }
                    Ok(Arc::new(Json::Array(out)))
                }
                single => Ok(load(&single).await?.unwrap_or_else(|| Arc::new(Json::Null))),
            }
        };
        timeout_at(deadline, load).await.map_err(|_| timeout())?
    }

    fn render(
        &self,
        rest: &RestBinding,
        scope: Scope<'_>,
    ) -> Result<Option<upstream::CallSpec>, FieldError> {
        let up = &self.gw.bindings.upstreams[rest.upstream];
        let runtime = &self.gw.upstreams[rest.upstream];
        upstream::render(up, runtime, rest, scope, &self.client_headers)
    }

    /// A batch field's request but for its keys; `None` when a path expression is null
    /// (there is nothing to fetch).
    fn batch_group(&self, rest: &RestBinding, scope: Scope<'_>) -> GroupResult {
        let Some(spec) = self.render(rest, scope)? else {
            return Ok(None);
        };
        let batch = rest.batch.as_ref().expect("a batch field");
        let mut id = spec.dedup_key();
        id.push('\n');
        id.push_str(&serde_json::to_string(scope.args).unwrap_or_default());
        Ok(Some(Arc::new(BatchGroup {
            id,
            field: Arc::from(rest.field.as_str()),
            spec,
            query_param: batch.query.clone(),
            body: rest.body.clone().map(|b| (b, scope.args.clone())),
            select: rest.select.clone(),
            match_path: batch.match_path.clone(),
            max_size: batch.max_size,
            timeout: rest.timeout,
        })))
    }
}
