//! The phase trait every defense implements, and the chain that runs them in order.
//!
//! Phases, in the order the proxy calls them:
//!
//! 1. [`Defense::request_head`]: after the request head is read and the route matched,
//!    before any byte of the body is read or anything is sent upstream.
//! 2. [`Defense::request_body`]: only for defenses whose [`Defense::body_limit`] is
//!    `Some`, once the body (up to that limit) has been buffered.
//! 3. [`Defense::response_head`]: after the upstream answered, before anything is sent
//!    to the client.
//! 4. [`Defense::on_complete`]: exactly once per request that reached the chain, whatever
//!    happened (denied, upstream error, client gone).
//!
//! Code that runs before a defense's phase is not protected by it: routing and request
//! hygiene run before every defense, so they must be safe on hostile input by themselves.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;

use crate::context::{Decision, Outcome, RequestContext};
use crate::verdict::{DefenseError, Interruption, Verdict};

/// A layer of defense. Every hook has a default that lets the request go on, so a defense
/// implements only the phases it cares about.
#[async_trait]
pub trait Defense: Send + Sync + 'static {
    /// The layer's name in logs and metrics (`ipfilter`, `ratelimit`).
    fn name(&self) -> &'static str;

    /// Runs once the request head is known and the route matched, before the body is read.
    /// The defense may edit the head (add a verified-identity header, strip one).
    /// `Deny` answers the client at once and nothing is sent upstream. `Delay` lets the
    /// next defense run at once; the request is held for the sum of the phase's delays
    /// before it goes on (the chain itself does no I/O, so the proxy does the waiting).
    async fn request_head(
        &self,
        _ctx: &mut RequestContext,
        _head: &mut http::request::Parts,
    ) -> Result<Verdict, DefenseError> {
        Ok(Verdict::Continue)
    }

    /// How many body bytes this defense needs to see; `None` (the default) means it never
    /// looks at the body and the body streams through unbuffered. A body larger than the
    /// largest limit asked for on a route is refused with 413.
    fn body_limit(&self) -> Option<usize> {
        None
    }

    /// Runs with the buffered request body, only when [`Defense::body_limit`] is `Some`.
    async fn request_body(
        &self,
        _ctx: &mut RequestContext,
        _head: &http::request::Parts,
        _body: &Bytes,
    ) -> Result<Verdict, DefenseError> {
        Ok(Verdict::Continue)
    }

    /// Runs when the upstream's response head arrived, before it is sent to the client.
    /// `Deny` replaces the upstream response with the interruption's. `Delay` has no
    /// meaning here and is treated as `Continue`.
    async fn response_head(
        &self,
        _ctx: &mut RequestContext,
        _head: &mut http::response::Parts,
    ) -> Result<Verdict, DefenseError> {
        Ok(Verdict::Continue)
    }

    /// Runs exactly once per request that entered the chain, after the response status is
    /// known, whatever the outcome. It must not block: record, count, and return.
    fn on_complete(&self, _ctx: &RequestContext, _status: http::StatusCode) {}
}

/// What to do when a defense returns an error instead of a verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FailureMode {
    /// Deny with 503: a defense that cannot decide protects nothing. The default.
    #[default]
    Closed,
    /// Let the request through and record the failure.
    Open,
}

/// The defenses of one route, in order, with the route's failure mode.
#[derive(Clone, Default)]
pub struct Chain {
    defenses: Vec<Arc<dyn Defense>>,
    failure_mode: FailureMode,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain")
            .field(
                "defenses",
                &self.defenses.iter().map(|d| d.name()).collect::<Vec<_>>(),
            )
            .field("failure_mode", &self.failure_mode)
            .finish()
    }
}

/// How a phase of the chain ended.
#[derive(Debug)]
pub enum PhaseOutcome {
    /// Every defense let the request go on; hold it this long first (sum of delays).
    Continue(std::time::Duration),
    /// A defense stopped it.
    Deny(Interruption),
}

/// The loop every phase runs: call the hook of each defense in order, settle its answer,
/// stop at the first denial, add up delays. A macro rather than a function taking an async
/// closure, because such a closure's future cannot be proven `Send` for all lifetimes.
macro_rules! run_phase {
    ($chain:ident, $ctx:ident, $defenses:expr, |$d:ident| $call:expr) => {{
        let mut delay = std::time::Duration::ZERO;
        for $d in $defenses {
            let result = $call.await;
            match $chain.settle($ctx, $d.name(), result) {
                Settled::Go(d) => delay += d,
                Settled::Stop(i) => return PhaseOutcome::Deny(i),
            }
        }
        PhaseOutcome::Continue(delay)
    }};
}

impl Chain {
    /// A chain of `defenses` that fails as `failure_mode` says.
    pub fn new(defenses: Vec<Arc<dyn Defense>>, failure_mode: FailureMode) -> Self {
        Self {
            defenses,
            failure_mode,
        }
    }

    /// True when the chain has no defense (the proxy skips every phase).
    pub fn is_empty(&self) -> bool {
        self.defenses.is_empty()
    }

    /// The largest body any defense wants to see, if any wants one.
    pub fn body_limit(&self) -> Option<usize> {
        self.defenses.iter().filter_map(|d| d.body_limit()).max()
    }

    /// Runs the request-head phase of every defense in order, stopping at the first denial.
    pub async fn request_head(
        &self,
        ctx: &mut RequestContext,
        head: &mut http::request::Parts,
    ) -> PhaseOutcome {
        run_phase!(self, ctx, self.defenses.iter(), |d| d
            .request_head(ctx, head))
    }

