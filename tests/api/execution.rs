//! SPEC section 3: concurrency, deduplication, deadlines, errors, null propagation, field
//! order, masking and cancellation. Every test checks the response and what the upstream saw.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use fanout::Options;
use serde_json::{Value as Json, json};
use tokio::{
    io::AsyncReadExt,
    net::TcpListener,
    sync::mpsc::{UnboundedReceiver, unbounded_channel},
};

use crate::support::{Fanout, Mock, Reply, codes, with_mock};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The `locations` GraphQL reports for the selection that starts at `needle` in a one-line
/// query.
fn loc(query: &str, needle: &str) -> Json {
    let column = query.find(needle).expect("needle is in the query") + 1;
    json!([{"line": 1, "column": column}])
}

/// The paths the mock received, sorted.
fn paths(mock: &Mock) -> Vec<String> {
    let mut p: Vec<String> = mock.requests().into_iter().map(|r| r.path).collect();
    p.sort();
    p
}

/// The keys of a JSON object, in order.
fn keys(v: &Json) -> Vec<String> {
    v.as_object().expect("an object").keys().cloned().collect()
}

// ----------------------------------------------------------------------------------------
// Concurrency
// ----------------------------------------------------------------------------------------

#[tokio::test]
async fn sibling_fields_fetch_concurrently() {
    let starts: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let mock = Mock::start({
        let starts = starts.clone();
        move |r| {
            starts.lock().unwrap().push(Instant::now());
            match r.path.as_str() {
                "/users/1" => Reply::json(json!({"id": 1, "teamId": "t1"})),
                "/teams/t1" => Reply::json(json!({"name": "Core"})).delay(ms(300)),
                "/users/1/orders" => Reply::json(json!([{"id": "o1"}])).delay(ms(300)),
                "/users/1/profile" => Reply::json(json!({"bio": "hi"})).delay(ms(300)),
                _ => Reply::status(404, "{}"),
            }
        }
    })
    .await;
    let schema = with_mock(
        r#"
        extend schema @upstream(name: "users", baseUrl: "{MOCK}")
        type Query { user(id: ID!): User @rest(upstream: "users", path: "/users/{args.id}") }
        type User {
          id: ID!
          team: Team @rest(upstream: "users", path: "/teams/{parent.teamId}")
          orders: [Order] @rest(upstream: "users", path: "/users/{parent.id}/orders")
          profile: Profile @rest(upstream: "users", path: "/users/{parent.id}/profile")
        }
        type Team { name: String }
        type Order { id: ID! }
        type Profile { bio: String }
        "#,
        &mock,
    );
    let fanout = Fanout::start(&schema).await;
    starts.lock().unwrap().clear();
    let t0 = Instant::now();
    let resp = fanout
        .query("{ user(id: 1) { team { name } orders { id } profile { bio } } }")
        .await;
    let elapsed = t0.elapsed();
    assert_eq!(
        resp,
        json!({"data": {"user": {
            "team": {"name": "Core"},
            "orders": [{"id": "o1"}],
            "profile": {"bio": "hi"}
        }}})
    );
    assert!(
        elapsed < ms(750),
        "3 siblings of 300 ms took {elapsed:?}; serial would be 900 ms+"
    );
    assert_eq!(
        paths(&mock),
        [
            "/teams/t1",
            "/users/1",
            "/users/1/orders",
            "/users/1/profile"
        ]
    );
    // The three sibling calls (after the user) all started before the first one finished.
    let starts = starts.lock().unwrap().clone();
    assert_eq!(starts.len(), 4);
    let siblings = &starts[1..];
    let first = *siblings.iter().min().unwrap();
    let last = *siblings.iter().max().unwrap();
    assert!(
        last.duration_since(first) < ms(250),
        "sibling calls did not overlap: they started {:?} apart",
        last.duration_since(first)
    );
}

