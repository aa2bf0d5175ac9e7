//! [`ConfigError`]: what is wrong with a configuration file, and where.

use std::fmt;
use std::path::{Path, PathBuf};

/// A line and column in the file, both starting at 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Line number.
    pub line: usize,
    /// Column, in characters.
    pub column: usize,
}

impl Position {
    /// The position of byte `offset` in `text`.
    pub fn of(text: &str, offset: usize) -> Position {
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
        let before = &text[..offset];
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        Position {
            line: before.matches('\n').count() + 1,
            column: before[line_start..].chars().count() + 1,
        }
    }
}

impl fmt::Display for Position {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// Where an error is: `FILE:LINE:COL`, with `<config>` for text that came
/// from no file.
struct Location<'a>(&'a Option<PathBuf>, &'a Option<Position>);

impl fmt::Display for Location<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(file) => write!(f, "{}", file.display())?,
            None => f.write_str("<config>")?,
        }
        if let Some(pos) = self.1 {
            write!(f, ":{pos}")?;
        }
        Ok(())
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {}: {cause}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error (in the message, so not chained a second time).
        cause: std::io::Error,
    },
    /// The text is not valid TOML.
    #[error("{}: invalid TOML: {reason}", Location(file, position))]
    Syntax {
        /// The file, when the text came from one.
        file: Option<PathBuf>,
        /// Where, when known.
        position: Option<Position>,
        /// What is wrong.
        reason: String,
    },
    /// A key is unknown, has a value of the wrong type, or breaks a rule
    /// (duplicate name, unknown pipeline or job, empty command, …).
    #[error("{}: `{key}`: {reason}", Location(file, position))]
    Invalid {
        /// The file, when the text came from one.
        file: Option<PathBuf>,
        /// Key path, e.g. `pipeline[1].manager` or `project[0].gate[2]`.
        key: String,
        /// Where, when known.
        position: Option<Position>,
        /// What is wrong.
        reason: String,
    },
}

impl ConfigError {
    /// Converts a toml error; `key` is the path of the value being read
    /// (`None` for a syntax error).
    pub(crate) fn from_toml(
        file: Option<&Path>,
        text: &str,
        key: Option<String>,
        error: &toml::de::Error,
    ) -> ConfigError {
        let file = file.map(Path::to_path_buf);
        let position = error.span().map(|span| Position::of(text, span.start));
        let reason = error.message().trim().to_string();
        match key {
            None => ConfigError::Syntax {
                file,
                position,
                reason,
            },
            Some(key) => ConfigError::Invalid {
                file,
                key,
                position,
                reason,
            },
        }
    }

    /// The key path the error is about, when there is one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }

    /// The reason, without the location.
    pub fn reason(&self) -> String {
        match self {
            ConfigError::Read { cause, .. } => cause.to_string(),
            ConfigError::Syntax { reason, .. } | ConfigError::Invalid { reason, .. } => {
                reason.clone()
            }
        }
    }

    /// Line and column, when known.
    pub fn position(&self) -> Option<Position> {
        match self {
            ConfigError::Read { .. } => None,
            ConfigError::Syntax { position, .. } | ConfigError::Invalid { position, .. } => {
                *position
            }
        }
    }
}
