//! ZooKeeper options from the `[store]` table against a real server:
//! chroot, digest authentication with ACLs, TLS file errors.

use dspans_store::{open, CreateMode, StoreConfig, StoreError};
use dspans_test_support::ZkServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chroot_and_digest_auth_are_applied() {
    let server = ZkServer::start();

    // chroot: paths are relative to it, and it is created when missing
    let rooted = open(&StoreConfig::zookeeper(&server.hosts).with_chroot("/tenant-a/dspans"))
        .await
        .expect("connect with chroot");
    rooted
        .create("/x", b"in chroot", CreateMode::Persistent)
        .await
        .expect("create");
    let plain = open(&StoreConfig::zookeeper(&server.hosts))
        .await
        .expect("connect");
    let node = plain
        .get("/tenant-a/dspans/x")
        .await
        .expect("get")
        .expect("node under chroot");
    assert_eq!(node.data, b"in chroot");
    assert_eq!(plain.get("/x").await.expect("get"), None);

    // digest auth: nodes get the creator-only ACL
    let auth = |user: &str, password: &str| StoreConfig {
        digest_user: Some(user.into()),
        digest_password: Some(password.into()),
        ..StoreConfig::zookeeper(&server.hosts)
    };
    let alice = open(&auth("alice", "s3cret"))
        .await
        .expect("connect as alice");
    alice
        .create("/private", b"alice only", CreateMode::Persistent)
        .await
        .expect("create");
    let err = plain
        .get("/private")
        .await
        .expect_err("anonymous read of a creator-only node");
    assert_eq!(
        err,
        StoreError::NoAuth {
            path: "/private".into()
        }
    );
    let mallory = open(&auth("alice", "wrong"))
        .await
        .expect("connect with a wrong password");
    assert!(matches!(
        mallory.get("/private").await,
        Err(StoreError::NoAuth { .. })
    ));
    let alice2 = open(&auth("alice", "s3cret"))
        .await
        .expect("connect as alice again");
    assert_eq!(
        alice2
            .get("/private")
            .await
            .expect("get")
            .expect("node")
            .data,
        b"alice only"
    );
    server.stop();
}

#[tokio::test]
async fn tls_files_are_checked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = StoreConfig::zookeeper("127.0.0.1:1");
    cfg.tls_ca = Some(dir.path().join("missing-ca.pem"));
    let err = open(&cfg).await.expect_err("missing CA file accepted");
    assert!(
        matches!(&err, StoreError::Config(m) if m.contains("missing-ca.pem")),
        "{err:?}"
    );
    let bad = dir.path().join("bad.pem");
    std::fs::write(&bad, "not a certificate").expect("write");
    cfg.tls_ca = Some(bad);
    let err = open(&cfg).await.expect_err("garbage CA accepted");
    assert!(
        matches!(&err, StoreError::Config(m) if m.contains("tls_ca")),
        "{err:?}"
    );
}
