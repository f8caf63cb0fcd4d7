//! The JSON access log and security-event log.
//!
//! One line per request (`"type":"access"`) and one per denial (`"type":"security"`),
//! with OpenTelemetry HTTP semantic-convention attribute names. Lines are formatted on
//! the request path and written by a dedicated thread, so a slow disk never stalls a
//! request; if the writer falls behind by more than the queue, lines are dropped and
//! counted in `rampart_access_log_dropped_total` rather than blocking traffic.

use std::io::Write;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// Where log lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogOutput {
    /// Nowhere.
    Off,
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
    /// Appended to a file.
    File(std::path::PathBuf),
}

impl LogOutput {
    /// Reads the `access_log.output` setting.
    pub fn parse(s: &str) -> Self {
        match s.trim() {
            "off" => LogOutput::Off,
            "stdout" => LogOutput::Stdout,
            "stderr" => LogOutput::Stderr,
            path => LogOutput::File(path.into()),
        }
    }
}

/// A handle that queues lines for the writer thread.
#[derive(Debug, Clone)]
pub struct LogSink {
    tx: Option<SyncSender<Vec<u8>>>,
}

/// The queue depth between the request path and the writer thread.
const QUEUE: usize = 65_536;

impl LogSink {
    /// A sink that drops everything.
    pub fn off() -> Self {
        Self { tx: None }
    }

    /// Starts a writer thread for `output`.
    pub fn start(output: &LogOutput) -> std::io::Result<Self> {
        let writer: Box<dyn Write + Send> = match output {
            LogOutput::Off => return Ok(Self::off()),
            LogOutput::Stdout => Box::new(std::io::stdout()),
            LogOutput::Stderr => Box::new(std::io::stderr()),
            LogOutput::File(p) => Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)?,
            ),
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE);
        std::thread::Builder::new()
            .name("rampart-log".into())
            .spawn(move || write_loop(rx, writer))?;
        Ok(Self { tx: Some(tx) })
    }

    /// True when lines go nowhere (skip formatting them).
    pub fn is_off(&self) -> bool {
        self.tx.is_none()
    }

    /// Queues one record as a JSON line; false when it had to be dropped.
    pub fn write<T: Serialize>(&self, record: &T) -> bool {
        let Some(tx) = &self.tx else {
            return true;
        };
        let mut line = Vec::with_capacity(512);
        if serde_json::to_writer(&mut line, record).is_err() {
            return false;
        }
        line.push(b'\n');
        match tx.try_send(line) {
            Ok(()) => true,
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
        }
    }
}

fn write_loop(rx: Receiver<Vec<u8>>, writer: Box<dyn Write + Send>) {
    let mut out = std::io::BufWriter::with_capacity(64 * 1024, writer);
    while let Ok(line) = rx.recv() {
        let _ = out.write_all(&line);
        // Drain what is queued, then flush once: one syscall per burst, not per line.
        while let Ok(more) = rx.try_recv() {
            let _ = out.write_all(&more);
        }
        let _ = out.flush();
    }
}

/// One layer's decision, as logged.
#[derive(Debug, Serialize)]
pub struct DecisionRecord<'a> {
    /// The layer.
    pub layer: &'a str,
    /// `allow`, `deny`, `delay`, `fail_open`, `fail_closed`.
    pub outcome: &'a str,
    /// The reason code.
    pub reason: &'a str,
    /// The rule that fired.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule_id: Option<&'a str>,
}

