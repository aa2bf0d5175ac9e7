//! `dspans demo`, the main job, as a user runs it: on SQLite and on a real
//! ZooKeeper, it must finish with complete traces and write its report.

use std::process::Command;

use dspans_test_support::Backend;
use rstest::rstest;

use crate::support::DSPANS;

fn run_demo(extra: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(DSPANS)
        .args([
            "demo",
            "--items",
            "3",
            "--dir",
            dir.path().to_str().unwrap(),
        ])
        .args(extra)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "change 1: SUCCESS",
        "change 2: FAILURE",
        "change 3: MERGE_CONFLICT",
        "spans with a missing parent:           0",
        "duplicate span ids:                    0",
        "saved spans left open:                 0",
        "(3 queue items)",
        "killed scheduler-",
    ] {
        assert!(
            stdout.contains(line),
            "demo output lacks {line:?}:\n{stdout}"
        );
    }
    let spans: usize = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("spans:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("a span count");
    // The report is the viewer's page with every trace's rows inside.
    let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    let rows = crate::support::report_span_ids(&html).len();
    assert_eq!(rows, spans, "one row per span");
    let requests = dspans_otlp::read_json_lines(dir.path().join("traces.jsonl")).unwrap();
    let exported: usize = requests.iter().map(dspans_otlp::receiver::span_count).sum();
    assert_eq!(exported, spans);
    // The summary's handovers are the spans whose ender is not their
    // starter, whatever their name.
    let handed_over: usize = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("spans ended by another process:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("a handover count");
    let by = |span: &dspans_otlp::proto::trace::v1::Span, key: &str| {
        span.attributes
            .iter()
            .find(|kv| kv.key == key)
            .and_then(|kv| kv.value.clone())
    };
    let in_file = dspans_otlp::receiver::spans_of(&requests)
        .iter()
        .filter(|s| {
            let (started, ended) = (by(s, "dspans.started_by"), by(s, "dspans.ended_by"));
            started.is_some() && ended.is_some() && started != ended
        })
        .count();
    assert_eq!(handed_over, in_file, "{stdout}");
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::zookeeper(Backend::Zookeeper)]
fn demo_on(#[case] backend: Backend) {
    match backend.server() {
        None => run_demo(&[]),
        Some(zk) => run_demo(&["--backend", "zookeeper", "--zk", &zk.hosts]),
    }
}
