//! Fanout's integration tests: one binary, real HTTP servers on loopback.

mod batching;
mod bindings;
mod corpus;
mod demo;
mod diagnostics;
mod edge;
mod execution;
mod fuzz;
mod graphiql_dir;
mod http;
mod http_conformance;
mod limits;
mod proxy;
mod reload;
mod resilience;
mod smoke;
mod support;
mod url_safety;
