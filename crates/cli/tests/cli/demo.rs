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
    let html = std::fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert_eq!(
        html.matches("class=\"span-row\"").count(),
        spans,
        "one row per span"
    );
    let requests = dspans_otlp::read_json_lines(dir.path().join("traces.jsonl")).unwrap();
    let exported: usize = requests.iter().map(dspans_otlp::receiver::span_count).sum();
    assert_eq!(exported, spans);
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
