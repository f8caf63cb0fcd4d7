//! The nginx-compatible leaky bucket against real nginx: the same request traces go to an
//! nginx `limit_req` location and through [`Zones`] (one zone or several), and every
//! request must get the same verdict from both: passed at once, delayed, or rejected. A
//! second test runs the same traces through the gateway's `RateLimit` defense (the zones
//! as `leaky_bucket` policies of one route) and requires the model's verdict and delay on
//! every request, so nginx, the model and the gateway agree.
//!
//! nginx runs as one process (`master_process off`) from a temporary directory on a free
//! port of 127.0.0.1, with one location per configuration under test, each serving a small
//! static file (`return` would answer before `limit_req` runs). Each request goes on its
//! own connection at its planned offset; its key is a header that is fresh for every trace
//! attempt, so traces do not share buckets. nginx's verdict is read from the response
//! (status 429, or 200 with a latency above [`DELAYED_LATENCY`]) and the model is fed the
//! send times we measured. nginx's own account must agree too: `$limit_req_status` and
//! `$msec - $request_time` (when nginx saw the request) from its access log, and from its
//! error log the zone it blames for each delay or refusal and the excess it computed, from
//! which the length of each delay follows; the model, run again on nginx's clock, must
//! blame the same zone and compute the same delay to within 3 ms.
//!
//! Timing on a loaded machine is noisy, so traces are planned away from every point where a
//! verdict flips (moving any one request by [`MARGIN`] must not change any verdict, checked
//! on the measured times), and an attempt that the machine disturbed (a request nginx saw
//! late, a fast answer that came slowly, a planned time that slipped too close to a
//! boundary) is run again with fresh keys, up to [`ATTEMPTS`] times. A disagreement in an
//! undisturbed attempt fails at once, with the whole trace printed.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rampart_ratelimit::algo::LeakyState;
use rampart_ratelimit::{LeakyBucket, Outcome, Zones, ZonesDecision};

/// No request may sit within this much of a point where a verdict would flip.
const MARGIN: Duration = Duration::from_millis(30);
/// A 200 slower than this was delayed by nginx.
const DELAYED_LATENCY: Duration = Duration::from_millis(40);
/// The model's delays must be at least this long, so a delayed answer is clearly slow.
const MIN_DELAY: Duration = Duration::from_millis(80);
/// How late nginx may see a request, after we sent it, before the attempt counts as disturbed.
const MAX_LAG_MS: f64 = 20.0;
/// How much longer than the model's delay nginx may take before the attempt is disturbed.
const DELAY_SLACK_MS: i64 = 60;
/// Runs of one trace when the machine disturbs it.
const ATTEMPTS: usize = 3;
/// Model time origin, far from 0 so that moving a request earlier never saturates.
const T0: u64 = 1_000_000_000_000;

// ---------------------------------------------------------------------------------------
// What is tested: zones, locations, traces
// ---------------------------------------------------------------------------------------

/// A `limit_req_zone`: its name, the request header that is its key, and its rate.
struct ZoneDef {
    name: &'static str,
    header: Header,
    count: u64,
    per_minute: bool,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Header {
    /// `X-Key`, nginx `$http_x_key`.
    Key,
    /// `X-Key2`, nginx `$http_x_key2`.
    Key2,
}

/// `limit_req`'s delay parameter.
#[derive(Clone, Copy)]
enum DelayParam {
    /// None given: every excess request waits.
    Absent,
    /// `nodelay`.
    NoDelay,
    /// `delay=N`: the first N excess requests pass at once.
    Delay(u64),
}

/// A `location` with its `limit_req` directives, in order: zone name, burst, delay.
struct Location {
    path: &'static str,
    limits: &'static [(&'static str, u64, DelayParam)],
}

const ZONES: &[ZoneDef] = &[
    zone_def("a", Header::Key, 10, false),
    zone_def("b", Header::Key, 10, false),
    zone_def("c", Header::Key, 10, false),
    zone_def("d", Header::Key, 10, false),
    zone_def("e", Header::Key, 30, true),
    zone_def("f1", Header::Key, 10, false),
    zone_def("f2", Header::Key2, 5, false),
    zone_def("h1", Header::Key, 10, false),
    zone_def("h2", Header::Key, 2, false),
];

const fn zone_def(name: &'static str, header: Header, count: u64, per_minute: bool) -> ZoneDef {
    ZoneDef {
        name,
        header,
        count,
        per_minute,
    }
}

