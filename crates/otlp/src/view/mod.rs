//! Traces from OTLP-JSON lines for `dspans view`: grouping by trace, span
//! trees, missing parents and duplicate span ids ([`TraceSet`]) and a
//! terminal waterfall ([`render_terminal`]). The HTML viewer is the
//! `dspans-ui` crate's.
//!
//! ```
//! use dspans_otlp::view::{render_terminal, TraceSet};
//!
//! let line = r#"{"resourceSpans":[{"resource":{"attributes":[
//!   {"key":"service.name","value":{"stringValue":"zuul"}}]},
//!   "scopeSpans":[{"spans":[
//!   {"traceId":"0af7651916cd43dd8448eb211c80319c","spanId":"b7ad6b7169203331",
//!    "name":"item","startTimeUnixNano":"1000","endTimeUnixNano":"5000"},
//!   {"traceId":"0af7651916cd43dd8448eb211c80319c","spanId":"00f067aa0ba902b7",
//!    "parentSpanId":"b7ad6b7169203331","name":"job",
//!    "startTimeUnixNano":"2000","endTimeUnixNano":"4000"}]}]}]}"#;
//! // One request per line.
//! let set = TraceSet::parse(&line.replace('\n', "")).unwrap();
//! assert_eq!(set.traces().len(), 1);
//! assert_eq!(set.summary().spans, 2);
//! assert!(render_terminal(&set).contains("job"));
//! ```

mod model;
mod terminal;

pub use model::{
    format_duration, hex, value_to_string, view_spans, Row, Summary, Trace, TraceSet, TraceSummary,
    ViewEvent, ViewLink, ViewSpan,
};
pub use terminal::{
    render_terminal, render_terminal_with, render_trace_terminal, Shown, TerminalOptions,
};

use crate::jsonl::ReadError;

/// Attributes shown beside a span in the waterfall, in this order, when
/// present.
pub const KEY_ATTRIBUTES: &[&str] = &[
    "result",
    "job",
    "zuul_pipeline",
    "zuul_event_id",
    "exit_code",
    "error",
];

/// `dspans view` failures.
#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    /// The file could not be read or parsed.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// `--trace` named a trace that is not in the file.
    #[error("no trace {0} in the file")]
    NoSuchTrace(String),
    /// `--trace` is the start of more than one trace id.
    #[error("{traces} traces start with {prefix}: give more of the id")]
    AmbiguousTrace {
        /// The prefix given.
        prefix: String,
        /// How many traces it matches.
        traces: usize,
    },
    /// `--trace` is not a hex trace id.
    #[error("{0:?} is not a hex trace id")]
    BadTraceId(String),
}
