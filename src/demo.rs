//! Built-in demo REST services for `fanout --demo`.
//!
//! A back-office dashboard needs a user's profile, team, permissions and recent orders with
//! their products, and in real life those live in separate REST services. These three small
//! axum services (users, orders, catalog) play that part on loopback so a newcomer's first
//! command shows the whole gateway working against `schema.graphql`, and tests get realistic
//! upstreams without the network. The data is generated in code and is deterministic.
//!
//! Some shapes are awkward on purpose, to exercise the schema language: `email_address` needs
//! `@map`, `GET /orders` wraps its list for `select: "data.items"`, and the catalog's batch
//! endpoint answers in reverse id order so the gateway must match items back by id. Every
//! call is counted and delayed by a fixed latency so concurrency, batching and deduplication
//! are visible in timings and in [`Demo::calls`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The running demo services. Dropping it stops them.
#[derive(Debug)]
pub struct Demo {
    pub users: SocketAddr,
    pub orders: SocketAddr,
    pub catalog: SocketAddr,
    shared: Arc<Shared>,
    tasks: Vec<JoinHandle<()>>,
}

impl Demo {
    /// Environment overrides that point schema.graphql's upstreams at these services:
    /// `[("USERS_URL", "http://127.0.0.1:PORT"), ("ORDERS_URL", ...), ("CATALOG_URL", ...)]`.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("USERS_URL", self.users),
            ("ORDERS_URL", self.orders),
            ("CATALOG_URL", self.catalog),
        ]
        .into_iter()
        .map(|(name, addr)| (name.to_string(), format!("http://{addr}")))
        .collect()
    }

    /// Total number of HTTP requests the three services have received so far.
    pub fn calls(&self) -> u64 {
        self.shared.calls.load(Ordering::Relaxed)
    }
}

/// Aborting the accept loops also closes idle keep-alive connections (axum shuts them down
/// once its server future is gone), so a dropped `Demo` looks like a dead upstream to clients.
impl Drop for Demo {
    fn drop(&mut self) {
        self.tasks.iter().for_each(JoinHandle::abort);
    }
}

/// Binds each service on 127.0.0.1:0 and serves it on spawned tokio tasks; every response is
/// delayed by `latency` (artificial per-call latency so concurrency and batching show).
pub async fn start(latency: Duration) -> std::io::Result<Demo> {
    start_on(latency, [0, 0, 0]).await
}

/// The demo services on fixed loopback ports (users, orders, catalog); 0 picks a free one.
/// Each also answers `GET /__calls` with the services' total call count, uncounted and
/// undelayed, for benchmarks.
pub async fn start_on(latency: Duration, ports: [u16; 3]) -> std::io::Result<Demo> {
    let shared = Arc::new(Shared {
        calls: AtomicU64::new(0),
        latency,
        created: Mutex::default(),
    });
    let users = Router::new()
        .route("/users", get(list_users))
        .route("/users/{id}", lookup(user))
        .route("/users/{id}/permissions", lookup(permissions))
        .route("/teams/{id}", lookup(team));
    let orders = Router::new()
        .route("/users/{id}/orders", get(list_user_orders))
        .route("/orders", get(list_orders).post(create_order));
    let catalog = Router::new()
        .route("/products", get(list_products))
        .route("/products/{id}", lookup(product))
        .route("/search", get(search));

    let mut addrs = Vec::new();
    let mut tasks = Vec::new();
    for (router, port) in [users, orders, catalog].into_iter().zip(ports) {
        let router = router
            .fallback(|| async { not_found() })
            .layer(middleware::from_fn_with_state(
                shared.clone(),
                count_and_delay,
            ))
            .route("/__calls", get(total_calls))
            .with_state(shared.clone());
        let listener = TcpListener::bind(("127.0.0.1", port)).await?;
        addrs.push(listener.local_addr()?);
        tasks.push(tokio::spawn(async move {
            if let Err(err) = axum::serve(listener, router).await {
                eprintln!("fanout demo service stopped: {err}");
            }
        }));
    }
    Ok(Demo {
        users: addrs[0],
        orders: addrs[1],
        catalog: addrs[2],
        shared,
        tasks,
    })
}

async fn total_calls(State(shared): State<Arc<Shared>>) -> String {
    shared.calls.load(Ordering::SeqCst).to_string()
}

