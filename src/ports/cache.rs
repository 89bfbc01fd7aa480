//! The scan cache: a port's metadata is reused without running bmake while
//! its directory and every makefile it read are unchanged.
//!
//! Validity is decided by content CRCs, not mtimes: the port directory CRC
//! (folded with the config CRC, since make variables from the config can
//! change the metadata) and the CRC of each makefile in `.MAKE.MAKEFILES`
//! outside the port directory. Editing `Mk/bsd.port.mk` therefore invalidates
//! every port, editing a shared include invalidates exactly the ports that
//! read it, and editing one port invalidates that port. A failed scan is
//! never cached, so it is retried next time.

use foldhash::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use rayon::prelude::*;

use super::scan::{DirScan, PortMeta, Scanner};
use super::Origin;
use crate::builddb::crc::{crc_of_parts, CrcMemo};
use crate::builddb::ScanCacheEntry;

pub struct CachedScanner<'a> {
    scanner: &'a Scanner,
    memo: &'a CrcMemo,
    config_crc: u32,
    /// Taken out as each directory is looked at, so that the stored JSON
    /// is freed as soon as it is decoded.
    stored: Mutex<HashMap<String, ScanCacheEntry>>,
    fresh: Mutex<Vec<(String, ScanCacheEntry)>>,
    hits: AtomicUsize,
    misses: AtomicUsize,
}

impl<'a> CachedScanner<'a> {
    pub fn new(
        scanner: &'a Scanner,
        memo: &'a CrcMemo,
        config_crc: u32,
        stored: HashMap<String, ScanCacheEntry>,
    ) -> Self {
        CachedScanner {
            scanner,
            memo,
            config_crc,
            stored: Mutex::new(stored),
            fresh: Mutex::default(),
            hits: AtomicUsize::new(0),
            misses: AtomicUsize::new(0),
        }
    }

    pub fn scan_dirs(&self, dirs: &[Origin]) -> Vec<DirScan> {
        dirs.par_iter().map(|dir| self.scan_dir(dir)).collect()
    }

    fn scan_dir(&self, dir: &Origin) -> DirScan {
        let key = dir.dir();
        let dir_crc = self.dir_crc(dir);
        let stored = self.stored.lock().expect("scan cache lock").remove(&key);
        if let (Some(crc), Some(mut entry)) = (dir_crc, stored) {
            if let Some(mut metas) = self.reuse(crc, &entry) {
                self.hits.fetch_add(1, Ordering::Relaxed);
                if sort_makefiles(&mut metas) {
                    // Stored by an older version: store it sorted, once.
                    if let Ok(metadata) = serde_json::to_string(&metas) {
                        entry.metadata = metadata;
                        self.fresh.lock().expect("scan cache lock").push((key, entry));
                    }
                }
                return Ok(metas);
            }
        }
        self.misses.fetch_add(1, Ordering::Relaxed);
        let mut metas = self.scanner.scan_dir(dir)?;
        sort_makefiles(&mut metas);
        if let Some(entry) = dir_crc.and_then(|crc| self.entry_for(crc, dir, &metas)) {
            self.fresh.lock().expect("scan cache lock").push((key, entry));
        }
        Ok(metas)
    }

    fn dir_crc(&self, dir: &Origin) -> Option<u32> {
        let port_crc = self.memo.dir(&self.scanner.port_dir(dir))?;
        Some(crc_of_parts([&port_crc.to_le_bytes()[..], &self.config_crc.to_le_bytes()]))
    }

    fn reuse(&self, dir_crc: u32, entry: &ScanCacheEntry) -> Option<Vec<PortMeta>> {
        let unchanged = entry.dir_crc == dir_crc
            && entry.makefiles.iter().all(|(path, crc)| self.memo.file(path.as_ref()) == Some(*crc));
        if !unchanged {
            return None;
        }
        serde_json::from_str(&entry.metadata).ok()
    }

    fn entry_for(&self, dir_crc: u32, dir: &Origin, metas: &[PortMeta]) -> Option<ScanCacheEntry> {
        let port_dir = self.scanner.port_dir(dir);
        let mut paths: Vec<_> =
            metas.iter().flat_map(|m| m.makefiles.iter()).filter(|p| !is_under(p, &port_dir)).collect();
        paths.sort();
        paths.dedup();
        let mut makefiles = Vec::new();
        for path in paths {
            makefiles.push((path.to_string_lossy().into_owned(), self.memo.file(path)?));
        }
        let metadata = serde_json::to_string(metas).ok()?;
        Some(ScanCacheEntry { dir_crc, makefiles, metadata })
    }

    /// Entries scanned by bmake during this run, to be stored.
    pub fn take_fresh(&self) -> Vec<(String, ScanCacheEntry)> {
        std::mem::take(&mut *self.fresh.lock().expect("scan cache lock"))
    }

    /// (cache hits, bmake scans) so far.
    pub fn stats(&self) -> (usize, usize) {
        (self.hits.load(Ordering::Relaxed), self.misses.load(Ordering::Relaxed))
    }
}

/// Sorts and dedups every variant's makefile list (a set: the order bmake
/// read them in means nothing to a key), so that what is cached is sorted
/// and the keys need not sort it again; whether anything changed.
fn sort_makefiles(metas: &mut [PortMeta]) -> bool {
    let mut changed = false;
    for meta in metas {
        if !meta.makefiles.is_sorted() || meta.makefiles.windows(2).any(|w| w[0] == w[1]) {
            meta.makefiles.sort();
            meta.makefiles.dedup();
            changed = true;
        }
    }
    changed
}

/// `path` is `dir` or below it, for the normalised absolute paths of a
/// scan: a byte comparison, where `Path::starts_with` walks components.
pub fn is_under(path: &Path, dir: &Path) -> bool {
    let (path, dir) = (path.as_os_str().as_encoded_bytes(), dir.as_os_str().as_encoded_bytes());
    let dir = dir.strip_suffix(b"/").unwrap_or(dir);
    path.starts_with(dir) && matches!(path.get(dir.len()), None | Some(b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn under_is_a_whole_directory_prefix() {
        let dir = Path::new("/t/devel/gmake");
        assert!(is_under(Path::new("/t/devel/gmake/Makefile"), dir));
        assert!(is_under(Path::new("/t/devel/gmake"), dir));
        assert!(is_under(Path::new("/t/devel/gmake/Makefile"), Path::new("/t/devel/gmake/")));
        assert!(!is_under(Path::new("/t/devel/gmake-4/Makefile"), dir));
        assert!(!is_under(Path::new("/t/devel/gm"), dir));
        for (path, dir) in [("/t/a/b", "/t/a"), ("/t/ab", "/t/a"), ("/t/a", "/t/a/b")] {
            assert_eq!(is_under(Path::new(path), Path::new(dir)), Path::new(path).starts_with(dir), "{path} {dir}");
        }
    }
}
