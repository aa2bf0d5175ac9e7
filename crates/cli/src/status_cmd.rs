//! `dspans status`: pending events, queued items, each item's current build
//! set with its merge and its builds, read from the store as they are.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Args;
use dspans_pipeline::model::{Build, BuildSet, BuildState, ChangeQueue, QueueItem, StoredObject};
use dspans_pipeline::{Config, Layout};
use dspans_store::recipes::{EventQueue, Job, JobQueue, JobState};
use dspans_store::Store;

use crate::pipeline_cmd::{load, open_store};
use crate::reports::{self, ReportStatus};

/// `dspans status`.
#[derive(Args, Debug)]
pub struct StatusArgs {
    /// The pipeline config file.
    #[arg(long, value_name = "FILE", env = "DSPANS_CONFIG")]
    pub config: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Wait until no event is pending, no item is queued and the span
    /// outbox is empty (every ended span accepted by the collector); exit 1
    /// if that has not happened within SECONDS.
    #[arg(long, value_name = "SECONDS")]
    pub wait_idle: Option<f64>,
    /// How many of each pipeline's latest reports to show (result, and the
    /// builds that did not succeed with their logs).
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub reports: usize,
}

/// What is queued and pending, per pipeline.
#[derive(Debug, serde::Serialize)]
pub(crate) struct Status {
    pub trigger_events: usize,
    /// Saved spans started and not ended yet.
    pub open_spans: usize,
    /// Ended spans waiting in the outbox for a collector to accept them.
    pub outbox: usize,
    pub pipelines: Vec<PipelineStatus>,
}

/// One pipeline: its pending result events, reports and queued items.
#[derive(Debug, serde::Serialize)]
pub(crate) struct PipelineStatus {
    pub name: String,
    pub result_events: usize,
    pub reports: usize,
    pub items: Vec<ItemStatus>,
    /// The latest reports (`--reports`), newest first.
    pub reported: Vec<ReportStatus>,
}

/// One queued item and its current build set.
#[derive(Debug, serde::Serialize)]
pub(crate) struct ItemStatus {
    uuid: String,
    queue: String,
    change: String,
    state: String,
    buildset: String,
    pub buildset_state: String,
    /// The merge result (`MERGED`, …), once known.
    merge: Option<String>,
    /// `not_requested`, `requested`, `running` (a merger has it) or
    /// `completed`.
    merge_state: String,
    /// The merger working on the merge request, while it runs.
    merger: Option<String>,
    resets: u32,
    /// Every job of the build set, in config order.
    builds: Vec<BuildStatus>,
}

/// One job of a build set: its current build, if requested yet.
#[derive(Debug, serde::Serialize)]
pub(crate) struct BuildStatus {
    job: String,
    /// The build's uuid; `None` while the job waits for the merge.
    uuid: Option<String>,
    /// `waiting` (no build yet), `requested`, `running` (an executor has
    /// it) or `completed`.
    state: String,
    /// `SUCCESS`, `FAILURE`, …, once known.
    result: Option<String>,
    /// The executor running it, or the one that ran it.
    executor: Option<String>,
    /// Retries so far (0 for the first attempt).
    retry: u32,
}

impl Status {
    pub(crate) fn idle(&self) -> bool {
        self.trigger_events == 0
            && self.outbox == 0
            && self
                .pipelines
                .iter()
                .all(|p| p.result_events == 0 && p.items.is_empty())
    }
}

async fn children(store: &Arc<dyn Store>, path: &str) -> anyhow::Result<Vec<String>> {
    match store.children(path).await {
        Ok(children) => Ok(children),
        Err(dspans_store::StoreError::NoNode { .. }) => Ok(Vec::new()),
        Err(error) => Err(error.into()),
    }
}

async fn read<T: StoredObject>(store: &Arc<dyn Store>, path: &str) -> anyhow::Result<Option<T>> {
    match store.get(path).await? {
        Some(node) => Ok(Some(T::from_json(&node.data)?)),
        None => Ok(None),
    }
}

/// The worker queue's record of a request, if it still exists. A record
/// that cannot be read is shown as absent rather than failing the status.
async fn request(queue: &JobQueue, id: Option<&str>) -> Option<Job> {
    let id = id?;
    match queue.get(id).await {
        Ok(job) => job,
        Err(error) => {
            tracing::warn!(request = %id, %error, "cannot read a request");
            None
        }
    }
}