#[tokio::test]
async fn nested_levels_resolve_concurrently_at_every_depth() {
    let mock = Mock::start(|r| {
        let d = ms(200);
        let p = r.path.as_str();
        if p == "/shops/1" {
            Reply::json(json!({"id": 1, "ownerId": "u1"})).delay(d)
        } else if p == "/users/u1" {
            Reply::json(json!({"name": "Ada"})).delay(d)
        } else if p == "/shops/1/address" {
            Reply::json(json!({"city": "Oslo"})).delay(d)
        } else if p == "/shops/1/products" {
            Reply::json(json!([{"id": 1}, {"id": 2}, {"id": 3}, {"id": 4}])).delay(d)
        } else if let Some(id) = p.strip_prefix("/stock/") {
            Reply::json(json!({"count": id.parse::<i64>().unwrap() * 10})).delay(d)
        } else {
            Reply::status(404, "{}")
        }
    })
    .await;
    let schema = with_mock(
        r#"
        extend schema @upstream(name: "s", baseUrl: "{MOCK}")
        type Query { shop(id: ID!): Shop @rest(upstream: "s", path: "/shops/{args.id}") }
        type Shop {
          id: ID!
          owner: User @rest(upstream: "s", path: "/users/{parent.ownerId}")
          address: Address @rest(upstream: "s", path: "/shops/{parent.id}/address")
          products: [Product!] @rest(upstream: "s", path: "/shops/{parent.id}/products")
        }
        type User { name: String }
        type Address { city: String }
        type Product { id: ID! stock: Stock @rest(upstream: "s", path: "/stock/{parent.id}") }
        type Stock { count: Int }
        "#,
        &mock,
    );
    let fanout = Fanout::start(&schema).await;
    let t0 = Instant::now();
    let resp = fanout
        .query(
            "{ shop(id: 1) { owner { name } address { city } products { id stock { count } } } }",
        )
        .await;
    let elapsed = t0.elapsed();
    assert_eq!(
        resp,
        json!({"data": {"shop": {
            "owner": {"name": "Ada"},
            "address": {"city": "Oslo"},
            "products": [
                {"id": "1", "stock": {"count": 10}},
                {"id": "2", "stock": {"count": 20}},
                {"id": "3", "stock": {"count": 30}},
                {"id": "4", "stock": {"count": 40}}
            ]
        }}})
    );
    // Depth 3 at 200 ms a level is about 600 ms; serial would be 9 x 200 ms = 1.8 s.
    assert!(elapsed < ms(1000), "depth-3 query took {elapsed:?}");
    assert_eq!(
        paths(&mock),
        [
            "/shops/1",
            "/shops/1/address",
            "/shops/1/products",
            "/stock/1",
            "/stock/2",
            "/stock/3",
            "/stock/4",
            "/users/u1"
        ]
    );
}

#[tokio::test]
async fn list_items_resolve_concurrently() {
    let mock = Mock::start(|r| match r.path.as_str() {
        "/items" => Reply::json(json!([{"id": 1}, {"id": 2}, {"id": 3}, {"id": 4}, {"id": 5}])),
        p => match p.strip_prefix("/details/") {
            Some(id) => Reply::json(json!({"text": format!("d{id}")})).delay(ms(300)),
            None => Reply::status(404, "{}"),
        },
    })
    .await;
    let schema = with_mock(
        r#"
        extend schema @upstream(name: "s", baseUrl: "{MOCK}")
        type Query { items: [Item!]! @rest(upstream: "s", path: "/items") }
        type Item { id: ID! detail: Detail @rest(upstream: "s", path: "/details/{parent.id}") }
        type Detail { text: String }
        "#,
        &mock,
    );
    let fanout = Fanout::start(&schema).await;
    let t0 = Instant::now();
    let resp = fanout.query("{ items { id detail { text } } }").await;
    let elapsed = t0.elapsed();
    let expected: Vec<Json> = (1..=5)
        .map(|i| json!({"id": i.to_string(), "detail": {"text": format!("d{i}")}}))
        .collect();
    assert_eq!(resp, json!({"data": {"items": expected}}));
    assert!(
        elapsed < ms(900),
        "5 items of 300 ms each took {elapsed:?}; serial would be 1.5 s"
    );
    assert_eq!(
        paths(&mock),
        [
            "/details/1",
            "/details/2",
            "/details/3",
            "/details/4",
            "/details/5",
            "/items"
        ]
    );
}

#[tokio::test]
async fn root_query_fields_run_concurrently() {
    let mock = Mock::start(|r| match r.path.as_str() {
        "/a" => Reply::json(json!({"n": 1})).delay(ms(300)),
        "/b" => Reply::json(json!({"n": 2})).delay(ms(300)),
        "/c" => Reply::json(json!({"n": 3})).delay(ms(300)),
        _ => Reply::status(404, "{}"),
    })
    .await;
    let schema = with_mock(
        r#"
        extend schema @upstream(name: "s", baseUrl: "{MOCK}")
        type Query {
          a: Thing @rest(upstream: "s", path: "/a")
          b: Thing @rest(upstream: "s", path: "/b")
          c: Thing @rest(upstream: "s", path: "/c")
        }
        type Thing { n: Int }
        "#,
        &mock,
    );
    let fanout = Fanout::start(&schema).await;
    let t0 = Instant::now();
    let resp = fanout.query("{ a { n } b { n } c { n } }").await;
    let elapsed = t0.elapsed();
    assert_eq!(
        resp,
        json!({"data": {"a": {"n": 1}, "b": {"n": 2}, "c": {"n": 3}}})
    );
    assert!(
        elapsed < ms(750),
        "3 root fields of 300 ms took {elapsed:?}; serial would be 900 ms+"
    );
    assert_eq!(paths(&mock), ["/a", "/b", "/c"]);
}

// ----------------------------------------------------------------------------------------
// Deduplication
// ----------------------------------------------------------------------------------------

