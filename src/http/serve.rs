//! The listener: connections accepted within a budget, and a clock on every phase of a
//! connection's life, so no client can hold a socket, a task or a file descriptor for
//! longer than the settings say.
//!
//! `axum::serve` has no timers at all (it turns hyper's header timeout off), so a client
//! could send half a request head and wait forever, and enough idle sockets exhausted
//! the process's file descriptors. Here:
//!
//! - at most `max_connections` are open; beyond that new connections wait in the
//!   kernel's backlog until one closes, and an accept error (`EMFILE`) is logged and
//!   retried after a pause instead of spinning;
//! - a request head must be complete within `header_timeout` of its first byte (or of
//!   the connection opening);
//! - a keep-alive connection with no request in flight is closed after
//!   `keepalive_timeout` of silence;
//! - the body and the whole request have deadlines of their own (`super::deadlines`);
//! - a connection that becomes a WebSocket keeps its place in the budget until the
//!   socket closes (`ConnectionPermit`), so sockets count against `max_connections`
//!   like any connection.
//!
//! The two connection timers need to know whether a request is in flight, which only
//! the HTTP layer knows: the service below counts requests from the moment their head
//! is parsed until their response body has been written, and the socket wrapper reads
//! that count when a read would wait.

use std::{
    future::Future,
    io,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Duration,
};

use axum::{
    Router,
    body::{Body, Bytes, HttpBody},
    extract::ConnectInfo,
};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore},
    time::{Instant, Sleep},
};
use tower::ServiceExt;

/// The connection settings, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub header_timeout: Duration,
    pub keepalive_timeout: Duration,
    pub max_connections: usize,
}

/// A connection's place in the budget, shared by the connection and, once it upgrades,
/// by its WebSocket (which finds it in the request's extensions): the place comes
/// free when both are gone. hyper's connection ends at the upgrade, so without this a
/// socket would hold no place at all.
#[derive(Clone)]
pub struct ConnectionPermit(#[expect(dead_code, reason = "held for its Drop")] Arc<OwnedSemaphorePermit>);

/// Serves `router` on `listener` until `shutdown` resolves, then stops accepting and
/// waits for the connections to finish their requests (idle ones close at once).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    // Each connection holds a clone of `done`; when the last is dropped, all finished.
    let (done, mut all_done) = tokio::sync::mpsc::channel::<()>(1);
    let (closing, _) = tokio::sync::watch::channel(false);
    let mut builder = hyper::server::conn::http1::Builder::new();
    // hyper's own header timer runs from the end of the previous response, idle time
    // included; it stays as a backstop behind the finer timers of `TimedIo`.
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout + limits.keepalive_timeout);
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                // EMFILE/ENFILE and the like: the connection stays in the backlog; try
                // again shortly rather than spin on the error.
                tracing::warn!(error = %err, "accept failed; retrying in 100 ms");
                metrics::counter!("authgraph_http_accept_errors_total").increment(1);
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_millis(100)) => continue,
                    () = &mut shutdown => break,
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let clock = Arc::new(ConnectionClock::new());
        let io = TokioIo::new(TimedIo::new(stream, clock.clone(), limits));
        let router = router.clone();
        let permit = ConnectionPermit(Arc::new(permit));
        let held = permit.clone();
        let service = hyper::service::service_fn(move |mut req: axum::http::Request<hyper::body::Incoming>| {
            let guard = clock.request_started();
            req.extensions_mut().insert(ConnectInfo(peer));
            req.extensions_mut().insert(held.clone());
            let router = router.clone();
            let clock = clock.clone();
            async move {
                let response = router.oneshot(req.map(Body::new)).await?;
                // A WebSocket now owns the connection, with deadlines of its own.
                if response.status() == axum::http::StatusCode::SWITCHING_PROTOCOLS {
                    clock.upgraded.store(true, Ordering::SeqCst);
                }
                Ok::<_, std::convert::Infallible>(response.map(|body| GuardedBody { inner: body, _guard: guard }))
            }
        });
        // With upgrades: a WebSocket takes the connection over once its 101 is sent.
        let connection = builder.serve_connection(io, service).with_upgrades();
        metrics::gauge!("authgraph_http_connections").increment(1.0);
        let (done, mut closing) = (done.clone(), closing.subscribe());
        tokio::spawn(async move {
            tokio::pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                () = async { let _ = closing.wait_for(|c| *c).await; } => {
                    // Finish the request in flight, then close; idle ones close at once.
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(err) = ended {
                tracing::debug!(error = %err, "connection ended with an error");
            }
            metrics::gauge!("authgraph_http_connections").decrement(1.0);
            drop((permit, done));
        });
    }
    drop(listener);
    let _ = closing.send(true);
    drop(done);
    let _ = all_done.recv().await;
    Ok(())
}

