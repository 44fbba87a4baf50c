//! Limits on the shape of a query, checked right after parsing, before anything executes.
//!
//! async-graphql limits depth, complexity, recursion and directives itself; aliases and root
//! fields are counted here. Every rejection carries an `extensions.code`.

use std::sync::Arc;

use async_graphql::{
    ErrorExtensionValues, ServerError, ServerResult, Variables,
    extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery},
    parser::types::{ExecutableDocument, Selection, SelectionSet},
};

/// Request-error codes for queries refused before execution.
pub mod code {
    pub const PARSE_FAILED: &str = "GRAPHQL_PARSE_FAILED";
    pub const VALIDATION_FAILED: &str = "GRAPHQL_VALIDATION_FAILED";
    pub const DEPTH_LIMIT: &str = "DEPTH_LIMIT_EXCEEDED";
    pub const COMPLEXITY_LIMIT: &str = "COMPLEXITY_LIMIT_EXCEEDED";
    pub const ALIAS_LIMIT: &str = "ALIAS_LIMIT_EXCEEDED";
    pub const ROOT_FIELD_LIMIT: &str = "ROOT_FIELD_LIMIT_EXCEEDED";
    pub const TOKEN_LIMIT: &str = "TOKEN_LIMIT_EXCEEDED";
}

#[derive(Clone, Copy, Debug)]
pub struct ShapeLimits {
    pub max_aliases: usize,
    pub max_root_fields: usize,
    /// Lexical tokens in the query text, counted before the parser runs.
    pub max_tokens: usize,
}

impl ExtensionFactory for ShapeLimits {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(*self)
    }
}

#[async_trait::async_trait]
impl Extension for ShapeLimits {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        if let Some(n) = too_many_tokens(query, self.max_tokens) {
            return Err(refused(
                code::TOKEN_LIMIT,
                format!("the query has more than {n} tokens; at most {n} are allowed"),
            ));
        }
        let doc = next.run(ctx, query, variables).await?;
        let mut aliases = 0;
        for (_, op) in doc.operations.iter() {
            aliases += count_aliases(&op.node.selection_set.node);
            let roots = op.node.selection_set.node.items.len();
            if roots > self.max_root_fields {
                return Err(refused(
                    code::ROOT_FIELD_LIMIT,
                    format!(
                        "the operation has {roots} root selections; at most {} are allowed",
                        self.max_root_fields
                    ),
                ));
            }
        }
        for frag in doc.fragments.values() {
            aliases += count_aliases(&frag.node.selection_set.node);
        }
        if aliases > self.max_aliases {
            return Err(refused(
                code::ALIAS_LIMIT,
                format!(
                    "the query uses {aliases} aliases; at most {} are allowed",
                    self.max_aliases
                ),
            ));
        }
        Ok(doc)
    }
}

/// `Some(max)` when `query` has more than `max` GraphQL tokens. A rough lexer: names and
/// numbers, strings (block strings included), `...` and single punctuators each count one;
/// white space, commas and comments count nothing. It stops counting at `max + 1`.
fn too_many_tokens(query: &str, max: usize) -> Option<usize> {
    let b = query.as_bytes();
    let (mut i, mut tokens) = (0, 0);
    while i < b.len() {
        match b[i] {
            b' ' | b'\t' | b'\n' | b'\r' | b',' => i += 1,
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'"' if b[i..].starts_with(b"\"\"\"") => {
                i += 3;
                while i < b.len() && !b[i..].starts_with(b"\"\"\"") {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 3;
                tokens += 1;
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' && b[i] != b'\n' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
                tokens += 1;
            }
            c if c.is_ascii_alphanumeric() || c == b'_' || c == b'-' => {
                while i < b.len()
                    && (b[i].is_ascii_alphanumeric() || matches!(b[i], b'_' | b'.' | b'-' | b'+'))
                {
                    i += 1;
                }
                tokens += 1;
            }
            b'.' if b[i..].starts_with(b"...") => {
                i += 3;
                tokens += 1;
            }
            _ => {
                i += 1;
                tokens += 1;
            }
        }
        if tokens > max {
            return Some(max);
        }
    }
    None
}

fn count_aliases(set: &SelectionSet) -> usize {
    set.items
        .iter()
        .map(|s| match &s.node {
            Selection::Field(f) => {
                usize::from(f.node.alias.is_some()) + count_aliases(&f.node.selection_set.node)
            }
            Selection::InlineFragment(i) => count_aliases(&i.node.selection_set.node),
            Selection::FragmentSpread(_) => 0,
        })
        .sum()
}

fn refused(code: &str, message: String) -> ServerError {
    let mut err = ServerError::new(message, None);
    let mut ext = ErrorExtensionValues::default();
    ext.set("code", code);
    err.extensions = Some(ext);
    err
}

/// Gives the engine's own request errors (parse, validation, depth, complexity) a code.
pub fn classify(err: &mut ServerError) {
    if err
        .extensions
        .as_ref()
        .is_some_and(|e| e.get("code").is_some())
        || !err.path.is_empty()
    {
        return;
    }
    let code = if err.message.starts_with("Query is nested too deep") {
        code::DEPTH_LIMIT
    } else if err.message.starts_with("Query is too complex") {
        code::COMPLEXITY_LIMIT
    } else if err.message.contains("-->") || err.message.starts_with("Parse error") {
        code::PARSE_FAILED
    } else {
        code::VALIDATION_FAILED
    };
    err.extensions
        .get_or_insert_with(Default::default)
        .set("code", code);
}

#[cfg(test)]
mod tests {
    use super::too_many_tokens;

    #[test]
    fn tokens_are_counted_like_graphql_does() {
        // `{` `user` `(` `id` `:` `"a, b"` `)` `{` `...` `F` `}` `}`: 12; the comment none.
        let q = "{ user(id: \"a, b\") { ...F } } # a comment, with words";
        assert_eq!(too_many_tokens(q, 12), None);
        assert_eq!(too_many_tokens(q, 11), Some(11));
        assert_eq!(
            too_many_tokens("\"\"\"block \"quoted\" text\"\"\" x", 1),
            Some(1)
        );
        assert_eq!(
            too_many_tokens("\"\"\"block \"quoted\" text\"\"\" x", 2),
            None
        );
    }
}
