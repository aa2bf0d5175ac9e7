//! The HTTP exporter's client: reqwest, remembering why the last request
//! failed (`opentelemetry-otlp` reports only "network error").

use std::sync::{Arc, Mutex};

use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};

/// The last transport failure seen by a [`ReportingClient`].
pub(crate) type LastError = Arc<Mutex<Option<String>>>;

/// Renders an error with its `source()` chain, deduplicating repeats.
pub(crate) fn render_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut out = err.to_string();
    let mut next = err.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = cause.source();
    }
    out
}

#[derive(Debug)]
pub(crate) struct ReportingClient {
    pub(crate) inner: reqwest::Client,
    pub(crate) last_error: LastError,
}

#[async_trait::async_trait]
impl HttpClient for ReportingClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let result = self.inner.send_bytes(request).await;
        if let Err(e) = &result {
            let text = render_chain(e.as_ref());
            tracing::debug!(error = %text, "OTLP/HTTP request failed");
            if let Ok(mut last) = self.last_error.lock() {
                *last = Some(text);
            }
        }
        result
    }
}
