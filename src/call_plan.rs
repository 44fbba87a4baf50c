//! `fanout plan` and the `x-fanout-plan: 1` header: the upstream calls a query will make,
//! level by level, without making any.
//!
//! The query is validated by the engine exactly as for serving, then planned by
//! [`resolve::plan`](crate::resolve::plan) (variables, defaults, `@skip`/`@include`,
//! fragments). Each `@rest` field in it is a call: its level is one more than its nearest
//! `@rest` ancestor's, since it needs that answer; a batch field's keys go out when all its
//! `@rest` ancestors have answered, which is the same level. Values known from the query fill
//! the path; values only the parent's JSON will tell stay `{parent...}`. A call identical to an
//! earlier GET is made once; one that could be, depending on what a parent holds, says when.
//! The critical path is the deepest chain of levels, and the sum of its timeouts bounds it.

use std::fmt::Write;

use async_graphql::{
    Request, Response, Value as ConstValue,
    parser::types::{BaseType, DocumentOperations, OperationType},
};
use indexmap::IndexMap;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde::Serialize;
use serde_json::{Map, Value as Json};

use crate::{
    gateway::Gateway,
    resolve::plan::{Entry, Planner, named},
    sdl::{
        Bindings, FieldDef, RestBinding, Source, TypeKind,
        template::{Part, Root, Scope, Template},
    },
};

/// Encoded in a path segment as the executor encodes it.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// The calls of one operation.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Plan {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// `query` or `mutation`.
    pub kind: &'static str,
    pub levels: Vec<Level>,
    pub critical_path: CriticalPath,
    /// Nothing was called to make this plan.
    pub called: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Level {
    pub level: usize,
    pub calls: Vec<Call>,
}

/// One upstream call (or, under a list, one per item; or one batch).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Call {
    /// The response path of the field, `user.team.lead`.
    pub field: String,
    /// The schema field with the `@rest`, `Team.lead`.
    pub binding: String,
    pub upstream: String,
    pub method: String,
    /// Path and query, with the values the query gives filled in.
    pub path: String,
    pub timeout_ms: u64,
    /// The call whose answer it needs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub after: Option<String>,
    /// Made once per item of this list (identical ones once).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub per_item_of: Option<String>,
    /// Made only for objects of this type (a fragment's type condition).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub only_on: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub batch: Option<Batch>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deduplicated: Option<Dedup>,
    /// Why no call is made at all (a null path argument).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_call: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<Json>,
    #[serde(skip)]
    level: usize,
    #[serde(skip)]
    parent: Option<usize>,
    #[serde(skip)]
    timeout: std::time::Duration,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Batch {
    /// The batch field, `Order.product`.
    pub field: String,
    /// Where each key comes from, `{parent.productId}`.
    pub key: String,
    /// The objects the keys are read from.
    pub keys_from: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    #[serde(rename = "match")]
    pub match_path: String,
    pub max_size: usize,
    /// The calls that must all have answered before the keys go out.
    pub producers: Vec<String>,
}

#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Dedup {
    /// The earlier call it shares.
    pub with: String,
    /// When it does; absent: always (the two are identical).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
}

#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CriticalPath {
    /// Response paths of the chain, root first.
    pub fields: Vec<String>,
    pub levels: usize,
    /// The sum of the chain's timeouts.
    pub timeout_sum_ms: u64,
    /// What bounds it: the sum, or the request's deadline when that is shorter.
    pub bound_ms: u64,
    pub request_timeout_ms: u64,
}