/// State shared by the three services: the call counter, the latency, and orders created by
/// `POST /orders` (kept so a later GET sees them).
#[derive(Debug)]
struct Shared {
    calls: AtomicU64,
    latency: Duration,
    created: Mutex<Vec<Order>>,
}

/// Middleware: counts every request (even ones the gateway later abandons), then sleeps.
/// A zero latency does not sleep at all: tokio's timer rounds a sleep up to its next
/// millisecond tick, so even `sleep(0)` would add up to 1 ms.
async fn count_and_delay(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    shared.calls.fetch_add(1, Ordering::Relaxed);
    if !shared.latency.is_zero() {
        tokio::time::sleep(shared.latency).await;
    }
    next.run(req).await
}

// ----- Data: deterministic generators, so every run and every test sees the same world. -----

const USER_COUNT: u32 = 50;
const PRODUCT_COUNT: u32 = 30;
const FIRST_NAMES: [&str; 10] = [
    "Ada", "Alan", "Grace", "Edsger", "Barbara", "Donald", "Margaret", "Dennis", "Frances", "Ken",
];
const LAST_NAMES: [&str; 10] = [
    "Lovelace", "Turing", "Hopper", "Dijkstra", "Liskov", "Knuth", "Hamilton", "Ritchie", "Allen",
    "Thompson",
];
const TEAMS: [&str; 5] = ["Platform", "Payments", "Growth", "Mobile", "Data"];
/// Products 1..=10 are these; 11..=20 their "Pro" and 21..=30 their "Mini" editions.
const PRODUCTS: [(&str, &str, f64); 10] = [
    ("USB-C hub", "hardware", 39.0),
    ("Standing desk", "furniture", 499.0),
    ("Mechanical keyboard", "hardware", 89.0),
    ("Noise-cancelling headphones", "audio", 249.0),
    ("4K monitor", "hardware", 379.0),
    ("Ergonomic chair", "furniture", 329.0),
    ("Webcam", "hardware", 69.0),
    ("Desk lamp", "furniture", 45.0),
    ("Coffee subscription", "office", 25.0),
    ("Notebook set", "office", 12.5),
];
const STATUSES: [&str; 4] = ["PENDING", "SHIPPED", "DELIVERED", "CANCELLED"];

#[derive(Clone, Debug, Serialize)]
struct User {
    id: String,
    name: String,
    email_address: String,
    #[serde(rename = "teamId")]
    team_id: String,
    role: &'static str,
}

#[derive(Clone, Debug, Serialize)]
struct Team {
    id: String,
    name: &'static str,
    lead_id: String,
}

#[derive(Clone, Debug, Serialize)]
struct Product {
    id: String,
    name: String,
    price: f64,
    category: &'static str,
}

/// An order as the orders service stores it: camelCase ids, but snake_case `placed_at`
/// (REST services are rarely consistent; the schema maps it with `@map`).
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Order {
    id: String,
    total: f64,
    status: &'static str,
    product_id: String,
    user_id: String,
    quantity: u32,
    #[serde(rename = "placed_at")]
    placed_at: String,
}

/// Users 1..=50: 1..=10 carry the classic names, later blocks shift the surname so names stay
/// unique. User `k` is in team `10 + (k - 1) % 5`; team leads 1..=5 are ADMIN or MANAGER.
fn user(id: u32) -> Option<User> {
    if !(1..=USER_COUNT).contains(&id) {
        return None;
    }
    let n = (id - 1) as usize;
    let (first, last) = (FIRST_NAMES[n % 10], LAST_NAMES[(n + n / 10) % 10]);
    let email = if n < 10 {
        first.to_string()
    } else {
        format!("{first}.{last}")
    };
    Some(User {
        id: id.to_string(),
        name: format!("{first} {last}"),
        email_address: format!("{}@example.com", email.to_lowercase()),
        team_id: (10 + n % 5).to_string(),
        role: match n % 10 {
            0 => "ADMIN",
            1..=4 => "MANAGER",
            _ => "VIEWER",
        },
    })
}

/// What a user may do, which depends on their role.
fn permissions(id: u32) -> Option<&'static [&'static str]> {
    Some(match user(id)?.role {
        "ADMIN" => &["orders:read", "orders:write", "team:manage", "users:admin"],
        "MANAGER" => &["orders:read", "orders:write", "team:manage"],
        _ => &["orders:read"],
    })
}

