//! Reading an OpenAPI document: JSON or YAML text -> one JSON tree, `$ref`s followed, and the
//! few JSON Schema keywords the import reads, the same way for 3.0 and 3.1.
//!
//! Why a JSON tree and not a typed model: `openapiv3` reads 3.0 only and `oas3` reads 3.1 only
//! (its own docs warn about 3.0), and the versions disagree exactly where the import looks
//! (`nullable: true` against `type: [.., "null"]`, `$ref` with siblings). One walker over
//! `serde_json::Value` reads both, keeps every key in document order, and knows the JSON
//! pointer of everything it reads, which is what the notes on stderr name. YAML is read by
//! `yaml_serde` (the YAML organization's maintained `serde_yaml`).

use serde_json::{Map, Value as Json};

/// The document, with the version it declares.
pub struct Doc {
    pub root: Json,
    /// `3.0.x` or `3.1.x`, as written.
    pub version: String,
    /// 3.1 schemas can be named by `$id` and `$anchor`: `$id` or `$id#anchor` -> pointer.
    ids: std::collections::HashMap<String, String>,
}

impl Doc {
    /// Parses JSON or YAML text and checks that it is an OpenAPI 3.0 or 3.1 document.
    pub fn parse(text: &str) -> Result<Doc, String> {
        let trimmed = text.trim_start_matches('\u{feff}').trim_start();
        let root: Json = if trimmed.starts_with('{') {
            serde_json::from_str(trimmed).map_err(|e| format!("not valid JSON: {e}"))?
        } else {
            let yaml: yaml_serde::Value =
                yaml_serde::from_str(trimmed).map_err(|e| format!("not valid YAML: {e}"))?;
            yaml_to_json(yaml)
        };
        if root.get("swagger").is_some() {
            return Err(
                "this is a Swagger 2.0 document; fanout import reads OpenAPI 3.0 and 3.1 \
                 (convert it first, e.g. with swagger2openapi)"
                    .into(),
            );
        }
        let version = match root.get("openapi") {
            Some(Json::String(v)) => v.clone(),
            Some(Json::Number(n)) => n.to_string(),
            _ => return Err("no `openapi` version: not an OpenAPI 3 document".into()),
        };
        if !(version.starts_with("3.0") || version.starts_with("3.1") || version == "3") {
            return Err(format!(
                "OpenAPI {version} is not supported; fanout import reads 3.0 and 3.1"
            ));
        }
        let mut ids = std::collections::HashMap::new();
        collect_ids(&root, "#", "", &mut ids);
        Ok(Doc { root, version, ids })
    }

    /// The value at a `#/...` pointer.
    pub fn at(&self, pointer: &str) -> Option<&Json> {
        self.root.pointer(pointer.strip_prefix('#')?)
    }

    /// Follows `$ref`s from `pointer`: the final pointer, its value, and its name when it is a
    /// component schema (`#/components/schemas/NAME`). `None` for a reference that leaves
    /// the document or goes nowhere (or in circles).
    pub fn resolve<'a>(&'a self, pointer: &str) -> Option<Resolved<'a>> {
        let mut ptr = pointer.to_owned();
        for _ in 0..32 {
            let value = self.at(&ptr)?;
            match value.get("$ref").and_then(Json::as_str) {
                Some(target) if target.starts_with("#/") => ptr = target.to_owned(),
                Some(target) => ptr = self.by_id(target)?,
                None => {
                    return Some(Resolved {
                        component: component_name(&ptr),
                        pointer: ptr,
                        value,
                    });
                }
            }
        }
        None
    }
}

impl Doc {
    /// The pointer of a 3.1 `$ref` by `$id` (`/schemas/pet`, `/schemas/pet#/properties/id`)
    /// or by anchor (`/schemas/pet#name`, `#name`).
    fn by_id(&self, target: &str) -> Option<String> {
        let (base, fragment) = target.split_once('#').unwrap_or((target, ""));
        if fragment.starts_with('/') {
            let at = self.ids.get(base)?;
            return Some(format!("{at}{fragment}"));
        }
        let key = if fragment.is_empty() {
            base.to_owned()
        } else {
            format!("{base}#{fragment}")
        };
        self.ids.get(&key).cloned()
    }
}

/// Every `$id` and `$anchor` in the document, by the `$id` it sits under.
fn collect_ids(
    v: &Json,
    ptr: &str,
    base: &str,
    out: &mut std::collections::HashMap<String, String>,
) {
    match v {
        Json::Object(map) => {
            let mut base = base.to_owned();
            if let Some(id) = map.get("$id").and_then(Json::as_str) {
                base = id.to_owned();
                out.insert(base.clone(), ptr.to_owned());
            }
            if let Some(anchor) = map.get("$anchor").and_then(Json::as_str) {
                out.insert(format!("{base}#{anchor}"), ptr.to_owned());
                out.entry(format!("#{anchor}"))
                    .or_insert_with(|| ptr.to_owned());
            }
            for (k, v) in map {
                collect_ids(v, &child(ptr, k), &base, out);
            }
        }
        Json::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                collect_ids(v, &format!("{ptr}/{i}"), base, out);
            }
        }
        _ => {}
    }
}

pub struct Resolved<'a> {
    pub pointer: String,
    pub value: &'a Json,
    /// `NAME` when the pointer is `#/components/schemas/NAME`.
    pub component: Option<String>,
}

/// `NAME` of `#/components/schemas/NAME`.
pub fn component_name(pointer: &str) -> Option<String> {
    let rest = pointer.strip_prefix("#/components/schemas/")?;
    (!rest.contains('/')).then(|| unescape(rest))
}

