//! The reference pipeline's commands: the three long-running components
//! and `enqueue` (`status` is in `status_cmd`).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context as _};
use clap::Args;
use dspans_ledger::{ExporterOptions, Ledger, OutboxExporter};
use dspans_otlp::{build_exporter, RetryingExporter};
use dspans_pipeline::executor::Executor;
use dspans_pipeline::merger::Merger;
use dspans_pipeline::model::ChangeRef;
use dspans_pipeline::scheduler::{enqueue, Scheduler};
use dspans_pipeline::{Config, Layout};
use dspans_store::Store;
use durable_spans::DurableTracer;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor};

/// What SIGTERM does to each component (their `--help`).
const SHUTDOWN_HELP: &str = "\
SIGTERM (or Ctrl-C) stops the component cleanly, with exit status 0.
A scheduler finishes the step in progress (each is written to the store
before the next), releases its pipeline locks so that another scheduler
takes over at once, without waiting for a session timeout, and exits.
An executor or merger claims nothing new; the request in hand may finish
within a 5 s grace period (its result is written as usual), otherwise its
process group is killed, its spans end with an error status and the
request is handed back to the queue for another instance; then it exits.
A component whose store session ends exits with status 1, so a supervisor
can restart it (under the same --name it takes over at once what its
predecessor held).";

/// `--config` and `--name` of a component.
#[derive(Args, Debug)]
#[command(after_help = SHUTDOWN_HELP)]
pub struct ComponentArgs {
    /// The pipeline config file (TOML: [store], [tracing], pipelines, jobs, projects).
    #[arg(long, value_name = "FILE", env = "DSPANS_CONFIG")]
    pub config: PathBuf,
    /// Name of this instance (default: KIND-HOSTNAME-PID). A restarted
    /// instance given its old name takes over what its dead predecessor held.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
}

/// `dspans enqueue`.
#[derive(Args, Debug)]
pub struct EnqueueArgs {
    /// The pipeline config file.
    #[arg(long, value_name = "FILE", env = "DSPANS_CONFIG")]
    pub config: PathBuf,
    /// Pipeline to enqueue into.
    #[arg(long)]
    pub pipeline: String,
    /// Project of the change.
    #[arg(long)]
    pub project: String,
    /// Change number.
    #[arg(long)]
    pub change: u64,
    /// Patchset.
    #[arg(long, default_value_t = 1)]
    pub patchset: u64,
    /// Target branch (default: the project's branch from the config).
    #[arg(long)]
    pub branch: Option<String>,
}

/// Which component to run.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Scheduler,
    Executor,
    Merger,
}

impl Kind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Scheduler => "scheduler",
            Kind::Executor => "executor",
            Kind::Merger => "merger",
        }
    }
}

pub(crate) fn load(path: &Path) -> anyhow::Result<Config> {
    let mut config = Config::from_file(path)?;
    config
        .tracing
        .apply_process_env()
        .context("invalid OTEL_* environment variable")?;
    Ok(config)
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

/// The component's tracer. Ordinary spans (job runs, event processing) are
/// exported in batches; saved spans go through the span ledger's outbox
/// instead (see [`outbox`]). With tracing disabled nothing is sampled, so
/// nothing is tracked or exported.
pub(crate) fn tracer(config: &Config, kind: Kind, instance: &str) -> anyhow::Result<DurableTracer> {
    let builder = DurableTracer::builder("dspans").with_resource(resource(config, instance));
    if !config.tracing.enabled {
        let off = opentelemetry_sdk::trace::Sampler::ParentBased(Box::new(
            opentelemetry_sdk::trace::Sampler::AlwaysOff,
        ));
        return Ok(builder.with_sampler(off).build());
    }
    let exporter = build_exporter(&config.tracing)
        .with_context(|| format!("{}: cannot set up span export", kind.as_str()))?;
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
    Ok(builder.with_span_processor(processor).build())
}

/// The span ledger of the pipeline's store and, with tracing enabled, this
/// process's exporter for its outbox. Schedulers also end orphaned spans.
pub(crate) fn outbox(
    config: &Config,
    kind: Kind,
    instance: &str,
    store: &Arc<dyn Store>,
    layout: &Layout,
    tracer: &DurableTracer,
) -> anyhow::Result<(Ledger, Option<OutboxExporter>)> {
    let ledger = Ledger::new(store.clone(), layout.spans());
    if !config.tracing.enabled {
        return Ok((ledger, None));
    }
    let exporter = build_exporter(&config.tracing)
        .with_context(|| format!("{}: cannot set up span export", kind.as_str()))?;
    let options = ExporterOptions {
        orphan_interval: matches!(kind, Kind::Scheduler).then_some(ORPHAN_SWEEP_INTERVAL),
        ..ExporterOptions::default()
    };
    let outbox = OutboxExporter::new(&ledger, exporter, tracer, instance, options);
    Ok((ledger, Some(outbox)))
}

/// How long ordinary spans are retried while the collector is away.
const ORDINARY_SPANS_RETRY: Duration = Duration::from_secs(300);

/// How often schedulers look for open spans whose owner is gone.
const ORPHAN_SWEEP_INTERVAL: Duration = Duration::from_secs(5);

pub(crate) async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    dspans_store::open(&config.store)
        .await
        .with_context(|| format!("cannot open the {:?} store", config.store.backend))
}

