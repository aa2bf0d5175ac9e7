//! The span ledger against real stores (SQLite and a ZooKeeper server of
//! the test's own) and a real OTLP/gRPC receiver:
//!
//! - an end written with its owner's change reaches the collector once, and
//!   its outbox entry is deleted only after that, by the next commit;
//! - two OS processes racing to end the same 1,000 saved spans export
//!   exactly 1,000 spans;
//! - entries claimed by a process whose session died are sent by another;
//! - a collector that is away loses nothing;
//! - orphans are ended once with status ERROR and `dspans.orphaned`;
//! - a full outbox drops (counted) instead of growing.

#[path = "../../store/tests/common/mod.rs"]
mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use common::{free_port, wait_until, ZkServer};
use dspans_ledger::{ExporterOptions, Ledger, LedgerLimits, OutboxExporter};
use dspans_otlp::proto::trace::v1::status::StatusCode;
use dspans_otlp::proto::trace::v1::Span;
use dspans_otlp::receiver::{MemorySink, Receiver, RunningReceiver};
use dspans_otlp::{build_exporter, ExportOptions, Protocol};
use dspans_store::{CountingStore, CreateMode, Op, Store, StoreConfig};
use durable_spans::{DurableTracer, EndOptions, SavedSpanOptions, SpanInfo};

const DEADLINE: Duration = Duration::from_secs(60);
const ROOT: &str = "/ledger-test";

/// A store of one backend: a SQLite file or a ZooKeeper server.
struct Backend {
    config: StoreConfig,
    _dir: tempfile::TempDir,
    _zk: Option<ZkServer>,
}

impl Backend {
    fn sqlite() -> Backend {
        let dir = tempfile::tempdir().unwrap();
        Backend {
            config: StoreConfig::sqlite(dir.path().join("ledger.db")),
            _dir: dir,
            _zk: None,
        }
    }

    fn zookeeper() -> Backend {
        let zk = ZkServer::start();
        Backend {
            config: StoreConfig::zookeeper(&zk.hosts),
            _dir: tempfile::tempdir().unwrap(),
            _zk: Some(zk),
        }
    }

    async fn open(&self) -> Arc<dyn Store> {
        dspans_store::open(&self.config).await.unwrap()
    }
}

async fn receiver(port: u16) -> (MemorySink, RunningReceiver) {
    let sink = MemorySink::new();
    let running = Receiver::builder()
        .grpc(format!("127.0.0.1:{port}").parse().unwrap())
        .start(sink.clone())
        .await
        .unwrap();
    (sink, running)
}

fn tracer() -> DurableTracer {
    DurableTracer::builder("ledger-test")
        .service_name("ledger-test")
        .build()
}

fn fast() -> ExporterOptions {
    ExporterOptions {
        sweep_interval: Duration::from_millis(100),
        min_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(500),
        ..ExporterOptions::default()
    }
}

fn exporter_to(
    port: u16,
    ledger: &Ledger,
    tracer: &DurableTracer,
    name: &str,
    options: ExporterOptions,
) -> OutboxExporter {
    let options_otlp = ExportOptions {
        enabled: true,
        protocol: Protocol::Grpc,
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        timeout: Some(2_000),
        ..ExportOptions::default()
    };
    OutboxExporter::new(
        ledger,
        build_exporter(&options_otlp).unwrap(),
        tracer,
        name,
        options,
    )
}

/// Starts `n` saved spans, each owned by an object `ROOT/objects/o<i>`
/// holding the span's JSON, written with its open entry.
async fn start_owned_spans(ledger: &Ledger, tracer: &DurableTracer, n: usize) -> Vec<SpanInfo> {
    let store = ledger.store();
    store
        .create_all(&format!("{ROOT}/objects"), b"")
        .await
        .unwrap();
    let mut infos = Vec::new();
    for i in 0..n {
        let info = tracer
            .start_saved_span(format!("span-{i}"), SavedSpanOptions::new())
            .unwrap();
        let owner = owner_path(i);
        let mut ops = vec![Op::create(
            &owner,
            info.to_json().into_bytes(),
            CreateMode::Persistent,
        )];
        ops.extend(ledger.open_op(&info, &owner));
        ledger.commit(ops, ledger.ends()).await.unwrap();
        infos.push(info);
    }
    infos
}

