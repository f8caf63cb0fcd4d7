//! The request path: hygiene, routing, the defense chain, the upstream exchange, and the
//! response policy. Denials and failures become HTTP responses in one place,
//! [`Shared::refuse`].

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Method, Request, Response, StatusCode, Version};
use http_body::Body as _;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use rampart_core::{
    ClientInfo, Decision, Interruption, Outcome, PhaseOutcome, RequestContext, RouteInfo, TlsInfo,
};

use crate::accesslog::{AccessRecord, DecisionRecord, LogSink, SecurityEvent, rfc3339};
use crate::body::{BodyError, OnBodyEnd, RequestBody, ResponseBody};
use crate::forwarded::{self, ForwardFacts};
use crate::metrics::{
    AuthLabels, AuthzLabels, DenialLabels, Metrics, RequestLabels, UpstreamLabels,
};
use crate::router::Lookup;
use crate::runtime::{RouteEntry, Runtime};
use crate::upstream::UpstreamError;
use crate::{hygiene, normalize};

/// State shared by every connection and the admin listener.
#[derive(Debug)]
pub struct Shared {
    /// The compiled configuration in force.
    pub runtime: ArcSwap<Runtime>,
    /// The metrics.
    pub metrics: Metrics,
    /// The access and security-event log.
    pub log: ArcSwap<LogSink>,
    /// Set when shutdown began: readiness fails and connections are closed after their
    /// current request.
    pub draining: AtomicBool,
    ids: RequestIds,
}

/// What a connection knows about itself.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The TCP peer.
    pub peer: SocketAddr,
    /// The listener's name.
    pub listener: Arc<str>,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// TLS facts for TLS connections.
    pub tls: Option<Arc<TlsInfo>>,
    /// Framing verdicts from the raw-byte reader, for HTTP/1 connections.
    pub framing: Option<Arc<crate::framing::Verdicts>>,
}

impl Shared {
    /// Shared state around a first runtime.
    pub fn new(runtime: Runtime, log: LogSink) -> Self {
        Self {
            runtime: ArcSwap::from_pointee(runtime),
            metrics: Metrics::new(),
            log: ArcSwap::from_pointee(log),
            draining: AtomicBool::new(false),
            ids: RequestIds::new(),
        }
    }

    /// Handles one request from a client connection.
    pub async fn handle(
        self: Arc<Self>,
        conn: Arc<ConnInfo>,
        req: Request<Incoming>,
    ) -> Response<ResponseBody> {
        let rt = self.runtime.load_full();
        let mut flow = Flow::start(&self, &rt, &conn, &req);
        let response = match self.proxy(&rt, &conn, req, &mut flow).await {
            Ok(resp) => resp,
            Err(refusal) => self.refuse(&mut flow, refusal),
        };
        flow.finish(self, rt, response)
    }

