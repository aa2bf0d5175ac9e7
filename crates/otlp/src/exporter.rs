//! Span exporters built from [`ExportOptions`]: OTLP over gRPC or
//! HTTP/protobuf, or OTLP-JSON lines to a file.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry_otlp::{WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use opentelemetry_sdk::Resource;

pub use crate::error::ExportSetupError;
use crate::http_client::{LastError, ReportingClient};
use crate::jsonl::JsonLinesExporter;
use crate::options::{Compression, ExportOptions, Protocol};
use crate::tls;

/// A small tokio runtime owned by an exporter: the OTLP clients' I/O runs
/// on it, so exports work when called from a tokio runtime (any flavour)
/// and from plain threads such as the SDK's batch processor.
struct IoRuntime(Option<tokio::runtime::Runtime>);

impl IoRuntime {
    fn new() -> Result<Self, ExportSetupError> {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("dspans-otlp-io")
            .enable_all()
            .build()
            .map(|rt| Self(Some(rt)))
            .map_err(ExportSetupError::Runtime)
    }

    fn handle(&self) -> Option<&tokio::runtime::Handle> {
        self.0.as_ref().map(|rt| rt.handle())
    }
}

impl Drop for IoRuntime {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which panics inside async code.
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

impl std::fmt::Debug for IoRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IoRuntime")
    }
}

/// OTLP exporter (gRPC or HTTP/protobuf) with a bounded export time.
#[derive(Debug)]
pub struct OtlpExporter {
    inner: Arc<opentelemetry_otlp::SpanExporter>,
    io: IoRuntime,
    protocol: Protocol,
    endpoint: String,
    timeout: Duration,
    last_error: LastError,
}

impl OtlpExporter {
    /// The URL spans are sent to.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The protocol spoken.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let Some(handle) = self.io.handle() else {
            return Err(OTelSdkError::AlreadyShutdown);
        };
        if let Ok(mut last) = self.last_error.lock() {
            *last = None;
        }
        let inner = Arc::clone(&self.inner);
        let timeout = self.timeout;
        // The client retries within `timeout`; this outer bound also covers
        // a single attempt that hangs. A little slack lets the client
        // report its own (more precise) error first.
        let bound = timeout + Duration::from_millis(250);
        let task =
            handle.spawn(async move { tokio::time::timeout(bound, inner.export(batch)).await });
        let describe = |mut what: String| {
            let detail = self.last_error.lock().ok().and_then(|mut l| l.take());
            if let Some(detail) = detail {
                what = format!("{what} ({detail})");
            }
            let tls = self.endpoint.starts_with("https://");
            if let Some(hint) = crate::hints::export_hint(self.protocol, tls, &what) {
                what = format!("{what}; hint: {hint}");
            }
            OTelSdkError::InternalFailure(format!(
                "OTLP {} export to {} failed: {what}",
                self.protocol, self.endpoint
            ))
        };
        match task.await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(OTelSdkError::InternalFailure(e)))) => Err(describe(e)),
            Ok(Ok(Err(e))) => Err(describe(e.to_string())),
            Ok(Err(_elapsed)) => Err(describe(format!(
                "no answer within {} ms",
                timeout.as_millis()
            ))),
            Err(join) => Err(describe(format!("export task ended abnormally: {join}"))),
        }
    }
}

/// The exporters this crate builds. [`SpanExporter`] is not dyn-compatible,
/// so this enum stands for "any of them".
#[derive(Debug)]
pub enum Exporter {
    /// OTLP over gRPC or HTTP/protobuf.
    Otlp(OtlpExporter),
    /// OTLP-JSON lines appended to a file.
    JsonLines(JsonLinesExporter),
}

impl Exporter {
    /// An exporter appending OTLP-JSON lines to `path`.
    pub fn json_lines(path: impl Into<PathBuf>) -> Result<Self, ExportSetupError> {
        let path = path.into();
        JsonLinesExporter::create(&path)
            .map(Exporter::JsonLines)
            .map_err(|source| ExportSetupError::OpenFile { path, source })
    }
}

impl SpanExporter for Exporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        match self {
            Exporter::Otlp(e) => e.export(batch).await,
            Exporter::JsonLines(e) => e.export(batch).await,
        }
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        match self {
            Exporter::Otlp(e) => e.inner.shutdown_with_timeout(timeout),
            Exporter::JsonLines(e) => e.shutdown_with_timeout(timeout),
        }
    }

    fn force_flush(&self) -> OTelSdkResult {
        match self {
            Exporter::Otlp(e) => e.inner.force_flush(),
            Exporter::JsonLines(e) => e.force_flush(),
        }
    }

    fn set_resource(&mut self, resource: &Resource) {
        match self {
            Exporter::Otlp(e) => match Arc::get_mut(&mut e.inner) {
                Some(inner) => inner.set_resource(resource),
                None => tracing::warn!("resource set while an export is running; ignored"),
            },
            Exporter::JsonLines(e) => e.set_resource(resource),
        }
    }
}