fn job_state(state: JobState) -> &'static str {
    match state {
        JobState::Requested => "requested",
        JobState::Running => "running",
        JobState::Completed => "completed",
    }
}

/// A build as the scheduler recorded it, completed by what its executor
/// queue entry says (the scheduler learns of a claim only at the result).
async fn build_status(job: &str, build: Option<Build>, executors: &JobQueue) -> BuildStatus {
    let Some(build) = build else {
        return BuildStatus {
            job: job.to_string(),
            uuid: None,
            state: "waiting".into(),
            result: None,
            executor: None,
            retry: 0,
        };
    };
    let mut status = BuildStatus {
        job: job.to_string(),
        uuid: Some(build.uuid.clone()),
        state: match build.state {
            BuildState::Requested => "requested",
            BuildState::Running => "running",
            BuildState::Completed => "completed",
        }
        .into(),
        result: build.result.map(|r| r.as_str().to_string()),
        executor: build.executor.clone(),
        retry: build.retry,
    };
    if build.state != BuildState::Completed {
        if let Some(request) = request(executors, build.request_id.as_deref()).await {
            status.state = job_state(request.record.state).into();
            status.executor = request.record.worker.clone();
            if status.result.is_none() {
                status.result = request.record.result["result"].as_str().map(Into::into);
            }
        }
    }
    status
}

async fn item_status(
    store: &Arc<dyn Store>,
    layout: &Layout,
    pipeline: &str,
    queue: &str,
    item: QueueItem,
) -> anyhow::Result<ItemStatus> {
    let buildset: Option<BuildSet> = read(
        store,
        &layout.buildset(pipeline, &item.uuid, &item.current_buildset),
    )
    .await?;
    let mut status = ItemStatus {
        uuid: item.uuid.clone(),
        queue: queue.to_string(),
        change: item.change.short(),
        state: format!("{:?}", item.state).to_lowercase(),
        buildset: item.current_buildset.clone(),
        buildset_state: "missing".into(),
        merge: None,
        merge_state: "not_requested".into(),
        merger: None,
        resets: item.resets,
        builds: Vec::new(),
    };
    let Some(buildset) = buildset else {
        return Ok(status);
    };
    status.buildset_state = format!("{:?}", buildset.state).to_lowercase();
    status.merge = buildset.merge_result.map(|m| m.as_str().to_string());
    if status.merge.is_some() {
        status.merge_state = "completed".into();
    } else if buildset.merge_request.is_some() {
        status.merge_state = "requested".into();
        let mergers = JobQueue::new(store.clone(), layout.merger_queue());
        if let Some(request) = request(&mergers, buildset.merge_request_id.as_deref()).await {
            status.merge_state = job_state(request.record.state).into();
            status.merger = request.record.worker;
        }
    }
    let executors = JobQueue::new(store.clone(), layout.executor_queue());
    for job in &buildset.jobs {
        let build = match buildset.builds.get(job) {
            Some(uuid) => {
                let path = layout.build(pipeline, &item.uuid, &buildset.uuid, uuid);
                read::<Build>(store, &path).await?
            }
            None => None,
        };
        status
            .builds
            .push(build_status(job, build, &executors).await);
    }
    Ok(status)
}

/// Reads the status of every pipeline of `config`.
pub(crate) async fn read_status(config: &Config, store: &Arc<dyn Store>) -> anyhow::Result<Status> {
    let layout = Layout::default();
    let trigger_events = EventQueue::new(store.clone(), layout.trigger_events())
        .ids()
        .await?
        .len();
    let mut pipelines = Vec::new();
    for pipeline in &config.pipelines {
        let p = pipeline.name.as_str();
        let mut items = Vec::new();
        for segment in children(store, &layout.change_queues(p)).await? {
            let path = format!("{}/{segment}", layout.change_queues(p));
            let Some(queue) = read::<ChangeQueue>(store, &path).await? else {
                continue;
            };
            for uuid in &queue.items {
                let Some(item) = read::<QueueItem>(store, &layout.item(p, uuid)).await? else {
                    continue;
                };
                items.push(item_status(store, &layout, p, &queue.name, item).await?);
            }
        }
        pipelines.push(PipelineStatus {
            name: p.to_string(),
            result_events: children(store, &layout.result_events(p)).await?.len(),
            reports: children(store, &layout.reports(p)).await?.len(),
            items,
            reported: Vec::new(),
        });
    }
    let ledger = dspans_ledger::Ledger::new(store.clone(), layout.spans());
    let (open_spans, outbox) = ledger.counts().await?;
    Ok(Status {
        trigger_events,
        open_spans,
        outbox,
        pipelines,
    })
}

