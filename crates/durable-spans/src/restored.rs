//! [`RestoredSpan`]: a saved span brought back to life in this process.

use std::borrow::Cow;
use std::time::SystemTime;

use opentelemetry::trace::{
    Event, Link, SpanContext as OtelSpanContext, SpanId, SpanKind, Status, TraceFlags, TraceId,
    TraceState,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};

use crate::attributes::upsert;
use crate::tracer::{DurableTracer, EndOptions};
use crate::{FinishedSpan, SpanInfo};

/// A saved span restored in this process.
///
/// It implements OpenTelemetry's [`Span`](opentelemetry::trace::Span) trait:
/// set attributes, add events, set the status, put it in a [`Context`] to
/// start children (SDK spans or `tracing` spans through
/// `tracing-opentelemetry`), and end it, which exports it with its saved
/// ids, parent, start time, flags and links.
///
/// Unlike SDK spans, dropping a restored span does **not** end it: the saved
/// info remains the truth, and whoever ends it says so explicitly.
///
/// ```
/// use durable_spans::DurableTracer;
/// use opentelemetry::trace::{Span, TraceContextExt, Tracer};
/// use opentelemetry::Context;
///
/// let tracer = DurableTracer::builder("demo").build();
/// let info = tracer.start_saved_span("BuildSet", Default::default()).unwrap();
/// let restored = tracer.restore(Some(&info));
/// let cx = Context::new().with_span(restored);
/// let child = tracer.tracer().start_with_context("Build", &cx);
/// assert_eq!(child.span_context().trace_id(), info.otel_trace_id());
/// ```
pub struct RestoredSpan {
    context: OtelSpanContext,
    state: Option<Box<Recording>>,
}

struct Recording {
    tracer: DurableTracer,
    data: SpanData,
}

impl std::fmt::Debug for RestoredSpan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestoredSpan")
            .field("context", &self.context)
            .field("recording", &self.state.is_some())
            .finish()
    }
}

impl RestoredSpan {
    /// The non-recording span with the invalid context.
    pub fn invalid() -> RestoredSpan {
        RestoredSpan {
            context: OtelSpanContext::empty_context(),
            state: None,
        }
    }

    /// Borrowed info is copied; owned info (freshly decoded) is moved.
    pub(crate) fn from_info(
        tracer: DurableTracer,
        info: Cow<'_, SpanInfo>,
        is_remote: bool,
    ) -> Self {
        match span_data(&tracer, info, is_remote) {
            Some(data) => RestoredSpan {
                context: data.span_context.clone(),
                state: Some(Box::new(Recording { tracer, data })),
            },
            None => Self::invalid(),
        }
    }

    /// The span's current state as span info (attributes included only when
    /// `include_attributes`), or `None` for the invalid span.
    pub fn span_info(&self, include_attributes: bool) -> Option<SpanInfo> {
        let data = &self.state.as_ref()?.data;
        let mut info = FinishedSpan::from_span_data(data).to_span_info();
        if !include_attributes {
            info.attributes.clear();
        }
        Some(info)
    }

    /// This span's context in Zuul's form.
    pub fn saved_context(&self) -> crate::SpanContext {
        crate::SpanContext::from_otel(&self.context)
    }

    /// A new context whose span is this one, for starting children.
    pub fn into_context(self) -> Context {
        use opentelemetry::trace::TraceContextExt;
        Context::new().with_span(self)
    }

    /// Ends the span with end options and returns it as data instead of
    /// exporting it. `None` for the invalid span.
    pub fn finish_with(mut self, options: EndOptions) -> Option<FinishedSpan> {
        let mut state = self.state.take()?;
        let max = state.tracer.inner.limits.max_attributes_per_span as usize;
        merge_end_attributes(&mut state.data, options.attributes, max);
        let end = options
            .end_time
            .map_or_else(SystemTime::now, |t| t.to_system_time());
        state.data.end_time = end;
        Some(FinishedSpan::from_span_data(&state.data))
    }
}

