//! Lock, job queue and event queue recipes.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context};
use dspans_store::recipes::{EventQueue, JobQueue, JobState, Lock};
use serde_json::json;

use crate::common::Env;

pub async fn lock_is_exclusive_and_waiters_get_it(env: Env) -> anyhow::Result<()> {
    let a = env.open().await;
    let b = env.open().await;
    let path = env.path("locks/pipeline");
    let guard = Lock::new(a.clone(), &path)
        .try_acquire(b"host-a")
        .await?
        .context("free lock not acquired")?;
    ensure!(guard.is_held() && guard.verify().await?);
    let lock_b = Lock::new(b.clone(), &path);
    ensure!(
        lock_b.try_acquire(b"host-b").await?.is_none(),
        "lock acquired twice"
    );
    ensure!(lock_b.holder().await? == Some(b"host-a".to_vec()));
    ensure!(
        lock_b
            .acquire(b"host-b", Some(Duration::from_millis(200)))
            .await?
            .is_none(),
        "acquire with timeout got a held lock"
    );
    let waiter = tokio::spawn(async move {
        lock_b
            .acquire(b"host-b", Some(Duration::from_secs(10)))
            .await
    });
    guard.release().await?;
    let got = waiter
        .await??
        .context("waiter did not get the released lock")?;
    ensure!(got.verify().await?);
    ensure!(Lock::new(a, &path).holder().await? == Some(b"host-b".to_vec()));
    got.release().await?;
    ensure!(b.get(&path).await?.is_none(), "release left the lock node");
    Ok(())
}

pub async fn lock_holder_learns_of_lost_session(env: Env) -> anyhow::Result<()> {
    let a = env.open().await;
    let b = env.open().await;
    let path = env.path("locks/x");
    let mut guard = Lock::new(a.clone(), &path)
        .try_acquire(b"a")
        .await?
        .context("lock")?;
    a.close().await?;
    tokio::time::timeout(Duration::from_secs(5), guard.lost())
        .await
        .context("holder not told it lost the lock")?;
    ensure!(!guard.is_held());
    let got = Lock::new(b, &path)
        .acquire(b"b", Some(Duration::from_secs(5)))
        .await?;
    ensure!(got.is_some(), "lock of a closed session not free");
    Ok(())
}

pub async fn job_queue_lifecycle(env: Env) -> anyhow::Result<()> {
    let store = env.open().await;
    let other = env.open().await;
    let queue = JobQueue::new(store.clone(), env.path("jobs"));
    let queue_b = JobQueue::new(other.clone(), env.path("jobs"));
    ensure!(queue.list().await?.is_empty());
    // A span context's trace id needs all 128 bits: it must come back
    // digit for digit (a serde_json::Value could not even hold it).
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct SpanContext {
        trace_id: u128,
        span_id: u64,
    }
    #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
    struct Request {
        job: String,
        span_context: SpanContext,
    }
    let request = Request {
        job: "unit".into(),
        span_context: SpanContext {
            trace_id: u128::MAX - 7,
            span_id: u64::MAX,
        },
    };
    let id1 = queue.submit(&request).await?;
    let id2 = queue.submit(&json!({"job": "lint"})).await?;
    let jobs = queue.list().await?;
    ensure!(jobs.iter().map(|j| j.id.clone()).collect::<Vec<_>>() == [id1.clone(), id2.clone()]);
    ensure!(jobs.iter().all(|j| j.record.state == JobState::Requested));
    let mut claim = queue.claim(&id1, "w1").await?.context("claim")?;
    ensure!(claim.job.record.state == JobState::Running);
    ensure!(
        claim.job.record.request::<Request>()? == request,
        "request kept verbatim"
    );
    ensure!(queue_b.claim(&id1, "w2").await?.is_none(), "claimed twice");
    queue.update(&mut claim, json!({"progress": 50})).await?;
    let seen = queue_b.get(&id1).await?.context("job")?;
    ensure!(
        seen.record.worker.as_deref() == Some("w1")
            && seen.record.result == json!({"progress": 50})
    );
    let next = queue_b.claim_next("w2").await?.context("second job")?;
    ensure!(next.job.id == id2);
    let done = queue.complete(claim, json!({"result": "SUCCESS"})).await?;
    ensure!(done.record.state == JobState::Completed);
    ensure!(
        queue_b.claim(&id1, "w2").await?.is_none(),
        "completed job claimed again"
    );
    ensure!(
        queue_b.claim_next("w2").await?.is_none(),
        "nothing left to claim"
    );
    queue_b.complete(next, json!({"result": "FAILURE"})).await?;
    queue.remove(&id1).await?;
    ensure!(queue.list().await?.len() == 1);
    Ok(())
}

