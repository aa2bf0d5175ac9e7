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

#[path = "../../store/tests/common/mod.rs"]
mod store_common;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dspans_otlp::proto::trace::v1::Span;
use store_common::{free_port, ZkServer};

const DSPANS: &str = env!("CARGO_BIN_EXE_dspans");
const IDLE_DEADLINE_S: &str = "240";

/// The scenarios start a dozen processes each: one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Zookeeper,
}

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

struct Component {
    kind: &'static str,
    child: Child,
}

/// One scenario's processes and files.
struct World {
    dir: tempfile::TempDir,
    config: PathBuf,
    traces: PathBuf,
    collector_port: u16,
    collector: Option<Child>,
    collector_runs: usize,
    components: HashMap<String, Component>,
    zk: Option<ZkServer>,
    _turn: std::sync::MutexGuard<'static, ()>,
}

impl World {
    fn new(backend: Backend) -> World {
        let turn = ONE_AT_A_TIME
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let dir = tempfile::tempdir().unwrap();
        let collector_port = free_port();
        let (store, zk) = match backend {
            Backend::Sqlite => (
                format!(
                    "backend = \"sqlite\"\npath = \"{}/state/dspans.db\"\nsession_timeout_ms = 3000",
                    dir.path().display()
                ),
                None,
            ),
            Backend::Zookeeper => {
                let zk = ZkServer::start();
                (
                    format!(
                        "backend = \"zookeeper\"\nhosts = \"{}\"\nsession_timeout_ms = 6000",
                        zk.hosts
                    ),
                    Some(zk),
                )
            }
        };
        // Changes whose number is a multiple of 7 fail `unit`: the gate
        // resets the items behind them.
        let text = format!(
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
        );
        let config = dir.path().join("dspans.toml");
        std::fs::write(&config, text).unwrap();
        let traces = dir.path().join("traces.jsonl");
        let mut world = World {
            dir,
            config,
            traces,
            collector_port,
            collector: None,
            collector_runs: 0,
            components: HashMap::new(),
            zk,
            _turn: turn,
        };
        world.start_collector();
        world
    }

    fn start_collector(&mut self) {
        self.collector_runs += 1;
        let log = std::fs::File::create(
            self.dir
                .path()
                .join(format!("collector-{}.log", self.collector_runs)),
        )
        .unwrap();
        let mut child = Command::new(DSPANS)
            .args([
                "collector",
                "--grpc",
                &format!("127.0.0.1:{}", self.collector_port),
                "--http",
                "127.0.0.1:0",
                "--out",
                self.traces.to_str().unwrap(),
            ])
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        // It prints its addresses once it listens.
        let mut first = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        assert!(
            first.starts_with("grpc "),
            "collector did not start: {first:?}"
        );
        self.collector = Some(child);
    }

    fn stop_collector(&mut self, signal: &str) {
        if let Some(mut child) = self.collector.take() {
            signal_process(&child, signal);
            let status = child.wait().unwrap();
            if signal == "TERM" {
                assert!(status.success(), "collector exited with {status}");
            }
        }
    }

    fn spawn(&mut self, kind: &'static str, name: &str) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("{name}.log")))
            .unwrap();
        let child = Command::new(DSPANS)
            .args([
                kind,
                "--config",
                self.config.to_str().unwrap(),
                "--name",
                name,
            ])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.components
            .insert(name.to_string(), Component { kind, child });
    }

    /// SIGKILLs a component and starts it again under its name.
    fn kill_and_restart(&mut self, name: &str) {
        let mut component = self.components.remove(name).unwrap();
        component.child.kill().unwrap();
        component.child.wait().unwrap();
        self.spawn(component.kind, name);
    }

    /// Restarts components that exited on their own (a supervisor's job:
    /// a component whose store session ended exits 1 to be restarted).
    fn restart_exited(&mut self) -> usize {
        let exited: Vec<String> = self
            .components
            .iter_mut()
            .filter_map(|(name, c)| c.child.try_wait().unwrap().map(|_| name.clone()))
            .collect();
        for name in &exited {
            let kind = self.components[name].kind;
            self.spawn(kind, name);
        }
        exited.len()
    }

    fn stop_components(&mut self) {
        for component in self.components.values() {
            signal_process(&component.child, "TERM");
        }
        for (name, mut component) in self.components.drain() {
            let status = component.child.wait().unwrap();
            assert!(status.success(), "{name} did not stop cleanly: {status}");
        }
    }

    fn dspans(&self, args: &[&str]) -> std::process::Output {
        Command::new(DSPANS)
            .args(args)
            .args(["--config", self.config.to_str().unwrap()])
            .output()
            .unwrap()
    }

