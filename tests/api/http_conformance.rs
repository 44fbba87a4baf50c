//! GraphQL-over-HTTP conformance of `/graphql`: media type negotiation (`Accept`, 406),
//! the POST `Content-Type`, well-formed request parameters (400 before the engine runs),
//! GET's JSON parameters, and no batching. `tests/http_audit` runs the graphql-http audit
//! suite against the binary; these tests pin the same rules with the upstream in view.

use reqwest::header::HeaderMap;
use serde_json::{Value as Json, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{Fanout, Mock, Recorded, Reply, with_mock};

const SCHEMA: &str = r#"
extend schema @upstream(name: "users", baseUrl: "{MOCK}")

type Query {
  user(id: ID!): User @rest(upstream: "users", path: "/users/{args.id}")
}

type Mutation {
  createUser(name: String!): User
    @rest(upstream: "users", method: POST, path: "/users", body: "{args.name}")
}

type User {
  id: ID!
  name: String
}
"#;

const JSON: &str = "application/json; charset=utf-8";
const GRAPHQL_RESPONSE: &str = "application/graphql-response+json; charset=utf-8";

/// `GET /users/{id}` answers that user; anything else is 404.
async fn users_mock() -> Mock {
    Mock::start(|r: &Recorded| match r.path.strip_prefix("/users/") {
        Some(id) if r.method == "GET" => {
            Reply::json(json!({"id": id, "name": format!("User {id}")}))
        }
        _ => Reply::status(404, "{}"),
    })
    .await
}

async fn start() -> (Mock, Fanout) {
    let mock = users_mock().await;
    let fanout = Fanout::start(&with_mock(SCHEMA, &mock)).await;
    (mock, fanout)
}

fn paths(mock: &Mock) -> Vec<String> {
    mock.requests().into_iter().map(|r| r.path).collect()
}

/// What came back: status, headers, and the body as JSON (`Null` if it is not JSON).
struct Answer {
    status: u16,
    headers: HeaderMap,
    body: Json,
}

impl Answer {
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }

    fn message(&self) -> &str {
        self.body["errors"][0]["message"].as_str().unwrap_or("")
    }
}

async fn answer(resp: reqwest::Response) -> Answer {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let bytes = resp.bytes().await.unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or(Json::Null);
    Answer {
        status,
        headers,
        body,
    }
}

/// POSTs `body` as is, with the given `Accept` and `Content-Type` (none if `None`).
async fn post(
    fanout: &Fanout,
    accept: Option<&str>,
    content_type: Option<&str>,
    body: &str,
) -> Answer {
    let mut req = fanout.http.post(fanout.url()).body(body.to_owned());
    if let Some(accept) = accept {
        req = req.header("accept", accept);
    }
    if let Some(content_type) = content_type {
        req = req.header("content-type", content_type);
    }
    answer(req.send().await.unwrap()).await
}

/// POSTs a JSON body with `Content-Type: application/json` and the given `Accept`.
async fn post_json(fanout: &Fanout, accept: &str, body: Json) -> Answer {
    post(
        fanout,
        Some(accept),
        Some("application/json"),
        &body.to_string(),
    )
    .await
}

async fn get(fanout: &Fanout, accept: &str, params: &[(&str, &str)]) -> Answer {
    let url = url::Url::parse_with_params(&fanout.url(), params).unwrap();
    let resp = fanout
        .http
        .get(url)
        .header("accept", accept)
        .send()
        .await
        .unwrap();
    answer(resp).await
}

/// A POST with no `Accept` header at all, over a raw connection (reqwest always adds
/// `Accept: */*`). Returns the status line's code and the raw head and body.
async fn post_without_accept(fanout: &Fanout, body: &str) -> (u16, String, String) {
    let mut stream = tokio::net::TcpStream::connect(fanout.addr).await.unwrap();
    let request = format!(
        "POST /graphql HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        fanout.addr,
        body.len()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).await.unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_owned())
}

const ONE_USER: &str = r#"{"query": "{ user(id: 1) { name } }"}"#;

