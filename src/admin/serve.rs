//! Serving the admin API within bounds, on its TCP address and on its unix socket alike.
//!
//! Anyone on the machine may open connections to the loopback port and never finish a
//! request. Unbounded, such connections took every file descriptor: `/healthz` went dark and
//! polls failed with "Too many open files". So here each listener holds at most
//! [`Limits::connections`] connections (a sixteenth of the open-files limit, at most 256), a
//! request head must arrive within [`Limits::timeout`] of the connection's opening or of the
//! previous answer, and a connection that moves no byte for as long while no request of it is
//! being answered (an answer nobody reads) is closed. At the cap, a new connection closes the
//! one that has been quiet the longest and is not being answered, so a crowd of held
//! connections cannot keep an operator out; it is itself closed only when every one is being
//! answered. When accepting fails (out of file descriptors, most likely), that is logged and
//! tried again shortly, neither spinning nor silent.

use crate::clock::Clock;
use crate::throttle::Throttle;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;
use tracing::{debug, error, warn};

/// How long a request head may take to arrive, by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest request head (hyper's read buffer): admin requests are small, and each held
/// connection may fill its buffer (431 beyond).
const MAX_HEAD: usize = 16 * 1024;

/// How long a connection may stay quiet once the daemon is stopping.
const STOPPING_QUIET: Duration = Duration::from_secs(1);

/// The pause before accepting again after accepting failed.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    /// Connections one listener holds at once.
    pub connections: usize,
    /// For a request head to arrive, and for a connection to move a byte while none of its
    /// requests is being answered.
    pub timeout: Duration,
}

impl Limits {
    /// For a process that may open `nofile` files: each of the two listeners holds at most a
    /// sixteenth of them (at least 4, at most 256), so the admin API never holds more than an
    /// eighth and the rest stays for polls, deliveries and the store.
    pub fn for_open_files(nofile: u64, timeout: Duration) -> Limits {
        Limits {
            connections: (nofile / 16).clamp(4, 256) as usize,
            timeout,
        }
    }
}

/// A listener the admin API is served on.
pub trait Accept: Send + 'static {
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// In metrics: `tcp` or `socket`.
    const LABEL: &'static str;
    /// In log lines.
    const NAME: &'static str;
    /// The next connection to serve; `Ok(None)` when one was accepted and turned away.
    fn next(&mut self) -> impl Future<Output = io::Result<Option<Self::Io>>> + Send;
}

impl Accept for tokio::net::TcpListener {
    type Io = tokio::net::TcpStream;
    const LABEL: &'static str = "tcp";
    const NAME: &'static str = "admin API (TCP)";

    async fn next(&mut self) -> io::Result<Option<tokio::net::TcpStream>> {
        let (stream, _) = self.accept().await?;
        let _ = stream.set_nodelay(true);
        Ok(Some(stream))
    }
}

impl Accept for crate::access::LocalListener {
    type Io = tokio::net::UnixStream;
    const LABEL: &'static str = "socket";
    const NAME: &'static str = "admin socket";

    async fn next(&mut self) -> io::Result<Option<tokio::net::UnixStream>> {
        self.accept().await
    }
}

/// Serves `app` on `listener` within `limits` until `stop`, then lets the requests being
/// answered finish; connections between requests are closed, and those in the middle of
/// sending one once they have been quiet for a second.
pub async fn serve<L: Accept>(
    mut listener: L,
    app: Router,
    limits: Limits,
    clock: Clock,
    stop: CancellationToken,
) {
    let crowd = Arc::new(Crowd::new(clock.clone(), limits.connections, L::LABEL));
    let (at_cap, failing) = (Throttle::new(), Throttle::new());
    let tasks = TaskTracker::new();
    loop {
        let next = tokio::select! {
            _ = stop.cancelled() => break,
            next = listener.next() => next,
        };
        match next {
            Ok(Some(io)) => {
                let admitted = crowd.admit();
                if admitted.as_ref().is_none_or(|(_, made_room)| *made_room) {
                    crate::metrics::admin_closed(L::LABEL, "cap");
                    if let Some(closed) = at_cap.note_at(clock.instant()) {
                        warn!(
                            closed,
                            "{}: {} connections at once, its limit: a new one closes the one quiet the longest, or is closed itself while every one is being answered (logged at most once a minute; `closed` counts them since the last line)",
                            L::NAME,
                            limits.connections
                        );
                    }
                }
                if let Some((held, _)) = admitted {
                    tasks.spawn(connection(
                        io,
                        app.clone(),
                        held,
                        limits.timeout,
                        stop.clone(),
                    ));
                }
            }
            Ok(None) => {}
            Err(e) if passing(&e) => {}
            Err(e) => {
                crate::metrics::admin_accept_error(L::LABEL);
                if let Some(failures) = failing.note_at(clock.instant()) {
                    error!(
                        failures,
                        "{}: cannot accept connections: {e}; trying again every {} ms (logged at most once a minute; `failures` counts them since the last line)",
                        L::NAME,
                        ACCEPT_PAUSE.as_millis()
                    );
                }
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(ACCEPT_PAUSE) => {}
                }
            }
        }
    }
    tasks.close();
    tasks.wait().await;
}

