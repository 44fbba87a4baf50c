//! What sits in front of the routes: request ids, the client's address, and CORS.

use std::{
    net::{IpAddr, SocketAddr},
    str::FromStr,
    sync::Arc,
};

use axum::{
    extract::{ConnectInfo, OriginalUri, Request, State},
    http::{HeaderMap, HeaderName, HeaderValue, Method, header},
    middleware::Next,
    response::Response,
};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tracing::Instrument;

use crate::observe;

/// Taken from the client when it is a safe id (see [`safe_request_id`]), else generated; sent
/// to every upstream call of the request, written in its log lines, and returned in the
/// response.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The longest request id taken from a client.
const MAX_REQUEST_ID: usize = 128;

/// Whether a client's request id may be used as it is: 1 to 128 letters, digits, `-`, `_`,
/// `.` and `:`. That covers UUIDs, hex ids (nginx's `$request_id`) and `prefix:id` styles,
/// and leaves nothing that could read as another field in a text log line (no spaces, no
/// `=`, no quotes).
pub fn safe_request_id(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_REQUEST_ID
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.' | b':'))
}

/// Makes sure the request has an id, works out the client's address (see [`client_info`])
/// and its trace context, and runs the request inside a log span carrying them, as the
/// current [`observe::Request`]. When it is answered (or the client gives up: 499), the
/// request's event goes to every observer: the `info` line, the metrics, the server span.
pub async fn request_id(
    State(trusted): State<Arc<[IpNet]>>,
    mut req: Request,
    next: Next,
) -> Response {
    let id = match req.headers().get(&REQUEST_ID) {
        Some(v) if safe_request_id(v) => v.clone(),
        _ => {
            let id = HeaderValue::from_str(&new_id()).expect("hex is a valid header value");
            req.headers_mut().insert(REQUEST_ID, id.clone());
            id
        }
    };
    // Under `--path-prefix`, the path the client asked for.
    let full_path = req
        .extensions()
        .get::<OriginalUri>()
        .map_or_else(|| req.uri().path(), |u| u.0.path())
        .to_owned();
    let span = tracing::info_span!(
        "request",
        id = %id.to_str().unwrap_or_default(),
        method = %req.method(),
        path = %full_path,
        client = tracing::field::Empty,
    );
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    let mut client = None;
    if let Some(peer) = peer {
        let info = client_info(peer, req.headers(), &trusted);
        span.record("client", tracing::field::display(info.addr));
        client = Some(info.addr);
        req.extensions_mut().insert(info);
    }
    // The router's path: without the prefix.
    let route = observe::route_of(req.uri().path());
    let trace = observe::otel::server(req.headers(), !observe::is_probe(route));
    let observed = observe::Request::new(
        id.to_str().unwrap_or_default().to_owned(),
        req.method().clone(),
        full_path,
        route,
        client,
        trace,
    );
    let answer = Answer::new(observed.clone(), span.clone());
    let mut resp = observed.scope(next.run(req)).instrument(span).await;
    answer.finish(resp.status().as_u16());
    resp.headers_mut().insert(REQUEST_ID, id);
    resp
}

/// Counts a request in flight until it is answered, and then hands its event to the
/// observers. Dropped unanswered, the client closed the connection first: 499, as nginx
/// logs it.
struct Answer {
    request: Arc<observe::Request>,
    span: tracing::Span,
    status: Option<u16>,
}

impl Answer {
    fn new(request: Arc<observe::Request>, span: tracing::Span) -> Self {
        crate::metrics::METRICS.in_flight(1);
        Answer {
            request,
            span,
            status: None,
        }
    }

    fn finish(mut self, status: u16) {
        self.status = Some(status);
    }
}

impl Drop for Answer {
    fn drop(&mut self) {
        crate::metrics::METRICS.in_flight(-1);
        let status = self.status.unwrap_or(CLIENT_CLOSED);
        self.span.in_scope(|| self.request.finish(status));
    }
}

/// nginx's status for a request whose client closed the connection before the answer.
const CLIENT_CLOSED: u16 = 499;

/// Who sent a request, as far as Fanout can tell; in the request's extensions when the
/// server was started with connect info (as [`crate::server::serve`] does).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientInfo {
    /// The TCP peer; or, when the peer is a trusted proxy, the right-most address of
    /// `X-Forwarded-For` that is not a trusted proxy.
    pub addr: IpAddr,
    /// `X-Forwarded-Proto`, only from a trusted proxy.
    pub proto: Option<String>,
    /// `X-Forwarded-Host`, only from a trusted proxy.
    pub host: Option<String>,
}

