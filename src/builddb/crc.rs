//! Content CRCs: of a port directory and of the makefiles a port reads.
//!
//! The CRCs are content-based so that a fresh checkout, a `touch` or a copy
//! of the tree changes nothing; only bytes do. Port directory CRC: CRC32 over
//! the directory's regular files in sorted order, each contributing its
//! relative path, a NUL and its content; symlinks contribute their target.
//! Build leftovers (`work/`), VCS directories and editor backups are skipped.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Directory names never part of a port's identity.
const SKIPPED_DIRS: &[&str] = &["work", ".git", ".svn", ".hg", "CVS", ".bzr"];

fn is_backup(name: &str) -> bool {
    name.ends_with('~')
        || name.ends_with(".orig")
        || name.ends_with(".rej")
        || name.ends_with(".swp")
        || name.ends_with(".bak")
        || (name.starts_with('#') && name.ends_with('#'))
}

/// CRC32 of a port directory as DESIGN.md defines it.
pub fn port_crc(dir: &Path) -> std::io::Result<u32> {
    let mut hasher = crc32fast::Hasher::new();
    for (relative, path, is_link) in port_files(dir)? {
        hasher.update(relative.as_bytes());
        hasher.update(&[0]);
        if is_link {
            hasher.update(std::fs::read_link(&path)?.as_os_str().as_encoded_bytes());
        } else {
            hash_file_into(&path, &mut hasher)?;
        }
    }
    Ok(hasher.finalize())
}

/// The files that make up a port, sorted by relative path:
/// (relative path, full path, is a symlink).
fn port_files(dir: &Path) -> std::io::Result<Vec<(String, PathBuf, bool)>> {
    let mut files = Vec::new();
    let mut pending = vec![(String::new(), dir.to_path_buf())];
    while let Some((prefix, path)) = pending.pop() {
        for entry in std::fs::read_dir(&path)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            let relative = if prefix.is_empty() { name.clone() } else { format!("{prefix}/{name}") };
            let kind = entry.file_type()?;
            if kind.is_dir() {
                if !SKIPPED_DIRS.contains(&name.as_str()) {
                    pending.push((relative, entry.path()));
                }
            } else if !is_backup(&name) && (kind.is_file() || kind.is_symlink()) {
                files.push((relative, entry.path(), kind.is_symlink()));
            }
        }
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(files)
}

thread_local! {
    /// One read buffer per thread: hashing a whole tree reads tens of
    /// thousands of small files, and a fresh zeroed 16 KiB buffer per file
    /// cost more than many of the reads.
    static READ_BUFFER: std::cell::RefCell<Vec<u8>> = std::cell::RefCell::new(vec![0; 16 * 1024]);
}

fn hash_file_into(path: &Path, hasher: &mut crc32fast::Hasher) -> std::io::Result<()> {
    let mut file = std::fs::File::open(path)?;
    READ_BUFFER.with_borrow_mut(|buffer| loop {
        let n = file.read(buffer)?;
        if n == 0 {
            return Ok(());
        }
        hasher.update(&buffer[..n]);
    })
}

/// CRC32 of one file's content.
pub fn file_crc(path: &Path) -> std::io::Result<u32> {
    let mut hasher = crc32fast::Hasher::new();
    hash_file_into(path, &mut hasher)?;
    Ok(hasher.finalize())
}

/// CRC32 of a sequence of byte strings, each terminated by NUL, so that
/// ("ab", "c") and ("a", "bc") differ.
pub fn crc_of_parts<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    for part in parts {
        hasher.update(part);
        hasher.update(&[0]);
    }
    hasher.finalize()
}

/// Memoised file and port-directory CRCs, shared by the scan cache and the
/// key computation of one command, so every file is read once per run.
/// A file that cannot be read has no CRC (`None`), which never equals a
/// stored value and so always counts as a change.
#[derive(Default)]
pub struct CrcMemo {
    files: Mutex<HashMap<PathBuf, Option<u32>>>,
    dirs: Mutex<HashMap<PathBuf, Option<u32>>>,
}

