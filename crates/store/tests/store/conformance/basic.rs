//! Node operations, compare-and-set, multi-operations, size limits,
//! notifications and sessions.

use std::time::Duration;

use anyhow::{ensure, Context};
use dspans_store::{
    CreateMode, EventKind, Op, OpResult, SessionState, StoreError, EXISTS_ALL_CHUNK, MAX_VALUE_SIZE,
};
use dspans_test_support::wait_until;

use crate::common::Env;

pub async fn create_get_children_delete(env: Env) -> anyhow::Result<()> {
    let store = env.open().await;
    store.create_all(&env.root, b"").await?;
    let a = env.path("a");
    ensure!(
        store.get(&a).await?.is_none(),
        "missing node must read as None"
    );
    ensure!(store.exists(&a).await?.is_none());
    let created = store.create(&a, b"one", CreateMode::Persistent).await?;
    ensure!(created == a, "create returned {created}");
    let node = store.get(&a).await?.context("node just created")?;
    ensure!(node.data == b"one" && node.stat.version == 0 && !node.stat.ephemeral);
    let err = store
        .create(&a, b"two", CreateMode::Persistent)
        .await
        .unwrap_err();
    ensure!(
        err == StoreError::NodeExists { path: a.clone() },
        "got {err:?}"
    );
    let orphan = env.path("missing/child");
    let err = store
        .create(&orphan, b"", CreateMode::Persistent)
        .await
        .unwrap_err();
    ensure!(
        err == StoreError::NoNode {
            path: env.path("missing")
        },
        "got {err:?}"
    );
    store
        .create(&env.path("a/x"), b"", CreateMode::Persistent)
        .await?;
    store
        .create(&env.path("a/y"), b"", CreateMode::Persistent)
        .await?;
    ensure!(store.children(&a).await? == ["x", "y"]);
    ensure!(store.exists(&a).await?.context("a")?.num_children == 2);
    let err = store.delete(&a, None).await.unwrap_err();
    ensure!(matches!(err, StoreError::NotEmpty { .. }), "got {err:?}");
    ensure!(store
        .children(&env.path("nope"))
        .await
        .unwrap_err()
        .is_no_node());
    store.delete_all(&a).await?;
    ensure!(store.get(&a).await?.is_none());
    ensure!(store.delete(&a, None).await.unwrap_err().is_no_node());
    let err = store.get("relative/path").await.unwrap_err();
    ensure!(matches!(err, StoreError::InvalidPath { .. }), "got {err:?}");
    store
        .create_all(&env.path("deep/er/still"), b"leaf")
        .await?;
    ensure!(
        store
            .get(&env.path("deep/er/still"))
            .await?
            .context("deep")?
            .data
            == b"leaf"
    );
    Ok(())
}

/// Existence of many paths, in order: more paths than one chunk, present
/// and missing ones mixed, a node with children among them.
pub async fn exists_all_answers_each_path(env: Env) -> anyhow::Result<()> {
    let store = env.open().await;
    store.create_all(&env.path("parent/child"), b"").await?;
    let total = EXISTS_ALL_CHUNK * 2 + 7;
    let mut paths = Vec::new();
    let mut expected = Vec::new();
    for i in 0..total {
        let path = env.path(&format!("n{i}"));
        let present = i % 3 != 1;
        if present {
            store.create(&path, b"x", CreateMode::Persistent).await?;
        }
        paths.push(path);
        expected.push(present);
    }
    paths.push(env.path("parent"));
    expected.push(true);
    paths.push(env.path("missing/deeper"));
    expected.push(false);
    let found = store.exists_all(&paths).await?;
    ensure!(found == expected, "exists_all answered {found:?}");
    ensure!(store.exists_all(&[]).await?.is_empty());
    let err = store
        .exists_all(&["not/a/path".to_string()])
        .await
        .unwrap_err();
    ensure!(matches!(err, StoreError::InvalidPath { .. }), "got {err:?}");
    Ok(())
}

pub async fn sequential_and_ephemeral_rules(env: Env) -> anyhow::Result<()> {
    let store = env.open().await;
    store.create_all(&env.root, b"").await?;
    let p1 = store
        .create(&env.path("q-"), b"1", CreateMode::PersistentSequential)
        .await?;
    let p2 = store
        .create(&env.path("q-"), b"2", CreateMode::PersistentSequential)
        .await?;
    let p3 = store
        .create(&env.path("e-"), b"3", CreateMode::EphemeralSequential)
        .await?;
    let seq = |p: &str| dspans_store::sequence_of(p).unwrap_or(-1);
    ensure!(
        p1.len() == env.path("q-").len() + 10,
        "10-digit suffix: {p1}"
    );
    ensure!(seq(&p1) < seq(&p2) && seq(&p2) < seq(&p3), "{p1} {p2} {p3}");
    let eph = store
        .create(&env.path("eph"), b"", CreateMode::Ephemeral)
        .await?;
    let stat = store.exists(&eph).await?.context("ephemeral")?;
    ensure!(stat.ephemeral && stat.owner_session == store.session_id());
    let err = store
        .create(&env.path("eph/child"), b"", CreateMode::Persistent)
        .await
        .unwrap_err();
    ensure!(
        matches!(err, StoreError::NoChildrenForEphemerals { .. }),
        "got {err:?}"
    );
    Ok(())
}

