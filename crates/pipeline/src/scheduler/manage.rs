//! Moving items along: merge, build, complete, report and dequeue; gate
//! resets in dependent pipelines.

use dspans_store::recipes::JobQueue;
use dspans_store::StoreError;
use durable_spans::Timestamp;

use super::db::{create_op, delete_tree_ops, dir_op, StepError, Versioned};
use super::set_aside::{owning_item, set_aside_item};
use super::{spans, trigger::new_buildset, Scheduler};
use crate::config::Manager;
use crate::layout::decode_name;
use crate::model::{
    new_uuid, Build, BuildReport, BuildRequest, BuildResult, BuildSet, BuildSetState, BuildState,
    ChangeQueue, ItemResult, ItemState, MergeRequest, MergeResult, QueueItem, Report,
};

/// Bound on changes made in one pass over a change queue, so one busy
/// queue cannot starve the others.
const CHANGES_PER_PASS: usize = 64;

pub(super) async fn manage_pipeline(s: &Scheduler, pipeline: &str) -> Result<(), StepError> {
    let dependent = s
        .config
        .pipeline(pipeline)
        .is_some_and(|p| p.manager == Manager::Dependent);
    let names = match s.store.children(&s.layout.change_queues(pipeline)).await {
        Ok(names) => names,
        Err(StoreError::NoNode { .. }) => return Ok(()),
        Err(error) => return Err(error.into()),
    };
    for segment in names {
        let Ok(name) = decode_name(&segment) else {
            continue;
        };
        manage_queue(s, pipeline, &name, dependent).await?;
    }
    Ok(())
}

/// One sweep over a change queue, front to back, moving each item along
/// as far as it can go now, at most [`CHANGES_PER_PASS`] changes.
///
/// Each item reads what it depends on afresh (its own objects, the items
/// ahead of it), so a change to one item does not end the sweep; the queue
/// object is the one thing kept across it, updated by this sweep's own
/// dequeues (a compare-and-set: if anyone else changed the queue, the
/// write fails and the step is retried on the next pass). One pass costs
/// a read or two per item, however many items move.
async fn manage_queue(
    s: &Scheduler,
    pipeline: &str,
    name: &str,
    dependent: bool,
) -> Result<(), StepError> {
    let queue_path = s.layout.change_queue(pipeline, name);
    let Some(mut queue) = s.read::<ChangeQueue>(&queue_path).await? else {
        return Ok(());
    };
    let mut budget = CHANGES_PER_PASS;
    let uuids = queue.value.items.clone();
    for uuid in &uuids {
        if budget == 0 {
            break;
        }
        let Some(position) = queue.value.items.iter().position(|u| u == uuid) else {
            continue;
        };
        let changed = match manage_item(s, &mut queue, pipeline, uuid, position, dependent).await {
            Ok(changed) => changed,
            Err(StepError::Undecodable { path, source }) => {
                let Some(owner) = owning_item(s, &queue.value, pipeline, &path) else {
                    return Err(StepError::Undecodable { path, source });
                };
                set_aside_item(s, &mut queue, pipeline, &owner, &path, &source).await?;
                true
            }
            Err(error) => return Err(error),
        };
        if changed {
            budget -= 1;
        }
    }
    Ok(())
}

/// Moves one item along as far as it can go now; true when it changed.
async fn manage_item(
    s: &Scheduler,
    queue: &mut Versioned<ChangeQueue>,
    pipeline: &str,
    uuid: &str,
    position: usize,
    dependent: bool,
) -> Result<bool, StepError> {
    let Some(item) = s.read::<QueueItem>(&s.layout.item(pipeline, uuid)).await? else {
        tracing::warn!(%pipeline, item = %uuid, "queue names a missing item; removing it");
        queue.value.items.retain(|u| u != uuid);
        s.write(&[queue.set_op()?]).await?;
        queue.written();
        return Ok(true);
    };
    let buildset_path = s
        .layout
        .buildset(pipeline, uuid, &item.value.current_buildset);
    let Some(buildset) = s.read::<BuildSet>(&buildset_path).await? else {
        tracing::warn!(%pipeline, item = %uuid, "item has no current build set");
        return Ok(false);
    };
    let changed = match buildset.value.state {
        BuildSetState::New => {
            request_merge(s, &queue.value, position, &item, buildset, dependent).await?
        }
        BuildSetState::Merging => merged(s, &item, buildset).await?,
        BuildSetState::Building => builds_done(s, &item, buildset).await?,
        BuildSetState::Completed => {
            let result = buildset.value.result.unwrap_or(ItemResult::Error);
            // In a gate, items behind a failing item are retested
            // without it at once; the failing item itself is reported
            // only at the head, since a failure ahead of it could be
            // the cause (it would then be reset and retested).
            let reset = dependent
                && !result.is_success()
                && reset_items_behind(s, &queue.value, position).await?;
            if !reset && (!dependent || position == 0) {
                report_and_dequeue(s, queue, item, buildset, result).await?;
                queue.value.items.retain(|u| u != uuid);
                queue.written();
                true
            } else {
                reset
            }
        }
    };
    Ok(changed)
}

