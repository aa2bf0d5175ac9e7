//! TLS for ZooKeeper connections: which CAs are trusted, the client
//! certificate, and the process's rustls crypto provider.
//!
//! `tls_ca` names the CAs that sign the servers' certificates. Without it,
//! `tls = true` trusts the system's CAs, found as rustls-native-certs finds
//! them (`SSL_CERT_FILE` / `SSL_CERT_DIR` when set, else the platform's
//! store), the way the OTLP exporters do for `https` endpoints.

use base64::Engine as _;
use zookeeper_client as zk;

use crate::config::StoreConfig;
use crate::error::{Result, StoreError};

/// The TLS options of a connection, or `None` for plain TCP.
pub(crate) fn tls_options(config: &StoreConfig) -> Result<Option<zk::TlsOptions>> {
    if !config.tls && config.tls_ca.is_none() {
        return Ok(None);
    }
    ensure_crypto_provider();
    let (cas, source) = match &config.tls_ca {
        Some(path) => (read_pem(path)?, "tls_ca"),
        None => (system_cas()?, "the system's CA certificates"),
    };
    let mut options = zk::TlsOptions::new()
        .with_pem_ca(&cas)
        .map_err(|e| StoreError::Config(format!("{source}: {e}")))?;
    if let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) {
        options = options
            .with_pem_identity(&read_pem(cert)?, &read_pem(key)?)
            .map_err(|e| StoreError::Config(format!("tls_cert/tls_key: {e}")))?;
    }
    Ok(Some(options))
}

fn read_pem(path: &std::path::Path) -> Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| StoreError::Config(format!("cannot read {}: {e}", path.display())))
}

/// The system's CA certificates as one PEM bundle (zookeeper-client takes
/// PEM text only).
fn system_cas() -> Result<String> {
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        tracing::debug!(%error, "skipping unreadable system certificates");
    }
    if found.certs.is_empty() {
        return Err(StoreError::Config(
            "tls = true without tls_ca, and no system CA certificates were found: \
             set tls_ca to the PEM file of the CA that signed the servers' certificates"
                .into(),
        ));
    }
    let mut pem = String::new();
    for cert in &found.certs {
        pem.push_str("-----BEGIN CERTIFICATE-----\n");
        let text = base64::engine::general_purpose::STANDARD.encode(cert.as_ref());
        for line in text.as_bytes().chunks(64) {
            // Base64 text is ASCII, so every chunk is valid UTF-8.
            pem.push_str(std::str::from_utf8(line).unwrap_or_default());
            pem.push('\n');
        }
        pem.push_str("-----END CERTIFICATE-----\n");
    }
    Ok(pem)
}

/// Makes ring the process's rustls crypto provider unless one is set.
///
/// zookeeper-client builds its TLS configuration from the process default,
/// and rustls picks one by itself only when exactly one provider is
/// compiled in. In a binary that also links the OTLP exporters (ring) next
/// to zookeeper-client (aws-lc-rs), both are, and rustls would panic on
/// the first TLS connection instead. ring, as the exporters install it,
/// so either may go first.
fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race to another installer is fine: a provider is set.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}
