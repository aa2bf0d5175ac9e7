//! `tls = true` without `tls_ca` trusts the system's CA certificates, as
//! rustls-native-certs finds them (here: `SSL_CERT_FILE`), against a real
//! ZooKeeper server serving TLS. It used to trust no CA at all, so every
//! connection was refused.

use std::path::Path;
use std::process::{Command, Output};

use dspans_test_support::{Ca, TlsZkServer};

use crate::support::DSPANS;

/// `dspans status` against the TLS port with `tls = true` and no
/// `tls_ca`, the system's CAs read from `ca_file`.
fn status_trusting(tls: &TlsZkServer, config: &Path, ca_file: &Path) -> Output {
    Command::new(DSPANS)
        .args(["status", "--config"])
        .arg(config)
        .env("SSL_CERT_FILE", ca_file)
        .env_remove("SSL_CERT_DIR")
        .output()
        .unwrap_or_else(|e| panic!("cannot run dspans against {}: {e}", tls.tls_hosts))
}

#[test]
fn tls_without_a_ca_file_trusts_the_systems_cas() {
    let tls = TlsZkServer::start();
    let config = tls.write(
        "dspans.toml",
        &format!(
            "[store]\nbackend = \"zookeeper\"\nhosts = \"{}\"\ntls = true\nsession_timeout_ms = 2000\n",
            tls.tls_hosts
        ),
    );
    let system_cas = tls.write("system-cas.pem", &tls.ca.pem());
    let out = status_trusting(&tls, &config, &system_cas);
    assert!(
        out.status.success(),
        "status over TLS with the server's CA among the system's: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A system that trusts another CA refuses the server: exit 1 with the
    // address, no panic.
    let stranger = tls.write("stranger.pem", &Ca::new("another CA").pem());
    let out = status_trusting(&tls, &config, &stranger);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&tls.tls_hosts), "{stderr}");
}
