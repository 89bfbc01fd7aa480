//! The one error callers must tell apart: a database that cannot be opened.
//!
//! Everything else is an `anyhow::Error` with context; this type exists so a
//! command can `downcast_ref::<DbOpenError>()` and exit with code 2 after
//! printing a message that already says what to do.

use std::fmt;
use std::path::{Path, PathBuf};

/// The build database exists but cannot be used by this binary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbOpenError {
    pub path: PathBuf,
    pub problem: DbOpenProblem,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbOpenProblem {
    /// Not an SQLite database, or `PRAGMA quick_check` found damage.
    Corrupt { detail: String },
    /// Written by a newer portsynth whose schema this binary does not know.
    TooNew { found: u32, known: u32 },
}

impl DbOpenError {
    pub(crate) fn corrupt(path: &Path, detail: impl Into<String>) -> Self {
        DbOpenError { path: path.to_path_buf(), problem: DbOpenProblem::Corrupt { detail: detail.into() } }
    }

    pub(crate) fn too_new(path: &Path, found: u32, known: u32) -> Self {
        DbOpenError { path: path.to_path_buf(), problem: DbOpenProblem::TooNew { found, known } }
    }
}

impl fmt::Display for DbOpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let path = self.path.display();
        match &self.problem {
            DbOpenProblem::Corrupt { detail } => write!(
                f,
                "{path}: the build database is corrupt or unreadable ({detail}); remove it with 'portsynth reset-db'"
            ),
            DbOpenProblem::TooNew { found, known } => write!(
                f,
                "{path}: the build database was written by a newer portsynth (schema {found}, this binary knows \
                 {known}); upgrade portsynth or remove it with 'portsynth reset-db'"
            ),
        }
    }
}

impl std::error::Error for DbOpenError {}
