//! Reading `schema.graphql` into [`Bindings`], collecting every problem on the way.

use std::{collections::HashSet, sync::Arc, time::Duration};

use async_graphql::{
    Name, Value as ConstValue,
    parser::{
        Positioned, parse_schema,
        types::{
            BaseType, ConstDirective, FieldDefinition, InputValueDefinition, Type, TypeDefinition,
            TypeKind as AstKind, TypeSystemDefinition,
        },
    },
};
use http::HeaderName;
use indexmap::IndexMap;
use reqwest::Method;

use super::{
    BatchSpec, Bindings, Diagnostic, EnumValueDef, FieldDef, HeaderRule, InputValueDef, ObjectDef,
    QueryParam, RestBinding, Source, TypeDef, TypeKind, Upstream,
    template::{Root, Template},
};

/// What loading needs from outside the file.
pub struct LoadOptions<'a> {
    /// A field's deadline when neither it nor its upstream sets `timeout`.
    pub default_timeout: Duration,
    /// How `{env.NAME}` is looked up (the process environment, or the demo's overrides).
    pub env: &'a (dyn Fn(&str) -> Option<String> + Sync),
}

/// Connections to one upstream at once, and idle ones kept: as many as are used in a burst,
/// so a burst's connections are reused by the next instead of closed and opened again.
const DEFAULT_MAX_CONNECTIONS: usize = 256;
const BUILTIN_SCALARS: [&str; 5] = ["Int", "Float", "String", "Boolean", "ID"];
const UPSTREAM_ARGS: &[&str] = &[
    "name",
    "baseUrl",
    "timeout",
    "headers",
    "maxBatchSize",
    "connectTimeout",
    "poolMaxIdle",
    "maxConnections",
    "maxResponseBytes",
    "maxResponseNodes",
    "retries",
    "coalesce",
    "breakerFailures",
    "breakerCooldown",
];
const REST_ARGS: &[&str] = &[
    "upstream", "method", "path", "query", "headers", "body", "select", "timeout", "batch",
];
const BATCH_ARGS: &[&str] = &["key", "query", "match", "maxSize"];
const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/// Parses and checks `source`. Returns the bindings only when no diagnostic is an error;
/// the diagnostics (warnings included) come back either way, in file order.
pub fn load(source: &str, opts: &LoadOptions<'_>) -> (Option<Bindings>, Vec<Diagnostic>) {
    let doc = match parse_schema(source) {
        Ok(doc) => doc,
        Err(err) => {
            let pos = err.positions().next().unwrap_or_default();
            // The parser's text is a source excerpt ending in `= expected <rule>`.
            let text = err.to_string();
            let expected = text
                .lines()
                .filter_map(|l| l.trim().strip_prefix("= "))
                .next_back()
                .map(|e| e.replace('_', " "));
            let message = match expected {
                Some(e) => format!("syntax error: unexpected input here ({e})"),
                None => "syntax error".to_owned(),
            };
            let diag = Diagnostic::error(pos.line, pos.column, message).hint(
                "fix the GraphQL syntax at this position, e.g. a missing `:`, `{` or `}` just before it",
            );
            return (None, vec![diag]);
        }
    };
    let mut ck = Checker {
        opts,
        diags: Vec::new(),
        upstreams: Vec::new(),
        declared: HashSet::new(),
    };
    let mut schema_defs = Vec::new();
    let mut type_defs: IndexMap<String, Vec<&Positioned<TypeDefinition>>> = IndexMap::new();
    for def in &doc.definitions {
        match def {
            TypeSystemDefinition::Schema(s) => schema_defs.push(s),
            TypeSystemDefinition::Type(t) => {
                let list = type_defs.entry(t.node.name.node.to_string()).or_default();
                if !t.node.extend && list.iter().any(|d| !d.node.extend) {
                    let p = t.node.name.pos;
                    ck.error(p, format!("type `{}` is defined twice", t.node.name.node))
                        .hint("merge the two definitions, or use `extend type`");
                }
                list.push(t);
            }
            TypeSystemDefinition::Directive(d) => {
                ck.declared.insert(d.node.name.node.to_string());
            }
        }
    }

    let mut query = None;
    let mut mutation = None;
    for s in &schema_defs {
        for dir in &s.node.directives {
            match dir.node.name.node.as_str() {
                "upstream" => ck.upstream(dir),
                other => ck.unknown_directive(dir, other, &["upstream"]),
            }
        }
        query = query.or(s.node.query.clone());
        mutation = mutation.or(s.node.mutation.clone());
        if let Some(sub) = &s.node.subscription {
            ck.error(sub.pos, "subscriptions are not supported by Fanout")
                .hint("remove the subscription root");
        }
    }
    // Without a schema definition the root types go by their names, `Subscription` too.
    if !schema_defs.iter().any(|s| !s.node.extend)
        && let Some(sub) = type_defs.get("Subscription")
    {
        ck.error(
            sub[0].pos,
            "type `Subscription` is the subscription root, and Fanout serves queries and \
             mutations only",
        )
        .hint("remove it; if it is an ordinary type, give it another name");
    }
    let query = query
        .map(|q| q.node.to_string())
        .unwrap_or_else(|| "Query".into());
    let mutation = mutation.map(|m| m.node.to_string()).or_else(|| {
        type_defs
            .contains_key("Mutation")
            .then(|| "Mutation".into())
    });

    let kinds: IndexMap<String, Kind> = type_defs
        .iter()
        .map(|(name, defs)| (name.clone(), Kind::of(&defs[0].node.kind)))
        .collect();
    let mut types = crate::FastIndexMap::default();
    for (name, defs) in &type_defs {
        let is_root = *name == query || Some(name) == mutation.as_ref();
        let def = ck.type_def(name, defs, &kinds, is_root);
        types.insert(name.clone(), def);
    }
    match kinds.get(&query) {
        Some(Kind::Object) => {}
        _ => {
            ck.diags.push(
                Diagnostic::error(
                    1,
                    1,
                    format!("the query root type `{query}` is not defined"),
                )
                .hint(format!(
                    "add `type {query} {{ ... }}` with at least one field"
                )),
            );
        }
    }
    let mut diags = ck.diags;
    diags.sort_by_key(|d| (d.line, d.column));
    if diags.iter().any(Diagnostic::is_error) {
        return (None, diags);
    }
    let bindings = Bindings {
        upstreams: ck.upstreams,
        types,
        query,
        mutation,
    };
    (Some(bindings), diags)
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Scalar,
    Object,
    Interface,
    Union,
    Enum,
    Input,
}

