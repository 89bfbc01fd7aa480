//! `purge-distfiles`: what in the distfiles cache no port of the tree
//! references, and its careful removal.
//!
//! A file is referenced when the framework says so
//! ([`crate::framework::Framework::referenced_distfiles`]: bundled, some
//! port of any flavor lists it in DISTFILES; pkgsrc, some distinfo of the
//! tree lists it), at `DIST_SUBDIR/name` or `name`. Everything else below
//! the cache is unreferenced: old versions, files of removed ports, `.part`
//! leftovers of killed downloads, whole `DIST_SUBDIR` directories of
//! removed ports.
//!
//! Safety rules: the walk never follows symlinks and never leaves the
//! cache's file system; `.locks/` is not content (its entries are handled
//! separately); a file whose distfile lock is held (a download in progress,
//! `.part` files under the lock of their final name) is skipped; lock files
//! are removed only for keys no port references, because unlinking a lock
//! file another fetch might open next would split the lock in two.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use super::lock::{DistfileLock, TryLock, LOCK_DIR};

/// One unreferenced file: its path below the cache and its size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Unreferenced {
    pub file: String,
    pub size: u64,
}

/// What a purge did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Purged {
    pub removed: usize,
    pub bytes: u64,
    /// Files left because their lock is held (a download in progress).
    pub busy: Vec<String>,
    pub lock_files: usize,
    pub directories: usize,
    pub errors: Vec<String>,
}

/// Files below `dir` (not in `.locks/`) that are not referenced, sorted.
pub fn unreferenced(dir: &Path, referenced: &HashSet<String>) -> Result<Vec<Unreferenced>> {
    let mut found = Vec::new();
    let Ok(root) = std::fs::symlink_metadata(dir) else { return Ok(found) };
    walk(dir, "", root.dev(), &mut |rel, metadata| {
        if !referenced.contains(rel) {
            found.push(Unreferenced { file: rel.to_string(), size: metadata.len() });
        }
    })?;
    found.sort_by(|a, b| a.file.cmp(&b.file));
    Ok(found)
}

/// Calls `visit` for every non-directory entry below `dir`, with its path
/// relative to the cache; `.locks/` at the top is skipped.
fn walk(dir: &Path, rel: &str, dev: u64, visit: &mut dyn FnMut(&str, &std::fs::Metadata)) -> Result<()> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    let mut entries: Vec<_> =
        entries.collect::<std::io::Result<_>>().with_context(|| format!("cannot read {}", dir.display()))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        if rel.is_empty() && name == LOCK_DIR {
            continue;
        }
        let path = entry.path();
        let child = if rel.is_empty() { name } else { format!("{rel}/{name}") };
        let metadata = std::fs::symlink_metadata(&path).with_context(|| format!("cannot stat {}", path.display()))?;
        if metadata.is_dir() {
            if metadata.dev() == dev {
                walk(&path, &child, dev, visit)?;
            }
        } else {
            visit(&child, &metadata);
        }
    }
    Ok(())
}

/// Removes `files` (from [`unreferenced`]), then the lock files of keys no
/// port references and the directories left empty.
pub fn remove(dir: &Path, files: &[Unreferenced], referenced: &HashSet<String>) -> Purged {
    let mut purged = Purged::default();
    for file in files {
        if referenced.contains(&file.file) {
            continue;
        }
        let lock_key = file.file.strip_suffix(".part").unwrap_or(&file.file);
        let held = match DistfileLock::try_existing(dir, lock_key) {
            Ok(TryLock::Busy) => {
                purged.busy.push(file.file.clone());
                continue;
            }
            Ok(TryLock::Held(lock)) => Some(lock),
            Ok(TryLock::NoLockFile) => None,
            Err(e) => {
                purged.errors.push(format!("{e:#}"));
                continue;
            }
        };
        let path = dir.join(&file.file);
        match std::fs::remove_file(&path) {
            Ok(()) => {
                purged.removed += 1;
                purged.bytes += file.size;
            }
            Err(e) => purged.errors.push(format!("cannot remove {}: {e}", path.display())),
        }
        drop(held);
    }
    remove_stale_locks(dir, referenced, &mut purged);
    remove_empty_dirs(dir, &mut purged);
    purged
}

