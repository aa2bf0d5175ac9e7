//! A `[[project]]` entry: a few fixed keys, and one key per pipeline the
//! project takes part in (`gate = ["unit", "lint"]`).

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::Deserialize;

/// Keys of a project entry that are not pipeline names.
pub(crate) const RESERVED_KEYS: &[&str] = &["name", "repo", "branch", "queue"];

/// A `[[project]]` entry.
///
/// Any key other than `name`, `repo`, `branch` and `queue` names a pipeline
/// and lists the jobs the project runs in it; a pipeline that is not
/// defined is reported by [`crate::config::Config::validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectConfig {
    /// Project name, e.g. `org/project`.
    pub name: String,
    /// A local git repository; the merger then really merges changes
    /// (branch `<change>/<patchset>` onto [`ProjectConfig::branch`]).
    pub repo: Option<PathBuf>,
    /// Target branch (default `main`).
    pub branch: String,
    /// Change queue for dependent pipelines; projects naming the same queue
    /// are gated together. Without it, the pipeline's shared default queue.
    pub queue: Option<String>,
    /// Pipeline name to job names, in file order.
    pub pipelines: BTreeMap<String, Vec<String>>,
}

impl<'de> Deserialize<'de> for ProjectConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(ProjectVisitor)
    }
}

struct ProjectVisitor;

impl<'de> Visitor<'de> for ProjectVisitor {
    type Value = ProjectConfig;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a project table: name, optional repo, branch, queue, and <pipeline> = [jobs]")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ProjectConfig, A::Error> {
        let mut name = None;
        let mut repo = None;
        let mut branch = None;
        let mut queue = None;
        let mut pipelines = BTreeMap::new();
        while let Some(key) = map.next_key::<String>()? {
            let duplicate = || de::Error::custom(format_args!("duplicate key `{key}`"));
            match key.as_str() {
                "name" if name.is_none() => name = Some(map.next_value::<String>()?),
                "repo" if repo.is_none() => repo = Some(map.next_value::<PathBuf>()?),
                "branch" if branch.is_none() => branch = Some(map.next_value::<String>()?),
                "queue" if queue.is_none() => queue = Some(map.next_value::<String>()?),
                "name" | "repo" | "branch" | "queue" => return Err(duplicate()),
                _ => {
                    if pipelines.contains_key(&key) {
                        return Err(duplicate());
                    }
                    let jobs = map.next_value::<JobList>()?.0;
                    pipelines.insert(key, jobs);
                }
            }
        }
        Ok(ProjectConfig {
            name: name.ok_or_else(|| de::Error::missing_field("name"))?,
            repo,
            branch: branch.unwrap_or_else(|| super::DEFAULT_BRANCH.to_string()),
            queue,
            pipelines,
        })
    }
}

impl ProjectConfig {
    /// The `file://` URL of the project's `repo` (an absolute path: config
    /// paths are resolved against the config file's directory), for
    /// `vcs.repository.url.full`.
    ///
    /// ```
    /// use dspans_pipeline::config::ProjectConfig;
    /// let project: ProjectConfig = toml::from_str("name = \"org/p\"\nrepo = \"/srv/git/my p\"").unwrap();
    /// assert_eq!(project.repository_url().as_deref(), Some("file:///srv/git/my%20p"));
    /// ```
    pub fn repository_url(&self) -> Option<String> {
        let repo = self.repo.as_ref()?;
        url::Url::from_file_path(repo).ok().map(String::from)
    }
}

/// A pipeline's job list, with an error that says what a pipeline key is.
struct JobList(Vec<String>);

impl<'de> Deserialize<'de> for JobList {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ListVisitor;
        impl<'de> Visitor<'de> for ListVisitor {
            type Value = JobList;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a list of job names (a project key other than name, repo, branch \
                     and queue names a pipeline)",
                )
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<JobList, A::Error> {
                let mut jobs = Vec::new();
                while let Some(job) = seq.next_element::<String>()? {
                    jobs.push(job);
                }
                Ok(JobList(jobs))
            }
        }
        d.deserialize_seq(ListVisitor)
    }
}
