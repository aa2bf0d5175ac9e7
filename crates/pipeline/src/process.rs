//! Running a command in its own process group, with a timeout and an abort
//! signal: the shared subprocess helper of the executor and the merger.
//!
//! The child is started with `process_group(0)`, so it and everything it
//! starts (a `sh -c` pipeline, background jobs) form one group. On timeout
//! or abort the whole group is killed with `SIGKILL` (through the `kill`
//! utility, so no unsafe code), then the child is reaped.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;
use tokio::sync::watch;

/// How a command ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It exited; the code (a signal death gives `128 + signal`).
    Exited(i32),
    /// It outlived its timeout; its process group was killed.
    TimedOut,
    /// The abort signal was raised; its process group was killed.
    Aborted,
    /// It could not be started.
    SpawnFailed(String),
}

/// The standard output and error of a command, when captured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Output {
    /// Standard output (lossy UTF-8).
    pub stdout: String,
    /// Standard error (lossy UTF-8).
    pub stderr: String,
}

/// Where a command's output goes.
#[derive(Debug, Clone, Copy)]
pub enum OutputMode<'a> {
    /// Both streams appended to this file (a job's log).
    File(&'a Path),
    /// Captured into memory (short commands such as `git`).
    Capture,
}

/// An abort signal shared by a worker and the commands it runs: raising it
/// kills the running command's group. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Abort {
    tx: std::sync::Arc<watch::Sender<bool>>,
}

impl Default for Abort {
    fn default() -> Self {
        Abort {
            tx: std::sync::Arc::new(watch::channel(false).0),
        }
    }
}

impl Abort {
    /// A signal not raised yet.
    pub fn new() -> Abort {
        Abort::default()
    }

    /// Raises the signal (idempotent).
    pub fn raise(&self) {
        self.tx.send_replace(true);
    }

    /// True once raised.
    pub fn is_raised(&self) -> bool {
        *self.tx.borrow()
    }

    /// Resolves once the signal is raised.
    pub async fn raised(&self) {
        let mut rx = self.tx.subscribe();
        let _ = rx.wait_for(|raised| *raised).await;
    }
}

/// Runs `command` (program and arguments already set; working directory,
/// environment as the caller set them) in a new process group; kills the
/// group when `timeout` passes or `abort` is raised.
pub async fn run(
    mut command: Command,
    output: OutputMode<'_>,
    timeout: Duration,
    abort: &Abort,
) -> (Outcome, Output) {
    command
        .process_group(0)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    match output {
        OutputMode::File(path) => {
            let file = match std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
            {
                Ok(file) => file,
                Err(e) => {
                    let reason = format!("cannot open log {}: {e}", path.display());
                    return (Outcome::SpawnFailed(reason), Output::default());
                }
            };
            let err = match file.try_clone() {
                Ok(err) => err,
                Err(e) => return (Outcome::SpawnFailed(e.to_string()), Output::default()),
            };
            command.stdout(Stdio::from(file)).stderr(Stdio::from(err));
        }
        OutputMode::Capture => {
            command.stdout(Stdio::piped()).stderr(Stdio::piped());
        }
    }
    if abort.is_raised() {
        return (Outcome::Aborted, Output::default());
    }
    let mut child = match command.spawn() {
        Ok(child) => child,
        Err(e) => return (Outcome::SpawnFailed(e.to_string()), Output::default()),
    };
    let pid = child.id();
    // Read captured output concurrently, so a chatty child never blocks.
    let stdout = child.stdout.take().map(|s| tokio::spawn(read_all(s)));
    let stderr = child.stderr.take().map(|s| tokio::spawn(read_all(s)));

    let outcome = tokio::select! {
        status = child.wait() => match status {
            Ok(status) => Outcome::Exited(exit_code(status)),
            Err(e) => Outcome::SpawnFailed(format!("cannot wait for the command: {e}")),
        },
        _ = tokio::time::sleep(timeout) => Outcome::TimedOut,
        _ = abort.raised() => Outcome::Aborted,
    };
    if matches!(outcome, Outcome::TimedOut | Outcome::Aborted) {
        if let Some(pid) = pid {
            kill_group(pid).await;
        }
        let _ = child.start_kill();
        let _ = child.wait().await;
    }
    let mut out = Output::default();
    if let Some(task) = stdout {
        out.stdout = collect(task).await;
    }
    if let Some(task) = stderr {
        out.stderr = collect(task).await;
    }
    (outcome, out)
}

async fn read_all(mut stream: impl tokio::io::AsyncRead + Unpin) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::new();
    let _ = stream.read_to_end(&mut buf).await;
    buf
}

async fn collect(task: tokio::task::JoinHandle<Vec<u8>>) -> String {
    // A grandchild that escaped the group may hold the pipe open: do not
    // wait for it forever.
    match tokio::time::timeout(Duration::from_secs(2), task).await {
        Ok(Ok(bytes)) => String::from_utf8_lossy(&bytes).into_owned(),
        _ => String::new(),
    }
}

fn exit_code(status: std::process::ExitStatus) -> i32 {
    use std::os::unix::process::ExitStatusExt;
    status
        .code()
        .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
}

/// Sends `SIGKILL` to the process group `pgid` (the group leader's pid).
async fn kill_group(pgid: u32) {
    let result = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
    match result {
        Ok(status) if status.success() => tracing::debug!(pgid, "killed process group"),
        Ok(status) => tracing::debug!(pgid, %status, "kill of process group failed (gone?)"),
        Err(error) => tracing::warn!(pgid, %error, "cannot run kill for a process group"),
    }
}

/// The machine's host name, for span attributes: `$HOSTNAME`, else the
/// kernel's, else `localhost`.
pub fn hostname() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_string())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "localhost".to_string())
}