    async fn proxy(
        &self,
        rt: &Arc<Runtime>,
        conn: &ConnInfo,
        mut req: Request<Incoming>,
        flow: &mut Flow,
    ) -> Result<Response<ResponseBody>, Refusal> {
        // Claim the client side of a WebSocket upgrade before the request is split; it is
        // used only if the route allows WebSockets and the upstream answers 101.
        let client_upgrade = is_websocket_upgrade(&req).then(|| hyper::upgrade::on(&mut req));
        let (mut head, body) = req.into_parts();

        if head.version <= Version::HTTP_11 {
            // Take this request's verdict first, whatever happens next, so the queue stays
            // in step with the requests of the connection.
            match conn.framing.as_ref().and_then(|v| v.next()) {
                Some(Ok(())) => {}
                Some(Err(reason)) => return Err(Refusal::hygiene(StatusCode::BAD_REQUEST, reason)),
                None => hygiene::check_framing(head.version, &head.headers)
                    .map_err(|v| Refusal::hygiene(v.status, v.reason))?,
            }
        }
        let request_line = head.method.as_str().len()
            + head.uri.path_and_query().map_or(1, |p| p.as_str().len())
            + 11;
        hygiene::check_limits(request_line, &head.headers, rt.header_limits)
            .map_err(|v| Refusal::hygiene(v.status, v.reason))?;

        let listener = rt.listeners.get(conn.listener.as_ref());
        if let Some((port, status)) = listener.and_then(|l| l.redirect) {
            return Ok(redirect_to_https(&head, flow.host(), port, status));
        }

        let normalized = match normalize::normalize(head.uri.path()) {
            Ok(std::borrow::Cow::Borrowed(_)) => None,
            Ok(std::borrow::Cow::Owned(p)) => Some(p),
            Err(_) => return Err(Refusal::hygiene(StatusCode::BAD_REQUEST, "bad_path")),
        };
        if let Some(p) = normalized {
            set_path(&mut head.uri, &p)?;
            flow.normalized = Some(p);
        }

        let host = flow.host().map(strip_port).unwrap_or("");
        let route = match rt.router.lookup(host, flow.path(), &head.method) {
            Lookup::Found(route, params) => {
                flow.ctx.route = Some(RouteInfo {
                    name: route.name.clone(),
                    template: route.template.clone(),
                    params,
                });
                flow.route = Some(route.clone());
                route.clone()
            }
            Lookup::MethodNotAllowed(allowed) => {
                let mut r = Refusal::local(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "router",
                    "method_not_allowed",
                );
                let list: Vec<&str> = allowed.iter().map(Method::as_str).collect();
                if let Ok(v) = HeaderValue::from_str(&list.join(", ")) {
                    r.interruption.headers.insert(header::ALLOW, v);
                }
                return Err(r);
            }
            Lookup::NotFound => {
                return Err(Refusal::local(
                    StatusCode::NOT_FOUND,
                    "router",
                    "route_not_found",
                ));
            }
        };

        if !route.chain.is_empty() {
            match route.chain.request_head(&mut flow.ctx, &mut head).await {
                PhaseOutcome::Continue(delay) => sleep(delay).await,
                PhaseOutcome::Deny(i) => return Err(Refusal::defense(i)),
            }
        }

        let declared = declared_length(&head.headers);
        flow.request_body_size = declared;
        if declared.is_some_and(|n| n > route.max_body) {
            return Err(Refusal::hygiene(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
            ));
        }

        let client_upgrade = client_upgrade.filter(|_| route.websocket);
        let upgrade = client_upgrade.is_some();

        let exceeded = Arc::new(AtomicBool::new(false));
        let upstream_body = if upgrade {
            RequestBody::Empty
        } else if let Some(limit) = route.chain.body_limit() {
            let limit = (limit as u64).min(route.max_body);
            let bytes = read_body(body, limit).await?;
            match route.chain.request_body(&mut flow.ctx, &head, &bytes).await {
                PhaseOutcome::Continue(delay) => sleep(delay).await,
                PhaseOutcome::Deny(i) => return Err(Refusal::defense(i)),
            }
            RequestBody::Full(Some(bytes))
        } else if body.is_end_stream() {
            RequestBody::Empty
        } else {
            RequestBody::Streaming {
                inner: body,
                seen: 0,
                limit: route.max_body,
                exceeded: exceeded.clone(),
            }
        };

        let peer_trusted = rt.client_ip.is_trusted(conn.peer.ip());
        forwarded::strip_hop_by_hop(&mut head.headers, upgrade);
        forwarded::set_forwarding_headers(
            &mut head.headers,
            &ForwardFacts {
                peer: conn.peer.ip(),
                peer_trusted,
                scheme: conn.scheme,
                host: flow.host.as_ref(),
            },
        );
        if let Some(v) = flow.id_header.clone() {
            head.headers.insert("x-request-id", v);
        }
        if !head.headers.contains_key(header::HOST)
            && let Some(v) = flow.host.clone()
        {
            head.headers.insert(header::HOST, v);
        }

        let upstream_req = Request::from_parts(head, upstream_body);
        let mut resp = match route.upstream.send(upstream_req).await {
            Ok(resp) => resp,
            Err(_) if exceeded.load(Ordering::Relaxed) => {
                return Err(Refusal::hygiene(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                ));
            }
            Err(e) => {
                self.metrics
                    .upstream_errors
                    .get_or_create(&UpstreamLabels {
                        upstream: route.upstream.name.clone(),
                        kind: e.kind(),
                    })
                    .inc();
                tracing::warn!(upstream = %route.upstream.name, request_id = %flow.ctx.request_id, error = %e, "upstream failed");
                let status = match e {
                    UpstreamError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
                    _ => StatusCode::BAD_GATEWAY,
                };
                let reason = match e {
                    UpstreamError::Timeout(_) => "upstream_timeout",
                    UpstreamError::Connect(_) => "upstream_unreachable",
                    UpstreamError::Protocol(_) => "upstream_error",
                };
                return Err(Refusal::local(status, "upstream", reason));
            }
        };
        flow.upstream = Some(route.upstream.name.clone());

        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            if let Some(client_on) = client_upgrade {
                let upstream_on = hyper::upgrade::on(&mut resp);
                tokio::spawn(tunnel(client_on, upstream_on));
                let (mut parts, _) = resp.into_parts();
                let keep: Vec<_> = [header::UPGRADE, header::CONNECTION]
                    .into_iter()
                    .filter_map(|n| parts.headers.get(&n).cloned().map(|v| (n, v)))
                    .collect();
                forwarded::strip_hop_by_hop(&mut parts.headers, false);
                for (n, v) in keep {
                    parts.headers.insert(n, v);
                }
                return Ok(Response::from_parts(
                    parts,
                    ResponseBody::full(Bytes::new()),
                ));
            }
            // A 101 we did not ask for cannot be passed on.
            return Err(Refusal::local(
                StatusCode::BAD_GATEWAY,
                "upstream",
                "unexpected_upgrade",
            ));
        }

