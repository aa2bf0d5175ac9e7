//! A scheduler, an executor and a merger against a SQLite store and a real
//! OTLP receiver: items go through a gate pipeline, each gives one trace
//! with the catalogue's parents, and a failing change resets the item
//! behind it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dspans_ledger::Ledger;
use dspans_otlp::proto::trace::v1::Span;
use dspans_pipeline::executor::Executor;
use dspans_pipeline::merger::Merger;
use dspans_pipeline::model::{ChangeRef, ItemResult, Report, StoredObject};
use dspans_pipeline::scheduler::{enqueue, Scheduler};
use dspans_pipeline::{Config, Layout};
use dspans_store::Store;
use dspans_test_support::{attr, wait_for, TestReceiver};

use crate::support::{Exporting as _, DEADLINE, ORPHAN_SWEEP};

fn config(dir: &std::path::Path, run: &str) -> Config {
    let text = format!(
        r#"
        [store]
        backend = "sqlite"
        path = "{}/dspans.db"

        [[pipeline]]
        name = "gate"
        manager = "dependent"

        [[job]]
        name = "unit"
        run = '{run}'
        timeout_s = 30

        [[job]]
        name = "lint"
        run = "true"
        timeout_s = 30

        [[project]]
        name = "org/project"
        gate = ["unit", "lint"]
        "#,
        dir.display()
    );
    text.parse().unwrap()
}

/// Runs the three components until `n` items are reported; returns the reports.
async fn run_pipeline(config: Config, otlp: &TestReceiver, changes: &[u64]) -> Vec<Report> {
    run_until_reported(config, otlp, changes, changes.len()).await
}

/// Runs the components, enqueues `changes`, and waits for `expected` reports.
async fn run_until_reported(
    config: Config,
    otlp: &TestReceiver,
    changes: &[u64],
    expected: usize,
) -> Vec<Report> {
    let store: Arc<dyn Store> = dspans_store::create(&config.store).await.unwrap();
    let layout = Layout::default();
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let wait = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };
    let mut tasks = Vec::new();
    let tracer = otlp.tracer("scheduler");
    let sender = otlp.sender(&store, &layout.spans(), &tracer, "scheduler-a");
    let ledger = Ledger::new(store.clone(), layout.spans()).with_handoff(sender.handoff());
    let (orphans, sweeper) = (ledger.clone(), tracer.clone());
    let sweep_stopped = wait(stopped.clone());
    tasks.push(tokio::spawn(async move {
        orphans
            .sweep_orphans_every(&sweeper, ORPHAN_SWEEP, sweep_stopped)
            .await
    }));
    let scheduler =
        Scheduler::new(config.clone(), store.clone(), tracer, "scheduler-a").with_ledger(ledger);
    tasks.push(tokio::spawn(scheduler.run(wait(stopped.clone()))));
    tasks.push(tokio::spawn(sender.run(wait(stopped.clone()))));
    let executor = Executor::new(
        config.clone(),
        store.clone(),
        otlp.tracer("executor"),
        "executor-1",
    );
    tasks.push(tokio::spawn(executor.run(wait(stopped.clone()))));
    let merger = Merger::new(
        config.clone(),
        store.clone(),
        otlp.tracer("merger"),
        "merger-1",
    );
    tasks.push(tokio::spawn(merger.run(wait(stopped.clone()))));

    let client = otlp.tracer("enqueue");
    for &number in changes {
        let change = ChangeRef {
            project: "org/project".into(),
            number,
            patchset: 1,
            branch: "main".into(),
        };
        enqueue(&store, &layout, &client, "gate", change)
            .await
            .unwrap();
    }
    let started = Instant::now();
    let reports = loop {
        let names = store
            .children(&layout.reports("gate"))
            .await
            .unwrap_or_default();
        if names.len() >= expected {
            let mut reports = Vec::new();
            for name in names {
                let node = store
                    .get(&format!("{}/{name}", layout.reports("gate")))
                    .await
                    .unwrap()
                    .unwrap();
                reports.push(Report::from_json(&node.data).unwrap());
            }
            break reports;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "only {} of {} items reported",
            names.len(),
            changes.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    stop.send(true).unwrap();
    for task in tasks {
        task.await.unwrap();
    }
    reports
}

fn spans_by_name(spans: &[Span]) -> HashMap<&str, Vec<&Span>> {
    let mut map: HashMap<&str, Vec<&Span>> = HashMap::new();
    for span in spans {
        map.entry(span.name.as_str()).or_default().push(span);
    }
    map
}

fn parent<'a>(spans: &'a [Span], child: &Span) -> &'a Span {
    spans
        .iter()
        .find(|s| s.span_id == child.parent_span_id && s.trace_id == child.trace_id)
        .unwrap_or_else(|| panic!("{} has no exported parent", child.name))
}

