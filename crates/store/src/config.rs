//! The `[store]` table of the project's TOML configuration.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, StoreError};

/// Which backend a [`StoreConfig`] selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    /// Embedded SQLite file, shared by the processes of one machine.
    #[default]
    Sqlite,
    /// A ZooKeeper ensemble.
    Zookeeper,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Sqlite => "sqlite",
            Backend::Zookeeper => "zookeeper",
        })
    }
}

impl std::str::FromStr for Backend {
    type Err = StoreError;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "sqlite" => Ok(Backend::Sqlite),
            "zookeeper" | "zk" => Ok(Backend::Zookeeper),
            other => Err(StoreError::Config(format!(
                "unknown backend {other:?} (expected \"sqlite\" or \"zookeeper\")"
            ))),
        }
    }
}

/// The `[store]` section of the configuration file.
///
/// ```
/// let cfg: dspans_store::StoreConfig = toml::from_str(r#"
///     backend = "zookeeper"
///     hosts = "zk1:2181,zk2:2181"
///     chroot = "/dspans"
///     session_timeout_ms = 6000
/// "#).unwrap();
/// assert_eq!(cfg.backend, dspans_store::Backend::Zookeeper);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// `"sqlite"` (default) or `"zookeeper"`.
    pub backend: Backend,
    /// SQLite: the database file. Default `state/dspans.db`. It is
    /// created only by [`crate::init`] / [`crate::create`] (`dspans store
    /// init`); opening a missing, empty or foreign file is an error.
    pub path: PathBuf,
    /// SQLite: permission bits of the database file (and of its `-wal`
    /// and `-shm` files, which SQLite gives the same) when
    /// [`crate::init`] creates it; a directory it creates gets the same
    /// bits plus search (`x`) where they grant read. Default `0o600`
    /// (directory `0o700`): the store holds span data, readable by its
    /// owner only. In TOML: `file_mode = 0o640`.
    pub file_mode: u32,
    /// ZooKeeper: comma-separated `host:port` list. Default `127.0.0.1:2181`.
    pub hosts: String,
    /// ZooKeeper: a node under which every path of this store lives (created
    /// when missing), e.g. `/dspans`.
    pub chroot: Option<String>,
    /// Session timeout: after this long without contact, the session expires
    /// and its ephemeral nodes and locks are gone. Default 10000. ZooKeeper
    /// may negotiate it into the server's min/max bounds.
    pub session_timeout_ms: u64,
    /// SQLite: how often changes are polled for notifications and expired
    /// leases are reaped. Default 20 ms.
    pub poll_interval_ms: u64,
    /// SQLite: how long a writer waits for another process's lock on the
    /// file before failing. Default 10000.
    pub busy_timeout_ms: u64,
    /// ZooKeeper: connect with TLS (implied by `tls_ca`). Without `tls_ca`,
    /// the system's CA certificates are trusted (`SSL_CERT_FILE` and
    /// `SSL_CERT_DIR` override where they are read). Default off.
    pub tls: bool,
    /// ZooKeeper: PEM file with the CA certificate(s) that sign the server.
    pub tls_ca: Option<PathBuf>,
    /// ZooKeeper: PEM client certificate, for servers requiring client auth.
    pub tls_cert: Option<PathBuf>,
    /// ZooKeeper: PEM private key of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// ZooKeeper: digest authentication user. Nodes are then created with
    /// the `creator_all` ACL: only sessions authenticated as the same user
    /// can read or change them.
    pub digest_user: Option<String>,
    /// ZooKeeper: digest authentication password.
    pub digest_password: Option<String>,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            backend: Backend::Sqlite,
            path: PathBuf::from("state/dspans.db"),
            file_mode: 0o600,
            hosts: "127.0.0.1:2181".to_string(),
            chroot: None,
            session_timeout_ms: 10_000,
            poll_interval_ms: 20,
            busy_timeout_ms: 10_000,
            tls: false,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            digest_user: None,
            digest_password: None,
        }
    }
}