const LOCATIONS: &[Location] = &[
    // rate=10r/s, no burst.
    Location {
        path: "/a/",
        limits: &[("a", 0, DelayParam::Absent)],
    },
    // 10r/s burst=5 nodelay.
    Location {
        path: "/b/",
        limits: &[("b", 5, DelayParam::NoDelay)],
    },
    // 10r/s burst=5: the excess waits.
    Location {
        path: "/c/",
        limits: &[("c", 5, DelayParam::Absent)],
    },
    // 10r/s burst=6 delay=2: two-stage limiting.
    Location {
        path: "/d/",
        limits: &[("d", 6, DelayParam::Delay(2))],
    },
    // 30r/m burst=2 nodelay: nginx's per-minute integer rate (500 thousandths per second).
    Location {
        path: "/e/",
        limits: &[("e", 2, DelayParam::NoDelay)],
    },
    // Two zones with different keys, in both orders: a refusal by either charges neither.
    Location {
        path: "/f/",
        limits: &[
            ("f1", 3, DelayParam::NoDelay),
            ("f2", 2, DelayParam::NoDelay),
        ],
    },
    Location {
        path: "/g/",
        limits: &[
            ("f2", 2, DelayParam::NoDelay),
            ("f1", 3, DelayParam::NoDelay),
        ],
    },
    // Two delaying zones on one key, in both orders: the longest delay wins.
    Location {
        path: "/h/",
        limits: &[
            ("h1", 8, DelayParam::Delay(1)),
            ("h2", 5, DelayParam::Delay(4)),
        ],
    },
    Location {
        path: "/i/",
        limits: &[
            ("h2", 5, DelayParam::Delay(4)),
            ("h1", 8, DelayParam::Delay(1)),
        ],
    },
];

/// One request of a trace: when (ms from the trace's start) and which keys (suffixes made
/// unique per attempt).
#[derive(Clone, Copy, Debug)]
struct Req {
    at_ms: u64,
    key: &'static str,
    key2: &'static str,
}

struct Trace {
    name: &'static str,
    location: &'static str,
    reqs: Vec<Req>,
    /// The verdicts the trace was designed for (checked against the model, not nginx).
    planned: &'static str,
}

/// `n` requests back to back at `at_ms`, on keys `key`/`key2`.
fn burst(at_ms: u64, n: usize, key: &'static str, key2: &'static str) -> Vec<Req> {
    vec![Req { at_ms, key, key2 }; n]
}

/// One request at each offset, all on key "k".
fn at(offsets: &[u64]) -> Vec<Req> {
    offsets
        .iter()
        .flat_map(|t| burst(*t, 1, "k", "k"))
        .collect()
}

fn traces() -> Vec<Trace> {
    let cat = |parts: Vec<Vec<Req>>| parts.into_iter().flatten().collect::<Vec<_>>();
    let multi_keys = cat(vec![
        // Fill f2 on key P (and f1 on A to 2 in excess); then f2 refuses twice.
        burst(0, 5, "A", "P"),
        // f1 was not charged for those refusals: one more fits in f1 (excess 3 = burst).
        burst(0, 1, "A", "Q"),
        // f1 refuses; f2 on key Z must stay untouched...
        burst(0, 1, "A", "Z"),
        // ...so Z takes its full burst of 1 + 2 (a fourth is refused by f2).
        burst(0, 4, "B", "Z"),
        // Both have leaked: one passes, the next is refused by f2 again.
        burst(300, 2, "A", "P"),
    ]);
    let two_delays = cat(vec![burst(0, 7, "k", "k"), at(&[650, 1300])]);
    vec![
        // No burst: one request per 100 ms; refusals in between cost nothing.
        Trace {
            name: "a",
            location: "/a/",
            reqs: cat(vec![
                burst(0, 4, "k", "k"),
                at(&[50, 150, 200, 300, 330, 460, 700, 720, 900]),
            ]),
            planned: "PRRR RPRPRP PRP",
        },
        // nodelay: six at once, then as many as have leaked out.
        Trace {
            name: "b",
            location: "/b/",
            reqs: cat(vec![
                burst(0, 8, "k", "k"),
                at(&[150, 155]),
                burst(450, 4, "k", "k"),
                at(&[700]),
            ]),
            planned: "PPPPPPRR PR PPPR P",
        },
        // Queued: delays of 100 to 500 ms, then refusals; once drained, passes at once.
        Trace {
            name: "c",
            location: "/c/",
            reqs: cat(vec![
                burst(0, 8, "k", "k"),
                burst(700, 3, "k", "k"),
                at(&[1250]),
            ]),
            planned: "PDDDDDRR PDD P",
        },
        // delay=2: two excess requests pass at once, the next four wait, then refusals.
        Trace {
            name: "d",
            location: "/d/",
            reqs: cat(vec![
                burst(0, 9, "k", "k"),
                at(&[350]),
                burst(900, 5, "k", "k"),
                at(&[1600]),
            ]),
            planned: "PPPDDDDRR D PPPDD P",
        },
        // 30r/m: one request per 2 s leaks out.
        Trace {
            name: "e",
            location: "/e/",
            reqs: cat(vec![burst(0, 4, "k", "k"), at(&[1000, 2300, 2330])]),
            planned: "PPPR R PR",
        },
        // Two zones, two keys, both orders: see `multi_keys`.
        Trace {
            name: "f",
            location: "/f/",
            reqs: multi_keys.clone(),
            planned: "PPPRR P R PPPR PR",
        },
        Trace {
            name: "g",
            location: "/g/",
            reqs: multi_keys,
            planned: "PPPRR P R PPPR PR",
        },
        // Two delaying zones, both orders: h1 sets the first delays, the slower h2 the
        // later ones (500 ms where h1 says 400), then refuses.
        Trace {
            name: "h",
            location: "/h/",
            reqs: two_delays.clone(),
            planned: "PPDDDDR DD",
        },
        Trace {
            name: "i",
            location: "/i/",
            reqs: two_delays,
            planned: "PPDDDDR DD",
        },
    ]
}

