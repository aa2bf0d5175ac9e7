//! The span ledger against real stores (SQLite and a ZooKeeper server of
//! the test's own) and a real OTLP/gRPC receiver:
//!
//! - an end written with its owner's change reaches the collector once, and
//!   its entry is deleted only after that, by the sender, in one round trip
//!   right after the export;
//! - entries claimed by a process whose session died are sent by another;
//! - a collector that is away loses nothing;
//! - orphans are ended once with status ERROR and `dspans.orphaned`;
//! - a full outbox drops (counted) instead of growing.

use std::collections::HashSet;
use std::sync::Arc;

use dspans_ledger::{Ledger, LedgerLimits, OutboxSender};
use dspans_otlp::proto::trace::v1::status::StatusCode;
use dspans_store::{CountingStore, CreateMode, Op, Store};
use dspans_test_support::{attr, string};
use durable_spans::{DurableTracer, EndOptions, SavedSpanOptions};
use rstest::rstest;

use crate::support::*;

/// A process whose sender runs but cannot reach its collector.
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

/// Starts a process "a" whose sender runs, so the `n` spans it ends name
/// it, but whose collector is away.
async fn unsent_spans_of_a_live_exporter(
    stores: &Stores,
    tracer: &DurableTracer,
    n: usize,
) -> Doomed {
    let store = stores.open().await;
    let ledger = Ledger::new(store.clone(), format!("{ROOT}/spans"));
    let (ledger, sender) = with_sender(free_port(), ledger, tracer, "a", fast());
    let stats = sender.stats();
    let (task, stop) = spawn(sender);
    assert!(wait_until(DEADLINE, || async { stats.is_receiving() }).await);
    start_owned_spans(&ledger, tracer, n).await;
    for i in 0..n {
        assert!(end_owned(&ledger, tracer, i).await);
    }
    assert!(
        wait_until(DEADLINE, || async { stats.failed_exports() >= 1 }).await,
        "exports to a closed port should fail"
    );
    let markers = store
        .children(&ledger.paths().unassigned_dir())
        .await
        .unwrap();
    assert!(
        markers.is_empty(),
        "its own spans need no unassigned marker"
    );
    assert_eq!(ledger.outbox_len().await.unwrap(), n);
    Doomed {
        store,
        task,
        _stop: stop,
    }
}

