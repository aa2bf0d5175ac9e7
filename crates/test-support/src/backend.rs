//! The coordination store a test case runs against.

use crate::ZkServer;

/// The store backend of a test case. Tests that hold for both run one body
/// per backend with `rstest`:
///
/// ```ignore
/// #[rstest]
/// #[case::sqlite(Backend::Sqlite)]
/// #[case::zookeeper(Backend::Zookeeper)]
/// fn handover(#[case] backend: Backend) { /* … */ }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// An embedded SQLite database file.
    Sqlite,
    /// A real ZooKeeper server of the test's own.
    Zookeeper,
}

impl Backend {
    /// The server the backend needs, started here (stopped when dropped):
    /// a [`ZkServer`] for ZooKeeper, nothing for SQLite.
    pub fn server(self) -> Option<ZkServer> {
        match self {
            Backend::Sqlite => None,
            Backend::Zookeeper => Some(ZkServer::start()),
        }
    }
}
