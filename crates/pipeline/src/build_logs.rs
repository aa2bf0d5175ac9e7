//! Build logs: the output of each build, kept by the executor that ran it
//! as `<[logs] dir>/<build uuid>.log` (its last `max_bytes`), so that a
//! failed build can be looked into after its scratch directory is gone.
//!
//! A log appears whole or not at all (written under a temporary name, then
//! renamed). Pruning by age and count runs after each build. The build's
//! uuid comes from the store, which is not trusted: one that is not a
//! plain uuid gets no log, so no path outside the directory is written.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::config::LogsConfig;

/// Keeps the end of `output` as the log of build `build_uuid`; gives the
/// log's `file://` URL. `None` (with a warning) when logs are off, the
/// uuid is not a plain uuid, or writing fails: a build never fails for
/// its log.
pub(crate) fn keep(config: &LogsConfig, build_uuid: &str, output: &Path) -> Option<String> {
    let dir = config.kept_in()?;
    if !is_plain_uuid(build_uuid) {
        tracing::warn!(build = %build_uuid, "build uuid is not a plain uuid; no log kept");
        return None;
    }
    match write_log(dir, config.max_bytes, build_uuid, output) {
        Ok(path) => url::Url::from_file_path(&path).ok().map(String::from),
        Err(error) => {
            tracing::warn!(dir = %dir.display(), build = %build_uuid, %error,
                "cannot keep the build's log");
            None
        }
    }
}

/// Letters, digits and dashes only, at most 64: what `new_uuid` makes.
fn is_plain_uuid(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 64
        && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn write_log(dir: &Path, max_bytes: u64, build_uuid: &str, output: &Path) -> io::Result<PathBuf> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let dir = fs::canonicalize(dir)?;
    let path = dir.join(format!("{build_uuid}.log"));
    let temp = dir.join(format!(".{build_uuid}.log.tmp"));
    let mut source = File::open(output)?;
    let length = source.metadata()?.len();
    let skipped = length.saturating_sub(max_bytes);
    source.seek(SeekFrom::Start(skipped))?;
    let mut log = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temp)?;
    if skipped > 0 {
        writeln!(
            log,
            "[dspans: the first {skipped} bytes of output were left out]"
        )?;
    }
    io::copy(&mut source.take(max_bytes), &mut log)?;
    log.sync_all()?;
    fs::rename(&temp, &path)?;
    Ok(path)
}

/// Deletes logs older than `max_age_days`, then the oldest beyond
/// `max_files`; gives how many it deleted.
pub(crate) fn prune(config: &LogsConfig) -> usize {
    let Some(Ok(entries)) = config.kept_in().map(fs::read_dir) else {
        return 0;
    };
    let mut logs: Vec<(SystemTime, PathBuf)> = entries
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.ends_with(".log") && !n.starts_with('.'))
        })
        .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
        .collect();
    logs.sort();
    let now = SystemTime::now();
    let too_old = |at: &SystemTime| {
        now.duration_since(*at)
            .is_ok_and(|age| age > config.max_age())
    };
    let excess = logs.len().saturating_sub(config.max_files);
    let mut deleted = 0;
    for (index, (at, path)) in logs.iter().enumerate() {
        if (index < excess || too_old(at)) && fs::remove_file(path).is_ok() {
            deleted += 1;
        }
    }
    deleted
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path) -> LogsConfig {
        LogsConfig {
            dir: Some(dir.join("logs")),
            max_bytes: 10,
            max_files: 2,
            ..LogsConfig::default()
        }
    }

    #[test]
    fn the_end_of_the_output_is_kept_and_old_logs_are_pruned() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let output = dir.path().join("output");
        fs::write(&output, "0123456789abcdefghij").unwrap();
        let url = keep(&config, "b-1", &output).unwrap();
        let path = url::Url::parse(&url).unwrap().to_file_path().unwrap();
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(
            text,
            "[dspans: the first 10 bytes of output were left out]\nabcdefghij"
        );
        keep(&config, "b-2", &output).unwrap();
        keep(&config, "b-3", &output).unwrap();
        assert_eq!(prune(&config), 1);
        let mut left: Vec<String> = fs::read_dir(config.kept_in().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left.len(), 2, "{left:?}");
    }

    #[test]
    fn a_uuid_that_names_a_path_gets_no_log() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let output = dir.path().join("output");
        fs::write(&output, "x").unwrap();
        for uuid in ["../escape", "a/b", "", ".hidden"] {
            assert_eq!(keep(&config, uuid, &output), None, "{uuid}");
        }
        assert!(!dir.path().join("escape.log").exists());
    }
}
