//! Behind a reverse proxy: `X-Forwarded-For` is believed only from `--trusted-proxy` peers.
//!
//! The client address Fanout settles on is the `client` field of the request's log span; these
//! tests read it from the real binary's `--log-format json` output (the per-request
//! "request done" line, logged at debug level by `fanout::http::edge`).

use std::{path::PathBuf, process::Stdio, time::Duration};

use serde_json::{Value as Json, json};

use crate::support::{Mock, Reply, with_mock};

const SCHEMA: &str = r#"
    extend schema @upstream(name: "users", baseUrl: "{MOCK}")
    type Query { user(id: ID!): User @rest(upstream: "users", path: "/users/{args.id}") }
    type User { id: ID! name: String }
"#;

/// The real binary on a free loopback port, logging JSON at debug level for the edge.
struct Gateway {
    child: std::process::Child,
    url: String,
    log: PathBuf,
    schema: PathBuf,
}

impl Gateway {
    async fn start(mock: &Mock, args: &[&str], env: &[(&str, &str)]) -> Gateway {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let dir = std::env::temp_dir();
        let schema = dir.join(format!("fanout-proxy-{}.graphql", addr.port()));
        std::fs::write(&schema, with_mock(SCHEMA, mock)).unwrap();
        let log = dir.join(format!("fanout-proxy-{}.log", addr.port()));
        let out = std::fs::File::create(&log).unwrap();
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_fanout"));
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("FANOUT_")) {
            cmd.env_remove(k);
        }
        cmd.args(["--schema", schema.to_str().unwrap()])
            .args(["--listen", &addr.to_string(), "--log-format", "json"])
            .args(args)
            .envs(env.iter().copied())
            .env("RUST_LOG", "info,fanout::http::edge=debug")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        let mut gw = Gateway {
            child: cmd.spawn().unwrap(),
            url: format!("http://{addr}"),
            log,
            schema,
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = gw.child.try_wait().unwrap() {
                panic!("fanout exited ({status}); log:\n{}", gw.log());
            }
            if let Ok(r) = reqwest::get(format!("{}/healthz", gw.url)).await
                && r.status() == 200
            {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "not up:\n{}",
                gw.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        gw
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Posts `{ user(id: 1) { name } }` with `headers`; returns the response body.
    async fn query(&self, request_id: &str, headers: &[(&str, &str)]) -> Json {
        let mut req = reqwest::Client::new()
            .post(format!("{}/graphql", self.url))
            .header("x-request-id", request_id)
            .json(&json!({"query": "{ user(id: 1) { name } }"}));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.headers()["x-request-id"], request_id);
        resp.json().await.unwrap()
    }

    /// The `client` of the "request done" log line of the request with this id. The line is
    /// written before the response is sent, so it is there once the response has arrived.
    fn client_of(&self, request_id: &str) -> String {
        let log = self.log();
        let line = log
            .lines()
            .filter_map(|l| serde_json::from_str::<Json>(l).ok())
            .find(|l| l["fields"]["message"] == "request done" && l["span"]["id"] == request_id)
            .unwrap_or_else(|| panic!("no `request done` line for {request_id}; log:\n{log}"));
        line["span"]["client"]
            .as_str()
            .unwrap_or_else(|| panic!("no client in {line}"))
            .to_owned()
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

async fn users() -> Mock {
    Mock::start(|_| Reply::json(json!({"id": 1, "name": "Ada"}))).await
}

#[tokio::test]
async fn forged_forwarded_for_from_untrusted_peer_is_ignored() {
    let mock = users().await;
    // Loopback, where the test connects from, is not a trusted proxy here.
    let gw = Gateway::start(&mock, &["--trusted-proxy", "10.0.0.0/8"], &[]).await;

    let forged = [
        ("x-forwarded-for", "203.0.113.9"),
        ("x-forwarded-proto", "https"),
        ("x-forwarded-host", "evil.example"),
    ];
    let body = gw.query("forged-1", &forged).await;
    assert_eq!(body, json!({"data": {"user": {"name": "Ada"}}}));
    assert_eq!(gw.client_of("forged-1"), "127.0.0.1");

    // Without the header: the same peer, the same client.
    let body = gw.query("plain-1", &[]).await;
    assert_eq!(body, json!({"data": {"user": {"name": "Ada"}}}));
    assert_eq!(gw.client_of("plain-1"), "127.0.0.1");

    // The upstream got both calls, and Fanout passed none of the forged headers on.
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 2);
    for r in &reqs {
        assert_eq!(r.path, "/users/1");
        for (name, _) in forged {
            assert!(r.headers.get(name).is_none(), "{name} reached the upstream");
        }
    }
    assert_eq!(reqs[0].headers["x-request-id"], "forged-1");
    assert_eq!(reqs[1].headers["x-request-id"], "plain-1");
}

#[tokio::test]
async fn forwarded_for_from_trusted_proxy_names_the_rightmost_untrusted_hop() {
    let mock = users().await;
    // Comma-separated in the variable, as the flag's help says.
    let env = [("FANOUT_TRUSTED_PROXY", "127.0.0.1/32,10.0.0.0/8")];
    let gw = Gateway::start(&mock, &[], &env).await;

    // The client forged 6.6.6.6; an edge proxy saw 198.51.100.7; an inner proxy (10.1.2.3,
    // trusted) passed it on to the loopback proxy the test plays.
    let chain = [("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.1.2.3")];
    let body = gw.query("chain-1", &chain).await;
    assert_eq!(body, json!({"data": {"user": {"name": "Ada"}}}));
    assert_eq!(gw.client_of("chain-1"), "198.51.100.7");

    // A trusted proxy that forwards nothing is itself the client.
    let body = gw.query("direct-1", &[]).await;
    assert_eq!(body, json!({"data": {"user": {"name": "Ada"}}}));
    assert_eq!(gw.client_of("direct-1"), "127.0.0.1");

    let reqs = mock.requests();
    assert_eq!(reqs.len(), 2);
    assert!(reqs.iter().all(|r| r.path == "/users/1"));
    assert!(reqs[0].headers.get("x-forwarded-for").is_none());
    assert_eq!(reqs[0].headers["x-request-id"], "chain-1");
    assert_eq!(reqs[1].headers["x-request-id"], "direct-1");
}
