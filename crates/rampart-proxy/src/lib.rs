//! Rampart's data plane: listeners (TLS, HTTP/1.1, HTTP/2), request hygiene, routing,
//! the defense chain, the upstream client, and the admin listener.
//!
//! [`Gateway::start`] binds every listener of a [`Config`] and serves it;
//! [`Gateway::reload`] swaps in a new config without dropping a connection;
//! [`Gateway::shutdown`] drains.

pub mod accesslog;
mod admin;
mod auth;
pub mod authz;
pub mod body;
pub mod forwarded;
pub mod framing;
pub mod hygiene;
mod listener;
pub mod metrics;
pub mod normalize;
pub mod router;
pub mod runtime;
mod service;
pub mod tls;
pub mod upstream;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use hyper_util::server::graceful::GracefulShutdown;
use rampart_config::{Config, ConfigErrors};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use crate::accesslog::{LogOutput, LogSink};
pub use crate::runtime::Runtime;
pub use crate::service::Shared;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The config does not compile (TLS files, templates).
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    /// A listener could not bind.
    #[error("cannot listen on {addr} ({name}): {source}")]
    Bind {
        /// The listener name.
        name: String,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The access log could not be opened.
    #[error("access log: {0}")]
    Log(std::io::Error),
}

/// Why a reload was refused; the old config stays in force.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The new config does not compile.
    #[error("{0}")]
    Config(#[from] ConfigErrors),
    /// The new access-log output could not be opened.
    #[error("access log: {0}")]
    Log(std::io::Error),
}

/// A running gateway.
pub struct Gateway {
    shared: Arc<Shared>,
    file: PathBuf,
    listeners: Vec<(String, SocketAddr)>,
    admin: SocketAddr,
    stop: watch::Sender<bool>,
    admin_stop: watch::Sender<bool>,
    graceful: Arc<GracefulShutdown>,
    tasks: JoinSet<()>,
    admin_task: Option<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("listeners", &self.listeners)
            .field("admin", &self.admin)
            .finish()
    }
}

impl Gateway {
    /// Compiles `config`, binds every listener and the admin listener, and starts serving.
    /// `file` names the config in error messages. Port 0 binds an ephemeral port; see
    /// [`Gateway::listener_addr`].
    pub async fn start(config: Config, file: &Path) -> Result<Self, StartError> {
        let runtime = Runtime::compile(&config, file)?;
        let log = LogSink::start(&LogOutput::parse(&config.access_log.output))
            .map_err(StartError::Log)?;
        let shared = Arc::new(Shared::new(runtime, log));
        let (stop, stop_rx) = watch::channel(false);
        let graceful = Arc::new(GracefulShutdown::new());
        let mut tasks = JoinSet::new();
        let mut listeners = Vec::new();
        for l in &config.listeners {
            let tcp = TcpListener::bind(l.bind.value)
                .await
                .map_err(|source| StartError::Bind {
                    name: l.name.clone(),
                    addr: l.bind.value,
                    source,
                })?;
            let addr = tcp.local_addr().unwrap_or(l.bind.value);
            listeners.push((l.name.clone(), addr));
            tasks.spawn(listener::serve(
                tcp,
                l.name.as_str().into(),
                shared.clone(),
                graceful.clone(),
                stop_rx.clone(),
            ));
        }
        let admin_tcp = TcpListener::bind(config.admin.bind.value)
            .await
            .map_err(|source| StartError::Bind {
                name: "admin".into(),
                addr: config.admin.bind.value,
                source,
            })?;
        let admin = admin_tcp.local_addr().unwrap_or(config.admin.bind.value);
        // The admin listener has its own stop: it keeps answering (readiness 503) while the
        // data plane drains.
        let (admin_stop, admin_stop_rx) = watch::channel(false);
        let admin_task = tokio::spawn(admin::serve(admin_tcp, shared.clone(), admin_stop_rx));
        tracing::info!(listeners = ?listeners, admin = %admin, "gateway started");
        Ok(Self {
            shared,
            file: file.to_path_buf(),
            listeners,
            admin,
            stop,
            admin_stop,
            graceful,
            tasks,
            admin_task: Some(admin_task),
        })
    }