#[tokio::test]
async fn json_content_type_with_a_utf8_charset_is_accepted() {
    let (mock, fanout) = start().await;
    for content_type in [
        "application/json; charset=utf-8",
        "Application/JSON;charset=UTF-8",
        "application/json; charset=\"utf-8\"",
    ] {
        let resp = post(
            &fanout,
            Some("application/json"),
            Some(content_type),
            ONE_USER,
        )
        .await;
        assert_eq!(resp.status, 200, "{content_type}: {}", resp.body);
        assert_eq!(
            resp.body,
            json!({"data": {"user": {"name": "User 1"}}}),
            "{content_type}"
        );
    }
    assert_eq!(paths(&mock), ["/users/1", "/users/1", "/users/1"]);
}

#[tokio::test]
async fn other_charsets_and_json_lookalikes_are_415_without_an_upstream_call() {
    let (mock, fanout) = start().await;
    for content_type in [
        "application/json; charset=iso-8859-1",
        "application/jsonx",
        "application/json-patch+json",
        "text/plain",
    ] {
        let resp = post(
            &fanout,
            Some("application/json"),
            Some(content_type),
            ONE_USER,
        )
        .await;
        assert_eq!(resp.status, 415, "{content_type}: {}", resp.body);
        assert!(resp.message().contains("application/json"), "{}", resp.body);
        assert!(resp.body.get("data").is_none(), "{}", resp.body);
    }
    // No Content-Type at all is a 4xx too.
    let resp = post(&fanout, Some("application/json"), None, ONE_USER).await;
    assert_eq!(resp.status, 415, "{}", resp.body);
    assert_eq!(mock.count(), 0);
}

#[tokio::test]
async fn missing_or_null_query_is_400_under_either_media_type() {
    let (mock, fanout) = start().await;
    for accept in ["application/json", "application/graphql-response+json"] {
        for body in [
            json!({}),
            json!({"query": null}),
            json!({"qeury": "{ user(id: 1) { name } }"}),
        ] {
            let resp = post_json(&fanout, accept, body.clone()).await;
            assert_eq!(resp.status, 400, "{accept} {body}: {}", resp.body);
            assert!(resp.message().contains("query"), "{}", resp.body);
            assert!(resp.body.get("data").is_none(), "{}", resp.body);
        }
    }
    assert_eq!(mock.count(), 0);
}

#[tokio::test]
async fn parameters_of_the_wrong_type_are_400_naming_the_parameter() {
    let (mock, fanout) = start().await;
    let query = "{ user(id: 1) { name } }";
    let cases = [
        (json!({"query": 7}), "`query`"),
        (json!({"query": ["{ __typename }"]}), "`query`"),
        (
            json!({"query": query, "operationName": 1}),
            "`operationName`",
        ),
        (
            json!({"query": query, "operationName": {"name": "A"}}),
            "`operationName`",
        ),
        (
            json!({"query": query, "variables": "{\"id\": 1}"}),
            "`variables`",
        ),
        (json!({"query": query, "variables": [1]}), "`variables`"),
        (json!({"query": query, "variables": false}), "`variables`"),
        (json!({"query": query, "extensions": "x"}), "`extensions`"),
        (json!({"query": query, "extensions": [1]}), "`extensions`"),
        (json!({"query": query, "extensions": 0}), "`extensions`"),
    ];
    for (body, name) in cases {
        let resp = post_json(&fanout, "application/json", body.clone()).await;
        assert_eq!(resp.status, 400, "{body}: {}", resp.body);
        assert!(
            resp.message().contains(name),
            "{body}: the message should name {name}: {}",
            resp.body
        );
        assert!(resp.body.get("data").is_none(), "{}", resp.body);
    }
    assert_eq!(mock.count(), 0);
}

#[tokio::test]
async fn null_optional_parameters_mean_absent() {
    let (mock, fanout) = start().await;
    let resp = post_json(
        &fanout,
        "application/graphql-response+json",
        json!({
            "query": "{ user(id: 2) { name } }",
            "operationName": null,
            "variables": null,
            "extensions": null,
        }),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.body, json!({"data": {"user": {"name": "User 2"}}}));
    // An empty operationName, like GET's, selects the only operation.
    let resp = post_json(
        &fanout,
        "application/json",
        json!({"query": "query Only { user(id: 3) { name } }", "operationName": ""}),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.body, json!({"data": {"user": {"name": "User 3"}}}));
    assert_eq!(paths(&mock), ["/users/2", "/users/3"]);
}

