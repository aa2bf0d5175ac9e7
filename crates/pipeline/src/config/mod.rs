//! The TOML configuration file shared by every component.
//!
//! ```toml
//! [store]                        # dspans_store::StoreConfig
//! backend = "sqlite"
//! path = "state/dspans.db"       # relative to this file
//!
//! [tracing]                      # dspans_otlp::ExportOptions (Zuul's names)
//! enabled = true
//! endpoint = "http://127.0.0.1:4317"
//!
//! [[pipeline]]
//! name = "check"
//! manager = "independent"
//!
//! [[pipeline]]
//! name = "gate"
//! manager = "dependent"
//!
//! [[job]]
//! name = "unit"
//! run = "sleep 0.2; echo ok"
//! timeout_s = 60                 # default 600
//! attempts = 3                   # default 3: runs when the executor dies
//!
//! [logs]                         # build output kept by executors
//! dir = "logs"                   # relative to this file; default "logs"
//! max_age_days = 7               # default 7
//! max_files = 1000               # default 1000
//!
//! [[project]]
//! name = "org/project"
//! repo = "repos/project"         # optional local git repository
//! branch = "main"                # default "main"
//! queue = "integrated"           # optional shared change queue name
//! check = ["unit"]               # <pipeline name> = [<job names>]
//! gate = ["unit"]
//! ```
//!
//! Every table is strict: an unknown key is an error. Errors name the file,
//! the line and column when known, the key path (e.g. `pipeline[1].manager`)
//! and the reason.

mod error;
mod logs;
mod project;

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use dspans_otlp::ExportOptions;
use dspans_store::StoreConfig;
use serde::{Deserialize, Serialize};

pub use error::ConfigError;
pub use logs::LogsConfig;
pub use project::ProjectConfig;

/// Default job timeout in seconds.
pub const DEFAULT_TIMEOUT_S: u64 = 600;
/// Default number of times a job runs when its executor keeps dying.
pub const DEFAULT_ATTEMPTS: u32 = 3;
/// Default target branch of a project.
pub const DEFAULT_BRANCH: &str = "main";
/// Change queue shared by the projects of a dependent pipeline that name no
/// `queue`.
pub const DEFAULT_QUEUE: &str = "default";

/// How a pipeline treats the changes in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Manager {
    /// Each change is tested on its own.
    Independent,
    /// Gate: each change is tested on top of the changes ahead of it in its
    /// change queue; a failure ahead resets the items behind.
    Dependent,
}

impl Manager {
    /// The name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Manager::Independent => "independent",
            Manager::Dependent => "dependent",
        }
    }
}

/// A `[[pipeline]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Pipeline name; projects use it as a key.
    pub name: String,
    /// `"independent"` or `"dependent"`.
    pub manager: Manager,
}

/// A `[[job]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobConfig {
    /// Job name.
    pub name: String,
    /// Shell command (run by `sh -c` in a scratch directory).
    pub run: String,
    /// Seconds before the command is killed and the build is `TIMED_OUT`.
    #[serde(default = "default_timeout")]
    pub timeout_s: u64,
    /// How many times the job may run when its executor dies mid-build;
    /// after that the build is `RETRY_LIMIT`.
    #[serde(default = "default_attempts")]
    pub attempts: u32,
}

fn default_timeout() -> u64 {
    DEFAULT_TIMEOUT_S
}

fn default_attempts() -> u32 {
    DEFAULT_ATTEMPTS
}

/// The whole configuration file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[store]`.
    #[serde(default)]
    pub store: StoreConfig,
    /// `[tracing]`.
    #[serde(default)]
    pub tracing: ExportOptions,
    /// `[[pipeline]]` entries, in file order.
    #[serde(default, rename = "pipeline")]
    pub pipelines: Vec<PipelineConfig>,
    /// `[[job]]` entries, in file order.
    #[serde(default, rename = "job")]
    pub jobs: Vec<JobConfig>,
    /// `[[project]]` entries, in file order.
    #[serde(default, rename = "project")]
    pub projects: Vec<ProjectConfig>,
    /// `[logs]`: where executors keep build output.
    #[serde(default)]
    pub logs: LogsConfig,
    /// The file it was read from, if any.
    #[serde(skip)]
    pub source: Option<PathBuf>,
}

