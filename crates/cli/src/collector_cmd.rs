//! `dspans collector`: a local OTLP receiver (gRPC and HTTP) appending one
//! OTLP-JSON line per request to a file, until SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use dspans_otlp::collector::{self, CollectorConfig};
use dspans_otlp::receiver::{
    Timeouts, DEFAULT_GRPC_ADDR, DEFAULT_HTTP_ADDR, DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_REQUEST_BYTES,
};

/// Receive OTLP traces and append them to a file as OTLP-JSON lines.
///
/// Prints `grpc ADDR` and `http ADDR` on stdout, one per line, as soon as it
/// listens. SIGTERM or Ctrl-C: finish open requests and exit 0. Listening
/// beyond loopback without `--auth-token-file` is warned about.
///
/// Example, for senders on other hosts:
///   dspans collector --out traces.jsonl --grpc 0.0.0.0:4317 --http 0.0.0.0:4318 \
///     --tls-cert cert.pem --tls-key key.pem --auth-token-file token
///
/// Example, a relay in front of Tempo (each span once, none lost while
/// Tempo or the relay restarts):
///   dspans collector --grpc 127.0.0.1:4317 --http 127.0.0.1:4318 \
///     --forward http://tempo:4317 --spool /var/lib/dspans/spool
#[derive(Args, Debug, Clone)]
pub struct CollectorArgs {
    /// OTLP/gRPC listen address (port 0 picks a free port).
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_GRPC_ADDR)]
    pub grpc: SocketAddr,
    /// OTLP/HTTP listen address, serving POST /v1/traces (port 0 picks a free port).
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_HTTP_ADDR)]
    pub http: SocketAddr,
    /// The OTLP-JSON lines file to append to (created when missing).
    #[arg(long, value_name = "FILE", required_unless_present = "forward")]
    pub out: Option<PathBuf>,
    /// Relay: forward what is accepted to this OTLP backend (Jaeger, Tempo,
    /// an OpenTelemetry Collector), through --spool. A sender is answered
    /// once its spans are in the spool; they go upstream in order, at least
    /// once, retried while the upstream is away, repeats dropped.
    #[arg(long, value_name = "URL", requires = "spool")]
    pub forward: Option<String>,
    /// The relay's spool directory (kept across restarts: a relay killed
    /// and started again on it loses nothing it accepted).
    #[arg(long, value_name = "DIR", requires = "forward")]
    pub spool: Option<PathBuf>,
    /// OTLP protocol of --forward.
    #[arg(long, value_name = "PROTOCOL", default_value = "grpc",
          value_parser = ["grpc", "http/protobuf"])]
    pub forward_protocol: String,
    /// Header K=V sent upstream with each request (e.g. an API key); repeatable.
    #[arg(long, value_name = "K=V")]
    pub forward_header: Vec<String>,
    /// PEM CA bundle to verify the upstream (default: the system's CAs).
    #[arg(long, value_name = "FILE")]
    pub forward_tls_ca: Option<PathBuf>,
    /// gzip the requests sent upstream.
    #[arg(long)]
    pub forward_gzip: bool,
    /// The spool's size limit in bytes: over it, senders are told to retry
    /// later (UNAVAILABLE / 503) until the upstream has taken enough.
    #[arg(long, value_name = "BYTES", default_value_t = dspans_otlp::relay::DEFAULT_SPOOL_BYTES)]
    pub spool_max_bytes: u64,
    /// Largest accepted request in bytes, after decompression.
    #[arg(long, value_name = "BYTES", default_value_t = DEFAULT_MAX_REQUEST_BYTES)]
    pub max_request_bytes: usize,
    /// PEM certificate chain: serve gRPC and HTTP over TLS (with --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// File holding a token: accept only requests with the header
    /// `Authorization: Bearer TOKEN`; others get gRPC UNAUTHENTICATED or
    /// HTTP 401 (the file's surrounding whitespace is ignored).
    #[arg(long, value_name = "FILE")]
    pub auth_token_file: Option<PathBuf>,
    /// Open connections per listener; one beyond is closed as soon as it is
    /// accepted (its client retries), with a warning.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_MAX_CONNECTIONS,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub max_connections: usize,
    /// Seconds within which a request's headers (and a kept-alive
    /// connection's next request, and a TLS handshake) must arrive.
    #[arg(long, value_name = "SECS", default_value = "10", value_parser = seconds)]
    pub header_timeout: Duration,
    /// Seconds within which a request must arrive whole and be answered
    /// (else HTTP 408 / gRPC DEADLINE_EXCEEDED).
    #[arg(long, value_name = "SECS", default_value = "30", value_parser = seconds)]
    pub request_timeout: Duration,
    /// Seconds after which a connection with no request under way is closed.
    #[arg(long, value_name = "SECS", default_value = "60", value_parser = seconds)]
    pub idle_timeout: Duration,
}

