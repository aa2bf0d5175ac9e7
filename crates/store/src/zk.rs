//! ZooKeeper backend on `zookeeper-client`.
//!
//! Every [`ZkStore`] owns one ZooKeeper session. Node operations map one to
//! one onto ZooKeeper requests; notifications use persistent watches
//! (ZooKeeper 3.6+), which the client re-registers after a reconnect.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::watch;
use zookeeper_client as zk;

use crate::config::StoreConfig;
use crate::error::{Result, StoreError};
use crate::path::{check_size, parent_path, validate_path};
use crate::store::Store;
use crate::types::{
    CreateMode, EventKind, Node, Op, OpResult, SessionState, Stat, Watch, WatchEvent,
};

/// The ZooKeeper implementation of [`Store`]. Build it with [`crate::open`]
/// or [`ZkStore::open`].
#[derive(Debug)]
pub struct ZkStore {
    /// `None` once closed; dropping the last clone closes the session.
    client: std::sync::RwLock<Option<zk::Client>>,
    session_id: i64,
    acls: zk::Acls<'static>,
    state: Arc<watch::Sender<SessionState>>,
    hosts: String,
}

fn map_state(s: zk::SessionState) -> SessionState {
    match s {
        zk::SessionState::SyncConnected | zk::SessionState::ConnectedReadOnly => {
            SessionState::Connected
        }
        zk::SessionState::Disconnected => SessionState::Disconnected,
        zk::SessionState::Expired | zk::SessionState::AuthFailed => SessionState::Expired,
        zk::SessionState::Closed => SessionState::Closed,
    }
}

/// Maps a client error for an operation on `path`.
fn map_err(err: zk::Error, path: &str) -> StoreError {
    match err {
        zk::Error::NoNode => StoreError::NoNode { path: path.into() },
        zk::Error::NodeExists => StoreError::NodeExists { path: path.into() },
        zk::Error::NotEmpty => StoreError::NotEmpty { path: path.into() },
        zk::Error::NoChildrenForEphemerals => {
            StoreError::NoChildrenForEphemerals { path: path.into() }
        }
        zk::Error::NoAuth => StoreError::NoAuth { path: path.into() },
        zk::Error::SessionExpired | zk::Error::ClientClosed | zk::Error::AuthFailed => {
            StoreError::SessionExpired
        }
        zk::Error::ConnectionLoss | zk::Error::Timeout => StoreError::ConnectionLoss,
        other => StoreError::Backend {
            backend: "zookeeper",
            message: format!("{other} (path {path})"),
        },
    }
}

fn bad_version(path: &str, expected: Option<i32>) -> impl Fn(zk::Error) -> StoreError + '_ {
    move |err| match err {
        zk::Error::BadVersion => StoreError::BadVersion {
            path: path.into(),
            expected: expected.unwrap_or(-1),
        },
        other => map_err(other, path),
    }
}

fn create_err(path: &str) -> impl Fn(zk::Error) -> StoreError + '_ {
    move |err| match err {
        // ZooKeeper reports a missing parent as NoNode on the new path.
        zk::Error::NoNode => StoreError::NoNode {
            path: parent_path(path).unwrap_or("/").into(),
        },
        other => map_err(other, path),
    }
}

fn map_stat(s: &zk::Stat) -> Stat {
    Stat {
        version: s.version,
        cversion: s.cversion,
        created_id: s.czxid,
        modified_id: s.mzxid,
        ctime_ms: s.ctime,
        mtime_ms: s.mtime,
        ephemeral: s.ephemeral_owner != 0,
        owner_session: s.ephemeral_owner,
        data_length: s.data_length.max(0) as usize,
        num_children: s.num_children.max(0) as usize,
    }
}

fn zk_mode(mode: CreateMode) -> zk::CreateMode {
    match mode {
        CreateMode::Persistent => zk::CreateMode::Persistent,
        CreateMode::Ephemeral => zk::CreateMode::Ephemeral,
        CreateMode::PersistentSequential => zk::CreateMode::PersistentSequential,
        CreateMode::EphemeralSequential => zk::CreateMode::EphemeralSequential,
    }
}

