//! `dspans bench crashes`: how many spans a plain OTLP backend gets twice,
//! and how many it never gets, when schedulers are SIGKILLed right after
//! they sent saved spans.
//!
//! The bench runs two schedulers, an executor and a merger as processes of
//! their own, and a plain OTLP/gRPC receiver in this process: it keeps
//! every span it gets and drops none, as Jaeger or Tempo would. When that
//! receiver sees a saved span (QueueItem, BuildSet, Build) arrive from a
//! scheduler, the bench SIGKILLs that scheduler before the receiver
//! answers, and starts it again; the next kill waits until one more change
//! has been reported.
//!
//! - `--via direct`: the components export to the receiver. A kill lands
//!   between the receiver taking a span and the scheduler deleting it from
//!   the store (one store round trip), so the span is sent again by the
//!   process that takes the dead one's spans over: the receiver gets it
//!   twice.
//! - `--via relay` (the default): they export to `dspans collector
//!   --forward RECEIVER --spool DIR`, which answers once a request is
//!   spooled, drops repeated spans and forwards the rest, so the receiver
//!   gets each span once.
//!
//! Lost spans are counted three ways: reported changes without a QueueItem
//! span, spans whose parent never arrived, and saved spans still open in
//! the store once the pipeline is idle.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::{Args, ValueEnum};
use dspans_otlp::proto::collector::trace::v1::ExportTraceServiceRequest;
use dspans_otlp::proto::common::v1::any_value::Value;
use dspans_otlp::receiver::{SinkError, TraceSink};
use dspans_pipeline::component::{tracer, Kind};
use dspans_pipeline::model::ChangeRef;
use dspans_pipeline::scheduler::enqueue;
use dspans_pipeline::{Config, Layout};
use dspans_store::Store;
use tokio::sync::mpsc;

use crate::bench_pipeline::{backend_name, BackendArg, ReceiverThread};
use crate::processes::{component, write_config, Processes};
use crate::status_cmd::read_status;

/// Where the components' spans go on their way to the plain receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Via {
    /// Straight to the receiver.
    Direct,
    /// Through a deduplicating `dspans collector --forward` relay.
    Relay,
}

/// Options of `dspans bench crashes`.
#[derive(Args, Debug)]
#[command(
    after_help = "Example:\n  dspans bench crashes --kills 100 --backend zookeeper --via direct"
)]
pub struct BenchCrashesArgs {
    /// Store backend.
    #[arg(long, value_enum, default_value = "sqlite")]
    pub backend: BackendArg,
    /// ZooKeeper connection string (with --backend zookeeper).
    #[arg(long, value_name = "HOSTS", default_value = "127.0.0.1:2181")]
    pub zk: String,
    /// Schedulers to SIGKILL, one after each reported change.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..))]
    pub kills: u64,
    /// Path of the spans to the receiver.
    #[arg(long, value_enum, default_value = "relay")]
    pub via: Via,
    /// Keep the workspace (config, logs, spool) here instead of a
    /// temporary directory that is removed at the end.
    #[arg(long, value_name = "D")]
    pub dir: Option<PathBuf>,
}

/// Spans the span ledger saves in the store.
const SAVED: [&str; 3] = ["QueueItem", "BuildSet", "Build"];
const SCHEDULERS: [&str; 2] = ["scheduler-1", "scheduler-2"];
/// Changes enqueued and not yet reported, at most.
const IN_FLIGHT: u64 = 3;
/// A run with no new report for this long has stalled.
const STALL: Duration = Duration::from_secs(120);

/// What the receiver got: each span's arrivals, by trace and span id.
#[derive(Default)]
struct Tally {
    arrivals: HashMap<(Vec<u8>, Vec<u8>), u32>,
    /// (trace id, parent span id) of every span with a parent.
    parents: Vec<(Vec<u8>, Vec<u8>)>,
    queue_items: HashSet<Vec<u8>>,
}

impl Tally {
    /// Counts `request`'s spans.
    fn take(&mut self, request: &ExportTraceServiceRequest) {
        for span in request
            .resource_spans
            .iter()
            .flat_map(|rs| &rs.scope_spans)
            .flat_map(|ss| &ss.spans)
        {
            let key = (span.trace_id.clone(), span.span_id.clone());
            *self.arrivals.entry(key).or_default() += 1;
            if !span.parent_span_id.is_empty() {
                self.parents
                    .push((span.trace_id.clone(), span.parent_span_id.clone()));
            }
            if span.name == "QueueItem" {
                self.queue_items.insert(span.span_id.clone());
            }
        }
    }

