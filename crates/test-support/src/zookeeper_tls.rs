//! A real ZooKeeper server that also serves TLS, with certificates made by
//! the test (rcgen): its own certificate authority, a server certificate
//! for 127.0.0.1 and client certificates on demand.

use std::path::{Path, PathBuf};
use std::process::Command;

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};

use crate::{ZkServer, free_port, zookeeper_script};

/// A certificate authority of the test's own.
pub struct Ca {
    cert: Certificate,
    key: KeyPair,
}

impl Ca {
    /// A new self-signed CA named `name`.
    pub fn new(name: &str) -> Ca {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).expect("CA certificate");
        Ca { cert, key }
    }

    /// The CA's certificate as PEM, what a client trusts.
    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A certificate for 127.0.0.1 and localhost for `usage`, as PEM
    /// (certificate, private key).
    pub fn issue(&self, name: &str, usage: ExtendedKeyUsagePurpose) -> (String, String) {
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
/// `want`), signed by its own [`Ca`]; stopped when dropped.
///
/// ```no_run
/// let tls = dspans_test_support::TlsZkServer::start();
/// let ca_file = tls.write("ca.pem", &tls.ca.pem());
/// // [store] hosts = tls.tls_hosts, tls_ca = ca_file
/// ```
pub struct TlsZkServer {
    /// The server; `server.hosts` is its plain port.
    pub server: ZkServer,
    /// `127.0.0.1:PORT` of the TLS port.
    pub tls_hosts: String,
    /// The CA that signed the server's certificate.
    pub ca: Ca,
    certs: tempfile::TempDir,
}

impl TlsZkServer {
    /// Starts a server with a TLS port; panics with the script's output
    /// when it cannot.
    pub fn start() -> TlsZkServer {
        let ca = Ca::new("dspans test CA");
        let certs = tempfile::tempdir().expect("tempdir");
        let (cert, key) = ca.issue("zookeeper", ExtendedKeyUsagePurpose::ServerAuth);
        write(&certs.path().join("server.pem"), &format!("{key}{cert}"));
        write(&certs.path().join("ca.pem"), &ca.pem());
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
            start_args: Vec::new(),
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
        TlsZkServer {
            server,
            tls_hosts,
            ca,
            certs,
        }
    }

    /// Writes `text` to a file of this server's certificate directory and
    /// gives its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.certs.path().join(name);
        write(&path, text);
        path
    }

    /// A client certificate of this server's CA, written to files:
    /// (certificate, key).
    pub fn client_certificate(&self) -> (PathBuf, PathBuf) {
        let (cert, key) = self
            .ca
            .issue("dspans-client", ExtendedKeyUsagePurpose::ClientAuth);
        (
            self.write("client.pem", &cert),
            self.write("client.key", &key),
        )
    }
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write");
}
