//! The receiver on the wire: HTTP JSON and protobuf, gzip, bad and
//! oversized requests, gRPC limits, shutdown.

use std::io::Write;
use std::time::Duration;

use crate::common::*;
use dspans_otlp::proto::collector::trace::v1::trace_service_client::TraceServiceClient;
use dspans_otlp::proto::collector::trace::v1::ExportTraceServiceRequest;
use dspans_otlp::receiver::{MemorySink, Receiver, ReceiverError};
use dspans_otlp::{request_to_json_line, to_export_request};
use dspans_test_support::TestReceiver;
use opentelemetry_sdk::Resource;
use prost::Message;

fn sample_request(n: usize) -> ExportTraceServiceRequest {
    let resource = Resource::builder().with_service_name("posted").build();
    to_export_request(captured_spans(n), &resource)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn client() -> reqwest::Client {
    // reqwest is built without a default TLS provider; plain HTTP still
    // needs one installed to build a client.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .no_proxy()
        .timeout(WAIT)
        .build()
        .unwrap()
}

async fn post(url: &str, content_type: &str, gz: bool, body: Vec<u8>) -> (u16, Vec<u8>) {
    let mut req = client()
        .post(url)
        .header("content-type", content_type)
        .body(if gz { gzip(&body) } else { body });
    if gz {
        req = req.header("content-encoding", "gzip");
    }
    let resp = req.send().await.expect("request sent");
    let status = resp.status().as_u16();
    (status, resp.bytes().await.unwrap().to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_json_and_protobuf_posts_are_received() {
    let receiver = TestReceiver::start();
    let sink = receiver.sink();
    let url = format!("{}/v1/traces", receiver.http_endpoint());

    let json = request_to_json_line(&sample_request(2)).into_bytes();
    let (status, body) = post(&url, "application/json", false, json.clone()).await;
    assert_eq!(status, 200);
    assert!(serde_json::from_slice::<serde_json::Value>(&body).is_ok());
    let (status, _) = post(&url, "application/json; charset=utf-8", true, json).await;
    assert_eq!(status, 200);

    let proto = sample_request(3).encode_to_vec();
    let (status, _) = post(&url, "application/x-protobuf", false, proto.clone()).await;
    assert_eq!(status, 200);
    let (status, _) = post(&url, "application/x-protobuf", true, proto).await;
    assert_eq!(status, 200);

    let spans = sink.wait_for_spans(10, WAIT).await.unwrap();
    assert_eq!(spans.len(), 10);
    assert!(spans
        .iter()
        .all(|s| s.trace_id.len() == 16 && s.span_id.len() == 8));
    assert_eq!(service_names(&sink.requests()), ["posted"; 4]);
    receiver.shutdown().await.unwrap();
}

/// A hand-written OTLP-JSON body, as another tool would send it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_accepts_foreign_otlp_json() {
    let receiver = TestReceiver::start();
    let sink = receiver.sink();
    let url = format!("{}/v1/traces", receiver.http_endpoint());
    let body = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"curl"}}]},
      "scopeSpans":[{"scope":{"name":"manual"},"spans":[{"traceId":"5b8efff798038103d269b633813fc60c",
      "spanId":"eee19b7ec3c1b174","name":"hand-made","kind":2,"startTimeUnixNano":"1544712660000000000",
      "endTimeUnixNano":"1544712661000000000","attributes":[{"key":"n","value":{"intValue":"7"}}],
      "status":{}}]}]}]}"#;
    let (status, _) = post(&url, "application/json", false, body.into()).await;
    assert_eq!(status, 200);
    let spans = sink.wait_for_spans(1, WAIT).await.unwrap();
    assert_eq!(spans[0].name, "hand-made");
    assert_eq!(hex(&spans[0].trace_id), "5b8efff798038103d269b633813fc60c");
    assert_eq!(spans[0].start_time_unix_nano, 1_544_712_660_000_000_000);
    receiver.shutdown().await.unwrap();
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_http_requests_are_refused_and_serving_goes_on() {
    let sink = MemorySink::new();
    let receiver = Receiver::builder()
        .http("127.0.0.1:0".parse().unwrap())
        .max_request_bytes(64 * 1024)
        .start(sink.clone())
        .await
        .unwrap();
    let base = receiver.http_endpoint().unwrap();
    let url = format!("{base}/v1/traces");

    let cases: Vec<(&str, bool, Vec<u8>, u16)> = vec![
        ("application/json", false, b"{not json".to_vec(), 400),
        ("application/x-protobuf", false, vec![0xff; 32], 400),
        ("application/json", true, b"not gzip at all".to_vec(), 400),
        ("text/plain", false, b"hello".to_vec(), 415),
        // Over the limit on the wire...
        ("application/x-protobuf", false, vec![0; 200 * 1024], 413),
        // ...and only once inflated (a zip bomb in miniature).
        ("application/x-protobuf", true, vec![0; 1024 * 1024], 413),
    ];
    for (ct, gz, body, want) in cases {
        let body = if gz && want == 400 {
            // Claim gzip but send garbage: post() would compress it.
            let resp = client()
                .post(&url)
                .header("content-type", ct)
                .header("content-encoding", "gzip")
                .body(body)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status().as_u16(), want);
            continue;
        } else {
            body
        };
        let (status, _) = post(&url, ct, gz, body).await;
        assert_eq!(status, want, "{ct} gzip={gz}");
    }
    let resp = client()
        .post(&url)
        .header("content-type", "application/json")
        .header("content-encoding", "br")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 415);
    let resp = client().get(&url).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 405);
    let resp = client()
        .post(format!("{base}/v1/logs"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);

    // Still serving.
    let (status, _) = post(
        &url,
        "application/x-protobuf",
        false,
        sample_request(1).encode_to_vec(),
    )
    .await;
    assert_eq!(status, 200);
    sink.wait_for_spans(1, WAIT).await.unwrap();
    assert_eq!(sink.requests().len(), 1, "refused requests reach no sink");
    receiver.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_oversized_request_gets_a_status_and_serving_goes_on() {
    let sink = MemorySink::new();
    let receiver = Receiver::builder()
        .grpc("127.0.0.1:0".parse().unwrap())
        .max_request_bytes(16 * 1024)
        .start(sink.clone())
        .await
        .unwrap();
    let mut client = TraceServiceClient::connect(receiver.grpc_endpoint().unwrap())
        .await
        .unwrap();
    let big = sample_request(400);
    assert!(big.encoded_len() > 16 * 1024);
    let status = client.export(big).await.expect_err("too large");
    assert_eq!(status.code(), tonic::Code::ResourceExhausted, "{status:?}");

    client
        .export(sample_request(2))
        .await
        .expect("small one accepted");
    assert_eq!(sink.wait_for_spans(2, WAIT).await.unwrap().len(), 2);
    receiver.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_errors_and_shutdown() {
    let e = Receiver::builder()
        .start(MemorySink::new())
        .await
        .unwrap_err();
    assert!(matches!(e, ReceiverError::NoListener));

    let e = Receiver::builder()
        .grpc("127.0.0.1:0".parse().unwrap())
        .grpc_tls_pem("not a cert", "not a key")
        .start(MemorySink::new())
        .await
        .unwrap_err();
    assert!(matches!(e, ReceiverError::Tls { .. }), "{e}");

    let receiver = TestReceiver::start();
    let taken = receiver.grpc_addr();
    let e = Receiver::builder()
        .grpc(taken)
        .start(MemorySink::new())
        .await
        .unwrap_err();
    assert!(matches!(e, ReceiverError::Bind { .. }), "{e}");
    assert!(e.to_string().contains(&taken.to_string()));

    let http = receiver.http_addr();
    receiver.shutdown().await.unwrap();
    // After shutdown the port no longer answers.
    let refused = tokio::time::timeout(WAIT, async {
        loop {
            if tokio::net::TcpStream::connect(http).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(refused.is_ok(), "HTTP port still open after shutdown");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn channel_sink_forwards_requests() {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let receiver = Receiver::builder()
        .http("127.0.0.1:0".parse().unwrap())
        .start(tx)
        .await
        .unwrap();
    let url = format!("{}/v1/traces", receiver.http_endpoint().unwrap());
    let sent = sample_request(2);
    let (status, _) = post(&url, "application/x-protobuf", false, sent.encode_to_vec()).await;
    assert_eq!(status, 200);
    let got = tokio::time::timeout(WAIT, rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got, sent);
    receiver.shutdown().await.unwrap();
}