/// Accept errors about one connection that went away before it was accepted.
fn passing(e: &io::Error) -> bool {
    use io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted
    )
}

/// One connection, served until it ends, is closed to make room, times out or goes quiet.
async fn connection<I>(io: I, app: Router, held: Held, timeout: Duration, stop: CancellationToken)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let conn = held.conn.clone();
    let watched = Watched {
        io,
        conn: conn.clone(),
    };
    let answered = conn.clone();
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let (app, answering) = (app.clone(), Answering::new(answered.clone()));
        async move {
            let answer = app.oneshot(req).await;
            drop(answering);
            answer
        }
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(timeout)
        .max_buf_size(MAX_HEAD);
    let served = http.serve_connection(TokioIo::new(watched), service);
    tokio::pin!(served);
    let mut stopping = false;
    let timed_out = loop {
        // Stopping, an answer being written goes on as long as it moves; a half-sent request
        // is not waited for.
        let quiet_limit = if stopping {
            timeout.min(STOPPING_QUIET)
        } else {
            timeout
        };
        tokio::select! {
            done = served.as_mut() => break done.is_err_and(|e| e.is_timeout()),
            _ = stop.cancelled(), if !stopping => {
                stopping = true;
                served.as_mut().graceful_shutdown();
            }
            // Counted where it was chosen.
            _ = conn.evicted.cancelled() => break false,
            _ = quiet(&conn, quiet_limit) => break !stopping,
        }
    };
    if timed_out {
        debug!(
            "{}: a connection closed: no request head within {timeout:?}, or quiet as long",
            held.crowd.label
        );
        crate::metrics::admin_closed(held.crowd.label, "timeout");
    }
}

/// Ends once `conn` has moved no byte for `timeout` while none of its requests was being
/// answered.
async fn quiet(conn: &Conn, timeout: Duration) {
    loop {
        let wait = if conn.answering() {
            timeout
        } else {
            timeout.saturating_sub(conn.quiet_for())
        };
        if wait.is_zero() {
            return;
        }
        tokio::time::sleep(wait).await;
    }
}

/// The open connections of one listener.
struct Crowd {
    cap: usize,
    label: &'static str,
    clock: Clock,
    /// What [`Conn::last`] counts from.
    epoch: Instant,
    open: Mutex<Vec<Arc<Conn>>>,
}

/// A connection, as the crowd sees it.
struct Conn {
    clock: Clock,
    epoch: Instant,
    /// When it last moved a byte or finished an answer: milliseconds since `epoch`.
    last: AtomicU64,
    /// Its requests being answered (the handler running).
    answering: AtomicUsize,
    /// Cancelled to close it, to make room.
    evicted: CancellationToken,
}

impl Conn {
    /// How long since `epoch`, on the daemon's clock.
    fn since_epoch(&self) -> Duration {
        self.clock.instant().saturating_duration_since(self.epoch)
    }

    fn touch(&self) {
        let now = crate::clock::ms(self.since_epoch());
        self.last.store(now, Ordering::Relaxed);
    }

    fn quiet_for(&self) -> Duration {
        let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
        self.since_epoch().saturating_sub(last)
    }

    fn answering(&self) -> bool {
        self.answering.load(Ordering::Relaxed) > 0
    }
}

/// A connection's place in its crowd, given up when dropped.
struct Held {
    crowd: Arc<Crowd>,
    conn: Arc<Conn>,
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut open = self.crowd.lock();
        open.retain(|c| !Arc::ptr_eq(c, &self.conn));
        crate::metrics::admin_connections(self.crowd.label, open.len());
    }
}

