//! Conversions between a span's saved forms and OpenTelemetry's types.
//!
//! The saved forms hold plain integers, as Zuul writes them: [`SpanInfo`]
//! (a started span), [`FinishedSpan`] (an ended one) and [`SpanContext`].
//! The SDK works with [`SpanData`] and typed ids, links, kinds and statuses.
//! Every id, parent, link, kind and status crosses between the two here and
//! nowhere else; other modules only call the whole-span conversions.

use std::borrow::Cow;

use opentelemetry::trace::{
    Event, Link, SpanContext as OtelSpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId,
    TraceState,
};
use opentelemetry::InstrumentationScope;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLimits, SpanLinks};

use crate::context::SpanContext;
use crate::finished::{EventData, FinishedSpan, Kind, StatusData};
use crate::info::SpanInfo;
use crate::refs::{LinkContext, LinkInfo, ParentInfo};

/// A trace id as the integer Zuul saves.
pub(crate) fn u128_of(id: TraceId) -> u128 {
    u128::from_be_bytes(id.to_bytes())
}

/// A span id as the integer Zuul saves.
pub(crate) fn u64_of(id: SpanId) -> u64 {
    u64::from_be_bytes(id.to_bytes())
}

fn otel_context(
    trace_id: u128,
    span_id: u64,
    flags: TraceFlags,
    is_remote: bool,
) -> OtelSpanContext {
    OtelSpanContext::new(
        TraceId::from(trace_id),
        SpanId::from(span_id),
        flags,
        is_remote,
        TraceState::NONE,
    )
}

/// The saved form of a span's parent context.
pub(crate) fn parent_info(parent: &OtelSpanContext) -> ParentInfo {
    ParentInfo {
        trace_id: u128_of(parent.trace_id()),
        span_id: u64_of(parent.span_id()),
        is_remote: parent.is_remote(),
    }
}

/// The SDK's parent fields; a parent with a zero span id is no parent.
fn parent_fields(parent: Option<ParentInfo>) -> (SpanId, bool) {
    match parent {
        Some(parent) if parent.span_id != 0 => (SpanId::from(parent.span_id), parent.is_remote),
        _ => (SpanId::INVALID, false),
    }
}

fn parent_of(data: &SpanData) -> Option<ParentInfo> {
    (data.parent_span_id != SpanId::INVALID).then(|| ParentInfo {
        trace_id: u128_of(data.span_context.trace_id()),
        span_id: u64_of(data.parent_span_id),
        is_remote: data.parent_span_is_remote,
    })
}

/// The saved form of a link.
pub(crate) fn link_info(link: Link) -> LinkInfo {
    let context = &link.span_context;
    LinkInfo {
        context: LinkContext {
            trace_id: u128_of(context.trace_id()),
            span_id: u64_of(context.span_id()),
        },
        is_remote: context.is_remote(),
        attributes: link.attributes,
    }
}

/// Saved links as the SDK's, keeping at most `max` (Zuul saves no flags).
fn span_links(links: Vec<LinkInfo>, max: usize) -> SpanLinks {
    let mut out = SpanLinks::default();
    if links.is_empty() {
        return out;
    }
    out.dropped_count = u32::try_from(links.len().saturating_sub(max)).unwrap_or(u32::MAX);
    out.links = links
        .into_iter()
        .take(max)
        .map(|link| {
            let LinkContext { trace_id, span_id } = link.context;
            let context = otel_context(trace_id, span_id, TraceFlags::default(), link.is_remote);
            Link::new(context, link.attributes, 0)
        })
        .collect();
    out
}

/// The saved form of a span kind.
pub(crate) fn kind_of(kind: &SpanKind) -> Kind {
    match kind {
        SpanKind::Server => Kind::Server,
        SpanKind::Client => Kind::Client,
        SpanKind::Producer => Kind::Producer,
        SpanKind::Consumer => Kind::Consumer,
        SpanKind::Internal => Kind::Internal,
    }
}

fn span_kind(kind: Kind) -> SpanKind {
    match kind {
        Kind::Internal => SpanKind::Internal,
        Kind::Server => SpanKind::Server,
        Kind::Client => SpanKind::Client,
        Kind::Producer => SpanKind::Producer,
        Kind::Consumer => SpanKind::Consumer,
    }
}

fn status_data(status: Status) -> StatusData {
    match status {
        Status::Unset => StatusData::Unset,
        Status::Ok => StatusData::Ok,
        Status::Error { description } => StatusData::Error {
            description: description.into_owned(),
        },
    }
}

fn status_of(status: StatusData) -> Status {
    match status {
        StatusData::Unset => Status::Unset,
        StatusData::Ok => Status::Ok,
        StatusData::Error { description } => Status::error(description),
    }
}

