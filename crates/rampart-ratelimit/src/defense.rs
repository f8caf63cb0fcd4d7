//! The rate-limit defense: named policies applied in a route's `request_head` phase.
//!
//! Each [`Policy`] owns its store, so counters survive a configuration reload when the
//! policy did not change (the proxy reuses the `Arc<Policy>`). A route may carry several
//! policies; every one must admit the request. Refusals carry `Retry-After` (whole seconds,
//! rounded up, so never shorter than the true wait) and the IETF `RateLimit-Policy` and
//! `RateLimit` fields; admitted responses carry the latter two unless a policy turns them
//! off.

use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use rampart_core::http_reexport::header::{HeaderName, HeaderValue, RETRY_AFTER};
use rampart_core::http_reexport::{StatusCode, request::Parts};
use rampart_core::{
    Clock, Decision, DefenseError, Interruption, Outcome as Logged, RequestContext, Verdict,
};

use crate::algo::{
    Algorithm, FixedWindow, Gcra, LeakyBucket, Nanos, Outcome, SlidingLog, SlidingWindow,
    TokenBucket,
};
use crate::bans::{BanInfo, BanRule, Bans};
use crate::shared::{Answer, DecisionPath, SharedStore};
use crate::store::MemoryStore;

/// The layer name in logs and metrics.
pub const LAYER: &str = "ratelimit";

/// Which algorithm a policy runs, with its parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spec {
    /// See [`Gcra`].
    Gcra {
        count: u64,
        period: Duration,
        burst: u64,
    },
    /// See [`TokenBucket`].
    TokenBucket {
        count: u64,
        period: Duration,
        capacity: u64,
    },
    /// See [`LeakyBucket::nginx`].
    LeakyBucket {
        count: u64,
        per_minute: bool,
        burst: u64,
        delay: u64,
    },
    /// See [`FixedWindow`].
    FixedWindow { count: u64, period: Duration },
    /// See [`SlidingWindow`].
    SlidingWindow { count: u64, period: Duration },
    /// See [`SlidingLog`].
    SlidingLog { count: u64, period: Duration },
}

/// One part of a client key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyPart {
    /// The client address (IPv6 grouped by the policy's prefix).
    Ip,
    /// The authenticated subject; the client address for anonymous requests.
    Subject,
    /// The matched route.
    Route,
    /// A request header's value.
    Header(HeaderName),
}

/// Which requests a policy applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// Every request.
    All,
    /// Requests without an identity.
    Anonymous,
    /// Requests with an identity.
    Authenticated,
}

/// Where a policy keeps its counters.
enum Backend {
    /// In this process's memory, decided synchronously.
    Memory(Box<dyn Limiter>),
    /// In a store shared by a fleet (counters and bans).
    Shared(Arc<dyn SharedStore>),
}

/// A named policy and its store.
pub struct Policy {
    name: Arc<str>,
    store: Backend,
    key: Vec<KeyPart>,
    ipv6_prefix: u8,
    audience: Audience,
    cost: u64,
    count_rejected: bool,
    shadow: bool,
    status: StatusCode,
    headers: bool,
    quota: u64,
    window_secs: u64,
    bans: Option<Bans>,
    /// The policy has a ban rule (its bans are in `bans` or in the shared store).
    banning: bool,
    ban_on_auth_failures: bool,
}

/// Everything a [`Policy`] is made of.
#[derive(Debug, Clone)]
pub struct PolicySettings {
    /// The policy's name (in headers, logs and metrics).
    pub name: String,
    /// The algorithm.
    pub spec: Spec,
    /// The client key.
    pub key: Vec<KeyPart>,
    /// IPv6 prefix length for `KeyPart::Ip`.
    pub ipv6_prefix: u8,
    /// Which requests it applies to.
    pub audience: Audience,
    /// Cost of one request.
    pub cost: u64,
    /// Refusals use up allowance.
    pub count_rejected: bool,
    /// Dry run.
    pub shadow: bool,
    /// Refusal status.
    pub status: StatusCode,
    /// Headers on admitted responses.
    pub headers: bool,
    /// Most keys tracked.
    pub max_keys: usize,
    /// Ban clients that keep getting refused.
    pub ban: Option<BanRule>,
    /// Count a request that authentication refused for a bad credential (not a missing
    /// one) as a refusal towards the ban, so a client guessing tokens or keys is banned too.
    pub ban_on_auth_failures: bool,
}