impl CrcMemo {
    pub fn file(&self, path: &Path) -> Option<u32> {
        memoised(&self.files, path, || file_crc(path).ok())
    }

    pub fn dir(&self, path: &Path) -> Option<u32> {
        memoised(&self.dirs, path, || port_crc(path).ok())
    }
}

fn memoised(map: &Mutex<HashMap<PathBuf, Option<u32>>>, key: &Path, compute: impl FnOnce() -> Option<u32>) -> Option<u32> {
    if let Some(value) = map.lock().expect("crc memo lock").get(key) {
        return *value;
    }
    let value = compute();
    map.lock().expect("crc memo lock").insert(key.to_path_buf(), value);
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("Makefile"), "PORTNAME=x\n").unwrap();
        std::fs::write(dir.path().join("distinfo"), "SHA256 (x) = 00\n").unwrap();
        std::fs::create_dir(dir.path().join("files")).unwrap();
        std::fs::write(dir.path().join("files/patch-a"), "--- a\n").unwrap();
        dir
    }

    #[test]
    fn same_content_same_crc_anywhere() {
        let (a, b) = (port(), port());
        assert_eq!(port_crc(a.path()).unwrap(), port_crc(b.path()).unwrap());
    }

    #[test]
    fn mtime_alone_does_not_change_the_crc() {
        let dir = port();
        let before = port_crc(dir.path()).unwrap();
        let file = std::fs::File::options().write(true).open(dir.path().join("Makefile")).unwrap();
        file.set_modified(std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(12345)).unwrap();
        assert_eq!(port_crc(dir.path()).unwrap(), before);
    }

    #[test]
    fn one_byte_changes_the_crc() {
        let dir = port();
        let before = port_crc(dir.path()).unwrap();
        std::fs::write(dir.path().join("files/patch-a"), "--- b\n").unwrap();
        assert_ne!(port_crc(dir.path()).unwrap(), before);
    }

    #[test]
    fn names_and_new_files_count_but_leftovers_do_not() {
        let dir = port();
        let before = port_crc(dir.path()).unwrap();
        std::fs::create_dir_all(dir.path().join("work/stage")).unwrap();
        std::fs::write(dir.path().join("work/stage/x"), "built").unwrap();
        std::fs::write(dir.path().join("Makefile~"), "old").unwrap();
        std::fs::write(dir.path().join("Makefile.orig"), "old").unwrap();
        std::fs::create_dir(dir.path().join(".git")).unwrap();
        std::fs::write(dir.path().join(".git/HEAD"), "ref").unwrap();
        assert_eq!(port_crc(dir.path()).unwrap(), before);
        std::fs::write(dir.path().join("pkg-descr"), "text").unwrap();
        let with_descr = port_crc(dir.path()).unwrap();
        assert_ne!(with_descr, before);
        std::fs::rename(dir.path().join("pkg-descr"), dir.path().join("pkg-message")).unwrap();
        assert_ne!(port_crc(dir.path()).unwrap(), with_descr);
    }

    #[test]
    fn symlinks_count_as_their_target() {
        let dir = port();
        std::os::unix::fs::symlink("Makefile", dir.path().join("link")).unwrap();
        let one = port_crc(dir.path()).unwrap();
        std::fs::remove_file(dir.path().join("link")).unwrap();
        std::os::unix::fs::symlink("distinfo", dir.path().join("link")).unwrap();
        assert_ne!(port_crc(dir.path()).unwrap(), one);
    }

    #[test]
    fn parts_are_delimited() {
        assert_ne!(crc_of_parts([&b"ab"[..], b"c"]), crc_of_parts([&b"a"[..], b"bc"]));
    }

    #[test]
    fn memo_reads_once_and_reports_unreadable_files_as_none() {
        let dir = port();
        let memo = CrcMemo::default();
        let path = dir.path().join("Makefile");
        let first = memo.file(&path);
        std::fs::write(&path, "changed").unwrap();
        assert_eq!(memo.file(&path), first, "memoised for the run");
        assert_eq!(memo.file(&dir.path().join("missing")), None);
        assert!(memo.dir(dir.path()).is_some());
    }
}
