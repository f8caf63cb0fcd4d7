//! A second, independent reading of HTTP/1 request framing, on the raw bytes.
//!
//! hyper resolves ambiguous framing the RFC 9112 way (Transfer-Encoding wins over
//! Content-Length, and the connection is closed afterwards) and removes the
//! `Content-Length` it ignored, so a handler cannot see that a request carried both. A
//! gateway must refuse such requests outright (400, then close): the upstream behind it
//! might have framed them the other way. [`Sniff`] wraps an HTTP/1 connection's byte
//! stream, follows message boundaries (heads, fixed-length and chunked bodies), checks
//! every head with [`crate::hygiene::framing`], and queues one verdict per request in
//! order; the service takes the verdict of each request it handles.
//!
//! When the stream stops being HTTP/1 messages (an h2c preface, an upgrade, a head
//! hyper will refuse anyway), sniffing stops and the queue goes quiet; the service then
//! falls back to checking the headers it can see.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Verdicts on request heads, in arrival order.
#[derive(Debug, Default)]
pub struct Verdicts {
    queue: Mutex<VecDeque<Result<(), &'static str>>>,
}

impl Verdicts {
    /// The verdict on the next request head, if the sniffer saw it.
    pub fn next(&self) -> Option<Result<(), &'static str>> {
        self.lock().pop_front()
    }

    fn push(&self, v: Result<(), &'static str>) {
        self.lock().push_back(v);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<Result<(), &'static str>>> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The framing state machine.
#[derive(Debug)]
pub struct Framer {
    state: State,
    buf: Vec<u8>,
    max_head: usize,
    max_headers: usize,
    verdicts: Arc<Verdicts>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Head,
    Fixed(u64),
    ChunkLine,
    ChunkData(u64),
    ChunkEnd(u8),
    Trailer,
    Off,
}

/// The longest chunk-size or trailer line followed before giving up.
const MAX_LINE: usize = 8192;

impl Framer {
    /// A framer for heads up to `max_head` bytes with up to `max_headers` fields.
    pub fn new(max_head: usize, max_headers: usize, verdicts: Arc<Verdicts>) -> Self {
        Self {
            state: State::Head,
            buf: Vec::new(),
            max_head,
            max_headers,
            verdicts,
        }
    }

    /// Follows `input`, the next bytes read from the client. Iterative, so a read full of
    /// tiny pipelined requests cannot grow the stack.
    pub fn feed(&mut self, input: &[u8]) {
        let mut owned: Vec<u8>;
        let mut bytes = input;
        while !bytes.is_empty() {
            match self.state {
                State::Off => return,
                State::Head => {
                    self.buf.extend_from_slice(bytes);
                    if !self.head() {
                        return;
                    }
                    // One head consumed: what is left in the buffer belongs to the body or
                    // to the next request.
                    owned = std::mem::take(&mut self.buf);
                    bytes = &owned;
                }
                State::Fixed(n) => {
                    let take = n.min(bytes.len() as u64);
                    bytes = bytes.get(take as usize..).unwrap_or_default();
                    self.state = if take == n {
                        State::Head
                    } else {
                        State::Fixed(n - take)
                    };
                }
                State::ChunkData(n) => {
                    let take = n.min(bytes.len() as u64);
                    bytes = bytes.get(take as usize..).unwrap_or_default();
                    self.state = if take == n {
                        State::ChunkEnd(2)
                    } else {
                        State::ChunkData(n - take)
                    };
                }
                State::ChunkEnd(k) => {
                    let take = usize::from(k).min(bytes.len());
                    bytes = bytes.get(take..).unwrap_or_default();
                    let left = k - take as u8;
                    self.state = if left == 0 {
                        State::ChunkLine
                    } else {
                        State::ChunkEnd(left)
                    };
                }
                State::ChunkLine | State::Trailer => {
                    let Some(nl) = memchr::memchr(b'\n', bytes) else {
                        self.buf.extend_from_slice(bytes);
                        if self.buf.len() > MAX_LINE {
                            self.state = State::Off;
                        }
                        return;
                    };
                    self.buf
                        .extend_from_slice(bytes.get(..nl).unwrap_or_default());
                    bytes = bytes.get(nl + 1..).unwrap_or_default();
                    let line = std::mem::take(&mut self.buf);
                    let line = line.strip_suffix(b"\r").unwrap_or(&line);
                    self.state = if self.state == State::Trailer {
                        if line.is_empty() {
                            State::Head
                        } else {
                            State::Trailer
                        }
                    } else {
                        match chunk_size(line) {
                            Some(0) => State::Trailer,
                            Some(n) => State::ChunkData(n),
                            None => State::Off,
                        }
                    };
                }
            }
        }
    }

    /// Parses one head from the buffer; true when one was consumed.
    fn head(&mut self) -> bool {
        // Empty lines before a request line are allowed (RFC 9112 section 2.2).
        let start = self
            .buf
            .iter()
            .take_while(|b| **b == b'\r' || **b == b'\n')
            .count();
        if start > 0 {
            self.buf.drain(..start);
        }
        if self.buf.is_empty() {
            return false;
        }
        let mut headers = vec![httparse::EMPTY_HEADER; self.max_headers.min(1024)];
        let mut req = httparse::Request::new(&mut headers);
        let parsed = req.parse(&self.buf);
        let len = match parsed {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => {
                if self.buf.len() > self.max_head {
                    self.stop();
                }
                return false;
            }
            // hyper refuses this head itself (or it is an h2c preface): stop following.
            Err(_) => {
                self.stop();
                return false;
            }
        };
        let te: Vec<&[u8]> = field(req.headers, "transfer-encoding");
        let cl: Vec<&[u8]> = field(req.headers, "content-length");
        let verdict = crate::hygiene::framing(req.version == Some(0), &te, &cl);
        let opaque_after = req.method == Some("CONNECT")
            || req
                .headers
                .iter()
                .any(|h| h.name.eq_ignore_ascii_case("upgrade"));
        let next = if verdict.is_err() || opaque_after {
            State::Off
        } else if !te.is_empty() {
            State::ChunkLine
        } else {
            match cl
                .first()
                .and_then(|v| std::str::from_utf8(v).ok()?.trim().parse().ok())
            {
                Some(0) | None => State::Head,
                Some(n) => State::Fixed(n),
            }
        };
        self.verdicts.push(verdict);
        self.buf.drain(..len);
        self.state = next;
        if next == State::Off {
            self.buf = Vec::new();
        }
        true
    }

    fn stop(&mut self) {
        self.state = State::Off;
        self.buf = Vec::new();
    }
}

fn field<'a>(headers: &[httparse::Header<'a>], name: &str) -> Vec<&'a [u8]> {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case(name))
        .map(|h| h.value)
        .collect()
}

