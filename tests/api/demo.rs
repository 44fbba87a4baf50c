//! The real `schema.graphql` served against the built-in demo services, the way
//! `fanout --demo` runs it: the dashboard query, mutations, unions, `select`.

use std::{
    collections::HashMap,
    net::SocketAddr,
    time::{Duration, Instant},
};

use fanout::{Gateway, Options, demo::Demo};
use serde_json::{Value as Json, json};
use tokio::task::JoinHandle;

const SCHEMA: &str = include_str!("../../schema.graphql");
const LATENCY: Duration = Duration::from_millis(20);

/// The query from the comment at the top of schema.graphql.
const DASHBOARD: &str = r#"
query Dashboard {
  user(id: "1") {
    name
    email
    role
    team { name lead { name email } }
    permissions
    orders(first: 5) {
      id
      total
      status
      placedAt
      product { name price category }
    }
  }
}
"#;

/// The demo services plus Fanout serving schema.graphql against them.
struct DemoGateway {
    demo: Demo,
    addr: SocketAddr,
    http: reqwest::Client,
    task: JoinHandle<()>,
}

impl DemoGateway {
    async fn start() -> DemoGateway {
        let demo = fanout::demo::start(LATENCY).await.unwrap();
        let overrides: HashMap<String, String> = demo.env().into_iter().collect();
        let (gw, warnings) =
            match Gateway::load(SCHEMA, Options::default(), &|n| overrides.get(n).cloned()) {
                Ok(loaded) => loaded,
                Err(diags) => panic!("schema.graphql did not load: {diags:#?}"),
            };
        assert!(
            warnings.is_empty(),
            "schema.graphql warnings: {warnings:#?}"
        );
        let app = fanout::http::router(gw, Default::default());
        let (addr, task) = crate::support::serve(app).await;
        DemoGateway {
            demo,
            addr,
            http: reqwest::Client::new(),
            task,
        }
    }

