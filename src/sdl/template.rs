//! `{args.id}`-style templates: parsed once at start-up, rendered per upstream call.
//!
//! Rendering is where URL safety lives: an expression in a path becomes exactly one
//! percent-encoded segment, so no argument can add a `/`, a `?`, a `#` or a `..` of its own.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Map, Value as Json};

use crate::error::FieldError;

/// Everything but RFC 3986's unreserved characters is encoded inside a path segment.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

#[derive(Clone, Debug, PartialEq)]
pub struct Template {
    pub parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Part {
    Lit(String),
    Expr(Expr),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Expr {
    pub root: Root,
    /// Keys below the root: `{args.input.name}` has `["input", "name"]`.
    pub path: Vec<String>,
    /// Byte offset of the expression's `{` in the template text, for diagnostics.
    pub offset: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Root {
    Args,
    Parent,
    BatchKeys,
}

/// A template that failed to parse: the byte offset in the text, and why.
#[derive(Debug, PartialEq)]
pub struct TemplateError {
    pub offset: usize,
    pub message: String,
    pub hint: String,
}

/// What an expression reads from: the field's arguments, the parent's upstream JSON, and for
/// a batch body, the keys of this chunk.
#[derive(Clone, Copy)]
pub struct Scope<'a> {
    pub args: &'a Map<String, Json>,
    pub parent: &'a Json,
    pub keys: Option<&'a Json>,
}

impl Template {
    /// Parses `text`; `{env.X}` and `{env.X:-default}` are replaced at once through `env`.
    pub fn parse(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            lit.push_str(&rest[..open]);
            let start = text.len() - rest.len() + open;
            let Some(close) = rest[open..].find('}') else {
                return Err(TemplateError {
                    offset: start,
                    message: "unclosed `{` in template".into(),
                    hint: "close the expression with `}`, e.g. `{args.id}`".into(),
                });
            };
            let inner = rest[open + 1..open + close].trim();
            match parse_expr(inner, env).map_err(|(message, hint)| TemplateError {
                offset: start,
                message,
                hint,
            })? {
                Parsed::Expr(mut expr) => {
                    expr.offset = start;
                    if !lit.is_empty() {
                        parts.push(Part::Lit(std::mem::take(&mut lit)));
                    }
                    parts.push(Part::Expr(expr));
                }
                Parsed::Text(value) => lit.push_str(&value),
            }
            rest = &rest[open + close + 1..];
        }
        lit.push_str(rest);
        if !lit.is_empty() || parts.is_empty() {
            parts.push(Part::Lit(lit));
        }
        Ok(Template { parts })
    }

    /// The expression, when the template is nothing but one expression.
    pub fn whole(&self) -> Option<&Expr> {
        match self.parts.as_slice() {
            [Part::Expr(expr)] => Some(expr),
            _ => None,
        }
    }

    pub fn exprs(&self) -> impl Iterator<Item = &Expr> {
        self.parts.iter().filter_map(|p| match p {
            Part::Expr(e) => Some(e),
            Part::Lit(_) => None,
        })
    }

    /// A whole-expression template keeps the value's JSON type; anything else is text.
    pub fn render_json(&self, scope: Scope<'_>) -> Json {
        match self.whole() {
            Some(expr) => scope.get(expr).cloned().unwrap_or(Json::Null),
            None => Json::String(self.render_text(scope)),
        }
    }

    /// Splices every value in as text; null and absent values become empty.
    pub fn render_text(&self, scope: Scope<'_>) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Lit(s) => out.push_str(s),
                Part::Expr(e) => {
                    if let Some(v) = scope.get(e) {
                        push_text(&mut out, v);
                    }
                }
            }
        }
        out
    }

    /// Renders a URL path: literals as written, each expression as one encoded segment.
    /// `Ok(None)` when an expression is null or absent: there is nothing to look up.
    pub fn render_path(&self, scope: Scope<'_>) -> Result<Option<String>, FieldError> {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Lit(s) => out.push_str(s),
                Part::Expr(e) => {
                    let value = match scope.get(e) {
                        None | Some(Json::Null) => return Ok(None),
                        Some(v) => v,
                    };
                    let mut text = String::new();
                    push_text(&mut text, value);
                    if text == "." || text == ".." {
                        let err = FieldError::bad_input(format!(
                            "the value {text:?} cannot be used as a URL path segment"
                        ));
                        return Err(err);
                    }
                    out.extend(utf8_percent_encode(&text, SEGMENT));
                }
            }
        }
        Ok(Some(out))
    }
}

