//! Trigger events: written by `dspans enqueue`, turned into queue items.

use std::sync::Arc;

use dspans_ledger::Ledger;
use dspans_store::recipes::EventQueue;
use dspans_store::{Op, Store};
use durable_spans::{
    DurableTracer, EndOptions, SavedSpanOptions, SpanContext, SpanInfo, Timestamp,
};
use opentelemetry::trace::Status;
use opentelemetry::{Context, KeyValue};

use super::db::{create_op, dir_op, StepError};
use super::{spans, Scheduler};
use crate::model::{
    new_uuid, BuildSet, BuildSetState, ChangeQueue, ChangeRef, ItemState, QueueItem, StoredObject,
    TriggerEvent,
};
use crate::Layout;

/// `dspans.started_by` and `dspans.ended_by` of a `TriggerEvent` span: it
/// is started and ended by whoever enqueues, in one transaction.
const ENQUEUE: &str = "enqueue";

/// Writes a trigger event asking to enqueue `change` into `pipeline`, under
/// a `TriggerEvent` span whose context the event carries. Returns the event
/// id (`zuul_event_id`).
///
/// The span ends in the same transaction that queues the event, through the
/// span ledger: it waits in the store for any running component's outbox
/// sender, so it is delivered once a collector answers, and enqueueing never
/// waits for a collector.
pub async fn enqueue(
    store: &Arc<dyn Store>,
    layout: &Layout,
    tracer: &DurableTracer,
    pipeline: &str,
    change: ChangeRef,
) -> Result<String, StepError> {
    let zuul_event_id = new_uuid();
    let span = tracer
        .start_saved_span(
            "TriggerEvent",
            SavedSpanOptions::new().parent(Context::new()),
        )
        .ok();
    let event = TriggerEvent {
        zuul_event_id: zuul_event_id.clone(),
        pipeline: pipeline.to_string(),
        change,
        timestamp: Timestamp::now(),
        span_context: span
            .as_ref()
            .map(SpanInfo::span_context)
            .filter(SpanContext::is_valid),
    };
    let queue = EventQueue::new(store.clone(), layout.trigger_events());
    let put = queue.put_op(event.to_json()?).await?;
    let ledger = Ledger::new(store.clone(), layout.spans());
    let mut ends = ledger.ends();
    let attributes = vec![
        KeyValue::new("zuul_event_id", zuul_event_id.clone()),
        KeyValue::new("dspans.started_by", ENQUEUE),
        KeyValue::new("dspans.ended_by", ENQUEUE),
    ];
    ends.push(tracer.finish_saved_span(span.as_ref(), EndOptions::new().attributes(attributes)));
    ledger.commit(vec![put], ends).await?;
    Ok(zuul_event_id)
}

pub(super) async fn process_trigger_events(s: &Scheduler, pipeline: &str) -> Result<(), StepError> {
    let queue = EventQueue::new(s.store.clone(), s.layout.trigger_events());
    let events = queue.read().await?;
    s.episodes()
        .retain(|id| events.iter().any(|event| event.id == id));
    for event in events {
        let trigger = match TriggerEvent::from_json(&event.data) {
            Ok(trigger) => trigger,
            Err(error) => {
                tracing::error!(event = %event.id, %error, "dropping an unreadable trigger event");
                queue.delete(&event).await?;
                continue;
            }
        };
        if trigger.pipeline != pipeline {
            continue;
        }
        let event_path = format!("{}/{}", queue.root(), event.id);
        enqueue_item(s, &trigger, &event.id, &event_path).await?;
    }
    Ok(())
}

/// Creates the item, its first build set and its place in the change queue,
/// and deletes the trigger event, in one atomic write, under an
/// `EventProcessing` span.
///
/// A failed try is retried on the next pass. Only the first failure of a
/// run of them ends its span, with ERROR; the try that succeeds ends its
/// span with `dspans.failed_attempts`. The span is therefore started as
/// saved span data (its ids known, for the QueueItem's link) and ended, or
/// dropped unexported, once the outcome is known.
async fn enqueue_item(
    s: &Scheduler,
    trigger: &TriggerEvent,
    event_id: &str,
    event_path: &str,
) -> Result<(), StepError> {
    let mut options = SavedSpanOptions::new().parent(Context::new());
    if let Some(ctx) = &trigger.span_context {
        options = options.link(spans::link(ctx, "rel", "TriggerEvent".to_string()));
    }
    // No start attributes are given, so starting cannot be refused.
    let processing = s.tracer.start_saved_span("EventProcessing", options).ok();
    let result = enqueue_item_in(s, trigger, event_path, processing.as_ref()).await;
    let mut attributes = vec![KeyValue::new("pipeline", trigger.pipeline.clone())];
    let end = match &result {
        Ok(()) => {
            let failed = s.episodes().succeeded(event_id);
            if failed > 0 {
                attributes.push(KeyValue::new("dspans.failed_attempts", failed as i64));
            }
            Some(EndOptions::new())
        }
        Err(error) => s
            .episodes()
            .failed(event_id)
            .then(|| EndOptions::new().status(Status::error(error.to_string()))),
    };
    if let Some(end) = end {
        s.tracer
            .end_saved_span(processing.as_ref(), end.attributes(attributes));
    }
    result
}