pub async fn cas_conflict_changes_nothing(env: Env) -> anyhow::Result<()> {
    let store = env.open().await;
    let other = env.open().await;
    store.create_all(&env.root, b"").await?;
    let p = env.path("obj");
    store.create(&p, b"v0", CreateMode::Persistent).await?;
    let stat = store.set(&p, b"v1", Some(0)).await?;
    ensure!(stat.version == 1);
    // a second process still holding version 0 loses
    let err = other.set(&p, b"stale", Some(0)).await.unwrap_err();
    ensure!(
        err == StoreError::BadVersion {
            path: p.clone(),
            expected: 0
        },
        "got {err:?}"
    );
    let node = store.get(&p).await?.context("obj")?;
    ensure!(
        node.data == b"v1" && node.stat.version == 1,
        "conflict changed the node: {node:?}"
    );
    let err = other.delete(&p, Some(0)).await.unwrap_err();
    ensure!(err.is_bad_version(), "got {err:?}");
    ensure!(
        store.get(&p).await?.is_some(),
        "failed delete removed the node"
    );
    other.set(&p, b"v2", None).await?;
    store.delete(&p, Some(2)).await?;
    ensure!(store.get(&p).await?.is_none());
    ensure!(store.set(&p, b"x", Some(2)).await.unwrap_err().is_no_node());
    Ok(())
}

pub async fn multi_failing_check_changes_nothing(env: Env) -> anyhow::Result<()> {
    let store = env.open().await;
    store.create_all(&env.root, b"").await?;
    let (a, b, c) = (env.path("a"), env.path("b"), env.path("c"));
    store.create(&a, b"a0", CreateMode::Persistent).await?;
    store.create(&b, b"b0", CreateMode::Persistent).await?;
    store.set(&b, b"b1", None).await?; // b is at version 1
    let ops = [
        Op::create(&c, "c0", CreateMode::Persistent),
        Op::set(&a, "a1", Some(0)),
        Op::check(&b, 0), // fails: version is 1
        Op::delete(&a, None),
    ];
    let err = store.multi(&ops).await.unwrap_err();
    match &err {
        StoreError::Multi { index: 2, source } => ensure!(
            **source
                == StoreError::BadVersion {
                    path: b.clone(),
                    expected: 0
                },
            "wrong cause: {source:?}"
        ),
        other => anyhow::bail!("expected Multi at index 2, got {other:?}"),
    }
    ensure!(
        store.get(&c).await?.is_none(),
        "create of a failed multi was applied"
    );
    let node = store.get(&a).await?.context("a")?;
    ensure!(
        node.data == b"a0" && node.stat.version == 0,
        "set of a failed multi was applied"
    );
    // failing create identifies its index too
    let err = store
        .multi(&[
            Op::set(&a, "a1", None),
            Op::create(&a, "dup", CreateMode::Persistent),
        ])
        .await
        .unwrap_err();
    ensure!(
        matches!(&err, StoreError::Multi { index: 1, source } if source.is_node_exists()),
        "got {err:?}"
    );
    ensure!(store.get(&a).await?.context("a")?.data == b"a0");
    Ok(())
}

pub async fn multi_applies_in_order(env: Env) -> anyhow::Result<()> {
    let store = env.open().await;
    store.create_all(&env.root, b"").await?;
    let (obj, seqp) = (env.path("obj"), env.path("s-"));
    let results = store
        .multi(&[
            Op::create(&obj, "o0", CreateMode::Persistent),
            Op::check(&obj, 0),
            Op::set(&obj, "o1", Some(0)),
            Op::create(&seqp, "s", CreateMode::PersistentSequential),
            Op::create(env.path("gone"), "", CreateMode::Persistent),
            Op::delete(env.path("gone"), Some(0)),
        ])
        .await?;
    ensure!(results.len() == 6);
    ensure!(results[0] == OpResult::Created { path: obj.clone() });
    ensure!(results[1] == OpResult::Checked);
    ensure!(results[2] == OpResult::Set { version: 1 });
    ensure!(
        matches!(&results[3], OpResult::Created { path } if path.starts_with(&seqp) && path.len() == seqp.len() + 10),
        "{:?}",
        results[3]
    );
    ensure!(results[5] == OpResult::Deleted);
    ensure!(store.get(&obj).await?.context("obj")?.data == b"o1");
    ensure!(store.get(&env.path("gone")).await?.is_none());
    let err = store.multi(&[]).await.unwrap_err();
    ensure!(matches!(err, StoreError::InvalidArgument(_)), "got {err:?}");
    Ok(())
}

