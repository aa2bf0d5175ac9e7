//! Items whose objects do not decode are set aside, not retried forever.
//!
//! One object that no longer decodes (written by a newer version, damaged
//! by hand) would otherwise fail its pipeline's step on every pass and
//! block every item behind it. Instead the scheduler takes the item out of
//! its queue, keeps the undecodable object's text at
//! [`Layout::set_aside`](crate::Layout::set_aside) for inspection, deletes
//! the item's objects (so the orphan sweep ends its open spans with an
//! error status) and reports the item `ERROR` when its change can still be
//! read. All of it is one atomic write; the error is logged once.

use dspans_store::{CreateMode, Op};
use durable_spans::Timestamp;
use serde_json::Value;

use super::db::{create_op, delete_tree_ops, StepError, Versioned};
use super::Scheduler;
use crate::model::{ChangeQueue, ChangeRef, ItemResult, ModelError, Report};

/// The queued item that owns the object at `path`, if any.
pub(super) fn owning_item(
    s: &Scheduler,
    queue: &ChangeQueue,
    pipeline: &str,
    path: &str,
) -> Option<String> {
    queue.items.iter().find_map(|uuid| {
        let item_path = s.layout.item(pipeline, uuid);
        let owns = path == item_path
            || path
                .strip_prefix(item_path.as_str())
                .is_some_and(|rest| rest.starts_with('/'));
        owns.then(|| uuid.clone())
    })
}

/// Sets the item `uuid` aside because its object at `path` does not decode.
pub(super) async fn set_aside_item(
    s: &Scheduler,
    queue: &mut Versioned<ChangeQueue>,
    pipeline: &str,
    uuid: &str,
    path: &str,
    error: &ModelError,
) -> Result<(), StepError> {
    let item_path = s.layout.item(pipeline, uuid);
    let kept_at = s.layout.set_aside(pipeline, uuid);
    let text = match s.store.get(path).await? {
        Some(node) => String::from_utf8_lossy(&node.data).into_owned(),
        None => String::new(),
    };
    let record = serde_json::json!({
        "path": path,
        "error": error.to_string(),
        "data": text,
        "set_aside_by": s.name,
        "time": Timestamp::now().as_nanos(),
    });
    s.store
        .create_all(&s.layout.set_aside_items(pipeline), b"")
        .await?;
    let mut ops = delete_tree_ops(&s.store, &item_path).await?;
    queue.value.items.retain(|u| u != uuid);
    ops.push(queue.set_op()?);
    ops.push(Op::create(
        kept_at.clone(),
        serde_json::to_vec(&record).unwrap_or_default(),
        CreateMode::Persistent,
    ));
    let item = match s.store.get(&item_path).await? {
        Some(node) => serde_json::from_slice::<Value>(&node.data).ok(),
        None => None,
    };
    let report = item.as_ref().and_then(|item| {
        report_of(
            pipeline,
            uuid,
            item,
            &format!("{path}: {error}; set aside at {kept_at}"),
        )
    });
    if let Some(report) = &report {
        ops.push(create_op(&s.layout.report(pipeline, uuid), report)?);
    }
    s.write(&ops).await?;
    queue.written();
    tracing::error!(
        %pipeline, item = %uuid, %path, %error, set_aside = %kept_at, reported = report.is_some(),
        "an object of the item does not decode; the item is set aside and reported ERROR"
    );
    Ok(())
}

/// An `ERROR` report for an item read as loosely as possible: only its
/// change must be readable.
fn report_of(pipeline: &str, uuid: &str, item: &Value, why: &str) -> Option<Report> {
    let change: ChangeRef = serde_json::from_value(item.get("change")?.clone()).ok()?;
    let text = |key: &str| {
        item.get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let enqueue_time = item
        .get("enqueue_time")
        .and_then(|t| serde_json::from_value::<Timestamp>(t.clone()).ok())
        .unwrap_or_else(Timestamp::now);
    Some(Report {
        item_uuid: uuid.to_string(),
        pipeline: pipeline.to_string(),
        message: format!("{} ERROR in {pipeline}: {why}", change.short()),
        change,
        zuul_event_id: text("zuul_event_id"),
        buildset_uuid: text("current_buildset"),
        result: ItemResult::Error,
        builds: Vec::new(),
        enqueue_time,
        report_time: Timestamp::now(),
    })
}
