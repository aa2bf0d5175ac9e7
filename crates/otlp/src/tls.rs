//! TLS material for the exporters: PEM files to tonic and rustls configs.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use crate::error::ExportSetupError;
use crate::options::ExportOptions;

fn read(what: &'static str, path: &Path) -> Result<Vec<u8>, ExportSetupError> {
    std::fs::read(path).map_err(|source| ExportSetupError::ReadFile {
        what,
        path: path.to_path_buf(),
        source,
    })
}

fn bad_pem(what: &'static str, path: &Path, reason: impl ToString) -> ExportSetupError {
    ExportSetupError::Pem {
        what,
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

/// Certificates of a PEM file; refuses files with none.
fn pem_certs(
    what: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, ExportSetupError> {
    let bytes = read(what, path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad_pem(what, path, e))?;
    if certs.is_empty() {
        return Err(bad_pem(what, path, "no PEM certificate found"));
    }
    Ok(certs)
}

/// Makes ring the process's rustls crypto provider unless one is set.
///
/// tonic's TLS asks rustls for the process default, and rustls can only
/// pick one by itself when exactly one provider is compiled in. In a binary
/// that also links zookeeper-client (whose rustls has aws-lc-rs) both are,
/// and rustls would panic on the first TLS connection instead.
pub(crate) fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race to another installer is fine: a provider is set.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// tonic TLS settings from `tls_ca`, `tls_cert` and `tls_key`; without
/// `tls_ca` the system's roots are trusted.
pub(crate) fn grpc_tls(opts: &ExportOptions) -> Result<ClientTlsConfig, ExportSetupError> {
    ensure_crypto_provider();
    let mut tls = ClientTlsConfig::new();
    match &opts.tls_ca {
        Some(ca) => {
            // Parse first, for a clear error on a bad file.
            pem_certs("tls_ca", ca)?;
            tls = tls.ca_certificate(Certificate::from_pem(read("tls_ca", ca)?));
        }
        None => tls = tls.with_native_roots(),
    }
    if let (Some(cert), Some(key)) = (&opts.tls_cert, &opts.tls_key) {
        pem_certs("tls_cert", cert)?;
        let key_pem = read("tls_key", key)?;
        rustls::pki_types::PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|e| bad_pem("tls_key", key, e))?;
        tls = tls.identity(Identity::from_pem(read("tls_cert", cert)?, key_pem));
    }
    Ok(tls)
}

/// rustls client config for the HTTP exporter: trusts only
/// `certificate_file` when given, else the system's roots (loaded only for
/// `https` endpoints, as plain HTTP needs none).
pub(crate) fn http_tls(
    certificate_file: Option<&PathBuf>,
    https: bool,
) -> Result<rustls::ClientConfig, ExportSetupError> {
    let mut roots = rustls::RootCertStore::empty();
    if let Some(path) = certificate_file {
        for cert in pem_certs("certificate_file", path)? {
            roots
                .add(cert)
                .map_err(|e| bad_pem("certificate_file", path, e))?;
        }
    } else if https {
        let found = rustls_native_certs::load_native_certs();
        for e in &found.errors {
            tracing::debug!(error = %e, "skipping unreadable system certificate");
        }
        let (added, ignored) = roots.add_parsable_certificates(found.certs);
        tracing::debug!(added, ignored, "loaded system root certificates");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ExportSetupError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