// ---------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------

/// Every trace, replayed against nginx and the model, gets the same verdicts from both.
#[test]
fn nginx_limit_req_agrees_with_the_model() {
    let started = Instant::now();
    let nginx = Nginx::start();
    let mut summary = String::new();
    for trace in traces() {
        let model = LocationModel::new(trace.location);
        let mut tries = Vec::new();
        let mut passed = false;
        for attempt in 1..=ATTEMPTS {
            let observed = nginx.replay(&trace, attempt);
            let checked = check(&model, &trace, &observed);
            if checked.disturbed.is_empty() && checked.disagreements.is_empty() {
                let _ = writeln!(
                    summary,
                    "trace {} ({}): {} requests agree, attempt {attempt}",
                    trace.name,
                    trace.location,
                    trace.reqs.len()
                );
                passed = true;
                break;
            }
            if checked.disturbed.is_empty() {
                panic!(
                    "nginx and the model disagree on trace {} ({}), attempt {attempt}:\n{}\n{}",
                    trace.name,
                    trace.location,
                    checked.disagreements.join("\n"),
                    checked.table
                );
            }
            eprintln!(
                "trace {} attempt {attempt} disturbed, running it again:\n  {}",
                trace.name,
                checked.disturbed.join("\n  ")
            );
            tries.push(checked);
        }
        if !passed {
            let mut report = String::new();
            for (n, t) in tries.iter().enumerate() {
                let _ = writeln!(
                    report,
                    "attempt {}:\n  disturbed: {}\n  disagreements: {}\n{}",
                    n + 1,
                    t.disturbed.join("\n    "),
                    if t.disagreements.is_empty() {
                        String::from("none")
                    } else {
                        t.disagreements.join("\n    ")
                    },
                    t.table
                );
            }
            panic!(
                "trace {} ({}) was disturbed in all {ATTEMPTS} attempts (machine too busy, or \
                 nginx and the model disagree):\n{report}",
                trace.name, trace.location
            );
        }
    }
    eprintln!("{summary}all traces agree in {:?}", started.elapsed());
}

/// The traces, at their planned offsets, get the planned verdicts from the model and keep
/// away from every boundary (no nginx needed: a check of the test's own design).
#[test]
fn traces_are_planned_away_from_boundaries() {
    for trace in traces() {
        let model = LocationModel::new(trace.location);
        // Back-to-back requests go out about 0.1 ms apart.
        let times: Vec<u64> = trace
            .reqs
            .iter()
            .enumerate()
            .map(|(i, r)| T0 + r.at_ms * 1_000_000 + i as u64 * 100_000)
            .collect();
        let verdicts: String = model
            .outcomes(&trace.reqs, &times)
            .into_iter()
            .map(|o| Verdict::of(o).letter())
            .collect();
        let planned: String = trace.planned.split_whitespace().collect();
        assert_eq!(verdicts, planned, "trace {}", trace.name);
        if let Some(problem) = model.near_boundary(&trace.reqs, &times) {
            panic!("trace {}: {problem}", trace.name);
        }
    }
}

/// The gateway's own path: each location's zones as `leaky_bucket` policies of one route,
/// keyed by the same headers, run by the `RateLimit` defense on a manual clock. On every
/// trace it must decide as the model does (the test above holds the model to nginx): the
/// same verdict, and for a delayed request the same delay.
#[test]
fn the_gateway_defense_decides_as_the_model() {
    use rampart_core::http_reexport::{HeaderValue, Request, header::HeaderName};
    use rampart_core::{ClientInfo, Clock, Defense, ManualClock, RequestContext};
    use rampart_ratelimit::{Audience, KeyPart, Policy, PolicySettings, RateLimit, Spec};
    use std::sync::Arc;

    for trace in traces() {
        let location = LOCATIONS.iter().find(|l| l.path == trace.location).unwrap();
        let policies: Vec<Arc<Policy>> = location
            .limits
            .iter()
            .map(|(name, burst, delay)| {
                let def = ZONES.iter().find(|z| z.name == *name).unwrap();
                let header = match def.header {
                    Header::Key => "x-key",
                    Header::Key2 => "x-key2",
                };
                Arc::new(Policy::new(PolicySettings {
                    name: (*name).to_string(),
                    spec: Spec::LeakyBucket {
                        count: def.count,
                        per_minute: def.per_minute,
                        burst: *burst,
                        delay: match delay {
                            DelayParam::Absent => 0,
                            DelayParam::NoDelay => *burst,
                            DelayParam::Delay(n) => *n,
                        },
                    },
                    key: vec![KeyPart::Header(HeaderName::from_static(header))],
                    ipv6_prefix: 64,
                    audience: Audience::All,
                    cost: 1,
                    count_rejected: false,
                    shadow: false,
                    status: rampart_core::http_reexport::StatusCode::TOO_MANY_REQUESTS,
                    headers: true,
                    max_keys: 1000,
                    ban: None,
                    ban_on_auth_failures: false,
                }))
            })
            .collect();
        let clock = Arc::new(ManualClock::new());
        let origin = clock.now();
        let defense = RateLimit::new(policies, clock.clone(), origin);
        let model = LocationModel::new(trace.location);
        let times: Vec<u64> = trace
            .reqs
            .iter()
            .enumerate()
            .map(|(i, r)| T0 + r.at_ms * 1_000_000 + i as u64 * 100_000)
            .collect();
        let expected = model.outcomes(&trace.reqs, &times);
        let mut elapsed = 0;
        for (n, ((req, t), want)) in trace.reqs.iter().zip(&times).zip(expected).enumerate() {
            clock.advance(Duration::from_nanos(t - T0 - elapsed));
            elapsed = t - T0;
            let mut head = Request::new(()).into_parts().0;
            head.headers
                .insert("x-key", HeaderValue::from_static(req.key));
            head.headers
                .insert("x-key2", HeaderValue::from_static(req.key2));
            let ip = std::net::IpAddr::V4(Ipv4Addr::LOCALHOST);
            let mut ctx = RequestContext::new(
                "r".into(),
                ClientInfo {
                    ip,
                    peer: SocketAddr::new(ip, 1),
                    tls: None,
                },
            );
            let got = block_on(defense.request_head(&mut ctx, &mut head)).unwrap();
            let same = match (&got, want) {
                (rampart_core::Verdict::Continue, Outcome::Allow { .. }) => true,
                (rampart_core::Verdict::Delay(d), Outcome::Delay(w)) => *d == w,
                (rampart_core::Verdict::Deny(_), Outcome::Deny { .. }) => true,
                _ => false,
            };
            assert!(
                same,
                "trace {} ({}), request {n}: the gateway answered {got:?}, the model {want:?}",
                trace.name, trace.location
            );
        }
    }
}

