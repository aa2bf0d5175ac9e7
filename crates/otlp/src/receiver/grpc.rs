//! The gRPC side of the receiver: opentelemetry-proto's `TraceService`.

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status};

use super::sink::{span_count, SinkError, TraceSink};

struct Service {
    sink: Arc<dyn TraceSink>,
}

#[tonic::async_trait]
impl TraceService for Service {
    async fn export(
        &self,
        request: Request<ExportTraceServiceRequest>,
    ) -> Result<Response<ExportTraceServiceResponse>, Status> {
        let request = request.into_inner();
        tracing::debug!(spans = span_count(&request), "gRPC trace export received");
        if let Some(reason) = super::invalid(&request) {
            return Err(Status::invalid_argument(reason));
        }
        self.sink.accept(request).map_err(|e| match e {
            SinkError::Unavailable(m) => Status::unavailable(m),
            SinkError::Invalid(m) => Status::invalid_argument(m),
        })?;
        Ok(Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// The gRPC router: `TraceService`, gzip either way, requests up to
/// `max_request_bytes` after decompression.
pub(crate) fn router(sink: Arc<dyn TraceSink>, max_request_bytes: usize) -> axum::Router {
    let service = TraceServiceServer::new(Service { sink })
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(max_request_bytes);
    tonic::service::Routes::new(service)
        .prepare()
        .into_axum_router()
}