        let (mut parts, body) = resp.into_parts();
        forwarded::strip_hop_by_hop(&mut parts.headers, false);
        if !route.chain.is_empty()
            && let PhaseOutcome::Deny(i) =
                route.chain.response_head(&mut flow.ctx, &mut parts).await
        {
            return Err(Refusal::defense(i));
        }
        Ok(Response::from_parts(parts, ResponseBody::upstream(body)))
    }

    /// Turns a refusal into the response sent to the client, recording the decision,
    /// the security event and the denial metric. The one place denials become HTTP.
    fn refuse(&self, flow: &mut Flow, refusal: Refusal) -> Response<ResponseBody> {
        let Refusal {
            interruption,
            layer,
            security,
            close,
        } = refusal;
        if layer != rampart_core_layer::DEFENSE {
            flow.ctx.record(Decision {
                layer,
                // Only a refusal on security grounds is a denial; a 404 or an unreachable
                // upstream is an error of the request, not a decision against it.
                outcome: if security {
                    Outcome::Deny
                } else {
                    Outcome::Error
                },
                reason: interruption.reason.clone(),
                rule_id: interruption.rule_id.clone(),
            });
        }
        let denied_by = flow.ctx.decisions.last().map(|d| d.layer).unwrap_or(layer);
        if security {
            self.metrics
                .denials
                .get_or_create(&DenialLabels {
                    layer: denied_by,
                    reason: interruption.reason.to_string(),
                })
                .inc();
            if denied_by == "auth" {
                self.metrics
                    .auth_rejections
                    .get_or_create(&AuthLabels {
                        provider: interruption
                            .rule_id
                            .as_deref()
                            .unwrap_or("none")
                            .to_string(),
                        reason: interruption.reason.to_string(),
                    })
                    .inc();
            }
            let log = self.log.load();
            if !log.is_off() {
                let event = SecurityEvent {
                    timestamp: rfc3339(SystemTime::now()),
                    kind: "security",
                    request_id: &flow.ctx.request_id,
                    layer: denied_by,
                    reason: &interruption.reason,
                    rule_id: interruption.rule_id.as_deref(),
                    status: interruption.status.as_u16(),
                    client: flow.ctx.client.ip.to_string(),
                    method: flow.method.as_str(),
                    path: flow.path(),
                    route: flow.ctx.route.as_ref().map(|r| r.template.as_ref()),
                    credential_hash: flow.ctx.credential.as_deref(),
                };
                if !log.write(&event) {
                    self.metrics.log_dropped.inc();
                }
            }
        }
        let body = serde_json::json!({
            "error": interruption.status.canonical_reason().unwrap_or("error"),
            "reason": interruption.reason,
            "request_id": flow.ctx.request_id.as_ref(),
        })
        .to_string();
        let mut resp = Response::new(ResponseBody::full(body));
        *resp.status_mut() = interruption.status;
        let h = resp.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if close {
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        for (k, v) in &interruption.headers {
            h.insert(k.clone(), v.clone());
        }
        resp
    }
}

/// Layer names of refusals the proxy itself makes.
mod rampart_core_layer {
    /// A refusal that came from a defense (its decision is already recorded).
    pub const DEFENSE: &str = "defense";
}

