//! Sharing the provider's span processors with restored spans.
//!
//! opentelemetry-sdk keeps a provider's processors private, and its tracer
//! cannot start a span with given ids and flags. A restored span therefore
//! builds its own `SpanData` and hands it to the same processor instances the
//! provider uses: each processor is wrapped in an `Arc`, one handle goes into
//! the provider, one stays here. Exporter, resource, batching and flushing are
//! thus exactly those of ordinary spans, and the sampler is never consulted
//! for a span that was already sampled when it started.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::{Context, InstrumentationScope};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{IdGenerator, Span, SpanData, SpanLimits, SpanProcessor};
use opentelemetry_sdk::Resource;

/// What saved spans are built with and where they go when they end: the
/// provider's processors, its scope and its limits. The tracer and every
/// span it restores share one.
#[derive(Debug)]
pub(crate) struct Pipeline {
    pub processors: Vec<SharedProcessor>,
    pub scope: InstrumentationScope,
    pub limits: SpanLimits,
}

impl Pipeline {
    /// Hands finished span data to every processor, in order; data
    /// without the sampled flag goes nowhere, as the SDKs' processors drop
    /// unsampled spans (the Rust SDK never gives them any: its unsampled
    /// spans do not record).
    ///
    /// Inlined, with the usual single processor apart: span data is large,
    /// and each function it passes through by value may copy it.
    #[inline(always)]
    pub fn export(&self, data: SpanData) {
        if !data.span_context.is_sampled() {
            return;
        }
        match self.processors.as_slice() {
            [only] => only.0.on_end(data),
            processors => export_each(processors, data),
        }
    }
}

fn export_each(processors: &[SharedProcessor], data: SpanData) {
    if let Some((last, rest)) = processors.split_last() {
        for processor in rest {
            processor.0.on_end(data.clone());
        }
        last.0.on_end(data);
    }
}

/// A processor used both by the provider and by restored spans.
#[derive(Clone)]
pub(crate) struct SharedProcessor(pub Arc<dyn SpanProcessor>);

impl fmt::Debug for SharedProcessor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SharedProcessor").field(&self.0).finish()
    }
}

impl SpanProcessor for SharedProcessor {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.0.on_start(span, cx)
    }

    fn on_end(&self, span: SpanData) {
        self.0.on_end(span)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    /// The resource was given to the inner processor before it was shared.
    fn set_resource(&mut self, _resource: &Resource) {}
}

/// An id generator used both by the provider and by saved spans.
#[derive(Clone, Debug)]
pub(crate) struct SharedIdGenerator(pub Arc<dyn IdGenerator>);

impl IdGenerator for SharedIdGenerator {
    fn new_trace_id(&self) -> opentelemetry::trace::TraceId {
        self.0.new_trace_id()
    }

    fn new_span_id(&self) -> opentelemetry::trace::SpanId {
        self.0.new_span_id()
    }
}
