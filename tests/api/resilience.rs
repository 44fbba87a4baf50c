//! Per-upstream protection: retries (GET only, within a budget), the circuit breaker,
//! `maxResponseBytes`, redirects, coalescing across client requests, the deadline header, and
//! transport faults an axum mock cannot produce (resets, drips, lying bodies). Every test
//! checks the response and what the upstream received.

use std::{
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst},
    },
    time::{Duration, Instant},
};

use fanout::Options;
use serde_json::{Value as Json, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::mpsc::{UnboundedReceiver, UnboundedSender, unbounded_channel},
    task::JoinHandle,
};

use crate::support::{Fanout, Mock, Reply, codes, with_mock};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// How many requests the mock received for `path`.
fn hits(mock: &Mock, path: &str) -> usize {
    mock.requests().iter().filter(|r| r.path == path).count()
}

/// The one error whose `path` is `path`; panics (showing the response) unless there is
/// exactly one.
fn error_at(resp: &Json, path: Json) -> &Json {
    let errs: Vec<&Json> = resp["errors"]
        .as_array()
        .map(|e| e.iter().filter(|e| e["path"] == path).collect())
        .unwrap_or_default();
    assert_eq!(errs.len(), 1, "expected one error at {path}, got: {resp:#}");
    errs[0]
}

/// Asserts the error at `path` has `code`, names `upstream`, and returns it.
fn assert_error<'a>(resp: &'a Json, path: Json, code: &str, upstream: &str) -> &'a Json {
    let err = error_at(resp, path);
    assert_eq!(err["extensions"]["code"], code, "{resp:#}");
    assert_eq!(err["extensions"]["upstream"], upstream, "{resp:#}");
    err
}

/// A mock that answers `/ping` with `{"ok": true}` and anything else with 404: a healthy
/// sibling upstream.
async fn healthy() -> Mock {
    Mock::start(|r| match r.path.as_str() {
        "/ping" => Reply::json(json!({"ok": true})),
        _ => Reply::status(404, "{}"),
    })
    .await
}

// ----------------------------------------------------------------------------------------
// A raw TCP upstream, for faults an HTTP framework will not produce
// ----------------------------------------------------------------------------------------

/// One thing the raw upstream does on a connection, after reading the request.
#[derive(Clone, Debug)]
enum Step {
    Write(Vec<u8>),
    /// Writes the bytes one at a time, pausing before each.
    Drip(Vec<u8>, Duration),
    Pause(Duration),
    /// Ends the connection with a TCP reset (RST) instead of an orderly close.
    Reset,
}

/// How a connection ended, seen from the raw upstream.
#[derive(Debug, PartialEq)]
enum Outcome {
    /// Every step ran.
    Finished,
    /// A write failed: the peer had closed the connection. `written` bytes went out first.
    PeerGone { written: usize },
}

/// A hand-written HTTP/1.1 upstream. Each connection carries one request: the first
/// `close_first` connections are closed as soon as they are accepted, without reading
/// anything; on the others the request head (and any content-length body) is read, its
/// request line recorded, and the steps `handler` returns for that request line are run, then
/// the connection is closed.
struct RawUpstream {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    lines: Arc<Mutex<Vec<String>>>,
    outcomes: UnboundedReceiver<Outcome>,
    task: JoinHandle<()>,
}