/// Starts listening for SIGTERM (and Ctrl-C) at once, so that from now on
/// the signal asks for a clean stop instead of killing the process; the
/// returned future resolves when one arrives.
fn termination() -> anyhow::Result<impl Future<Output = ()>> {
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
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

/// Runs a component until SIGTERM.
pub async fn run_component(kind: Kind, args: ComponentArgs) -> anyhow::Result<()> {
    let config = load(&args.config)?;
    let name = args.name.unwrap_or_else(|| {
        format!(
            "{}-{}-{}",
            kind.as_str(),
            dspans_pipeline::process::hostname(),
            std::process::id()
        )
    });
    let terminated = termination()?;
    let tracer = tracer(&config, kind, &name)?;
    let store = open_store(&config).await?;
    eprintln!("dspans {} {name} running (SIGTERM to stop)", kind.as_str());
    let expired = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop = {
        let mut session = store.session();
        let expired = expired.clone();
        async move {
            tokio::select! {
                _ = terminated => {}
                _ = session.wait_for(|state| state.is_terminal()) => {
                    expired.store(true, std::sync::atomic::Ordering::SeqCst);
                }
            }
        }
    };
    let (ledger, outbox) = outbox(&config, kind, &name, &store, &Layout::default(), &tracer)?;
    let (stop_outbox, outbox_stopped) = tokio::sync::watch::channel(false);
    let outbox_task = outbox.map(|outbox| {
        let mut stopped = outbox_stopped.clone();
        tokio::spawn(outbox.run(async move {
            let _ = stopped.wait_for(|s| *s).await;
        }))
    });
    let (config, store2, tracer2, name2) = (config, store.clone(), tracer.clone(), name.clone());
    match kind {
        Kind::Scheduler => {
            Scheduler::new(config, store2, tracer2, name2)
                .with_ledger(ledger)
                .run(stop)
                .await
        }
        Kind::Executor => {
            Executor::new(config, store2, tracer2, name2)
                .run(stop)
                .await
        }
        Kind::Merger => Merger::new(config, store2, tracer2, name2).run(stop).await,
    }
    // Spans ended in the last transactions are sent (or left in the outbox
    // for the other components) before the session closes.
    let _ = stop_outbox.send(true);
    if let Some(task) = outbox_task {
        let _ = task.await;
    }
    // Bounded, so SIGTERM stays within its 10 s even with the collector away.
    let _ = tracer
        .provider()
        .shutdown_with_timeout(Duration::from_secs(2));
    let _ = store.close().await;
    if expired.load(std::sync::atomic::Ordering::SeqCst) {
        // Its locks and claims went with the session; a supervisor that
        // restarts it (same --name) is the clean way back.
        bail!(
            "{} {name}: the store session ended; stopping so it can be restarted",
            kind.as_str()
        );
    }
    Ok(())
}

/// Writes a trigger event and prints its id.
pub async fn run_enqueue(args: EnqueueArgs) -> anyhow::Result<()> {
    let config = load(&args.config)?;
    if config.pipeline(&args.pipeline).is_none() {
        bail!(
            "no pipeline named {:?} in {}",
            args.pipeline,
            args.config.display()
        );
    }
    let Some(project) = config.project(&args.project) else {
        bail!(
            "no project named {:?} in {}",
            args.project,
            args.config.display()
        );
    };
    let branch = args
        .branch
        .clone()
        .unwrap_or_else(|| project.branch.clone());
    let tracer = tracer(&config, Kind::Scheduler, "enqueue")?;
    let store = open_store(&config).await?;
    let change = ChangeRef {
        project: args.project,
        number: args.change,
        patchset: args.patchset,
        branch,
    };
    let id = enqueue(&store, &Layout::default(), &tracer, &args.pipeline, change).await?;
    // Sent now if the collector answers; the event is written either way,
    // so a collector that is away does not hold the command up.
    let _ = tracer
        .provider()
        .shutdown_with_timeout(Duration::from_secs(2));
    let _ = store.close().await;
    println!("{id}");
    Ok(())
}