const DEDUP_SCHEMA: &str = r#"
    extend schema @upstream(name: "users", baseUrl: "{MOCK}")
    type Query { users: [User!]! @rest(upstream: "users", path: "/users") }
    type User { id: ID! team: Team @rest(upstream: "users", path: "/teams/{parent.teamId}") }
    type Team { name: String }
"#;

fn dedup_mock_reply(r: &crate::support::Recorded) -> Reply {
    match r.path.as_str() {
        "/users" => Reply::json(json!([
            {"id": 1, "teamId": "t1"},
            {"id": 2, "teamId": "t1"},
            {"id": 3, "teamId": "t2"}
        ])),
        "/teams/t1" => Reply::json(json!({"name": "Core"})).delay(ms(50)),
        "/teams/t2" => Reply::json(json!({"name": "Edge"})).delay(ms(50)),
        _ => Reply::status(404, "{}"),
    }
}

#[tokio::test]
async fn identical_gets_within_one_request_are_made_once() {
    let mock = Mock::start(dedup_mock_reply).await;
    let fanout = Fanout::start(&with_mock(DEDUP_SCHEMA, &mock)).await;
    let resp = fanout.query("{ users { id team { name } } }").await;
    assert_eq!(
        resp,
        json!({"data": {"users": [
            {"id": "1", "team": {"name": "Core"}},
            {"id": "2", "team": {"name": "Core"}},
            {"id": "3", "team": {"name": "Edge"}}
        ]}})
    );
    let reqs = mock.requests();
    let t1 = reqs.iter().filter(|r| r.path == "/teams/t1").count();
    assert_eq!(t1, 1, "the same GET /teams/t1 was made {t1} times");
    assert_eq!(paths(&mock), ["/teams/t1", "/teams/t2", "/users"]);
}

#[tokio::test]
async fn separate_requests_do_not_share_calls() {
    let mock = Mock::start(dedup_mock_reply).await;
    let fanout = Fanout::start(&with_mock(DEDUP_SCHEMA, &mock)).await;
    let q = "{ users { id team { name } } }";
    let (r1, r2) = tokio::join!(fanout.query(q), fanout.query(q));
    assert_eq!(r1, r2);
    assert_eq!(r1["data"]["users"][1]["team"], json!({"name": "Core"}));
    let t1 = mock
        .requests()
        .iter()
        .filter(|r| r.path == "/teams/t1")
        .count();
    assert_eq!(t1, 2, "each request makes its own GET /teams/t1");
    assert_eq!(
        mock.requests()
            .iter()
            .filter(|r| r.path == "/users")
            .count(),
        2
    );
}

// ----------------------------------------------------------------------------------------
// Timeouts
// ----------------------------------------------------------------------------------------

#[tokio::test]
async fn field_timeout_nulls_only_that_field() {
    let mock = Mock::start(|r| match r.path.as_str() {
        "/slow" => Reply::json(json!({"n": 1})).delay(Duration::from_secs(1)),
        "/fast" | "/shop" => Reply::json(json!({"n": 2})),
        _ => Reply::status(404, "{}"),
    })
    .await;
    let schema = with_mock(
        r#"
        extend schema @upstream(name: "s", baseUrl: "{MOCK}")
        type Query { shop: Shop @rest(upstream: "s", path: "/shop") }
        type Shop {
          n: Int
          slow: Thing @rest(upstream: "s", path: "/slow", timeout: "100ms")
          fast: Thing @rest(upstream: "s", path: "/fast")
        }
        type Thing { n: Int }
        "#,
        &mock,
    );
    let fanout = Fanout::start(&schema).await;
    let q = "{ shop { n slow { n } fast { n } } }";
    let t0 = Instant::now();
    let resp = fanout.query(q).await;
    let elapsed = t0.elapsed();
    assert_eq!(
        resp["data"],
        json!({"shop": {"n": 2, "slow": null, "fast": {"n": 2}}})
    );
    assert_eq!(codes(&resp), ["UPSTREAM_TIMEOUT"]);
    let err = &resp["errors"][0];
    assert_eq!(err["path"], json!(["shop", "slow"]));
    assert_eq!(err["locations"], loc(q, "slow"));
    assert_eq!(err["extensions"]["upstream"], "s");
    assert!(
        elapsed < ms(700),
        "a 100 ms deadline answered after {elapsed:?}"
    );
    assert_eq!(paths(&mock), ["/fast", "/shop", "/slow"]);
}

