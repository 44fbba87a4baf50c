//! In front of the routes: request ids, CORS, body size, path prefix, profiles, drain.

use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};

use crate::support::{Fanout, Mock, Process, Reply, with_mock};

const SCHEMA: &str = r#"
    extend schema @upstream(name: "users", baseUrl: "{MOCK}")
    type Query { user(id: ID!): User @rest(upstream: "users", path: "/users/{args.id}") }
    type User { id: ID! name: String }
"#;

async fn users() -> Mock {
    Mock::start(|_| Reply::json(json!({"id": 1, "name": "Ada"}))).await
}

#[tokio::test]
async fn request_id_is_passed_to_upstreams_and_returned() {
    let mock = users().await;
    let fanout = Fanout::start(&with_mock(SCHEMA, &mock)).await;
    let body = json!({"query": "{ user(id: 1) { name } }"});
    let resp = fanout
        .http
        .post(fanout.url())
        .header("x-request-id", "req-123")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.headers()["x-request-id"], "req-123");
    assert_eq!(mock.requests()[0].headers["x-request-id"], "req-123");

    // Without one, Fanout makes one up, and the upstream sees the same.
    let resp = fanout
        .http
        .post(fanout.url())
        .json(&body)
        .send()
        .await
        .unwrap();
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(id.len(), 32, "{id}");
    assert_eq!(mock.requests()[1].headers["x-request-id"], id.as_str());
}

