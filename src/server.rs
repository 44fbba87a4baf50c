//! Binding, serving, and stopping gracefully.
//!
//! Connections are served by hyper directly, not through `axum::serve`, which sets no timer
//! and no limit: a client that sends half a request head would hold its connection (and a
//! file descriptor) forever. Here every connection is bounded ([`ServeOptions`]):
//!
//! - HTTP/1: `header_read_timeout` runs whenever a connection waits for a request head, so it
//!   closes a connection that trickles its headers, one that sends nothing at all, and a
//!   kept-alive connection that stays idle between requests. A head larger than
//!   `max_header_bytes`, or with more than `max_headers` header lines, is answered 431.
//! - HTTP/2 (prior knowledge, `h2c`): the header list is bounded by `max_header_bytes`, the
//!   concurrent streams per connection by `h2_max_concurrent_streams`, a peer that stops
//!   answering pings is dropped, and a connection with no request open for
//!   `header_read_timeout` is closed.
//! - At most `max_connections` connections are open; when that many are, no more are
//!   accepted (they wait in the listen backlog) until one closes.
//!
//! Which protocol a connection speaks is decided from its first bytes (the HTTP/2 preface or
//! not), under `header_read_timeout` too. `hyper_util`'s `auto::Builder` does the same but
//! has no timer for that first read, so a connection that sends nothing, or only the start of
//! the preface, would be held forever; it also does not expose HTTP/1's `max_header_size`.

use std::{
    convert::Infallible,
    future::Future,
    io,
    net::SocketAddr,
    pin::{Pin, pin},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::{Router, extract::ConnectInfo, routing::future::RouteFuture};
use hyper::{body::Incoming, server::conn::http1, server::conn::http2};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    server::graceful::{GracefulShutdown, Watcher},
};
use tokio::{
    net::{TcpListener, TcpStream},
    sync::Semaphore,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tower_service::Service;

/// How connections are served and bounded; see the module documentation.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// HTTP/1: how long a connection may wait for a complete request head (request line and
    /// headers), on a new connection and between requests on a kept-alive one; it is closed,
    /// without an answer, when this runs out. A new connection first has this long to send
    /// its first bytes (which tell HTTP/1 from HTTP/2), and then this long again for its
    /// first head: at most twice this in all. HTTP/2: how long a connection may stay with no
    /// request open.
    pub header_read_timeout: Duration,
    /// Largest request head in bytes, request line included (HTTP/1: 431 beyond; HTTP/2: the
    /// `SETTINGS_MAX_HEADER_LIST_SIZE` announced and enforced).
    pub max_header_bytes: usize,
    /// Most header lines in an HTTP/1 request (431 beyond).
    pub max_headers: usize,
    /// Most connections open at once; when reached, accepting pauses until one closes.
    pub max_connections: usize,
    /// Most requests (streams) open at once on one HTTP/2 connection.
    pub h2_max_concurrent_streams: u32,
    /// HTTP/2: how often an idle peer is pinged, and how long it has to answer.
    pub h2_keep_alive_interval: Duration,
    pub h2_keep_alive_timeout: Duration,
    /// Once `shutdown` completes, how long in-flight requests get to finish; `None` waits for
    /// them however long they take. When it runs out the remaining connections are closed,
    /// their requests cut off, and [`serve_with`] returns [`Drain::CutOff`].
    pub drain_grace: Option<Duration>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            header_read_timeout: Duration::from_secs(10),
            max_header_bytes: 16 * 1024,
            max_headers: 100,
            max_connections: 4096,
            h2_max_concurrent_streams: 100,
            h2_keep_alive_interval: Duration::from_secs(20),
            h2_keep_alive_timeout: Duration::from_secs(20),
            drain_grace: None,
        }
    }
}

/// How serving ended, once `shutdown` completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum Drain {
    /// Every connection closed within the drain grace: no request was cut off.
    Complete,
    /// The drain grace ran out with `connections` connections still open; they were closed,
    /// and with them `requests` requests whose handler had not answered yet.
    CutOff { connections: usize, requests: usize },
}

/// Serves `app` on an already-bound listener until `shutdown` completes, then lets in-flight
/// requests finish however long they take. Tests and examples use this path; the binary uses
/// [`serve_with`]. Each request carries its peer's address (`ConnectInfo<SocketAddr>`), from
/// which [`crate::http::edge`] works out the client.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let opts = ServeOptions::default();
    serve_with(listener, app, shutdown, &opts).await.map(|_| ())
}

