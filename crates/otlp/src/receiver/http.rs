//! The HTTP side of the receiver: `POST /v1/traces` with protobuf or JSON
//! bodies, optionally gzip-encoded.

use std::io::Read;
use std::sync::Arc;

use super::sink::{span_count, SinkError, TraceSink};
use crate::options::TRACES_PATH;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use prost::Message;

#[derive(Clone)]
struct AppState {
    sink: Arc<dyn TraceSink>,
    max_request_bytes: usize,
}

#[derive(Clone, Copy, PartialEq)]
enum Body {
    Protobuf,
    Json,
}

/// A refused request: status and a plain-text reason.
struct Refusal {
    status: StatusCode,
    message: String,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        tracing::debug!(status = %self.status, message = %self.message, "refusing OTLP/HTTP request");
        (
            self.status,
            [(header::CONTENT_TYPE, "text/plain")],
            self.message,
        )
            .into_response()
    }
}

fn error(status: StatusCode, message: impl Into<String>) -> Refusal {
    Refusal {
        status,
        message: message.into(),
    }
}

/// Decodes a gzip body, refusing to inflate beyond `max` bytes.
fn gunzip(body: &[u8], max: usize) -> Result<Vec<u8>, Refusal> {
    let mut out = Vec::new();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    flate2::read::GzDecoder::new(body)
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("invalid gzip body: {e}")))?;
    if out.len() > max {
        return Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("decompressed body exceeds {max} bytes"),
        ));
    }
    Ok(out)
}

fn decode(
    headers: &HeaderMap,
    body: &[u8],
    max: usize,
) -> Result<(Body, ExportTraceServiceRequest), Refusal> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let kind = match mime.as_str() {
        "application/x-protobuf" | "application/protobuf" => Body::Protobuf,
        "application/json" => Body::Json,
        _ => {
            return Err(error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("unsupported content type `{content_type}`: use application/x-protobuf or application/json"),
            ))
        }
    };
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .trim()
        .to_ascii_lowercase();
    let inflated;
    let body = match encoding.as_str() {
        "" | "identity" => body,
        "gzip" => {
            inflated = gunzip(body, max)?;
            &inflated[..]
        }
        other => {
            return Err(error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("unsupported content encoding `{other}`"),
            ))
        }
    };
    let request = match kind {
        Body::Protobuf => ExportTraceServiceRequest::decode(body).map_err(|e| {
            error(
                StatusCode::BAD_REQUEST,
                format!("invalid OTLP protobuf: {e}"),
            )
        })?,
        Body::Json => crate::jsonl::from_json_slice(body)
            .map_err(|e| error(StatusCode::BAD_REQUEST, format!("invalid OTLP JSON: {e}")))?,
    };
    Ok((kind, request))
}

async fn traces(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    let (kind, request) = match decode(&headers, &body, state.max_request_bytes) {
        Ok(decoded) => decoded,
        Err(refusal) => return refusal.into_response(),
    };
    tracing::debug!(spans = span_count(&request), "HTTP trace export received");
    if let Some(reason) = super::invalid(&request) {
        return error(StatusCode::BAD_REQUEST, reason).into_response();
    }
    match state.sink.accept(request) {
        Ok(()) => {}
        Err(SinkError::Unavailable(m)) => {
            return error(StatusCode::SERVICE_UNAVAILABLE, m).into_response()
        }
        Err(SinkError::Invalid(m)) => return error(StatusCode::BAD_REQUEST, m).into_response(),
    }
    let response = ExportTraceServiceResponse {
        partial_success: None,
    };
    match kind {
        Body::Protobuf => (
            [(header::CONTENT_TYPE, "application/x-protobuf")],
            response.encode_to_vec(),
        )
            .into_response(),
        Body::Json => (
            [(header::CONTENT_TYPE, "application/json")],
            serde_json::to_string(&response).unwrap_or_else(|_| "{}".into()),
        )
            .into_response(),
    }
}

/// The HTTP router: `POST /v1/traces`, bodies up to `max_request_bytes`
/// on the wire and after decompression.
pub(crate) fn router(sink: Arc<dyn TraceSink>, max_request_bytes: usize) -> Router {
    Router::new()
        .route(TRACES_PATH, post(traces))
        .layer(DefaultBodyLimit::max(max_request_bytes))
        .with_state(AppState {
            sink,
            max_request_bytes,
        })
}