/// The plan of `request`, or the engine's answer when the request is refused (a parse or
/// validation error, a limit): the same refusal serving would give.
pub async fn plan(gw: &Gateway, request: Request) -> Result<Plan, Box<Response>> {
    let query = request.query.clone();
    let operation_name = request.operation_name.clone();
    let variables = request.variables.clone();
    // Without Fanout's per-request state every root resolver fails at once, with this
    // error: the engine validates and applies every limit, and no upstream is called.
    let no_exec = format!(
        "Data `{}` does not exist.",
        std::any::type_name::<std::sync::Arc<crate::resolve::Exec>>()
    );
    let mut checked = gw.schema.execute(request).await;
    checked.errors.retain(|e| e.message != no_exec);
    checked
        .errors
        .iter_mut()
        .for_each(crate::schema::limits::classify);
    if !checked.errors.is_empty() {
        checked.data = ConstValue::Null;
        return Err(Box::new(checked));
    }
    let doc = async_graphql::parser::parse_query(&query).map_err(|e| {
        Box::new(Response::from_errors(vec![
            async_graphql::ServerError::new(e.to_string(), None),
        ]))
    })?;
    let op = match (&doc.operations, &operation_name) {
        (DocumentOperations::Single(op), _) => op,
        (DocumentOperations::Multiple(ops), Some(name)) => ops
            .get(name.as_str())
            .expect("the engine checked the operation name"),
        (DocumentOperations::Multiple(ops), None) => ops
            .values()
            .next()
            .expect("the engine checked there is one"),
    };
    let bindings = &gw.bindings;
    let (kind, root) = match op.node.ty {
        OperationType::Mutation => (
            "mutation",
            bindings
                .mutation
                .clone()
                .unwrap_or_else(|| "Mutation".into()),
        ),
        _ => ("query", bindings.query.clone()),
    };
    let planner = Planner {
        bindings,
        operation: &op.node,
        fragments: &doc.fragments,
        variables: &variables,
    };
    let roots = planner.roots(&root);
    let mut walk = Walk {
        bindings,
        calls: Vec::new(),
    };
    for entries in roots.values() {
        let refs: Vec<&Entry> = entries.iter().collect();
        // Root mutation fields run one after another: each starts after the one before it
        // has finished, its calls below it included.
        let base = if kind == "mutation" {
            walk.calls.iter().map(|c| c.level).max().unwrap_or(0)
        } else {
            0
        };
        let ctx = Ctx {
            path: String::new(),
            level: base,
            parent: None,
            list: None,
            producers: Vec::new(),
        };
        walk.fields(&root, &refs, &ctx);
    }
    let request_timeout = gw.options.request_timeout;
    let critical = critical_path(&walk.calls, request_timeout);
    let mut levels: Vec<Level> = Vec::new();
    for call in &walk.calls {
        match levels.iter_mut().find(|l| l.level == call.level) {
            Some(l) => l.calls.push(call.clone()),
            None => levels.push(Level {
                level: call.level,
                calls: vec![call.clone()],
            }),
        }
    }
    levels.sort_by_key(|l| l.level);
    Ok(Plan {
        operation: operation_name.or_else(|| match &doc.operations {
            DocumentOperations::Multiple(ops) => ops.keys().next().map(|n| n.to_string()),
            DocumentOperations::Single(_) => None,
        }),
        kind,
        levels,
        critical_path: critical,
        called: false,
    })
}

/// Where a field sits: its parent's response path, the level and index of the nearest
/// `@rest` ancestor's call, the nearest list above, and every `@rest` ancestor's call.
struct Ctx {
    path: String,
    level: usize,
    parent: Option<usize>,
    list: Option<String>,
    producers: Vec<usize>,
}

struct Walk<'b> {
    bindings: &'b Bindings,
    calls: Vec<Call>,
}

