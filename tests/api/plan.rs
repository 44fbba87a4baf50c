//! `fanout plan` and `x-fanout-plan: 1`: the demo's dashboard query planned level by level,
//! with its batch and its deduplicated call, and nothing called.

use std::collections::HashMap;

use fanout::{Gateway, Options, http::HttpOptions};
use serde_json::{Value as Json, json};

use crate::support::{Mock, Reply};

const SCHEMA: &str = include_str!("../../schema.graphql");

/// README's "The dashboard query".
const DASHBOARD: &str = r#"query Dashboard($id: ID!) {
  user(id: $id) {
    name email role
    team { name lead { name email } }
    permissions
    orders(first: 5) { id total status placedAt product { name price category } }
  }
}"#;

/// Fanout serving the demo schema with every upstream pointed at `mock`.
async fn demo_gateway(
    mock: &Mock,
    http: HttpOptions,
) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let env: HashMap<&str, String> = ["USERS_URL", "ORDERS_URL", "CATALOG_URL"]
        .into_iter()
        .map(|k| (k, mock.url()))
        .collect();
    let (gw, _) = Gateway::load(SCHEMA, Options::default(), &|n| env.get(n).cloned()).unwrap();
    crate::support::serve(fanout::http::router(gw, http)).await
}

async fn post(addr: std::net::SocketAddr, body: Json, plan: bool) -> Json {
    let mut req = reqwest::Client::new()
        .post(format!("http://{addr}/graphql"))
        .json(&body);
    if plan {
        req = req.header("x-fanout-plan", "1");
    }
    req.send().await.unwrap().json().await.unwrap()
}

/// (level, field) of every call in a plan.
fn calls(plan: &Json) -> Vec<(u64, String)> {
    plan["levels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|l| {
            l["calls"].as_array().unwrap().iter().map(|c| {
                (
                    l["level"].as_u64().unwrap(),
                    c["field"].as_str().unwrap().to_owned(),
                )
            })
        })
        .collect()
}

fn call<'a>(plan: &'a Json, field: &str) -> &'a Json {
    plan["levels"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|l| l["calls"].as_array().unwrap())
        .find(|c| c["field"] == field)
        .unwrap_or_else(|| panic!("no call for {field} in {plan:#}"))
}

#[tokio::test]
async fn the_dashboard_plan_has_three_levels_a_batch_and_a_dedup_and_calls_nothing() {
    let mock = Mock::start(|_| Reply::json(json!({}))).await;
    let opts = HttpOptions {
        allow_plan: true,
        ..HttpOptions::default()
    };
    let (addr, task) = demo_gateway(&mock, opts).await;
    let body = json!({"query": DASHBOARD, "variables": {"id": "1"}});
    let resp = post(addr, body, true).await;
    assert_eq!(mock.count(), 0, "planning called an upstream");
    assert!(resp.get("errors").is_none(), "{resp:#}");
    assert_eq!(resp["data"], Json::Null);
    let plan = &resp["extensions"]["fanoutPlan"];
    assert_eq!(plan["operation"], "Dashboard");
    assert_eq!(plan["called"], false);
    assert_eq!(
        calls(plan),
        [
            (1, "user".to_owned()),
            (2, "user.team".to_owned()),
            (2, "user.permissions".to_owned()),
            (2, "user.orders".to_owned()),
            (3, "user.team.lead".to_owned()),
            (3, "user.orders.product".to_owned()),
        ]
    );
    let user = call(plan, "user");
    assert_eq!(
        (
            &user["method"],
            &user["upstream"],
            &user["path"],
            &user["timeoutMs"]
        ),
        (
            &json!("GET"),
            &json!("users"),
            &json!("/users/1"),
            &json!(800)
        )
    );
    assert_eq!(
        call(plan, "user.orders")["path"],
        "/users/{parent.id}/orders?limit=5"
    );
    assert_eq!(call(plan, "user.orders")["after"], "user");
    let lead = call(plan, "user.team.lead");
    assert_eq!(lead["path"], "/users/{parent.lead_id}");
    assert_eq!(
        lead["deduplicated"],
        json!({"with": "user", "when": "parent.lead_id is \"1\""})
    );
    let product = call(plan, "user.orders.product");
    assert_eq!(product["path"], "/products?ids={keys}");
    assert_eq!(
        product["batch"],
        json!({
            "field": "Order.product",
            "key": "{parent.productId}",
            "keysFrom": "user.orders",
            "query": "ids",
            "match": "id",
            "maxSize": 50,
            "producers": ["user", "user.orders"],
        })
    );
    assert_eq!(
        plan["criticalPath"],
        json!({
            "fields": ["user", "user.team", "user.team.lead"],
            "levels": 3,
            "timeoutSumMs": 2400,
            "boundMs": 2400,
            "requestTimeoutMs": 5000,
        })
    );
    task.abort();
}

