//! Test support: a recording mock REST upstream and a Fanout server, both real HTTP servers
//! on 127.0.0.1:0.

#![allow(dead_code)]

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use axum::{
    Router,
    body::Bytes,
    extract::Request,
    http::{HeaderMap, Method, StatusCode},
    response::{IntoResponse, Response},
};
use fanout::{Gateway, Options, http::HttpOptions};
use serde_json::Value as Json;
use tokio::{net::TcpListener, task::JoinHandle};

/// One request as the upstream received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: Method,
    /// The path exactly as sent on the wire (still percent-encoded).
    pub path: String,
    /// The raw query string, if any.
    pub query: Option<String>,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Recorded {
    /// The decoded query parameters, in order.
    pub fn params(&self) -> Vec<(String, String)> {
        url::form_urlencoded::parse(self.query.as_deref().unwrap_or("").as_bytes())
            .into_owned()
            .collect()
    }

    pub fn param(&self, name: &str) -> Option<String> {
        self.params()
            .into_iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
    }

    pub fn json(&self) -> Json {
        serde_json::from_slice(&self.body).expect("the upstream received a JSON body")
    }
}

/// What the mock answers.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub body: String,
    pub content_type: &'static str,
    pub delay: Duration,
}

impl Reply {
    pub fn json(v: Json) -> Reply {
        Reply {
            status: 200,
            body: v.to_string(),
            content_type: "application/json",
            delay: Duration::ZERO,
        }
    }

    pub fn status(status: u16, body: &str) -> Reply {
        Reply {
            status,
            body: body.to_owned(),
            content_type: "application/json",
            delay: Duration::ZERO,
        }
    }

    pub fn text(status: u16, body: &str, content_type: &'static str) -> Reply {
        Reply {
            status,
            body: body.to_owned(),
            content_type,
            delay: Duration::ZERO,
        }
    }

    pub fn delay(mut self, d: Duration) -> Reply {
        self.delay = d;
        self
    }
}

type Handler = Arc<dyn Fn(&Recorded) -> Reply + Send + Sync>;

/// A REST upstream that records every request and answers through a closure.
pub struct Mock {
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<Recorded>>>,
    task: JoinHandle<()>,
}

impl Mock {
    pub async fn start(handler: impl Fn(&Recorded) -> Reply + Send + Sync + 'static) -> Mock {
        let log: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let handler: Handler = Arc::new(handler);
        let app = Router::new().fallback({
            let log = log.clone();
            move |req: Request| {
                let log = log.clone();
                let handler = handler.clone();
                async move {
                    let (parts, body) = req.into_parts();
                    let body = axum::body::to_bytes(body, usize::MAX)
                        .await
                        .unwrap_or_default();
                    let rec = Recorded {
                        method: parts.method,
                        path: parts.uri.path().to_owned(),
                        query: parts.uri.query().map(str::to_owned),
                        headers: parts.headers,
                        body,
                    };
                    log.lock().unwrap().push(rec.clone());
                    let reply = handler(&rec);
                    tokio::time::sleep(reply.delay).await;
                    let status = StatusCode::from_u16(reply.status).unwrap();
                    let resp: Response =
                        (status, [("content-type", reply.content_type)], reply.body)
                            .into_response();
                    resp
                }
            }
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Mock { addr, log, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.log.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.log.lock().unwrap().len()
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A running Fanout on 127.0.0.1:0.
pub struct Fanout {
    pub addr: SocketAddr,
    pub http: reqwest::Client,
    task: JoinHandle<()>,
}

impl Fanout {
    /// Serves `schema` with default options. Panics with the diagnostics if it does not load.
    pub async fn start(schema: &str) -> Fanout {
        Fanout::with_options(schema, Options::default()).await
    }

    pub async fn with_options(schema: &str, options: Options) -> Fanout {
        let gw = match Gateway::load(schema, options, &|_| None) {
            Ok((gw, _)) => gw,
            Err(diags) => panic!("schema did not load: {diags:#?}"),
        };
        let app = fanout::http::router(gw, HttpOptions::default());
        let (addr, task) = crate::support::serve(app).await;
        Fanout {
            addr,
            http: reqwest::Client::new(),
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/graphql", self.addr)
    }

    /// POSTs `{"query": query}` and returns the JSON response.
    pub async fn query(&self, query: &str) -> Json {
        self.post(serde_json::json!({ "query": query })).await
    }

    pub async fn post(&self, body: Json) -> Json {
        let resp = self.http.post(self.url()).json(&body).send().await.unwrap();
        resp.json().await.unwrap()
    }

    /// POSTs with extra headers and returns status and JSON.
    pub async fn post_with(&self, body: Json, headers: &[(&str, &str)]) -> (u16, Json) {
        let mut req = self.http.post(self.url()).json(&body);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
    }
}

impl Drop for Fanout {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves `app` on 127.0.0.1:0 until the returned task is aborted.
pub async fn serve(app: Router) -> (SocketAddr, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        fanout::server::serve(listener, app, std::future::pending())
            .await
            .unwrap();
    });
    (addr, task)
}

/// `schema` with every `{MOCK}` replaced by the mock's base URL.
pub fn with_mock(schema: &str, mock: &Mock) -> String {
    schema.replace("{MOCK}", &mock.url())
}

/// The one code of a request refused before execution: it has no `data` and one error.
pub fn refused(resp: &Json) -> String {
    assert!(
        resp.get("data").is_none(),
        "a refused request has no data: {resp}"
    );
    let codes = codes(resp);
    assert_eq!(codes.len(), 1, "{resp}");
    codes[0].clone()
}

/// The `code` of each error, in order.
pub fn codes(resp: &Json) -> Vec<String> {
    resp["errors"]
        .as_array()
        .map(|errs| {
            errs.iter()
                .map(|e| e["extensions"]["code"].as_str().unwrap_or("").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The real `fanout` binary on a free loopback port, killed when dropped.
pub struct Process {
    pub child: std::process::Child,
    pub addr: SocketAddr,
    log: std::path::PathBuf,
}

impl Process {
    /// Starts `fanout ARGS --listen 127.0.0.1:PORT`, with no `FANOUT_*` variables inherited.
    pub fn spawn(args: &[&str]) -> Process {
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let log = std::env::temp_dir().join(format!("fanout-test-{}.log", addr.port()));
        let out = std::fs::File::create(&log).unwrap();
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_fanout"));
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("FANOUT_")) {
            cmd.env_remove(k);
        }
        cmd.args(args)
            .args(["--listen", &addr.to_string()])
            .env("RUST_LOG", "info")
            .stdin(std::process::Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        let child = cmd.spawn().unwrap();
        Process { child, addr, log }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls `url_path` (e.g. `/healthz`) until it answers 200, for at most 20 s.
    pub async fn wait_until_up(&mut self, url_path: &str) {
        let url = format!("http://{}{url_path}", self.addr);
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("fanout exited ({status}); log:\n{}", self.log());
            }
            if let Ok(r) = reqwest::get(&url).await
                && r.status() == 200
            {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "not up; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// POSTs a traced query to the process's `/graphql` and returns the JSON response.
    pub async fn traced_query(&self, query: &str) -> Json {
        let resp = reqwest::Client::new()
            .post(format!("http://{}/graphql", self.addr))
            .header("x-fanout-trace", "1")
            .json(&serde_json::json!({ "query": query }))
            .send()
            .await
            .unwrap();
        resp.json().await.unwrap()
    }

    pub fn signal(&self, signal: &str) {
        let status = std::process::Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}
