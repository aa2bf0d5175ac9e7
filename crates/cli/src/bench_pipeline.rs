//! `dspans bench pipeline`: items per second through a scheduler, an
//! executor and a merger, and the store round trips each item costs, with
//! tracing on (spans sent over OTLP/gRPC to a receiver in this process,
//! saved spans through the span ledger's outbox) or off (`enabled = false`:
//! nothing sampled, tracked or exported).
//!
//! Round trips include the components' polling, which grows with elapsed
//! time; writes (create, set, delete, multi) are what an item itself costs.
//! Span data and ledger entries ride in those writes; the outbox sender's
//! deletions (one multi-operation per export) and sweeps are the round
//! trips tracing adds.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::{Args, ValueEnum};
use dspans_otlp::receiver::{MemorySink, Receiver, TraceSink};
use dspans_otlp::{ExportOptions, Protocol};
use dspans_pipeline::component::{tracer, Component, Kind};
use dspans_pipeline::model::ChangeRef;
use dspans_pipeline::scheduler::enqueue;
use dspans_pipeline::{Config, Layout};
use dspans_store::{CountingStore, Store, StoreConfig};

/// Store backend to measure.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum BackendArg {
    /// SQLite, in a scratch file.
    Sqlite,
    /// ZooKeeper at `--hosts` (bench pipeline) or `--zk` (bench crashes).
    Zookeeper,
}

/// Tracing switch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnOff {
    On,
    Off,
    /// Alternate runs with tracing off and on (`--pairs` of each) and
    /// print their ratio.
    Both,
}

/// Options of `dspans bench pipeline`.
#[derive(Args, Debug)]
pub struct BenchPipelineArgs {
    /// Store backend.
    #[arg(long, value_enum, default_value = "sqlite")]
    pub backend: BackendArg,
    /// Items to push through an independent pipeline with one job (`true`).
    #[arg(long, default_value_t = 50)]
    pub items: u64,
    /// Export spans (on), not (off), or compare the two (both).
    #[arg(long, value_enum, default_value = "on")]
    pub tracing: OnOff,
    /// With `--tracing both`: pairs of runs (one off, one on, in turns
    /// off-on and on-off so that drift cancels out).
    #[arg(long, default_value_t = 5)]
    pub pairs: u32,
    /// ZooKeeper connection string.
    #[arg(long, default_value = "127.0.0.1:2181")]
    pub hosts: String,
}

fn config(store: StoreConfig) -> anyhow::Result<Config> {
    let mut config: Config = r#"
        [[pipeline]]
        name = "check"
        manager = "independent"

        [[job]]
        name = "unit"
        run = "true"

        [[project]]
        name = "org/project"
        check = ["unit"]
    "#
    .parse()?;
    config.store = store;
    Ok(config)
}

/// Runs the benchmark and prints one JSON line per run; with `--tracing
/// both`, a last line with the medians and the ratio of throughput with
/// tracing on to throughput with it off, taken in this one invocation.
pub async fn run(args: BenchPipelineArgs) -> anyhow::Result<()> {
    if args.items == 0 {
        bail!("--items must be at least 1");
    }
    if args.tracing != OnOff::Both {
        let result = run_once(&args, args.tracing == OnOff::On, 0).await?;
        println!("{result}");
        return Ok(());
    }
    if args.pairs == 0 {
        bail!("--pairs must be at least 1");
    }
    let mut off = Vec::new();
    let mut on = Vec::new();
    let mut ratios = Vec::new();
    for pair in 0..args.pairs {
        let order = if pair % 2 == 0 {
            [false, true]
        } else {
            [true, false]
        };
        let mut rates = [0.0; 2];
        for tracing in order {
            eprintln!(
                "bench pipeline: pair {}/{}, tracing {}",
                pair + 1,
                args.pairs,
                if tracing { "on" } else { "off" }
            );
            let result = run_once(&args, tracing, off.len() + on.len()).await?;
            println!("{result}");
            let rate = result["items_per_s"].as_f64().unwrap_or(0.0);
            rates[usize::from(tracing)] = rate;
            if tracing {
                on.push(result);
            } else {
                off.push(result);
            }
        }
        ratios.push(rates[1] / rates[0]);
    }
    let median_of = |runs: &[serde_json::Value], key: &str| {
        median(runs.iter().filter_map(|r| r[key].as_f64()).collect())
    };
    let ratio = median(ratios.clone());
    println!(
        "{}",
        serde_json::json!({
            "backend": backend_name(args.backend),
            "items": args.items,
            "pairs": args.pairs,
            "off_items_per_s_median": median_of(&off, "items_per_s"),
            "on_items_per_s_median": median_of(&on, "items_per_s"),
            "on_vs_off_median": (ratio * 1000.0).round() / 1000.0,
            "on_vs_off_per_pair": ratios.iter().map(|r| (r * 1000.0).round() / 1000.0).collect::<Vec<_>>(),
            "off_store_round_trips_per_item_median": median_of(&off, "store_round_trips_per_item"),
            "on_store_round_trips_per_item_median": median_of(&on, "store_round_trips_per_item"),
            "off_store_writes_per_item_median": median_of(&off, "store_writes_per_item"),
            "on_store_writes_per_item_median": median_of(&on, "store_writes_per_item"),
        })
    );
    Ok(())
}

fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 0 {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    }
}

pub(crate) fn backend_name(backend: BackendArg) -> &'static str {
    match backend {
        BackendArg::Sqlite => "sqlite",
        BackendArg::Zookeeper => "zookeeper",
    }
}

/// One run in a scratch store root; returns its JSON figures.
async fn run_once(
    args: &BenchPipelineArgs,
    tracing: bool,
    index: usize,
) -> anyhow::Result<serde_json::Value> {
    let scratch = tempfile::tempdir()?;
    let root = format!("/dspans-bench-{}-{index}", std::process::id());
    let store_config = match args.backend {
        BackendArg::Sqlite => StoreConfig::sqlite(scratch.path().join("bench.db")),
        BackendArg::Zookeeper => StoreConfig::zookeeper(&args.hosts),
    };
    let layout = Layout::with_root(&root)?;
    let sink = MemorySink::new();
    let receiver = ReceiverThread::start(sink.clone())?;
    let mut config = config(store_config.clone())?;
    config.tracing = ExportOptions {
        enabled: tracing,
        protocol: Protocol::Grpc,
        endpoint: Some(receiver.endpoint.clone()),
        service_name: Some("bench".to_string()),
        ..ExportOptions::default()
    };
    let stores = open_stores(args, &store_config).await?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    // Each component is assembled as `dspans scheduler|executor|merger`
    // assembles itself (batched ordinary spans, saved spans through the
    // ledger's outbox and this process's outbox sender), on a counted store.
    let mut tasks = Vec::new();
    for (kind, store) in [Kind::Scheduler, Kind::Executor, Kind::Merger]
        .into_iter()
        .zip(&stores)
    {
        let name = format!("bench-{}", kind.as_str());
        let store: Arc<dyn Store> = store.clone();
        let component = Component::assemble(kind, config.clone(), name, store, layout.clone())?;
        let mut stopped = stopped.clone();
        tasks.push(tokio::spawn(component.run(async move {
            let _ = stopped.wait_for(|s| *s).await;
        })));
    }
    let client = tracer(&config, Kind::Scheduler, "bench-enqueue")?;
    let before = Counters::read(&stores);
    let seconds = push_items(args, &stores[3], &layout, &client).await?;
    let after = Counters::read(&stores);
    stop.send(true)?;
    for task in tasks {
        task.await??;
    }
    let _ = client.shutdown();
    receiver.stop();
    let spans = sink.span_count();
    let _ = stores[3].delete_all(&root).await;
    let mut figures = figures(args, seconds, &before, &after);
    figures["tracing"] = serde_json::json!(if tracing { "on" } else { "off" });
    figures["spans_exported"] = serde_json::json!(spans);
    Ok(figures)
}

/// One counted store session per component, the last one for enqueueing.
async fn open_stores(
    args: &BenchPipelineArgs,
    config: &StoreConfig,
) -> anyhow::Result<Vec<Arc<CountingStore>>> {
    // The run's scratch store: created here, like `dspans store init`.
    dspans_store::init(config)
        .await
        .with_context(|| format!("cannot create the {:?} store", args.backend))?;
    let mut stores = Vec::new();
    for _ in 0..4 {
        let inner = dspans_store::open(config)
            .await
            .with_context(|| format!("cannot open the {:?} store", args.backend))?;
        stores.push(Arc::new(CountingStore::new(inner)));
    }
    Ok(stores)
}