/// Asks a merger to merge the change, on top of the items ahead in a
/// dependent pipeline. The `Merge` span is saved in the request.
async fn request_merge(
    s: &Scheduler,
    queue: &ChangeQueue,
    position: usize,
    item: &Versioned<QueueItem>,
    mut buildset: Versioned<BuildSet>,
    dependent: bool,
) -> Result<bool, StepError> {
    let pipeline = item.value.pipeline.as_str();
    // Tested on top of the items ahead, leaving out those already failing.
    let mut items_ahead = Vec::new();
    let mut changes = Vec::new();
    for uuid in queue.items[..position].iter().filter(|_| dependent) {
        let Some(ahead) = s.read::<QueueItem>(&s.layout.item(pipeline, uuid)).await? else {
            continue;
        };
        let ahead_buildset = s
            .layout
            .buildset(pipeline, uuid, &ahead.value.current_buildset);
        let failing = s.read::<BuildSet>(&ahead_buildset).await?.is_some_and(|b| {
            b.value.state == BuildSetState::Completed
                && !b.value.result.is_some_and(ItemResult::is_success)
        });
        if !failing {
            items_ahead.push(uuid.clone());
            changes.push(ahead.value.change);
        }
    }
    changes.push(item.value.change.clone());
    let span = spans::start_child(
        &s.tracer,
        "Merge",
        buildset.value.span_info.as_ref(),
        Timestamp::now(),
        Vec::new(),
    );
    let request = MergeRequest {
        uuid: new_uuid(),
        buildset_uuid: buildset.value.uuid.clone(),
        item_uuid: item.value.uuid.clone(),
        pipeline: pipeline.to_string(),
        zuul_event_id: item.value.zuul_event_id.clone(),
        changes,
        started_by: Some(s.name.clone()),
        span_context: span.as_ref().map(|info| info.span_context()),
        span_info: span,
    };
    let requests = JobQueue::new(s.store.clone(), s.layout.merger_queue());
    // The request, the build set that waits for it and the span's open
    // entry are written together: a scheduler killed half-way leaves none.
    let (id, submit) = requests.submit_op(&request).await?;
    let b = &mut buildset.value;
    b.state = BuildSetState::Merging;
    b.merge_request = Some(request.uuid.clone());
    b.merge_request_id = Some(id);
    b.items_ahead = items_ahead;
    let mut item = item.clone();
    item.value.state = ItemState::Active;
    let mut ops = vec![submit, buildset.set_op()?, item.set_op()?];
    if let Some(info) = &request.span_info {
        // The merge is the build set's: it is orphaned when the set is gone.
        let owner = s
            .layout
            .buildset(pipeline, &item.value.uuid, &buildset.value.uuid);
        ops.extend(s.ledger.open_op(info, &owner));
    }
    s.commit(ops, s.ledger.ends()).await?;
    Ok(true)
}

