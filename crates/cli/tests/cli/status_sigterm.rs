//! `dspans status` shows each build of a queued item, and every component
//! stops cleanly on SIGTERM: exit status 0 within 10 s, the work in hand
//! handed back, the pipeline lock released for another scheduler at once.
//! Components run as OS processes exporting to a real OTLP receiver, on
//! SQLite and on a real ZooKeeper.

use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use dspans_otlp::proto::trace::v1::{status::StatusCode, Span};
use dspans_test_support::process::{send_signal, wait_for_exit};
use dspans_test_support::{wait_for, Backend, TestReceiver};
use rstest::rstest;
use serde_json::Value;

use crate::support::{Components, Scenario};

const DEADLINE: Duration = Duration::from_secs(60);
/// What a component may take to stop after SIGTERM.
const STOP_LIMIT: Duration = Duration::from_secs(10);
/// Long enough that a lock released only by its session expiring would
/// make the takeover assertions fail.
const SESSION_MS: u64 = 60_000;

/// The component processes (killed when dropped) and their config, maybe
/// ZooKeeper, and beside them the receiver they export to. Each starts
/// several processes (and ZooKeeper): the scenarios take turns, two at a
/// time.
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
    /// Job `unit` marks its start with a `running-<build>` file, then
    /// waits for a `release` file; job `lint` succeeds at once.
    fn new(backend: Backend) -> World {
        let receiver = TestReceiver::start();
        let unit = r#"touch "$DSPANS_TEST_MARKERS/running-$DSPANS_BUILD-$PPID"; while [ ! -e "$DSPANS_TEST_MARKERS/release" ]; do sleep 0.05; done"#;
        let procs = Components::start(backend, SESSION_MS, SESSION_MS, |store| {
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
manager = "dependent"

[[job]]
name = "unit"
run = '{unit}'
timeout_s = 120

[[job]]
name = "lint"
run = "true"

[[project]]
name = "org/project"
gate = ["unit", "lint"]
"#,
                endpoint = receiver.endpoint(),
            )
        });
        World(Scenario {
            side: receiver,
            procs,
        })
    }

    /// Sends SIGTERM to `name`; asserts it exits with status 0 within
    /// [`STOP_LIMIT`]; returns how long it took.
    fn terminate(&mut self, name: &str) -> Duration {
        let logs = self.logs();
        let child = self.child(name);
        send_signal(child, "TERM");
        let sent = Instant::now();
        let Some(status) = wait_for_exit(child, STOP_LIMIT) else {
            panic!(
                "{name} still running {STOP_LIMIT:?} after SIGTERM\n{}",
                self.logs()
            );
        };
        let took = sent.elapsed();
        assert!(status.success(), "{name} exited with {status}\n{logs}");
        assert!(took < STOP_LIMIT, "{name} took {took:?} to stop");
        eprintln!("{name} stopped {took:?} after SIGTERM");
        took
    }

    fn status_text(&self) -> String {
        let out = self.dspans(&["status"]);
        assert!(out.status.success(), "status: {out:?}");
        String::from_utf8(out.stdout).unwrap()
    }

    /// The only queued item and its `unit` build, once `cond` holds for it.
    fn unit_build_until(&self, what: &str, cond: impl Fn(&Value) -> bool) -> (Value, Value) {
        wait_for(
            &format!("status showing {what}"),
            DEADLINE,
            || format!("{}\n{}", self.status(), self.logs()),
            || {
                let status = self.status();
                let item = &status["pipelines"][0]["items"][0];
                let build = item["builds"]
                    .as_array()
                    .and_then(|builds| builds.iter().find(|b| b["job"] == "unit"))?;
                cond(build).then(|| (item.clone(), build.clone()))
            },
        )
    }

    /// Waits for a `running-<build>-<pid>` marker other than `except`;
    /// returns its name.
    fn wait_for_run(&self, except: Option<&str>) -> String {
        wait_for(
            "the unit job started",
            DEADLINE,
            || self.logs(),
            || {
                self.files(|n| n.starts_with("running-") && Some(n) != except)
                    .into_iter()
                    .next()
            },
        )
    }

    fn wait_until(&self, what: &str, limit: Duration, cond: impl Fn() -> bool) {
        wait_for(what, limit, || self.logs(), || cond().then_some(()));
    }

    fn spans_until(&self, what: &str, cond: impl Fn(&[Span]) -> bool) -> Vec<Span> {
        self.side.spans_until(what, DEADLINE, || self.logs(), cond)
    }
}