/// Whether every server of a connection string (`h1:2181,tcp+tls://h2:2182/chroot`)
/// is on this machine (`localhost` or a loopback address).
fn loopback_only(hosts: &str) -> bool {
    hosts.split(',').all(|entry| {
        let entry = entry.trim();
        let entry = entry.split_once("://").map_or(entry, |(_, rest)| rest);
        let entry = entry.split_once('/').map_or(entry, |(server, _)| server);
        let host = match entry.strip_prefix('[') {
            Some(v6) => v6.split_once(']').map_or(v6, |(ip, _)| ip),
            None => entry.rsplit_once(':').map_or(entry, |(host, _)| host),
        };
        host.eq_ignore_ascii_case("localhost")
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    })
}

impl ZkStore {
    /// Connects to `config.hosts` and establishes a session, creating the
    /// chroot node when configured and missing.
    pub async fn open(config: &StoreConfig) -> Result<ZkStore> {
        config.validate()?;
        if config.digest_user.is_none() && !loopback_only(&config.hosts) {
            tracing::warn!(
                hosts = %config.hosts,
                "ZooKeeper store on another machine without digest authentication: \
                 its nodes get the ACL world:anyone, so anyone who can reach the \
                 servers can read and change them; set digest_user and \
                 digest_password in [store]"
            );
        }
        let mut connector = zk::Client::connector()
            .with_session_timeout(Duration::from_millis(config.session_timeout_ms));
        let acls = match (&config.digest_user, &config.digest_password) {
            (Some(user), Some(password)) => {
                connector = connector.with_auth("digest", format!("{user}:{password}").as_bytes());
                zk::Acls::creator_all()
            }
            _ => zk::Acls::anyone_all(),
        };
        let connected = match crate::zk_tls::tls_options(config)? {
            Some(options) => {
                connector
                    .with_tls(options)
                    .secure_connect(&config.hosts)
                    .await
            }
            None => connector.connect(&config.hosts).await,
        };
        let mut client = connected.map_err(|e| StoreError::Backend {
            backend: "zookeeper",
            message: format!("cannot connect to {}: {e}", config.hosts),
        })?;
        if let Some(chroot) = config.chroot.as_deref().filter(|c| *c != "/") {
            let options = zk::CreateMode::Persistent.with_acls(acls);
            match client.mkdir(chroot, &options).await {
                Ok(()) | Err(zk::Error::NodeExists) => {}
                Err(err) => return Err(map_err(err, chroot)),
            }
            client = client
                .chroot(chroot)
                .map_err(|_| StoreError::Config(format!("invalid chroot {chroot:?}")))?;
        }
        let (tx, _) = watch::channel(SessionState::Connected);
        let state = Arc::new(tx);
        let mut watcher = client.state_watcher();
        let forward = state.clone();
        let session_id = client.session_id().0;
        tokio::spawn(async move {
            loop {
                let s = map_state(watcher.changed().await);
                tracing::info!(session = session_id, state = ?s, "zookeeper session state");
                forward.send_replace(s);
                if s.is_terminal() {
                    break;
                }
            }
        });
        tracing::debug!(hosts = %config.hosts, session = session_id, "zookeeper store opened");
        Ok(ZkStore {
            client: std::sync::RwLock::new(Some(client)),
            session_id,
            acls,
            state,
            hosts: config.hosts.clone(),
        })
    }

    /// The connection string this store was opened with.
    pub fn hosts(&self) -> &str {
        &self.hosts
    }

    fn client(&self) -> Result<zk::Client> {
        let guard = self.client.read().unwrap_or_else(|p| p.into_inner());
        guard.clone().ok_or(StoreError::SessionExpired)
    }

