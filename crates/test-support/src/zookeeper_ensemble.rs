//! A three-server ZooKeeper ensemble on 127.0.0.1, as production runs
//! ZooKeeper: `scripts/zookeeper.sh start --server-id N --quorum …` per
//! member.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::{ZkServer, free_port};

/// Members of an ensemble.
const MEMBERS: usize = 3;

/// A ZooKeeper ensemble of three servers, each killed when dropped.
///
/// ```no_run
/// let ensemble = dspans_test_support::ZkEnsemble::start();
/// let leader = ensemble.leader();
/// ensemble.members[leader].kill();
/// ensemble.members[leader].run("start"); // back, its data intact
/// ```
pub struct ZkEnsemble {
    /// The members; `members[i]` is server `i + 1`.
    pub members: Vec<ZkServer>,
}

impl ZkEnsemble {
    /// Starts three members and waits until one of them leads.
    pub fn start() -> ZkEnsemble {
        let quorum: Vec<String> = (0..MEMBERS)
            .map(|_| format!("{}:{}", free_port(), free_port()))
            .collect();
        let members: Vec<ZkServer> = (0..MEMBERS)
            .map(|i| {
                let dir = tempfile::Builder::new()
                    .prefix("dspans-zk-ensemble-")
                    .tempdir()
                    .expect("cannot create a temporary directory");
                ZkServer {
                    hosts: String::new(),
                    port: free_port(),
                    dir,
                    start_args: vec![
                        "--server-id".into(),
                        (i + 1).to_string(),
                        "--quorum".into(),
                        quorum.join(","),
                    ],
                }
            })
            .collect();
        let mut ensemble = ZkEnsemble { members };
        for member in &mut ensemble.members {
            member.hosts = member.run("start");
        }
        ensemble.leader();
        ensemble
    }

    /// The connection string naming every member.
    pub fn hosts(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The index of the member that leads, once one does (waits up to
    /// 60 s: an election takes a few seconds).
    pub fn leader(&self) -> usize {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(i) =
                (0..self.members.len()).find(|&i| self.mode(i).as_deref() == Some("leader"))
            {
                return i;
            }
            assert!(Instant::now() < deadline, "no member of the ensemble leads");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What member `i` says it is (`leader`, `follower`), if it answers.
    pub fn mode(&self, i: usize) -> Option<String> {
        let mut stream = TcpStream::connect(("127.0.0.1", self.members[i].port)).ok()?;
        stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        stream.write_all(b"srvr").ok()?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).ok()?;
        answer
            .lines()
            .find_map(|l| l.strip_prefix("Mode: "))
            .map(str::to_string)
    }
}