    fn received(&self) -> u64 {
        self.arrivals.values().map(|&n| u64::from(n)).sum()
    }

    fn duplicates(&self) -> u64 {
        self.arrivals.values().map(|&n| u64::from(n) - 1).sum()
    }

    fn missing_parents(&self) -> usize {
        self.parents
            .iter()
            .filter(|key| !self.arrivals.contains_key(*key))
            .count()
    }
}

/// The scheduler that sent a saved span in `request`, if one did (its
/// resource's `service.instance.id`).
fn saved_span_sender(request: &ExportTraceServiceRequest) -> Option<String> {
    request.resource_spans.iter().find_map(|resource_spans| {
        let instance = resource_spans
            .resource
            .as_ref()?
            .attributes
            .iter()
            .find(|kv| kv.key == "service.instance.id")
            .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
                Value::StringValue(s) => Some(s.clone()),
                _ => None,
            })?;
        let saved = resource_spans
            .scope_spans
            .iter()
            .flat_map(|s| &s.spans)
            .any(|span| SAVED.contains(&span.name.as_str()));
        (saved && SCHEDULERS.contains(&instance.as_str())).then_some(instance)
    })
}

/// What the receiver's sink may kill: while armed, the schedulers' pids.
#[derive(Default)]
struct Armed {
    pids: HashMap<String, u32>,
    /// The scheduler killed since the last arming.
    killed: Option<String>,
}

/// The receiver's sink: passes each request on, and, while armed, SIGKILLs
/// a scheduler that sent saved spans before the receiver answers it, so
/// the kill always comes before the scheduler can delete what it sent.
struct Trigger {
    requests: mpsc::UnboundedSender<ExportTraceServiceRequest>,
    armed: Arc<Mutex<Armed>>,
}

impl TraceSink for Trigger {
    fn accept(&self, request: ExportTraceServiceRequest) -> Result<(), SinkError> {
        if let Some(scheduler) = saved_span_sender(&request) {
            let mut armed = self.armed.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(pid) = armed.pids.get(&scheduler) {
                // Waited for: the process is gone before the answer goes out.
                let _ = std::process::Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .status();
                armed.pids.clear();
                armed.killed = Some(scheduler);
            }
        }
        self.requests
            .send(request)
            .map_err(|_| SinkError::Unavailable("the bench has stopped".into()))
    }
}

/// The running bench: processes, store, receiver.
struct Bench {
    args: BenchCrashesArgs,
    exe: PathBuf,
    workspace: PathBuf,
    config_path: PathBuf,
    config: Config,
    procs: Processes,
    store: Arc<dyn Store>,
    requests: mpsc::UnboundedReceiver<ExportTraceServiceRequest>,
    armed: Arc<Mutex<Armed>>,
    tally: Tally,
    kills: u64,
}

/// Runs the bench and prints its figures (a last JSON line for scripts);
/// fails when the pipeline stalls.
pub async fn run(args: BenchCrashesArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let (sink, requests) = mpsc::unbounded_channel();
    let armed = Arc::new(Mutex::new(Armed::default()));
    let receiver = ReceiverThread::start(Trigger {
        requests: sink,
        armed: armed.clone(),
    })?;
    let temp;
    let workspace = match &args.dir {
        Some(dir) => {
            std::fs::create_dir_all(dir)?;
            dir.canonicalize()?
        }
        None => {
            temp = tempfile::Builder::new()
                .prefix("dspans-crashes-")
                .tempdir()?;
            temp.path().to_path_buf()
        }
    };
    let mut bench = Bench::start(args, workspace, &receiver.endpoint, (requests, armed)).await?;
    let outcome = bench.drive().await;
    let outcome = match outcome {
        Ok(()) => bench.finish().await,
        Err(error) => Err(error),
    };
    drop(bench.procs);
    receiver.stop();
    let figures = outcome?;
    print_figures(&bench.args, &figures, started.elapsed());
    Ok(())
}