/// Whether a connection has a request in flight, and since when it has been idle.
struct ConnectionClock {
    in_flight: AtomicUsize,
    /// Bumped when a request head has been parsed: the head that was being timed is done.
    generation: AtomicU64,
    idle_since: Mutex<Instant>,
    /// The connection became a WebSocket: HTTP's head and idle deadlines end here.
    upgraded: AtomicBool,
}

impl ConnectionClock {
    fn new() -> Self {
        Self {
            in_flight: AtomicUsize::new(0),
            generation: AtomicU64::new(0),
            idle_since: Mutex::new(Instant::now()),
            upgraded: AtomicBool::new(false),
        }
    }

    fn request_started(self: &Arc<Self>) -> RequestGuard {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        self.generation.fetch_add(1, Ordering::SeqCst);
        RequestGuard(self.clone())
    }
}

/// Held by a request until its response body is written (or the request is dropped).
struct RequestGuard(Arc<ConnectionClock>);

impl Drop for RequestGuard {
    fn drop(&mut self) {
        *self.0.idle_since.lock().unwrap() = Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A response body that keeps its request counted as in flight until hyper is done
/// writing it.
struct GuardedBody {
    inner: Body,
    _guard: RequestGuard,
}

impl HttpBody for GuardedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.get_mut().inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// The socket, failing a read that waits past the connection's current deadline: the
/// head's (from its first byte) while a head is arriving, the keep-alive one while the
/// connection is idle, none while a request is in flight.
struct TimedIo {
    inner: TcpStream,
    clock: Arc<ConnectionClock>,
    limits: ConnectionLimits,
    /// When the head now arriving began, and the generation it belongs to.
    head_started: Option<(Instant, u64)>,
    sleep: Pin<Box<Sleep>>,
}

impl TimedIo {
    fn new(inner: TcpStream, clock: Arc<ConnectionClock>, limits: ConnectionLimits) -> Self {
        let now = Instant::now();
        // A new connection is timed like a head from the start: it must send one.
        Self { inner, clock, limits, head_started: Some((now, 0)), sleep: Box::pin(tokio::time::sleep_until(now)) }
    }

    fn deadline(&self) -> Option<Instant> {
        if self.clock.in_flight.load(Ordering::SeqCst) > 0 || self.clock.upgraded.load(Ordering::SeqCst) {
            return None;
        }
        let generation = self.clock.generation.load(Ordering::SeqCst);
        match self.head_started {
            Some((start, g)) if g == generation => Some(start + self.limits.header_timeout),
            _ => Some(*self.clock.idle_since.lock().unwrap() + self.limits.keepalive_timeout),
        }
    }

    fn on_bytes(&mut self) {
        let generation = self.clock.generation.load(Ordering::SeqCst);
        let idle = self.clock.in_flight.load(Ordering::SeqCst) == 0;
        if idle && self.head_started.is_none_or(|(_, g)| g != generation) {
            self.head_started = Some((Instant::now(), generation));
        }
    }
}

impl AsyncRead for TimedIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.on_bytes();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(err)) => Poll::Ready(Err(err)),
            Poll::Pending => {
                let Some(deadline) = this.deadline() else { return Poll::Pending };
                if this.sleep.deadline() != deadline {
                    this.sleep.as_mut().reset(deadline);
                }
                match this.sleep.as_mut().poll(cx) {
                    Poll::Ready(()) => {
                        metrics::counter!("authgraph_http_timeouts_total", "phase" => "connection").increment(1);
                        Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "connection idle or head too slow")))
                    }
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl AsyncWrite for TimedIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Raises the soft limit on open files to the hard limit, so the connection budget,
/// not the default soft limit (often 1024), decides how many clients are served.
/// Returns the soft limit now in force.
pub fn raise_open_files_limit() -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit.rlim_cur = limit.rlim_max;
            }
        }
    }
    limit.rlim_cur
}

/// The connection budget that fits in `open_files` descriptors, keeping `reserve` for
/// the database pool, the log and the embedded PostgreSQL's watchdog.
pub fn fit_connections(wanted: usize, open_files: u64, reserve: usize) -> usize {
    let available = usize::try_from(open_files).unwrap_or(usize::MAX).saturating_sub(reserve).max(1);
    wanted.min(available)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_budget_fits_the_descriptors() {
        assert_eq!(fit_connections(10_000, 1024, 100), 924);
        assert_eq!(fit_connections(10_000, 1 << 20, 100), 10_000);
        assert_eq!(fit_connections(10, 5, 100), 1);
    }

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_limit() {
        let soft = raise_open_files_limit();
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: reads into the struct.
        assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) }, 0);
        assert_eq!(soft, limit.rlim_max);
    }
}
