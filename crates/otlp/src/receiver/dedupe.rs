//! [`Dedupe`]: drops spans a sink has already taken.

use std::collections::{HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

use super::sink::{SinkError, TraceSink};

/// A span's identity: trace id and span id bytes.
type SpanKey = (Vec<u8>, Vec<u8>);

struct Seen {
    keys: HashSet<SpanKey>,
    order: VecDeque<SpanKey>,
    capacity: usize,
}

impl Seen {
    /// Records `key`; false when it was there already.
    fn insert(&mut self, key: SpanKey) -> bool {
        if self.keys.contains(&key) {
            return false;
        }
        if self.order.len() >= self.capacity {
            if let Some(oldest) = self.order.pop_front() {
                self.keys.remove(&oldest);
            }
        }
        self.order.push_back(key.clone());
        self.keys.insert(key);
        true
    }
}

/// Passes each span to the inner sink once: a span (same trace and span id)
/// that arrives again is dropped and counted. Exporters that deliver at
/// least once (the span ledger's outbox, after a crash between the
/// collector's answer and the entry's deletion) resend spans with their
/// ids, so this makes the written file exactly-once.
///
/// Memory is bounded: the last `capacity` span ids are remembered (about
/// 100 bytes each).
///
/// ```
/// use dspans_otlp::receiver::{Dedupe, MemorySink, TraceSink};
/// use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
/// let memory = MemorySink::new();
/// let sink = Dedupe::new(memory.clone(), 1000);
/// sink.accept(ExportTraceServiceRequest::default()).unwrap();
/// assert_eq!(sink.repeats(), 0);
/// ```
pub struct Dedupe<S> {
    inner: Arc<S>,
    seen: Arc<Mutex<Seen>>,
    repeats: Arc<AtomicU64>,
}

impl<S> Clone for Dedupe<S> {
    /// Another handle on the same sink and the same memory of spans.
    fn clone(&self) -> Self {
        Dedupe {
            inner: self.inner.clone(),
            seen: self.seen.clone(),
            repeats: self.repeats.clone(),
        }
    }
}

impl<S> std::fmt::Debug for Dedupe<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dedupe")
            .field("repeats", &self.repeats.load(Ordering::Relaxed))
            .finish()
    }
}

impl<S: TraceSink> Dedupe<S> {
    /// Wraps `inner`, remembering up to `capacity` span ids.
    pub fn new(inner: S, capacity: usize) -> Dedupe<S> {
        Dedupe {
            inner: Arc::new(inner),
            seen: Arc::new(Mutex::new(Seen {
                keys: HashSet::new(),
                order: VecDeque::new(),
                capacity: capacity.max(1),
            })),
            repeats: Arc::default(),
        }
    }

    /// Marks the spans of earlier requests (e.g. those already in the
    /// output file) as seen.
    pub fn remember<'a>(&self, requests: impl IntoIterator<Item = &'a ExportTraceServiceRequest>) {
        let Ok(mut seen) = self.seen.lock() else {
            return;
        };
        for span in super::sink::spans_of(requests) {
            seen.insert((span.trace_id, span.span_id));
        }
    }

    /// Spans dropped as repeats so far.
    pub fn repeats(&self) -> u64 {
        self.repeats.load(Ordering::Relaxed)
    }
}

impl<S: TraceSink> TraceSink for Dedupe<S> {
    fn accept(&self, mut request: ExportTraceServiceRequest) -> Result<(), SinkError> {
        let mut dropped = 0u64;
        {
            let mut seen = self
                .seen
                .lock()
                .map_err(|_| SinkError("dedupe lock poisoned".into()))?;
            for resource in &mut request.resource_spans {
                for scope in &mut resource.scope_spans {
                    scope.spans.retain(|span| {
                        let new = seen.insert((span.trace_id.clone(), span.span_id.clone()));
                        dropped += u64::from(!new);
                        new
                    });
                }
                resource.scope_spans.retain(|s| !s.spans.is_empty());
            }
            request.resource_spans.retain(|r| !r.scope_spans.is_empty());
        }
        if dropped > 0 {
            let total = self.repeats.fetch_add(dropped, Ordering::Relaxed) + dropped;
            tracing::info!(
                dropped,
                total,
                "repeated spans dropped (sent again after an exporter restart)"
            );
        }
        if request.resource_spans.is_empty() {
            return Ok(());
        }
        self.inner.accept(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::receiver::MemorySink;
    use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span};

    fn request(ids: &[u8]) -> ExportTraceServiceRequest {
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: ids
                        .iter()
                        .map(|id| Span {
                            trace_id: vec![1; 16],
                            span_id: vec![*id; 8],
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
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
}