#[test]
fn three_changes_through_the_gate_give_one_trace_each() {
    let otlp = TestReceiver::start();
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let reports = runtime.block_on(run_pipeline(config(dir.path(), "true"), &otlp, &[1, 2, 3]));
    assert_eq!(reports.len(), 3);
    assert!(
        reports.iter().all(|r| r.result == ItemResult::Success),
        "{reports:?}"
    );

    // Per item: QueueItem, BuildSet, Merge, MergerJob, 2 x (Build,
    // JobExecution, JobRun); plus TriggerEvent and EventProcessing.
    let spans = otlp.wait_for_spans(36, DEADLINE);
    let ids: HashSet<&Vec<u8>> = spans.iter().map(|s| &s.span_id).collect();
    assert_eq!(ids.len(), spans.len(), "every span exported once");
    let by_name = spans_by_name(&spans);
    let count = |name: &str| by_name.get(name).map_or(0, Vec::len);
    for (name, want) in [
        ("QueueItem", 3),
        ("BuildSet", 3),
        ("Merge", 3),
        ("MergerJob", 3),
        ("Build", 6),
        ("JobExecution", 6),
        ("JobRun", 6),
        ("TriggerEvent", 3),
        ("EventProcessing", 3),
    ] {
        assert_eq!(count(name), want, "{name} spans");
    }
    let mut traces = BTreeMap::new();
    for item in &by_name["QueueItem"] {
        assert!(item.parent_span_id.is_empty(), "QueueItem is a root");
        traces.insert(item.trace_id.clone(), item);
    }
    let within = |child: &Span, parent: &Span| {
        assert!(
            child.start_time_unix_nano >= parent.start_time_unix_nano
                && child.end_time_unix_nano <= parent.end_time_unix_nano,
            "{} lies within {}",
            child.name,
            parent.name
        );
    };
    for (name, parent_name) in [
        ("BuildSet", "QueueItem"),
        ("Merge", "BuildSet"),
        ("Build", "BuildSet"),
        ("MergerJob", "Merge"),
        ("JobExecution", "Build"),
        ("JobRun", "JobExecution"),
    ] {
        for span in &by_name[name] {
            let p = parent(&spans, span);
            assert_eq!(p.name, parent_name, "parent of {name}");
            assert!(
                traces.contains_key(&span.trace_id),
                "{name} is in an item's trace"
            );
            within(span, p);
        }
    }
    for item in &by_name["QueueItem"] {
        for key in [
            "zuul_event_id",
            "zuul_pipeline",
            "ref_project",
            "ref_number",
            "ref_patchset",
            "cicd.pipeline.name",
            "cicd.pipeline.result",
        ] {
            assert!(attr(&item.attributes, key).is_some(), "QueueItem has {key}");
        }
        assert_eq!(
            item.links.len(),
            1,
            "QueueItem links to its event processing"
        );
    }
    for build in &by_name["Build"] {
        for key in [
            "uuid",
            "job",
            "buildset_uuid",
            "zuul_event_id",
            "result",
            "cicd.pipeline.task.name",
            "cicd.pipeline.task.run.result",
        ] {
            assert!(attr(&build.attributes, key).is_some(), "Build has {key}");
        }
    }
}

