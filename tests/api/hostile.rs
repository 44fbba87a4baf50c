//! Requests written to crash, stall or amplify the gateway: each is refused with a code,
//! quickly, without an upstream call it should not cause, and the process lives on with its
//! memory bounded. Most run against the real binary, whose worker threads have the stack,
//! runtime and allocator of production.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use fanout::Options;
use serde_json::{Value as Json, json};

use crate::support::{Fanout, Mock, Process, Reply, codes, refused, with_mock};

const SCHEMA: &str = r#"
    extend schema @upstream(name: "books", baseUrl: "{MOCK}", timeout: "2s")
    type Query {
      author(id: ID!): Author @rest(upstream: "books", path: "/authors/{args.id}")
      authors(ids: [ID!]!): [Author] @rest(upstream: "books", path: "/authors",
                                           query: [{name: "ids", value: "{args.ids}", join: ","}])
      recent(first: Int = 3): [Book] @rest(upstream: "books", path: "/books")
      numbers: [Int] @rest(upstream: "books", path: "/numbers")
    }
    type Author {
      id: ID!
      name: String
      books: [Book] @rest(upstream: "books", path: "/authors/{parent.id}/books")
    }
    type Book {
      id: ID!
      title: String
      coauthor: Author @rest(upstream: "books", path: "/authors/{parent.coauthorId}")
    }
"#;

fn book(i: usize) -> Json {
    json!({"id": i, "title": format!("Book {i}"), "coauthorId": i % 7})
}

/// A books service: authors by id or by a comma-joined `ids`, ten books per author.
async fn books() -> Mock {
    Mock::start(|r| {
        let path = r.path.as_str();
        if path == "/authors" {
            let ids = r.param("ids").unwrap_or_default();
            let list: Vec<Json> = ids
                .split(',')
                .map(|id| json!({"id": id, "name": format!("Author {id}")}))
                .collect();
            Reply::json(Json::Array(list))
        } else if path.ends_with("/books") {
            Reply::json(Json::Array((0..10).map(book).collect()))
        } else if path == "/numbers" {
            Reply::json(json!([1, 2, 3]))
        } else {
            let id = path.rsplit('/').next().unwrap_or_default();
            Reply::json(json!({"id": id, "name": format!("Author {id}")}))
        }
    })
    .await
}

/// Writes `text` to a file of its own under cargo's temporary directory.
fn schema_file(name: &str, text: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("hostile-{}-{name}.graphql", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

/// The real binary serving `schema` against `mock`.
async fn spawn(name: &str, schema: &str, mock: &Mock, extra: &[&str]) -> Process {
    let path = schema_file(name, &with_mock(schema, mock));
    let mut args = vec!["--schema", path.to_str().unwrap()];
    args.extend_from_slice(extra);
    let mut p = Process::spawn(&args);
    p.wait_until_up("/healthz").await;
    p
}

/// Peak resident memory of a process, in MB (Linux's `VmHWM`).
fn peak_rss_mb(p: &Process) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{}/status", p.child.id())).unwrap();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/PID/status");
    kb / 1024.0
}

/// POSTs `body` to the process and returns the JSON answer and how long it took; at most
/// 20 s, so a stalled gateway fails the test instead of hanging it.
async fn post(p: &Process, body: &Json) -> (Json, Duration) {
    let start = Instant::now();
    let resp = reqwest::Client::new()
        .post(format!("http://{}/graphql", p.addr))
        .timeout(Duration::from_secs(20))
        .json(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("no answer ({e}); log:\n{}", p.log()));
    (resp.json().await.unwrap(), start.elapsed())
}

/// Still alive: an ordinary query answers.
async fn assert_alive(p: &mut Process) {
    assert!(
        p.child.try_wait().unwrap().is_none(),
        "fanout exited; log:\n{}",
        p.log()
    );
    let (resp, _) = post(p, &json!({"query": "{ author(id: 1) { name } }"})).await;
    assert_eq!(resp["data"]["author"]["name"], "Author 1", "{resp}");
}