impl std::fmt::Debug for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Policy").field("name", &self.name).finish()
    }
}

/// A store with its algorithm erased.
trait Limiter: Send + Sync {
    fn decide(&self, key: &[u8], now: Nanos, cost: u64, count_rejected: bool) -> Outcome;
    fn peek(&self, key: &[u8], now: Nanos, cost: u64) -> Outcome;
    fn tracked(&self) -> usize;
}

impl<A> Limiter for MemoryStore<A>
where
    A: Algorithm + Send + Sync,
    A::State: Send,
{
    fn decide(&self, key: &[u8], now: Nanos, cost: u64, count_rejected: bool) -> Outcome {
        MemoryStore::decide(self, key, now, cost, count_rejected)
    }
    fn peek(&self, key: &[u8], now: Nanos, cost: u64) -> Outcome {
        MemoryStore::peek(self, key, now, cost)
    }
    fn tracked(&self) -> usize {
        self.len()
    }
}

fn nz(n: u64) -> std::num::NonZeroU64 {
    std::num::NonZeroU64::new(n).unwrap_or(std::num::NonZeroU64::MIN)
}

impl Policy {
    /// Builds a policy whose counters and bans live in `store`, shared with other gateways.
    /// `s.max_keys` and `s.ban` still shape the policy (the store was built with the same
    /// ban rule); the in-memory store and bans are not created.
    pub fn shared(s: PolicySettings, store: Arc<dyn SharedStore>) -> Self {
        let banning = s.ban.is_some();
        let mut p = Self::new(PolicySettings {
            max_keys: 1,
            ban: None,
            ..s
        });
        p.store = Backend::Shared(store);
        p.banning = banning;
        p
    }

    /// Builds a policy with an empty in-memory store.
    pub fn new(s: PolicySettings) -> Self {
        let keys = s.max_keys;
        let (store, quota, window): (Box<dyn Limiter>, u64, Duration) = match s.spec {
            Spec::Gcra {
                count,
                period,
                burst,
            } => (
                Box::new(MemoryStore::new(
                    Gcra::new(nz(count), period, nz(burst)),
                    keys,
                )),
                count,
                period,
            ),
            Spec::TokenBucket {
                count,
                period,
                capacity,
            } => (
                Box::new(MemoryStore::new(
                    TokenBucket::new(nz(count), period, nz(capacity)),
                    keys,
                )),
                count,
                period,
            ),
            Spec::LeakyBucket {
                count,
                per_minute,
                burst,
                delay,
            } => (
                Box::new(MemoryStore::new(
                    LeakyBucket::nginx(nz(count), per_minute, burst, delay),
                    keys,
                )),
                count,
                Duration::from_secs(if per_minute { 60 } else { 1 }),
            ),
            Spec::FixedWindow { count, period } => (
                Box::new(MemoryStore::new(FixedWindow::new(nz(count), period), keys)),
                count,
                period,
            ),
            Spec::SlidingWindow { count, period } => (
                Box::new(MemoryStore::new(
                    SlidingWindow::new(nz(count), period),
                    keys,
                )),
                count,
                period,
            ),
            Spec::SlidingLog { count, period } => (
                Box::new(MemoryStore::new(SlidingLog::new(nz(count), period), keys)),
                count,
                period,
            ),
        };
        Self {
            name: s.name.into(),
            store: Backend::Memory(store),
            key: s.key,
            ipv6_prefix: s.ipv6_prefix,
            audience: s.audience,
            cost: s.cost,
            count_rejected: s.count_rejected,
            shadow: s.shadow,
            status: s.status,
            headers: s.headers,
            quota,
            window_secs: window.as_secs().max(1),
            bans: s.ban.map(|rule| Bans::new(rule, s.max_keys)),
            banning: s.ban.is_some(),
            ban_on_auth_failures: s.ban_on_auth_failures,
        }
    }

    /// The policy's in-memory bans, when it has a ban rule and keeps its state in memory.
    pub fn bans(&self) -> Option<&Bans> {
        self.bans.as_ref()
    }

