//! Fanout's integration tests: one binary, real HTTP servers on loopback.

mod batching;
mod bindings;
mod connections;
mod corpus;
mod demo;
mod diagnostics;
mod edge;
mod exact_batching;
mod execution;
mod fuzz;
mod graphiql_dir;
mod hostile;
mod http;
mod http_conformance;
mod import;
mod limits;
mod plan;
mod proxy;
mod reload;
mod resilience;
mod smoke;
mod spec;
mod support;
mod telemetry;
mod url_safety;