impl StoreConfig {
    /// A SQLite configuration for `path`, other options default.
    pub fn sqlite(path: impl Into<PathBuf>) -> Self {
        StoreConfig {
            backend: Backend::Sqlite,
            path: path.into(),
            ..Default::default()
        }
    }

    /// A ZooKeeper configuration for `hosts`, other options default.
    pub fn zookeeper(hosts: impl Into<String>) -> Self {
        StoreConfig {
            backend: Backend::Zookeeper,
            hosts: hosts.into(),
            ..Default::default()
        }
    }

    /// Sets the session timeout.
    pub fn with_session_timeout_ms(mut self, ms: u64) -> Self {
        self.session_timeout_ms = ms;
        self
    }

    /// Sets the ZooKeeper chroot.
    pub fn with_chroot(mut self, chroot: impl Into<String>) -> Self {
        self.chroot = Some(chroot.into());
        self
    }

    /// Parses the `[store]` table out of a whole configuration document
    /// (other tables are ignored). A missing table gives the defaults.
    pub fn from_toml_document(text: &str) -> Result<Self> {
        let doc: toml::Table =
            toml::from_str(text).map_err(|e| StoreError::Config(format!("invalid TOML: {e}")))?;
        match doc.get("store") {
            None => Ok(StoreConfig::default()),
            Some(value) => value
                .clone()
                .try_into()
                .map_err(|e| StoreError::Config(format!("[store]: {e}"))),
        }
    }

    /// Reads the `[store]` table of a configuration file and makes relative
    /// file paths (`path`, TLS files) relative to the file's directory.
    pub fn from_config_file(file: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(file)
            .map_err(|e| StoreError::Config(format!("cannot read {}: {e}", file.display())))?;
        let cfg = Self::from_toml_document(&text)?;
        let base = file.parent().unwrap_or_else(|| Path::new("."));
        Ok(cfg.relative_to(base))
    }

    /// Makes relative file paths relative to `base`.
    pub fn relative_to(mut self, base: &Path) -> Self {
        let fix = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.path);
        for p in [&mut self.tls_ca, &mut self.tls_cert, &mut self.tls_key]
            .into_iter()
            .flatten()
        {
            fix(p);
        }
        self
    }

    /// The permission bits of a directory [`crate::init`] creates for the
    /// SQLite file: `file_mode` plus search (`x`) wherever it grants read
    /// (`0o600` → `0o700`, `0o640` → `0o750`).
    pub fn dir_mode(&self) -> u32 {
        self.file_mode | 0o100 | ((self.file_mode & 0o044) >> 2)
    }

    /// Checks option combinations without connecting.
    pub fn validate(&self) -> Result<()> {
        if self.session_timeout_ms == 0 {
            return Err(StoreError::Config("session_timeout_ms must be > 0".into()));
        }
        if self.poll_interval_ms == 0 {
            return Err(StoreError::Config("poll_interval_ms must be > 0".into()));
        }
        if self.digest_user.is_some() != self.digest_password.is_some() {
            return Err(StoreError::Config(
                "digest_user and digest_password go together".into(),
            ));
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(StoreError::Config(
                "tls_cert and tls_key go together".into(),
            ));
        }
        if self.file_mode & !0o777 != 0 || self.file_mode & 0o600 != 0o600 {
            return Err(StoreError::Config(format!(
                "file_mode {:#o}: expected permission bits (at most 0o777) that let the owner read and write",
                self.file_mode
            )));
        }
        if let Some(chroot) = &self.chroot {
            crate::path::validate_path(chroot)
                .map_err(|e| StoreError::Config(format!("chroot: {e}")))?;
        }
        if self.backend == Backend::Zookeeper && self.hosts.trim().is_empty() {
            return Err(StoreError::Config("hosts is empty".into()));
        }
        Ok(())
    }
}
