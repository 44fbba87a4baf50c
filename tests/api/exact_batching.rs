//! When batches go out: exactly when the last call that could still produce a key for them
//! has answered. Each test asserts on what the upstream received, and when.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use serde_json::{Value as Json, json};

use crate::support::{Fanout, Mock, Recorded, Reply, codes, with_mock};

/// When the mock received each request, by path and query.
#[derive(Clone, Default)]
struct Clock(Arc<Mutex<Vec<(String, Instant)>>>);

impl Clock {
    fn note(&self, r: &Recorded) {
        let what = match &r.query {
            Some(q) => format!("{}?{q}", r.path),
            None => r.path.clone(),
        };
        self.0.lock().unwrap().push((what, Instant::now()));
    }

    fn first(&self, prefix: &str) -> Instant {
        self.0
            .lock()
            .unwrap()
            .iter()
            .find(|(p, _)| p.starts_with(prefix))
            .unwrap_or_else(|| panic!("no request for {prefix}"))
            .1
    }
}

/// `ids` of every call to `path`, in the order received.
fn batches(mock: &Mock, path: &str) -> Vec<String> {
    mock.requests()
        .iter()
        .filter(|r| r.path == path)
        .map(|r| r.param("ids").unwrap_or_default())
        .collect()
}

fn by_ids(r: &Recorded, make: impl Fn(&str) -> Json) -> Reply {
    let ids = r.param("ids").unwrap_or_default();
    Reply::json(Json::Array(ids.split(',').map(make).collect()))
}

const SHOP: &str = r#"
    extend schema @upstream(name: "shop", baseUrl: "{MOCK}", timeout: "2s", retries: 2)
    type Query {
      users: [User] @rest(upstream: "shop", path: "/users")
      slow: [User] @rest(upstream: "shop", path: "/slow-users")
      order(id: ID!): Order @rest(upstream: "shop", path: "/orders/{args.id}")
    }
    type User {
      id: ID!
      orders: [Order] @rest(upstream: "shop", path: "/users/{parent.id}/orders", timeout: "300ms")
    }
    type Order {
      id: ID!
      product: Product @rest(upstream: "shop", path: "/products",
                             batch: {key: "{parent.productId}", query: "ids", match: "id"})
    }
    type Product {
      id: ID!
      maker: Maker @rest(upstream: "shop", path: "/makers",
                         batch: {key: "{parent.makerId}", query: "ids", match: "id"})
    }
    type Maker { id: ID! name: String }
"#;

