//! [`Dedupe`]: drops spans a sink has already taken, when identical.

use std::collections::hash_map::RandomState;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

use super::sink::{SinkError, TraceSink};
use crate::view::hex;

/// Conflicts named one by one in the log per request, before a count.
const NAMED_CONFLICTS: usize = 20;

/// A span as remembered: a hash of its trace and span ids, and a hash of
/// its whole content (the span message, ids included).
type Key = (u64, u64);

/// What a span is, given what was seen before.
enum Seen {
    /// Never seen: pass it on.
    New,
    /// Seen with the same content: drop it.
    Repeat,
    /// Its ids were seen with other content: pass it on, and tell.
    Conflict,
}

struct Memory {
    /// Random keys, so that nobody can make two spans' hashes collide.
    hasher: RandomState,
    keys: HashSet<Key>,
    /// How many remembered keys have each ids hash.
    ids: HashMap<u64, u32>,
    order: VecDeque<Key>,
    capacity: usize,
    /// Reused encoding buffer.
    buf: Vec<u8>,
}

impl Memory {
    fn key(&mut self, span: &Span) -> Key {
        let mut ids = self.hasher.build_hasher();
        ids.write(&span.trace_id);
        ids.write(&span.span_id);
        self.buf.clear();
        // Encoding into a Vec cannot fail.
        let _ = span.encode(&mut self.buf);
        let mut content = self.hasher.build_hasher();
        content.write(&self.buf);
        (ids.finish(), content.finish())
    }

    fn classify(&self, key: Key) -> Seen {
        if self.keys.contains(&key) {
            Seen::Repeat
        } else if self.ids.contains_key(&key.0) {
            Seen::Conflict
        } else {
            Seen::New
        }
    }

    /// Remembers `key` (not remembered yet), forgetting the oldest beyond
    /// the capacity.
    fn insert(&mut self, key: Key) {
        if self.order.len() >= self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.remove(oldest);
            }
        }
        self.order.push_back(key);
        self.keys.insert(key);
        *self.ids.entry(key.0).or_default() += 1;
    }

    fn remove(&mut self, key: Key) {
        if self.keys.remove(&key) {
            if let Some(count) = self.ids.get_mut(&key.0) {
                *count -= 1;
                if *count == 0 {
                    self.ids.remove(&key.0);
                }
            }
        }
    }

    /// Forgets the keys inserted last, newest first (`keys` in insertion
    /// order, nothing inserted since).
    fn forget_last(&mut self, keys: &[Key]) {
        for &key in keys.iter().rev() {
            if self.order.back() == Some(&key) {
                self.order.pop_back();
            }
            self.remove(key);
        }
    }
}

/// Passes each span to the inner sink once: a span that arrives again with
/// identical content (same ids, same name, times, attributes, …) is
/// dropped and counted. Exporters that deliver at least once (the span
/// ledger's outbox, after a crash between the collector's answer and the
/// entry's deletion) resend spans unchanged, so this makes the written
/// file exactly-once.
///
/// A span whose ids were seen with different content is a conflict: it is
/// passed on too, counted, and logged as a warning naming its trace and
/// span id. Someone who knows a span's ids (a job knows its parent's from
/// `$TRACEPARENT`) can thus add a span with those ids, but can neither
/// replace nor hide the real one.
///
/// A span is remembered only once the inner sink took it: when the inner
/// sink refuses a request, its spans may come again and are not repeats.
/// Memory is bounded: the last `capacity` spans are remembered (about 50
/// bytes each).
///
/// ```
/// use dspans_otlp::receiver::{Dedupe, MemorySink, TraceSink};
/// use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
/// let memory = MemorySink::new();
/// let sink = Dedupe::new(memory.clone(), 1000);
/// sink.accept(ExportTraceServiceRequest::default()).unwrap();
/// assert_eq!((sink.repeats(), sink.conflicts()), (0, 0));
/// ```
pub struct Dedupe<S> {
    inner: Arc<S>,
    memory: Arc<Mutex<Memory>>,
    repeats: Arc<AtomicU64>,
    conflicts: Arc<AtomicU64>,
}

impl<S> Clone for Dedupe<S> {
    /// Another handle on the same sink and the same memory of spans.
    fn clone(&self) -> Self {
        Dedupe {
            inner: self.inner.clone(),
            memory: self.memory.clone(),
            repeats: self.repeats.clone(),
            conflicts: self.conflicts.clone(),
        }
    }
}

impl<S> std::fmt::Debug for Dedupe<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dedupe")
            .field("repeats", &self.repeats.load(Ordering::Relaxed))
            .field("conflicts", &self.conflicts.load(Ordering::Relaxed))
            .finish()
    }
}

impl<S: TraceSink> Dedupe<S> {
    /// Wraps `inner`, remembering up to `capacity` spans.
    pub fn new(inner: S, capacity: usize) -> Dedupe<S> {
        Dedupe {
            inner: Arc::new(inner),
            memory: Arc::new(Mutex::new(Memory {
                hasher: RandomState::new(),
                keys: HashSet::new(),
                ids: HashMap::new(),
                order: VecDeque::new(),
                capacity: capacity.max(1),
                buf: Vec::new(),
            })),
            repeats: Arc::default(),
            conflicts: Arc::default(),
        }
    }

