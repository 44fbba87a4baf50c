//! The HTTP surface: `/graphql` over POST and GET (GraphQL-over-HTTP), GraphiQL, health
//! endpoints, the trace extension, introspection, and mounting inside another axum app.

use axum::Router;
use fanout::{Gateway, Options};
use serde_json::{Value as Json, json};
use tokio::net::TcpListener;

use crate::support::{Fanout, Mock, Recorded, Reply, with_mock};

const SCHEMA: &str = r#"
extend schema @upstream(name: "users", baseUrl: "{MOCK}")

"""
Entry points.
"""
type Query {
  """
  One user by id.
  """
  user(id: ID!): User @rest(upstream: "users", path: "/users/{args.id}")
}

type Mutation {
  createUser(name: String!): User
    @rest(upstream: "users", method: POST, path: "/users", body: "{args.name}")
}

"""
A person with an account.
"""
type User {
  """
  The user's id.
  """
  id: ID!
  """
  Full name.
  """
  name: String
  email: String @map(from: "email_address")
  team: Team @rest(upstream: "users", path: "/teams/{parent.teamId}")
}

type Team {
  id: ID!
  name: String
}
"#;

/// A users service: `GET /users/{id}` echoes the (decoded) id, `/teams/{id}` a team, `POST /users` 201.
async fn users_mock() -> Mock {
    Mock::start(|r: &Recorded| {
        let path = r.path.clone();
        if let Some(raw) = path.strip_prefix("/users/") {
            let id = percent_encoding::percent_decode_str(raw).decode_utf8_lossy();
            Reply::json(json!({
                "id": id,
                "name": format!("User {id}"),
                "email_address": format!("u{id}@example.com"),
                "teamId": "t1",
            }))
        } else if path == "/teams/t1" {
            Reply::json(json!({"id": "t1", "name": "Core"}))
        } else if path == "/users" && r.method == "POST" {
            Reply::json(json!({"id": "99", "name": "Created"}))
        } else {
            Reply::status(404, "{}")
        }
    })
    .await
}

/// `/graphql?...` with form-encoded parameters. (reqwest's `.query()` needs its `query`
/// feature, which the crate does not enable.)
fn get_url(fanout: &Fanout, params: &[(&str, &str)]) -> url::Url {
    url::Url::parse_with_params(&fanout.url(), params).unwrap()
}

fn paths(mock: &Mock) -> Vec<String> {
    mock.requests().into_iter().map(|r| r.path).collect()
}

fn content_type(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned()
}