/// After the merge: request the builds, or complete on a failed merge.
async fn merged(
    s: &Scheduler,
    item: &Versioned<QueueItem>,
    mut buildset: Versioned<BuildSet>,
) -> Result<bool, StepError> {
    let Some(merge) = buildset.value.merge_result else {
        return Ok(false);
    };
    let pipeline = item.value.pipeline.as_str();
    if merge != MergeResult::Merged {
        buildset.value.state = BuildSetState::Completed;
        buildset.value.result = Some(match merge {
            MergeResult::MergeConflict => ItemResult::MergeConflict,
            _ => ItemResult::Error,
        });
        s.write(&[buildset.set_op()?]).await?;
        return Ok(true);
    }
    let requests = JobQueue::new(s.store.clone(), s.layout.executor_queue());
    let mut ops = Vec::new();
    for job_name in buildset.value.jobs.clone() {
        if s.config.job(&job_name).is_none() {
            tracing::error!(job = %job_name, "job vanished from the config; skipped");
            continue;
        }
        let execute_time = Timestamp::now();
        let span = spans::start_child(
            &s.tracer,
            "Build",
            buildset.value.span_info.as_ref(),
            execute_time,
            Vec::new(),
        );
        let mut build = Build {
            uuid: new_uuid(),
            job: job_name.clone(),
            buildset_uuid: buildset.value.uuid.clone(),
            item_uuid: item.value.uuid.clone(),
            pipeline: pipeline.to_string(),
            zuul_event_id: item.value.zuul_event_id.clone(),
            state: BuildState::Requested,
            execute_time,
            request_id: None,
            retry: 0,
            executor: None,
            start_time: None,
            end_time: None,
            exit_code: None,
            log_url: None,
            result: None,
            started_by: Some(s.name.clone()),
            span_info: span,
        };
        let request = BuildRequest {
            build_uuid: build.uuid.clone(),
            job: job_name.clone(),
            pipeline: pipeline.to_string(),
            change: item.value.change.clone(),
            buildset_uuid: buildset.value.uuid.clone(),
            item_uuid: item.value.uuid.clone(),
            zuul_event_id: item.value.zuul_event_id.clone(),
            retry: 0,
            span_context: build.span_info.as_ref().map(|info| info.span_context()),
        };
        let (request_id, submit) = requests.submit_op(&request).await?;
        build.request_id = Some(request_id);
        let path = s.layout.build(
            pipeline,
            &item.value.uuid,
            &buildset.value.uuid,
            &build.uuid,
        );
        ops.push(submit);
        ops.push(create_op(&path, &build)?);
        if let Some(info) = &build.span_info {
            ops.extend(s.ledger.open_op(info, &path));
        }
        buildset.value.builds.insert(job_name, build.uuid);
    }
    buildset.value.state = if buildset.value.builds.is_empty() {
        buildset.value.result = Some(ItemResult::Success);
        BuildSetState::Completed
    } else {
        BuildSetState::Building
    };
    ops.push(buildset.set_op()?);
    s.commit(ops, s.ledger.ends()).await?;
    Ok(true)
}

/// Completes the build set once every build has its result.
async fn builds_done(
    s: &Scheduler,
    item: &Versioned<QueueItem>,
    mut buildset: Versioned<BuildSet>,
) -> Result<bool, StepError> {
    let pipeline = item.value.pipeline.as_str();
    let mut all_success = true;
    for uuid in buildset.value.builds.values() {
        let path = s
            .layout
            .build(pipeline, &item.value.uuid, &buildset.value.uuid, uuid);
        match s.read::<Build>(&path).await?.and_then(|b| b.value.result) {
            None => return Ok(false),
            Some(result) => all_success &= result == BuildResult::Success,
        }
    }
    buildset.value.state = BuildSetState::Completed;
    buildset.value.result = Some(if all_success {
        ItemResult::Success
    } else {
        ItemResult::Failure
    });
    s.write(&[buildset.set_op()?]).await?;
    Ok(true)
}

/// Gate reset: every item behind `position` that was tested on top of the
/// failing item gets a new build set (linked to its old one, whose span
/// ends with result RESET). Returns whether any item was reset.
async fn reset_items_behind(
    s: &Scheduler,
    queue: &ChangeQueue,
    position: usize,
) -> Result<bool, StepError> {
    let mut reset = false;
    let failing = &queue.items[position];
    let pipeline = queue.pipeline.as_str();
    for uuid in &queue.items[position + 1..] {
        let Some(mut item) = s.read::<QueueItem>(&s.layout.item(pipeline, uuid)).await? else {
            continue;
        };
        let old_path = s
            .layout
            .buildset(pipeline, uuid, &item.value.current_buildset);
        let Some(mut old) = s.read::<BuildSet>(&old_path).await? else {
            continue;
        };
        if !old.value.items_ahead.contains(failing) {
            continue;
        }
        let new = new_buildset(
            s,
            pipeline,
            uuid,
            &item.value.zuul_event_id,
            old.value.jobs.clone(),
            item.value.span_info.as_ref(),
            Some(&old.value),
        );
        old.value.state = BuildSetState::Completed;
        old.value.result = Some(ItemResult::Reset);
        item.value.current_buildset = new.uuid.clone();
        item.value.previous_buildset = Some(old.value.uuid.clone());
        item.value.resets += 1;
        item.value.state = ItemState::Queued;
        let new_path = s.layout.buildset(pipeline, uuid, &new.uuid);
        let mut ops = vec![
            old.set_op()?,
            create_op(&new_path, &new)?,
            dir_op(&s.layout.builds(pipeline, uuid, &new.uuid)),
            item.set_op()?,
        ];
        if let Some(info) = &new.span_info {
            ops.extend(s.ledger.open_op(info, &new_path));
        }
        let mut ends = s.ledger.ends();
        ends.push(spans::finish_buildset(
            s.ender(),
            &old.value,
            ItemResult::Reset,
        ));
        s.commit(ops, ends).await?;
        tracing::info!(%pipeline, item = %uuid, old = %old.value.uuid, new = %new.uuid, "gate reset");
        reset = true;
    }
    Ok(reset)
}

