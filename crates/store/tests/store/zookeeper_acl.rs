//! ZooKeeper ACLs of the nodes the store creates, read back from a real
//! server, and the warning for a remote server without authentication.

use std::sync::{Arc, Mutex};

use dspans_store::{open, CreateMode, Op, StoreConfig};
use dspans_test_support::ZkServer;
use zookeeper_client as zk;

/// With digest authentication, every node the store creates — the chroot
/// and its ancestors, nodes made one by one, with their ancestors, in a
/// multi-operation, sequential and ephemeral — carries one ACL entry: all
/// rights for the user's digest identity, nothing for anyone else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_auth_nodes_admit_only_their_identity() {
    let server = ZkServer::start();
    let cfg = StoreConfig {
        digest_user: Some("alice".into()),
        digest_password: Some("s3cret".into()),
        ..StoreConfig::zookeeper(&server.hosts).with_chroot("/tenant/dspans")
    };
    let store = open(&cfg).await.expect("connect as alice");
    store.create_all("/a/b", b"x").await.expect("create_all");
    let seq = store
        .create("/a/seq-", b"", CreateMode::PersistentSequential)
        .await
        .expect("sequential");
    store
        .create("/a/eph", b"", CreateMode::Ephemeral)
        .await
        .expect("ephemeral");
    store
        .multi(&[Op::create(
            "/a/multi",
            b"m".to_vec(),
            CreateMode::Persistent,
        )])
        .await
        .expect("multi");

    let reader = zk::Client::connector()
        .with_auth("digest", b"alice:s3cret")
        .connect(&server.hosts)
        .await
        .expect("raw client");
    let nodes = [
        "/tenant".to_string(),
        "/tenant/dspans".to_string(),
        "/tenant/dspans/a".to_string(),
        "/tenant/dspans/a/b".to_string(),
        format!("/tenant/dspans{seq}"),
        "/tenant/dspans/a/eph".to_string(),
        "/tenant/dspans/a/multi".to_string(),
    ];
    for node in &nodes {
        let (acls, _) = reader.get_acl(node).await.expect("get_acl");
        assert_eq!(acls.len(), 1, "{node}: {acls:?}");
        let acl = &acls[0];
        assert_eq!(acl.scheme(), "digest", "{node}: {acls:?}");
        assert!(acl.id().starts_with("alice:"), "{node}: {acls:?}");
        assert_eq!(acl.permission(), zk::Permission::ALL, "{node}: {acls:?}");
    }

    // Someone else gets nothing, not even the list of children.
    let bob = zk::Client::connector()
        .with_auth("digest", b"bob:other")
        .connect(&server.hosts)
        .await
        .expect("raw client as bob");
    let refused = bob.list_children("/tenant/dspans/a").await;
    assert!(matches!(refused, Err(zk::Error::NoAuth)), "{refused:?}");
    store.close().await.expect("close");
}

/// A store that talks to another machine without authentication says so
/// when it starts: its nodes are open to anyone who reaches the servers.
#[tokio::test]
async fn remote_server_without_auth_is_warned_about() {
    let logs = Logs::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .finish();
    let _default = tracing::subscriber::set_default(subscriber);

    // Nothing answers there; the warning comes before connecting.
    let remote = StoreConfig::zookeeper("192.0.2.1:2181").with_session_timeout_ms(1_000);
    assert!(open(&remote).await.is_err());
    let text = logs.text();
    assert!(
        text.contains("WARN") && text.contains("without digest authentication"),
        "{text}"
    );

    let authenticated = StoreConfig {
        digest_user: Some("u".into()),
        digest_password: Some("p".into()),
        ..remote.clone()
    };
    let before = logs.text().len();
    assert!(open(&authenticated).await.is_err());
    assert!(!logs.text()[before..].contains("without digest authentication"));
}

/// Log output kept in memory.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);

impl Logs {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Logs {
    type Writer = Logs;

    fn make_writer(&'a self) -> Logs {
        self.clone()
    }
}
