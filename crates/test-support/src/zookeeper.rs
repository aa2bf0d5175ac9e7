//! Real ZooKeeper servers, one per test, through `scripts/zookeeper.sh`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::free_port;

/// The project's ZooKeeper script, which installs Debian's `zookeeper`
/// package when it is missing.
pub fn zookeeper_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/zookeeper.sh")
}

/// A ZooKeeper server of this test on 127.0.0.1, stopped when dropped.
///
/// ```no_run
/// let server = dspans_test_support::ZkServer::start();
/// assert_eq!(server.hosts, format!("127.0.0.1:{}", server.port));
/// server.stop();
/// server.run("start"); // the same server again, its data intact
/// ```
pub struct ZkServer {
    /// `127.0.0.1:PORT`, the connect string for clients.
    pub hosts: String,
    /// The port it listens on.
    pub port: u16,
    /// Its configuration, data, log and pid file.
    pub dir: tempfile::TempDir,
    /// Further arguments of its `start` (an ensemble member's id and quorum).
    pub start_args: Vec<String>,
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
            start_args: Vec::new(),
        };
        server.hosts = server.run("start");
        assert_eq!(server.hosts, format!("127.0.0.1:{port}"));
        server
    }

    /// Runs `scripts/zookeeper.sh CMD --port P --dir D` and returns its
    /// stdout; panics with its output when it fails.
    pub fn run(&self, cmd: &str) -> String {
        let out = Command::new("bash")
            .arg(zookeeper_script())
            .arg(cmd)
            .arg("--port")
            .arg(self.port.to_string())
            .arg("--dir")
            .arg(self.dir.path())
            .args(if cmd == "start" {
                &self.start_args[..]
            } else {
                &[]
            })
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

    /// Stops the server (it can be started again with `run("start")`).
    pub fn stop(&self) {
        self.run("stop");
    }
}

impl Drop for ZkServer {
    /// Kills the server outright: its data goes with the test, so nothing
    /// is gained by the graceful stop of [`ZkServer::stop`], which takes the
    /// JVM seconds.
    fn drop(&mut self) {
        self.kill();
    }
}

impl ZkServer {
    /// Kills the server with SIGKILL and waits until it is gone (it can be
    /// started again with `run("start")`, its data intact).
    pub fn kill(&self) {
        if let Some(pid) = self.running_pid() {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            let gone = Instant::now() + Duration::from_secs(10);
            while alive(pid) && Instant::now() < gone {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

impl ZkServer {
    /// The pid of this server's JVM if it runs: the pid the script wrote,
    /// checked against the process's command line (as the script does)
    /// so that a recycled pid is never killed.
    fn running_pid(&self) -> Option<u32> {
        let dir = std::fs::canonicalize(self.dir.path()).ok()?;
        let pid: u32 = std::fs::read_to_string(dir.join("zookeeper.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        let config = dir.join("zoo.cfg");
        let ours = String::from_utf8_lossy(&cmdline)
            .split('\0')
            .any(|arg| Path::new(arg) == config);
        (ours && alive(pid)).then_some(pid)
    }
}

/// Whether process `pid` exists and is not a zombie.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command name in parentheses.
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| !rest.starts_with('Z')),
        Err(_) => false,
    }
}
