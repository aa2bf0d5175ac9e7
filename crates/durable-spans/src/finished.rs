//! [`FinishedSpan`]: a completed span as plain data, to keep and export later.

use std::borrow::Cow;

use opentelemetry::trace::{
    Event, Link, SpanContext as OtelSpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId,
    TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};
use serde::{Deserialize, Serialize};

use crate::info::{LinkContext, LinkInfo, ParentInfo};
use crate::{SpanInfo, Timestamp};

/// A completed span as data: everything an exporter needs, serializable to
/// JSON so it can wait in a store (an outbox) and be exported by any process.
///
/// ```
/// use durable_spans::{DurableTracer, EndOptions, FinishedSpan};
/// let tracer = DurableTracer::builder("demo").build();
/// let info = tracer.start_saved_span("Build", Default::default()).unwrap();
/// let finished = tracer.finish_saved_span(Some(&info), EndOptions::new()).unwrap();
/// let kept = finished.to_json();
/// let back = FinishedSpan::from_json(&kept).unwrap();
/// assert_eq!(back, finished);
/// tracer.export(back);
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinishedSpan {
    /// Span name.
    pub name: String,
    /// Trace id.
    #[serde(deserialize_with = "crate::ids::deserialize")]
    pub trace_id: u128,
    /// Span id.
    pub span_id: u64,
    /// W3C trace flags.
    pub trace_flags: u8,
    /// The parent's context, if any (its trace id is this span's).
    #[serde(default)]
    pub parent: Option<ParentInfo>,
    /// Span kind.
    #[serde(default)]
    pub kind: Kind,
    /// Start time, nanoseconds.
    pub start_time: Timestamp,
    /// End time, nanoseconds.
    pub end_time: Timestamp,
    /// Attributes, in order.
    #[serde(
        default,
        serialize_with = "crate::attributes::serialize_attributes",
        deserialize_with = "deserialize_attrs"
    )]
    pub attributes: Vec<KeyValue>,
    /// Events.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub events: Vec<EventData>,
    /// Links.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<LinkInfo>,
    /// Status.
    #[serde(default)]
    pub status: StatusData,
    /// Instrumentation scope name, when it differs from the exporting tracer's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// A span event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventData {
    /// Event name.
    pub name: String,
    /// When it happened, nanoseconds.
    pub time: Timestamp,
    /// Event attributes.
    #[serde(
        default,
        serialize_with = "crate::attributes::serialize_attributes",
        deserialize_with = "deserialize_attrs"
    )]
    pub attributes: Vec<KeyValue>,
}

/// Span kind, as OpenTelemetry defines it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// Internal operation (the default).
    #[default]
    Internal,
    /// Server side of a request.
    Server,
    /// Client side of a request.
    Client,
    /// Producer of a message.
    Producer,
    /// Consumer of a message.
    Consumer,
}

/// Span status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "code", rename_all = "lowercase")]
pub enum StatusData {
    /// No status set.
    #[default]
    Unset,
    /// Completed successfully.
    Ok,
    /// Failed.
    Error {
        /// What went wrong.
        #[serde(default)]
        description: String,
    },
}

fn deserialize_attrs<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<KeyValue>, D::Error> {
    Ok(crate::attributes::PersistedAttributes::deserialize(d)?.0)
}

fn u128_of(id: TraceId) -> u128 {
    u128::from_be_bytes(id.to_bytes())
}

fn u64_of(id: SpanId) -> u64 {
    u64::from_be_bytes(id.to_bytes())
}

