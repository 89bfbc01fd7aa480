//! The [`BuildDb`] handle: opening, resetting, and helpers shared by the
//! run, build and scan-cache operations (in `runs.rs`, `builds.rs`,
//! `scan_cache.rs`).
//!
//! A `BuildDb` owns one connection and is `Send` but not `Sync`: give each
//! thread or process its own handle (WAL lets them work side by side) or put
//! one behind a mutex.

use std::ffi::OsString;
use std::fmt::Display;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use rusqlite::{Connection, OpenFlags, Transaction, TransactionBehavior};

use super::schema::{self, MIGRATIONS};

/// An open, integrity-checked, migrated build database.
pub struct BuildDb {
    pub(super) conn: Connection,
    pub(super) path: PathBuf,
}

impl BuildDb {
    /// Opens the database at `path`, creating it (and its directory) if missing.
    ///
    /// An existing file that is damaged or from a newer portsynth yields a
    /// [`DbOpenError`](super::DbOpenError) and is left untouched.
    pub fn open(path: impl AsRef<Path>) -> Result<BuildDb> {
        Self::open_with(path.as_ref(), MIGRATIONS)
    }

    /// Opens the database only if the file exists, for commands that only read.
    pub fn open_existing(path: impl AsRef<Path>) -> Result<Option<BuildDb>> {
        let path = path.as_ref();
        let exists =
            path.try_exists().with_context(|| format!("{}: checking for the build database", path.display()))?;
        if !exists {
            return Ok(None);
        }
        Self::connect(path, OpenFlags::SQLITE_OPEN_READ_WRITE, MIGRATIONS).map(Some)
    }

    /// The file this handle is connected to.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// [`open`](Self::open) with an explicit migration list (tests build older schemas with it).
    pub(super) fn open_with(path: &Path, migrations: &[&str]) -> Result<BuildDb> {
        create_parent_dir(path)?;
        Self::connect(path, OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_CREATE, migrations)
    }

    fn connect(path: &Path, access: OpenFlags, migrations: &[&str]) -> Result<BuildDb> {
        let flags = access | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
        let conn = Connection::open_with_flags(path, flags)
            .with_context(|| format!("{}: cannot open the build database", path.display()))?;
        schema::prepare(&conn, path, migrations)?;
        Ok(BuildDb { conn, path: path.to_path_buf() })
    }

    /// "`<database file>`: `<what>`", the context of every error.
    pub(super) fn at(&self, what: impl Display) -> String {
        format!("{}: {what}", self.path.display())
    }

    /// A transaction holding the write lock from its first statement, so the
    /// busy timeout applies and its reads cannot go stale before its writes.
    pub(super) fn write_tx(&self) -> Result<Transaction<'_>> {
        Transaction::new_unchecked(&self.conn, TransactionBehavior::Immediate)
            .with_context(|| self.at("locking the build database for writing"))
    }
}

fn create_parent_dir(path: &Path) -> Result<()> {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => std::fs::create_dir_all(dir)
            .with_context(|| format!("{}: creating the directory for the build database", path.display())),
        _ => Ok(()),
    }
}

/// Removes the database file and its `-wal` and `-shm` companions; returns
/// whether the database file existed. Only for when no portsynth is using it.
pub fn reset(path: impl AsRef<Path>) -> Result<bool> {
    let path = path.as_ref();
    let existed = remove_if_present(path)?;
    for suffix in ["-wal", "-shm"] {
        remove_if_present(&companion(path, suffix))?;
    }
    Ok(existed)
}

fn companion(path: &Path, suffix: &str) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(suffix);
    PathBuf::from(name)
}

fn remove_if_present(path: &Path) -> Result<bool> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("{}: cannot remove", path.display())),
    }
}

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> i64 {
    let since_epoch = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

/// A `LIMIT` value; SQLite takes signed integers.
pub(super) fn sql_limit(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// A stored duration or size, read back as unsigned (negative values, which
/// only a clock jump could produce, read as 0).
pub(super) fn unsigned(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}
