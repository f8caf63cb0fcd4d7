//! Test helpers for Rampart's integration tests.
//!
//! - [`upstream`]: a mock upstream HTTP/1.1 server (also h2c and TLS; echo, slow, status, bytes, WebSocket
//!   echo), a closed port and a black-hole TCP server.
//! - [`idp`]: the mock OpenID Connect identity provider (discovery, JWKS with rotation, a token
//!   endpoint minting RS256/ES256/EdDSA JWTs, RFC 7662 introspection): the `rampart-idp`
//!   crate, also `rampart demo`'s, re-exported with its `test-util` conveniences.
//! - [`pki`]: a throw-away CA with server and client certificates written to a temp dir.
//! - [`redis`]: a real `redis-server` child process (kill, pause, restart).
//! - [`client`]: raw TCP, HTTP/1.1, h2c, TLS and WebSocket clients.
//! - [`clock`]: the manual clock from `rampart-core`.
//!
//! Every server binds `127.0.0.1:0` and is stopped (its tasks aborted) when its handle is
//! dropped, so nothing outlives the test that started it. Helpers panic on setup failures:
//! this crate is only ever used from tests.

#![warn(missing_docs)]

use std::net::SocketAddr;
use std::time::Duration;

use std::future::Future;
use std::sync::Arc;

pub mod client;
pub mod pki;
pub mod redis;
pub mod upstream;

/// The mock identity provider, re-exported from `rampart-idp` (with its `test-util`
/// conveniences: `MockIdp::start`, `MockIdp::token`, `SigningKey::generate`, ...).
pub mod idp {
    pub use rampart_idp::*;
}

/// The manual clock, re-exported so tests need only this crate.
pub mod clock {
    pub use rampart_core::{Clock, ManualClock};
}

/// Upper bound the client helpers put on a whole exchange (connect, request, response), so a
/// broken server makes a test fail instead of hanging.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Polls `addr` with TCP connects (every 20 ms) until one succeeds or `timeout` passes.
/// Returns whether something accepted a connection.
pub async fn wait_for_port(addr: SocketAddr, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        if remaining.is_zero() {
            return false;
        }
        if let Ok(Ok(_)) =
            tokio::time::timeout(remaining, tokio::net::TcpStream::connect(addr)).await
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20).min(remaining)).await;
    }
}

/// The aws-lc-rs crypto provider, as the gateway uses it; every TLS config here is built
/// with it (no process-wide default provider needs installing).
pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The task group of the servers here: the identity provider's, shared rather than copied.
pub(crate) use rampart_idp::TaskGroup;

/// Shuts its [`TaskGroup`] down when dropped; for groups owned by a function call.
#[derive(Debug)]
pub(crate) struct ShutdownOnDrop(pub(crate) TaskGroup);

impl Drop for ShutdownOnDrop {
    fn drop(&mut self) {
        self.0.shutdown();
    }
}

/// A hyper executor that spawns into a [`TaskGroup`], so the tasks HTTP/2 connections spawn
/// (one per stream) die with the group.
#[derive(Debug, Clone)]
pub(crate) struct GroupExecutor(pub(crate) TaskGroup);

impl<F> hyper::rt::Executor<F> for GroupExecutor
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, future: F) {
        self.0.spawn(future);
    }
}

#[cfg(test)]
mod tests;
