//! Fanout: a GraphQL gateway over REST services.
//!
//! A request travels through the modules in this order:
//!
//! - [`config`]: command line and `FANOUT_*` environment, typed once.
//! - [`sdl`]: `schema.graphql` -> checked [`sdl::Bindings`], or diagnostics with positions.
//! - [`schema`]: bindings -> the async-graphql dynamic schema (validation, introspection).
//! - [`http`]: `/graphql` and friends; turns an HTTP request into a GraphQL request.
//! - [`gateway`]: one loaded schema; executes a request.
//! - [`resolve`]: plans the query and completes every field, concurrently, with deadlines.
//! - [`upstream`]: renders and sends REST calls; deduplication and batching.
//! - [`error`]: what a failed field looks like to the client.
//! - [`observe`]: every upstream call and request as one event, for the trace record,
//!   Prometheus, OpenTelemetry and the logs.
//! - [`metrics`]: counters behind `/metrics`.
//! - [`reload`]: a new schema for new requests, without a restart.
//! - [`server`]: bind, serve, drain.
//! - [`demo`]: the built-in REST services behind `fanout --demo`.
//! - [`call_plan`]: `fanout plan` and `x-fanout-plan: 1`: the calls a query will make, unmade.
//! - [`import`]: `fanout import openapi`: an OpenAPI document -> a `schema.graphql` to start from.

pub mod call_plan;
pub mod config;
pub mod demo;
pub mod error;
pub mod gateway;
pub mod http;
pub mod import;
pub mod metrics;
pub mod observe;
pub mod reload;
pub mod resolve;
pub mod schema;
pub mod sdl;
pub mod server;
pub mod upstream;

pub use gateway::{Gateway, Options};

/// Maps on the request path, with a fast seeded hasher: Fanout's own maps are small and hashed
/// often (field names, response keys, batch keys, dedup keys), and std's SipHash was several
/// percent of a query's instructions.
pub type FastIndexMap<K, V> = indexmap::IndexMap<K, V, foldhash::fast::RandomState>;
pub type FastHashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
