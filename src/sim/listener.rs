//! A TCP listener that can be shut and re-opened on the same port while the
//! HTTP server keeps running, so `refuse_connections` really refuses TCP
//! connections (the socket is closed, the kernel answers RST) and turning it
//! off brings the same address back with all state kept.
//!
//! Closing also cuts every open connection: a client's pooled keep-alive
//! connection must not keep working against a "dead" cluster.

use std::future::{Future, poll_fn};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

/// The shared switch between the accept loop and whoever sets faults.
pub struct Gate {
    addr: SocketAddr,
    /// Re-binding registers the socket with this runtime; set-faults calls
    /// may come from any thread.
    runtime: tokio::runtime::Handle,
    inner: Mutex<GateInner>,
}

struct GateInner {
    listener: Option<TcpListener>,
    /// The accept loop, parked while closed or waiting on the listener.
    waker: Option<Waker>,
    /// Cancelled to cut every connection accepted since the last open.
    connections: CancellationToken,
    /// Once stopped, the gate never opens again.
    stopped: bool,
}

fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // Our own closed connections linger in TIME_WAIT on this port; without
    // SO_REUSEADDR the re-bind would fail for a minute.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

impl Gate {
    /// Binds `addr` (port 0 picks a free port) and opens the gate.
    pub fn bind(addr: SocketAddr) -> io::Result<Arc<Self>> {
        let runtime = tokio::runtime::Handle::try_current().map_err(io::Error::other)?;
        let listener = {
            let _entered = runtime.enter();
            bind(addr)?
        };
        let addr = listener.local_addr()?;
        Ok(Arc::new(Self {
            addr,
            runtime,
            inner: Mutex::new(GateInner {
                listener: Some(listener),
                waker: None,
                connections: CancellationToken::new(),
                stopped: false,
            }),
        }))
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    fn lock(&self) -> MutexGuard<'_, GateInner> {
        // A panic while holding this lock leaves consistent data behind.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Closes the socket and cuts open connections. Synchronous: when this
    /// returns, new connections are refused.
    pub fn close(&self) {
        let mut inner = self.lock();
        inner.listener = None;
        inner.connections.cancel();
        inner.connections = CancellationToken::new();
        if let Some(waker) = inner.waker.take() {
            waker.wake();
        }
    }

    /// Re-binds the same address. Synchronous: when this returns `Ok`, the
    /// kernel accepts connections again.
    pub fn open(&self) -> io::Result<()> {
        let mut inner = self.lock();
        if inner.stopped || inner.listener.is_some() {
            return Ok(());
        }
        let listener = {
            let _entered = self.runtime.enter();
            bind(self.addr)?
        };
        inner.listener = Some(listener);
        if let Some(waker) = inner.waker.take() {
            waker.wake();
        }
        Ok(())
    }

    /// Re-opens, retrying in the background if the port is briefly busy.
    pub fn open_or_retry(self: &Arc<Self>, still_wanted: impl Fn() -> bool + Send + 'static) {
        if let Err(error) = self.open() {
            tracing::warn!(%error, addr = %self.addr, "sim: re-bind failed, retrying");
            let gate = Arc::clone(self);
            self.runtime.spawn(async move {
                while still_wanted() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    if gate.open().is_ok() {
                        break;
                    }
                }
            });
        }
    }

    /// Closes for good (fleet shutdown).
    pub fn stop(&self) {
        self.lock().stopped = true;
        self.close();
    }

    pub fn is_open(&self) -> bool {
        self.lock().listener.is_some()
    }

    fn poll_accept(
        &self,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<(TcpStream, SocketAddr, CancellationToken)>> {
        let mut inner = self.lock();
        let polled = match &inner.listener {
            Some(listener) => listener.poll_accept(cx),
            None => Poll::Pending,
        };
        match polled {
            Poll::Ready(Ok((stream, peer))) => {
                Poll::Ready(Ok((stream, peer, inner.connections.clone())))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                // Also park on the gate: closing drops the listener and with it
                // the socket's own wake-up registration.
                inner.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// The `axum::serve` listener side of a [`Gate`].
pub struct GateListener {
    pub gate: Arc<Gate>,
}

impl axum::serve::Listener for GateListener {
    type Io = KillableStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match poll_fn(|cx| self.gate.poll_accept(cx)).await {
                Ok((stream, peer, token)) => return (KillableStream::new(stream, token), peer),
                Err(error) => {
                    // Like axum's own listener: transient (e.g. EMFILE), back off.
                    tracing::debug!(%error, "sim: accept failed");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.gate.local_addr())
    }
}

/// A connection that fails all IO once its gate is closed, which makes the
/// HTTP server drop it even while it idles in keep-alive.
pub struct KillableStream {
    stream: TcpStream,
    killed: Pin<Box<WaitForCancellationFutureOwned>>,
}

impl KillableStream {
    fn new(stream: TcpStream, token: CancellationToken) -> Self {
        Self {
            stream,
            killed: Box::pin(token.cancelled_owned()),
        }
    }

    /// Registers for the kill signal and reports whether it fired.
    fn is_killed(&mut self, cx: &mut Context<'_>) -> bool {
        self.killed.as_mut().poll(cx).is_ready()
    }
}

fn cut() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "sim: connections refused")
}

impl AsyncRead for KillableStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.is_killed(cx) {
            return Poll::Ready(Err(cut()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for KillableStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.is_killed(cx) {
            return Poll::Ready(Err(cut()));
        }
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.is_killed(cx) {
            return Poll::Ready(Err(cut()));
        }
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn close_refuses_and_cuts_then_open_rebinds_same_port() {
        let gate = Gate::bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
        let addr = gate.local_addr();
        let server_gate = Arc::clone(&gate);
        // An echo server through the gate.
        tokio::spawn(async move {
            let mut listener = GateListener { gate: server_gate };
            loop {
                let (mut io, _) = axum::serve::Listener::accept(&mut listener).await;
                tokio::spawn(async move {
                    let mut buf = [0u8; 16];
                    while let Ok(n) = io.read(&mut buf).await {
                        if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });

        let mut client = TcpStream::connect(addr).await.expect("connect");
        client.write_all(b"hi").await.expect("write");
        let mut buf = [0u8; 2];
        client.read_exact(&mut buf).await.expect("echo");

        gate.close();
        let refused = TcpStream::connect(addr).await.expect_err("refused");
        assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
        // The open connection was cut: reading sees EOF or a reset.
        let mut rest = [0u8; 1];
        assert!(matches!(client.read(&mut rest).await, Ok(0) | Err(_)));

        gate.open().expect("re-bind");
        let mut again = TcpStream::connect(addr).await.expect("connect again");
        again.write_all(b"ok").await.expect("write");
        again.read_exact(&mut buf).await.expect("echo again");
        assert_eq!(&buf, b"ok");
    }
}
