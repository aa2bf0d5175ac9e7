//! Child processes for tests that run programs as a user or an operator
//! would: named processes with a log file each in a directory of the
//! test's own, signals, bounded waits for an exit, and turns that bound how
//! many process-heavy tests run at once.

use std::fs::OpenOptions;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// How many lines of each log [`Processes::logs`] shows.
const LOG_TAIL: usize = 40;

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

/// Sends `signal` (`TERM`, `KILL`, …) to `child` with the `kill` utility;
/// panics when that fails.
pub fn send_signal(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &child.id().to_string()])
        .status()
        .expect("the kill utility runs");
    assert!(status.success(), "kill -{signal} {} failed", child.id());
}

/// Waits up to `limit` for `child` to exit; `None` if it still runs.
pub fn wait_for_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The last `lines` lines of `text`.
pub fn tail(text: &str, lines: usize) -> String {
    let tail: Vec<&str> = text.lines().rev().take(lines).collect();
    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
}

/// One process of a [`Processes`] group.
pub struct Named {
    /// Its name, which names its log file too.
    pub name: String,
    /// The command it was started with, to start it again.
    pub command: Command,
    /// The process.
    pub child: Child,
}

/// A directory of the test's own and named processes run in it: each
/// process appends its stderr to `<dir>/<name>.log`; all are killed when
/// the group is dropped.
///
/// ```no_run
/// use std::process::Command;
/// use dspans_test_support::process::Processes;
///
/// let mut group = Processes::new();
/// let mut sleeper = Command::new("sleep");
/// sleeper.arg("60");
/// group.launch("sleeper", sleeper);
/// group.kill("sleeper");
/// group.respawn("sleeper");
/// eprintln!("{}", group.logs());
/// ```
pub struct Processes {
    /// The processes started, in order (killed ones stay, for their logs).
    pub children: Vec<Named>,
    dir: tempfile::TempDir,
}

impl Default for Processes {
    fn default() -> Self {
        Self::new()
    }
}

impl Processes {
    /// An empty group in a new temporary directory.
    pub fn new() -> Processes {
        Processes {
            children: Vec::new(),
            dir: tempfile::tempdir().expect("a temporary directory"),
        }
    }

    /// The group's directory.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Starts `command` as `name`: stderr appended to `name.log` in the
    /// directory, stdout discarded.
    pub fn launch(&mut self, name: &str, mut command: Command) {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path().join(format!("{name}.log")))
            .expect("the log file opens");
        let child = command
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({:?}): {e}", command.get_program()));
        self.children.push(Named {
            name: name.to_string(),
            command,
            child,
        });
    }

    /// The process named `name`; panics when there is none.
    pub fn child(&mut self, name: &str) -> &mut Child {
        let named = self.children.iter_mut().find(|c| c.name == name);
        &mut named.unwrap_or_else(|| panic!("no process {name}")).child
    }

    /// SIGKILLs `name` and reaps it (it stays listed, for its log).
    pub fn kill(&mut self, name: &str) {
        let child = self.child(name);
        child.kill().expect("kill");
        child.wait().expect("wait");
    }

    /// Starts `name` again, with the command it was started with, in place
    /// of its exited process.
    pub fn respawn(&mut self, name: &str) {
        let at = self
            .children
            .iter()
            .position(|c| c.name == name)
            .unwrap_or_else(|| panic!("no process {name}"));
        let old = self.children.remove(at);
        self.launch(name, copy(&old.command));
    }

    /// Respawns the processes that exited on their own (a supervisor's
    /// job); returns how many.
    pub fn respawn_exited(&mut self) -> usize {
        let exited: Vec<String> = self
            .children
            .iter_mut()
            .filter_map(|c| {
                c.child
                    .try_wait()
                    .expect("try_wait")
                    .map(|_| c.name.clone())
            })
            .collect();
        for name in &exited {
            self.respawn(name);
        }
        exited.len()
    }

    /// SIGKILLs and reaps every process still running.
    pub fn kill_all(&mut self) {
        for c in &mut self.children {
            let _ = c.child.kill();
            let _ = c.child.wait();
        }
    }

    /// SIGTERMs every process and asserts each exits with status 0.
    pub fn terminate_all(&mut self) {
        for c in &self.children {
            send_signal(&c.child, "TERM");
        }
        for mut c in self.children.drain(..) {
            let status = c.child.wait().expect("wait");
            assert!(
                status.success(),
                "{} did not stop cleanly: {status}",
                c.name
            );
        }
    }

    /// The names of the directory's files that `wanted` accepts, sorted.
    pub fn files(&self, wanted: impl Fn(&str) -> bool) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.path())
            .expect("the directory reads")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| wanted(n))
            .collect();
        names.sort();
        names
    }

    /// The text of `NAME.log` (empty if there is none).
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

impl Drop for Processes {
    fn drop(&mut self) {
        self.kill_all();
    }
}

/// A command like `command`: program, arguments, environment and
/// directory (not its stdio, which [`Processes::launch`] sets).
fn copy(command: &Command) -> Command {
    let mut copy = Command::new(command.get_program());
    copy.args(command.get_args());
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => copy.env(key, value),
            None => copy.env_remove(key),
        };
    }
    if let Some(dir) = command.get_current_dir() {
        copy.current_dir(dir);
    }
    copy
}

/// A counting semaphore for tests that start many processes: at most
/// `limit` of them run at once in a test binary (the environment variable
/// `DSPANS_HEAVY_TESTS` overrides the limit).
///
/// ```
/// use dspans_test_support::process::Turns;
///
/// static HEAVY: Turns = Turns::new(2);
/// let first = HEAVY.take();
/// let second = HEAVY.take();
/// drop((first, second));
/// ```
pub struct Turns {
    limit: usize,
    taken: Mutex<usize>,
    freed: Condvar,
}

/// A turn of [`Turns`], given back when dropped (also by a test that
/// panicked).
pub struct Turn {
    turns: &'static Turns,
}

impl Turns {
    /// Turns of which `limit` can be held at once.
    pub const fn new(limit: usize) -> Turns {
        Turns {
            limit,
            taken: Mutex::new(0),
            freed: Condvar::new(),
        }
    }

    /// The limit, `DSPANS_HEAVY_TESTS` if set to a positive number.
    fn limit(&self) -> usize {
        std::env::var("DSPANS_HEAVY_TESTS")
            .ok()
            .and_then(|n| n.parse().ok())
            .filter(|n| *n > 0)
            .unwrap_or(self.limit)
    }

    /// Waits for a turn and holds it until the [`Turn`] is dropped.
    pub fn take(&'static self) -> Turn {
        let limit = self.limit();
        let mut taken = self.taken.lock().unwrap_or_else(PoisonError::into_inner);
        while *taken >= limit {
            taken = self
                .freed
                .wait(taken)
                .unwrap_or_else(PoisonError::into_inner);
        }
        *taken += 1;
        Turn { turns: self }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut taken = self
            .turns
            .taken
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *taken -= 1;
        self.turns.freed.notify_one();
    }
}
