//! Fanout inside an existing axum application, under `/api`.
//!
//! `cargo run --example embed`, then open <http://127.0.0.1:4010/api/graphql>. The host app
//! keeps its own routes (`/`); Fanout's router is nested like any other.

use std::collections::HashMap;

use axum::{Router, routing::get};
use fanout::{Gateway, Options, demo, http::HttpOptions};

#[tokio::main]
async fn main() {
    // The demo REST services stand in for your own upstreams.
    let services = demo::start(std::time::Duration::from_millis(20))
        .await
        .expect("demo services start");
    let env: HashMap<String, String> = services.env().into_iter().collect();
    let schema = std::fs::read_to_string("schema.graphql").expect("run from the repository root");
    let (gateway, _warnings) = Gateway::load(&schema, Options::default(), &|n| env.get(n).cloned())
        .unwrap_or_else(|diags| panic!("schema.graphql does not load: {diags:?}"));

    let app = Router::new()
        .route("/", get(|| async { "the host application" }))
        .nest(
            "/api",
            fanout::http::router(gateway, HttpOptions::default()),
        );

    let listener = tokio::net::TcpListener::bind("127.0.0.1:4010")
        .await
        .expect("port 4010 is free");
    println!("host app on http://127.0.0.1:4010/, Fanout on http://127.0.0.1:4010/api/graphql");
    axum::serve(listener, app).await.expect("serve");
}