fn nested(open: &str, inner: &str, close: &str, levels: usize) -> String {
    format!("{}{inner}{}", open.repeat(levels), close.repeat(levels))
}

#[tokio::test]
async fn values_nested_two_thousand_deep_are_refused_and_the_process_lives() {
    let mock = books().await;
    let mut p = spawn("nesting", SCHEMA, &mock, &[]).await;
    let list = nested("[", "true", "]", 2000);
    let object = nested("{a: ", "1", "}", 2000);
    let queries = [
        format!("{{ __typename @include(if: {list}) }}"),
        format!("{{ author(id: {list}) {{ id }} }}"),
        format!("{{ author(id: {object}) {{ id }} }}"),
        format!("query($v: [ID] = {list}) {{ __typename }}"),
        format!("mutation {{ x(a: {list}) }}"),
        nested("{ author(id: 1) { books ", "{ id }", "}", 2000),
    ];
    for q in &queries {
        let (resp, took) = post(&p, &json!({ "query": q })).await;
        assert_eq!(refused(&resp), "NESTING_LIMIT_EXCEEDED", "{}", &q[..60]);
        assert!(took < Duration::from_secs(2), "{took:?}");
    }
    // A GET with `mutation` in it is looked into before the engine sees it.
    let query: String = url::form_urlencoded::byte_serialize(queries[4].as_bytes()).collect();
    let get = reqwest::get(format!("http://{}/graphql?query={query}", p.addr))
        .await
        .unwrap();
    assert_eq!(
        refused(&get.json().await.unwrap()),
        "NESTING_LIMIT_EXCEEDED"
    );
    // Variables are held to the same bound.
    let deep_var: Json = serde_json::from_str(&nested("[", "1", "]", 100)).unwrap();
    let body = json!({"query": "query($v: [ID]) { __typename }", "variables": {"v": deep_var}});
    assert_eq!(refused(&post(&p, &body).await.0), "NESTING_LIMIT_EXCEEDED");
    // Up to the bound, values nest as they like.
    let ok = format!(
        "{{ __typename @include(if: {}) }}",
        nested("[", "true", "]", 30)
    );
    let (resp, _) = post(&p, &json!({ "query": ok })).await;
    assert_ne!(codes(&resp), ["NESTING_LIMIT_EXCEEDED"], "{resp}");
    assert_eq!(mock.count(), 0);
    assert_alive(&mut p).await;
}

/// `{ ...F0 }` where each fragment spreads the next twice expands to 2^30 fields. It is
/// measured in time linear in its text and refused; without that, it would run for minutes
/// and this test would time out.
#[tokio::test]
async fn fragments_that_double_at_each_level_are_refused_at_once() {
    let mock = books().await;
    let mut p = spawn("fragments", SCHEMA, &mock, &[]).await;
    let chain = |levels: usize| {
        let frags: String = (0..levels)
            .map(|i| format!("fragment F{i} on Query {{ ...F{} ...F{} }} ", i + 1, i + 1))
            .collect();
        format!("{frags} fragment F{levels} on Query {{ __typename }}")
    };
    for (query, code) in [
        (
            format!("{{ ...F0 }} {}", chain(30)),
            "ROOT_FIELD_LIMIT_EXCEEDED",
        ),
        // Only spread below the root, so the root-field limit does not catch it first.
        (
            format!(
                "{{ author(id: 1) {{ ...A0 }} }} {}",
                chain(30).replace("on Query", "on Author").replace('F', "A")
            ),
            "COMPLEXITY_LIMIT_EXCEEDED",
        ),
        // Never spread at all: validation would still walk each definition expanded.
        (
            format!("{{ __typename }} {}", chain(30)),
            "COMPLEXITY_LIMIT_EXCEEDED",
        ),
        (
            "{ ...A } fragment A on Query { __typename ...B } fragment B on Query { ...A }".into(),
            "GRAPHQL_VALIDATION_FAILED",
        ),
    ] {
        let (resp, took) = post(&p, &json!({ "query": query })).await;
        assert_eq!(refused(&resp), code, "{resp}");
        assert!(took < Duration::from_secs(2), "{took:?}");
    }
    assert_eq!(mock.count(), 0);
    assert_alive(&mut p).await;
}