impl Kind {
    fn of(kind: &AstKind) -> Kind {
        match kind {
            AstKind::Scalar => Kind::Scalar,
            AstKind::Object(_) => Kind::Object,
            AstKind::Interface(_) => Kind::Interface,
            AstKind::Union(_) => Kind::Union,
            AstKind::Enum(_) => Kind::Enum,
            AstKind::InputObject(_) => Kind::Input,
        }
    }
}

struct Checker<'o, 'e> {
    opts: &'o LoadOptions<'e>,
    diags: Vec<Diagnostic>,
    upstreams: Vec<Upstream>,
    /// Directives the file declares itself: used freely, ignored by Fanout.
    declared: HashSet<String>,
}

/// A just-reported diagnostic, to attach its hint to.
struct Pending<'a>(&'a mut Diagnostic);

impl Pending<'_> {
    fn hint(self, hint: impl Into<String>) {
        self.0.hint = Some(hint.into());
    }
}

/// A field being checked: what its templates may refer to.
struct FieldCtx<'a> {
    type_name: &'a str,
    field: &'a FieldDefinition,
    is_root: bool,
}

impl Checker<'_, '_> {
    fn error(&mut self, pos: async_graphql::Pos, message: impl Into<String>) -> Pending<'_> {
        self.diags
            .push(Diagnostic::error(pos.line, pos.column, message));
        Pending(self.diags.last_mut().expect("just pushed"))
    }

    fn unknown_directive(&mut self, dir: &Positioned<ConstDirective>, name: &str, known: &[&str]) {
        if self.declared.contains(name) || name == "deprecated" {
            return;
        }
        let hint = match did_you_mean(name, known) {
            Some(s) => format!("did you mean `@{s}`?"),
            None if known.is_empty() => "Fanout's directives go on the schema and on fields; declare your own with `directive @NAME on ...`".to_owned(),
            None => format!("Fanout knows {} here", list(known, "@")),
        };
        self.error(dir.pos, format!("unknown directive `@{name}`"))
            .hint(hint);
    }

    /// The arguments of a directive or input object by name; unknown ones are reported.
    fn args<'d>(
        &mut self,
        what: &str,
        args: impl Iterator<Item = (&'d Positioned<Name>, &'d Positioned<ConstValue>)>,
        known: &[&str],
        pos: async_graphql::Pos,
        required: &[&str],
    ) -> IndexMap<&'d str, &'d Positioned<ConstValue>> {
        let mut out = IndexMap::new();
        for (name, value) in args {
            if !known.contains(&name.node.as_str()) {
                let hint = match did_you_mean(&name.node, known) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("{what} takes {}", list(known, "")),
                };
                self.error(
                    name.pos,
                    format!("unknown argument `{}` on {what}", name.node),
                )
                .hint(hint);
            } else {
                out.insert(name.node.as_str(), value);
            }
        }
        for req in required {
            if !out.contains_key(req) {
                self.error(pos, format!("{what} needs `{req}`"))
                    .hint(required_hint(req));
            }
        }
        out
    }

    fn string<'v>(&mut self, v: &'v Positioned<ConstValue>, what: &str) -> Option<&'v str> {
        match &v.node {
            ConstValue::String(s) => Some(s),
            _ => {
                self.error(v.pos, format!("`{what}` must be a string"))
                    .hint(format!("write `{what}: \"...\"`"));
                None
            }
        }
    }

    fn template(&mut self, v: &Positioned<ConstValue>, what: &str) -> Option<Template> {
        let text = self.string(v, what)?;
        match Template::parse(text, self.opts.env) {
            Ok(t) => Some(t),
            Err(e) => {
                let mut pos = v.pos;
                pos.column += 1 + text[..e.offset].chars().count();
                self.error(pos, format!("in `{what}`: {}", e.message))
                    .hint(e.hint);
                None
            }
        }
    }

    fn duration(&mut self, v: &Positioned<ConstValue>) -> Option<Duration> {
        let text = self.string(v, "timeout")?;
        let parsed = parse_duration(text);
        if parsed.is_none() {
            self.error(v.pos, format!("bad duration {text:?}"))
                .hint("write a number with a unit: \"250ms\", \"2s\" or \"1m\"");
        }
        parsed
    }

    fn positive(&mut self, v: &Positioned<ConstValue>, what: &str) -> Option<usize> {
        match &v.node {
            ConstValue::Number(n) if n.as_u64().is_some_and(|n| n > 0) => {
                n.as_u64().map(|n| n as usize)
            }
            _ => {
                self.error(v.pos, format!("`{what}` must be a positive whole number"))
                    .hint(format!("write e.g. `{what}: 100`"));
                None
            }
        }
    }

    fn dot_path(&mut self, v: &Positioned<ConstValue>, what: &str) -> Option<Vec<String>> {
        let text = self.string(v, what)?;
        let path: Vec<String> = text.split('.').map(str::to_owned).collect();
        if path.iter().any(|p| p.trim().is_empty() || p.trim() != p) {
            self.error(v.pos, format!("`{what}` path {text:?} cannot be parsed"))
                .hint("write keys joined by dots, e.g. \"data.items\"");
            return None;
        }
        Some(path)
    }

    fn upstream(&mut self, dir: &Positioned<ConstDirective>) {
        let a = self.args(
            "@upstream",
            dir.node.arguments.iter().map(|(n, v)| (n, v)),
            UPSTREAM_ARGS,
            dir.pos,
            &["name", "baseUrl"],
        );
        let name = a.get("name").and_then(|v| self.string(v, "name"));
        let base = a.get("baseUrl").and_then(|v| self.template(v, "baseUrl"));
        let base_url = base.and_then(|t| {
            let v = a["baseUrl"];
            if t.whole().is_some() || t.exprs().next().is_some() {
                self.error(v.pos, "`baseUrl` may only use `{env.NAME}` expressions")
                    .hint("scheme, host and port never come from a request");
                return None;
            }
            let text = t.render_text(super::template::Scope {
                args: &Default::default(),
                parent: &serde_json::Value::Null,
                keys: None,
            });
            match url::Url::parse(&text) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => {
                    if u.query().is_some() || u.fragment().is_some() {
                        self.error(v.pos, "`baseUrl` cannot have a query or fragment")
                            .hint("put query parameters in each field's `query`");
                        return None;
                    }
                    Some(text.trim_end_matches('/').to_owned())
                }
                _ => {
                    self.error(v.pos, format!("`baseUrl` {text:?} is not an http(s) URL"))
                        .hint("write e.g. \"http://127.0.0.1:4101\"");
                    None
                }
            }
        });
        let timeout = a.get("timeout").and_then(|v| self.duration(v));
        let max_batch_size = a
            .get("maxBatchSize")
            .and_then(|v| self.positive(v, "maxBatchSize"));
        let headers = a
            .get("headers")
            .map(|v| self.header_rules(v, None))
            .unwrap_or_default();
        let connect_timeout = a.get("connectTimeout").and_then(|v| self.duration(v));
        let pool_max_idle = a
            .get("poolMaxIdle")
            .and_then(|v| self.count(v, "poolMaxIdle"));
        let max_connections = a
            .get("maxConnections")
            .and_then(|v| self.positive(v, "maxConnections"));
        let max_response_bytes = a
            .get("maxResponseBytes")
            .and_then(|v| self.positive(v, "maxResponseBytes"));
        let max_response_nodes = a
            .get("maxResponseNodes")
            .and_then(|v| self.positive(v, "maxResponseNodes"));
        let retries = a.get("retries").and_then(|v| self.count(v, "retries"));
        let coalesce = a.get("coalesce").and_then(|v| self.boolean(v, "coalesce"));
        let breaker_failures = a
            .get("breakerFailures")
            .and_then(|v| self.positive(v, "breakerFailures"));
        let breaker_cooldown = a.get("breakerCooldown").and_then(|v| self.duration(v));
        let Some(name) = name else {
            return;
        };
        // With a bad baseUrl there are no bindings anyway; keep the name so fields using
        // this upstream are not also reported as naming an unknown one.
        let base_url = base_url.unwrap_or_default();
        if self.upstreams.iter().any(|u| u.name == name) {
            self.error(dir.pos, format!("upstream `{name}` is declared twice"))
                .hint("give each @upstream its own name");
            return;
        }
        self.upstreams.push(Upstream {
            name: name.to_owned(),
            base_url,
            timeout,
            headers,
            max_batch_size,
            connect_timeout: connect_timeout.unwrap_or(Duration::from_secs(1)),
            pool_max_idle: pool_max_idle.unwrap_or(DEFAULT_MAX_CONNECTIONS),
            max_connections: max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS),
            max_response_bytes: max_response_bytes.unwrap_or(8 << 20),
            max_response_nodes: max_response_nodes.unwrap_or(100_000),
            retries: retries.map_or(2, |r| r as u32),
            coalesce: coalesce.unwrap_or(false),
            breaker_failures: breaker_failures.map_or(5, |f| f as u32),
            breaker_cooldown: breaker_cooldown.unwrap_or(Duration::from_secs(5)),
        });
    }

    fn count(&mut self, v: &Positioned<ConstValue>, what: &str) -> Option<usize> {
        match &v.node {
            ConstValue::Number(n) if n.as_u64().is_some_and(|n| n <= 10_000) => {
                n.as_u64().map(|n| n as usize)
            }
            _ => {
                self.error(v.pos, format!("`{what}` must be a whole number, 0 or more"))
                    .hint(format!("write e.g. `{what}: 2`"));
                None
            }
        }
    }

    fn boolean(&mut self, v: &Positioned<ConstValue>, what: &str) -> Option<bool> {
        match &v.node {
            ConstValue::Boolean(b) => Some(*b),
            _ => {
                self.error(v.pos, format!("`{what}` must be true or false"))
                    .hint(format!("write `{what}: true`"));
                None
            }
        }
    }

    fn objects<'v>(
        &mut self,
        v: &'v Positioned<ConstValue>,
        what: &str,
    ) -> Vec<(&'v IndexMap<Name, ConstValue>, async_graphql::Pos)> {
        let items: Vec<&ConstValue> = match &v.node {
            ConstValue::List(items) => items.iter().collect(),
            single @ ConstValue::Object(_) => vec![single],
            _ => vec![&ConstValue::Null],
        };
        let mut out = Vec::new();
        for item in items {
            match item {
                ConstValue::Object(map) => out.push((map, v.pos)),
                _ => {
                    self.error(v.pos, format!("`{what}` must be a list of objects"))
                        .hint(format!(
                            "write `{what}: [{{name: \"...\", value: \"...\"}}]`"
                        ));
                }
            }
        }
        out
    }

    fn header_rules(
        &mut self,
        v: &Positioned<ConstValue>,
        field: Option<&FieldCtx<'_>>,
    ) -> Vec<HeaderRule> {
        let mut rules = Vec::new();
        for (map, pos) in self.objects(v, "headers") {
            let entries = positioned(map, pos);
            let a = self.args(
                "a header rule",
                entries.iter().map(|(n, v)| (n, v)),
                &["name", "value", "from"],
                pos,
                &["name"],
            );
            let Some(name) = a.get("name").and_then(|v| self.header_name(v)) else {
                continue;
            };
            match (a.get("value"), a.get("from")) {
                (Some(value), None) => {
                    if let Some(value) = self.template(value, "value") {
                        self.check_exprs(&value, field, "a header value", v);
                        rules.push(HeaderRule::Value { name, value });
                    }
                }
                (None, Some(from)) => {
                    if let Some(from) = self.header_name(from) {
                        rules.push(HeaderRule::From { name, from });
                    }
                }
                _ => {
                    self.error(
                        pos,
                        format!("header `{name}` needs exactly one of `value` or `from`"),
                    )
                    .hint("`value` sets it from a template, `from` copies a client header");
                }
            }
        }
        rules
    }

    fn header_name(&mut self, v: &Positioned<ConstValue>) -> Option<HeaderName> {
        let text = self.string(v, "name")?;
        match HeaderName::from_bytes(text.as_bytes()) {
            Ok(name) => Some(name),
            Err(_) => {
                self.error(v.pos, format!("{text:?} is not a valid header name"))
                    .hint("header names are letters, digits and `-`");
                None
            }
        }
    }

    /// Checks what each expression of a template may refer to in this field.
    fn check_exprs(
        &mut self,
        t: &Template,
        field: Option<&FieldCtx<'_>>,
        what: &str,
        at: &Positioned<ConstValue>,
    ) {
        for e in t.exprs() {
            // Inside a string argument, point at the expression's `{`; values nested in
            // objects carry no positions of their own, so those point at the argument.
            let mut pos = at.pos;
            if let ConstValue::String(text) = &at.node
                && let Some(before) = text.get(..e.offset)
                && text[e.offset..].starts_with('{')
            {
                pos.column += 1 + before.chars().count();
            }
            match (e.root, field) {
                (_, None) => {}
                (Root::Args, Some(f)) => {
                    let name = &e.path[0];
                    if !f
                        .field
                        .arguments
                        .iter()
                        .any(|a| a.node.name.node == name.as_str())
                    {
                        let declared: Vec<&str> = f
                            .field
                            .arguments
                            .iter()
                            .map(|a| a.node.name.node.as_str())
                            .collect();
                        let hint = match did_you_mean(name, &declared) {
                            Some(s) => format!("did you mean `{{args.{s}}}`?"),
                            None => format!("declare it: `{}({name}: ...)`", f.field.name.node),
                        };
                        self.error(pos, format!(
                            "{what} uses `{{args.{name}}}` but `{}.{}` has no argument `{name}`",
                            f.type_name, f.field.name.node
                        ))
                        .hint(hint);
                    }
                }
                (Root::Parent, Some(f)) if f.is_root => {
                    self.error(pos, format!("{what} uses `{{parent...}}` on a root field"))
                        .hint("root fields have no parent; use `{args.NAME}`");
                }
                (Root::BatchKeys, Some(_)) if what != "body" => {
                    self.error(pos, format!("`{{batch.keys}}` cannot be used in {what}"))
                        .hint("`{batch.keys}` belongs in the `body` of a field with `batch`");
                }
                _ => {}
            }
        }
    }

    fn type_def(
        &mut self,
        name: &str,
        defs: &[&Positioned<TypeDefinition>],
        kinds: &IndexMap<String, Kind>,
        is_root: bool,
    ) -> TypeDef {
        let first = &defs[0].node;
        let description = defs
            .iter()
            .find_map(|d| d.node.description.as_ref())
            .map(|d| d.node.clone());
        for d in defs {
            if Kind::of(&d.node.kind) != Kind::of(&first.kind) {
                self.error(
                    d.node.name.pos,
                    format!("`{name}` is extended as a different kind of type"),
                )
                .hint("an extension must be of the same kind as the type");
            }
            for dir in &d.node.directives {
                let n = dir.node.name.node.to_string();
                if n == "rest" || n == "map" {
                    self.error(dir.pos, format!("`@{n}` belongs on a field, not on a type"))
                        .hint(format!("move `@{n}(...)` to the field it binds"));
                } else {
                    self.unknown_directive(dir, &n, &[]);
                }
            }
        }
        let kind = match &first.kind {
            AstKind::Scalar => {
                if BUILTIN_SCALARS.contains(&name) {
                    self.error(first.name.pos, format!("`{name}` is a built-in scalar"))
                        .hint("remove this definition");
                }
                TypeKind::Scalar
            }
            AstKind::Object(_) | AstKind::Interface(_) => {
                let is_interface = matches!(first.kind, AstKind::Interface(_));
                let mut obj = ObjectDef::default();
                for d in defs {
                    let (implements, fields) = match &d.node.kind {
                        AstKind::Object(o) => (&o.implements, &o.fields),
                        AstKind::Interface(i) => (&i.implements, &i.fields),
                        _ => continue,
                    };
                    for i in implements {
                        if kinds.get(i.node.as_str()) != Some(&Kind::Interface) {
                            self.error(i.pos, format!("`{}` is not an interface", i.node))
                                .hint("`implements` names interface types");
                        }
                        obj.implements.push(i.node.to_string());
                    }
                    for f in fields {
                        let ctx = FieldCtx {
                            type_name: name,
                            field: &f.node,
                            is_root,
                        };
                        if obj.fields.contains_key(f.node.name.node.as_str()) {
                            self.error(
                                f.node.name.pos,
                                format!("field `{name}.{}` is defined twice", f.node.name.node),
                            );
                            continue;
                        }
                        let def = self.field(&ctx, kinds, is_interface);
                        obj.fields.insert(def.name.clone(), def);
                    }
                }
                if is_interface {
                    TypeKind::Interface(obj)
                } else {
                    TypeKind::Object(obj)
                }
            }
            AstKind::Union(_) => {
                let mut members = Vec::new();
                for d in defs {
                    if let AstKind::Union(u) = &d.node.kind {
                        for m in &u.members {
                            if kinds.get(m.node.as_str()) != Some(&Kind::Object) {
                                self.error(
                                    m.pos,
                                    format!("union member `{}` is not an object type", m.node),
                                )
                                .hint("a union's members are object types defined in this file");
                            }
                            members.push(m.node.to_string());
                        }
                    }
                }
                TypeKind::Union(members)
            }
            AstKind::Enum(_) => {
                let mut values = Vec::new();
                for d in defs {
                    if let AstKind::Enum(e) = &d.node.kind {
                        for v in &e.values {
                            values.push(EnumValueDef {
                                name: v.node.value.node.to_string(),
                                description: v.node.description.as_ref().map(|d| d.node.clone()),
                                deprecation: deprecation(&v.node.directives),
                            });
                        }
                    }
                }
                TypeKind::Enum(values)
            }
            AstKind::InputObject(_) => {
                let mut fields = Vec::new();
                for d in defs {
                    if let AstKind::InputObject(i) = &d.node.kind {
                        for f in &i.fields {
                            for dir in &f.node.directives {
                                let n = dir.node.name.node.to_string();
                                let hint: &[&str] = if n == "rest" || n == "map" {
                                    &["(none: input fields are sent, not resolved)"]
                                } else {
                                    &[]
                                };
                                if n == "rest" || n == "map" {
                                    self.error(dir.pos, format!("`@{n}` cannot be used on an input field"))
                                        .hint("input values are sent to upstreams, not fetched; bind the output field instead");
                                } else {
                                    self.unknown_directive(dir, &n, hint);
                                }
                            }
                            fields.push(self.input_value(&f.node, kinds));
                        }
                    }
                }
                TypeKind::InputObject(fields)
            }
        };
        TypeDef {
            name: name.to_owned(),
            description,
            kind,
        }
    }

    fn type_ref(&mut self, ty: &Positioned<Type>, kinds: &IndexMap<String, Kind>, input: bool) {
        let mut t = &ty.node;
        while let BaseType::List(inner) = &t.base {
            t = inner;
        }
        let BaseType::Named(name) = &t.base else {
            return;
        };
        let kind = match kinds.get(name.as_str()) {
            Some(k) => *k,
            None if BUILTIN_SCALARS.contains(&name.as_str()) => Kind::Scalar,
            None => {
                let known: Vec<&str> = kinds
                    .keys()
                    .map(String::as_str)
                    .chain(BUILTIN_SCALARS)
                    .collect();
                let hint = match did_you_mean(name, &known) {
                    Some(s) => format!("did you mean `{s}`?"),
                    None => format!("define `{name}` in this file, or use a built-in scalar"),
                };
                self.error(ty.pos, format!("unknown type `{name}`"))
                    .hint(hint);
                return;
            }
        };
        let ok = match kind {
            Kind::Scalar | Kind::Enum => true,
            Kind::Input => input,
            Kind::Object | Kind::Interface | Kind::Union => !input,
        };
        if !ok {
            let (what, hint) = if input {
                (
                    "an argument or input field",
                    "arguments take scalars, enums and input types",
                )
            } else {
                (
                    "a field's result",
                    "fields return scalars, enums, objects, interfaces and unions",
                )
            };
            self.error(ty.pos, format!("`{name}` cannot be the type of {what}"))
                .hint(hint);
        }
    }

    fn input_value(
        &mut self,
        v: &InputValueDefinition,
        kinds: &IndexMap<String, Kind>,
    ) -> InputValueDef {
        self.type_ref(&v.ty, kinds, true);
        InputValueDef {
            name: v.name.node.to_string(),
            description: v.description.as_ref().map(|d| d.node.clone()),
            ty: v.ty.node.clone(),
            default: v.default_value.as_ref().map(|d| d.node.clone()),
        }
    }

    fn field(
        &mut self,
        f: &FieldCtx<'_>,
        kinds: &IndexMap<String, Kind>,
        on_interface: bool,
    ) -> FieldDef {
        let def = f.field;
        self.type_ref(&def.ty, kinds, false);
        let args = def
            .arguments
            .iter()
            .map(|a| self.input_value(&a.node, kinds))
            .collect();
        let mut source = None;
        for dir in &def.directives {
            let name = dir.node.name.node.as_str();
            match name {
                "rest" if on_interface => {
                    self.error(dir.pos, "`@rest` cannot be used on an interface field")
                        .hint("put `@rest` on the field of each object type that implements the interface");
                }
                "rest" => {
                    if let Some(rest) = self.rest(dir, f) {
                        if !def.ty.node.nullable {
                            self.diags.push(
                                Diagnostic::error(def.ty.pos.line, def.ty.pos.column, format!(
                                    "`{}.{}` is non-null but fetched with @rest: when the upstream fails, the null spreads to the parent",
                                    f.type_name, def.name.node
                                ))
                                .hint("make the field nullable unless a failure should null the whole parent")
                                .warning(),
                            );
                        }
                        source = Some(Source::Rest(Arc::new(rest)));
                    }
                }
                "map" => {
                    let a = self.args(
                        "@map",
                        dir.node.arguments.iter().map(|(n, v)| (n, v)),
                        &["from"],
                        dir.pos,
                        &["from"],
                    );
                    if let Some(path) = a.get("from").and_then(|v| self.dot_path(v, "from")) {
                        source.get_or_insert(Source::Key(path));
                    }
                }
                other => self.unknown_directive(dir, other, &["rest", "map"]),
            }
        }
        FieldDef {
            name: def.name.node.to_string(),
            description: def.description.as_ref().map(|d| d.node.clone()),
            args,
            ty: def.ty.node.clone(),
            source: source.unwrap_or_else(|| Source::Key(vec![def.name.node.to_string()])),
            deprecation: deprecation(&def.directives),
        }
    }

    fn rest(&mut self, dir: &Positioned<ConstDirective>, f: &FieldCtx<'_>) -> Option<RestBinding> {
        let a = self.args(
            "@rest",
            dir.node.arguments.iter().map(|(n, v)| (n, v)),
            REST_ARGS,
            dir.pos,
            &["upstream", "path"],
        );
        let upstream = a.get("upstream").and_then(|v| {
            let name = self.string(v, "upstream")?;
            let found = self.upstreams.iter().position(|u| u.name == name);
            if found.is_none() {
                let known: Vec<&str> = self.upstreams.iter().map(|u| u.name.as_str()).collect();
                let hint = match did_you_mean(name, &known) {
                    Some(s) => format!("did you mean \"{s}\"?"),
                    None => format!(
                        "declare it: `extend schema @upstream(name: \"{name}\", baseUrl: \"...\")`"
                    ),
                };
                self.error(v.pos, format!("unknown upstream \"{name}\""))
                    .hint(hint);
            }
            found
        });
        let method = match a.get("method") {
            None => Some(Method::GET),
            Some(v) => {
                let text = match &v.node {
                    ConstValue::Enum(n) => Some(n.as_str()),
                    ConstValue::String(s) => Some(s.as_str()),
                    _ => None,
                };
                match text.filter(|t| METHODS.contains(t)) {
                    Some(t) => Method::from_bytes(t.as_bytes()).ok(),
                    None => {
                        let shown = match &v.node {
                            ConstValue::Enum(n) => n.to_string(),
                            other => other.to_string(),
                        };
                        self.error(v.pos, format!("bad `method` {shown}"))
                            .hint(format!("use one of {}", METHODS.join(", ")));
                        None
                    }
                }
            }
        };
        let path = a.get("path").and_then(|v| {
            let t = self.template(v, "path")?;
            if !matches!(t.parts.first(), Some(super::template::Part::Lit(l)) if l.starts_with('/')) {
                self.error(v.pos, "`path` must start with `/`")
                    .hint("scheme, host and port come from the upstream's baseUrl; write e.g. \"/users/{args.id}\"");
                return None;
            }
            self.check_exprs(&t, Some(f), "path", v);
            Some(t)
        });
        let mut query = Vec::new();
        if let Some(v) = a.get("query") {
            for (map, pos) in self.objects(v, "query") {
                let entries = positioned(map, pos);
                let q = self.args(
                    "a query parameter",
                    entries.iter().map(|(n, v)| (n, v)),
                    &["name", "value", "join"],
                    pos,
                    &["name", "value"],
                );
                let name = q
                    .get("name")
                    .and_then(|v| self.string(v, "name"))
                    .map(str::to_owned);
                let value = q.get("value").and_then(|v| self.template(v, "value"));
                let join = q
                    .get("join")
                    .and_then(|v| self.string(v, "join"))
                    .map(str::to_owned);
                if let (Some(name), Some(value)) = (name, value) {
                    self.check_exprs(&value, Some(f), "a query value", v);
                    query.push(QueryParam { name, value, join });
                }
            }
        }
        let headers = a
            .get("headers")
            .map(|v| self.header_rules(v, Some(f)))
            .unwrap_or_default();
        let body = a.get("body").and_then(|v| {
            let t = self.template(v, "body")?;
            self.check_exprs(&t, Some(f), "body", v);
            Some(t)
        });
        if let (Some(m), Some(_)) = (&method, a.get("body"))
            && (*m == Method::GET || *m == Method::DELETE)
        {
            self.error(
                a["body"].pos,
                format!("a body on {m} is not sent by Fanout"),
            )
            .hint("use `method: POST` (or PUT/PATCH), or move the values into `query`");
        }
        let select = match a.get("select") {
            Some(v) => self.dot_path(v, "select").unwrap_or_default(),
            None => Vec::new(),
        };
        let timeout = a.get("timeout").and_then(|v| self.duration(v));
        let batch = a
            .get("batch")
            .and_then(|v| self.batch(v, f, body.as_ref(), upstream));
        let upstream = upstream?;
        let up = &self.upstreams[upstream];
        let mut binding = RestBinding {
            field: format!("{}.{}", f.type_name, f.field.name.node),
            upstream,
            upstream_name: up.name.clone(),
            method: method?,
            path: path?,
            query,
            headers,
            body,
            select,
            timeout: timeout.or(up.timeout).unwrap_or(self.opts.default_timeout),
            batch,
            reads_parent: false,
        };
        let reads_parent = binding
            .templates()
            .flat_map(Template::exprs)
            .any(|e| e.root == Root::Parent);
        binding.reads_parent = reads_parent;
        Some(binding)
    }

    fn batch(
        &mut self,
        v: &Positioned<ConstValue>,
        f: &FieldCtx<'_>,
        body: Option<&Template>,
        upstream: Option<usize>,
    ) -> Option<BatchSpec> {
        let ConstValue::Object(map) = &v.node else {
            self.error(v.pos, "`batch` must be an object")
                .hint("write `batch: {key: \"{parent.id}\", query: \"ids\", match: \"id\"}`");
            return None;
        };
        let entries = positioned(map, v.pos);
        let b = self.args(
            "batch",
            entries.iter().map(|(n, v)| (n, v)),
            BATCH_ARGS,
            v.pos,
            &["key", "match"],
        );
        let key = b.get("key").and_then(|k| {
            let t = self.template(k, "key")?;
            if !matches!(t.whole(), Some(e) if e.root == Root::Parent) {
                self.error(k.pos, "a batch `key` must be one `{parent...}` expression")
                    .hint("write e.g. `key: \"{parent.productId}\"`");
                return None;
            }
            if f.is_root {
                self.error(k.pos, "a root field cannot be batched")
                    .hint("root fields have no parent to batch over");
                return None;
            }
            Some(t)
        });
        let query = b
            .get("query")
            .and_then(|q| self.string(q, "query"))
            .map(str::to_owned);
        let match_path = b.get("match").and_then(|m| self.dot_path(m, "match"));
        let uses_keys = body.is_some_and(|t| t.exprs().any(|e| e.root == Root::BatchKeys));
        if query.is_none() && !uses_keys {
            self.error(v.pos, "a batch has no place for its keys")
                .hint("add `query: \"ids\"` to send `?ids=1,2,3`, or use `{batch.keys}` in `body`");
        }
        let upstream_max = upstream.and_then(|u| self.upstreams[u].max_batch_size);
        let max_size = match b.get("maxSize") {
            Some(m) => self.positive(m, "maxSize")?,
            None => upstream_max.unwrap_or(100),
        };
        Some(BatchSpec {
            key: key?,
            query,
            match_path: match_path?,
            max_size,
        })
    }
}