/// Polls a future that never waits (in-memory policies decide synchronously).
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
    }
}

// ---------------------------------------------------------------------------------------
// The model side
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Verdict {
    Passed,
    Delayed,
    Rejected,
}

impl Verdict {
    fn of(outcome: Outcome) -> Self {
        match outcome {
            Outcome::Allow { .. } => Self::Passed,
            Outcome::Delay(_) => Self::Delayed,
            Outcome::Deny { .. } => Self::Rejected,
        }
    }

    fn letter(self) -> char {
        match self {
            Self::Passed => 'P',
            Self::Delayed => 'D',
            Self::Rejected => 'R',
        }
    }

    /// nginx's `$limit_req_status`.
    fn from_nginx(status: &str) -> Option<Self> {
        match status {
            "PASSED" => Some(Self::Passed),
            "DELAYED" => Some(Self::Delayed),
            "REJECTED" => Some(Self::Rejected),
            _ => None,
        }
    }
}

/// A location's zones as [`Zones`], with the header that keys each.
struct LocationModel {
    zones: Zones,
    headers: Vec<Header>,
    /// Per zone: its name, rate (thousandths of a request per second, as nginx) and
    /// `delay` (thousandths of a request), to recompute the delay nginx logs.
    names: Vec<&'static str>,
    rates: Vec<u64>,
    delays: Vec<u64>,
}

impl LocationModel {
    fn new(path: &str) -> Self {
        let location = LOCATIONS.iter().find(|l| l.path == path).unwrap();
        let mut limits = Vec::new();
        let mut headers = Vec::new();
        let (mut names, mut rates, mut delays) = (Vec::new(), Vec::new(), Vec::new());
        for (name, burst, delay) in location.limits {
            let def = ZONES.iter().find(|z| z.name == *name).unwrap();
            let delay = match delay {
                DelayParam::Absent => 0,
                DelayParam::NoDelay => *burst,
                DelayParam::Delay(n) => *n,
            };
            let count = NonZeroU64::new(def.count).unwrap();
            limits.push(LeakyBucket::nginx(count, def.per_minute, *burst, delay));
            headers.push(def.header);
            names.push(*name);
            rates.push(def.count * 1000 / if def.per_minute { 60 } else { 1 });
            delays.push(delay * 1000);
        }
        Self {
            zones: Zones::new(limits),
            headers,
            names,
            rates,
            delays,
        }
    }

    /// The model's decision for each request, sent at `times` (ns on the model's clock,
    /// [`T0`] being the trace's start).
    fn replay(&self, reqs: &[Req], times: &[u64]) -> Vec<ZonesDecision> {
        let mut states: Vec<HashMap<&str, LeakyState>> = vec![HashMap::new(); self.zones.len()];
        reqs.iter()
            .zip(times)
            .map(|(req, t)| {
                let mut refs: Vec<Option<&mut LeakyState>> = states
                    .iter_mut()
                    .zip(&self.headers)
                    .map(|(zone, header)| {
                        let key = match header {
                            Header::Key => req.key,
                            Header::Key2 => req.key2,
                        };
                        Some(zone.entry(key).or_default())
                    })
                    .collect();
                self.zones.decide(&mut refs, *t)
            })
            .collect()
    }

    fn outcomes(&self, reqs: &[Req], times: &[u64]) -> Vec<Outcome> {
        self.replay(reqs, times)
            .into_iter()
            .map(|d| d.outcome)
            .collect()
    }