impl FinishedSpan {
    /// From the SDK's span data.
    pub fn from_span_data(data: &SpanData) -> FinishedSpan {
        let ctx = &data.span_context;
        let parent = (data.parent_span_id != SpanId::INVALID).then(|| ParentInfo {
            trace_id: u128_of(ctx.trace_id()),
            span_id: u64_of(data.parent_span_id),
            is_remote: data.parent_span_is_remote,
        });
        FinishedSpan {
            name: data.name.to_string(),
            trace_id: u128_of(ctx.trace_id()),
            span_id: u64_of(ctx.span_id()),
            trace_flags: ctx.trace_flags().to_u8(),
            parent,
            kind: match data.span_kind {
                SpanKind::Server => Kind::Server,
                SpanKind::Client => Kind::Client,
                SpanKind::Producer => Kind::Producer,
                SpanKind::Consumer => Kind::Consumer,
                SpanKind::Internal => Kind::Internal,
            },
            start_time: data.start_time.into(),
            end_time: data.end_time.into(),
            attributes: data.attributes.clone(),
            events: data
                .events
                .iter()
                .map(|e| EventData {
                    name: e.name.to_string(),
                    time: e.timestamp.into(),
                    attributes: e.attributes.clone(),
                })
                .collect(),
            links: data
                .links
                .iter()
                .map(|l| LinkInfo {
                    context: LinkContext {
                        trace_id: u128_of(l.span_context.trace_id()),
                        span_id: u64_of(l.span_context.span_id()),
                    },
                    is_remote: l.span_context.is_remote(),
                    attributes: l.attributes.clone(),
                })
                .collect(),
            status: match &data.status {
                Status::Ok => StatusData::Ok,
                Status::Error { description } => StatusData::Error {
                    description: description.to_string(),
                },
                Status::Unset => StatusData::Unset,
            },
            scope: Some(data.instrumentation_scope.name().to_string()),
        }
    }

    /// To the SDK's span data; `default_scope` is used unless the span names
    /// its own scope.
    pub fn into_span_data(self, default_scope: &InstrumentationScope) -> SpanData {
        let instrumentation_scope = match &self.scope {
            Some(name) if name != default_scope.name() => {
                InstrumentationScope::builder(name.clone()).build()
            }
            _ => default_scope.clone(),
        };
        let mut events = SpanEvents::default();
        events.events = self
            .events
            .into_iter()
            .map(|e| Event::new(e.name, e.time.to_system_time(), e.attributes, 0))
            .collect();
        let mut links = SpanLinks::default();
        links.links = self
            .links
            .into_iter()
            .map(|l| {
                let cx = OtelSpanContext::new(
                    TraceId::from(l.context.trace_id),
                    SpanId::from(l.context.span_id),
                    TraceFlags::default(),
                    l.is_remote,
                    TraceState::NONE,
                );
                Link::new(cx, l.attributes, 0)
            })
            .collect();
        let (parent_span_id, parent_span_is_remote) = match self.parent {
            Some(p) => (SpanId::from(p.span_id), p.is_remote),
            None => (SpanId::INVALID, false),
        };
        SpanData {
            span_context: OtelSpanContext::new(
                TraceId::from(self.trace_id),
                SpanId::from(self.span_id),
                TraceFlags::new(self.trace_flags),
                false,
                TraceState::NONE,
            ),
            parent_span_id,
            parent_span_is_remote,
            span_kind: match self.kind {
                Kind::Internal => SpanKind::Internal,
                Kind::Server => SpanKind::Server,
                Kind::Client => SpanKind::Client,
                Kind::Producer => SpanKind::Producer,
                Kind::Consumer => SpanKind::Consumer,
            },
            name: Cow::Owned(self.name),
            start_time: self.start_time.to_system_time(),
            end_time: self.end_time.to_system_time(),
            attributes: self.attributes,
            dropped_attributes_count: 0,
            events,
            links,
            status: match self.status {
                StatusData::Unset => Status::Unset,
                StatusData::Ok => Status::Ok,
                StatusData::Error { description } => Status::error(description),
            },
            instrumentation_scope,
        }
    }

    /// The span info this span was saved as (start attributes included).
    pub fn to_span_info(&self) -> SpanInfo {
        SpanInfo {
            name: self.name.clone(),
            trace_id: self.trace_id,
            span_id: self.span_id,
            trace_flags: self.trace_flags,
            start_time: self.start_time,
            parent: self.parent,
            links: self.links.clone(),
            attributes: self.attributes.clone(),
        }
    }

    /// JSON form (ids as decimal integers, times as nanoseconds).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("finished span always serializes")
    }

    /// Reads the JSON form.
    pub fn from_json(text: &str) -> Result<FinishedSpan, crate::DecodeError> {
        serde_json::from_str(text).map_err(|e| crate::DecodeError::Invalid(e.to_string()))
    }
}