// ---------------------------------------------------------------- scenarios

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::zookeeper(Backend::Zookeeper)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ended_spans_reach_the_collector_once(#[case] backend: Backend) {
    let stores = Stores::start(backend);
    let port = free_port();
    let (sink, running) = receiver(port);
    let store = stores.open().await;
    let ledger = Ledger::new(store.clone(), format!("{ROOT}/spans"));
    let tracer = tracer();
    let (ledger, sender) = with_sender(port, ledger, &tracer, "p1", fast());
    let (task, stop_tx) = spawn(sender);
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

/// The sender deletes an accepted span's entry itself, right after the
/// collector accepted it: one multi-operation for the export's spans, and
/// nothing of it in a later commit of the process. The spans are counted
/// as exported once their entries are gone.
#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::zookeeper(Backend::Zookeeper)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_entries_go_right_after_the_export(#[case] backend: Backend) {
    let stores = Stores::start(backend);
    let port = free_port();
    let (sink, running) = receiver(port);
    let tracer = tracer();
    let committing = Arc::new(CountingStore::new(stores.open().await));
    let sending = Arc::new(CountingStore::new(stores.open().await));
    let sender = OutboxSender::new(
        sending.clone(),
        format!("{ROOT}/spans"),
        exporter_to(port),
        &tracer,
        "p1",
        fast(),
    );
    let ledger =
        Ledger::new(committing.clone(), format!("{ROOT}/spans")).with_handoff(sender.handoff());
    let stats = sender.stats();
    let (task, stop_tx) = spawn(sender);
    assert!(wait_until(DEADLINE, || async { stats.is_receiving() }).await);
    start_owned_spans(&ledger, &tracer, 4).await;
    let entries_dir = ledger.paths().entries_dir();
    let entries = || async { committing.children(&entries_dir).await.unwrap().len() };
    // Spans 0 and 1 end in one transaction, so they go in one export.
    let mut ops = Vec::new();
    let mut ends = ledger.ends();
    for i in 0..2 {
        let (op, end) = owner_end(&ledger, &tracer, i).await.unwrap();
        ops.push(op);
        ends.push(end);
    }
    let (committed_before, sent_before) = (committing.writes(), sending.writes());
    ledger.commit(ops, ends).await.unwrap();
    sink.wait_for_spans(2, DEADLINE).await.unwrap();
    assert!(wait_until(DEADLINE, || async { stats.exported() == 2 }).await);
    assert_eq!(entries().await, 2, "only spans 2 and 3 (open) keep entries");
    assert_eq!(
        committing.writes() - committed_before,
        1,
        "the ends' own transaction, and no further commit"
    );
    assert_eq!(
        sending.writes() - sent_before,
        1,
        "one multi-operation deleted both entries"
    );
    assert_eq!(ledger.open_spans().await.unwrap().len(), 2);
    stop(task, stop_tx).await;
    assert_eq!(entries().await, 2);
    assert_eq!(sink.span_count(), 2);
    running.shutdown().await.unwrap();
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::zookeeper(Backend::Zookeeper)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_of_a_dead_process_are_sent_by_another(#[case] backend: Backend) {
    let stores = Stores::start(backend);
    let port = free_port();
    let (sink, running) = receiver(port);
    let tracer = tracer();
    // Process A ends spans its exporter cannot send, then dies.
    unsent_spans_of_a_live_exporter(&stores, &tracer, 3)
        .await
        .die()
        .await;

    let store_b = stores.open().await;
    let ledger_b = Ledger::new(store_b.clone(), format!("{ROOT}/spans"));
    let (ledger_b, sender_b) = with_sender(port, ledger_b, &tracer, "b", fast());
    let (task, stop_tx) = spawn(sender_b);
    sink.wait_for_spans(3, DEADLINE).await.unwrap();
    wait_outbox_empty(&ledger_b).await;
    stop(task, stop_tx).await;
    assert_eq!(sink.span_count(), 3);
    running.shutdown().await.unwrap();
}

/// An exporter already running notices when another one goes away and
/// sends the spans that one had ended and not sent.
#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::zookeeper(Backend::Zookeeper)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_exporter_takes_over_from_one_that_died(#[case] backend: Backend) {
    let stores = Stores::start(backend);
    let port = free_port();
    let (sink, running) = receiver(port);
    let tracer = tracer();
    let store_b = stores.open().await;
    let ledger_b = Ledger::new(store_b.clone(), format!("{ROOT}/spans"));
    let (ledger_b, sender_b) = with_sender(port, ledger_b, &tracer, "b", fast());
    let stats_b = sender_b.stats();
    let (task_b, stop_b) = spawn(sender_b);
    assert!(wait_until(DEADLINE, || async { stats_b.is_receiving() }).await);

    let a = unsent_spans_of_a_live_exporter(&stores, &tracer, 4).await;
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

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::zookeeper(Backend::Zookeeper)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absent_collector_loses_nothing(#[case] backend: Backend) {
    let stores = Stores::start(backend);
    let port = free_port();
    let store = stores.open().await;
    let ledger = Ledger::new(store.clone(), format!("{ROOT}/spans"));
    let tracer = tracer();
    let (ledger, sender) = with_sender(port, ledger, &tracer, "p1", fast());
    let stats = sender.stats();
    let (task, stop_tx) = spawn(sender);
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
    let entries_dir = ledger.paths().entries_dir();
    assert_eq!(store.children(&entries_dir).await.unwrap().len(), 4);
    assert!(ledger.open_spans().await.unwrap().is_empty());
    assert_eq!(ledger.sweep_orphans(&tracer).await.unwrap(), 0);
    let (sink, running) = receiver(port);
    sink.wait_for_spans(4, DEADLINE).await.unwrap();
    wait_outbox_empty(&ledger).await;
    stop(task, stop_tx).await;
    assert_eq!(sink.span_count(), 4);
    assert_eq!(stats.exported(), 4);
    assert!(
        store.children(&entries_dir).await.unwrap().is_empty(),
        "entries go once sent"
    );
    running.shutdown().await.unwrap();
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::zookeeper(Backend::Zookeeper)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orphans_are_ended_once_with_an_error(#[case] backend: Backend) {
    let stores = Stores::start(backend);
    let port = free_port();
    let (sink, running) = receiver(port);
    let store = stores.open().await;
    let ledger = Ledger::new(store.clone(), format!("{ROOT}/spans"));
    let tracer = tracer();
    let infos = start_owned_spans(&ledger, &tracer, 3).await;
    // Object 1 vanishes without ending its span.
    store.delete(&owner_path(1), None).await.unwrap();
    // Two sweepers at once: one end.
    let sweeper = DurableTracer::builder("ledger-test")
        .with_resource(
            opentelemetry_sdk::Resource::builder_empty()
                .with_attribute(opentelemetry::KeyValue::new(
                    "service.instance.id",
                    "sweeper-1",
                ))
                .build(),
        )
        .build();
    let other = Ledger::new(stores.open().await, format!("{ROOT}/spans"));
    let (a, b) = tokio::join!(
        ledger.sweep_orphans(&sweeper),
        other.sweep_orphans(&sweeper)
    );
    assert_eq!(a.unwrap() + b.unwrap(), 1);
    assert_eq!(ledger.sweep_orphans(&sweeper).await.unwrap(), 0);
    let open = open_owners(&ledger).await;
    assert_eq!(open, vec![owner_path(0), owner_path(2)]);
    let (ledger, sender) = with_sender(port, ledger, &tracer, "p1", fast());
    let (task, stop_tx) = spawn(sender);
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
    assert_eq!(
        attr(&span.attributes, "error.type"),
        Some(&string("orphaned"))
    );
    assert_eq!(
        attr(&span.attributes, "dspans.ended_by"),
        Some(&string("sweeper-1")),
        "the sweeper says it ended the span"
    );
    running.shutdown().await.unwrap();
}

/// The sweep looks an entry's owner up by reading the entry, except for
/// entries its own process wrote or ended: those it knows. A scheduler
/// holding hundreds of queued items would otherwise read each one's entry
/// back once, store traffic that tracing would add to the pipeline's.
#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::zookeeper(Backend::Zookeeper)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_reads_no_entry_its_process_wrote(#[case] backend: Backend) {
    let stores = Stores::start(backend);
    let counted = Arc::new(CountingStore::new(stores.open().await));
    let ledger = Ledger::new(counted.clone(), format!("{ROOT}/spans"));
    let tracer = tracer();
    start_owned_spans(&ledger, &tracer, 5).await;
    assert!(end_owned(&ledger, &tracer, 0).await);
    let before = counted.round_trips();
    assert_eq!(ledger.sweep_orphans(&tracer).await.unwrap(), 0);
    assert_eq!(
        counted.round_trips() - before,
        2,
        "one listing and one owner lookup for the 4 open spans, no entry read"
    );

    let elsewhere = Arc::new(CountingStore::new(stores.open().await));
    let other = Ledger::new(elsewhere.clone(), format!("{ROOT}/spans"));
    assert_eq!(other.sweep_orphans(&tracer).await.unwrap(), 0);
    assert_eq!(
        elsewhere.round_trips(),
        2 + 5,
        "another process reads each of the 5 entries once"
    );
    let before = elsewhere.round_trips();
    assert_eq!(other.sweep_orphans(&tracer).await.unwrap(), 0);
    assert_eq!(elsewhere.round_trips() - before, 2, "and only once");

    // What the sweep knows does not hide an orphan from it.
    counted.delete(&owner_path(3), None).await.unwrap();
    assert_eq!(ledger.sweep_orphans(&tracer).await.unwrap(), 1);
    assert_eq!(other.sweep_orphans(&tracer).await.unwrap(), 0);
    let open = open_owners(&ledger).await;
    assert_eq!(open, vec![owner_path(1), owner_path(2), owner_path(4)]);
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::zookeeper(Backend::Zookeeper)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_outbox_drops_and_counts(#[case] backend: Backend) {
    let stores = Stores::start(backend);
    let port = free_port(); // nobody listens: the outbox only grows
    let store = stores.open().await;
    let limits = LedgerLimits { max_outbox: 3 };
    let ledger = Ledger::with_limits(store.clone(), format!("{ROOT}/spans"), limits);
    let tracer = tracer();
    start_owned_spans(&ledger, &tracer, 5).await;
    let (ledger, sender) = with_sender(port, ledger, &tracer, "p1", fast());
    let stats = sender.stats();
    let (task, stop_tx) = spawn(sender);
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
#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::zookeeper(Backend::Zookeeper)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_without_an_open_entry_and_repeated_ends(#[case] backend: Backend) {
    let stores = Stores::start(backend);
    let port = free_port();
    let (sink, running) = receiver(port);
    let store = stores.open().await;
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
    let (ledger, sender) = with_sender(port, ledger, &tracer, "p1", fast());
    let (task, stop_tx) = spawn(sender);
    sink.wait_for_spans(1, DEADLINE).await.unwrap();
    wait_outbox_empty(&ledger).await;
    stop(task, stop_tx).await;
    assert_eq!(sink.span_count(), 1);
    assert_eq!(sink.spans()[0].name, "old");
    running.shutdown().await.unwrap();
}
