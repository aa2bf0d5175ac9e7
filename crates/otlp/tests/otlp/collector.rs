//! `dspans_otlp::collector`: the project's exporters in, OTLP-JSON lines out.

use crate::common::*;
use dspans_otlp::collector::{self, Collector, CollectorConfig, CollectorError};
use dspans_otlp::receiver::spans_of;
use dspans_otlp::{build_exporter, read_json_lines, ExportOptions, Protocol};

fn config(out: std::path::PathBuf) -> CollectorConfig {
    let any = Some("127.0.0.1:0".parse().unwrap());
    CollectorConfig::new(out).grpc(any).http(any)
}

fn opts(protocol: Protocol, endpoint: String) -> ExportOptions {
    ExportOptions {
        enabled: true,
        protocol,
        endpoint: Some(endpoint),
        service_name: Some("collector-test".into()),
        timeout: Some(5_000),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn exporters_over_grpc_and_http_are_written_as_lines() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("traces.jsonl");
    let collector = Collector::start(&config(out.clone())).await.unwrap();
    let lines = collector.listen_lines();
    let grpc = collector.grpc_addr().unwrap();
    let http = collector.http_addr().unwrap();
    assert_eq!(lines, [format!("grpc {grpc}"), format!("http {http}")]);
    for (protocol, addr) in [(Protocol::Grpc, grpc), (Protocol::HttpProtobuf, http)] {
        let o = opts(protocol, format!("http://{addr}"));
        let provider = provider(build_exporter(&o).unwrap(), o.service_name());
        emit_spans(&provider);
        provider.shutdown().unwrap();
    }
    collector.shutdown().await.unwrap();
    // Simple processor: one request, so one line, per span.
    let requests = read_json_lines(&out).unwrap();
    assert_eq!(requests.len(), 6);
    assert_eq!(service_names(&requests), ["collector-test"; 6]);
    let spans = spans_of(&requests);
    check_emitted(&spans[..3]);
    check_emitted(&spans[3..]);
}

#[tokio::test(flavor = "multi_thread")]
async fn run_announces_and_stops() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("traces.jsonl");
    let cfg = config(out.clone());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let mut announced = Vec::new();
        collector::run(&cfg, &mut announced, async {
            let _ = rx.await;
        })
        .await
        .map(|()| String::from_utf8(announced).unwrap())
    });
    tx.send(()).unwrap();
    let announced = tokio::time::timeout(WAIT, task)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let lines: Vec<_> = announced.lines().collect();
    assert_eq!(lines.len(), 2, "{announced}");
    assert!(lines[0].starts_with("grpc 127.0.0.1:") && lines[1].starts_with("http 127.0.0.1:"));
    assert!(out.exists());
}

#[tokio::test]
async fn unusable_output_or_address_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("no/such/dir/traces.jsonl");
    assert!(matches!(
        Collector::start(&config(bad)).await,
        Err(CollectorError::Output { .. })
    ));
    let first = Collector::start(&config(dir.path().join("a.jsonl")))
        .await
        .unwrap();
    let taken = CollectorConfig::new(dir.path().join("b.jsonl"))
        .grpc(first.grpc_addr())
        .http(None);
    let err = Collector::start(&taken).await.unwrap_err();
    assert!(err.to_string().contains("cannot listen"), "{err}");
    let none = CollectorConfig::new(dir.path().join("c.jsonl"))
        .grpc(None)
        .http(None);
    assert!(Collector::start(&none).await.is_err());
    first.shutdown().await.unwrap();
}