    /// The delay nginx applies for an excess (thousandths) in zone `name`, as it computes
    /// it, in ms; `None` for a zone not on this location.
    fn nginx_delay(&self, name: &str, excess: u64) -> Option<u64> {
        let i = self.names.iter().position(|n| *n == name)?;
        Some(excess.saturating_sub(self.delays[i]) * 1000 / self.rates[i])
    }

    /// Why the verdicts at `times` are fragile, if they are: moving one request by
    /// [`MARGIN`] either way changes some verdict, or a delay is too short to see.
    fn near_boundary(&self, reqs: &[Req], times: &[u64]) -> Option<String> {
        let outcomes = self.outcomes(reqs, times);
        let verdicts: Vec<Verdict> = outcomes.iter().map(|o| Verdict::of(*o)).collect();
        for (i, o) in outcomes.iter().enumerate() {
            if let Outcome::Delay(d) = o
                && *d < MIN_DELAY
            {
                return Some(format!(
                    "request {i}: the model delays it only {d:?}, too short to tell from a fast answer"
                ));
            }
        }
        let margin = u64::try_from(MARGIN.as_nanos()).unwrap();
        for i in 0..times.len() {
            for moved in [times[i] - margin, times[i] + margin] {
                let mut shifted = times.to_vec();
                shifted[i] = moved;
                let other: Vec<Verdict> = self
                    .outcomes(reqs, &shifted)
                    .into_iter()
                    .map(Verdict::of)
                    .collect();
                if other != verdicts {
                    return Some(format!(
                        "moving request {i} ({:.1} ms) by {MARGIN:?} changes the verdicts {} -> {}",
                        (times[i] - T0) as f64 / 1e6,
                        letters(&verdicts),
                        letters(&other)
                    ));
                }
            }
        }
        None
    }
}

/// P, R, or D and the delay in ms, and the zone blamed.
fn short(model: &LocationModel, d: ZonesDecision) -> String {
    let verdict = match d.outcome {
        Outcome::Delay(wait) => format!("D{}", wait.as_millis()),
        o => Verdict::of(o).letter().to_string(),
    };
    match d.zone {
        Some(z) => format!("{verdict}:{}", model.names[z]),
        None => verdict,
    }
}

fn letters(v: &[Verdict]) -> String {
    v.iter().map(|v| v.letter()).collect()
}

// ---------------------------------------------------------------------------------------
// Comparing
// ---------------------------------------------------------------------------------------

/// One request as nginx handled it.
#[derive(Debug)]
struct Observed {
    /// When we wrote it, ns from the trace's start.
    sent_ns: u64,
    /// Status code, 0 when no answer came.
    status: u16,
    /// From writing the request to the first byte of the answer.
    latency: Duration,
    /// nginx's access log line, when found.
    log: Option<LogLine>,
}

#[derive(Debug)]
struct LogLine {
    limit_req_status: String,
    /// When nginx saw the request (`$msec - $request_time`), ms from the trace's start on
    /// nginx's whole-millisecond clock.
    arrival_ms: i64,
    /// How long nginx held it (`$request_time`), in ms.
    request_time_ms: i64,
    /// `arrival_ms` minus our send time.
    lag_ms: f64,
    /// The zone nginx's error log blames for a delay or a refusal, and the excess it
    /// logged (thousandths of a request).
    blamed: Option<(String, u64)>,
}

struct Checked {
    /// Reasons the attempt says little (the machine got in the way): run it again.
    disturbed: Vec<String>,
    /// Where nginx and the model disagree.
    disagreements: Vec<String>,
    /// The whole attempt, request by request.
    table: String,
}

