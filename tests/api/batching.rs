//! SPEC section 2 "Batching": many keyed lookups become few calls, matched back by key.

use serde_json::{Value as Json, json};

use crate::support::{Fanout, Mock, Recorded, Reply, codes, with_mock};

/// The products upstream: `/orders...` answer from `orders`; `/products?ids=..` answers
/// the requested products in reverse order (so matching must be by `id`, not position).
fn shop(orders: Json) -> impl Fn(&Recorded) -> Reply + Send + Sync + 'static {
    move |r| match r.path.as_str() {
        "/orders" => Reply::json(orders.clone()),
        "/products" => {
            let ids = r.param("ids").unwrap_or_default();
            let mut items: Vec<Json> = ids
                .split(',')
                .filter(|s| !s.is_empty())
                .map(product)
                .collect();
            items.reverse();
            Reply::json(Json::Array(items))
        }
        _ => Reply::status(404, "{}"),
    }
}

fn product(id: &str) -> Json {
    json!({"id": id.parse::<i64>().unwrap(), "name": format!("P{id}")})
}

/// Every `ids=` value the products endpoint received, one string per call, sorted.
fn id_params(mock: &Mock) -> Vec<String> {
    let mut v: Vec<String> = mock
        .requests()
        .into_iter()
        .filter(|r| r.path == "/products")
        .map(|r| r.param("ids").expect("a batch call carries ids="))
        .collect();
    v.sort();
    v
}

fn product_calls(mock: &Mock) -> Vec<Recorded> {
    mock.requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/products"))
        .collect()
}

const SCHEMA: &str = r#"
    extend schema @upstream(name: "shop", baseUrl: "{MOCK}")
    type Query { orders: [Order!]! @rest(upstream: "shop", path: "/orders") }
    type Order {
      id: ID!
      product: Product @rest(upstream: "shop", path: "/products",
                             batch: {key: "{parent.productId}", query: "ids", match: "id"})
    }
    type Product { id: ID! name: String }
"#;

/// 150 parents are more than a join polls in one turn (futures-util yields after 32): the
/// batch window still gathers every key before the call goes out.
#[tokio::test]
async fn a_hundred_and_fifty_parents_make_one_batch() {
    let orders: Vec<Json> = (1..=150)
        .map(|i| json!({"id": format!("o{i}"), "productId": i}))
        .collect();
    let mock = Mock::start(shop(Json::Array(orders))).await;
    let schema = SCHEMA.replace("match: \"id\"", "match: \"id\", maxSize: 500");
    let fanout = Fanout::start(&with_mock(&schema, &mock)).await;
    let resp = fanout.query("{ orders { id product { name } } }").await;
    assert_eq!(resp.get("errors"), None, "{resp}");
    let got = resp["data"]["orders"].as_array().unwrap();
    assert_eq!(got.len(), 150);
    for (i, o) in got.iter().enumerate() {
        assert_eq!(o["product"]["name"], format!("P{}", i + 1), "{o}");
    }
    let want: Vec<String> = (1..=150).map(|i| i.to_string()).collect();
    assert_eq!(id_params(&mock), [want.join(",")]);
}

#[tokio::test]
async fn batch_makes_one_call_with_sorted_deduplicated_keys() {
    let orders = json!([
        {"id": "o1", "productId": 10},
        {"id": "o2", "productId": 2},
        {"id": "o3", "productId": 10},
        {"id": "o4", "productId": 3},
        {"id": "o5", "productId": 2}
    ]);
    let mock = Mock::start(shop(orders)).await;
    let fanout = Fanout::start(&with_mock(SCHEMA, &mock)).await;
    let resp = fanout.query("{ orders { id product { id name } } }").await;
    let p = |id: &str| json!({"id": id, "name": format!("P{id}")});
    assert_eq!(
        resp,
        json!({"data": {"orders": [
            {"id": "o1", "product": p("10")},
            {"id": "o2", "product": p("2")},
            {"id": "o3", "product": p("10")},
            {"id": "o4", "product": p("3")},
            {"id": "o5", "product": p("2")}
        ]}})
    );
    let calls = product_calls(&mock);
    assert_eq!(calls.len(), 1, "{calls:?}");
    // Sorted as numbers (2, 3, 10), not as text (10, 2, 3); each key once.
    assert_eq!(calls[0].params(), [("ids".to_owned(), "2,3,10".to_owned())]);
    assert_eq!(mock.count(), 2);
}