#[tokio::test]
async fn cors_answers_only_listed_origins_and_refuses_any_with_credentials() {
    use fanout::http::edge::cors;
    assert!(cors(&["*".into()], true).is_err());
    assert!(cors(&[], false).unwrap().is_none());

    let mock = users().await;
    let gw = fanout::Gateway::load(&with_mock(SCHEMA, &mock), Default::default(), &|_| None)
        .unwrap()
        .0;
    let opts = fanout::http::HttpOptions {
        cors_origins: vec!["https://app.example".into()],
        cors_credentials: true,
        ..Default::default()
    };
    let (addr, _task) = crate::support::serve(fanout::http::router(gw, opts)).await;
    let http = reqwest::Client::new();
    let preflight = |origin: &'static str| {
        http.request(reqwest::Method::OPTIONS, format!("http://{addr}/graphql"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type")
            .send()
    };
    let ok = preflight("https://app.example").await.unwrap();
    assert_eq!(
        ok.headers()["access-control-allow-origin"],
        "https://app.example"
    );
    assert_eq!(ok.headers()["access-control-allow-credentials"], "true");
    let other = preflight("https://evil.example").await.unwrap();
    assert!(other.headers().get("access-control-allow-origin").is_none());
    assert_eq!(mock.count(), 0);
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_without_an_upstream_call() {
    let mock = users().await;
    let gw = fanout::Gateway::load(&with_mock(SCHEMA, &mock), Default::default(), &|_| None)
        .unwrap()
        .0;
    let opts = fanout::http::HttpOptions {
        max_body_bytes: 1000,
        ..Default::default()
    };
    let (addr, _task) = crate::support::serve(fanout::http::router(gw, opts)).await;
    let padding = " ".repeat(2000);
    let body = format!(r#"{{"query": "{{ user(id: 1) {{ name }} }}{padding}"}}"#);
    let resp = reqwest::Client::new()
        .post(format!("http://{addr}/graphql"))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 413);
    assert_eq!(mock.count(), 0);
}

#[tokio::test]
async fn binary_serves_under_a_prefix_and_drains_on_sigterm() {
    let mut p = Process::spawn(&[
        "--demo",
        "--demo-latency",
        "600ms",
        "--path-prefix",
        "/gw",
        "--drain-delay",
        "300ms",
        "--drain-grace",
        "5s",
    ]);
    p.wait_until_up("/gw/healthz").await;
    let http = reqwest::Client::new();
    let base = format!("http://{}/gw", p.addr);
    assert_eq!(
        http.get(format!("{base}/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(
        http.get(format!("http://{}/readyz", p.addr))
            .send()
            .await
            .unwrap()
            .status(),
        404,
        "only the prefixed paths are served"
    );

    // A request in flight when SIGTERM arrives still gets its answer.
    let slow = tokio::spawn({
        let http = http.clone();
        let url = format!("{base}/graphql");
        async move {
            http.post(url)
                .json(&json!({"query": "{ user(id: \"1\") { name } }"}))
                .send()
                .await
                .unwrap()
                .json::<Json>()
                .await
                .unwrap()
        }
    });
    tokio::time::sleep(Duration::from_millis(150)).await;
    p.signal("-TERM");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let readyz = http.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(readyz.status(), 503, "draining is not ready");
    let answer = slow.await.unwrap();
    assert_eq!(answer["data"]["user"]["name"], "Ada Lovelace", "{answer}");

    let until = Instant::now() + Duration::from_secs(5);
    let status = loop {
        if let Some(status) = p.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < until, "did not exit; log:\n{}", p.log());
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "{status}; log:\n{}", p.log());
}

#[tokio::test]
async fn production_profile_hides_the_schema_and_logs_json() {
    let mut p = Process::spawn(&["--demo", "--profile", "production", "--log-format", "json"]);
    p.wait_until_up("/healthz").await;
    let url = format!("http://{}/graphql", p.addr);
    let http = reqwest::Client::new();
    let post = |query: &'static str| {
        http.post(&url)
            .header("x-fanout-trace", "1")
            .json(&json!({ "query": query }))
            .send()
    };
    let resp: Json = post("{ __schema { queryType { name } } }")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        resp["data"]["__schema"].is_null() || resp.get("data").is_none(),
        "{resp}"
    );
    assert!(
        resp.get("errors").is_some(),
        "introspection is refused: {resp}"
    );
    let resp: Json = post("{ user(id: \"1\") { name } }")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(resp["data"]["user"]["name"], "Ada Lovelace", "{resp}");
    assert!(
        resp.get("extensions").is_none(),
        "no trace in production: {resp}"
    );
    let log = p.log();
    let line = log
        .lines()
        .find(|l| l.contains("Fanout serving"))
        .expect("startup line");
    let parsed: Json = serde_json::from_str(line).expect("a JSON log line");
    assert_eq!(parsed["level"], "INFO");
}

#[tokio::test]
async fn metrics_count_requests_upstream_calls_batches_and_dedup() {
    let mock = Mock::start(|r| match r.path.as_str() {
        "/orders" => Reply::json(json!([
            {"id": 1, "productId": 7, "userId": 1},
            {"id": 2, "productId": 8, "userId": 1}
        ])),
        "/users/1" => Reply::status(500, "{}"),
        _ => Reply::json(json!([{"id": 7}, {"id": 8}])),
    })
    .await;
    let schema = with_mock(
        r#"
        extend schema @upstream(name: "metered", baseUrl: "{MOCK}", retries: 0)
        type Query { orders: [Order!] @rest(upstream: "metered", path: "/orders") }
        type Order {
          id: ID!
          user: User @rest(upstream: "metered", path: "/users/{parent.userId}")
          product: Product @rest(upstream: "metered", path: "/products",
                                 batch: {key: "{parent.productId}", query: "ids", match: "id"})
        }
        type User { id: ID! }
        type Product { id: ID! }
        "#,
        &mock,
    );
    let fanout = Fanout::start(&schema).await;
    let resp = fanout
        .query("{ orders { id user { id } product { id } } }")
        .await;
    assert_eq!(resp["data"]["orders"][1]["product"]["id"], "8", "{resp}");
    // /orders, one /users/1 (the second order's is deduplicated), one batch of 2.
    assert_eq!(mock.count(), 3);
    let text = fanout
        .http
        .get(format!("http://{}/metrics", fanout.addr))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let count = |series: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(series).map(|v| v.trim().parse().unwrap()))
            .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
    };
    assert_eq!(
        count(r#"fanout_upstream_seconds_count{upstream="metered",outcome="ok"}"#),
        2.0
    );
    assert_eq!(
        count(r#"fanout_upstream_seconds_count{upstream="metered",outcome="UPSTREAM_HTTP_ERROR"}"#),
        1.0
    );
    // Other tests in this process add to the shared series; these are lower bounds.
    assert!(count(r#"fanout_requests_seconds_count{outcome="field_errors"}"#) >= 1.0);
    assert!(count("fanout_batch_size_count") >= 1.0);
    assert!(count("fanout_deduplicated_total") >= 1.0);
}

#[tokio::test]
async fn a_compressed_body_is_refused_without_an_upstream_call() {
    let mock = users().await;
    let fanout = Fanout::start(&with_mock(SCHEMA, &mock)).await;
    let resp = fanout
        .http
        .post(fanout.url())
        .header("content-type", "application/json")
        .header("content-encoding", "gzip")
        .body(vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);
    assert_eq!(mock.count(), 0);
}

async fn serve_with(mock: &Mock, opts: fanout::http::HttpOptions) -> std::net::SocketAddr {
    let gw = fanout::Gateway::load(&with_mock(SCHEMA, mock), Default::default(), &|_| None)
        .unwrap()
        .0;
    let (addr, task) = crate::support::serve(fanout::http::router(gw, opts)).await;
    std::mem::forget(task); // serves until the test process ends
    addr
}

#[tokio::test]
async fn json_array_batches_are_off_by_default_and_capped_when_on() {
    let mock = users().await;
    let batch = |n: usize| {
        Json::Array(
            (0..n)
                .map(|i| json!({"query": format!("{{ user(id: {i}) {{ name }} }}")}))
                .collect(),
        )
    };
    let http = reqwest::Client::new();
    let off = serve_with(&mock, Default::default()).await;
    let resp = http
        .post(format!("http://{off}/graphql"))
        .json(&batch(2))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert_eq!(mock.count(), 0);

    let on = serve_with(
        &mock,
        fanout::http::HttpOptions {
            max_batch: 3,
            ..Default::default()
        },
    )
    .await;
    let url = format!("http://{on}/graphql");
    let resp = http.post(&url).json(&batch(4)).send().await.unwrap();
    assert_eq!(resp.status(), 400, "over the cap");
    assert_eq!(mock.count(), 0);
    let answers: Json = http
        .post(&url)
        .json(&batch(3))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answers.as_array().unwrap().len(), 3);
    assert_eq!(answers[2]["data"]["user"]["name"], "Ada");
    let paths: Vec<String> = mock.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/users/0", "/users/1", "/users/2"]);
}

#[tokio::test]
async fn csrf_prevention_can_be_turned_off() {
    let mock = users().await;
    let http = reqwest::Client::new();
    let body = r#"{"query": "{ user(id: 1) { name } }"}"#;
    let on = serve_with(&mock, Default::default()).await;
    let resp = http
        .post(format!("http://{on}/graphql"))
        .header("content-type", "text/plain")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);
    assert_eq!(mock.count(), 0);
    let off = serve_with(
        &mock,
        fanout::http::HttpOptions {
            csrf_prevention: false,
            ..Default::default()
        },
    )
    .await;
    let resp: Json = http
        .post(format!("http://{off}/graphql"))
        .header("content-type", "text/plain")
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(resp["data"]["user"]["name"], "Ada");
    assert_eq!(mock.count(), 1);
}

/// `--workers 1` runs everything on one thread: fields still fetch concurrently and batch.
#[tokio::test]
async fn one_worker_thread_still_fans_out_and_batches() {
    let mut p = Process::spawn(&["--demo", "--workers", "1", "--demo-latency", "100ms"]);
    p.wait_until_up("/healthz").await;
    let query = "{ user(id: \"1\") { name team { name } permissions orders(first: 5) { product { name } } } }";
    let resp = p.traced_query(query).await;
    assert_eq!(resp["data"]["user"]["name"], "Ada Lovelace", "{resp}");
    let orders = resp["data"]["user"]["orders"].as_array().unwrap();
    assert_eq!(orders.len(), 5, "{resp}");
    assert!(
        orders.iter().all(|o| o["product"]["name"].is_string()),
        "{resp}"
    );
    let calls = resp["extensions"]["fanout"]["calls"].as_array().unwrap();
    let at = |path: &str| {
        calls
            .iter()
            .find(|c| c["path"] == path)
            .unwrap_or_else(|| panic!("no call to {path}: {calls:#?}"))
    };
    // The user's three fields were in flight together: each started before another ended.
    let second_level = ["/teams/10", "/users/1/permissions", "/users/1/orders"].map(at);
    let first_end = second_level
        .iter()
        .map(|c| c["startMs"].as_f64().unwrap() + c["durationMs"].as_f64().unwrap())
        .fold(f64::MAX, f64::min);
    for c in second_level {
        assert!(c["startMs"].as_f64().unwrap() < first_end, "{calls:#?}");
    }
    assert_eq!(at("/products")["batchSize"], 5, "{calls:#?}");
}

#[test]
fn zero_workers_are_refused() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fanout"))
        .args(["--demo", "--workers", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--workers") && err.contains("1..=1024"),
        "{err}"
    );
}