/// [`serve`] with the connection settings and drain grace of `opts`.
///
/// When `shutdown` completes, the listener is closed (new connections are refused), idle
/// connections are closed, and connections with a request in flight close after answering
/// it. Errs only when `opts` cannot work (no connection allowed).
pub async fn serve_with(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()>,
    opts: &ServeOptions,
) -> std::io::Result<Drain> {
    if opts.max_connections == 0 || opts.max_connections > Semaphore::MAX_PERMITS {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "max_connections must be 1 to {}, not {}",
                Semaphore::MAX_PERMITS,
                opts.max_connections
            ),
        ));
    }
    let slots = Arc::new(Semaphore::new(opts.max_connections));
    let tracker = TaskTracker::new();
    // Cancelled when shutdown begins: ends connections whose protocol is not known yet.
    let stopping = CancellationToken::new();
    // Cancelled when the drain grace runs out: ends every connection and request.
    let cut = CancellationToken::new();
    let graceful = GracefulShutdown::new();
    let conns = Arc::new(Connections::new(app, opts, tracker.clone(), cut.clone()));

    let mut shutdown = pin!(shutdown);
    loop {
        // A slot first: with every slot taken, stop accepting until a connection closes.
        let slot = tokio::select! {
            biased;
            () = &mut shutdown => break,
            slot = slots.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
        };
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    if accept_error(e, &mut shutdown).await {
                        break;
                    }
                    continue;
                }
            },
        };
        // Answers go out as soon as they are written, never held back for the client's ACK
        // of the previous segment (Nagle's algorithm against a delayed ACK: 40 ms).
        let _ = stream.set_nodelay(true);
        // Subscribed now, so a shutdown signalled before hyper gets the connection still
        // reaches it.
        let watcher = graceful.watcher();
        let (conns, stopping, cut) = (conns.clone(), stopping.clone(), cut.clone());
        tracker.spawn(async move {
            let _slot = slot;
            tokio::select! {
                () = conns.serve(stream, peer, watcher, &stopping) => {}
                () = cut.cancelled() => {}
            }
        });
    }
    drop(listener);
    stopping.cancel();
    tracker.close();
    let drained = async {
        graceful.shutdown().await;
        tracker.wait().await;
    };
    let Some(grace) = opts.drain_grace else {
        drained.await;
        return Ok(Drain::Complete);
    };
    if tokio::time::timeout(grace, drained).await.is_ok() {
        return Ok(Drain::Complete);
    }
    let connections = opts.max_connections - slots.available_permits();
    let requests = conns.in_flight.load(Ordering::SeqCst);
    cut.cancel();
    tracker.wait().await;
    Ok(Drain::CutOff {
        connections,
        requests,
    })
}

/// Handles an error from `accept`; true when `shutdown` completed meanwhile. A connection
/// reset before it was accepted is nothing; anything else (typically EMFILE, out of file
/// descriptors) is logged and accepting pauses for a moment, so that the loop does not spin
/// while nothing can be accepted, and resumes once connections have closed.
async fn accept_error(e: io::Error, shutdown: &mut (impl Future<Output = ()> + Unpin)) -> bool {
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return false;
    }
    tracing::error!("accept error: {e}; accepting again in 1 s");
    tokio::select! {
        () = tokio::time::sleep(Duration::from_secs(1)) => false,
        () = shutdown => true,
    }
}

/// What every connection shares: the app, the protocol settings, and the count of requests
/// in flight.
struct Connections {
    app: Router,
    h1: http1::Builder,
    h2: http2::Builder<Exec>,
    header_read_timeout: Duration,
    in_flight: Arc<AtomicUsize>,
}

impl Connections {
    fn new(app: Router, opts: &ServeOptions, tracker: TaskTracker, cut: CancellationToken) -> Self {
        let mut h1 = http1::Builder::new();
        h1.timer(TokioTimer::new())
            .header_read_timeout(opts.header_read_timeout)
            .max_header_size(opts.max_header_bytes);
        // hyper keeps up to 100 header slots on the stack; another count moves them to the
        // heap, for every request.
        if opts.max_headers != 100 {
            h1.max_headers(opts.max_headers);
        }
        // The read buffer caps a head too (431 as well): keep it above the head limit.
        if opts.max_header_bytes > DEFAULT_MAX_BUF_SIZE {
            h1.max_buf_size(opts.max_header_bytes);
        }
        let mut h2 = http2::Builder::new(Exec { tracker, cut });
        h2.timer(TokioTimer::new())
            .max_header_list_size(u32::try_from(opts.max_header_bytes).unwrap_or(u32::MAX))
            .max_concurrent_streams(opts.h2_max_concurrent_streams)
            .keep_alive_interval(opts.h2_keep_alive_interval)
            .keep_alive_timeout(opts.h2_keep_alive_timeout);
        Connections {
            app,
            h1,
            h2,
            header_read_timeout: opts.header_read_timeout,
            in_flight: Arc::default(),
        }
    }

    /// Serves one connection until it closes, or until shutdown for a connection that has not
    /// said which protocol it speaks yet.
    async fn serve(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        watcher: Watcher,
        stopping: &CancellationToken,
    ) {
        let version = tokio::select! {
            sniffed = tokio::time::timeout(self.header_read_timeout, sniff(&stream)) => {
                match sniffed {
                    Ok(Ok(Some(version))) => version,
                    // Closed, failed, or silent for too long.
                    _ => return,
                }
            }
            () = stopping.cancelled() => return,
        };
        let io = TokioIo::new(stream);
        let result = match version {
            Version::H1 => {
                let service = self.service(peer, None);
                watcher.watch(self.h1.serve_connection(io, service)).await
            }
            Version::H2 => {
                let activity = Arc::new(Activity::default());
                let service = self.service(peer, Some(activity.clone()));
                let conn = pin!(watcher.watch(self.h2.serve_connection(io, service)));
                close_when_idle(conn, &activity, self.header_read_timeout).await
            }
        };
        if let Err(e) = result {
            // hyper answers a request head it cannot take itself, before any route runs.
            if matches!(version, Version::H1) && e.is_parse() {
                let status = if e.is_parse_too_large() { 431 } else { 400 };
                crate::metrics::METRICS.response("none", status);
            }
            tracing::debug!(%peer, "connection closed: {e}");
        }
    }