#[tokio::test]
async fn batch_items_are_matched_by_key_in_any_order() {
    let mock = Mock::start(|r| match r.path.as_str() {
        "/orders" => Reply::json(json!([
            {"id": "o1", "productId": 1},
            {"id": "o2", "productId": 2},
            {"id": "o3", "productId": 3},
            {"id": "o4", "productId": 4}
        ])),
        // Shuffled: neither the request's order nor its reverse.
        "/products" => Reply::json(json!([
            {"id": 3, "name": "three"},
            {"id": 1, "name": "one"},
            {"id": 4, "name": "four"},
            {"id": 2, "name": "two"}
        ])),
        _ => Reply::status(404, "{}"),
    })
    .await;
    let fanout = Fanout::start(&with_mock(SCHEMA, &mock)).await;
    let resp = fanout.query("{ orders { id product { name } } }").await;
    assert_eq!(
        resp,
        json!({"data": {"orders": [
            {"id": "o1", "product": {"name": "one"}},
            {"id": "o2", "product": {"name": "two"}},
            {"id": "o3", "product": {"name": "three"}},
            {"id": "o4", "product": {"name": "four"}}
        ]}})
    );
    assert_eq!(id_params(&mock), ["1,2,3,4"]);
}

#[tokio::test]
async fn max_size_splits_keys_into_chunks() {
    let orders: Vec<Json> = [5, 3, 1, 4, 2, 1]
        .iter()
        .map(|i| json!({"id": format!("o{i}"), "productId": i}))
        .collect();
    let mock = Mock::start(shop(Json::Array(orders))).await;
    let schema = with_mock(
        r#"
        extend schema @upstream(name: "shop", baseUrl: "{MOCK}")
        type Query { orders: [Order!]! @rest(upstream: "shop", path: "/orders") }
        type Order {
          id: ID!
          product: Product @rest(upstream: "shop", path: "/products",
                                 batch: {key: "{parent.productId}", query: "ids", match: "id", maxSize: 2})
        }
        type Product { id: ID! name: String }
        "#,
        &mock,
    );
    let fanout = Fanout::start(&schema).await;
    let resp = fanout.query("{ orders { product { name } } }").await;
    let names: Vec<Json> = [5, 3, 1, 4, 2, 1]
        .iter()
        .map(|i| json!({"product": {"name": format!("P{i}")}}))
        .collect();
    assert_eq!(resp, json!({"data": {"orders": names}}));
    assert_eq!(id_params(&mock), ["1,2", "3,4", "5"]);
}

#[tokio::test]
async fn upstream_max_batch_size_applies_without_max_size() {
    let orders: Vec<Json> = [1, 2, 3, 4, 5]
        .iter()
        .map(|i| json!({"id": format!("o{i}"), "productId": i}))
        .collect();
    let mock = Mock::start(shop(Json::Array(orders))).await;
    let schema = with_mock(
        r#"
        extend schema @upstream(name: "shop", baseUrl: "{MOCK}", maxBatchSize: 2)
        type Query { orders: [Order!]! @rest(upstream: "shop", path: "/orders") }
        type Order {
          id: ID!
          product: Product @rest(upstream: "shop", path: "/products",
                                 batch: {key: "{parent.productId}", query: "ids", match: "id"})
        }
        type Product { id: ID! name: String }
        "#,
        &mock,
    );
    let fanout = Fanout::start(&schema).await;
    let resp = fanout.query("{ orders { id product { name } } }").await;
    assert!(resp.get("errors").is_none(), "{resp}");
    assert_eq!(resp["data"]["orders"][4]["product"]["name"], "P5");
    assert_eq!(id_params(&mock), ["1,2", "3,4", "5"]);
}

