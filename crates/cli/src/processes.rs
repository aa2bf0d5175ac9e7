//! Child processes of `dspans demo` and `dspans bench crashes`: the
//! pipeline's components started as `dspans` subcommands, in an
//! environment of their own.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use dspans_pipeline::Config;

/// Removes the variables that would send the demo's spans elsewhere than
/// its own collector (the components read OTEL_* over their config).
pub(crate) fn clean_env(command: &mut Command) -> &mut Command {
    for var in dspans_otlp::ENV_VARS {
        command.env_remove(var);
    }
    command
        .env_remove("TRACEPARENT")
        .env_remove("TRACESTATE")
        .env_remove("DSPANS_CONFIG")
}

/// Child processes, stopped (SIGTERM, then SIGKILL) when dropped.
pub(crate) struct Processes {
    pub(crate) children: Vec<(String, Child)>,
}

impl Processes {
    pub(crate) fn spawn(&mut self, name: &str, mut command: Command) -> anyhow::Result<()> {
        let child = command
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        self.children.push((name.to_string(), child));
        Ok(())
    }

    pub(crate) fn signal(&self, name: &str, signal: &str) {
        if let Some((_, child)) = self.children.iter().find(|(n, _)| n == name) {
            let _ = Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status();
        }
    }

    /// Starts `dspans collector` on loopback ports of the system's choice
    /// with `args` (its output options), its stderr to `log`, as the child
    /// `name`; returns its OTLP/gRPC endpoint once it listens.
    pub(crate) fn spawn_collector(
        &mut self,
        name: &str,
        exe: &Path,
        args: &[&std::ffi::OsStr],
        log: &Path,
    ) -> anyhow::Result<String> {
        let log_file = std::fs::File::create(log)
            .with_context(|| format!("cannot create {}", log.display()))?;
        let mut collector = Command::new(exe);
        clean_env(&mut collector)
            .args([
                "collector",
                "--grpc",
                "127.0.0.1:0",
                "--http",
                "127.0.0.1:0",
            ])
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log_file);
        let mut child = collector
            .spawn()
            .with_context(|| format!("cannot start {name}"))?;
        let stdout = child.stdout.take().context("the collector's stdout")?;
        self.children.push((name.to_string(), child));
        for line in BufReader::new(stdout).lines() {
            if let Some(addr) = line?.strip_prefix("grpc ") {
                return Ok(format!("http://{addr}"));
            }
        }
        anyhow::bail!("{name} exited before listening; see {}", log.display())
    }

    /// SIGKILLs `name` and waits for it; false when there is no such
    /// child.
    pub(crate) fn kill(&mut self, name: &str) -> bool {
        let Some(pos) = self.children.iter().position(|(n, _)| n == name) else {
            return false;
        };
        let (_, mut child) = self.children.remove(pos);
        let _ = child.kill();
        let _ = child.wait();
        true
    }

    /// SIGTERM to each, then waits (SIGKILL after 15 s).
    pub(crate) fn stop(&mut self, names: &[&str]) {
        for name in names {
            self.signal(name, "-TERM");
        }
        for name in names {
            let Some(pos) = self.children.iter().position(|(n, _)| n == name) else {
                continue;
            };
            let (_, mut child) = self.children.remove(pos);
            let deadline = Instant::now() + Duration::from_secs(15);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) | Err(_) => break,
                    Ok(None) if Instant::now() > deadline => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                    Ok(None) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        }
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        for (_, child) in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `dspans KIND --config CONFIG --name NAME`, its stderr appended to
/// `LOGS/NAME.log`, without the variables [`clean_env`] removes.
pub(crate) fn component(
    exe: &Path,
    kind: &str,
    name: &str,
    config: &Path,
    logs: &Path,
) -> anyhow::Result<Command> {
    // Appended to: a component started again keeps its earlier lines.
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(logs.join(format!("{name}.log")))?;
    let mut command = Command::new(exe);
    clean_env(&mut command)
        .args([kind, "--config"])
        .arg(config)
        .args(["--name", name])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    Ok(command)
}

/// Writes `text` as the components' config at `path`, reads it back and
/// creates its store: the components only open it.
pub(crate) async fn write_config(path: &Path, text: &str) -> anyhow::Result<Config> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))?;
    let config = Config::from_file(path)?;
    dspans_store::init(&config.store)
        .await
        .context("cannot create the store")?;
    Ok(config)
}