/// A request the proxy will not pass on.
struct Refusal {
    /// Boxed: a refusal travels in `Err` through the whole request path.
    interruption: Box<Interruption>,
    layer: &'static str,
    /// Counted as a denial and logged as a security event.
    security: bool,
    /// Close the connection after answering (framing cannot be trusted).
    close: bool,
}

impl Refusal {
    fn hygiene(status: StatusCode, reason: &'static str) -> Self {
        Self {
            interruption: Box::new(Interruption::new(status, reason)),
            layer: "hygiene",
            security: true,
            close: status == StatusCode::BAD_REQUEST
                || status == StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
                || status == StatusCode::PAYLOAD_TOO_LARGE,
        }
    }

    fn local(status: StatusCode, layer: &'static str, reason: &'static str) -> Self {
        Self {
            interruption: Box::new(Interruption::new(status, reason)),
            layer,
            security: false,
            close: false,
        }
    }

    fn defense(interruption: Interruption) -> Self {
        Self {
            interruption: Box::new(interruption),
            layer: rampart_core_layer::DEFENSE,
            security: true,
            close: false,
        }
    }
}

/// The state of one request between its head and the end of its response.
struct Flow {
    ctx: RequestContext,
    started: Instant,
    started_wall: SystemTime,
    method: Method,
    /// The request id as a header value, built once for the upstream request and the
    /// response (a clone shares the bytes).
    id_header: Option<HeaderValue>,
    /// The request target as received (cheap to clone: it shares the parsed bytes).
    uri: http::Uri,
    /// The normalized path, when normalization changed it.
    normalized: Option<String>,
    host: Option<HeaderValue>,
    user_agent: Option<HeaderValue>,
    version: Version,
    scheme: &'static str,
    listener: Arc<str>,
    request_body_size: Option<u64>,
    route: Option<Arc<RouteEntry>>,
    upstream: Option<Arc<str>>,
}

impl Flow {
    fn start(shared: &Shared, rt: &Runtime, conn: &ConnInfo, req: &Request<Incoming>) -> Self {
        let host = req.headers().get(header::HOST).cloned().or_else(|| {
            req.uri()
                .authority()
                .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        });
        let client_ip = rt.client_ip.client_ip(conn.peer.ip(), req.headers());
        let ctx = RequestContext::new(
            shared.ids.next(),
            ClientInfo {
                ip: client_ip,
                peer: conn.peer,
                tls: conn.tls.clone(),
            },
        );
        let id_header = HeaderValue::from_str(&ctx.request_id).ok();
        Self {
            ctx,
            started: Instant::now(),
            started_wall: SystemTime::now(),
            method: req.method().clone(),
            id_header,
            uri: req.uri().clone(),
            normalized: None,
            host,
            user_agent: req.headers().get(header::USER_AGENT).cloned(),
            version: req.version(),
            scheme: conn.scheme,
            listener: conn.listener.clone(),
            request_body_size: None,
            route: None,
            upstream: None,
        }
    }

    /// The path as routed and logged: normalized when normalization ran and changed it.
    fn path(&self) -> &str {
        self.normalized.as_deref().unwrap_or(self.uri.path())
    }

    /// The Host (or `:authority`) the client asked for, when it is text.
    fn host(&self) -> Option<&str> {
        self.host.as_ref().and_then(|h| h.to_str().ok())
    }

