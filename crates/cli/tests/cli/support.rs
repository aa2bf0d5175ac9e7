//! The `dspans` side of the CLI tests' harness, on top of
//! `dspans-test-support` (receiver, ZooKeeper, processes, waits): a
//! scenario's component processes against one config, one-shot `dspans`
//! commands, and `dspans collector` processes.

use std::io::{BufRead as _, BufReader};
use std::net::SocketAddr;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use dspans_otlp::proto::collector::trace::v1::ExportTraceServiceRequest;
use dspans_otlp::receiver::spans_of;
use dspans_otlp::{build_exporter, read_json_lines, ExportOptions, Protocol};
use dspans_test_support::process::{Processes, Running, Turn, Turns};
use dspans_test_support::{Backend, ZkServer};
use opentelemetry::KeyValue;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;

/// The `dspans` binary under test.
pub const DSPANS: &str = env!("CARGO_BIN_EXE_dspans");

/// Turns of the scenarios that start many processes (and ZooKeeper): two
/// run side by side, which two cores carry, so that one scenario's waits
/// (session timeouts, a collector outage) overlap another's work.
pub static HEAVY: Turns = Turns::new(2);

/// The `[store]` section's body for `backend`: SQLite in
/// `dir/state/dspans.db` with `sqlite_session_ms`, or a ZooKeeper server
/// started here (returned, stopped when dropped) with `zk_session_ms`.
pub fn store_section(
    backend: Backend,
    dir: &Path,
    sqlite_session_ms: u64,
    zk_session_ms: u64,
) -> (String, Option<ZkServer>) {
    match backend.server() {
        None => (
            format!(
                "backend = \"sqlite\"\npath = \"{}/state/dspans.db\"\nsession_timeout_ms = {sqlite_session_ms}",
                dir.display()
            ),
            None,
        ),
        Some(zk) => (
            format!(
                "backend = \"zookeeper\"\nhosts = \"{}\"\nsession_timeout_ms = {zk_session_ms}",
                zk.hosts
            ),
            Some(zk),
        ),
    }
}

/// `dspans store init --config CONFIG`, asserted to succeed: components
/// only open the store.
pub fn init_store(config: &Path) {
    let out = Command::new(DSPANS)
        .args(["store", "init", "--config"])
        .arg(config)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "dspans store init: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A scenario's directory, its `dspans.toml`, its ZooKeeper server if it
/// runs on one, and the `dspans` component processes run against it
/// (killed when dropped; the process group of `dspans-test-support`, which
/// it derefs to). Each component logs to `<dir>/<name>.log`. It holds a
/// turn of the heavy scenarios while alive.
pub struct Components {
    pub procs: Processes,
    pub config: PathBuf,
    pub zk: Option<ZkServer>,
    _turn: Turn,
}

impl Components {
    /// Waits for a turn, then makes a temporary directory, starts
    /// ZooKeeper if `backend` asks for it, writes `config(store)` as
    /// `dspans.toml`, `store` being the `[store]` section's body (see
    /// [`store_section`] for the session timeouts), and creates the store.
    pub fn start(
        backend: Backend,
        sqlite_session_ms: u64,
        zk_session_ms: u64,
        config: impl FnOnce(&str) -> String,
    ) -> Components {
        let turn = HEAVY.take();
        let procs = Processes::new();
        let (store, zk) = store_section(backend, procs.path(), sqlite_session_ms, zk_session_ms);
        Components::on(procs, turn, &store, zk, config)
    }

    /// Like [`Components::start`] on a store of the caller's (`store`, the
    /// `[store]` section's body: a ZooKeeper ensemble, say).
    pub fn start_on(store: &str, config: impl FnOnce(&str) -> String) -> Components {
        let turn = HEAVY.take();
        Components::on(Processes::new(), turn, store, None, config)
    }

    fn on(
        procs: Processes,
        turn: Turn,
        store: &str,
        zk: Option<ZkServer>,
        config: impl FnOnce(&str) -> String,
    ) -> Components {
        let path = procs.path().join("dspans.toml");
        std::fs::write(&path, config(store)).unwrap();
        init_store(&path);
        Components {
            procs,
            config: path,
            zk,
            _turn: turn,
        }
    }

    /// Starts `dspans KIND --config F --name NAME` with `RUST_LOG=info` and
    /// `DSPANS_TEST_MARKERS` set to the directory (for jobs' marker files);
    /// stderr is appended to `NAME.log`, stdout discarded.
    pub fn spawn(&mut self, kind: &str, name: &str) {
        let mut command = Command::new(DSPANS);
        command
            .args([kind, "--config", self.config.to_str().unwrap()])
            .args(["--name", name])
            .env("RUST_LOG", "info")
            .env("DSPANS_TEST_MARKERS", self.procs.path());
        self.procs.launch(name, command);
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

    /// The holder of the gate pipeline's lock, if anyone holds it.
    pub fn lock_holder(&self) -> Option<String> {
        let out = self.dspans(&["store", "get", "/dspans/locks/pipelines/gate"]);
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
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
}

impl Deref for Components {
    type Target = Processes;

    fn deref(&self) -> &Processes {
        &self.procs
    }
}

impl DerefMut for Components {
    fn deref_mut(&mut self) -> &mut Processes {
        &mut self.procs
    }
}

/// Components and what a test keeps beside them (`side`: the receiver or
/// collector they export to, say). Derefs to the components; when dropped,
/// kills the components first, then drops `side`, then the rest of the
/// components (ZooKeeper, directory, turn).
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

/// `dspans ARGS` as a shell step runs it: stdin fed from `stdin`, output
/// kept, and none of the test's own OTEL_* or TRACEPARENT variables, only
/// those of `env`.
pub fn dspans_with(args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Output {
    use std::io::Write as _;
    let mut cmd = Command::new(DSPANS);
    cmd.args(args)
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_PROTOCOL")
        .env_remove("OTEL_SERVICE_NAME")
        .env_remove("TRACEPARENT")
        .env_remove("TRACESTATE")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("dspans runs");
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

/// A config of one gate pipeline for `org/project` with two jobs, `unit`
/// (running `unit`, a shell command without single quotes) and `lint`
/// (`true`), exporting to `endpoint`; `tracing` holds more `[tracing]`
/// lines (a sampler, say).
pub fn gate_config(
    store: &str,
    endpoint: &str,
    tracing: &str,
    manager: &str,
    unit: &str,
) -> String {
    format!(
        r#"[store]
{store}

[tracing]
enabled = true
endpoint = "{endpoint}"
{tracing}

[[pipeline]]
name = "gate"
manager = "{manager}"

[[job]]
name = "unit"
run = '{unit}'

[[job]]
name = "lint"
run = "true"

[[project]]
name = "org/project"
gate = ["unit", "lint"]
"#
    )
}

/// The span ids of every trace page in a report written by `dspans view
/// --html` (the viewer's page with its data embedded as JSON).
pub fn report_span_ids(html: &str) -> Vec<String> {
    let data = html
        .split_once(r#"<script id="dspans-data" type="application/json">"#)
        .and_then(|(_, rest)| rest.split_once("</script>"))
        .expect("the report's data")
        .0;
    let data: serde_json::Value = serde_json::from_str(data).unwrap();
    data["traces"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|t| t["spans"].as_array().unwrap())
        .map(|s| s["span_id"].as_str().unwrap().to_string())
        .collect()
}
