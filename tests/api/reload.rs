//! Reloading `schema.graphql` without a restart: a good new schema serves new requests, a
//! broken one is refused while the old one keeps serving, requests in flight finish on the
//! schema they started with, and the binary reloads on `--watch` and on SIGHUP.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use fanout::{
    Gateway, Options,
    http::HttpOptions,
    reload::{Live, Reloader},
};
use serde_json::{Value as Json, json};
use tokio::task::JoinHandle;

use crate::support::{Mock, Reply, with_mock};

/// Field `a` of the query root reads `/a` of the mock.
const SCHEMA_A: &str = r#"extend schema @upstream(name: "svc", baseUrl: "{MOCK}")
type Query {
  a: Thing @rest(upstream: "svc", path: "/a")
}
type Thing { v: String }
"#;

/// Field `b` instead of `a`, reading `/b`.
const SCHEMA_B: &str = r#"extend schema @upstream(name: "svc", baseUrl: "{MOCK}")
type Query {
  b: Thing @rest(upstream: "svc", path: "/b")
}
type Thing { v: String }
"#;

/// `b`, bound to an upstream that is not declared.
const SCHEMA_BROKEN: &str = r#"extend schema @upstream(name: "svc", baseUrl: "{MOCK}")
type Query {
  b: Thing @rest(upstream: "nope", path: "/b")
}
type Thing { v: String }
"#;

/// A mock that answers `/a` with `{"v": "A"}`, `/b` with `{"v": "B"}`.
async fn mock_ab() -> Mock {
    Mock::start(|r| match r.path.as_str() {
        "/a" => Reply::json(json!({"v": "A"})),
        "/b" => Reply::json(json!({"v": "B"})),
        _ => Reply::status(404, "{}"),
    })
    .await
}

fn paths(mock: &Mock) -> Vec<String> {
    mock.requests().into_iter().map(|r| r.path).collect()
}

/// 1-based line and column of the only occurrence of `needle` in `src`.
fn at(src: &str, needle: &str) -> (usize, usize) {
    assert_eq!(src.matches(needle).count(), 1, "{needle:?} occurs once");
    let before = &src[..src.find(needle).unwrap()];
    let line = before.matches('\n').count() + 1;
    let column = before.chars().count() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    (line, column)
}

/// A schema file under the temp dir, removed on drop.
struct SchemaFile {
    path: PathBuf,
}

impl SchemaFile {
    fn new(tag: &str, text: &str) -> SchemaFile {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "fanout-reload-{}-{tag}-{}.graphql",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        ));
        let file = SchemaFile { path };
        file.write(text);
        file
    }

    /// Replaces the content at once (write a sibling, then rename), so a watcher never
    /// reads a half-written file.
    fn write(&self, text: &str) {
        let tmp = self.path.with_extension("graphql.tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &self.path).unwrap();
    }
}

impl Drop for SchemaFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Fanout serving a reloadable schema file on 127.0.0.1:0.
struct Served {
    addr: SocketAddr,
    http: reqwest::Client,
    reloader: Reloader,
    file: SchemaFile,
    task: JoinHandle<()>,
}

impl Served {
    async fn start(tag: &str, schema: &str) -> Served {
        let file = SchemaFile::new(tag, schema);
        let gw = match Gateway::load(schema, Options::default(), &|_| None) {
            Ok((gw, _)) => gw,
            Err(diags) => panic!("schema did not load: {diags:#?}"),
        };
        let live = Live::new(gw);
        let reloader = Reloader {
            path: file.path.clone(),
            options: Options::default(),
            env: Arc::new(|_: &str| None),
            live: live.clone(),
        };
        let app = fanout::http::live_router(live, HttpOptions::default());
        let (addr, task) = crate::support::serve(app).await;
        Served {
            addr,
            http: reqwest::Client::new(),
            reloader,
            file,
            task,
        }
    }

