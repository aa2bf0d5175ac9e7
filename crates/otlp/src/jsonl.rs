//! OTLP-JSON lines: one `ExportTraceServiceRequest` per line, in the OTLP
//! protobuf JSON mapping (hex ids, camelCase), as the OpenTelemetry
//! Collector's file exporter writes them.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use opentelemetry_sdk::Resource;

/// Builds the OTLP request an exporter would send for `spans`: one
/// `ResourceSpans` carrying `resource`, spans grouped by instrumentation scope.
pub fn to_export_request(spans: Vec<SpanData>, resource: &Resource) -> ExportTraceServiceRequest {
    let resource = ResourceAttributesWithSchema::from(resource);
    ExportTraceServiceRequest {
        resource_spans: group_spans_by_resource_and_scope(spans, &resource),
    }
}

/// Encodes `request` as one line of OTLP-JSON, without the trailing newline.
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
    match serde_json::to_string(request) {
        Ok(line) => line,
        Err(e) => {
            // Only reachable with a serializer bug: the OTLP types are plain data.
            tracing::error!(error = %e, "cannot encode an OTLP request as JSON");
            String::from(r#"{"resourceSpans":[]}"#)
        }
    }
}

/// Failure to read an OTLP-JSON lines file.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A complete line is not an OTLP-JSON trace request.
    #[error("line {line} is not an OTLP-JSON trace request: {source}")]
    Parse {
        /// 1-based line number.
        line: usize,
        /// The cause.
        source: serde_json::Error,
    },
}

/// Reads every request of an OTLP-JSON lines file. Blank lines are skipped;
/// a last line without its newline that does not parse (a writer still at
/// work, or a crash mid-write) is ignored.
pub fn read_json_lines(
    path: impl AsRef<Path>,
) -> Result<Vec<ExportTraceServiceRequest>, ReadError> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|source| ReadError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let text = String::from_utf8_lossy(&bytes);
    parse_json_lines(&text)
}

/// [`read_json_lines`] on text already in memory.
pub fn parse_json_lines(text: &str) -> Result<Vec<ExportTraceServiceRequest>, ReadError> {
    let complete_end = text.rfind('\n').map(|i| i + 1).unwrap_or(0);
    let mut out = Vec::new();
    for (i, line) in text.split('\n').enumerate() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(req) => out.push(req),
            Err(source) => {
                let offset = line.as_ptr() as usize - text.as_ptr() as usize;
                if offset >= complete_end {
                    tracing::debug!(line = i + 1, "ignoring a partial last line");
                    break;
                }
                return Err(ReadError::Parse {
                    line: i + 1,
                    source,
                });
            }
        }
    }
    Ok(out)
}

/// Appends OTLP-JSON lines to a file, one `write` and one flush per line, so
/// that concurrent appenders (O_APPEND) and readers see whole lines.
#[derive(Debug)]
pub struct JsonLinesWriter {
    path: PathBuf,
    file: Mutex<File>,
}

impl JsonLinesWriter {
    /// Opens `path` for appending, creating it if needed.
    pub fn open(path: impl AsRef<Path>) -> io::Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(Self {
            path,
            file: Mutex::new(file),
        })
    }

    /// The file written to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `request` as one line and flushes it to the OS.
    pub fn append(&self, request: &ExportTraceServiceRequest) -> io::Result<()> {
        let mut line = request_to_json_line(request);
        line.push('\n');
        let mut file = self
            .file
            .lock()
            .map_err(|_| io::Error::other("the JSON-lines writer lock is poisoned"))?;
        file.write_all(line.as_bytes())?;
        file.flush()
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
}