fn check(model: &LocationModel, trace: &Trace, observed: &[Observed]) -> Checked {
    let mut disturbed = Vec::new();
    let mut disagreements = Vec::new();
    let sent: Vec<u64> = observed.iter().map(|o| T0 + o.sent_ns).collect();
    let expected = model.replay(&trace.reqs, &sent);
    if let Some(problem) = model.near_boundary(&trace.reqs, &sent) {
        disturbed.push(format!("at the measured send times, {problem}"));
    }
    // The model once more on nginx's own clock (when nginx saw each request), for the
    // exact length of each delay and the zone nginx blames.
    let at_nginx: Option<Vec<u64>> = observed
        .iter()
        .map(|o| {
            o.log
                .as_ref()
                .map(|l| T0.saturating_add_signed(l.arrival_ms * 1_000_000))
        })
        .collect();
    let on_nginx_clock = at_nginx.map(|t| model.replay(&trace.reqs, &t));

    let mut table = String::from(
        "  #   plan_ms  sent_ms  nginx_ms  lag_ms  status  latency_ms  limit_req_status  \
         request_time_ms  nginx_blames | model  on_nginx_clock\n",
    );
    for (i, (o, want)) in observed.iter().zip(&expected).enumerate() {
        let want_v = Verdict::of(want.outcome);
        let on_clock = on_nginx_clock.as_ref().map(|v| v[i]);
        let log = o.log.as_ref();
        let blamed = log.and_then(|l| l.blamed.as_ref());
        let _ = writeln!(
            table,
            "  {i:<3} {:>7}  {:>7.1}  {:>8}  {:>6}  {:>6}  {:>10.1}  {:>16}  {:>15}  {:>12} | {:>5}  {:>14}",
            trace.reqs[i].at_ms,
            o.sent_ns as f64 / 1e6,
            log.map_or(String::from("?"), |l| l.arrival_ms.to_string()),
            log.map_or(String::from("?"), |l| format!("{:.1}", l.lag_ms)),
            o.status,
            o.latency.as_secs_f64() * 1e3,
            log.map_or("?", |l| l.limit_req_status.as_str()),
            log.map_or(String::from("?"), |l| l.request_time_ms.to_string()),
            blamed.map_or(String::from("-"), |(zone, excess)| format!(
                "{zone}:{}.{:03}",
                excess / 1000,
                excess % 1000
            )),
            short(model, *want),
            on_clock.map_or(String::from("?"), |d| short(model, d)),
        );

        // nginx's verdict, from the answer.
        let seen = match o.status {
            429 => Verdict::Rejected,
            200 if o.latency > DELAYED_LATENCY => Verdict::Delayed,
            200 => Verdict::Passed,
            _ => {
                disagreements.push(format!(
                    "request {i}: status {} (0: no answer) is neither 200 nor 429",
                    o.status
                ));
                continue;
            }
        };
        if seen != want_v {
            disagreements.push(format!(
                "request {i}: nginx {seen:?}, the model {want_v:?} ({:?})",
                want.outcome
            ));
        }

        // nginx's own account of it, from its logs.
        let (Some(log), Some(on_clock)) = (log, on_clock) else {
            disagreements.push(format!("request {i}: not in nginx's access log"));
            continue;
        };
        if !(-2.0..=MAX_LAG_MS).contains(&log.lag_ms) {
            disturbed.push(format!(
                "request {i}: nginx saw it {:.1} ms after we sent it",
                log.lag_ms
            ));
        }
        let nginx_says = Verdict::from_nginx(&log.limit_req_status);
        match nginx_says {
            Some(n) if n == seen => {}
            Some(Verdict::Passed) if seen == Verdict::Delayed => disturbed.push(format!(
                "request {i}: nginx passed it at once but the answer took {:?}",
                o.latency
            )),
            other => disagreements.push(format!(
                "request {i}: nginx's $limit_req_status is {other:?} ({}) but the answer \
                 (status {}, {:?}) says {seen:?}",
                log.limit_req_status, o.status, o.latency
            )),
        }
        let model_says = Verdict::of(on_clock.outcome);
        if Some(model_says) != nginx_says {
            disagreements.push(format!(
                "request {i}: on nginx's own clock the model says {:?}, nginx {nginx_says:?}",
                on_clock.outcome
            ));
        }
        // The zone nginx blames in its error log, and the delay it computed.
        let model_blames = on_clock.zone.map(|z| model.names[z]);
        let nginx_blames = blamed.map(|(zone, _)| zone.as_str());
        if model_blames != nginx_blames {
            disagreements.push(format!(
                "request {i}: nginx blames zone {nginx_blames:?}, the model {model_blames:?}"
            ));
        }
        if let (Outcome::Delay(d), Some((zone, excess))) = (on_clock.outcome, blamed) {
            let model_ms = i64::try_from(d.as_millis()).unwrap();
            let nginx_ms = model
                .nginx_delay(zone, *excess)
                .map_or(-1, |ms| i64::try_from(ms).unwrap());
            // Two whole-millisecond clocks (nginx's and ours of its log) may disagree by
            // a millisecond at each end of an interval.
            if (nginx_ms - model_ms).abs() > 3 {
                disagreements.push(format!(
                    "request {i}: nginx delays it {nginx_ms} ms, the model {model_ms} ms"
                ));
            }
            // And nginx did hold it that long.
            if log.request_time_ms < nginx_ms - 3 {
                disagreements.push(format!(
                    "request {i}: nginx computed a delay of {nginx_ms} ms but answered after {} ms",
                    log.request_time_ms
                ));
            } else if log.request_time_ms > nginx_ms + DELAY_SLACK_MS {
                disturbed.push(format!(
                    "request {i}: nginx took {} ms for a delay of {nginx_ms} ms",
                    log.request_time_ms
                ));
            }
        }
    }
    Checked {
        disturbed,
        disagreements,
        table,
    }
}

// ---------------------------------------------------------------------------------------
// The nginx side
// ---------------------------------------------------------------------------------------

/// A running nginx in its own directory; stopped (and the directory removed, unless the
/// test failed) when dropped.
struct Nginx {
    child: Child,
    dir: PathBuf,
    addr: SocketAddr,
}

