//! The reference pipeline as separate processes (`dspans scheduler`,
//! `executor`, `merger`, `enqueue`, `status`) on SQLite and on a real
//! ZooKeeper, exporting to a real OTLP receiver in the test.

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use dspans_otlp::proto::common::v1::any_value::Value;
use dspans_otlp::proto::trace::v1::Span;
use dspans_test_support::{attr, string, wait_for, Backend, TestReceiver};
use rstest::rstest;

use crate::support::{Components, Scenario};

const DEADLINE: Duration = Duration::from_secs(90);

/// One test's world: the component processes (killed when dropped) and
/// their config, maybe a ZooKeeper server, and beside them the receiver
/// they export to. Each starts half a dozen processes (and ZooKeeper): the
/// scenarios take turns, two at a time.
struct World(Scenario<TestReceiver>);

impl Deref for World {
    type Target = Scenario<TestReceiver>;

    fn deref(&self) -> &Scenario<TestReceiver> {
        &self.0
    }
}

impl DerefMut for World {
    fn deref_mut(&mut self) -> &mut Scenario<TestReceiver> {
        &mut self.0
    }
}

impl World {
    fn new(backend: Backend, manager: &str, unit: &str, repo: Option<&Path>) -> World {
        World::with_session_timeout(backend, manager, unit, repo, 3000)
    }

    fn with_session_timeout(
        backend: Backend,
        manager: &str,
        unit: &str,
        repo: Option<&Path>,
        session_ms: u64,
    ) -> World {
        let receiver = TestReceiver::start();
        let repo = repo
            .map(|r| format!("repo = \"{}\"\n", r.display()))
            .unwrap_or_default();
        let procs = Components::start(backend, session_ms, session_ms.max(4000), |store| {
            format!(
                r#"[store]
{store}

[tracing]
enabled = true
protocol = "grpc"
endpoint = "{endpoint}"
service_name = "dspans-test"

[[pipeline]]
name = "gate"
manager = "{manager}"

[[job]]
name = "unit"
run = '{unit}'
timeout_s = 2

[[job]]
name = "lint"
run = "true"

[[project]]
name = "org/project"
{repo}gate = ["unit", "lint"]
"#,
                endpoint = receiver.endpoint(),
            )
        });
        World(Scenario {
            side: receiver,
            procs,
        })
    }

    fn wait_idle(&self) {
        self.procs.wait_idle(DEADLINE.as_secs());
    }

    /// Waits until `cond` holds for the receiver's spans.
    fn spans_until(&self, what: &str, cond: impl Fn(&[Span]) -> bool) -> Vec<Span> {
        self.side.spans_until(what, DEADLINE, || self.logs(), cond)
    }

    /// Waits for a marker file named `prefix…` in the directory.
    fn wait_for_file(&self, prefix: &str) {
        wait_for(
            &format!("a {prefix}* file"),
            DEADLINE,
            || self.logs(),
            || (!self.files(|n| n.starts_with(prefix)).is_empty()).then_some(()),
        );
    }
}

fn by_name(spans: &[Span]) -> HashMap<&str, Vec<&Span>> {
    let mut map: HashMap<&str, Vec<&Span>> = HashMap::new();
    for span in spans {
        map.entry(span.name.as_str()).or_default().push(span);
    }
    map
}