/// Object-valued arguments carry no positions of their own; use the object's.
fn positioned(
    map: &IndexMap<Name, ConstValue>,
    pos: async_graphql::Pos,
) -> Vec<(Positioned<Name>, Positioned<ConstValue>)> {
    map.iter()
        .map(|(k, v)| {
            (
                Positioned::new(k.clone(), pos),
                Positioned::new(v.clone(), pos),
            )
        })
        .collect()
}

/// How to write a missing required argument.
fn required_hint(arg: &str) -> String {
    let example = match arg {
        "match" => "`match: \"id\"`: the key of each returned item that equals its batch key",
        "key" => "`key: \"{parent.productId}\"`: the value of each parent to look up",
        "upstream" => "`upstream: \"users\"`: the name of an @upstream",
        "path" => "`path: \"/users/{args.id}\"`",
        "baseUrl" => "`baseUrl: \"http://127.0.0.1:4101\"`",
        "from" => "`from: \"email_address\"`: the JSON key or dot path to read",
        _ => return format!("add `{arg}: ...`"),
    };
    format!("add {example}")
}

fn deprecation(dirs: &[Positioned<ConstDirective>]) -> Option<Option<String>> {
    let dir = dirs.iter().find(|d| d.node.name.node == "deprecated")?;
    Some(dir.node.get_argument("reason").and_then(|r| match &r.node {
        ConstValue::String(s) => Some(s.clone()),
        _ => None,
    }))
}

/// "250ms", "2s", "1.5s", "1m".
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (num, unit) = text.split_at(split);
    let n: f64 = num.parse().ok()?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return None,
    };
    (secs > 0.0 && secs.is_finite()).then(|| Duration::from_secs_f64(secs))
}

fn list(items: &[&str], prefix: &str) -> String {
    items
        .iter()
        .map(|i| format!("`{prefix}{i}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The closest known name within two edits, for "did you mean" hints.
pub fn did_you_mean<'a>(name: &str, known: &[&'a str]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (edit_distance(&name.to_lowercase(), &k.to_lowercase()), *k))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let cur = row[j + 1];
            row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
            prev = cur;
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2"), None);
        assert_eq!(parse_duration("fast"), None);
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            did_you_mean("upstrem", &["upstream", "path"]),
            Some("upstream")
        );
        assert_eq!(did_you_mean("zzzzzz", &["upstream"]), None);
    }
}