    /// Applies the response-header policy and arranges for the access-log line, the
    /// metrics and the completion hooks to run when the body is over.
    fn finish(
        self,
        shared: Arc<Shared>,
        rt: Arc<Runtime>,
        mut resp: Response<ResponseBody>,
    ) -> Response<ResponseBody> {
        let policy = &rt.response_headers;
        let h = resp.headers_mut();
        for name in &policy.remove {
            h.remove(name);
        }
        for (k, v) in &policy.defaults {
            if !h.contains_key(k) {
                h.insert(k.clone(), v.clone());
            }
        }
        for (k, v) in &policy.set {
            h.insert(k.clone(), v.clone());
        }
        if self.scheme == "https"
            && let Some(v) = rt
                .listeners
                .get(self.listener.as_ref())
                .and_then(|l| l.hsts.clone())
        {
            h.insert(header::STRICT_TRANSPORT_SECURITY, v);
        }
        if let Some(v) = self.id_header.clone() {
            h.insert("x-request-id", v);
        }
        for (k, v) in &self.ctx.response_headers {
            h.insert(k.clone(), v.clone());
        }
        if shared.draining.load(Ordering::Relaxed) && self.version <= Version::HTTP_11 {
            h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        let status = resp.status();
        let (parts, body) = resp.into_parts();
        let done = Box::new(Done {
            flow: self,
            shared,
            status,
        });
        Response::from_parts(parts, body.on_end(done))
    }
}

/// Runs when the response body is over: metrics, access log, completion hooks.
struct Done {
    flow: Flow,
    shared: Arc<Shared>,
    status: StatusCode,
}

impl OnBodyEnd for Done {
    fn finish(self: Box<Self>, bytes: u64, complete: bool) {
        let Done {
            flow,
            shared,
            status,
        } = *self;
        let elapsed = flow.started.elapsed();
        let route_name: Arc<str> = flow
            .route
            .as_ref()
            .map_or_else(|| Arc::from("none"), |r| r.name.clone());
        let labels = RequestLabels {
            route: route_name,
            status: status.as_u16(),
        };
        shared.metrics.requests.get_or_create(&labels).inc();
        shared
            .metrics
            .duration
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
        if let Some(route) = &flow.route {
            route.chain.on_complete(&flow.ctx, status);
        }
        for d in &flow.ctx.decisions {
            if let (Some(route), true) = (
                &flow.route,
                d.layer == rampart_authz::LAYER || d.layer == rampart_authz::SHADOW_LAYER,
            ) {
                shared
                    .metrics
                    .authz_decisions
                    .get_or_create(&AuthzLabels {
                        route: route.name.clone(),
                        layer: d.layer,
                        outcome: d.outcome.as_str(),
                        rule: d.rule_id.as_deref().unwrap_or("none").to_owned(),
                    })
                    .inc();
            }
            let family = match d.outcome {
                Outcome::Shadow => &shared.metrics.shadow_denials,
                Outcome::FailOpen => &shared.metrics.fail_open,
                _ => continue,
            };
            family
                .get_or_create(&DenialLabels {
                    layer: d.layer,
                    reason: d.reason.to_string(),
                })
                .inc();
        }
        let log = shared.log.load();
        if log.is_off() {
            return;
        }
        let tls = flow.ctx.client.tls.as_deref();
        let record = AccessRecord {
            timestamp: rfc3339(flow.started_wall),
            kind: "access",
            request_id: &flow.ctx.request_id,
            method: flow.method.as_str(),
            path: flow.path(),
            scheme: flow.scheme,
            route: flow.ctx.route.as_ref().map(|r| r.template.as_ref()),
            route_name: flow.route.as_ref().map(|r| r.name.as_ref()),
            status: status.as_u16(),
            duration_s: elapsed.as_secs_f64(),
            client: flow.ctx.client.ip.to_string(),
            peer: flow.ctx.client.peer.ip().to_string(),
            protocol: match flow.version {
                Version::HTTP_09 => "0.9",
                Version::HTTP_10 => "1.0",
                Version::HTTP_2 => "2",
                Version::HTTP_3 => "3",
                _ => "1.1",
            },
            host: flow.host().map(strip_port),
            port: flow.host().and_then(host_port),
            user_agent: flow.user_agent.as_ref().and_then(|v| v.to_str().ok()),
            request_body_size: flow.request_body_size,
            response_body_size: bytes,
            complete,
            tls_version: tls.and_then(|t| t.version.as_deref()),
            tls_client_subject: tls
                .and_then(|t| t.peer_certificate.as_ref())
                .map(|c| c.subject.as_str()),
            upstream: flow.upstream.as_deref(),
            user: flow.ctx.identity.as_ref().map(|i| i.subject.as_str()),
            credential_hash: flow.ctx.credential.as_deref(),
            decisions: flow
                .ctx
                .decisions
                .iter()
                .map(|d| DecisionRecord {
                    layer: d.layer,
                    outcome: d.outcome.as_str(),
                    reason: &d.reason,
                    rule_id: d.rule_id.as_deref(),
                })
                .collect(),
        };
        if !log.write(&record) {
            shared.metrics.log_dropped.inc();
        }
    }
}

/// Request ids: 128 bits from SipHash-1-3 under a random per-process key, applied to a
/// counter. Distinct for every request of a process, and not predictable from earlier ids
/// without the key.
#[derive(Debug)]
struct RequestIds {
    keys: (
        std::collections::hash_map::RandomState,
        std::collections::hash_map::RandomState,
    ),
    counter: AtomicU64,
}

impl RequestIds {
    fn new() -> Self {
        Self {
            keys: (
                std::collections::hash_map::RandomState::new(),
                std::collections::hash_map::RandomState::new(),
            ),
            counter: AtomicU64::new(0),
        }
    }