/// An access-log line.
#[derive(Debug, Serialize)]
pub struct AccessRecord<'a> {
    /// RFC 3339 UTC time the request head arrived.
    pub timestamp: String,
    /// Always `access`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The request id (also sent upstream as `x-request-id`).
    pub request_id: &'a str,
    /// `http.request.method`
    #[serde(rename = "http.request.method")]
    pub method: &'a str,
    /// `url.path` (normalized; the query is not logged, it may hold secrets).
    #[serde(rename = "url.path")]
    pub path: &'a str,
    /// `url.scheme`
    #[serde(rename = "url.scheme")]
    pub scheme: &'a str,
    /// `http.route`: the matched template.
    #[serde(rename = "http.route", skip_serializing_if = "Option::is_none")]
    pub route: Option<&'a str>,
    /// The matched route's name.
    #[serde(rename = "rampart.route.name", skip_serializing_if = "Option::is_none")]
    pub route_name: Option<&'a str>,
    /// `http.response.status_code`
    #[serde(rename = "http.response.status_code")]
    pub status: u16,
    /// Seconds from request head to end of response body.
    #[serde(rename = "http.server.request.duration")]
    pub duration_s: f64,
    /// `client.address`: the client as resolved through trusted proxies.
    #[serde(rename = "client.address")]
    pub client: String,
    /// `network.peer.address`: the TCP peer.
    #[serde(rename = "network.peer.address")]
    pub peer: String,
    /// `network.protocol.version`: `1.1`, `2`.
    #[serde(rename = "network.protocol.version")]
    pub protocol: &'static str,
    /// `server.address`: the Host asked for, without its port.
    #[serde(rename = "server.address", skip_serializing_if = "Option::is_none")]
    pub host: Option<&'a str>,
    /// `server.port`: the port of the Host asked for, when it names one.
    #[serde(rename = "server.port", skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// `user_agent.original`
    #[serde(
        rename = "user_agent.original",
        skip_serializing_if = "Option::is_none"
    )]
    pub user_agent: Option<&'a str>,
    /// `http.request.body.size`: bytes declared by Content-Length, when declared.
    #[serde(
        rename = "http.request.body.size",
        skip_serializing_if = "Option::is_none"
    )]
    pub request_body_size: Option<u64>,
    /// `http.response.body.size`: bytes sent.
    #[serde(rename = "http.response.body.size")]
    pub response_body_size: u64,
    /// False when the response body was cut short (client gone, upstream failed).
    #[serde(rename = "rampart.response.complete")]
    pub complete: bool,
    /// `tls.protocol.version` (`1.2`, `1.3`), on TLS connections.
    #[serde(
        rename = "tls.protocol.version",
        skip_serializing_if = "Option::is_none"
    )]
    pub tls_version: Option<&'a str>,
    /// `tls.client.subject`: the verified client certificate's subject (mTLS).
    #[serde(rename = "tls.client.subject", skip_serializing_if = "Option::is_none")]
    pub tls_client_subject: Option<&'a str>,
    /// The upstream that served it.
    #[serde(rename = "rampart.upstream", skip_serializing_if = "Option::is_none")]
    pub upstream: Option<&'a str>,
    /// `user.id`: the authenticated subject.
    #[serde(rename = "user.id", skip_serializing_if = "Option::is_none")]
    pub user: Option<&'a str>,
    /// A short SHA-256 of the credential presented (never the credential itself).
    #[serde(
        rename = "rampart.credential.hash",
        skip_serializing_if = "Option::is_none"
    )]
    pub credential_hash: Option<&'a str>,
    /// Every decision made, in order.
    #[serde(rename = "rampart.decisions")]
    pub decisions: Vec<DecisionRecord<'a>>,
}

/// A security-event line: one per denial.
#[derive(Debug, Serialize)]
pub struct SecurityEvent<'a> {
    /// RFC 3339 UTC time.
    pub timestamp: String,
    /// Always `security`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The request id.
    pub request_id: &'a str,
    /// The layer that denied.
    pub layer: &'a str,
    /// The reason code.
    pub reason: &'a str,
    /// The rule that fired.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule_id: Option<&'a str>,
    /// The status sent.
    #[serde(rename = "http.response.status_code")]
    pub status: u16,
    /// `client.address`
    #[serde(rename = "client.address")]
    pub client: String,
    /// `http.request.method`
    #[serde(rename = "http.request.method")]
    pub method: &'a str,
    /// `url.path`
    #[serde(rename = "url.path")]
    pub path: &'a str,
    /// `http.route`
    #[serde(rename = "http.route", skip_serializing_if = "Option::is_none")]
    pub route: Option<&'a str>,
    /// A short SHA-256 of the credential presented (never the credential itself).
    #[serde(
        rename = "rampart.credential.hash",
        skip_serializing_if = "Option::is_none"
    )]
    pub credential_hash: Option<&'a str>,
}

/// Formats a time as RFC 3339 UTC with milliseconds: `2026-12-04T15:37:23.123Z`.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, day) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day) in the proleptic Gregorian calendar,
/// counting in 400-year eras of 146097 days.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(951_782_400_123); // leap day 2000
        assert_eq!(rfc3339(t), "2000-02-29T00:00:00.123Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_796_398_643);
        assert_eq!(rfc3339(t), "2026-12-04T15:37:23.000Z");
    }

    #[test]
    fn output_setting() {
        assert_eq!(LogOutput::parse("off"), LogOutput::Off);
        assert_eq!(
            LogOutput::parse("/tmp/a.log"),
            LogOutput::File("/tmp/a.log".into())
        );
    }
}
