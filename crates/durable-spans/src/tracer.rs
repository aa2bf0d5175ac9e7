//! [`DurableTracer`]: the entry point for saved spans.

use std::borrow::Cow;
use std::sync::Arc;

use opentelemetry::trace::{
    Link, SpanBuilder, SpanKind, TraceContextExt, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, InstrumentationScope, KeyValue};
use opentelemetry_sdk::trace::{
    IdGenerator, ParentBasedSampler, RandomIdGenerator, Sampler, SamplingDecision, SdkTracer,
    SdkTracerProvider, ShouldSample, SpanExporter, SpanLimits, SpanProcessor,
};
use opentelemetry_sdk::Resource;

use crate::context::SpanContext;
use crate::convert::{
    finished_of_data, kind_of, link_info, parent_info, span_data_of_info, u128_of, u64_of,
};
use crate::end::{end_span, EndOptions};
use crate::finished::FinishedSpan;
use crate::info::SpanInfo;
use crate::pipeline::{Pipeline, SharedIdGenerator, SharedProcessor};
use crate::restored::RestoredSpan;
use crate::time::Timestamp;

/// Refusal to start a saved span.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StartError {
    /// Start attributes were given without asking to persist them.
    #[error(
        "saved span {name:?} was given {count} start attribute(s); saved spans keep \
         attributes for the end (end_saved_span) so the store stays small. \
         Set include_attributes to persist them in the span info anyway"
    )]
    AttributesNotPersisted {
        /// The span's name.
        name: String,
        /// How many attributes were given.
        count: usize,
    },
}

/// How to start a saved span.
///
/// ```
/// use durable_spans::{SavedSpanOptions, Timestamp};
/// use opentelemetry::trace::SpanKind;
/// let options = SavedSpanOptions::new()
///     .start_time(Timestamp::from_secs_f64(1700000000.5).unwrap())
///     .kind(SpanKind::Server);
/// ```
#[derive(Debug, Clone, Default)]
pub struct SavedSpanOptions {
    /// Start time; now when `None`.
    pub start_time: Option<Timestamp>,
    /// Parent context; the current context when `None`.
    pub parent: Option<Context>,
    /// Links to other spans.
    pub links: Vec<Link>,
    /// Start attributes; refused unless `include_attributes` is set.
    pub attributes: Vec<KeyValue>,
    /// Persist `attributes` in the span info.
    pub include_attributes: bool,
    /// Span kind, saved in the span info and exported at the end; internal
    /// when `None`.
    pub kind: Option<SpanKind>,
}

impl SavedSpanOptions {
    /// Defaults: now, the current context as parent, no links, no
    /// attributes, internal kind.
    pub fn new() -> Self {
        Self::default()
    }
    /// Sets the start time.
    pub fn start_time(mut self, t: Timestamp) -> Self {
        self.start_time = Some(t);
        self
    }
    /// Sets the parent context explicitly.
    pub fn parent(mut self, cx: Context) -> Self {
        self.parent = Some(cx);
        self
    }
    /// Adds a link.
    pub fn link(mut self, link: Link) -> Self {
        self.links.push(link);
        self
    }
    /// Sets the span kind, for example `SpanKind::Server` for a CI/CD
    /// pipeline run. Spans of another kind than internal save it in their
    /// info (Zuul ignores the key).
    pub fn kind(mut self, kind: SpanKind) -> Self {
        self.kind = Some(kind);
        self
    }
    /// Sets start attributes and asks for them to be persisted.
    pub fn persisted_attributes(mut self, attributes: Vec<KeyValue>) -> Self {
        self.attributes = attributes;
        self.include_attributes = true;
        self
    }
}

/// How to start an ordinary child span in a span context.
#[derive(Debug, Clone, Default)]
pub struct ChildOptions {
    /// Start time; now when `None`.
    pub start_time: Option<Timestamp>,
    /// Start attributes.
    pub attributes: Vec<KeyValue>,
    /// Links.
    pub links: Vec<Link>,
    /// Span kind; internal when `None`.
    pub kind: Option<SpanKind>,
}

