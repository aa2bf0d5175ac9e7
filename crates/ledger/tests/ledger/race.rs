//! Two OS processes race to end the same 1,000 saved spans, on SQLite and
//! on a ZooKeeper server of the test's own: exactly 1,000 spans are
//! exported, each once.

use std::collections::HashSet;

use dspans_ledger::Ledger;
use dspans_store::StoreConfig;
use rstest::rstest;

use crate::support::*;

const RACE_SPANS: usize = 1_000;
const RACE_ROLE: &str = "DSPANS_LEDGER_RACE_ROLE";

/// Two processes end the same 1,000 saved spans at once.
#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::zookeeper(Backend::Zookeeper)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_race_to_end_the_same_spans(#[case] backend: Backend) {
    let stores = Stores::start(backend);
    let port = free_port();
    let (sink, running) = receiver(port);
    let store = stores.open().await;
    let ledger = Ledger::new(store.clone(), format!("{ROOT}/spans"));
    let tracer = tracer();
    start_owned_spans(&ledger, &tracer, RACE_SPANS).await;

    let config = serde_json::to_string(&stores.config).unwrap();
    let children: Vec<std::process::Child> = ["racer-a", "racer-b"]
        .iter()
        .map(|name| {
            std::process::Command::new(std::env::current_exe().unwrap())
                .args(["race::race_child_process", "--exact", "--nocapture"])
                .env(RACE_ROLE, name)
                .env("DSPANS_LEDGER_RACE_STORE", &config)
                .env("DSPANS_LEDGER_RACE_PORT", port.to_string())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut won = 0;
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{backend:?} racer failed");
        won += 1;
    }
    assert_eq!(won, 2);
    wait_outbox_empty(&ledger).await;
    let spans = sink.wait_for_spans(RACE_SPANS, DEADLINE).await.unwrap();
    // Both racers drained their exporters before exiting: nothing more comes.
    let ids: HashSet<Vec<u8>> = span_ids(&spans).into_iter().collect();
    assert_eq!(ids.len(), RACE_SPANS, "every span exported");
    assert_eq!(spans.len(), RACE_SPANS, "no span exported twice");
    assert!(ledger.open_spans().await.unwrap().is_empty());
    running.shutdown().await.unwrap();
}

/// The racing process (runs only when started by the race test).
#[test]
fn race_child_process() {
    let Ok(name) = std::env::var(RACE_ROLE) else {
        return;
    };
    let config: StoreConfig =
        serde_json::from_str(&std::env::var("DSPANS_LEDGER_RACE_STORE").unwrap()).unwrap();
    let port: u16 = std::env::var("DSPANS_LEDGER_RACE_PORT")
        .unwrap()
        .parse()
        .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let store = dspans_store::open(&config).await.unwrap();
        let ledger = Ledger::new(store.clone(), format!("{ROOT}/spans"));
        let tracer = tracer();
        let (ledger, sender) = with_sender(port, ledger, &tracer, &name, fast());
        let (task, stop_tx) = spawn(sender);
        let mut won = 0;
        for i in 0..RACE_SPANS {
            if end_owned(&ledger, &tracer, i).await {
                won += 1;
            }
        }
        stop(task, stop_tx).await;
        eprintln!("{name} ended {won} spans");
        let _ = store.close().await;
    });
}
