//! Connection hygiene against slow and abusive clients, over real TCP on loopback: the
//! header read timeout (half-sent heads, silent and idle connections), head size and header
//! count limits, the connection cap, the body read timeout, the peer address reaching
//! handlers, and the drain (in the library and in the binary, whose exit status says whether
//! requests were cut off).
//!
//! Timeouts under test are set short (hundreds of milliseconds); every wait for something to
//! happen allows seconds more than it should take.

use std::{
    net::SocketAddr,
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{Router, extract::ConnectInfo, routing::get};
use fanout::server::{Drain, ServeOptions, serve_with};
use serde_json::json;
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::{Notify, oneshot},
    task::JoinHandle,
};

use crate::support::{Mock, Process, Reply, with_mock};

/// Anything that should happen within a short timeout happens well within this.
const PATIENCE: Duration = Duration::from_secs(5);

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// `/` answers "ok"; `/peer` the peer address the handler was given; `/slow` answers after
/// `notify` has been told the request arrived and `delay` has passed.
fn app(notify: Arc<Notify>, delay: Duration) -> Router {
    Router::new()
        .route("/", get(|| async { "ok" }))
        .route(
            "/peer",
            get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }),
        )
        .route(
            "/slow",
            get(move || async move {
                notify.notify_one();
                tokio::time::sleep(delay).await;
                "slow"
            }),
        )
}

/// A server under test, with the means to stop it.
struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<Drain>>,
}

impl Server {
    async fn start(app: Router, opts: ServeOptions) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            serve_with(listener, app, shutdown, &opts).await
        });
        Server {
            addr,
            stop: Some(stop),
            task,
        }
    }

    async fn connect(&self) -> TcpStream {
        TcpStream::connect(self.addr).await.unwrap()
    }

    /// Starts the drain; returns how it ended and how long it took.
    async fn drain(&mut self) -> (Drain, Duration) {
        let started = Instant::now();
        let _ = self.stop.take().unwrap().send(());
        let drain = tokio::time::timeout(PATIENCE * 2, &mut self.task)
            .await
            .expect("the drain ends")
            .unwrap()
            .unwrap();
        (drain, started.elapsed())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Settings with a long header read timeout, so that only what a test shortens matters.
fn patient() -> ServeOptions {
    ServeOptions {
        header_read_timeout: Duration::from_secs(60),
        ..ServeOptions::default()
    }
}

/// One response read off a raw connection.
#[derive(Debug)]
struct Raw {
    status: u16,
    head: String,
    body: String,
}

/// Reads one response (its head, then `Content-Length` bytes of body).
async fn read_response(stream: &mut TcpStream) -> Raw {
    let read = async {
        let mut buf = Vec::new();
        let head_end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            let mut chunk = [0; 4096];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(
                n > 0,
                "closed before a whole head: {:?}",
                String::from_utf8_lossy(&buf)
            );
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        let length: usize = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().unwrap())
            })
            .unwrap_or(0);
        let mut body = buf[head_end..].to_vec();
        while body.len() < length {
            let mut chunk = [0; 4096];
            let n = stream.read(&mut chunk).await.unwrap();
            assert!(n > 0, "closed before the whole body");
            body.extend_from_slice(&chunk[..n]);
        }
        Raw {
            status,
            head,
            body: String::from_utf8_lossy(&body).into_owned(),
        }
    };
    tokio::time::timeout(PATIENCE, read)
        .await
        .expect("a response within the patience")
}

