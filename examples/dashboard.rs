//! Prints what the demo's dashboard query costs: upstream calls per query against the
//! minimum, and wall time against depth x latency.
//!
//! `cargo run --release --example dashboard -- [LATENCY_MS] [RUNS]` (defaults 20 and 50).
//! It starts the demo REST services and Fanout in this process, on loopback.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use fanout::{Gateway, Options, demo, http::HttpOptions};
use serde_json::{Value, json};

const QUERY: &str = r#"query Dashboard($id: ID!) {
  user(id: $id) {
    name email role
    team { name lead { name email } }
    permissions
    orders(first: 5) { id total status placedAt product { name price category } }
  }
}"#;

/// user -> team | permissions | orders -> lead | product
const DEPTH: u32 = 3;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let latency_ms: u64 = args.next().and_then(|a| a.parse().ok()).unwrap_or(20);
    let runs: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(50);
    let latency = Duration::from_millis(latency_ms);

    let services = demo::start(latency).await.expect("demo services start");
    let env: HashMap<String, String> = services.env().into_iter().collect();
    let source = std::fs::read_to_string("schema.graphql").expect("run from the repository root");
    let (gw, _) = Gateway::load(&source, Options::default(), &|n| env.get(n).cloned())
        .unwrap_or_else(|d| panic!("schema.graphql does not load: {d:?}"));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}/graphql", listener.local_addr().expect("addr"));
    tokio::spawn(fanout::server::serve(
        listener,
        fanout::http::router(gw, HttpOptions::default()),
        std::future::pending(),
    ));

    let client = reqwest::Client::new();
    let body = json!({ "query": QUERY, "variables": { "id": "1" } });
    let send = || async {
        let resp: Value = client
            .post(&url)
            .header("x-fanout-trace", "1")
            .json(&body)
            .send()
            .await
            .expect("Fanout answers")
            .json()
            .await
            .expect("JSON");
        assert!(
            resp.get("errors").is_none(),
            "the dashboard query failed: {resp}"
        );
        resp
    };
    let first = send().await;
    let calls = &first["extensions"]["fanout"]["calls"];
    let made: Vec<String> = calls
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["deduplicated"] == false)
        .map(|c| {
            format!(
                "{} {}{}",
                c["method"].as_str().unwrap_or(""),
                c["path"].as_str().unwrap_or(""),
                c.get("batchSize")
                    .map(|b| format!(" (batch of {b})"))
                    .unwrap_or_default()
            )
        })
        .collect();

    let before = services.calls();
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let start = Instant::now();
        send().await;
        times.push(start.elapsed());
    }
    let per_query = (services.calls() - before) as f64 / runs as f64;
    times.sort();
    let p50 = times[runs / 2];
    let ideal = latency * DEPTH;

    println!("dashboard query over the demo, upstream latency {latency_ms} ms, {runs} runs");
    println!("upstream calls per query: {per_query:.1} (minimum for this schema: 5)");
    for m in &made {
        println!("  {m}");
    }
    println!(
        "wall time p50: {:.1} ms, min: {:.1} ms",
        ms(p50),
        ms(times[0])
    );
    println!(
        "depth x latency: {DEPTH} x {latency_ms} ms = {:.1} ms; overhead at p50: {:.1} ms",
        ms(ideal),
        ms(p50) - ms(ideal)
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
