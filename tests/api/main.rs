//! Fanout's integration tests: one binary, real HTTP servers on loopback.

mod smoke;
mod support;
