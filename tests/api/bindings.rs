//! SPEC section 2, one rule per test: templates, query parameters, headers, bodies, methods,
//! mutations, `select`, `@map`, `{env.X}`, value coercion, abstract types and aliases. Every
//! test checks the GraphQL response and what the upstream received.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::{Value as Json, json};
use tokio::{net::TcpListener, task::JoinHandle};

use crate::support::{Fanout, Mock, Recorded, Reply, codes, with_mock};

/// The value of header `name` as the upstream received it.
fn header<'a>(r: &'a Recorded, name: &str) -> Option<&'a str> {
    r.headers
        .get(name)
        .map(|v| v.to_str().expect("ASCII header"))
}

/// The one request the upstream received at `path` (panics if there is not exactly one).
fn only_at(mock: &Mock, path: &str) -> Recorded {
    let at: Vec<Recorded> = mock
        .requests()
        .into_iter()
        .filter(|r| r.path == path)
        .collect();
    assert_eq!(at.len(), 1, "requests at {path}: {at:#?}");
    at.into_iter().next().unwrap()
}

fn paths(mock: &Mock) -> Vec<String> {
    mock.requests().into_iter().map(|r| r.path).collect()
}

/// Serves an already loaded gateway on 127.0.0.1:0; returns its `/graphql` URL.
async fn serve(gw: Arc<fanout::Gateway>) -> (String, JoinHandle<()>) {
    let app = fanout::http::router(gw, fanout::http::HttpOptions::default());
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        fanout::server::serve(listener, app, std::future::pending())
            .await
            .unwrap();
    });
    (format!("http://{addr}/graphql"), task)
}