impl Bench {
    async fn start(
        args: BenchCrashesArgs,
        workspace: PathBuf,
        receiver: &str,
        (requests, armed): (
            mpsc::UnboundedReceiver<ExportTraceServiceRequest>,
            Arc<Mutex<Armed>>,
        ),
    ) -> anyhow::Result<Bench> {
        let exe = std::env::current_exe().context("cannot find the dspans executable")?;
        let logs = workspace.join("logs");
        std::fs::create_dir_all(&logs)?;
        let mut procs = Processes {
            children: Vec::new(),
        };
        let endpoint = match args.via {
            Via::Direct => receiver.to_string(),
            // A relay: `dspans collector --forward RECEIVER --spool DIR`.
            Via::Relay => procs.spawn_collector(
                "relay",
                &exe,
                &[
                    "--forward".as_ref(),
                    receiver.as_ref(),
                    "--spool".as_ref(),
                    workspace.join("spool").as_os_str(),
                ],
                &logs.join("relay.log"),
            )?,
        };
        let config_path = workspace.join("dspans.toml");
        let config = write_config(&config_path, &config_text(&args, &workspace, &endpoint)).await?;
        let store = dspans_store::open(&config.store)
            .await
            .context("cannot open the store")?;
        let mut bench = Bench {
            args,
            exe,
            workspace,
            config_path,
            config,
            procs,
            store,
            requests,
            armed,
            tally: Tally::default(),
            kills: 0,
        };
        for (kind, name) in [
            ("scheduler", SCHEDULERS[0]),
            ("scheduler", SCHEDULERS[1]),
            ("executor", "executor-1"),
            ("merger", "merger-1"),
        ] {
            bench.spawn(kind, name)?;
        }
        Ok(bench)
    }

    fn spawn(&mut self, kind: &str, name: &str) -> anyhow::Result<()> {
        let logs = self.workspace.join("logs");
        let command = component(&self.exe, kind, name, &self.config_path, &logs)?;
        self.procs.spawn(name, command)
    }

    async fn reported(&self) -> anyhow::Result<u64> {
        let reports = Layout::default().reports("check");
        Ok(self
            .store
            .children(&reports)
            .await
            .unwrap_or_default()
            .len() as u64)
    }

