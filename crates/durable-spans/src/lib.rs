//! OpenTelemetry spans that outlive the process that started them.
//!
//! A span's state is saved as a small JSON value ([`SpanInfo`], Zuul's
//! format) inside objects a distributed system already stores. Any process
//! can restore it ([`DurableTracer::restore`]), start children under it,
//! and end it ([`DurableTracer::end_saved_span`]); it is exported through the
//! ordinary OpenTelemetry pipeline with its original ids, parent, start time
//! and flags. Remote workers that only start children receive a
//! [`SpanContext`] (about 100 bytes of JSON, or a W3C `traceparent`).
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
//! Missing or bad span data is never an error for the caller: it restores as
//! a non-recording span whose children start new traces.

mod attributes;
mod context;
mod fast;
mod finished;
mod ids;
mod info;
mod pipeline;
mod restored;
mod time;
mod tracer;

pub use attributes::{parse_attribute_object, AttributeError};
pub use context::{SpanContext, TraceparentError};
pub use finished::{EventData, FinishedSpan, Kind, StatusData};
pub use info::{lenient, DecodeError, LinkContext, LinkInfo, ParentInfo, SpanInfo};
pub use restored::RestoredSpan;
pub use time::{TimeError, Timestamp};
pub use tracer::{
    parent_context, span_context_of, ChildOptions, DurableTracer, DurableTracerBuilder, EndOptions,
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
    Ok(Some(FinishedSpan::from_span_data(&data).to_span_info()))
}

/// The README's Rust example is compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