    fn next(&self) -> Arc<str> {
        use std::hash::BuildHasher;
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let bits =
            (u128::from(self.keys.0.hash_one(n)) << 64) | u128::from(self.keys.1.hash_one(n));
        let mut out = [0u8; 32];
        for (i, slot) in out.iter_mut().enumerate() {
            let nibble = (bits >> (124 - 4 * i)) & 0xf;
            *slot = HEX.get(nibble as usize).copied().unwrap_or(b'0');
        }
        // Every byte is an ASCII hex digit, so the conversion cannot fail.
        std::str::from_utf8(&out).map_or_else(|_| Arc::from(""), Arc::from)
    }
}

/// The port of a Host value (`example.com:8443`), if it has one.
fn host_port(host: &str) -> Option<u16> {
    let (_, port) = host.rsplit_once(':')?;
    if host.starts_with('[') && !host.contains("]:") {
        return None;
    }
    port.parse().ok()
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .split_once(']')
            .map_or(host, |(h, _)| h.trim_start_matches('['));
    }
    host.rsplit_once(':').map_or(host, |(h, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            host
        }
    })
}

fn set_path(uri: &mut http::Uri, path: &str) -> Result<(), Refusal> {
    let pq = match uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    let mut parts = std::mem::take(uri).into_parts();
    parts.path_and_query = Some(
        pq.parse()
            .map_err(|_| Refusal::hygiene(StatusCode::BAD_REQUEST, "bad_path"))?,
    );
    *uri = http::Uri::from_parts(parts)
        .map_err(|_| Refusal::hygiene(StatusCode::BAD_REQUEST, "bad_path"))?;
    Ok(())
}

fn declared_length(headers: &http::HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

fn is_websocket_upgrade<B>(req: &Request<B>) -> bool {
    let has_token = |name: header::HeaderName, token: &str| {
        req.headers().get_all(name).iter().any(|v| {
            v.to_str()
                .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
                .unwrap_or(false)
        })
    };
    req.version() == Version::HTTP_11
        && req.method() == Method::GET
        && has_token(header::CONNECTION, "upgrade")
        && has_token(header::UPGRADE, "websocket")
}

async fn read_body(body: Incoming, limit: u64) -> Result<Bytes, Refusal> {
    let mut body = RequestBody::Streaming {
        inner: body,
        seen: 0,
        limit,
        exceeded: Arc::new(AtomicBool::new(false)),
    };
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                if let Some(d) = f.data_ref() {
                    buf.extend_from_slice(d);
                }
            }
            Err(BodyError::TooLarge(_)) => {
                return Err(Refusal::hygiene(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "body_too_large",
                ));
            }
            Err(BodyError::Hyper(_)) => {
                return Err(Refusal::hygiene(
                    StatusCode::BAD_REQUEST,
                    "body_read_failed",
                ));
            }
        }
    }
    Ok(buf.freeze())
}

fn redirect_to_https(
    head: &http::request::Parts,
    host: Option<&str>,
    port: u16,
    status: StatusCode,
) -> Response<ResponseBody> {
    let host = host.map(strip_port).unwrap_or("localhost");
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    let authority = if port == 443 {
        host
    } else {
        format!("{host}:{port}")
    };
    let pq = head.uri.path_and_query().map_or("/", |p| p.as_str());
    let location = format!("https://{authority}{pq}");
    let mut resp = Response::new(ResponseBody::full(Bytes::new()));
    *resp.status_mut() = status;
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

async fn sleep(d: std::time::Duration) {
    if !d.is_zero() {
        tokio::time::sleep(d).await;
    }
}

async fn tunnel(client: hyper::upgrade::OnUpgrade, upstream: hyper::upgrade::OnUpgrade) {
    let (Ok(c), Ok(u)) = tokio::join!(client, upstream) else {
        return;
    };
    let mut c = hyper_util::rt::TokioIo::new(c);
    let mut u = hyper_util::rt::TokioIo::new(u);
    let _ = tokio::io::copy_bidirectional(&mut c, &mut u).await;
}