#[tokio::test]
async fn upstream_timeout_applies_when_field_has_none() {
    let mock = Mock::start(|r| match r.path.as_str() {
        "/slow" => Reply::json(json!({"n": 1})).delay(Duration::from_secs(1)),
        "/ok" => Reply::json(json!({"n": 2})).delay(ms(300)),
        _ => Reply::status(404, "{}"),
    })
    .await;
    let schema = with_mock(
        r#"
        extend schema
          @upstream(name: "quick", baseUrl: "{MOCK}", timeout: "100ms")
          @upstream(name: "normal", baseUrl: "{MOCK}")
        type Query {
          slow: Thing @rest(upstream: "quick", path: "/slow")
          ok: Thing @rest(upstream: "normal", path: "/ok")
        }
        type Thing { n: Int }
        "#,
        &mock,
    );
    let fanout = Fanout::start(&schema).await;
    let q = "{ slow { n } ok { n } }";
    let t0 = Instant::now();
    let resp = fanout.query(q).await;
    let elapsed = t0.elapsed();
    // `ok` takes 300 ms, more than the other upstream's 100 ms: the deadline is per upstream.
    assert_eq!(resp["data"], json!({"slow": null, "ok": {"n": 2}}));
    assert_eq!(codes(&resp), ["UPSTREAM_TIMEOUT"]);
    assert_eq!(resp["errors"][0]["path"], json!(["slow"]));
    assert_eq!(resp["errors"][0]["locations"], loc(q, "slow"));
    assert_eq!(resp["errors"][0]["extensions"]["upstream"], "quick");
    assert!(elapsed < ms(800), "answered after {elapsed:?}");
    assert_eq!(paths(&mock), ["/ok", "/slow"]);
}

#[tokio::test]
async fn request_timeout_caps_a_longer_field_timeout() {
    let mock = Mock::start(|r| match r.path.as_str() {
        "/slow" => Reply::json(json!({"n": 1})).delay(Duration::from_secs(2)),
        _ => Reply::status(404, "{}"),
    })
    .await;
    let schema = with_mock(
        r#"
        extend schema @upstream(name: "s", baseUrl: "{MOCK}")
        type Query { slow: Thing @rest(upstream: "s", path: "/slow", timeout: "5s") }
        type Thing { n: Int }
        "#,
        &mock,
    );
    let options = Options {
        request_timeout: ms(300),
        ..Default::default()
    };
    let fanout = Fanout::with_options(&schema, options).await;
    let t0 = Instant::now();
    let resp = fanout.query("{ slow { n } }").await;
    let elapsed = t0.elapsed();
    assert_eq!(resp["data"], json!({"slow": null}));
    assert_eq!(codes(&resp), ["UPSTREAM_TIMEOUT"]);
    assert_eq!(resp["errors"][0]["path"], json!(["slow"]));
    assert_eq!(resp["errors"][0]["extensions"]["upstream"], "s");
    assert!(
        elapsed < ms(1500),
        "a 300 ms request deadline answered after {elapsed:?}"
    );
    assert_eq!(paths(&mock), ["/slow"]);
}

// ----------------------------------------------------------------------------------------
// Errors
// ----------------------------------------------------------------------------------------

const ERR_SCHEMA: &str = r#"
    extend schema @upstream(name: "users", baseUrl: "{MOCK}")
    type Query {
      user(id: ID!): User @rest(upstream: "users", path: "/users/{args.id}")
      users: [User] @rest(upstream: "users", path: "/users")
      ping: Ping @rest(upstream: "users", path: "/ping")
    }
    type User { id: ID! name: String team: Team @rest(upstream: "users", path: "/teams/{parent.teamId}") }
    type Team { name: String }
    type Ping { ok: Boolean }
"#;

#[tokio::test]
async fn http_500_is_upstream_http_error_with_status_and_upstream() {
    let mock = Mock::start(|r| match r.path.as_str() {
        "/users/1" => Reply::status(500, r#"{"error": "boom"}"#),
        "/ping" => Reply::json(json!({"ok": true})),
        _ => Reply::status(404, "{}"),
    })
    .await;
    let fanout = Fanout::start(&with_mock(ERR_SCHEMA, &mock)).await;
    let q = "{ user(id: 1) { id name } ping { ok } }";
    let resp = fanout.query(q).await;
    assert_eq!(resp["data"], json!({"user": null, "ping": {"ok": true}}));
    assert_eq!(codes(&resp), ["UPSTREAM_HTTP_ERROR"]);
    let err = &resp["errors"][0];
    assert_eq!(err["extensions"]["httpStatus"], 500);
    assert_eq!(err["extensions"]["upstream"], "users");
    assert_eq!(err["path"], json!(["user"]));
    assert_eq!(err["locations"], loc(q, "user"));
    assert_eq!(paths(&mock), ["/ping", "/users/1"]);
}

#[tokio::test]
async fn connection_refused_is_upstream_unavailable() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mock = Mock::start(|r| match r.path.as_str() {
        "/ping" => Reply::json(json!({"ok": true})),
        _ => Reply::status(404, "{}"),
    })
    .await;
    let schema = with_mock(
        &r#"
        extend schema
          @upstream(name: "gone", baseUrl: "http://127.0.0.1:PORT")
          @upstream(name: "users", baseUrl: "{MOCK}")
        type Query {
          user(id: ID!): User @rest(upstream: "gone", path: "/users/{args.id}")
          ping: Ping @rest(upstream: "users", path: "/ping")
        }
        type User { id: ID! }
        type Ping { ok: Boolean }
        "#
        .replace("PORT", &port.to_string()),
        &mock,
    );
    let fanout = Fanout::start(&schema).await;
    let q = "{ ping { ok } user(id: 1) { id } }";
    let resp = fanout.query(q).await;
    assert_eq!(resp["data"], json!({"ping": {"ok": true}, "user": null}));
    assert_eq!(codes(&resp), ["UPSTREAM_UNAVAILABLE"]);
    let err = &resp["errors"][0];
    assert_eq!(err["extensions"]["upstream"], "gone");
    assert_eq!(err["path"], json!(["user"]));
    assert_eq!(err["locations"], loc(q, "user"));
    assert_eq!(paths(&mock), ["/ping"]);
}