struct Inner {
    provider: SdkTracerProvider,
    resource: Resource,
    tracer: SdkTracer,
    pipeline: Arc<Pipeline>,
    sampler: Box<dyn ShouldSample>,
    id_generator: Arc<dyn IdGenerator>,
}

/// Starts, restores and ends saved spans, and owns the tracer provider they
/// are exported through.
///
/// Build it with [`DurableTracer::builder`] in place of
/// `SdkTracerProvider::builder()`: it builds the provider (available from
/// [`DurableTracer::provider`] for ordinary spans, the `tracing` bridge, or
/// installing as the global provider) and keeps a handle on its processors,
/// so restored spans go through the same exporter, resource and scope.
/// Cloning is cheap.
///
/// ```
/// use durable_spans::{DurableTracer, EndOptions, SavedSpanOptions};
/// use opentelemetry_sdk::trace::InMemorySpanExporter;
///
/// let exporter = InMemorySpanExporter::default();
/// let tracer = DurableTracer::builder("zuul")
///     .service_name("zuul")
///     .with_simple_exporter(exporter.clone())
///     .build();
///
/// // Process A starts the span and keeps only its JSON.
/// let saved = tracer.start_saved_span("QueueItem", SavedSpanOptions::new()).unwrap().to_json();
///
/// // Process B, later, ends it with attributes.
/// let info = durable_spans::SpanInfo::from_json(&saved).unwrap();
/// let end = EndOptions::new().attributes(vec![opentelemetry::KeyValue::new("result", "SUCCESS")]);
/// tracer.end_saved_span(info.as_ref(), end);
///
/// let spans = exporter.get_finished_spans().unwrap();
/// assert_eq!(spans.len(), 1);
/// assert_eq!(spans[0].name, "QueueItem");
/// ```
#[derive(Clone)]
pub struct DurableTracer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for DurableTracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DurableTracer")
            .field("scope", &self.inner.pipeline.scope.name())
            .finish()
    }
}

/// Builds a [`DurableTracer`] and its provider.
pub struct DurableTracerBuilder {
    scope: Cow<'static, str>,
    service_name: Option<String>,
    resource: Option<Resource>,
    processors: Vec<Box<dyn SpanProcessor>>,
    sampler: Option<Box<dyn ShouldSample>>,
    id_generator: Option<Arc<dyn IdGenerator>>,
    limits: SpanLimits,
}

impl DurableTracerBuilder {
    /// The resource is exactly `{"service.name": NAME}` (as Zuul's), unless
    /// [`with_resource`](Self::with_resource) is given. Default `dspans`.
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = Some(name.into());
        self
    }

    /// Uses this resource instead of the service-name-only one.
    pub fn with_resource(mut self, resource: Resource) -> Self {
        self.resource = Some(resource);
        self
    }

    /// Exports each span as it ends (tests, command-line tools).
    pub fn with_simple_exporter<E: SpanExporter + 'static>(self, exporter: E) -> Self {
        self.with_span_processor(opentelemetry_sdk::trace::SimpleSpanProcessor::new(exporter))
    }

    /// Exports in batches from a background thread (services).
    pub fn with_batch_exporter<E: SpanExporter + 'static>(self, exporter: E) -> Self {
        self.with_span_processor(
            opentelemetry_sdk::trace::BatchSpanProcessor::builder(exporter).build(),
        )
    }

    /// Adds a span processor; order is kept.
    pub fn with_span_processor<P: SpanProcessor + 'static>(mut self, processor: P) -> Self {
        self.processors.push(Box::new(processor));
        self
    }

    /// The sampler for new root and child spans. Restored spans are never
    /// sampled again.
    ///
    /// The default is `ParentBasedSampler::new(Sampler::AlwaysOn)`, which
    /// treats an invalid parent as no parent, so children of a span restored
    /// from missing data start new, sampled traces (as in Zuul). The older
    /// `Sampler::ParentBased` drops such children instead.
    pub fn with_sampler(mut self, sampler: impl Into<Box<dyn ShouldSample>>) -> Self {
        self.sampler = Some(sampler.into());
        self
    }

    /// The id generator (default: random).
    pub fn with_id_generator<G: IdGenerator + 'static>(mut self, generator: G) -> Self {
        self.id_generator = Some(Arc::new(generator));
        self
    }

    /// Limits on attributes, events and links per span.
    pub fn with_span_limits(mut self, limits: SpanLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Builds the provider and the durable tracer around it.
    pub fn build(self) -> DurableTracer {
        let resource = self.resource.unwrap_or_else(|| {
            Resource::builder_empty()
                .with_service_name(self.service_name.unwrap_or_else(|| "dspans".to_string()))
                .build()
        });
        let sampler = self
            .sampler
            .unwrap_or_else(|| Box::new(ParentBasedSampler::new(Sampler::AlwaysOn)));
        let id_generator = self
            .id_generator
            .unwrap_or_else(|| Arc::new(RandomIdGenerator::default()));
        let processors: Vec<SharedProcessor> = self
            .processors
            .into_iter()
            .map(|mut p| {
                p.set_resource(&resource);
                SharedProcessor(Arc::from(p))
            })
            .collect();
        let mut builder = SdkTracerProvider::builder()
            .with_resource(resource.clone())
            .with_sampler(sampler.box_clone())
            .with_id_generator(SharedIdGenerator(id_generator.clone()))
            .with_span_limits(self.limits);
        for p in &processors {
            builder = builder.with_span_processor(p.clone());
        }
        let provider = builder.build();
        let scope = InstrumentationScope::builder(self.scope).build();
        let tracer = provider.tracer_with_scope(scope.clone());
        DurableTracer {
            inner: Arc::new(Inner {
                provider,
                resource,
                tracer,
                pipeline: Arc::new(Pipeline {
                    processors,
                    scope,
                    limits: self.limits,
                }),
                sampler,
                id_generator,
            }),
        }
    }
}

