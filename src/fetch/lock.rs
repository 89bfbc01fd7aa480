//! The per-distfile lock, main-process side.
//!
//! The framework's `fetch.sh` holds an exclusive `flock` on
//! `distfiles_dir/.locks/<key>.lock` while it downloads `<key>` (inside a
//! sandbox the same file is reached through the `/distfiles` bind, and a
//! flock belongs to the inode, so both sides see one lock). The main
//! process takes the same lock before it deletes anything in the cache: a
//! corrupt distfile found by the present check, or a file
//! `purge-distfiles` removes. A download in progress is never touched.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use nix::fcntl::{Flock, FlockArg};

/// Name of the lock directory inside the distfiles directory.
pub const LOCK_DIR: &str = ".locks";

/// Where the lock of `key` lives.
pub fn lock_path(distfiles_dir: &Path, key: &str) -> PathBuf {
    distfiles_dir.join(LOCK_DIR).join(format!("{key}.lock"))
}

/// A held distfile lock; released on drop.
pub struct DistfileLock {
    _lock: Flock<File>,
    pub path: PathBuf,
}

impl DistfileLock {
    /// Waits for the lock of `key`, creating the lock file if needed.
    pub fn acquire(distfiles_dir: &Path, key: &str) -> Result<DistfileLock> {
        let path = lock_path(distfiles_dir, key);
        let file = open(&path, true)?.expect("created");
        let lock = Flock::lock(file, FlockArg::LockExclusive)
            .map_err(|(_, e)| e)
            .with_context(|| format!("cannot lock {}", path.display()))?;
        Ok(DistfileLock { _lock: lock, path })
    }

    /// Takes the lock of `key` if nobody holds it, without waiting. A
    /// missing lock file means nobody holds it; it is not created then.
    pub fn try_existing(distfiles_dir: &Path, key: &str) -> Result<TryLock> {
        let path = lock_path(distfiles_dir, key);
        let Some(file) = open(&path, false)? else { return Ok(TryLock::NoLockFile) };
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => Ok(TryLock::Held(DistfileLock { _lock: lock, path })),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(TryLock::Busy),
            Err((_, e)) => Err(e).with_context(|| format!("cannot lock {}", path.display())),
        }
    }
}

/// The answer of [`DistfileLock::try_existing`].
pub enum TryLock {
    Held(DistfileLock),
    /// No lock file: nobody fetches the file now.
    NoLockFile,
    /// Someone (a fetch) holds it.
    Busy,
}

fn open(path: &Path, create: bool) -> Result<Option<File>> {
    if create {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
        }
    }
    match OpenOptions::new().append(true).create(create).open(path) {
        Ok(file) => Ok(Some(file)),
        Err(e) if !create && e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot open the lock file {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_lock_is_busy_for_others_and_free_after_drop() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(DistfileLock::try_existing(dir.path(), "sub/a.tgz").unwrap(), TryLock::NoLockFile));
        let held = DistfileLock::acquire(dir.path(), "sub/a.tgz").unwrap();
        assert_eq!(held.path, dir.path().join(".locks/sub/a.tgz.lock"));
        assert!(matches!(DistfileLock::try_existing(dir.path(), "sub/a.tgz").unwrap(), TryLock::Busy));
        drop(held);
        assert!(matches!(DistfileLock::try_existing(dir.path(), "sub/a.tgz").unwrap(), TryLock::Held(_)));
    }
}