#[tokio::test]
async fn non_json_body_is_upstream_bad_response() {
    let mock = Mock::start(|r| match r.path.as_str() {
        "/users/1" => Reply::json(json!({"id": 1, "name": "Ada", "teamId": "t1"})),
        "/teams/t1" => Reply::text(200, "<html>not json</html>", "text/html"),
        _ => Reply::status(404, "{}"),
    })
    .await;
    let fanout = Fanout::start(&with_mock(ERR_SCHEMA, &mock)).await;
    let q = "{ user(id: 1) { name team { name } } }";
    let resp = fanout.query(q).await;
    assert_eq!(resp["data"], json!({"user": {"name": "Ada", "team": null}}));
    assert_eq!(codes(&resp), ["UPSTREAM_BAD_RESPONSE"]);
    let err = &resp["errors"][0];
    assert_eq!(err["extensions"]["upstream"], "users");
    assert_eq!(err["path"], json!(["user", "team"]));
    assert_eq!(err["locations"], loc(q, "team"));
    assert_eq!(paths(&mock), ["/teams/t1", "/users/1"]);
}

#[tokio::test]
async fn object_where_list_expected_is_upstream_bad_response() {
    let mock = Mock::start(|r| match r.path.as_str() {
        "/users" => Reply::json(json!({"id": 1, "name": "Ada"})),
        "/ping" => Reply::json(json!({"ok": true})),
        _ => Reply::status(404, "{}"),
    })
    .await;
    let fanout = Fanout::start(&with_mock(ERR_SCHEMA, &mock)).await;
    let q = "{ ping { ok } users { id name } }";
    let resp = fanout.query(q).await;
    assert_eq!(resp["data"], json!({"ping": {"ok": true}, "users": null}));
    assert_eq!(codes(&resp), ["UPSTREAM_BAD_RESPONSE"]);
    let err = &resp["errors"][0];
    assert_eq!(err["extensions"]["upstream"], "users");
    assert_eq!(err["path"], json!(["users"]));
    assert_eq!(err["locations"], loc(q, "users"));
    assert_eq!(paths(&mock), ["/ping", "/users"]);
}

