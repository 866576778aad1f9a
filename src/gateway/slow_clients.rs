//! A deadline for request headers. Pingora times out each read on its own,
//! so a client dripping one byte at a time would hold a connection forever;
//! here every connection's stream is wrapped so that a request's headers must
//! arrive within `server.header_timeout` of its first byte (of the connection
//! for the first request), or the connection gets a 408 and is closed.
//!
//! The proxy phases tell the stream where a request is: `headers_received`
//! once Pingora has parsed them, `request_done` once the answer is written.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::{
    ALPN, GetProxyDigest, GetSocketDigest, GetTimingDigest, Peek, Shutdown, Ssl, Stream, UniqueID,
    UniqueIDType,
};
use pingora::server::ShutdownWatch;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// The answer to a client whose headers did not arrive in time.
const TIMEOUT_RESPONSE: &[u8] = b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\ncontent-length: 71\r\nconnection: close\r\ncache-control: no-store\r\n\r\n{\"error\":\"The request did not arrive in time\",\"code\":\"request_timeout\"}";

/// Between requests: the next byte starts a new header deadline.
const IDLE: u8 = 0;
/// Reading headers against the deadline.
const HEADERS: u8 = 1;
/// Headers parsed: body and answer run under the proxy's own timeouts.
const PAST_HEADERS: u8 = 2;

/// A client connection with a header deadline.
#[derive(Debug)]
pub struct DeadlineStream {
    inner: Stream,
    timeout: Duration,
    phase: AtomicU8,
    deadline: Pin<Box<Sleep>>,
}

impl DeadlineStream {
    /// The first request's headers are due `timeout` after the connection opened.
    pub fn new(inner: Stream, timeout: Duration) -> Self {
        Self {
            inner,
            timeout,
            phase: AtomicU8::new(HEADERS),
            deadline: Box::pin(tokio::time::sleep(timeout)),
        }
    }

    /// The request's headers were parsed: the deadline no longer applies.
    pub fn headers_received(&self) {
        self.phase.store(PAST_HEADERS, Ordering::Relaxed);
    }

    /// The request was answered: the next one starts with its first byte.
    pub fn request_done(&self) {
        self.phase.store(IDLE, Ordering::Relaxed);
    }

    /// `headers_received` / `request_done` on the stream under `stream`, if it is one.
    pub fn of(stream: Option<&Stream>) -> Option<&Self> {
        stream.and_then(|s| s.as_any().downcast_ref::<Self>())
    }
}

impl AsyncRead for DeadlineStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        let phase = this.phase.load(Ordering::Relaxed);
        if phase == HEADERS && this.deadline.as_mut().poll(cx).is_ready() {
            // Best effort: the headers are unfinished, so nothing was answered yet.
            let _ = Pin::new(&mut this.inner).poll_write(cx, TIMEOUT_RESPONSE);
            return Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "request headers did not arrive in time",
            )));
        }
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if phase == IDLE && buf.filled().len() > before {
            this.phase.store(HEADERS, Ordering::Relaxed);
            let due = Instant::now() + this.timeout;
            this.deadline.as_mut().reset(due);
        }
        result
    }
}

impl AsyncWrite for DeadlineStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[async_trait]
impl Shutdown for DeadlineStream {
    async fn shutdown(&mut self) {
        self.inner.shutdown().await
    }
}

impl UniqueID for DeadlineStream {
    fn id(&self) -> UniqueIDType {
        self.inner.id()
    }
}

impl Ssl for DeadlineStream {
    fn get_ssl(&self) -> Option<&pingora::protocols::tls::TlsRef> {
        self.inner.get_ssl()
    }

    fn get_ssl_digest(&self) -> Option<Arc<pingora::protocols::tls::SslDigest>> {
        self.inner.get_ssl_digest()
    }

    fn selected_alpn_proto(&self) -> Option<pingora::protocols::ALPN> {
        self.inner.selected_alpn_proto()
    }
}

impl GetTimingDigest for DeadlineStream {
    fn get_timing_digest(&self) -> Vec<Option<pingora::protocols::TimingDigest>> {
        self.inner.get_timing_digest()
    }
}

impl GetProxyDigest for DeadlineStream {
    fn get_proxy_digest(&self) -> Option<Arc<pingora::protocols::raw_connect::ProxyDigest>> {
        self.inner.get_proxy_digest()
    }
}

impl GetSocketDigest for DeadlineStream {
    fn get_socket_digest(&self) -> Option<Arc<pingora::protocols::SocketDigest>> {
        self.inner.get_socket_digest()
    }
}

#[async_trait]
impl Peek for DeadlineStream {
    async fn try_peek(&mut self, buf: &mut [u8]) -> std::io::Result<bool> {
        self.inner.try_peek(buf).await
    }
}

/// Wraps every accepted connection of `inner` in a [`DeadlineStream`].
pub struct WithHeaderDeadline<A> {
    inner: Arc<A>,
    timeout: Duration,
}

impl<A> WithHeaderDeadline<A> {
    pub fn new(inner: A, timeout: Duration) -> Self {
        Self {
            inner: Arc::new(inner),
            timeout,
        }
    }
}

#[async_trait]
impl<A: ServerApp + Send + Sync + 'static> ServerApp for WithHeaderDeadline<A> {
    async fn process_new(
        self: &Arc<Self>,
        stream: Stream,
        shutdown: &ShutdownWatch,
    ) -> Option<Stream> {
        // HTTP/2 multiplexes requests on one connection: its streams are
        // not read as one request after another, so no per-request deadline
        // fits the connection (h2 keeps its own flow control and limits).
        if stream.selected_alpn_proto() == Some(ALPN::H2) {
            return self.inner.process_new(stream, shutdown).await;
        }
        let stream: Stream = Box::new(DeadlineStream::new(stream, self.timeout));
        self.inner.process_new(stream, shutdown).await
    }

    async fn cleanup(&self) {
        self.inner.cleanup().await
    }
}
