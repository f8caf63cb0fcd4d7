//! The `rampart` binary: the only place that reads files, environment and flags.

mod demo;

/// mimalloc: the request path allocates and frees many small short-lived buffers (header
/// values, ids, log lines); measured faster than the system allocator (docs/BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use rampart_config::{Config, ConfigErrors};
use rampart_proxy::Gateway;

/// Rampart: an API security gateway in one binary.
///
/// It sits in front of HTTP APIs and applies layered defenses to every request: request
/// hygiene, IP filtering, TLS with HSTS and mTLS, and (as they land) rate limits, token
/// validation, access control and a WAF.
#[derive(Debug, Parser)]
#[command(name = "rampart", version, about, long_about, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve a configuration. SIGHUP or a change of the config (or a certificate file it
    /// names) reloads it; an invalid new config leaves the old one in force. SIGTERM or
    /// Ctrl-C drains in-flight requests, then exits.
    Run {
        /// The YAML config file.
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
        /// Worker threads (default: one per CPU). With 1, the gateway runs on a single
        /// event-loop thread.
        #[arg(long, value_name = "N")]
        workers: Option<usize>,
        /// How often to check the config and certificate files for changes; 0 turns
        /// file watching off (SIGHUP still reloads).
        #[arg(long, value_name = "SECONDS", default_value_t = 2)]
        watch_interval: u64,
    },
    /// Check a configuration: print OK, or every error with file:line:column, and exit
    /// non-zero on error. TLS files are loaded too.
    Validate {
        /// The YAML config file.
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
    },
    /// Run the whole product on this machine: a demo API on 127.0.0.1:9000, a demo
    /// identity provider on 127.0.0.1:9100, the gateway on 127.0.0.1:8080 (HTTP) and
    /// 127.0.0.1:8443 (TLS, self-signed, HSTS), the admin listener on 127.0.0.1:9901.
    /// Prints curl commands to try.
    Demo,
    /// Print the JSON Schema of the config file.
    Schema,
    /// Role audit: for every route with `authorize`, which roles may call which method, on
    /// any object, only their own, under conditions, or not at all, and the requirement or
    /// Cedar policies that decide it. For permission reviews.
    Roles {
        /// The YAML config file (its `policies` name the Cedar schema and policy files).
        #[arg(short, long, value_name = "FILE")]
        config: PathBuf,
        /// Output format.
        #[arg(long, value_enum, default_value_t = RolesFormat::Table)]
        format: RolesFormat,
    },
}

/// How `rampart roles` prints.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum RolesFormat {
    /// An aligned table.
    Table,
    /// CSV with a header line, for a spreadsheet.
    Csv,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing();
    let result = match cli.command {
        Command::Validate { config } => validate(&config),
        Command::Schema => {
            let schema = rampart_config::json_schema();
            match serde_json::to_string_pretty(&schema) {
                Ok(s) => {
                    println!("{s}");
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => Err(e.into()),
            }
        }
        Command::Run {
            config,
            workers,
            watch_interval,
        } => runtime(workers)
            .and_then(|rt| rt.block_on(run(config, Duration::from_secs(watch_interval)))),
        Command::Demo => runtime(None).and_then(|rt| rt.block_on(demo::run())),
        Command::Roles { config, format } => roles(&config, format),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("rampart: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("RAMPART_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_current_span(false)
        .try_init();
}

/// The async runtime. One worker means one event-loop thread (the nginx worker model):
/// no work stealing and no cross-thread wake-ups, which is measurably cheaper per request
/// than a one-thread work-stealing pool.
fn runtime(workers: Option<usize>) -> anyhow::Result<tokio::runtime::Runtime> {
    let mut b = match workers {
        Some(1) => tokio::runtime::Builder::new_current_thread(),
        Some(n) => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n.max(1));
            b
        }
        None => tokio::runtime::Builder::new_multi_thread(),
    };
    b.enable_all().build().context("starting the async runtime")
}

/// Reads and parses a config file; every error carries the file name and location.
fn load(path: &Path) -> Result<Config, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![rampart_config::ConfigError {
            file: path.to_path_buf(),
            line: None,
            column: None,
            message: format!("cannot read: {e}"),
        }])
    })?;
    rampart_config::parse(&text, path)
}

