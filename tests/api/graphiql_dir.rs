//! `--graphiql-dir`: GraphiQL's assets served by Fanout itself, for machines without internet.
//! The page must load every asset from Fanout, also under a path prefix, and the asset route
//! must never serve a file outside the directory. (tests/browser/run.sh drives a real browser.)

use std::path::{Path, PathBuf};

use axum::Router;
use fanout::http::{HttpOptions, graphiql::FILES};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::{Mock, Reply, serve, with_mock};

const SCHEMA: &str = r#"
extend schema @upstream(name: "users", baseUrl: "{MOCK}")
type Query { user(id: ID!): User @rest(upstream: "users", path: "/users/{args.id}") }
type User { id: ID! name: String }
"#;

/// A fresh directory under the system's temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("fanout-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `dir/assets` holding every file GraphiQL needs (each with its own name as content), and
/// `dir/secret.txt` beside it, which must never be served.
fn asset_dir(name: &str) -> (TempDir, PathBuf) {
    let tmp = TempDir::new(name);
    let assets = tmp.0.join("assets");
    std::fs::create_dir_all(&assets).unwrap();
    for file in FILES {
        std::fs::write(assets.join(file), format!("/* {file} */")).unwrap();
    }
    std::fs::write(tmp.0.join("secret.txt"), "TOP SECRET").unwrap();
    (tmp, assets)
}

/// Fanout's routes with `--graphiql-dir dir` (if any), nested under `prefix` as
/// `--path-prefix` does.
async fn start(mock: &Mock, dir: Option<&Path>, prefix: &str) -> std::net::SocketAddr {
    let gw = fanout::Gateway::load(&with_mock(SCHEMA, mock), Default::default(), &|_| None)
        .unwrap()
        .0;
    let opts = HttpOptions {
        graphiql_dir: dir.map(Path::to_path_buf),
        ..Default::default()
    };
    let routes = fanout::http::router(gw, opts);
    let app = if prefix.is_empty() {
        routes
    } else {
        Router::new().nest(prefix, routes)
    };
    serve(app).await.0
}

async fn users() -> Mock {
    Mock::start(|_| Reply::json(serde_json::json!({ "id": "1", "name": "Ada" }))).await
}

/// The `src` and `href` attribute values of an HTML page.
fn asset_refs(html: &str) -> Vec<String> {
    let mut refs = Vec::new();
    for attr in ["src=\"", "href=\""] {
        for part in html.split(attr).skip(1) {
            refs.push(part.split('"').next().unwrap().to_owned());
        }
    }
    refs
}

/// Sends `GET {target}` exactly as written (no client-side normalisation of `..`) and
/// returns the status and body.
async fn raw_get(addr: std::net::SocketAddr, target: &str) -> (u16, String) {
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!("GET {target} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n");
    conn.write_all(req.as_bytes()).await.unwrap();
    let mut resp = String::new();
    conn.read_to_string(&mut resp).await.unwrap();
    let status = resp[9..12].parse().unwrap();
    (status, resp)
}

#[tokio::test]
async fn graphiql_dir_page_loads_every_asset_from_fanout_under_a_path_prefix() {
    let mock = users().await;
    let (_tmp, assets) = asset_dir("graphiql-prefix");
    let addr = start(&mock, Some(&assets), "/gw").await;
    let page_url = url::Url::parse(&format!("http://{addr}/gw/graphql")).unwrap();
    let http = reqwest::Client::new();
    let resp = http
        .get(page_url.clone())
        .header("accept", "text/html")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let html = resp.text().await.unwrap();
    let refs = asset_refs(&html);
    assert_eq!(refs.len(), FILES.len(), "{html}");
    assert!(!html.contains("unpkg"), "{html}");

    // Resolved as a browser does, relative to the page, each reference is one of the files.
    let mut served = Vec::new();
    for r in &refs {
        let url = page_url.join(r).unwrap();
        assert_eq!(url.host_str(), Some("127.0.0.1"), "{r}");
        assert!(url.path().starts_with("/gw/graphql/assets/"), "{url}");
        let resp = http.get(url.clone()).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{url}");
        let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
        let body = resp.text().await.unwrap();
        let file = url.path().rsplit('/').next().unwrap().to_owned();
        assert_eq!(body, format!("/* {file} */"));
        let want = if file.ends_with(".css") {
            "text/css"
        } else {
            "text/javascript"
        };
        assert!(content_type.starts_with(want), "{file}: {content_type}");
        served.push(file);
    }
    served.sort();
    let mut want: Vec<String> = FILES.iter().map(|f| f.to_string()).collect();
    want.sort();
    assert_eq!(served, want);
    assert_eq!(mock.count(), 0, "serving GraphiQL calls no upstream");

    // The GraphQL endpoint itself still answers beside the assets.
    let resp: serde_json::Value = http
        .post(page_url)
        .json(&serde_json::json!({ "query": "{ user(id: 1) { name } }" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(resp["data"]["user"]["name"], "Ada");
    assert_eq!(mock.requests()[0].path, "/users/1");
}

#[tokio::test]
async fn graphiql_assets_never_serve_a_file_outside_the_directory() {
    let mock = users().await;
    let (_tmp, assets) = asset_dir("graphiql-escape");
    let addr = start(&mock, Some(&assets), "").await;
    // A file inside is served, so a 404 below is the guard, not a broken route.
    let (status, body) = raw_get(addr, "/graphql/assets/graphiql.min.js").await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("/* graphiql.min.js */"));
    for target in [
        "/graphql/assets/../secret.txt",
        "/graphql/assets/..%2fsecret.txt",
        "/graphql/assets/%2e%2e/secret.txt",
        "/graphql/assets/%2e%2e%2fsecret.txt",
        "/graphql/assets/..%5csecret.txt",
        "/graphql/assets/%2fetc%2fpasswd",
        "/graphql/assets//etc/passwd",
        &format!("/graphql/assets/{}", assets.join("../secret.txt").display()),
    ] {
        let (status, body) = raw_get(addr, target).await;
        assert!(status == 404 || status == 400, "{target}: {status} {body}");
        assert!(!body.contains("TOP SECRET"), "{target}: {body}");
        assert!(!body.contains("root:"), "{target}: {body}");
    }
    assert_eq!(mock.count(), 0);
}

#[tokio::test]
async fn without_graphiql_dir_the_page_uses_the_cdn_and_there_is_no_asset_route() {
    let mock = users().await;
    let addr = start(&mock, None, "").await;
    let http = reqwest::Client::new();
    let html = http
        .get(format!("http://{addr}/graphql"))
        .header("accept", "text/html")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let refs = asset_refs(&html);
    assert_eq!(refs.len(), 4, "{html}");
    for r in &refs {
        assert!(r.starts_with("https://unpkg.com/"), "{r}");
    }
    let resp = http
        .get(format!("http://{addr}/graphql/assets/graphiql.min.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    assert_eq!(mock.count(), 0);
}
