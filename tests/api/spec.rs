//! Answers as the GraphQL specification gives them, where the engine underneath differs.

use serde_json::json;

use crate::support::{Fanout, Mock, Reply, with_mock};

const SCHEMA: &str = r#"
    extend schema @upstream(name: "u", baseUrl: "{MOCK}")
    type Query { user(id: ID!): User @rest(upstream: "u", path: "/users/{args.id}") }
    type User { id: ID! name: String }
"#;

/// Spec 6.3: executing an empty selection set gives an empty object, not null.
#[tokio::test]
async fn a_root_selection_left_empty_by_skip_is_an_empty_object() {
    let mock = Mock::start(|_| Reply::json(json!({"id": 1, "name": "Ada"}))).await;
    let fanout = Fanout::start(&with_mock(SCHEMA, &mock)).await;
    for query in [
        "{ user(id: 1) @skip(if: true) { name } }",
        "{ __typename @include(if: false) }",
        "query($no: Boolean = false) { user(id: 1) @include(if: $no) { name } }",
    ] {
        let resp = fanout.query(query).await;
        assert_eq!(resp, json!({"data": {}}), "{query}");
    }
    assert_eq!(mock.count(), 0);
}

/// Spec 3.13.3: `@deprecated` without a reason has the reason "No longer supported".
#[tokio::test]
async fn deprecated_without_a_reason_introspects_with_the_default_reason() {
    let schema = r#"
        type Query {
          old: String @deprecated
          older: String @deprecated(reason: "use new")
          new: String
          mood: Mood
        }
        enum Mood { HAPPY SAD @deprecated }
    "#;
    let fanout = Fanout::start(schema).await;
    let resp = fanout
        .query(
            r#"{ __type(name: "Query") { fields(includeDeprecated: true) { name isDeprecated deprecationReason } }
                 mood: __type(name: "Mood") { enumValues(includeDeprecated: true) { name deprecationReason } } }"#,
        )
        .await;
    assert_eq!(
        resp["data"]["__type"]["fields"],
        json!([
            {"name": "old", "isDeprecated": true, "deprecationReason": "No longer supported"},
            {"name": "older", "isDeprecated": true, "deprecationReason": "use new"},
            {"name": "new", "isDeprecated": false, "deprecationReason": null},
            {"name": "mood", "isDeprecated": false, "deprecationReason": null},
        ]),
        "{resp}"
    );
    assert_eq!(
        resp["data"]["mood"]["enumValues"][1],
        json!({"name": "SAD", "deprecationReason": "No longer supported"})
    );
}