    /// Whether the policy bans (in memory or in its shared store).
    pub fn has_bans(&self) -> bool {
        self.banning
    }

    /// Whether the policy needs to know who the client is (its key has `subject`, or it
    /// applies to anonymous or authenticated clients only): such a policy runs after
    /// authentication, the others before it (before any cryptography).
    pub fn needs_identity(&self) -> bool {
        self.audience != Audience::All || self.key.contains(&KeyPart::Subject)
    }

    /// Whether the policy's state is shared with other gateways.
    pub fn is_shared(&self) -> bool {
        matches!(self.store, Backend::Shared(_))
    }

    /// The bans in force at `now` (the defense's time, see [`RateLimit::new`]), wherever
    /// they are kept. A shared policy without a ban rule lists none.
    pub async fn list_bans(&self, now: Nanos) -> Result<Vec<BanInfo>, String> {
        match (&self.store, &self.bans) {
            (Backend::Shared(s), _) => s.bans().await,
            (Backend::Memory(_), Some(b)) => Ok(b.list(now)),
            (Backend::Memory(_), None) => Ok(Vec::new()),
        }
    }

    /// Lifts `client`'s ban; true if it was banned.
    pub async fn lift_ban(&self, client: &str) -> Result<bool, String> {
        match (&self.store, &self.bans) {
            (Backend::Shared(s), _) => s.lift(client).await,
            (Backend::Memory(_), Some(b)) => Ok(b.lift(client)),
            (Backend::Memory(_), None) => Ok(false),
        }
    }

    /// The policy's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Clients tracked now in memory (0 for a shared policy).
    pub fn tracked(&self) -> usize {
        match &self.store {
            Backend::Memory(m) => m.tracked(),
            Backend::Shared(_) => 0,
        }
    }

    fn applies(&self, ctx: &RequestContext) -> bool {
        match self.audience {
            Audience::All => true,
            Audience::Anonymous => ctx.identity.is_none(),
            Audience::Authenticated => ctx.identity.is_some(),
        }
    }

    /// The client as this policy sees it, readable (`ip:203.0.113.9`,
    /// `ip:2001:db8:1:2::/64`, `subject:alice`, `header:x-api-key=...`), parts joined by `|`.
    fn client_label(&self, ctx: &RequestContext, head: &Parts) -> String {
        let mut label = String::with_capacity(48);
        for (i, part) in self.key.iter().enumerate() {
            if i > 0 {
                label.push('|');
            }
            match part {
                KeyPart::Ip => push_ip(&mut label, ctx.client.ip, self.ipv6_prefix),
                KeyPart::Subject => match &ctx.identity {
                    Some(id) => {
                        label.push_str("subject:");
                        label.push_str(&id.subject);
                    }
                    None => push_ip(&mut label, ctx.client.ip, self.ipv6_prefix),
                },
                KeyPart::Route => {
                    label.push_str("route:");
                    if let Some(r) = &ctx.route {
                        label.push_str(&r.name);
                    }
                }
                KeyPart::Header(name) => {
                    label.push_str("header:");
                    label.push_str(name.as_str());
                    label.push('=');
                    for (j, v) in head.headers.get_all(name).iter().enumerate() {
                        if j > 0 {
                            label.push(',');
                        }
                        label.push_str(&String::from_utf8_lossy(v.as_bytes()));
                    }
                }
            }
        }
        label
    }

    /// A refusal for `reason` with the wait `retry_after`.
    fn refusal(&self, reason: &'static str, retry_after: Duration) -> Interruption {
        let wait = secs_up(retry_after).max(1);
        let mut i = Interruption::new(self.status, reason).with_rule(self.name.to_string());
        i.headers.insert(RETRY_AFTER, HeaderValue::from(wait));
        if let Ok(v) = HeaderValue::from_str(&self.policy_item()) {
            i.headers.insert("ratelimit-policy", v);
        }
        if let Ok(v) = HeaderValue::from_str(&format!("\"{}\";r=0;t={wait}", self.name)) {
            i.headers.insert("ratelimit", v);
        }
        i
    }