#[tokio::test]
async fn extensions_object_is_accepted_and_ignored() {
    let (mock, fanout) = start().await;
    let resp = post_json(
        &fanout,
        "application/json",
        json!({
            "query": "query($id: ID!) { user(id: $id) { name } }",
            "variables": {"id": "4"},
            "extensions": {"some": "value", "nested": {"n": [1, 2.5, null]}},
        }),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.body, json!({"data": {"user": {"name": "User 4"}}}));
    assert_eq!(paths(&mock), ["/users/4"]);
}

#[tokio::test]
async fn json_array_body_is_400_because_batching_is_off() {
    let (mock, fanout) = start().await;
    let batch = json!([
        {"query": "{ user(id: 1) { name } }"},
        {"query": "{ user(id: 2) { name } }"},
    ]);
    for accept in ["application/json", "application/graphql-response+json"] {
        let resp = post_json(&fanout, accept, batch.clone()).await;
        assert_eq!(resp.status, 400, "{accept}: {}", resp.body);
        assert!(
            resp.message().contains("batch"),
            "the message should say batching is not supported: {}",
            resp.body
        );
        assert!(resp.body.get("data").is_none(), "{}", resp.body);
    }
    assert_eq!(mock.count(), 0);
}

#[tokio::test]
async fn empty_or_non_object_body_is_400() {
    let (mock, fanout) = start().await;
    for body in [
        "",
        "  \n",
        "null",
        "42",
        "\"{ user(id: 1) { name } }\"",
        "{\"query\":",
    ] {
        let resp = post(
            &fanout,
            Some("application/json"),
            Some("application/json"),
            body,
        )
        .await;
        assert_eq!(resp.status, 400, "{body:?}: {}", resp.body);
        assert!(!resp.message().is_empty(), "{body:?}: {}", resp.body);
    }
    assert_eq!(mock.count(), 0);
}

#[tokio::test]
async fn accept_picks_the_highest_quality_then_the_first_listed() {
    let (mock, fanout) = start().await;
    let cases = [
        ("application/json", JSON),
        ("application/graphql-response+json", GRAPHQL_RESPONSE),
        (
            "application/graphql-response+json; charset=utf-8, application/json; charset=utf-8",
            GRAPHQL_RESPONSE,
        ),
        ("application/json, application/graphql-response+json", JSON),
        (
            "application/json;q=0.9, application/graphql-response+json",
            GRAPHQL_RESPONSE,
        ),
        (
            "application/graphql-response+json;q=0.5, application/json",
            JSON,
        ),
        (
            "application/graphql-response+json;q=0, application/json;q=0.1",
            JSON,
        ),
        ("*/*", JSON),
        ("application/*", JSON),
        ("text/html, */*;q=0.8", JSON),
        (
            "application/*;q=0.5, application/graphql-response+json",
            GRAPHQL_RESPONSE,
        ),
        ("*/*, application/json;q=0.2", GRAPHQL_RESPONSE),
    ];
    for (accept, expected) in cases {
        let resp = post_json(
            &fanout,
            accept,
            json!({"query": "{ user(id: 5) { name } }"}),
        )
        .await;
        assert_eq!(resp.status, 200, "{accept}: {}", resp.body);
        assert_eq!(resp.header("content-type"), expected, "Accept: {accept}");
        assert_eq!(resp.header("vary"), "accept", "Accept: {accept}");
        assert_eq!(resp.body, json!({"data": {"user": {"name": "User 5"}}}));
    }
    assert_eq!(mock.count(), cases.len());
}

#[tokio::test]
async fn several_accept_lines_are_one_list() {
    let (mock, fanout) = start().await;
    let resp = fanout
        .http
        .post(fanout.url())
        .header("accept", "text/plain")
        .header("accept", "application/graphql-response+json")
        .json(&json!({"query": "{ user(id: 9) { name } }"}))
        .send()
        .await
        .unwrap();
    let resp = answer(resp).await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.header("content-type"), GRAPHQL_RESPONSE);
    assert_eq!(resp.body, json!({"data": {"user": {"name": "User 9"}}}));
    assert_eq!(paths(&mock), ["/users/9"]);
}