impl DurableTracer {
    /// Starts building; `scope` names the instrumentation scope (Zuul: `zuul`).
    pub fn builder(scope: impl Into<Cow<'static, str>>) -> DurableTracerBuilder {
        DurableTracerBuilder {
            scope: scope.into(),
            service_name: None,
            resource: None,
            processors: Vec::new(),
            sampler: None,
            id_generator: None,
            limits: SpanLimits::default(),
        }
    }

    /// The provider, for ordinary spans and for `tracing-opentelemetry`.
    pub fn provider(&self) -> &SdkTracerProvider {
        &self.inner.provider
    }

    /// The SDK tracer of this scope.
    pub fn tracer(&self) -> &SdkTracer {
        &self.inner.tracer
    }

    /// The resource spans are exported with.
    pub fn resource(&self) -> &Resource {
        &self.inner.resource
    }

    /// The instrumentation scope spans are exported under.
    pub fn scope(&self) -> &InstrumentationScope {
        &self.inner.pipeline.scope
    }

    /// Starts a span that is saved, not kept: returns its info, exports
    /// nothing. The parent is `options.parent` or the current context's span.
    ///
    /// Start attributes are refused unless `include_attributes` is set, and
    /// nothing has been started when that error is returned.
    pub fn start_saved_span(
        &self,
        name: impl Into<String>,
        options: SavedSpanOptions,
    ) -> Result<SpanInfo, StartError> {
        let name = name.into();
        if !options.attributes.is_empty() && !options.include_attributes {
            return Err(StartError::AttributesNotPersisted {
                count: options.attributes.len(),
                name,
            });
        }
        let cx = options.parent.unwrap_or_else(Context::current);
        let parent = cx.span().span_context().clone();
        let parent = parent.is_valid().then_some(parent);
        let trace_id = match &parent {
            Some(p) => p.trace_id(),
            None => self.inner.id_generator.new_trace_id(),
        };
        let span_id = self.inner.id_generator.new_span_id();
        let kind = options.kind.unwrap_or(SpanKind::Internal);
        let decision = self.inner.sampler.should_sample(
            Some(&cx),
            trace_id,
            &name,
            &kind,
            &options.attributes,
            &options.links,
        );
        let base_flags = parent.as_ref().map(|p| p.trace_flags()).unwrap_or_default();
        let flags = base_flags.with_sampled(decision.decision == SamplingDecision::RecordAndSample);
        let links = options
            .links
            .into_iter()
            .filter(|l| l.span_context.is_valid() || !l.attributes.is_empty())
            .map(link_info)
            .collect();
        Ok(SpanInfo {
            name,
            trace_id: u128_of(trace_id),
            span_id: u64_of(span_id),
            trace_flags: flags.to_u8(),
            start_time: options.start_time.unwrap_or_else(Timestamp::now),
            parent: parent.as_ref().map(parent_info),
            links,
            attributes: if options.include_attributes {
                options.attributes
            } else {
                Vec::new()
            },
            kind: kind_of(&kind),
        })
    }

