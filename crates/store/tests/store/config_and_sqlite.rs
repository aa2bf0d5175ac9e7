//! `[store]` configuration parsing and SQLite-specific session behaviour.

use std::path::Path;
use std::time::Duration;

use dspans_store::{create, open, Backend, CreateMode, SessionState, StoreConfig, StoreError};

#[test]
fn store_table_is_read_from_a_whole_config_file() {
    let doc = r#"
        [store]
        backend = "zookeeper"
        hosts = "zk1:2181,zk2:2181"
        chroot = "/dspans"
        session_timeout_ms = 6000
        tls_ca = "certs/ca.pem"
        digest_user = "dspans"
        digest_password = "secret"

        [tracing]
        enabled = true

        [[pipeline]]
        name = "gate"
    "#;
    let cfg = StoreConfig::from_toml_document(doc).expect("valid [store]");
    assert_eq!(cfg.backend, Backend::Zookeeper);
    assert_eq!(cfg.hosts, "zk1:2181,zk2:2181");
    assert_eq!(cfg.chroot.as_deref(), Some("/dspans"));
    assert_eq!(cfg.session_timeout_ms, 6000);
    assert_eq!(cfg.digest_user.as_deref(), Some("dspans"));
    cfg.validate().expect("consistent options");
    let cfg = cfg.relative_to(Path::new("/etc/dspans"));
    assert_eq!(
        cfg.tls_ca.as_deref(),
        Some(Path::new("/etc/dspans/certs/ca.pem"))
    );
}

#[test]
fn defaults_and_errors() {
    let cfg = StoreConfig::from_toml_document("[tracing]\nenabled = false\n").expect("defaults");
    assert_eq!(cfg, StoreConfig::default());
    assert_eq!(cfg.backend, Backend::Sqlite);
    assert_eq!(cfg.path, Path::new("state/dspans.db"));
    assert_eq!(cfg.session_timeout_ms, 10_000);
    assert!(cfg.poll_interval_ms <= 50);

    let err = StoreConfig::from_toml_document("[store]\nbackend = \"etcd\"\n").unwrap_err();
    assert!(matches!(err, StoreError::Config(_)), "{err:?}");
    let err = StoreConfig::from_toml_document("[store]\npaht = \"x.db\"\n").unwrap_err();
    assert!(err.to_string().contains("paht"), "{err}");
    let half_auth = StoreConfig {
        digest_user: Some("u".into()),
        ..StoreConfig::zookeeper("h:1")
    };
    assert!(half_auth.validate().is_err());
    assert!(StoreConfig::zookeeper("h:1")
        .with_chroot("rel")
        .validate()
        .is_err());
}

#[test]
fn relative_sqlite_path_is_relative_to_the_config_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("dspans.toml");
    std::fs::write(&file, "[store]\npath = \"state/x.db\"\n").expect("write");
    let cfg = StoreConfig::from_config_file(&file).expect("read");
    assert_eq!(cfg.path, dir.path().join("state/x.db"));
    let err = StoreConfig::from_config_file(&dir.path().join("missing.toml")).unwrap_err();
    assert!(err.to_string().contains("missing.toml"), "{err}");
}

/// A SQLite session whose lease disappears (as when another process reaped
/// it after a long pause) is reported expired to its owner, its ephemeral
/// nodes are gone, and later operations fail instead of acting without a
/// session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_owner_is_told_when_its_lease_is_gone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("s.db");
    let cfg = StoreConfig::sqlite(&db).with_session_timeout_ms(600);
    let store = create(&cfg).await.expect("create");
    let observer = open(&cfg).await.expect("open");
    store
        .create("/eph", b"", CreateMode::Ephemeral)
        .await
        .expect("create");
    let mut session = store.session();

    // Simulate the reaper of another process: drop the lease row directly.
    let conn = rusqlite::Connection::open(&db).expect("sqlite");
    conn.busy_timeout(Duration::from_secs(5)).expect("busy");
    let removed = conn
        .execute("DELETE FROM leases WHERE id = ?1", [store.session_id()])
        .expect("delete lease");
    assert_eq!(removed, 1);

    let state = tokio::time::timeout(Duration::from_secs(5), async {
        while !session.borrow_and_update().is_terminal() {
            if session.changed().await.is_err() {
                break;
            }
        }
        *session.borrow()
    })
    .await
    .expect("owner not told within 5 s");
    assert_eq!(state, SessionState::Expired);
    assert_eq!(store.get("/eph").await, Err(StoreError::SessionExpired));
    assert_eq!(
        store.create("/x", b"", CreateMode::Ephemeral).await,
        Err(StoreError::SessionExpired)
    );
    assert_eq!(observer.get("/eph").await.expect("observer reads"), None);
}
