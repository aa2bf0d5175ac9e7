//! Result events from executors and mergers: record the result, then end
//! the span it closes.

use dspans_store::recipes::{EventQueue, JobQueue};
use dspans_store::Op;

use super::db::StepError;
use super::{spans, Scheduler};
use crate::model::{
    Build, BuildCompleted, BuildSet, BuildState, MergeCompleted, MergeRequest, QueueItem,
    ResultEvent, StoredObject,
};

pub(super) async fn process_result_events(s: &Scheduler, pipeline: &str) -> Result<(), StepError> {
    let queue = EventQueue::new(s.store.clone(), s.layout.result_events(pipeline));
    for event in queue.read().await? {
        let event_path = format!("{}/{}", queue.root(), event.id);
        let recorded = match ResultEvent::from_json(&event.data) {
            Ok(ResultEvent::BuildCompleted(done)) => {
                build_completed(s, pipeline, &done, &event_path).await
            }
            Ok(ResultEvent::MergeCompleted(done)) => {
                merge_completed(s, pipeline, &done, &event_path).await
            }
            Err(error) => {
                tracing::error!(event = %event.id, %error, "dropping an unreadable result event");
                queue.delete(&event).await?;
                continue;
            }
        };
        match recorded {
            // The item's sweep meets the same object and sets the item aside.
            Err(StepError::Undecodable { path, source }) => {
                let why = format!("{path} does not decode ({source}); its item is set aside");
                drop_event(s, &event_path, &why).await?
            }
            other => other?,
        }
    }
    Ok(())
}

async fn drop_event(s: &Scheduler, event_path: &str, why: &str) -> Result<(), StepError> {
    tracing::warn!(event = %event_path, "{why}; result event dropped");
    match s.store.delete(event_path, None).await {
        Ok(()) | Err(dspans_store::StoreError::NoNode { .. }) => Ok(()),
        Err(error) => Err(error.into()),
    }
}

async fn build_completed(
    s: &Scheduler,
    pipeline: &str,
    done: &BuildCompleted,
    event_path: &str,
) -> Result<(), StepError> {
    let path = s.layout.build(
        pipeline,
        &done.item_uuid,
        &done.buildset_uuid,
        &done.build_uuid,
    );
    let Some(mut build) = s.read::<Build>(&path).await? else {
        return drop_event(s, event_path, "the build is gone (its item was dequeued)").await;
    };
    if build.value.result.is_some() {
        return drop_event(s, event_path, "the build already has its result").await;
    }
    let b = &mut build.value;
    b.state = BuildState::Completed;
    b.result = Some(done.result);
    b.exit_code = done.exit_code;
    b.start_time = Some(done.start_time);
    b.end_time = Some(done.end_time);
    b.executor = Some(done.executor.clone());
    b.log_url = done.log_url.clone();
    // The result and the span's end in one compare-and-set: a scheduler
    // that lost the race ends nothing.
    let mut ends = s.ledger.ends();
    ends.push(spans::finish_build(s.ender(), &build.value, done.result));
    s.commit(vec![build.set_op()?, Op::delete(event_path, None)], ends)
        .await?;
    if let Some(id) = &build.value.request_id {
        let requests = JobQueue::new(s.store.clone(), s.layout.executor_queue());
        if let Err(error) = requests.remove(id).await {
            tracing::debug!(%error, request = %id, "completed build request not removed");
        }
    }
    tracing::info!(%pipeline, build = %done.build_uuid, job = %done.job,
        result = %done.result.as_str(), executor = %done.executor, "build result");
    Ok(())
}

async fn merge_completed(
    s: &Scheduler,
    pipeline: &str,
    done: &MergeCompleted,
    event_path: &str,
) -> Result<(), StepError> {
    let path = s
        .layout
        .buildset(pipeline, &done.item_uuid, &done.buildset_uuid);
    let Some(mut buildset) = s.read::<BuildSet>(&path).await? else {
        return drop_event(s, event_path, "the build set is gone").await;
    };
    if buildset.value.merge_request.as_deref() != Some(done.merge_request.as_str())
        || buildset.value.merge_result.is_some()
    {
        return drop_event(s, event_path, "not the build set's outstanding merge").await;
    }
    let requests = JobQueue::new(s.store.clone(), s.layout.merger_queue());
    let request = match &buildset.value.merge_request_id {
        Some(id) => requests
            .get(id)
            .await?
            .and_then(|job| job.record.request::<MergeRequest>().ok()),
        None => None,
    };
    buildset.value.merge_result = Some(done.result);
    buildset.value.merge_commit = done.commit.clone();
    let item = s
        .read::<QueueItem>(&s.layout.item(pipeline, &done.item_uuid))
        .await?;
    let mut ends = s.ledger.ends();
    let started_by = request.as_ref().and_then(|r| r.started_by.clone());
    let merge = spans::MergeEnd {
        span: request.as_ref().and_then(|r| r.span_info.as_ref()),
        started_by: &started_by,
        uuid: &done.merge_request,
        buildset_uuid: &done.buildset_uuid,
        zuul_event_id: item.as_ref().map_or("", |i| i.value.zuul_event_id.as_str()),
        message: done.message.as_deref(),
    };
    ends.push(spans::finish_merge(s.ender(), &merge, done.result));
    s.commit(vec![buildset.set_op()?, Op::delete(event_path, None)], ends)
        .await?;
    if let Some(id) = &buildset.value.merge_request_id {
        if let Err(error) = requests.remove(id).await {
            tracing::debug!(%error, request = %id, "completed merge request not removed");
        }
    }
    tracing::info!(%pipeline, buildset = %done.buildset_uuid, result = %done.result.as_str(),
        merger = %done.merger, "merge result");
    Ok(())
}
