//! The server's listening socket with two bounds `axum::serve` lacks
//! (docs/api.md "Limits"):
//!
//! - **Open connections:** at most `max_connections`; beyond that the
//!   server stops accepting until one closes (new clients wait in the
//!   kernel's backlog), so clients cannot exhaust the node's file
//!   descriptors, which its P2P connections and store also need.
//! - **Idle connections:** a connection on which nothing was read or written
//!   for `idle_timeout` is closed, so idle or trickling clients release
//!   their slot (this also bounds the time to send request headers, which
//!   hyper does not).
//! - **Connection lifetime** (optional, [`BoundedListener::with_max_lifetime`]):
//!   a connection open for longer is closed however busy it is, so a client
//!   trickling its request a byte at a time cannot hold a slot either (the
//!   node's admin endpoint uses it; the public API keeps connections alive).

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

/// The peer address of a connection accepted by [`BoundedListener`], for
/// `ConnectInfo`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PeerAddr(pub(crate) SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, BoundedListener>>
    for PeerAddr
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, BoundedListener>) -> Self {
        PeerAddr(*stream.remote_addr())
    }
}

/// A TCP listener that holds at most a fixed number of connections, each
/// closed when idle (and, optionally, when open too long); serve it with
/// `axum::serve`.
#[derive(Debug)]
pub struct BoundedListener {
    inner: TcpListener,
    permits: Arc<Semaphore>,
    idle_timeout: Duration,
    max_lifetime: Option<Duration>,
    idle_until_first_read: bool,
}

impl BoundedListener {
    /// At most `max_connections` (at least 1) open at once, each closed
    /// after `idle_timeout` without a byte read or written.
    #[must_use]
    pub fn new(inner: TcpListener, max_connections: usize, idle_timeout: Duration) -> Self {
        BoundedListener {
            inner,
            permits: Arc::new(Semaphore::new(max_connections.max(1))),
            idle_timeout,
            max_lifetime: None,
            idle_until_first_read: false,
        }
    }

    /// Apply the idle timeout only until a connection's first byte arrives;
    /// from then on only the lifetime ([`Self::with_max_lifetime`]) bounds
    /// it. For endpoints whose requests may take long to answer: hyper keeps
    /// reading while the handler runs, so an idle timer would cut off an
    /// answer that takes longer than it.
    #[must_use]
    pub fn with_idle_until_first_read(mut self) -> Self {
        self.idle_until_first_read = true;
        self
    }

    /// Also close every connection `max_lifetime` after it was accepted.
    #[must_use]
    pub fn with_max_lifetime(mut self, max_lifetime: Duration) -> Self {
        self.max_lifetime = Some(max_lifetime);
        self
    }
}

impl axum::serve::Listener for BoundedListener {
    type Io = BoundedStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            // The semaphore is never closed, so acquiring only waits.
            let Ok(permit) = Arc::clone(&self.permits).acquire_owned().await else {
                continue;
            };
            match self.inner.accept().await {
                Ok((stream, addr)) => {
                    let _ = stream.set_nodelay(true);
                    let mut stream = BoundedStream::new(stream, permit, self.idle_timeout);
                    stream.lifetime = self.max_lifetime.map(|d| Box::pin(tokio::time::sleep(d)));
                    stream.idle_until_first_read = self.idle_until_first_read;
                    return (stream, addr);
                }
                Err(e) => {
                    // Out of descriptors or a connection reset before accept:
                    // back off briefly instead of spinning.
                    tracing::debug!(error = %e, "API accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A connection of a [`BoundedListener`]: holds its slot until dropped,
/// closed when idle or past its lifetime.
#[derive(Debug)]
pub struct BoundedStream {
    stream: TcpStream,
    _permit: OwnedSemaphorePermit,
    idle_timeout: Duration,
    idle: Pin<Box<Sleep>>,
    lifetime: Option<Pin<Box<Sleep>>>,
    /// Whether the idle timeout stops applying once a byte was read.
    idle_until_first_read: bool,
    /// Whether a byte was read.
    read_any: bool,
}

impl BoundedStream {
    fn new(stream: TcpStream, permit: OwnedSemaphorePermit, idle_timeout: Duration) -> Self {
        BoundedStream {
            stream,
            _permit: permit,
            idle_timeout,
            idle: Box::pin(tokio::time::sleep(idle_timeout)),
            lifetime: None,
            idle_until_first_read: false,
            read_any: false,
        }
    }

    fn touch(&mut self) {
        let deadline = Instant::now() + self.idle_timeout;
        self.idle.as_mut().reset(deadline);
    }

    fn check_idle(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        if let Some(lifetime) = self.lifetime.as_mut()
            && lifetime.as_mut().poll(cx).is_ready()
        {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "connection open for too long",
            ));
        }
        if self.idle_until_first_read && self.read_any {
            return Ok(());
        }
        match self.idle.as_mut().poll(cx) {
            Poll::Ready(()) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "API connection idle for too long",
            )),
            Poll::Pending => Ok(()),
        }
    }
}

impl AsyncRead for BoundedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(result) => {
                this.touch();
                this.read_any |= buf.filled().len() > before;
                Poll::Ready(result)
            }
            Poll::Pending => match this.check_idle(cx) {
                Ok(()) => Poll::Pending,
                Err(e) => Poll::Ready(Err(e)),
            },
        }
    }
}

impl AsyncWrite for BoundedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.stream).poll_write(cx, buf) {
            Poll::Ready(result) => {
                this.touch();
                Poll::Ready(result)
            }
            Poll::Pending => match this.check_idle(cx) {
                Ok(()) => Poll::Pending,
                Err(e) => Poll::Ready(Err(e)),
            },
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}
