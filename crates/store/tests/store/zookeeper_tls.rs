//! ZooKeeper over TLS against a real server that serves TLS
//! (`scripts/zookeeper.sh start --tls-port --tls-dir`), with certificates
//! made here by rcgen: connecting with the CA alone and with a client
//! certificate, refusing a server signed by another CA, and digest
//! authentication over TLS.

use dspans_store::{open, CreateMode, StoreConfig, StoreError};
use dspans_test_support::{Ca, TlsZkServer};

/// A configuration for the TLS port trusting `ca_pem`, with a short
/// session timeout so that a refused handshake fails fast.
fn config(tls: &TlsZkServer, ca_pem: &str, name: &str) -> StoreConfig {
    let mut cfg = StoreConfig::zookeeper(&tls.tls_hosts).with_session_timeout_ms(2_000);
    cfg.tls_ca = Some(tls.write(&format!("{name}-ca.pem"), ca_pem));
    cfg
}

/// Adds a client certificate of the server's CA.
fn with_client_certificate(tls: &TlsZkServer, mut cfg: StoreConfig) -> StoreConfig {
    let (cert, key) = tls.client_certificate();
    cfg.tls_cert = Some(cert);
    cfg.tls_key = Some(key);
    cfg
}

/// Before the fix, every TLS connection panicked in rustls ("Could not
/// automatically determine the process-level CryptoProvider"): this
/// binary links rustls with both ring and aws-lc-rs, as `dspans` does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_connections_with_and_without_a_client_certificate() {
    let tls = TlsZkServer::start();

    let ca_only = config(&tls, &tls.ca.pem(), "trusted");
    let store = open(&ca_only).await.expect("TLS with the CA alone");
    store
        .create("/over-tls", b"encrypted", CreateMode::Persistent)
        .await
        .expect("create over TLS");

    let with_cert = with_client_certificate(&tls, ca_only.clone());
    let other = open(&with_cert)
        .await
        .expect("TLS with a client certificate");
    let node = other
        .get("/over-tls")
        .await
        .expect("get over TLS")
        .expect("node written by the first client");
    assert_eq!(node.data, b"encrypted");

    // The same data through the plain port: one server.
    let plain = open(&StoreConfig::zookeeper(&tls.server.hosts))
        .await
        .expect("plain connection");
    assert!(plain.get("/over-tls").await.expect("get").is_some());

    // A client trusting another CA refuses the server: an error, no panic.
    let stranger = Ca::new("another CA");
    let distrustful = config(&tls, &stranger.pem(), "stranger");
    let err = open(&distrustful)
        .await
        .expect_err("connected to a server signed by an unknown CA");
    assert!(
        matches!(&err, StoreError::Backend { message, .. } if message.contains(&tls.tls_hosts)),
        "{err:?}"
    );
    for s in [store, other, plain] {
        s.close().await.expect("close");
    }
}

/// Digest authentication over TLS, as docs/store.md shows it: the nodes
/// are the user's alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_auth_over_tls() {
    let tls = TlsZkServer::start();
    let mut cfg = config(&tls, &tls.ca.pem(), "trusted").with_chroot("/dspans");
    cfg.digest_user = Some("dspans".into());
    cfg.digest_password = Some("s3cret".into());
    let store = open(&cfg).await.expect("TLS with digest auth");
    store
        .create_all("/pipelines/gate", b"{}")
        .await
        .expect("create");
    let anonymous = open(&config(&tls, &tls.ca.pem(), "anonymous"))
        .await
        .expect("anonymous TLS");
    assert!(
        matches!(
            anonymous.get("/dspans/pipelines/gate").await,
            Err(StoreError::NoAuth { .. })
        ),
        "an anonymous client read the user's node"
    );
    store.close().await.expect("close");
    anonymous.close().await.expect("close");
}
