//! [`Guard`]: what every request of a connection goes through before and
//! after the protocol's router: the bearer token, the request time limit,
//! the connection's count of requests under way, and gRPC's status for an
//! oversized message.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{header, HeaderValue, Request, Response, StatusCode};
use axum::Router;
use hyper::body::Incoming;
use tokio::time::Instant;

use super::Protocol;

/// `grpc-status` of OUT_OF_RANGE, which tonic answers for a message over
/// the size limit, and of RESOURCE_EXHAUSTED, which OTLP and gRPC's own
/// servers answer.
const GRPC_OUT_OF_RANGE: &str = "11";
const GRPC_RESOURCE_EXHAUSTED: &str = "8";

/// A connection's requests under way, and when the last one started or
/// ended: its idle time.
#[derive(Debug)]
pub(super) struct Activity {
    busy: AtomicUsize,
    last: Mutex<Instant>,
}

impl Activity {
    pub(super) fn new() -> Self {
        Activity {
            busy: AtomicUsize::new(0),
            last: Mutex::new(Instant::now()),
        }
    }

    fn touch(&self) {
        if let Ok(mut last) = self.last.lock() {
            *last = Instant::now();
        }
    }

    /// Completes once the connection has had no request under way for
    /// `limit`.
    pub(super) async fn idle_for(&self, limit: Duration) {
        loop {
            let since = self
                .last
                .lock()
                .map(|l| *l)
                .unwrap_or_else(|_| Instant::now());
            if self.busy.load(Ordering::Acquire) == 0 && since.elapsed() >= limit {
                return;
            }
            // Busy, or not idle long enough yet: look again when it could be.
            let wait = limit.saturating_sub(since.elapsed()).max(limit / 8);
            tokio::time::sleep(wait).await;
        }
    }
}

/// A request under way on a connection, until dropped.
struct Busy(Arc<Activity>);

impl Busy {
    fn start(activity: &Arc<Activity>) -> Busy {
        activity.busy.fetch_add(1, Ordering::AcqRel);
        activity.touch();
        Busy(activity.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.touch();
        self.0.busy.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The receiver's policy for every request, shared by its connections.
#[derive(Debug)]
pub(super) struct Policy {
    pub protocol: Protocol,
    /// `Bearer <token>` as the `authorization` header must be.
    pub expected_authorization: Option<Vec<u8>>,
    /// Longest time from a request's headers to its answer (reading the
    /// body included).
    pub request_timeout: Duration,
}

impl Policy {
    fn authorized<B>(&self, request: &Request<B>) -> bool {
        let Some(expected) = &self.expected_authorization else {
            return true;
        };
        request
            .headers()
            .get(header::AUTHORIZATION)
            .is_some_and(|given| constant_time_eq(given.as_bytes(), expected))
    }

    fn refusal(&self, code: tonic::Code, status: StatusCode, message: &str) -> Response<Body> {
        match self.protocol {
            Protocol::Grpc => tonic::Status::new(code, message).into_http(),
            Protocol::Http => {
                let mut response = Response::new(Body::from(message.to_string()));
                *response.status_mut() = status;
                response
                    .headers_mut()
                    .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
                if status == StatusCode::UNAUTHORIZED {
                    response
                        .headers_mut()
                        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                }
                response
            }
        }
    }
}

/// Compares without stopping at the first difference, so that the time
/// taken tells nothing about how much of a guessed token was right.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// One connection's service: the [`Policy`] around the protocol's router.
#[derive(Clone)]
pub(super) struct Guard {
    pub router: Router,
    pub policy: Arc<Policy>,
    pub activity: Arc<Activity>,
}

impl hyper::service::Service<Request<Incoming>> for Guard {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let policy = self.policy.clone();
        if !policy.authorized(&request) {
            tracing::debug!(
                protocol = policy.protocol.name(),
                "refusing a request without the bearer token"
            );
            let refusal = policy.refusal(
                tonic::Code::Unauthenticated,
                StatusCode::UNAUTHORIZED,
                "a valid `Authorization: Bearer <token>` header is required",
            );
            return Box::pin(std::future::ready(Ok(refusal)));
        }
        let busy = Busy::start(&self.activity);
        let mut router = self.router.clone();
        Box::pin(async move {
            let _busy = busy;
            let call = tower_service::Service::call(&mut router, request.map(Body::new));
            let mut response = match tokio::time::timeout(policy.request_timeout, call).await {
                Ok(Ok(response)) => response,
                Ok(Err(never)) => match never {},
                Err(_) => {
                    tracing::debug!(
                        protocol = policy.protocol.name(),
                        "a request took too long to arrive; refusing it"
                    );
                    return Ok(policy.refusal(
                        tonic::Code::DeadlineExceeded,
                        StatusCode::REQUEST_TIMEOUT,
                        "the request was not received in time",
                    ));
                }
            };
            if policy.protocol == Protocol::Grpc {
                let headers = response.headers_mut();
                if headers.get("grpc-status").map(HeaderValue::as_bytes)
                    == Some(GRPC_OUT_OF_RANGE.as_bytes())
                {
                    headers.insert(
                        "grpc-status",
                        HeaderValue::from_static(GRPC_RESOURCE_EXHAUSTED),
                    );
                }
            }
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn tokens_compare_whole() {
        assert!(constant_time_eq(b"Bearer abc", b"Bearer abc"));
        assert!(!constant_time_eq(b"Bearer abd", b"Bearer abc"));
        assert!(!constant_time_eq(b"Bearer ab", b"Bearer abc"));
    }
}
