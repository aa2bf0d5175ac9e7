//! The reference pipeline's commands: the three long-running components,
//! `enqueue` and `status`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Args;
use dspans_ledger::{ExporterOptions, Ledger, OutboxExporter};
use dspans_otlp::build_exporter;
use dspans_pipeline::executor::Executor;
use dspans_pipeline::merger::Merger;
use dspans_pipeline::model::{BuildSet, ChangeQueue, ChangeRef, QueueItem, StoredObject};
use dspans_pipeline::scheduler::{enqueue, Scheduler};
use dspans_pipeline::{Config, Layout};
use dspans_store::recipes::EventQueue;
use dspans_store::Store;
use durable_spans::DurableTracer;
use opentelemetry_sdk::trace::{BatchConfigBuilder, BatchSpanProcessor};

/// `--config` and `--name` of a component.
#[derive(Args, Debug)]
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

/// `dspans status`.
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The pipeline config file.
    #[arg(long, value_name = "FILE", env = "DSPANS_CONFIG")]
    pub config: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Wait until no event is pending and no item is queued; exit 1 if that
    /// has not happened within SECONDS.
    #[arg(long, value_name = "SECONDS")]
    pub wait_idle: Option<f64>,
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

fn load(path: &Path) -> anyhow::Result<Config> {
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
    // Sent within half a second, so a trace fills in while one watches.
    let batch = BatchConfigBuilder::default()
        .with_scheduled_delay(Duration::from_millis(500))
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

/// How often schedulers look for open spans whose owner is gone.
const ORPHAN_SWEEP_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

async fn open_store(config: &Config) -> anyhow::Result<Arc<dyn Store>> {
    dspans_store::open(&config.store)
        .await
        .with_context(|| format!("cannot open the {:?} store", config.store.backend))
}

/// Resolves on SIGTERM or Ctrl-C.
async fn termination() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
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
    let tracer = tracer(&config, kind, &name)?;
    let store = open_store(&config).await?;
    eprintln!("dspans {} {name} running (SIGTERM to stop)", kind.as_str());
    let expired = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop = {
        let mut session = store.session();
        let expired = expired.clone();
        async move {
            tokio::select! {
                _ = termination() => {}
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
    let _ = tracer.shutdown();
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
    let _ = tracer.force_flush();
    let _ = store.close().await;
    println!("{id}");
    Ok(())
}

/// What is queued and pending, per pipeline.
#[derive(Debug, serde::Serialize)]
pub(crate) struct Status {
    pub trigger_events: usize,
    pub pipelines: Vec<PipelineStatus>,
}

#[derive(Debug, serde::Serialize)]
pub(crate) struct PipelineStatus {
    pub name: String,
    pub result_events: usize,
    pub reports: usize,
    pub items: Vec<ItemStatus>,
}

#[derive(Debug, serde::Serialize)]
pub(crate) struct ItemStatus {
    uuid: String,
    queue: String,
    change: String,
    state: String,
    buildset: String,
    pub buildset_state: String,
    merge: Option<String>,
    resets: u32,
}

impl Status {
    pub(crate) fn idle(&self) -> bool {
        self.trigger_events == 0
            && self
                .pipelines
                .iter()
                .all(|p| p.result_events == 0 && p.items.is_empty())
    }
}

async fn count_children(store: &Arc<dyn Store>, path: &str) -> anyhow::Result<usize> {
    match store.children(path).await {
        Ok(children) => Ok(children.len()),
        Err(dspans_store::StoreError::NoNode { .. }) => Ok(0),
        Err(error) => Err(error.into()),
    }
}

pub(crate) async fn read_status(config: &Config, store: &Arc<dyn Store>) -> anyhow::Result<Status> {
    let layout = Layout::default();
    let trigger_events = EventQueue::new(store.clone(), layout.trigger_events())
        .ids()
        .await?
        .len();
    let mut pipelines = Vec::new();
    for pipeline in &config.pipelines {
        let p = pipeline.name.as_str();
        let mut items = Vec::new();
        let queue_names = match store.children(&layout.change_queues(p)).await {
            Ok(names) => names,
            Err(dspans_store::StoreError::NoNode { .. }) => Vec::new(),
            Err(error) => return Err(error.into()),
        };
        for segment in queue_names {
            let Some(node) = store
                .get(&format!("{}/{segment}", layout.change_queues(p)))
                .await?
            else {
                continue;
            };
            let queue = ChangeQueue::from_json(&node.data)?;
            for uuid in &queue.items {
                let Some(node) = store.get(&layout.item(p, uuid)).await? else {
                    continue;
                };
                let item = QueueItem::from_json(&node.data)?;
                let buildset = match store
                    .get(&layout.buildset(p, uuid, &item.current_buildset))
                    .await?
                {
                    Some(node) => Some(BuildSet::from_json(&node.data)?),
                    None => None,
                };
                items.push(ItemStatus {
                    uuid: uuid.clone(),
                    queue: queue.name.clone(),
                    change: item.change.short(),
                    state: format!("{:?}", item.state).to_lowercase(),
                    buildset: item.current_buildset.clone(),
                    buildset_state: buildset.as_ref().map_or("missing".into(), |b| {
                        format!("{:?}", b.state).to_lowercase()
                    }),
                    merge: buildset
                        .and_then(|b| b.merge_result)
                        .map(|m| m.as_str().to_string()),
                    resets: item.resets,
                });
            }
        }
        pipelines.push(PipelineStatus {
            name: p.to_string(),
            result_events: count_children(store, &layout.result_events(p)).await?,
            reports: count_children(store, &layout.reports(p)).await?,
            items,
        });
    }
    Ok(Status {
        trigger_events,
        pipelines,
    })
}

fn print_status(status: &Status, json: bool) {
    if json {
        println!("{}", serde_json::to_string(status).unwrap_or_default());
        return;
    }
    println!("trigger events pending: {}", status.trigger_events);
    for p in &status.pipelines {
        println!(
            "pipeline {}: {} item(s) queued, {} result event(s) pending, {} reported",
            p.name,
            p.items.len(),
            p.result_events,
            p.reports
        );
        for item in &p.items {
            println!(
                "  [{}] {} {} buildset {} {}{}{}",
                item.queue,
                item.change,
                item.state,
                &item.buildset[..8.min(item.buildset.len())],
                item.buildset_state,
                item.merge
                    .as_ref()
                    .map(|m| format!(" merge {m}"))
                    .unwrap_or_default(),
                if item.resets > 0 {
                    format!(" resets {}", item.resets)
                } else {
                    String::new()
                },
            );
        }
    }
}

/// Prints the status; with --wait-idle, waits for idleness first.
pub async fn run_status(args: StatusArgs) -> anyhow::Result<()> {
    let config = load(&args.config)?;
    let store = open_store(&config).await?;
    let result = async {
        let Some(seconds) = args.wait_idle else {
            print_status(&read_status(&config, &store).await?, args.json);
            return Ok(());
        };
        let deadline = Instant::now() + Duration::from_secs_f64(seconds.max(0.0));
        let mut last_progress = Instant::now();
        loop {
            let status = read_status(&config, &store).await?;
            if status.idle() {
                print_status(&status, args.json);
                return Ok(());
            }
            if Instant::now() >= deadline {
                print_status(&status, args.json);
                bail!("not idle after {seconds} s");
            }
            if !args.json && last_progress.elapsed() >= Duration::from_secs(2) {
                let queued: usize = status.pipelines.iter().map(|p| p.items.len()).sum();
                let reported: usize = status.pipelines.iter().map(|p| p.reports).sum();
                eprintln!(
                    "waiting: {queued} item(s) queued, {reported} reported, {} event(s) pending",
                    status.trigger_events
                );
                last_progress = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    .await;
    let _ = store.close().await;
    result
}