    fn options(&self, mode: CreateMode) -> zk::CreateOptions<'static> {
        zk_mode(mode).with_acls(self.acls)
    }

    async fn add_watch(&self, path: &str, children: bool) -> Result<Watch> {
        validate_path(path)?;
        let mut pw = self
            .client()?
            .watch(path, zk::AddWatchMode::Persistent)
            .await
            .map_err(|e| map_err(e, path))?;
        let (tx, watch) = Watch::channel();
        let p = path.to_string();
        tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    event = pw.changed() => event,
                    _ = tx.closed() => break,
                };
                let kind = match event.event_type {
                    zk::EventType::Session => {
                        if map_state(event.session_state).is_terminal() {
                            let _ = tx.try_send(WatchEvent {
                                kind: EventKind::SessionLost,
                                path: p.clone(),
                            });
                            break;
                        }
                        continue;
                    }
                    zk::EventType::NodeCreated => EventKind::Created,
                    zk::EventType::NodeDeleted => EventKind::Deleted,
                    zk::EventType::NodeDataChanged if !children => EventKind::DataChanged,
                    zk::EventType::NodeChildrenChanged if children => EventKind::ChildrenChanged,
                    _ => continue,
                };
                match tx.try_send(WatchEvent {
                    kind,
                    path: p.clone(),
                }) {
                    Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => break,
                    _ => continue,
                }
            }
        });
        Ok(watch)
    }
}

