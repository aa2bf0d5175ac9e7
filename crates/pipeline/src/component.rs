//! A component process (scheduler, executor or merger) assembled and shut
//! down in one place, [`Component`]: its store session, its tracer, its
//! span ledger with the outbox sender that ledger hands ended spans to,
//! and, for schedulers, the orphan sweep. `dspans scheduler|executor|merger`
//! and `dspans bench pipeline` both run components through it.
//!
//! ```no_run
//! # async fn demo(config: dspans_pipeline::Config) -> Result<(), dspans_pipeline::component::ComponentError> {
//! use dspans_pipeline::component::{termination, Component, Kind};
//!
//! let terminated = termination()?; // SIGTERM or Ctrl-C from now on
//! let component = Component::open(Kind::Executor, config, Kind::Executor.default_name()).await?;
//! component.run(terminated).await?; // Err when the store session ended
//! # Ok(()) }
//! ```

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use dspans_ledger::{Ledger, OutboxSender, SenderOptions};
use dspans_otlp::{build_exporter, ExportSetupError, RetryingExporter};
use dspans_store::{Backend, Store, StoreError};
use durable_spans::DurableTracer;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor, Sampler};
use tokio::sync::watch;

use crate::executor::Executor;
use crate::merger::Merger;
use crate::scheduler::Scheduler;
use crate::{Config, Layout};

/// How long ordinary spans are retried while the collector is away.
const ORDINARY_SPANS_RETRY: Duration = Duration::from_secs(300);

/// How often schedulers look for open spans whose owner is gone.
pub const ORPHAN_SWEEP_INTERVAL: Duration = Duration::from_secs(5);

/// How long a stopping component gives its tracer to send the ordinary
/// spans it holds: bounded, so SIGTERM stays within its 10 s even with the
/// collector away.
const TRACER_SHUTDOWN: Duration = Duration::from_secs(2);

/// Which component.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// [`Scheduler`]: processes pipelines, ends the saved spans.
    Scheduler,
    /// [`Executor`]: runs builds.
    Executor,
    /// [`Merger`]: merges changes.
    Merger,
}

impl Kind {
    /// `scheduler`, `executor` or `merger`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Scheduler => "scheduler",
            Kind::Executor => "executor",
            Kind::Merger => "merger",
        }
    }

    /// The name of an instance not given one: `KIND-HOSTNAME-PID`.
    pub fn default_name(self) -> String {
        format!(
            "{}-{}-{}",
            self.as_str(),
            crate::process::hostname(),
            std::process::id()
        )
    }
}

/// Why a component could not be set up, or stopped on its own.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ComponentError {
    /// The span exporter of `[tracing]` could not be set up.
    #[error("{kind}: cannot set up span export")]
    Export {
        /// The component's kind.
        kind: &'static str,
        /// Why.
        #[source]
        source: ExportSetupError,
    },
    /// The store of `[store]` could not be opened.
    #[error("cannot open the {backend:?} store")]
    Store {
        /// Its backend.
        backend: Backend,
        /// Why.
        #[source]
        source: StoreError,
    },
    /// SIGTERM cannot be listened for.
    #[error("cannot listen for SIGTERM")]
    Signal(#[source] std::io::Error),
    /// The store became unusable (a corrupt SQLite file, or one replaced or
    /// removed while open): the component stopped, and restarting it will
    /// not help until the store is repaired or restored.
    #[error("{kind} {name}: the store can no longer be used; stopping")]
    StoreFailed {
        /// The component's kind.
        kind: &'static str,
        /// Its name.
        name: String,
        /// What happened to the store.
        #[source]
        source: StoreError,
    },
    /// The component's store session ended: its locks and claims went with
    /// it, so it stopped; restarted under the same name it takes over at
    /// once.
    #[error("{kind} {name}: the store session ended; stopping so it can be restarted")]
    SessionEnded {
        /// The component's kind.
        kind: &'static str,
        /// Its name.
        name: String,
    },
}

/// The resource of a component's spans: `service.instance.id` names the
/// process, so with the `dspans.started_by` attribute a trace shows the
/// spans that one process started and another ended (or exported).
fn resource(config: &Config, instance: &str) -> opentelemetry_sdk::Resource {
    opentelemetry_sdk::Resource::builder_empty()
        .with_service_name(config.tracing.service_name().to_string())
        .with_attribute(opentelemetry::KeyValue::new(
            "service.instance.id",
            instance.to_string(),
        ))
        .build()
}

