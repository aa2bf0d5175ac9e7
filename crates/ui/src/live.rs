//! The live part: the open saved spans of a store, as [`RunningSpan`]s.

use std::sync::Arc;

use dspans_ledger::Ledger;
use dspans_otlp::view::{ViewLink, ViewSpan};
use dspans_store::Store;
use durable_spans::{Kind, SpanInfo};
use opentelemetry::KeyValue;

use crate::error::UiError;
use crate::index::RunningSpan;

/// Every open saved span under the span ledger at `ledger_root` of
/// `store`, each marked orphaned when the object owning it is gone. Two
/// reads of every entry's owner at most: the entries, then one existence
/// check per 100 owners.
pub async fn running_spans(
    store: &Arc<dyn Store>,
    ledger_root: &str,
) -> Result<Vec<RunningSpan>, UiError> {
    let ledger = Ledger::new(store.clone(), ledger_root.to_string());
    let open = ledger
        .open_spans()
        .await
        .map_err(|e| UiError::Store(e.to_string()))?;
    let owners: Vec<String> = open.iter().map(|s| s.owner.clone()).collect();
    let present = match store.exists_all(&owners).await {
        Ok(present) => present,
        // An owner path that is not a valid path cannot exist.
        Err(_) => owners.iter().map(|_| true).collect(),
    };
    Ok(open
        .into_iter()
        .zip(present)
        .map(|(open, present)| RunningSpan {
            span: view_span(&open.span),
            owner: open.owner,
            orphaned: !present,
        })
        .collect())
}

fn text(attributes: &[KeyValue]) -> Vec<(String, String)> {
    attributes
        .iter()
        .map(|kv| (kv.key.to_string(), kv.value.as_str().into_owned()))
        .collect()
}

/// A saved span as the viewer shows spans; it has no end yet.
fn view_span(info: &SpanInfo) -> ViewSpan {
    let kind = match info.kind {
        Kind::Internal => "SPAN_KIND_INTERNAL",
        Kind::Server => "SPAN_KIND_SERVER",
        Kind::Client => "SPAN_KIND_CLIENT",
        Kind::Producer => "SPAN_KIND_PRODUCER",
        Kind::Consumer => "SPAN_KIND_CONSUMER",
    };
    ViewSpan {
        trace_id: format!("{:032x}", info.trace_id),
        span_id: format!("{:016x}", info.span_id),
        parent_span_id: info.parent.as_ref().map(|p| format!("{:016x}", p.span_id)),
        name: info.name.clone(),
        kind: kind.to_string(),
        start_ns: info.start_time.as_nanos() as u64,
        end_ns: 0,
        status_code: "STATUS_CODE_UNSET".to_string(),
        status_message: String::new(),
        service: None,
        host: None,
        scope: String::new(),
        attributes: text(&info.attributes),
        resource_attributes: Vec::new(),
        events: Vec::new(),
        links: info
            .links
            .iter()
            .map(|l| ViewLink {
                trace_id: format!("{:032x}", l.context.trace_id),
                span_id: format!("{:016x}", l.context.span_id),
                attributes: text(&l.attributes),
            })
            .collect(),
    }
}
