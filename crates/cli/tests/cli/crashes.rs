//! `dspans bench crashes`: schedulers SIGKILLed right after a plain OTLP
//! receiver (no deduplication) sees saved spans arrive from them, each
//! started again. Through the relay, the receiver gets no span twice and
//! none is lost.

use std::process::Command;

use dspans_test_support::Backend;
use rstest::rstest;

use crate::support::{DSPANS, HEAVY};

#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::zookeeper(Backend::Zookeeper)]
fn twenty_scheduler_kills_reach_a_plain_backend_once_through_the_relay(#[case] backend: Backend) {
    let _turn = HEAVY.take();
    let zk = backend.server();
    let mut bench = Command::new(DSPANS);
    bench.args(["bench", "crashes", "--kills", "20", "--via", "relay"]);
    if let Some(zk) = &zk {
        bench.args(["--backend", "zookeeper", "--zk", &zk.hosts]);
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
    assert_eq!(figures["kills"], 20, "{stderr}");
    // Each kill happened after a report: at least 20 changes went through.
    assert!(figures["changes_reported"].as_u64().unwrap() >= 20);
    assert!(figures["spans_distinct"].as_u64().unwrap() >= 20 * 4);
    assert!(figures["duplicates"].as_u64().unwrap() <= 1, "{stdout}");
    assert_eq!(figures["lost"], 0, "{stdout}");
    assert_eq!(figures["left_open"], 0, "{stdout}");
    // The kills made the components send spans again: the relay dropped
    // them, so the plain receiver did not get them twice.
    assert!(
        figures["relay_repeats_dropped"].as_u64().unwrap() > 0,
        "{stdout}"
    );
}
