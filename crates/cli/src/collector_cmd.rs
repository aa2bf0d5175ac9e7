//! `dspans collector`: a local OTLP receiver (gRPC and HTTP) appending one
//! OTLP-JSON line per request to a file, until SIGTERM or Ctrl-C.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;
use dspans_otlp::collector::{self, CollectorConfig};
use dspans_otlp::receiver::{DEFAULT_GRPC_ADDR, DEFAULT_HTTP_ADDR, DEFAULT_MAX_REQUEST_BYTES};

/// Receive OTLP traces and append them to a file as OTLP-JSON lines.
///
/// Prints `grpc ADDR` and `http ADDR` on stdout, one per line, as soon as it
/// listens. SIGTERM or Ctrl-C: finish open requests and exit 0. Listening
/// beyond loopback without `--auth-token-file` is warned about.
#[derive(Args, Debug, Clone)]
pub struct CollectorArgs {
    /// OTLP/gRPC listen address (port 0 picks a free port).
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_GRPC_ADDR)]
    pub grpc: SocketAddr,
    /// OTLP/HTTP listen address, serving POST /v1/traces (port 0 picks a free port).
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_HTTP_ADDR)]
    pub http: SocketAddr,
    /// The OTLP-JSON lines file to append to (created when missing).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
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

/// Runs the collector until SIGTERM or Ctrl-C.
pub async fn run(args: CollectorArgs) -> anyhow::Result<()> {
    // Handlers first: a SIGTERM right after the addresses are printed must
    // not hit the default action.
    let stop = termination().context("cannot install the signal handlers")?;
    let mut config = CollectorConfig::new(args.out)
        .grpc(Some(args.grpc))
        .http(Some(args.http))
        .max_request_bytes(args.max_request_bytes);
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        config = config.tls_pem(
            read_file("TLS certificate", cert)?,
            read_file("TLS key", key)?,
        );
    }
    if let Some(path) = &args.auth_token_file {
        config = config.bearer_token(read_token(path)?);
    }
    collector::run(&config, &mut std::io::stdout(), stop).await?;
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
