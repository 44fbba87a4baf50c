//! SPEC section 2, "Encoding, for safety": a hostile argument value used in a path becomes
//! exactly one percent-encoded segment, in a query parameter it is form-encoded, in a header
//! it cannot add a header; scheme, host and port come only from `baseUrl`.

use serde_json::{Value as Json, json};

use crate::support::{Fanout, Mock, Recorded, Reply, codes, with_mock};

const SCHEMA: &str = r#"
extend schema @upstream(name: "items", baseUrl: "{MOCK}")
type Query {
  item(id: ID!): Item @rest(upstream: "items", path: "/items/{args.id}")
  search(q: String!): [Item!]
    @rest(upstream: "items", path: "/items/search", query: [{name: "q", value: "{args.q}"}])
  tagged(tag: String!): Item
    @rest(upstream: "items", path: "/items/tagged", headers: [{name: "x-tag", value: "{args.tag}"}])
}
type Item { id: ID! }
"#;

const QUERY: &str = "query($v: ID!, $q: String!) { item(id: $v) { id } search(q: $q) { id } }";

async fn start() -> (Mock, Fanout) {
    let mock = Mock::start(|r| {
        if r.path == "/items/search" {
            Reply::json(json!([{"id": "s"}]))
        } else {
            Reply::json(json!({"id": "i"}))
        }
    })
    .await;
    let fanout = Fanout::start(&with_mock(SCHEMA, &mock)).await;
    (mock, fanout)
}

/// Sends `value` as both `item(id:)` and `search(q:)` through variables.
async fn ask(fanout: &Fanout, value: &str) -> Json {
    fanout
        .post(json!({
            "query": QUERY,
            "variables": {"v": value, "q": value}
        }))
        .await
}

/// What every test checks about everything the upstream received: the mock's host, and
/// never a path outside `/items/`.
fn assert_contained(mock: &Mock) {
    let host = mock.addr.to_string();
    for r in mock.requests() {
        assert!(
            r.path.starts_with("/items/"),
            "a request left /items/: {} {:?}",
            r.path,
            r.query
        );
        assert_eq!(
            r.headers.get("host").and_then(|h| h.to_str().ok()),
            Some(host.as_str()),
            "Host header at {}",
            r.path
        );
        assert!(r.headers.get("x-injected").is_none(), "header injected");
    }
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .expect("UTF-8 after decoding")
        .into_owned()
}

/// `value` reaches the upstream as exactly `path` (raw) for `item`, and as exactly `query`
/// (raw) for `search`, and both decode back to `value`.
async fn check_hostile(value: &str, path: &str, query: &str) {
    let (mock, fanout) = start().await;
    let resp = ask(&fanout, value).await;
    assert_eq!(
        resp,
        json!({"data": {"item": {"id": "i"}, "search": [{"id": "s"}]}}),
        "value {value:?}"
    );
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 2, "value {value:?}: {reqs:#?}");
    let item: Vec<&Recorded> = reqs.iter().filter(|r| r.path != "/items/search").collect();
    let search: Vec<&Recorded> = reqs.iter().filter(|r| r.path == "/items/search").collect();
    assert_eq!(item.len(), 1, "value {value:?}: {reqs:#?}");
    assert_eq!(search.len(), 1, "value {value:?}: {reqs:#?}");

    assert_eq!(item[0].path, path, "raw path for {value:?}");
    assert_eq!(item[0].query, None, "query for path value {value:?}");
    let segment = item[0].path.strip_prefix("/items/").unwrap();
    assert!(!segment.contains('/'), "{value:?} split the path");
    assert_eq!(percent_decode(segment), value);

    assert_eq!(
        search[0].query.as_deref(),
        Some(query),
        "raw query for {value:?}"
    );
    assert_eq!(search[0].params(), [("q".to_owned(), value.to_owned())]);
    assert_contained(&mock);
}

#[tokio::test]
async fn dot_dot_slash_stays_inside_one_segment() {
    check_hostile("../x", "/items/..%2Fx", "q=..%2Fx").await;
}

#[tokio::test]
async fn slash_is_encoded_in_a_segment() {
    check_hostile("a/b", "/items/a%2Fb", "q=a%2Fb").await;
}

#[tokio::test]
async fn question_mark_cannot_start_a_query() {
    check_hostile("x?y=1", "/items/x%3Fy%3D1", "q=x%3Fy%3D1").await;
}

#[tokio::test]
async fn ampersand_cannot_add_a_query_param() {
    check_hostile("a&b=c", "/items/a%26b%3Dc", "q=a%26b%3Dc").await;
}

#[tokio::test]
async fn hash_cannot_start_a_fragment() {
    check_hostile("a#b", "/items/a%23b", "q=a%23b").await;
}

