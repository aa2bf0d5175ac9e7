//! The store conformance suite: the same cases against SQLite and a real
//! ZooKeeper server (started by the suite through `scripts/zookeeper.sh`).
//!
//! Run: `cargo test -p dspans-store --test conformance`.

#[path = "../common/mod.rs"]
mod common;

mod basic;
mod process;
mod recipes;

use std::future::Future;
use std::pin::Pin;

use common::{Env, Kind, ZkServer};
use dspans_store::StoreConfig;

type CaseFn = fn(Env) -> Pin<Box<dyn Future<Output = anyhow::Result<()>> + Send>>;

macro_rules! cases {
    ($($module:ident :: $case:ident),* $(,)?) => {
        &[$((stringify!($case), |env| Box::pin($module::$case(env))),)*]
    };
}

/// Every case of the suite, in order.
const CASES: &[(&str, CaseFn)] = cases![
    basic::create_get_children_delete,
    basic::exists_all_answers_each_path,
    basic::sequential_and_ephemeral_rules,
    basic::cas_conflict_changes_nothing,
    basic::multi_failing_check_changes_nothing,
    basic::multi_applies_in_order,
    basic::size_limit_refused_never_truncated,
    basic::node_notifications_fire,
    basic::children_notifications_fire,
    basic::close_deletes_ephemerals_and_tells_owner,
    recipes::lock_is_exclusive_and_waiters_get_it,
    recipes::lock_holder_learns_of_lost_session,
    recipes::job_queue_lifecycle,
    recipes::orphaned_jobs_are_requeued,
    recipes::a_lock_whose_answer_was_lost_is_freed,
    recipes::event_queue_in_order,
    process::sigkilled_holder_loses_node_and_lock,
    process::competing_processes_claim_each_job_once,
    process::event_order_across_writer_processes,
];

async fn run_suite(kind: Kind, base: impl Fn(&str) -> StoreConfig) {
    let mut failures = Vec::new();
    let only = std::env::var("DSPANS_STORE_CASE").ok();
    for (name, case) in CASES {
        if only.as_deref().is_some_and(|o| !name.contains(o)) {
            continue;
        }
        let env = Env {
            kind,
            base: base(name),
            root: format!("/conformance/{name}"),
        };
        let started = std::time::Instant::now();
        let outcome = tokio::time::timeout(std::time::Duration::from_secs(60), case(env)).await;
        let ms = started.elapsed().as_millis();
        match outcome {
            Ok(Ok(())) => eprintln!("[{kind:?}] {name} ... ok ({ms} ms)"),
            Ok(Err(err)) => {
                eprintln!("[{kind:?}] {name} ... FAILED ({ms} ms): {err:#}");
                failures.push(format!("{name}: {err:#}"));
            }
            Err(_) => {
                eprintln!("[{kind:?}] {name} ... TIMED OUT");
                failures.push(format!("{name}: timed out after 60 s"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{kind:?}: {} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_sqlite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let base = dir.path().to_path_buf();
    run_suite(Kind::Sqlite, |name| {
        let mut cfg = StoreConfig::sqlite(base.join(format!("{name}.db")));
        cfg.poll_interval_ms = 10;
        cfg
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_zookeeper() {
    let server = ZkServer::start();
    let hosts = server.hosts.clone();
    run_suite(Kind::Zookeeper, |_| StoreConfig::zookeeper(hosts.clone())).await;
    server.stop();
}