fn chunk_size(line: &[u8]) -> Option<u64> {
    let end = line.iter().position(|b| *b == b';').unwrap_or(line.len());
    let hex = line.get(..end)?.trim_ascii();
    if hex.is_empty() || hex.len() > 15 {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()
}

pin_project_lite::pin_project! {
    /// A byte stream whose reads are followed by a [`Framer`].
    pub struct Sniff<T> {
        #[pin]
        inner: T,
        framer: Framer,
    }
}

impl<T> Sniff<T> {
    /// Wraps `inner`.
    pub fn new(inner: T, framer: Framer) -> Self {
        Self { inner, framer }
    }
}

impl<T: AsyncRead> AsyncRead for Sniff<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.project();
        let before = buf.filled().len();
        let res = this.inner.poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = res
            && let Some(new) = buf.filled().get(before..)
        {
            this.framer.feed(new);
        }
        res
    }
}

impl<T: AsyncWrite> AsyncWrite for Sniff<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, b: &[u8]) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write(cx, b)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.project().inner.poll_write_vectored(cx, bufs)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn run(chunks: &[&[u8]]) -> Vec<Result<(), &'static str>> {
        let v = Arc::new(Verdicts::default());
        let mut f = Framer::new(8192, 100, v.clone());
        for c in chunks {
            f.feed(c);
        }
        std::iter::from_fn(|| v.next()).collect()
    }

    #[test]
    fn pipelined_requests_with_bodies_each_get_a_verdict() {
        let stream = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n\
POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n0\r\nX-T: 1\r\n\r\n\
GET /d HTTP/1.1\r\nHost: x\r\n\r\n";
        assert_eq!(run(&[stream]), vec![Ok(()), Ok(()), Ok(()), Ok(())]);
        // The same stream one byte at a time.
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(run(&bytes), vec![Ok(()), Ok(()), Ok(()), Ok(())]);
    }

    #[test]
    fn content_length_with_transfer_encoding_in_either_order() {
        let te_first =
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n";
        let cl_first =
            b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(
            run(&[te_first]),
            vec![Err("content_length_and_transfer_encoding")]
        );
        assert_eq!(
            run(&[cl_first]),
            vec![Err("content_length_and_transfer_encoding")]
        );
    }

    #[test]
    fn a_body_that_looks_like_a_request_is_not_a_request() {
        let smuggled = b"POST / HTTP/1.1\r\nContent-Length: 48\r\n\r\n\
POST /x HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let body_len = smuggled.len()
            - smuggled
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .unwrap_or(0)
            - 4;
        let text = String::from_utf8_lossy(smuggled).replace("48", &body_len.to_string());
        assert_eq!(run(&[text.as_bytes()]), vec![Ok(())]);
    }

    #[test]
    fn h2c_preface_stops_sniffing() {
        assert!(run(&[b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"]).is_empty());
    }
}