/// `endpoint` with the scheme gRPC security calls for: `insecure` decides
/// when set; otherwise `tls_*` options ask for TLS; otherwise the scheme
/// decides and a schemeless endpoint gets TLS.
pub(crate) fn grpc_endpoint(opts: &ExportOptions, endpoint: &str) -> (String, bool) {
    let (scheme, rest) = match endpoint.split_once("://") {
        Some((s, r)) => (Some(s), r),
        None => (None, endpoint),
    };
    let any_tls = opts.tls_ca.is_some() || opts.tls_cert.is_some() || opts.tls_key.is_some();
    let secure = match opts.insecure {
        Some(insecure) => !insecure,
        None if any_tls => true,
        None => scheme != Some("http"),
    };
    let scheme = if secure { "https" } else { "http" };
    (format!("{scheme}://{rest}"), secure)
}

/// Builds the OTLP exporter `opts` describe (after [`ExportOptions::validate`]).
/// Does not look at `enabled`: callers decide whether to export at all.
///
/// Exports give up with an error after `timeout` (retries included), so an
/// unreachable collector is reported instead of waited on.
///
/// ```
/// use dspans_otlp::{build_exporter, ExportOptions, Protocol};
///
/// let opts = ExportOptions {
///     enabled: true,
///     protocol: Protocol::HttpProtobuf,
///     endpoint: Some("http://127.0.0.1:4318".into()),
///     ..Default::default()
/// };
/// let exporter = build_exporter(&opts).unwrap();
/// let provider = opentelemetry_sdk::trace::SdkTracerProvider::builder()
///     .with_batch_exporter(exporter)
///     .build();
/// # drop(provider);
/// ```
pub fn build_exporter(opts: &ExportOptions) -> Result<Exporter, ExportSetupError> {
    opts.validate()?;
    let io = IoRuntime::new()?;
    let timeout = opts.timeout();
    let endpoint = opts.traces_endpoint();
    let retry = opentelemetry_otlp::RetryPolicy::recommended();
    let last_error = LastError::default();

    let (inner, endpoint) = match opts.protocol {
        Protocol::Grpc => {
            let (endpoint, secure) = grpc_endpoint(opts, &endpoint);
            let mut metadata = tonic::metadata::MetadataMap::new();
            for (k, v) in &opts.headers {
                match (
                    k.parse::<tonic::metadata::MetadataKey<_>>(),
                    v.parse::<tonic::metadata::MetadataValue<_>>(),
                ) {
                    (Ok(k), Ok(v)) => {
                        metadata.insert(k, v);
                    }
                    _ => tracing::warn!(header = %k, "skipping a header unusable as gRPC metadata"),
                }
            }
            let mut builder = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_protocol(opentelemetry_otlp::Protocol::Grpc)
                .with_endpoint(endpoint.clone())
                .with_timeout(timeout)
                .with_retry_policy(retry)
                .with_metadata(metadata);
            if secure {
                builder = builder.with_tls_config(tls::grpc_tls(opts)?);
            }
            if opts.compression == Some(Compression::Gzip) {
                builder = builder.with_compression(opentelemetry_otlp::Compression::Gzip);
            }
            // tonic's lazy channel spawns its worker on the current runtime.
            let handle = io.handle().ok_or_else(|| {
                ExportSetupError::Runtime(std::io::Error::other("runtime already shut down"))
            })?;
            let _guard = handle.enter();
            (builder.build()?, endpoint)
        }
        Protocol::HttpProtobuf => {
            let https = endpoint.starts_with("https://");
            let tls = tls::http_tls(opts.certificate_file.as_ref(), https)?;
            let client = reqwest::Client::builder()
                .timeout(timeout)
                .http1_only()
                .tls_backend_preconfigured(tls)
                .build()
                .map_err(|e| ExportSetupError::HttpClient(e.to_string()))?;
            let mut builder = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
                .with_endpoint(endpoint.clone())
                .with_timeout(timeout)
                .with_retry_policy(retry)
                .with_http_client(ReportingClient {
                    inner: client,
                    last_error: Arc::clone(&last_error),
                })
                .with_headers(opts.headers.clone().into_iter().collect());
            if opts.compression == Some(Compression::Gzip) {
                builder = builder.with_compression(opentelemetry_otlp::Compression::Gzip);
            }
            (builder.build()?, endpoint)
        }
    };
    tracing::debug!(protocol = %opts.protocol, %endpoint, timeout_ms = timeout.as_millis() as u64, "built OTLP span exporter");
    Ok(Exporter::Otlp(OtlpExporter {
        inner: Arc::new(inner),
        io,
        protocol: opts.protocol,
        endpoint,
        timeout,
        last_error,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_security_rules() {
        let mut o = ExportOptions::default();
        assert_eq!(
            grpc_endpoint(&o, "http://h:1"),
            ("http://h:1".into(), false)
        );
        assert_eq!(
            grpc_endpoint(&o, "https://h:1"),
            ("https://h:1".into(), true)
        );
        assert_eq!(grpc_endpoint(&o, "h:1"), ("https://h:1".into(), true));
        o.insecure = Some(true);
        assert_eq!(grpc_endpoint(&o, "h:1"), ("http://h:1".into(), false));
        o.insecure = None;
        o.tls_ca = Some("ca.pem".into());
        assert_eq!(
            grpc_endpoint(&o, "http://h:1"),
            ("https://h:1".into(), true)
        );
    }
}