#[tokio::test]
async fn not_found_on_nullable_single_object_is_null_without_error() {
    let mock = Mock::start(|r| match r.path.as_str() {
        "/users/1" => Reply::json(json!({"id": 1, "name": "Ada", "teamId": "gone"})),
        "/users/404" => Reply::status(404, r#"{"error": "no such user"}"#),
        "/teams/gone" => Reply::status(404, r#"{"error": "no such team"}"#),
        _ => Reply::status(500, "{}"),
    })
    .await;
    let fanout = Fanout::start(&with_mock(ERR_SCHEMA, &mock)).await;
    let resp = fanout
        .query("{ missing: user(id: 404) { id } user(id: 1) { name team { name } } }")
        .await;
    assert_eq!(
        resp,
        json!({"data": {"missing": null, "user": {"name": "Ada", "team": null}}})
    );
    assert_eq!(paths(&mock), ["/teams/gone", "/users/1", "/users/404"]);
}

#[tokio::test]
async fn not_found_on_list_field_is_upstream_http_error() {
    let mock = Mock::start(|r| match r.path.as_str() {
        "/users" => Reply::status(404, "{}"),
        _ => Reply::status(500, "{}"),
    })
    .await;
    let fanout = Fanout::start(&with_mock(ERR_SCHEMA, &mock)).await;
    let q = "{ users { id } }";
    let resp = fanout.query(q).await;
    assert_eq!(resp["data"], json!({"users": null}));
    assert_eq!(codes(&resp), ["UPSTREAM_HTTP_ERROR"]);
    let err = &resp["errors"][0];
    assert_eq!(err["extensions"]["httpStatus"], 404);
    assert_eq!(err["extensions"]["upstream"], "users");
    assert_eq!(err["path"], json!(["users"]));
    assert_eq!(err["locations"], loc(q, "users"));
    assert_eq!(paths(&mock), ["/users"]);
}

// ----------------------------------------------------------------------------------------
// Null propagation
// ----------------------------------------------------------------------------------------

const NULL_SCHEMA: &str = r#"
    extend schema @upstream(name: "s", baseUrl: "{MOCK}")
    type Query {
      user(id: ID!): User @rest(upstream: "s", path: "/users/{args.id}")
      items: [Item!] @rest(upstream: "s", path: "/items")
      ping: Ping @rest(upstream: "s", path: "/ping")
    }
    type User { id: ID! name: String team: Team! @rest(upstream: "s", path: "/teams/{parent.teamId}") }
    type Team { name: String }
    type Item { id: ID! detail: Detail! @rest(upstream: "s", path: "/details/{parent.id}") }
    type Detail { text: String }
    type Ping { ok: Boolean }
"#;

fn null_mock_reply(r: &crate::support::Recorded) -> Reply {
    match r.path.as_str() {
        "/users/1" => Reply::json(json!({"id": 1, "name": "Ada", "teamId": "t1"})),
        "/teams/t1" => Reply::status(500, "{}"),
        "/items" => Reply::json(json!([{"id": 1}, {"id": 2}, {"id": 3}])),
        "/details/1" | "/details/3" => Reply::json(json!({"text": "fine"})),
        "/details/2" => Reply::status(503, "{}"),
        "/ping" => Reply::json(json!({"ok": true})),
        _ => Reply::status(404, "{}"),
    }
}

#[tokio::test]
async fn failing_non_null_field_nulls_nearest_nullable_parent() {
    let mock = Mock::start(null_mock_reply).await;
    let fanout = Fanout::start(&with_mock(NULL_SCHEMA, &mock)).await;
    let q = "{ user(id: 1) { name team { name } } ping { ok } }";
    let resp = fanout.query(q).await;
    assert_eq!(resp["data"], json!({"user": null, "ping": {"ok": true}}));
    assert_eq!(codes(&resp), ["UPSTREAM_HTTP_ERROR"]);
    let err = &resp["errors"][0];
    assert_eq!(err["path"], json!(["user", "team"]));
    assert_eq!(err["locations"], loc(q, "team"));
    assert_eq!(err["extensions"]["httpStatus"], 500);
    assert_eq!(paths(&mock), ["/ping", "/teams/t1", "/users/1"]);
}

#[tokio::test]
async fn failing_non_null_list_item_nulls_the_nullable_list() {
    let mock = Mock::start(null_mock_reply).await;
    let fanout = Fanout::start(&with_mock(NULL_SCHEMA, &mock)).await;
    let q = "{ items { id detail { text } } ping { ok } }";
    let resp = fanout.query(q).await;
    assert_eq!(resp["data"], json!({"items": null, "ping": {"ok": true}}));
    assert_eq!(codes(&resp), ["UPSTREAM_HTTP_ERROR"]);
    let err = &resp["errors"][0];
    assert_eq!(err["path"], json!(["items", 1, "detail"]));
    assert_eq!(err["locations"], loc(q, "detail"));
    assert_eq!(err["extensions"]["httpStatus"], 503);
    let seen = paths(&mock);
    for p in ["/items", "/details/2", "/ping"] {
        assert!(seen.iter().any(|s| s == p), "{p} not called: {seen:?}");
    }
}

#[tokio::test]
async fn failing_non_null_root_field_nulls_data() {
    let mock = Mock::start(|r| match r.path.as_str() {
        "/boom" => Reply::status(500, "{}"),
        "/ping" => Reply::json(json!({"ok": true})),
        _ => Reply::status(404, "{}"),
    })
    .await;
    let schema = with_mock(
        r#"
        extend schema @upstream(name: "s", baseUrl: "{MOCK}")
        type Query {
          ping: Ping @rest(upstream: "s", path: "/ping")
          boom: Ping! @rest(upstream: "s", path: "/boom")
        }
        type Ping { ok: Boolean }
        "#,
        &mock,
    );
    let fanout = Fanout::start(&schema).await;
    let q = "{ ping { ok } boom { ok } }";
    let resp = fanout.query(q).await;
    assert_eq!(resp["data"], Json::Null);
    assert_eq!(codes(&resp), ["UPSTREAM_HTTP_ERROR"]);
    let err = &resp["errors"][0];
    assert_eq!(err["path"], json!(["boom"]));
    assert_eq!(err["locations"], loc(q, "boom"));
    assert_eq!(err["extensions"]["upstream"], "s");
    assert!(
        resp.as_object().unwrap().contains_key("data"),
        "`data` must be present and null: {resp}"
    );
    assert_eq!(paths(&mock), ["/boom", "/ping"]);
}

// ----------------------------------------------------------------------------------------
// Field order
// ----------------------------------------------------------------------------------------

const ORDER_SCHEMA: &str = r#"
    extend schema @upstream(name: "s", baseUrl: "{MOCK}")
    type Query {
      slow: Thing @rest(upstream: "s", path: "/slow")
      mid: Thing @rest(upstream: "s", path: "/mid")
      fast: Thing @rest(upstream: "s", path: "/fast")
      user: User @rest(upstream: "s", path: "/user")
    }
    type Thing { n: Int }
    type User {
      id: ID!
      name: String
      email: String
      late: Thing @rest(upstream: "s", path: "/slow")
      early: Thing @rest(upstream: "s", path: "/fast")
    }
"#;

fn order_mock_reply(r: &crate::support::Recorded) -> Reply {
    match r.path.as_str() {
        "/slow" => Reply::json(json!({"n": 1})).delay(ms(300)),
        "/mid" => Reply::json(json!({"n": 2})).delay(ms(150)),
        "/fast" => Reply::json(json!({"n": 3})),
        "/user" => Reply::json(json!({"id": 1, "email": "a@x", "name": "Ada"})),
        _ => Reply::status(404, "{}"),
    }
}

#[tokio::test]
async fn response_keeps_root_field_order_not_completion_order() {
    let mock = Mock::start(order_mock_reply).await;
    let fanout = Fanout::start(&with_mock(ORDER_SCHEMA, &mock)).await;
    let resp = fanout.query("{ slow { n } mid { n } fast { n } }").await;
    assert_eq!(keys(&resp["data"]), ["slow", "mid", "fast"]);
    assert_eq!(
        resp,
        json!({"data": {"slow": {"n": 1}, "mid": {"n": 2}, "fast": {"n": 3}}})
    );
    assert_eq!(paths(&mock), ["/fast", "/mid", "/slow"]);
}

#[tokio::test]
async fn response_keeps_nested_field_order_with_aliases_and_fragments() {
    let mock = Mock::start(order_mock_reply).await;
    let fanout = Fanout::start(&with_mock(ORDER_SCHEMA, &mock)).await;
    let resp = fanout
        .query(
            "{ user { later: late { n } name ... on User { email } early { n } id ...F } } \
             fragment F on User { x: early { n } first: late { n } }",
        )
        .await;
    let user = &resp["data"]["user"];
    assert_eq!(
        keys(user),
        ["later", "name", "email", "early", "id", "x", "first"]
    );
    assert_eq!(
        *user,
        json!({
            "later": {"n": 1}, "name": "Ada", "email": "a@x", "early": {"n": 3},
            "id": "1", "x": {"n": 3}, "first": {"n": 1}
        })
    );
    assert!(resp.get("errors").is_none(), "{resp}");
    // /slow and /fast are each fetched once: identical GETs of one request are shared.
    assert_eq!(paths(&mock), ["/fast", "/slow", "/user"]);
}

// ----------------------------------------------------------------------------------------
// Masking
// ----------------------------------------------------------------------------------------

const MASK_SCHEMA: &str = r#"
    extend schema @upstream(name: "vault", baseUrl: "{MOCK}")
    type Query {
      secret: Thing @rest(upstream: "vault", path: "/secret",
                          query: [{name: "apiKey", value: "hunter2-query-value"}])
    }
    type Thing { n: Int }
"#;

fn mask_mock_reply(r: &crate::support::Recorded) -> Reply {
    match r.path.as_str() {
        "/secret" => Reply::status(500, r#"{"error": "db down", "token": "secret-token-123"}"#),
        _ => Reply::status(404, "{}"),
    }
}

async fn raw_query(fanout: &Fanout, query: &str) -> String {
    fanout
        .http
        .post(fanout.url())
        .json(&json!({ "query": query }))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn upstream_bodies_and_urls_are_not_shown_to_clients() {
    let mock = Mock::start(mask_mock_reply).await;
    let fanout = Fanout::start(&with_mock(MASK_SCHEMA, &mock)).await;
    let text = raw_query(&fanout, "{ secret { n } }").await;
    let resp: Json = serde_json::from_str(&text).unwrap();
    assert_eq!(resp["data"], json!({"secret": null}));
    assert_eq!(codes(&resp), ["UPSTREAM_HTTP_ERROR"]);
    assert_eq!(resp["errors"][0]["extensions"]["httpStatus"], 500);
    assert_eq!(resp["errors"][0]["extensions"]["upstream"], "vault");
    assert!(resp["errors"][0]["extensions"].get("detail").is_none());
    let port = mock.addr.port().to_string();
    for leak in [
        "secret-token-123",
        "db down",
        "hunter2-query-value",
        "apiKey",
        "127.0.0.1",
        "/secret",
        port.as_str(),
    ] {
        assert!(!text.contains(leak), "the response shows {leak:?}: {text}");
    }
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].path, "/secret");
    assert_eq!(
        reqs[0].param("apiKey").as_deref(),
        Some("hunter2-query-value")
    );
}

#[tokio::test]
async fn debug_errors_show_the_detail() {
    let mock = Mock::start(mask_mock_reply).await;
    let options = Options {
        debug_errors: true,
        ..Default::default()
    };
    let fanout = Fanout::with_options(&with_mock(MASK_SCHEMA, &mock), options).await;
    let text = raw_query(&fanout, "{ secret { n } }").await;
    let resp: Json = serde_json::from_str(&text).unwrap();
    assert_eq!(resp["data"], json!({"secret": null}));
    assert_eq!(codes(&resp), ["UPSTREAM_HTTP_ERROR"]);
    let detail = resp["errors"][0]["extensions"]["detail"]
        .as_str()
        .unwrap_or_else(|| panic!("no extensions.detail with debug errors: {text}"));
    assert!(
        detail.contains("secret-token-123"),
        "the detail lacks the upstream body: {detail}"
    );
    assert_eq!(mock.count(), 1);
}

// ----------------------------------------------------------------------------------------
// Cancellation
// ----------------------------------------------------------------------------------------

/// A raw TCP upstream that reads each request head and never answers. It records every
/// request head and reports the moment each connection is closed by its peer.
struct SilentUpstream {
    addr: SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
    closed: UnboundedReceiver<Instant>,
}

impl SilentUpstream {
    async fn start() -> SilentUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let heads: Arc<Mutex<Vec<String>>> = Arc::default();
        let (tx, closed) = unbounded_channel();
        let log = heads.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut socket, _)) = listener.accept().await else {
                    return;
                };
                let log = log.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 4096];
                    loop {
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => {
                                let _ = tx.send(Instant::now());
                                return;
                            }
                            Ok(n) => {
                                buf.extend_from_slice(&chunk[..n]);
                                if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                                    break;
                                }
                            }
                        }
                    }
                    log.lock()
                        .unwrap()
                        .push(String::from_utf8_lossy(&buf).into_owned());
                    // Wait for the peer to close; never answer.
                    loop {
                        match socket.read(&mut chunk).await {
                            Ok(0) | Err(_) => break,
                            Ok(_) => {}
                        }
                    }
                    let _ = tx.send(Instant::now());
                });
            }
        });
        SilentUpstream {
            addr,
            heads,
            closed,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// When the first connection was closed by Fanout, if within `wait`.
    async fn first_close(&mut self, wait: Duration) -> Option<Instant> {
        tokio::time::timeout(wait, self.closed.recv())
            .await
            .ok()
            .flatten()
    }
}