/// A component's tracer (`instance` names the process). Ordinary spans
/// (job runs, event processing) are exported in batches; saved spans go
/// through the span ledger's outbox instead. New traces are sampled as
/// `[tracing] sampler` says (children follow the decision saved with their
/// trace); with tracing disabled nothing is sampled, so nothing is tracked
/// or exported.
pub fn tracer(
    config: &Config,
    kind: Kind,
    instance: &str,
) -> Result<DurableTracer, ComponentError> {
    let builder = DurableTracer::builder("dspans").with_resource(resource(config, instance));
    if !config.tracing.enabled {
        let off = Sampler::ParentBased(Box::new(Sampler::AlwaysOff));
        return Ok(builder.with_sampler(off).build());
    }
    let exporter = span_exporter(config, kind)?;
    // A collector away for up to a few minutes loses none of these either:
    // the batch waits (and new spans queue, up to 8,192) until it is back.
    let exporter = RetryingExporter::new(exporter, ORDINARY_SPANS_RETRY);
    // Sent within half a second, so a trace fills in while one watches.
    let batch = BatchConfigBuilder::default()
        .with_scheduled_delay(Duration::from_millis(500))
        .with_max_queue_size(8_192)
        .build();
    let processor = BatchSpanProcessor::builder(exporter)
        .with_batch_config(batch)
        .build();
    Ok(builder
        .with_sampler(config.tracing.sampler())
        .with_span_processor(processor)
        .build())
}

fn span_exporter(config: &Config, kind: Kind) -> Result<dspans_otlp::Exporter, ComponentError> {
    build_exporter(&config.tracing).map_err(|source| ComponentError::Export {
        kind: kind.as_str(),
        source,
    })
}

/// Opens a session on the store of `[store]`.
pub async fn open_store(config: &Config) -> Result<Arc<dyn Store>, ComponentError> {
    dspans_store::open(&config.store)
        .await
        .map_err(|source| ComponentError::Store {
            backend: config.store.backend,
            source,
        })
}

/// Starts listening for SIGTERM (and Ctrl-C) at once, so that from now on
/// the signal asks for a clean stop instead of killing the process; the
/// returned future resolves when one arrives.
pub fn termination() -> Result<impl Future<Output = ()>, ComponentError> {
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(ComponentError::Signal)?;
    Ok(async move {
        #[cfg(unix)]
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM received; stopping"),
            _ = tokio::signal::ctrl_c() => tracing::info!("interrupted; stopping"),
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    })
}

/// One component, assembled: everything it runs with, ready to
/// [`run`](Self::run).
pub struct Component {
    kind: Kind,
    name: String,
    config: Arc<Config>,
    layout: Layout,
    store: Arc<dyn Store>,
    tracer: DurableTracer,
    /// The span ledger; with tracing enabled, it hands the spans it ends
    /// to `sender`.
    ledger: Ledger,
    sender: Option<OutboxSender>,
}

impl std::fmt::Debug for Component {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Component")
            .field("kind", &self.kind)
            .field("name", &self.name)
            .field("layout", &self.layout)
            .field("ledger", &self.ledger)
            .finish()
    }
}

impl Component {
    /// A component as `dspans scheduler|executor|merger` runs it: its
    /// tracer from `[tracing]`, then a session on the store of `[store]`,
    /// on the default [`Layout`].
    pub async fn open(
        kind: Kind,
        config: Config,
        name: impl Into<String>,
    ) -> Result<Component, ComponentError> {
        let name = name.into();
        let tracer = tracer(&config, kind, &name)?;
        let store = open_store(&config).await?;
        Component::with_parts(kind, config, name, store, Layout::default(), tracer)
    }

    /// A component on a store session the caller opened (the benchmark
    /// counts its round trips) and under `layout`.
    pub fn assemble(
        kind: Kind,
        config: Config,
        name: impl Into<String>,
        store: Arc<dyn Store>,
        layout: Layout,
    ) -> Result<Component, ComponentError> {
        let name = name.into();
        let tracer = tracer(&config, kind, &name)?;
        Component::with_parts(kind, config, name, store, layout, tracer)
    }

