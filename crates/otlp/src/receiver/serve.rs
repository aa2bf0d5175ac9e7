//! Serving a listener's connections, for both protocols: accepting (a
//! failure is logged and paused on, not spun on; a connection beyond the
//! limit is closed at once), the TLS handshake, HTTP/1 and HTTP/2 with time
//! limits, and closing idle connections.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tokio::time::Instant;

use super::guard::{Activity, Guard, Policy};
use super::{Protocol, Timeouts};

/// How long accepting pauses after a failure other than a connection's
/// own (out of file descriptors, say), so as not to spin.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);
/// Accept failures and refused connections are logged at most once in this
/// long (with a count).
const LOG_EVERY: Duration = Duration::from_secs(10);
/// How long a closing connection may finish its requests.
const CLOSE_GRACE: Duration = Duration::from_secs(5);
/// HTTP/2 pings: every so often on a quiet connection, and how long an
/// answer may take before the connection is closed.
const H2_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
const H2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);
/// Requests under way at once on one HTTP/2 connection.
const H2_MAX_STREAMS: u32 = 100;

/// What every connection of a listener shares.
pub(super) struct Listener {
    pub router: Router,
    pub policy: Arc<Policy>,
    pub tls: Option<tokio_rustls::TlsAcceptor>,
    pub timeouts: Timeouts,
    /// Connections open at once; more are closed as they are accepted.
    pub max_connections: usize,
    builder: auto::Builder<TokioExecutor>,
}

impl Listener {
    pub(super) fn new(
        router: Router,
        policy: Policy,
        tls: Option<tokio_rustls::TlsAcceptor>,
        timeouts: Timeouts,
        max_connections: usize,
    ) -> Listener {
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder
            .http1()
            .timer(TokioTimer::new())
            // Also bounds how long a kept-alive connection waits for its
            // next request.
            .header_read_timeout(timeouts.header)
            .keep_alive(true);
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(H2_KEEPALIVE_INTERVAL)
            .keep_alive_timeout(H2_KEEPALIVE_TIMEOUT)
            .max_concurrent_streams(H2_MAX_STREAMS);
        if policy.protocol == Protocol::Grpc {
            builder = builder.http2_only();
        }
        Listener {
            router,
            policy: Arc::new(policy),
            tls,
            timeouts,
            max_connections,
            builder,
        }
    }
}

/// Counts occurrences of something worth a log line, and says when one
/// is due: the first, then at most one per [`LOG_EVERY`] with the count
/// since the last.
#[derive(Default)]
struct Occasional {
    unlogged: u64,
    logged_at: Option<Instant>,
}

impl Occasional {
    /// Counts one; gives the count to log when a line is due.
    fn due(&mut self) -> Option<u64> {
        self.unlogged += 1;
        if self.logged_at.is_some_and(|at| at.elapsed() < LOG_EVERY) {
            return None;
        }
        self.logged_at = Some(Instant::now());
        Some(std::mem::take(&mut self.unlogged))
    }
}

/// A failure that is the connection's own: the listener is fine.
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused
    )
}

/// Serves `listener` until `stop` turns true, then lets open connections
/// finish (each closes gracefully, forcibly after a grace period).
pub(super) async fn serve(
    tcp: TcpListener,
    listener: Listener,
    stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let listener = Arc::new(listener);
    let mut stopping = stop.clone();
    let mut connections = JoinSet::new();
    let protocol = listener.policy.protocol.name();
    let (mut failures, mut refusals) = (Occasional::default(), Occasional::default());
    loop {
        let failed = tokio::select! {
            _ = stopping.wait_for(|stop| *stop) => break,
            accepted = tcp.accept() => match accepted {
                Ok((stream, _)) if connections.len() >= listener.max_connections => {
                    // Closed at once: the client fails fast and retries,
                    // instead of waiting in the backlog.
                    drop(stream);
                    if let Some(refused) = refusals.due() {
                        tracing::warn!(protocol, open = connections.len(), refused,
                            "at the limit of open connections; refusing new ones");
                    }
                    false
                }
                Ok((stream, _)) => {
                    connections.spawn(connection(stream, listener.clone(), stop.clone()));
                    false
                }
                Err(e) if is_connection_error(&e) => {
                    tracing::debug!(error = %e, "a connection went away before it was accepted");
                    false
                }
                Err(e) => {
                    if let Some(failures) = failures.due() {
                        tracing::error!(protocol, error = %e, failures,
                            "cannot accept connections (out of file descriptors?); retrying");
                    }
                    true
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => false,
        };
        if failed {
            tokio::select! {
                _ = stopping.wait_for(|stop| *stop) => break,
                () = tokio::time::sleep(ACCEPT_PAUSE) => {}
            }
        }
    }
    drop(tcp);
    while connections.join_next().await.is_some() {}
    Ok(())
}

/// One connection: TLS handshake (bounded by the header time limit), then
/// HTTP.
async fn connection(stream: TcpStream, listener: Arc<Listener>, stop: watch::Receiver<bool>) {
    let _ = stream.set_nodelay(true);
    match &listener.tls {
        None => http(stream, &listener, stop).await,
        Some(acceptor) => {
            let handshake = tokio::time::timeout(listener.timeouts.header, acceptor.accept(stream));
            match handshake.await {
                Ok(Ok(tls)) => http(tls, &listener, stop).await,
                Ok(Err(e)) => tracing::debug!(error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!("TLS handshake not done in time; closing"),
            }
        }
    }
}

/// Serves HTTP on `io` until the client closes it, it stays idle for the
/// idle time limit, or the receiver stops; a closing connection gets
/// [`CLOSE_GRACE`] to finish its requests.
async fn http<IO>(io: IO, listener: &Listener, mut stop: watch::Receiver<bool>)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let guard = Guard {
        router: listener.router.clone(),
        policy: listener.policy.clone(),
        activity: activity.clone(),
    };
    let conn = listener.builder.serve_connection(TokioIo::new(io), guard);
    tokio::pin!(conn);
    let mut deadline: Option<Instant> = None;
    loop {
        let closing = deadline.is_some();
        let forced = deadline.unwrap_or_else(Instant::now);
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            () = activity.idle_for(listener.timeouts.idle), if !closing => {
                tracing::debug!("closing an idle connection");
                conn.as_mut().graceful_shutdown();
                deadline = Some(Instant::now() + CLOSE_GRACE);
            }
            _ = stop.wait_for(|stop| *stop), if !closing => {
                conn.as_mut().graceful_shutdown();
                deadline = Some(Instant::now() + CLOSE_GRACE);
            }
            () = tokio::time::sleep_until(forced), if closing => {
                tracing::debug!("closing a connection that did not finish in time");
                return;
            }
        }
    }
}