impl<'b> Walk<'b> {
    fn fields(&mut self, type_name: &str, entries: &[&Entry], ctx: &Ctx) {
        let mut groups: IndexMap<&str, Vec<&Entry>> = IndexMap::new();
        for e in entries {
            groups.entry(e.key.as_str()).or_default().push(e);
        }
        for (key, group) in groups {
            if group[0].name == "__typename" {
                continue;
            }
            let children: Vec<&Entry> = group.iter().flat_map(|e| &e.children).collect();
            let path = if ctx.path.is_empty() {
                key.to_owned()
            } else {
                format!("{}.{key}", ctx.path)
            };
            for (only_on, def) in self.definitions(type_name, &group) {
                let item = named(&def.ty).to_owned();
                let list = matches!(def.ty.base, BaseType::List(_));
                match &def.source {
                    Source::Key(_) => {
                        let inner = Ctx {
                            path: path.clone(),
                            level: ctx.level,
                            parent: ctx.parent,
                            list: if list {
                                Some(path.clone())
                            } else {
                                ctx.list.clone()
                            },
                            producers: ctx.producers.clone(),
                        };
                        self.fields(&item, &children, &inner);
                    }
                    Source::Rest(rest) => {
                        let index = self.call(rest, &group[0].args, ctx, &path, only_on);
                        let mut producers = ctx.producers.clone();
                        producers.push(index);
                        let inner = Ctx {
                            path: path.clone(),
                            level: ctx.level + 1,
                            parent: Some(index),
                            list: list.then(|| path.clone()),
                            producers,
                        };
                        self.fields(&item, &children, &inner);
                    }
                }
            }
        }
    }

