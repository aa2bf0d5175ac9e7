//! `dspans`: OpenTelemetry spans that outlive the process that started them.

// The doc comments of this binary's argument structs are clap's `--help`
// text, where `[store]` names a config section, not an item to link to.
#![allow(rustdoc::broken_intra_doc_links)]

mod bench_crashes;
mod bench_pipeline;
mod bench_spans;
mod bench_ui;
mod collector_cmd;
mod demo;
mod export_args;
mod pipeline_cmd;
mod processes;
mod reports;
mod send_cmd;
mod span_cmd;
mod spans_cmd;
mod status_cmd;
mod store_cmd;
mod ui_cmd;
mod view_cmd;
mod view_follow;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

const AFTER_HELP: &str = "\
Exit status: 0 on success, 1 on a runtime error (unreadable input, export \
failure), 2 on a usage error.

Logs go to stderr; set RUST_LOG (for example RUST_LOG=debug) for more.";

/// Durable OpenTelemetry spans: save a span's state as JSON, restore it in
/// another process, start children there, and end it anywhere.
#[derive(Parser, Debug)]
#[command(name = "dspans", version, after_help = AFTER_HELP)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Save, restore and end spans from the shell (the saved JSON is the state).
    #[command(subcommand)]
    Span(span_cmd::SpanCommand),
    /// The main job: the whole pipeline on this machine (two schedulers, one
    /// killed mid-run, an executor, a merger, a collector), then its traces.
    Demo(demo::DemoArgs),
    /// Run a scheduler: processes the pipelines whose lock it holds.
    Scheduler(pipeline_cmd::ComponentArgs),
    /// Run an executor: claims build requests and runs their jobs.
    Executor(pipeline_cmd::ComponentArgs),
    /// Run a merger: claims merge requests and merges changes.
    Merger(pipeline_cmd::ComponentArgs),
    /// Ask for a change to be tested in a pipeline; prints the event id.
    Enqueue(pipeline_cmd::EnqueueArgs),
    /// Show pipelines, queued items with their builds and merges, and pending events.
    Status(status_cmd::StatusArgs),
    /// List the saved spans that are open now (name, trace id, age, owning
    /// object) and how many ended spans wait for export.
    Spans(spans_cmd::SpansArgs),
    /// Receive OTLP traces (gRPC and HTTP) into an OTLP-JSON lines file.
    Collector(collector_cmd::CollectorArgs),
    /// Send OTLP-JSON lines files (dspans's, or the OpenTelemetry Collector's) to an OTLP backend.
    Send(send_cmd::SendArgs),
    /// Show the traces of an OTLP-JSON lines file as waterfalls (terminal, --html).
    View(view_cmd::ViewArgs),
    /// A trace viewer in the browser, with the spans still running.
    Ui(ui_cmd::UiArgs),
    /// Inspect the coordination store (SQLite or ZooKeeper) named by a config file.
    #[command(subcommand)]
    Store(store_cmd::StoreCommand),
    /// Measure the project's operations.
    #[command(subcommand)]
    Bench(BenchCommand),
}

#[derive(Subcommand, Debug)]
enum BenchCommand {
    /// Saved-span operations against a plain OpenTelemetry span (ns per op, JSON lines).
    Spans(bench_spans::BenchSpansArgs),
    /// Store operations per second on one backend (JSON lines).
    Store(store_cmd::BenchStoreArgs),
    /// Items per second through the pipeline, and store round trips per item (JSON).
    Pipeline(bench_pipeline::BenchPipelineArgs),
    /// Spans a plain OTLP backend gets twice or never when schedulers are SIGKILLed.
    Crashes(bench_crashes::BenchCrashesArgs),
    /// The viewer's ingest rate, search time and big-trace drawing time (JSON).
    Ui(bench_ui::BenchUiArgs),
}