/// Waits for the server to close the connection; returns what it sent before closing and
/// how long that took. Panics if it is still open after `PATIENCE`.
async fn closed(stream: &mut (impl AsyncRead + Unpin)) -> (Vec<u8>, Duration) {
    let started = Instant::now();
    let mut got = Vec::new();
    let read = async {
        loop {
            let mut chunk = [0; 4096];
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(PATIENCE, read)
        .await
        .expect("the server closes the connection");
    (got, started.elapsed())
}

/// Whether the connection stays open without sending anything for `wait`.
async fn stays_silent(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut chunk = [0; 16];
    tokio::time::timeout(wait, stream.read(&mut chunk))
        .await
        .is_err()
}

fn get_request(path: &str, extra_headers: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nhost: fanout.test\r\n{extra_headers}\r\n")
}

#[tokio::test]
async fn half_sent_headers_are_closed_after_the_header_read_timeout() {
    let opts = ServeOptions {
        header_read_timeout: ms(300),
        ..ServeOptions::default()
    };
    let server = Server::start(app(Arc::default(), ms(0)), opts).await;
    let mut conn = server.connect().await;
    // The request line and one header; the blank line that ends the head never comes.
    conn.write_all(b"GET / HTTP/1.1\r\nhost: fanout.test\r\nx-slow: 1\r\n")
        .await
        .unwrap();
    let (sent, took) = closed(&mut conn).await;
    assert!(took >= ms(250), "closed after {took:?}, before the timeout");
    assert!(
        sent.is_empty(),
        "closed without an answer: {:?}",
        String::from_utf8_lossy(&sent)
    );

    // A head trickled a byte every 20 ms (it would take 10 s) does not reset the timer.
    let (mut read, mut write) = server.connect().await.into_split();
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        for byte in b"GET / HTTP/1.1\r\nhost: fanout.test\r\nx-slow: 1\r\n".repeat(10) {
            if write.write_all(&[byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(ms(20)).await;
        }
    });
    let (sent, _) = closed(&mut read).await;
    let took = started.elapsed();
    assert!(sent.is_empty());
    assert!(
        took >= ms(250) && took < ms(2500),
        "a trickled head was closed after {took:?}"
    );
    writer.abort();
}

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_after_the_header_read_timeout() {
    let opts = ServeOptions {
        header_read_timeout: ms(300),
        ..ServeOptions::default()
    };
    let server = Server::start(app(Arc::default(), ms(0)), opts).await;
    let mut silent = server.connect().await;
    let (sent, took) = closed(&mut silent).await;
    assert!(took >= ms(250), "closed after {took:?}");
    assert!(sent.is_empty());

    // Nor may the first bytes of the HTTP/2 preface hold a connection open.
    let mut partial = server.connect().await;
    partial.write_all(b"PRI * HTTP/2.0\r\n").await.unwrap();
    let (_, took) = closed(&mut partial).await;
    assert!(took >= ms(250), "closed after {took:?}");
}

#[tokio::test]
async fn an_idle_keep_alive_connection_is_closed_after_the_header_read_timeout() {
    let opts = ServeOptions {
        header_read_timeout: ms(400),
        ..ServeOptions::default()
    };
    let server = Server::start(app(Arc::default(), ms(0)), opts).await;
    let mut conn = server.connect().await;
    // Two requests on one connection: each is answered; 200 ms apart is well within the
    // timeout, so the connection stays open between them.
    for _ in 0..2 {
        conn.write_all(get_request("/", "").as_bytes())
            .await
            .unwrap();
        let resp = read_response(&mut conn).await;
        assert_eq!((resp.status, resp.body.as_str()), (200, "ok"), "{resp:?}");
        assert!(!resp.head.contains("connection: close"), "{resp:?}");
        tokio::time::sleep(ms(200)).await;
    }
    // Then idle: hyper's header read timer starts whenever the connection waits for a head,
    // so it closes a kept-alive connection that sends nothing more.
    let (sent, took) = closed(&mut conn).await;
    assert!(sent.is_empty(), "{:?}", String::from_utf8_lossy(&sent));
    assert!(took >= ms(150), "closed {took:?} after the answer");
}

#[tokio::test]
async fn headers_over_the_size_limit_get_431() {
    // The default: 16 KiB for the request line and headers together.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = app(Arc::default(), ms(0));
    let task = tokio::spawn(fanout::server::serve(listener, app, std::future::pending()));

    let mut conn = TcpStream::connect(addr).await.unwrap();
    let big = format!("x-big: {}\r\n", "a".repeat(20 * 1024));
    conn.write_all(get_request("/", &big).as_bytes())
        .await
        .unwrap();
    let resp = read_response(&mut conn).await;
    assert_eq!(resp.status, 431, "{resp:?}");
    let (_, _) = closed(&mut conn).await;

    // The head need not be complete to be refused: 20 KiB of an unfinished head is enough.
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let unfinished = format!("GET / HTTP/1.1\r\nx-big: {}", "a".repeat(20 * 1024));
    conn.write_all(unfinished.as_bytes()).await.unwrap();
    let resp = read_response(&mut conn).await;
    assert_eq!(resp.status, 431, "{resp:?}");

    // Under the limit, 12 KiB of headers are served.
    let mut conn = TcpStream::connect(addr).await.unwrap();
    let fine = format!("x-big: {}\r\n", "a".repeat(12 * 1024));
    conn.write_all(get_request("/", &fine).as_bytes())
        .await
        .unwrap();
    let resp = read_response(&mut conn).await;
    assert_eq!(resp.status, 200, "{resp:?}");
    task.abort();

    // And a smaller limit is kept.
    let opts = ServeOptions {
        max_header_bytes: 2048,
        ..patient()
    };
    let server = Server::start(self::app(Arc::default(), ms(0)), opts).await;
    let mut conn = server.connect().await;
    let over = format!("x-big: {}\r\n", "a".repeat(2048));
    conn.write_all(get_request("/", &over).as_bytes())
        .await
        .unwrap();
    assert_eq!(read_response(&mut conn).await.status, 431);
}

#[tokio::test]
async fn too_many_headers_get_431() {
    let opts = ServeOptions {
        max_headers: 20,
        ..patient()
    };
    let server = Server::start(app(Arc::default(), ms(0)), opts).await;
    let headers = |n: usize| {
        (0..n)
            .map(|i| format!("x-h{i}: {i}\r\n"))
            .collect::<String>()
    };

    // 1 (host) + 25 header lines.
    let mut conn = server.connect().await;
    conn.write_all(get_request("/", &headers(25)).as_bytes())
        .await
        .unwrap();
    let resp = read_response(&mut conn).await;
    assert_eq!(resp.status, 431, "{resp:?}");

    // 1 + 15 are served.
    let mut conn = server.connect().await;
    conn.write_all(get_request("/", &headers(15)).as_bytes())
        .await
        .unwrap();
    let resp = read_response(&mut conn).await;
    assert_eq!((resp.status, resp.body.as_str()), (200, "ok"), "{resp:?}");
}

#[tokio::test]
async fn a_third_connection_waits_while_two_are_open() {
    let opts = ServeOptions {
        max_connections: 2,
        ..patient()
    };
    let server = Server::start(app(Arc::default(), ms(0)), opts).await;
    let request = get_request("/", "");

    // Two connections, each answered and kept open.
    let mut first = server.connect().await;
    let mut second = server.connect().await;
    for conn in [&mut first, &mut second] {
        conn.write_all(request.as_bytes()).await.unwrap();
        assert_eq!(read_response(conn).await.status, 200);
    }

    // A third one connects (the kernel's backlog takes it) but is not served.
    let mut third = server.connect().await;
    third.write_all(request.as_bytes()).await.unwrap();
    assert!(
        stays_silent(&mut third, ms(700)).await,
        "a third connection was served while two were open"
    );

    // Once one of the two closes, the third is served.
    drop(first);
    let resp = read_response(&mut third).await;
    assert_eq!((resp.status, resp.body.as_str()), (200, "ok"), "{resp:?}");

    // The other open connection still works.
    second.write_all(request.as_bytes()).await.unwrap();
    assert_eq!(read_response(&mut second).await.status, 200);
}

#[tokio::test]
async fn a_body_that_stalls_gets_408_within_the_body_timeout() {
    let schema = r#"
        extend schema @upstream(name: "users", baseUrl: "http://127.0.0.1:9")
        type Query { user(id: ID!): User @rest(upstream: "users", path: "/users/{args.id}") }
        type User { id: ID! name: String }
    "#;
    let gw = fanout::Gateway::load(schema, fanout::Options::default(), &|_| None)
        .unwrap()
        .0;
    let http = fanout::http::HttpOptions {
        body_read_timeout: Some(ms(300)),
        ..Default::default()
    };
    let server = Server::start(fanout::http::router(gw, http), patient()).await;
    let mut conn = server.connect().await;
    let body = json!({"query": "{ user(id: 1) { name } }"}).to_string();
    let head = format!(
        "POST /graphql HTTP/1.1\r\nhost: fanout.test\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n",
        body.len()
    );
    let started = Instant::now();
    conn.write_all(head.as_bytes()).await.unwrap();
    // Half the body, then nothing.
    conn.write_all(&body.as_bytes()[..body.len() / 2])
        .await
        .unwrap();
    let resp = read_response(&mut conn).await;
    let took = started.elapsed();
    assert_eq!(resp.status, 408, "{resp:?}");
    assert!(took >= ms(250), "408 after {took:?}, before the timeout");
    assert!(resp.body.contains("did not arrive"), "{resp:?}");
    assert!(
        resp.head.to_ascii_lowercase().contains("x-request-id"),
        "{resp:?}"
    );
    let (_, _) = closed(&mut conn).await;

    // A body that arrives whole in time, if slowly, is served.
    let mut conn = server.connect().await;
    conn.write_all(head.as_bytes()).await.unwrap();
    let (a, b) = body.as_bytes().split_at(body.len() / 2);
    conn.write_all(a).await.unwrap();
    tokio::time::sleep(ms(100)).await;
    conn.write_all(b).await.unwrap();
    let resp = read_response(&mut conn).await;
    assert_eq!(resp.status, 200, "{resp:?}");
}

#[tokio::test]
async fn the_peer_address_reaches_the_handler() {
    for opts in [ServeOptions::default(), patient()] {
        let server = Server::start(app(Arc::default(), ms(0)), opts).await;
        let mut conn = server.connect().await;
        let local = conn.local_addr().unwrap();
        conn.write_all(get_request("/peer", "").as_bytes())
            .await
            .unwrap();
        let resp = read_response(&mut conn).await;
        assert_eq!((resp.status, resp.body), (200, local.to_string()));
    }
}

#[tokio::test]
async fn http2_with_prior_knowledge_is_served_with_the_peer_address() {
    let server = Server::start(app(Arc::default(), ms(0)), patient()).await;
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let resp = client
        .get(format!("http://{}/peer", server.addr))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    assert_eq!(resp.status(), 200);
    let peer: SocketAddr = resp.text().await.unwrap().parse().unwrap();
    assert_eq!(peer.ip(), server.addr.ip());
}

#[tokio::test]
async fn an_idle_http2_connection_is_closed_after_the_header_read_timeout() {
    let opts = ServeOptions {
        header_read_timeout: ms(300),
        ..ServeOptions::default()
    };
    let server = Server::start(app(Arc::default(), ms(0)), opts).await;
    let mut conn = server.connect().await;
    // The preface and an empty SETTINGS frame, then no request.
    conn.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .await
        .unwrap();
    let (sent, took) = closed(&mut conn).await;
    assert!(!sent.is_empty(), "the server's SETTINGS came first");
    assert!(took >= ms(250), "closed after {took:?}");
}

#[tokio::test]
async fn the_drain_closes_idle_connections_and_waits_for_requests() {
    let started = Arc::new(Notify::new());
    let opts = ServeOptions {
        drain_grace: Some(PATIENCE),
        ..patient()
    };
    let mut server = Server::start(app(started.clone(), ms(300)), opts).await;
    let mut idle = server.connect().await;
    idle.write_all(get_request("/", "").as_bytes())
        .await
        .unwrap();
    assert_eq!(read_response(&mut idle).await.status, 200);
    let mut busy = server.connect().await;
    busy.write_all(get_request("/slow", "").as_bytes())
        .await
        .unwrap();
    started.notified().await;

    let (drain, took) = server.drain().await;
    assert_eq!(drain, Drain::Complete);
    assert!(took < PATIENCE, "drained in {took:?}");
    let resp = read_response(&mut busy).await;
    assert_eq!((resp.status, resp.body.as_str()), (200, "slow"));
    let (sent, _) = closed(&mut idle).await;
    assert!(sent.is_empty());
    // The listener is closed.
    assert!(TcpStream::connect(server.addr).await.is_err());
}

#[tokio::test]
async fn the_drain_cuts_off_requests_that_outlast_the_grace() {
    let started = Arc::new(Notify::new());
    let opts = ServeOptions {
        drain_grace: Some(ms(300)),
        ..patient()
    };
    let mut server = Server::start(app(started.clone(), Duration::from_secs(60)), opts).await;
    let mut busy = server.connect().await;
    busy.write_all(get_request("/slow", "").as_bytes())
        .await
        .unwrap();
    started.notified().await;

    let (drain, took) = server.drain().await;
    assert_eq!(
        drain,
        Drain::CutOff {
            connections: 1,
            requests: 1
        }
    );
    assert!(took >= ms(250) && took < PATIENCE, "drained in {took:?}");
    let (sent, _) = closed(&mut busy).await;
    assert!(sent.is_empty(), "{:?}", String::from_utf8_lossy(&sent));
}

const SCHEMA: &str = r#"
    extend schema @upstream(name: "users", baseUrl: "{MOCK}")
    type Query { user(id: ID!): User @rest(upstream: "users", path: "/users/{args.id}") }
    type User { id: ID! name: String }
"#;

/// The binary serving `SCHEMA` against `mock`, with `args`.
async fn binary(mock: &Mock, args: &[&str]) -> (Process, std::path::PathBuf) {
    let schema = std::env::temp_dir().join(format!(
        "fanout-connections-{}-{}.graphql",
        std::process::id(),
        mock.addr.port()
    ));
    std::fs::write(&schema, with_mock(SCHEMA, mock)).unwrap();
    let mut all = vec!["--schema", schema.to_str().unwrap()];
    all.extend_from_slice(args);
    let mut p = Process::spawn(&all);
    p.wait_until_up("/healthz").await;
    (p, schema)
}

/// Sends the query in the background, and returns once the upstream has received its call.
async fn in_flight(p: &Process, mock: &Mock) -> JoinHandle<reqwest::Result<reqwest::Response>> {
    let url = format!("http://{}/graphql", p.addr);
    let request = tokio::spawn(async move {
        reqwest::Client::new()
            .post(url)
            .json(&json!({"query": "{ user(id: 1) { name } }"}))
            .send()
            .await
    });
    let until = Instant::now() + PATIENCE;
    while mock.count() == 0 {
        assert!(Instant::now() < until, "the upstream got no call");
        tokio::time::sleep(ms(10)).await;
    }
    request
}

/// Waits for the process to exit; its exit code.
async fn exit_code(p: &mut Process, within: Duration) -> Option<i32> {
    let until = Instant::now() + within;
    loop {
        if let Some(status) = p.child.try_wait().unwrap() {
            return status.code();
        }
        assert!(Instant::now() < until, "did not exit; log:\n{}", p.log());
        tokio::time::sleep(ms(20)).await;
    }
}

#[tokio::test]
async fn the_binary_exits_3_when_the_drain_grace_cuts_a_request_off() {
    let mock =
        Mock::start(|_| Reply::json(json!({"id": 1, "name": "Ada"})).delay(Duration::from_secs(3)))
            .await;
    let (mut p, schema) = binary(&mock, &["--drain-grace", "300ms"]).await;
    let request = in_flight(&p, &mock).await;
    let signalled = Instant::now();
    p.signal("-TERM");
    let code = exit_code(&mut p, PATIENCE).await;
    let took = signalled.elapsed();
    let log = p.log();
    assert_eq!(code, Some(3), "log:\n{log}");
    assert!(
        took < ms(2500),
        "exited {took:?} after SIGTERM: it waited for the upstream"
    );
    assert!(
        log.contains("cut off 1 request(s) in flight on 1 connection(s)"),
        "log:\n{log}"
    );
    assert!(
        request.await.unwrap().is_err(),
        "the request was cut off, not answered"
    );
    let _ = std::fs::remove_file(schema);
}

#[tokio::test]
async fn the_binary_exits_0_when_every_request_finishes_within_the_grace() {
    // The upstream takes 1 s, so the request is surely in flight when SIGTERM arrives, and
    // the 5 s grace is ample.
    let mock =
        Mock::start(|_| Reply::json(json!({"id": 1, "name": "Ada"})).delay(Duration::from_secs(1)))
            .await;
    let (mut p, schema) = binary(&mock, &["--drain-grace", "5s"]).await;
    let request = in_flight(&p, &mock).await;
    p.signal("-TERM");
    assert!(
        !request.is_finished(),
        "the request was in flight at SIGTERM"
    );
    let resp = request.await.unwrap().unwrap();
    assert_eq!(resp.status(), 200);
    let body: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(body["data"]["user"]["name"], "Ada", "{body}");
    let code = exit_code(&mut p, PATIENCE).await;
    let log = p.log();
    assert_eq!(code, Some(0), "log:\n{log}");
    assert!(log.contains("drained; bye"), "log:\n{log}");
    let _ = std::fs::remove_file(schema);
}

/// The binary under `prlimit`, with few file descriptors: when they run out, `accept` fails
/// (EMFILE) and the server must pause and go on, not stop.
#[tokio::test]
async fn the_server_outlives_running_out_of_file_descriptors() {
    let mock = Mock::start(|_| Reply::json(json!({"id": 1, "name": "Ada"}))).await;
    let schema = std::env::temp_dir().join(format!(
        "fanout-connections-fds-{}.graphql",
        std::process::id()
    ));
    std::fs::write(&schema, with_mock(SCHEMA, &mock)).unwrap();
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let log = std::env::temp_dir().join(format!("fanout-connections-fds-{}.log", addr.port()));
    let out = std::fs::File::create(&log).unwrap();
    let mut cmd = std::process::Command::new("prlimit");
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("FANOUT_")) {
        cmd.env_remove(k);
    }
    cmd.args(["--nofile=48", "--", env!("CARGO_BIN_EXE_fanout")])
        .args(["--schema", schema.to_str().unwrap()])
        .args(["--listen", &addr.to_string(), "--header-read-timeout", "1s"])
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out);
    struct Killed(std::process::Child);
    impl Drop for Killed {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = Killed(cmd.spawn().expect("prlimit (util-linux) runs"));
    let read_log = || std::fs::read_to_string(&log).unwrap_or_default();
    let url = format!("http://{addr}/healthz");
    let until = Instant::now() + Duration::from_secs(20);
    while !matches!(reqwest::get(&url).await, Ok(r) if r.status() == 200) {
        assert!(
            child.0.try_wait().unwrap().is_none(),
            "exited:\n{}",
            read_log()
        );
        assert!(Instant::now() < until, "not up:\n{}", read_log());
        tokio::time::sleep(ms(20)).await;
    }

    // More half-sent heads than the server has descriptors for: the kernel's backlog holds
    // those it cannot accept.
    let mut held = Vec::new();
    for _ in 0..80 {
        let mut conn = TcpStream::connect(addr).await.unwrap();
        conn.write_all(b"GET /healthz HTTP/1.1\r\nhost: fanout.test\r\n")
            .await
            .unwrap();
        held.push(conn);
    }
    // As the held heads time out, the rest are accepted; then a whole request is served.
    let until = Instant::now() + Duration::from_secs(30);
    let mut conn = TcpStream::connect(addr).await.unwrap();
    conn.write_all(get_request("/healthz", "").as_bytes())
        .await
        .unwrap();
    let mut got = Vec::new();
    while !got.starts_with(b"HTTP/1.1 200") {
        assert!(Instant::now() < until, "not served; log:\n{}", read_log());
        let mut chunk = [0; 256];
        match tokio::time::timeout(ms(500), conn.read(&mut chunk)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&chunk[..n]),
            Ok(_) => panic!(
                "closed: {:?}; log:\n{}",
                String::from_utf8_lossy(&got),
                read_log()
            ),
            Err(_) => {}
        }
    }
    assert!(child.0.try_wait().unwrap().is_none(), "{}", read_log());
    assert!(
        read_log().contains("accept error: Too many open files"),
        "the descriptors did not run out; log:\n{}",
        read_log()
    );
    drop(held);
    drop(child);
    let _ = std::fs::remove_file(schema);
    let _ = std::fs::remove_file(log);
}