pub async fn size_limit_refused_never_truncated(env: Env) -> anyhow::Result<()> {
    let store = env.open().await;
    store.create_all(&env.root, b"").await?;
    let big = env.path("big");
    let max = vec![7u8; MAX_VALUE_SIZE];
    store.create(&big, &max, CreateMode::Persistent).await?;
    ensure!(store.get(&big).await?.context("big")?.data.len() == MAX_VALUE_SIZE);
    let over = vec![8u8; MAX_VALUE_SIZE + 1];
    let err = store.set(&big, &over, None).await.unwrap_err();
    ensure!(
        err == StoreError::TooLarge {
            path: big.clone(),
            size: MAX_VALUE_SIZE + 1,
            limit: MAX_VALUE_SIZE
        },
        "got {err:?}"
    );
    ensure!(
        err.to_string().contains(&big) && err.to_string().contains("1000001"),
        "message: {err}"
    );
    let node = store.get(&big).await?.context("big")?;
    ensure!(
        node.data == max && node.stat.version == 0,
        "refused set changed the node"
    );
    let err = store
        .create(&env.path("big2"), &over, CreateMode::Persistent)
        .await
        .unwrap_err();
    ensure!(matches!(err, StoreError::TooLarge { .. }), "got {err:?}");
    ensure!(store.get(&env.path("big2")).await?.is_none());
    let half = vec![1u8; MAX_VALUE_SIZE / 2 + 1];
    let err = store
        .multi(&[
            Op::create(env.path("m1"), half.clone(), CreateMode::Persistent),
            Op::create(env.path("m2"), half, CreateMode::Persistent),
        ])
        .await
        .unwrap_err();
    ensure!(
        matches!(&err, StoreError::Multi { index: 1, source } if matches!(**source, StoreError::TooLarge { .. })),
        "got {err:?}"
    );
    ensure!(store.get(&env.path("m1")).await?.is_none());
    Ok(())
}

async fn expect_event(
    watch: &mut dspans_store::Watch,
    kind: EventKind,
    what: &str,
) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match watch.next_timeout(left).await {
            Some(ev) if ev.kind == kind => return Ok(()),
            Some(_) => continue,
            None => anyhow::bail!("no {kind:?} event for {what} within 5 s"),
        }
    }
}

pub async fn node_notifications_fire(env: Env) -> anyhow::Result<()> {
    let store = env.open().await;
    let writer = env.open().await; // another session, like another process
    store.create_all(&env.root, b"").await?;
    let p = env.path("watched");
    let mut watch = store.watch(&p).await?;
    writer.create(&p, b"0", CreateMode::Persistent).await?;
    expect_event(&mut watch, EventKind::Created, "create").await?;
    writer.set(&p, b"1", None).await?;
    expect_event(&mut watch, EventKind::DataChanged, "set").await?;
    writer.delete(&p, None).await?;
    expect_event(&mut watch, EventKind::Deleted, "delete").await?;
    Ok(())
}

pub async fn children_notifications_fire(env: Env) -> anyhow::Result<()> {
    let store = env.open().await;
    let writer = env.open().await;
    let dir = env.path("dir");
    store.create_all(&dir, b"").await?;
    let mut watch = store.watch_children(&dir).await?;
    writer
        .create(&format!("{dir}/k1"), b"", CreateMode::Persistent)
        .await?;
    expect_event(&mut watch, EventKind::ChildrenChanged, "child create").await?;
    watch.drain();
    writer.set(&format!("{dir}/k1"), b"data", None).await?;
    writer.delete(&format!("{dir}/k1"), None).await?;
    expect_event(&mut watch, EventKind::ChildrenChanged, "child delete").await?;
    Ok(())
}

pub async fn close_deletes_ephemerals_and_tells_owner(env: Env) -> anyhow::Result<()> {
    let owner = env.open().await;
    let observer = env.open().await;
    owner.create_all(&env.root, b"").await?;
    let p = env.path("eph");
    owner.create(&p, b"mine", CreateMode::Ephemeral).await?;
    ensure!(observer.get(&p).await?.is_some());
    let mut session = owner.session();
    ensure!(*session.borrow() == SessionState::Connected);
    let mut watch = observer.watch(&p).await?;
    owner.close().await?;
    expect_event(
        &mut watch,
        EventKind::Deleted,
        "ephemeral of closed session",
    )
    .await?;
    ensure!(observer.get(&p).await?.is_none());
    ensure!(
        wait_until(Duration::from_secs(2), || {
            let s = *session.borrow_and_update();
            async move { s == SessionState::Closed }
        })
        .await,
        "owner not told its session closed"
    );
    let err = owner.get(&p).await.unwrap_err();
    ensure!(
        err == StoreError::SessionExpired,
        "closed store still works: {err:?}"
    );
    Ok(())
}