    /// Runs the request-body phase of the defenses that asked for the body.
    pub async fn request_body(
        &self,
        ctx: &mut RequestContext,
        head: &http::request::Parts,
        body: &Bytes,
    ) -> PhaseOutcome {
        let wanting = self.defenses.iter().filter(|d| d.body_limit().is_some());
        run_phase!(self, ctx, wanting, |d| d.request_body(ctx, head, body))
    }

    /// Runs the response-head phase of every defense in order. Delays are ignored here.
    pub async fn response_head(
        &self,
        ctx: &mut RequestContext,
        head: &mut http::response::Parts,
    ) -> PhaseOutcome {
        match run_phase!(self, ctx, self.defenses.iter(), |d| d
            .response_head(ctx, head))
        {
            PhaseOutcome::Continue(_) => PhaseOutcome::Continue(std::time::Duration::ZERO),
            deny => deny,
        }
    }

    /// Runs every defense's completion hook.
    pub fn on_complete(&self, ctx: &RequestContext, status: http::StatusCode) {
        for defense in &self.defenses {
            defense.on_complete(ctx, status);
        }
    }

    fn settle(
        &self,
        ctx: &mut RequestContext,
        layer: &'static str,
        result: Result<Verdict, DefenseError>,
    ) -> Settled {
        match result {
            Ok(Verdict::Continue) => Settled::Go(std::time::Duration::ZERO),
            Ok(Verdict::Delay(d)) => {
                ctx.record(Decision {
                    layer,
                    outcome: Outcome::Delay,
                    reason: "delayed".into(),
                    rule_id: None,
                });
                Settled::Go(d)
            }
            Ok(Verdict::Deny(interruption)) => {
                ctx.record(Decision {
                    layer,
                    outcome: Outcome::Deny,
                    reason: interruption.reason.clone(),
                    rule_id: interruption.rule_id.clone(),
                });
                Settled::Stop(interruption)
            }
            Err(err) => match self.failure_mode {
                FailureMode::Open => {
                    ctx.record(Decision {
                        layer,
                        outcome: Outcome::FailOpen,
                        reason: "defense_error".into(),
                        rule_id: Some(err.message.into()),
                    });
                    Settled::Go(std::time::Duration::ZERO)
                }
                FailureMode::Closed => {
                    ctx.record(Decision {
                        layer,
                        outcome: Outcome::FailClosed,
                        reason: "defense_error".into(),
                        rule_id: Some(err.message.into()),
                    });
                    Settled::Stop(Interruption::new(
                        http::StatusCode::SERVICE_UNAVAILABLE,
                        "defense_error",
                    ))
                }
            },
        }
    }
}

enum Settled {
    Go(std::time::Duration),
    Stop(Interruption),
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr, SocketAddr};

    use super::*;
    use crate::context::ClientInfo;

    struct Fixed(&'static str, Result<Verdict, ()>);

    #[async_trait]
    impl Defense for Fixed {
        fn name(&self) -> &'static str {
            self.0
        }
        async fn request_head(
            &self,
            _ctx: &mut RequestContext,
            _head: &mut http::request::Parts,
        ) -> Result<Verdict, DefenseError> {
            self.1
                .clone()
                .map_err(|()| DefenseError::new(self.0, "store down"))
        }
    }

    fn ctx() -> RequestContext {
        let peer = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 1);
        RequestContext::new(
            "r1".into(),
            ClientInfo {
                ip: peer.ip(),
                peer,
                tls: None,
            },
        )
    }

    fn head() -> http::request::Parts {
        http::Request::new(()).into_parts().0
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        // The chain's futures here never pend; poll once with a no-op waker.
        let mut f = std::pin::pin!(f);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        loop {
            if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) {
                return v;
            }
        }
    }

    #[test]
    fn first_denial_stops_the_chain_and_is_recorded() {
        let chain = Chain::new(
            vec![
                Arc::new(Fixed("a", Ok(Verdict::Continue))),
                Arc::new(Fixed(
                    "b",
                    Ok(Verdict::Deny(Interruption::new(
                        http::StatusCode::FORBIDDEN,
                        "nope",
                    ))),
                )),
                Arc::new(Fixed("c", Err(()))),
            ],
            FailureMode::Closed,
        );
        let mut ctx = ctx();
        let out = block_on(chain.request_head(&mut ctx, &mut head()));
        match out {
            PhaseOutcome::Deny(i) => assert_eq!(i.status, http::StatusCode::FORBIDDEN),
            other => panic!("expected deny, got {other:?}"),
        }
        assert_eq!(ctx.decisions.len(), 1);
        assert_eq!(ctx.decisions[0].layer, "b");
    }

    #[test]
    fn errors_follow_the_failure_mode() {
        let failing = || vec![Arc::new(Fixed("store", Err(()))) as Arc<dyn Defense>];
        let mut c = ctx();
        let closed =
            block_on(Chain::new(failing(), FailureMode::Closed).request_head(&mut c, &mut head()));
        assert!(matches!(closed, PhaseOutcome::Deny(ref i) if i.status == 503));
        assert_eq!(c.decisions[0].outcome, Outcome::FailClosed);

        let mut c = ctx();
        let open =
            block_on(Chain::new(failing(), FailureMode::Open).request_head(&mut c, &mut head()));
        assert!(matches!(open, PhaseOutcome::Continue(_)));
        assert_eq!(c.decisions[0].outcome, Outcome::FailOpen);
    }

    #[test]
    fn delays_add_up() {
        let d = std::time::Duration::from_millis(5);
        let chain = Chain::new(
            vec![
                Arc::new(Fixed("a", Ok(Verdict::Delay(d)))),
                Arc::new(Fixed("b", Ok(Verdict::Delay(d)))),
            ],
            FailureMode::Closed,
        );
        let out = block_on(chain.request_head(&mut ctx(), &mut head()));
        assert!(matches!(out, PhaseOutcome::Continue(x) if x == d * 2));
    }
}