impl FromStr for Config {
    type Err = ConfigError;

    /// Parses and validates a configuration; relative paths stay as given
    /// (relative to the working directory).
    fn from_str(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, None)
    }
}

impl Config {
    /// Reads, parses and validates a configuration file. Relative paths in
    /// it (SQLite `path`, TLS files, project `repo`) are made relative to
    /// the file's directory. The standard `OTEL_*` environment overrides
    /// are not applied here: components call
    /// `config.tracing.apply_env(|k| std::env::var(k).ok())` afterwards.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Config, ConfigError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|cause| ConfigError::Read {
            path: path.to_path_buf(),
            cause,
        })?;
        let mut config = Config::parse(&text, Some(path))?;
        let base = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        config.resolve_paths(&base);
        Ok(config)
    }

    /// Parses and validates `text`; `source` names the file in errors.
    pub fn parse(text: &str, source: Option<&Path>) -> Result<Config, ConfigError> {
        let de = toml::de::Deserializer::parse(text)
            .map_err(|e| ConfigError::from_toml(source, text, None, &e))?;
        let mut config: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            ConfigError::from_toml(source, text, Some(path), e.inner())
        })?;
        config.source = source.map(Path::to_path_buf);
        config.validate()?;
        Ok(config)
    }

    /// Makes relative file paths relative to `base`.
    pub fn resolve_paths(&mut self, base: &Path) {
        self.store = std::mem::take(&mut self.store).relative_to(base);
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        let t = &mut self.tracing;
        for p in [
            &mut t.tls_ca,
            &mut t.tls_cert,
            &mut t.tls_key,
            &mut t.certificate_file,
        ]
        .into_iter()
        .flatten()
        {
            fix(p);
        }
        for project in &mut self.projects {
            if let Some(repo) = &mut project.repo {
                fix(repo);
            }
        }
        let logs = self
            .logs
            .dir
            .get_or_insert_with(|| PathBuf::from(logs::DEFAULT_DIR));
        fix(logs);
    }

    /// Semantic checks: unique non-empty names, projects naming existing
    /// pipelines and jobs, non-empty commands, non-zero timeouts, and the
    /// `[store]` and `[tracing]` option combinations.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let fail = |key: String, reason: String| Err(self.invalid(key, reason));
        if let Err(e) = self.store.validate() {
            return fail("store".into(), e.to_string());
        }
        if let Err(e) = self.tracing.validate() {
            return fail("tracing".into(), e.to_string());
        }
        let mut seen = HashSet::new();
        for (i, p) in self.pipelines.iter().enumerate() {
            check_name(&mut seen, "pipeline", &p.name)
                .or_else(|r| fail(format!("pipeline[{i}].name"), r))?;
            if project::RESERVED_KEYS.contains(&p.name.as_str()) {
                return fail(
                    format!("pipeline[{i}].name"),
                    format!(
                        "{:?} cannot name a pipeline: projects use that key for themselves",
                        p.name
                    ),
                );
            }
        }
        let mut seen = HashSet::new();
        for (i, j) in self.jobs.iter().enumerate() {
            check_name(&mut seen, "job", &j.name).or_else(|r| fail(format!("job[{i}].name"), r))?;
            if j.run.trim().is_empty() {
                return fail(
                    format!("job[{i}].run"),
                    format!("job {:?} has an empty command", j.name),
                );
            }
            if j.timeout_s == 0 {
                return fail(
                    format!("job[{i}].timeout_s"),
                    format!("job {:?}: timeout must be at least 1 second", j.name),
                );
            }
            if j.attempts == 0 {
                return fail(
                    format!("job[{i}].attempts"),
                    format!("job {:?}: attempts must be at least 1", j.name),
                );
            }
        }
        let mut seen = HashSet::new();
        for (i, p) in self.projects.iter().enumerate() {
            check_name(&mut seen, "project", &p.name)
                .or_else(|r| fail(format!("project[{i}].name"), r))?;
            if p.branch.trim().is_empty() {
                return fail(format!("project[{i}].branch"), "empty branch".into());
            }
            if p.queue.as_deref().is_some_and(|q| q.trim().is_empty()) {
                return fail(format!("project[{i}].queue"), "empty queue name".into());
            }
            for (pipeline, jobs) in &p.pipelines {
                if self.pipeline(pipeline).is_none() {
                    return fail(
                        format!("project[{i}].{pipeline}"),
                        format!(
                            "project {:?} names pipeline {pipeline:?}, which is not defined \
                             (pipelines: {})",
                            p.name,
                            self.pipelines
                                .iter()
                                .map(|p| p.name.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    );
                }
                let mut listed = HashSet::new();
                for (k, job) in jobs.iter().enumerate() {
                    let key = format!("project[{i}].{pipeline}[{k}]");
                    if self.job(job).is_none() {
                        return fail(
                            key,
                            format!(
                                "project {:?} names job {job:?}, which is not defined",
                                p.name
                            ),
                        );
                    }
                    if !listed.insert(job) {
                        return fail(key, format!("job {job:?} is listed twice"));
                    }
                }
            }
        }
        Ok(())
    }

    fn invalid(&self, key: String, reason: String) -> ConfigError {
        ConfigError::Invalid {
            file: self.source.clone(),
            key,
            position: None,
            reason,
        }
    }

    /// The pipeline named `name`.
    pub fn pipeline(&self, name: &str) -> Option<&PipelineConfig> {
        self.pipelines.iter().find(|p| p.name == name)
    }

    /// The job named `name`.
    pub fn job(&self, name: &str) -> Option<&JobConfig> {
        self.jobs.iter().find(|j| j.name == name)
    }

    /// The project named `name`.
    pub fn project(&self, name: &str) -> Option<&ProjectConfig> {
        self.projects.iter().find(|p| p.name == name)
    }

    /// The jobs a project runs in a pipeline, in config order; `None` when
    /// the project does not take part in the pipeline (or either is
    /// unknown).
    pub fn jobs_for(&self, project: &str, pipeline: &str) -> Option<Vec<&JobConfig>> {
        let names = self.project(project)?.pipelines.get(pipeline)?;
        names.iter().map(|n| self.job(n)).collect()
    }

    /// The change queue a project's items join in a pipeline: for a
    /// dependent pipeline, the project's `queue`, or [`DEFAULT_QUEUE`] (all
    /// such projects share it); for an independent pipeline, the project's
    /// name (its items do not depend on each other). `None` for an unknown
    /// pipeline.
    pub fn change_queue(&self, pipeline: &str, project: &str) -> Option<String> {
        let manager = self.pipeline(pipeline)?.manager;
        Some(match manager {
            Manager::Independent => project.to_string(),
            Manager::Dependent => self
                .project(project)
                .and_then(|p| p.queue.clone())
                .unwrap_or_else(|| DEFAULT_QUEUE.to_string()),
        })
    }

    /// Every pipeline a project takes part in, with its job names.
    pub fn pipelines_of(&self, project: &str) -> BTreeMap<&str, &[String]> {
        self.project(project)
            .map(|p| {
                p.pipelines
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_slice()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// Checks a name is non-empty and unique among its kind.
fn check_name<'a>(seen: &mut HashSet<&'a str>, kind: &str, name: &'a str) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err(format!("{kind} name is empty"));
    }
    if name.chars().any(char::is_control) {
        return Err(format!("{kind} name {name:?} contains control characters"));
    }
    if !seen.insert(name) {
        return Err(format!("duplicate {kind} name {name:?}"));
    }
    Ok(())
}
