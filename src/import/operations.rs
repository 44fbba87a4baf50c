//! Operations -> root fields: GET becomes a query field, POST/PUT/PATCH/DELETE a mutation;
//! path, query and header parameters and the request body become arguments.

use serde_json::Value as Json;

use super::{
    Importer,
    doc::{self, child},
    gql::{self, Arg, Field, Ty},
    names::{self, Taken},
    types::JSON,
};

const METHODS: [&str; 5] = ["get", "post", "put", "patch", "delete"];
/// Keys of a response object that usually hold its data, for `select`.
const DATA_KEYS: [&str; 8] = [
    "data", "items", "entries", "results", "records", "values", "content", "objects",
];

/// A mapped operation, as the link proposals need it.
pub struct Op {
    pub field: String,
    pub path: String,
    pub upstream: String,
    /// The OpenAPI names of the path parameters, in order.
    pub path_params: Vec<String>,
    /// Whether a required argument other than the path parameters exists.
    pub other_required: bool,
    pub returns: Option<Ty>,
    pub select: Option<String>,
    /// Query parameters that take a list: (name, sent as `a=1&a=2`).
    pub list_params: Vec<(String, bool)>,
    pub pointer: String,
}

/// One parameter, resolved.
struct Param {
    name: String,
    location: String,
    pointer: String,
    value: Json,
}

