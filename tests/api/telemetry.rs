//! Operating Fanout: OpenTelemetry traces to a real OTLP receiver on loopback (over
//! http/protobuf and gRPC, decoded with `opentelemetry-proto`), the per-request log line, and
//! what `/metrics` counts. Each test runs the real binary with the `OTEL_*` variables set.

use std::{
    collections::HashMap,
    net::SocketAddr,
    path::PathBuf,
    process::Stdio,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::{Router, body::Bytes, http::StatusCode, response::IntoResponse, routing::post};
use opentelemetry_proto::tonic::{
    collector::trace::v1::{
        ExportTraceServiceRequest, ExportTraceServiceResponse,
        trace_service_server::{TraceService, TraceServiceServer},
    },
    common::v1::{AnyValue, any_value},
    trace::v1::{Span, span::SpanKind},
};
use prost::Message;
use serde_json::{Value as Json, json};

use crate::support::{Mock, Reply, with_mock};

/// Three upstream calls: the user, their orders, and one batch of the orders' products.
const SCHEMA: &str = r#"
    extend schema @upstream(name: "shop", baseUrl: "{MOCK}", retries: 0)
    type Query { user(id: ID!): User @rest(upstream: "shop", path: "/users/{args.id}") }
    type User {
      id: ID!
      name: String
      orders: [Order!] @rest(upstream: "shop", path: "/users/{parent.id}/orders")
    }
    type Order {
      id: ID!
      product: Product @rest(upstream: "shop", path: "/products",
                             batch: {key: "{parent.productId}", query: "ids", match: "id"})
    }
    type Product { id: ID! name: String }
"#;

const QUERY: &str = "query Shop { user(id: 1) { name orders { id product { name } } } }";

async fn shop() -> Mock {
    Mock::start(|r| match r.path.as_str() {
        "/users/1" => Reply::json(json!({"id": 1, "name": "Ada"})),
        "/users/1/orders" => Reply::json(json!([
            {"id": 10, "productId": 7},
            {"id": 11, "productId": 8}
        ])),
        "/products" => Reply::json(json!([{"id": 7, "name": "Lamp"}, {"id": 8, "name": "Desk"}])),
        _ => Reply::status(500, r#"{"secret":"do not log me"}"#),
    })
    .await
}

/// Every span a receiver was sent, with the service name of its resource.
#[derive(Clone, Default)]
struct Received(Arc<Mutex<Vec<(String, Span)>>>);

impl Received {
    fn add(&self, req: ExportTraceServiceRequest) {
        let mut spans = self.0.lock().unwrap();
        for rs in req.resource_spans {
            let service = rs
                .resource
                .iter()
                .flat_map(|r| &r.attributes)
                .find(|kv| kv.key == "service.name")
                .and_then(|kv| text(kv.value.as_ref()))
                .unwrap_or_default();
            for ss in rs.scope_spans {
                for span in ss.spans {
                    spans.push((service.clone(), span));
                }
            }
        }
    }

    fn spans(&self) -> Vec<(String, Span)> {
        self.0.lock().unwrap().clone()
    }

    /// Waits (at most 15 s) until `n` spans of trace `trace_id` have arrived.
    async fn trace(&self, trace_id: &[u8], n: usize) -> Vec<Span> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let spans: Vec<Span> = self
                .spans()
                .into_iter()
                .map(|(_, s)| s)
                .filter(|s| s.trace_id == trace_id)
                .collect();
            if spans.len() >= n || Instant::now() > deadline {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn text(v: Option<&AnyValue>) -> Option<String> {
    match v?.value.as_ref()? {
        any_value::Value::StringValue(s) => Some(s.clone()),
        _ => None,
    }
}

/// A span's attributes: strings as they are, integers and booleans as text.
fn attrs(span: &Span) -> HashMap<String, String> {
    span.attributes
        .iter()
        .filter_map(|kv| {
            let v = match kv.value.as_ref()?.value.as_ref()? {
                any_value::Value::StringValue(s) => s.clone(),
                any_value::Value::IntValue(i) => i.to_string(),
                any_value::Value::BoolValue(b) => b.to_string(),
                _ => return None,
            };
            Some((kv.key.clone(), v))
        })
        .collect()
}

/// An OTLP/HTTP receiver (`POST /v1/traces`, protobuf).
async fn http_receiver() -> (SocketAddr, Received) {
    let received = Received::default();
    let app = Router::new().route(
        "/v1/traces",
        post({
            let received = received.clone();
            move |body: Bytes| {
                let received = received.clone();
                async move {
                    match ExportTraceServiceRequest::decode(body) {
                        Ok(req) => {
                            received.add(req);
                            let ok = ExportTraceServiceResponse::default().encode_to_vec();
                            ([("content-type", "application/x-protobuf")], ok).into_response()
                        }
                        Err(_) => StatusCode::BAD_REQUEST.into_response(),
                    }
                }
            }
        }),
    );
    let (addr, task) = crate::support::serve(app).await;
    std::mem::forget(task); // serves until the test binary exits
    (addr, received)
}

struct Grpc(Received);

#[async_trait::async_trait]
impl TraceService for Grpc {
    async fn export(
        &self,
        req: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.add(req.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// An OTLP/gRPC receiver, served over HTTP/2 without TLS by Fanout's own server.
async fn grpc_receiver() -> (SocketAddr, Received) {
    let received = Received::default();
    let routes = tonic::service::Routes::new(TraceServiceServer::new(Grpc(received.clone())));
    let (addr, task) = crate::support::serve(routes.into_axum_router()).await;
    std::mem::forget(task);
    (addr, received)
}

/// The real binary on a free loopback port with `env` (and no inherited `FANOUT_*` or
/// `OTEL_*` variables), its output in a file; killed when dropped.
struct Gateway {
    child: std::process::Child,
    url: String,
    log: PathBuf,
    schema: PathBuf,
}

impl Gateway {
    async fn start(mock: &Mock, args: &[&str], env: &[(&str, &str)]) -> Gateway {
        Gateway::start_schema(&with_mock(SCHEMA, mock), args, env).await
    }

    async fn start_schema(schema_text: &str, args: &[&str], env: &[(&str, &str)]) -> Gateway {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let dir = std::env::temp_dir();
        let schema = dir.join(format!("fanout-telemetry-{}.graphql", addr.port()));
        std::fs::write(&schema, schema_text).unwrap();
        let log = dir.join(format!("fanout-telemetry-{}.log", addr.port()));
        let out = std::fs::File::create(&log).unwrap();
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_fanout"));
        for (k, _) in std::env::vars()
            .filter(|(k, _)| k.starts_with("FANOUT_") || k.starts_with("OTEL_") || k == "RUST_LOG")
        {
            cmd.env_remove(k);
        }
        cmd.args(["--schema", schema.to_str().unwrap()])
            .args(["--listen", &addr.to_string()])
            .args(args)
            // Export every 50 ms instead of every 5 s.
            .env("OTEL_BSP_SCHEDULE_DELAY", "50")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        let mut gw = Gateway {
            child: cmd.spawn().unwrap(),
            url: format!("http://{addr}"),
            log,
            schema,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = gw.child.try_wait().unwrap() {
                panic!("fanout exited ({status}); log:\n{}", gw.log());
            }
            if let Ok(r) = reqwest::get(format!("{}/healthz", gw.url)).await
                && r.status() == 200
            {
                break;
            }
            assert!(Instant::now() < deadline, "not up:\n{}", gw.log());
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        gw
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    async fn post(&self, body: Json, headers: &[(&str, &str)]) -> (u16, Json) {
        let mut req = reqwest::Client::new()
            .post(format!("{}/graphql", self.url))
            .json(&body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Json::Null))
    }

    async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.url))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// The JSON log lines whose message is `message`.
    fn lines(&self, message: &str) -> Vec<Json> {
        self.log()
            .lines()
            .filter_map(|l| serde_json::from_str::<Json>(l).ok())
            .filter(|l| l["fields"]["message"] == message)
            .collect()
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
        let _ = std::fs::remove_file(&self.schema);
    }
}

/// The value of the sample `series` (its name and labels, exactly) in a `/metrics` text.
fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        let v = l.strip_prefix(series)?.strip_prefix(' ')?;
        v.trim().parse().ok()
    })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

const CLIENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN: &str = "00f067aa0ba902b7";

/// The trace of [`QUERY`] sent with a client's `traceparent`: one server span continuing the
/// client's trace, a client span per upstream call as its child, and each upstream request
/// carrying a `traceparent` that names its own client span.
async fn one_trace_for_the_query(received: &Received, mock: &Mock, gw: &Gateway) {
    let traceparent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let (status, body) = gw
        .post(
            json!({"query": QUERY}),
            &[("traceparent", &traceparent), ("tracestate", "shop=1")],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["data"]["user"]["orders"][1]["product"]["name"], "Desk");
    assert_eq!(mock.count(), 3, "three upstream calls");

    let trace_id = (0..16)
        .map(|i| u8::from_str_radix(&CLIENT_TRACE[2 * i..2 * i + 2], 16).unwrap())
        .collect::<Vec<u8>>();
    let spans = received.trace(&trace_id, 4).await;
    assert_eq!(spans.len(), 4, "{spans:#?}");
    let servers: Vec<&Span> = spans
        .iter()
        .filter(|s| s.kind == SpanKind::Server as i32)
        .collect();
    assert_eq!(servers.len(), 1, "{spans:#?}");
    let server = servers[0];
    assert_eq!(
        hex(&server.parent_span_id),
        CLIENT_SPAN,
        "continues the client's span"
    );
    assert_eq!(server.name, "query Shop");
    let a = attrs(server);
    assert_eq!(a["graphql.operation.name"], "Shop");
    assert_eq!(a["graphql.operation.type"], "query");
    assert_eq!(a["http.request.method"], "POST");
    assert_eq!(a["http.route"], "/graphql");
    assert_eq!(a["url.path"], "/graphql");
    assert_eq!(a["http.response.status_code"], "200");
    assert_eq!(a["fanout.upstream_calls"], "3");
    assert_eq!(server.trace_state, "shop=1");

    let clients: Vec<&Span> = spans
        .iter()
        .filter(|s| s.kind == SpanKind::Client as i32)
        .collect();
    assert_eq!(clients.len(), 3, "{spans:#?}");
    let host = mock.addr.ip().to_string();
    let mut paths = Vec::new();
    for c in &clients {
        assert_eq!(
            c.parent_span_id, server.span_id,
            "a child of the server span"
        );
        assert!(c.start_time_unix_nano >= server.start_time_unix_nano);
        assert!(c.end_time_unix_nano <= server.end_time_unix_nano);
        let a = attrs(c);
        assert_eq!(a["http.request.method"], "GET");
        assert_eq!(a["server.address"], host);
        assert_eq!(a["http.response.status_code"], "200");
        assert_eq!(a["fanout.upstream"], "shop");
        paths.push(a["url.path"].clone());
        if a["url.path"] == "/products" {
            assert_eq!(a["fanout.batch.size"], "2", "the batch call: {a:?}");
            assert_eq!(a["fanout.field"], "Order.product");
        } else {
            assert!(!a.contains_key("fanout.batch.size"), "{a:?}");
        }
    }
    paths.sort();
    assert_eq!(paths, ["/products", "/users/1", "/users/1/orders"]);

    // Each upstream request named its own client span.
    let mut sent: Vec<String> = mock
        .requests()
        .iter()
        .map(|r| {
            let tp = r.headers["traceparent"].to_str().unwrap().to_owned();
            let parts: Vec<&str> = tp.split('-').collect();
            assert_eq!(parts[0], "00");
            assert_eq!(parts[1], CLIENT_TRACE, "{tp}");
            assert_eq!(parts[3], "01", "{tp}");
            assert_eq!(r.headers["tracestate"], "shop=1");
            parts[2].to_owned()
        })
        .collect();
    let mut ids: Vec<String> = clients.iter().map(|c| hex(&c.span_id)).collect();
    sent.sort();
    ids.sort();
    assert_eq!(sent, ids);
}

#[tokio::test]
async fn a_query_exports_one_server_span_and_a_client_span_per_upstream_call() {
    let (receiver, received) = http_receiver().await;
    let mock = shop().await;
    let endpoint = format!("http://{receiver}");
    let env = [
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        ("OTEL_SERVICE_NAME", "shop-gateway"),
    ];
    let gw = Gateway::start(&mock, &[], &env).await;
    one_trace_for_the_query(&received, &mock, &gw).await;
    assert!(
        received
            .spans()
            .iter()
            .all(|(svc, _)| svc == "shop-gateway"),
        "OTEL_SERVICE_NAME names the service"
    );

    // Without a traceparent: a trace of its own, with a root server span.
    let (status, _) = gw
        .post(json!({"query": "{ user(id: 1) { name } }"}), &[])
        .await;
    assert_eq!(status, 200);
    let upstream_tp = mock.requests()[3].headers["traceparent"]
        .to_str()
        .unwrap()
        .to_owned();
    let trace_hex = upstream_tp.split('-').nth(1).unwrap().to_owned();
    assert_ne!(trace_hex, CLIENT_TRACE);
    let trace_id: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&trace_hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let spans = received.trace(&trace_id, 2).await;
    assert_eq!(spans.len(), 2, "{spans:#?}");
    let root = spans
        .iter()
        .find(|s| s.kind == SpanKind::Server as i32)
        .unwrap();
    assert!(root.parent_span_id.is_empty(), "a root span");
    assert_eq!(root.name, "query", "an anonymous query");
}

#[tokio::test]
async fn traces_are_exported_over_grpc_too() {
    let (receiver, received) = grpc_receiver().await;
    let mock = shop().await;
    let endpoint = format!("http://{receiver}");
    let env = [
        ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", endpoint.as_str()),
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
    ];
    let gw = Gateway::start(&mock, &[], &env).await;
    one_trace_for_the_query(&received, &mock, &gw).await;
    assert!(
        received.spans().iter().all(|(svc, _)| svc == "fanout"),
        "the default service name"
    );
}

#[tokio::test]
async fn without_an_endpoint_nothing_is_exported_and_the_clients_trace_is_passed_on() {
    let (receiver, received) = http_receiver().await;
    let mock = shop().await;
    // Everything but an endpoint: traces stay off.
    let env = [
        ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
        ("OTEL_SERVICE_NAME", "shop-gateway"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", ""),
    ];
    let gw = Gateway::start(&mock, &[], &env).await;
    let traceparent = format!("00-{CLIENT_TRACE}-{CLIENT_SPAN}-01");
    let (status, _) = gw
        .post(json!({"query": QUERY}), &[("traceparent", &traceparent)])
        .await;
    assert_eq!(status, 200);
    let (status, _) = gw.post(json!({"query": QUERY}), &[]).await;
    assert_eq!(status, 200);
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 6);
    // Fanout takes no part: the client's own context goes on unchanged, and none without it.
    for r in &reqs[..3] {
        assert_eq!(r.headers["traceparent"], traceparent.as_str());
    }
    for r in &reqs[3..] {
        assert!(r.headers.get("traceparent").is_none());
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(received.spans().is_empty());
    let _ = receiver;
    let m = gw.metrics().await;
    assert_eq!(
        sample(&m, r#"fanout_trace_spans_total{result="exported"}"#),
        Some(0.0)
    );
    assert!(!gw.log().contains("exporting traces"), "{}", gw.log());
}

#[tokio::test]
async fn with_the_receiver_down_requests_answer_and_the_dropped_spans_are_counted() {
    // A port that was free a moment ago: nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mock = shop().await;
    let endpoint = format!("http://{closed}");
    let env = [("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str())];
    let gw = Gateway::start(&mock, &[], &env).await;
    for _ in 0..5 {
        let started = Instant::now();
        let (status, body) = gw.post(json!({"query": QUERY}), &[]).await;
        assert_eq!(status, 200);
        assert_eq!(body["data"]["user"]["name"], "Ada", "{body}");
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "the exporter does not hold requests up"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(15);
    let failed = loop {
        let m = gw.metrics().await;
        let failed = sample(&m, r#"fanout_trace_spans_total{result="export_failed"}"#);
        if failed.is_some_and(|n| n >= 20.0) || Instant::now() > deadline {
            break failed;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    // 5 requests of a server span and 3 client spans each.
    assert_eq!(failed, Some(20.0), "log:\n{}", gw.log());
    assert!(gw.log().contains("trace export failed"), "{}", gw.log());
}

#[tokio::test]
async fn each_request_logs_one_info_line_with_what_it_did() {
    let mock = shop().await;
    let gw = Gateway::start(&mock, &["--log-format", "json"], &[]).await;
    let (status, _) = gw
        .post(json!({"query": QUERY}), &[("x-request-id", "shop-1")])
        .await;
    assert_eq!(status, 200);
    // A failing upstream call: its code is answered, and logged at warn without the URL.
    let (status, body) = gw
        .post(
            json!({"query": "query Missing { user(id: 2) { name } }"}),
            &[("x-request-id", "shop-2")],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        body["errors"][0]["extensions"]["code"],
        "UPSTREAM_HTTP_ERROR"
    );
    // Refused before execution: a line too.
    let refused = reqwest::Client::new()
        .post(format!("{}/graphql", gw.url))
        .header("content-type", "text/plain")
        .header("x-request-id", "shop-3")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 415);

    let lines = gw.lines("request done");
    let line = |id: &str| -> Json {
        let found: Vec<&Json> = lines.iter().filter(|l| l["span"]["id"] == id).collect();
        assert_eq!(found.len(), 1, "one line for {id}: {lines:#?}");
        found[0].clone()
    };
    let ok = line("shop-1");
    assert_eq!(ok["level"], "INFO");
    assert_eq!(ok["span"]["method"], "POST");
    assert_eq!(ok["span"]["path"], "/graphql");
    assert_eq!(ok["span"]["client"], "127.0.0.1");
    let f = &ok["fields"];
    assert_eq!(f["status"], 200);
    assert!(f["ms"].as_f64().is_some_and(|ms| ms > 0.0), "{ok}");
    assert_eq!(f["operation"], "Shop");
    assert_eq!(f["operation_type"], "query");
    assert_eq!(f["codes"], "");
    assert_eq!(f["upstream_calls"], 3);
    assert_eq!(f["request_id"], "shop-1");

    let failed = line("shop-2");
    assert_eq!(failed["fields"]["codes"], "UPSTREAM_HTTP_ERROR");
    assert_eq!(failed["fields"]["operation"], "Missing");
    assert_eq!(failed["fields"]["upstream_calls"], 1);

    let refused = line("shop-3");
    assert_eq!(refused["fields"]["status"], 415);
    assert_eq!(refused["fields"]["upstream_calls"], 0);
    assert!(refused["fields"].get("operation").is_none(), "{refused}");

    let warns = gw.lines("upstream call failed");
    assert_eq!(warns.len(), 1, "{warns:#?}");
    let w = &warns[0];
    assert_eq!(w["level"], "WARN");
    assert_eq!(w["fields"]["upstream"], "shop");
    assert_eq!(w["fields"]["code"], "UPSTREAM_HTTP_ERROR");
    assert_eq!(w["fields"]["status"], 500);
    assert_eq!(w["fields"]["request_id"], "shop-2");
    assert!(w["fields"].get("url").is_none(), "{w}");
    assert!(!gw.log().contains("do not log me"), "no bodies in the log");
}

#[tokio::test]
async fn the_text_log_line_says_the_same() {
    let mock = shop().await;
    let gw = Gateway::start(&mock, &["--debug-errors"], &[]).await;
    let (status, _) = gw
        .post(
            json!({"query": "query Missing { user(id: 2) { name } }"}),
            &[("x-request-id", "text-1")],
        )
        .await;
    assert_eq!(status, 200);
    let log = gw.log();
    let line = log
        .lines()
        .find(|l| l.contains("request done"))
        .unwrap_or_else(|| panic!("no request line:\n{log}"));
    for part in [
        " INFO ",
        "id=text-1",
        "method=POST",
        "path=/graphql",
        "status=200",
        "ms=",
        "operation=Missing",
        "operation_type=query",
        "codes=UPSTREAM_HTTP_ERROR",
        "upstream_calls=1",
        "request_id=text-1",
    ] {
        assert!(line.contains(part), "{part:?} in {line}");
    }
    // With --debug-errors the warning names the URL.
    let warn = log
        .lines()
        .find(|l| l.contains("upstream call failed"))
        .unwrap_or_else(|| panic!("no warning:\n{log}"));
    assert!(
        warn.contains(" WARN ") && warn.contains("/users/2"),
        "{warn}"
    );
}

#[tokio::test]
async fn metrics_count_refusals_in_flight_requests_and_the_process() {
    let mock = shop().await;
    let gw = Gateway::start(&mock, &["--max-body-bytes", "1000"], &[]).await;
    let http = reqwest::Client::new();
    let url = format!("{}/graphql", gw.url);
    let (status, _) = gw.post(json!({"query": QUERY}), &[]).await;
    assert_eq!(status, 200);
    // 400, 405, 413, 415, and hyper's own 431.
    let bad_json = http
        .post(&url)
        .header("content-type", "application/json")
        .body("{");
    assert_eq!(bad_json.send().await.unwrap().status(), 400);
    let mutation = http.get(format!("{url}?query=mutation%20%7B%20x%20%7D"));
    assert_eq!(mutation.send().await.unwrap().status(), 405);
    let big = http
        .post(&url)
        .header("content-type", "application/json")
        .body(format!("{{\"query\": \"{}\"}}", "x".repeat(2000)));
    assert_eq!(big.send().await.unwrap().status(), 413);
    let text = http
        .post(&url)
        .header("content-type", "text/plain")
        .body("{}");
    assert_eq!(text.send().await.unwrap().status(), 415);
    let huge = http.get(&url).header("x-huge", "h".repeat(64 << 10));
    assert_eq!(huge.send().await.unwrap().status(), 431);

    let m = gw.metrics().await;
    let count = |series: &str| sample(&m, series).unwrap_or_else(|| panic!("no {series} in\n{m}"));
    for (status, class) in [
        ("200", "2xx"),
        ("400", "4xx"),
        ("405", "4xx"),
        ("413", "4xx"),
        ("415", "4xx"),
    ] {
        let series = format!(
            "fanout_http_responses_total{{route=\"/graphql\",status=\"{status}\",class=\"{class}\"}}"
        );
        assert_eq!(count(&series), 1.0, "{series}");
    }
    assert_eq!(
        count(r#"fanout_http_responses_total{route="none",status="431",class="4xx"}"#),
        1.0
    );
    // This scrape is the request in flight.
    assert_eq!(count("fanout_http_requests_in_flight"), 1.0);
    assert_eq!(
        count(r#"fanout_upstream_circuit_open{upstream="shop"}"#),
        0.0
    );
    assert_eq!(
        count(r#"fanout_upstream_retries_total{upstream="shop"}"#),
        0.0
    );
    assert_eq!(
        count(&format!(
            "fanout_build_info{{version=\"{}\"}}",
            env!("CARGO_PKG_VERSION")
        )),
        1.0
    );
    assert!(count("process_resident_memory_bytes") > 1e6);
    assert!(count("process_open_fds") >= 3.0);
    assert!(count("process_cpu_seconds_total") > 0.0);

    // OpenMetrics, when the scraper asks for it.
    let om = http
        .get(format!("{}/metrics", gw.url))
        .header(
            "accept",
            "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1",
        )
        .send()
        .await
        .unwrap();
    assert!(
        om.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text; version=1.0.0")
    );
    let om = om.text().await.unwrap();
    assert!(om.ends_with("# EOF\n"), "{om}");
    assert!(
        om.contains("# TYPE fanout_http_responses counter\n"),
        "{om}"
    );
    assert!(om.contains("\nfanout_http_responses_total{"), "{om}");
}

/// Two requests for the same user at once, through an upstream that coalesces: one call goes
/// out, in the first request's trace; the second request's trace gets a span of its own,
/// linked to that call's span.
#[tokio::test]
async fn a_coalesced_call_gets_a_span_in_each_trace_linked_to_the_one_sent() {
    let (receiver, received) = http_receiver().await;
    let mock = Mock::start(|_| {
        Reply::json(json!({"id": 1, "name": "Ada"})).delay(Duration::from_millis(300))
    })
    .await;
    let endpoint = format!("http://{receiver}");
    let env = [("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str())];
    let schema = SCHEMA.replace("retries: 0)", "retries: 0, coalesce: true)");
    let gw = Gateway::start_schema(&with_mock(&schema, &mock), &[], &env).await;
    let (a, b) = ("1".repeat(32), "2".repeat(32));
    let (tp_a, tp_b) = (
        format!("00-{a}-{CLIENT_SPAN}-01"),
        format!("00-{b}-{CLIENT_SPAN}-01"),
    );
    let query = json!({"query": "{ user(id: 1) { name } }"});
    let first = async { gw.post(query.clone(), &[("traceparent", &tp_a)]).await };
    let second = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        gw.post(query.clone(), &[("traceparent", &tp_b)]).await
    };
    let ((s1, _), (s2, _)) = tokio::join!(first, second);
    assert_eq!((s1, s2), (200, 200));
    assert_eq!(mock.count(), 1, "one call for both");

    let id = |hex: &str| -> Vec<u8> {
        (0..16)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
            .collect()
    };
    let sent = received.trace(&id(&a), 2).await;
    let call = sent
        .iter()
        .find(|s| s.kind == SpanKind::Client as i32)
        .unwrap_or_else(|| panic!("{sent:#?}"));
    let joined = received.trace(&id(&b), 2).await;
    assert_eq!(joined.len(), 2, "{joined:#?}");
    let server = joined
        .iter()
        .find(|s| s.kind == SpanKind::Server as i32)
        .unwrap();
    let mine = joined
        .iter()
        .find(|s| s.kind == SpanKind::Internal as i32)
        .unwrap_or_else(|| panic!("{joined:#?}"));
    assert_eq!(mine.parent_span_id, server.span_id);
    assert_eq!(attrs(mine)["fanout.coalesced"], "true");
    assert_eq!(mine.links.len(), 1, "{mine:#?}");
    assert_eq!(mine.links[0].trace_id, call.trace_id);
    assert_eq!(mine.links[0].span_id, call.span_id);
}
