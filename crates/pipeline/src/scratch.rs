//! Scratch directories of executors and mergers.
//!
//! A worker deletes its scratch directory when the job is done, but one
//! killed with SIGKILL cannot: its directories would pile up in the
//! temporary directory. Each name therefore carries the owning process id
//! (`dspans-<kind>-<pid>-<random>`), and a worker starting up deletes those
//! of processes that no longer run.

use std::io;
use std::path::Path;

/// A new scratch directory `dspans-<kind>-<pid>-<random>` in the temporary
/// directory, deleted when the returned value is dropped.
pub(crate) fn create(kind: &str) -> io::Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix(&format!("dspans-{kind}-{}-", std::process::id()))
        .tempdir()
}

/// Deletes the scratch directories of `kind` left in the temporary
/// directory by processes that are gone; returns how many it deleted.
/// Directories it cannot judge (names without a process id, as older
/// versions wrote them) are left alone.
pub(crate) fn remove_abandoned(kind: &str) -> usize {
    remove_abandoned_in(&std::env::temp_dir(), kind, process_running)
}

fn remove_abandoned_in(dir: &Path, kind: &str, running: impl Fn(u32) -> bool) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let prefix = format!("dspans-{kind}-");
    let mut removed = 0;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(&prefix)) else {
            continue;
        };
        let Some(pid) = rest
            .split_once('-')
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() || running(pid) {
            continue;
        }
        match std::fs::remove_dir_all(entry.path()) {
            Ok(()) => removed += 1,
            Err(error) => tracing::debug!(path = %entry.path().display(), %error,
                "abandoned scratch directory not deleted"),
        }
    }
    if removed > 0 {
        tracing::info!(
            directories = removed,
            kind,
            "deleted scratch directories of processes that are gone"
        );
    }
    removed
}

/// Whether a process with this id runs. Where that cannot be told (no
/// `/proc`), every process counts as running, so nothing is deleted.
fn process_running(pid: u32) -> bool {
    let proc = Path::new("/proc");
    !proc.is_dir() || proc.join(pid.to_string()).exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_directories_of_dead_processes_are_deleted() {
        let tmp = tempfile::tempdir().unwrap();
        let me = std::process::id();
        for name in [
            "dspans-build-111-aaaa".to_string(), // dead
            "dspans-build-222-bbbb".to_string(), // running
            format!("dspans-build-{me}-cccc"),   // this process
            "dspans-build-dddd".to_string(),     // older name, no pid
            "dspans-merge-111-eeee".to_string(), // other kind
            "unrelated-111-ffff".to_string(),
        ] {
            std::fs::create_dir_all(tmp.path().join(&name).join("work")).unwrap();
        }
        let removed = remove_abandoned_in(tmp.path(), "build", |pid| pid == 222);
        assert_eq!(removed, 1);
        let mut left: Vec<String> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        let mut expected = vec![
            "dspans-build-222-bbbb".to_string(),
            format!("dspans-build-{me}-cccc"),
            "dspans-build-dddd".to_string(),
            "dspans-merge-111-eeee".to_string(),
            "unrelated-111-ffff".to_string(),
        ];
        expected.sort();
        assert_eq!(left, expected);
    }

    #[test]
    fn a_new_directory_names_this_process() {
        let dir = create("build").unwrap();
        let name = dir
            .path()
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        assert!(
            name.starts_with(&format!("dspans-build-{}-", std::process::id())),
            "{name}"
        );
        assert!(process_running(std::process::id()));
    }
}
