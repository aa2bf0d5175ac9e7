//! [`RestoredSpan`]: a saved span brought back to life in this process.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::SystemTime;

use opentelemetry::trace::{Event, Link, SpanContext as OtelSpanContext, Status};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::SpanData;

use crate::context::SpanContext;
use crate::convert::{finished_of_data, span_data_of_info, span_info_of_data};
use crate::end::{end_span, raise_status, set_limited, EndOptions};
use crate::finished::FinishedSpan;
use crate::info::SpanInfo;
use crate::pipeline::Pipeline;

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
    state: Option<Recording>,
}

/// A restored span's data until it ends, and where it goes then.
struct Recording {
    pipeline: Arc<Pipeline>,
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

    /// Builds the span's data from its info; invalid ids give the invalid
    /// span (with one warning).
    pub(crate) fn restore(
        pipeline: &Arc<Pipeline>,
        info: Cow<'_, SpanInfo>,
        is_remote: bool,
    ) -> Self {
        match span_data_of_info(info, is_remote, &pipeline.scope, &pipeline.limits) {
            Some(data) => RestoredSpan {
                context: data.span_context.clone(),
                state: Some(Recording {
                    pipeline: Arc::clone(pipeline),
                    data,
                }),
            },
            None => Self::invalid(),
        }
    }

    /// The span's current state as span info (attributes included only when
    /// `include_attributes`), or `None` for the invalid span.
    pub fn span_info(&self, include_attributes: bool) -> Option<SpanInfo> {
        let mut info = span_info_of_data(&self.state.as_ref()?.data);
        if !include_attributes {
            info.attributes.clear();
        }
        Some(info)
    }

    /// This span's context in Zuul's form.
    pub fn saved_context(&self) -> SpanContext {
        SpanContext::from_otel(&self.context)
    }

    /// A new context whose span is this one, for starting children.
    pub fn into_context(self) -> Context {
        use opentelemetry::trace::TraceContextExt;
        Context::new().with_span(self)
    }

    /// Ends the span with end options and returns it as data instead of
    /// exporting it. `None` for the invalid span or one already ended.
    pub fn finish_with(mut self, options: EndOptions) -> Option<FinishedSpan> {
        let Recording { pipeline, mut data } = self.state.take()?;
        end_span(&mut data, options, &pipeline.limits);
        Some(finished_of_data(data))
    }

    /// Ends the span and exports it, once; later calls do nothing.
    fn end_and_export(&mut self, options: EndOptions) {
        if let Some(mut state) = self.state.take() {
            end_span(&mut state.data, options, &state.pipeline.limits);
            state.pipeline.export(state.data);
        }
    }
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
        let limits = state.pipeline.limits;
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
            let max = state.pipeline.limits.max_attributes_per_span as usize;
            set_limited(&mut state.data, attribute, max);
        }
    }

    fn set_status(&mut self, status: Status) {
        if let Some(state) = self.state.as_mut() {
            raise_status(&mut state.data.status, status);
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
        let max = state.pipeline.limits.max_links_per_span as usize;
        let links = &mut state.data.links;
        if links.links.len() >= max {
            links.dropped_count += 1;
            return;
        }
        links.links.push(Link::new(span_context, attributes, 0));
    }

    /// Exports the span now (never before its saved start), once; later
    /// calls do nothing.
    fn end(&mut self) {
        self.end_and_export(EndOptions::new());
    }

    /// Exports the span, once; later calls do nothing.
    fn end_with_timestamp(&mut self, timestamp: SystemTime) {
        self.end_and_export(EndOptions::new().end_time(timestamp.into()));
    }
}