/// Teams 10..=14; team `10 + k` is led by user `k + 1`.
fn team(id: u32) -> Option<Team> {
    let name = TEAMS.get(usize::try_from(id.checked_sub(10)?).ok()?)?;
    let lead_id = (id - 9).to_string();
    Some(Team {
        id: id.to_string(),
        name,
        lead_id,
    })
}

fn product(id: u32) -> Option<Product> {
    if !(1..=PRODUCT_COUNT).contains(&id) {
        return None;
    }
    let n = (id - 1) as usize;
    let (name, category, price) = PRODUCTS[n % 10];
    let (suffix, factor) = [("", 1.0), (" Pro", 1.5), (" Mini", 0.75)][n / 10];
    let name = format!("{name}{suffix}");
    Some(Product {
        id: id.to_string(),
        name,
        price: price * factor,
        category,
    })
}

/// A user's generated orders, newest first: 3 to 8 each, ids `1000 + 10 * (user - 1) + k`,
/// product ids spread over 1..=30 so different users share products (batching dedups them).
fn generated_orders(user_id: u32) -> Vec<Order> {
    let u = user_id as usize;
    (0..3 + (u * 5) % 6)
        .map(|k| {
            let product = product(((u * 7 + k * 11) % 30 + 1) as u32).expect("id in 1..=30");
            let quantity = (1 + (u + k) % 3) as u32;
            let (month, day, hour) = (11 - k, 1 + (u * 7 + k * 3) % 28, 8 + (u + k) % 10);
            Order {
                id: (1000 + 10 * (u - 1) + k + 1).to_string(),
                total: product.price * f64::from(quantity),
                status: STATUSES[(u * 3 + k) % 4],
                product_id: product.id,
                user_id: user_id.to_string(),
                quantity,
                placed_at: format!("2026-{month:02}-{day:02}T{hour:02}:00:00Z"),
            }
        })
        .collect()
}

/// All of a user's orders, newest first: those created by `POST /orders`, then generated ones.
fn orders_of(shared: &Shared, user_id: u32) -> Vec<Order> {
    let created = shared.created.lock().expect("orders lock poisoned");
    let key = user_id.to_string();
    let mine = created.iter().rev().filter(|o| o.user_id == key).cloned();
    mine.chain(generated_orders(user_id)).collect()
}

// ----- Handlers ------------------------------------------------------------------------------

/// Repeated parameters (`ids=1&ids=2`) need the raw pairs; serde structs would keep only one.
type Pairs = Query<Vec<(String, String)>>;

/// `?status=S&limit=N` of the order lists; a malformed `limit` is a 400 from axum, so gateway
/// templating bugs show up instead of being ignored.
#[derive(Deserialize)]
struct ListParams {
    status: Option<String>,
    limit: Option<usize>,
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(HashMap::from([("error", message)]))).into_response()
}

fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "not found")
}

/// A numeric id from a path segment or parameter; anything else is 0, which no item has.
fn parse_id(raw: &str) -> u32 {
    raw.trim().parse().unwrap_or(0)
}

/// A JSON id or count given as a number or a numeric string; anything else is 0.
fn json_u32(value: &Value) -> u32 {
    match value {
        Value::String(s) => parse_id(s),
        other => other.as_u64().and_then(|n| n.try_into().ok()).unwrap_or(0),
    }
}

/// `GET .../{id}` answered by a generator: the item, or 404 for an unknown id.
fn lookup<T: Serialize + Send + 'static>(find: fn(u32) -> Option<T>) -> MethodRouter<Arc<Shared>> {
    get(move |Path(id): Path<String>| async move {
        find(parse_id(&id)).map_or_else(not_found, |item| Json(item).into_response())
    })
}

/// `GET /users?ids=1&ids=2`: repeated parameters (comma-joined values are accepted too);
/// unknown ids are skipped.
async fn list_users(Query(pairs): Pairs) -> Response {
    let ids = pairs.iter().filter(|(k, _)| k == "ids");
    let ids = ids.flat_map(|(_, v)| v.split(',')).map(parse_id);
    Json(ids.filter_map(user).collect::<Vec<_>>()).into_response()
}

/// `GET /users/{id}/orders?limit=N`: newest first, at most `limit` (default 20).
async fn list_user_orders(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    Query(params): Query<ListParams>,
) -> Response {
    let id = parse_id(&id);
    if user(id).is_none() {
        return not_found();
    }
    let mut orders = orders_of(&shared, id);
    orders.truncate(params.limit.unwrap_or(20));
    Json(orders).into_response()
}