    /// The span ledger and, with tracing enabled, the outbox sender it
    /// hands ended spans to.
    fn with_parts(
        kind: Kind,
        config: Config,
        name: String,
        store: Arc<dyn Store>,
        layout: Layout,
        tracer: DurableTracer,
    ) -> Result<Component, ComponentError> {
        let mut ledger = Ledger::new(store.clone(), layout.spans());
        let mut sender = None;
        if config.tracing.enabled {
            let exporter = span_exporter(&config, kind)?;
            let options = SenderOptions::default();
            let outbox = OutboxSender::new(
                store.clone(),
                layout.spans(),
                exporter,
                &tracer,
                name.clone(),
                options,
            );
            ledger = ledger.with_handoff(outbox.handoff());
            sender = Some(outbox);
        }
        Ok(Component {
            kind,
            name,
            config: Arc::new(config),
            layout,
            store,
            tracer,
            ledger,
            sender,
        })
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its kind.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Runs the component until `stop` resolves or its store session ends,
    /// then shuts it down: the outbox sender sends the spans of the last
    /// transactions (or leaves them in the outbox for the other
    /// components), the tracer gets 2 s to send its ordinary spans, and the
    /// store session closes. [`ComponentError::SessionEnded`] when the
    /// session ended, [`ComponentError::StoreFailed`] when the store
    /// became unusable.
    pub async fn run(self, stop: impl Future<Output = ()>) -> Result<(), ComponentError> {
        let expired = Arc::new(AtomicBool::new(false));
        let stop = stop_or_session_end(stop, self.store.as_ref(), expired.clone());
        let (stop_helpers, helpers_stopped) = watch::channel(false);
        let sweeping = self.spawn_orphan_sweep(helpers_stopped.clone());
        let sending = self
            .sender
            .map(|sender| tokio::spawn(sender.run(stopped(helpers_stopped))));
        let (config, store, tracer) = (self.config, self.store.clone(), self.tracer.clone());
        let layout = self.layout;
        match self.kind {
            Kind::Scheduler => {
                Scheduler::new(config, store, tracer, self.name.clone())
                    .with_layout(layout)
                    .with_ledger(self.ledger)
                    .run(stop)
                    .await
            }
            Kind::Executor => {
                let executor = Executor::new(config, store, tracer, self.name.clone());
                executor.with_layout(layout).run(stop).await
            }
            Kind::Merger => {
                let merger = Merger::new(config, store, tracer, self.name.clone());
                merger.with_layout(layout).run(stop).await
            }
        }
        let _ = stop_helpers.send(true);
        for task in sweeping.into_iter().chain(sending) {
            let _ = task.await;
        }
        let _ = self
            .tracer
            .provider()
            .shutdown_with_timeout(TRACER_SHUTDOWN);
        let _ = self.store.close().await;
        if let Some(source) = self.store.failure() {
            return Err(ComponentError::StoreFailed {
                kind: self.kind.as_str(),
                name: self.name,
                source,
            });
        }
        if expired.load(Ordering::SeqCst) {
            return Err(ComponentError::SessionEnded {
                kind: self.kind.as_str(),
                name: self.name,
            });
        }
        Ok(())
    }

    /// A scheduler that exports spans also ends the orphaned ones, every
    /// [`ORPHAN_SWEEP_INTERVAL`] until `stop`.
    fn spawn_orphan_sweep(
        &self,
        stop: watch::Receiver<bool>,
    ) -> Option<tokio::task::JoinHandle<()>> {
        if self.kind != Kind::Scheduler || self.sender.is_none() {
            return None;
        }
        let (ledger, tracer) = (self.ledger.clone(), self.tracer.clone());
        Some(tokio::spawn(async move {
            ledger
                .sweep_orphans_every(&tracer, ORPHAN_SWEEP_INTERVAL, stopped(stop))
                .await
        }))
    }
}

/// Resolves once `stop` does or the store session ends for good (then
/// `expired` is set).
fn stop_or_session_end(
    stop: impl Future<Output = ()>,
    store: &dyn Store,
    expired: Arc<AtomicBool>,
) -> impl Future<Output = ()> {
    let mut session = store.session();
    async move {
        tokio::select! {
            _ = stop => {}
            _ = session.wait_for(|state| state.is_terminal()) => {
                expired.store(true, Ordering::SeqCst);
            }
        }
    }
}

/// Resolves once `stop` holds true.
async fn stopped(mut stop: watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}