/// The owners of the open spans, oldest span first.
async fn open_owners(ledger: &Ledger) -> Vec<String> {
    let spans = ledger.open_spans().await.unwrap();
    spans.into_iter().map(|s| s.owner).collect()
}

fn owner_path(i: usize) -> String {
    format!("{ROOT}/objects/o{i}")
}

/// Ends the span saved in object `i` by deleting the object
/// (compare-and-set on the version read). False when another host was
/// first.
async fn end_owned(ledger: &Ledger, tracer: &DurableTracer, i: usize) -> bool {
    let store = ledger.store();
    let Some(node) = store.get(&owner_path(i)).await.unwrap() else {
        return false;
    };
    let info = SpanInfo::from_json(std::str::from_utf8(&node.data).unwrap())
        .unwrap()
        .unwrap();
    let mut ends = ledger.ends();
    ends.push(tracer.finish_saved_span(Some(&info), EndOptions::new()));
    match ledger
        .commit(
            vec![Op::delete(owner_path(i), Some(node.stat.version))],
            ends,
        )
        .await
    {
        Ok(_) => true,
        Err(e) if e.is_no_node() || e.is_bad_version() => false,
        Err(e) => panic!("end of span {i} failed: {e}"),
    }
}

fn span_ids(spans: &[Span]) -> Vec<Vec<u8>> {
    spans.iter().map(|s| s.span_id.clone()).collect()
}

async fn wait_outbox_empty(ledger: &Ledger) {
    assert!(
        wait_until(DEADLINE, || async {
            ledger.outbox_len().await.unwrap() == 0
        })
        .await,
        "outbox still holds {} entries",
        ledger.outbox_len().await.unwrap()
    );
}

async fn stop(task: tokio::task::JoinHandle<()>, stop: tokio::sync::watch::Sender<bool>) {
    stop.send(true).unwrap();
    task.await.unwrap();
}