#[tokio::test]
async fn client_disconnect_drops_the_upstream_call() {
    let mut up = SilentUpstream::start().await;
    let schema = format!(
        r#"
        extend schema @upstream(name: "slow", baseUrl: "{}")
        type Query {{ thing: Thing @rest(upstream: "slow", path: "/things/1", timeout: "5s") }}
        type Thing {{ n: Int }}
        "#,
        up.url()
    );
    let options = Options {
        request_timeout: Duration::from_secs(10),
        ..Default::default()
    };
    let fanout = Fanout::with_options(&schema, options).await;
    let impatient = reqwest::Client::builder().timeout(ms(200)).build().unwrap();
    let t0 = Instant::now();
    let result = impatient
        .post(fanout.url())
        .json(&json!({"query": "{ thing { n } }"}))
        .send()
        .await;
    assert!(
        result.is_err(),
        "the client should have given up after 200 ms"
    );
    drop(impatient);
    let closed = up
        .first_close(Duration::from_secs(4))
        .await
        .expect("the upstream connection was still open 4 s after the client left");
    let after = closed.duration_since(t0);
    assert!(
        after < ms(1200),
        "the upstream call was dropped {after:?} after the request began; the client left at 200 ms"
    );
    let heads = up.heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 1, "{heads:?}");
    assert!(
        heads[0].starts_with("GET /things/1 HTTP/1.1\r\n"),
        "{heads:?}"
    );
}