#[async_trait]
impl Store for ZkStore {
    fn backend(&self) -> &'static str {
        "zookeeper"
    }

    fn session_id(&self) -> i64 {
        self.session_id
    }

    fn session(&self) -> watch::Receiver<SessionState> {
        self.state.subscribe()
    }

    async fn create(&self, path: &str, data: &[u8], mode: CreateMode) -> Result<String> {
        validate_path(path)?;
        check_size(path, data)?;
        let client = self.client()?;
        let (_, seq) = client
            .create(path, data, &self.options(mode))
            .await
            .map_err(create_err(path))?;
        Ok(if mode.is_sequential() {
            format!("{path}{seq}")
        } else {
            path.to_string()
        })
    }

    async fn get(&self, path: &str) -> Result<Option<Node>> {
        validate_path(path)?;
        match self.client()?.get_data(path).await {
            Ok((data, stat)) => Ok(Some(Node {
                data,
                stat: map_stat(&stat),
            })),
            Err(zk::Error::NoNode) => Ok(None),
            Err(err) => Err(map_err(err, path)),
        }
    }

    async fn set(&self, path: &str, data: &[u8], expected_version: Option<i32>) -> Result<Stat> {
        validate_path(path)?;
        check_size(path, data)?;
        let stat = self
            .client()?
            .set_data(path, data, expected_version)
            .await
            .map_err(bad_version(path, expected_version))?;
        Ok(map_stat(&stat))
    }

    async fn delete(&self, path: &str, expected_version: Option<i32>) -> Result<()> {
        validate_path(path)?;
        self.client()?
            .delete(path, expected_version)
            .await
            .map_err(bad_version(path, expected_version))
    }

    async fn exists(&self, path: &str) -> Result<Option<Stat>> {
        validate_path(path)?;
        let stat = self
            .client()?
            .check_stat(path)
            .await
            .map_err(|e| map_err(e, path))?;
        Ok(stat.as_ref().map(map_stat))
    }

    async fn children(&self, path: &str) -> Result<Vec<String>> {
        validate_path(path)?;
        let mut names = self
            .client()?
            .list_children(path)
            .await
            .map_err(|e| map_err(e, path))?;
        names.sort();
        Ok(names)
    }

    async fn exists_all(&self, paths: &[String]) -> Result<Vec<bool>> {
        for path in paths {
            validate_path(path)?;
        }
        let client = self.client()?;
        let mut found = Vec::with_capacity(paths.len());
        // One multi-read per chunk; each read answers on its own, so a
        // missing node does not spoil the others.
        for chunk in paths.chunks(crate::store::EXISTS_ALL_CHUNK) {
            let mut reader = client.new_multi_reader();
            for path in chunk {
                reader
                    .add_get_children(path)
                    .map_err(|e| map_err(e, path))?;
            }
            let results = reader.commit().await.map_err(|e| map_err(e, &chunk[0]))?;
            if results.len() != chunk.len() {
                return Err(StoreError::Backend {
                    backend: "zookeeper",
                    message: format!(
                        "multi-read answered {} of {} reads",
                        results.len(),
                        chunk.len()
                    ),
                });
            }
            for (path, result) in chunk.iter().zip(results) {
                match result {
                    zk::MultiReadResult::Error {
                        err: zk::Error::NoNode,
                    } => found.push(false),
                    zk::MultiReadResult::Error { err } => return Err(map_err(err, path)),
                    _ => found.push(true),
                }
            }
        }
        Ok(found)
    }

    async fn multi(&self, ops: &[Op]) -> Result<Vec<OpResult>> {
        crate::check_multi(ops)?;
        let client = self.client()?;
        let mut writer = client.new_multi_writer();
        let fail = |index: usize, source: StoreError| StoreError::Multi {
            index,
            source: Box::new(source),
        };
        for (index, op) in ops.iter().enumerate() {
            let added = match op {
                Op::Check { path, version } => writer
                    .add_check_version(path, *version)
                    .map_err(|e| map_err(e, path)),
                Op::Create { path, data, mode } => writer
                    .add_create(path, data, &self.options(*mode))
                    .map_err(|e| map_err(e, path)),
                Op::Set {
                    path,
                    data,
                    version,
                } => writer
                    .add_set_data(path, data, *version)
                    .map_err(|e| map_err(e, path)),
                Op::Delete { path, version } => writer
                    .add_delete(path, *version)
                    .map_err(|e| map_err(e, path)),
            };
            added.map_err(|e| fail(index, e))?;
        }
        let results = match writer.commit().await {
            Ok(results) => results,
            Err(zk::MultiWriteError::OperationFailed { index, source }) => {
                let op = ops.get(index);
                let path = op.map(Op::path).unwrap_or("/");
                let err = match (op, source) {
                    (Some(Op::Check { version, .. }), zk::Error::BadVersion) => {
                        StoreError::BadVersion {
                            path: path.into(),
                            expected: *version,
                        }
                    }
                    (Some(Op::Set { version, .. }), e) | (Some(Op::Delete { version, .. }), e) => {
                        bad_version(path, *version)(e)
                    }
                    (Some(Op::Create { .. }), e) => create_err(path)(e),
                    (_, e) => map_err(e, path),
                };
                return Err(fail(index, err));
            }
            Err(zk::MultiWriteError::RequestFailed { source }) => {
                return Err(map_err(source, ops[0].path()))
            }
        };
        Ok(results
            .into_iter()
            .map(|r| match r {
                zk::MultiWriteResult::Check => OpResult::Checked,
                zk::MultiWriteResult::Delete => OpResult::Deleted,
                zk::MultiWriteResult::Create { path, .. } => OpResult::Created { path },
                zk::MultiWriteResult::SetData { stat } => OpResult::Set {
                    version: stat.version,
                },
                #[allow(unreachable_patterns)]
                _ => OpResult::Checked,
            })
            .collect())
    }

    async fn watch(&self, path: &str) -> Result<Watch> {
        self.add_watch(path, false).await
    }

    async fn watch_children(&self, path: &str) -> Result<Watch> {
        self.add_watch(path, true).await
    }

    async fn close(&self) -> Result<()> {
        // The session closes when the last clone of the client is dropped.
        let client = self
            .client
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        drop(client);
        self.state.send_replace(SessionState::Closed);
        Ok(())
    }
}

impl Drop for ZkStore {
    fn drop(&mut self) {
        self.state.send_replace(SessionState::Closed);
    }
}

#[cfg(test)]
mod tests {
    use super::loopback_only;

    #[test]
    fn loopback_only_reads_every_server_of_a_connection_string() {
        for local in [
            "127.0.0.1:2181",
            "localhost:2181,127.0.0.2:2182",
            "[::1]:2181",
            "tcp+tls://127.0.0.1:2182/dspans",
            "localhost",
        ] {
            assert!(loopback_only(local), "{local}");
        }
        for remote in [
            "zk1:2181",
            "127.0.0.1:2181,10.0.0.5:2181",
            "[2001:db8::1]:2181",
            "tcp://192.0.2.1:2181",
        ] {
            assert!(!loopback_only(remote), "{remote}");
        }
    }
}