/// Every span once, every parent present, child within parent, and the
/// catalogue's parent names; returns the spans, each once.
fn assert_traces_whole(spans: Vec<Span>) -> Vec<Span> {
    // A span may arrive twice only as a resend of the same data (an
    // exporter killed between the collector's answer and deleting the
    // outbox entry); a second *end* (other end time or attributes) fails.
    let mut first: HashMap<(&Vec<u8>, &Vec<u8>), &Span> = HashMap::new();
    let mut unique = Vec::new();
    let mut resent = 0;
    for span in &spans {
        match first.insert((&span.trace_id, &span.span_id), span) {
            None => unique.push(span.clone()),
            Some(earlier) => {
                assert_eq!(earlier, span, "{} was ended twice", span.name);
                resent += 1;
            }
        }
    }
    if resent > 0 {
        eprintln!(
            "{resent} span(s) resent after a kill (same data; dspans collector writes them once)"
        );
    }
    let spans = &unique[..];
    let parents = [
        ("BuildSet", "QueueItem"),
        ("Merge", "BuildSet"),
        ("Build", "BuildSet"),
        ("MergerJob", "Merge"),
        ("JobExecution", "Build"),
        ("JobRun", "JobExecution"),
    ];
    for span in spans {
        if span.parent_span_id.is_empty() {
            assert!(
                ["QueueItem", "TriggerEvent", "EventProcessing"].contains(&span.name.as_str()),
                "{} is a root",
                span.name
            );
            continue;
        }
        let parent = spans
            .iter()
            .find(|p| p.span_id == span.parent_span_id && p.trace_id == span.trace_id)
            .unwrap_or_else(|| panic!("the parent of {} is missing", span.name));
        if let Some((_, want)) = parents.iter().find(|(child, _)| *child == span.name) {
            assert_eq!(parent.name, *want, "parent of {}", span.name);
        }
        assert!(
            span.start_time_unix_nano >= parent.start_time_unix_nano
                && span.end_time_unix_nano <= parent.end_time_unix_nano,
            "{} lies within {}",
            span.name,
            parent.name
        );
    }
    unique
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::zookeeper(Backend::Zookeeper)]
fn gate_three_changes(#[case] backend: Backend) {
    let mut world = World::new(backend, "dependent", "sleep 0.1", None);
    world.spawn("scheduler", "scheduler-a");
    world.spawn("scheduler", "scheduler-b");
    world.spawn("executor", "executor-1");
    world.spawn("merger", "merger-1");
    for change in 1..=3 {
        world.enqueue(change);
    }
    world.wait_idle();
    let reports = world.reports();
    assert_eq!(reports.len(), 3);
    assert!(
        reports.iter().all(|r| r["result"] == "SUCCESS"),
        "{reports:?}"
    );
    world.spans_until("3 QueueItem spans", |s| {
        s.iter().filter(|s| s.name == "QueueItem").count() == 3
    });
    let spans = world.spans_until("every span", |s| {
        s.iter().filter(|s| s.name == "JobRun").count() == 6
    });
    let spans = assert_traces_whole(spans);
    let names = by_name(&spans);
    for (name, count) in [
        ("QueueItem", 3),
        ("BuildSet", 3),
        ("Merge", 3),
        ("MergerJob", 3),
        ("Build", 6),
        ("JobExecution", 6),
        ("JobRun", 6),
    ] {
        assert_eq!(names[name].len(), count, "{name}");
    }
    for item in &names["QueueItem"] {
        assert_eq!(
            attr(&item.attributes, "cicd.pipeline.result"),
            Some(&string("success"))
        );
        assert!(attr(&item.attributes, "zuul_event_id").is_some());
    }
    for build in &names["Build"] {
        assert_eq!(attr(&build.attributes, "result"), Some(&string("SUCCESS")));
    }
}