/// Enqueues the items through `store` and waits until all are reported;
/// returns the seconds that took.
async fn push_items(
    args: &BenchPipelineArgs,
    store: &Arc<CountingStore>,
    layout: &Layout,
    client: &durable_spans::DurableTracer,
) -> anyhow::Result<f64> {
    let counted: Arc<dyn Store> = store.clone();
    let started = Instant::now();
    for n in 1..=args.items {
        let change = ChangeRef {
            project: "org/project".into(),
            number: n,
            patchset: 1,
            branch: "main".into(),
        };
        enqueue(&counted, layout, client, "check", change).await?;
    }
    let deadline = started + Duration::from_secs(60 + args.items);
    let mut last_note = Instant::now();
    loop {
        let reported: usize = store
            .inner_children(&layout.reports("check"))
            .await
            .unwrap_or_default();
        if reported as u64 >= args.items {
            return Ok(started.elapsed().as_secs_f64());
        }
        if Instant::now() > deadline {
            bail!("only {reported} of {} items reported in time", args.items);
        }
        if last_note.elapsed() > Duration::from_secs(2) {
            eprintln!("bench pipeline: {reported}/{} items reported", args.items);
            last_note = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The counters of the stores at one moment.
struct Counters {
    round_trips: Vec<u64>,
    writes: u64,
    waited: Vec<Duration>,
}

impl Counters {
    fn read(stores: &[Arc<CountingStore>]) -> Counters {
        Counters {
            round_trips: stores.iter().map(|s| s.round_trips()).collect(),
            writes: stores.iter().map(|s| s.writes()).sum(),
            waited: stores.iter().map(|s| s.waited()).collect(),
        }
    }
}

/// The figures of a run that took `seconds`, from the counters before and
/// after it.
fn figures(
    args: &BenchPipelineArgs,
    seconds: f64,
    before: &Counters,
    after: &Counters,
) -> serde_json::Value {
    let per_component: Vec<u64> = after
        .round_trips
        .iter()
        .zip(&before.round_trips)
        .map(|(after, before)| after - before)
        .collect();
    let round_trips: u64 = per_component.iter().sum();
    let waited_ms = after
        .waited
        .iter()
        .zip(&before.waited)
        .map(|(after, before)| (*after - *before).as_secs_f64() * 1000.0);
    let ms_per_item = |ms: f64| (ms / args.items as f64 * 100.0).round() / 100.0;
    let per_item = |n: u64| (n as f64 / args.items as f64 * 10.0).round() / 10.0;
    serde_json::json!({
            "backend": backend_name(args.backend),
            "items": args.items,
            "seconds": (seconds * 1000.0).round() / 1000.0,
            "items_per_s": (args.items as f64 / seconds * 10.0).round() / 10.0,
            "store_round_trips_per_item": per_item(round_trips),
            "store_round_trips_per_item_by_component":
                by_component(per_component.iter().map(|&n| per_item(n))),
            "store_writes_per_item": per_item(after.writes - before.writes),
            "store_wait_ms_per_item_by_component":
                by_component(waited_ms.map(ms_per_item)),
    })
}

/// Names the per-store figures of a run, in the order the stores were
/// opened.
fn by_component(values: impl Iterator<Item = f64>) -> serde_json::Value {
    const COMPONENTS: [&str; 4] = ["scheduler", "executor", "merger", "enqueue"];
    COMPONENTS
        .iter()
        .zip(values)
        .map(|(name, value)| (name.to_string(), serde_json::json!(value)))
        .collect::<serde_json::Map<_, _>>()
        .into()
}

/// The receiver runs on a runtime of its own: the components' span
/// processors block their worker threads while exporting, and a receiver
/// sharing those threads could be starved by them.
pub(crate) struct ReceiverThread {
    pub(crate) endpoint: String,
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ReceiverThread {
    pub(crate) fn start(sink: impl TraceSink) -> anyhow::Result<ReceiverThread> {
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(error) => {
                    let _ = ready_tx.send(Err(anyhow::anyhow!(error)));
                    return;
                }
            };
            runtime.block_on(async move {
                let started = Receiver::builder()
                    .grpc(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
                    .start(sink)
                    .await;
                let running = match started {
                    Ok(running) => running,
                    Err(error) => {
                        let _ = ready_tx.send(Err(anyhow::anyhow!(error)));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(running.grpc_endpoint().unwrap_or_default()));
                let _ = tokio::task::spawn_blocking(move || stop_rx.recv()).await;
                let _ = running.shutdown().await;
            });
        });
        let endpoint = ready_rx.recv().context("the receiver thread died")??;
        Ok(ReceiverThread {
            endpoint,
            stop: Some(stop_tx),
            thread: Some(thread),
        })
    }

    pub(crate) fn stop(mut self) {
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Counting the polls of the benchmark itself would blur the figure.
trait Uncounted {
    async fn inner_children(&self, path: &str) -> dspans_store::Result<usize>;
}

impl Uncounted for CountingStore {
    async fn inner_children(&self, path: &str) -> dspans_store::Result<usize> {
        self.inner().children(path).await.map(|c| c.len())
    }
}
