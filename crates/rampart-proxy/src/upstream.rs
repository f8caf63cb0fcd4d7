//! Upstream pools: round-robin targets behind a keep-alive connection pool, with connect
//! and response timeouts that turn into 502 and 504.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rampart_config::Upstream;

use crate::body::RequestBody;

/// A named pool of upstream targets.
pub struct UpstreamPool {
    /// The upstream's name (a metrics label).
    pub name: Arc<str>,
    targets: Vec<Authority>,
    next: AtomicUsize,
    client: Client<HttpConnector, RequestBody>,
    response_timeout: Duration,
}

impl std::fmt::Debug for UpstreamPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamPool")
            .field("name", &self.name)
            .field("targets", &self.targets)
            .finish()
    }
}

/// How a request to the upstream failed.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// No connection could be opened (refused, unreachable, connect timeout): 502.
    #[error("connect: {0}")]
    Connect(String),
    /// No response head within the response timeout: 504.
    #[error("no response within {0:?}")]
    Timeout(Duration),
    /// The connection failed mid-exchange (reset, malformed response): 502.
    #[error("protocol: {0}")]
    Protocol(String),
}

impl UpstreamError {
    /// The metrics label of this failure.
    pub fn kind(&self) -> &'static str {
        match self {
            UpstreamError::Connect(_) => "connect",
            UpstreamError::Timeout(_) => "timeout",
            UpstreamError::Protocol(_) => "protocol",
        }
    }
}

impl UpstreamPool {
    /// Builds a pool from its config. Targets were checked by the config crate.
    pub fn new(name: &str, cfg: &Upstream) -> Result<Self, String> {
        let targets = cfg
            .targets
            .iter()
            .map(|t| {
                t.value
                    .parse::<Authority>()
                    .map_err(|e| format!("target {:?}: {e}", t.value))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(cfg.connect_timeout.0));
        connector.set_nodelay(true);
        connector.enforce_http(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .pool_idle_timeout(cfg.pool_idle_timeout.0)
            .pool_max_idle_per_host(cfg.pool_max_idle_per_target)
            .set_host(false)
            .build(connector);
        Ok(Self {
            name: name.into(),
            targets,
            next: AtomicUsize::new(0),
            client,
            response_timeout: cfg.response_timeout.0,
        })
    }

    /// Sends `req` (origin-form URI) to the next target and waits for the response head.
    pub async fn send(
        &self,
        mut req: Request<RequestBody>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let target = self
            .targets
            .get(n % self.targets.len().max(1))
            .cloned()
            .ok_or_else(|| UpstreamError::Connect("no targets".into()))?;
        let pq = req
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        let mut parts = http::uri::Parts::default();
        parts.scheme = Some(Scheme::HTTP);
        parts.authority = Some(target);
        parts.path_and_query = Some(pq);
        *req.uri_mut() =
            Uri::from_parts(parts).map_err(|e| UpstreamError::Protocol(e.to_string()))?;
        *req.version_mut() = http::Version::HTTP_11;
        match tokio::time::timeout(self.response_timeout, self.client.request(req)).await {
            Err(_) => Err(UpstreamError::Timeout(self.response_timeout)),
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(e)) if e.is_connect() => Err(UpstreamError::Connect(error_chain(&e))),
            Ok(Err(e)) => Err(UpstreamError::Protocol(error_chain(&e))),
        }
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}
