//! `[logs]`: where executors keep each build's output.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// `[logs]`: each build's output (stdout and stderr, the last
/// [`LogsConfig::max_bytes`]) is kept as `<dir>/<build uuid>.log` by the
/// executor that ran it; its `file://` URL is the Build span's
/// `cicd.pipeline.task.run.url.full` and `dspans status` shows it. Files
/// older than `max_age_days`, and the oldest beyond `max_files`, are
/// deleted after each build.
///
/// ```
/// use dspans_pipeline::config::LogsConfig;
/// let logs: LogsConfig = toml::from_str("dir = \"/var/log/dspans\"\nmax_files = 50").unwrap();
/// assert_eq!(logs.max_files, 50);
/// assert_eq!(logs.max_age_days, 7); // the default
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogsConfig {
    /// The directory (relative to the config file; created when missing,
    /// mode 0700). Default `logs` beside the config file; a config not
    /// read from a file keeps no logs unless it names a directory.
    pub dir: Option<PathBuf>,
    /// Days a log is kept. Default 7.
    pub max_age_days: u64,
    /// Logs kept at most (the oldest go first). Default 1000.
    pub max_files: usize,
    /// Bytes of output kept per build, its end. Default 1 MiB.
    pub max_bytes: u64,
    /// `false` keeps no logs. Default `true`.
    pub enabled: bool,
}

impl Default for LogsConfig {
    fn default() -> Self {
        LogsConfig {
            dir: None,
            max_age_days: 7,
            max_files: 1000,
            max_bytes: 1024 * 1024,
            enabled: true,
        }
    }
}

/// The directory of `[logs]` beside a config file, when it names none.
pub(crate) const DEFAULT_DIR: &str = "logs";

impl LogsConfig {
    /// Where logs go, when they are kept at all.
    pub fn kept_in(&self) -> Option<&std::path::Path> {
        self.dir.as_deref().filter(|_| self.enabled)
    }

    /// How long a log is kept.
    pub fn max_age(&self) -> Duration {
        Duration::from_secs(self.max_age_days.saturating_mul(24 * 3600))
    }
}
