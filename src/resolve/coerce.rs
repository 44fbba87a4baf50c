//! Upstream JSON -> GraphQL leaf values (SPEC section 2, "Value coercion").
//!
//! Lenient where REST services commonly differ (numeric ids, numbers where text is declared),
//! strict where a silent change would lie: an `Int` that is fractional or out of range is an
//! error, never a truncation.

use async_graphql::{Name, Value as ConstValue};
use serde_json::Value as Json;

/// Whether `name` is one of GraphQL's built-in scalars.
pub fn is_builtin(name: &str) -> bool {
    matches!(name, "ID" | "String" | "Boolean" | "Float" | "Int")
}

/// Coerces `json` to the built-in scalar `name`; `None` when `name` is not built in.
pub fn builtin(name: &str, json: &Json) -> Option<Result<ConstValue, String>> {
    let r = match (name, json) {
        ("ID", Json::String(s)) => Ok(ConstValue::String(s.clone())),
        ("ID", Json::Number(n)) => Ok(ConstValue::String(n.to_string())),
        ("String", Json::String(s)) => Ok(ConstValue::String(s.clone())),
        ("String", Json::Number(n)) => Ok(ConstValue::String(n.to_string())),
        ("String", Json::Bool(b)) => Ok(ConstValue::String(b.to_string())),
        ("Boolean", Json::Bool(b)) => Ok(ConstValue::Boolean(*b)),
        ("Float", Json::Number(n)) => Ok(ConstValue::Number(n.clone())),
        ("Int", Json::Number(n)) => int(n),
        ("ID" | "String" | "Boolean" | "Float" | "Int", other) => {
            Err(format!("expected {name}, got {}", kind(other)))
        }
        _ => return None,
    };
    Some(r)
}

fn int(n: &serde_json::Number) -> Result<ConstValue, String> {
    if let Some(i) = n.as_i64() {
        return i32::try_from(i)
            .map(ConstValue::from)
            .map_err(|_| format!("{i} is out of range for Int"));
    }
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && f >= i32::MIN as f64 && f <= i32::MAX as f64 => {
            Ok(ConstValue::from(f as i32))
        }
        Some(f) if f.fract() == 0.0 => Err(format!("{n} is out of range for Int")),
        Some(_) => Err(format!("{n} is fractional, not an Int")),
        None => Err(format!("{n} is out of range for Int")),
    }
}

/// An enum value from a JSON string, when it is one of `values`.
pub fn enumeration<'a>(
    type_name: &str,
    mut values: impl Iterator<Item = &'a str>,
    json: &Json,
) -> Result<ConstValue, String> {
    match json {
        Json::String(s) if values.any(|v| v == s) => Ok(ConstValue::Enum(Name::new(s))),
        Json::String(s) => Err(format!("{s:?} is not a value of enum {type_name}")),
        other => Err(format!("expected enum {type_name}, got {}", kind(other))),
    }
}

/// A custom scalar takes any JSON as it is.
pub fn custom(json: &Json) -> ConstValue {
    ConstValue::from_json(json.clone()).unwrap_or(ConstValue::Null)
}

pub fn kind(json: &Json) -> &'static str {
    match json {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "a list",
        Json::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ints_are_never_truncated() {
        assert_eq!(builtin("Int", &json!(7)), Some(Ok(ConstValue::from(7))));
        assert_eq!(builtin("Int", &json!(7.0)), Some(Ok(ConstValue::from(7))));
        assert!(builtin("Int", &json!(7.5)).unwrap().is_err());
        assert!(builtin("Int", &json!(3_000_000_000_i64)).unwrap().is_err());
        assert!(builtin("Int", &json!("7")).unwrap().is_err());
    }

    #[test]
    fn ids_accept_numbers_and_strings() {
        assert_eq!(builtin("ID", &json!(42)), Some(Ok(ConstValue::from("42"))));
        assert_eq!(
            builtin("ID", &json!("a1")),
            Some(Ok(ConstValue::from("a1")))
        );
        assert!(builtin("ID", &json!(true)).unwrap().is_err());
        assert_eq!(builtin("Custom", &json!(1)), None);
    }
}