/// Logs to stderr, in colour on a terminal unless `NO_COLOR` is set. Without
/// `RUST_LOG`, warnings and errors; components also log a line per item
/// and per build (info of the pipeline crate), so one started by hand shows
/// what it does.
fn init_logging(command: &Command) {
    let default = match command {
        Command::Scheduler(_) | Command::Executor(_) | Command::Merger(_) => {
            "warn,dspans_pipeline=info"
        }
        _ => "warn",
    };
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default)),
        )
        .init();
}

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    init_logging(&cli.command);
    // `dspans span` runs once per shell step: a runtime on this thread
    // alone starts faster than a pool (a `span exec` adds the least to
    // the command it wraps); the long-running commands get the pool.
    let runtime = match &cli.command {
        Command::Span(_) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build(),
        _ => tokio::runtime::Runtime::new(),
    };
    let runtime = match runtime {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("dspans: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Span(cmd) => {
                let sub = matches
                    .subcommand_matches("span")
                    .and_then(|m| m.subcommand().map(|(_, m)| m));
                span_cmd::run(cmd, sub).await
            }
            Command::Demo(args) => demo::run(args).await,
            Command::Scheduler(args) => {
                pipeline_cmd::run_component(pipeline_cmd::Kind::Scheduler, args).await
            }
            Command::Executor(args) => {
                pipeline_cmd::run_component(pipeline_cmd::Kind::Executor, args).await
            }
            Command::Merger(args) => {
                pipeline_cmd::run_component(pipeline_cmd::Kind::Merger, args).await
            }
            Command::Enqueue(args) => pipeline_cmd::run_enqueue(args).await,
            Command::Status(args) => status_cmd::run_status(args).await,
            Command::Spans(args) => spans_cmd::run(args).await,
            Command::Collector(args) => collector_cmd::run(args).await,
            Command::Send(args) => send_cmd::run(args).await,
            Command::View(args) => view_cmd::run(args),
            Command::Ui(args) => ui_cmd::run(args).await,
            Command::Store(cmd) => store_cmd::run_store(cmd).await,
            Command::Bench(BenchCommand::Spans(args)) => bench_spans::run(&args),
            Command::Bench(BenchCommand::Store(args)) => store_cmd::run_bench_store(args).await,
            Command::Bench(BenchCommand::Pipeline(args)) => bench_pipeline::run(args).await,
            Command::Bench(BenchCommand::Crashes(args)) => bench_crashes::run(args).await,
            Command::Bench(BenchCommand::Ui(args)) => bench_ui::run(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let quiet = e
                .downcast_ref::<ExitStatus>()
                .is_some_and(|status| status.message.is_empty());
            if !quiet {
                eprintln!("dspans: {}", error_chain(&e));
            }
            if e.downcast_ref::<UsageError>().is_some() {
                ExitCode::from(2)
            } else if let Some(status) = e.downcast_ref::<ExitStatus>() {
                ExitCode::from(status.code)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}

/// An outcome that scripts tell apart by the exit status (a change that
/// failed, a wait that timed out: `dspans enqueue --wait`; the status of
/// the command `dspans span exec` ran); the message, if any, goes to
/// stderr.
#[derive(Debug)]
pub struct ExitStatus {
    /// The exit status, above 2 (1 is any other failure, 2 a usage error).
    pub code: u8,
    /// What happened.
    pub message: String,
}

impl std::fmt::Display for ExitStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ExitStatus {}

/// An error in what the command was given that clap could not see (an end
/// time before the span's start): exit status 2, like clap's own usage
/// errors, so scripts can tell it from a failure at run time.
#[derive(Debug)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for UsageError {}

/// The error and its causes, `: `-separated, leaving out a cause whose text
/// the message already holds (library errors often name their cause).
fn error_chain(error: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if message.contains(&text) {
            continue;
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&text);
    }
    message
}

#[cfg(test)]
mod tests {
    #[test]
    fn causes_already_in_the_message_are_not_repeated() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        let error = anyhow::Error::new(io).context("cannot read x: gone");
        assert_eq!(super::error_chain(&error), "cannot read x: gone");
        let error = anyhow::anyhow!("inner").context("outer");
        assert_eq!(super::error_chain(&error), "outer: inner");
    }
}