async fn post_to(url: &str, query: &str) -> Json {
    reqwest::Client::new()
        .post(url)
        .json(&json!({ "query": query }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

// ---------------------------------------------------------------------------------------
// Templates in paths
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn args_template_fills_the_path() {
    let mock = Mock::start(|r| match r.path.as_str() {
        "/users/42/profile" => Reply::json(json!({"id": 42, "name": "Ada"})),
        _ => Reply::status(404, "{}"),
    })
    .await;
    let schema = with_mock(
        r#"
        extend schema @upstream(name: "users", baseUrl: "{MOCK}")
        type Query { user(id: ID!): User @rest(upstream: "users", path: "/users/{args.id}/profile") }
        type User { id: ID! name: String }
        "#,
        &mock,
    );
    let fanout = Fanout::start(&schema).await;
    let resp = fanout.query(r#"{ user(id: "42") { id name } }"#).await;
    assert_eq!(resp, json!({"data": {"user": {"id": "42", "name": "Ada"}}}));
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].method, "GET");
    assert_eq!(reqs[0].path, "/users/42/profile");
    assert_eq!(reqs[0].query, None);
}

#[tokio::test]
async fn parent_template_reads_keys_the_type_does_not_expose() {
    let mock = Mock::start(|r| match r.path.as_str() {
        "/posts/1" => Reply::json(json!({
            "id": 1, "title": "Hello", "author_id": "u9", "meta": {"reviewerId": "u5"}
        })),
        "/users/u9" => Reply::json(json!({"id": "u9", "name": "Ada"})),
        "/users/u5" => Reply::json(json!({"id": "u5", "name": "Grace"})),
        _ => Reply::status(404, "{}"),
    })
    .await;
    let schema = with_mock(
        r#"
        extend schema @upstream(name: "blog", baseUrl: "{MOCK}")
        type Query { post(id: ID!): Post @rest(upstream: "blog", path: "/posts/{args.id}") }
        type Post {
          id: ID!
          title: String
          author: User @rest(upstream: "blog", path: "/users/{parent.author_id}")
          reviewer: User @rest(upstream: "blog", path: "/users/{parent.meta.reviewerId}")
        }
        type User { id: ID! name: String }
        "#,
        &mock,
    );
    let fanout = Fanout::start(&schema).await;
    let resp = fanout
        .query(r#"{ post(id: 1) { title author { name } reviewer { name } } }"#)
        .await;
    assert_eq!(
        resp,
        json!({"data": {"post": {
            "title": "Hello", "author": {"name": "Ada"}, "reviewer": {"name": "Grace"}
        }}})
    );
    let mut got = paths(&mock);
    assert_eq!(got[0], "/posts/1");
    got.sort();
    assert_eq!(got, ["/posts/1", "/users/u5", "/users/u9"]);
}

// ---------------------------------------------------------------------------------------
// Query parameters
// ---------------------------------------------------------------------------------------

const ORDERS_SCHEMA: &str = r#"
extend schema @upstream(name: "orders", baseUrl: "{MOCK}")
type Query {
  orders(status: String, first: Int = 20): [Order!]
    @rest(upstream: "orders", path: "/orders",
          query: [{name: "status", value: "{args.status}"}, {name: "limit", value: "{args.first}"}])
  byIds(ids: [ID!]): [Order!]
    @rest(upstream: "orders", path: "/by-ids", query: [{name: "ids", value: "{args.ids}"}])
  byIdsJoined(ids: [ID!]): [Order!]
    @rest(upstream: "orders", path: "/by-ids-joined",
          query: [{name: "ids", value: "{args.ids}", join: ","}])
  find(q: String): [Order!]
    @rest(upstream: "orders", path: "/find", query: [{name: "q", value: "{args.q}"}])
}
type Order { id: ID! }
"#;

async fn orders_fanout() -> (Mock, Fanout) {
    let mock = Mock::start(|_| Reply::json(json!([{"id": 1}]))).await;
    let fanout = Fanout::start(&with_mock(ORDERS_SCHEMA, &mock)).await;
    (mock, fanout)
}

#[tokio::test]
async fn scalar_args_become_query_params() {
    let (mock, fanout) = orders_fanout().await;
    let resp = fanout
        .query(r#"{ orders(status: "open", first: 5) { id } }"#)
        .await;
    assert_eq!(resp, json!({"data": {"orders": [{"id": "1"}]}}));
    let r = only_at(&mock, "/orders");
    assert_eq!(r.query.as_deref(), Some("status=open&limit=5"));
    assert_eq!(mock.count(), 1);

    // The argument's default fills the parameter when the client leaves it out.
    let resp = fanout.query(r#"{ orders(status: "open") { id } }"#).await;
    assert_eq!(resp, json!({"data": {"orders": [{"id": "1"}]}}));
    assert_eq!(mock.count(), 2);
    assert_eq!(
        mock.requests()[1].query.as_deref(),
        Some("status=open&limit=20")
    );
}

#[tokio::test]
async fn null_or_absent_args_drop_their_query_params() {
    let (mock, fanout) = orders_fanout().await;
    // Explicit null.
    let resp = fanout.query(r#"{ orders(status: null) { id } }"#).await;
    assert_eq!(resp, json!({"data": {"orders": [{"id": "1"}]}}));
    // Absent.
    let resp = fanout.query(r#"{ orders { id } }"#).await;
    assert_eq!(resp, json!({"data": {"orders": [{"id": "1"}]}}));
    // A variable the client did not send.
    let resp = fanout
        .post(json!({
            "query": "query($s: String) { orders(status: $s) { id } }",
            "variables": {}
        }))
        .await;
    assert_eq!(resp, json!({"data": {"orders": [{"id": "1"}]}}));
    // Both parameters null: no query string at all.
    let resp = fanout
        .query(r#"{ orders(status: null, first: null) { id } }"#)
        .await;
    assert_eq!(resp, json!({"data": {"orders": [{"id": "1"}]}}));

    let queries: Vec<Option<String>> = mock.requests().into_iter().map(|r| r.query).collect();
    assert_eq!(
        queries,
        [
            Some("limit=20".to_owned()),
            Some("limit=20".to_owned()),
            Some("limit=20".to_owned()),
            None
        ]
    );
    assert!(mock.requests().iter().all(|r| r.path == "/orders"));
}

#[tokio::test]
async fn list_args_become_repeated_params() {
    let (mock, fanout) = orders_fanout().await;
    let resp = fanout
        .query(r#"{ byIds(ids: ["1", "2", "3"]) { id } }"#)
        .await;
    assert_eq!(resp, json!({"data": {"byIds": [{"id": "1"}]}}));
    let r = only_at(&mock, "/by-ids");
    assert_eq!(r.query.as_deref(), Some("ids=1&ids=2&ids=3"));
    assert_eq!(
        r.params(),
        [
            ("ids".to_owned(), "1".to_owned()),
            ("ids".to_owned(), "2".to_owned()),
            ("ids".to_owned(), "3".to_owned())
        ]
    );
}

#[tokio::test]
async fn list_args_with_join_become_one_param() {
    let (mock, fanout) = orders_fanout().await;
    let resp = fanout
        .query(r#"{ byIdsJoined(ids: ["1", "2"]) { id } }"#)
        .await;
    assert_eq!(resp, json!({"data": {"byIdsJoined": [{"id": "1"}]}}));
    let r = only_at(&mock, "/by-ids-joined");
    assert_eq!(r.params(), [("ids".to_owned(), "1,2".to_owned())]);
    // Form encoding may or may not escape the comma; either way it is one parameter.
    assert!(
        matches!(r.query.as_deref(), Some("ids=1,2" | "ids=1%2C2")),
        "raw query {:?}",
        r.query
    );
}

#[tokio::test]
async fn query_values_are_form_encoded() {
    let (mock, fanout) = orders_fanout().await;
    let value = "a b&c=d+e/é%?#";
    let resp = fanout
        .post(json!({
            "query": "query($q: String) { find(q: $q) { id } }",
            "variables": {"q": value}
        }))
        .await;
    assert_eq!(resp, json!({"data": {"find": [{"id": "1"}]}}));
    let r = only_at(&mock, "/find");
    assert_eq!(
        r.query.as_deref(),
        Some("q=a+b%26c%3Dd%2Be%2F%C3%A9%25%3F%23")
    );
    assert_eq!(r.params(), [("q".to_owned(), value.to_owned())]);
}

// ---------------------------------------------------------------------------------------
// Headers
// ---------------------------------------------------------------------------------------

const HEADERS_SCHEMA: &str = r#"
extend schema @upstream(name: "items", baseUrl: "{MOCK}")
type Query {
  item(id: ID!, tenant: String): Item
    @rest(upstream: "items", path: "/items/{args.id}",
          headers: [{name: "x-static", value: "s1"},
                    {name: "x-tenant", value: "{args.tenant}"},
                    {name: "x-mixed", value: "t-{args.tenant}-v"},
                    {name: "x-user", from: "x-client-user"}])
}
type Item { id: ID! }
"#;

#[tokio::test]
async fn header_value_templates_send_static_and_argument_values() {
    let mock = Mock::start(|_| Reply::json(json!({"id": 1}))).await;
    let fanout = Fanout::start(&with_mock(HEADERS_SCHEMA, &mock)).await;
    let resp = fanout
        .query(r#"{ item(id: 1, tenant: "acme") { id } }"#)
        .await;
    assert_eq!(resp, json!({"data": {"item": {"id": "1"}}}));
    let r = only_at(&mock, "/items/1");
    assert_eq!(header(&r, "x-static"), Some("s1"));
    assert_eq!(header(&r, "x-tenant"), Some("acme"));
    assert_eq!(header(&r, "x-mixed"), Some("t-acme-v"));
    assert_eq!(header(&r, "x-user"), None);
}

#[tokio::test]
async fn header_from_copies_the_client_header_only_when_present() {
    let mock = Mock::start(|_| Reply::json(json!({"id": 1}))).await;
    let fanout = Fanout::start(&with_mock(HEADERS_SCHEMA, &mock)).await;
    let body = json!({"query": r#"{ item(id: 1, tenant: "acme") { id } }"#});

    let (status, resp) = fanout
        .post_with(body.clone(), &[("x-client-user", "bob")])
        .await;
    assert_eq!(status, 200);
    assert_eq!(resp, json!({"data": {"item": {"id": "1"}}}));
    let (status, resp) = fanout.post_with(body, &[]).await;
    assert_eq!(status, 200);
    assert_eq!(resp, json!({"data": {"item": {"id": "1"}}}));

    let reqs = mock.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(header(&reqs[0], "x-user"), Some("bob"));
    // The rule renames: the client's own header name does not travel.
    assert_eq!(header(&reqs[0], "x-client-user"), None);
    assert_eq!(header(&reqs[1], "x-user"), None);
    assert_eq!(header(&reqs[1], "x-client-user"), None);
}

#[tokio::test]
async fn client_headers_without_a_rule_never_reach_the_upstream() {
    let mock = Mock::start(|_| Reply::json(json!({"id": 1}))).await;
    let fanout = Fanout::start(&with_mock(HEADERS_SCHEMA, &mock)).await;
    let (status, resp) = fanout
        .post_with(
            json!({"query": r#"{ item(id: 1) { id } }"#}),
            &[
                ("authorization", "Bearer client-secret-token"),
                ("cookie", "session=client-secret-cookie"),
                ("x-api-key", "client-secret-key"),
                ("x-forwarded-for", "10.9.8.7"),
                ("x-custom", "client-secret-custom"),
            ],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(resp, json!({"data": {"item": {"id": "1"}}}));
    let r = only_at(&mock, "/items/1");
    for name in [
        "authorization",
        "cookie",
        "x-api-key",
        "x-forwarded-for",
        "x-custom",
    ] {
        assert_eq!(header(&r, name), None, "{name} reached the upstream");
    }
    for (name, value) in &r.headers {
        let v = String::from_utf8_lossy(value.as_bytes());
        assert!(
            !v.contains("client-secret") && !v.contains("10.9.8.7"),
            "client data leaked upstream in {name}: {v}"
        );
    }
}

#[tokio::test]
async fn upstream_level_headers_apply_to_every_call() {
    let mock = Mock::start(|r| match r.path.as_str() {
        "/users/1" => Reply::json(json!({"id": 1, "name": "Ada", "teamId": "t1"})),
        "/teams/t1" => Reply::json(json!({"id": "t1", "name": "Core"})),
        "/stats" => Reply::json(json!({"count": 3})),
        "/other" => Reply::json(json!({"count": 4})),
        _ => Reply::status(404, "{}"),
    })
    .await;
    let schema = with_mock(
        r#"
        extend schema
          @upstream(name: "users", baseUrl: "{MOCK}",
                    headers: [{name: "x-api-key", value: "k-123"},
                              {name: "authorization", from: "authorization"}])
          @upstream(name: "plain", baseUrl: "{MOCK}")
        type Query {
          user(id: ID!): User @rest(upstream: "users", path: "/users/{args.id}")
          stats: Stats @rest(upstream: "users", path: "/stats",
                             headers: [{name: "x-field", value: "f"}])
          other: Stats @rest(upstream: "plain", path: "/other")
        }
        type User { id: ID! name: String team: Team @rest(upstream: "users", path: "/teams/{parent.teamId}") }
        type Team { id: ID! name: String }
        type Stats { count: Int }
        "#,
        &mock,
    );
    let fanout = Fanout::start(&schema).await;
    let (status, resp) = fanout
        .post_with(
            json!({"query": "{ user(id: 1) { name team { name } } stats { count } other { count } }"}),
            &[("authorization", "Bearer abc")],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        resp,
        json!({"data": {
            "user": {"name": "Ada", "team": {"name": "Core"}},
            "stats": {"count": 3},
            "other": {"count": 4}
        }})
    );
    for path in ["/users/1", "/teams/t1", "/stats"] {
        let r = only_at(&mock, path);
        assert_eq!(header(&r, "x-api-key"), Some("k-123"), "at {path}");
        assert_eq!(header(&r, "authorization"), Some("Bearer abc"), "at {path}");
    }
    assert_eq!(header(&only_at(&mock, "/stats"), "x-field"), Some("f"));
    // Another upstream's calls do not get them.
    let other = only_at(&mock, "/other");
    assert_eq!(header(&other, "x-api-key"), None);
    assert_eq!(header(&other, "authorization"), None);
    assert_eq!(mock.count(), 4);
}

// ---------------------------------------------------------------------------------------
// Bodies, methods and mutations
// ---------------------------------------------------------------------------------------

const MUTATION_SCHEMA: &str = r#"
extend schema @upstream(name: "orders", baseUrl: "{MOCK}")
type Query { ping: String @rest(upstream: "orders", path: "/ping") }
input Shipping { speed: String = "standard", insured: Boolean = true }
input NewOrder {
  productId: ID!
  quantity: Int!
  unitPrice: Float!
  gift: Boolean = false
  note: String
  tags: [String!] = ["new"]
  shipping: Shipping = {}
}
input ThingInput { name: String }
type Mutation {
  createOrder(input: NewOrder!): Order
    @rest(upstream: "orders", method: POST, path: "/orders", body: "{args.input}")
  create(input: ThingInput!): Thing
    @rest(upstream: "orders", method: POST, path: "/things", body: "{args.input}")
  replace(id: ID!, input: ThingInput!): Thing
    @rest(upstream: "orders", method: PUT, path: "/things/{args.id}", body: "{args.input}")
  patch(id: ID!, input: ThingInput!): Thing
    @rest(upstream: "orders", method: PATCH, path: "/things/{args.id}", body: "{args.input}")
  remove(id: ID!): Thing
    @rest(upstream: "orders", method: DELETE, path: "/things/{args.id}")
  slow(input: ThingInput!): Thing
    @rest(upstream: "orders", method: POST, path: "/slow", body: "{args.input}")
}
type Order { id: ID! total: Float }
type Thing { id: ID! name: String }
"#;

#[tokio::test]
async fn body_sends_the_input_object_as_typed_json_with_defaults() {
    let mock = Mock::start(|_| Reply::json(json!({"id": "o1", "total": 19.5}))).await;
    let fanout = Fanout::start(&with_mock(MUTATION_SCHEMA, &mock)).await;
    // Inline literal.
    let resp = fanout
        .query(
            r#"mutation { createOrder(input: {productId: "p1", quantity: 2, unitPrice: 9.5,
                                              shipping: {speed: "fast"}}) { id total } }"#,
        )
        .await;
    assert_eq!(
        resp,
        json!({"data": {"createOrder": {"id": "o1", "total": 19.5}}})
    );
    // The same input through variables.
    let resp = fanout
        .post(json!({
            "query": "mutation($i: NewOrder!) { createOrder(input: $i) { id } }",
            "variables": {"i": {"productId": "p2", "quantity": 3, "unitPrice": 1.25,
                                "tags": ["a", "b"], "gift": true}}
        }))
        .await;
    assert_eq!(resp, json!({"data": {"createOrder": {"id": "o1"}}}));

    let reqs = mock.requests();
    assert_eq!(reqs.len(), 2);
    let expected = [
        json!({"productId": "p1", "quantity": 2, "unitPrice": 9.5, "gift": false,
               "tags": ["new"], "shipping": {"speed": "fast", "insured": true}}),
        json!({"productId": "p2", "quantity": 3, "unitPrice": 1.25, "gift": true,
               "tags": ["a", "b"], "shipping": {"speed": "standard", "insured": true}}),
    ];
    for (r, want) in reqs.iter().zip(expected) {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/orders");
        assert_eq!(header(r, "content-type"), Some("application/json"));
        let mut got = r.json();
        // An input field with no value and no default is left out (or sent as null).
        let note = got.as_object_mut().unwrap().remove("note");
        assert!(matches!(note, None | Some(Json::Null)), "note: {note:?}");
        // Exact equality: 2 must stay the integer 2 (not 2.0, not "2").
        assert_eq!(got, want);
        assert!(got["quantity"].is_u64());
    }
}

#[tokio::test]
async fn each_method_reaches_the_upstream_as_declared() {
    let mock = Mock::start(|_| Reply::json(json!({"id": "t1", "name": "n"}))).await;
    let fanout = Fanout::start(&with_mock(MUTATION_SCHEMA, &mock)).await;
    let resp = fanout
        .query(
            r#"mutation {
                 c: create(input: {name: "a"}) { id }
                 r: replace(id: "t1", input: {name: "b"}) { id }
                 p: patch(id: "t1", input: {name: "c"}) { name }
                 d: remove(id: "t1") { id }
               }"#,
        )
        .await;
    assert_eq!(
        resp,
        json!({"data": {"c": {"id": "t1"}, "r": {"id": "t1"}, "p": {"name": "n"}, "d": {"id": "t1"}}})
    );
    let got: Vec<(String, String, Vec<u8>)> = mock
        .requests()
        .into_iter()
        .map(|r| (r.method.to_string(), r.path, r.body.to_vec()))
        .collect();
    assert_eq!(
        got,
        [
            ("POST".into(), "/things".into(), br#"{"name":"a"}"#.to_vec()),
            (
                "PUT".into(),
                "/things/t1".into(),
                br#"{"name":"b"}"#.to_vec()
            ),
            (
                "PATCH".into(),
                "/things/t1".into(),
                br#"{"name":"c"}"#.to_vec()
            ),
            ("DELETE".into(), "/things/t1".into(), Vec::new()),
        ]
    );
}

#[tokio::test]
async fn root_mutations_run_in_order_one_after_another() {
    let arrivals: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let mock = Mock::start({
        let arrivals = arrivals.clone();
        move |r| {
            arrivals
                .lock()
                .unwrap()
                .push((r.path.clone(), Instant::now()));
            let reply = Reply::json(json!({"id": r.path, "name": "n"}));
            if r.path == "/slow" {
                reply.delay(Duration::from_millis(300))
            } else {
                reply
            }
        }
    })
    .await;
    let fanout = Fanout::start(&with_mock(MUTATION_SCHEMA, &mock)).await;
    let resp = fanout
        .query(
            r#"mutation {
                 first: slow(input: {name: "1"}) { id }
                 second: create(input: {name: "2"}) { id }
               }"#,
        )
        .await;
    assert_eq!(
        resp,
        json!({"data": {"first": {"id": "/slow"}, "second": {"id": "/things"}}})
    );
    let arrivals = arrivals.lock().unwrap().clone();
    let order: Vec<&str> = arrivals.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(order, ["/slow", "/things"]);
    let gap = arrivals[1].1 - arrivals[0].1;
    assert!(
        gap >= Duration::from_millis(300),
        "the second mutation started {gap:?} after the first, before the first finished"
    );
    let bodies: Vec<Json> = mock.requests().iter().map(Recorded::json).collect();
    assert_eq!(bodies, [json!({"name": "1"}), json!({"name": "2"})]);
}

#[tokio::test]
async fn identical_mutations_are_not_deduplicated() {
    let mock = Mock::start(|_| Reply::json(json!({"id": "t1", "name": "x"}))).await;
    let fanout = Fanout::start(&with_mock(MUTATION_SCHEMA, &mock)).await;
    let resp = fanout
        .query(
            r#"mutation {
                 a: create(input: {name: "x"}) { id }
                 b: create(input: {name: "x"}) { id }
               }"#,
        )
        .await;
    assert_eq!(
        resp,
        json!({"data": {"a": {"id": "t1"}, "b": {"id": "t1"}}})
    );
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 2, "{reqs:#?}");
    for r in &reqs {
        assert_eq!(r.method, "POST");
        assert_eq!(r.path, "/things");
        assert_eq!(r.json(), json!({"name": "x"}));
    }
}

// ---------------------------------------------------------------------------------------
// Reading the response: select and @map
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn select_reads_a_nested_part_of_the_response() {
    let mock = Mock::start(|_| {
        Reply::json(json!({
            "data": {"items": [{"id": 1, "total": 2.5}, {"id": 2, "total": 4}], "count": 2},
            "items": [{"id": 99, "total": 0}]
        }))
    })
    .await;
    let schema = with_mock(
        r#"
        extend schema @upstream(name: "orders", baseUrl: "{MOCK}")
        type Query { orders: [Order!] @rest(upstream: "orders", path: "/orders", select: "data.items") }
        type Order { id: ID! total: Float }
        "#,
        &mock,
    );
    let fanout = Fanout::start(&schema).await;
    let resp = fanout.query("{ orders { id total } }").await;
    assert_eq!(
        resp,
        json!({"data": {"orders": [{"id": "1", "total": 2.5}, {"id": "2", "total": 4}]}})
    );
    assert_eq!(paths(&mock), ["/orders"]);
}

#[tokio::test]
async fn map_reads_renamed_keys_and_dot_paths() {
    let mock = Mock::start(|r| match r.path.as_str() {
        "/users/1" => Reply::json(json!({
            "id": 1,
            "email_address": "ada@example.com",
            "email": "WRONG",
            "name": "WRONG",
            "profile": {"name": "Ada", "address": {"city": "London"}},
            "nickname": "ada"
        })),
        "/users/2" => Reply::json(json!({"id": 2, "nickname": "bob"})),
        _ => Reply::status(404, "{}"),
    })
    .await;
    let schema = with_mock(
        r#"
        extend schema @upstream(name: "users", baseUrl: "{MOCK}")
        type Query { user(id: ID!): User @rest(upstream: "users", path: "/users/{args.id}") }
        type User {
          id: ID!
          email: String @map(from: "email_address")
          name: String @map(from: "profile.name")
          city: String @map(from: "profile.address.city")
          nickname: String
        }
        "#,
        &mock,
    );
    let fanout = Fanout::start(&schema).await;
    let resp = fanout
        .query(
            "{ a: user(id: 1) { id email name city nickname } b: user(id: 2) { email name city nickname } }",
        )
        .await;
    assert_eq!(
        resp,
        json!({"data": {
            "a": {"id": "1", "email": "ada@example.com", "name": "Ada", "city": "London", "nickname": "ada"},
            "b": {"email": null, "name": null, "city": null, "nickname": "bob"}
        }})
    );
    let mut got = paths(&mock);
    got.sort();
    assert_eq!(got, ["/users/1", "/users/2"]);
}

// ---------------------------------------------------------------------------------------
// {env.NAME} in baseUrl
// ---------------------------------------------------------------------------------------

const ENV_SCHEMA: &str = r#"
extend schema @upstream(name: "up", baseUrl: "BASE")
type Query { ping: Pong @rest(upstream: "up", path: "/ping") }
type Pong { ok: Boolean }
"#;

#[tokio::test]
async fn env_in_base_url_comes_from_the_lookup_or_its_default() {
    let pong = || Mock::start(|_| Reply::json(json!({"ok": true})));
    let (set, defaulted, overridden) = (pong().await, pong().await, pong().await);

    // {env.UP_URL}, set through the lookup closure.
    let set_url = set.url();
    let lookup = |n: &str| (n == "UP_URL").then(|| set_url.clone());
    let schema = ENV_SCHEMA.replace("BASE", "{env.UP_URL}");
    let (gw, _) = fanout::Gateway::load(&schema, fanout::Options::default(), &lookup)
        .expect("loads with UP_URL set");
    let (url, task) = serve(gw).await;
    assert_eq!(
        post_to(&url, "{ ping { ok } }").await,
        json!({"data": {"ping": {"ok": true}}})
    );
    task.abort();

    // {env.UP_URL:-default}, unset: the default is used.
    let schema = ENV_SCHEMA.replace("BASE", &format!("{{env.UP_URL:-{}}}", defaulted.url()));
    let (gw, _) = fanout::Gateway::load(&schema, fanout::Options::default(), &|_| None)
        .expect("loads with the default");
    let (url, task) = serve(gw).await;
    assert_eq!(
        post_to(&url, "{ ping { ok } }").await,
        json!({"data": {"ping": {"ok": true}}})
    );
    task.abort();

    // {env.UP_URL:-default}, set: the variable wins over the default.
    let over_url = overridden.url();
    let lookup = |n: &str| (n == "UP_URL").then(|| over_url.clone());
    let schema = ENV_SCHEMA.replace("BASE", &format!("{{env.UP_URL:-{}}}", defaulted.url()));
    let (gw, _) = fanout::Gateway::load(&schema, fanout::Options::default(), &lookup)
        .expect("loads with UP_URL set");
    let (url, task) = serve(gw).await;
    assert_eq!(
        post_to(&url, "{ ping { ok } }").await,
        json!({"data": {"ping": {"ok": true}}})
    );
    task.abort();

    assert_eq!(paths(&set), ["/ping"]);
    assert_eq!(paths(&defaulted), ["/ping"]);
    assert_eq!(paths(&overridden), ["/ping"]);

    // {env.UP_URL} unset with no default does not load, and says which variable.
    let schema = ENV_SCHEMA.replace("BASE", "{env.UP_URL}");
    let diags = match fanout::Gateway::load(&schema, fanout::Options::default(), &|_| None) {
        Ok(_) => panic!("loaded with UP_URL unset"),
        Err(d) => d,
    };
    assert!(
        diags.iter().any(|d| d.message.contains("UP_URL")),
        "{diags:#?}"
    );
}

// ---------------------------------------------------------------------------------------
// Value coercion
// ---------------------------------------------------------------------------------------

const COERCE_SCHEMA: &str = r#"
extend schema @upstream(name: "items", baseUrl: "{MOCK}")
scalar JSON
enum Status { OPEN CLOSED }
type Query { item(id: ID!): Item @rest(upstream: "items", path: "/items/{args.id}") }
type Item {
  id: ID
  name: String
  count: Int
  other: Int
  price: Float
  status: Status
  meta: JSON
  scores: [Int!]
  statuses: [Status]
  labels: [String!]!
}
"#;

/// A mock answering `/items/<key>` with `items[key]`, and Fanout over it.
async fn coerce_fanout(items: Json) -> (Mock, Fanout) {
    let mock = Mock::start(move |r| {
        let key = r.path.trim_start_matches("/items/");
        match items.get(key) {
            Some(v) => Reply::json(v.clone()),
            None => Reply::status(404, "{}"),
        }
    })
    .await;
    let fanout = Fanout::start(&with_mock(COERCE_SCHEMA, &mock)).await;
    (mock, fanout)
}

/// Checks the single error of `resp`: code, upstream and path.
fn assert_one_bad_response(resp: &Json, path: Json) {
    assert_eq!(codes(resp), ["UPSTREAM_BAD_RESPONSE"], "{resp:#}");
    let err = &resp["errors"][0];
    assert_eq!(err["path"], path, "{resp:#}");
    assert_eq!(err["extensions"]["upstream"], "items", "{resp:#}");
}

#[tokio::test]
async fn ids_coerce_from_numbers_and_strings() {
    let (mock, fanout) = coerce_fanout(json!({
        "n": {"id": 42},
        "s": {"id": "x-42"}
    }))
    .await;
    let resp = fanout
        .query(r#"{ a: item(id: "n") { id } b: item(id: "s") { id } }"#)
        .await;
    assert_eq!(
        resp,
        json!({"data": {"a": {"id": "42"}, "b": {"id": "x-42"}}})
    );
    let mut got = paths(&mock);
    got.sort();
    assert_eq!(got, ["/items/n", "/items/s"]);
}

#[tokio::test]
async fn ints_accept_whole_numbers_written_either_way() {
    let (mock, fanout) = coerce_fanout(json!({"1": {"count": 3, "other": 3.0}})).await;
    let resp = fanout.query(r#"{ item(id: 1) { count other } }"#).await;
    assert_eq!(resp, json!({"data": {"item": {"count": 3, "other": 3}}}));
    // Serialized as the integer 3, not 3.0.
    assert!(resp["data"]["item"]["other"].is_i64());
    assert_eq!(paths(&mock), ["/items/1"]);
}

#[tokio::test]
async fn fractional_int_is_a_bad_response_on_that_field_only() {
    let (mock, fanout) =
        coerce_fanout(json!({"1": {"id": 1, "name": "x", "count": 3.5, "other": 7}})).await;
    let resp = fanout
        .query(r#"{ item(id: 1) { id name count other } }"#)
        .await;
    assert_eq!(
        resp["data"],
        json!({"item": {"id": "1", "name": "x", "count": null, "other": 7}})
    );
    assert_one_bad_response(&resp, json!(["item", "count"]));
    assert_eq!(paths(&mock), ["/items/1"]);
}

#[tokio::test]
async fn out_of_range_int_is_a_bad_response() {
    let (mock, fanout) = coerce_fanout(json!({
        "1": {"id": 1, "count": 3_000_000_000_i64, "other": -3_000_000_000_i64}
    }))
    .await;
    let resp = fanout.query(r#"{ item(id: 1) { id count } }"#).await;
    assert_eq!(resp["data"], json!({"item": {"id": "1", "count": null}}));
    assert_one_bad_response(&resp, json!(["item", "count"]));
    let resp = fanout.query(r#"{ item(id: 1) { id other } }"#).await;
    assert_eq!(resp["data"], json!({"item": {"id": "1", "other": null}}));
    assert_one_bad_response(&resp, json!(["item", "other"]));
    assert_eq!(paths(&mock), ["/items/1", "/items/1"]);
}

/// Lists of leaves: each item is coerced at its own path, and a bad non-null item nulls the
/// nearest nullable position (the list, or the object holding a non-null list).
#[tokio::test]
async fn list_items_are_coerced_one_by_one() {
    let (_mock, fanout) = coerce_fanout(json!({
        "1": {"id": 1, "scores": [1, 2.5, 3], "statuses": ["OPEN", "NOPE", null], "labels": ["a"]},
        "2": {"id": 2, "labels": ["a", null]}
    }))
    .await;
    let resp = fanout
        .query(r#"{ item(id: 1) { id scores statuses labels } }"#)
        .await;
    assert_eq!(
        resp["data"],
        json!({"item": {"id": "1", "scores": null, "statuses": ["OPEN", null, null], "labels": ["a"]}}),
        "{resp:#}"
    );
    let mut paths: Vec<Json> = resp["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].clone())
        .collect();
    paths.sort_by_key(|p| p.to_string());
    assert_eq!(
        paths,
        [json!(["item", "scores", 1]), json!(["item", "statuses", 1])],
        "{resp:#}"
    );
    assert_eq!(
        codes(&resp),
        ["UPSTREAM_BAD_RESPONSE", "UPSTREAM_BAD_RESPONSE"]
    );

    let resp = fanout.query(r#"{ item(id: 2) { id labels } }"#).await;
    assert_eq!(resp["data"], json!({"item": null}), "{resp:#}");
    assert_one_bad_response(&resp, json!(["item", "labels", 1]));
}

#[tokio::test]
async fn floats_accept_integers() {
    let (mock, fanout) = coerce_fanout(json!({
        "1": {"price": 3},
        "2": {"price": 2.5}
    }))
    .await;
    let resp = fanout
        .query(r#"{ a: item(id: 1) { price } b: item(id: 2) { price } }"#)
        .await;
    assert_eq!(resp.get("errors"), None, "{resp:#}");
    assert_eq!(resp["data"]["a"]["price"].as_f64(), Some(3.0));
    assert_eq!(resp["data"]["b"]["price"].as_f64(), Some(2.5));
    assert_eq!(mock.count(), 2);
}

#[tokio::test]
async fn enums_come_from_strings_and_unknown_values_are_errors() {
    let (mock, fanout) = coerce_fanout(json!({
        "1": {"id": 1, "status": "OPEN"},
        "2": {"id": 2, "status": "ARCHIVED"},
        "3": {"id": 3, "status": 1}
    }))
    .await;
    let resp = fanout
        .query(r#"{ a: item(id: 1) { id status } b: item(id: 2) { id status } }"#)
        .await;
    assert_eq!(
        resp["data"],
        json!({"a": {"id": "1", "status": "OPEN"}, "b": {"id": "2", "status": null}})
    );
    assert_one_bad_response(&resp, json!(["b", "status"]));
    let resp = fanout.query(r#"{ item(id: 3) { id status } }"#).await;
    assert_eq!(resp["data"], json!({"item": {"id": "3", "status": null}}));
    assert_one_bad_response(&resp, json!(["item", "status"]));
    assert_eq!(mock.count(), 3);
}

#[tokio::test]
async fn custom_scalars_pass_any_json_through() {
    let obj = json!({"a": [1, 2.5, "x", null, true], "b": {"c": {"d": []}}});
    let (mock, fanout) = coerce_fanout(json!({
        "1": {"meta": obj},
        "2": {"meta": [1, "two"]},
        "3": {"meta": "text"},
        "4": {"meta": 12.75}
    }))
    .await;
    let resp = fanout
        .query(
            r#"{ a: item(id: 1) { meta } b: item(id: 2) { meta } c: item(id: 3) { meta } d: item(id: 4) { meta } }"#,
        )
        .await;
    assert_eq!(
        resp,
        json!({"data": {
            "a": {"meta": obj},
            "b": {"meta": [1, "two"]},
            "c": {"meta": "text"},
            "d": {"meta": 12.75}
        }})
    );
    assert_eq!(mock.count(), 4);
}

// ---------------------------------------------------------------------------------------
// Interfaces and unions
// ---------------------------------------------------------------------------------------

const ABSTRACT_SCHEMA: &str = r#"
extend schema @upstream(name: "media", baseUrl: "{MOCK}")
interface Node { id: ID! }
type Book implements Node { id: ID! title: String }
type Film implements Node { id: ID! minutes: Int }
union SearchResult = Book | Film
type Query {
  search(q: String): [SearchResult]
    @rest(upstream: "media", path: "/search", query: [{name: "q", value: "{args.q}"}])
  node(id: ID!): Node @rest(upstream: "media", path: "/nodes/{args.id}")
}
"#;

async fn abstract_fanout() -> (Mock, Fanout) {
    let mock = Mock::start(|r| match (r.path.as_str(), r.param("q").as_deref()) {
        ("/search", Some("good")) => Reply::json(json!([
            {"__typename": "Book", "id": 1, "title": "Dune", "minutes": 999},
            {"__typename": "Film", "id": 2, "minutes": 155, "title": "WRONG"}
        ])),
        ("/search", Some("bad")) => Reply::json(json!([
            {"__typename": "Book", "id": 1, "title": "Dune"},
            {"__typename": "Song", "id": 3, "title": "Blue"}
        ])),
        ("/nodes/1", _) => Reply::json(json!({"__typename": "Book", "id": 1, "title": "Dune"})),
        ("/nodes/2", _) => Reply::json(json!({"__typename": "Film", "id": 2, "minutes": 155})),
        _ => Reply::status(404, "{}"),
    })
    .await;
    let fanout = Fanout::start(&with_mock(ABSTRACT_SCHEMA, &mock)).await;
    (mock, fanout)
}

#[tokio::test]
async fn unions_and_interfaces_pick_the_object_type_from_typename() {
    let (mock, fanout) = abstract_fanout().await;
    let resp = fanout
        .query(
            r#"{
              search(q: "good") { ... on Book { id title } ... on Film { id minutes } }
              a: node(id: 1) { id ... on Book { title } ... on Film { minutes } }
              b: node(id: 2) { id ... on Book { title } ... on Film { minutes } }
            }"#,
        )
        .await;
    assert_eq!(
        resp,
        json!({"data": {
            "search": [{"id": "1", "title": "Dune"}, {"id": "2", "minutes": 155}],
            "a": {"id": "1", "title": "Dune"},
            "b": {"id": "2", "minutes": 155}
        }})
    );
    let mut got: Vec<(String, Option<String>)> = mock
        .requests()
        .into_iter()
        .map(|r| (r.path, r.query))
        .collect();
    got.sort();
    assert_eq!(
        got,
        [
            ("/nodes/1".to_owned(), None),
            ("/nodes/2".to_owned(), None),
            ("/search".to_owned(), Some("q=good".to_owned()))
        ]
    );
}

#[tokio::test]
async fn requested_typename_is_the_concrete_type() {
    let (mock, fanout) = abstract_fanout().await;
    let resp = fanout
        .query(r#"{ search(q: "good") { __typename } node(id: 2) { __typename id } }"#)
        .await;
    assert_eq!(
        resp,
        json!({"data": {
            "search": [{"__typename": "Book"}, {"__typename": "Film"}],
            "node": {"__typename": "Film", "id": "2"}
        }})
    );
    assert_eq!(mock.count(), 2);
}

#[tokio::test]
async fn typename_outside_the_union_is_a_bad_response() {
    let (mock, fanout) = abstract_fanout().await;
    let resp = fanout
        .query(r#"{ search(q: "bad") { __typename ... on Book { title } } }"#)
        .await;
    assert_eq!(
        resp["data"],
        json!({"search": [{"__typename": "Book", "title": "Dune"}, null]})
    );
    assert_eq!(codes(&resp), ["UPSTREAM_BAD_RESPONSE"], "{resp:#}");
    assert_eq!(resp["errors"][0]["path"], json!(["search", 1]));
    assert_eq!(resp["errors"][0]["extensions"]["upstream"], "media");
    assert_eq!(only_at(&mock, "/search").query.as_deref(), Some("q=bad"));
}

// ---------------------------------------------------------------------------------------
// Aliases
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn aliases_with_different_arguments_make_separate_calls() {
    let mock = Mock::start(|r| match r.path.as_str() {
        "/users/1" => Reply::json(json!({"id": 1, "name": "Ada"})),
        "/users/2" => Reply::json(json!({"id": 2, "name": "Grace"})),
        _ => Reply::status(404, "{}"),
    })
    .await;
    let schema = with_mock(
        r#"
        extend schema @upstream(name: "users", baseUrl: "{MOCK}")
        type Query { user(id: ID!): User @rest(upstream: "users", path: "/users/{args.id}") }
        type User { id: ID! name: String }
        "#,
        &mock,
    );
    let fanout = Fanout::start(&schema).await;
    let resp = fanout
        .query("{ first: user(id: 1) { name } second: user(id: 2) { id name } }")
        .await;
    assert_eq!(
        resp,
        json!({"data": {
            "first": {"name": "Ada"},
            "second": {"id": "2", "name": "Grace"}
        }})
    );
    let mut got = paths(&mock);
    got.sort();
    assert_eq!(got, ["/users/1", "/users/2"]);
}
