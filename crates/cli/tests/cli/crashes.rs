//! `dspans bench crashes`: schedulers SIGKILLed right after a plain OTLP
//! receiver (no deduplication) sees saved spans arrive from them, each
//! started again. Straight to the receiver, the kills make it get spans
//! twice; through the relay, it gets no span twice, and none is lost
//! either way.

use std::process::Command;

use dspans_test_support::Backend;
use rstest::rstest;

use crate::support::{DSPANS, HEAVY};

/// `dspans bench crashes --kills KILLS --via VIA` on `zk` (or SQLite);
/// returns its JSON figures.
fn bench(zk: Option<&str>, via: &str, kills: u32) -> serde_json::Value {
    let mut bench = Command::new(DSPANS);
    bench.args([
        "bench",
        "crashes",
        "--kills",
        &kills.to_string(),
        "--via",
        via,
    ]);
    if let Some(hosts) = zk {
        bench.args(["--backend", "zookeeper", "--zk", hosts]);
    }
    let out = bench.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "bench crashes failed:\n{stdout}\n{stderr}"
    );
    eprintln!("{stdout}");
    let figures: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(figures["kills"], kills, "{stderr}");
    // Each kill happened after a report: at least that many changes.
    assert!(figures["changes_reported"].as_u64().unwrap() >= u64::from(kills));
    assert_eq!(figures["lost"], 0, "{stdout}");
    assert_eq!(figures["left_open"], 0, "{stdout}");
    figures
}

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::zookeeper(Backend::Zookeeper)]
fn twenty_scheduler_kills_reach_a_plain_backend_once_through_the_relay(#[case] backend: Backend) {
    let _turn = HEAVY.take();
    let zk = backend.server();
    let hosts = zk.as_ref().map(|zk| zk.hosts.as_str());
    // The kills resend spans: a plain backend shows them twice.
    let direct = bench(hosts, "direct", 5);
    assert!(direct["duplicates"].as_u64().unwrap() > 0, "{direct}");
    let relayed = bench(hosts, "relay", 20);
    assert!(relayed["spans_distinct"].as_u64().unwrap() >= 20 * 4);
    assert!(relayed["duplicates"].as_u64().unwrap() <= 1, "{relayed}");
}
