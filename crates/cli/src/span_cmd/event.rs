//! `dspans span event`: an event recorded on a saved span, kept in its
//! file until the span ends.

use std::path::PathBuf;

use anyhow::bail;
use clap::Args;
use durable_spans::{EventData, Timestamp};

use super::file::SpanFile;
use super::{attributes, hex_ids, key_value};

const EXAMPLE: &str = "\
Example:
  dspans span event build.json cache-miss --attr key=deps --attr-json '{\"bytes\": 52428800}'";

/// `dspans span event`.
#[derive(Args, Debug)]
#[command(after_help = EXAMPLE)]
pub struct EventArgs {
    /// The saved span's FILE (as `span start --save` or `> FILE` wrote it).
    pub file: PathBuf,
    /// Event name.
    pub name: String,
    /// Event attribute K=V (string); repeatable.
    #[arg(long, value_name = "K=V", value_parser = key_value)]
    pub attr: Vec<String>,
    /// Event attributes with types, as a JSON object.
    #[arg(long, value_name = "JSON_OBJECT")]
    pub attr_json: Option<String>,
    /// When it happened: float seconds or integer nanoseconds. Default: now.
    #[arg(long, value_name = "T", allow_hyphen_values = true)]
    pub time: Option<Timestamp>,
}

pub(super) fn run(args: EventArgs) -> anyhow::Result<()> {
    let what = args.file.display().to_string();
    let text = std::fs::read_to_string(&args.file)
        .map_err(|e| anyhow::anyhow!("could not read {what}: {e}"))?;
    let mut file = SpanFile::parse(&text, &what)?;
    let Some(info) = &file.info else {
        bail!("{what} holds null span info: there is no span to add an event to");
    };
    if file.ended_at.is_some() {
        bail!(
            "span {} ({}) in {what} has ended: an event now would never be exported",
            info.name,
            hex_ids(info)
        );
    }
    file.events.push(EventData {
        name: args.name,
        time: args.time.unwrap_or_else(Timestamp::now),
        attributes: attributes(&args.attr, args.attr_json.as_deref())?,
    });
    file.write(&args.file)
}
