//! [`ReceiverBuilder`]: listen addresses, TLS, bearer token, limits.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;

use super::guard::Policy;
use super::serve::{self, Listener};
use super::sink::TraceSink;
use super::{
    grpc, http, tls, Protocol, ReceiverError, RunningReceiver, Timeouts, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_REQUEST_BYTES,
};

/// Entry point: [`Receiver::builder`].
#[derive(Debug)]
pub struct Receiver;

impl Receiver {
    /// A builder with no listener and [`DEFAULT_MAX_REQUEST_BYTES`].
    pub fn builder() -> ReceiverBuilder {
        ReceiverBuilder::default()
    }
}

/// A PEM certificate chain and its key.
type Pem = (Vec<u8>, Vec<u8>);

/// Configures and starts a receiver.
#[derive(Clone)]
pub struct ReceiverBuilder {
    grpc: Option<SocketAddr>,
    grpc_tls: Option<Pem>,
    http: Option<SocketAddr>,
    http_tls: Option<Pem>,
    bearer_token: Option<String>,
    max_request_bytes: usize,
    max_connections: usize,
    timeouts: Timeouts,
}

impl std::fmt::Debug for ReceiverBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Neither the key nor the token.
        f.debug_struct("ReceiverBuilder")
            .field("grpc", &self.grpc)
            .field("grpc_tls", &self.grpc_tls.is_some())
            .field("http", &self.http)
            .field("http_tls", &self.http_tls.is_some())
            .field("bearer_token", &self.bearer_token.is_some())
            .field("max_request_bytes", &self.max_request_bytes)
            .field("max_connections", &self.max_connections)
            .field("timeouts", &self.timeouts)
            .finish()
    }
}

impl Default for ReceiverBuilder {
    fn default() -> Self {
        Self {
            grpc: None,
            grpc_tls: None,
            http: None,
            http_tls: None,
            bearer_token: None,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            timeouts: Timeouts::default(),
        }
    }
}

impl ReceiverBuilder {
    /// Serve OTLP/gRPC on `addr` (port 0 picks a free port).
    pub fn grpc(mut self, addr: SocketAddr) -> Self {
        self.grpc = Some(addr);
        self
    }

    /// Serve gRPC over TLS with this PEM certificate chain and key.
    pub fn grpc_tls_pem(
        mut self,
        cert_pem: impl Into<Vec<u8>>,
        key_pem: impl Into<Vec<u8>>,
    ) -> Self {
        self.grpc_tls = Some((cert_pem.into(), key_pem.into()));
        self
    }

    /// Serve both gRPC and HTTP over TLS with this PEM certificate chain
    /// and key.
    pub fn tls_pem(mut self, cert_pem: impl Into<Vec<u8>>, key_pem: impl Into<Vec<u8>>) -> Self {
        let pem = (cert_pem.into(), key_pem.into());
        self.grpc_tls = Some(pem.clone());
        self.http_tls = Some(pem);
        self
    }

    /// Serve OTLP/HTTP on `addr` (port 0 picks a free port).
    pub fn http(mut self, addr: SocketAddr) -> Self {
        self.http = Some(addr);
        self
    }

    /// Accept only requests with the header `Authorization: Bearer TOKEN`
    /// (as the OpenTelemetry Collector's `bearertokenauth`); others get
    /// gRPC `UNAUTHENTICATED` / HTTP 401.
    pub fn bearer_token(mut self, token: impl Into<String>) -> Self {
        self.bearer_token = Some(token.into());
        self
    }

    /// Largest accepted request, after decompression; larger ones get
    /// `RESOURCE_EXHAUSTED` / HTTP 413.
    pub fn max_request_bytes(mut self, n: usize) -> Self {
        self.max_request_bytes = n;
        self
    }

