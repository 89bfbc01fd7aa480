//! The scan cache: a port's metadata is reused without running bmake while
//! its directory and every makefile it read are unchanged.
//!
//! Validity is decided by content CRCs, not mtimes: the port directory CRC
//! (folded with the config CRC, since make variables from the config can
//! change the metadata) and the CRC of each makefile in `.MAKE.MAKEFILES`
//! outside the port directory. Editing `Mk/bsd.port.mk` therefore invalidates
//! every port, editing a shared include invalidates exactly the ports that
//! read it, and editing one port invalidates that port. A failed scan is
//! never cached, so it is retried next time. The scan's own format
//! ([`SCAN_FORMAT`]) is folded in with the config CRC: an entry an older
//! portsynth stored, without a field the scan yields now, is scanned again
//! (the build keys do not include it: a new format rebuilds nothing).

use foldhash::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use rayon::prelude::*;

use super::scan::{DirScan, PortMeta, Scanner, SCAN_FORMAT};
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
        Some(dir_crc(port_crc, self.config_crc, SCAN_FORMAT))
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

/// An entry's directory CRC: the port's files, the config, the scan format.
fn dir_crc(port_crc: u32, config_crc: u32, format: u32) -> u32 {
    crc_of_parts([&port_crc.to_le_bytes()[..], &config_crc.to_le_bytes(), &format.to_le_bytes()])
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
    use crate::framework::Kind;
    use std::path::Path;

    /// A bundled tree (the framework's Mk, bmake on the host) with one port
    /// that is not safe for parallel make.
    fn tree() -> (tempfile::TempDir, Scanner) {
        let dir = tempfile::tempdir().unwrap();
        let mk = Path::new(env!("CARGO_MANIFEST_DIR")).join("ports-testdata/Mk");
        std::fs::create_dir_all(dir.path().join("Mk")).unwrap();
        for file in ["bsd.port.mk", "sys.mk"] {
            std::fs::copy(mk.join(file), dir.path().join("Mk").join(file)).unwrap();
        }
        std::fs::create_dir_all(dir.path().join("misc/serial")).unwrap();
        std::fs::write(
            dir.path().join("misc/serial/Makefile"),
            "PORTNAME=\tserial\nPORTVERSION=\t1.0\nCATEGORIES=\tmisc\nMAKE_JOBS_UNSAFE=\tyes\n\n.include <bsd.port.mk>\n",
        )
        .unwrap();
        let scanner = Scanner::on_host(Kind::Bundled, dir.path());
        (dir, scanner)
    }

    #[test]
    fn an_entry_of_an_older_scan_format_is_scanned_again() {
        let (_dir, scanner) = tree();
        let origin = Origin::parse("misc/serial").unwrap();
        let memo = CrcMemo::default();
        let config_crc = 0x1234_5678;
        let fresh = |stored: HashMap<String, ScanCacheEntry>| {
            let cached = CachedScanner::new(&scanner, &memo, config_crc, stored);
            let metas = cached.scan_dirs(std::slice::from_ref(&origin)).pop().unwrap().unwrap();
            let stats = cached.stats();
            (metas, stats, cached.take_fresh())
        };
        let (metas, stats, mut entries) = fresh(HashMap::default());
        assert_eq!(stats, (0, 1));
        assert!(!metas[0].parallel_safe, "MAKE_JOBS_UNSAFE is scanned");
        let (key, entry) = entries.pop().unwrap();

        // What format 1 stored for the same files and config: no scan format
        // in the CRC, no parallel_safe in the metadata (which still decodes,
        // as parallel-safe: reusing it would be wrong).
        let port_crc = memo.dir(&scanner.port_dir(&origin)).unwrap();
        let mut old_meta = serde_json::to_value(&metas).unwrap();
        old_meta[0].as_object_mut().unwrap().remove("parallel_safe");
        let decoded: Vec<PortMeta> = serde_json::from_value(old_meta.clone()).unwrap();
        assert!(decoded[0].parallel_safe);
        let old = ScanCacheEntry {
            dir_crc: crc_of_parts([&port_crc.to_le_bytes()[..], &config_crc.to_le_bytes()]),
            makefiles: entry.makefiles.clone(),
            metadata: old_meta.to_string(),
        };
        let (metas, stats, _) = fresh([(key.clone(), old)].into_iter().collect());
        assert_eq!(stats, (0, 1), "the old entry is not reused");
        assert!(!metas[0].parallel_safe);

        // The entry of this format is reused as it stands.
        let (metas, stats, _) = fresh([(key, entry)].into_iter().collect());
        assert_eq!(stats, (1, 0));
        assert!(!metas[0].parallel_safe);
    }
}