/// The SDK's span data for saved span info, or `None` (with one warning)
/// for all-zero ids.
pub(crate) fn span_data(
    tracer: &DurableTracer,
    info: Cow<'_, SpanInfo>,
    is_remote: bool,
) -> Option<SpanData> {
    if info.trace_id == 0 || info.span_id == 0 {
        tracing::warn!(span = %info.name, "saved span has an all-zero id; using a non-recording span");
        return None;
    }
    let span_context = OtelSpanContext::new(
        TraceId::from(info.trace_id),
        SpanId::from(info.span_id),
        TraceFlags::new(info.trace_flags),
        is_remote,
        TraceState::NONE,
    );
    let limits = tracer.inner.limits;
    let mut links = SpanLinks::default();
    for link in &info.links {
        if links.links.len() >= limits.max_links_per_span as usize {
            links.dropped_count += 1;
            continue;
        }
        let link_context = OtelSpanContext::new(
            TraceId::from(link.context.trace_id),
            SpanId::from(link.context.span_id),
            TraceFlags::default(),
            link.is_remote,
            TraceState::NONE,
        );
        links
            .links
            .push(Link::new(link_context, link.attributes.clone(), 0));
    }
    let (parent_span_id, parent_span_is_remote) = match &info.parent {
        Some(parent) if parent.span_id != 0 => (SpanId::from(parent.span_id), parent.is_remote),
        _ => (SpanId::INVALID, false),
    };
    let start_time = info.start_time.to_system_time();
    let info = info.into_owned();
    Some(SpanData {
        span_context,
        parent_span_id,
        parent_span_is_remote,
        span_kind: SpanKind::Internal,
        start_time,
        end_time: start_time,
        name: Cow::Owned(info.name),
        attributes: info.attributes,
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links,
        status: Status::Unset,
        instrumentation_scope: tracer.inner.scope.clone(),
    })
}

/// Sets end attributes over the persisted ones, Python-dict style (an
/// overridden key moves last), within the attribute limit.
pub(crate) fn merge_end_attributes(data: &mut SpanData, end: Vec<KeyValue>, max: usize) {
    let distinct = |attrs: &[KeyValue]| {
        attrs
            .iter()
            .enumerate()
            .all(|(i, kv)| attrs[..i].iter().all(|old| old.key != kv.key))
    };
    // The usual case: nothing persisted, distinct keys. Take the vector whole.
    if data.attributes.is_empty() && end.len() <= max && distinct(&end) {
        data.attributes = end;
        return;
    }
    for kv in end {
        set_limited(data, kv, max);
    }
}

fn set_limited(data: &mut SpanData, kv: KeyValue, max: usize) {
    let attrs = &mut data.attributes;
    if attrs.len() >= max && !attrs.iter().any(|old| old.key == kv.key) {
        data.dropped_attributes_count += 1;
        return;
    }
    upsert(attrs, kv);
}

impl opentelemetry::trace::Span for RestoredSpan {
    fn add_event_with_timestamp<T>(
        &mut self,
        name: T,
        timestamp: SystemTime,
        attributes: Vec<KeyValue>,
    ) where
        T: Into<Cow<'static, str>>,
    {
        let Some(state) = self.state.as_mut() else {
            return;
        };
        let limits = state.tracer.inner.limits;
        let events = &mut state.data.events;
        if events.events.len() >= limits.max_events_per_span as usize {
            events.dropped_count += 1;
            return;
        }
        let mut attributes = attributes;
        let dropped = attributes
            .len()
            .saturating_sub(limits.max_attributes_per_event as usize);
        attributes.truncate(limits.max_attributes_per_event as usize);
        events
            .events
            .push(Event::new(name, timestamp, attributes, dropped as u32));
    }

    fn span_context(&self) -> &OtelSpanContext {
        &self.context
    }

    fn is_recording(&self) -> bool {
        self.state.is_some()
    }

    fn set_attribute(&mut self, attribute: KeyValue) {
        if let Some(state) = self.state.as_mut() {
            let max = state.tracer.inner.limits.max_attributes_per_span as usize;
            set_limited(&mut state.data, attribute, max);
        }
    }

    fn set_status(&mut self, status: Status) {
        if let Some(state) = self.state.as_mut() {
            // Ok > Error > Unset, as the SDK orders them.
            if status > state.data.status {
                state.data.status = status;
            }
        }
    }

    fn update_name<T>(&mut self, new_name: T)
    where
        T: Into<Cow<'static, str>>,
    {
        if let Some(state) = self.state.as_mut() {
            state.data.name = new_name.into();
        }
    }

    fn add_link(&mut self, span_context: OtelSpanContext, attributes: Vec<KeyValue>) {
        let Some(state) = self.state.as_mut() else {
            return;
        };
        let max = state.tracer.inner.limits.max_links_per_span as usize;
        let links = &mut state.data.links;
        if links.links.len() >= max {
            links.dropped_count += 1;
            return;
        }
        links.links.push(Link::new(span_context, attributes, 0));
    }

    /// Exports the span, once; later calls do nothing.
    fn end_with_timestamp(&mut self, timestamp: SystemTime) {
        let Some(mut state) = self.state.take() else {
            return;
        };
        state.data.end_time = timestamp;
        crate::pipeline::export_to(&state.tracer.inner.processors, state.data);
    }
}