    /// Open connections per listener (default [`DEFAULT_MAX_CONNECTIONS`]).
    /// A connection beyond the limit is closed as soon as it is accepted,
    /// so its client fails fast and retries (OTLP exporters back off),
    /// and a warning says so, at most every 10 s. At least 1.
    pub fn max_connections(mut self, n: usize) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// Time limits of the connections (default [`Timeouts::default`]).
    pub fn timeouts(mut self, timeouts: Timeouts) -> Self {
        self.timeouts = timeouts;
        self
    }

    /// Binds the listeners and serves until [`RunningReceiver::shutdown`]
    /// (or drop). Must be called within a tokio runtime.
    pub async fn start<S: TraceSink>(self, sink: S) -> Result<RunningReceiver, ReceiverError> {
        if self.grpc.is_none() && self.http.is_none() {
            return Err(ReceiverError::NoListener);
        }
        let tls_of = |pem: &Option<Pem>, protocol| {
            pem.as_ref()
                .map(|(cert, key)| tls::acceptor(cert, key, protocol))
                .transpose()
        };
        let grpc_tls = tls_of(&self.grpc_tls, Protocol::Grpc)?;
        let http_tls = tls_of(&self.http_tls, Protocol::Http)?;
        // Bind both before serving, so a failure leaves nothing running.
        let grpc = match self.grpc {
            Some(addr) => Some(bind(Protocol::Grpc, addr).await?),
            None => None,
        };
        let http = match self.http {
            Some(addr) => Some(bind(Protocol::Http, addr).await?),
            None => None,
        };
        let sink: Arc<dyn TraceSink> = Arc::new(sink);
        let (stop, stopped) = watch::channel(false);
        let mut running = RunningReceiver {
            grpc_addr: None,
            http_addr: None,
            stop,
            tasks: Vec::new(),
        };
        for (protocol, bound, tls) in [
            (Protocol::Grpc, grpc, grpc_tls),
            (Protocol::Http, http, http_tls),
        ] {
            let Some((tcp, addr)) = bound else { continue };
            let router = match protocol {
                Protocol::Grpc => grpc::router(sink.clone(), self.max_request_bytes),
                Protocol::Http => http::router(sink.clone(), self.max_request_bytes),
            };
            self.announce(protocol, addr, tls.is_some());
            let policy = Policy {
                protocol,
                expected_authorization: self
                    .bearer_token
                    .as_ref()
                    .map(|t| format!("Bearer {t}").into_bytes()),
                request_timeout: self.timeouts.request,
            };
            let listener = Listener::new(router, policy, tls, self.timeouts, self.max_connections);
            let stopped = stopped.clone();
            running.tasks.push(tokio::spawn(async move {
                serve::serve(tcp, listener, stopped)
                    .await
                    .map_err(|e| ReceiverError::Serve {
                        protocol: protocol.name(),
                        message: e.to_string(),
                    })
            }));
            match protocol {
                Protocol::Grpc => running.grpc_addr = Some(addr),
                Protocol::Http => running.http_addr = Some(addr),
            }
        }
        Ok(running)
    }

    /// Logs the listener, with a warning when it is reachable beyond
    /// loopback without a bearer token, or sends a token unencrypted.
    fn announce(&self, protocol: Protocol, addr: SocketAddr, tls: bool) {
        let protocol = protocol.name();
        tracing::info!(%addr, protocol, tls, auth = self.bearer_token.is_some(), "OTLP receiver listening");
        if addr.ip().is_loopback() {
            return;
        }
        if self.bearer_token.is_none() {
            tracing::warn!(%addr, protocol, "listening beyond loopback without authentication: anyone who can reach this address can write spans (see --auth-token-file)");
        } else if !tls {
            tracing::warn!(%addr, protocol, "listening beyond loopback without TLS: the bearer token travels unencrypted (see --tls-cert)");
        }
    }
}

async fn bind(
    protocol: Protocol,
    addr: SocketAddr,
) -> Result<(TcpListener, SocketAddr), ReceiverError> {
    TcpListener::bind(addr)
        .await
        .and_then(|l| l.local_addr().map(|a| (l, a)))
        .map_err(|source| ReceiverError::Bind {
            protocol: protocol.name(),
            addr,
            source,
        })
}