/// The SDK's data for a saved span, not yet ended; `None` (with one
/// warning) for all-zero ids. Borrowed info is copied, owned info moved.
#[inline]
pub(crate) fn span_data_of_info(
    info: Cow<'_, SpanInfo>,
    is_remote: bool,
    scope: &InstrumentationScope,
    limits: &SpanLimits,
) -> Option<SpanData> {
    if info.trace_id == 0 || info.span_id == 0 {
        tracing::warn!(span = %info.name, "saved span has an all-zero id; using a non-recording span");
        return None;
    }
    let flags = TraceFlags::new(info.trace_flags);
    let span_context = otel_context(info.trace_id, info.span_id, flags, is_remote);
    let (parent_span_id, parent_span_is_remote) = parent_fields(info.parent);
    let start_time = info.start_time.to_system_time();
    let span_kind = span_kind(info.kind);
    let (name, attributes, links) = match info {
        Cow::Borrowed(info) => (
            info.name.clone(),
            info.attributes.clone(),
            info.links.clone(),
        ),
        Cow::Owned(info) => (info.name, info.attributes, info.links),
    };
    Some(SpanData {
        span_context,
        parent_span_id,
        parent_span_is_remote,
        span_kind,
        start_time,
        end_time: start_time,
        name: Cow::Owned(name),
        attributes,
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: span_links(links, limits.max_links_per_span as usize),
        status: Status::Unset,
        instrumentation_scope: scope.clone(),
    })
}

/// The saved form of a live span's data, start attributes included.
pub(crate) fn span_info_of_data(data: &SpanData) -> SpanInfo {
    let context = &data.span_context;
    SpanInfo {
        name: data.name.to_string(),
        trace_id: u128_of(context.trace_id()),
        span_id: u64_of(context.span_id()),
        trace_flags: context.trace_flags().to_u8(),
        start_time: data.start_time.into(),
        parent: parent_of(data),
        links: data.links.iter().cloned().map(link_info).collect(),
        attributes: data.attributes.clone(),
        kind: kind_of(&data.span_kind),
    }
}

/// The kept form of ended span data; everything is moved, nothing copied.
pub(crate) fn finished_of_data(data: SpanData) -> FinishedSpan {
    let context = &data.span_context;
    let (trace_id, span_id) = (u128_of(context.trace_id()), u64_of(context.span_id()));
    let trace_flags = context.trace_flags().to_u8();
    let parent = parent_of(&data);
    let scope = Some(data.instrumentation_scope.name().to_owned());
    let events = data.events.events.into_iter().map(|event| EventData {
        name: event.name.into_owned(),
        time: event.timestamp.into(),
        attributes: event.attributes,
    });
    FinishedSpan {
        name: data.name.into_owned(),
        trace_id,
        span_id,
        trace_flags,
        parent,
        kind: kind_of(&data.span_kind),
        start_time: data.start_time.into(),
        end_time: data.end_time.into(),
        attributes: data.attributes,
        events: events.collect(),
        links: data.links.links.into_iter().map(link_info).collect(),
        status: status_data(data.status),
        scope,
    }
}

impl FinishedSpan {
    /// From the SDK's span data.
    pub fn from_span_data(data: &SpanData) -> FinishedSpan {
        finished_of_data(data.clone())
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
        let (parent_span_id, parent_span_is_remote) = parent_fields(self.parent);
        let flags = TraceFlags::new(self.trace_flags);
        SpanData {
            span_context: otel_context(self.trace_id, self.span_id, flags, false),
            parent_span_id,
            parent_span_is_remote,
            span_kind: span_kind(self.kind),
            name: Cow::Owned(self.name),
            start_time: self.start_time.to_system_time(),
            end_time: self.end_time.to_system_time(),
            attributes: self.attributes,
            dropped_attributes_count: 0,
            events,
            links: span_links(self.links, usize::MAX),
            status: status_of(self.status),
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
            kind: self.kind,
        }
    }
}

impl SpanInfo {
    /// The span's trace id in OpenTelemetry's type.
    pub fn otel_trace_id(&self) -> TraceId {
        TraceId::from(self.trace_id)
    }

    /// The span's id in OpenTelemetry's type.
    pub fn otel_span_id(&self) -> SpanId {
        SpanId::from(self.span_id)
    }
}

impl SpanContext {
    /// As an OpenTelemetry span context.
    pub fn to_otel(&self, is_remote: bool) -> OtelSpanContext {
        let flags = TraceFlags::new(self.trace_flags);
        otel_context(self.trace_id, self.span_id, flags, is_remote)
    }

    /// From an OpenTelemetry span context (an invalid one gives zeros).
    pub fn from_otel(ctx: &OtelSpanContext) -> SpanContext {
        if !ctx.is_valid() {
            return SpanContext::INVALID;
        }
        SpanContext {
            trace_id: u128_of(ctx.trace_id()),
            span_id: u64_of(ctx.span_id()),
            trace_flags: ctx.trace_flags().to_u8(),
        }
    }
}