pub async fn orphaned_jobs_are_requeued(env: Env) -> anyhow::Result<()> {
    let worker = env.open().await;
    let survivor = env.open().await;
    let q_worker = JobQueue::new(worker.clone(), env.path("jobs"));
    let q_survivor = JobQueue::new(survivor.clone(), env.path("jobs"));
    let id = q_survivor.submit(&json!({"n": 1})).await?;
    let claim = q_worker.claim(&id, "dies").await?.context("claim")?;
    ensure!(
        q_survivor.requeue_orphans().await?.is_empty(),
        "requeued a job whose worker lives"
    );
    worker.close().await?;
    drop(claim);
    // On an ensemble the survivor may read from a member that has not yet
    // seen the worker's session end (ZooKeeper orders each client's view,
    // not views across clients): a later look requeues the job, as the
    // scheduler's look every second does.
    let deadline = Instant::now() + Duration::from_secs(10);
    let requeued = loop {
        let requeued = q_survivor.requeue_orphans().await?;
        if !requeued.is_empty() || Instant::now() >= deadline {
            break requeued;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    ensure!(requeued == [id.clone()], "requeued {requeued:?}");
    let claim = q_survivor
        .claim_next("w2")
        .await?
        .context("requeued job claimable")?;
    ensure!(claim.job.id == id);
    Ok(())
}

pub async fn a_lock_whose_answer_was_lost_is_freed(env: Env) -> anyhow::Result<()> {
    let store = env.open().await;
    let queue = JobQueue::new(store.clone(), env.path("jobs"));
    let id = queue.submit(&json!({"n": 1})).await?;
    // The worker's lock was created, but its answer never arrived: nobody
    // holds a guard for it.
    let lock = Lock::new(store.clone(), format!("{}/locks/{id}", env.path("jobs")));
    std::mem::forget(lock.try_acquire(b"w1").await?.context("lock")?);
    let other = Lock::new(store.clone(), format!("{}/locks/other", env.path("jobs")));
    std::mem::forget(other.try_acquire(b"w2").await?.context("other lock")?);
    ensure!(
        queue.claim_next("w1").await?.is_none(),
        "stuck while locked"
    );
    let freed = queue.release_stale_locks("w1").await?;
    ensure!(freed == [id.clone()], "freed {freed:?}");
    ensure!(
        store
            .exists(&format!("{}/locks/other", env.path("jobs")))
            .await?
            .is_some(),
        "another worker's lock is left alone"
    );
    let claim = queue.claim_next("w1").await?.context("claimable again")?;
    ensure!(claim.job.id == id);
    Ok(())
}

pub async fn event_queue_in_order(env: Env) -> anyhow::Result<()> {
    let a = env.open().await;
    let b = env.open().await;
    let qa = EventQueue::new(a, env.path("events"));
    let qb = EventQueue::new(b, env.path("events"));
    ensure!(
        !qb.wait(Duration::from_millis(50)).await?,
        "empty queue reported events"
    );
    let waiter = {
        let qb = qb.clone();
        tokio::spawn(async move { qb.wait(Duration::from_secs(5)).await })
    };
    for i in 0..10 {
        let q = if i % 2 == 0 { &qa } else { &qb };
        q.put_json(&json!({ "i": i })).await?;
    }
    ensure!(waiter.await??, "waiter not woken by a put");
    let events = qb.read().await?;
    let order: Vec<i64> = events
        .iter()
        .map(|e| {
            e.json::<serde_json::Value>()
                .map(|v| v["i"].as_i64().unwrap_or(-1))
        })
        .collect::<Result<_, _>>()?;
    ensure!(order == (0..10).collect::<Vec<_>>(), "order {order:?}");
    ensure!(events.windows(2).all(|w| w[0].seq < w[1].seq));
    ensure!(qa.delete(&events[0]).await?);
    ensure!(
        !qb.delete(&events[0]).await?,
        "double delete reported success"
    );
    ensure!(qa.read().await?.len() == 9);
    Ok(())
}