fn spawn(
    exporter: OutboxExporter,
) -> (
    tokio::task::JoinHandle<()>,
    tokio::sync::watch::Sender<bool>,
) {
    let (tx, mut rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(exporter.run(async move {
        let _ = rx.wait_for(|s| *s).await;
    }));
    (task, tx)
}

/// A process whose exporter runs but cannot reach its collector.
struct Doomed {
    store: Arc<dyn Store>,
    task: tokio::task::JoinHandle<()>,
    _stop: tokio::sync::watch::Sender<bool>,
}

impl Doomed {
    /// Dies without a word: its presence goes with its session.
    async fn die(self) {
        self.task.abort();
        self.store.close().await.unwrap();
    }
}

/// Starts a process "a" whose exporter runs, so the `n` spans it ends
/// name it as their sender, but whose collector is away.
async fn unsent_spans_of_a_live_exporter(
    backend: &Backend,
    tracer: &DurableTracer,
    n: usize,
) -> Doomed {
    let store = backend.open().await;
    let ledger = Ledger::new(store.clone(), format!("{ROOT}/spans"));
    let exporter = exporter_to(free_port(), &ledger, tracer, "a", fast());
    let stats = exporter.stats();
    let (task, stop) = spawn(exporter);
    assert!(wait_until(DEADLINE, || async { stats.is_receiving() }).await);
    start_owned_spans(&ledger, tracer, n).await;
    for i in 0..n {
        assert!(end_owned(&ledger, tracer, i).await);
    }
    assert!(
        wait_until(DEADLINE, || async { stats.failed_exports() >= 1 }).await,
        "exports to a closed port should fail"
    );
    let markers = store.children(&ledger.paths().outbox_dir()).await.unwrap();
    assert!(markers.is_empty(), "its own spans need no outbox marker");
    assert_eq!(ledger.outbox_len().await.unwrap(), n);
    Doomed {
        store,
        task,
        _stop: stop,
    }
}

// ---------------------------------------------------------------- scenarios

async fn ended_spans_reach_the_collector_once(backend: Backend) {
    let port = free_port();
    let (sink, running) = receiver(port).await;
    let store = backend.open().await;
    let ledger = Ledger::new(store.clone(), format!("{ROOT}/spans"));
    let tracer = tracer();
    let (task, stop_tx) = spawn(exporter_to(port, &ledger, &tracer, "p1", fast()));
    let infos = start_owned_spans(&ledger, &tracer, 5).await;
    assert_eq!(ledger.open_spans().await.unwrap().len(), 5);
    for i in 0..5 {
        assert!(end_owned(&ledger, &tracer, i).await);
        // A second end of the same span finds the owner gone: nothing.
        assert!(!end_owned(&ledger, &tracer, i).await);
    }
    sink.wait_for_spans(5, DEADLINE).await.unwrap();
    wait_outbox_empty(&ledger).await;
    stop(task, stop_tx).await;
    let spans = sink.spans();
    assert_eq!(spans.len(), 5, "each span exported once");
    let want: HashSet<Vec<u8>> = infos
        .iter()
        .map(|i| i.span_id.to_be_bytes().to_vec())
        .collect();
    assert_eq!(span_ids(&spans).into_iter().collect::<HashSet<_>>(), want);
    assert!(ledger.open_spans().await.unwrap().is_empty());
    running.shutdown().await.unwrap();
}

/// The entries of sent spans are deleted inside the next transaction the
/// process commits, not in a write of their own; what no transaction
/// carried goes when the exporter stops.
async fn sent_entries_go_with_the_next_commit(backend: Backend) {
    let port = free_port();
    let (sink, running) = receiver(port).await;
    let store = backend.open().await;
    let ledger = Ledger::new(store.clone(), format!("{ROOT}/spans"));
    let tracer = tracer();
    // Long enough that only a commit (or the stop) deletes the entries.
    let options = ExporterOptions {
        deletion_delay: Duration::from_secs(3600),
        ..fast()
    };
    let exporter = exporter_to(port, &ledger, &tracer, "p1", options);
    let stats = exporter.stats();
    let (task, stop_tx) = spawn(exporter);
    assert!(wait_until(DEADLINE, || async { stats.is_receiving() }).await);
    start_owned_spans(&ledger, &tracer, 4).await;
    let open_dir = ledger.paths().open_dir();
    let entries = || async { store.children(&open_dir).await.unwrap().len() };
    for i in 0..2 {
        assert!(end_owned(&ledger, &tracer, i).await);
    }
    sink.wait_for_spans(2, DEADLINE).await.unwrap();
    assert!(wait_until(DEADLINE, || async { stats.exported() == 2 }).await);
    assert_eq!(entries().await, 4, "sent entries wait for a commit");
    // Ending span 2 is the next commit: it also deletes the two sent
    // entries.
    assert!(end_owned(&ledger, &tracer, 2).await);
    assert_eq!(entries().await, 2, "spans 2 (ended, unsent) and 3 (open)");
    assert_eq!(ledger.open_spans().await.unwrap().len(), 1);
    sink.wait_for_spans(3, DEADLINE).await.unwrap();
    assert!(wait_until(DEADLINE, || async { stats.exported() == 3 }).await);
    stop(task, stop_tx).await;
    assert_eq!(entries().await, 1, "the stop deletes what is sent");
    assert_eq!(sink.span_count(), 3);
    running.shutdown().await.unwrap();
}

async fn entries_of_a_dead_process_are_sent_by_another(backend: Backend) {
    let port = free_port();
    let (sink, running) = receiver(port).await;
    let tracer = tracer();
    // Process A ends spans its exporter cannot send, then dies.
    unsent_spans_of_a_live_exporter(&backend, &tracer, 3)
        .await
        .die()
        .await;

    let store_b = backend.open().await;
    let ledger_b = Ledger::new(store_b.clone(), format!("{ROOT}/spans"));
    let (task, stop_tx) = spawn(exporter_to(port, &ledger_b, &tracer, "b", fast()));
    sink.wait_for_spans(3, DEADLINE).await.unwrap();
    wait_outbox_empty(&ledger_b).await;
    stop(task, stop_tx).await;
    assert_eq!(sink.span_count(), 3);
    running.shutdown().await.unwrap();
}

/// An exporter already running notices when another one goes away and
/// sends the spans that one had ended and not sent.
async fn a_running_exporter_takes_over_from_one_that_died(backend: Backend) {
    let port = free_port();
    let (sink, running) = receiver(port).await;
    let tracer = tracer();
    let store_b = backend.open().await;
    let ledger_b = Ledger::new(store_b.clone(), format!("{ROOT}/spans"));
    let exporter_b = exporter_to(port, &ledger_b, &tracer, "b", fast());
    let stats_b = exporter_b.stats();
    let (task_b, stop_b) = spawn(exporter_b);
    assert!(wait_until(DEADLINE, || async { stats_b.is_receiving() }).await);

    let a = unsent_spans_of_a_live_exporter(&backend, &tracer, 4).await;
    assert_eq!(
        sink.span_count(),
        0,
        "B leaves a live exporter's spans alone"
    );
    a.die().await;

    sink.wait_for_spans(4, DEADLINE).await.unwrap();
    wait_outbox_empty(&ledger_b).await;
    stop(task_b, stop_b).await;
    assert_eq!(sink.span_count(), 4, "each span sent once");
    assert_eq!(stats_b.swept(), 4);
    running.shutdown().await.unwrap();
}

async fn an_absent_collector_loses_nothing(backend: Backend) {
    let port = free_port();
    let store = backend.open().await;
    let ledger = Ledger::new(store.clone(), format!("{ROOT}/spans"));
    let tracer = tracer();
    let exporter = exporter_to(port, &ledger, &tracer, "p1", fast());
    let stats = exporter.stats();
    let (task, stop_tx) = spawn(exporter);
    start_owned_spans(&ledger, &tracer, 4).await;
    for i in 0..4 {
        assert!(end_owned(&ledger, &tracer, i).await);
    }
    assert!(
        wait_until(DEADLINE, || async { stats.failed_exports() >= 2 }).await,
        "exports to a closed port should fail"
    );
    assert_eq!(ledger.outbox_len().await.unwrap(), 4, "kept while failing");
    // Ended, unsent spans keep their open entries, yet are neither listed
    // as open nor ended again as orphans although their owners are gone.
    let open_dir = ledger.paths().open_dir();
    assert_eq!(store.children(&open_dir).await.unwrap().len(), 4);
    assert!(ledger.open_spans().await.unwrap().is_empty());
    assert_eq!(ledger.sweep_orphans().await.unwrap(), 0);
    let (sink, running) = receiver(port).await;
    sink.wait_for_spans(4, DEADLINE).await.unwrap();
    wait_outbox_empty(&ledger).await;
    stop(task, stop_tx).await;
    assert_eq!(sink.span_count(), 4);
    assert_eq!(stats.exported(), 4);
    assert!(
        store.children(&open_dir).await.unwrap().is_empty(),
        "open entries go with the outbox entries once sent"
    );
    running.shutdown().await.unwrap();
}

async fn orphans_are_ended_once_with_an_error(backend: Backend) {
    let port = free_port();
    let (sink, running) = receiver(port).await;
    let store = backend.open().await;
    let ledger = Ledger::new(store.clone(), format!("{ROOT}/spans"));
    let tracer = tracer();
    let infos = start_owned_spans(&ledger, &tracer, 3).await;
    // Object 1 vanishes without ending its span.
    store.delete(&owner_path(1), None).await.unwrap();
    // Two sweepers at once: one end.
    let other = Ledger::new(backend.open().await, format!("{ROOT}/spans"));
    let (a, b) = tokio::join!(ledger.sweep_orphans(), other.sweep_orphans());
    assert_eq!(a.unwrap() + b.unwrap(), 1);
    assert_eq!(ledger.sweep_orphans().await.unwrap(), 0);
    let open = open_owners(&ledger).await;
    assert_eq!(open, vec![owner_path(0), owner_path(2)]);
    let (task, stop_tx) = spawn(exporter_to(port, &ledger, &tracer, "p1", fast()));
    let spans = sink.wait_for_spans(1, DEADLINE).await.unwrap();
    wait_outbox_empty(&ledger).await;
    stop(task, stop_tx).await;
    assert_eq!(spans.len(), 1);
    let span = &spans[0];
    assert_eq!(span.span_id, infos[1].span_id.to_be_bytes().to_vec());
    let status = span.status.as_ref().expect("status set");
    assert_eq!(status.code, StatusCode::Error as i32);
    let orphaned = span
        .attributes
        .iter()
        .find(|kv| kv.key == "dspans.orphaned")
        .expect("dspans.orphaned attribute");
    assert_eq!(
        format!("{:?}", orphaned.value.as_ref().unwrap().value),
        "Some(BoolValue(true))"
    );
    running.shutdown().await.unwrap();
}

/// The sweep looks an entry's owner up by reading the entry, except for
/// entries its own process wrote or ended: those it knows. A scheduler
/// holding hundreds of queued items would otherwise read each one's entry
/// back once, store traffic that tracing would add to the pipeline's.
async fn a_sweep_reads_no_entry_its_process_wrote(backend: Backend) {
    let counted = Arc::new(CountingStore::new(backend.open().await));
    let ledger = Ledger::new(counted.clone(), format!("{ROOT}/spans"));
    let tracer = tracer();
    start_owned_spans(&ledger, &tracer, 5).await;
    assert!(end_owned(&ledger, &tracer, 0).await);
    let before = counted.round_trips();
    assert_eq!(ledger.sweep_orphans().await.unwrap(), 0);
    assert_eq!(
        counted.round_trips() - before,
        2,
        "one listing and one owner lookup for the 4 open spans, no entry read"
    );

    let elsewhere = Arc::new(CountingStore::new(backend.open().await));
    let other = Ledger::new(elsewhere.clone(), format!("{ROOT}/spans"));
    assert_eq!(other.sweep_orphans().await.unwrap(), 0);
    assert_eq!(
        elsewhere.round_trips(),
        2 + 5,
        "another process reads each of the 5 entries once"
    );
    let before = elsewhere.round_trips();
    assert_eq!(other.sweep_orphans().await.unwrap(), 0);
    assert_eq!(elsewhere.round_trips() - before, 2, "and only once");

    // What the sweep knows does not hide an orphan from it.
    counted.delete(&owner_path(3), None).await.unwrap();
    assert_eq!(ledger.sweep_orphans().await.unwrap(), 1);
    assert_eq!(other.sweep_orphans().await.unwrap(), 0);
    let open = open_owners(&ledger).await;
    assert_eq!(open, vec![owner_path(1), owner_path(2), owner_path(4)]);
}

async fn a_full_outbox_drops_and_counts(backend: Backend) {
    let port = free_port(); // nobody listens: the outbox only grows
    let store = backend.open().await;
    let limits = LedgerLimits {
        max_outbox: 3,
        ..LedgerLimits::default()
    };
    let ledger = Ledger::with_limits(store.clone(), format!("{ROOT}/spans"), limits);
    let tracer = tracer();
    start_owned_spans(&ledger, &tracer, 5).await;
    let exporter = exporter_to(port, &ledger, &tracer, "p1", fast());
    let stats = exporter.stats();
    let (task, stop_tx) = spawn(exporter);
    assert!(end_owned(&ledger, &tracer, 0).await);
    assert!(
        wait_until(DEADLINE, || async { stats.failed_exports() >= 1 }).await,
        "exports to a closed port should fail"
    );
    // The collector stays away; the outbox fills up to its limit.
    for i in 1..3 {
        assert!(end_owned(&ledger, &tracer, i).await);
    }
    assert!(
        wait_until(DEADLINE, || async { ledger.is_full() }).await,
        "the outbox should be found full during the outage"
    );
    assert!(
        end_owned(&ledger, &tracer, 3).await,
        "the owner still changes"
    );
    assert_eq!(ledger.dropped(), 1);
    assert_eq!(ledger.outbox_len().await.unwrap(), 3);
    assert_eq!(ledger.open_spans().await.unwrap().len(), 1, "span 4 open");
    stop(task, stop_tx).await;
}

/// Spans saved before the ledger was used have no open entry: they still
/// end, once; a span already waiting in the outbox is not ended again, and
/// the caller's own operations still go through.
async fn spans_without_an_open_entry_and_repeated_ends(backend: Backend) {
    let port = free_port();
    let (sink, running) = receiver(port).await;
    let store = backend.open().await;
    let ledger = Ledger::new(store.clone(), format!("{ROOT}/spans"));
    let tracer = tracer();
    store
        .create_all(&format!("{ROOT}/objects"), b"")
        .await
        .unwrap();
    // An object written without the ledger.
    let old = tracer
        .start_saved_span("old", SavedSpanOptions::new())
        .unwrap();
    store
        .create(
            &owner_path(0),
            old.to_json().as_bytes(),
            CreateMode::Persistent,
        )
        .await
        .unwrap();
    assert!(end_owned(&ledger, &tracer, 0).await);
    assert_eq!(ledger.outbox_len().await.unwrap(), 1);
    // The same span ended again along with another change: the change is
    // written, the span is not queued twice.
    let mut ends = ledger.ends();
    ends.push(tracer.finish_saved_span(Some(&old), EndOptions::new()));
    ledger
        .commit(
            vec![Op::create(
                owner_path(1),
                b"other".to_vec(),
                CreateMode::Persistent,
            )],
            ends,
        )
        .await
        .unwrap();
    assert!(store.exists(&owner_path(1)).await.unwrap().is_some());
    assert_eq!(ledger.outbox_len().await.unwrap(), 1);
    let (task, stop_tx) = spawn(exporter_to(port, &ledger, &tracer, "p1", fast()));
    sink.wait_for_spans(1, DEADLINE).await.unwrap();
    wait_outbox_empty(&ledger).await;
    stop(task, stop_tx).await;
    assert_eq!(sink.span_count(), 1);
    assert_eq!(sink.spans()[0].name, "old");
    running.shutdown().await.unwrap();
}

// ------------------------------------------------------------- the race

const RACE_SPANS: usize = 1_000;
const RACE_ROLE: &str = "DSPANS_LEDGER_RACE_ROLE";

/// Two processes end the same 1,000 saved spans at once.
async fn two_processes_race_to_end_the_same_spans(backend: Backend, backend_name: &str) {
    let port = free_port();
    let (sink, running) = receiver(port).await;
    let store = backend.open().await;
    let ledger = Ledger::new(store.clone(), format!("{ROOT}/spans"));
    let tracer = tracer();
    start_owned_spans(&ledger, &tracer, RACE_SPANS).await;

    let config = serde_json::to_string(&backend.config).unwrap();
    let children: Vec<std::process::Child> = ["racer-a", "racer-b"]
        .iter()
        .map(|name| {
            std::process::Command::new(std::env::current_exe().unwrap())
                .args(["race_child_process", "--exact", "--nocapture"])
                .env(RACE_ROLE, name)
                .env("DSPANS_LEDGER_RACE_STORE", &config)
                .env("DSPANS_LEDGER_RACE_PORT", port.to_string())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut won = 0;
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{backend_name} racer failed");
        won += 1;
    }
    assert_eq!(won, 2);
    wait_outbox_empty(&ledger).await;
    let spans = sink.wait_for_spans(RACE_SPANS, DEADLINE).await.unwrap();
    // Both racers drained their exporters before exiting: nothing more comes.
    let ids: HashSet<Vec<u8>> = span_ids(&spans).into_iter().collect();
    assert_eq!(ids.len(), RACE_SPANS, "every span exported");
    assert_eq!(spans.len(), RACE_SPANS, "no span exported twice");
    assert!(ledger.open_spans().await.unwrap().is_empty());
    running.shutdown().await.unwrap();
}

/// The racing process (runs only when started by the race test).
#[test]
fn race_child_process() {
    let Ok(name) = std::env::var(RACE_ROLE) else {
        return;
    };
    let config: StoreConfig =
        serde_json::from_str(&std::env::var("DSPANS_LEDGER_RACE_STORE").unwrap()).unwrap();
    let port: u16 = std::env::var("DSPANS_LEDGER_RACE_PORT")
        .unwrap()
        .parse()
        .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let store = dspans_store::open(&config).await.unwrap();
        let ledger = Ledger::new(store.clone(), format!("{ROOT}/spans"));
        let tracer = tracer();
        let (task, stop_tx) = spawn(exporter_to(port, &ledger, &tracer, &name, fast()));
        let mut won = 0;
        for i in 0..RACE_SPANS {
            if end_owned(&ledger, &tracer, i).await {
                won += 1;
            }
        }
        stop(task, stop_tx).await;
        eprintln!("{name} ended {won} spans");
        let _ = store.close().await;
    });
}

// ------------------------------------------------------------ entry points

macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::sqlite()).await;
                }
            )*
        }
        mod zookeeper {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(super::Backend::zookeeper()).await;
                }
            )*
        }
    };
}

on_both!(
    ended_spans_reach_the_collector_once,
    sent_entries_go_with_the_next_commit,
    entries_of_a_dead_process_are_sent_by_another,
    a_running_exporter_takes_over_from_one_that_died,
    an_absent_collector_loses_nothing,
    orphans_are_ended_once_with_an_error,
    a_sweep_reads_no_entry_its_process_wrote,
    a_full_outbox_drops_and_counts,
    spans_without_an_open_entry_and_repeated_ends,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn race_on_sqlite() {
    two_processes_race_to_end_the_same_spans(Backend::sqlite(), "sqlite").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn race_on_zookeeper() {
    two_processes_race_to_end_the_same_spans(Backend::zookeeper(), "zookeeper").await;
}