#[tokio::test]
async fn a_comment_ended_by_a_carriage_return_hides_no_tokens() {
    let mock = books().await;
    let mut p = spawn("comment", SCHEMA, &mock, &[]).await;
    let before = peak_rss_mb(&p);
    let query = format!("#\r{{ author(id: 1) {{ name {}}} }}", "x ".repeat(480_000));
    let (resp, took) = post(&p, &json!({ "query": query })).await;
    assert_eq!(refused(&resp), "TOKEN_LIMIT_EXCEEDED");
    assert!(took < Duration::from_secs(2), "{took:?}");
    let after = peak_rss_mb(&p);
    assert!(
        after - before < 40.0,
        "peak RSS {before:.1} -> {after:.1} MB"
    );
    assert_eq!(mock.count(), 0);
    assert_alive(&mut p).await;
}

async fn serve(options: Options) -> (Mock, Fanout) {
    let mock = books().await;
    let fanout = Fanout::with_options(&with_mock(SCHEMA, &mock), options).await;
    (mock, fanout)
}

#[tokio::test]
async fn root_fields_and_aliases_are_counted_through_fragments() {
    let (mock, fanout) = serve(Options::default()).await;
    let roots: String = (0..25)
        .map(|i| format!("a{i}: author(id: {i}) {{ id }} "))
        .collect();
    let mut limits = Options::default().limits;
    limits.max_aliases = 100;
    let (mock2, roomy) = serve(Options {
        limits,
        ..Options::default()
    })
    .await;
    for query in [
        format!("{{ ...R }} fragment R on Query {{ {roots} }}"),
        format!("{{ ... on Query {{ {roots} }} }}"),
        format!("{{ ... {{ {roots} }} }}"),
    ] {
        let resp = roomy.query(&query).await;
        assert_eq!(refused(&resp), "ROOT_FIELD_LIMIT_EXCEEDED", "{resp}");
    }
    assert_eq!(mock2.count(), 0);

    // Two aliases in a fragment spread under sixteen fields are 32 aliases, not 2.
    let spreads: String = (0..16).map(|_| "books { ...T } ").collect();
    let query =
        format!("{{ author(id: 1) {{ {spreads} }} }} fragment T on Book {{ t1: title t2: title }}");
    let resp = fanout.query(&query).await;
    assert_eq!(refused(&resp), "ALIAS_LIMIT_EXCEEDED", "{resp}");
    // Fifteen spreads are 30 aliases: allowed.
    let query = query.replacen("books { ...T } ", "", 1);
    let resp = fanout.query(&query).await;
    assert!(resp["data"]["author"].is_object(), "{resp}");
    assert_eq!(
        mock.count(),
        2,
        "the author, then its books once (deduplicated)"
    );
}

#[tokio::test]
async fn depth_and_directives_are_counted_through_fragments() {
    let mut options = Options::default();
    options.limits.max_depth = 3;
    options.limits.max_directives = 2;
    let (mock, fanout) = serve(options).await;
    let resp = fanout
        .query("{ author(id: 1) { ...D } } fragment D on Author { books { coauthor { name } } }")
        .await;
    assert_eq!(refused(&resp), "DEPTH_LIMIT_EXCEEDED");
    let resp = fanout
        .query("{ ...Q } fragment Q on Query { author(id: 1) @skip(if: false) @include(if: true) @skip(if: false) { id } }")
        .await;
    assert_eq!(refused(&resp), "DIRECTIVE_LIMIT_EXCEEDED");
    assert_eq!(mock.count(), 0);
}

