//! ZooKeeper-style path helpers: `/a/b/c`.

use crate::error::{Result, StoreError};

/// Checks that `path` is absolute, has no empty, `.` or `..` segment, no
/// trailing slash (except the root `/`) and no control character.
///
/// ```
/// assert!(dspans_store::validate_path("/a/b").is_ok());
/// assert!(dspans_store::validate_path("a/b").is_err());
/// assert!(dspans_store::validate_path("/a//b").is_err());
/// ```
pub fn validate_path(path: &str) -> Result<()> {
    let bad = |reason| {
        Err(StoreError::InvalidPath {
            path: path.to_string(),
            reason,
        })
    };
    if !path.starts_with('/') {
        return bad("must start with '/'");
    }
    if path == "/" {
        return Ok(());
    }
    if path.ends_with('/') {
        return bad("must not end with '/'");
    }
    if path.chars().any(|c| c.is_control()) {
        return bad("must not contain control characters");
    }
    for segment in path[1..].split('/') {
        match segment {
            "" => return bad("empty segment"),
            "." | ".." => return bad("'.' and '..' are not allowed"),
            _ => {}
        }
    }
    Ok(())
}

/// The parent of a path; `None` for the root.
///
/// ```
/// assert_eq!(dspans_store::parent_path("/a/b"), Some("/a"));
/// assert_eq!(dspans_store::parent_path("/a"), Some("/"));
/// assert_eq!(dspans_store::parent_path("/"), None);
/// ```
pub fn parent_path(path: &str) -> Option<&str> {
    if path == "/" {
        return None;
    }
    match path.rfind('/') {
        Some(0) => Some("/"),
        Some(i) => Some(&path[..i]),
        None => None,
    }
}

/// The last segment of a path (`""` for the root).
pub fn node_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or("")
}

/// Joins a parent path and a child name.
///
/// ```
/// assert_eq!(dspans_store::join_path("/", "a"), "/a");
/// assert_eq!(dspans_store::join_path("/a", "b"), "/a/b");
/// ```
pub fn join_path(parent: &str, child: &str) -> String {
    if parent == "/" {
        format!("/{child}")
    } else {
        format!("{parent}/{child}")
    }
}

/// Formats a sequence number the way ZooKeeper does (10 digits, zero padded).
pub(crate) fn sequence_suffix(seq: i64) -> String {
    if seq <= i64::from(i32::MAX) {
        format!("{seq:010}")
    } else {
        format!("{seq:019}")
    }
}

/// Parses the sequence number at the end of a sequential node name.
///
/// ```
/// assert_eq!(dspans_store::sequence_of("event-0000000042"), Some(42));
/// assert_eq!(dspans_store::sequence_of("lock"), None);
/// ```
pub fn sequence_of(name: &str) -> Option<i64> {
    let digits = name.len() - name.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    if digits < 10 {
        return None;
    }
    name[name.len() - digits..].parse().ok()
}

pub(crate) fn check_size(path: &str, data: &[u8]) -> Result<()> {
    if data.len() > crate::MAX_VALUE_SIZE {
        return Err(StoreError::TooLarge {
            path: path.to_string(),
            size: data.len(),
            limit: crate::MAX_VALUE_SIZE,
        });
    }
    Ok(())
}
