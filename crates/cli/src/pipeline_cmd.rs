//! The reference pipeline's commands: the three long-running components
//! and `enqueue` (`status` is in `status_cmd`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use clap::Args;
use dspans_pipeline::component::{termination, tracer, Component};
use dspans_pipeline::model::ChangeRef;
use dspans_pipeline::scheduler::enqueue;
use dspans_pipeline::{Config, Layout};

pub(crate) use dspans_pipeline::component::open_store;

use crate::reports::{ReportStatus, ReportWatch};
use crate::{ExitStatus, UsageError};
pub use dspans_pipeline::component::Kind;

/// What SIGTERM does to each component (their `--help`).
const SHUTDOWN_HELP: &str = "\
SIGTERM (or Ctrl-C) stops the component cleanly, with exit status 0.
A scheduler finishes the step in progress (each is written to the store
before the next), releases its pipeline locks so that another scheduler
takes over at once, without waiting for a session timeout, and exits.
An executor or merger claims nothing new; the request in hand may finish
within a 5 s grace period (its result is written as usual), otherwise its
process group is killed, its spans end with an error status and the
request is handed back to the queue for another instance; then it exits.
A component whose store session ends exits with status 1, so a supervisor
can restart it (under the same --name it takes over at once what its
predecessor held).";

/// `--config` and `--name` of a component.
#[derive(Args, Debug)]
#[command(after_help = SHUTDOWN_HELP)]
pub struct ComponentArgs {
    /// The pipeline config file (TOML: [store], [tracing], pipelines, jobs, projects).
    #[arg(long, value_name = "FILE", env = "DSPANS_CONFIG")]
    pub config: PathBuf,
    /// Name of this instance (default: KIND-HOSTNAME-PID). A restarted
    /// instance given its old name takes over what its dead predecessor held.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
}

/// `dspans enqueue`.
#[derive(Args, Debug)]
#[command(after_help = "\
Example, as a CI step that fails with the change:
  dspans enqueue --config dspans.toml --pipeline gate --project org/project \\
    --change 42 --wait 600")]
pub struct EnqueueArgs {
    /// The pipeline config file.
    #[arg(long, value_name = "FILE", env = "DSPANS_CONFIG")]
    pub config: PathBuf,
    /// Pipeline to enqueue into.
    #[arg(long)]
    pub pipeline: String,
    /// Project of the change.
    #[arg(long)]
    pub project: String,
    /// Change number.
    #[arg(long)]
    pub change: u64,
    /// Patchset.
    #[arg(long, default_value_t = 1)]
    pub patchset: u64,
    /// Target branch (default: the project's branch from the config).
    #[arg(long)]
    pub branch: Option<String>,
    /// Wait for the change's report (at most SECONDS, default 3600) and
    /// print its result and the builds that did not succeed. Exit status:
    /// 0 when it succeeded, 3 when it was reported with another result, 4
    /// when no report came in time.
    #[arg(long, value_name = "SECONDS", num_args = 0..=1, default_missing_value = "3600")]
    pub wait: Option<f64>,
}

/// Exit status of `enqueue --wait` for a change reported with a result
/// other than `SUCCESS`.
pub const EXIT_CHANGE_FAILED: u8 = 3;
/// Exit status of `enqueue --wait` when no report came in time.
pub const EXIT_NO_REPORT: u8 = 4;

pub(crate) fn load(path: &Path) -> anyhow::Result<Config> {
    let mut config = Config::from_file(path)?;
    config
        .tracing
        .apply_process_env()
        .context("invalid OTEL_* environment variable")?;
    Ok(config)
}

/// Runs a component until SIGTERM: [`Component`] assembles it and shuts
/// it down.
pub async fn run_component(kind: Kind, args: ComponentArgs) -> anyhow::Result<()> {
    let config = load(&args.config)?;
    let name = args.name.unwrap_or_else(|| kind.default_name());
    let terminated = termination()?;
    let component = Component::open(kind, config, name).await?;
    eprintln!(
        "dspans {} {} running (SIGTERM to stop)",
        kind.as_str(),
        component.name()
    );
    Ok(component.run(terminated).await?)
}

/// Writes a trigger event and prints its id.
pub async fn run_enqueue(args: EnqueueArgs) -> anyhow::Result<()> {
    let config = load(&args.config)?;
    if config.pipeline(&args.pipeline).is_none() {
        bail!(
            "no pipeline named {:?} in {}",
            args.pipeline,
            args.config.display()
        );
    }
    let Some(project) = config.project(&args.project) else {
        bail!(
            "no project named {:?} in {}",
            args.project,
            args.config.display()
        );
    };
    let branch = args
        .branch
        .clone()
        .unwrap_or_else(|| project.branch.clone());
    let tracer = tracer(&config, Kind::Scheduler, "enqueue")?;
    let store = open_store(&config).await?;
    let change = ChangeRef {
        project: args.project,
        number: args.change,
        patchset: args.patchset,
        branch,
    };
    let id = enqueue(&store, &Layout::default(), &tracer, &args.pipeline, change).await?;
    // Sent now if the collector answers; the event is written either way,
    // so a collector that is away does not hold the command up.
    let _ = tracer
        .provider()
        .shutdown_with_timeout(Duration::from_secs(2));
    println!("{id}");
    let waited = match args.wait {
        Some(seconds) => wait_for_report(&store, &args.pipeline, &id, seconds).await,
        None => Ok(()),
    };
    let _ = store.close().await;
    waited
}

/// Waits for the report of event `id`, prints it, and fails with
/// [`EXIT_CHANGE_FAILED`] or [`EXIT_NO_REPORT`] unless it succeeded.
async fn wait_for_report(
    store: &std::sync::Arc<dyn dspans_store::Store>,
    pipeline: &str,
    id: &str,
    seconds: f64,
) -> anyhow::Result<()> {
    if !(seconds.is_finite() && seconds >= 0.0) {
        return Err(UsageError(format!("--wait {seconds}: a number of seconds, 0 or more")).into());
    }
    let deadline = Instant::now() + Duration::from_secs_f64(seconds.min(1e9));
    let mut watch = ReportWatch::new(store.clone(), pipeline);
    let mut progress = Instant::now();
    loop {
        if let Some(report) = watch.find(id).await? {
            let shown = ReportStatus::from(&report);
            for line in shown.lines() {
                println!("{}", line.trim_start());
            }
            if report.result.is_success() {
                return Ok(());
            }
            return Err(ExitStatus {
                code: EXIT_CHANGE_FAILED,
                message: format!("{} {} in {pipeline}", shown.change, shown.result),
            }
            .into());
        }
        if Instant::now() >= deadline {
            return Err(ExitStatus {
                code: EXIT_NO_REPORT,
                message: format!("no report for event {id} within {seconds} s"),
            }
            .into());
        }
        if progress.elapsed() >= Duration::from_secs(10) {
            eprintln!("waiting for the report of event {id} in {pipeline}");
            progress = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
