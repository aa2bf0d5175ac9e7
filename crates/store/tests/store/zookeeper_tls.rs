//! ZooKeeper over TLS against a real server that serves TLS
//! (`scripts/zookeeper.sh start --tls-port --tls-dir`), with certificates
//! made here by rcgen: connecting with the CA alone and with a client
//! certificate, refusing a server signed by another CA, and digest
//! authentication over TLS.

use std::path::Path;
use std::process::Command;

use dspans_store::{open, CreateMode, StoreConfig, StoreError};
use dspans_test_support::{free_port, zookeeper_script, ZkServer};
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};

/// A certificate authority of the test's own.
struct Ca {
    cert: Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).expect("CA certificate");
        Ca { cert, key }
    }

    /// A certificate for 127.0.0.1 and localhost with `usage`, as PEM
    /// (certificate, private key).
    fn issue(&self, name: &str, usage: ExtendedKeyUsagePurpose) -> (String, String) {
        let key = KeyPair::generate().expect("key");
        let mut params =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
                .expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.extended_key_usages = vec![usage];
        let cert = params
            .signed_by(&key, &self.cert, &self.key)
            .expect("certificate");
        (cert.pem(), key.serialize_pem())
    }
}

/// A ZooKeeper server with a TLS port (client certificates optional:
/// `want`), its CA, and the TLS address.
struct TlsServer {
    server: ZkServer,
    tls_hosts: String,
    ca: Ca,
    certs: tempfile::TempDir,
}

impl TlsServer {
    fn start() -> TlsServer {
        let ca = Ca::new("dspans test CA");
        let certs = tempfile::tempdir().expect("tempdir");
        let (cert, key) = ca.issue("zookeeper", ExtendedKeyUsagePurpose::ServerAuth);
        write(&certs.path().join("server.pem"), &format!("{key}{cert}"));
        write(&certs.path().join("ca.pem"), &ca.cert.pem());
        let dir = tempfile::Builder::new()
            .prefix("dspans-zk-tls-")
            .tempdir()
            .expect("tempdir");
        let (port, tls_port) = (free_port(), free_port());
        let out = Command::new("bash")
            .arg(zookeeper_script())
            .args(["start", "--port", &port.to_string(), "--dir"])
            .arg(dir.path())
            .args(["--tls-port", &tls_port.to_string(), "--tls-dir"])
            .arg(certs.path())
            .args(["--tls-client-auth", "want"])
            .output()
            .expect("cannot run scripts/zookeeper.sh");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        // Stopped when dropped, whatever the outcome.
        let server = ZkServer {
            hosts: format!("127.0.0.1:{port}"),
            port,
            dir,
        };
        assert!(
            out.status.success(),
            "scripts/zookeeper.sh start with TLS failed: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let tls_hosts = format!("127.0.0.1:{tls_port}");
        assert_eq!(
            stdout.lines().collect::<Vec<_>>(),
            [server.hosts.as_str(), tls_hosts.as_str()]
        );
        TlsServer {
            server,
            tls_hosts,
            ca,
            certs,
        }
    }

    /// A configuration for the TLS port trusting `ca_pem`, with a short
    /// session timeout so that a refused handshake fails fast.
    fn config(&self, ca_pem: &str, name: &str) -> StoreConfig {
        let ca = self.certs.path().join(format!("{name}-ca.pem"));
        write(&ca, ca_pem);
        let mut cfg = StoreConfig::zookeeper(&self.tls_hosts).with_session_timeout_ms(2_000);
        cfg.tls_ca = Some(ca);
        cfg
    }

    /// Adds a client certificate of this server's CA.
    fn with_client_certificate(&self, mut cfg: StoreConfig) -> StoreConfig {
        let (cert, key) = self
            .ca
            .issue("dspans-client", ExtendedKeyUsagePurpose::ClientAuth);
        let (cert_file, key_file) = (
            self.certs.path().join("client.pem"),
            self.certs.path().join("client.key"),
        );
        write(&cert_file, &cert);
        write(&key_file, &key);
        cfg.tls_cert = Some(cert_file);
        cfg.tls_key = Some(key_file);
        cfg
    }
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write");
}

/// Before the fix, every TLS connection panicked in rustls ("Could not
/// automatically determine the process-level CryptoProvider"): this
/// binary links rustls with both ring and aws-lc-rs, as `dspans` does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_connections_with_and_without_a_client_certificate() {
    let tls = TlsServer::start();

    let ca_only = tls.config(&tls.ca.cert.pem(), "trusted");
    let store = open(&ca_only).await.expect("TLS with the CA alone");
    store
        .create("/over-tls", b"encrypted", CreateMode::Persistent)
        .await
        .expect("create over TLS");

    let with_cert = tls.with_client_certificate(ca_only.clone());
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
    let distrustful = tls.config(&stranger.cert.pem(), "stranger");
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
    let tls = TlsServer::start();
    let mut cfg = tls
        .config(&tls.ca.cert.pem(), "trusted")
        .with_chroot("/dspans");
    cfg.digest_user = Some("dspans".into());
    cfg.digest_password = Some("s3cret".into());
    let store = open(&cfg).await.expect("TLS with digest auth");
    store
        .create_all("/pipelines/gate", b"{}")
        .await
        .expect("create");
    let anonymous = open(&tls.config(&tls.ca.cert.pem(), "anonymous"))
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