impl RawUpstream {
    async fn start(
        close_first: usize,
        handler: impl Fn(&str) -> Vec<Step> + Send + Sync + 'static,
    ) -> RawUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let connections: Arc<AtomicUsize> = Arc::default();
        let lines: Arc<Mutex<Vec<String>>> = Arc::default();
        let (tx, outcomes) = unbounded_channel();
        let handler = Arc::new(handler);
        let task = tokio::spawn({
            let connections = connections.clone();
            let lines = lines.clone();
            async move {
                loop {
                    let Ok((socket, _)) = listener.accept().await else {
                        return;
                    };
                    if connections.fetch_add(1, SeqCst) < close_first {
                        drop(socket);
                        continue;
                    }
                    let lines = lines.clone();
                    let handler = handler.clone();
                    let tx = tx.clone();
                    tokio::spawn(serve_raw(socket, lines, handler, tx));
                }
            }
        });
        RawUpstream {
            addr,
            connections,
            lines,
            outcomes,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn connections(&self) -> usize {
        self.connections.load(SeqCst)
    }

    /// The request lines received (`GET /path HTTP/1.1`), in order.
    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// How the next answered connection ended; panics if none ends within `wait`.
    async fn outcome(&mut self, wait: Duration) -> Outcome {
        tokio::time::timeout(wait, self.outcomes.recv())
            .await
            .unwrap_or_else(|_| panic!("no connection of the raw upstream ended within {wait:?}"))
            .expect("the raw upstream is running")
    }
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_raw(
    mut socket: TcpStream,
    lines: Arc<Mutex<Vec<String>>>,
    handler: Arc<impl Fn(&str) -> Vec<Step> + Send + Sync + 'static>,
    tx: UnboundedSender<Outcome>,
) {
    let Some(line) = read_request(&mut socket).await else {
        return;
    };
    lines.lock().unwrap().push(line.clone());
    let mut written = 0;
    for step in handler(&line) {
        let bytes = match step {
            Step::Write(bytes) => vec![(bytes, Duration::ZERO)],
            Step::Drip(bytes, every) => bytes.into_iter().map(|b| (vec![b], every)).collect(),
            Step::Pause(d) => {
                tokio::time::sleep(d).await;
                continue;
            }
            Step::Reset => {
                socket.set_zero_linger().unwrap();
                drop(socket);
                let _ = tx.send(Outcome::Finished);
                return;
            }
        };
        for (chunk, pause) in bytes {
            tokio::time::sleep(pause).await;
            if socket.write_all(&chunk).await.is_err() {
                let _ = tx.send(Outcome::PeerGone { written });
                return;
            }
            written += chunk.len();
        }
    }
    let _ = socket.shutdown().await;
    let _ = tx.send(Outcome::Finished);
}

/// Reads one request head and its content-length body; returns the request line.
async fn read_request(socket: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let body_len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < end + body_len {
        match socket.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    head.lines().next().map(str::to_owned)
}

/// A response head with `connection: close` and the given headers, followed by `body`.
fn raw_response(status: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut out = format!("HTTP/1.1 {status}\r\nconnection: close\r\n");
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("\r\n");
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

/// A complete, honest `200 OK` JSON response.
fn raw_json(body: &str) -> Vec<u8> {
    raw_response(
        "200 OK",
        &[
            ("content-type", "application/json"),
            ("content-length", &body.len().to_string()),
        ],
        body.as_bytes(),
    )
}

/// A schema with an upstream `raw` on the raw listener (with extra @upstream arguments
/// `raw_args`) serving `thing`, and an upstream `ok` on a healthy mock serving `ping`.
fn raw_schema(raw: &RawUpstream, raw_args: &str, ok: &Mock) -> String {
    with_mock(
        &format!(
            r#"
            extend schema
              @upstream(name: "raw", baseUrl: "{}" {raw_args})
              @upstream(name: "ok", baseUrl: "{{MOCK}}")
            type Query {{
              thing: Thing @rest(upstream: "raw", path: "/things/1")
              ping: Ping @rest(upstream: "ok", path: "/ping")
            }}
            type Thing {{ id: ID! name: String }}
            type Ping {{ ok: Boolean }}
            "#,
            raw.url()
        ),
        ok,
    )
}

// ----------------------------------------------------------------------------------------
// Retries
// ----------------------------------------------------------------------------------------

/// A mock whose `/flaky` fails with `status` the first `failures` times, then answers; and
/// whose `/ping` always answers.
async fn flaky(status: u16, failures: usize) -> Mock {
    let seen = Arc::new(AtomicUsize::new(0));
    Mock::start(move |r| match r.path.as_str() {
        "/flaky" if seen.fetch_add(1, SeqCst) < failures => Reply::status(status, "{}"),
        "/flaky" => Reply::json(json!({"id": 1, "name": "Ada"})),
        "/ping" => Reply::json(json!({"ok": true})),
        _ => Reply::status(404, "{}"),
    })
    .await
}

fn flaky_schema(mock: &Mock, upstream_args: &str) -> String {
    with_mock(
        &format!(
            r#"
            extend schema @upstream(name: "users", baseUrl: "{{MOCK}}" {upstream_args})
            type Query {{
              user: User @rest(upstream: "users", path: "/flaky")
              ping: Ping @rest(upstream: "users", path: "/ping")
            }}
            type User {{ id: ID! name: String }}
            type Ping {{ ok: Boolean }}
            "#
        ),
        mock,
    )
}

#[tokio::test]
async fn get_failing_with_503_is_retried_until_it_succeeds() {
    let mock = flaky(503, 2).await;
    let fanout = Fanout::start(&flaky_schema(&mock, "")).await;
    let resp = fanout.query("{ user { id name } ping { ok } }").await;
    assert_eq!(
        resp,
        json!({"data": {"user": {"id": "1", "name": "Ada"}, "ping": {"ok": true}}})
    );
    assert_eq!(hits(&mock, "/flaky"), 3, "two failures and one success");
    assert_eq!(hits(&mock, "/ping"), 1);
    assert!(mock.requests().iter().all(|r| r.method == "GET"));
}

#[tokio::test]
async fn retries_zero_turns_retrying_off() {
    let mock = flaky(503, 2).await;
    let fanout = Fanout::start(&flaky_schema(&mock, ", retries: 0")).await;
    let resp = fanout.query("{ user { id name } ping { ok } }").await;
    assert_eq!(resp["data"], json!({"user": null, "ping": {"ok": true}}));
    assert_eq!(codes(&resp), ["UPSTREAM_HTTP_ERROR"]);
    let err = assert_error(&resp, json!(["user"]), "UPSTREAM_HTTP_ERROR", "users");
    assert_eq!(err["extensions"]["httpStatus"], 503);
    assert_eq!(hits(&mock, "/flaky"), 1);
    assert_eq!(hits(&mock, "/ping"), 1);
}

#[tokio::test]
async fn gateway_errors_are_retried_at_most_retries_times() {
    let mock = Mock::start(|r| match r.path.as_str() {
        "/s502" => Reply::status(502, "{}"),
        "/s503" => Reply::status(503, "{}"),
        "/s504" => Reply::status(504, "{}"),
        "/ping" => Reply::json(json!({"ok": true})),
        _ => Reply::status(404, "{}"),
    })
    .await;
    let schema = with_mock(
        r#"
        extend schema @upstream(name: "users", baseUrl: "{MOCK}", retries: 2, breakerFailures: 100)
        type Query {
          a: User @rest(upstream: "users", path: "/s502")
          b: User @rest(upstream: "users", path: "/s503")
          c: User @rest(upstream: "users", path: "/s504")
          ping: Ping @rest(upstream: "users", path: "/ping")
        }
        type User { id: ID! }
        type Ping { ok: Boolean }
        "#,
        &mock,
    );
    let fanout = Fanout::start(&schema).await;
    let resp = fanout
        .query("{ a { id } b { id } c { id } ping { ok } }")
        .await;
    assert_eq!(
        resp["data"],
        json!({"a": null, "b": null, "c": null, "ping": {"ok": true}})
    );
    for (field, status) in [("a", 502), ("b", 503), ("c", 504)] {
        let err = assert_error(&resp, json!([field]), "UPSTREAM_HTTP_ERROR", "users");
        assert_eq!(err["extensions"]["httpStatus"], status);
        assert_eq!(
            hits(&mock, &format!("/s{status}")),
            3,
            "{status}: one try and two retries"
        );
    }
    assert_eq!(hits(&mock, "/ping"), 1);
}

#[tokio::test]
async fn server_error_500_is_not_retried() {
    let mock = flaky(500, 1).await;
    let fanout = Fanout::start(&flaky_schema(&mock, "")).await;
    let resp = fanout.query("{ user { id } ping { ok } }").await;
    assert_eq!(resp["data"], json!({"user": null, "ping": {"ok": true}}));
    let err = assert_error(&resp, json!(["user"]), "UPSTREAM_HTTP_ERROR", "users");
    assert_eq!(err["extensions"]["httpStatus"], 500);
    assert_eq!(hits(&mock, "/flaky"), 1, "a 500 may have done the work");
}

#[tokio::test]
async fn breaker_opening_during_retries_reports_the_real_error() {
    // The second 502 opens the breaker; the field reports the 502 it got, not "circuit
    // open", and no retry is spent against the open breaker.
    let mock = flaky(502, 100).await;
    let args = r#", retries: 2, breakerFailures: 2, breakerCooldown: "10s""#;
    let fanout = Fanout::start(&flaky_schema(&mock, args)).await;
    let resp = fanout.query("{ user { id } }").await;
    let err = assert_error(&resp, json!(["user"]), "UPSTREAM_HTTP_ERROR", "users");
    assert_eq!(err["extensions"]["httpStatus"], 502);
    assert_eq!(hits(&mock, "/flaky"), 2);
}

#[tokio::test]
async fn not_found_is_not_retried() {
    let mock = Mock::start(|r| match r.path.as_str() {
        "/ping" => Reply::json(json!({"ok": true})),
        _ => Reply::status(404, r#"{"error": "not found"}"#),
    })
    .await;
    let schema = with_mock(
        r#"
        extend schema @upstream(name: "users", baseUrl: "{MOCK}")
        type Query {
          user: User @rest(upstream: "users", path: "/users/9")
          users: [User] @rest(upstream: "users", path: "/users")
          ping: Ping @rest(upstream: "users", path: "/ping")
        }
        type User { id: ID! }
        type Ping { ok: Boolean }
        "#,
        &mock,
    );
    let fanout = Fanout::start(&schema).await;
    let resp = fanout
        .query("{ user { id } users { id } ping { ok } }")
        .await;
    assert_eq!(
        resp["data"],
        json!({"user": null, "users": null, "ping": {"ok": true}})
    );
    // On a single object a 404 is "none"; on a list it is an error.
    assert_eq!(codes(&resp), ["UPSTREAM_HTTP_ERROR"]);
    let err = assert_error(&resp, json!(["users"]), "UPSTREAM_HTTP_ERROR", "users");
    assert_eq!(err["extensions"]["httpStatus"], 404);
    assert_eq!(hits(&mock, "/users/9"), 1);
    assert_eq!(hits(&mock, "/users"), 1);
}

#[tokio::test]
async fn connection_closed_before_an_answer_is_retried() {
    let raw = RawUpstream::start(2, |_| {
        vec![Step::Write(raw_json(r#"{"id": 1, "name": "Ada"}"#))]
    })
    .await;
    let ok = healthy().await;
    let fanout = Fanout::start(&raw_schema(&raw, "", &ok)).await;
    let resp = fanout.query("{ thing { id name } ping { ok } }").await;
    assert_eq!(
        resp,
        json!({"data": {"thing": {"id": "1", "name": "Ada"}, "ping": {"ok": true}}})
    );
    assert_eq!(
        raw.connections(),
        3,
        "two dropped connections, then one answered"
    );
    assert_eq!(raw.lines(), ["GET /things/1 HTTP/1.1"]);
    assert_eq!(ok.count(), 1);
}

#[tokio::test]
async fn connection_closed_without_retries_is_unavailable() {
    let raw = RawUpstream::start(1, |_| vec![Step::Write(raw_json(r#"{"id": 1}"#))]).await;
    let ok = healthy().await;
    let fanout = Fanout::start(&raw_schema(&raw, ", retries: 0", &ok)).await;
    let resp = fanout.query("{ thing { id } ping { ok } }").await;
    assert_eq!(resp["data"], json!({"thing": null, "ping": {"ok": true}}));
    assert_eq!(codes(&resp), ["UPSTREAM_UNAVAILABLE"]);
    assert_error(&resp, json!(["thing"]), "UPSTREAM_UNAVAILABLE", "raw");
    assert_eq!(raw.connections(), 1);
    assert!(raw.lines().is_empty());
    assert_eq!(ok.count(), 1);
}

const ORDERS: &str = r#"
    extend schema @upstream(name: "orders", baseUrl: "{MOCK}")
    type Query { ping: Ping @rest(upstream: "orders", path: "/ping") }
    type Mutation {
      createOrder(input: NewOrder!): Order
        @rest(upstream: "orders", method: POST, path: "/orders", body: "{args.input}")
    }
    input NewOrder { sku: String! }
    type Order { id: ID! sku: String }
    type Ping { ok: Boolean }
"#;

#[tokio::test]
async fn post_failing_with_503_is_never_retried() {
    let mock = Mock::start(|r| match r.path.as_str() {
        "/orders" => Reply::status(503, "{}"),
        _ => Reply::status(404, "{}"),
    })
    .await;
    let fanout = Fanout::start(&with_mock(ORDERS, &mock)).await;
    let resp = fanout
        .query(r#"mutation { createOrder(input: {sku: "A-1"}) { id } }"#)
        .await;
    assert_eq!(resp["data"], json!({"createOrder": null}));
    let err = assert_error(
        &resp,
        json!(["createOrder"]),
        "UPSTREAM_HTTP_ERROR",
        "orders",
    );
    assert_eq!(err["extensions"]["httpStatus"], 503);
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 1, "a POST is never repeated");
    assert_eq!(reqs[0].method, "POST");
    assert_eq!(reqs[0].json(), json!({"sku": "A-1"}));
}

#[tokio::test]
async fn post_on_a_dropped_connection_is_never_retried() {
    let raw = RawUpstream::start(1, |_| {
        vec![Step::Write(raw_json(r#"{"id": 1, "sku": "A-1"}"#))]
    })
    .await;
    let schema = ORDERS.replace("{MOCK}", &raw.url());
    let fanout = Fanout::start(&schema).await;
    let resp = fanout
        .query(r#"mutation { createOrder(input: {sku: "A-1"}) { id } }"#)
        .await;
    assert_eq!(resp["data"], json!({"createOrder": null}));
    assert_error(
        &resp,
        json!(["createOrder"]),
        "UPSTREAM_UNAVAILABLE",
        "orders",
    );
    assert_eq!(raw.connections(), 1, "a POST is never repeated");
    assert!(raw.lines().is_empty());
}

#[tokio::test]
async fn retry_budget_caps_extra_load_on_a_failing_upstream() {
    let mock = Mock::start(|_| Reply::status(503, "{}")).await;
    let schema = with_mock(
        r#"
        extend schema @upstream(name: "items", baseUrl: "{MOCK}", retries: 2, breakerFailures: 1000)
        type Query { item(id: ID!): Item @rest(upstream: "items", path: "/items/{args.id}") }
        type Item { id: ID! }
        "#,
        &mock,
    );
    // 40 aliased root fields: above the default query-shape limits, raised for this test.
    let mut options = fanout::Options::default();
    options.limits.max_aliases = 100;
    options.limits.max_root_fields = 100;
    let fanout = Fanout::with_options(&schema, options).await;
    let fields: Vec<String> = (0..40)
        .map(|i| format!("a{i}: item(id: \"{i}\") {{ id }}"))
        .collect();
    let resp = fanout.query(&format!("{{ {} }}", fields.join(" "))).await;
    let data = resp["data"].as_object().expect("data is an object");
    assert_eq!(data.len(), 40);
    assert!(data.values().all(Json::is_null), "{resp:#}");
    for i in 0..40 {
        let err = assert_error(
            &resp,
            json!([format!("a{i}")]),
            "UPSTREAM_HTTP_ERROR",
            "items",
        );
        assert_eq!(err["extensions"]["httpStatus"], 503);
        assert!(
            hits(&mock, &format!("/items/{i}")) >= 1,
            "item {i} was never called"
        );
    }
    let total = mock.count();
    // 40 first tries; retries only from the budget: 10 banked plus a fifth per first try.
    let bound = 40 + 8 + 10 + 2;
    assert!(
        total <= bound,
        "{total} upstream requests for 40 failing fields; the budget allows at most {bound}"
    );
    assert!(total < 40 * 3, "{total}: every call was retried twice");
}

// ----------------------------------------------------------------------------------------
// Circuit breaker
// ----------------------------------------------------------------------------------------

/// A mock whose `/flaky` answers 500 while `healthy` is false, and whose `/ping` (served to
/// another upstream) always answers.
async fn switchable(healthy: Arc<AtomicBool>) -> Mock {
    Mock::start(move |r| match r.path.as_str() {
        "/flaky" if healthy.load(SeqCst) => Reply::json(json!({"id": 1})),
        "/flaky" => Reply::status(500, "{}"),
        "/ping" => Reply::json(json!({"ok": true})),
        _ => Reply::status(404, "{}"),
    })
    .await
}

fn breaker_schema(mock: &Mock) -> String {
    with_mock(
        r#"
        extend schema
          @upstream(name: "flaky", baseUrl: "{MOCK}", retries: 0, breakerFailures: 3,
                    breakerCooldown: "300ms")
          @upstream(name: "other", baseUrl: "{MOCK}")
        type Query {
          user: User @rest(upstream: "flaky", path: "/flaky")
          ping: Ping @rest(upstream: "other", path: "/ping")
        }
        type User { id: ID! }
        type Ping { ok: Boolean }
        "#,
        mock,
    )
}

/// Three failing queries: each reaches the upstream and fails with 500.
async fn open_the_circuit(fanout: &Fanout, mock: &Mock) {
    for n in 1..=3 {
        let resp = fanout.query("{ user { id } ping { ok } }").await;
        assert_eq!(resp["data"], json!({"user": null, "ping": {"ok": true}}));
        let err = assert_error(&resp, json!(["user"]), "UPSTREAM_HTTP_ERROR", "flaky");
        assert_eq!(err["extensions"]["httpStatus"], 500);
        assert_eq!(hits(mock, "/flaky"), n);
    }
}

/// Asserts that a query fails `user` at once, without reaching the upstream, while the other
/// upstream's sibling still answers.
async fn assert_circuit_open(fanout: &Fanout, mock: &Mock) {
    let before = hits(mock, "/flaky");
    let resp = fanout.query("{ user { id } ping { ok } }").await;
    assert_eq!(resp["data"], json!({"user": null, "ping": {"ok": true}}));
    let err = assert_error(&resp, json!(["user"]), "UPSTREAM_UNAVAILABLE", "flaky");
    let message = err["message"].as_str().unwrap_or_default();
    assert!(message.contains("circuit open"), "{message}");
    assert_eq!(
        hits(mock, "/flaky"),
        before,
        "an open circuit let a call through"
    );
}

#[tokio::test]
async fn circuit_opens_after_repeated_failures_and_closes_after_a_good_probe() {
    let up = Arc::new(AtomicBool::new(false));
    let mock = switchable(up.clone()).await;
    let fanout = Fanout::start(&breaker_schema(&mock)).await;
    open_the_circuit(&fanout, &mock).await;
    assert_circuit_open(&fanout, &mock).await;
    // The cooldown is what is under test here.
    tokio::time::sleep(ms(350)).await;
    up.store(true, SeqCst);
    let probe = fanout.query("{ user { id } ping { ok } }").await;
    assert_eq!(
        probe,
        json!({"data": {"user": {"id": "1"}, "ping": {"ok": true}}})
    );
    assert_eq!(hits(&mock, "/flaky"), 4, "the probe reached the upstream");
    let after = fanout.query("{ user { id } ping { ok } }").await;
    assert_eq!(
        after,
        json!({"data": {"user": {"id": "1"}, "ping": {"ok": true}}})
    );
    assert_eq!(
        hits(&mock, "/flaky"),
        5,
        "the circuit closed after the probe"
    );
    assert_eq!(
        hits(&mock, "/ping"),
        6,
        "the other upstream was never blocked"
    );
}

#[tokio::test]
async fn failed_probe_opens_the_circuit_again() {
    let up = Arc::new(AtomicBool::new(false));
    let mock = switchable(up.clone()).await;
    let fanout = Fanout::start(&breaker_schema(&mock)).await;
    open_the_circuit(&fanout, &mock).await;
    assert_circuit_open(&fanout, &mock).await;
    tokio::time::sleep(ms(350)).await;
    let probe = fanout.query("{ user { id } ping { ok } }").await;
    let err = assert_error(&probe, json!(["user"]), "UPSTREAM_HTTP_ERROR", "flaky");
    assert_eq!(err["extensions"]["httpStatus"], 500);
    assert_eq!(hits(&mock, "/flaky"), 4, "the probe reached the upstream");
    assert_circuit_open(&fanout, &mock).await;
    assert_eq!(hits(&mock, "/flaky"), 4);
}

#[tokio::test]
async fn client_errors_do_not_open_the_circuit() {
    let mock = Mock::start(|r| match r.path.as_str() {
        "/bad" => Reply::status(400, r#"{"error": "bad"}"#),
        _ => Reply::status(404, "{}"),
    })
    .await;
    let schema = with_mock(
        r#"
        extend schema @upstream(name: "users", baseUrl: "{MOCK}", retries: 0, breakerFailures: 2,
                                breakerCooldown: "10s")
        type Query { user: User @rest(upstream: "users", path: "/bad") }
        type User { id: ID! }
        "#,
        &mock,
    );
    let fanout = Fanout::start(&schema).await;
    for n in 1..=4 {
        let resp = fanout.query("{ user { id } }").await;
        let err = assert_error(&resp, json!(["user"]), "UPSTREAM_HTTP_ERROR", "users");
        assert_eq!(err["extensions"]["httpStatus"], 400, "query {n}: {resp:#}");
        assert_eq!(mock.count(), n, "query {n} did not reach the upstream");
    }
}

#[tokio::test]
async fn timeouts_count_toward_opening_the_circuit() {
    let mock = Mock::start(|r| match r.path.as_str() {
        "/slow" => Reply::json(json!({"id": 1})).delay(ms(2000)),
        "/ping" => Reply::json(json!({"ok": true})),
        _ => Reply::status(404, "{}"),
    })
    .await;
    let schema = with_mock(
        r#"
        extend schema
          @upstream(name: "slow", baseUrl: "{MOCK}", timeout: "100ms", retries: 0,
                    breakerFailures: 2, breakerCooldown: "10s")
          @upstream(name: "other", baseUrl: "{MOCK}")
        type Query {
          user: User @rest(upstream: "slow", path: "/slow")
          ping: Ping @rest(upstream: "other", path: "/ping")
        }
        type User { id: ID! }
        type Ping { ok: Boolean }
        "#,
        &mock,
    );
    let fanout = Fanout::start(&schema).await;
    for n in 1..=2 {
        let resp = fanout.query("{ user { id } ping { ok } }").await;
        assert_eq!(resp["data"], json!({"user": null, "ping": {"ok": true}}));
        assert_error(&resp, json!(["user"]), "UPSTREAM_TIMEOUT", "slow");
        assert_eq!(hits(&mock, "/slow"), n);
    }
    let resp = fanout.query("{ user { id } ping { ok } }").await;
    assert_eq!(resp["data"], json!({"user": null, "ping": {"ok": true}}));
    let err = assert_error(&resp, json!(["user"]), "UPSTREAM_UNAVAILABLE", "slow");
    let message = err["message"].as_str().unwrap_or_default();
    assert!(message.contains("circuit open"), "{message}");
    assert_eq!(
        hits(&mock, "/slow"),
        2,
        "two timeouts in a row did not open the circuit"
    );
}

// ----------------------------------------------------------------------------------------
// maxResponseBytes
// ----------------------------------------------------------------------------------------

/// `{"id": 1, "name": "xxx…"}` of exactly `len` bytes.
fn json_of_len(len: usize) -> String {
    let empty = r#"{"id": 1, "name": ""}"#;
    let body = format!(
        r#"{{"id": 1, "name": "{}"}}"#,
        "x".repeat(len - empty.len())
    );
    assert_eq!(body.len(), len);
    body
}

#[tokio::test]
async fn response_larger_than_max_response_bytes_is_bad_response() {
    let mock = Mock::start(|r| match r.path.as_str() {
        "/big" => Reply::text(200, &json_of_len(5000), "application/json"),
        "/exact" => Reply::text(200, &json_of_len(1000), "application/json"),
        "/ping" => Reply::json(json!({"ok": true})),
        _ => Reply::status(404, "{}"),
    })
    .await;
    let schema = with_mock(
        r#"
        extend schema @upstream(name: "users", baseUrl: "{MOCK}", maxResponseBytes: 1000)
        type Query {
          big: User @rest(upstream: "users", path: "/big")
          exact: User @rest(upstream: "users", path: "/exact")
          ping: Ping @rest(upstream: "users", path: "/ping")
        }
        type User { id: ID! }
        type Ping { ok: Boolean }
        "#,
        &mock,
    );
    let fanout = Fanout::start(&schema).await;
    let resp = fanout
        .query("{ big { id } exact { id } ping { ok } }")
        .await;
    assert_eq!(
        resp["data"],
        json!({"big": null, "exact": {"id": "1"}, "ping": {"ok": true}})
    );
    assert_eq!(codes(&resp), ["UPSTREAM_BAD_RESPONSE"]);
    let err = assert_error(&resp, json!(["big"]), "UPSTREAM_BAD_RESPONSE", "users");
    let message = err["message"].as_str().unwrap_or_default();
    assert!(message.contains("1000 bytes"), "{message}");
    assert!(
        !resp.to_string().contains("xxxx"),
        "the body leaked: {resp}"
    );
    assert_eq!(hits(&mock, "/big"), 1, "a too-large answer is not retried");
    assert_eq!(hits(&mock, "/exact"), 1);
    assert_eq!(hits(&mock, "/ping"), 1);
}

#[tokio::test]
async fn chunked_response_over_the_limit_is_cut_off_early() {
    // 200 KB in 2 KB chunks, 20 ms apart: 2 s to send it all.
    let mut raw = RawUpstream::start(0, |_| {
        let mut steps = vec![Step::Write(raw_response(
            "200 OK",
            &[
                ("content-type", "application/json"),
                ("transfer-encoding", "chunked"),
            ],
            b"",
        ))];
        let data = format!("{:x}\r\n{}\r\n", 2048, " ".repeat(2048)).into_bytes();
        for _ in 0..100 {
            steps.push(Step::Write(data.clone()));
            steps.push(Step::Pause(ms(20)));
        }
        steps.push(Step::Write(b"0\r\n\r\n".to_vec()));
        steps
    })
    .await;
    let ok = healthy().await;
    let schema = raw_schema(&raw, r#", maxResponseBytes: 10000, timeout: "5s""#, &ok);
    let fanout = Fanout::start(&schema).await;
    let t0 = Instant::now();
    let resp = fanout.query("{ thing { id } ping { ok } }").await;
    let took = t0.elapsed();
    assert_eq!(resp["data"], json!({"thing": null, "ping": {"ok": true}}));
    assert_eq!(codes(&resp), ["UPSTREAM_BAD_RESPONSE"]);
    let err = assert_error(&resp, json!(["thing"]), "UPSTREAM_BAD_RESPONSE", "raw");
    let message = err["message"].as_str().unwrap_or_default();
    assert!(message.contains("10000 bytes"), "{message}");
    assert!(
        took < ms(1000),
        "took {took:?}: the body was read far past the limit"
    );
    assert_eq!(raw.lines(), ["GET /things/1 HTTP/1.1"]);
    match raw.outcome(Duration::from_secs(3)).await {
        Outcome::PeerGone { written } => assert!(written < 200 * 1024, "{written}"),
        Outcome::Finished => panic!("Fanout read the whole 200 KB body"),
    }
}

// ----------------------------------------------------------------------------------------
// Redirects
// ----------------------------------------------------------------------------------------

#[tokio::test]
async fn redirects_are_not_followed() {
    let raw = RawUpstream::start(0, |line| {
        if line.starts_with("GET /things/1 ") {
            vec![Step::Write(raw_response(
                "302 Found",
                &[("location", "/moved/1"), ("content-length", "0")],
                b"",
            ))]
        } else {
            vec![Step::Write(raw_json(r#"{"id": 1, "name": "moved"}"#))]
        }
    })
    .await;
    let ok = healthy().await;
    let fanout = Fanout::start(&raw_schema(&raw, "", &ok)).await;
    let resp = fanout.query("{ thing { id name } ping { ok } }").await;
    assert_eq!(resp["data"], json!({"thing": null, "ping": {"ok": true}}));
    let err = assert_error(&resp, json!(["thing"]), "UPSTREAM_HTTP_ERROR", "raw");
    assert_eq!(err["extensions"]["httpStatus"], 302);
    assert_eq!(raw.lines(), ["GET /things/1 HTTP/1.1"]);
}

// ----------------------------------------------------------------------------------------
// Coalescing across client requests
// ----------------------------------------------------------------------------------------

fn coalesce_schema(mock: &Mock, upstream_args: &str) -> String {
    with_mock(
        &format!(
            r#"
            extend schema @upstream(name: "users", baseUrl: "{{MOCK}}" {upstream_args},
                                    headers: [{{name: "authorization", from: "authorization"}}])
            type Query {{ user: User @rest(upstream: "users", path: "/users/1") }}
            type Mutation {{
              touch(note: String!): User
                @rest(upstream: "users", method: POST, path: "/users/1/touch", body: "{{args.note}}")
            }}
            type User {{ id: ID! name: String }}
            "#
        ),
        mock,
    )
}

async fn slow_user() -> Mock {
    Mock::start(|_| Reply::json(json!({"id": 1, "name": "Ada"})).delay(ms(300))).await
}

#[tokio::test]
async fn coalesce_shares_one_call_between_concurrent_requests() {
    let mock = slow_user().await;
    let fanout = Fanout::start(&coalesce_schema(&mock, ", coalesce: true")).await;
    let q = "{ user { id name } }";
    let (a, b) = tokio::join!(fanout.query(q), fanout.query(q));
    let want = json!({"data": {"user": {"id": "1", "name": "Ada"}}});
    assert_eq!(a, want);
    assert_eq!(b, want);
    assert_eq!(
        mock.count(),
        1,
        "two concurrent identical GETs were not coalesced"
    );
}

#[tokio::test]
async fn without_coalesce_each_request_calls_the_upstream() {
    let mock = slow_user().await;
    let fanout = Fanout::start(&coalesce_schema(&mock, "")).await;
    let q = "{ user { id name } }";
    let (a, b) = tokio::join!(fanout.query(q), fanout.query(q));
    let want = json!({"data": {"user": {"id": "1", "name": "Ada"}}});
    assert_eq!(a, want);
    assert_eq!(b, want);
    assert_eq!(mock.count(), 2);
}

#[tokio::test]
async fn coalesce_keeps_apart_calls_with_different_forwarded_headers() {
    let mock = slow_user().await;
    let fanout = Fanout::start(&coalesce_schema(&mock, ", coalesce: true")).await;
    let body = json!({"query": "{ user { id } }"});
    let (a, b) = tokio::join!(
        fanout.post_with(body.clone(), &[("authorization", "Bearer alice")]),
        fanout.post_with(body.clone(), &[("authorization", "Bearer bob")]),
    );
    assert_eq!(a, (200, json!({"data": {"user": {"id": "1"}}})));
    assert_eq!(b, (200, json!({"data": {"user": {"id": "1"}}})));
    let mut auths: Vec<String> = mock
        .requests()
        .iter()
        .map(|r| r.headers["authorization"].to_str().unwrap().to_owned())
        .collect();
    auths.sort();
    assert_eq!(auths, ["Bearer alice", "Bearer bob"]);
}

#[tokio::test]
async fn coalesce_never_joins_mutations() {
    let mock = slow_user().await;
    let fanout = Fanout::start(&coalesce_schema(&mock, ", coalesce: true")).await;
    let q = r#"mutation { touch(note: "hi") { id } }"#;
    let (a, b) = tokio::join!(fanout.query(q), fanout.query(q));
    let want = json!({"data": {"touch": {"id": "1"}}});
    assert_eq!(a, want);
    assert_eq!(b, want);
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 2, "a mutation was shared between two requests");
    assert!(
        reqs.iter()
            .all(|r| r.method == "POST" && r.path == "/users/1/touch" && r.json() == "hi")
    );
}

// ----------------------------------------------------------------------------------------
// Deadline header
// ----------------------------------------------------------------------------------------

/// The deadline header of the mock's only request, in milliseconds.
fn deadline_ms(mock: &Mock) -> u64 {
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 1);
    let v = reqs[0]
        .headers
        .get("x-fanout-deadline-ms")
        .expect("the upstream received x-fanout-deadline-ms");
    v.to_str().unwrap().parse().expect("a whole number of ms")
}

#[tokio::test]
async fn upstream_receives_the_time_left_in_a_deadline_header() {
    let mock = Mock::start(|_| Reply::json(json!({"id": 1}))).await;
    let schema = with_mock(
        r#"
        extend schema @upstream(name: "users", baseUrl: "{MOCK}")
        type Query { user: User @rest(upstream: "users", path: "/users/1", timeout: "800ms") }
        type User { id: ID! }
        "#,
        &mock,
    );
    let fanout = Fanout::start(&schema).await;
    let resp = fanout.query("{ user { id } }").await;
    assert_eq!(resp, json!({"data": {"user": {"id": "1"}}}));
    let left = deadline_ms(&mock);
    assert!((1..=800).contains(&left), "x-fanout-deadline-ms: {left}");
}

#[tokio::test]
async fn deadline_header_never_exceeds_the_request_deadline() {
    let mock = Mock::start(|_| Reply::json(json!({"id": 1}))).await;
    let schema = with_mock(
        r#"
        extend schema @upstream(name: "users", baseUrl: "{MOCK}")
        type Query { user: User @rest(upstream: "users", path: "/users/1", timeout: "5s") }
        type User { id: ID! }
        "#,
        &mock,
    );
    let options = Options {
        request_timeout: ms(500),
        ..Default::default()
    };
    let fanout = Fanout::with_options(&schema, options).await;
    let resp = fanout.query("{ user { id } }").await;
    assert_eq!(resp, json!({"data": {"user": {"id": "1"}}}));
    let left = deadline_ms(&mock);
    assert!((1..=500).contains(&left), "x-fanout-deadline-ms: {left}");
}

// ----------------------------------------------------------------------------------------
// Transport faults
// ----------------------------------------------------------------------------------------

/// Headers promising 100 bytes, then 10 of them.
fn short_body() -> Vec<Step> {
    vec![Step::Write(raw_response(
        "200 OK",
        &[
            ("content-type", "application/json"),
            ("content-length", "100"),
        ],
        br#"{"id": 1, "#,
    ))]
}

#[tokio::test]
async fn connection_closed_mid_body_is_unavailable() {
    let raw = RawUpstream::start(0, |_| short_body()).await;
    let ok = healthy().await;
    let fanout = Fanout::start(&raw_schema(&raw, ", retries: 0", &ok)).await;
    let resp = fanout.query("{ thing { id } ping { ok } }").await;
    assert_eq!(resp["data"], json!({"thing": null, "ping": {"ok": true}}));
    assert_eq!(codes(&resp), ["UPSTREAM_UNAVAILABLE"]);
    assert_error(&resp, json!(["thing"]), "UPSTREAM_UNAVAILABLE", "raw");
    assert_eq!(raw.lines(), ["GET /things/1 HTTP/1.1"]);
    assert_eq!(ok.count(), 1);
}

#[tokio::test]
async fn connection_reset_mid_body_is_unavailable() {
    let raw = RawUpstream::start(0, |_| {
        let mut steps = short_body();
        steps.push(Step::Pause(ms(50)));
        steps.push(Step::Reset);
        steps
    })
    .await;
    let ok = healthy().await;
    let fanout = Fanout::start(&raw_schema(&raw, ", retries: 0", &ok)).await;
    let resp = fanout.query("{ thing { id } ping { ok } }").await;
    assert_eq!(resp["data"], json!({"thing": null, "ping": {"ok": true}}));
    assert_eq!(codes(&resp), ["UPSTREAM_UNAVAILABLE"]);
    assert_error(&resp, json!(["thing"]), "UPSTREAM_UNAVAILABLE", "raw");
    assert_eq!(raw.lines(), ["GET /things/1 HTTP/1.1"]);
    assert_eq!(ok.count(), 1);
}

#[tokio::test]
async fn get_cut_off_mid_body_is_retried() {
    let answered = Arc::new(AtomicUsize::new(0));
    let raw = RawUpstream::start(0, move |_| {
        if answered.fetch_add(1, SeqCst) == 0 {
            short_body()
        } else {
            vec![Step::Write(raw_json(r#"{"id": 1, "name": "Ada"}"#))]
        }
    })
    .await;
    let ok = healthy().await;
    let fanout = Fanout::start(&raw_schema(&raw, "", &ok)).await;
    let resp = fanout.query("{ thing { id name } ping { ok } }").await;
    assert_eq!(
        resp,
        json!({"data": {"thing": {"id": "1", "name": "Ada"}, "ping": {"ok": true}}})
    );
    assert_eq!(
        raw.lines(),
        ["GET /things/1 HTTP/1.1", "GET /things/1 HTTP/1.1"]
    );
}

#[tokio::test]
async fn truncated_json_is_bad_response() {
    let mock = Mock::start(|r| match r.path.as_str() {
        "/users/1" => Reply::text(200, r#"{"id": 1, "na"#, "application/json"),
        "/ping" => Reply::json(json!({"ok": true})),
        _ => Reply::status(404, "{}"),
    })
    .await;
    let schema = with_mock(
        r#"
        extend schema @upstream(name: "users", baseUrl: "{MOCK}")
        type Query {
          user: User @rest(upstream: "users", path: "/users/1")
          ping: Ping @rest(upstream: "users", path: "/ping")
        }
        type User { id: ID! name: String }
        type Ping { ok: Boolean }
        "#,
        &mock,
    );
    let fanout = Fanout::start(&schema).await;
    let resp = fanout.query("{ user { id name } ping { ok } }").await;
    assert_eq!(resp["data"], json!({"user": null, "ping": {"ok": true}}));
    assert_eq!(codes(&resp), ["UPSTREAM_BAD_RESPONSE"]);
    assert_error(&resp, json!(["user"]), "UPSTREAM_BAD_RESPONSE", "users");
    assert_eq!(hits(&mock, "/users/1"), 1, "a bad body is not retried");
    assert_eq!(hits(&mock, "/ping"), 1);
}

const HTML_ERROR: &str = "<!DOCTYPE html><html><head><title>500 Internal Server Error</title></head>\
    <body><h1>Internal Server Error</h1><pre>Traceback: secret_module.py line 42</pre></body></html>";

#[tokio::test]
async fn html_error_page_is_http_error_without_the_html() {
    let mock = Mock::start(|r| match r.path.as_str() {
        "/users/1" => Reply::text(500, HTML_ERROR, "text/html"),
        "/ping" => Reply::json(json!({"ok": true})),
        _ => Reply::status(404, "{}"),
    })
    .await;
    let schema = with_mock(
        r#"
        extend schema @upstream(name: "users", baseUrl: "{MOCK}")
        type Query {
          user: User @rest(upstream: "users", path: "/users/1")
          ping: Ping @rest(upstream: "users", path: "/ping")
        }
        type User { id: ID! }
        type Ping { ok: Boolean }
        "#,
        &mock,
    );
    let fanout = Fanout::start(&schema).await;
    let resp = fanout.query("{ user { id } ping { ok } }").await;
    assert_eq!(resp["data"], json!({"user": null, "ping": {"ok": true}}));
    assert_eq!(codes(&resp), ["UPSTREAM_HTTP_ERROR"]);
    let err = assert_error(&resp, json!(["user"]), "UPSTREAM_HTTP_ERROR", "users");
    assert_eq!(err["extensions"]["httpStatus"], 500);
    let text = resp.to_string();
    for leak in ["<html", "DOCTYPE", "Traceback", "secret_module"] {
        assert!(!text.contains(leak), "{leak:?} reached the client: {text}");
    }
    assert_eq!(hits(&mock, "/users/1"), 1);
}

#[tokio::test]
async fn html_page_with_200_is_bad_response() {
    let mock = Mock::start(|r| match r.path.as_str() {
        "/users/1" => Reply::text(
            200,
            "<html><body>Welcome to nginx!</body></html>",
            "text/html",
        ),
        "/ping" => Reply::json(json!({"ok": true})),
        _ => Reply::status(404, "{}"),
    })
    .await;
    let schema = with_mock(
        r#"
        extend schema @upstream(name: "users", baseUrl: "{MOCK}")
        type Query {
          user: User @rest(upstream: "users", path: "/users/1")
          ping: Ping @rest(upstream: "users", path: "/ping")
        }
        type User { id: ID! }
        type Ping { ok: Boolean }
        "#,
        &mock,
    );
    let fanout = Fanout::start(&schema).await;
    let resp = fanout.query("{ user { id } ping { ok } }").await;
    assert_eq!(resp["data"], json!({"user": null, "ping": {"ok": true}}));
    assert_eq!(codes(&resp), ["UPSTREAM_BAD_RESPONSE"]);
    assert_error(&resp, json!(["user"]), "UPSTREAM_BAD_RESPONSE", "users");
    let text = resp.to_string();
    assert!(
        !text.contains("nginx"),
        "the body reached the client: {text}"
    );
    assert_eq!(hits(&mock, "/users/1"), 1);
}

#[tokio::test]
async fn slow_drip_times_out_at_the_field_deadline() {
    let body = r#"{"id": 1, "name": "a body that takes seconds to arrive"}"#;
    let mut raw = RawUpstream::start(0, move |_| {
        vec![
            Step::Write(raw_response(
                "200 OK",
                &[
                    ("content-type", "application/json"),
                    ("content-length", &body.len().to_string()),
                ],
                b"",
            )),
            Step::Drip(body.as_bytes().to_vec(), ms(100)),
        ]
    })
    .await;
    let ok = healthy().await;
    let fanout = Fanout::start(&raw_schema(&raw, r#", retries: 0, timeout: "300ms""#, &ok)).await;
    let t0 = Instant::now();
    let resp = fanout.query("{ thing { id } ping { ok } }").await;
    let took = t0.elapsed();
    assert_eq!(resp["data"], json!({"thing": null, "ping": {"ok": true}}));
    assert_eq!(codes(&resp), ["UPSTREAM_TIMEOUT"]);
    assert_error(&resp, json!(["thing"]), "UPSTREAM_TIMEOUT", "raw");
    assert!(took < ms(1500), "a 300ms field took {took:?}");
    assert_eq!(raw.lines(), ["GET /things/1 HTTP/1.1"]);
    match raw.outcome(Duration::from_secs(3)).await {
        Outcome::PeerGone { .. } => {}
        Outcome::Finished => panic!("Fanout kept reading the drip after the deadline"),
    }
    assert_eq!(ok.count(), 1);
}

/// `maxConnections: 2`: six sibling calls of 200 ms each go two at a time, so the query takes
/// at least three rounds; without the cap they all go at once.
#[tokio::test]
async fn max_connections_caps_the_calls_in_flight_to_an_upstream() {
    let mock = Mock::start(|_| {
        Reply::json(json!({"id": 1, "name": "Ada"})).delay(Duration::from_millis(200))
    })
    .await;
    let schema = |cap: &str| {
        format!(
            r#"extend schema @upstream(name: "u", baseUrl: "{}", timeout: "5s"{cap})
            type Query {{ user(id: ID!): User @rest(upstream: "u", path: "/users/{{args.id}}") }}
            type User {{ id: ID! name: String }}"#,
            mock.url()
        )
    };
    let query: String = (0..6)
        .map(|i| format!("u{i}: user(id: {i}) {{ name }} "))
        .collect();
    let query = format!("{{ {query} }}");
    let capped = Fanout::start(&schema(", maxConnections: 2")).await;
    let start = Instant::now();
    let resp = capped.query(&query).await;
    assert!(resp.get("errors").is_none(), "{resp}");
    assert!(
        start.elapsed() >= Duration::from_millis(590),
        "{:?}",
        start.elapsed()
    );
    let free = Fanout::start(&schema("")).await;
    let start = Instant::now();
    let resp = free.query(&query).await;
    assert!(resp.get("errors").is_none(), "{resp}");
    assert!(
        start.elapsed() < Duration::from_millis(590),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(mock.count(), 12);
}