/// The client behind `peer`. A peer that is not a trusted proxy is the client, whatever
/// `X-Forwarded-*` headers it sends. A trusted proxy's `X-Forwarded-For` is read from the
/// right (each proxy appends the address it saw) and the first address that is not itself a
/// trusted proxy is the client; when every hop is trusted, the left-most is. An entry that is
/// not an address ends the walk: what lies to its left was written by nobody Fanout trusts.
pub fn client_info(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> ClientInfo {
    let peer = peer.to_canonical();
    let is_trusted = |ip: IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(peer) {
        return ClientInfo {
            addr: peer,
            proto: None,
            host: None,
        };
    }
    let mut addr = peer;
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        // A value that is not text counts as one entry that is not an address.
        .flat_map(|v| v.to_str().unwrap_or("?").split(','))
        .collect::<Vec<_>>();
    for hop in hops.iter().rev() {
        let Some(ip) = forwarded_ip(hop) else { break };
        addr = ip;
        if !is_trusted(ip) {
            break;
        }
    }
    // The nearest proxy's value: the last one, when proxies append.
    let last = |name: &str| {
        let v = headers.get_all(name).iter().next_back()?.to_str().ok()?;
        let v = v.rsplit(',').next()?.trim();
        (!v.is_empty()).then(|| v.to_owned())
    };
    ClientInfo {
        addr,
        proto: last("x-forwarded-proto"),
        host: last("x-forwarded-host"),
    }
}

/// One `X-Forwarded-For` entry: `1.2.3.4`, `2001:db8::1`, `1.2.3.4:5678` or `[2001:db8::1]:80`.
fn forwarded_ip(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    let ip = IpAddr::from_str(hop)
        .ok()
        .or_else(|| SocketAddr::from_str(hop).ok().map(|s| s.ip()))
        .or_else(|| IpAddr::from_str(hop.strip_prefix('[')?.strip_suffix(']')?).ok())?;
    Some(ip.to_canonical())
}

/// An address or a network: `10.0.0.0/8`, `127.0.0.1` (as `/32`), `fd00::/8`, `::1`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip.to_canonical()) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for IpNet {
    type Err = String;

    fn from_str(text: &str) -> Result<IpNet, String> {
        let bad = || format!("bad address or network {text:?}: write e.g. 10.0.0.0/8 or 127.0.0.1");
        let (addr, prefix) = match text.trim().split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (text.trim(), None),
        };
        let addr = IpAddr::from_str(addr).map_err(|_| bad())?.to_canonical();
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
                p.parse::<u8>().ok().filter(|&p| p <= max).ok_or_else(bad)?
            }
            Some(_) => return Err(bad()),
        };
        Ok(IpNet { addr, prefix })
    }
}

impl std::fmt::Display for IpNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// 128 random bits as hex, from the standard library's per-process random hash keys.
fn new_id() -> String {
    use std::hash::{BuildHasher, RandomState};
    let state = RandomState::new();
    let a = state.hash_one(std::time::SystemTime::now());
    let b = state.hash_one(a);
    format!("{a:016x}{b:016x}")
}