/// `pointer` + `/key`, with `~` and `/` escaped as JSON pointers require.
pub fn child(pointer: &str, key: &str) -> String {
    format!("{pointer}/{}", key.replace('~', "~0").replace('/', "~1"))
}

fn unescape(segment: &str) -> String {
    segment.replace("~1", "/").replace("~0", "~")
}

/// YAML -> JSON: mapping keys become strings (`200:` is a key like `"200":`), tags are dropped.
fn yaml_to_json(v: yaml_serde::Value) -> Json {
    use yaml_serde::Value as Y;
    match v {
        Y::Null => Json::Null,
        Y::Bool(b) => Json::Bool(b),
        Y::Number(n) => {
            if let Some(i) = n.as_i64() {
                Json::from(i)
            } else if let Some(u) = n.as_u64() {
                Json::from(u)
            } else {
                n.as_f64()
                    .and_then(serde_json::Number::from_f64)
                    .map_or(Json::Null, Json::Number)
            }
        }
        Y::String(s) => Json::String(s),
        Y::Sequence(items) => Json::Array(items.into_iter().map(yaml_to_json).collect()),
        Y::Mapping(map) => {
            let mut out = Map::new();
            for (k, v) in map {
                let key = match k {
                    Y::String(s) => s,
                    Y::Number(n) => n.to_string(),
                    Y::Bool(b) => b.to_string(),
                    Y::Null => "null".to_owned(),
                    other => yaml_serde::to_string(&other)
                        .unwrap_or_default()
                        .trim()
                        .to_owned(),
                };
                out.insert(key, yaml_to_json(v));
            }
            Json::Object(out)
        }
        Y::Tagged(t) => yaml_to_json(t.value),
    }
}

/// What a schema says about its JSON type, read the same way in 3.0 and 3.1.
#[derive(Debug, Default, Clone)]
pub struct Shape {
    /// The non-null types it allows (`string`, `integer`, ...), possibly inferred.
    pub types: Vec<String>,
    /// Whether null is allowed (`nullable: true`, `type: [.., "null"]`, `enum` with null).
    pub nullable: bool,
}

pub fn shape(schema: &Json) -> Shape {
    let mut out = Shape::default();
    match schema.get("type") {
        Some(Json::String(t)) if t == "null" => out.nullable = true,
        Some(Json::String(t)) => out.types.push(t.clone()),
        Some(Json::Array(ts)) => {
            for t in ts.iter().filter_map(Json::as_str) {
                if t == "null" {
                    out.nullable = true;
                } else {
                    out.types.push(t.to_owned());
                }
            }
        }
        _ => {}
    }
    if schema.get("nullable") == Some(&Json::Bool(true)) {
        out.nullable = true;
    }
    if let Some(Json::Array(values)) = schema.get("enum") {
        if values.iter().any(Json::is_null) {
            out.nullable = true;
        }
        if out.types.is_empty() && values.iter().all(|v| v.is_string() || v.is_null()) {
            out.types.push("string".into());
        }
    }
    if out.types.is_empty() {
        if schema.get("properties").is_some() || schema.get("additionalProperties").is_some() {
            out.types.push("object".into());
        } else if schema.get("items").is_some() {
            out.types.push("array".into());
        }
    }
    out
}

/// Whether a schema is only `null` (`type: null`, `enum: [null]`), as in `oneOf: [X, null]`.
pub fn is_null_only(schema: &Json) -> bool {
    let s = shape(schema);
    s.types.is_empty()
        && s.nullable
        && schema.get("properties").is_none()
        && schema.get("allOf").is_none()
        && schema.get("$ref").is_none()
}

/// A schema's `description`, else its `title`, trimmed; `None` when empty.
pub fn description(schema: &Json) -> Option<String> {
    ["description", "title"]
        .iter()
        .filter_map(|k| schema.get(*k).and_then(Json::as_str))
        .map(str::trim)
        .find(|d| !d.is_empty())
        .map(str::to_owned)
}

/// A schema that only annotates (`{description: ...}`, `{nullable: false}`): an `allOf`
/// member that adds no structure.
pub fn is_annotation(schema: &Json) -> bool {
    schema.as_object().is_some_and(|m| {
        m.keys().all(|k| {
            k.starts_with("x-")
                || matches!(
                    k.as_str(),
                    "description"
                        | "title"
                        | "nullable"
                        | "example"
                        | "examples"
                        | "default"
                        | "deprecated"
                        | "readOnly"
                        | "writeOnly"
                        | "externalDocs"
                        | "xml"
                )
        })
    })
}

pub fn flag(schema: &Json, key: &str) -> bool {
    schema.get(key) == Some(&Json::Bool(true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_keys_that_are_numbers_become_strings() {
        let doc = Doc::parse("openapi: 3.0.0\npaths:\n  /a:\n    get:\n      responses:\n        200:\n          description: ok\n").unwrap();
        assert!(doc.at("#/paths/~1a/get/responses/200").is_some());
    }

    #[test]
    fn nullable_is_read_the_same_in_both_versions() {
        let v30 = serde_json::json!({"type": "string", "nullable": true});
        let v31 = serde_json::json!({"type": ["string", "null"]});
        for s in [v30, v31] {
            let sh = shape(&s);
            assert_eq!((sh.types, sh.nullable), (vec!["string".to_owned()], true));
        }
    }

    #[test]
    fn swagger_2_is_refused_with_a_way_out() {
        let Err(err) = Doc::parse(r#"{"swagger": "2.0"}"#) else {
            panic!("a Swagger 2.0 document was read");
        };
        assert!(err.contains("2.0"), "{err}");
    }
}