    /// The answer of the in-memory store and bans for `client` at `now`. A refusal that
    /// reaches the ban threshold answers with the ban; shadow refusals are not counted
    /// towards bans.
    fn decide_in_memory(&self, store: &dyn Limiter, client: &str, now: Nanos) -> Answer {
        if let Some(left) = self.bans.as_ref().and_then(|b| b.banned(client, now)) {
            return Answer::Banned(left);
        }
        let outcome = store.decide(client.as_bytes(), now, self.cost, self.count_rejected);
        if matches!(outcome, Outcome::Deny { .. })
            && !self.shadow
            && let Some(ban) = self.bans.as_ref().and_then(|b| b.refused(client, now))
        {
            return Answer::Banned(ban);
        }
        Answer::Decided(outcome)
    }

    /// The refusal when the shared store is unreachable and the policy fails closed: 503,
    /// since the client did nothing wrong, with the store's cool-down as `Retry-After`.
    fn unavailable(&self, retry_after: Duration) -> Interruption {
        let mut i = Interruption::new(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable")
            .with_rule(self.name.to_string());
        i.headers
            .insert(RETRY_AFTER, HeaderValue::from(secs_up(retry_after).max(1)));
        i
    }

    fn policy_item(&self) -> String {
        format!("\"{}\";q={};w={}", self.name, self.quota, self.window_secs)
    }
}

fn push_ip(label: &mut String, ip: IpAddr, v6_prefix: u8) {
    use std::fmt::Write;
    match ip {
        IpAddr::V4(v4) => {
            let _ = write!(label, "ip:{v4}");
        }
        IpAddr::V6(v6) => {
            let prefix = u32::from(v6_prefix.clamp(1, 128));
            let masked = u128::from(v6) & (u128::MAX << (128 - prefix));
            let _ = write!(label, "ip:{}/{prefix}", std::net::Ipv6Addr::from(masked));
        }
    }
}

/// The rate-limit defense of one route: its policies, in order.
pub struct RateLimit {
    policies: Vec<Arc<Policy>>,
    clock: Arc<dyn Clock>,
    origin: Instant,
}

impl std::fmt::Debug for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimit")
            .field("policies", &self.policies)
            .finish()
    }
}

impl RateLimit {
    /// With several enforcing in-memory policies on the route, a request one of them
    /// refuses is charged to none of the others (as nginx charges no zone for a refused
    /// request): each is first asked what it would decide, without deciding. The first
    /// that would refuse (or has the client banned) then decides for real, so that its
    /// own `count_rejected` and ban counting apply, and its index and answer are returned.
    /// Policies in a shared store cannot look without deciding and are charged in order.
    fn first_refusal(
        &self,
        ctx: &RequestContext,
        head: &Parts,
        now: Nanos,
    ) -> Option<(usize, Answer)> {
        let enforcing =
            |p: &Policy| !p.shadow && matches!(p.store, Backend::Memory(_)) && p.applies(ctx);
        if self.policies.iter().filter(|p| enforcing(p)).count() < 2 {
            return None;
        }
        self.policies.iter().enumerate().find_map(|(i, p)| {
            let Backend::Memory(store) = &p.store else {
                return None;
            };
            if !enforcing(p) {
                return None;
            }
            let client = p.client_label(ctx, head);
            let banned = p
                .bans
                .as_ref()
                .is_some_and(|b| b.banned(&client, now).is_some());
            let refuses = matches!(
                store.peek(client.as_bytes(), now, p.cost),
                Outcome::Deny { .. }
            );
            (banned || refuses).then(|| (i, p.decide_in_memory(store.as_ref(), &client, now)))
        })
    }

    /// The defense for `policies`, reading time from `clock`; `origin` must be the same for
    /// every route sharing a policy (the proxy passes one per process).
    pub fn new(policies: Vec<Arc<Policy>>, clock: Arc<dyn Clock>, origin: Instant) -> Self {
        Self {
            policies,
            clock,
            origin,
        }
    }

    fn now(&self) -> Nanos {
        let d = self.clock.now().saturating_duration_since(self.origin);
        u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
    }
}

fn shadow_decision(p: &Policy, reason: &'static str) -> Decision {
    Decision {
        layer: LAYER,
        outcome: Logged::Shadow,
        reason: Cow::Borrowed(reason),
        rule_id: Some(Cow::Owned(p.name.to_string())),
    }
}

