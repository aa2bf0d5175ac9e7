//! `dspans span exec`: a command run as a span, as otel-cli's `exec`
//! does, with the span saved first when asked, so that a later step can
//! end it if the runner dies.

use std::os::unix::process::ExitStatusExt as _;
use std::path::PathBuf;

use clap::Args;
use durable_spans::{parent_context, EndOptions, SavedSpanOptions, Timestamp};
use opentelemetry::trace::Status;
use opentelemetry::KeyValue;

use super::start::saved;
use super::{inherited_context, key_value, parse_kv, resolve_context, KindArg};
use crate::export_args::{ExportArgs, Session};
use crate::ExitStatus;

const EXAMPLE: &str = "\
Examples:
  dspans span exec unit-tests -- cargo test
  # a CI step whose TRACEPARENT came from the env file: a child of the pipeline's span
  dspans span exec deploy --kind client --save deploy.json -- ./deploy.sh prod

Exit status: the command's; 128+N when a signal N killed it; 127 when it
could not be started. A failed export is a warning and changes nothing.";

/// The exit status of `exec` for a command that could not be started, as
/// shells use it.
const EXIT_NOT_STARTED: u8 = 127;

/// `dspans span exec`.
#[derive(Args, Debug)]
#[command(after_help = EXAMPLE)]
pub struct ExecArgs {
    /// Span name.
    pub name: String,
    /// Parent span context: Zuul JSON, a traceparent, or a FILE holding
    /// either. Default: TRACEPARENT from the environment, else none.
    #[arg(long, value_name = "JSON|FILE|TRACEPARENT")]
    pub context: Option<String>,
    /// Do not take the parent from TRACEPARENT.
    #[arg(long)]
    pub no_env_context: bool,
    /// Attribute K=V (string); repeatable.
    #[arg(long, value_name = "K=V", value_parser = key_value)]
    pub attr: Vec<String>,
    /// Span kind.
    #[arg(long, value_enum, default_value_t = KindArg::Internal)]
    pub kind: KindArg,
    /// Write the span info to FILE before the command starts (and mark it
    /// ended after): if the runner dies, a later step can end the span with
    /// `dspans span end FILE --status error`.
    #[arg(long, value_name = "FILE")]
    pub save: Option<PathBuf>,
    #[command(flatten)]
    pub export: ExportArgs,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

/// How the command ended, for the span and for dspans's own exit status.
struct Ended {
    status: Status,
    attributes: Vec<KeyValue>,
    exit: u8,
}

pub(super) async fn run(args: ExecArgs) -> anyhow::Result<()> {
    let parent = match &args.context {
        Some(value) => Some(resolve_context(value)?),
        None => inherited_context(args.no_env_context),
    };
    let mut attributes = parse_kv(&args.attr)?;
    let session = Session::new(&args.export)?;
    let options = SavedSpanOptions::new()
        .parent(parent_context(parent.as_ref()))
        .kind(args.kind.into());
    let info = session
        .tracer
        .start_saved_span(args.name.clone(), options)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut file = saved(&info);
    if let Some(path) = &args.save {
        file.write(path)?;
    }
    let ended = run_command(&args.command, &info.span_context().to_traceparent()).await;
    attributes.extend(ended.attributes);
    let end_time = Timestamp::now().max(info.start_time);
    let end = EndOptions::new()
        .attributes(attributes)
        .status(ended.status)
        .end_time(end_time);
    session.tracer.end_saved_span(Some(&info), end);
    if let Err(error) = session.export().await {
        tracing::warn!("the span of the command was not exported: {error:#}");
    }
    if let Some(path) = &args.save {
        file.ended_at = Some(end_time);
        file.write(path)?;
    }
    match ended.exit {
        0 => Ok(()),
        code => Err(ExitStatus {
            code,
            message: String::new(),
        }
        .into()),
    }
}

/// Runs the command with stdin, stdout and stderr passed through and
/// TRACEPARENT naming the span; TRACESTATE, if set, is passed on as it is.
async fn run_command(command: &[String], traceparent: &str) -> Ended {
    let (program, rest) = command.split_first().expect("clap requires a command");
    let status = tokio::process::Command::new(program)
        .args(rest)
        .env("TRACEPARENT", traceparent)
        .status()
        .await;
    match status {
        Err(error) => {
            eprintln!("dspans: cannot run {program}: {error}");
            Ended {
                status: Status::error(format!("cannot run {program}: {error}")),
                attributes: Vec::new(),
                exit: EXIT_NOT_STARTED,
            }
        }
        Ok(status) => match (status.code(), status.signal()) {
            (Some(0), _) => Ended {
                status: Status::Unset,
                attributes: vec![KeyValue::new("process.exit.code", 0)],
                exit: 0,
            },
            (Some(code), _) => Ended {
                status: Status::error(format!("exited with {code}")),
                attributes: vec![KeyValue::new("process.exit.code", i64::from(code))],
                exit: u8::try_from(code).unwrap_or(1),
            },
            (None, signal) => {
                let signal = signal.unwrap_or(0);
                Ended {
                    status: Status::error(format!("killed by signal {signal}")),
                    attributes: Vec::new(),
                    exit: 128u8.saturating_add(u8::try_from(signal).unwrap_or(0)),
                }
            }
        },
    }
}
