//! `dspans ui`: a local trace viewer that also shows the spans still
//! running.
//!
//! # Overview
//!
//! OTLP backends see a span only when it ends; the spans of work in
//! progress, and those of a process that died, stay invisible. The store
//! of durable-spans knows every open saved span, so this viewer shows them
//! in their traces as running bars beside the finished spans.
//!
//! - [`TraceIndex`] holds the traces in memory: finished spans from OTLP
//!   requests ([`TraceIndex::ingest`]) and the running ones read from a
//!   store ([`TraceIndex::set_running`]). A running span whose finished
//!   form arrives is shown finished.
//! - [`ListQuery`] searches, filters, sorts and pages the trace list;
//!   [`TraceIndex::trace_page`] gives one trace's rows for the waterfall.
//! - [`serve`] runs the viewer: a page on `--listen`, OTLP receivers, files
//!   followed as they grow, and the store polled once a second. Pages
//!   update without a reload: they wait on `/api/version`.
//! - [`snapshot_html`] writes the same page as one self-contained file
//!   (`dspans view --html`).
//!
//! The page is plain HTML, CSS and JavaScript embedded in the binary: it
//! works offline.
//!
//! ```
//! use dspans_ui::{ListQuery, TraceIndex};
//!
//! let line = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[
//!   {"traceId":"0af7651916cd43dd8448eb211c80319c","spanId":"b7ad6b7169203331",
//!    "name":"QueueItem","startTimeUnixNano":"1000","endTimeUnixNano":"5000",
//!    "attributes":[{"key":"ref_number","value":{"stringValue":"2"}}]}]}]}]}"#;
//! let mut index = TraceIndex::default();
//! for request in dspans_otlp::parse_json_lines(&line.replace('\n', "")).unwrap() {
//!     index.ingest(&request);
//! }
//! let found = index.list(&ListQuery::parse("ref_number=2"), 0);
//! assert_eq!(found.total, 1);
//! assert_eq!(index.list(&ListQuery::parse("ref_number=3"), 0).total, 0);
//! ```

mod error;
mod index;
mod live;
mod page;
mod query;
mod server;

pub use error::UiError;
pub use index::{ListRow, RunningSpan, TraceIndex};
pub use live::running_spans;
pub use page::snapshot_html;
pub use query::{ListPage, ListQuery, Sort};
pub use server::{serve, UiOptions, UiServer};
