//! OTLP-JSON lines: one `ExportTraceServiceRequest` per line, in the OTLP
//! protobuf JSON mapping (hex ids, camelCase), as the OpenTelemetry
//! Collector's file exporter writes them.
//!
//! Special doubles (NaN, ±Infinity) are written as the mapping's strings
//! and read back; a line is written whole or not at all.

mod floats;
mod read;
mod writer;

use std::io;
use std::path::Path;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use opentelemetry_sdk::Resource;

pub(crate) use floats::from_json_slice;
pub use read::{
    parse_complete_lines, parse_json_lines, read_json_lines, scan_json_lines, LinesRead, ReadError,
    MAX_LINE_BYTES,
};
pub use writer::JsonLinesWriter;

/// Builds the OTLP request an exporter would send for `spans`: one
/// `ResourceSpans` carrying `resource`, spans grouped by instrumentation scope.
pub fn to_export_request(spans: Vec<SpanData>, resource: &Resource) -> ExportTraceServiceRequest {
    let resource = ResourceAttributesWithSchema::from(resource);
    ExportTraceServiceRequest {
        resource_spans: group_spans_by_resource_and_scope(spans, &resource),
    }
}

/// Encodes `request` as one line of OTLP-JSON, without the trailing newline.
/// NaN and infinite doubles are written as `"NaN"`, `"Infinity"` and
/// `"-Infinity"`, as the OTLP/JSON mapping has them.
///
/// ```
/// use dspans_otlp::{parse_json_lines, request_to_json_line};
/// use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
///
/// let line = request_to_json_line(&ExportTraceServiceRequest::default());
/// assert_eq!(line, r#"{"resourceSpans":[]}"#);
/// assert_eq!(parse_json_lines(&line).unwrap().len(), 1);
/// ```
pub fn request_to_json_line(request: &ExportTraceServiceRequest) -> String {
    match floats::to_json_line(request) {
        Ok(line) => line,
        Err(e) => {
            // Only reachable with a serializer bug: the OTLP types are plain data.
            tracing::error!(error = %e, "cannot encode an OTLP request as JSON");
            String::from(r#"{"resourceSpans":[]}"#)
        }
    }
}

/// A [`SpanExporter`] writing each export call as one OTLP-JSON line.
///
/// ```no_run
/// use dspans_otlp::JsonLinesExporter;
/// use opentelemetry_sdk::trace::SdkTracerProvider;
///
/// let exporter = JsonLinesExporter::create("spans.jsonl")?;
/// let provider = SdkTracerProvider::builder()
///     .with_simple_exporter(exporter)
///     .build();
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug)]
pub struct JsonLinesExporter {
    writer: JsonLinesWriter,
    resource: Resource,
    shut_down: std::sync::atomic::AtomicBool,
}

impl JsonLinesExporter {
    /// Opens (appending) or creates `path`.
    pub fn create(path: impl AsRef<Path>) -> io::Result<Self> {
        Ok(Self {
            writer: JsonLinesWriter::open(path)?,
            resource: Resource::builder_empty().build(),
            shut_down: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The file written to.
    pub fn path(&self) -> &Path {
        self.writer.path()
    }

    fn write(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        if self.shut_down.load(std::sync::atomic::Ordering::Acquire) {
            return Err(OTelSdkError::AlreadyShutdown);
        }
        if batch.is_empty() {
            return Ok(());
        }
        let request = to_export_request(batch, &self.resource);
        self.writer.append(&request).map_err(|e| {
            OTelSdkError::InternalFailure(format!(
                "cannot append spans to {}: {e}",
                self.writer.path().display()
            ))
        })
    }
}

impl SpanExporter for JsonLinesExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.write(batch)
    }

    fn shutdown_with_timeout(&self, _timeout: std::time::Duration) -> OTelSdkResult {
        self.shut_down
            .store(true, std::sync::atomic::Ordering::Release);
        Ok(())
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.resource = resource.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_last_line_is_ignored_but_bad_middle_line_is_not() {
        let good = r#"{"resourceSpans":[]}"#;
        let text = format!("{good}\n{good}\n{{\"resourceSp");
        assert_eq!(parse_json_lines(&text).unwrap().len(), 2);
        let text = format!("{good}\nnot json\n{good}\n");
        match parse_json_lines(&text) {
            Err(ReadError::Parse { line, .. }) => assert_eq!(line, 2),
            other => panic!("unexpected {other:?}"),
        }
        // A complete (newline-terminated) bad last line is an error.
        assert!(parse_json_lines("nope\n").is_err());
        assert!(parse_json_lines("").unwrap().is_empty());
    }

    #[test]
    fn values_nested_as_deep_as_the_receiver_takes_read_back() {
        use crate::values::tests::{nested, nested_lists, request_with_link_value};
        use crate::values::MAX_VALUE_DEPTH;
        use opentelemetry_proto::tonic::common::v1::any_value::Value;
        for value in [
            nested(MAX_VALUE_DEPTH, Value::DoubleValue(f64::NAN)),
            nested_lists(MAX_VALUE_DEPTH, Value::StringValue("leaf".into())),
        ] {
            let request = request_with_link_value(value);
            let line = request_to_json_line(&request) + "\n";
            let back = parse_json_lines(&line).unwrap();
            assert_eq!(
                crate::values::max_value_depth(&back[0]),
                MAX_VALUE_DEPTH,
                "{line}"
            );
        }
        // What the limit is for: deeper lists are written but not read.
        let request = request_with_link_value(nested_lists(40, Value::IntValue(1)));
        assert!(parse_json_lines(&(request_to_json_line(&request) + "\n")).is_err());
    }
}
