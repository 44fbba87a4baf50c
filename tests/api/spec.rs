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