/// Complexity multiplies a list field's selection by the items it will return: the length of
/// a list argument (from the text or a variable), a `first`-style argument, or the assumed
/// list size (10).
#[tokio::test]
async fn complexity_multiplies_by_list_sizes() {
    let mut options = Options::default();
    options.limits.max_complexity = 100;
    let (mock, fanout) = serve(options).await;
    // 1 + 3 authors × (1 + name 1) = 7: runs.
    let resp = fanout
        .query(r#"{ authors(ids: [1, 2, 3]) { id name } }"#)
        .await;
    assert_eq!(
        resp["data"]["authors"].as_array().unwrap().len(),
        3,
        "{resp}"
    );
    // 1 + 60 × 2 = 121 from a variable's length: refused.
    let ids: Vec<String> = (0..60).map(|i| i.to_string()).collect();
    let body = json!({"query": "query($ids: [ID!]!) { authors(ids: $ids) { id name } }",
                      "variables": {"ids": ids}});
    assert_eq!(
        refused(&fanout.post(body).await),
        "COMPLEXITY_LIMIT_EXCEEDED"
    );
    // `books` returns the assumed 10: 1 + (1 + 10 × (1 + (1 + 10 × 1))) = 122.
    let resp = fanout
        .query("{ author(id: 1) { books { coauthor { books { id } } } } }")
        .await;
    assert_eq!(refused(&resp), "COMPLEXITY_LIMIT_EXCEEDED");
    // `first` is the size: 1 + 40 × 2 = 81 runs, 1 + 60 × 2 = 121 does not; so does its
    // default (3).
    assert!(fanout.query("{ recent(first: 40) { id title } }").await["data"].is_object());
    let resp = fanout.query("{ recent(first: 60) { id title } }").await;
    assert_eq!(refused(&resp), "COMPLEXITY_LIMIT_EXCEEDED");
    assert!(fanout.query("{ recent { id title } }").await["data"].is_object());
    assert_eq!(mock.count(), 3);
}

/// The query that once answered 16 MB and took 244 MB of memory: 400 authors, five levels of
/// lists below them. Refused by complexity before anything is called.
#[tokio::test]
async fn a_list_multiplied_five_levels_deep_is_refused_with_memory_bounded() {
    let mock = books().await;
    let mut p = spawn("multiply", SCHEMA, &mock, &[]).await;
    let ids: Vec<String> = (0..400).map(|i| i.to_string()).collect();
    let query = "query($ids: [ID!]!) { authors(ids: $ids) { id books { id coauthor { id books \
                 { id coauthor { id books { id title } } } } } } }";
    let body = json!({ "query": query, "variables": { "ids": ids } });
    let (resp, took) = post(&p, &body).await;
    assert_eq!(refused(&resp), "COMPLEXITY_LIMIT_EXCEEDED");
    assert!(took < Duration::from_secs(2), "{took:?}");
    assert!(peak_rss_mb(&p) < 40.0, "peak RSS {:.1} MB", peak_rss_mb(&p));
    assert_eq!(mock.count(), 0);
    assert_alive(&mut p).await;
}

/// Past `max_response_bytes` the request stops: `data` is null and one error, at the field
/// where the response grew too large, says so.
#[tokio::test]
async fn a_response_past_its_cap_is_cut_off_with_a_coded_error() {
    let options = Options {
        max_response_bytes: 2_000,
        ..Options::default()
    };
    let (_mock, fanout) = serve(options).await;
    // 60 authors × about 30 bytes each fits twice over...
    let ids: Vec<String> = (0..60).map(|i| i.to_string()).collect();
    let query = "query($ids: [ID!]!) { authors(ids: $ids) { id name } }";
    let resp = fanout
        .post(json!({"query": query, "variables": {"ids": ids[..30]}}))
        .await;
    assert_eq!(
        resp["data"]["authors"].as_array().unwrap().len(),
        30,
        "{resp}"
    );
    // ...and 60 with their ten books each does not.
    let query = "query($ids: [ID!]!) { authors(ids: $ids) { id name books { id title } } }";
    let resp = fanout
        .post(json!({"query": query, "variables": {"ids": ids}}))
        .await;
    assert_eq!(resp["data"], Json::Null, "{resp}");
    let errors = resp["errors"].as_array().unwrap();
    let too_large: Vec<&Json> = errors
        .iter()
        .filter(|e| e["extensions"]["code"] == "RESPONSE_TOO_LARGE")
        .collect();
    assert_eq!(too_large.len(), 1, "{resp}");
    assert_eq!(too_large[0]["path"][0], "authors", "{resp}");
    // A scalar list counts too.
    let options = Options {
        max_response_bytes: 10,
        ..Options::default()
    };
    let (_mock, tiny) = serve(options).await;
    assert_eq!(
        codes(&tiny.query("{ numbers }").await),
        ["RESPONSE_TOO_LARGE"]
    );
}

/// Bytes are not the only measure of an upstream answer: 8 MiB of `{},` would parse into a
/// gigabyte. Answers holding more JSON values than `maxResponseNodes` (100,000 by default)
/// are refused before parsing.
#[tokio::test]
async fn an_upstream_answer_that_would_expand_too_far_is_refused() {
    let empty_objects = format!("[{}{{}}]", "{},".repeat(2_700_000));
    let small_objects = format!(
        "[{}{{\"id\":1}}]",
        (0..400_000)
            .map(|i| format!("{{\"id\":{i}}},"))
            .collect::<String>()
    );
    assert!(empty_objects.len() < 8 << 20 && small_objects.len() < 8 << 20);
    let bodies = [empty_objects, small_objects];
    let mock = Mock::start(move |r| {
        let body = match r.path.as_str() {
            "/empty" => &bodies[0],
            "/small" => &bodies[1],
            _ => return Reply::json(json!([{"id": 1}, {"id": 2}])),
        };
        Reply::text(200, body, "application/json")
    })
    .await;
    let schema = r#"
        extend schema @upstream(name: "big", baseUrl: "{MOCK}", retries: 0)
        type Query {
          empty: [Item] @rest(upstream: "big", path: "/empty")
          small: [Item] @rest(upstream: "big", path: "/small")
          fine: [Item] @rest(upstream: "big", path: "/fine")
        }
        type Item { id: ID }
    "#;
    let mut p = spawn("expand", schema, &mock, &[]).await;
    for field in ["empty", "small"] {
        let (resp, _) = post(&p, &json!({ "query": format!("{{ {field} {{ id }} }}") })).await;
        assert_eq!(codes(&resp), ["UPSTREAM_BAD_RESPONSE"], "{resp}");
        assert!(
            resp["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("100000 JSON values")
        );
    }
    let (resp, _) = post(&p, &json!({ "query": "{ fine { id } }" })).await;
    assert_eq!(resp["data"]["fine"][1]["id"], "2", "{resp}");
    assert!(peak_rss_mb(&p) < 80.0, "peak RSS {:.1} MB", peak_rss_mb(&p));
    assert!(p.child.try_wait().unwrap().is_none());
}

#[tokio::test]
async fn a_request_id_that_could_forge_a_log_field_is_replaced() {
    let mock = books().await;
    let mut p = spawn("request-id", SCHEMA, &mock, &[]).await;
    let url = format!("http://{}/graphql", p.addr);
    let send = |id: &'static str| {
        reqwest::Client::new()
            .post(&url)
            .header("x-request-id", id)
            .json(&json!({"query": "{ author(id: 1) { name } }"}))
            .send()
    };
    let resp = send("forged client=6.6.6.6").await.unwrap();
    let id = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_ne!(id, "forged client=6.6.6.6");
    assert!(
        id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()),
        "{id}"
    );
    assert_eq!(mock.requests()[0].headers["x-request-id"], id.as_str());
    let resp = send("3fa85f64-5717-4562-b3fc-2c963f66afa6").await.unwrap();
    assert_eq!(
        resp.headers()["x-request-id"],
        "3fa85f64-5717-4562-b3fc-2c963f66afa6"
    );
    assert!(!p.log().contains("6.6.6.6"), "{}", p.log());
    assert_alive(&mut p).await;
}
