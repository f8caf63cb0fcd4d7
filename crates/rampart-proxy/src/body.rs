//! Body types: the request body sent upstream (streamed with a size limit, or buffered)
//! and the response body sent to the client (streamed from upstream, or generated), which
//! counts bytes and finishes the request's record when it ends or is dropped.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

/// Why a body stream failed.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The client sent more than the limit.
    #[error("request body larger than {0} bytes")]
    TooLarge(u64),
    /// The peer's stream failed.
    #[error(transparent)]
    Hyper(#[from] hyper::Error),
}

/// The request body sent upstream.
#[derive(Debug)]
pub enum RequestBody {
    /// No body.
    Empty,
    /// A buffered body.
    Full(Option<Bytes>),
    /// The client's body, streamed, cut off past `limit` bytes.
    Streaming {
        /// The client's stream.
        inner: Incoming,
        /// Bytes seen so far.
        seen: u64,
        /// The most bytes allowed.
        limit: u64,
        /// Set when the limit was crossed, so the proxy answers 413 rather than 502.
        exceeded: Arc<AtomicBool>,
    },
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            RequestBody::Empty => Poll::Ready(None),
            RequestBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            RequestBody::Streaming {
                inner,
                seen,
                limit,
                exceeded,
            } => match Pin::new(inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => {
                    if let Some(data) = frame.data_ref() {
                        *seen = seen.saturating_add(data.len() as u64);
                        if *seen > *limit {
                            exceeded.store(true, Ordering::Relaxed);
                            return Poll::Ready(Some(Err(BodyError::TooLarge(*limit))));
                        }
                    }
                    Poll::Ready(Some(Ok(frame)))
                }
                Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
                Poll::Ready(None) => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            },
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Empty => true,
            RequestBody::Full(b) => b.is_none(),
            RequestBody::Streaming { inner, .. } => inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Empty => SizeHint::with_exact(0),
            RequestBody::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            RequestBody::Streaming { inner, .. } => inner.size_hint(),
        }
    }
}

/// Called once when a response body ends, fails, or is dropped, with the bytes sent.
pub trait OnBodyEnd: Send + Sync + 'static {
    /// The response body is over; `bytes` were handed to the connection.
    fn finish(self: Box<Self>, bytes: u64, complete: bool);
}

/// The response body sent to the client.
pub struct ResponseBody {
    inner: Inner,
    sent: u64,
    on_end: Option<Box<dyn OnBodyEnd>>,
}

enum Inner {
    Upstream(Incoming),
    Full(Option<Bytes>),
}

impl ResponseBody {
    /// A generated body.
    pub fn full(b: impl Into<Bytes>) -> Self {
        let b = b.into();
        Self {
            inner: Inner::Full((!b.is_empty()).then_some(b)),
            sent: 0,
            on_end: None,
        }
    }

    /// The upstream's body, streamed.
    pub fn upstream(b: Incoming) -> Self {
        Self {
            inner: Inner::Upstream(b),
            sent: 0,
            on_end: None,
        }
    }

    /// Calls `f` when the body is over.
    pub fn on_end(mut self, f: Box<dyn OnBodyEnd>) -> Self {
        self.on_end = Some(f);
        self
    }

    fn end(&mut self, complete: bool) {
        if let Some(f) = self.on_end.take() {
            f.finish(self.sent, complete);
        }
    }
}

impl std::fmt::Debug for ResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResponseBody")
            .field("sent", &self.sent)
            .finish()
    }
}

impl Drop for ResponseBody {
    fn drop(&mut self) {
        let complete = self.is_end_stream();
        self.end(complete);
    }
}

impl Body for ResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let polled = match &mut this.inner {
            Inner::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            Inner::Upstream(body) => Pin::new(body).poll_frame(cx),
        };
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    this.sent += d.len() as u64;
                }
            }
            Poll::Ready(None) => this.end(true),
            Poll::Ready(Some(Err(_))) => this.end(false),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Full(b) => b.is_none(),
            Inner::Upstream(b) => b.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Full(b) => SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            Inner::Upstream(b) => b.size_hint(),
        }
    }
}
