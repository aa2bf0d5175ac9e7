//! The reference pipeline as separate processes (`dspans scheduler`,
//! `executor`, `merger`, `enqueue`, `status`) on SQLite and on a real
//! ZooKeeper, exporting to a real OTLP receiver in the test.

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use dspans_otlp::proto::common::v1::any_value::Value;
use dspans_otlp::proto::trace::v1::span::SpanKind;
use dspans_otlp::proto::trace::v1::status::StatusCode;
use dspans_otlp::proto::trace::v1::Span;
use dspans_test_support::{attr, string, wait_for, Backend, TestReceiver};
use rstest::rstest;

use crate::support::{gate_config, Components, Scenario};

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
    for span in &spans {
        assert_eq!(status_of(span), (StatusCode::Unset, ""), "{}", span.name);
    }
    // Two schedulers: each saved span says which started and which ended it.
    for name in ["QueueItem", "BuildSet", "Build", "Merge"] {
        for span in &names[name] {
            for key in ["dspans.started_by", "dspans.ended_by"] {
                let by = attr(&span.attributes, key);
                assert!(
                    [Some(&string("scheduler-a")), Some(&string("scheduler-b"))].contains(&by),
                    "{key} of {name}: {by:?}"
                );
            }
        }
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
    // Started by A before its death, ended by B.
    let item = names["QueueItem"][0];
    assert_eq!(
        attr(&item.attributes, "dspans.started_by"),
        Some(&string("scheduler-a"))
    );
    assert_eq!(
        attr(&item.attributes, "dspans.ended_by"),
        Some(&string("scheduler-b"))
    );
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

/// A repository for changes 1–4: change 1 conflicts with main, the others
/// merge (each touches a file of its own).
fn repository_with_changes(r: &Path) {
    git(r, &["init", "-q", "-b", "main"]);
    std::fs::write(r.join("file"), "base\n").unwrap();
    git(r, &["add", "file"]);
    git(r, &["commit", "-qm", "base"]);
    for change in 1..=4 {
        let branch = format!("changes/{change}/1");
        git(r, &["checkout", "-q", "-b", &branch, "main"]);
        let (file, text) = match change {
            1 => ("file".to_string(), "one\n"),
            n => (format!("other-{n}"), "base\n"),
        };
        std::fs::write(r.join(file), text).unwrap();
        git(r, &["add", "-A"]);
        git(r, &["commit", "-qm", &branch]);
    }
    git(r, &["checkout", "-q", "main"]);
    std::fs::write(r.join("file"), "main moved on\n").unwrap();
    git(r, &["commit", "-qam", "main moves"]);
}

/// The values the CI/CD conventions allow for a pipeline (task) run result.
const CICD_RESULTS: [&str; 6] = [
    "success",
    "failure",
    "error",
    "timeout",
    "cancellation",
    "skip",
];

fn status_of(span: &Span) -> (StatusCode, &str) {
    span.status
        .as_ref()
        .map_or((StatusCode::Unset, ""), |status| {
            (status.code(), status.message.as_str())
        })
}

/// The change number of the item whose trace `span` is in.
fn change_of(spans: &[Span], span: &Span) -> i64 {
    let item = spans
        .iter()
        .find(|s| s.name == "QueueItem" && s.trace_id == span.trace_id)
        .expect("the span's item");
    match attr(&item.attributes, "vcs.change.id") {
        Some(Value::StringValue(id)) => id.parse().unwrap(),
        other => panic!("vcs.change.id of the item: {other:?}"),
    }
}

/// The job a `Build`, `JobExecution` or `JobRun` span ran, through its
/// parents up to the `Build` span.
fn job_of<'a>(spans: &'a [Span], span: &'a Span) -> Option<&'a Value> {
    let mut at = span;
    while at.name != "Build" {
        at = spans.iter().find(|p| p.span_id == at.parent_span_id)?;
    }
    attr(&at.attributes, "job")
}

/// Change 1 conflicts, change 2's unit job times out, change 3's fails,
/// change 4 passes: each is reported so, and at the receiver exactly the
/// spans of failed work end with status ERROR, a description and
/// `error.type`; the pipeline run is a SERVER span with the CI/CD and VCS
/// conventions' attributes; every saved span says who started and ended it.
#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::zookeeper(Backend::Zookeeper)]
fn failed_work_is_reported_red_with_the_cicd_conventions(#[case] backend: Backend) {
    let repo = tempfile::tempdir().unwrap();
    let r = repo.path();
    repository_with_changes(r);
    let unit = r#"case "$DSPANS_CHANGE" in 2) sleep 30;; 3) exit 3;; esac"#;
    let mut world = World::new(backend, "independent", unit, Some(r));
    world.spawn("scheduler", "scheduler-a");
    world.spawn("executor", "executor-1");
    world.spawn("executor", "executor-2");
    world.spawn("merger", "merger-1");
    for change in 1..=4 {
        world.enqueue(change);
    }
    world.wait_idle();
    let reports = world.reports();
    let report = |n: u64| {
        reports
            .iter()
            .find(|r| r["change"]["number"] == n)
            .unwrap()
            .clone()
    };
    let unit_result = |n: u64| {
        report(n)["builds"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["job"] == "unit")
            .unwrap()["result"]
            .clone()
    };
    assert_eq!(report(1)["result"], "MERGE_CONFLICT");
    assert_eq!(report(2)["result"], "FAILURE");
    assert_eq!(unit_result(2), "TIMED_OUT");
    assert_eq!(report(3)["result"], "FAILURE");
    assert_eq!(unit_result(3), "FAILURE");
    assert_eq!(report(4)["result"], "SUCCESS");
    let spans = world.spans_until("every item's spans", |s| {
        let count = |name: &str| s.iter().filter(|s| s.name == name).count();
        // Change 1 runs no job; the others run two.
        count("QueueItem") == 4 && count("JobRun") == 6
    });
    let spans = assert_traces_whole(spans);

    // TriggerEvent and EventProcessing are roots of traces of their own.
    let in_items = spans
        .iter()
        .filter(|s| !["TriggerEvent", "EventProcessing"].contains(&s.name.as_str()));
    for span in in_items {
        let change = change_of(&spans, span);
        let unit = job_of(&spans, span) == Some(&string("unit"));
        let (failed, error_type) = match (span.name.as_str(), change) {
            ("QueueItem" | "BuildSet", 1) => (true, "MERGE_CONFLICT"),
            ("Merge" | "MergerJob", 1) => (true, "MERGE_CONFLICT"),
            ("QueueItem" | "BuildSet", 2 | 3) => (true, "FAILURE"),
            ("Build" | "JobExecution" | "JobRun", 2) if unit => (true, "TIMED_OUT"),
            ("Build" | "JobExecution" | "JobRun", 3) if unit => (true, "FAILURE"),
            _ => (false, ""),
        };
        let (code, description) = status_of(span);
        let what = format!("{} of change {change} (unit job: {unit})", span.name);
        if failed {
            assert_eq!(code, StatusCode::Error, "{what}");
            assert!(!description.is_empty(), "{what} says what failed");
            assert_eq!(
                attr(&span.attributes, "error.type"),
                Some(&string(error_type)),
                "{what}"
            );
        } else {
            assert_eq!(code, StatusCode::Unset, "{what}: {description}");
            assert_eq!(attr(&span.attributes, "error.type"), None, "{what}");
        }
        if ["QueueItem", "BuildSet", "Build", "Merge"].contains(&span.name.as_str()) {
            for key in ["dspans.started_by", "dspans.ended_by"] {
                assert_eq!(
                    attr(&span.attributes, key),
                    Some(&string("scheduler-a")),
                    "{key} of {what}"
                );
            }
        }
    }
    let names = by_name(&spans);
    let job_run_3 = names["JobRun"]
        .iter()
        .find(|s| change_of(&spans, s) == 3 && job_of(&spans, s) == Some(&string("unit")))
        .unwrap();
    assert_eq!(status_of(job_run_3).1, "exited with 3");
    assert_eq!(
        attr(&job_run_3.attributes, "process.exit.code"),
        Some(&Value::IntValue(3))
    );

    let repository_url = format!("file://{}", r.display());
    for item in &names["QueueItem"] {
        let change = change_of(&spans, item);
        assert_eq!(
            item.kind(),
            SpanKind::Server,
            "the pipeline run is a SERVER span"
        );
        let value = |key: &str| attr(&item.attributes, key).cloned();
        assert_eq!(value("cicd.pipeline.name"), Some(string("gate")));
        let Some(Value::StringValue(result)) = value("cicd.pipeline.result") else {
            panic!("cicd.pipeline.result of change {change}")
        };
        assert!(CICD_RESULTS.contains(&result.as_str()), "{result}");
        assert_eq!(result, if change == 4 { "success" } else { "failure" });
        assert!(value("cicd.pipeline.run.id").is_some());
        assert_eq!(value("vcs.repository.name"), Some(string("org/project")));
        assert_eq!(
            value("vcs.repository.url.full"),
            Some(string(&repository_url))
        );
        assert_eq!(value("vcs.change.id"), Some(string(&change.to_string())));
        assert_eq!(
            value("vcs.ref.head.name"),
            Some(string(&format!("refs/changes/{change:02}/{change}/1")))
        );
        assert_eq!(value("vcs.ref.base.name"), Some(string("main")));
        // The merger made a commit for every change but the conflicting one.
        match value("vcs.ref.head.revision") {
            Some(Value::StringValue(commit)) => {
                assert_ne!(change, 1);
                assert_eq!(commit.len(), 40, "{commit}");
            }
            other => assert!(change == 1 && other.is_none(), "change {change}: {other:?}"),
        }
    }
    for build in &names["Build"] {
        let value = |key: &str| attr(&build.attributes, key).cloned();
        assert_eq!(value("cicd.pipeline.task.name"), value("job"));
        assert_eq!(value("cicd.pipeline.task.run.id"), value("uuid"));
        let Some(Value::StringValue(result)) = value("cicd.pipeline.task.run.result") else {
            panic!("cicd.pipeline.task.run.result")
        };
        assert!(CICD_RESULTS.contains(&result.as_str()), "{result}");
        // Every build ran, so its executor kept its log.
        let Some(Value::StringValue(url)) = value("cicd.pipeline.task.run.url.full") else {
            panic!("cicd.pipeline.task.run.url.full")
        };
        let log = url.strip_prefix("file://").expect("a file:// URL");
        assert!(std::path::Path::new(log).is_file(), "{url}");
    }
    for execution in &names["JobExecution"] {
        let worker = attr(&execution.attributes, "cicd.worker.id").cloned();
        assert!(
            [Some(string("executor-1")), Some(string("executor-2"))].contains(&worker),
            "{worker:?}"
        );
        assert_eq!(
            attr(&execution.attributes, "cicd.worker.name").cloned(),
            worker
        );
    }
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

/// On a three-server ZooKeeper ensemble, the leader is killed (SIGKILL)
/// while 10 changes go through the gate, then started again: the
/// components carry on, every change is reported, and every span arrives
/// once, each trace whole.
#[test]
fn an_ensemble_leader_killed_mid_run_loses_nothing() {
    let ensemble = dspans_test_support::ZkEnsemble::start();
    let receiver = TestReceiver::start();
    let store = format!(
        "backend = \"zookeeper\"\nhosts = \"{}\"\nsession_timeout_ms = 6000",
        ensemble.hosts()
    );
    let procs = Components::start_on(&store, |store| {
        gate_config(store, &receiver.endpoint(), "", "dependent", "sleep 0.2")
    });
    let mut world = World(Scenario {
        side: receiver,
        procs,
    });
    world.spawn("scheduler", "scheduler-a");
    world.spawn("scheduler", "scheduler-b");
    world.spawn("executor", "executor-1");
    world.spawn("merger", "merger-1");
    for change in 1..=10 {
        world.enqueue(change);
    }
    // Mid-run: some changes reported, others still queued.
    wait_for(
        "3 changes reported",
        DEADLINE,
        || world.logs(),
        || (world.reports().len() >= 3).then_some(()),
    );
    let leader = ensemble.leader();
    ensemble.members[leader].kill();
    let new_leader = ensemble.leader();
    assert_ne!(new_leader, leader, "another member leads");
    ensemble.members[leader].run("start");
    world.wait_idle();
    let reports = world.reports();
    assert_eq!(reports.len(), 10, "every change reported");
    assert!(
        reports.iter().all(|r| r["result"] == "SUCCESS"),
        "{reports:?}"
    );
    let spans = world.spans_until("every item's spans", |s| {
        s.iter().filter(|s| s.name == "QueueItem").count() == 10
            && s.iter().filter(|s| s.name == "JobRun").count() == 20
    });
    let spans = assert_traces_whole(spans);
    let names = by_name(&spans);
    for (name, count) in [
        ("QueueItem", 10),
        ("BuildSet", 10),
        ("Build", 20),
        ("JobRun", 20),
    ] {
        assert_eq!(names[name].len(), count, "{name}");
    }
    eprintln!(
        "ensemble: leader {} killed and restarted; {} spans, each once",
        leader + 1,
        spans.len()
    );
}