#[tokio::test]
async fn keys_are_gathered_and_deduplicated_across_the_request() {
    let mock = Mock::start(|r| match r.path.as_str() {
        "/orders/open" => Reply::json(json!([
            {"id": "a1", "productId": 1}, {"id": "a2", "productId": 2}, {"id": "a3", "productId": 3}
        ])),
        "/orders/done" => Reply::json(json!([
            {"id": "b1", "productId": 3}, {"id": "b2", "productId": 4}, {"id": "b3", "productId": 1}
        ])),
        "/products" => {
            let ids = r.param("ids").unwrap_or_default();
            Reply::json(Json::Array(ids.split(',').map(product).collect()))
        }
        _ => Reply::status(404, "{}"),
    })
    .await;
    let schema = with_mock(
        r#"
        extend schema @upstream(name: "shop", baseUrl: "{MOCK}")
        type Query {
          open: [Order!]! @rest(upstream: "shop", path: "/orders/open")
          done: [Order!]! @rest(upstream: "shop", path: "/orders/done")
        }
        type Order {
          id: ID!
          product: Product @rest(upstream: "shop", path: "/products",
                                 batch: {key: "{parent.productId}", query: "ids", match: "id"})
        }
        type Product { id: ID! name: String }
        "#,
        &mock,
    );
    let fanout = Fanout::start(&schema).await;
    let resp = fanout
        .query("{ open { id product { name } } done { id product { name } } }")
        .await;
    let o = |id: &str, p: u32| json!({"id": id, "product": {"name": format!("P{p}")}});
    assert_eq!(
        resp,
        json!({"data": {
            "open": [o("a1", 1), o("a2", 2), o("a3", 3)],
            "done": [o("b1", 3), o("b2", 4), o("b3", 1)]
        }})
    );
    // Whether the two lists land in one batch or two, no key is ever fetched twice.
    let calls = id_params(&mock);
    assert!(!calls.is_empty() && calls.len() <= 2, "{calls:?}");
    let mut all: Vec<String> = calls
        .iter()
        .flat_map(|c| c.split(',').map(str::to_owned))
        .collect();
    all.sort();
    assert_eq!(all, ["1", "2", "3", "4"], "calls: {calls:?}");
}

#[tokio::test]
async fn missing_duplicate_and_foreign_items_are_handled() {
    let mock = Mock::start(|r| match r.path.as_str() {
        "/orders" => Reply::json(json!([
            {"id": "o1", "productId": 1},
            {"id": "o2", "productId": 2},
            {"id": "o3", "productId": 3}
        ])),
        // 2 is missing, 1 comes twice, 99 was never asked for.
        "/products" => Reply::json(json!([
            {"id": 99, "name": "foreign"},
            {"id": 1, "name": "one"},
            {"id": 3, "name": "three"},
            {"id": 1, "name": "one"}
        ])),
        _ => Reply::status(404, "{}"),
    })
    .await;
    let fanout = Fanout::start(&with_mock(SCHEMA, &mock)).await;
    let resp = fanout.query("{ orders { id product { id name } } }").await;
    assert_eq!(
        resp,
        json!({"data": {"orders": [
            {"id": "o1", "product": {"id": "1", "name": "one"}},
            {"id": "o2", "product": null},
            {"id": "o3", "product": {"id": "3", "name": "three"}}
        ]}})
    );
    assert_eq!(id_params(&mock), ["1,2,3"]);
}

#[tokio::test]
async fn items_can_be_matched_by_a_nested_path() {
    let mock = Mock::start(|r| match r.path.as_str() {
        "/orders" => Reply::json(json!([
            {"id": "o1", "productId": "b"},
            {"id": "o2", "productId": "a"}
        ])),
        "/catalog/lookup" => Reply::json(json!({"data": {"items": [
            {"meta": {"id": "a"}, "name": "Apple"},
            {"meta": {"id": "b"}, "name": "Banana"}
        ]}})),
        _ => Reply::status(404, "{}"),
    })
    .await;
    let schema = with_mock(
        r#"
        extend schema @upstream(name: "shop", baseUrl: "{MOCK}")
        type Query { orders: [Order!]! @rest(upstream: "shop", path: "/orders") }
        type Order {
          id: ID!
          product: Product @rest(upstream: "shop", path: "/catalog/lookup", select: "data.items",
                                 batch: {key: "{parent.productId}", query: "keys", match: "meta.id"})
        }
        type Product { name: String }
        "#,
        &mock,
    );
    let fanout = Fanout::start(&schema).await;
    let resp = fanout.query("{ orders { id product { name } } }").await;
    assert_eq!(
        resp,
        json!({"data": {"orders": [
            {"id": "o1", "product": {"name": "Banana"}},
            {"id": "o2", "product": {"name": "Apple"}}
        ]}})
    );
    let calls: Vec<Recorded> = mock
        .requests()
        .into_iter()
        .filter(|r| r.path == "/catalog/lookup")
        .collect();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].params(), [("keys".to_owned(), "a,b".to_owned())]);
}

