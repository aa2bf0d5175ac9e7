//! OpenTelemetry spans that outlive the process that started them.
//!
//! A span that lasts as long as a queue item, a build set or a merge
//! request cannot live in one process's memory: the process that starts it
//! is rarely the one that ends it, and either may restart in between. Here
//! a span's state is saved as a small JSON value ([`SpanInfo`], in Zuul's
//! format) inside objects a distributed system already stores. Any process
//! can restore it ([`DurableTracer::restore`]), start children under it,
//! and end it ([`DurableTracer::end_saved_span`]); it is exported through
//! the ordinary OpenTelemetry pipeline with its original ids, parent, start
//! time and flags. Remote workers that only start children receive a
//! [`SpanContext`] (about 100 bytes of JSON, or a W3C `traceparent`).
//!
//! Missing or bad span data is never an error for the caller: it restores as
//! a non-recording span whose children start new traces.
//!
//! | Zuul (`zuul.lib.tracing`) | here |
//! |---|---|
//! | `startSavedSpan` | [`DurableTracer::start_saved_span`] |
//! | `getSpanInfo` | [`RestoredSpan::span_info`], [`span_info_of`] |
//! | `restoreSpan` | [`DurableTracer::restore`] |
//! | `endSavedSpan` | [`DurableTracer::end_saved_span`] |
//! | `getSpanContext` | [`span_context_of`] |
//! | `restoreSpanContext` | [`parent_context`] |
//! | `startSpanInContext` | [`DurableTracer::start_span_in_context`] |
//!
//! # Lifecycle of a saved span
//!
//! A saved span passes through the same stages whichever processes take
//! part; each stage names the code that carries it out.
//!
//! ## Start
//!
//! [`DurableTracer::start_saved_span`] chooses the ids, asks the sampler,
//! and returns the span's [`SpanInfo`]: name, ids, flags, start time, parent
//! and links. Nothing is exported and nothing is kept in memory. Start
//! attributes are refused unless they are asked to be persisted
//! ([`SavedSpanOptions::persisted_attributes`]): attributes belong at the end,
//! so the stored value stays small.
//!
//! ## Save
//!
//! [`SpanInfo::to_json`] gives the compact JSON to store with the object the
//! span describes. Objects that embed it read it with
//! `#[serde(default, with = "durable_spans::lenient")]` ([`lenient`]), so
//! bad span data never makes the object itself unreadable.
//!
//! ## Restore
//!
//! [`DurableTracer::restore`] (or [`restore_json`](DurableTracer::restore_json),
//! which decodes too) builds the SDK's span data from the info, once, and
//! wraps it in a [`RestoredSpan`]: a live [`Span`](opentelemetry::trace::Span)
//! whose attributes, events and status can still be set. Dropping it does
//! not end it; the saved info stays the truth.
//!
//! ## Children
//!
//! In the same process, put the restored span in a [`Context`](opentelemetry::Context)
//! ([`RestoredSpan::into_context`]) and start SDK or `tracing` spans in it.
//! Elsewhere, send [`span_context_of`] (or [`SpanInfo::span_context`]) and
//! start children there with [`DurableTracer::start_span_in_context`] or
//! under [`parent_context`].
//!
//! ## End
//!
//! A saved span ends in one of four ways: [`DurableTracer::end_saved_span`]
//! (or [`end_saved_json`](DurableTracer::end_saved_json)) with the info,
//! [`Span::end`](opentelemetry::trace::Span::end) on a [`RestoredSpan`],
//! [`DurableTracer::finish_saved_span`] or [`RestoredSpan::finish_with`] for
//! an outbox. All four go through one private function, `end::end_span`:
//! it applies the [`EndOptions`] (end attributes over persisted ones, a
//! status such as an error for an orphaned span, the end time, never before
//! the start when it is "now") to span data built once from the info, then
//! the data is exported or kept. A restored span ends once; ending the same
//! info twice exports twice, as in Zuul, so a store that must end a span at
//! most once keeps a ledger of ends.
//!
//! ## Outbox
//!
//! [`DurableTracer::finish_saved_span`] returns the ended span as a
//! [`FinishedSpan`] instead of exporting it. Its JSON can wait in a store
//! next to the change that ended the span, and any process exports it later
//! with [`DurableTracer::export`], so a crash between the two loses no span.
//!
//! ```
//! use durable_spans::{DurableTracer, EndOptions, FinishedSpan, SavedSpanOptions, SpanInfo};
//! use opentelemetry::trace::{Span as _, Status, Tracer as _};
//! use opentelemetry::KeyValue;
//! use opentelemetry_sdk::trace::InMemorySpanExporter;
//!
//! let exporter = InMemorySpanExporter::default();
//! let tracer = DurableTracer::builder("zuul").with_simple_exporter(exporter.clone()).build();
//!
//! // Start and save (scheduler).
//! let saved = tracer.start_saved_span("BuildSet", SavedSpanOptions::new()).unwrap().to_json();
//!
//! // Restore and start a child (merger).
//! let info = SpanInfo::from_json(&saved).unwrap();
//! let cx = tracer.restore(info.as_ref()).into_context();
//! tracer.tracer().start_with_context("merge", &cx).end();
//!
//! // End into an outbox, then export from anywhere.
//! let end = EndOptions::new()
//!     .status(Status::error("merge conflict"))
//!     .attributes(vec![KeyValue::new("result", "MERGE_CONFLICT")]);
//! let kept = tracer.finish_saved_span(info.as_ref(), end).unwrap().to_json();
//! tracer.export(FinishedSpan::from_json(&kept).unwrap());
//!
//! let spans = exporter.get_finished_spans().unwrap();
//! assert_eq!(spans.len(), 2);
//! assert_eq!(spans[1].name, "BuildSet");
//! assert_eq!(spans[0].parent_span_id, spans[1].span_context.span_id());
//! ```

mod attributes;
mod context;
mod convert;
mod end;
mod error;
mod fast;
mod finished;
mod ids;
mod info;
mod pipeline;
mod refs;
mod restored;
mod time;
mod tracer;

pub use attributes::{parse_attribute_object, AttributeError};
pub use context::{SpanContext, TraceparentError};
pub use end::EndOptions;
pub use error::DecodeError;
pub use finished::{EventData, FinishedSpan, Kind, StatusData};
pub use info::{lenient, SpanInfo};
pub use refs::{LinkContext, LinkInfo, ParentInfo};
pub use restored::RestoredSpan;
pub use time::{TimeError, Timestamp};
pub use tracer::{
    parent_context, span_context_of, ChildOptions, DurableTracer, DurableTracerBuilder,
    SavedSpanOptions, StartError,
};

/// The span info of a live SDK span (Zuul's `getSpanInfo`).
///
/// Start attributes are refused unless `include_attributes`, as in Zuul:
/// saved spans carry their attributes at the end. Returns `Ok(None)` for a
/// span that is not recording.
pub fn span_info_of(
    span: &opentelemetry_sdk::trace::Span,
    include_attributes: bool,
) -> Result<Option<SpanInfo>, StartError> {
    let Some(data) = span.exported_data() else {
        return Ok(None);
    };
    if !data.attributes.is_empty() && !include_attributes {
        return Err(StartError::AttributesNotPersisted {
            name: data.name.to_string(),
            count: data.attributes.len(),
        });
    }
    Ok(Some(convert::span_info_of_data(&data)))
}

/// The README's Rust example is compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
