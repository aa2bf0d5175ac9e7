//! Durability under chaos: the pipeline's components as OS processes,
//! `dspans collector` as the collector, and a real ZooKeeper server.
//!
//! - Two schedulers, two executors and a merger push 30 changes through a
//!   gate while a random scheduler or executor is SIGKILLed (and restarted
//!   under its name) at least 10 times; afterwards every QueueItem,
//!   BuildSet, Build and Merge span is in the collector's file exactly once,
//!   every parent is there, no item's spans are missing, no span is left
//!   open or waiting. On ZooKeeper and on SQLite.
//! - The collector is down for 30 s mid-run: the pipeline goes on and no
//!   span is lost.
//! - The ZooKeeper server is restarted mid-run: the components carry on and
//!   no span is lost.
//!
//! Each run prints its figures (items, kills, spans, repeats, lost).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dspans_otlp::proto::common::v1::any_value::Value;
use dspans_otlp::proto::trace::v1::Span;
use dspans_test_support::process::send_signal;
use dspans_test_support::{attr, free_port, string, wait_for, Backend};
use rstest::rstest;

use crate::support::{Collector, Components, Scenario, DSPANS};

const IDLE_DEADLINE_S: &str = "240";

/// A small deterministic generator (xorshift), seeded per run and printed,
/// so a failing run can be replayed with `DSPANS_CHAOS_SEED`.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed = std::env::var("DSPANS_CHAOS_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
                    | 1
            });
        eprintln!("chaos seed: {seed} (set DSPANS_CHAOS_SEED to replay)");
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Beside a scenario's components: the collector they export to, on a
/// fixed port so that it can be restarted, and the file it writes.
struct Collecting {
    traces: PathBuf,
    port: u16,
    collector: Option<Collector>,
    runs: usize,
}

/// One scenario's processes and files. The scenarios start a dozen
/// processes each: they take turns with the other heavy scenarios.
type World = Scenario<Collecting>;

impl World {
    fn new(backend: Backend) -> World {
        let collector_port = free_port();
        // Changes whose number is a multiple of 7 fail `unit`: the gate
        // resets the items behind them.
        let procs = Components::start(backend, 3000, 6000, |store| {
            format!(
                r#"[store]
{store}

[tracing]
enabled = true
protocol = "grpc"
endpoint = "http://127.0.0.1:{collector_port}"
service_name = "dspans-chaos"
timeout = 2000

[[pipeline]]
name = "gate"
manager = "dependent"

[[job]]
name = "unit"
run = 'if [ $((DSPANS_CHANGE % 7)) = 0 ]; then exit 1; fi; sleep 0.3'
timeout_s = 20

[[job]]
name = "lint"
run = "sleep 0.1"

[[project]]
name = "org/project"
gate = ["unit", "lint"]
"#
            )
        });
        let mut world = Scenario {
            side: Collecting {
                traces: procs.path().join("traces.jsonl"),
                port: collector_port,
                collector: None,
                runs: 0,
            },
            procs,
        };
        world.start_collector();
        world
    }

    fn start_collector(&mut self) {
        self.side.runs += 1;
        let log = self
            .path()
            .join(format!("collector-{}.log", self.side.runs));
        let log = std::fs::File::create(log).unwrap();
        let grpc = format!("127.0.0.1:{}", self.side.port);
        self.side.collector = Some(Collector::start(&grpc, &self.side.traces, Some(log)));
    }

    fn stop_collector(&mut self, signal: &str) {
        if let Some(mut collector) = self.side.collector.take() {
            send_signal(&collector.process.0, signal);
            let status = collector.process.0.wait().unwrap();
            if signal == "TERM" {
                assert!(status.success(), "collector exited with {status}");
            }
        }
    }

    /// SIGKILLs a component and starts it again under its name.
    fn kill_and_restart(&mut self, name: &str) {
        self.kill(name);
        self.respawn(name);
    }