#[tokio::test]
async fn list_key_gives_items_in_key_order_with_null_for_missing() {
    let mock = Mock::start(|r| match r.path.as_str() {
        "/orders" => Reply::json(json!([
            {"id": "o1", "productIds": [3, 1, 99]},
            {"id": "o2", "productIds": [2, 3]},
            {"id": "o3", "productIds": []}
        ])),
        "/products" => {
            let ids = r.param("ids").unwrap_or_default();
            let items: Vec<Json> = ids
                .split(',')
                .filter(|id| *id != "99")
                .map(product)
                .rev()
                .collect();
            Reply::json(Json::Array(items))
        }
        _ => Reply::status(404, "{}"),
    })
    .await;
    let schema = with_mock(
        r#"
        extend schema @upstream(name: "shop", baseUrl: "{MOCK}")
        type Query { orders: [Order!]! @rest(upstream: "shop", path: "/orders") }
        type Order {
          id: ID!
          products: [Product] @rest(upstream: "shop", path: "/products",
                                    batch: {key: "{parent.productIds}", query: "ids", match: "id"})
        }
        type Product { id: ID! name: String }
        "#,
        &mock,
    );
    let fanout = Fanout::start(&schema).await;
    let resp = fanout.query("{ orders { id products { name } } }").await;
    let p = |i: u32| json!({"name": format!("P{i}")});
    assert_eq!(
        resp,
        json!({"data": {"orders": [
            {"id": "o1", "products": [p(3), p(1), null]},
            {"id": "o2", "products": [p(2), p(3)]},
            {"id": "o3", "products": []}
        ]}})
    );
    assert_eq!(id_params(&mock), ["1,2,3,99"]);
}

#[tokio::test]
async fn batch_keys_in_post_body_keep_their_types() {
    let mock = Mock::start(|r| match r.path.as_str() {
        "/orders" => Reply::json(json!([
            {"id": "o1", "productId": 10},
            {"id": "o2", "productId": 2},
            {"id": "o3", "productId": 10}
        ])),
        "/products/lookup" => {
            let keys: Vec<Json> = serde_json::from_slice(&r.body).unwrap_or_default();
            let items: Vec<Json> = keys
                .iter()
                .map(|k| json!({"id": k, "name": format!("P{k}")}))
                .collect();
            Reply::json(Json::Array(items))
        }
        _ => Reply::status(404, "{}"),
    })
    .await;
    let schema = with_mock(
        r#"
        extend schema @upstream(name: "shop", baseUrl: "{MOCK}")
        type Query { orders: [Order!]! @rest(upstream: "shop", path: "/orders") }
        type Order {
          id: ID!
          product: Product @rest(upstream: "shop", method: POST, path: "/products/lookup",
                                 body: "{batch.keys}",
                                 batch: {key: "{parent.productId}", match: "id"})
        }
        type Product { id: ID! name: String }
        "#,
        &mock,
    );
    let fanout = Fanout::start(&schema).await;
    let resp = fanout.query("{ orders { id product { name } } }").await;
    assert_eq!(
        resp,
        json!({"data": {"orders": [
            {"id": "o1", "product": {"name": "P10"}},
            {"id": "o2", "product": {"name": "P2"}},
            {"id": "o3", "product": {"name": "P10"}}
        ]}})
    );
    let calls = product_calls(&mock);
    assert_eq!(calls.len(), 1, "{calls:?}");
    let call = &calls[0];
    assert_eq!(call.method, "POST");
    assert_eq!(call.json(), json!([2, 10]), "numbers stay numbers, sorted");
    assert_eq!(call.query, None, "the keys go only in the body");
    assert!(
        call.headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json")),
        "{:?}",
        call.headers
    );
}