/// Scheduler A starts the item and its builds, dies by SIGKILL; B, started
/// afterwards, finishes it: one trace, the QueueItem span ended once.
#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::zookeeper(Backend::Zookeeper)]
fn handover_after_sigkill(#[case] backend: Backend) {
    let unit = r#"touch "$DSPANS_TEST_MARKERS/building-$DSPANS_BUILD"; sleep 1"#;
    let mut world = World::new(backend, "dependent", unit, None);
    world.spawn("scheduler", "scheduler-a");
    world.spawn("executor", "executor-1");
    world.spawn("merger", "merger-1");
    world.enqueue(1);
    world.wait_for_file("building-");
    world.kill("scheduler-a");
    world.spawn("scheduler", "scheduler-b");
    world.wait_idle();
    assert_eq!(world.reports()[0]["result"], "SUCCESS");
    let spans = world.spans_until("the item's spans", |s| {
        let count = |name: &str| s.iter().filter(|s| s.name == name).count();
        count("QueueItem") == 1
            && count("Merge") == 1
            && ["Build", "JobExecution", "JobRun"]
                .iter()
                .all(|name| count(name) == 2)
    });
    let spans = assert_traces_whole(spans);
    let names = by_name(&spans);
    assert_eq!(names["QueueItem"].len(), 1);
    assert_eq!(names["BuildSet"].len(), 1);
    let trace = &names["QueueItem"][0].trace_id;
    for name in ["BuildSet", "Merge", "Build", "JobExecution", "JobRun"] {
        assert!(
            names[name].iter().all(|s| &s.trace_id == trace),
            "{name} in the item's trace"
        );
    }
    let log_b = world.log("scheduler-b");
    assert!(
        log_b.contains("reported"),
        "scheduler B reported the item:\n{log_b}"
    );
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::zookeeper(Backend::Zookeeper)]
fn gate_reset_links_the_new_buildset_to_the_old(#[case] backend: Backend) {
    let unit = r#"if [ "$DSPANS_CHANGE" = 1 ]; then sleep 0.5; exit 1; fi"#;
    let mut world = World::new(backend, "dependent", unit, None);
    world.spawn("scheduler", "scheduler-a");
    world.spawn("executor", "executor-1");
    world.spawn("executor", "executor-2");
    world.spawn("merger", "merger-1");
    world.enqueue(1);
    world.enqueue(2);
    world.wait_idle();
    let reports = world.reports();
    let result =
        |n: u64| reports.iter().find(|r| r["change"]["number"] == n).unwrap()["result"].clone();
    assert_eq!(result(1), "FAILURE");
    assert_eq!(result(2), "SUCCESS");
    world.spans_until("both items", |s| {
        s.iter().filter(|s| s.name == "QueueItem").count() == 2
    });
    let spans = world.spans_until("the build sets", |s| {
        s.iter().filter(|s| s.name == "BuildSet").count() == 3
    });
    let spans = assert_traces_whole(spans);
    let buildsets: Vec<&Span> = spans.iter().filter(|s| s.name == "BuildSet").collect();
    let old = buildsets
        .iter()
        .find(|s| attr(&s.attributes, "result") == Some(&string("RESET")))
        .expect("a RESET build set");
    let new = buildsets
        .iter()
        .find(|s| s.links.iter().any(|l| l.span_id == old.span_id))
        .expect("a build set linked to it");
    assert_eq!(new.links[0].attributes[0].key, "previous_buildset");
    assert_eq!(new.trace_id, old.trace_id);
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::zookeeper(Backend::Zookeeper)]
fn merge_conflict_and_timeout_are_reported_and_traced(#[case] backend: Backend) {
    let repo = tempfile::tempdir().unwrap();
    let r = repo.path();
    git(r, &["init", "-q", "-b", "main"]);
    std::fs::write(r.join("file"), "base\n").unwrap();
    git(r, &["add", "file"]);
    git(r, &["commit", "-qm", "base"]);
    for (branch, text) in [("changes/1/1", "one\n"), ("changes/2/1", "base\n")] {
        git(r, &["checkout", "-q", "-b", branch, "main"]);
        std::fs::write(
            r.join(if branch.contains("/2/") {
                "other"
            } else {
                "file"
            }),
            text,
        )
        .unwrap();
        git(r, &["add", "-A"]);
        git(r, &["commit", "-qm", branch]);
    }
    git(r, &["checkout", "-q", "main"]);
    std::fs::write(r.join("file"), "main moved on\n").unwrap();
    git(r, &["commit", "-qam", "main moves"]);

    // Change 1 conflicts with main; change 2 merges but its unit job
    // outlives the 2 s timeout.
    let unit = r#"if [ "$DSPANS_CHANGE" = 2 ]; then sleep 30; fi"#;
    let mut world = World::new(backend, "independent", unit, Some(r));
    world.spawn("scheduler", "scheduler-a");
    world.spawn("executor", "executor-1");
    world.spawn("executor", "executor-2");
    world.spawn("merger", "merger-1");
    world.enqueue(1);
    world.enqueue(2);
    world.wait_idle();
    let reports = world.reports();
    let report = |n: u64| {
        reports
            .iter()
            .find(|r| r["change"]["number"] == n)
            .unwrap()
            .clone()
    };
    assert_eq!(report(1)["result"], "MERGE_CONFLICT");
    assert_eq!(report(2)["result"], "FAILURE");
    let unit_build = report(2)["builds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["job"] == "unit")
        .unwrap()
        .clone();
    assert_eq!(unit_build["result"], "TIMED_OUT");
    let spans = world.spans_until("both items", |s| {
        s.iter().filter(|s| s.name == "QueueItem").count() == 2
    });
    let spans = assert_traces_whole(spans);
    let merges: Vec<&Value> = spans
        .iter()
        .filter(|s| s.name == "Merge")
        .filter_map(|s| attr(&s.attributes, "result"))
        .collect();
    assert!(merges.contains(&&string("MERGE_CONFLICT")), "{merges:?}");
    assert!(spans
        .iter()
        .any(|s| s.name == "Build" && attr(&s.attributes, "result") == Some(&string("TIMED_OUT"))));
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::zookeeper(Backend::Zookeeper)]
fn a_build_whose_executor_is_killed_is_retried_and_its_span_ends_once(#[case] backend: Backend) {
    let unit = r#"touch "$DSPANS_TEST_MARKERS/running-$DSPANS_BUILD"; sleep 1"#;
    let mut world = World::new(backend, "independent", unit, None);
    world.spawn("scheduler", "scheduler-a");
    world.spawn("merger", "merger-1");
    world.spawn("executor", "executor-1");
    world.enqueue(1);
    world.wait_for_file("running-");
    world.kill("executor-1");
    world.spawn("executor", "executor-2");
    world.wait_idle();
    assert_eq!(world.reports()[0]["result"], "SUCCESS");
    let spans = world.spans_until("the item", |s| s.iter().any(|s| s.name == "QueueItem"));
    let spans = assert_traces_whole(spans);
    let builds: Vec<&Span> = spans.iter().filter(|s| s.name == "Build").collect();
    assert_eq!(builds.len(), 2, "one Build span per job, each ended once");
    assert!(builds
        .iter()
        .all(|b| attr(&b.attributes, "result") == Some(&string("SUCCESS"))));
}

/// A scheduler killed and restarted under the same name carries on at once:
/// the lock its dead session still holds does not make it wait for the
/// (here 60 s) session timeout.
#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::zookeeper(Backend::Zookeeper)]
fn restart_under_the_same_name(#[case] backend: Backend) {
    let unit = r#"touch "$DSPANS_TEST_MARKERS/building-$DSPANS_BUILD"; sleep 1"#;
    let mut world = World::with_session_timeout(backend, "dependent", unit, None, 60_000);
    world.spawn("scheduler", "scheduler-a");
    world.spawn("executor", "executor-1");
    world.spawn("merger", "merger-1");
    world.enqueue(1);
    world.wait_for_file("building-");
    world.kill("scheduler-a");
    let restarted = Instant::now();
    world.respawn("scheduler-a");
    let out = world.dspans(&["status", "--wait-idle", "30"]);
    assert!(
        out.status.success(),
        "not idle 30 s after the restart (session timeout 60 s)\n{}",
        world.logs()
    );
    assert!(restarted.elapsed() < Duration::from_secs(30));
    assert_eq!(world.reports()[0]["result"], "SUCCESS");
    // The Merge span that scheduler-a ended before it was killed is sent
    // by its successor at once, not after the dead session's 60 s.
    let spans = world.spans_until("the item", |s| {
        ["QueueItem", "BuildSet", "Merge", "MergerJob"]
            .iter()
            .all(|name| s.iter().any(|s| &s.name == name))
    });
    assert!(restarted.elapsed() < Duration::from_secs(30));
    assert_traces_whole(spans);
}

/// An executor killed and restarted under the same name hands its dead
/// predecessor's build back at once (session timeout here: 60 s).
#[test]
fn an_executor_restarted_under_its_name_retries_its_build_at_once() {
    let unit = r#"touch "$DSPANS_TEST_MARKERS/running-$DSPANS_BUILD"; sleep 1"#;
    let mut world = World::with_session_timeout(Backend::Sqlite, "independent", unit, None, 60_000);
    world.spawn("scheduler", "scheduler-a");
    world.spawn("merger", "merger-1");
    world.spawn("executor", "executor-1");
    world.enqueue(1);
    world.wait_for_file("running-");
    world.kill("executor-1");
    world.respawn("executor-1");
    let out = world.dspans(&["status", "--wait-idle", "30"]);
    assert!(
        out.status.success(),
        "not idle 30 s after the restart (session timeout 60 s)\n{}",
        world.logs()
    );
    assert_eq!(world.reports()[0]["result"], "SUCCESS");
}
