//! The reports of changes, as `dspans status` shows them and
//! `dspans enqueue --wait` waits for them: each change's result, and the
//! builds that did not succeed with their logs.

use std::collections::HashSet;
use std::sync::Arc;

use dspans_pipeline::model::{Report, StoredObject};
use dspans_pipeline::Layout;
use dspans_store::Store;

/// One reported change, as shown.
#[derive(Debug, serde::Serialize)]
pub(crate) struct ReportStatus {
    /// `<number>,<patchset>` of the change.
    pub change: String,
    pub project: String,
    /// `SUCCESS`, `FAILURE`, `MERGE_CONFLICT`, …
    pub result: String,
    /// When it was reported, in nanoseconds since the epoch.
    pub report_time: durable_spans::Timestamp,
    /// The trigger event it answers (printed by `dspans enqueue`).
    pub zuul_event_id: String,
    /// The builds that did not succeed.
    pub failed: Vec<FailedBuild>,
}

/// A build that did not succeed.
#[derive(Debug, serde::Serialize)]
pub(crate) struct FailedBuild {
    pub job: String,
    pub result: String,
    /// Its log's `file://` URL on the executor's host, when kept.
    pub log_url: Option<String>,
}

impl From<&Report> for ReportStatus {
    fn from(report: &Report) -> ReportStatus {
        ReportStatus {
            change: report.change.short(),
            project: report.change.project.clone(),
            result: report.result.as_str().to_string(),
            report_time: report.report_time,
            zuul_event_id: report.zuul_event_id.clone(),
            failed: report
                .builds
                .iter()
                .filter(|b| !b.result.is_success())
                .map(|b| FailedBuild {
                    job: b.job.clone(),
                    result: b.result.as_str().to_string(),
                    log_url: b.log_url.clone(),
                })
                .collect(),
        }
    }
}

impl ReportStatus {
    /// The lines `dspans status` prints: the change and its result, then a
    /// line per build that did not succeed.
    pub(crate) fn lines(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "  {} {} {}",
            self.project, self.change, self.result
        )];
        for build in &self.failed {
            let log = build.log_url.as_deref().unwrap_or("(no log kept)");
            lines.push(format!("    {} {} {log}", build.job, build.result));
        }
        lines
    }
}

/// Reads the reports of `pipeline` named in `names` (children of its
/// reports node); one that cannot be read is left out with a warning.
async fn read_reports(
    store: &Arc<dyn Store>,
    layout: &Layout,
    pipeline: &str,
    names: &[String],
) -> anyhow::Result<Vec<Report>> {
    let mut reports = Vec::new();
    for name in names {
        let path = format!("{}/{name}", layout.reports(pipeline));
        let Some(node) = store.get(&path).await? else {
            continue;
        };
        match Report::from_json(&node.data) {
            Ok(report) => reports.push(report),
            Err(error) => tracing::warn!(%path, %error, "unreadable report left out"),
        }
    }
    Ok(reports)
}

/// The latest `limit` reports of `pipeline`, newest first.
pub(crate) async fn latest(
    store: &Arc<dyn Store>,
    pipeline: &str,
    limit: usize,
) -> anyhow::Result<Vec<ReportStatus>> {
    let layout = Layout::default();
    let names = children(store, &layout.reports(pipeline)).await?;
    let mut reports = read_reports(store, &layout, pipeline, &names).await?;
    reports.sort_by_key(|r| std::cmp::Reverse(r.report_time));
    Ok(reports.iter().take(limit).map(ReportStatus::from).collect())
}

/// Watches the reports of `pipeline` for the one answering event
/// `zuul_event_id`, reading each report once.
pub(crate) struct ReportWatch {
    store: Arc<dyn Store>,
    layout: Layout,
    pipeline: String,
    seen: HashSet<String>,
}

impl ReportWatch {
    pub(crate) fn new(store: Arc<dyn Store>, pipeline: &str) -> ReportWatch {
        ReportWatch {
            store,
            layout: Layout::default(),
            pipeline: pipeline.to_string(),
            seen: HashSet::new(),
        }
    }

    /// The report of the event, if it is there now.
    pub(crate) async fn find(&mut self, zuul_event_id: &str) -> anyhow::Result<Option<Report>> {
        let names: Vec<String> = children(&self.store, &self.layout.reports(&self.pipeline))
            .await?
            .into_iter()
            .filter(|name| !self.seen.contains(name))
            .collect();
        let reports = read_reports(&self.store, &self.layout, &self.pipeline, &names).await?;
        self.seen.extend(names);
        Ok(reports
            .into_iter()
            .find(|r| r.zuul_event_id == zuul_event_id))
    }
}

async fn children(store: &Arc<dyn Store>, path: &str) -> anyhow::Result<Vec<String>> {
    match store.children(path).await {
        Ok(children) => Ok(children),
        Err(dspans_store::StoreError::NoNode { .. }) => Ok(Vec::new()),
        Err(error) => Err(error.into()),
    }
}