#[tokio::test]
async fn percent_encoded_dots_are_encoded_again() {
    check_hostile("%2e%2e", "/items/%252e%252e", "q=%252e%252e").await;
}

#[tokio::test]
async fn cr_lf_cannot_inject_a_header_through_path_or_query() {
    check_hostile(
        "a\r\nX-Injected: 1",
        "/items/a%0D%0AX-Injected%3A%201",
        "q=a%0D%0AX-Injected%3A+1",
    )
    .await;
}

/// A bare `.` or `..` as a path segment is refused with BAD_USER_INPUT and no call; the same
/// value in a query parameter is harmless and is sent.
async fn check_dot_segment(value: &str) {
    let (mock, fanout) = start().await;
    let resp = ask(&fanout, value).await;
    assert_eq!(
        resp["data"],
        json!({"item": null, "search": [{"id": "s"}]}),
        "value {value:?}: {resp:#}"
    );
    assert_eq!(codes(&resp), ["BAD_USER_INPUT"], "{resp:#}");
    assert_eq!(resp["errors"][0]["path"], json!(["item"]));
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 1, "value {value:?}: {reqs:#?}");
    assert_eq!(reqs[0].path, "/items/search");
    assert_eq!(reqs[0].params(), [("q".to_owned(), value.to_owned())]);
    assert_contained(&mock);
}

#[tokio::test]
async fn bare_dot_dot_segment_is_refused_without_a_call() {
    check_dot_segment("..").await;
}

#[tokio::test]
async fn bare_dot_segment_is_refused_without_a_call() {
    check_dot_segment(".").await;
}

#[tokio::test]
async fn cr_lf_in_a_header_value_is_refused_without_a_call() {
    let (mock, fanout) = start().await;
    let resp = fanout
        .post(json!({
            "query": "query($t: String!) { tagged(tag: $t) { id } search(q: \"ok\") { id } }",
            "variables": {"t": "a\r\nX-Injected: 1"}
        }))
        .await;
    assert_eq!(
        resp["data"],
        json!({"tagged": null, "search": [{"id": "s"}]}),
        "{resp:#}"
    );
    assert_eq!(codes(&resp), ["BAD_USER_INPUT"], "{resp:#}");
    assert_eq!(resp["errors"][0]["path"], json!(["tagged"]));
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 1, "{reqs:#?}");
    assert_eq!(reqs[0].path, "/items/search");
    assert_contained(&mock);

    // A harmless value in the same header is sent as it is.
    let resp = fanout
        .post(json!({
            "query": "query($t: String!) { tagged(tag: $t) { id } }",
            "variables": {"t": "blue"}
        }))
        .await;
    assert_eq!(resp, json!({"data": {"tagged": {"id": "i"}}}));
    let reqs = mock.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[1].path, "/items/tagged");
    assert_eq!(
        reqs[1].headers.get("x-tag").map(|v| v.as_bytes()),
        Some(&b"blue"[..])
    );
    assert_contained(&mock);
}

/// 100 KB: longer than any URI the HTTP stack can carry (the `http` crate's limit is
/// 65,534 bytes), so it cannot reach the upstream intact. Fanout must refuse it as the
/// client's input, make no call, not panic, and keep serving.
#[tokio::test]
async fn hundred_kilobyte_value_is_refused_as_bad_input_without_a_call() {
    let (mock, fanout) = start().await;
    let value = "a".repeat(100 * 1024);
    let resp = ask(&fanout, &value).await;
    assert_eq!(
        resp["data"],
        json!({"item": null, "search": null}),
        "{}",
        &resp.to_string()[..2000.min(resp.to_string().len())]
    );
    let errors = resp["errors"].as_array().expect("errors");
    let mut paths: Vec<&Json> = errors.iter().map(|e| &e["path"]).collect();
    paths.sort_by_key(|p| p.to_string());
    assert_eq!(paths, [&json!(["item"]), &json!(["search"])]);
    // Not an upstream failure: the upstream was never contacted.
    assert_eq!(
        codes(&resp),
        ["BAD_USER_INPUT", "BAD_USER_INPUT"],
        "messages: {:?}",
        errors.iter().map(|e| &e["message"]).collect::<Vec<_>>()
    );
    // Nothing reached the upstream, not even a truncated value.
    assert_eq!(
        mock.count(),
        0,
        "{:?}",
        mock.requests()
            .iter()
            .map(|r| r.path.len())
            .collect::<Vec<_>>()
    );

    // Fanout is still serving, and ordinary values still go through.
    let resp = ask(&fanout, "ok").await;
    assert_eq!(
        resp,
        json!({"data": {"item": {"id": "i"}, "search": [{"id": "s"}]}})
    );
    assert_eq!(mock.count(), 2);
    assert_contained(&mock);
}