    fn enqueue(&self, change: u64) {
        let n = change.to_string();
        let out = self.dspans(&[
            "enqueue",
            "--pipeline",
            "gate",
            "--project",
            "org/project",
            "--change",
            &n,
        ]);
        assert!(
            out.status.success(),
            "enqueue: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn status(&self) -> serde_json::Value {
        let out = self.dspans(&["status", "--json"]);
        assert!(
            out.status.success(),
            "status: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
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
            restarted += self.restart_exited();
            std::thread::sleep(Duration::from_millis(200));
        }
        let out = waiter.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "not idle: {}\n{}\nlogs:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.logs()
        );
        restarted
    }

    fn logs(&self) -> String {
        let mut text = String::new();
        let mut names: Vec<String> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".log"))
            .collect();
        names.sort();
        for name in names {
            let log = std::fs::read_to_string(self.dir.path().join(&name)).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            text += &format!(
                "--- {name}\n{}\n",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        text
    }

    /// Spans received more than once (and written once), per the
    /// collector's logs.
    fn repeats(&self) -> u64 {
        (1..=self.collector_runs)
            .map(|run| {
                std::fs::read_to_string(self.dir.path().join(format!("collector-{run}.log")))
                    .unwrap_or_default()
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
        let requests = dspans_otlp::read_json_lines(&self.traces).unwrap();
        dspans_otlp::receiver::spans_of(&requests)
    }
}

impl Drop for World {
    fn drop(&mut self) {
        for component in self.components.values_mut() {
            let _ = component.child.kill();
            let _ = component.child.wait();
        }
        if let Some(mut child) = self.collector.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        drop(self.zk.take());
    }
}

fn signal_process(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} failed");
}

fn attr(span: &Span, key: &str) -> Option<String> {
    use dspans_otlp::proto::common::v1::any_value::Value;
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            Value::StringValue(s) => Some(s.clone()),
            Value::BoolValue(b) => Some(b.to_string()),
            Value::ArrayValue(a) => a.values.first().and_then(|v| match v.value.as_ref()? {
                Value::StringValue(s) => Some(s.clone()),
                _ => None,
            }),
            other => Some(format!("{other:?}")),
        })
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
        .map(|s| attr(s, "ref_number").expect("ref_number"))
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
            .filter(|s| attr(s, "result").as_deref() != Some("RESET"))
            .collect();
        assert_eq!(finals.len(), 1, "one final build set per item");
        let kids = children
            .get(&finals[0].span_id)
            .cloned()
            .unwrap_or_default();
        let merges = kids.iter().filter(|s| s.name == "Merge").count();
        let builds: Vec<String> = kids
            .iter()
            .filter(|s| s.name == "Build")
            .map(|s| attr(s, "job").unwrap_or_default())
            .collect();
        assert_eq!(merges, 1, "the final build set's merge");
        assert_eq!(builds.len(), 2, "the final build set's builds: {builds:?}");
    }
    let orphaned = durable
        .iter()
        .filter(|s| attr(s, "dspans.orphaned").as_deref() == Some("true"))
        .count();
    (durable.len(), spans.len(), orphaned)
}

fn chaos(backend: Backend) {
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
        world.restart_exited();
    }
    let reported_during_kills = world.reported();
    world.wait_idle();
    world.stop_components();
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

#[test]
fn chaos_on_zookeeper_loses_and_duplicates_nothing() {
    chaos(Backend::Zookeeper);
}

#[test]
fn chaos_on_sqlite_loses_and_duplicates_nothing() {
    chaos(Backend::Sqlite);
}

/// The collector is away for 30 s: items still complete meanwhile, their
/// spans wait in the outbox and all arrive once it is back.
#[test]
fn a_collector_down_for_30_s_loses_nothing() {
    const ITEMS: u64 = 8;
    let mut world = World::new(Backend::Sqlite);
    let started = Instant::now();
    world.spawn("scheduler", "scheduler-1");
    world.spawn("executor", "executor-1");
    world.spawn("executor", "executor-2");
    world.spawn("merger", "merger-1");
    for change in 1..=ITEMS {
        world.enqueue(change);
    }
    world.stop_collector("KILL");
    let down = Instant::now();
    let before = world.reported();
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
    world.stop_components();
    world.stop_collector("TERM");
    let (durable, all, orphaned) = check_nothing_lost(&world, ITEMS);
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
    world.stop_components();
    world.stop_collector("TERM");
    let (durable, all, orphaned) = check_nothing_lost(&world, ITEMS);
    eprintln!(
        "zookeeper restart: items {ITEMS}, components restarted after it {restarted}, spans {all} \
         ({durable} durable), lost 0, orphaned {orphaned}, {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
