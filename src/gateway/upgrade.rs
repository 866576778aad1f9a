//! Upgrade requests (WebSockets) reach their upstream over a connection of
//! their own whose reads wait until Pingora has passed the request's own
//! body end to it: a workaround for a race in Pingora 0.9.1.
//!
//! The race, in `pingora-proxy` 0.9.1 `src/proxy_h1.rs`: an upgrade request
//! has an empty body, so `proxy_handle_downstream` queues its end
//! (`HttpTask::Body(None, true)`, lines 485-499) into the pipe before the
//! upstream half runs. `proxy_handle_upstream` then `select!`s, in random
//! order, between reading the response and taking that task (lines
//! 266-334). Taken first, all is well: reading the `101` then resets
//! `request_done` (line 277). But when the upstream's `101` is already
//! readable (an upstream answering within microseconds) and is read first,
//! the stale body end is handled after it, under "An upgraded request is
//! terminated when either side is done" (lines 330-333): both sides count as
//! done, the loop ends, and the client gets its `101` and then a closed
//! connection. Reported upstream as cloudflare/pingora#946; drop this module
//! once a Pingora release the gateway can take fixes it.
//!
//! So for an upgrade without a body the gateway connects to the upstream
//! itself (Pingora's `custom_l4` hook, through a virtual socket) and holds
//! that socket's reads until the second flush after the gateway armed it in
//! `upstream_request_filter`: the first is the request header's
//! (`write_request_header`), the second is `finish_body`'s, which is where
//! `proxy_handle_upstream` sends that body end. A pending read leaves only
//! the pipe to `select!`, so the body end is always handled before the
//! `101`. No timer is involved: the wait ends within the same task, before
//! anything could have been read. Other requests never come here.
//!
//! What a virtual socket costs: Pingora sees no file descriptor for the
//! connection (`-1` where one is reported, no local address in its socket
//! digest), and the connection is never reused. This leans on Pingora
//! flushing in `finish_body` even for an empty body; were a Pingora update
//! to stop, upgrades would wait out the route's `read_timeout` and the
//! WebSocket tests would fail.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use async_trait::async_trait;
use futures_util::task::AtomicWaker;
use pingora::connectors::L4Connect;
use pingora::protocols::l4::socket::SocketAddr;
use pingora::protocols::l4::stream::Stream;
use pingora::protocols::l4::virt::{VirtualSockOpt, VirtualSocket, VirtualSocketStream};
use pingora::upstreams::peer::HttpPeer;
use pingora::{Error, ErrorType, Result};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Not armed yet (a TLS handshake reads freely): reads pass.
const IDLE: u8 = 0;
/// Armed: the request header's flush comes next. Reads wait.
const HEADER: u8 = 1;
/// The header is flushed: reads wait for the body end's flush.
const BODY_END: u8 = 2;
/// The body end is flushed: reads pass from now on.
const OPEN: u8 = 3;

/// Tells an upgrade's upstream socket when its reads may start.
#[derive(Debug)]
pub struct UpgradeGate {
    state: AtomicU8,
    reader: AtomicWaker,
}

impl UpgradeGate {
    fn new() -> Self {
        Self {
            state: AtomicU8::new(IDLE),
            reader: AtomicWaker::new(),
        }
    }

    /// The next flush on the connection is the request header's.
    pub fn arm(&self) {
        self.state.store(HEADER, Ordering::Release);
    }

    fn closed(&self) -> bool {
        matches!(self.state.load(Ordering::Acquire), HEADER | BODY_END)
    }

    fn flushed(&self) {
        match self.state.load(Ordering::Acquire) {
            HEADER => self.state.store(BODY_END, Ordering::Release),
            BODY_END => {
                self.state.store(OPEN, Ordering::Release);
                self.reader.wake();
            }
            _ => {}
        }
    }

    fn poll_open(&self, cx: &mut Context<'_>) -> Poll<()> {
        if !self.closed() {
            return Poll::Ready(());
        }
        self.reader.register(cx.waker());
        // Opened between the check and the registration: no wake is coming.
        if self.closed() {
            Poll::Pending
        } else {
            Poll::Ready(())
        }
    }
}