fn fail_open(p: &Policy, reason: &'static str) -> Decision {
    Decision {
        layer: LAYER,
        outcome: Logged::FailOpen,
        reason: Cow::Borrowed(reason),
        rule_id: Some(Cow::Owned(p.name.to_string())),
    }
}

fn secs_up(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[async_trait]
impl rampart_core::Defense for RateLimit {
    fn name(&self) -> &'static str {
        LAYER
    }

    /// A request that authentication refused for a bad credential counts towards the bans
    /// of the policies that ask for it, in memory or in the shared store (not for keys that
    /// need a request header, which is gone by now).
    fn on_complete(&self, ctx: &RequestContext, status: StatusCode) {
        if status != StatusCode::UNAUTHORIZED {
            return;
        }
        let bad_credential = ctx
            .decisions
            .iter()
            .any(|d| d.layer == "auth" && d.outcome == Logged::Deny && d.reason != "missing_token");
        if !bad_credential {
            return;
        }
        let now = self.now();
        let head = rampart_core::http_reexport::Request::new(()).into_parts().0;
        for p in &self.policies {
            let keyed_by_header = p.key.iter().any(|k| matches!(k, KeyPart::Header(_)));
            if !p.ban_on_auth_failures || p.shadow || keyed_by_header || !p.applies(ctx) {
                continue;
            }
            match (&p.store, &p.bans) {
                (Backend::Shared(store), _) if p.banning => {
                    store.strike(&p.client_label(ctx, &head));
                }
                (Backend::Memory(_), Some(bans)) => {
                    bans.refused(&p.client_label(ctx, &head), now);
                }
                _ => {}
            }
        }
    }

    async fn request_head(
        &self,
        ctx: &mut RequestContext,
        head: &mut Parts,
    ) -> Result<Verdict, DefenseError> {
        let now = self.now();
        let mut delay = Duration::ZERO;
        let mut policies: Vec<String> = Vec::new();
        let mut states: Vec<String> = Vec::new();
        let mut early = self.first_refusal(ctx, head, now);
        if let Some((i, answer)) = &early
            && let Some(p) = self.policies.get(*i)
        {
            match *answer {
                Answer::Banned(left) => return Ok(Verdict::Deny(p.refusal("banned", left))),
                Answer::Decided(Outcome::Deny { retry_after }) => {
                    return Ok(Verdict::Deny(p.refusal("rate_limited", retry_after)));
                }
                // A concurrent request changed the state between the look and the
                // decision: the policy admitted after all, and the loop goes on.
                Answer::Decided(_) => {}
            }
        }
        for (i, p) in self.policies.iter().enumerate() {
            if !p.applies(ctx) {
                continue;
            }
            let client = p.client_label(ctx, head);
            let answer = match &p.store {
                Backend::Memory(_) if early.as_ref().is_some_and(|(j, _)| *j == i) => {
                    match early.take() {
                        Some((_, answer)) => answer,
                        None => continue,
                    }
                }
                Backend::Memory(store) => p.decide_in_memory(store.as_ref(), &client, now),
                Backend::Shared(store) => {
                    let d = store.decide(&client, p.cost).await;
                    match d.path {
                        DecisionPath::Shared => {}
                        DecisionPath::FailOpen => ctx.record(fail_open(p, "store_unavailable")),
                        DecisionPath::Local => {
                            ctx.record(fail_open(p, "store_unavailable_local"));
                        }
                        DecisionPath::FailClosed => {
                            if p.shadow {
                                ctx.record(shadow_decision(p, "store_unavailable"));
                                continue;
                            }
                            let wait = match d.answer {
                                Answer::Decided(Outcome::Deny { retry_after }) => retry_after,
                                _ => Duration::from_secs(1),
                            };
                            return Ok(Verdict::Deny(p.unavailable(wait)));
                        }
                    }
                    d.answer
                }
            };
            match answer {
                Answer::Banned(left) => {
                    if p.shadow {
                        ctx.record(shadow_decision(p, "banned"));
                        continue;
                    }
                    return Ok(Verdict::Deny(p.refusal("banned", left)));
                }
                Answer::Decided(Outcome::Allow { remaining, reset }) => {
                    if p.headers {
                        policies.push(p.policy_item());
                        states.push(format!("\"{}\";r={remaining};t={}", p.name, secs_up(reset)));
                    }
                }
                Answer::Decided(Outcome::Delay(d)) => {
                    delay = delay.max(d);
                    if p.headers {
                        policies.push(p.policy_item());
                        states.push(format!("\"{}\";r=0;t={}", p.name, secs_up(d)));
                    }
                }
                Answer::Decided(Outcome::Deny { retry_after }) => {
                    if p.shadow {
                        ctx.record(shadow_decision(p, "rate_limited"));
                        continue;
                    }
                    return Ok(Verdict::Deny(p.refusal("rate_limited", retry_after)));
                }
            }
        }
        if !policies.is_empty() {
            for (name, items) in [("ratelimit-policy", &policies), ("ratelimit", &states)] {
                if let Ok(v) = HeaderValue::from_str(&items.join(", ")) {
                    ctx.response_headers.insert(name, v);
                }
            }
        }
        if delay.is_zero() {
            Ok(Verdict::Continue)
        } else {
            Ok(Verdict::Delay(delay))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddr};

    use rampart_core::{ClientInfo, Defense, ManualClock};

    use super::*;

    fn settings(spec: Spec) -> PolicySettings {
        PolicySettings {
            name: "per_ip".into(),
            spec,
            key: vec![KeyPart::Ip],
            ipv6_prefix: 64,
            audience: Audience::All,
            cost: 1,
            count_rejected: false,
            shadow: false,
            status: StatusCode::TOO_MANY_REQUESTS,
            headers: true,
            max_keys: 1000,
            ban: None,
            ban_on_auth_failures: false,
        }
    }

    fn ctx(ip: &str) -> RequestContext {
        let ip: IpAddr = ip.parse().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
        RequestContext::new(
            "r".into(),
            ClientInfo {
                ip,
                peer: SocketAddr::new(ip, 1),
                tls: None,
            },
        )
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        loop {
            if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
        }
    }

    fn run(rl: &RateLimit, ip: &str) -> (Verdict, RequestContext) {
        let mut c = ctx(ip);
        let mut head = rampart_core::http_reexport::Request::new(()).into_parts().0;
        let v = block_on(rl.request_head(&mut c, &mut head)).unwrap_or(Verdict::Continue);
        (v, c)
    }

    #[test]
    fn refusal_carries_retry_after_and_ratelimit_fields() {
        let clock = Arc::new(ManualClock::new());
        let origin = clock.now();
        let policy = Arc::new(Policy::new(settings(Spec::Gcra {
            count: 5,
            period: Duration::from_secs(60),
            burst: 5,
        })));
        let rl = RateLimit::new(vec![policy], clock.clone(), origin);
        for i in 0..5u64 {
            let (v, c) = run(&rl, "203.0.113.9");
            assert!(matches!(v, Verdict::Continue));
            assert_eq!(
                c.response_headers["ratelimit"],
                format!("\"per_ip\";r={};t={}", 4 - i, 12 * (i + 1)).as_str()
            );
            assert_eq!(
                c.response_headers["ratelimit-policy"],
                "\"per_ip\";q=5;w=60"
            );
        }
        let (v, _) = run(&rl, "203.0.113.9");
        let Verdict::Deny(i) = v else {
            panic!("expected a refusal, got {v:?}")
        };
        assert_eq!(i.status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(i.headers[RETRY_AFTER], "12");
        assert_eq!(i.headers["ratelimit"], "\"per_ip\";r=0;t=12");
        // Another client is not affected; the same one is admitted once the wait is over.
        assert!(matches!(run(&rl, "203.0.113.10").0, Verdict::Continue));
        clock.advance(Duration::from_secs(12));
        assert!(matches!(run(&rl, "203.0.113.9").0, Verdict::Continue));
    }

    #[test]
    fn ipv6_clients_are_grouped_by_prefix() {
        let clock = Arc::new(ManualClock::new());
        let origin = clock.now();
        let policy = Arc::new(Policy::new(settings(Spec::FixedWindow {
            count: 1,
            period: Duration::from_secs(60),
        })));
        let rl = RateLimit::new(vec![policy], clock, origin);
        assert!(matches!(run(&rl, "2001:db8:1:2::1").0, Verdict::Continue));
        // Same /64: same client.
        assert!(matches!(run(&rl, "2001:db8:1:2::ffff").0, Verdict::Deny(_)));
        // Another /64: another client.
        assert!(matches!(run(&rl, "2001:db8:1:3::1").0, Verdict::Continue));
    }

    #[test]
    fn shadow_mode_records_but_admits() {
        let clock = Arc::new(ManualClock::new());
        let origin = clock.now();
        let mut s = settings(Spec::FixedWindow {
            count: 1,
            period: Duration::from_secs(60),
        });
        s.shadow = true;
        let rl = RateLimit::new(vec![Arc::new(Policy::new(s))], clock, origin);
        run(&rl, "198.51.100.1");
        let (v, c) = run(&rl, "198.51.100.1");
        assert!(matches!(v, Verdict::Continue));
        assert_eq!(c.decisions[0].outcome, Logged::Shadow);
    }

    #[test]
    fn repeat_offenders_are_banned() {
        let clock = Arc::new(ManualClock::new());
        let origin = clock.now();
        let mut s = settings(Spec::FixedWindow {
            count: 1,
            period: Duration::from_secs(1),
        });
        s.ban = Some(BanRule {
            after: 2,
            within: Duration::from_secs(60),
            duration: Duration::from_secs(300),
            max_duration: Duration::from_secs(3600),
        });
        let policy = Arc::new(Policy::new(s));
        let rl = RateLimit::new(vec![policy.clone()], clock.clone(), origin);
        assert!(matches!(run(&rl, "192.0.2.7").0, Verdict::Continue));
        assert!(
            matches!(run(&rl, "192.0.2.7").0, Verdict::Deny(ref i) if i.reason == "rate_limited")
        );
        let (v, _) = run(&rl, "192.0.2.7");
        let Verdict::Deny(i) = v else {
            panic!("expected a ban, got {v:?}")
        };
        assert_eq!(i.reason, "banned");
        assert_eq!(i.headers[RETRY_AFTER], "300");
        // A new second would admit again, but the ban holds.
        clock.advance(Duration::from_secs(2));
        assert!(matches!(run(&rl, "192.0.2.7").0, Verdict::Deny(ref i) if i.reason == "banned"));
        let bans = policy
            .bans()
            .map(|b| b.list(u64::MAX / 2))
            .unwrap_or_default();
        assert!(bans.is_empty(), "bans expire");
        assert!(policy.bans().is_some_and(|b| b.lift("ip:192.0.2.7")));
        assert!(matches!(run(&rl, "192.0.2.7").0, Verdict::Continue));
    }

    #[test]
    fn leaky_bucket_delays_instead_of_refusing() {
        let clock = Arc::new(ManualClock::new());
        let origin = clock.now();
        let policy = Arc::new(Policy::new(settings(Spec::LeakyBucket {
            count: 10,
            per_minute: false,
            burst: 2,
            delay: 0,
        })));
        let rl = RateLimit::new(vec![policy], clock, origin);
        assert!(matches!(run(&rl, "192.0.2.1").0, Verdict::Continue));
        assert!(
            matches!(run(&rl, "192.0.2.1").0, Verdict::Delay(d) if d == Duration::from_millis(100))
        );
        assert!(
            matches!(run(&rl, "192.0.2.1").0, Verdict::Delay(d) if d == Duration::from_millis(200))
        );
        assert!(matches!(run(&rl, "192.0.2.1").0, Verdict::Deny(_)));
    }

    /// A shared store that answers what it is told, to test the defense's handling of each
    /// path; the real one (Redis) is tested in `rampart-ratelimit-redis` and end to end.
    #[derive(Debug)]
    struct Scripted(std::sync::Mutex<Vec<crate::SharedDecision>>);

    #[async_trait]
    impl SharedStore for Scripted {
        async fn decide(&self, _client: &str, _cost: u64) -> crate::SharedDecision {
            self.0.lock().unwrap().remove(0)
        }
        async fn bans(&self) -> Result<Vec<BanInfo>, String> {
            Err("unreachable".into())
        }
        async fn lift(&self, _client: &str) -> Result<bool, String> {
            Ok(true)
        }
    }

    #[test]
    fn shared_store_paths_become_verdicts_and_decisions() {
        use crate::SharedDecision;
        let clock = Arc::new(ManualClock::new());
        let origin = clock.now();
        let d = |answer, path| SharedDecision {
            answer,
            path,
            error: None,
        };
        let store = Arc::new(Scripted(std::sync::Mutex::new(vec![
            d(
                Answer::Decided(Outcome::Allow {
                    remaining: 3,
                    reset: Duration::from_millis(1500),
                }),
                DecisionPath::Shared,
            ),
            d(
                Answer::Decided(Outcome::Allow {
                    remaining: 0,
                    reset: Duration::ZERO,
                }),
                DecisionPath::FailOpen,
            ),
            d(
                Answer::Decided(Outcome::Deny {
                    retry_after: Duration::from_secs(2),
                }),
                DecisionPath::FailClosed,
            ),
            d(
                Answer::Banned(Duration::from_secs(90)),
                DecisionPath::Shared,
            ),
        ])));
        let policy = Arc::new(Policy::shared(
            settings(Spec::Gcra {
                count: 5,
                period: Duration::from_secs(60),
                burst: 5,
            }),
            store,
        ));
        assert!(policy.is_shared() && !policy.has_bans());
        let rl = RateLimit::new(vec![policy.clone()], clock, origin);
        let (v, c) = run(&rl, "192.0.2.1");
        assert!(matches!(v, Verdict::Continue));
        assert_eq!(c.response_headers["ratelimit"], "\"per_ip\";r=3;t=2");
        assert!(c.decisions.is_empty());
        let (v, c) = run(&rl, "192.0.2.1");
        assert!(matches!(v, Verdict::Continue));
        assert_eq!(c.decisions[0].outcome, Logged::FailOpen);
        assert_eq!(c.decisions[0].reason, "store_unavailable");
        let (v, _) = run(&rl, "192.0.2.1");
        let Verdict::Deny(i) = v else {
            panic!("fail closed must refuse, got {v:?}")
        };
        assert_eq!(i.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(i.headers[RETRY_AFTER], "2");
        let (v, _) = run(&rl, "192.0.2.1");
        let Verdict::Deny(i) = v else {
            panic!("a ban must refuse, got {v:?}")
        };
        assert_eq!(
            (i.status, i.reason.as_ref()),
            (StatusCode::TOO_MANY_REQUESTS, "banned")
        );
        assert_eq!(i.headers[RETRY_AFTER], "90");
        assert_eq!(
            block_on(policy.list_bans(0)),
            Err("unreachable".to_string())
        );
        assert_eq!(block_on(policy.lift_ban("ip:192.0.2.1")), Ok(true));
    }

    #[test]
    fn a_request_one_policy_refuses_is_charged_to_no_other() {
        let clock = Arc::new(ManualClock::new());
        let origin = clock.now();
        let window = |name: &str, count| {
            let mut s = settings(Spec::FixedWindow {
                count,
                period: Duration::from_secs(60),
            });
            s.name = name.into();
            Arc::new(Policy::new(s))
        };
        let (wide, narrow) = (window("wide", 3), window("narrow", 1));
        let both = RateLimit::new(vec![wide.clone(), narrow], clock.clone(), origin);
        let wide_only = RateLimit::new(vec![wide], clock, origin);
        assert!(matches!(run(&both, "192.0.2.1").0, Verdict::Continue));
        for _ in 0..2 {
            let (v, _) = run(&both, "192.0.2.1");
            assert!(
                matches!(v, Verdict::Deny(ref i) if i.rule_id.as_deref() == Some("narrow")),
                "{v:?}"
            );
        }
        // `wide` was charged once, not three times: two more pass on its own.
        assert!(matches!(run(&wide_only, "192.0.2.1").0, Verdict::Continue));
        assert!(matches!(run(&wide_only, "192.0.2.1").0, Verdict::Continue));
        assert!(matches!(run(&wide_only, "192.0.2.1").0, Verdict::Deny(_)));
    }
}