/// A positive number of seconds, fractions allowed (`0.5`).
fn seconds(text: &str) -> Result<Duration, String> {
    let secs: f64 = text
        .parse()
        .map_err(|_| format!("{text:?} is not a number of seconds"))?;
    if secs.is_nan() || secs <= 0.0 {
        return Err(format!("{text}: must be more than 0 seconds"));
    }
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{text}: {e}"))
}

fn read_file(what: &str, path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read the {what} {}", path.display()))
}

/// The token of `--auth-token-file`: its text without surrounding
/// whitespace, which must be visible ASCII to fit in a header.
fn read_token(path: &Path) -> anyhow::Result<String> {
    let text = String::from_utf8(read_file("token file", path)?)
        .with_context(|| format!("the token file {} is not text", path.display()))?;
    let token = text.trim();
    if token.is_empty() || !token.bytes().all(|b| b.is_ascii_graphic()) {
        anyhow::bail!(
            "the token file {} must hold one token of visible ASCII characters",
            path.display()
        );
    }
    Ok(token.to_string())
}

/// The upstream of a relay, from the --forward options.
fn forward_config(
    args: &CollectorArgs,
    url: &str,
    spool: &Path,
) -> anyhow::Result<collector::ForwardConfig> {
    let mut upstream = dspans_otlp::ExportOptions {
        enabled: true,
        endpoint: Some(url.to_string()),
        protocol: args.forward_protocol.parse()?,
        ..Default::default()
    };
    for pair in &args.forward_header {
        let Some((k, v)) = pair.split_once('=').filter(|(k, _)| !k.is_empty()) else {
            return Err(crate::UsageError(format!("--forward-header {pair:?} is not K=V")).into());
        };
        upstream.headers.insert(k.to_string(), v.to_string());
    }
    if let Some(ca) = &args.forward_tls_ca {
        match upstream.protocol {
            dspans_otlp::Protocol::Grpc => upstream.tls_ca = Some(ca.clone()),
            dspans_otlp::Protocol::HttpProtobuf => upstream.certificate_file = Some(ca.clone()),
        }
    }
    if args.forward_gzip {
        upstream.compression = Some(dspans_otlp::Compression::Gzip);
    }
    upstream.validate()?;
    Ok(collector::ForwardConfig {
        upstream,
        spool: spool.to_path_buf(),
        max_bytes: args.spool_max_bytes,
    })
}

/// Runs the collector until SIGTERM or Ctrl-C.
pub async fn run(args: CollectorArgs) -> anyhow::Result<()> {
    // Handlers first: a SIGTERM right after the addresses are printed must
    // not hit the default action.
    let stop = termination().context("cannot install the signal handlers")?;
    survive_file_size_limit().context("cannot install the SIGXFSZ handler")?;
    let mut config = match &args.out {
        Some(out) => CollectorConfig::new(out),
        None => CollectorConfig::new("").without_file(),
    }
    .grpc(Some(args.grpc))
    .http(Some(args.http))
    .max_request_bytes(args.max_request_bytes)
    .max_connections(args.max_connections)
    .timeouts(Timeouts {
        header: args.header_timeout,
        request: args.request_timeout,
        idle: args.idle_timeout,
    });
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        config = config.tls_pem(
            read_file("TLS certificate", cert)?,
            read_file("TLS key", key)?,
        );
    }
    if let Some(path) = &args.auth_token_file {
        config = config.bearer_token(read_token(path)?);
    }
    if let (Some(url), Some(spool)) = (&args.forward, &args.spool) {
        config = config.forward(forward_config(&args, url, spool)?);
    }
    collector::run(&config, &mut std::io::stdout(), stop).await?;
    Ok(())
}

/// A file size limit (`ulimit -f`) makes the kernel send SIGXFSZ on a write
/// past it, whose default action kills the process with a line half
/// written. Handled, the write fails with EFBIG instead, which the
/// collector answers as it answers a full disk: 503 / `UNAVAILABLE`, and
/// no partial line.
#[cfg(unix)]
fn survive_file_size_limit() -> std::io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut xfsz = signal(SignalKind::from_raw(libc::SIGXFSZ))?;
    tokio::spawn(async move {
        while xfsz.recv().await.is_some() {
            tracing::debug!("SIGXFSZ: a write went past the file size limit");
        }
    });
    Ok(())
}

#[cfg(not(unix))]
fn survive_file_size_limit() -> std::io::Result<()> {
    Ok(())
}

/// A future completing on SIGTERM or Ctrl-C (SIGINT).
#[cfg(unix)]
fn termination() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received"),
            _ = int.recv() => tracing::info!("SIGINT received"),
        }
    })
}

/// A future completing on Ctrl-C.
#[cfg(not(unix))]
fn termination() -> std::io::Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        let _ = tokio::signal::ctrl_c().await;
    })
}