    fn reported(&self) -> u64 {
        self.status()["pipelines"][0]["reports"].as_u64().unwrap()
    }

    /// Waits for `dspans status --wait-idle`, restarting meanwhile any
    /// component that exited (as a supervisor would). Returns how many were
    /// restarted.
    fn wait_idle(&mut self) -> usize {
        let mut waiter = Command::new(DSPANS)
            .args(["status", "--wait-idle", IDLE_DEADLINE_S, "--config"])
            .arg(&self.config)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut restarted = 0;
        while waiter.try_wait().unwrap().is_none() {
            restarted += self.respawn_exited();
            std::thread::sleep(Duration::from_millis(200));
        }
        self.assert_idle(&waiter.wait_with_output().unwrap());
        restarted
    }

    /// Spans received more than once (and written once), per the
    /// collector's logs.
    fn repeats(&self) -> u64 {
        (1..=self.side.runs)
            .map(|run| {
                self.log(&format!("collector-{run}"))
                    .lines()
                    .filter(|l| l.contains("repeated spans dropped"))
                    .filter_map(|l| {
                        let at = l.find("dropped=")? + "dropped=".len();
                        l[at..].split(' ').next()?.parse::<u64>().ok()
                    })
                    .sum::<u64>()
            })
            .sum()
    }

    fn spans(&self) -> Vec<Span> {
        let requests = dspans_otlp::read_json_lines(&self.side.traces).unwrap();
        dspans_otlp::receiver::spans_of(&requests)
    }
}

const DURABLE: [&str; 4] = ["QueueItem", "BuildSet", "Build", "Merge"];

/// What the run left: checks every durability promise and returns the
/// figures `(durable spans, all spans, orphaned)`.
fn check_nothing_lost(world: &World, items: u64) -> (usize, usize, usize) {
    let status = world.status();
    assert_eq!(
        status["pipelines"][0]["reports"], items,
        "every item reported"
    );
    let out = world.dspans(&["spans", "--json"]);
    assert!(out.status.success());
    let ledger: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(ledger["outbox"], 0, "outbox drained");
    assert_eq!(
        ledger["open"].as_array().unwrap().len(),
        0,
        "no saved span left open: {}",
        ledger["open"]
    );

    let spans = world.spans();
    let durable: Vec<&Span> = spans
        .iter()
        .filter(|s| DURABLE.contains(&s.name.as_str()))
        .collect();
    // Exactly once, by span id.
    let mut seen = HashSet::new();
    for span in &durable {
        assert!(
            seen.insert((&span.trace_id, &span.span_id)),
            "{} exported twice",
            span.name
        );
    }
    let by_id: HashMap<(&Vec<u8>, &Vec<u8>), &Span> = durable
        .iter()
        .map(|s| ((&s.trace_id, &s.span_id), *s))
        .collect();
    let parent_of = |span: &Span| -> &Span {
        by_id
            .get(&(&span.trace_id, &span.parent_span_id))
            .unwrap_or_else(|| panic!("the parent of {} is missing", span.name))
    };
    // One QueueItem per change.
    let items_seen: HashSet<String> = durable
        .iter()
        .filter(|s| s.name == "QueueItem")
        .map(|s| {
            format!(
                "{:?}",
                attr(&s.attributes, "ref_number").expect("ref_number")
            )
        })
        .collect();
    assert_eq!(items_seen.len() as u64, items, "a QueueItem per change");
    assert_eq!(
        durable.iter().filter(|s| s.name == "QueueItem").count() as u64,
        items
    );
    // Parents present, as the catalogue says.
    for span in &durable {
        match span.name.as_str() {
            "QueueItem" => assert!(span.parent_span_id.is_empty(), "QueueItem is a root"),
            "BuildSet" => assert_eq!(parent_of(span).name, "QueueItem"),
            _ => assert_eq!(parent_of(span).name, "BuildSet", "{}", span.name),
        }
    }
    // The final build set of each item has its merge and both builds.
    let mut children: HashMap<&Vec<u8>, Vec<&Span>> = HashMap::new();
    for span in &durable {
        children.entry(&span.parent_span_id).or_default().push(span);
    }
    for item in durable.iter().filter(|s| s.name == "QueueItem") {
        let sets = &children[&item.span_id];
        let finals: Vec<&&Span> = sets
            .iter()
            .filter(|s| attr(&s.attributes, "result") != Some(&string("RESET")))
            .collect();
        assert_eq!(finals.len(), 1, "one final build set per item");
        let kids = children
            .get(&finals[0].span_id)
            .cloned()
            .unwrap_or_default();
        let merges = kids.iter().filter(|s| s.name == "Merge").count();
        let builds: Vec<Option<&Value>> = kids
            .iter()
            .filter(|s| s.name == "Build")
            .map(|s| attr(&s.attributes, "job"))
            .collect();
        assert_eq!(merges, 1, "the final build set's merge");
        assert_eq!(builds.len(), 2, "the final build set's builds: {builds:?}");
    }
    let orphaned = durable
        .iter()
        .filter(|s| attr(&s.attributes, "dspans.orphaned") == Some(&Value::BoolValue(true)))
        .count();
    (durable.len(), spans.len(), orphaned)
}