    /// Restores a saved span as Zuul's `restoreSpan` does: its own context
    /// is marked remote, so children record a remote parent.
    ///
    /// `None` (or invalid data) gives a non-recording span with the invalid
    /// context: ending it does nothing, children become new root traces, and
    /// one warning is logged. Dropping a restored span does not end it.
    pub fn restore(&self, info: Option<&SpanInfo>) -> RestoredSpan {
        self.restore_with(info, true)
    }

    /// [`restore`](Self::restore) with the span's own `is_remote` chosen.
    pub fn restore_with(&self, info: Option<&SpanInfo>, is_remote: bool) -> RestoredSpan {
        match info {
            Some(info) => {
                RestoredSpan::restore(&self.inner.pipeline, Cow::Borrowed(info), is_remote)
            }
            None => {
                tracing::warn!("no saved span data; using a non-recording span");
                RestoredSpan::invalid()
            }
        }
    }

    /// Decodes JSON span data and restores it; bad data gives the invalid
    /// span with one warning, never an error.
    pub fn restore_json(&self, text: &str) -> RestoredSpan {
        match SpanInfo::from_json(text) {
            Ok(info) => self.restore(info.as_ref()),
            Err(error) => {
                tracing::warn!(%error, "unreadable saved span data; using a non-recording span");
                RestoredSpan::invalid()
            }
        }
    }

    /// Restores the span and ends it, exporting it once. End attributes
    /// override persisted start attributes. `None` does nothing.
    ///
    /// Like Zuul's `endSavedSpan`, calling it twice exports twice; the
    /// durable store path guarantees a single end.
    pub fn end_saved_span(&self, info: Option<&SpanInfo>, options: EndOptions) {
        match info {
            Some(info) => self.end_info(Cow::Borrowed(info), options),
            None => tracing::warn!("no saved span data; nothing to end"),
        }
    }

    /// Builds the span's data and ends it: nothing can happen to the span
    /// between the two, so no [`RestoredSpan`] is made.
    fn end_info(&self, info: Cow<'_, SpanInfo>, options: EndOptions) {
        let pipeline = &self.inner.pipeline;
        let Some(mut data) = span_data_of_info(info, false, &pipeline.scope, &pipeline.limits)
        else {
            return;
        };
        end_span(&mut data, options, &pipeline.limits);
        pipeline.export(data);
    }

    /// Decodes saved span JSON and ends the span, as
    /// [`end_saved_span`](Self::end_saved_span) does; the decoded value is
    /// moved, not copied. Unreadable data logs one warning and ends nothing.
    ///
    /// ```
    /// use durable_spans::{DurableTracer, EndOptions};
    /// let tracer = DurableTracer::builder("zuul").build();
    /// let saved = tracer.start_saved_span("Build", Default::default()).unwrap().to_json();
    /// tracer.end_saved_json(&saved, EndOptions::new());
    /// tracer.end_saved_json("null", EndOptions::new()); // nothing to end
    /// ```
    pub fn end_saved_json(&self, text: &str, options: EndOptions) {
        match SpanInfo::from_json(text) {
            Ok(Some(info)) => self.end_info(Cow::Owned(info), options),
            Ok(None) => tracing::warn!("saved span data is null; nothing to end"),
            Err(error) => tracing::warn!(%error, "unreadable saved span data; nothing to end"),
        }
    }