    /// Enqueues changes and kills schedulers until `--kills` kills are done
    /// and every enqueued change is reported.
    async fn drive(&mut self) -> anyhow::Result<()> {
        let client = tracer(&self.config, Kind::Scheduler, "bench-enqueue")?;
        let layout = Layout::default();
        let (mut enqueued, mut armed_at) = (0u64, Some(0u64));
        let mut progress = (0u64, Instant::now());
        loop {
            let reported = self.reported().await?;
            if reported > progress.0 {
                progress = (reported, Instant::now());
            } else if progress.1.elapsed() > STALL {
                bail!(
                    "no change reported for {} s ({reported} of {enqueued}); see the logs in {}",
                    STALL.as_secs(),
                    self.workspace.join("logs").display()
                );
            }
            if self.kills >= self.args.kills && reported >= enqueued {
                break;
            }
            while self.kills < self.args.kills && enqueued < reported + IN_FLIGHT {
                enqueued += 1;
                let change = ChangeRef {
                    project: "org/project".into(),
                    number: enqueued,
                    patchset: 1,
                    branch: "main".into(),
                };
                enqueue(&self.store, &layout, &client, "check", change).await?;
            }
            self.take_arrivals();
            let killed = self.lock_armed().killed.take();
            if let Some(scheduler) = killed {
                self.procs.kill(&scheduler);
                self.spawn("scheduler", &scheduler)?;
                self.kills += 1;
                armed_at = Some(reported);
                eprintln!(
                    "bench crashes: kill {}/{}: {scheduler}, {reported} changes reported",
                    self.kills, self.args.kills
                );
            } else if self.kills < self.args.kills && armed_at.is_some_and(|at| reported > at) {
                // Armed after one more report: the next saved span kills.
                armed_at = None;
                let pids = self
                    .procs
                    .children
                    .iter()
                    .filter(|(name, _)| SCHEDULERS.contains(&name.as_str()))
                    .map(|(name, child)| (name.clone(), child.id()))
                    .collect();
                self.lock_armed().pids = pids;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let _ = client.shutdown();
        Ok(())
    }

    fn lock_armed(&self) -> std::sync::MutexGuard<'_, Armed> {
        self.armed.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn take_arrivals(&mut self) {
        while let Ok(request) = self.requests.try_recv() {
            self.tally.take(&request);
        }
    }
}

fn config_text(args: &BenchCrashesArgs, workspace: &Path, endpoint: &str) -> String {
    let store = match args.backend {
        BackendArg::Sqlite => format!(
            "backend = \"sqlite\"\npath = \"{}\"",
            workspace.join("dspans.db").display()
        ),
        BackendArg::Zookeeper => format!(
            "backend = \"zookeeper\"\nhosts = \"{}\"\nchroot = \"/dspans-crashes-{}\"",
            args.zk,
            std::process::id()
        ),
    };
    format!(
        r#"# Written by `dspans bench crashes`.
[store]
{store}
session_timeout_ms = 2000

[tracing]
enabled = true
protocol = "grpc"
endpoint = "{endpoint}"
service_name = "dspans-crashes"

[logs]
dir = "build-logs"

[[pipeline]]
name = "check"
manager = "independent"

[[job]]
name = "unit"
run = "true"

[[job]]
name = "lint"
run = "true"

[[project]]
name = "org/project"
check = ["unit", "lint"]
"#
    )
}

/// What a run measured.
struct Figures {
    kills: u64,
    reported: u64,
    received: u64,
    unique: u64,
    duplicates: u64,
    items_without_queue_item: u64,
    missing_parents: usize,
    left_open: usize,
    /// Spans the relay got again and did not forward, per its log.
    relay_dropped: Option<u64>,
}

impl Figures {
    fn lost(&self) -> u64 {
        self.items_without_queue_item + self.missing_parents as u64 + self.left_open as u64
    }
}

impl Bench {
    /// Waits for the pipeline and its outbox to drain, stops the components
    /// (and the relay, once it forwarded everything) and counts.
    async fn finish(&mut self) -> anyhow::Result<Figures> {
        let deadline = Instant::now() + STALL;
        let left_open = loop {
            let status = read_status(&self.config, &self.store).await?;
            if status.idle() && status.open_spans == 0 {
                break 0;
            }
            if Instant::now() > deadline {
                eprintln!(
                    "bench crashes: not idle after {} s: {} saved spans open, {} in the outbox",
                    STALL.as_secs(),
                    status.open_spans,
                    status.outbox
                );
                break status.open_spans;
            }
            self.take_arrivals();
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let mut components: Vec<&str> = SCHEDULERS.to_vec();
        components.extend(["executor-1", "merger-1"]);
        self.procs.stop(&components);
        if self.args.via == Via::Relay {
            let spool = self.workspace.join("spool");
            let drained = Instant::now() + STALL;
            while !dspans_otlp::relay::forwarded_everything(&spool) {
                if Instant::now() > drained {
                    bail!("the relay did not forward its spool in time; see its log");
                }
                self.take_arrivals();
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            self.procs.stop(&["relay"]);
        }
        self.take_arrivals();
        let reported = self.reported().await?;
        let _ = self.store.clone().close().await;
        let unique = self.tally.arrivals.len() as u64;
        Ok(Figures {
            kills: self.kills,
            reported,
            received: self.tally.received(),
            unique,
            duplicates: self.tally.duplicates(),
            items_without_queue_item: reported.saturating_sub(self.tally.queue_items.len() as u64),
            missing_parents: self.tally.missing_parents(),
            left_open,
            relay_dropped: (self.args.via == Via::Relay)
                .then(|| relay_dropped(&self.workspace.join("logs/relay.log"))),
        })
    }
}

/// The relay's count of repeated spans it dropped: the last `total=` of
/// its "repeated spans dropped" lines.
fn relay_dropped(log: &Path) -> u64 {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.contains("repeated spans dropped"))
        .filter_map(|l| {
            l.split("total=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .next_back()
        .unwrap_or(0)
}

fn print_figures(args: &BenchCrashesArgs, f: &Figures, took: Duration) {
    let per_kill = f.duplicates as f64 / f.kills.max(1) as f64;
    let backend = backend_name(args.backend);
    let via = match args.via {
        Via::Direct => "direct",
        Via::Relay => "relay",
    };
    println!("bench crashes ({backend}, via {via})");
    println!("  kills:                 {}", f.kills);
    println!("  changes reported:      {}", f.reported);
    println!(
        "  spans received:        {} ({} distinct)",
        f.received, f.unique
    );
    println!(
        "  duplicates:            {} ({per_kill:.2} per kill)",
        f.duplicates
    );
    if let Some(dropped) = f.relay_dropped {
        println!("  repeats the relay dropped: {dropped}");
    }
    println!(
        "  lost:                  {} (changes without a QueueItem {}, missing parents {}, left open {})",
        f.lost(),
        f.items_without_queue_item,
        f.missing_parents,
        f.left_open
    );
    println!("  took {:.1} s", took.as_secs_f64());
    println!(
        "{}",
        serde_json::json!({
            "backend": backend,
            "via": via,
            "kills": f.kills,
            "changes_reported": f.reported,
            "spans_received": f.received,
            "spans_distinct": f.unique,
            "duplicates": f.duplicates,
            "duplicates_per_kill": (per_kill * 1000.0).round() / 1000.0,
            "lost": f.lost(),
            "changes_without_queue_item": f.items_without_queue_item,
            "missing_parents": f.missing_parents,
            "left_open": f.left_open,
            "relay_repeats_dropped": f.relay_dropped,
            "seconds": (took.as_secs_f64() * 10.0).round() / 10.0,
        })
    );
}
