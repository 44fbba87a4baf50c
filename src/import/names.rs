//! Valid, unique GraphQL names from whatever an OpenAPI document calls things
//! (`File--Full`, `find pet by id`, `x-next`, `2fa`).

use std::collections::HashSet;

/// Whether `name` is a GraphQL name (`[_A-Za-z][_0-9A-Za-z]*`, not starting with `__`).
pub fn is_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c == '_' || c.is_ascii_alphabetic())
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
        && !name.starts_with("__")
}

/// The words of `text`: split at anything not a letter or digit, and where a lower-case
/// letter or digit meets an upper-case one (`listPets` -> `list`, `Pets`).
fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for c in text.chars() {
        if !c.is_ascii_alphanumeric() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            prev_lower = false;
            continue;
        }
        if c.is_ascii_uppercase() && prev_lower && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        cur.push(c);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

fn upper_first(w: &str) -> String {
    let mut c = w.chars();
    match c.next() {
        Some(f) => f.to_ascii_uppercase().to_string() + c.as_str(),
        None => String::new(),
    }
}

/// `File--Full` -> `FileFull`, `io.k8s.api.core.v1.Pod` -> `IoK8sApiCoreV1Pod`.
pub fn pascal(text: &str) -> String {
    let out: String = words(text).iter().map(|w| upper_first(w)).collect();
    fix_start(out, "T")
}

/// `find pet by id` -> `findPetById`, `get_files_id` -> `getFilesId`, `listPets` stays.
pub fn camel(text: &str) -> String {
    let ws = words(text);
    let mut out = String::new();
    for (i, w) in ws.iter().enumerate() {
        if i == 0 {
            let mut c = w.chars();
            if let Some(f) = c.next() {
                out.push(f.to_ascii_lowercase());
                out.push_str(c.as_str());
            }
        } else {
            out.push_str(&upper_first(w));
        }
    }
    fix_start(out, "_")
}

/// A field or argument name: `text` itself when it is a valid name, else its camel case.
pub fn field(text: &str) -> String {
    if is_name(text) {
        text.to_owned()
    } else {
        camel(text)
    }
}

/// An enum value must be a name other than `true`, `false` and `null`.
pub fn is_enum_value(text: &str) -> bool {
    is_name(text) && !matches!(text, "true" | "false" | "null")
}

fn fix_start(name: String, prefix: &str) -> String {
    if name.is_empty() {
        return format!("{prefix}unnamed");
    }
    let name = if name.starts_with(|c: char| c.is_ascii_digit()) {
        format!("{prefix}{name}")
    } else {
        name
    };
    if name.starts_with("__") {
        name.trim_start_matches('_').to_owned()
    } else {
        name
    }
}

/// Names already given in one scope (the schema's types, or one type's fields).
#[derive(Default)]
pub struct Taken(HashSet<String>);

impl Taken {
    pub fn with(reserved: &[&str]) -> Self {
        Taken(reserved.iter().map(|s| (*s).to_owned()).collect())
    }

    /// `name`, or `name2`, `name3`, ... if it is taken; now taken.
    pub fn unique(&mut self, name: &str) -> String {
        let mut candidate = name.to_owned();
        let mut n = 2;
        while self.0.contains(&candidate) {
            candidate = format!("{name}{n}");
            n += 1;
        }
        self.0.insert(candidate.clone());
        candidate
    }

    pub fn contains(&self, name: &str) -> bool {
        self.0.contains(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_documents_become_graphql_names() {
        assert_eq!(pascal("File--Full"), "FileFull");
        assert_eq!(pascal("io.k8s.api.core.v1.Pod"), "IoK8sApiCoreV1Pod");
        assert_eq!(camel("find pet by id"), "findPetById");
        assert_eq!(camel("get_files_id"), "getFilesId");
        assert_eq!(camel("listPets"), "listPets");
        assert_eq!(camel("get-board"), "getBoard");
        assert_eq!(field("x-next"), "xNext");
        assert_eq!(field("2fa"), "_2fa");
        assert_eq!(field("email_address"), "email_address");
        assert!(!is_name("__typename") && is_name("_id"));
        let mut t = Taken::with(&["Query"]);
        assert_eq!(t.unique("Query"), "Query2");
        assert_eq!(t.unique("Pet"), "Pet");
        assert_eq!(t.unique("Pet"), "Pet2");
    }
}