#[tokio::test]
async fn failed_batch_call_errors_every_field_in_it() {
    let mock = Mock::start(|r| match r.path.as_str() {
        "/orders" => Reply::json(json!([
            {"id": "o1", "productId": 1},
            {"id": "o2", "productId": 2},
            {"id": "o3", "productId": 1}
        ])),
        "/products" => Reply::status(500, r#"{"error": "down"}"#),
        _ => Reply::status(404, "{}"),
    })
    .await;
    let fanout = Fanout::start(&with_mock(SCHEMA, &mock)).await;
    let resp = fanout.query("{ orders { id product { name } } }").await;
    assert_eq!(
        resp["data"],
        json!({"orders": [
            {"id": "o1", "product": null},
            {"id": "o2", "product": null},
            {"id": "o3", "product": null}
        ]})
    );
    assert_eq!(codes(&resp), ["UPSTREAM_HTTP_ERROR"; 3]);
    let errors = resp["errors"].as_array().unwrap();
    let mut paths: Vec<Json> = errors.iter().map(|e| e["path"].clone()).collect();
    paths.sort_by_key(|p| p[1].as_u64());
    assert_eq!(
        paths,
        [
            json!(["orders", 0, "product"]),
            json!(["orders", 1, "product"]),
            json!(["orders", 2, "product"])
        ]
    );
    for e in errors {
        assert_eq!(e["extensions"]["httpStatus"], 500, "{e}");
        assert_eq!(e["extensions"]["upstream"], "shop", "{e}");
    }
    assert_eq!(id_params(&mock), ["1,2"]);
}

#[tokio::test]
async fn non_list_batch_response_is_bad_response() {
    let mock = Mock::start(|r| match r.path.as_str() {
        "/orders" => Reply::json(json!([
            {"id": "o1", "productId": 1},
            {"id": "o2", "productId": 2}
        ])),
        "/products" => Reply::json(json!({"id": 1, "name": "one"})),
        _ => Reply::status(404, "{}"),
    })
    .await;
    let fanout = Fanout::start(&with_mock(SCHEMA, &mock)).await;
    let resp = fanout.query("{ orders { id product { name } } }").await;
    assert_eq!(
        resp["data"],
        json!({"orders": [{"id": "o1", "product": null}, {"id": "o2", "product": null}]})
    );
    assert_eq!(codes(&resp), ["UPSTREAM_BAD_RESPONSE"; 2]);
    let mut paths: Vec<Json> = resp["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].clone())
        .collect();
    paths.sort_by_key(|p| p[1].as_u64());
    assert_eq!(
        paths,
        [
            json!(["orders", 0, "product"]),
            json!(["orders", 1, "product"])
        ]
    );
    assert_eq!(resp["errors"][0]["extensions"]["upstream"], "shop");
    assert_eq!(id_params(&mock), ["1,2"]);
}

#[tokio::test]
async fn null_key_gives_null_without_a_call() {
    let orders = json!([
        {"id": "o1", "productId": null},
        {"id": "o2"}
    ]);
    let mock = Mock::start(shop(orders)).await;
    let fanout = Fanout::start(&with_mock(SCHEMA, &mock)).await;
    let resp = fanout.query("{ orders { id product { name } } }").await;
    assert_eq!(
        resp,
        json!({"data": {"orders": [
            {"id": "o1", "product": null},
            {"id": "o2", "product": null}
        ]}})
    );
    let seen: Vec<String> = mock.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(seen, ["/orders"], "no call for null keys");
}

#[tokio::test]
async fn null_keys_are_left_out_of_the_batch() {
    let orders = json!([
        {"id": "o1", "productId": 4},
        {"id": "o2", "productId": null},
        {"id": "o3", "productId": 1}
    ]);
    let mock = Mock::start(shop(orders)).await;
    let fanout = Fanout::start(&with_mock(SCHEMA, &mock)).await;
    let resp = fanout.query("{ orders { id product { name } } }").await;
    assert_eq!(
        resp,
        json!({"data": {"orders": [
            {"id": "o1", "product": {"name": "P4"}},
            {"id": "o2", "product": null},
            {"id": "o3", "product": {"name": "P1"}}
        ]}})
    );
    assert_eq!(id_params(&mock), ["1,4"]);
}

#[tokio::test]
async fn trace_lists_the_batch_call_with_its_size() {
    let orders = json!([
        {"id": "o1", "productId": 7},
        {"id": "o2", "productId": 8},
        {"id": "o3", "productId": 7},
        {"id": "o4", "productId": 9}
    ]);
    let mock = Mock::start(shop(orders)).await;
    let fanout = Fanout::start(&with_mock(SCHEMA, &mock)).await;
    let (status, resp) = fanout
        .post_with(
            json!({"query": "{ orders { id product { name } } }"}),
            &[("x-fanout-trace", "1")],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(resp["data"]["orders"][3]["product"]["name"], "P9");
    let calls = resp["extensions"]["fanout"]["calls"]
        .as_array()
        .unwrap_or_else(|| panic!("no extensions.fanout.calls: {resp}"));
    let batch: Vec<&Json> = calls.iter().filter(|c| c["path"] == "/products").collect();
    assert_eq!(batch.len(), 1, "{calls:?}");
    assert_eq!(batch[0]["batchSize"], 3);
    assert_eq!(batch[0]["upstream"], "shop");
    assert_eq!(batch[0]["method"], "GET");
    let list: Vec<&Json> = calls.iter().filter(|c| c["path"] == "/orders").collect();
    assert_eq!(list.len(), 1, "{calls:?}");
    assert!(list[0].get("batchSize").is_none(), "{calls:?}");
    assert_eq!(id_params(&mock), ["7,8,9"]);
    assert_eq!(mock.count(), 2);
}

#[tokio::test]
async fn keys_from_answers_arriving_apart_join_one_batch() {
    // Each user's orders answer a few milliseconds after the previous one's; the product
    // keys they carry must still go out in one batch, each key once.
    let mock = Mock::start(|r| {
        if let Some(user) = r
            .path
            .strip_prefix("/users/")
            .and_then(|p| p.strip_suffix("/orders"))
        {
            let u: u64 = user.parse().unwrap();
            let orders: Vec<Json> = (0..3)
                .map(|k| json!({"id": format!("{u}-{k}"), "productId": (u + k) % 7 + 1}))
                .collect();
            return Reply::json(Json::Array(orders))
                .delay(std::time::Duration::from_millis(20 + 4 * u));
        }
        if r.path == "/users" {
            let ids: Vec<Json> = (1..=6).map(|i| json!({"id": i})).collect();
            return Reply::json(Json::Array(ids));
        }
        let ids = r.param("ids").unwrap_or_default();
        Reply::json(Json::Array(ids.split(',').map(product).collect()))
    })
    .await;
    let schema = with_mock(
        r#"
        extend schema @upstream(name: "shop", baseUrl: "{MOCK}")
        type Query { users: [User!] @rest(upstream: "shop", path: "/users") }
        type User { id: ID! orders: [Order!] @rest(upstream: "shop", path: "/users/{parent.id}/orders") }
        type Order {
          id: ID!
          product: Product @rest(upstream: "shop", path: "/products",
                                 batch: {key: "{parent.productId}", query: "ids", match: "id"})
        }
        type Product { id: ID! name: String }
        "#,
        &mock,
    );
    let fanout = Fanout::start(&schema).await;
    let resp = fanout
        .query("{ users { id orders { id product { name } } } }")
        .await;
    assert!(resp.get("errors").is_none(), "{resp}");
    assert_eq!(
        resp["data"]["users"][5]["orders"][2]["product"]["name"],
        "P2"
    );
    // Six users' orders (products 2..=7 and 1) in one call, every key once.
    assert_eq!(id_params(&mock), ["1,2,3,4,5,6,7"]);
}
