//! Head sampling as components run it: `[tracing] sampler` decides once,
//! at the root of an item's trace; the decision is saved with the item's
//! span info and honoured by every process, so a trace is exported whole or
//! not at all, and unsampled items write no span entries to the store.

use std::collections::HashSet;

use dspans_otlp::proto::trace::v1::Span;
use dspans_test_support::{Backend, TestReceiver};
use durable_spans::{FinishedSpan, SpanInfo};
use serde::Deserialize;

use crate::support::{gate_config, Components, Scenario};

/// An item's saved span, as stored.
#[derive(Deserialize)]
struct SpanOf {
    #[serde(default)]
    span_info: Option<SpanInfo>,
}

/// An open span entry of the ledger, as stored.
#[derive(Deserialize)]
struct OpenEntry {
    span: SpanInfo,
}

/// An ended entry waiting for a sender, as stored.
#[derive(Deserialize)]
struct EndedEntry {
    finished: FinishedSpan,
}

fn start(sampler: &str) -> Scenario<TestReceiver> {
    let receiver = TestReceiver::start();
    let procs = Components::start(Backend::Sqlite, 3000, 4000, |store| {
        gate_config(store, &receiver.endpoint(), sampler, "independent", "true")
    });
    Scenario {
        side: receiver,
        procs,
    }
}

/// `dspans store get PATH`, decoded as `T`.
fn get<T: for<'de> Deserialize<'de>>(world: &Scenario<TestReceiver>, path: &str) -> T {
    let out = world.dspans(&["store", "get", path]);
    assert!(out.status.success(), "store get {path}: {out:?}");
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `dspans store ls PATH`: the children's names.
fn children(world: &Scenario<TestReceiver>, path: &str) -> Vec<String> {
    let out = world.dspans(&["store", "ls", path]);
    assert!(out.status.success(), "store ls {path}: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn a_ratio_sampler_exports_whole_traces_and_tracks_only_sampled_items() {
    const CHANGES: u64 = 40;
    // Not parent-based: every span is decided by its trace id, the same
    // way on every host.
    let mut world = start("sampler = \"traceidratio\"\nsampler_arg = 0.5");
    world.spawn("scheduler", "scheduler-a");
    for change in 1..=CHANGES {
        world.enqueue(change);
    }
    // No executor or merger yet: the items wait with their spans open.
    let items_dir = "/dspans/pipelines/gate/items";
    dspans_test_support::wait_for(
        "every item enqueued",
        std::time::Duration::from_secs(60),
        || world.logs(),
        || (children(&world, items_dir).len() == CHANGES as usize).then_some(()),
    );
    let items: Vec<SpanInfo> = children(&world, items_dir)
        .iter()
        .map(|uuid| {
            get::<SpanOf>(&world, &format!("{items_dir}/{uuid}"))
                .span_info
                .expect("an item's span")
        })
        .collect();
    let sampled: HashSet<u128> = items
        .iter()
        .filter(|info| info.trace_flags & 1 == 1)
        .map(|info| info.trace_id)
        .collect();
    assert!(
        !sampled.is_empty() && sampled.len() < items.len(),
        "a ratio of 0.5 samples some of {} items: {}",
        items.len(),
        sampled.len()
    );
    let entries_dir = "/dspans/spans/entries";
    let entries = children(&world, entries_dir);
    assert!(!entries.is_empty(), "sampled items' spans are tracked");
    for key in &entries {
        let out = world.dspans(&["store", "get", &format!("{entries_dir}/{key}")]);
        if !out.status.success() || out.stdout.is_empty() {
            continue; // an ended span's entry, sent and deleted since the listing
        }
        let (name, trace_id, flags) = match serde_json::from_slice::<OpenEntry>(&out.stdout) {
            Ok(OpenEntry { span }) => (span.name, span.trace_id, span.trace_flags),
            Err(_) => {
                let entry: EndedEntry = serde_json::from_slice(&out.stdout)
                    .unwrap_or_else(|e| panic!("entry {key}: {e}"));
                let finished = entry.finished;
                (finished.name, finished.trace_id, finished.trace_flags)
            }
        };
        assert_eq!(
            flags & 1,
            1,
            "an entry of an unsampled span: {name} {trace_id:x}"
        );
        // A TriggerEvent is the root of a trace of its own, sampled on its own.
        if name != "TriggerEvent" {
            assert!(
                sampled.contains(&trace_id),
                "an entry outside the sampled items' traces: {name} {trace_id:x}"
            );
        }
    }

    world.spawn("executor", "executor-1");
    world.spawn("merger", "merger-1");
    world.procs.wait_idle(120);
    let reports = world.reports();
    assert_eq!(reports.len(), CHANGES as usize);
    assert!(reports.iter().all(|r| r["result"] == "SUCCESS"));
    // Per sampled item: QueueItem, BuildSet, Merge, MergerJob and two of
    // Build, JobExecution, JobRun.
    let per_item = 10;
    world.side.spans_until(
        "every sampled item's spans",
        std::time::Duration::from_secs(90),
        || world.logs(),
        |spans| in_items(spans).count() >= per_item * sampled.len(),
    );
    world.procs.terminate_all();
    let spans: Vec<Span> = world.side.spans();
    let mut traces: std::collections::HashMap<u128, Vec<&Span>> = Default::default();
    for span in in_items(&spans) {
        let trace = u128::from_be_bytes(span.trace_id.clone().try_into().unwrap());
        traces.entry(trace).or_default().push(span);
    }
    let exported: HashSet<u128> = traces.keys().copied().collect();
    assert_eq!(exported, sampled, "exactly the sampled items' traces");
    for (trace, spans) in &traces {
        let mut names: Vec<&str> = spans.iter().map(|s| s.name.as_str()).collect();
        names.sort_unstable();
        names.dedup_by(|a, b| a == b && *a != "Build" && *a != "JobExecution" && *a != "JobRun");
        assert_eq!(
            names,
            [
                "Build",
                "Build",
                "BuildSet",
                "JobExecution",
                "JobExecution",
                "JobRun",
                "JobRun",
                "Merge",
                "MergerJob",
                "QueueItem"
            ],
            "trace {trace:x} is whole"
        );
    }
}

/// The spans of items' traces (not TriggerEvent and EventProcessing,
/// roots of traces of their own, sampled on their own).
fn in_items(spans: &[Span]) -> impl Iterator<Item = &Span> {
    spans
        .iter()
        .filter(|s| !["TriggerEvent", "EventProcessing"].contains(&s.name.as_str()))
}

#[test]
fn always_off_exports_nothing_and_the_pipeline_works() {
    let mut world = start("sampler = \"always_off\"");
    world.spawn("scheduler", "scheduler-a");
    world.spawn("executor", "executor-1");
    world.spawn("merger", "merger-1");
    for change in 1..=3 {
        world.enqueue(change);
    }
    world.procs.wait_idle(60);
    let reports = world.reports();
    assert_eq!(reports.len(), 3);
    assert!(reports.iter().all(|r| r["result"] == "SUCCESS"));
    assert!(children(&world, "/dspans/spans/entries").is_empty());
    // Stopped cleanly, the components have flushed whatever they had.
    world.procs.terminate_all();
    let names: Vec<String> = world.side.spans().into_iter().map(|s| s.name).collect();
    assert!(names.is_empty(), "nothing exported: {names:?}");
}