/// Every build that ran has its JobExecution and JobRun, every merge that
/// merged its MergerJob.
fn leaves_complete(spans: &[Span]) -> bool {
    let children = |parent: &Span, name: &str| {
        spans
            .iter()
            .filter(|s| s.parent_span_id == parent.span_id && s.name == name)
            .collect::<Vec<_>>()
    };
    spans.iter().all(|span| match span.name.as_str() {
        "Build"
            if matches!(
                attr(&span.attributes, "result"),
                Some(Value::StringValue(result)) if result == "SUCCESS" || result == "FAILURE"
            ) =>
        {
            children(span, "JobExecution")
                .iter()
                .any(|exec| !children(exec, "JobRun").is_empty())
        }
        "Merge" if attr(&span.attributes, "result") == Some(&string("MERGED")) => {
            !children(span, "MergerJob").is_empty()
        }
        _ => true,
    })
}

/// Components SIGKILLed at random under a running gate lose and duplicate
/// no span.
#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::zookeeper(Backend::Zookeeper)]
fn chaos_loses_and_duplicates_nothing(#[case] backend: Backend) {
    const ITEMS: u64 = 30;
    const KILLS: usize = 10;
    let mut world = World::new(backend);
    let started = Instant::now();
    let mut rng = Rng::new();
    for name in ["scheduler-1", "scheduler-2"] {
        world.spawn("scheduler", name);
    }
    for name in ["executor-1", "executor-2"] {
        world.spawn("executor", name);
    }
    world.spawn("merger", "merger-1");
    for change in 1..=ITEMS {
        world.enqueue(change);
    }
    let victims = ["scheduler-1", "scheduler-2", "executor-1", "executor-2"];
    let mut kills = 0;
    let kill_deadline = Instant::now() + Duration::from_secs(180);
    while kills < KILLS {
        assert!(
            Instant::now() < kill_deadline,
            "only {kills} kills in time\n{}",
            world.logs()
        );
        // A random moment: the stimulus of this test, not a wait for a result.
        std::thread::sleep(Duration::from_millis(200 + rng.below(900)));
        let victim = victims[rng.below(victims.len() as u64) as usize];
        world.kill_and_restart(victim);
        kills += 1;
        world.respawn_exited();
    }
    let reported_during_kills = world.reported();
    world.wait_idle();
    world.terminate_all();
    world.stop_collector("TERM");
    let (durable, all, orphaned) = check_nothing_lost(&world, ITEMS);
    eprintln!(
        "chaos {backend:?}: items {ITEMS}, kills {kills} (items reported while killing: {reported_during_kills}), \
         spans {all} ({durable} QueueItem/BuildSet/Build/Merge), duplicates written 0, \
         repeats received and dropped by the collector {}, lost 0, orphaned {orphaned}, {:.1} s",
        world.repeats(),
        started.elapsed().as_secs_f64()
    );
}