impl Importer<'_> {
    pub(super) fn operations(&mut self) {
        let Some(Json::Object(paths)) = self.doc.root.get("paths").cloned() else {
            return;
        };
        for (path, item) in paths {
            let item_ptr = child("#/paths", &path);
            let (item_ptr, item) = match self.doc.resolve(&item_ptr) {
                Some(r) => (r.pointer, r.value.clone()),
                None => (item_ptr, item),
            };
            for method in METHODS {
                if item.get(method).is_some() {
                    self.operation(&path, &item_ptr, &item, method);
                }
            }
            for method in ["head", "options", "trace"] {
                if item.get(method).is_some() {
                    self.note(
                        &child(&item_ptr, method),
                        format!(
                            "{} is not one of Fanout's methods (GET, POST, PUT, PATCH, DELETE); not mapped",
                            method.to_uppercase()
                        ),
                    );
                }
            }
        }
    }

    fn params(&self, item_ptr: &str, item: &Json, op_ptr: &str, op: &Json) -> Vec<Param> {
        let mut out: Vec<Param> = Vec::new();
        for (ptr, holder) in [(item_ptr, item), (op_ptr, op)] {
            let list = child(ptr, "parameters");
            let count = holder
                .get("parameters")
                .and_then(Json::as_array)
                .map_or(0, Vec::len);
            for i in 0..count {
                let Some(r) = self.doc.resolve(&child(&list, &i.to_string())) else {
                    continue;
                };
                let (Some(name), Some(location)) = (
                    r.value.get("name").and_then(Json::as_str),
                    r.value.get("in").and_then(Json::as_str),
                ) else {
                    continue;
                };
                // An operation's parameter overrides its path's of the same name and place.
                out.retain(|p| !(p.name == name && p.location == location));
                out.push(Param {
                    name: name.to_owned(),
                    location: location.to_owned(),
                    pointer: r.pointer.clone(),
                    value: r.value.clone(),
                });
            }
        }
        out
    }

    fn operation(&mut self, path: &str, item_ptr: &str, item: &Json, method: &str) {
        let ptr = child(item_ptr, method);
        let op = item.get(method).cloned().unwrap_or(Json::Null);
        let is_query = method == "get";
        let upstream = match op.get("servers").or_else(|| item.get("servers")) {
            Some(s) => self.upstream_for(Some(s), &ptr),
            None => self.upstreams[0].name.clone(),
        };
        // `/files/{id}#get_shared_link`: a document's trick to have two keys for one path.
        let clean = path.split('#').next().unwrap_or_default();
        let (clean, fixed_query) = match clean.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (clean, None),
        };
        let base_name = match op.get("operationId").and_then(Json::as_str) {
            Some(id) => names::camel(id),
            None => derived_name(method, clean),
        };
        let mut arg_names = Taken::default();
        let mut args = Vec::new();
        let mut query_rules = Vec::new();
        let mut header_rules = Vec::new();
        let mut path_args: Vec<(String, String)> = Vec::new();
        let mut list_params = Vec::new();
        let mut other_required = false;
        if let Some(q) = fixed_query {
            for (k, v) in url::form_urlencoded::parse(q.as_bytes()) {
                query_rules.push(format!(
                    "{{name: {}, value: {}}}",
                    gql::string(&k),
                    gql::string(&v)
                ));
            }
        }
        for p in self.params(item_ptr, item, &ptr, &op) {
            let required = doc::flag(&p.value, "required") || p.location == "path";
            let schema_ptr = if p.value.get("schema").is_some() {
                child(&p.pointer, "schema")
            } else {
                let why = "a parameter described by `content` instead of `schema`";
                if required {
                    self.note(&ptr, format!("{why} ({}): not mapped", p.name));
                    return;
                }
                self.note(&p.pointer, format!("{why}: left out"));
                continue;
            };
            let hint = format!("{}{}", names::pascal(&base_name), names::pascal(&p.name));
            match p.location.as_str() {
                "path" => {
                    let arg = arg_names.unique(&names::field(&p.name));
                    let m = self.input(&schema_ptr, &hint);
                    let ty = if id_like(&p.name)
                        && matches!(m.ty.base(), "String" | "Int" | "Int64")
                        && !m.ty.is_list()
                    {
                        Ty::named("ID")
                    } else {
                        m.ty
                    };
                    args.push(arg_of(&arg, &p.value, ty.non_null(), None));
                    path_args.push((p.name.clone(), arg));
                }
                "query" => {
                    let m = self.input(&schema_ptr, &hint);
                    let object = self
                        .doc
                        .resolve(&schema_ptr)
                        .is_some_and(|r| doc::shape(r.value).types.iter().any(|t| t == "object"));
                    let style = p
                        .value
                        .get("style")
                        .and_then(Json::as_str)
                        .unwrap_or("form");
                    if object || style == "deepObject" {
                        if required {
                            self.note(&ptr, format!("the object query parameter {:?} has no Fanout encoding; not mapped", p.name));
                            return;
                        }
                        self.note(
                            &p.pointer,
                            "an object query parameter has no Fanout encoding: left out",
                        );
                        continue;
                    }
                    let arg = arg_names.unique(&names::field(&p.name));
                    let mut rule = format!(
                        "{{name: {}, value: \"{{args.{arg}}}\"",
                        gql::string(&p.name)
                    );
                    if m.ty.is_list() {
                        let explode = p
                            .value
                            .get("explode")
                            .and_then(Json::as_bool)
                            .unwrap_or(style == "form");
                        let join = match style {
                            "spaceDelimited" => Some(" "),
                            "pipeDelimited" => Some("|"),
                            _ if !explode => Some(","),
                            _ => None,
                        };
                        if let Some(j) = join {
                            rule.push_str(&format!(", join: {}", gql::string(j)));
                        }
                        list_params.push((p.name.clone(), join.is_none()));
                    }
                    rule.push('}');
                    query_rules.push(rule);
                    other_required |= required;
                    let ty = if required && !m.nullable {
                        m.ty.non_null()
                    } else {
                        m.ty
                    };
                    let default = default_of(
                        &self.doc.resolve(&schema_ptr).map(|r| r.value.clone()),
                        &ty,
                        self,
                    );
                    args.push(arg_of(&arg, &p.value, ty, default));
                }
                "header" => {
                    if ["accept", "content-type", "authorization"]
                        .contains(&p.name.to_ascii_lowercase().as_str())
                    {
                        continue;
                    }
                    if !required {
                        self.note(
                            &p.pointer,
                            "an optional header parameter: Fanout would send it empty when absent, so it is left out",
                        );
                        continue;
                    }
                    if http::HeaderName::from_bytes(p.name.as_bytes()).is_err() {
                        self.note(
                            &ptr,
                            format!("the header {:?} has no valid name; not mapped", p.name),
                        );
                        return;
                    }
                    let arg = arg_names.unique(&names::field(&p.name));
                    let m = self.input(&schema_ptr, &hint);
                    header_rules.push(format!(
                        "{{name: {}, value: \"{{args.{arg}}}\"}}",
                        gql::string(&p.name.to_ascii_lowercase())
                    ));
                    other_required = true;
                    args.push(arg_of(&arg, &p.value, m.ty.non_null(), None));
                }
                other => {
                    if required {
                        self.note(&ptr, format!("a required {other} parameter ({}): Fanout cannot send it; not mapped", p.name));
                        return;
                    }
                    self.note(
                        &p.pointer,
                        format!("a {other} parameter: Fanout cannot send it; left out"),
                    );
                }
            }
        }
        // The path, with `{name}` -> `{args.name}`; parameters the document forgot get an
        // argument of their own.
        let mut template = String::new();
        let mut rest = clean;
        let mut path_params = Vec::new();
        while let Some(open) = rest.find('{') {
            template.push_str(&rest[..open]);
            let Some(close) = rest[open..].find('}') else {
                self.note(&ptr, "an unclosed `{` in the path; not mapped");
                return;
            };
            let name = &rest[open + 1..open + close];
            let arg = match path_args.iter().find(|(n, _)| n == name) {
                Some((_, a)) => a.clone(),
                None => {
                    self.note(&ptr, format!("the path parameter {name:?} is not declared: it gets an argument `String!`"));
                    let arg = arg_names.unique(&names::field(name));
                    args.push(Arg {
                        name: arg.clone(),
                        ty: Some(Ty::named("String").non_null()),
                        ..Arg::default()
                    });
                    arg
                }
            };
            path_params.push(name.to_owned());
            template.push_str(&format!("{{args.{arg}}}"));
            rest = &rest[open + close + 1..];
        }
        template.push_str(rest);
        if !template.starts_with('/') {
            template.insert(0, '/');
        }
        let hint = names::pascal(&base_name);
        let mut body = None;
        if let Some(rb) = self.doc.resolve(&child(&ptr, "requestBody")) {
            let (rb_ptr, rb) = (rb.pointer, rb.value.clone());
            let required = doc::flag(&rb, "required");
            let media = json_media(&rb);
            if matches!(method, "get" | "delete") {
                let why = format!(
                    "a request body on {}: Fanout sends none",
                    method.to_uppercase()
                );
                if required {
                    self.note(&ptr, format!("{why}; not mapped"));
                    return;
                }
                self.note(&rb_ptr, format!("{why}; left out"));
            } else if let Some(media) = media {
                let schema_ptr = child(&child(&child(&rb_ptr, "content"), &media), "schema");
                let m = if self.doc.at(&schema_ptr).is_some() {
                    self.input(&schema_ptr, &format!("{hint}Input"))
                } else {
                    self.json_input()
                };
                let arg = arg_names.unique(if arg_names.contains("input") {
                    "body"
                } else {
                    "input"
                });
                let ty = if required && !m.nullable {
                    m.ty.non_null()
                } else {
                    m.ty
                };
                args.push(Arg {
                    name: arg.clone(),
                    description: doc::description(&rb),
                    ty: Some(ty),
                    default: None,
                });
                other_required |= required;
                body = Some(format!("\"{{args.{arg}}}\""));
            } else {
                let kinds = content_types(&rb);
                if required {
                    self.note(
                        &ptr,
                        format!("the request body is {kinds}, not JSON; not mapped"),
                    );
                    return;
                }
                self.note(
                    &rb_ptr,
                    format!("the request body is {kinds}, not JSON; left out"),
                );
            }
        }
        let (returns, select, wrapper_comment) = match self.response(&ptr, &op, &hint) {
            Ok(r) => r,
            Err(why) => {
                self.note(&ptr, format!("{why}; not mapped"));
                return;
            }
        };
        let ty = returns.clone().unwrap_or_else(|| {
            self.uses_json = true;
            Ty::named(JSON)
        });
        let mut parts = vec![format!("upstream: {}", gql::string(&upstream))];
        if !is_query {
            parts.push(format!("method: {}", method.to_uppercase()));
        }
        parts.push(format!("path: {}", gql::string(&template)));
        if !query_rules.is_empty() {
            let sep = if query_rules.len() > 2 {
                ",\n                  "
            } else {
                ", "
            };
            parts.push(format!("query: [{}]", query_rules.join(sep)));
        }
        if !header_rules.is_empty() {
            parts.push(format!("headers: [{}]", header_rules.join(", ")));
        }
        if let Some(b) = body {
            parts.push(format!("body: {b}"));
        }
        if let Some(s) = &select {
            parts.push(format!("select: {}", gql::string(s)));
        }
        let one_line = parts.join(", ");
        let rest = if one_line.len() > 80 || one_line.contains('\n') {
            let head = if is_query { 2 } else { 3 };
            let (first, more) = parts.split_at(head.min(parts.len()));
            let mut text = first.join(", ");
            for p in more {
                text.push_str(",\n          ");
                text.push_str(p);
            }
            text
        } else {
            one_line
        };
        let names = if is_query {
            &mut self.query_names
        } else {
            &mut self.mutation_names
        };
        let field = names.unique(&base_name);
        let description = match (
            op.get("summary").and_then(Json::as_str).map(str::trim),
            op.get("description").and_then(Json::as_str).map(str::trim),
        ) {
            (Some(s), Some(d)) if !d.is_empty() && !d.starts_with(s) => Some(format!("{s}\n\n{d}")),
            (_, Some(d)) if !d.is_empty() => Some(d.to_owned()),
            (Some(s), _) if !s.is_empty() => Some(s.to_owned()),
            _ => None,
        };
        let out = Field {
            name: field.clone(),
            description,
            args,
            ty: Some(ty.nullable()),
            directives: vec![format!("@rest({rest})")],
            deprecated: doc::flag(&op, "deprecated").then_some(None),
            comment: wrapper_comment,
        };
        if is_query {
            self.query.push(out);
        } else {
            self.mutation.push(out);
        }
        if is_query {
            self.ops.push(Op {
                field,
                path: clean.to_owned(),
                upstream,
                path_params,
                other_required,
                returns,
                select,
                list_params,
                pointer: ptr,
            });
        }
    }

    fn json_input(&mut self) -> super::types::Mapped {
        self.uses_json = true;
        super::types::Mapped {
            ty: Ty::named(JSON),
            nullable: true,
        }
    }

    /// The type of the success response, the `select` that unwraps it, and a comment
    /// saying what the unwrapping leaves out. `Ok(None)` type: no body.
    #[allow(clippy::type_complexity)]
    fn response(
        &mut self,
        ptr: &str,
        op: &Json,
        hint: &str,
    ) -> Result<(Option<Ty>, Option<String>, Option<String>), String> {
        let Some(Json::Object(responses)) = op.get("responses") else {
            return Ok((None, None, None));
        };
        let order = ["200", "201", "202", "203", "206", "2XX", "2xx"];
        let code = order
            .iter()
            .map(|c| (*c).to_owned())
            .find(|c| responses.contains_key(c))
            .or_else(|| responses.keys().find(|k| k.starts_with('2')).cloned())
            .or_else(|| {
                responses
                    .contains_key("default")
                    .then(|| "default".to_owned())
            });
        let Some(code) = code else {
            return Ok((None, None, None));
        };
        let Some(r) = self.doc.resolve(&child(&child(ptr, "responses"), &code)) else {
            return Ok((None, None, None));
        };
        let (r_ptr, r) = (r.pointer, r.value.clone());
        if r.get("content")
            .and_then(Json::as_object)
            .is_none_or(|c| c.is_empty())
        {
            return Ok((None, None, None));
        }
        let Some(media) = json_media(&r) else {
            return Err(format!(
                "the {code} response is {}, not JSON",
                content_types(&r)
            ));
        };
        let schema_ptr = child(&child(&child(&r_ptr, "content"), &media), "schema");
        if self.doc.at(&schema_ptr).is_none() {
            return Ok((None, None, None));
        }
        if let Some((key, data_ptr, others)) = self.wrapper(&schema_ptr) {
            let m = self.output(&data_ptr, &format!("{hint}Data"));
            let comment = (!others.is_empty()).then(|| {
                format!(
                    "The response wraps its data in `{key}`; `select` unwraps it and leaves out {}.",
                    others.join(", ")
                )
            });
            return Ok((Some(m.ty), Some(key), comment));
        }
        let m = self.output(&schema_ptr, &format!("{hint}Response"));
        Ok((Some(m.ty), None, None))
    }

    /// A response object that holds its data under one key (`data`, `entries`, ...) beside
    /// scalars only (counts, cursors): that key, its schema, and the other keys.
    fn wrapper(&self, ptr: &str) -> Option<(String, String, Vec<String>)> {
        let r = self.doc.resolve(ptr)?;
        if !doc::shape(r.value).types.iter().all(|t| t == "object") {
            return None;
        }
        let merged = self.merged(&r.pointer);
        let mut data = None;
        let mut others = Vec::new();
        for (name, p) in &merged.props {
            let resolved = self.doc.resolve(p)?;
            let sh = doc::shape(resolved.value);
            let structured = resolved.value.get("properties").is_some()
                || resolved.value.get("allOf").is_some()
                || sh.types.iter().any(|t| t == "array" || t == "object");
            if DATA_KEYS.contains(&name.as_str()) && structured {
                if data.is_some() {
                    return None;
                }
                data = Some((name.clone(), p.clone()));
            } else if structured {
                return None;
            } else {
                others.push(format!("`{name}`"));
            }
        }
        let (key, p) = data?;
        Some((key, p, others))
    }
}

