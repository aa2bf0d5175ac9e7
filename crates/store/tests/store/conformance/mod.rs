//! The store conformance suite: the same cases against SQLite and a real
//! ZooKeeper server (started by the suite through `scripts/zookeeper.sh`).
//!
//! Run: `cargo test -p dspans-store --test store conformance`.

mod basic;
mod process;
mod recipes;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use dspans_store::StoreConfig;
use dspans_test_support::{Backend, ZkEnsemble};
use rstest::rstest;

use crate::common::Env;

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

/// Slack on session expiry for one server ([`Env::expiry_slack`]).
const EXPIRY_SLACK: Duration = Duration::from_secs(2);
/// Slack on session expiry on an ensemble.
const ENSEMBLE_EXPIRY_SLACK: Duration = Duration::from_secs(4);

async fn run_suite(backend: Backend, expiry_slack: Duration, base: impl Fn(&str) -> StoreConfig) {
    let mut failures = Vec::new();
    let only = std::env::var("DSPANS_STORE_CASE").ok();
    for (name, case) in CASES {
        if only.as_deref().is_some_and(|o| !name.contains(o)) {
            continue;
        }
        let env = Env {
            backend,
            base: base(name),
            root: format!("/conformance/{name}"),
            expiry_slack,
        };
        if backend == Backend::Sqlite {
            dspans_store::init(&env.base)
                .await
                .expect("create the store");
        }
        let started = std::time::Instant::now();
        let outcome = tokio::time::timeout(std::time::Duration::from_secs(60), case(env)).await;
        let ms = started.elapsed().as_millis();
        match outcome {
            Ok(Ok(())) => eprintln!("[{backend:?}] {name} ... ok ({ms} ms)"),
            Ok(Err(err)) => {
                eprintln!("[{backend:?}] {name} ... FAILED ({ms} ms): {err:#}");
                failures.push(format!("{name}: {err:#}"));
            }
            Err(_) => {
                eprintln!("[{backend:?}] {name} ... TIMED OUT");
                failures.push(format!("{name}: timed out after 60 s"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{backend:?}: {} case(s) failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Every case of the suite against `backend`: a database file per case on
/// SQLite, one server of the suite's own for all cases on ZooKeeper.
#[rstest]
#[case::sqlite(Backend::Sqlite)]
#[case::zookeeper(Backend::Zookeeper)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance(#[case] backend: Backend) {
    let dir = tempfile::tempdir().expect("temp dir");
    let base = dir.path().to_path_buf();
    let server = backend.server();
    run_suite(backend, EXPIRY_SLACK, |name| match &server {
        None => {
            let mut cfg = StoreConfig::sqlite(base.join(format!("{name}.db")));
            cfg.poll_interval_ms = 10;
            cfg
        }
        Some(server) => StoreConfig::zookeeper(server.hosts.clone()),
    })
    .await;
    if let Some(server) = server {
        server.stop();
    }
}

/// The suite once against a three-server ensemble, as production runs
/// ZooKeeper, through a follower (its writes go through the leader and a
/// quorum). Every client of a case talks to that one member: the cases
/// read one client's write from another client at once, which ZooKeeper
/// promises only on one server (across members a reader may lag). Clients
/// spread over the members are the pipeline's ensemble test
/// (`an_ensemble_leader_killed_mid_run_loses_nothing` in the CLI tests).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_on_an_ensemble() {
    let ensemble = tokio::task::spawn_blocking(ZkEnsemble::start)
        .await
        .expect("the ensemble starts");
    let leader = ensemble.leader();
    let follower = (leader + 1) % ensemble.members.len();
    let hosts = ensemble.members[follower].hosts.clone();
    run_suite(Backend::Zookeeper, ENSEMBLE_EXPIRY_SLACK, |_| {
        StoreConfig::zookeeper(hosts.clone())
    })
    .await;
}