/// A shop: ten users; user U's orders are U-0 and U-1 for products U and U+1; product P is
/// made by maker P % 4. `late` delays one path's answer, `fail_first` answers 503 once.
async fn shop(late: Option<(&'static str, Duration)>, fail_first: Option<&'static str>) -> Mock {
    timed_shop(late, fail_first, Clock::default()).await
}

async fn timed_shop(
    late: Option<(&'static str, Duration)>,
    fail_first: Option<&'static str>,
    clock: Clock,
) -> Mock {
    let failed = Arc::new(Mutex::new(false));
    Mock::start(move |r| {
        clock.note(r);
        let delay = match late {
            Some((path, d)) if r.path == path => d,
            _ => Duration::ZERO,
        };
        if Some(r.path.as_str()) == fail_first
            && !std::mem::replace(&mut *failed.lock().unwrap(), true)
        {
            return Reply::status(503, "{}");
        }
        let reply = match r.path.as_str() {
            "/users" | "/slow-users" => {
                Reply::json(Json::Array((1..=10).map(|i| json!({"id": i})).collect()))
            }
            "/products" => by_ids(r, |id| {
                let id: u64 = id.parse().unwrap();
                json!({"id": id, "makerId": id % 4})
            }),
            "/makers" => by_ids(r, |id| json!({"id": id, "name": format!("M{id}")})),
            path if path.starts_with("/orders/") => {
                let id = path.rsplit('/').next().unwrap();
                Reply::json(json!({"id": id, "productId": 3}))
            }
            path => {
                let u: u64 = path.split('/').nth(2).unwrap().parse().unwrap();
                Reply::json(json!([
                    {"id": format!("{u}-0"), "productId": u},
                    {"id": format!("{u}-1"), "productId": u + 1}
                ]))
            }
        };
        reply.delay(delay)
    })
    .await
}

async fn serve(mock: &Mock) -> Fanout {
    Fanout::start(&with_mock(SHOP, mock)).await
}

const ALL_PRODUCTS: &str = "1,2,3,4,5,6,7,8,9,10,11";

#[tokio::test]
async fn a_parent_answering_80ms_late_does_not_split_the_batch() {
    let mock = shop(Some(("/users/7/orders", Duration::from_millis(80))), None).await;
    let fanout = serve(&mock).await;
    let resp = fanout
        .query("{ users { orders { product { maker { name } } } } }")
        .await;
    assert!(resp.get("errors").is_none(), "{resp}");
    assert_eq!(
        resp["data"]["users"][6]["orders"][1]["product"]["maker"]["name"],
        "M0"
    );
    // One batch per level, every distinct key once.
    assert_eq!(batches(&mock, "/products"), [ALL_PRODUCTS]);
    assert_eq!(batches(&mock, "/makers"), ["0,1,2,3"]);
}

/// `slow` takes 400 ms and produces nothing for the products batch below `users`: that
/// batch goes out as soon as the users' orders have answered. Before, it waited up to 25 ms
/// for every call in flight; the smallest lag of three runs must be well under that.
#[tokio::test]
async fn an_unrelated_slow_call_does_not_delay_a_batch() {
    let mut lags = Vec::new();
    for _ in 0..3 {
        let clock = Clock::default();
        let late = Some(("/slow-users", Duration::from_millis(400)));
        let mock = timed_shop(late, None, clock.clone()).await;
        let fanout = serve(&mock).await;
        let resp = fanout
            .query("{ slow { id } users { orders { product { id } } } }")
            .await;
        assert!(resp.get("errors").is_none(), "{resp}");
        let last_orders = clock
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|(p, _)| p.ends_with("/orders"))
            .map(|(_, t)| *t)
            .max()
            .unwrap();
        let products = clock.first("/products");
        assert!(products < clock.first("/slow-users") + Duration::from_millis(400));
        lags.push(products.saturating_duration_since(last_orders));
        assert_eq!(batches(&mock, "/products"), [ALL_PRODUCTS]);
    }
    let best = lags.iter().min().unwrap();
    assert!(*best < Duration::from_millis(20), "lags {lags:?}");
}

/// Product 3 is wanted by a fast root field and, a level deeper, under users who answer
/// 150 ms later. The fast batch does not wait for the slow branch, and the later batch does
/// not ask for product 3 again.
#[tokio::test]
async fn a_key_needed_at_two_depths_is_sent_once_and_waits_for_no_one() {
    let mock = shop(Some(("/users", Duration::from_millis(150))), None).await;
    let fanout = serve(&mock).await;
    let start = Instant::now();
    let resp = fanout
        .query(r#"{ order(id: "x") { product { id } } users { orders { product { id } } } }"#)
        .await;
    assert!(resp.get("errors").is_none(), "{resp}");
    assert_eq!(resp["data"]["order"]["product"]["id"], "3");
    assert_eq!(resp["data"]["users"][2]["orders"][0]["product"]["id"], "3");
    assert_eq!(
        batches(&mock, "/products"),
        ["3", "1,2,4,5,6,7,8,9,10,11"],
        "product 3 once, the fast batch first"
    );
    assert!(start.elapsed() < Duration::from_secs(2));
}

/// User 4's orders fail once with 503 and are retried: the batch waits for the retry, so
/// its keys are not left for a second batch.
#[tokio::test]
async fn a_retried_producer_still_joins_the_one_batch() {
    let mock = shop(None, Some("/users/4/orders")).await;
    let fanout = serve(&mock).await;
    let resp = fanout
        .query("{ users { orders { product { id } } } }")
        .await;
    assert!(resp.get("errors").is_none(), "{resp}");
    let retried = mock
        .requests()
        .iter()
        .filter(|r| r.path == "/users/4/orders")
        .count();
    assert_eq!(retried, 2, "503, then the retry");
    assert_eq!(batches(&mock, "/products"), [ALL_PRODUCTS]);
}

/// User 9's orders answer after 2 s, past their 300 ms deadline: the batch goes out when
/// that producer times out, not when the request ends.
#[tokio::test]
async fn a_producer_that_times_out_releases_the_batch_at_its_deadline() {
    let mock = shop(Some(("/users/9/orders", Duration::from_secs(2))), None).await;
    let fanout = serve(&mock).await;
    let start = Instant::now();
    let resp = fanout
        .query("{ users { orders { product { id } } } }")
        .await;
    assert!(
        start.elapsed() < Duration::from_millis(1500),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(codes(&resp), ["UPSTREAM_TIMEOUT"], "{resp}");
    assert_eq!(resp["errors"][0]["path"], json!(["users", 8, "orders"]));
    assert_eq!(resp["data"]["users"][9]["orders"][1]["product"]["id"], "11");
    // Users 8 and 10 still want products 9 and 10: one batch, sent at the deadline.
    assert_eq!(batches(&mock, "/products"), [ALL_PRODUCTS]);
}

/// With `coalesce: true`, an identical batch chunk already in flight for another client
/// request is shared.
#[tokio::test]
async fn identical_batches_of_concurrent_requests_share_one_call_with_coalesce() {
    let mock = shop(Some(("/products", Duration::from_millis(300))), None).await;
    let schema = with_mock(SHOP, &mock).replace(
        r#"timeout: "2s", retries: 2)"#,
        r#"timeout: "2s", retries: 2, coalesce: true)"#,
    );
    let fanout = Fanout::start(&schema).await;
    let query = "{ users { orders { product { id } } } }";
    let (a, b) = tokio::join!(fanout.query(query), fanout.query(query));
    assert_eq!(a, b);
    assert!(a.get("errors").is_none(), "{a}");
    assert_eq!(batches(&mock, "/products"), [ALL_PRODUCTS]);
    // Without it, each request sends its own.
    let mock = shop(Some(("/products", Duration::from_millis(300))), None).await;
    let fanout = serve(&mock).await;
    let _ = tokio::join!(fanout.query(query), fanout.query(query));
    assert_eq!(batches(&mock, "/products"), [ALL_PRODUCTS, ALL_PRODUCTS]);
}

#[tokio::test]
async fn the_trace_names_each_batch_calls_field_and_its_keys_wait() {
    let mock = shop(None, None).await;
    let fanout = serve(&mock).await;
    let (_, resp) = fanout
        .post_with(
            json!({"query": "{ users { orders { product { maker { id } } } } }"}),
            &[("x-fanout-trace", "1")],
        )
        .await;
    let calls = resp["extensions"]["fanout"]["calls"].as_array().unwrap();
    let batch: Vec<&Json> = calls
        .iter()
        .filter(|c| c["batchSize"].is_number())
        .collect();
    assert_eq!(batch.len(), 2, "{calls:?}");
    assert_eq!(batch[0]["batchField"], "Order.product");
    assert_eq!(batch[1]["batchField"], "Product.maker");
    for c in batch {
        assert!(c["keysWaitedMs"].as_f64().unwrap() < 1000.0, "{c}");
    }
}