impl Crowd {
    fn new(clock: Clock, cap: usize, label: &'static str) -> Crowd {
        Crowd {
            cap,
            label,
            epoch: clock.instant(),
            clock,
            open: Mutex::new(Vec::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Arc<Conn>>> {
        self.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A place for a new connection, and whether another was closed to make it; none when
    /// the crowd is full and every one in it is being answered.
    fn admit(self: &Arc<Self>) -> Option<(Held, bool)> {
        let mut open = self.lock();
        let made_room = open.len() >= self.cap;
        if made_room {
            // The first of the quietest, so the oldest of them.
            let (i, _) = open
                .iter()
                .enumerate()
                .filter(|(_, c)| !c.answering())
                .min_by_key(|(_, c)| c.last.load(Ordering::Relaxed))?;
            open.remove(i).evicted.cancel();
        }
        let conn = Arc::new(Conn {
            clock: self.clock.clone(),
            epoch: self.epoch,
            last: AtomicU64::new(0),
            answering: AtomicUsize::new(0),
            evicted: CancellationToken::new(),
        });
        conn.touch();
        open.push(conn.clone());
        crate::metrics::admin_connections(self.label, open.len());
        let held = Held {
            crowd: self.clone(),
            conn,
        };
        Some((held, made_room))
    }
}

/// A request being answered, while this lives.
struct Answering(Arc<Conn>);

impl Answering {
    fn new(conn: Arc<Conn>) -> Answering {
        conn.answering.fetch_add(1, Ordering::Relaxed);
        Answering(conn)
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        self.0.touch();
        self.0.answering.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A connection's bytes, noting when they move.
struct Watched<I> {
    io: I,
    conn: Arc<Conn>,
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let me = self.get_mut();
        let before = buf.filled().len();
        let read = Pin::new(&mut me.io).poll_read(cx, buf);
        if matches!(read, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            me.conn.touch();
        }
        read
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        let written = Pin::new(&mut me.io).poll_write(cx, buf);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            me.conn.touch();
        }
        written
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let me = self.get_mut();
        let written = Pin::new(&mut me.io).poll_write_vectored(cx, bufs);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            me.conn.touch();
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_is_a_sixteenth_of_the_open_files_between_4_and_256() {
        let cap = |n| Limits::for_open_files(n, DEFAULT_TIMEOUT).connections;
        assert_eq!(
            [cap(16), cap(256), cap(1024), cap(4096), cap(524_288)],
            [4, 16, 64, 256, 256]
        );
    }

    /// A crowd whose clock started 10 s ago: a new connection's `last` is about 10,000.
    fn crowd(cap: usize) -> Arc<Crowd> {
        let ago = Instant::now().checked_sub(Duration::from_secs(10)).unwrap();
        Arc::new(Crowd {
            epoch: ago,
            ..Crowd::new(Clock::system(), cap, "tcp")
        })
    }

    #[test]
    fn a_full_crowd_closes_its_quietest_connection_not_one_being_answered() {
        let crowd = crowd(3);
        let held: Vec<Held> = (0..3).map(|_| crowd.admit().unwrap().0).collect();
        assert!(held.iter().all(|h| !h.conn.evicted.is_cancelled()));
        // The first is the quietest but is being answered; of the other two, the third has
        // been quiet longer.
        let _answering = Answering::new(held[0].conn.clone());
        for (h, last) in held.iter().zip([0, 2_000, 1_000]) {
            h.conn.last.store(last, Ordering::Relaxed);
        }
        let (fourth, made_room) = crowd.admit().unwrap();
        assert!(made_room);
        let closed: Vec<bool> = held.iter().map(|h| h.conn.evicted.is_cancelled()).collect();
        assert_eq!(closed, [false, false, true]);
        assert_eq!(crowd.lock().len(), 3);
        // Equally quiet: the older goes.
        held[1].conn.last.store(5_000, Ordering::Relaxed);
        fourth.conn.last.store(5_000, Ordering::Relaxed);
        let (fifth, _) = crowd.admit().unwrap();
        assert!(held[1].conn.evicted.is_cancelled());
        assert!(!fourth.conn.evicted.is_cancelled());
        // A new connection counts as having just moved.
        let (_sixth, _) = crowd.admit().unwrap();
        assert!(fourth.conn.evicted.is_cancelled());
        assert!(!fifth.conn.evicted.is_cancelled());
        // A connection that ends gives its place back.
        drop(fifth);
        assert_eq!(crowd.lock().len(), 2);
        let (_seventh, made_room) = crowd.admit().unwrap();
        assert!(!made_room);
    }

    #[test]
    fn a_full_crowd_where_every_one_is_being_answered_turns_the_new_one_away() {
        let crowd = crowd(2);
        let held: Vec<Held> = (0..2).map(|_| crowd.admit().unwrap().0).collect();
        let answering: Vec<Answering> = held
            .iter()
            .map(|h| Answering::new(h.conn.clone()))
            .collect();
        assert!(crowd.admit().is_none());
        assert!(held.iter().all(|h| !h.conn.evicted.is_cancelled()));
        // Once an answer is done, its connection may make room.
        drop(answering);
        assert!(crowd.admit().is_some());
    }
}
