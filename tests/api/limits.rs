//! Query-shape limits and schema exposure: every refusal is coded and calls no upstream.

use fanout::Options;
use serde_json::json;

use crate::support::{Fanout, Mock, Reply, codes, refused, with_mock};

const SCHEMA: &str = r#"
    extend schema @upstream(name: "users", baseUrl: "{MOCK}")
    type Query { user(id: ID!): User @rest(upstream: "users", path: "/users/{args.id}") }
    type User { id: ID! name: String friend: User @rest(upstream: "users", path: "/users/{parent.id}") }
"#;

async fn serve(options: Options) -> (Mock, Fanout) {
    let mock = Mock::start(|_| Reply::json(json!({"id": 1, "name": "Ada"}))).await;
    let fanout = Fanout::with_options(&with_mock(SCHEMA, &mock), options).await;
    (mock, fanout)
}

#[tokio::test]
async fn a_query_nested_too_deep_is_refused_before_any_call() {
    let mut options = Options::default();
    options.limits.max_depth = 3;
    let (mock, fanout) = serve(options).await;
    let resp = fanout
        .query(r#"{ user(id: 1) { friend { friend { friend { name } } } } }"#)
        .await;
    assert_eq!(refused(&resp), "DEPTH_LIMIT_EXCEEDED");
    assert_eq!(mock.count(), 0);
    // Within the limit it runs.
    let resp = fanout.query(r#"{ user(id: 1) { friend { name } } }"#).await;
    assert_eq!(resp["data"]["user"]["friend"]["name"], "Ada");
}

#[tokio::test]
async fn a_query_too_complex_is_refused_before_any_call() {
    let mut options = Options::default();
    options.limits.max_complexity = 5;
    let (mock, fanout) = serve(options).await;
    let resp = fanout
        .query(r#"{ user(id: 1) { id name friend { id name friend { id } } } }"#)
        .await;
    assert_eq!(refused(&resp), "COMPLEXITY_LIMIT_EXCEEDED");
    assert_eq!(mock.count(), 0);
}

#[tokio::test]
async fn too_many_aliases_are_refused_before_any_call() {
    let (mock, fanout) = serve(Options::default()).await;
    let fields: Vec<String> = (0..31).map(|i| format!("n{i}: name")).collect();
    let query = format!("{{ user(id: 1) {{ {} }} }}", fields.join(" "));
    let resp = fanout.query(&query).await;
    assert_eq!(refused(&resp), "ALIAS_LIMIT_EXCEEDED");
    assert_eq!(mock.count(), 0);
}

#[tokio::test]
async fn too_many_root_fields_are_refused_before_any_call() {
    let mut options = Options::default();
    options.limits.max_aliases = 100;
    let (mock, fanout) = serve(options).await;
    let fields: Vec<String> = (0..21)
        .map(|i| format!("u{i}: user(id: {i}) {{ id }}"))
        .collect();
    let resp = fanout.query(&format!("{{ {} }}", fields.join(" "))).await;
    assert_eq!(refused(&resp), "ROOT_FIELD_LIMIT_EXCEEDED");
    assert_eq!(mock.count(), 0);
}

#[tokio::test]
async fn too_many_directives_are_refused_before_any_call() {
    let (mock, fanout) = serve(Options::default()).await;
    let dirs = "@include(if: true) ".repeat(11);
    let resp = fanout
        .query(&format!("{{ user(id: 1) {{ name {dirs} }} }}"))
        .await;
    assert_eq!(refused(&resp), "DIRECTIVE_LIMIT_EXCEEDED");
    assert_eq!(mock.count(), 0);
}

#[tokio::test]
async fn parse_and_validation_errors_are_coded() {
    let (mock, fanout) = serve(Options::default()).await;
    assert_eq!(
        refused(&fanout.query("{ user(id: 1) { name ").await),
        "GRAPHQL_PARSE_FAILED"
    );
    assert_eq!(
        refused(&fanout.query("{ user(id: 1) { nme } }").await),
        "GRAPHQL_VALIDATION_FAILED"
    );
    assert_eq!(mock.count(), 0);
}

#[tokio::test]
async fn introspection_and_suggestions_can_be_switched_off() {
    let mut options = Options::default();
    options.limits.introspection = false;
    options.limits.suggestions = false;
    let (mock, fanout) = serve(options).await;
    let resp = fanout.query("{ __schema { types { name } } }").await;
    assert!(
        resp["data"]["__schema"].is_null() || resp.get("errors").is_some(),
        "introspection answered: {resp}"
    );
    let resp = fanout.query("{ user(id: 1) { nme } }").await;
    assert!(!resp.to_string().contains("Did you mean"), "{resp}");
    assert_eq!(mock.count(), 0);

    // With both on (the default), both work.
    let (_mock, fanout) = serve(Options::default()).await;
    let resp = fanout.query("{ __schema { queryType { name } } }").await;
    assert_eq!(resp["data"]["__schema"]["queryType"]["name"], "Query");
    let resp = fanout.query("{ user(id: 1) { nme } }").await;
    assert!(resp.to_string().contains("Did you mean"), "{resp}");
}

#[tokio::test]
async fn too_many_tokens_are_refused_before_parsing_or_any_call() {
    let mut options = Options::default();
    options.limits.max_tokens = 50;
    let (mock, fanout) = serve(options).await;
    let padding = "__typename ".repeat(60);
    let resp = fanout.query(&format!("{{ {padding} }}")).await;
    assert_eq!(refused(&resp), "TOKEN_LIMIT_EXCEEDED");
    assert_eq!(mock.count(), 0);
    let resp = fanout.query("{ user(id: 1) { name } }").await;
    assert_eq!(resp["data"]["user"]["name"], "Ada");
}

/// Parsed queries are kept by their text. A kept document must still be executed with each
/// request's own variables and operation name; a refused one is not kept.
#[tokio::test]
async fn a_repeated_query_runs_with_its_own_variables_and_checks() {
    let mut options = Options::default();
    options.limits.max_depth = 3;
    let (mock, fanout) = serve(options).await;
    let query = r#"query Q($id: ID!, $more: Boolean!) {
        user(id: $id) { name friend @include(if: $more) { name } }
    }"#;
    let with = fanout
        .post(json!({"query": query, "variables": {"id": "2", "more": true}}))
        .await;
    assert_eq!(with["data"]["user"]["friend"]["name"], "Ada", "{with}");
    assert_eq!(mock.count(), 2, "/users/2, then its friend /users/1");

    let without = fanout
        .post(json!({"query": query, "variables": {"id": "2", "more": false}}))
        .await;
    assert_eq!(
        without["data"],
        json!({"user": {"name": "Ada"}}),
        "{without}"
    );
    assert_eq!(mock.count(), 3, "the skipped field made no call");

    let other =
        json!({"query": query, "operationName": "Other", "variables": {"id": "2", "more": true}});
    let other = fanout.post(other).await;
    assert!(other.get("data").is_none(), "{other}");
    assert_eq!(codes(&other), ["GRAPHQL_VALIDATION_FAILED"], "{other}");
    assert_eq!(mock.count(), 3);

    // Too deep: refused each time it is sent, never kept.
    let deep = r#"{ user(id: 1) { friend { friend { friend { name } } } } }"#;
    for _ in 0..2 {
        assert_eq!(refused(&fanout.query(deep).await), "DEPTH_LIMIT_EXCEEDED");
    }
    assert_eq!(mock.count(), 3);
}
