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
}

#[derive(Clone, Copy, Debug)]
pub struct ShapeLimits {
    pub max_aliases: usize,
    pub max_root_fields: usize,
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