impl Nginx {
    fn start() -> Self {
        let binary = find_nginx();
        check_version(&binary);
        let dir = std::env::temp_dir().join(format!(
            "rampart-nginx-conformance-{}-{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos()
        ));
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        for location in LOCATIONS {
            let files = dir.join("html").join(location.path.trim_matches('/'));
            std::fs::create_dir_all(&files).unwrap();
            std::fs::write(files.join("f.txt"), "ok\n").unwrap();
        }
        std::fs::write(dir.join("html").join("ready.txt"), "ready\n").unwrap();

        // A free port can be taken between our probe and nginx's bind: try a few.
        let mut failures = Vec::new();
        for _ in 0..3 {
            let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
                .and_then(|l| l.local_addr())
                .unwrap()
                .port();
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            std::fs::write(dir.join("nginx.conf"), config(&dir, port)).unwrap();
            let mut child = Command::new(&binary)
                .arg("-p")
                .arg(&dir)
                .arg("-c")
                .arg(dir.join("nginx.conf"))
                .arg("-e")
                .arg(dir.join("error.log"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", binary.display()));
            match wait_ready(&mut child, addr) {
                Ok(()) => return Self { child, dir, addr },
                Err(why) => {
                    failures.push(why);
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
        let log = std::fs::read_to_string(dir.join("error.log")).unwrap_or_default();
        let _ = std::fs::remove_dir_all(&dir);
        panic!(
            "nginx did not start ({}); its error log:\n{log}",
            failures.join("; ")
        );
    }

    /// Sends the trace's requests at their offsets, each on its own connection, and
    /// collects how nginx answered and what it logged.
    fn replay(&self, trace: &Trace, attempt: usize) -> Vec<Observed> {
        let tag = format!("{}.{attempt}", trace.name);
        let start = Instant::now();
        let start_wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let mut pending = Vec::new();
        for (i, req) in trace.reqs.iter().enumerate() {
            let request = format!(
                "GET {}f.txt?t={tag}.{i} HTTP/1.1\r\nHost: x\r\nX-Key: {tag}.{}\r\n\
                 X-Key2: {tag}.{}\r\nConnection: close\r\n\r\n",
                trace.location, req.key, req.key2
            );
            let mut stream = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2))
                .unwrap_or_else(|e| panic!("connecting to nginx at {}: {e}", self.addr));
            stream.set_nodelay(true).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(5)))
                .unwrap();
            stream
                .set_write_timeout(Some(Duration::from_secs(2)))
                .unwrap();
            let due = start + Duration::from_millis(req.at_ms);
            let now = Instant::now();
            if due > now {
                thread::sleep(due - now);
            }
            let sent = Instant::now();
            stream
                .write_all(request.as_bytes())
                .unwrap_or_else(|e| panic!("sending request {i} of trace {tag}: {e}"));
            let sent_ns = u64::try_from((sent - start).as_nanos()).unwrap();
            // A delayed answer holds its connection: read each one on its own thread.
            pending.push(thread::spawn(move || {
                let (status, latency) = read_answer(stream, sent);
                Observed {
                    sent_ns,
                    status,
                    latency,
                    log: None,
                }
            }));
        }
        let mut observed: Vec<Observed> = pending.into_iter().map(|h| h.join().unwrap()).collect();

        // nginx logs a request before it closes the connection, so the lines are there;
        // still, wait a little (bounded) in case the file lags.
        let base_ms = i64::try_from(start_wall.as_millis()).unwrap();
        let start_wall_ms = start_wall.as_secs_f64() * 1e3;
        let prefix = format!("{tag}.");
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let lines = self.access_log(&prefix);
            if lines.len() >= observed.len() || Instant::now() > deadline {
                let mut blamed = self.error_log(&prefix);
                for (i, o) in observed.iter_mut().enumerate() {
                    o.log = lines.get(&i).map(|(status, msec_ms, request_time_ms)| {
                        let arrival_wall = msec_ms - request_time_ms;
                        LogLine {
                            limit_req_status: status.clone(),
                            arrival_ms: arrival_wall - base_ms,
                            request_time_ms: *request_time_ms,
                            lag_ms: arrival_wall as f64 - start_wall_ms - o.sent_ns as f64 / 1e6,
                            blamed: blamed.remove(&i),
                        }
                    });
                }
                return observed;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// The access log's lines for tags starting with `prefix`, by request index:
    /// (`$limit_req_status`, `$msec` in ms, `$request_time` in ms).
    fn access_log(&self, prefix: &str) -> HashMap<usize, (String, i64, i64)> {
        let text = std::fs::read_to_string(self.dir.join("access.log")).unwrap_or_default();
        let mut lines = HashMap::new();
        for line in text.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            let [tag, _status, limit_req_status, msec, request_time] = fields[..] else {
                continue;
            };
            let Some(index) = tag.strip_prefix(prefix).and_then(|i| i.parse().ok()) else {
                continue;
            };
            lines.insert(
                index,
                (
                    limit_req_status.to_string(),
                    millis(msec),
                    millis(request_time),
                ),
            );
        }
        lines
    }

    /// The error log's "delaying request" and "limiting requests" lines for tags starting
    /// with `prefix`, by request index: the zone named and the excess (thousandths).
    fn error_log(&self, prefix: &str) -> HashMap<usize, (String, u64)> {
        let text = std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default();
        let mut lines = HashMap::new();
        for line in text.lines() {
            let Some((_, rest)) = line
                .split_once("delaying request, excess: ")
                .or_else(|| line.split_once("limiting requests, excess: "))
            else {
                continue;
            };
            let excess = rest.split([',', ' ']).next().map(millis);
            let zone = rest
                .split_once("by zone \"")
                .and_then(|(_, z)| z.split_once('"'))
                .map(|(z, _)| z.to_string());
            let index = rest
                .split_once("?t=")
                .and_then(|(_, t)| t.split([' ', '"']).next())
                .and_then(|t| t.strip_prefix(prefix))
                .and_then(|i| i.parse().ok());
            if let (Some(excess), Some(zone), Some(index)) = (excess, zone, index) {
                lines.insert(index, (zone, u64::try_from(excess).unwrap_or(0)));
            }
        }
        lines
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!(
                "nginx's configuration and logs are kept in {}",
                self.dir.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// nginx's configuration: one location per entry of [`LOCATIONS`], each serving a file.
fn config(dir: &Path, port: u16) -> String {
    let d = dir.display();
    let mut zones = String::new();
    for z in ZONES {
        let key = match z.header {
            Header::Key => "$http_x_key",
            Header::Key2 => "$http_x_key2",
        };
        let unit = if z.per_minute { "r/m" } else { "r/s" };
        let _ = writeln!(
            zones,
            "    limit_req_zone {key} zone={}:1m rate={}{unit};",
            z.name, z.count
        );
    }
    let mut locations = String::new();
    for l in LOCATIONS {
        let _ = writeln!(locations, "        location {} {{", l.path);
        for (zone, burst, delay) in l.limits {
            let burst = if *burst > 0 {
                format!(" burst={burst}")
            } else {
                String::new()
            };
            let delay = match delay {
                DelayParam::Absent => String::new(),
                DelayParam::NoDelay => String::from(" nodelay"),
                DelayParam::Delay(n) => format!(" delay={n}"),
            };
            let _ = writeln!(
                locations,
                "            limit_req zone={zone}{burst}{delay};"
            );
        }
        let _ = writeln!(locations, "        }}");
    }
    format!(
        "daemon off;
master_process off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{
    worker_connections 512;
}}
http {{
    log_format conformance '$arg_t $status $limit_req_status $msec $request_time';
    access_log {d}/access.log conformance;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    default_type text/plain;
    limit_req_status 429;
{zones}
    server {{
        listen 127.0.0.1:{port};
        root {d}/html;
{locations}    }}
}}
"
    )
}

/// The nginx binary: `$NGINX`, else `nginx` on the PATH, else the usual sbin paths (not
/// on a normal user's PATH). Fails loudly when there is none: this test exists to compare
/// with nginx and must not pass silently without it.
fn find_nginx() -> PathBuf {
    if let Some(p) = std::env::var_os("NGINX") {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "$NGINX is {}, which is not a file",
            p.display()
        );
        return p;
    }
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path).map(|d| d.join("nginx")));
    }
    candidates.extend(
        [
            "/usr/sbin/nginx",
            "/usr/local/sbin/nginx",
            "/usr/local/nginx/sbin/nginx",
        ]
        .map(PathBuf::from),
    );
    candidates
        .into_iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "nginx is not installed, and this test compares the nginx-compatible leaky \
                 bucket with real nginx. Install it (Debian: `apt-get install nginx`; \
                 scripts/test.sh does so when run as root) or point $NGINX at the binary."
            )
        })
}