fn roles(path: &Path, format: RolesFormat) -> anyhow::Result<ExitCode> {
    let rows = load(path).and_then(|config| rampart_proxy::authz::role_audit(&config, path));
    match rows {
        Ok(rows) => {
            if rows.is_empty() {
                eprintln!("no route has `authorize`: nothing to audit");
            }
            let text = match format {
                RolesFormat::Table => rampart_authz::audit::table(&rows),
                RolesFormat::Csv => rampart_authz::audit::csv(&rows),
            };
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            eprintln!("{errors}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn validate(path: &Path) -> anyhow::Result<ExitCode> {
    // Compiling builds key stores, which start their fetches on a runtime; validation
    // does not wait for them.
    let rt = runtime(Some(1))?;
    let checked = load(path)
        .and_then(|c| rt.block_on(async { rampart_proxy::Runtime::compile(&c, path).map(drop) }));
    match checked {
        Ok(()) => {
            println!("{}: OK", path.display());
            Ok(ExitCode::SUCCESS)
        }
        Err(errors) => {
            for e in &errors.0 {
                eprintln!("{e}");
            }
            eprintln!("{}: {} error(s)", path.display(), errors.0.len());
            Ok(ExitCode::FAILURE)
        }
    }
}

async fn run(path: PathBuf, watch_interval: Duration) -> anyhow::Result<ExitCode> {
    let config = load(&path).map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut watched = Fingerprint::of(&path, &config);
    let gateway = Gateway::start(config, &path).await?;
    let mut hup = signal(tokio::signal::unix::SignalKind::hangup())?;
    let mut term = signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut int = signal(tokio::signal::unix::SignalKind::interrupt())?;
    let mut tick = tokio::time::interval(if watch_interval.is_zero() {
        Duration::from_secs(3600)
    } else {
        watch_interval
    });
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = hup.recv() => reload(&gateway, &path, &mut watched, "SIGHUP"),
            _ = tick.tick(), if !watch_interval.is_zero() => {
                if watched.changed(&path) {
                    reload(&gateway, &path, &mut watched, "file change");
                }
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
        }
    }
    gateway.shutdown().await;
    Ok(ExitCode::SUCCESS)
}

fn signal(kind: tokio::signal::unix::SignalKind) -> anyhow::Result<tokio::signal::unix::Signal> {
    tokio::signal::unix::signal(kind).context("installing a signal handler")
}

fn reload(gateway: &Gateway, path: &Path, watched: &mut Fingerprint, why: &str) {
    let outcome = match load(path) {
        Ok(c) => {
            let fp = Fingerprint::of(path, &c);
            gateway.reload(c).map(|()| fp)
        }
        Err(e) => {
            gateway.reload_failed();
            Err(e.into())
        }
    };
    match outcome {
        Ok(fp) => {
            *watched = fp;
            tracing::info!(trigger = why, config = %path.display(), "configuration reloaded");
        }
        Err(e) => {
            // Remember the broken file's state so it is not retried every tick; the next
            // edit or SIGHUP tries again.
            watched.refresh(path);
            tracing::error!(trigger = why, config = %path.display(), errors = %e, "reload refused; the previous configuration stays in force");
        }
    }
}

/// Modification times and sizes of the config file and the TLS and policy files it names.
#[derive(Debug, Default)]
struct Fingerprint {
    files: Vec<(PathBuf, Option<(SystemTime, u64)>)>,
}

impl Fingerprint {
    fn of(path: &Path, config: &Config) -> Self {
        let mut files = vec![path.to_path_buf()];
        for l in &config.listeners {
            if let Some(tls) = &l.tls {
                files.push(tls.cert.value.clone());
                files.push(tls.key.value.clone());
                if let Some(ca) = &tls.client_auth {
                    files.push(ca.ca.value.clone());
                }
            }
        }
        // Policies reload with the config: an edited policy or schema file is a reload.
        if let Some(p) = &config.policies {
            files.push(p.schema.value.clone());
            files.extend(p.files.iter().map(|f| f.value.clone()));
            files.extend(p.shadow_files.iter().map(|f| f.value.clone()));
        }
        Self {
            files: files
                .into_iter()
                .map(|f| {
                    let s = stat(&f);
                    (f, s)
                })
                .collect(),
        }
    }

    fn changed(&self, _path: &Path) -> bool {
        self.files.iter().any(|(f, s)| stat(f) != *s)
    }

    fn refresh(&mut self, path: &Path) {
        if let Some(first) = self.files.first_mut() {
            first.1 = stat(path);
        }
        for (f, s) in self.files.iter_mut().skip(1) {
            *s = stat(f);
        }
    }
}

fn stat(p: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(p).ok()?;
    Some((m.modified().ok()?, m.len()))
}