    /// The bound address of the listener `name`.
    pub fn listener_addr(&self, name: &str) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, a)| *a)
    }

    /// The bound address of the admin listener.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    /// The shared state (metrics, runtime), for tests and the binary.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Puts `config` in force for new requests; in-flight requests finish under the old
    /// one. Listener addresses cannot change without a restart: a reload that moves or
    /// adds a listener is applied for everything else and the difference is logged.
    pub fn reload(&self, config: Config) -> Result<(), ReloadError> {
        let result = self.try_reload(config);
        self.count_reload(result.is_ok());
        result
    }

    /// Counts a reload that failed before a config reached [`Gateway::reload`] (the file
    /// could not be read or parsed), so the reload metric covers every attempt.
    pub fn reload_failed(&self) {
        self.count_reload(false);
    }

    fn count_reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "error" };
        self.shared
            .metrics
            .reloads
            .get_or_create(&metrics::ResultLabels { result })
            .inc();
    }

    fn try_reload(&self, config: Config) -> Result<(), ReloadError> {
        let old = self.shared.runtime.load();
        let mut runtime = Runtime::compile_with(&config, &self.file, Some(&old))?;
        if old.config.access_log.output != config.access_log.output {
            let sink = LogSink::start(&LogOutput::parse(&config.access_log.output))
                .map_err(ReloadError::Log)?;
            self.shared.log.store(Arc::new(sink));
        }
        let bound: Vec<(&str, SocketAddr)> = old
            .config
            .listeners
            .iter()
            .map(|l| (l.name.as_str(), l.bind.value))
            .collect();
        let wanted: Vec<(&str, SocketAddr)> = config
            .listeners
            .iter()
            .map(|l| (l.name.as_str(), l.bind.value))
            .collect();
        if bound != wanted {
            tracing::warn!(
                running = ?bound,
                configured = ?wanted,
                "listener names or addresses changed: restart to apply; everything else is reloaded"
            );
        }
        // A running socket finds its settings by name: one that the new config renamed or
        // dropped keeps its previous settings until the restart, rather than refusing
        // every connection.
        for (name, _) in &self.listeners {
            if !runtime.listeners.contains_key(name)
                && let Some(previous) = old.listeners.get(name)
            {
                runtime.listeners.insert(name.clone(), previous.clone());
            }
        }
        if old.config.admin.bind.value != config.admin.bind.value {
            tracing::warn!(
                running = %self.admin,
                configured = %config.admin.bind.value,
                "admin address changed: restart to apply"
            );
        }
        drop(old);
        self.shared.runtime.store(Arc::new(runtime));
        Ok(())
    }

    /// Stops accepting, marks the gateway not ready, and waits up to the drain timeout
    /// for in-flight requests; connections still open then are cut.
    pub async fn shutdown(mut self) {
        self.shared.draining.store(true, Ordering::Relaxed);
        let drain = self.shared.runtime.load().drain_timeout();
        tracing::info!(drain_timeout = ?drain, "draining");
        // Stop the accept loops (they drop their listeners); the admin stays up meanwhile.
        let _ = self.stop.send(true);
        while self.tasks.join_next().await.is_some() {}
        // Every accept loop has ended and dropped its clone; connections hold watchers only.
        let drained = match Arc::try_unwrap(self.graceful) {
            Ok(graceful) => listener::within(drain, graceful.shutdown()).await,
            Err(_) => {
                tracing::error!("connection tracker still shared; not waiting for the drain");
                false
            }
        };
        if drained {
            tracing::info!("drained");
        } else {
            tracing::warn!("drain timeout reached; closing remaining connections");
        }
        let _ = self.admin_stop.send(true);
        if let Some(t) = self.admin_task.take() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(1), t).await;
        }
    }
}