#[tokio::test]
async fn the_plan_header_is_ignored_outside_the_development_profile() {
    let mock = Mock::start(|_| Reply::status(404, "{}")).await;
    let (addr, task) = demo_gateway(&mock, HttpOptions::default()).await;
    let resp = post(addr, json!({"query": "{ user(id: \"1\") { name } }"}), true).await;
    assert!(resp["extensions"].get("fanoutPlan").is_none(), "{resp:#}");
    assert_eq!(mock.count(), 1, "the query ran as usual");
    task.abort();
}

#[tokio::test]
async fn a_query_the_server_would_refuse_is_refused_by_the_plan() {
    let mock = Mock::start(|_| Reply::json(json!({}))).await;
    let opts = HttpOptions {
        allow_plan: true,
        ..HttpOptions::default()
    };
    let (addr, task) = demo_gateway(&mock, opts).await;
    let resp = post(addr, json!({"query": "{ user(id: \"1\") { nme } }"}), true).await;
    assert_eq!(
        resp["errors"][0]["extensions"]["code"], "GRAPHQL_VALIDATION_FAILED",
        "{resp:#}"
    );
    assert!(resp["extensions"].get("fanoutPlan").is_none());
    assert_eq!(mock.count(), 0);
    task.abort();
}

#[tokio::test]
async fn mutations_are_planned_one_after_another_and_never_deduplicated() {
    let mock = Mock::start(|_| Reply::json(json!({}))).await;
    let opts = HttpOptions {
        allow_plan: true,
        ..HttpOptions::default()
    };
    let (addr, task) = demo_gateway(&mock, opts).await;
    let query = r#"mutation {
      a: createOrder(input: {userId: "1", productId: "8"}) { id product { name } }
      b: createOrder(input: {userId: "1", productId: "8"}) { id }
    }"#;
    let resp = post(addr, json!({"query": query}), true).await;
    let plan = &resp["extensions"]["fanoutPlan"];
    assert_eq!(plan["kind"], "mutation", "{resp:#}");
    assert_eq!(
        calls(plan),
        [
            (1, "a".to_owned()),
            (2, "a.product".to_owned()),
            (3, "b".to_owned())
        ]
    );
    let b = call(plan, "b");
    assert_eq!(b["method"], "POST");
    assert!(b.get("deduplicated").is_none(), "{b:#}");
    // The body with the input's defaults applied, as it would be sent.
    assert_eq!(
        b["body"],
        json!({"userId": "1", "productId": "8", "quantity": 1})
    );
    assert_eq!(mock.count(), 0);
    task.abort();
}

#[test]
fn fanout_plan_prints_the_dashboards_levels() {
    let schema = concat!(env!("CARGO_MANIFEST_DIR"), "/schema.graphql");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_fanout"))
        .args([
            "plan",
            "--schema",
            schema,
            "--query",
            DASHBOARD,
            "--variables",
            r#"{"id": "1"}"#,
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for expected in [
        "query Dashboard: 6 call(s) in 3 level(s), 1 of them possibly shared with an earlier one; nothing was called to plan it",
        "\nlevel 1\n  user                 GET  users    /users/1                            800ms\n",
        "  user.orders          GET  orders   /users/{parent.id}/orders?limit=5   800ms  after user\n",
        "deduplicated with user when parent.lead_id is \"1\"",
        "batch Order.product: key {parent.productId} of each user.orders item, up to 50 keys a call, matched by id; sent when user and user.orders have answered",
        "critical path: user -> user.team -> user.team.lead: 3 level(s), at most 2.4s (the sum of its timeouts)",
    ] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_fanout"))
        .args(["plan", "--schema", schema, "--query", "{ nope }"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("Unknown field \"nope\""));
}