/// Points `peer` at a fresh gated connection and returns its gate, to arm
/// in `upstream_request_filter`. The connection is never reused: its pool
/// key is unique, so no idle connection is picked up for it (that one would
/// have no gate, or a spent one) and no other request picks it up, and its
/// idle time is zero, so a refused upgrade's keep-alive connection that
/// Pingora hands to its pool is closed at once.
pub fn gate(peer: &mut HttpPeer, connect_timeout: Duration) -> Arc<UpgradeGate> {
    // From 1: 0 is a plain peer's key (a TLS route's is a hash of its roots).
    static POOL_KEYS: AtomicU64 = AtomicU64::new(1);
    let gate = Arc::new(UpgradeGate::new());
    peer.options.custom_l4 = Some(Arc::new(GatedConnect {
        gate: Arc::clone(&gate),
        timeout: connect_timeout,
    }));
    peer.group_key = POOL_KEYS.fetch_add(1, Ordering::Relaxed);
    peer.options.idle_timeout = Some(Duration::ZERO);
    gate
}

/// Connects like Pingora's own TCP connector (its connection timeout and
/// error kinds, `TCP_NODELAY`) and wraps the socket in the gate. Pingora's
/// other TCP settings (bind address, buffer sizes, DSCP, fast open,
/// keepalive) are not applied: the gateway's peers set none of them.
#[derive(Debug)]
struct GatedConnect {
    gate: Arc<UpgradeGate>,
    timeout: Duration,
}

#[async_trait]
impl L4Connect for GatedConnect {
    async fn connect(&self, addr: &SocketAddr) -> Result<Stream> {
        let SocketAddr::Inet(inet) = addr else {
            return Error::e_explain(ErrorType::InternalError, "upstream is not an inet address");
        };
        let tcp = match tokio::time::timeout(self.timeout, TcpStream::connect(inet)).await {
            Ok(Ok(tcp)) => tcp,
            Ok(Err(e)) => {
                let etype = match e.kind() {
                    io::ErrorKind::ConnectionRefused => ErrorType::ConnectRefused,
                    io::ErrorKind::TimedOut => ErrorType::ConnectTimedout,
                    _ => ErrorType::ConnectError,
                };
                return Error::e_because(etype, format!("Fail to connect to {inet}"), e);
            }
            Err(_) => {
                return Error::e_explain(
                    ErrorType::ConnectTimedout,
                    format!("timeout {:?} connecting to server {inet}", self.timeout),
                );
            }
        };
        let socket = GatedSocket {
            tcp,
            gate: Arc::clone(&self.gate),
        };
        Ok(VirtualSocketStream::new(Box::new(socket)).into())
    }
}

/// The upstream TCP socket of an upgrade, its reads behind the gate.
#[derive(Debug)]
struct GatedSocket {
    tcp: TcpStream,
    gate: Arc<UpgradeGate>,
}

impl VirtualSocket for GatedSocket {
    fn set_socket_option(&self, opt: VirtualSockOpt) -> io::Result<()> {
        match opt {
            VirtualSockOpt::NoDelay => self.tcp.set_nodelay(true),
            // The gateway's peers set no TCP keepalive (nor anything else
            // Pingora may add): say so, loudly, if one ever does.
            other => Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("{other:?} on an upgrade's upstream connection"),
            )),
        }
    }
}

impl AsyncRead for GatedSocket {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.gate.poll_open(cx));
        Pin::new(&mut this.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for GatedSocket {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let result = ready!(Pin::new(&mut this.tcp).poll_flush(cx));
        if result.is_ok() {
            this.gate.flushed();
        }
        Poll::Ready(result)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::task::Waker;

    #[test]
    fn reads_wait_from_arming_until_the_second_flush() {
        let gate = UpgradeGate::new();
        let mut cx = Context::from_waker(Waker::noop());
        assert!(gate.poll_open(&mut cx).is_ready(), "open before arming");
        gate.arm();
        assert!(gate.poll_open(&mut cx).is_pending());
        gate.flushed(); // the request header
        assert!(gate.poll_open(&mut cx).is_pending());
        gate.flushed(); // the request's body end
        assert!(gate.poll_open(&mut cx).is_ready());
        gate.flushed();
        assert!(gate.poll_open(&mut cx).is_ready(), "stays open");
    }
}