#[test]
fn a_failing_change_ahead_resets_the_item_behind() {
    let otlp = TestReceiver::start();
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    // Change 1 fails its unit job (slowly, so change 2 is already building
    // on top of it); change 2 passes.
    let run = r#"if [ "$DSPANS_CHANGE" = 1 ]; then sleep 1; exit 1; fi"#;
    let reports = runtime.block_on(run_pipeline(config(dir.path(), run), &otlp, &[1, 2]));
    let result = |n: u64| {
        reports
            .iter()
            .find(|r| r.change.number == n)
            .unwrap()
            .result
    };
    assert_eq!(result(1), ItemResult::Failure);
    assert_eq!(result(2), ItemResult::Success);

    let spans = wait_for("both QueueItem spans", DEADLINE, String::new, || {
        let spans = otlp.spans();
        (spans.iter().filter(|s| s.name == "QueueItem").count() == 2).then_some(spans)
    });
    let buildsets: Vec<&Span> = spans.iter().filter(|s| s.name == "BuildSet").collect();
    let reset = buildsets
        .iter()
        .find(|s| {
            s.attributes
                .iter()
                .any(|kv| kv.key == "result" && format!("{:?}", kv.value).contains("RESET"))
        })
        .expect("the old build set of change 2 ends with RESET");
    let replacement = buildsets
        .iter()
        .find(|s| s.links.iter().any(|l| l.span_id == reset.span_id))
        .expect("the new build set links to the old one");
    assert_eq!(
        replacement.trace_id, reset.trace_id,
        "both build sets are in change 2's trace"
    );
    let link = replacement
        .links
        .iter()
        .find(|l| l.span_id == reset.span_id)
        .unwrap();
    assert_eq!(link.attributes[0].key, "previous_buildset");
}

/// Objects written before tracing was enabled carry no span data: they are
/// processed like any other, their spans degrade to new root traces, and
/// nothing fails.
#[test]
fn objects_without_span_data_are_processed_normally() {
    use dspans_pipeline::model::{BuildSet, BuildSetState, ChangeQueue, ItemState, QueueItem};
    use dspans_store::CreateMode;

    let otlp = TestReceiver::start();
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let config = config(dir.path(), "true");
    runtime.block_on(async {
        let store: Arc<dyn Store> = dspans_store::create(&config.store).await.unwrap();
        let layout = Layout::default();
        // An item and build set as an older, untraced version wrote them.
        let item_uuid = dspans_pipeline::model::new_uuid();
        let buildset = BuildSet {
            uuid: dspans_pipeline::model::new_uuid(),
            item_uuid: item_uuid.clone(),
            pipeline: "gate".into(),
            zuul_event_id: "old-event".into(),
            state: BuildSetState::New,
            items_ahead: vec![],
            merge_request: None,
            merge_request_id: None,
            merge_result: None,
            merge_commit: None,
            jobs: vec!["unit".into(), "lint".into()],
            builds: Default::default(),
            previous_buildset: None,
            result: None,
            started_by: None,
            span_info: None,
        };
        let item = QueueItem {
            uuid: item_uuid.clone(),
            pipeline: "gate".into(),
            queue: "default".into(),
            change: ChangeRef { project: "org/project".into(), number: 7, patchset: 1, branch: "main".into() },
            zuul_event_id: "old-event".into(),
            enqueue_time: durable_spans::Timestamp::now(),
            state: ItemState::Queued,
            current_buildset: buildset.uuid.clone(),
            previous_buildset: None,
            resets: 0,
            result: None,
            report_time: None,
            started_by: None,
            span_info: None,
        };
        let queue = ChangeQueue { pipeline: "gate".into(), name: "default".into(), items: vec![item_uuid.clone()] };
        let create = |path: String, data: Vec<u8>| {
            let store = store.clone();
            async move { store.create_all(&path, &data).await.unwrap() }
        };
        create(layout.change_queue("gate", "default"), queue.to_json().unwrap()).await;
        // Strip the span keys entirely, as an old writer would not have them.
        let strip = |json: Vec<u8>| {
            let mut value: serde_json::Value = serde_json::from_slice(&json).unwrap();
            value.as_object_mut().unwrap().remove("span_info");
            serde_json::to_vec(&value).unwrap()
        };
        create(layout.item("gate", &item_uuid), strip(item.to_json().unwrap())).await;
        create(layout.buildset("gate", &item_uuid, &buildset.uuid), strip(buildset.to_json().unwrap())).await;
        create(layout.builds("gate", &item_uuid, &buildset.uuid), Vec::new()).await;
        // And a trigger event without a span context.
        let event = br#"{"zuul_event_id":"untraced","pipeline":"gate","change":{"project":"org/project","number":8,"patchset":1,"branch":"main"},"timestamp":1700000000000000000}"#;
        store.create_all(&layout.trigger_events(), b"").await.unwrap();
        store.create(&format!("{}/event-", layout.trigger_events()), event, CreateMode::PersistentSequential).await.unwrap();
        let _ = store.close().await;
    });
    let reports = runtime.block_on(run_until_reported(config, &otlp, &[9], 3));
    let result = |n: u64| {
        reports
            .iter()
            .find(|r| r.change.number == n)
            .map(|r| r.result)
    };
    assert_eq!(result(7), Some(ItemResult::Success), "{reports:?}");
    assert_eq!(result(8), Some(ItemResult::Success), "{reports:?}");
    assert_eq!(result(9), Some(ItemResult::Success), "{reports:?}");
}