fn short(uuid: &str) -> &str {
    &uuid[..8.min(uuid.len())]
}

fn print_item(item: &ItemStatus) {
    let merger = item
        .merger
        .as_ref()
        .map(|m| format!(" on {m}"))
        .unwrap_or_default();
    let result = item
        .merge
        .as_ref()
        .map(|m| format!(" {m}"))
        .unwrap_or_default();
    let resets = if item.resets > 0 {
        format!(" resets {}", item.resets)
    } else {
        String::new()
    };
    println!(
        "  [{}] {} {} buildset {} {} merge {}{merger}{result}{resets}",
        item.queue,
        item.change,
        item.state,
        short(&item.buildset),
        item.buildset_state,
        item.merge_state,
    );
    for build in &item.builds {
        let mut line = format!(
            "    {} build {} {}",
            build.job,
            build.uuid.as_deref().map_or("-", short),
            build.state
        );
        if let Some(result) = &build.result {
            line += &format!(" {result}");
        }
        if let Some(executor) = &build.executor {
            line += &format!(" on {executor}");
        }
        line += &format!(" retry {}", build.retry);
        println!("{line}");
    }
}

fn print_status(status: &Status, json: bool) {
    if json {
        println!("{}", serde_json::to_string(status).unwrap_or_default());
        return;
    }
    println!("trigger events pending: {}", status.trigger_events);
    println!(
        "spans: {} open, {} waiting for export",
        status.open_spans, status.outbox
    );
    for p in &status.pipelines {
        println!(
            "pipeline {}: {} item(s) queued, {} result event(s) pending, {} reported",
            p.name,
            p.items.len(),
            p.result_events,
            p.reports
        );
        for item in &p.items {
            print_item(item);
        }
        if !p.reported.is_empty() {
            println!("  latest reports:");
            for report in &p.reported {
                for line in report.lines() {
                    println!("  {line}");
                }
            }
        }
    }
}

/// Adds each pipeline's latest `limit` reports, for printing.
async fn add_reports(
    status: &mut Status,
    store: &Arc<dyn Store>,
    limit: usize,
) -> anyhow::Result<()> {
    for pipeline in &mut status.pipelines {
        pipeline.reported = reports::latest(store, &pipeline.name, limit).await?;
    }
    Ok(())
}

/// Prints the status; with --wait-idle, waits for idleness first.
pub async fn run_status(args: StatusArgs) -> anyhow::Result<()> {
    let config = load(&args.config)?;
    let store = open_store(&config).await?;
    let result = async {
        let Some(seconds) = args.wait_idle else {
            let mut status = read_status(&config, &store).await?;
            add_reports(&mut status, &store, args.reports).await?;
            print_status(&status, args.json);
            return Ok(());
        };
        let deadline = Instant::now() + Duration::from_secs_f64(seconds.max(0.0));
        let mut last_progress = Instant::now();
        loop {
            let mut status = read_status(&config, &store).await?;
            if status.idle() {
                add_reports(&mut status, &store, args.reports).await?;
                print_status(&status, args.json);
                return Ok(());
            }
            if Instant::now() >= deadline {
                add_reports(&mut status, &store, args.reports).await?;
                print_status(&status, args.json);
                bail!("not idle after {seconds} s");
            }
            if !args.json && last_progress.elapsed() >= Duration::from_secs(2) {
                let queued: usize = status.pipelines.iter().map(|p| p.items.len()).sum();
                let reported: usize = status.pipelines.iter().map(|p| p.reports).sum();
                eprintln!(
                    "waiting: {queued} item(s) queued, {reported} reported, {} event(s) pending, {} span(s) to export",
                    status.trigger_events, status.outbox
                );
                last_progress = Instant::now();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    .await;
    let _ = store.close().await;
    result
}