impl<'a> Scope<'a> {
    pub fn get(&self, expr: &Expr) -> Option<&'a Json> {
        match expr.root {
            Root::Args => {
                let (first, rest) = expr.path.split_first()?;
                lookup(self.args.get(first)?, rest)
            }
            Root::Parent => lookup(self.parent, &expr.path),
            Root::BatchKeys => self.keys,
        }
    }
}

/// Follows a dot path through objects; `None` where a key is missing or not an object.
pub fn lookup<'a>(mut value: &'a Json, path: &[String]) -> Option<&'a Json> {
    for key in path {
        value = value.as_object()?.get(key)?;
    }
    Some(value)
}

/// The text form of a JSON value inside a URL or header: strings bare, others as JSON.
pub fn push_text(out: &mut String, value: &Json) {
    match value {
        Json::String(s) => out.push_str(s),
        Json::Null => {}
        other => out.push_str(&other.to_string()),
    }
}

enum Parsed {
    Expr(Expr),
    Text(String),
}

fn parse_expr(
    inner: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Parsed, (String, String)> {
    let (root, path) = inner.split_once('.').unwrap_or((inner, ""));
    if root == "env" {
        let (name, default) = match path.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (path, None),
        };
        if name.is_empty() {
            return Err((
                "`{env}` needs a variable name".into(),
                "write `{env.NAME}` or `{env.NAME:-default}`".into(),
            ));
        }
        return match env(name).or(default.map(str::to_owned)) {
            Some(v) => Ok(Parsed::Text(v)),
            None => Err((
                format!("environment variable `{name}` is not set and has no default"),
                format!("set {name}, or give a default: `{{env.{name}:-value}}`"),
            )),
        };
    }
    let root = match root {
        "args" => Root::Args,
        "parent" => Root::Parent,
        "batch" if path == "keys" => {
            return Ok(Parsed::Expr(Expr {
                root: Root::BatchKeys,
                path: vec![],
                offset: 0,
            }));
        }
        "" => {
            return Err((
                "empty template expression `{}`".into(),
                "name a value, e.g. `{args.id}` or `{parent.id}`".into(),
            ));
        }
        other => {
            return Err((
                format!("unknown template root `{other}`"),
                "expressions start with `args.`, `parent.`, `env.` or are `batch.keys`".into(),
            ));
        }
    };
    let path: Vec<String> = path.split('.').map(str::to_owned).collect();
    if path
        .iter()
        .any(|p| p.is_empty() || p.contains(char::is_whitespace))
    {
        return Err((
            format!("malformed template expression `{{{inner}}}`"),
            "use a dot path of names, e.g. `{parent.author.id}`".into(),
        ));
    }
    Ok(Parsed::Expr(Expr {
        root,
        path,
        offset: 0,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    #[test]
    fn path_expressions_become_one_encoded_segment() {
        let t = Template::parse("/users/{args.id}/orders", &no_env).unwrap();
        let args = json!({"id": "../a/b?c=1#d&e"});
        let scope = Scope {
            args: args.as_object().unwrap(),
            parent: &Json::Null,
            keys: None,
        };
        assert_eq!(
            t.render_path(scope).unwrap().unwrap(),
            "/users/..%2Fa%2Fb%3Fc%3D1%23d%26e/orders"
        );
    }

    #[test]
    fn env_with_default_is_spliced_at_parse_time() {
        let t = Template::parse("{env.NOPE:-http://x:1}/a", &no_env).unwrap();
        assert_eq!(t.parts, vec![Part::Lit("http://x:1/a".into())]);
        let err = Template::parse("{env.NOPE}", &no_env).unwrap_err();
        assert!(err.message.contains("NOPE"));
    }

    #[test]
    fn unclosed_brace_reports_its_offset() {
        let err = Template::parse("/users/{args.id", &no_env).unwrap_err();
        assert_eq!(err.offset, 7);
    }
}
