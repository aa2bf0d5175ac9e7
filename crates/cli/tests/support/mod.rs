//! The process harness shared by the `dspans` integration tests: component
//! processes with a log file each, one-shot `dspans` commands against a
//! config, an in-test OTLP receiver, a `dspans collector` process, signals,
//! bounded waits and span attributes.
//!
//! Each test binary includes it with `mod support;` and uses a subset.
#![allow(dead_code)]

#[path = "../../../store/tests/common/mod.rs"]
pub mod store_common;

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use dspans_otlp::proto::collector::trace::v1::ExportTraceServiceRequest;
use dspans_otlp::proto::trace::v1::Span;
use dspans_otlp::receiver::{spans_of, MemorySink, Receiver, RunningReceiver};
use dspans_otlp::{build_exporter, read_json_lines, ExportOptions, Protocol};
use opentelemetry::KeyValue;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;

pub use store_common::ZkServer;

/// The `dspans` binary under test.
pub const DSPANS: &str = env!("CARGO_BIN_EXE_dspans");
/// How many lines of each log [`Components::logs`] shows.
const LOG_TAIL: usize = 40;

static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Holds the turn of the test binary's one-at-a-time tests while alive:
/// those start many processes (and ZooKeeper), more than two cores run side
/// by side. A test that panicked with the turn does not block the others.
pub fn one_at_a_time() -> MutexGuard<'static, ()> {
    ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The coordination store a scenario runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Zookeeper,
}

impl Backend {
    /// The `[store]` section's body for this backend: SQLite in
    /// `dir/state/dspans.db` with `sqlite_session_ms`, or a ZooKeeper server
    /// started here (returned, stopped when dropped) with `zk_session_ms`.
    pub fn store_section(
        self,
        dir: &Path,
        sqlite_session_ms: u64,
        zk_session_ms: u64,
    ) -> (String, Option<ZkServer>) {
        match self {
            Backend::Sqlite => (
                format!(
                    "backend = \"sqlite\"\npath = \"{}/state/dspans.db\"\nsession_timeout_ms = {sqlite_session_ms}",
                    dir.display()
                ),
                None,
            ),
            Backend::Zookeeper => {
                let zk = ZkServer::start();
                (
                    format!(
                        "backend = \"zookeeper\"\nhosts = \"{}\"\nsession_timeout_ms = {zk_session_ms}",
                        zk.hosts
                    ),
                    Some(zk),
                )
            }
        }
    }
}

/// A child process killed (and reaped) when dropped, unless it already
/// exited.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// Sends `signal` (`TERM`, `KILL`, …) to `child` with the `kill` utility.
pub fn send_signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{signal} {} failed", child.id());
}