#[tokio::test]
async fn post_json_runs_the_query_with_variables() {
    let mock = users_mock().await;
    let fanout = Fanout::start(&with_mock(SCHEMA, &mock)).await;
    let resp = fanout
        .http
        .post(fanout.url())
        .json(&json!({
            "query": "query One($id: ID!) { user(id: $id) { id name email } }",
            "variables": {"id": "42"},
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(content_type(&resp).starts_with("application/json"));
    let body: Json = resp.json().await.unwrap();
    assert_eq!(
        body,
        json!({"data": {"user": {"id": "42", "name": "User 42", "email": "u42@example.com"}}})
    );
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].method, "GET");
    assert_eq!(reqs[0].path, "/users/42");
}

#[tokio::test]
async fn post_operation_name_selects_which_operation_runs() {
    let mock = users_mock().await;
    let fanout = Fanout::start(&with_mock(SCHEMA, &mock)).await;
    let doc = "query A { user(id: 1) { name } } query B { user(id: 2) { name } }";
    let body = fanout
        .post(json!({"query": doc, "operationName": "B"}))
        .await;
    assert_eq!(body, json!({"data": {"user": {"name": "User 2"}}}));
    assert_eq!(paths(&mock), ["/users/2"]);
}

#[tokio::test]
async fn get_runs_a_query_with_variables_from_the_query_string() {
    let mock = users_mock().await;
    let fanout = Fanout::start(&with_mock(SCHEMA, &mock)).await;
    let resp = fanout
        .http
        .get(get_url(
            &fanout,
            &[
                (
                    "query",
                    "query($id: ID!) { user(id: $id) { id team { name } } }",
                ),
                ("variables", r#"{"id": "a b/c"}"#),
            ],
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Json = resp.json().await.unwrap();
    assert_eq!(
        body,
        json!({"data": {"user": {"id": "a b/c", "team": {"name": "Core"}}}})
    );
    // The variable reached the path as one encoded segment.
    assert_eq!(paths(&mock), ["/users/a%20b%2Fc", "/teams/t1"]);
}

#[tokio::test]
async fn get_with_a_mutation_is_405_and_reaches_no_upstream() {
    let mock = users_mock().await;
    let fanout = Fanout::start(&with_mock(SCHEMA, &mock)).await;
    let resp = fanout
        .http
        .get(get_url(
            &fanout,
            &[("query", r#"mutation { createUser(name: "Ada") { id } }"#)],
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 405);
    assert_eq!(resp.headers()["allow"], "POST");
    let body: Json = resp.json().await.unwrap();
    assert!(body["errors"][0]["message"].is_string(), "{body}");
    assert!(body.get("data").is_none(), "{body}");
    assert_eq!(mock.count(), 0);
}

#[tokio::test]
async fn get_selects_the_query_of_a_document_that_also_holds_a_mutation() {
    let mock = users_mock().await;
    let fanout = Fanout::start(&with_mock(SCHEMA, &mock)).await;
    let doc = r#"query Q { user(id: 5) { name } } mutation M { createUser(name: "x") { id } }"#;
    let get = |op: &'static str| {
        fanout
            .http
            .get(get_url(&fanout, &[("query", doc), ("operationName", op)]))
            .send()
    };
    let query = get("Q").await.unwrap();
    assert_eq!(query.status(), 200);
    let body: Json = query.json().await.unwrap();
    assert_eq!(body, json!({"data": {"user": {"name": "User 5"}}}));
    let mutation = get("M").await.unwrap();
    assert_eq!(mutation.status(), 405);
    assert_eq!(mutation.headers()["allow"], "POST");
    // Only the query reached the upstream; the mutation's POST never left.
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(
        (reqs[0].method.as_str(), reqs[0].path.as_str()),
        ("GET", "/users/5")
    );
}

#[tokio::test]
async fn browser_get_without_a_query_gets_graphiql() {
    let mock = users_mock().await;
    let fanout = Fanout::start(&with_mock(SCHEMA, &mock)).await;
    let resp = fanout
        .http
        .get(fanout.url())
        .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(content_type(&resp).starts_with("text/html"), "{resp:?}");
    let html = resp.text().await.unwrap();
    assert!(html.contains("<html"), "{html}");
    assert!(html.contains("GraphiQL"), "{html}");
    assert_eq!(mock.count(), 0);

    // The same browser with a query in the URL gets the answer, not the page.
    let resp = fanout
        .http
        .get(get_url(&fanout, &[("query", "{ user(id: 3) { name } }")]))
        .header("accept", "text/html,application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Json = resp.json().await.unwrap();
    assert_eq!(body, json!({"data": {"user": {"name": "User 3"}}}));
    assert_eq!(paths(&mock), ["/users/3"]);
}

#[tokio::test]
async fn post_with_text_plain_is_415_and_reaches_no_upstream() {
    let mock = users_mock().await;
    let fanout = Fanout::start(&with_mock(SCHEMA, &mock)).await;
    let resp = fanout
        .http
        .post(fanout.url())
        .header("content-type", "text/plain")
        .body(json!({"query": "{ user(id: 1) { name } }"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);
    let body: Json = resp.json().await.unwrap();
    assert!(body["errors"][0]["message"].is_string(), "{body}");
    assert_eq!(mock.count(), 0);
}

#[tokio::test]
async fn malformed_json_body_is_400() {
    let mock = users_mock().await;
    let fanout = Fanout::start(&with_mock(SCHEMA, &mock)).await;
    let resp = fanout
        .http
        .post(fanout.url())
        .header("content-type", "application/json")
        .body(r#"{"query": "{ user(id: 1) { name } }""#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Json = resp.json().await.unwrap();
    assert!(body["errors"][0]["message"].is_string(), "{body}");
    assert!(body.get("data").is_none(), "{body}");
    assert_eq!(mock.count(), 0);
}

#[tokio::test]
async fn graphql_response_json_is_honoured_for_a_valid_query() {
    let mock = users_mock().await;
    let fanout = Fanout::start(&with_mock(SCHEMA, &mock)).await;
    let resp = fanout
        .http
        .post(fanout.url())
        .header(
            "accept",
            "application/graphql-response+json, application/json;q=0.9",
        )
        .json(&json!({"query": "{ user(id: 8) { name } }"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        content_type(&resp).starts_with("application/graphql-response+json"),
        "{resp:?}"
    );
    let body: Json = resp.json().await.unwrap();
    assert_eq!(body, json!({"data": {"user": {"name": "User 8"}}}));
    assert_eq!(paths(&mock), ["/users/8"]);
}

#[tokio::test]
async fn validation_error_is_400_under_graphql_response_json_and_200_under_json() {
    let mock = users_mock().await;
    let fanout = Fanout::start(&with_mock(SCHEMA, &mock)).await;
    let bad = json!({"query": "{ user(id: 1) { name nope } }"});

    let resp = fanout
        .http
        .post(fanout.url())
        .header("accept", "application/graphql-response+json")
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(content_type(&resp).starts_with("application/graphql-response+json"));
    let body: Json = resp.json().await.unwrap();
    assert!(body.get("data").is_none(), "{body}");
    let message = body["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(message.contains("nope"), "{body}");

    let resp = fanout
        .http
        .post(fanout.url())
        .header("accept", "application/json")
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(content_type(&resp).starts_with("application/json"));
    let body: Json = resp.json().await.unwrap();
    assert!(body.get("data").is_none(), "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("nope")
    );

    // Validation happens before execution: the upstream never heard of either request.
    assert_eq!(mock.count(), 0);
}

#[tokio::test]
async fn health_and_readiness_answer_200() {
    let mock = users_mock().await;
    let fanout = Fanout::start(&with_mock(SCHEMA, &mock)).await;
    for path in ["/healthz", "/readyz"] {
        let resp = fanout
            .http
            .get(format!("http://{}{path}", fanout.addr))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{path}");
    }
    assert_eq!(mock.count(), 0);
}

#[tokio::test]
async fn trace_header_lists_every_upstream_call() {
    let mock = users_mock().await;
    let fanout = Fanout::start(&with_mock(SCHEMA, &mock)).await;
    let (status, body) = fanout
        .post_with(
            json!({"query": "{ a: user(id: 1) { name team { name } } b: user(id: 1) { id } }"}),
            &[("x-fanout-trace", "1")],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        body["data"],
        json!({"a": {"name": "User 1", "team": {"name": "Core"}}, "b": {"id": "1"}})
    );
    let calls = body["extensions"]["fanout"]["calls"]
        .as_array()
        .unwrap_or_else(|| panic!("no trace in {body}"));
    assert_eq!(calls.len(), 3, "{calls:#?}");
    for c in calls {
        assert_eq!(c["upstream"], "users", "{c}");
        assert_eq!(c["method"], "GET", "{c}");
        assert!(c["durationMs"].is_number(), "{c}");
        assert!(c["startMs"].as_f64().is_some_and(|t| t >= 0.0), "{c}");
        assert!(c["deduplicated"].is_boolean(), "{c}");
    }
    let sent: Vec<&Json> = calls
        .iter()
        .filter(|c| c["deduplicated"] == false)
        .collect();
    let mut sent_paths: Vec<&str> = sent.iter().map(|c| c["path"].as_str().unwrap()).collect();
    sent_paths.sort();
    assert_eq!(sent_paths, ["/teams/t1", "/users/1"]);
    assert!(sent.iter().all(|c| c["status"] == 200), "{calls:#?}");
    let dedup: Vec<&Json> = calls.iter().filter(|c| c["deduplicated"] == true).collect();
    assert_eq!(dedup.len(), 1, "{calls:#?}");
    assert_eq!(dedup[0]["path"], "/users/1");
    // The team needs the user's answer: its call starts after the user's call ended.
    let (user, team) = (sent[0], sent[1]);
    let (user, team) = if user["path"] == "/users/1" {
        (user, team)
    } else {
        (team, user)
    };
    let ended = user["startMs"].as_f64().unwrap() + user["durationMs"].as_f64().unwrap();
    assert!(
        team["startMs"].as_f64().unwrap() >= ended - 0.002,
        "{calls:#?}"
    );

    // What really went out matches the trace.
    let mut got = paths(&mock);
    got.sort();
    assert_eq!(got, ["/teams/t1", "/users/1"]);
}

#[tokio::test]
async fn without_the_trace_header_there_are_no_extensions() {
    let mock = users_mock().await;
    let fanout = Fanout::start(&with_mock(SCHEMA, &mock)).await;
    for headers in [&[][..], &[("x-fanout-trace", "0")][..]] {
        let (status, body) = fanout
            .post_with(json!({"query": "{ user(id: 1) { name } }"}), headers)
            .await;
        assert_eq!(status, 200);
        assert_eq!(body, json!({"data": {"user": {"name": "User 1"}}}));
    }
    assert_eq!(paths(&mock), ["/users/1", "/users/1"]);
}

#[tokio::test]
async fn trace_header_is_ignored_when_tracing_is_not_allowed() {
    let mock = users_mock().await;
    let options = Options {
        allow_trace: false,
        ..Options::default()
    };
    let fanout = Fanout::with_options(&with_mock(SCHEMA, &mock), options).await;
    let (status, body) = fanout
        .post_with(
            json!({"query": "{ user(id: 4) { name } }"}),
            &[("x-fanout-trace", "1")],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"data": {"user": {"name": "User 4"}}}));
    assert_eq!(paths(&mock), ["/users/4"]);
}

#[tokio::test]
async fn introspection_lists_types_with_the_sdl_descriptions() {
    let mock = users_mock().await;
    let fanout = Fanout::start(&with_mock(SCHEMA, &mock)).await;
    let body = fanout
        .query(
            r#"{
              __schema { queryType { name } mutationType { name } types { name } }
              __type(name: "User") { description fields { name description } }
            }"#,
        )
        .await;
    assert!(body.get("errors").is_none(), "{body}");
    let schema = &body["data"]["__schema"];
    assert_eq!(schema["queryType"]["name"], "Query");
    assert_eq!(schema["mutationType"]["name"], "Mutation");
    let names: Vec<&str> = schema["types"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    for ty in ["Query", "Mutation", "User", "Team", "ID", "String"] {
        assert!(names.contains(&ty), "{ty} missing from {names:?}");
    }
    let user = &body["data"]["__type"];
    assert_eq!(user["description"], "A person with an account.");
    assert_eq!(
        user["fields"],
        json!([
            {"name": "id", "description": "The user's id."},
            {"name": "name", "description": "Full name."},
            {"name": "email", "description": null},
            {"name": "team", "description": null},
        ])
    );
    // Introspection is answered by the gateway alone.
    assert_eq!(mock.count(), 0);
}

#[tokio::test]
async fn printed_sdl_has_no_fanout_directives() {
    let mock = users_mock().await;
    let (gw, warnings) = Gateway::load(&with_mock(SCHEMA, &mock), Options::default(), &|_| None)
        .unwrap_or_else(|d| panic!("schema did not load: {d:#?}"));
    assert!(warnings.is_empty(), "{warnings:#?}");
    let sdl = gw.schema.sdl();
    for directive in ["@rest", "@upstream", "@map"] {
        assert!(!sdl.contains(directive), "{directive} in:\n{sdl}");
    }
    assert!(
        !sdl.contains(&mock.url()),
        "the upstream URL leaked into:\n{sdl}"
    );
    for kept in [
        "type User",
        "type Team",
        "createUser(name: String!): User",
        "A person with an account.",
    ] {
        assert!(sdl.contains(kept), "{kept:?} missing from:\n{sdl}");
    }
    assert_eq!(mock.count(), 0);
}

#[tokio::test]
async fn router_mounts_under_a_prefix_in_another_axum_app() {
    let mock = users_mock().await;
    let (gw, _) = Gateway::load(&with_mock(SCHEMA, &mock), Options::default(), &|_| None)
        .unwrap_or_else(|d| panic!("schema did not load: {d:#?}"));
    let app = Router::new()
        .route("/", axum::routing::get(|| async { "host app" }))
        .nest("/api", fanout::http::router(gw, Default::default()));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let http = reqwest::Client::new();

    let resp = http
        .post(format!("http://{addr}/api/graphql"))
        .json(&json!({"query": "{ user(id: 6) { name } }"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Json = resp.json().await.unwrap();
    assert_eq!(body, json!({"data": {"user": {"name": "User 6"}}}));

    let health = http
        .get(format!("http://{addr}/api/healthz"))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let host = http.get(format!("http://{addr}/")).send().await.unwrap();
    assert_eq!(host.text().await.unwrap(), "host app");
    let unprefixed = http
        .post(format!("http://{addr}/graphql"))
        .json(&json!({"query": "{ user(id: 7) { name } }"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unprefixed.status(), 404);

    assert_eq!(paths(&mock), ["/users/6"]);
    server.abort();
}