/// The collector is away for 30 s: items enqueued and completed meanwhile
/// have their spans, TriggerEvent included, wait in the outbox, and all
/// arrive once it is back.
#[test]
fn a_collector_down_for_30_s_loses_nothing() {
    const ITEMS: u64 = 8;
    let mut world = World::new(Backend::Sqlite);
    let started = Instant::now();
    world.spawn("scheduler", "scheduler-1");
    world.spawn("executor", "executor-1");
    world.spawn("executor", "executor-2");
    world.spawn("merger", "merger-1");
    world.stop_collector("KILL");
    let down = Instant::now();
    let before = world.reported();
    // Enqueued with the collector away: each TriggerEvent span waits in
    // the store with the spans of the pipeline.
    for change in 1..=ITEMS {
        world.enqueue(change);
    }
    // The outage is the stimulus: 30 s without a collector.
    std::thread::sleep(Duration::from_secs(30));
    let during = world.reported();
    let out = world.dspans(&["spans", "--json"]);
    let waiting: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        during > before,
        "the pipeline kept working while the collector was down ({before} -> {during} reported)"
    );
    assert!(
        waiting["outbox"].as_u64().unwrap() > 0,
        "ended spans wait in the outbox"
    );
    world.start_collector();
    world.wait_idle();
    // Ordinary spans (job runs, merger jobs) were kept and retried by the
    // components' exporters: they arrive too.
    let ordinary = wait_for(
        "the job and merge spans of the outage",
        Duration::from_secs(60),
        || world.logs(),
        || {
            let spans = world.spans();
            leaves_complete(&spans).then_some(spans.len())
        },
    );
    world.terminate_all();
    world.stop_collector("TERM");
    let (durable, all, orphaned) = check_nothing_lost(&world, ITEMS);
    assert!(all >= ordinary);
    let spans = world.spans();
    let events: HashSet<String> = spans
        .iter()
        .filter(|s| s.name == "TriggerEvent")
        .map(|s| {
            format!(
                "{:?}",
                attr(&s.attributes, "zuul_event_id").expect("zuul_event_id")
            )
        })
        .collect();
    assert_eq!(
        events.len() as u64,
        ITEMS,
        "every TriggerEvent enqueued during the outage arrives once it is back"
    );
    eprintln!(
        "collector outage: {:.0} s down, items {ITEMS} ({} reported during the outage), outbox peak >= {}, \
         spans {all} ({durable} durable), lost 0, orphaned {orphaned}, {:.1} s",
        down.elapsed().as_secs_f64().min(30.0),
        during - before,
        waiting["outbox"],
        started.elapsed().as_secs_f64()
    );
}

/// ZooKeeper restarts under the running pipeline: the components carry on
/// (restarted by the test, as a supervisor would, if their session ended)
/// and nothing is lost.
#[test]
fn a_zookeeper_restart_loses_nothing() {
    const ITEMS: u64 = 10;
    let mut world = World::new(Backend::Zookeeper);
    let started = Instant::now();
    world.spawn("scheduler", "scheduler-1");
    world.spawn("scheduler", "scheduler-2");
    world.spawn("executor", "executor-1");
    world.spawn("merger", "merger-1");
    for change in 1..=ITEMS {
        world.enqueue(change);
    }
    let zk = world.zk.as_ref().unwrap();
    zk.stop();
    // Down for two seconds: less than the 6 s session timeout.
    std::thread::sleep(Duration::from_secs(2));
    zk.run("start");
    let restarted = world.wait_idle();
    world.terminate_all();
    world.stop_collector("TERM");
    let (durable, all, orphaned) = check_nothing_lost(&world, ITEMS);
    eprintln!(
        "zookeeper restart: items {ITEMS}, components restarted after it {restarted}, spans {all} \
         ({durable} durable), lost 0, orphaned {orphaned}, {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
