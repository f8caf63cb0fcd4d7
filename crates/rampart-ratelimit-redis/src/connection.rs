//! [`Connector`]: how every Redis-backed type of this crate reaches Redis. One multiplexed
//! connection per value, opened on first use and again after it broke; a request's call
//! bounded by the timeout and guarded by the circuit breaker; an operator's call bounded
//! more loosely and kept away from the breaker.

use std::future::Future;
use std::time::{Duration, Instant};

use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
use tokio::sync::Mutex;

use crate::breaker::CircuitBreaker;
use crate::limiter::{RedisError, RedisSettings};

/// Bound on a whole operator's request (each call inside it is also bounded by the
/// per-call timeout): a listing scans the keyspace in many calls, and it is an operator's
/// request, not a request's decision, so it may take longer than one decision.
pub(crate) const ADMIN_TIMEOUT: Duration = Duration::from_secs(2);

/// Keys asked for per `SCAN` call: large enough for few round trips, small enough that one
/// call does not hold Redis for long.
pub(crate) const SCAN_COUNT: u64 = 1000;

/// A Redis client with its shared connection, its timeout and its circuit breaker.
#[derive(Debug)]
pub(crate) struct Connector {
    client: redis::Client,
    timeout: Duration,
    conn: Mutex<Option<MultiplexedConnection>>,
    breaker: CircuitBreaker,
}

impl Connector {
    /// A connector for `settings`. Does not connect: the first call does.
    pub(crate) fn new(settings: &RedisSettings) -> Result<Self, redis::RedisError> {
        Ok(Self {
            client: redis::Client::open(settings.url.as_str())?,
            timeout: settings.timeout,
            conn: Mutex::new(None),
            breaker: CircuitBreaker::new(settings.breaker_failures, settings.breaker_cool_down),
        })
    }

    /// The per-call timeout.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }

    /// The circuit breaker guarding [`Connector::guarded`] calls.
    pub(crate) fn breaker(&self) -> &CircuitBreaker {
        &self.breaker
    }

    /// Runs `call` (a request's decision) if the breaker allows it, within the timeout,
    /// reporting the result to the breaker and dropping a broken connection.
    pub(crate) async fn guarded<T>(
        &self,
        call: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<T, RedisError> {
        let Some(permit) = self.breaker.try_acquire(Instant::now()) else {
            return Err(RedisError::CircuitOpen);
        };
        let result = match tokio::time::timeout(self.timeout, call).await {
            // The client's own response timeout is the same bound: report both alike.
            Ok(Err(RedisError::Redis(e))) if e.is_timeout() => {
                Err(RedisError::Timeout(self.timeout))
            }
            Ok(result) => result,
            Err(_) => Err(RedisError::Timeout(self.timeout)),
        };
        match result {
            Ok(answer) => {
                permit.succeeded();
                Ok(answer)
            }
            Err(e) => {
                if drops_connection(&e) {
                    self.forget_connection();
                }
                permit.failed(Instant::now());
                Err(e)
            }
        }
    }

    /// Runs an operator's request under [`ADMIN_TIMEOUT`] (or the per-call timeout if that
    /// is longer), dropping a broken connection. It does not go through the breaker: an
    /// operator neither waits for it nor trips it for the decisions.
    pub(crate) async fn admin<T>(
        &self,
        request: impl Future<Output = Result<T, RedisError>>,
    ) -> Result<T, RedisError> {
        let bound = ADMIN_TIMEOUT.max(self.timeout);
        let result = match tokio::time::timeout(bound, request).await {
            Ok(Err(RedisError::Redis(e))) if e.is_timeout() => {
                Err(RedisError::Timeout(self.timeout))
            }
            Ok(result) => result,
            Err(_) => Err(RedisError::Timeout(bound)),
        };
        if let Err(e) = &result
            && drops_connection(e)
        {
            self.forget_connection();
        }
        result
    }

    /// The shared connection, connecting when there is none. One task connects at a time;
    /// the others wait for it (within their own timeout) rather than open more sockets.
    pub(crate) async fn connection(&self) -> Result<MultiplexedConnection, RedisError> {
        let mut slot = self.conn.lock().await;
        if let Some(conn) = slot.as_ref() {
            return Ok(conn.clone());
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        let conn = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        *slot = Some(conn.clone());
        Ok(conn)
    }

    fn forget_connection(&self) {
        // When another task holds the slot it is connecting afresh anyway.
        if let Ok(mut slot) = self.conn.try_lock() {
            *slot = None;
        }
    }
}

/// Errors after which the connection is not worth keeping: it is broken, or it hangs.
fn drops_connection(e: &RedisError) -> bool {
    match e {
        RedisError::Timeout(_) => true,
        RedisError::Redis(e) => e.is_io_error() || e.is_connection_dropped() || e.is_timeout(),
        RedisError::CircuitOpen | RedisError::BadReply(_) => false,
    }
}
