//! The ledger tests' harness beside `dspans-test-support`: a store of
//! either backend (a SQLite file, a ZooKeeper server of the test's own),
//! senders exporting to the test receiver, and owned spans to end.

use std::sync::Arc;
use std::time::Duration;

use dspans_ledger::{Ledger, LedgerError, OutboxSender, SenderOptions};
use dspans_otlp::proto::trace::v1::Span;
use dspans_otlp::receiver::MemorySink;
use dspans_otlp::{build_exporter, ExportOptions, Exporter, Protocol};
use dspans_store::{CreateMode, Op, Store, StoreConfig};
pub use dspans_test_support::{free_port, wait_until, Backend};
use dspans_test_support::{TestReceiver, ZkServer};
use durable_spans::{DurableTracer, EndOptions, FinishedSpan, SavedSpanOptions, SpanInfo};

pub const DEADLINE: Duration = Duration::from_secs(60);
pub const ROOT: &str = "/ledger-test";

/// The store of a test case: a SQLite file or a ZooKeeper server of the
/// test's own (stopped when dropped).
pub struct Stores {
    pub config: StoreConfig,
    _dir: tempfile::TempDir,
    _zk: Option<ZkServer>,
}

impl Stores {
    /// The store of `backend`, its server started if it needs one.
    pub fn start(backend: Backend) -> Stores {
        let dir = tempfile::tempdir().unwrap();
        let zk = backend.server();
        let config = match &zk {
            None => StoreConfig::sqlite(dir.path().join("ledger.db")),
            Some(zk) => StoreConfig::zookeeper(&zk.hosts),
        };
        Stores {
            config,
            _dir: dir,
            _zk: zk,
        }
    }

    /// A new client of the store (a process's own session); the first
    /// creates a SQLite store.
    pub async fn open(&self) -> Arc<dyn Store> {
        dspans_store::create(&self.config).await.unwrap()
    }
}

/// The test receiver on gRPC port `port` (where exporters were told the
/// collector is) and its sink.
pub fn receiver(port: u16) -> (MemorySink, TestReceiver) {
    let receiver = TestReceiver::start_grpc_on(port);
    (receiver.sink().clone(), receiver)
}

pub fn tracer() -> DurableTracer {
    DurableTracer::builder("ledger-test")
        .service_name("ledger-test")
        .build()
}

pub fn fast() -> SenderOptions {
    SenderOptions {
        sweep_interval: Duration::from_millis(100),
        min_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(500),
        ..SenderOptions::default()
    }
}

pub fn exporter_to(port: u16) -> Exporter {
    let options = ExportOptions {
        enabled: true,
        protocol: Protocol::Grpc,
        endpoint: Some(format!("http://127.0.0.1:{port}")),
        timeout: Some(2_000),
        ..ExportOptions::default()
    };
    build_exporter(&options).unwrap()
}

/// `ledger`, handing the spans it ends to a sender of its own (as each
/// component process has one) that exports to `port`.
pub fn with_sender(
    port: u16,
    ledger: Ledger,
    tracer: &DurableTracer,
    name: &str,
    options: SenderOptions,
) -> (Ledger, OutboxSender) {
    let sender = OutboxSender::new(
        ledger.store().clone(),
        ledger.paths().root(),
        exporter_to(port),
        tracer,
        name,
        options,
    );
    (ledger.with_handoff(sender.handoff()), sender)
}

/// Starts `n` saved spans, each owned by an object `ROOT/objects/o<i>`
/// holding the span's JSON, written with its open entry.
pub async fn start_owned_spans(ledger: &Ledger, tracer: &DurableTracer, n: usize) -> Vec<SpanInfo> {
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
pub async fn open_owners(ledger: &Ledger) -> Vec<String> {
    let spans = ledger.open_spans().await.unwrap();
    spans.into_iter().map(|s| s.owner).collect()
}

pub fn owner_path(i: usize) -> String {
    format!("{ROOT}/objects/o{i}")
}

/// The deletion of object `i` (a compare-and-set on the version read) and
/// the end of the span saved in it; `None` when the object is gone.
pub async fn owner_end(
    ledger: &Ledger,
    tracer: &DurableTracer,
    i: usize,
) -> Option<(Op, Option<FinishedSpan>)> {
    let node = ledger.store().get(&owner_path(i)).await.unwrap()?;
    let info = SpanInfo::from_json(std::str::from_utf8(&node.data).unwrap())
        .unwrap()
        .unwrap();
    let end = tracer.finish_saved_span(Some(&info), EndOptions::new());
    Some((Op::delete(owner_path(i), Some(node.stat.version)), end))
}

/// Ends the span saved in object `i` by deleting the object
/// (compare-and-set on the version read). False when another host was
/// first.
pub async fn end_owned(ledger: &Ledger, tracer: &DurableTracer, i: usize) -> bool {
    let Some((op, end)) = owner_end(ledger, tracer, i).await else {
        return false;
    };
    let mut ends = ledger.ends();
    ends.push(end);
    match ledger.commit(vec![op], ends).await {
        Ok(_) => true,
        Err(LedgerError::Store(e)) if e.is_no_node() || e.is_bad_version() => false,
        Err(e) => panic!("end of span {i} failed: {e}"),
    }
}

pub fn span_ids(spans: &[Span]) -> Vec<Vec<u8>> {
    spans.iter().map(|s| s.span_id.clone()).collect()
}

pub async fn wait_outbox_empty(ledger: &Ledger) {
    assert!(
        wait_until(DEADLINE, || async {
            ledger.outbox_len().await.unwrap() == 0
        })
        .await,
        "outbox still holds {} entries",
        ledger.outbox_len().await.unwrap()
    );
}

pub async fn stop(task: tokio::task::JoinHandle<()>, stop: tokio::sync::watch::Sender<bool>) {
    stop.send(true).unwrap();
    task.await.unwrap();
}

pub fn spawn(
    sender: OutboxSender,
) -> (
    tokio::task::JoinHandle<()>,
    tokio::sync::watch::Sender<bool>,
) {
    let (tx, mut rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(sender.run(async move {
        let _ = rx.wait_for(|s| *s).await;
    }));
    (task, tx)
}