#[tokio::test]
async fn field_deadline_drops_the_upstream_call() {
    let mut up = SilentUpstream::start().await;
    let schema = format!(
        r#"
        extend schema @upstream(name: "slow", baseUrl: "{}")
        type Query {{ thing: Thing @rest(upstream: "slow", path: "/things/1", timeout: "100ms") }}
        type Thing {{ n: Int }}
        "#,
        up.url()
    );
    let fanout = Fanout::start(&schema).await;
    let t0 = Instant::now();
    let resp = fanout.query("{ thing { n } }").await;
    assert_eq!(resp["data"], json!({"thing": null}));
    assert_eq!(codes(&resp), ["UPSTREAM_TIMEOUT"]);
    assert_eq!(resp["errors"][0]["path"], json!(["thing"]));
    let closed = up
        .first_close(Duration::from_secs(4))
        .await
        .expect("the upstream connection was still open 4 s after the field's deadline");
    let after = closed.duration_since(t0);
    assert!(
        after < ms(1000),
        "the upstream call was dropped {after:?} after the request began; the deadline was 100 ms"
    );
    let heads = up.heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 1, "{heads:?}");
    assert!(
        heads[0].starts_with("GET /things/1 HTTP/1.1\r\n"),
        "{heads:?}"
    );
}
