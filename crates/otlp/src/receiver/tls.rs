//! The receiver's TLS: a rustls server configuration from PEM.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use super::{Protocol, ReceiverError};

fn invalid(what: &'static str, reason: impl ToString) -> ReceiverError {
    ReceiverError::Tls {
        what,
        reason: reason.to_string(),
    }
}

/// A TLS acceptor with this PEM certificate chain and key, offering the
/// protocol's HTTP versions by ALPN (gRPC: HTTP/2 only).
pub(super) fn acceptor(
    cert_pem: &[u8],
    key_pem: &[u8],
    protocol: Protocol,
) -> Result<TlsAcceptor, ReceiverError> {
    let certs = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid("certificate", e))?;
    if certs.is_empty() {
        return Err(invalid("certificate", "no PEM certificate found"));
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem).map_err(|e| invalid("key", e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("configuration", e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| invalid("key", e))?;
    config.alpn_protocols = match protocol {
        Protocol::Grpc => vec![b"h2".to_vec()],
        Protocol::Http => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
    };
    Ok(TlsAcceptor::from(Arc::new(config)))
}