    /// The definitions a merged field can have: one on an object type; on an abstract type,
    /// one per possible object type that declares it (`@rest` lives on object types only).
    fn definitions(
        &self,
        type_name: &str,
        group: &[&Entry],
    ) -> Vec<(Option<String>, &'b FieldDef)> {
        let bindings: &'b Bindings = self.bindings;
        let name = group[0].name.as_str();
        let mut owners: Vec<&str> = Vec::new();
        for e in group {
            let owner = e.conditions.last().map_or(type_name, String::as_str);
            if !owners.contains(&owner) {
                owners.push(owner);
            }
        }
        let mut out: Vec<(Option<String>, &'b FieldDef)> = Vec::new();
        for owner in owners {
            let abstract_owner = !matches!(
                bindings.types.get(owner).map(|t| &t.kind),
                Some(TypeKind::Object(_))
            );
            let objects = if abstract_owner {
                bindings.possible_types(owner)
            } else {
                vec![owner]
            };
            for object in objects {
                let Some(def) = bindings.object(object).and_then(|o| o.fields.get(name)) else {
                    continue;
                };
                let only_on = (object != type_name || abstract_owner).then(|| object.to_owned());
                let seen = out.iter().any(|(_, d)| std::ptr::eq(*d, def));
                if !seen {
                    out.push((only_on, def));
                }
            }
        }
        out
    }

    fn call(
        &mut self,
        rest: &RestBinding,
        args: &Map<String, Json>,
        ctx: &Ctx,
        path: &str,
        only_on: Option<String>,
    ) -> usize {
        let scope = Scope {
            args,
            parent: &Json::Null,
            keys: None,
        };
        let (mut url, no_call) = render_path(&rest.path, scope);
        let mut params = Vec::new();
        for q in &rest.query {
            if reads_parent(&q.value) {
                params.push(format!("{}={}", encode(&q.name), placeholders(&q.value)));
                continue;
            }
            match q.value.render_json(scope) {
                Json::Null => {}
                Json::Array(items) => {
                    let items: Vec<String> =
                        items.iter().filter(|i| !i.is_null()).map(text).collect();
                    match &q.join {
                        Some(sep) => params.push(format!(
                            "{}={}",
                            encode(&q.name),
                            items
                                .iter()
                                .map(|i| encode(i))
                                .collect::<Vec<_>>()
                                .join(&encode_sep(sep))
                        )),
                        None => params.extend(
                            items
                                .iter()
                                .map(|i| format!("{}={}", encode(&q.name), encode(i))),
                        ),
                    }
                }
                v => params.push(format!("{}={}", encode(&q.name), encode(&text(&v)))),
            }
        }
        if let Some(b) = &rest.batch
            && let Some(q) = &b.query
        {
            params.push(format!("{}={{keys}}", encode(q)));
        }
        if !params.is_empty() {
            url.push('?');
            url.push_str(&params.join("&"));
        }
        let batch = rest.batch.as_ref().map(|b| Batch {
            field: rest.field.clone(),
            key: placeholders(&b.key),
            keys_from: ctx.path.clone(),
            query: b.query.clone(),
            match_path: b.match_path.join("."),
            max_size: b.max_size,
            producers: ctx
                .producers
                .iter()
                .map(|i| self.calls[*i].field.clone())
                .collect(),
        });
        let body = rest
            .body
            .as_ref()
            .filter(|b| !reads_parent(b) && !b.exprs().any(|e| e.root == Root::BatchKeys))
            .map(|b| b.render_json(scope));
        let mut call = Call {
            field: path.to_owned(),
            binding: rest.field.clone(),
            upstream: rest.upstream_name.clone(),
            method: rest.method.to_string(),
            path: url,
            timeout_ms: rest.timeout.as_millis() as u64,
            after: ctx.parent.map(|i| self.calls[i].field.clone()),
            per_item_of: if batch.is_none() {
                ctx.list.clone()
            } else {
                None
            },
            only_on,
            batch,
            deduplicated: None,
            no_call,
            body,
            level: ctx.level + 1,
            parent: ctx.parent,
            timeout: rest.timeout,
        };
        call.deduplicated = self.dedup(&call);
        self.calls.push(call);
        self.calls.len() - 1
    }

    /// The earlier call this one shares, if it can: identical GETs are made once.
    fn dedup(&self, call: &Call) -> Option<Dedup> {
        if call.method != "GET" || call.no_call.is_some() {
            return None;
        }
        for earlier in &self.calls {
            if earlier.upstream != call.upstream
                || earlier.method != call.method
                || earlier.no_call.is_some()
                || earlier.batch.is_some() != call.batch.is_some()
            {
                continue;
            }
            if call.batch.is_some() {
                if earlier.binding == call.binding && earlier.path == call.path {
                    return Some(Dedup {
                        with: earlier.field.clone(),
                        when: Some("a key both ask for is loaded once".into()),
                    });
                }
                continue;
            }
            if earlier.path == call.path && !call.path.contains('{') {
                return Some(Dedup {
                    with: earlier.field.clone(),
                    when: None,
                });
            }
            if call.path.contains("{parent.")
                && !earlier.path.contains('{')
                && let Some(bound) = matches(&call.path, &earlier.path)
            {
                let when: Vec<String> = bound
                    .iter()
                    .map(|(expr, v)| format!("{expr} is {v}"))
                    .collect();
                return Some(Dedup {
                    with: earlier.field.clone(),
                    when: Some(when.join(" and ")),
                });
            }
        }
        None
    }
}

/// The path with known arguments encoded in, `{parent...}` kept; and why there is no call
/// when a path argument is null.
fn render_path(t: &Template, scope: Scope<'_>) -> (String, Option<String>) {
    let mut out = String::new();
    let mut no_call = None;
    for part in &t.parts {
        match part {
            Part::Lit(s) => out.push_str(s),
            Part::Expr(e) if e.root == Root::Args => match scope.get(e) {
                None | Some(Json::Null) => {
                    let expr = format!("{{args.{}}}", e.path.join("."));
                    no_call = Some(format!("{expr} is null: the field is null without a call"));
                    out.push_str(&expr);
                }
                Some(v) => out.extend(utf8_percent_encode(&text(v), SEGMENT)),
            },
            Part::Expr(e) => out.push_str(&expr_text(e)),
        }
    }
    (out, no_call)
}

fn expr_text(e: &crate::sdl::template::Expr) -> String {
    match e.root {
        Root::Args => format!("{{args.{}}}", e.path.join(".")),
        Root::Parent => format!("{{parent.{}}}", e.path.join(".")),
        Root::BatchKeys => "{batch.keys}".into(),
    }
}

/// A template's text with every expression as written.
fn placeholders(t: &Template) -> String {
    t.parts
        .iter()
        .map(|p| match p {
            Part::Lit(s) => s.clone(),
            Part::Expr(e) => expr_text(e),
        })
        .collect()
}

fn reads_parent(t: &Template) -> bool {
    t.exprs().any(|e| e.root == Root::Parent)
}

fn text(v: &Json) -> String {
    let mut s = String::new();
    crate::sdl::template::push_text(&mut s, v);
    s
}

fn encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn encode_sep(sep: &str) -> String {
    if sep == "," { ",".into() } else { encode(sep) }
}

/// Whether `pattern` (a path with `{parent...}` placeholders) can be `concrete`, and the
/// value each placeholder then has. A placeholder stands for one segment or value.
fn matches(pattern: &str, concrete: &str) -> Option<Vec<(String, String)>> {
    fn go(p: &str, c: &str, out: &mut Vec<(String, String)>) -> bool {
        if p.is_empty() {
            return c.is_empty();
        }
        if let Some(rest) = p.strip_prefix("{parent.") {
            let Some(close) = rest.find('}') else {
                return false;
            };
            let expr = format!("parent.{}", &rest[..close]);
            let after = &rest[close + 1..];
            let end = c.find(['/', '?', '&']).unwrap_or(c.len());
            for cut in (1..=end).rev() {
                out.push((expr.clone(), c[..cut].to_owned()));
                if go(after, &c[cut..], out) {
                    return true;
                }
                out.pop();
            }
            return false;
        }
        let (pc, cc) = (p.chars().next(), c.chars().next());
        match (pc, cc) {
            (Some(a), Some(b)) if a == b => go(&p[a.len_utf8()..], &c[b.len_utf8()..], out),
            _ => false,
        }
    }
    let mut out = Vec::new();
    go(pattern, concrete, &mut out).then(|| {
        out.into_iter()
            .map(|(e, v)| {
                let decoded = percent_encoding::percent_decode_str(&v)
                    .decode_utf8_lossy()
                    .into_owned();
                (e, serde_json::to_string(&decoded).unwrap_or(decoded))
            })
            .collect()
    })
}

/// The deepest chain of calls, and of those the one with the largest sum of timeouts.
fn critical_path(calls: &[Call], request_timeout: std::time::Duration) -> CriticalPath {
    let chain = |mut i: usize| {
        let mut out = vec![i];
        while let Some(p) = calls[i].parent {
            out.push(p);
            i = p;
        }
        out.reverse();
        out
    };
    let mut best: Option<(usize, std::time::Duration, Vec<usize>)> = None;
    for i in 0..calls.len() {
        if calls[i].no_call.is_some() {
            continue;
        }
        let c = chain(i);
        let sum: std::time::Duration = c.iter().map(|j| calls[*j].timeout).sum();
        let depth = calls[i].level;
        if best
            .as_ref()
            .is_none_or(|(d, s, _)| (depth, sum) > (*d, *s))
        {
            best = Some((depth, sum, c));
        }
    }
    let request_ms = request_timeout.as_millis() as u64;
    let Some((levels, sum, chain)) = best else {
        return CriticalPath {
            request_timeout_ms: request_ms,
            ..CriticalPath::default()
        };
    };
    let sum_ms = sum.as_millis() as u64;
    CriticalPath {
        fields: chain.iter().map(|i| calls[*i].field.clone()).collect(),
        levels,
        timeout_sum_ms: sum_ms,
        bound_ms: sum_ms.min(request_ms),
        request_timeout_ms: request_ms,
    }
}

/// The `x-fanout-plan: 1` answer: no data, the plan in `extensions.fanoutPlan`; or the
/// request's refusal, as serving would answer it.
pub async fn respond(gw: &Gateway, request: Request) -> Response {
    match plan(gw, request).await {
        Ok(plan) => {
            let value = serde_json::to_value(&plan).expect("a plan always serializes");
            let mut resp = Response::new(ConstValue::Null);
            resp.extensions.insert(
                "fanoutPlan".to_owned(),
                ConstValue::from_json(value).unwrap_or_default(),
            );
            resp
        }
        Err(refused) => *refused,
    }
}

fn ms(ms: u64) -> String {
    if ms >= 1000 && ms.is_multiple_of(100) {
        format!("{}s", ms as f64 / 1000.0)
    } else {
        format!("{ms}ms")
    }
}

/// The plan for a terminal.
pub fn to_text(plan: &Plan) -> String {
    let mut out = String::new();
    let all: Vec<&Call> = plan.levels.iter().flat_map(|l| &l.calls).collect();
    let name = plan
        .operation
        .as_deref()
        .map(|n| format!(" {n}"))
        .unwrap_or_default();
    let shared = all.iter().filter(|c| c.deduplicated.is_some()).count();
    let shared = match shared {
        0 => String::new(),
        n => format!(", {n} of them possibly shared with an earlier one"),
    };
    let _ = writeln!(
        out,
        "{}{name}: {} call(s) in {} level(s){shared}; nothing was called to plan it",
        plan.kind,
        all.len(),
        plan.levels.len()
    );
    let width = |f: fn(&Call) -> usize| all.iter().map(|c| f(c)).max().unwrap_or(0);
    let (wf, wm, wu, wp) = (
        width(|c| c.field.len()),
        width(|c| c.method.len()),
        width(|c| c.upstream.len()),
        width(|c| c.path.len()),
    );
    let pad = " ".repeat(wf + 4);
    for level in &plan.levels {
        let _ = writeln!(out, "\nlevel {}", level.level);
        for c in &level.calls {
            let after = c
                .after
                .as_ref()
                .map(|a| format!("  after {a}"))
                .unwrap_or_default();
            let line = format!(
                "  {:wf$}  {:wm$}  {:wu$}  {:wp$}  {:>6}{after}",
                c.field,
                c.method,
                c.upstream,
                c.path,
                ms(c.timeout_ms)
            );
            let _ = writeln!(out, "{}", line.trim_end());
            let mut notes = Vec::new();
            if let Some(t) = &c.only_on {
                notes.push(format!("only for a {t}"));
            }
            if let Some(list) = &c.per_item_of {
                notes.push(format!(
                    "one per item of {list}; identical ones are made once"
                ));
            }
            if let Some(b) = &c.batch {
                let from = if b.keys_from.is_empty() {
                    "each parent".to_owned()
                } else {
                    format!("each {} item", b.keys_from)
                };
                let mut n = format!(
                    "batch {}: key {} of {from}, up to {} keys a call, matched by {}",
                    b.field, b.key, b.max_size, b.match_path
                );
                if !b.producers.is_empty() {
                    let _ = write!(n, "; sent when {} have answered", b.producers.join(" and "));
                }
                notes.push(n);
            }
            if let Some(d) = &c.deduplicated {
                notes.push(match &d.when {
                    Some(w) => format!("deduplicated with {} when {w}", d.with),
                    None => format!("deduplicated: the same call as {}", d.with),
                });
            }
            if let Some(n) = &c.no_call {
                notes.push(format!("no call: {n}"));
            }
            for n in notes {
                let _ = writeln!(out, "{pad}{n}");
            }
        }
    }
    let cp = &plan.critical_path;
    if !cp.fields.is_empty() {
        let bound = if cp.bound_ms < cp.timeout_sum_ms {
            format!(
                "{} (the request timeout; its timeouts add up to {})",
                ms(cp.bound_ms),
                ms(cp.timeout_sum_ms)
            )
        } else {
            format!("{} (the sum of its timeouts)", ms(cp.bound_ms))
        };
        let _ = writeln!(
            out,
            "\ncritical path: {}: {} level(s), at most {bound}",
            cp.fields.join(" -> "),
            cp.levels
        );
    }
    out
}