/// The build uuid in a `running-<build>-<pid>` marker.
fn build_of(marker: &str) -> &str {
    let rest = marker.strip_prefix("running-").unwrap();
    &rest[..rest.rfind('-').unwrap()]
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::zookeeper(Backend::Zookeeper)]
fn status_shows_builds_and_components_stop_cleanly_on_sigterm(#[case] backend: Backend) {
    let mut world = World::new(backend);
    world.spawn("scheduler", "scheduler-a");
    world.spawn("executor", "executor-1");
    world.spawn("merger", "merger-1");
    world.enqueue(1);
    let first_run = world.wait_for_run(None);
    let build = build_of(&first_run).to_string();

    // status shows the running build, its executor, and the merge.
    let (item, unit) = world.unit_build_until("unit running on executor-1", |b| {
        b["state"] == "running" && b["executor"] == "executor-1"
    });
    assert_eq!(unit["uuid"], build.as_str());
    assert_eq!(unit["retry"], 0);
    assert_eq!(unit["result"], Value::Null);
    assert_eq!(item["change"], "1,1");
    assert_eq!(item["buildset_state"], "building");
    assert_eq!(item["merge_state"], "completed");
    assert_eq!(item["merge"], "MERGED");
    let jobs: Vec<&Value> = item["builds"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| &b["job"])
        .collect();
    assert_eq!(
        jobs,
        ["unit", "lint"],
        "every job of the build set, in order"
    );
    // The one executor is busy with unit: lint waits in the queue.
    let lint = &item["builds"][1];
    assert_eq!(lint["state"], "requested", "{lint}");
    assert_eq!(lint["executor"], Value::Null);
    assert!(lint["uuid"].is_string());
    let text = world.status_text();
    let unit_line = text
        .lines()
        .find(|l| l.trim_start().starts_with("unit "))
        .unwrap_or_else(|| panic!("no line for job unit:\n{text}"));
    assert!(
        unit_line.contains(&build[..8])
            && unit_line.contains("running")
            && unit_line.contains("executor-1"),
        "{unit_line}"
    );
    assert!(
        text.lines().any(|l| l.trim_start().starts_with("lint ")),
        "{text}"
    );
    assert!(text.contains("merge completed MERGED"), "{text}");

    // An idle merger stops at once.
    world.terminate("merger-1");

    // The executor cannot finish the build within its grace: it kills the
    // job and hands the request back.
    let took = world.terminate("executor-1");
    assert!(took >= Duration::from_secs(4), "a grace period was given");
    let (_, unit) =
        world.unit_build_until("the unit build handed back", |b| b["state"] == "requested");
    assert_eq!(
        unit["uuid"],
        build.as_str(),
        "the same build, not a new one"
    );
    assert_eq!(unit["executor"], Value::Null);
    assert!(
        world.log("executor-1").contains("handing the request back"),
        "{}",
        world.log("executor-1")
    );

    // The scheduler releases the pipeline lock on its way out; another one
    // takes the pipeline over at once (the session timeout is 60 s).
    assert_eq!(world.lock_holder().as_deref(), Some("scheduler-a"));
    world.terminate("scheduler-a");
    assert_eq!(world.lock_holder(), None, "lock released on SIGTERM");
    let restarted = Instant::now();
    world.spawn("scheduler", "scheduler-b");
    world.wait_until(
        "scheduler-b holds the gate pipeline",
        Duration::from_secs(15),
        || world.lock_holder().as_deref() == Some("scheduler-b"),
    );
    eprintln!(
        "scheduler-b took the pipeline over in {:?}",
        restarted.elapsed()
    );

    // A second executor runs the handed-back build to the end.
    world.spawn("executor", "executor-2");
    world.wait_for_run(Some(&first_run));
    let (_, unit) = world.unit_build_until("unit running on executor-2", |b| {
        b["state"] == "running" && b["executor"] == "executor-2"
    });
    assert_eq!(unit["uuid"], build.as_str());
    std::fs::write(world.path().join("release"), "").unwrap();
    world.wait_idle(30);
    let reports = world.reports();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0]["result"], "SUCCESS");
    let unit_report = reports[0]["builds"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["job"] == "unit")
        .unwrap()
        .clone();
    assert_eq!(unit_report["uuid"], build.as_str());
    assert_eq!(unit_report["result"], "SUCCESS");

    // The interrupted attempt is in the trace, ended with an error; the
    // Build span ends once, with the second attempt's result.
    let spans = world.spans_until("the item's spans", |s| {
        s.iter().any(|s| s.name == "QueueItem")
            && s.iter().filter(|s| s.name == "JobExecution").count() == 3
    });
    let failed: Vec<&Span> = spans
        .iter()
        .filter(|s| s.name == "JobExecution")
        .filter(|s| {
            s.status
                .as_ref()
                .is_some_and(|st| st.code == StatusCode::Error as i32)
        })
        .collect();
    assert_eq!(failed.len(), 1, "one interrupted attempt");
    assert!(failed[0]
        .status
        .as_ref()
        .unwrap()
        .message
        .contains("shutdown"));
    assert_eq!(spans.iter().filter(|s| s.name == "Build").count(), 2);
    assert_eq!(spans.iter().filter(|s| s.name == "QueueItem").count(), 1);

    // The survivors stop cleanly too.
    world.terminate("executor-2");
    world.terminate("scheduler-b");
}
