//! End-to-end tests of the data plane over real sockets on 127.0.0.1.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod auth;
mod authz;
mod common;
mod fleet;
mod hygiene;
mod observability;
mod ratelimit;
mod routing;
mod tls;
mod upstream;