    /// POSTs the query with `x-fanout-trace: 1`; returns the response and the upstream
    /// calls the demo services counted while it ran.
    async fn query(&self, query: &str) -> (Json, u64) {
        let before = self.demo.calls();
        let body: Json = self
            .http
            .post(format!("http://{}/graphql", self.addr))
            .header("x-fanout-trace", "1")
            .json(&json!({ "query": query }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        (body, self.demo.calls() - before)
    }
}

impl Drop for DemoGateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn trace(body: &Json) -> Vec<Json> {
    body["extensions"]["fanout"]["calls"]
        .as_array()
        .unwrap_or_else(|| panic!("no trace in {body}"))
        .clone()
}

#[tokio::test]
async fn dashboard_query_is_complete_in_minimal_calls_and_three_round_trips() {
    let gw = DemoGateway::start().await;
    // Warm the connection pool so the timing measures the gateway, not TCP handshakes.
    let (warm, _) = gw.query(r#"{ product(id: "1") { name } }"#).await;
    assert_eq!(warm["data"]["product"]["name"], "USB-C hub");

    let started = Instant::now();
    let (body, calls) = gw.query(DASHBOARD).await;
    let elapsed = started.elapsed();

    assert!(body.get("errors").is_none(), "{body:#}");
    assert_eq!(
        body["data"],
        json!({"user": {
            "name": "Ada Lovelace",
            "email": "ada@example.com",
            "role": "ADMIN",
            "team": {"name": "Platform", "lead": {"name": "Ada Lovelace", "email": "ada@example.com"}},
            "permissions": ["orders:read", "orders:write", "team:manage", "users:admin"],
            "orders": [
                {"id": "1001", "total": 90.0, "status": "CANCELLED", "placedAt": "2026-11-08T09:00:00Z",
                 "product": {"name": "Desk lamp", "price": 45.0, "category": "furniture"}},
                {"id": "1002", "total": 112.5, "status": "PENDING", "placedAt": "2026-10-11T10:00:00Z",
                 "product": {"name": "Coffee subscription Pro", "price": 37.5, "category": "office"}},
                {"id": "1003", "total": 9.375, "status": "SHIPPED", "placedAt": "2026-09-14T11:00:00Z",
                 "product": {"name": "Notebook set Mini", "price": 9.375, "category": "office"}},
                {"id": "1004", "total": 117.0, "status": "DELIVERED", "placedAt": "2026-08-17T12:00:00Z",
                 "product": {"name": "USB-C hub Pro", "price": 58.5, "category": "hardware"}},
                {"id": "1005", "total": 1122.75, "status": "CANCELLED", "placedAt": "2026-07-20T13:00:00Z",
                 "product": {"name": "Standing desk Mini", "price": 374.25, "category": "furniture"}},
            ],
        }})
    );

    // The minimum the schema allows is 5 calls:
    //   1. GET /users/1                          (user)
    //   2. GET /teams/10                         (user.team)
    //   3. GET /users/1/permissions              (user.permissions)
    //   4. GET /users/1/orders?limit=5           (user.orders)
    //   5. GET /products?ids=8,11,19,22,30       (all five order.product, one batch)
    // user 1 leads team 10, so team.lead is GET /users/1 on the same upstream with the same
    // (no) headers as the root field: an identical GET within one request, deduplicated.
    assert_eq!(calls, 5, "upstream calls; trace: {:#}", body["extensions"]);

    let trace = trace(&body);
    let sent: Vec<&Json> = trace
        .iter()
        .filter(|c| c["deduplicated"] == false)
        .collect();
    let mut sent_paths: Vec<&str> = sent.iter().map(|c| c["path"].as_str().unwrap()).collect();
    sent_paths.sort();
    assert_eq!(
        sent_paths,
        [
            "/products",
            "/teams/10",
            "/users/1",
            "/users/1/orders",
            "/users/1/permissions"
        ]
    );
    let products: Vec<&&Json> = sent.iter().filter(|c| c["path"] == "/products").collect();
    assert_eq!(products.len(), 1, "{trace:#?}");
    assert_eq!(products[0]["upstream"], "catalog");
    assert_eq!(products[0]["batchSize"], 5, "{trace:#?}");
    assert!(sent.iter().all(|c| c["status"] == 200), "{trace:#?}");
    let dedup: Vec<&Json> = trace.iter().filter(|c| c["deduplicated"] == true).collect();
    assert_eq!(dedup.len(), 1, "{trace:#?}");
    assert_eq!(dedup[0]["path"], "/users/1");

    // Three levels of 20 ms each; serial fetching would be 6 x 20 ms and more. This is a
    // sanity check with a wide margin, not a benchmark.
    assert!(
        elapsed < Duration::from_millis(400),
        "the dashboard took {elapsed:?}"
    );
}

#[tokio::test]
async fn created_order_is_seen_by_a_later_query() {
    let gw = DemoGateway::start().await;
    let (created, calls) = gw
        .query(
            r#"mutation {
              createOrder(input: {userId: "3", productId: "4", quantity: 2}) {
                id total quantity status product { name }
              }
            }"#,
        )
        .await;
    assert!(created.get("errors").is_none(), "{created:#}");
    assert_eq!(
        created["data"],
        json!({"createOrder": {
            "id": "5001", "total": 498.0, "quantity": 2, "status": "PENDING",
            "product": {"name": "Noise-cancelling headphones"},
        }})
    );
    // The POST, then the product.
    assert_eq!(calls, 2);
    let trace = trace(&created);
    let methods: Vec<(&str, &str)> = trace
        .iter()
        .map(|c| (c["method"].as_str().unwrap(), c["path"].as_str().unwrap()))
        .collect();
    assert_eq!(methods, [("POST", "/orders"), ("GET", "/products")]);
    assert_eq!(trace[0]["status"], 201);

    let (seen, calls) = gw
        .query(r#"{ user(id: "3") { orders(first: 2) { id status total } } }"#)
        .await;
    assert!(seen.get("errors").is_none(), "{seen:#}");
    let orders = seen["data"]["user"]["orders"].as_array().unwrap();
    assert_eq!(orders.len(), 2);
    assert_eq!(
        orders[0],
        json!({"id": "5001", "status": "PENDING", "total": 498.0})
    );
    assert_ne!(orders[1]["id"], "5001");
    assert_eq!(calls, 2);
}

#[tokio::test]
async fn search_resolves_the_union_from_typename() {
    let gw = DemoGateway::start().await;
    let (body, calls) = gw
        .query(
            r#"{ search(q: "ad") {
                  __typename
                  ... on User { id name }
                  ... on Product { id name price }
               } }"#,
        )
        .await;
    assert!(body.get("errors").is_none(), "{body:#}");
    assert_eq!(
        body["data"]["search"],
        json!([
            {"__typename": "User", "id": "1", "name": "Ada Lovelace"},
            {"__typename": "User", "id": "11", "name": "Ada Turing"},
            {"__typename": "User", "id": "21", "name": "Ada Hopper"},
            {"__typename": "User", "id": "31", "name": "Ada Dijkstra"},
            {"__typename": "User", "id": "41", "name": "Ada Liskov"},
            {"__typename": "Product", "id": "4", "name": "Noise-cancelling headphones", "price": 249.0},
            {"__typename": "Product", "id": "14", "name": "Noise-cancelling headphones Pro", "price": 373.5},
            {"__typename": "Product", "id": "24", "name": "Noise-cancelling headphones Mini", "price": 186.75},
        ])
    );
    assert_eq!(calls, 1);
    let trace = trace(&body);
    assert_eq!(trace.len(), 1);
    assert_eq!(trace[0]["path"], "/search");
    assert_eq!(trace[0]["upstream"], "catalog");
}

#[tokio::test]
async fn orders_by_status_read_the_wrapped_list() {
    let gw = DemoGateway::start().await;
    let (body, calls) = gw
        .query(r#"{ orders(status: SHIPPED, first: 4) { id status placedAt } }"#)
        .await;
    assert!(body.get("errors").is_none(), "{body:#}");
    let orders = body["data"]["orders"]
        .as_array()
        .unwrap_or_else(|| panic!("no list in {body:#}"));
    assert_eq!(orders.len(), 4, "{body:#}");
    assert!(orders.iter().all(|o| o["status"] == "SHIPPED"), "{body:#}");
    // Newest first, as the service sorts them.
    let placed: Vec<&str> = orders
        .iter()
        .map(|o| o["placedAt"].as_str().unwrap())
        .collect();
    let mut sorted = placed.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(placed, sorted);
    assert_eq!(calls, 1);
    let trace = trace(&body);
    assert_eq!(trace.len(), 1);
    assert_eq!(trace[0]["path"], "/orders");
    assert_eq!(trace[0]["upstream"], "orders");
}