/// `delay=` needs nginx 1.15.7, `$limit_req_status` 1.17.6.
fn check_version(binary: &Path) {
    let out = Command::new(binary)
        .arg("-v")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {} -v: {e}", binary.display()));
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    let version: Vec<u32> = text
        .split("nginx/")
        .nth(1)
        .and_then(|v| v.split_whitespace().next())
        .map(|v| v.split('.').filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_default();
    assert!(
        version >= vec![1, 17, 6],
        "nginx 1.17.6 or later is needed ($limit_req_status), found {:?}",
        text.trim()
    );
}

/// Waits (at most 10 s) until nginx serves a file.
fn wait_ready(child: &mut Child, addr: SocketAddr) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!("nginx exited: {status}"));
        }
        if let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = s.write_all(b"GET /ready.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            let mut answer = Vec::new();
            let _ = s.read_to_end(&mut answer);
            if answer.starts_with(b"HTTP/1.1 200") {
                return Ok(());
            }
        }
        thread::sleep(Duration::from_millis(20));
    }
    Err(String::from("not serving after 10 s"))
}

/// "1712345678.123" (seconds with three decimals) as whole milliseconds.
fn millis(s: &str) -> i64 {
    let (whole, frac) = s.split_once('.').unwrap_or((s, "0"));
    let whole: i64 = whole.parse().unwrap_or(0);
    let frac: i64 = format!("{frac:0<3}")[..3].parse().unwrap_or(0);
    whole * 1000 + frac
}

/// Reads an answer to the end (the server closes: `Connection: close`): its status code
/// (0 when none came) and the time from `sent` to its first byte.
fn read_answer(mut stream: TcpStream, sent: Instant) -> (u16, Duration) {
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    let mut first = None;
    // Bounded: the read timeout ends a stalled read, and the file is tiny.
    for _ in 0..64 {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                first.get_or_insert_with(Instant::now);
                answer.extend_from_slice(&buf[..n]);
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let status = std::str::from_utf8(&answer)
        .ok()
        .and_then(|a| a.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let latency = first.map_or(Duration::MAX, |f| f - sent);
    (status, latency)
}
