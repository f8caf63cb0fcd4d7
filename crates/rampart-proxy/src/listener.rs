//! Accepting connections: TLS handshakes, HTTP/1.1 and HTTP/2 (ALPN or h2c prior
//! knowledge) with the hygiene limits of the runtime in force, idle timeouts, and
//! graceful draining.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::framing::{Framer, Sniff, Verdicts};
use crate::service::{ConnInfo, Shared};

/// Runs the accept loop of one listener until `stop` turns true, then hands every open
/// connection to `graceful` for draining.
pub async fn serve(
    listener: TcpListener,
    name: Arc<str>,
    shared: Arc<Shared>,
    graceful: Arc<GracefulShutdown>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let shared = shared.clone();
                    let name = name.clone();
                    let watcher = graceful.watcher();
                    tokio::spawn(async move {
                        shared.metrics.connections.inc();
                        connection(stream, peer, name, shared.clone(), watcher).await;
                        shared.metrics.connections.dec();
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(listener = %name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            _ = stop.changed() => break,
        }
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    name: Arc<str>,
    shared: Arc<Shared>,
    graceful: Watcher,
) {
    let _ = stream.set_nodelay(true);
    let rt = shared.runtime.load_full();
    let Some(lrt) = rt.listeners.get(name.as_ref()).cloned() else {
        return;
    };
    let limits = rt.config.limits.clone();
    drop(rt);
    let idle = limits.idle_timeout.0;
    let head_buf = usize::try_from(limits.max_header_bytes.0)
        .unwrap_or(usize::MAX)
        .max(8192)
        + 1024;
    let verdicts = Arc::new(Verdicts::default());
    let framer = Framer::new(
        head_buf,
        limits.max_header_count.saturating_add(1),
        verdicts.clone(),
    );
    let header_timeout = limits.header_read_timeout.0;

    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .max_headers(limits.max_header_count.saturating_add(1))
        .max_buf_size(head_buf)
        .keep_alive(true);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        .max_pending_accept_reset_streams(limits.h2_max_pending_accept_reset_streams)
        .max_local_error_reset_streams(limits.h2_max_local_error_reset_streams)
        .max_header_list_size(u32::try_from(limits.max_header_bytes.0).unwrap_or(u32::MAX));

    match lrt.tls {
        None => {
            let builder = if lrt.http2 {
                builder
            } else {
                builder.http1_only()
            };
            let info = Arc::new(ConnInfo {
                peer,
                listener: name,
                scheme: "http",
                tls: None,
                framing: Some(verdicts),
            });
            let io = TokioIo::new(IdleIo::new(Sniff::new(stream, framer), idle));
            serve_http(builder, io, info, shared, graceful).await;
        }
        Some(tls) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(tls);
            let tls_stream =
                match tokio::time::timeout(header_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(peer = %peer, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(peer = %peer, "TLS handshake timed out");
                        return;
                    }
                };
            let tls_info = crate::tls::tls_info(tls_stream.get_ref().1);
            let h2 = tls_info.alpn.as_deref() == Some("h2");
            let mut info = ConnInfo {
                peer,
                listener: name,
                scheme: "https",
                tls: Some(Arc::new(tls_info)),
                framing: None,
            };
            if h2 {
                let io = TokioIo::new(IdleIo::new(tls_stream, idle));
                serve_http(builder.http2_only(), io, Arc::new(info), shared, graceful).await;
            } else {
                info.framing = Some(verdicts);
                let io = TokioIo::new(IdleIo::new(Sniff::new(tls_stream, framer), idle));
                serve_http(builder.http1_only(), io, Arc::new(info), shared, graceful).await;
            }
        }
    }
}

async fn serve_http<I>(
    builder: auto::Builder<TokioExecutor>,
    io: TokioIo<I>,
    info: Arc<ConnInfo>,
    shared: Arc<Shared>,
    graceful: Watcher,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = service_fn(move |req| {
        let shared = shared.clone();
        let info = info.clone();
        async move { Ok::<_, std::convert::Infallible>(shared.handle(info, req).await) }
    });
    let conn = builder
        .serve_connection_with_upgrades(io, service)
        .into_owned();
    let conn = graceful.watch(conn);
    if let Err(e) = conn.await {
        tracing::debug!(error = %e, "connection ended with an error");
    }
}

pin_project_lite::pin_project! {
    /// An I/O stream that fails with `TimedOut` after `timeout` without any progress in
    /// either direction: the idle timeout between requests, and the guard against a
    /// client that stops reading or writing mid-request.
    pub struct IdleIo<T> {
        #[pin]
        inner: T,
        timer: Pin<Box<tokio::time::Sleep>>,
        timeout: Duration,
        last: Instant,
    }
}

impl<T> IdleIo<T> {
    /// Wraps `inner` with an idle `timeout`.
    pub fn new(inner: T, timeout: Duration) -> Self {
        Self {
            inner,
            timer: Box::pin(tokio::time::sleep(timeout)),
            timeout,
            last: Instant::now(),
        }
    }
}

impl<T> IdleIo<T> {
    /// Passes on the result of an I/O operation: progress resets the idle clock; a pending
    /// operation fails with `TimedOut` once nothing moved for `timeout`.
    fn settle<R>(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        r: Poll<io::Result<R>>,
    ) -> Poll<io::Result<R>> {
        let this = self.project();
        if r.is_ready() {
            *this.last = Instant::now();
            return r;
        }
        let deadline = tokio::time::Instant::from_std(*this.last + *this.timeout);
        if this.timer.deadline() != deadline {
            this.timer.as_mut().reset(deadline);
        }
        match this.timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "idle timeout")))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncRead> AsyncRead for IdleIo<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let r = self.as_mut().project().inner.poll_read(cx, buf);
        self.settle(cx, r)
    }
}

impl<T: AsyncWrite> AsyncWrite for IdleIo<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = self.as_mut().project().inner.poll_write(cx, buf);
        self.settle(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = self.as_mut().project().inner.poll_write_vectored(cx, bufs);
        self.settle(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.project().inner.poll_shutdown(cx)
    }
}

/// Waits for `fut` at most `limit`; true when it finished in time.
pub async fn within<F: Future>(limit: Duration, fut: F) -> bool {
    tokio::time::timeout(limit, fut).await.is_ok()
}
