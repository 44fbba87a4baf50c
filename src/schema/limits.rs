//! The checks every query passes before it is validated or executed, in one engine
//! extension ([`Guard`]), in this order:
//!
//! 1. the variables' nesting;
//! 2. a query text seen before: its parsed document, from [`DocumentCache`]; else the text's
//!    tokens and nesting ([`super::text`]), then the parser;
//! 3. what each operation will execute, through its fragments ([`super::shape`]): root
//!    fields, aliases, depth, complexity with list sizes, directives per selection.
//!
//! The engine's own parse-time checks (recursion depth, directives) are not used: they expand
//! every fragment spread without memory, which a chain of fragments makes exponential. Its
//! validation then runs on a document these checks have bounded. Every refusal carries an
//! `extensions.code`.

use std::sync::Arc;

use async_graphql::{
    ErrorExtensionValues, ServerError, ServerResult, Value as ConstValue, Variables,
    extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery},
    parser::types::ExecutableDocument,
};

use super::{
    Limits,
    cache::DocumentCache,
    shape::{self, ShapeLimits},
    text::{self, TextRefusal},
};
use crate::sdl::Bindings;

/// Request-error codes for queries refused before execution.
pub mod code {
    pub const PARSE_FAILED: &str = "GRAPHQL_PARSE_FAILED";
    pub const VALIDATION_FAILED: &str = "GRAPHQL_VALIDATION_FAILED";
    pub const DEPTH_LIMIT: &str = "DEPTH_LIMIT_EXCEEDED";
    pub const COMPLEXITY_LIMIT: &str = "COMPLEXITY_LIMIT_EXCEEDED";
    pub const ALIAS_LIMIT: &str = "ALIAS_LIMIT_EXCEEDED";
    pub const ROOT_FIELD_LIMIT: &str = "ROOT_FIELD_LIMIT_EXCEEDED";
    pub const DIRECTIVE_LIMIT: &str = "DIRECTIVE_LIMIT_EXCEEDED";
    pub const TOKEN_LIMIT: &str = "TOKEN_LIMIT_EXCEEDED";
    pub const NESTING_LIMIT: &str = "NESTING_LIMIT_EXCEEDED";
}

/// The engine extension that runs every check above.
pub struct Guard {
    bindings: Arc<Bindings>,
    cache: DocumentCache,
    max_tokens: usize,
    max_nesting: usize,
    shape: ShapeLimits,
}

impl Guard {
    pub fn new(bindings: Arc<Bindings>, limits: &Limits) -> Arc<Guard> {
        Arc::new(Guard {
            bindings,
            cache: DocumentCache::default(),
            max_tokens: limits.max_tokens,
            max_nesting: limits.max_nesting,
            shape: ShapeLimits {
                max_depth: limits.max_depth,
                max_complexity: limits.max_complexity,
                max_aliases: limits.max_aliases,
                max_root_fields: limits.max_root_fields,
                max_directives: limits.max_directives,
                assumed_list_size: limits.assumed_list_size,
            },
        })
    }

    fn document(&self, query: &str) -> ServerResult<ExecutableDocument> {
        if let Some(doc) = self.cache.get(query) {
            return Ok(doc);
        }
        check_text(query, self.max_tokens, self.max_nesting)?;
        let doc = async_graphql::parser::parse_query(query).map_err(|e| {
            let mut err = ServerError::from(e);
            err.extensions
                .get_or_insert_with(Default::default)
                .set("code", code::PARSE_FAILED);
            err
        })?;
        self.cache.put(query, &doc);
        Ok(doc)
    }
}

/// The text checks alone, for a caller that must look into a query before the engine does
/// (GET refuses mutations).
pub fn check_text(query: &str, max_tokens: usize, max_nesting: usize) -> ServerResult<()> {
    text::check(query, max_tokens, max_nesting).map_err(|r| match r {
        TextRefusal::Tokens(n) => refused(
            code::TOKEN_LIMIT,
            format!("the query has more than {n} tokens; at most {n} are allowed"),
        ),
        TextRefusal::Nesting(n) => refused(
            code::NESTING_LIMIT,
            format!(
                "the query nests braces or brackets more than {n} levels deep \
                 (selections and values together); at most {n} are allowed"
            ),
        ),
    })
}

/// Refuses variables nested deeper than `max` lists and objects, like values in the text.
fn check_variables(variables: &Variables, max: usize) -> ServerResult<()> {
    fn depth(v: &ConstValue) -> usize {
        match v {
            ConstValue::List(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
            ConstValue::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
            _ => 0,
        }
    }
    // JSON parsing already stopped at 128 levels, so this recursion is shallow.
    match variables.values().map(depth).max() {
        Some(d) if d > max => Err(refused(
            code::NESTING_LIMIT,
            format!("a variable nests lists or objects {d} levels deep; at most {max} are allowed"),
        )),
        _ => Ok(()),
    }
}

pub struct GuardFactory(pub Arc<Guard>);

impl ExtensionFactory for GuardFactory {
    fn create(&self) -> Arc<dyn Extension> {
        self.0.clone()
    }
}

#[async_trait::async_trait]
impl Extension for Guard {
    async fn parse_query(
        &self,
        _ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        _next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        check_variables(variables, self.max_nesting)?;
        let doc = self.document(query)?;
        shape::check(&doc, variables, &self.bindings, &self.shape)
            .map_err(|(code, message)| refused(code, message))?;
        Ok(doc)
    }
}

fn refused(code: &str, message: String) -> ServerError {
    let mut err = ServerError::new(message, None);
    let mut ext = ErrorExtensionValues::default();
    ext.set("code", code);
    err.extensions = Some(ext);
    err
}

/// Gives the engine's own request errors (validation, unknown operation) a code.
pub fn classify(err: &mut ServerError) {
    if err
        .extensions
        .as_ref()
        .is_some_and(|e| e.get("code").is_some())
        || !err.path.is_empty()
    {
        return;
    }
    err.extensions
        .get_or_insert_with(Default::default)
        .set("code", code::VALIDATION_FAILED);
}
