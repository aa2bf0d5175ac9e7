//! OTLP for durable-spans: export setup from the `[tracing]` config (Zuul's
//! option names, standard `OTEL_*` overrides), OTLP-JSON lines files, and a
//! real OTLP receiver (gRPC and HTTP) for tests and `dspans collector`.
//!
//! - [`ExportOptions`]: the `[tracing]` table; [`ExportOptions::apply_env`]
//!   applies environment overrides; [`ExportOptions::validate`] refuses bad
//!   combinations.
//! - [`build_exporter`]: an [`Exporter`] (OTLP gRPC or HTTP/protobuf) for an
//!   `opentelemetry_sdk` tracer provider; [`Exporter::json_lines`] /
//!   [`JsonLinesExporter`] write OTLP-JSON lines instead.
//! - [`read_json_lines`] reads such a file back; [`scan_json_lines`] reads
//!   one line at a time, skipping (and counting) lines it cannot read.
//! - [`receiver`]: the OTLP receiver and its sinks.
//! - [`collector`]: `dspans collector`, a receiver appending OTLP-JSON lines.
//! - [`view`]: traces of an OTLP-JSON lines file as terminal and HTML waterfalls.
//!
//! ```no_run
//! use dspans_otlp::{build_exporter, ExportOptions};
//! use opentelemetry_sdk::{trace::SdkTracerProvider, Resource};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut opts: ExportOptions = toml::from_str(r#"
//!     enabled = true
//!     endpoint = "http://127.0.0.1:4317"
//! "#)?;
//! opts.apply_process_env()?;
//! let provider = SdkTracerProvider::builder()
//!     .with_resource(Resource::builder().with_service_name(opts.service_name().to_string()).build())
//!     .with_batch_exporter(build_exporter(&opts)?)
//!     .build();
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod collector;
mod error;
mod exporter;
mod hints;
mod http_client;
mod jsonl;
mod option_values;
mod options;
mod parse;
pub mod receiver;
pub mod relay;
mod retry;
mod sampling;
mod send;
mod tls;
mod values;
pub mod view;

pub use exporter::{build_exporter, ExportSetupError, Exporter, OtlpExporter};
pub use hints::export_hint;
pub use jsonl::{
    parse_complete_lines, parse_json_lines, read_json_lines, request_to_json_line, scan_json_lines,
    to_export_request, JsonLinesExporter, JsonLinesWriter, LinesRead, ReadError, MAX_LINE_BYTES,
};
pub use options::{
    Compression, ExportOptions, OptionsError, Protocol, SamplerName, DEFAULT_GRPC_ENDPOINT,
    DEFAULT_HTTP_ENDPOINT, DEFAULT_SERVICE_NAME, DEFAULT_TIMEOUT_MS, ENV_VARS, TRACES_PATH,
};
pub use retry::RetryingExporter;
pub use send::RequestSender;

/// The OTLP protobuf types (`opentelemetry-proto`), re-exported so users
/// need not depend on it to read requests.
pub use opentelemetry_proto::tonic as proto;