/// `GET /pets/{petId}` -> `petsByPetId`; `DELETE /pets/{id}` -> `deletePetsById`.
fn derived_name(method: &str, path: &str) -> String {
    let mut words = if method == "get" {
        Vec::new()
    } else {
        vec![method.to_owned()]
    };
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            Some(p) => words.push(format!("by {p}")),
            None => words.push(seg.to_owned()),
        }
    }
    if words.is_empty() {
        words.push("root".into());
    }
    names::camel(&words.join(" "))
}

fn id_like(name: &str) -> bool {
    name.eq_ignore_ascii_case("id")
        || name.ends_with("Id")
        || name.ends_with("_id")
        || name.ends_with("ID")
}

fn arg_of(name: &str, param: &Json, ty: Ty, default: Option<String>) -> Arg {
    let mut description = doc::description(param);
    if doc::flag(param, "deprecated") {
        description = Some(format!("Deprecated. {}", description.unwrap_or_default()));
    }
    Arg {
        name: name.to_owned(),
        description,
        ty: Some(ty),
        default,
    }
}

/// A parameter's default as a GraphQL literal, when it fits the argument's type.
fn default_of(schema: &Option<Json>, ty: &Ty, im: &Importer<'_>) -> Option<String> {
    let d = schema.as_ref()?.get("default")?;
    match (ty.clone().nullable(), d) {
        (Ty::Named(n), Json::String(s)) if n == "String" || n == "ID" => Some(gql::string(s)),
        (Ty::Named(n), Json::String(s)) => match im.types.get(&n).map(|t| &t.kind) {
            Some(gql::Kind::Enum(values)) if values.iter().any(|(v, _, _)| v == s) => {
                Some(s.clone())
            }
            _ => None,
        },
        (Ty::Named(n), Json::Number(x))
            if n == "Int" && x.as_i64().is_some_and(|v| i32::try_from(v).is_ok()) =>
        {
            Some(x.to_string())
        }
        (Ty::Named(n), Json::Number(x)) if n == "Int64" && x.is_i64() => Some(x.to_string()),
        (Ty::Named(n), Json::Number(x)) if n == "Float" => Some(x.to_string()),
        (Ty::Named(n), Json::Bool(b)) if n == "Boolean" => Some(b.to_string()),
        _ => None,
    }
}

/// The JSON media type of a request body or response (`application/json`, `*+json`).
fn json_media(holder: &Json) -> Option<String> {
    let content = holder.get("content")?.as_object()?;
    let keys: Vec<&String> = content.keys().collect();
    keys.iter()
        .find(|k| {
            k.split(';')
                .next()
                .is_some_and(|m| m.trim() == "application/json")
        })
        .or_else(|| keys.iter().find(|k| k.contains("json")))
        .or_else(|| keys.iter().find(|k| k.as_str() == "*/*"))
        .map(|k| (*k).clone())
}

fn content_types(holder: &Json) -> String {
    holder
        .get("content")
        .and_then(Json::as_object)
        .map(|c| c.keys().cloned().collect::<Vec<_>>().join(", "))
        .unwrap_or_default()
}