/// Writes the report, removes the item and ends its spans, in one atomic
/// write: builds of replaced build sets still running are CANCELED.
async fn report_and_dequeue(
    s: &Scheduler,
    queue: &Versioned<ChangeQueue>,
    mut item: Versioned<QueueItem>,
    buildset: Versioned<BuildSet>,
    result: ItemResult,
) -> Result<(), StepError> {
    let pipeline = item.value.pipeline.clone();
    let item_path = s.layout.item(&pipeline, &item.value.uuid);
    let mut builds = Vec::new();
    let mut canceled = Vec::new();
    for segment in s
        .store
        .children(&s.layout.buildsets(&pipeline, &item.value.uuid))
        .await?
    {
        let Ok(bs_uuid) = decode_name(&segment) else {
            continue;
        };
        let path = s.layout.builds(&pipeline, &item.value.uuid, &bs_uuid);
        let children = match s.store.children(&path).await {
            Ok(children) => children,
            Err(StoreError::NoNode { .. }) => continue,
            Err(error) => return Err(error.into()),
        };
        for build_segment in children {
            let Some(build) = s.read::<Build>(&format!("{path}/{build_segment}")).await? else {
                continue;
            };
            if bs_uuid == buildset.value.uuid {
                builds.push(build.value);
            } else if build.value.result.is_none() {
                canceled.push(build.value);
            }
        }
    }
    let now = Timestamp::now();
    let report = Report {
        item_uuid: item.value.uuid.clone(),
        pipeline: pipeline.clone(),
        change: item.value.change.clone(),
        zuul_event_id: item.value.zuul_event_id.clone(),
        buildset_uuid: buildset.value.uuid.clone(),
        result,
        builds: buildset
            .value
            .jobs
            .iter()
            .filter_map(|job| builds.iter().find(|b| &b.job == job))
            .map(|b| BuildReport {
                job: b.job.clone(),
                uuid: b.uuid.clone(),
                result: b.result.unwrap_or(BuildResult::Error),
                retry: b.retry,
                log_url: b.log_url.clone(),
            })
            .collect(),
        enqueue_time: item.value.enqueue_time,
        report_time: now,
        message: format!(
            "{} {} in {}",
            item.value.change.short(),
            result.as_str(),
            pipeline
        ),
    };
    let mut queue = queue.clone();
    queue.value.items.retain(|u| u != &item.value.uuid);
    let mut ops = delete_tree_ops(&s.store, &item_path).await?;
    ops.push(queue.set_op()?);
    ops.push(create_op(
        &s.layout.report(&pipeline, &item.value.uuid),
        &report,
    )?);
    let mut ends = s.ledger.ends();
    for build in &canceled {
        ends.push(spans::finish_build(s.ender(), build, BuildResult::Canceled));
    }
    ends.push(spans::finish_buildset(s.ender(), &buildset.value, result));
    item.value.result = Some(result);
    let project = s.config.project(&item.value.change.project);
    ends.push(spans::finish_queue_item(
        s.ender(),
        &item.value,
        &buildset.value,
        project,
        result,
    ));
    s.commit(ops, ends).await?;
    let jobs: Vec<String> = report
        .builds
        .iter()
        .map(|b| format!("{}={}", b.job, b.result.as_str()))
        .collect();
    tracing::info!(%pipeline, item = %item.value.uuid, change = %item.value.change.short(),
        result = %result.as_str(), builds = %jobs.join(","), "reported");
    Ok(())
}