    /// Marks the spans of earlier requests (e.g. those already in the
    /// output file) as seen.
    pub fn remember<'a>(&self, requests: impl IntoIterator<Item = &'a ExportTraceServiceRequest>) {
        let Ok(mut memory) = self.memory.lock() else {
            return;
        };
        for span in requests
            .into_iter()
            .flat_map(|r| &r.resource_spans)
            .flat_map(|rs| &rs.scope_spans)
            .flat_map(|ss| &ss.spans)
        {
            let key = memory.key(span);
            if !memory.keys.contains(&key) {
                memory.insert(key);
            }
        }
    }

    /// Spans dropped as repeats so far.
    pub fn repeats(&self) -> u64 {
        self.repeats.load(Ordering::Relaxed)
    }

    /// Spans passed on whose ids had been seen with other content.
    pub fn conflicts(&self) -> u64 {
        self.conflicts.load(Ordering::Relaxed)
    }
}

impl<S: TraceSink> TraceSink for Dedupe<S> {
    fn accept(&self, mut request: ExportTraceServiceRequest) -> Result<(), SinkError> {
        // Held until the inner sink answered, so that what is remembered
        // is what it took.
        let mut memory = self
            .memory
            .lock()
            .map_err(|_| SinkError::Unavailable("dedupe lock poisoned".into()))?;
        let mut added = Vec::new();
        let mut repeats = 0u64;
        let mut conflicts = Vec::new();
        for resource in &mut request.resource_spans {
            for scope in &mut resource.scope_spans {
                scope.spans.retain(|span| {
                    let key = memory.key(span);
                    match memory.classify(key) {
                        Seen::Repeat => {
                            repeats += 1;
                            return false;
                        }
                        Seen::Conflict => conflicts.push((hex(&span.trace_id), hex(&span.span_id))),
                        Seen::New => {}
                    }
                    memory.insert(key);
                    added.push(key);
                    true
                });
            }
            resource.scope_spans.retain(|s| !s.spans.is_empty());
        }
        request.resource_spans.retain(|r| !r.scope_spans.is_empty());
        if !request.resource_spans.is_empty() {
            if let Err(e) = self.inner.accept(request) {
                memory.forget_last(&added);
                return Err(e);
            }
        }
        drop(memory);
        if repeats > 0 {
            let total = self.repeats.fetch_add(repeats, Ordering::Relaxed) + repeats;
            tracing::info!(
                dropped = repeats,
                total,
                "repeated spans dropped (sent again after an exporter restart)"
            );
        }
        if !conflicts.is_empty() {
            self.conflicts
                .fetch_add(conflicts.len() as u64, Ordering::Relaxed);
            for (trace_id, span_id) in conflicts.iter().take(NAMED_CONFLICTS) {
                tracing::warn!(%trace_id, %span_id, "conflict: a span with these ids was received before with other content; both are written");
            }
            if conflicts.len() > NAMED_CONFLICTS {
                tracing::warn!(
                    conflicts = conflicts.len(),
                    "conflicts in one request: spans whose ids were received before with other content; all are written"
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receiver::MemorySink;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans};

    /// A request of spans with these span ids and names.
    fn spans(spans: &[(u8, &str)]) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: spans
                        .iter()
                        .map(|(id, name)| Span {
                            trace_id: vec![1; 16],
                            span_id: vec![*id; 8],
                            name: name.to_string(),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    fn request(ids: &[u8]) -> ExportTraceServiceRequest {
        spans(&ids.iter().map(|id| (*id, "s")).collect::<Vec<_>>())
    }

    #[test]
    fn each_span_passes_once() {
        let memory = MemorySink::new();
        let sink = Dedupe::new(memory.clone(), 10);
        sink.accept(request(&[1, 2])).unwrap();
        sink.accept(request(&[2, 3])).unwrap();
        sink.accept(request(&[1])).unwrap();
        let ids: Vec<u8> = memory.spans().iter().map(|s| s.span_id[0]).collect();
        assert_eq!(ids, vec![1, 2, 3]);
        assert_eq!(sink.repeats(), 2);
        assert_eq!(
            memory.requests().len(),
            2,
            "an all-repeat request writes nothing"
        );
    }

    #[test]
    fn memory_is_bounded() {
        let memory = MemorySink::new();
        let sink = Dedupe::new(memory.clone(), 2);
        sink.accept(request(&[1, 2, 3])).unwrap();
        sink.accept(request(&[1])).unwrap(); // 1 was forgotten
        assert_eq!(memory.span_count(), 4);
        sink.remember(&[request(&[9])]);
        sink.accept(request(&[9])).unwrap();
        assert_eq!(sink.repeats(), 1);
    }

    #[test]
    fn same_ids_with_other_content_are_a_conflict_and_both_pass() {
        let memory = MemorySink::new();
        let sink = Dedupe::new(memory.clone(), 10);
        sink.accept(spans(&[(1, "forged")])).unwrap();
        sink.accept(spans(&[(1, "JobRun")])).unwrap();
        sink.accept(spans(&[(1, "JobRun"), (1, "forged")])).unwrap();
        let names: Vec<String> = memory.spans().into_iter().map(|s| s.name).collect();
        assert_eq!(names, ["forged", "JobRun"]);
        assert_eq!((sink.conflicts(), sink.repeats()), (1, 2));
    }

    /// A sink that refuses everything.
    struct Full;

    impl TraceSink for Full {
        fn accept(&self, _: ExportTraceServiceRequest) -> Result<(), SinkError> {
            Err(SinkError::Unavailable("disk full".into()))
        }
    }

    #[test]
    fn spans_of_a_refused_request_are_not_remembered() {
        let sink = Dedupe::new(Full, 10);
        assert!(sink.accept(request(&[1, 2])).is_err());
        assert!(sink.accept(request(&[1, 2])).is_err());
        assert_eq!((sink.repeats(), sink.conflicts()), (0, 0));
        let memory = sink.memory.lock().unwrap();
        assert!(memory.keys.is_empty() && memory.ids.is_empty() && memory.order.is_empty());
    }
}
