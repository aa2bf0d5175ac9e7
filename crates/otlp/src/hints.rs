//! Hints for export failures whose messages do not say the likely mistake:
//! TLS spoken to a plaintext collector (a `host:port` endpoint means TLS,
//! as in Zuul), and the gRPC port and the HTTP port mixed up.

use crate::option_values::Protocol;

/// What a failed export probably got wrong, judged from its error text.
///
/// ```
/// use dspans_otlp::{export_hint, Protocol};
/// let hint = export_hint(Protocol::Grpc, true, "tls handshake: InvalidContentType").unwrap();
/// assert!(hint.contains("insecure = true"));
/// assert_eq!(export_hint(Protocol::Grpc, false, "Connection refused"), None);
/// ```
pub fn export_hint(protocol: Protocol, tls: bool, error: &str) -> Option<&'static str> {
    let text = error.to_ascii_lowercase();
    let any = |needles: &[&str]| needles.iter().any(|n| text.contains(n));
    match protocol {
        Protocol::Grpc
            if tls
                && any(&[
                    "invalidcontenttype",
                    "corrupt message",
                    "wrong version number",
                ]) =>
        {
            Some(
                "the collector does not speak TLS there: an endpoint without a scheme (host:port) \
                 means TLS, as in Zuul; write http://host:port, or set insecure = true, for a \
                 plaintext collector",
            )
        }
        Protocol::Grpc
            if any(&[
                "404",
                "unimplemented",
                "grpc-status header missing",
                "h2 protocol error",
                "frame with invalid size",
                "http/1",
            ]) =>
        {
            Some(
                "is this the collector's OTLP/HTTP port (usually 4318)? gRPC is usually on 4317; \
                 or set protocol = \"http/protobuf\"",
            )
        }
        Protocol::HttpProtobuf
            if any(&[
                "connection closed before message completed",
                "unexpected message from connection",
                "invalid http version",
                "http2",
                "protocol error",
                "415",
            ]) =>
        {
            Some(
                "is this the collector's OTLP/gRPC port (usually 4317)? OTLP/HTTP is usually on \
                 4318; or set protocol = \"grpc\"",
            )
        }
        _ => None,
    }
}