#[tokio::test]
async fn negotiated_media_type_decides_the_status_of_a_validation_error() {
    let (mock, fanout) = start().await;
    let bad = json!({"query": "{ user(id: 1) { name nope } }"});
    // Preferred application/json: the legacy 200, even though graphql-response+json is listed.
    let resp = post_json(
        &fanout,
        "application/json, application/graphql-response+json;q=0.5",
        bad.clone(),
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.header("content-type"), JSON);
    assert!(resp.body.get("data").is_none(), "{}", resp.body);
    assert!(resp.message().contains("nope"), "{}", resp.body);
    // Preferred graphql-response+json: 400.
    let resp = post_json(
        &fanout,
        "application/graphql-response+json, application/json;q=0.9",
        bad,
    )
    .await;
    assert_eq!(resp.status, 400, "{}", resp.body);
    assert_eq!(resp.header("content-type"), GRAPHQL_RESPONSE);
    assert!(resp.body.get("data").is_none(), "{}", resp.body);
    assert_eq!(mock.count(), 0);
}

#[tokio::test]
async fn request_errors_are_written_in_the_negotiated_media_type() {
    let (mock, fanout) = start().await;
    let resp = post(
        &fanout,
        Some("application/graphql-response+json"),
        Some("application/json"),
        "{\"query\":",
    )
    .await;
    assert_eq!(resp.status, 400, "{}", resp.body);
    assert_eq!(resp.header("content-type"), GRAPHQL_RESPONSE);
    assert!(resp.message().contains("JSON"), "{}", resp.body);
    let resp = post(
        &fanout,
        Some("application/graphql-response+json"),
        Some("text/plain"),
        ONE_USER,
    )
    .await;
    assert_eq!(resp.status, 415, "{}", resp.body);
    assert_eq!(resp.header("content-type"), GRAPHQL_RESPONSE);
    assert_eq!(mock.count(), 0);
}

#[tokio::test]
async fn unacceptable_accept_is_406_without_an_upstream_call() {
    let (mock, fanout) = start().await;
    for accept in [
        "text/plain",
        "application/xml, text/*",
        "application/json;q=0, application/graphql-response+json;q=0",
        "application/json; charset=iso-8859-1",
        "*/*;q=0",
    ] {
        let resp = post(&fanout, Some(accept), Some("application/json"), ONE_USER).await;
        assert_eq!(resp.status, 406, "POST Accept: {accept}: {}", resp.body);
        assert!(resp.message().contains("Accept"), "{}", resp.body);
        let resp = get(&fanout, accept, &[("query", "{ user(id: 1) { name } }")]).await;
        assert_eq!(resp.status, 406, "GET Accept: {accept}: {}", resp.body);
    }
    assert_eq!(mock.count(), 0);
}