/// Lock files of unreferenced keys, each removed while held.
fn remove_stale_locks(dir: &Path, referenced: &HashSet<String>, purged: &mut Purged) {
    let locks = dir.join(LOCK_DIR);
    let Ok(root) = std::fs::symlink_metadata(&locks) else { return };
    let mut stale = Vec::new();
    let result = walk(&locks, "", root.dev(), &mut |rel, _| {
        if let Some(key) = rel.strip_suffix(".lock") {
            if !referenced.contains(key) {
                stale.push(key.to_string());
            }
        }
    });
    if let Err(e) = result {
        purged.errors.push(format!("{e:#}"));
    }
    for key in stale {
        if let Ok(TryLock::Held(lock)) = DistfileLock::try_existing(dir, &key) {
            if std::fs::remove_file(&lock.path).is_ok() {
                purged.lock_files += 1;
            }
        }
    }
}

/// Directories below the cache (the cache, `.locks` itself excepted) that
/// hold nothing any more, deepest first. `remove_dir` refuses non-empty
/// ones, so nothing but empty directories can go.
fn remove_empty_dirs(dir: &Path, purged: &mut Purged) {
    let mut dirs: Vec<PathBuf> = Vec::new();
    collect_dirs(dir, &mut dirs);
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    for sub in dirs {
        if sub == dir.join(LOCK_DIR) {
            continue;
        }
        if std::fs::remove_dir(&sub).is_ok() {
            purged.directories += 1;
        }
    }
}

fn collect_dirs(dir: &Path, into: &mut Vec<PathBuf>) {
    let Ok(root) = std::fs::symlink_metadata(dir) else { return };
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() && m.dev() == root.dev() => {
                collect_dirs(&path, into);
                into.push(path);
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(list: &[&str]) -> HashSet<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    fn tree_of(dir: &Path, files: &[&str]) {
        for file in files {
            let path = dir.join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, file.as_bytes()).unwrap();
        }
    }

    #[test]
    fn lists_and_removes_exactly_the_unreferenced_files() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        tree_of(d, &["keep.tgz", "old.tgz", "keep.tgz.part", "sub/keep2.tgz", "gone/x.tgz", "gone/deeper/y.tgz"]);
        tree_of(d, &[".locks/keep.tgz.lock", ".locks/old.tgz.lock", ".locks/gone/x.tgz.lock"]);
        std::os::unix::fs::symlink("/etc", d.join("link")).unwrap();
        let referenced = keys(&["keep.tgz", "sub/keep2.tgz", "never-fetched.tgz"]);
        let found = unreferenced(d, &referenced).unwrap();
        let names: Vec<&str> = found.iter().map(|f| f.file.as_str()).collect();
        assert_eq!(names, ["gone/deeper/y.tgz", "gone/x.tgz", "keep.tgz.part", "link", "old.tgz"]);
        assert_eq!(found[4].size, 7);
        let purged = remove(d, &found, &referenced);
        assert_eq!(purged.removed, 5, "{purged:?}");
        assert!(purged.errors.is_empty() && purged.busy.is_empty(), "{purged:?}");
        assert_eq!(purged.lock_files, 2);
        assert!(d.join("keep.tgz").is_file() && d.join("sub/keep2.tgz").is_file());
        assert!(d.join(".locks/keep.tgz.lock").is_file());
        assert!(!d.join(".locks/old.tgz.lock").exists() && !d.join("gone").exists());
        assert!(std::path::Path::new("/etc").is_dir(), "the symlink's target is untouched");
        assert!(unreferenced(d, &referenced).unwrap().is_empty());
    }

    #[test]
    fn a_file_under_a_held_lock_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        tree_of(d, &["busy.tgz.part", "busy-old.tgz"]);
        let _held = DistfileLock::acquire(d, "busy.tgz").unwrap();
        let referenced = keys(&["busy.tgz"]);
        let found = unreferenced(d, &referenced).unwrap();
        let purged = remove(d, &found, &referenced);
        assert_eq!(purged.busy, ["busy.tgz.part"]);
        assert_eq!(purged.removed, 1);
        assert!(d.join("busy.tgz.part").is_file());
    }
}