    async fn query(&self, query: &str) -> Json {
        post_query(&self.http, self.addr, query).await
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn post_query(http: &reqwest::Client, addr: SocketAddr, query: &str) -> Json {
    http.post(format!("http://{addr}/graphql"))
        .json(&json!({ "query": query }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn readyz(http: &reqwest::Client, addr: SocketAddr) -> Json {
    let resp = http
        .get(format!("http://{addr}/readyz"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

async fn metrics(http: &reqwest::Client, addr: SocketAddr) -> String {
    let resp = http
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap()
}

/// The value of the sample `series` (name and labels, exactly as exposed).
fn sample(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .unwrap_or_else(|| panic!("no sample {series} in:\n{metrics}"))
        .trim()
        .parse()
        .unwrap()
}

const RELOADS_OK: &str = r#"fanout_schema_reloads_total{result="ok"}"#;
const RELOADS_REFUSED: &str = r#"fanout_schema_reloads_total{result="refused"}"#;

/// A request error of the validation kind: no `data`, one error naming `field`.
fn assert_unknown_field(resp: &Json, field: &str) {
    assert!(resp.get("data").is_none(), "{resp}");
    let message = resp["errors"][0]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&format!("\"{field}\"")),
        "expected a validation error naming {field:?}: {resp}"
    );
}

#[tokio::test]
async fn good_new_schema_serves_new_requests() {
    let mock = mock_ab().await;
    let served = Served::start("good", &with_mock(SCHEMA_A, &mock)).await;
    assert_eq!(
        served.query("{ a { v } }").await,
        json!({"data": {"a": {"v": "A"}}})
    );

    served.file.write(&with_mock(SCHEMA_B, &mock));
    assert_eq!(served.reloader.reload(), Ok(2));

    assert_eq!(
        served.query("{ b { v } }").await,
        json!({"data": {"b": {"v": "B"}}})
    );
    assert_unknown_field(&served.query("{ a { v } }").await, "a");
    assert_eq!(
        readyz(&served.http, served.addr).await["schemaVersion"],
        json!(2)
    );
    let m = metrics(&served.http, served.addr).await;
    assert_eq!(sample(&m, "fanout_schema_version"), 2.0, "{m}");
    assert_eq!(sample(&m, RELOADS_OK), 1.0, "{m}");
    assert_eq!(sample(&m, RELOADS_REFUSED), 0.0, "{m}");
    // One call on each schema; the refused `a` never reached the upstream.
    assert_eq!(paths(&mock), ["/a", "/b"]);
}

#[tokio::test]
async fn broken_new_schema_is_refused_and_the_old_one_keeps_serving() {
    let mock = mock_ab().await;
    let served = Served::start("broken", &with_mock(SCHEMA_A, &mock)).await;
    let broken = with_mock(SCHEMA_BROKEN, &mock);
    served.file.write(&broken);

    let err = served
        .reloader
        .reload()
        .expect_err("a broken schema is refused");
    let (line, column) = at(&broken, "\"nope\"");
    let position = format!("{}:{line}:{column}", served.file.path.display());
    assert!(err.contains(&position), "no {position} in:\n{err}");
    assert!(err.contains("unknown upstream \"nope\""), "{err}");

    assert_eq!(
        served.query("{ a { v } }").await,
        json!({"data": {"a": {"v": "A"}}})
    );
    assert_unknown_field(&served.query("{ b { v } }").await, "b");
    assert_eq!(served.reloader.live.version(), 1);
    assert_eq!(
        readyz(&served.http, served.addr).await["schemaVersion"],
        json!(1)
    );
    let m = metrics(&served.http, served.addr).await;
    assert_eq!(sample(&m, "fanout_schema_version"), 1.0, "{m}");
    assert_eq!(sample(&m, RELOADS_OK), 0.0, "{m}");
    assert_eq!(sample(&m, RELOADS_REFUSED), 1.0, "{m}");
    assert_eq!(paths(&mock), ["/a"]);
}

#[tokio::test]
async fn request_in_flight_finishes_on_the_schema_it_started_with() {
    let mock = Mock::start(|r| match r.path.as_str() {
        "/old" => Reply::json(json!({"v": "old"})).delay(Duration::from_millis(600)),
        "/new" => Reply::json(json!({"v": "new"})),
        _ => Reply::status(404, "{}"),
    })
    .await;
    let schema = |path: &str| {
        with_mock(SCHEMA_A, &mock).replace(r#"path: "/a""#, &format!(r#"path: "{path}""#))
    };
    let served = Served::start("inflight", &schema("/old")).await;

    let in_flight = tokio::spawn({
        let (http, addr) = (served.http.clone(), served.addr);
        async move { post_query(&http, addr, "{ a { v } }").await }
    });
    // Wait for the upstream to receive the call: the request is now executing.
    let deadline = Instant::now() + Duration::from_secs(2);
    while mock.count() == 0 {
        assert!(Instant::now() < deadline, "the upstream never got the call");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    served.file.write(&schema("/new"));
    assert_eq!(served.reloader.reload(), Ok(2));
    assert!(
        !in_flight.is_finished(),
        "the reload must happen while the request is in flight"
    );

    assert_eq!(
        in_flight.await.unwrap(),
        json!({"data": {"a": {"v": "old"}}})
    );
    assert_eq!(
        served.query("{ a { v } }").await,
        json!({"data": {"a": {"v": "new"}}})
    );
    assert_eq!(paths(&mock), ["/old", "/new"]);
}

/// The `fanout` binary as a child process; killed on drop, even when the test panics.
struct Binary {
    child: Child,
    addr: SocketAddr,
    log: PathBuf,
    http: reqwest::Client,
}

impl Binary {
    fn start(schema: &Path, watch: bool) -> Binary {
        let addr = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let log = schema.with_extension("log");
        let out = std::fs::File::create(&log).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_fanout"));
        for (k, _) in std::env::vars() {
            if k.starts_with("FANOUT_") {
                cmd.env_remove(k);
            }
        }
        cmd.arg("--schema")
            .arg(schema)
            .args(["--listen", &addr.to_string()])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out);
        if watch {
            cmd.arg("--watch");
        }
        let child = cmd.spawn().unwrap();
        Binary {
            child,
            addr,
            log,
            http: reqwest::Client::new(),
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls `/readyz` until it reports `version` (bounded; the process must stay up).
    async fn wait_for_version(&mut self, version: u64, within: Duration) {
        let deadline = Instant::now() + within;
        let mut last = None;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("fanout exited ({status}); log:\n{}", self.log());
            }
            let url = format!("http://{}/readyz", self.addr);
            if let Ok(resp) = self.http.get(&url).send().await
                && let Ok(body) = resp.json::<Json>().await
            {
                if body["schemaVersion"] == json!(version) {
                    return;
                }
                last = Some(body);
            }
            assert!(
                Instant::now() < deadline,
                "schemaVersion {version} not reached within {within:?}; last /readyz: {last:?}; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn query(&self, query: &str) -> Json {
        post_query(&self.http, self.addr, query).await
    }

    fn sighup(&self) {
        let status = Command::new("kill")
            .args(["-HUP", &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

#[tokio::test]
async fn binary_with_watch_reloads_the_changed_file_and_reloads_on_sighup() {
    let mock = mock_ab().await;
    let file = SchemaFile::new("bin-watch", &with_mock(SCHEMA_A, &mock));
    let mut fanout = Binary::start(&file.path, true);
    fanout.wait_for_version(1, Duration::from_secs(10)).await;
    assert_eq!(
        fanout.query("{ a { v } }").await,
        json!({"data": {"a": {"v": "A"}}})
    );

    file.write(&with_mock(SCHEMA_B, &mock));
    fanout.wait_for_version(2, Duration::from_secs(5)).await;
    assert_eq!(
        fanout.query("{ b { v } }").await,
        json!({"data": {"b": {"v": "B"}}})
    );
    assert_unknown_field(&fanout.query("{ a { v } }").await, "a");

    // The file is unchanged, so the watcher stays quiet: only SIGHUP can make version 3.
    fanout.sighup();
    fanout.wait_for_version(3, Duration::from_secs(5)).await;
    assert_eq!(
        fanout.query("{ b { v } }").await,
        json!({"data": {"b": {"v": "B"}}})
    );
    let m = metrics(&fanout.http, fanout.addr).await;
    assert_eq!(sample(&m, "fanout_schema_version"), 3.0, "{m}");
    assert_eq!(sample(&m, RELOADS_OK), 2.0, "{m}");
    assert_eq!(sample(&m, RELOADS_REFUSED), 0.0, "{m}");
    assert_eq!(paths(&mock), ["/a", "/b", "/b"]);
}

#[tokio::test]
async fn binary_reloads_a_changed_file_on_sighup_and_refuses_a_broken_one() {
    let mock = mock_ab().await;
    let file = SchemaFile::new("bin-hup", &with_mock(SCHEMA_A, &mock));
    let mut fanout = Binary::start(&file.path, false);
    fanout.wait_for_version(1, Duration::from_secs(10)).await;
    assert_eq!(
        fanout.query("{ a { v } }").await,
        json!({"data": {"a": {"v": "A"}}})
    );

    file.write(&with_mock(SCHEMA_B, &mock));
    fanout.sighup();
    fanout.wait_for_version(2, Duration::from_secs(5)).await;
    assert_eq!(
        fanout.query("{ b { v } }").await,
        json!({"data": {"b": {"v": "B"}}})
    );

    // A broken file on SIGHUP: refused, logged, and version 2 keeps serving.
    let broken = with_mock(SCHEMA_BROKEN, &mock);
    file.write(&broken);
    fanout.sighup();
    let deadline = Instant::now() + Duration::from_secs(5);
    let m = loop {
        let m = metrics(&fanout.http, fanout.addr).await;
        if sample(&m, RELOADS_REFUSED) >= 1.0 {
            break m;
        }
        assert!(
            Instant::now() < deadline,
            "the broken reload was never counted:\n{m}\nlog:\n{}",
            fanout.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(sample(&m, RELOADS_REFUSED), 1.0, "{m}");
    assert_eq!(sample(&m, RELOADS_OK), 1.0, "{m}");
    assert_eq!(sample(&m, "fanout_schema_version"), 2.0, "{m}");
    assert_eq!(
        fanout.query("{ b { v } }").await,
        json!({"data": {"b": {"v": "B"}}})
    );
    let (line, column) = at(&broken, "\"nope\"");
    let position = format!("{}:{line}:{column}", file.path.display());
    let log = fanout.log();
    assert!(
        log.contains(&position) && log.contains("unknown upstream"),
        "the refusal is logged with its position {position}:\n{log}"
    );
    assert_eq!(paths(&mock), ["/a", "/b", "/b"]);
}