/// `GET /orders?status=S&limit=N`: every user's orders, newest first, wrapped in
/// `{"data":{"items":[...]}}` so the schema needs `select: "data.items"`.
async fn list_orders(
    State(shared): State<Arc<Shared>>,
    Query(params): Query<ListParams>,
) -> Response {
    let mut all: Vec<Order> = (1..=USER_COUNT)
        .flat_map(|id| orders_of(&shared, id))
        .collect();
    all.retain(|o| params.status.as_ref().is_none_or(|s| o.status == s));
    all.sort_by(|a, b| (&b.placed_at, parse_id(&b.id)).cmp(&(&a.placed_at, parse_id(&a.id))));
    all.truncate(params.limit.unwrap_or(20));
    Json(HashMap::from([("data", HashMap::from([("items", all)]))])).into_response()
}

/// `POST /orders` with `{"userId","productId","quantity"}` (ids as strings or numbers,
/// quantity defaults to 1): 201 with the new PENDING order, priced from the catalog.
async fn create_order(State(shared): State<Arc<Shared>>, body: axum::body::Bytes) -> Response {
    let Ok(input) = serde_json::from_slice::<Value>(&body) else {
        return error(StatusCode::BAD_REQUEST, "body must be JSON");
    };
    let (user, product) = (
        user(json_u32(&input["userId"])),
        product(json_u32(&input["productId"])),
    );
    let (Some(user), Some(product)) = (user, product) else {
        return error(StatusCode::UNPROCESSABLE_ENTITY, "unknown user or product");
    };
    let quantity = match &input["quantity"] {
        Value::Null => 1,
        q => json_u32(q),
    };
    if quantity == 0 {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "quantity must be a positive integer",
        );
    }
    let mut created = shared.created.lock().expect("orders lock poisoned");
    let seq = created.len();
    let order = Order {
        id: (5001 + seq).to_string(),
        total: product.price * f64::from(quantity),
        status: "PENDING",
        product_id: product.id,
        user_id: user.id,
        quantity,
        // After every generated order, so it comes first in "newest first" lists.
        placed_at: format!("2026-12-01T09:{:02}:{:02}Z", seq / 60 % 60, seq % 60),
    };
    created.push(order.clone());
    (StatusCode::CREATED, Json(order)).into_response()
}

/// `GET /products?ids=1,2,3`: the batch endpoint. Exactly one comma-joined parameter (400
/// otherwise), answered in REVERSE id order on purpose so the gateway must match items back
/// by id; unknown ids are skipped.
async fn list_products(Query(pairs): Pairs) -> Response {
    let mut ids = pairs.iter().filter(|(k, _)| k == "ids").map(|(_, v)| v);
    let (Some(joined), None) = (ids.next(), ids.next()) else {
        return error(StatusCode::BAD_REQUEST, "expected one parameter ids=1,2,3");
    };
    let mut ids: Vec<u32> = joined.split(',').map(parse_id).collect();
    ids.sort_unstable_by(|a, b| b.cmp(a));
    ids.dedup();
    Json(ids.into_iter().filter_map(product).collect::<Vec<_>>()).into_response()
}

/// A search hit, tagged with `__typename` so the gateway can resolve `union SearchResult`.
#[derive(Serialize)]
#[serde(tag = "__typename")]
enum SearchHit {
    User(User),
    Product(Product),
}

#[derive(Deserialize)]
struct SearchParams {
    q: String,
}

/// `GET /search?q=TEXT`: users, then products, whose name contains TEXT (case-insensitive).
async fn search(Query(SearchParams { q }): Query<SearchParams>) -> Response {
    let q = q.to_lowercase();
    let matches = |name: &str| name.to_lowercase().contains(&q);
    let users = (1..=USER_COUNT).filter_map(user).map(SearchHit::User);
    let products = (1..=PRODUCT_COUNT)
        .filter_map(product)
        .map(SearchHit::Product);
    let hits = users.chain(products).filter(|hit| match hit {
        SearchHit::User(u) => matches(&u.name),
        SearchHit::Product(p) => matches(&p.name),
    });
    Json(hits.collect::<Vec<_>>()).into_response()
}
