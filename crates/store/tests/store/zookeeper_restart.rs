//! ZooKeeper stopped and restarted under a connected client: the client
//! reconnects (same session, ephemeral node intact) or reports the session
//! expired to its owner; it never panics.

use std::time::Duration;

use dspans_store::{open, CreateMode, SessionState, StoreConfig, StoreError};
use dspans_test_support::{wait_until, ZkServer};

async fn wait_state(
    rx: &mut tokio::sync::watch::Receiver<SessionState>,
    timeout: Duration,
    want: impl Fn(SessionState) -> bool,
) -> Option<SessionState> {
    tokio::time::timeout(timeout, async {
        loop {
            let s = *rx.borrow_and_update();
            if want(s) {
                return s;
            }
            if rx.changed().await.is_err() {
                return *rx.borrow();
            }
        }
    })
    .await
    .ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zookeeper_restart_reconnects_or_reports_expiry() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let t0 = std::time::Instant::now();
    let phase = |what: &str| eprintln!("{:>6} ms  {what}", t0.elapsed().as_millis());
    let server = ZkServer::start();
    let cfg = StoreConfig::zookeeper(server.hosts.clone())
        .with_session_timeout_ms(8_000)
        .with_chroot("/restart");
    let store = open(&cfg).await.expect("connect");
    store
        .create("/eph", b"alive", CreateMode::Ephemeral)
        .await
        .expect("ephemeral");
    store
        .create("/persist", b"p", CreateMode::Persistent)
        .await
        .expect("persistent");
    let mut session = store.session();

    // Short restart: well within the session timeout -> same session survives.
    phase("stopping");
    server.stop();
    phase("stopped");
    let s = wait_state(&mut session, Duration::from_secs(10), |s| {
        s != SessionState::Connected
    })
    .await
    .expect("client not told of the lost connection within 10 s");
    assert_eq!(
        s,
        SessionState::Disconnected,
        "unexpected state after server stop"
    );
    // A request made while disconnected waits for the reconnection (or
    // fails once the session is known to be expired).
    let pending = {
        let store = store.clone();
        tokio::spawn(async move { store.get("/persist").await })
    };
    phase("disconnected");
    server.run("start");
    phase("server restarted");
    let s = wait_state(&mut session, Duration::from_secs(20), |s| {
        s != SessionState::Disconnected
    })
    .await
    .expect("client neither reconnected nor reported expiry within 20 s");
    phase(&format!("short outage: {s:?}"));
    let read = tokio::time::timeout(Duration::from_secs(20), pending)
        .await
        .expect("request made during the outage never finished")
        .expect("request task panicked");
    match s {
        SessionState::Connected => {
            // the session survived: its ephemeral node too
            assert_eq!(
                read.expect("read after reconnect").expect("node").data,
                b"p"
            );
            let node = store.get("/eph").await.expect("read after reconnect");
            assert_eq!(node.expect("ephemeral survived").data, b"alive");
        }
        SessionState::Expired => {
            assert_eq!(read, Err(StoreError::SessionExpired));
            assert_eq!(store.get("/eph").await, Err(StoreError::SessionExpired));
        }
        other => panic!("unexpected session state {other:?}"),
    }

    // Long outage: past the session timeout -> the owner is told it expired
    // (or, if the server restored the session, it reconnects); no panic.
    let fresh = open(&cfg.clone().with_session_timeout_ms(2_000))
        .await
        .expect("connect");
    fresh
        .create("/eph2", b"", CreateMode::Ephemeral)
        .await
        .expect("ephemeral");
    let mut fresh_session = fresh.session();
    server.stop();
    wait_state(&mut fresh_session, Duration::from_secs(10), |s| {
        s != SessionState::Connected
    })
    .await
    .expect("no disconnect reported");
    // The scenario itself (not a synchronisation): the server stays down
    // for longer than the 2 s session timeout.
    tokio::time::sleep(Duration::from_millis(3_000)).await;
    server.run("start");
    phase("server restarted");
    let s = wait_state(&mut fresh_session, Duration::from_secs(20), |s| {
        s != SessionState::Disconnected
    })
    .await
    .expect("client neither reconnected nor reported expiry within 20 s");
    phase(&format!("long outage: {s:?}"));
    assert!(
        matches!(s, SessionState::Connected | SessionState::Expired),
        "unexpected state {s:?}"
    );
    if s == SessionState::Expired {
        assert_eq!(fresh.get("/eph2").await, Err(StoreError::SessionExpired));
        // a new store works and sees the old ephemeral node gone
        let again = open(&cfg).await.expect("reconnect with a new session");
        assert!(
            wait_until(Duration::from_secs(10), || {
                let again = again.clone();
                async move { matches!(again.get("/eph2").await, Ok(None)) }
            })
            .await,
            "ephemeral node of the expired session survived"
        );
    }
    server.stop();
}