/// CORS for an allow-list of origins. `*` allows any origin, and is refused together with
/// credentials: browsers would send cookies to any site's scripts.
pub fn cors(origins: &[String], credentials: bool) -> Result<Option<CorsLayer>, String> {
    if origins.is_empty() {
        return Ok(None);
    }
    let any = origins.iter().any(|o| o == "*");
    if any && credentials {
        return Err("CORS: `*` cannot be combined with credentials; list the origins".into());
    }
    let allow = if any {
        AllowOrigin::any()
    } else {
        let list = origins
            .iter()
            .map(|o| HeaderValue::from_str(o).map_err(|_| format!("CORS: bad origin {o:?}")))
            .collect::<Result<Vec<_>, _>>()?;
        AllowOrigin::list(list)
    };
    let layer = CorsLayer::new()
        .allow_origin(allow)
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            REQUEST_ID,
            HeaderName::from_static(super::TRACE_HEADER),
        ])
        .allow_credentials(credentials)
        .expose_headers([REQUEST_ID]);
    Ok(Some(layer))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nets(list: &[&str]) -> Vec<IpNet> {
        list.iter().map(|n| n.parse().unwrap()).collect()
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_static(v));
        }
        h
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn only_short_plain_request_ids_are_taken() {
        for ok in [
            "0f3c9a7e2b1d4c5e8f7a6b5c4d3e2f1a",
            "3fa85f64-5717-4562-b3fc-2c963f66afa6",
            "req_1.2:3",
        ] {
            assert!(safe_request_id(&HeaderValue::from_static(ok)), "{ok}");
        }
        let long = "a".repeat(129);
        for bad in [
            "",
            "forged client=6.6.6.6",
            "a\"b",
            "tab\there",
            "ü",
            long.as_str(),
        ] {
            let v = HeaderValue::from_bytes(bad.as_bytes()).unwrap();
            assert!(!safe_request_id(&v), "{bad:?}");
        }
    }

    #[test]
    fn networks_parse_and_match() {
        let n: IpNet = "10.0.0.0/8".parse().unwrap();
        assert!(n.contains(ip("10.255.1.2")));
        assert!(!n.contains(ip("11.0.0.1")));
        assert!(!n.contains(ip("::1")));
        let one: IpNet = "127.0.0.1".parse().unwrap();
        assert_eq!(one.to_string(), "127.0.0.1/32");
        assert!(one.contains(ip("127.0.0.1")));
        assert!(!one.contains(ip("127.0.0.2")));
        // A dual-stack listener sees IPv4 peers as IPv4-mapped IPv6.
        assert!(one.contains(ip("::ffff:127.0.0.1")));
        let any: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(any.contains(ip("203.0.113.9")));
        let v6: IpNet = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fd12::1")));
        assert!(!v6.contains(ip("fe80::1")));
        assert!("::1".parse::<IpNet>().unwrap().contains(ip("::1")));
        for bad in [
            "",
            "10.0.0.0/33",
            "10.0.0.0/",
            "10.0.0/8",
            "::/129",
            "x",
            "1.2.3.4/+8",
        ] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn untrusted_peer_is_the_client_whatever_it_forwards() {
        let h = headers(&[
            ("x-forwarded-for", "198.51.100.7"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil.example"),
        ]);
        let info = client_info(ip("203.0.113.9"), &h, &nets(&["127.0.0.1", "10.0.0.0/8"]));
        assert_eq!(
            info,
            ClientInfo {
                addr: ip("203.0.113.9"),
                proto: None,
                host: None
            }
        );
        // No trusted proxies configured: the same.
        assert_eq!(client_info(ip("127.0.0.1"), &h, &[]).addr, ip("127.0.0.1"));
    }

    #[test]
    fn trusted_proxy_names_the_rightmost_untrusted_hop() {
        let trusted = nets(&["127.0.0.1", "10.0.0.0/8"]);
        // The client forged the first entry; the trusted proxies appended the rest.
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6, 198.51.100.7, 10.1.2.3"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "api.example"),
        ]);
        let info = client_info(ip("127.0.0.1"), &h, &trusted);
        assert_eq!(
            info,
            ClientInfo {
                addr: ip("198.51.100.7"),
                proto: Some("https".into()),
                host: Some("api.example".into())
            }
        );
        // Several header lines are one list, in order.
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "198.51.100.7:4711, 10.0.0.2"),
        ]);
        assert_eq!(
            client_info(ip("10.0.0.1"), &h, &trusted).addr,
            ip("198.51.100.7")
        );
        let h = headers(&[("x-forwarded-for", "[2001:db8::7]:80")]);
        assert_eq!(
            client_info(ip("127.0.0.1"), &h, &trusted).addr,
            ip("2001:db8::7")
        );
    }

    #[test]
    fn trusted_proxy_without_usable_forwarded_for() {
        let trusted = nets(&["127.0.0.0/8"]);
        // No header: the proxy itself.
        let info = client_info(ip("127.0.0.1"), &HeaderMap::new(), &trusted);
        assert_eq!(info.addr, ip("127.0.0.1"));
        // Every hop trusted: the left-most.
        let h = headers(&[("x-forwarded-for", "127.0.0.3, 127.0.0.2")]);
        assert_eq!(
            client_info(ip("127.0.0.1"), &h, &trusted).addr,
            ip("127.0.0.3")
        );
        // Garbage stops the walk at the last address read.
        let h = headers(&[("x-forwarded-for", "198.51.100.7, unknown, 127.0.0.2")]);
        assert_eq!(
            client_info(ip("127.0.0.1"), &h, &trusted).addr,
            ip("127.0.0.2")
        );
        let h = headers(&[("x-forwarded-for", "198.51.100.7, unknown")]);
        assert_eq!(
            client_info(ip("127.0.0.1"), &h, &trusted).addr,
            ip("127.0.0.1")
        );
    }
}