/// Waits up to `limit` for `child` to exit; `None` if it still runs.
pub fn wait_for_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Polls `probe` every 50 ms until it yields a value; panics when `limit`
/// passes first, with `what` and the text of `context` (say, logs).
pub fn wait_for<T>(
    what: &str,
    limit: Duration,
    context: impl Fn() -> String,
    mut probe: impl FnMut() -> Option<T>,
) -> T {
    let started = Instant::now();
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(
            started.elapsed() < limit,
            "not within {limit:?}: {what}\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The last `lines` lines of `text`.
fn tail(text: &str, lines: usize) -> String {
    let tail: Vec<&str> = text.lines().rev().take(lines).collect();
    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
}

/// A component process started by [`Components::spawn`].
pub struct Component {
    pub name: String,
    pub kind: String,
    pub child: Child,
}

/// A scenario's directory, its `dspans.toml`, its ZooKeeper server if it
/// runs on one, and the `dspans` component processes run against it
/// (killed when dropped). Each component logs to `<dir>/<name>.log`. It
/// holds the test binary's turn ([`one_at_a_time`]) while alive.
pub struct Components {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub children: Vec<Component>,
    pub zk: Option<ZkServer>,
    _turn: MutexGuard<'static, ()>,
}

impl Components {
    /// Waits for the turn, then makes a temporary directory, starts
    /// ZooKeeper if `backend` asks for it, and writes `config(store)` as
    /// `dspans.toml`, `store` being the `[store]` section's body (see
    /// [`Backend::store_section`] for the session timeouts).
    pub fn start(
        backend: Backend,
        sqlite_session_ms: u64,
        zk_session_ms: u64,
        config: impl FnOnce(&str) -> String,
    ) -> Components {
        let turn = one_at_a_time();
        let dir = tempfile::tempdir().unwrap();
        let (store, zk) = backend.store_section(dir.path(), sqlite_session_ms, zk_session_ms);
        let path = dir.path().join("dspans.toml");
        std::fs::write(&path, config(&store)).unwrap();
        Components {
            dir,
            config: path,
            children: Vec::new(),
            zk,
            _turn: turn,
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Starts `dspans KIND --config F --name NAME` with `RUST_LOG=info` and
    /// `DSPANS_TEST_MARKERS` set to the directory (for jobs' marker files);
    /// stderr is appended to `NAME.log`, stdout discarded.
    pub fn spawn(&mut self, kind: &str, name: &str) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path().join(format!("{name}.log")))
            .unwrap();
        let child = Command::new(DSPANS)
            .args([kind, "--config", self.config.to_str().unwrap()])
            .args(["--name", name])
            .env("RUST_LOG", "info")
            .env("DSPANS_TEST_MARKERS", self.path())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.children.push(Component {
            name: name.to_string(),
            kind: kind.to_string(),
            child,
        });
    }

    pub fn child(&mut self, name: &str) -> &mut Child {
        let component = self.children.iter_mut().find(|c| c.name == name);
        &mut component
            .unwrap_or_else(|| panic!("no component {name}"))
            .child
    }

    /// SIGKILLs `name` and reaps it (it stays listed, for its log).
    pub fn kill(&mut self, name: &str) {
        let child = self.child(name);
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Starts `name` again, of the kind it was, in place of its exited
    /// process.
    pub fn respawn(&mut self, name: &str) {
        let at = self.children.iter().position(|c| c.name == name).unwrap();
        let old = self.children.remove(at);
        self.spawn(&old.kind, name);
    }

    /// Respawns the components that exited on their own (a supervisor's
    /// job: a component whose store session ended exits 1 to be restarted);
    /// returns how many.
    pub fn respawn_exited(&mut self) -> usize {
        let exited: Vec<String> = self
            .children
            .iter_mut()
            .filter_map(|c| c.child.try_wait().unwrap().map(|_| c.name.clone()))
            .collect();
        for name in &exited {
            self.respawn(name);
        }
        exited.len()
    }

    /// SIGKILLs and reaps every component still running.
    pub fn kill_all(&mut self) {
        for c in &mut self.children {
            let _ = c.child.kill();
            let _ = c.child.wait();
        }
    }

    /// SIGTERMs every component and asserts each exits with status 0.
    pub fn terminate_all(&mut self) {
        for c in &self.children {
            send_signal(&c.child, "TERM");
        }
        for mut c in self.children.drain(..) {
            let status = c.child.wait().unwrap();
            assert!(
                status.success(),
                "{} did not stop cleanly: {status}",
                c.name
            );
        }
    }

    /// Runs `dspans ARGS --config F` to completion.
    pub fn dspans(&self, args: &[&str]) -> Output {
        Command::new(DSPANS)
            .args(args)
            .args(["--config", self.config.to_str().unwrap()])
            .output()
            .unwrap()
    }

    /// Enqueues change `change` of `org/project` into pipeline `gate`.
    pub fn enqueue(&self, change: u64) {
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

    /// `dspans status --json`.
    pub fn status(&self) -> serde_json::Value {
        let out = self.dspans(&["status", "--json"]);
        assert!(
            out.status.success(),
            "status: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// `dspans status --wait-idle SECS`, asserted to succeed.
    pub fn wait_idle(&self, secs: u64) {
        let out = self.dspans(&["status", "--wait-idle", &secs.to_string()]);
        self.assert_idle(&out);
    }

    /// Asserts that `dspans status --wait-idle` saw the pipelines idle;
    /// shows the logs if not.
    pub fn assert_idle(&self, out: &Output) {
        assert!(
            out.status.success(),
            "not idle: {}\n{}\nlogs:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
            self.logs()
        );
    }

    /// The reports of pipeline `gate`, as stored.
    pub fn reports(&self) -> Vec<serde_json::Value> {
        let out = self.dspans(&["store", "ls", "/dspans/pipelines/gate/reports"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|name| {
                let path = format!("/dspans/pipelines/gate/reports/{name}");
                serde_json::from_slice(&self.dspans(&["store", "get", &path]).stdout).unwrap()
            })
            .collect()
    }

    /// The names of the directory's files that `wanted` accepts.
    pub fn files(&self, wanted: impl Fn(&str) -> bool) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| wanted(n))
            .collect();
        names.sort();
        names
    }

    /// The log of `NAME.log` (empty if there is none).
    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.path().join(format!("{name}.log"))).unwrap_or_default()
    }

    /// The tail of every `*.log` in the directory, for failure messages.
    pub fn logs(&self) -> String {
        let mut text = String::new();
        for file in self.files(|n| n.ends_with(".log")) {
            let name = file.trim_end_matches(".log");
            text += &format!("--- {name}\n{}\n", tail(&self.log(name), LOG_TAIL));
        }
        text
    }
}

impl Drop for Components {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// Components and what a test keeps beside them (`side`: the receiver or
/// collector they export to, say). Derefs to the components; when dropped,
/// kills the components first, then drops `side`, then the rest of the
/// components (directory, ZooKeeper, turn).
pub struct Scenario<S> {
    pub side: S,
    pub procs: Components,
}

impl<S> Deref for Scenario<S> {
    type Target = Components;

    fn deref(&self) -> &Components {
        &self.procs
    }
}

impl<S> DerefMut for Scenario<S> {
    fn deref_mut(&mut self) -> &mut Components {
        &mut self.procs
    }
}

impl<S> Drop for Scenario<S> {
    fn drop(&mut self) {
        self.procs.kill_all();
    }
}

/// An OTLP/gRPC receiver in the test, keeping what it receives in memory;
/// shut down when dropped.
pub struct TestReceiver {
    runtime: tokio::runtime::Runtime,
    receiver: Option<RunningReceiver>,
    pub sink: MemorySink,
}

impl TestReceiver {
    /// Listens on a free port of 127.0.0.1.
    pub fn start() -> TestReceiver {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let sink = MemorySink::new();
        let receiver = runtime
            .block_on(
                Receiver::builder()
                    .grpc("127.0.0.1:0".parse().unwrap())
                    .start(sink.clone()),
            )
            .unwrap();
        TestReceiver {
            runtime,
            receiver: Some(receiver),
            sink,
        }
    }

    /// The endpoint to configure exporters with.
    pub fn endpoint(&self) -> String {
        self.receiver
            .as_ref()
            .unwrap()
            .grpc_endpoint()
            .unwrap()
            .to_string()
    }

    /// The spans received so far, once `cond` holds for them, each span id
    /// counted once (an outbox entry is sent again after its exporter was
    /// killed between the collector's answer and the entry's deletion);
    /// returns everything received, repeats included. Panics after `limit`
    /// with `what` and `context()`.
    pub fn spans_until(
        &self,
        what: &str,
        limit: Duration,
        context: impl Fn() -> String,
        cond: impl Fn(&[Span]) -> bool,
    ) -> Vec<Span> {
        wait_for(what, limit, context, || {
            let spans = self.sink.spans();
            let mut seen = std::collections::HashSet::new();
            let unique: Vec<Span> = spans
                .iter()
                .filter(|s| seen.insert((s.trace_id.clone(), s.span_id.clone())))
                .cloned()
                .collect();
            cond(&unique).then_some(spans)
        })
    }
}

impl Drop for TestReceiver {
    fn drop(&mut self) {
        if let Some(receiver) = self.receiver.take() {
            let _ = self.runtime.block_on(receiver.shutdown());
        }
    }
}

/// A `dspans collector` process (killed when dropped) and the addresses
/// it announced on stdout (`grpc ADDR`, `http ADDR`).
pub struct Collector {
    pub process: Running,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
}

impl Collector {
    /// Starts `dspans collector --grpc GRPC --http 127.0.0.1:0 --out OUT`
    /// and waits up to 30 s for both addresses. With `log`, it logs at
    /// level info into that file; otherwise onto the test's stderr.
    pub fn start(grpc: &str, out: &Path, log: Option<std::fs::File>) -> Collector {
        let mut command = Command::new(DSPANS);
        command
            .args([
                "collector",
                "--grpc",
                grpc,
                "--http",
                "127.0.0.1:0",
                "--out",
            ])
            .arg(out)
            .stdin(Stdio::null())
            .stdout(Stdio::piped());
        match log {
            Some(file) => command.env("RUST_LOG", "info").stderr(file),
            None => command.stderr(Stdio::inherit()),
        };
        let mut child = command.spawn().expect("dspans runs");
        let stdout = child.stdout.take().unwrap();
        let process = Running(child);
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let (mut grpc, mut http) = (None, None);
        let deadline = Instant::now() + Duration::from_secs(30);
        while grpc.is_none() || http.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx
                .recv_timeout(left)
                .expect("the collector announces its addresses");
            match line.split_once(' ') {
                Some(("grpc", addr)) => grpc = Some(addr.parse().unwrap()),
                Some(("http", addr)) => http = Some(addr.parse().unwrap()),
                _ => panic!("unexpected announcement {line:?}"),
            }
        }
        Collector {
            process,
            grpc: grpc.unwrap(),
            http: http.unwrap(),
        }
    }

    /// Starts one on free ports, its log on the test's stderr.
    pub fn start_anywhere(out: &Path) -> Collector {
        Collector::start("127.0.0.1:0", out, None)
    }
}

/// Waits up to `limit` until `out` (OTLP-JSON lines) holds `n` spans or
/// more; returns its requests.
pub fn wait_for_spans(out: &Path, n: usize, limit: Duration) -> Vec<ExportTraceServiceRequest> {
    let deadline = Instant::now() + limit;
    loop {
        let requests = read_json_lines(out).unwrap_or_default();
        let got = spans_of(&requests).len();
        if got >= n {
            return requests;
        }
        assert!(
            Instant::now() < deadline,
            "{got} of {n} spans written by the deadline"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A tracer provider exporting each span as it ends with the project's
/// exporter to `http://ADDR`, for service `service` with `resource` as
/// further resource attributes.
pub fn exporting_provider(
    protocol: Protocol,
    addr: SocketAddr,
    service: &str,
    timeout_ms: u64,
    resource: Vec<KeyValue>,
) -> SdkTracerProvider {
    let opts = ExportOptions {
        enabled: true,
        protocol,
        endpoint: Some(format!("http://{addr}")),
        service_name: Some(service.into()),
        timeout: Some(timeout_ms),
        ..Default::default()
    };
    SdkTracerProvider::builder()
        .with_resource(
            Resource::builder()
                .with_service_name(opts.service_name().to_string())
                .with_attributes(resource)
                .build(),
        )
        .with_simple_exporter(build_exporter(&opts).expect("exporter"))
        .build()
}

/// Attribute `key` of `span` as text: strings as they are, booleans as
/// `true`/`false`, an array by its first string, anything else debug-printed.
pub fn attr(span: &Span, key: &str) -> Option<String> {
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