/// An item one of whose objects does not decode is set aside instead of
/// failing its pipeline on every pass: it is reported ERROR, the object's
/// text is kept for inspection, and the change behind it goes through.
#[test]
fn an_item_whose_build_set_does_not_decode_is_set_aside_and_reported() {
    use dspans_pipeline::model::{
        BuildCompleted, BuildResult, ChangeQueue, ItemState, QueueItem, ResultEvent,
    };
    use dspans_store::recipes::EventQueue;

    let otlp = TestReceiver::start();
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap();
    let config = config(dir.path(), "true");
    let layout = Layout::default();
    let bad = dspans_pipeline::model::new_uuid();
    let buildset_uuid = dspans_pipeline::model::new_uuid();
    let garbage = b"{\"uuid\": \"half-written".to_vec();
    runtime.block_on(async {
        let store: Arc<dyn Store> = dspans_store::create(&config.store).await.unwrap();
        let item = QueueItem {
            uuid: bad.clone(),
            pipeline: "gate".into(),
            queue: "default".into(),
            change: ChangeRef {
                project: "org/project".into(),
                number: 7,
                patchset: 1,
                branch: "main".into(),
            },
            zuul_event_id: "event-7".into(),
            enqueue_time: durable_spans::Timestamp::now(),
            state: ItemState::Queued,
            current_buildset: buildset_uuid.clone(),
            previous_buildset: None,
            resets: 0,
            result: None,
            report_time: None,
            started_by: None,
            span_info: None,
        };
        let queue = ChangeQueue {
            pipeline: "gate".into(),
            name: "default".into(),
            items: vec![bad.clone()],
        };
        for (path, data) in [
            (
                layout.change_queue("gate", "default"),
                queue.to_json().unwrap(),
            ),
            (layout.item("gate", &bad), item.to_json().unwrap()),
            (
                layout.buildset("gate", &bad, &buildset_uuid),
                garbage.clone(),
            ),
            // A build no item owns any more, undecodable, with a result
            // waiting for it: the result is dropped, not retried forever.
            (
                layout.build("gate", "gone", "gone-set", "gone-build"),
                garbage.clone(),
            ),
        ] {
            store.create_all(&path, &data).await.unwrap();
        }
        let result = ResultEvent::BuildCompleted(BuildCompleted {
            build_uuid: "gone-build".into(),
            buildset_uuid: "gone-set".into(),
            item_uuid: "gone".into(),
            job: "unit".into(),
            result: BuildResult::Success,
            exit_code: Some(0),
            start_time: durable_spans::Timestamp::now(),
            end_time: durable_spans::Timestamp::now(),
            executor: "executor-0".into(),
            log_url: None,
        });
        EventQueue::new(store.clone(), layout.result_events("gate"))
            .put(&result.to_json().unwrap())
            .await
            .unwrap();
        let _ = store.close().await;
    });
    let reports = runtime.block_on(run_until_reported(config.clone(), &otlp, &[9], 2));
    let report = |n: u64| reports.iter().find(|r| r.change.number == n).unwrap();
    assert_eq!(report(7).result, ItemResult::Error, "{reports:?}");
    assert!(
        report(7).message.contains("set aside"),
        "{}",
        report(7).message
    );
    assert_eq!(report(7).zuul_event_id, "event-7");
    assert_eq!(report(9).result, ItemResult::Success, "{reports:?}");
    runtime.block_on(async {
        let store: Arc<dyn Store> = dspans_store::open(&config.store).await.unwrap();
        let kept = store
            .get(&layout.set_aside("gate", &bad))
            .await
            .unwrap()
            .expect("the undecodable object is kept");
        let kept: serde_json::Value = serde_json::from_slice(&kept.data).unwrap();
        assert_eq!(
            kept["path"],
            layout.buildset("gate", &bad, &buildset_uuid).as_str()
        );
        assert_eq!(kept["data"], String::from_utf8(garbage).unwrap().as_str());
        assert!(store
            .exists(&layout.item("gate", &bad))
            .await
            .unwrap()
            .is_none());
        let results = EventQueue::new(store.clone(), layout.result_events("gate"));
        assert!(
            results.read().await.unwrap().is_empty(),
            "the result of the undecodable build was dropped"
        );
        let _ = store.close().await;
    });
}
