//! Test harness shared by the store's integration tests: a real ZooKeeper
//! server started through `scripts/zookeeper.sh`, store configurations per
//! backend, and bounded waits.
#![allow(dead_code)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use dspans_store::StoreConfig;
use tokio::time::Instant;

/// The project's ZooKeeper script.
pub fn zookeeper_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/zookeeper.sh")
}

/// A free TCP port on 127.0.0.1 (bound then released), for a server a
/// test starts later.
///
/// It is taken below the kernel's ephemeral range: a port from that range
/// (what binding port 0 gives) can be handed to any outgoing connection,
/// such as a store client's, in the moment between release and the
/// server's bind, which then fails with "address in use". Ports are handed
/// out in turn from a start that differs per process, so tests of one
/// binary never get the same one.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let (low, high) = (10_000u32, ephemeral_range_start().max(10_001));
    let span = high - low;
    let start = std::process::id().wrapping_mul(7919) % span;
    for _ in 0..span {
        let offset = (start + NEXT.fetch_add(1, Ordering::Relaxed)) % span;
        let port = u16::try_from(low + offset).expect("ports fit in u16");
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port on 127.0.0.1 between {low} and {high}")
}

/// The first port of the kernel's ephemeral range (Linux default 32768).
fn ephemeral_range_start() -> u32 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// A ZooKeeper server of this test, stopped when dropped.
pub struct ZkServer {
    pub hosts: String,
    pub port: u16,
    pub dir: tempfile::TempDir,
}

impl ZkServer {
    /// Starts a server on a free port in a temporary directory. Panics with
    /// the script's output when it cannot: ZooKeeper tests never skip.
    pub fn start() -> ZkServer {
        let dir = tempfile::Builder::new()
            .prefix("dspans-zk-")
            .tempdir()
            .expect("cannot create a temporary directory");
        let port = free_port();
        let mut server = ZkServer {
            hosts: String::new(),
            port,
            dir,
        };
        server.hosts = server.run("start");
        assert_eq!(server.hosts, format!("127.0.0.1:{port}"));
        server
    }

    /// Runs `scripts/zookeeper.sh CMD --port P --dir D`, returning stdout.
    pub fn run(&self, cmd: &str) -> String {
        let out = Command::new("bash")
            .arg(zookeeper_script())
            .arg(cmd)
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--dir")
            .arg(self.dir.path())
            .output()
            .expect("cannot run scripts/zookeeper.sh");
        assert!(
            out.status.success(),
            "scripts/zookeeper.sh {cmd} failed ({}): ZooKeeper is required for this test.\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    pub fn stop(&self) {
        self.run("stop");
    }
}

impl Drop for ZkServer {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(zookeeper_script())
            .arg("stop")
            .arg("--dir")
            .arg(self.dir.path())
            .status();
    }
}

/// Which backend a test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sqlite,
    Zookeeper,
}

/// Where one test case's stores live.
pub struct Env {
    pub kind: Kind,
    /// SQLite: a fresh database file per case; ZooKeeper: the shared server.
    pub base: StoreConfig,
    /// A path no other case uses.
    pub root: String,
}

impl Env {
    /// Configuration for a store of this case with the given session timeout.
    pub fn config(&self, session_timeout_ms: u64) -> StoreConfig {
        let mut cfg = self.base.clone();
        cfg.session_timeout_ms = session_timeout_ms;
        cfg
    }

    /// Opens a store of this case (10 s session timeout).
    pub async fn open(&self) -> std::sync::Arc<dyn dspans_store::Store> {
        dspans_store::open(&self.config(10_000))
            .await
            .expect("cannot open store")
    }

    /// `root/name`.
    pub fn path(&self, name: &str) -> String {
        format!("{}/{name}", self.root)
    }
}

/// Polls `cond` until it returns true or `timeout` passes; false on timeout.
pub async fn wait_until<F, Fut>(timeout: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if cond().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
