//! Cases with real child processes (the `dspans-store-agent` binary).

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use dspans_store::recipes::{EventQueue, JobQueue, JobState, Lock};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use dspans_test_support::Backend;

use crate::common::Env;

const AGENT: &str = env!("CARGO_BIN_EXE_dspans-store-agent");

fn agent(config: &dspans_store::StoreConfig, args: &[&str]) -> anyhow::Result<Command> {
    let mut cmd = Command::new(AGENT);
    cmd.arg(serde_json::to_string(config)?)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    Ok(cmd)
}

pub async fn sigkilled_holder_loses_node_and_lock(env: Env) -> anyhow::Result<()> {
    let timeout_ms: u64 = match env.backend {
        Backend::Sqlite => 1500,
        Backend::Zookeeper => 2000,
    };
    let config = env.config(timeout_ms);
    let (node, lock_path) = (env.path("agent/alive"), env.path("locks/agent"));
    let mut child = agent(&config, &["hold", &node, &lock_path])?.spawn()?;
    let stdout = child.stdout.take().context("agent stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let ready = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .context("agent not ready within 20 s")??;
    if ready.as_deref() != Some("READY") {
        let out = child.wait_with_output().await?;
        anyhow::bail!(
            "agent failed: {ready:?} {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let store = env.open().await;
    ensure!(
        store.get(&node).await?.is_some(),
        "agent's ephemeral node missing"
    );
    let lock = Lock::new(store.clone(), &lock_path);
    ensure!(
        lock.try_acquire(b"me").await?.is_none(),
        "agent's lock not held"
    );

    child.start_kill()?; // SIGKILL
    let killed = Instant::now();
    child.wait().await?;
    // The server expires sessions on its tick (500 ms in
    // scripts/zookeeper.sh; SQLite's reaper polls), and the store's other
    // tests run beside this one on two cores: the slack keeps the check
    // about expiry, not about scheduling.
    let limit = Duration::from_millis(timeout_ms) + env.expiry_slack;
    let guard = lock
        .acquire(b"me", Some(limit))
        .await?
        .context(format!("lock not free within {limit:?} of SIGKILL"))?;
    let took = killed.elapsed();
    ensure!(guard.verify().await?);
    ensure!(
        store.get(&node).await?.is_none(),
        "ephemeral node of killed agent survived"
    );
    eprintln!("    lock taken over {took:?} after SIGKILL (session timeout {timeout_ms} ms)");
    ensure!(took <= limit, "took {took:?}");
    Ok(())
}

pub async fn competing_processes_claim_each_job_once(env: Env) -> anyhow::Result<()> {
    let store = env.open().await;
    let root = env.path("queue");
    let queue = JobQueue::new(store.clone(), &root);
    let mut ids = Vec::new();
    for n in 0..30 {
        ids.push(queue.submit(&json!({ "n": n })).await?);
    }
    let config = env.config(10_000);
    let w1 = agent(&config, &["claim", &root, "w1"])?.spawn()?;
    let w2 = agent(&config, &["claim", &root, "w2"])?.spawn()?;
    let (o1, o2) = tokio::time::timeout(Duration::from_secs(40), async {
        tokio::join!(w1.wait_with_output(), w2.wait_with_output())
    })
    .await
    .context("claimers did not finish within 40 s")?;
    let (o1, o2) = (o1?, o2?);
    for o in [&o1, &o2] {
        ensure!(
            o.status.success(),
            "claimer failed: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let claimed1: Vec<String> = String::from_utf8(o1.stdout)?
        .lines()
        .map(String::from)
        .collect();
    let claimed2: Vec<String> = String::from_utf8(o2.stdout)?
        .lines()
        .map(String::from)
        .collect();
    let mut all: Vec<String> = claimed1.iter().chain(&claimed2).cloned().collect();
    all.sort();
    let before = all.len();
    all.dedup();
    ensure!(
        all.len() == before,
        "a job was claimed twice: {claimed1:?} / {claimed2:?}"
    );
    ensure!(all == ids, "claimed {} of {} jobs", all.len(), ids.len());
    eprintln!(
        "    w1 claimed {}, w2 claimed {}",
        claimed1.len(),
        claimed2.len()
    );
    for job in queue.list().await? {
        ensure!(
            job.record.state == JobState::Completed,
            "{} is {:?}",
            job.id,
            job.record.state
        );
        let by = job.record.result["by"].as_str().unwrap_or("");
        let expected = if claimed1.contains(&job.id) {
            "w1"
        } else {
            "w2"
        };
        ensure!(
            by == expected,
            "{} completed by {by}, claimed by {expected}",
            job.id
        );
    }
    Ok(())
}

pub async fn event_order_across_writer_processes(env: Env) -> anyhow::Result<()> {
    let root = env.path("events");
    let config = env.config(10_000);
    let writers: Vec<_> = ["p1", "p2", "p3"]
        .iter()
        .map(|w| agent(&config, &["put", &root, w, "20"]).and_then(|mut c| Ok(c.spawn()?)))
        .collect::<anyhow::Result<_>>()?;
    for w in writers {
        let out = tokio::time::timeout(Duration::from_secs(40), w.wait_with_output())
            .await
            .context("writer did not finish")??;
        ensure!(
            out.status.success(),
            "writer failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let store = env.open().await;
    let events = EventQueue::new(store, &root).read().await?;
    ensure!(events.len() == 60, "{} events", events.len());
    ensure!(
        events.windows(2).all(|w| w[0].seq < w[1].seq),
        "sequence not increasing"
    );
    let mut last: std::collections::HashMap<String, i64> = Default::default();
    for e in &events {
        let v: serde_json::Value = e.json()?;
        let (w, i) = (
            v["writer"].as_str().unwrap_or("").to_string(),
            v["i"].as_i64().unwrap_or(-1),
        );
        let prev = last.insert(w.clone(), i).unwrap_or(-1);
        ensure!(i == prev + 1, "writer {w}: event {i} after {prev}");
    }
    ensure!(last.values().all(|i| *i == 19));
    Ok(())
}
