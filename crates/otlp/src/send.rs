//! Sending OTLP export requests as they are, resource and scope included:
//! what `dspans send` replays from OTLP-JSON lines files into a backend.
//! The SDK's exporters take span data and one resource; a file holds whole
//! requests of many processes, so they go out over their own client.

use std::io::Write as _;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_client::TraceServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message as _;
use tonic::transport::{Channel, Endpoint};

use crate::error::ExportSetupError;
use crate::hints::export_hint;
use crate::options::{Compression, ExportOptions, Protocol};

/// Sends whole OTLP export requests to the collector `ExportOptions`
/// name (endpoint, protocol, headers, TLS, compression, timeout).
///
/// ```no_run
/// # async fn f(requests: Vec<dspans_otlp::proto::collector::trace::v1::ExportTraceServiceRequest>) {
/// use dspans_otlp::{ExportOptions, RequestSender};
/// let opts = ExportOptions { endpoint: Some("http://127.0.0.1:4317".into()), ..Default::default() };
/// let mut sender = RequestSender::new(&opts).unwrap();
/// for request in requests {
///     sender.send(request).await.unwrap();
/// }
/// # }
/// ```
pub struct RequestSender {
    transport: Transport,
    endpoint: String,
    protocol: Protocol,
    tls: bool,
}

enum Transport {
    Grpc {
        client: Box<TraceServiceClient<Channel>>,
        metadata: tonic::metadata::MetadataMap,
    },
    Http {
        client: reqwest::Client,
        headers: Vec<(String, String)>,
        gzip: bool,
    },
}

impl RequestSender {
    /// A sender for these options. Must be called within a tokio runtime
    /// (the gRPC channel connects lazily on it).
    pub fn new(opts: &ExportOptions) -> Result<RequestSender, ExportSetupError> {
        opts.validate()?;
        let timeout = opts.timeout();
        let endpoint = opts.traces_endpoint();
        match opts.protocol {
            Protocol::Grpc => {
                let (endpoint, tls) = crate::exporter::grpc_endpoint(opts, &endpoint);
                let mut channel = Endpoint::from_shared(endpoint.clone())
                    .map_err(|e| ExportSetupError::HttpClient(format!("{endpoint}: {e}")))?
                    .timeout(timeout)
                    .connect_timeout(timeout);
                if tls {
                    channel = channel
                        .tls_config(crate::tls::grpc_tls(opts)?)
                        .map_err(|e| ExportSetupError::Tls(e.to_string()))?;
                }
                let mut client = TraceServiceClient::new(channel.connect_lazy());
                if opts.compression == Some(Compression::Gzip) {
                    client = client.send_compressed(tonic::codec::CompressionEncoding::Gzip);
                }
                let mut metadata = tonic::metadata::MetadataMap::new();
                for (k, v) in &opts.headers {
                    if let (Ok(k), Ok(v)) = (
                        k.parse::<tonic::metadata::MetadataKey<_>>(),
                        v.parse::<tonic::metadata::MetadataValue<_>>(),
                    ) {
                        metadata.insert(k, v);
                    }
                }
                Ok(RequestSender {
                    transport: Transport::Grpc {
                        client: Box::new(client),
                        metadata,
                    },
                    endpoint,
                    protocol: Protocol::Grpc,
                    tls,
                })
            }
            Protocol::HttpProtobuf => {
                let tls = endpoint.starts_with("https://");
                let config = crate::tls::http_tls(opts.certificate_file.as_ref(), tls)?;
                let client = reqwest::Client::builder()
                    .timeout(timeout)
                    .tls_backend_preconfigured(config)
                    .build()
                    .map_err(|e| ExportSetupError::HttpClient(e.to_string()))?;
                Ok(RequestSender {
                    transport: Transport::Http {
                        client,
                        headers: opts.headers.clone().into_iter().collect(),
                        gzip: opts.compression == Some(Compression::Gzip),
                    },
                    endpoint,
                    protocol: Protocol::HttpProtobuf,
                    tls,
                })
            }
        }
    }

    /// Where requests go.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Sends one request; the error says what the collector answered or
    /// why it could not be reached, with a hint when one applies.
    pub async fn send(&mut self, request: ExportTraceServiceRequest) -> Result<(), String> {
        let result = match &mut self.transport {
            Transport::Grpc { client, metadata } => {
                let mut call = tonic::Request::new(request);
                *call.metadata_mut() = metadata.clone();
                client
                    .export(call)
                    .await
                    .map(|_| ())
                    .map_err(|status| format!("{}: {}", status.code(), status.message()))
            }
            Transport::Http {
                client,
                headers,
                gzip,
            } => post(client, &self.endpoint, headers, *gzip, &request).await,
        };
        result.map_err(|error| {
            let hint = export_hint(self.protocol, self.tls, &error)
                .map(|hint| format!("; hint: {hint}"))
                .unwrap_or_default();
            format!(
                "OTLP {} to {} failed: {error}{hint}",
                self.protocol, self.endpoint
            )
        })
    }
}

async fn post(
    client: &reqwest::Client,
    url: &str,
    headers: &[(String, String)],
    gzip: bool,
    request: &ExportTraceServiceRequest,
) -> Result<(), String> {
    let mut body = request.encode_to_vec();
    let mut call = client
        .post(url)
        .header("content-type", "application/x-protobuf");
    if gzip {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(&body).map_err(|e| e.to_string())?;
        body = encoder.finish().map_err(|e| e.to_string())?;
        call = call.header("content-encoding", "gzip");
    }
    for (k, v) in headers {
        call = call.header(k, v);
    }
    let response = call
        .body(body)
        .send()
        .await
        .map_err(|e| crate::http_client::render_chain(&e))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let text = response.text().await.unwrap_or_default();
    Err(format!(
        "HTTP {status}: {}",
        text.chars().take(300).collect::<String>()
    ))
}