    /// The service for one connection's requests.
    fn service(&self, peer: SocketAddr, activity: Option<Arc<Activity>>) -> AppService {
        AppService {
            app: self.app.clone(),
            peer,
            in_flight: self.in_flight.clone(),
            activity,
        }
    }
}

/// hyper's default HTTP/1 read buffer limit (`max_buf_size`).
const DEFAULT_MAX_BUF_SIZE: usize = 8192 + 4096 * 100;

/// Serves an HTTP/2 connection, closing it once no request has been open for `idle` (after
/// between one and two `idle`s): hyper has no such timer for HTTP/2.
async fn close_when_idle(
    mut conn: Pin<&mut impl Future<Output = Result<(), hyper::Error>>>,
    activity: &Activity,
    idle: Duration,
) -> Result<(), hyper::Error> {
    let mut seen = activity.started.load(Ordering::Relaxed);
    loop {
        tokio::select! {
            result = conn.as_mut() => return result,
            () = tokio::time::sleep(idle) => {
                let started = activity.started.load(Ordering::Relaxed);
                if started == seen && activity.open.load(Ordering::Relaxed) == 0 {
                    return Ok(());
                }
                seen = started;
            }
        }
    }
}

/// The app as one connection's service: each request gets the peer's address
/// (`ConnectInfo<SocketAddr>`) and is counted while its handler runs.
struct AppService {
    app: Router,
    peer: SocketAddr,
    /// Every connection's requests in flight.
    in_flight: Arc<AtomicUsize>,
    /// This connection's requests, for an HTTP/2 connection's idle timer.
    activity: Option<Arc<Activity>>,
}

impl hyper::service::Service<hyper::Request<Incoming>> for AppService {
    type Response = axum::response::Response;
    type Error = Infallible;
    type Future = Counted;

    fn call(&self, mut req: hyper::Request<Incoming>) -> Counted {
        req.extensions_mut().insert(ConnectInfo(self.peer));
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        if let Some(activity) = &self.activity {
            activity.started.fetch_add(1, Ordering::Relaxed);
            activity.open.fetch_add(1, Ordering::Relaxed);
        }
        let guard = InFlight {
            total: self.in_flight.clone(),
            conn: self.activity.clone(),
        };
        Counted {
            response: self.app.clone().call(req),
            _guard: guard,
        }
    }
}

pin_project_lite::pin_project! {
    /// A request's response, with the request counted as in flight until it is dropped.
    struct Counted {
        #[pin]
        response: RouteFuture<Infallible>,
        _guard: InFlight,
    }
}

impl Future for Counted {
    type Output = Result<axum::response::Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        self.project().response.poll(cx)
    }
}

/// An HTTP/2 connection's requests: how many have started, and how many are open.
#[derive(Default)]
struct Activity {
    started: AtomicUsize,
    open: AtomicUsize,
}

/// Uncounts a request when dropped.
struct InFlight {
    total: Arc<AtomicUsize>,
    conn: Option<Arc<Activity>>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.total.fetch_sub(1, Ordering::SeqCst);
        if let Some(conn) = &self.conn {
            conn.open.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// The protocol a connection speaks.
#[derive(Clone, Copy, Debug)]
enum Version {
    H1,
    H2,
}

/// What an HTTP/2 client with prior knowledge sends first.
const H2_PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Tells the protocol from the connection's first bytes, without consuming them. `None`:
/// the peer closed before sending anything.
async fn sniff(stream: &TcpStream) -> io::Result<Option<Version>> {
    let mut buf = [0; H2_PREFACE.len()];
    loop {
        let n = stream.peek(&mut buf).await?;
        if n == 0 {
            return Ok(None);
        }
        if buf[..n] != H2_PREFACE[..n] {
            return Ok(Some(Version::H1));
        }
        if n == H2_PREFACE.len() {
            return Ok(Some(Version::H2));
        }
        // Only the start of the preface so far: peeking again would return at once with the
        // same bytes, so wait a little for more (the caller's timeout bounds this).
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Spawns HTTP/2 streams so that the drain can wait for them and, when its grace runs out,
/// cut them off with their connections.
#[derive(Clone)]
struct Exec {
    tracker: TaskTracker,
    cut: CancellationToken,
}

impl<F> hyper::rt::Executor<F> for Exec
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn execute(&self, fut: F) {
        self.tracker
            .spawn(self.cut.clone().run_until_cancelled_owned(fut));
    }
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
