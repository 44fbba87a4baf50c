use serde_json::json;

use crate::support::{Fanout, Mock, Reply, with_mock};

#[tokio::test]
async fn nested_field_reads_parent_json_and_calls_upstream() {
    let mock = Mock::start(|r| match r.path.as_str() {
        "/users/7" => Reply::json(json!({"id": 7, "name": "Ada", "teamId": "t1"})),
        "/teams/t1" => Reply::json(json!({"id": "t1", "name": "Core"})),
        _ => Reply::status(404, "{}"),
    })
    .await;
    let schema = with_mock(
        r#"
        extend schema @upstream(name: "users", baseUrl: "{MOCK}")
        type Query { user(id: ID!): User @rest(upstream: "users", path: "/users/{args.id}") }
        type User { id: ID! name: String team: Team @rest(upstream: "users", path: "/teams/{parent.teamId}") }
        type Team { id: ID! name: String }
        "#,
        &mock,
    );
    let fanout = Fanout::start(&schema).await;
    let resp = fanout
        .query(r#"{ user(id: 7) { name id team { name } } }"#)
        .await;
    assert_eq!(
        resp,
        json!({"data": {"user": {"name": "Ada", "id": "7", "team": {"name": "Core"}}}})
    );
    let paths: Vec<String> = mock.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/users/7", "/teams/t1"]);
}