    /// Ends a saved span without exporting it: the returned data can be kept
    /// (an outbox) and handed to [`export`](Self::export) later, by any
    /// process. `None` and invalid data give `None`.
    ///
    /// ```
    /// use durable_spans::{DurableTracer, EndOptions, StatusData};
    /// use opentelemetry::trace::Status;
    /// use opentelemetry::KeyValue;
    ///
    /// let tracer = DurableTracer::builder("zuul").build();
    /// let info = tracer.start_saved_span("QueueItem", Default::default()).unwrap();
    /// let end = EndOptions::new()
    ///     .status(Status::error("owner zuul-01 is gone"))
    ///     .attributes(vec![KeyValue::new("dspans.orphaned", true)]);
    /// let finished = tracer.finish_saved_span(Some(&info), end).unwrap();
    /// assert_eq!(finished.status, StatusData::Error { description: "owner zuul-01 is gone".into() });
    /// assert!(finished.end_time >= info.start_time);
    /// ```
    pub fn finish_saved_span(
        &self,
        info: Option<&SpanInfo>,
        options: EndOptions,
    ) -> Option<FinishedSpan> {
        let Some(info) = info else {
            tracing::warn!("no saved span data; nothing to end");
            return None;
        };
        let pipeline = &self.inner.pipeline;
        let info = Cow::Borrowed(info);
        let mut data = span_data_of_info(info, false, &pipeline.scope, &pipeline.limits)?;
        end_span(&mut data, options, &pipeline.limits);
        Some(finished_of_data(data))
    }

    /// Exports finished span data through the provider's processors. Spans
    /// without the sampled flag are dropped, as the SDKs' processors drop
    /// them.
    pub fn export(&self, span: FinishedSpan) {
        let pipeline = &self.inner.pipeline;
        pipeline.export(span.into_span_data(&pipeline.scope));
    }

    /// Starts an ordinary child span in a saved context, without making it
    /// current (Zuul's `startSpanInContext`). `None` or an invalid context
    /// gives a new root trace.
    pub fn start_span_in_context(
        &self,
        context: Option<&SpanContext>,
        name: impl Into<Cow<'static, str>>,
        options: ChildOptions,
    ) -> opentelemetry_sdk::trace::Span {
        let cx = parent_context(context);
        let mut builder = SpanBuilder::from_name(name)
            .with_kind(options.kind.unwrap_or(SpanKind::Internal))
            .with_attributes(options.attributes)
            .with_links(options.links);
        if let Some(t) = options.start_time {
            builder = builder.with_start_time(t.to_system_time());
        }
        self.inner.tracer.build_with_context(builder, &cx)
    }

    /// Runs `work` inside a child span of `context`, ending the span after
    /// it. An `Err` is recorded on the span as an error status.
    pub fn in_span_in_context<T, E: std::fmt::Display>(
        &self,
        context: Option<&SpanContext>,
        name: impl Into<Cow<'static, str>>,
        work: impl FnOnce(&Context) -> Result<T, E>,
    ) -> Result<T, E> {
        let span = self.start_span_in_context(context, name, ChildOptions::default());
        let cx = parent_context(None).with_span(span);
        let result = work(&cx);
        if let Err(error) = &result {
            cx.span()
                .set_status(opentelemetry::trace::Status::error(error.to_string()));
        }
        cx.span().end();
        result
    }

    /// Flushes every processor.
    pub fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        self.inner.provider.force_flush()
    }

    /// Flushes and shuts the provider down.
    pub fn shutdown(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        self.inner.provider.shutdown()
    }
}

/// The span context of a span (Zuul's `getSpanContext`); an invalid span
/// gives zeros.
pub fn span_context_of(span: &impl opentelemetry::trace::Span) -> SpanContext {
    SpanContext::from_otel(span.span_context())
}

/// A context whose span is the given remote span context, for starting
/// children (Zuul's `restoreSpanContext`). `None` or an invalid context
/// gives a context with no span, so children start new traces.
pub fn parent_context(context: Option<&SpanContext>) -> Context {
    match context {
        Some(ctx) if ctx.is_valid() => Context::new().with_remote_span_context(ctx.to_otel(true)),
        Some(_) => {
            tracing::warn!("span context has zero ids; children start new traces");
            Context::new()
        }
        None => Context::new(),
    }
}
