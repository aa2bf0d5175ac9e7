//! How a saved span ends: [`EndOptions`], and [`end_span`], the one
//! function every end goes through.

use std::time::SystemTime;

use opentelemetry::trace::{Event, Status};
use opentelemetry::KeyValue;
use opentelemetry_sdk::trace::{SpanData, SpanLimits};

use crate::attributes::upsert;
use crate::finished::EventData;
use crate::time::Timestamp;

/// How to end a saved span.
///
/// ```
/// use durable_spans::{EndOptions, Timestamp};
/// use opentelemetry::trace::Status;
/// use opentelemetry::KeyValue;
///
/// // What an orphan sweep asks for: an error, marked, ended now.
/// let options = EndOptions::new()
///     .status(Status::error("owner zuul-01 is gone"))
///     .attributes(vec![KeyValue::new("dspans.orphaned", true)]);
/// assert!(options.end_time.is_none());
/// // A recorded end, as Zuul's endSavedSpan gets it.
/// let options = EndOptions::new().end_time(Timestamp::from_secs_f64(1700000070.25).unwrap());
/// ```
#[derive(Debug, Clone, Default)]
pub struct EndOptions {
    /// End time; now when `None`, but never before the span's start (the
    /// start was taken on another host, whose clock may run ahead).
    pub end_time: Option<Timestamp>,
    /// Attributes set at the end; they override persisted start attributes.
    pub attributes: Vec<KeyValue>,
    /// The span's status (default unset). As with SDK spans, it only ever
    /// moves from unset to error to ok.
    pub status: Status,
    /// Events recorded while the span was saved (`dspans span event` keeps
    /// them beside the span info), added in order within the event limit.
    pub events: Vec<EventData>,
}

impl EndOptions {
    /// Ends now, with no attributes and the status unset.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the end time.
    pub fn end_time(mut self, t: Timestamp) -> Self {
        self.end_time = Some(t);
        self
    }

    /// Sets the end attributes.
    pub fn attributes(mut self, attributes: Vec<KeyValue>) -> Self {
        self.attributes = attributes;
        self
    }

    /// Sets the status, for example `Status::error("owner is gone")`.
    pub fn status(mut self, status: Status) -> Self {
        self.status = status;
        self
    }

    /// Sets the events to add.
    pub fn events(mut self, events: Vec<EventData>) -> Self {
        self.events = events;
        self
    }
}

/// Ends the data of a saved span: sets the end attributes, the status and
/// the end time. Every end of a saved span goes through here, whatever then
/// happens to the data (exported at once, or kept as a
/// [`FinishedSpan`](crate::FinishedSpan) for an outbox); the data is built
/// before, changed in place, and only moved after.
pub(crate) fn end_span(data: &mut SpanData, options: EndOptions, limits: &SpanLimits) {
    let max_attributes = limits.max_attributes_per_span as usize;
    merge_end_attributes(data, options.attributes, max_attributes);
    raise_status(&mut data.status, options.status);
    add_events(data, options.events, limits);
    data.end_time = match options.end_time {
        Some(t) => t.to_system_time(),
        None => SystemTime::now().max(data.start_time),
    };
}

/// Sets end attributes over the persisted ones, Python-dict style (an
/// overridden key moves last), within the attribute limit.
fn merge_end_attributes(data: &mut SpanData, end: Vec<KeyValue>, max: usize) {
    let distinct = |attrs: &[KeyValue]| {
        attrs
            .iter()
            .enumerate()
            .all(|(i, kv)| attrs[..i].iter().all(|old| old.key != kv.key))
    };
    // The usual case: nothing persisted, distinct keys. Take the vector whole.
    if data.attributes.is_empty() && end.len() <= max && distinct(&end) {
        data.attributes = end;
        return;
    }
    for kv in end {
        set_limited(data, kv, max);
    }
}

/// Sets one attribute, Python-dict style, unless the span already has `max`
/// others (then it is counted as dropped).
pub(crate) fn set_limited(data: &mut SpanData, kv: KeyValue, max: usize) {
    let attrs = &mut data.attributes;
    if attrs.len() >= max && !attrs.iter().any(|old| old.key == kv.key) {
        data.dropped_attributes_count += 1;
        return;
    }
    upsert(attrs, kv);
}

/// Adds events after those the span has, within the span's event limit
/// (the rest are counted as dropped), and their attributes within theirs.
fn add_events(data: &mut SpanData, events: Vec<EventData>, limits: &SpanLimits) {
    let max_events = limits.max_events_per_span as usize;
    let max_attributes = limits.max_attributes_per_event as usize;
    for event in events {
        if data.events.events.len() >= max_events {
            data.events.dropped_count += 1;
            continue;
        }
        let mut attributes = event.attributes;
        let dropped = attributes.len().saturating_sub(max_attributes);
        attributes.truncate(max_attributes);
        data.events.events.push(Event::new(
            event.name,
            event.time.to_system_time(),
            attributes,
            dropped as u32,
        ));
    }
}

/// Moves a status up, never down: Ok > Error > Unset, as the SDK orders them.
pub(crate) fn raise_status(current: &mut Status, status: Status) {
    if status > *current {
        *current = status;
    }
}