#[tokio::test]
async fn missing_accept_is_treated_as_application_json() {
    let (mock, fanout) = start().await;
    let (status, head, body) = post_without_accept(&fanout, ONE_USER).await;
    assert_eq!(status, 200, "{head}\n{body}");
    assert!(head.contains(&format!("content-type: {JSON}")), "{head}");
    let body: Json = serde_json::from_str(&body).unwrap();
    assert_eq!(body, json!({"data": {"user": {"name": "User 1"}}}));
    // A request error without Accept is the legacy 200 too.
    let (status, head, body) =
        post_without_accept(&fanout, r#"{"query": "{ user(id: 1) { nope } }"}"#).await;
    assert_eq!(status, 200, "{head}\n{body}");
    assert_eq!(paths(&mock), ["/users/1"]);
}

#[tokio::test]
async fn get_takes_extensions_and_null_variables_as_json() {
    let (mock, fanout) = start().await;
    let resp = get(
        &fanout,
        "application/graphql-response+json",
        &[
            ("query", "query($id: ID!) { user(id: $id) { name } }"),
            ("variables", r#"{"id": "6"}"#),
            ("extensions", r#"{"persistedQuery": null, "x": 1}"#),
        ],
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.header("content-type"), GRAPHQL_RESPONSE);
    assert_eq!(resp.header("vary"), "accept");
    assert_eq!(resp.body, json!({"data": {"user": {"name": "User 6"}}}));
    let resp = get(
        &fanout,
        "application/json",
        &[
            ("query", "{ user(id: 7) { name } }"),
            ("variables", "null"),
            ("extensions", ""),
            ("operationName", ""),
        ],
    )
    .await;
    assert_eq!(resp.status, 200, "{}", resp.body);
    assert_eq!(resp.body, json!({"data": {"user": {"name": "User 7"}}}));
    assert_eq!(paths(&mock), ["/users/6", "/users/7"]);
}

#[tokio::test]
async fn get_with_malformed_json_parameters_is_400() {
    let (mock, fanout) = start().await;
    let query = ("query", "{ user(id: 1) { name } }");
    let cases = [
        ("variables", "[1]", "`variables`"),
        ("variables", "{\"id\":", "`variables`"),
        ("variables", "\"{}\"", "`variables`"),
        ("extensions", "[1]", "`extensions`"),
        ("extensions", "not json", "`extensions`"),
    ];
    for (name, value, mentions) in cases {
        for accept in ["application/json", "application/graphql-response+json"] {
            let resp = get(&fanout, accept, &[query, (name, value)]).await;
            assert_eq!(resp.status, 400, "{name}={value} ({accept}): {}", resp.body);
            assert!(resp.message().contains(mentions), "{}", resp.body);
            assert!(resp.body.get("data").is_none(), "{}", resp.body);
        }
    }
    // Without a query there is nothing to run: 400, not GraphiQL, for a non-browser.
    let resp = get(&fanout, "*/*", &[("variables", "{}")]).await;
    assert_eq!(resp.status, 400, "{}", resp.body);
    assert!(resp.message().contains("query"), "{}", resp.body);
    assert_eq!(mock.count(), 0);
}

#[tokio::test]
async fn get_mutation_is_405_in_the_negotiated_media_type() {
    let (mock, fanout) = start().await;
    let resp = get(
        &fanout,
        "application/graphql-response+json",
        &[("query", r#"mutation { createUser(name: "Ada") { id } }"#)],
    )
    .await;
    assert_eq!(resp.status, 405, "{}", resp.body);
    assert_eq!(resp.header("allow"), "POST");
    assert_eq!(resp.header("content-type"), GRAPHQL_RESPONSE);
    assert!(resp.body.get("data").is_none(), "{}", resp.body);
    assert_eq!(mock.count(), 0);
}

#[tokio::test]
async fn graphiql_is_served_only_to_clients_that_name_html() {
    let (mock, fanout) = start().await;
    let resp = fanout
        .http
        .get(fanout.url())
        .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );
    assert_eq!(resp.headers()["vary"], "accept");
    assert!(resp.text().await.unwrap().contains("GraphiQL"));
    // A browser's page, not the answer, only without a query; with `?query=` it runs.
    let resp = get(
        &fanout,
        "text/html,application/xhtml+xml,*/*;q=0.8",
        &[("query", "{ user(id: 8) { name } }")],
    )
    .await;
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("content-type"), JSON);
    assert_eq!(resp.body, json!({"data": {"user": {"name": "User 8"}}}));
    // html refused with q=0 is no browser.
    let resp = get(&fanout, "text/html;q=0, application/json", &[]).await;
    assert_eq!(resp.status, 400, "{}", resp.body);
    assert_eq!(paths(&mock), ["/users/8"]);
}

#[tokio::test]
async fn other_methods_on_graphql_are_405_with_allow() {
    let (mock, fanout) = start().await;
    for method in [
        reqwest::Method::PUT,
        reqwest::Method::DELETE,
        reqwest::Method::PATCH,
    ] {
        let resp = fanout
            .http
            .request(method.clone(), fanout.url())
            .header("content-type", "application/json")
            .body(ONE_USER)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 405, "{method}");
        let allow = resp.headers()["allow"].to_str().unwrap().to_owned();
        for m in ["GET", "POST"] {
            assert!(allow.contains(m), "{method}: Allow: {allow}");
        }
    }
    assert_eq!(mock.count(), 0);
}