async fn enqueue_item_in(
    s: &Scheduler,
    trigger: &TriggerEvent,
    event_path: &str,
    processing: Option<&SpanInfo>,
) -> Result<(), StepError> {
    let pipeline = trigger.pipeline.as_str();
    let project = trigger.change.project.as_str();
    let (Some(queue_name), Some(jobs)) = (
        s.config.change_queue(pipeline, project),
        s.config.jobs_for(project, pipeline),
    ) else {
        tracing::warn!(%pipeline, %project, event = %trigger.zuul_event_id,
            "project is not in this pipeline; event dropped");
        s.store.delete(event_path, None).await?;
        return Ok(());
    };
    let layout = &s.layout;
    let queue_path = layout.change_queue(pipeline, &queue_name);
    // A queue this scheduler has read exists, and so do the directories
    // made before it.
    if !s.cache.contains(&queue_path) {
        ensure_queue(s, pipeline, &queue_name, &queue_path).await?;
    }
    let Some(mut queue) = s.read::<ChangeQueue>(&queue_path).await? else {
        return Ok(());
    };

    let enqueue_time = Timestamp::now();
    let links = processing
        .map(SpanInfo::span_context)
        .filter(SpanContext::is_valid)
        .map(|ctx| vec![spans::link(&ctx, "rel", "EventProcessing".to_string())])
        .unwrap_or_default();
    let item_span = spans::start_child(&s.tracer, "QueueItem", None, enqueue_time, links);
    let item_uuid = new_uuid();
    let buildset = new_buildset(
        s,
        pipeline,
        &item_uuid,
        &trigger.zuul_event_id,
        jobs.iter().map(|j| j.name.clone()).collect(),
        item_span.as_ref(),
        None,
    );
    let item = QueueItem {
        uuid: item_uuid.clone(),
        pipeline: pipeline.to_string(),
        queue: queue_name,
        change: trigger.change.clone(),
        zuul_event_id: trigger.zuul_event_id.clone(),
        enqueue_time,
        state: ItemState::Queued,
        current_buildset: buildset.uuid.clone(),
        previous_buildset: None,
        resets: 0,
        result: None,
        report_time: None,
        started_by: Some(s.name.clone()),
        span_info: item_span,
    };
    queue.value.items.push(item_uuid.clone());
    let item_path = layout.item(pipeline, &item_uuid);
    let buildset_path = layout.buildset(pipeline, &item_uuid, &buildset.uuid);
    let mut ops: Vec<Op> = vec![
        create_op(&item_path, &item)?,
        dir_op(&layout.buildsets(pipeline, &item_uuid)),
        create_op(&buildset_path, &buildset)?,
        dir_op(&layout.builds(pipeline, &item_uuid, &buildset.uuid)),
        queue.set_op()?,
        Op::delete(event_path, None),
    ];
    if let Some(info) = &item.span_info {
        ops.extend(s.ledger.open_op(info, &item_path));
    }
    if let Some(info) = &buildset.span_info {
        ops.extend(s.ledger.open_op(info, &buildset_path));
    }
    s.commit(ops, s.ledger.ends()).await?;
    tracing::info!(%pipeline, item = %item_uuid, change = %item.change.short(),
        event = %item.zuul_event_id, "item enqueued");
    Ok(())
}

/// A new build set for an item, with its span started as a child of the
/// item's span (and linked to the build set it replaces after a reset).
pub(super) fn new_buildset(
    s: &Scheduler,
    pipeline: &str,
    item_uuid: &str,
    zuul_event_id: &str,
    jobs: Vec<String>,
    item_span: Option<&durable_spans::SpanInfo>,
    previous: Option<&BuildSet>,
) -> BuildSet {
    let links = previous
        .and_then(|old| old.span_info.as_ref())
        .map(|info| {
            vec![spans::link(
                &info.span_context(),
                "previous_buildset",
                previous.map(|p| p.uuid.clone()).unwrap_or_default(),
            )]
        })
        .unwrap_or_default();
    BuildSet {
        uuid: new_uuid(),
        item_uuid: item_uuid.to_string(),
        pipeline: pipeline.to_string(),
        zuul_event_id: zuul_event_id.to_string(),
        state: BuildSetState::New,
        items_ahead: Vec::new(),
        merge_request: None,
        merge_request_id: None,
        merge_result: None,
        merge_commit: None,
        jobs,
        builds: Default::default(),
        previous_buildset: previous.map(|p| p.uuid.clone()),
        result: None,
        started_by: Some(s.name.clone()),
        span_info: spans::start_child(&s.tracer, "BuildSet", item_span, Timestamp::now(), links),
    }
}

/// Creates the pipeline's directories and the change queue where missing.
async fn ensure_queue(
    s: &Scheduler,
    pipeline: &str,
    queue_name: &str,
    queue_path: &str,
) -> Result<(), StepError> {
    let layout = &s.layout;
    s.store.create_all(&layout.items(pipeline), b"").await?;
    s.store.create_all(&layout.reports(pipeline), b"").await?;
    if s.store.exists(queue_path).await?.is_some() {
        return Ok(());
    }
    let empty = ChangeQueue {
        pipeline: pipeline.to_string(),
        name: queue_name.to_string(),
        items: Vec::new(),
    };
    s.store
        .create_all(&layout.change_queues(pipeline), b"")
        .await?;
    match s
        .store
        .create(
            queue_path,
            &empty.to_json()?,
            dspans_store::CreateMode::Persistent,
        )
        .await
    {
        Ok(_) | Err(dspans_store::StoreError::NodeExists { .. }) => Ok(()),
        Err(error) => Err(error.into()),
    }
}
