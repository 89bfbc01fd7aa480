//! Content CRCs: of a port directory and of the makefiles a port reads.
//!
//! The CRCs are content-based so that a fresh checkout, a `touch` or a copy
//! of the tree changes nothing; only bytes do. Port directory CRC: CRC32 over
//! the directory's regular files in sorted order, each contributing its
//! relative path, a NUL and its content; symlinks contribute their target.
//! Build leftovers (`work/`), VCS directories and editor backups are skipped.
//!
//! # Stat signatures
//!
//! Reading every file of a tree to learn that nothing changed costs more than
//! everything else a warm `status` does, so [`CrcMemo`] remembers, per path, a
//! stat signature (size, mtime and ctime in nanoseconds, inode, device) with
//! the file's content CRC, or with a directory's listing — git's index. A
//! file whose signature is unchanged is not read again; a directory whose
//! signature is unchanged is not listed again (creating, removing or renaming
//! an entry changes its directory's mtime and ctime). The CRCs stay
//! content CRCs: a signature only decides whether the stored CRC may be
//! reused, and a port directory's CRC is put together from its files'
//! stored CRCs (`crc32fast`'s combine) when only some of them were read.
//!
//! Racily clean entries (git's `racy-git`): a file changed within the
//! timestamp granularity of the moment its signature was taken can change
//! again without its signature changing. So an entry is trusted only when
//! both its mtime and its ctime are older than the moment the signature was
//! recorded by more than [`RACY_WINDOW_NS`]; any other entry is read again
//! (and recorded again, so it becomes trustworthy once it has aged). The
//! ctime is what a `touch -d` back to the old mtime cannot hide: the kernel
//! sets it to the current time on every change and nobody can set it back.
use foldhash::{HashMap, HashMapExt};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
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
    hash_reader_into(&mut std::fs::File::open(path)?, hasher).map(drop)
}

/// Hashes everything `reader` yields; returns how many bytes that was.
fn hash_reader_into(reader: &mut impl Read, hasher: &mut crc32fast::Hasher) -> std::io::Result<u64> {
    let mut len = 0;
    READ_BUFFER.with_borrow_mut(|buffer| loop {
        let n = reader.read(buffer)?;
        if n == 0 {
            return Ok(len);
        }
        len += n as u64;
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
    let mut crc = PartsCrc::default();
    for part in parts {
        crc.part(part);
    }
    crc.finish()
}

/// [`crc_of_parts`] fed one part at a time, for parts that are not at hand
/// as slices all at once.
#[derive(Default)]
pub struct PartsCrc(crc32fast::Hasher);

impl PartsCrc {
    pub fn part(&mut self, part: &[u8]) {
        self.0.update(part);
        self.0.update(&[0]);
    }

    pub fn finish(self) -> u32 {
        self.0.finalize()
    }
}

/// How close to the moment a signature was recorded a file's mtime or ctime
/// may be before the entry counts as racily clean. Linux stamps files with a
/// clock that lags the one `SystemTime::now` reads by up to a jiffy (1–10
/// ms); some file systems (FAT, NFS exports of them, ext4 with 128-byte
/// inodes) have a granularity of 1 or 2 s. Two seconds covers all of them;
/// a file changed less than 2 s before a command is read again by the next.
pub const RACY_WINDOW_NS: i64 = 2_000_000_000;

/// What `stat` says about a file or a directory: git's index fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatSig {
    pub size: u64,
    pub mtime_ns: i64,
    pub ctime_ns: i64,
    pub inode: u64,
    pub device: u64,
}

impl StatSig {
    pub fn of(meta: &std::fs::Metadata) -> StatSig {
        use std::os::unix::fs::MetadataExt;
        StatSig {
            size: meta.size(),
            mtime_ns: meta.mtime().saturating_mul(1_000_000_000).saturating_add(meta.mtime_nsec()),
            ctime_ns: meta.ctime().saturating_mul(1_000_000_000).saturating_add(meta.ctime_nsec()),
            inode: meta.ino(),
            device: meta.dev(),
        }
    }

    /// git's racily clean rule: changed so close to `recorded_ns` that a later
    /// change may have left the same signature.
    pub fn is_racy(&self, recorded_ns: i64) -> bool {
        self.mtime_ns.max(self.ctime_ns) >= recorded_ns.saturating_sub(RACY_WINDOW_NS)
    }
}

/// Stored signatures by path (paths that are not UTF-8 have none).
pub type Signatures = HashMap<String, Signature>;

/// A stored signature of one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    pub stat: StatSig,
    /// When the signature was taken (before the `stat`), ns since the epoch.
    pub recorded_ns: i64,
    pub signed: Signed,
}

/// What a signature vouches for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signed {
    /// A file: the CRC of its `stat.size` bytes of content.
    File { crc: u32 },
    /// A directory: its entries that count (see [`Listing`]); for a port
    /// directory also its port CRC and the basis that CRC was made from (a
    /// CRC of every file's relative path, content CRC and length, or a
    /// symlink's target), so that a port CRC is reused only with the very
    /// file CRCs it was computed from.
    Dir { listing: String, port: Option<(u32, u32)> },
}

impl Signature {
    /// Usable as it is: the same signature now, and not racily clean.
    fn trusted(&self, now: &StatSig) -> bool {
        self.stat == *now && !self.stat.is_racy(self.recorded_ns)
    }
}

/// A directory's counted entries: (kind, name).
type Entries = Vec<(char, String)>;

/// A directory's entries that count for a port CRC, encoded for storage as
/// `<kind><name>` items (kind `f` file, `l` symlink, `d` directory) joined by
/// `/`, which no file name contains.
struct Listing;

impl Listing {
    /// The counted entries of `dir`, and their encoding (None when a name is
    /// not UTF-8: such a directory is listed every time).
    fn read(dir: &Path) -> std::io::Result<(Entries, Option<String>)> {
        let mut entries = Vec::new();
        let mut storable = true;
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let raw = entry.file_name();
            storable &= raw.to_str().is_some();
            let name = raw.to_string_lossy().into_owned();
            let kind = entry.file_type()?;
            if kind.is_dir() {
                if !SKIPPED_DIRS.contains(&name.as_str()) {
                    entries.push(('d', name));
                }
            } else if !is_backup(&name) && (kind.is_file() || kind.is_symlink()) {
                entries.push((if kind.is_symlink() { 'l' } else { 'f' }, name));
            }
        }
        entries.sort();
        let encoded = storable.then(|| Self::encode(&entries));
        Ok((entries, encoded))
    }

    fn encode(entries: &[(char, String)]) -> String {
        let mut text = String::new();
        for (kind, name) in entries {
            if !text.is_empty() {
                text.push('/');
            }
            text.push(*kind);
            text.push_str(name);
        }
        text
    }

    fn decode(text: &str) -> Vec<(char, String)> {
        text.split('/')
            .filter(|item| !item.is_empty())
            .filter_map(|item| {
                let kind = item.chars().next()?;
                Some((kind, item[kind.len_utf8()..].to_string()))
            })
            .collect()
    }
}

/// What a [`CrcMemo`] did: how much it trusted signatures and how much it read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CrcCounts {
    /// Files whose stored CRC was reused on an unchanged signature.
    pub files_trusted: usize,
    /// Files whose content was read.
    pub files_read: usize,
    /// Directories whose stored listing was reused.
    pub dirs_trusted: usize,
    /// Directories listed.
    pub dirs_listed: usize,
}

/// Memoised file and port-directory CRCs, shared by the scan cache and the
/// key computation of one command, so every file is read at most once per
/// run, and not at all while its stored stat signature holds (see the module
/// documentation). A file that cannot be read has no CRC (`None`), which
/// never equals a stored value and so always counts as a change.
pub struct CrcMemo {
    // Keyed by the paths' bytes: hashing a `Path` walks its components.
    files: Mutex<HashMap<Box<[u8]>, Option<FileEntry>>>,
    dirs: Mutex<HashMap<Box<[u8]>, Option<u32>>>,
    stored: Signatures,
    /// Taken before any `stat` of this command: the recording time of every
    /// signature it takes.
    started_ns: i64,
    changed: Mutex<Vec<(String, Signature)>>,
    files_trusted: AtomicUsize,
    files_read: AtomicUsize,
    dirs_trusted: AtomicUsize,
    dirs_listed: AtomicUsize,
}

impl Default for CrcMemo {
    fn default() -> Self {
        CrcMemo::with_signatures(HashMap::new())
    }
}

/// A file's content CRC and length, as memoised.
type FileEntry = (u32, u64);

/// A file's content CRC and length.
struct FileCrc {
    crc: u32,
    len: u64,
}

impl CrcMemo {
    /// A memo that trusts these stored signatures (by path) while they hold.
    pub fn with_signatures(stored: Signatures) -> Self {
        CrcMemo {
            files: Mutex::default(),
            dirs: Mutex::default(),
            stored,
            started_ns: now_ns(),
            changed: Mutex::default(),
            files_trusted: AtomicUsize::new(0),
            files_read: AtomicUsize::new(0),
            dirs_trusted: AtomicUsize::new(0),
            dirs_listed: AtomicUsize::new(0),
        }
    }

    pub fn file(&self, path: &Path) -> Option<u32> {
        let key = path.as_os_str().as_encoded_bytes();
        if let Some(value) = self.files.lock().expect("crc memo lock").get(key) {
            return value.map(|(crc, _)| crc);
        }
        let value = self.check_file(path, None).map(|f| (f.crc, f.len));
        self.files.lock().expect("crc memo lock").insert(key.into(), value);
        value.map(|(crc, _)| crc)
    }

    fn stored(&self, path: &Path) -> Option<&Signature> {
        self.stored.get(path.to_str()?)
    }

    pub fn dir(&self, path: &Path) -> Option<u32> {
        memoised(&self.dirs, path, || self.port_crc(path))
    }

    /// The signatures taken in this run that differ from the stored ones:
    /// what to write back.
    pub fn take_changed(&self) -> Vec<(String, Signature)> {
        std::mem::take(&mut *self.changed.lock().expect("crc memo lock"))
    }

    /// Frees the stored signatures once every path they could vouch for
    /// was looked at (after the scan): later lookups are memo hits, and
    /// their memory is better spent on the graph and the plan.
    pub fn release_stored(&mut self) {
        self.stored = Signatures::new();
    }

    pub fn counts(&self) -> CrcCounts {
        CrcCounts {
            files_trusted: self.files_trusted.load(Ordering::Relaxed),
            files_read: self.files_read.load(Ordering::Relaxed),
            dirs_trusted: self.dirs_trusted.load(Ordering::Relaxed),
            dirs_listed: self.dirs_listed.load(Ordering::Relaxed),
        }
    }

    fn record(&self, path: &Path, stat: StatSig, signed: Signed) {
        let Some(key) = path.to_str() else { return };
        let signature = Signature { stat, recorded_ns: self.started_ns, signed };
        if self.stored.get(key) != Some(&signature) {
            self.changed.lock().expect("crc memo lock").push((key.to_string(), signature));
        }
    }

    /// A file's CRC from its stored signature when that holds, else read.
    /// `at`: the file's directory, open, and its name there.
    fn check_file(&self, path: &Path, at: Option<(&DirHandle, &str)>) -> Option<FileCrc> {
        if let Some(stored @ Signature { signed: Signed::File { crc }, .. }) = self.stored(path) {
            let now = match at {
                Some((dir, name)) => dir.stat_at(name),
                None => std::fs::metadata(path).ok().map(|meta| (meta.is_file(), StatSig::of(&meta))),
            };
            if let Some((is_file, now)) = now {
                if is_file && stored.trusted(&now) {
                    self.files_trusted.fetch_add(1, Ordering::Relaxed);
                    return Some(FileCrc { crc: *crc, len: stored.stat.size });
                }
            }
        }
        self.files_read.fetch_add(1, Ordering::Relaxed);
        let mut file = std::fs::File::open(path).ok()?;
        // The signature of the inode that is read, taken before the read: a
        // change during the read makes the next signature differ.
        let stat = file.metadata().ok().map(|meta| (meta.is_file(), StatSig::of(&meta)));
        let mut hasher = crc32fast::Hasher::new();
        let len = hash_reader_into(&mut file, &mut hasher).ok()?;
        let crc = hasher.finalize();
        if let Some((true, stat)) = stat {
            if stat.size == len {
                self.record(path, stat, Signed::File { crc });
            }
        }
        Some(FileCrc { crc, len })
    }

    /// The counted entries of a directory, from its stored listing when its
    /// signature holds, else listed (and recorded, except a port directory's
    /// own row, which [`Self::port_crc`] writes with the port CRC).
    fn listing(&self, dir: &Path, is_port: bool, handle: Option<&DirHandle>) -> std::io::Result<DirListing> {
        let stat = match handle {
            Some(handle) => handle.stat(),
            None => std::fs::metadata(dir).ok().map(|meta| StatSig::of(&meta)),
        };
        if let (Some(stat), Some(stored @ Signature { signed: Signed::Dir { listing, .. }, .. })) =
            (stat, self.stored(dir))
        {
            if stored.trusted(&stat) {
                self.dirs_trusted.fetch_add(1, Ordering::Relaxed);
                return Ok(DirListing { entries: Listing::decode(listing), stat: Some(stat), fresh: None });
            }
        }
        self.dirs_listed.fetch_add(1, Ordering::Relaxed);
        let (entries, encoded) = Listing::read(dir)?;
        if let (Some(stat), Some(listing), false) = (stat, &encoded, is_port) {
            self.record(dir, stat, Signed::Dir { listing: listing.clone(), port: None });
        }
        Ok(DirListing { entries, stat, fresh: Some(encoded) })
    }

    /// [`port_crc`] through the signatures: only changed files are read, only
    /// changed directories listed. The port CRC is put together from its
    /// files' CRCs, unless the basis it was stored with (every file's path,
    /// CRC and length) is the same now, in which case it is the stored one.
    fn port_crc(&self, root: &Path) -> Option<u32> {
        // The port directory opened once (`O_PATH`): its files are `stat`ed
        // by name, not by a walk of their whole path each.
        let handle = DirHandle::open(root);
        let top = self.listing(root, true, handle.as_ref()).ok()?;
        let mut files = Vec::new();
        let mut pending = vec![(String::new(), root.to_path_buf(), top.entries)];
        while let Some((prefix, path, entries)) = pending.pop() {
            for (kind, name) in entries {
                let relative = if prefix.is_empty() { name.clone() } else { format!("{prefix}/{name}") };
                let full = path.join(&name);
                if kind == 'd' {
                    let sub = self.listing(&full, false, None).ok()?;
                    pending.push((relative, full, sub.entries));
                } else {
                    files.push((relative, full, kind == 'l'));
                }
            }
        }
        files.sort_by(|a, b| a.0.cmp(&b.0));
        let mut contents = Vec::with_capacity(files.len());
        let mut basis = crc32fast::Hasher::new();
        for (relative, path, is_link) in &files {
            basis.update(relative.as_bytes());
            basis.update(&[0]);
            let content = if *is_link {
                PortFile::Link(std::fs::read_link(path).ok()?.into_os_string().into_encoded_bytes())
            } else {
                let at = if relative.contains('/') { None } else { handle.as_ref().map(|h| (h, relative.as_str())) };
                let file = self.check_file(path, at)?;
                PortFile::File(file.crc, file.len)
            };
            match &content {
                PortFile::Link(target) => basis.update(target),
                PortFile::File(crc, len) => {
                    basis.update(&crc.to_le_bytes());
                    basis.update(&len.to_le_bytes());
                }
            }
            contents.push(content);
        }
        let basis = basis.finalize();
        let stored = self.stored(root);
        let stored_port = match stored {
            Some(Signature { signed: Signed::Dir { port, .. }, .. }) => *port,
            _ => None,
        };
        let crc = match stored_port {
            Some((crc, stored_basis)) if stored_basis == basis => crc,
            _ => {
                let mut hasher = crc32fast::Hasher::new();
                for ((relative, _, _), content) in files.iter().zip(&contents) {
                    hasher.update(relative.as_bytes());
                    hasher.update(&[0]);
                    match content {
                        PortFile::Link(target) => hasher.update(target),
                        PortFile::File(crc, len) => {
                            hasher.combine(&crc32fast::Hasher::new_with_initial_len(*crc, *len))
                        }
                    }
                }
                hasher.finalize()
            }
        };
        // The port directory's row: its listing as it is now (stored when it
        // held, else just read) with the port CRC and its basis.
        let relisted = top.fresh.is_some();
        let listing = match (top.fresh, stored) {
            (Some(fresh), _) => fresh,
            (None, Some(Signature { signed: Signed::Dir { listing, .. }, .. })) => Some(listing.clone()),
            (None, _) => None,
        };
        if let (Some(stat), Some(listing)) = (top.stat, listing) {
            if stored_port != Some((crc, basis)) || relisted {
                self.record(root, stat, Signed::Dir { listing, port: Some((crc, basis)) });
            }
        }
        Some(crc)
    }
}

/// A directory opened with `O_PATH`, to `stat` it and its entries by name.
struct DirHandle(std::fs::File);

impl DirHandle {
    fn open(dir: &Path) -> Option<DirHandle> {
        use std::os::unix::fs::OpenOptionsExt;
        let flags = libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC;
        std::fs::OpenOptions::new().read(true).custom_flags(flags).open(dir).ok().map(DirHandle)
    }

    fn stat(&self) -> Option<StatSig> {
        self.0.metadata().ok().map(|meta| StatSig::of(&meta))
    }

    /// (is a regular file, signature) of the entry `name`, symlinks
    /// followed as `std::fs::metadata` does.
    fn stat_at(&self, name: &str) -> Option<(bool, StatSig)> {
        use std::os::fd::AsRawFd;
        let name = std::ffi::CString::new(name).ok()?;
        let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: a valid descriptor, a NUL-terminated name and a buffer of
        // the size fstatat writes.
        let rc = unsafe { libc::fstatat(self.0.as_raw_fd(), name.as_ptr(), stat.as_mut_ptr(), 0) };
        if rc != 0 {
            return None;
        }
        // SAFETY: fstatat succeeded, so it filled the buffer.
        let stat = unsafe { stat.assume_init() };
        let sig = StatSig {
            size: stat.st_size as u64,
            mtime_ns: stat.st_mtime.saturating_mul(1_000_000_000).saturating_add(stat.st_mtime_nsec),
            ctime_ns: stat.st_ctime.saturating_mul(1_000_000_000).saturating_add(stat.st_ctime_nsec),
            inode: stat.st_ino,
            device: stat.st_dev,
        };
        Some((stat.st_mode & libc::S_IFMT == libc::S_IFREG, sig))
    }
}

/// A directory's counted entries, its signature, and, when it was listed
/// rather than taken from its signature, the listing's encoding (None inside
/// when it cannot be stored).
struct DirListing {
    entries: Vec<(char, String)>,
    stat: Option<StatSig>,
    fresh: Option<Option<String>>,
}

/// What a file of a port contributes to the port CRC.
enum PortFile {
    /// A regular file: its content CRC and length.
    File(u32, u64),
    /// A symlink: its target.
    Link(Vec<u8>),
}

/// Nanoseconds since the Unix epoch.
fn now_ns() -> i64 {
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    i64::try_from(since_epoch.as_nanos()).unwrap_or(i64::MAX)
}

fn memoised(
    map: &Mutex<HashMap<Box<[u8]>, Option<u32>>>,
    key: &Path,
    compute: impl FnOnce() -> Option<u32>,
) -> Option<u32> {
    let key = key.as_os_str().as_encoded_bytes();
    if let Some(value) = map.lock().expect("crc memo lock").get(key) {
        return *value;
    }
    let value = compute();
    map.lock().expect("crc memo lock").insert(key.into(), value);
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

    /// A memo over `previous`'s signatures, as the next command sees them.
    fn next(previous: &CrcMemo) -> CrcMemo {
        CrcMemo::with_signatures(previous.take_changed().into_iter().collect())
    }

    /// Signatures recorded as if taken well after the files' last change
    /// (a fresh test file is racily clean for [`RACY_WINDOW_NS`]).
    fn aged(memo: &CrcMemo) -> CrcMemo {
        let mut changed = memo.take_changed();
        for (_, signature) in &mut changed {
            signature.recorded_ns += 10 * RACY_WINDOW_NS;
        }
        let again = CrcMemo::with_signatures(HashMap::new());
        *again.changed.lock().unwrap() = changed;
        again
    }

    fn counts(memo: &CrcMemo) -> (usize, usize, usize, usize) {
        let c = memo.counts();
        (c.files_trusted, c.files_read, c.dirs_trusted, c.dirs_listed)
    }

    #[test]
    fn signatures_give_the_content_crcs_without_reading() {
        let dir = port();
        let makefile = dir.path().join("Makefile");
        let first = CrcMemo::default();
        let crc = first.dir(dir.path()).unwrap();
        assert_eq!(crc, port_crc(dir.path()).unwrap(), "the same port CRC as reading everything");
        assert_eq!(first.file(&makefile), Some(file_crc(&makefile).unwrap()));
        assert_eq!(counts(&first), (0, 4, 0, 2));
        let second = next(&aged(&first));
        assert_eq!(second.dir(dir.path()), Some(crc));
        assert_eq!(second.file(&makefile), Some(file_crc(&makefile).unwrap()));
        assert_eq!(counts(&second), (4, 0, 2, 0), "nothing read, nothing listed");
        assert!(second.take_changed().is_empty(), "nothing to write back");
    }

    #[test]
    fn a_fresh_signature_is_racily_clean_and_not_trusted() {
        let dir = port();
        let first = CrcMemo::default();
        first.dir(dir.path());
        let second = next(&first);
        second.dir(dir.path());
        assert_eq!(counts(&second), (0, 3, 0, 2), "changed within the window: read again");
        assert_eq!(second.take_changed().len(), 5, "and recorded again");
    }

    #[test]
    fn a_change_within_the_same_tick_is_caught_by_the_racy_rule() {
        let dir = port();
        let makefile = dir.path().join("Makefile");
        let first = CrcMemo::default();
        let before = first.dir(dir.path()).unwrap();
        let mut stored: Signatures = first.take_changed().into_iter().collect();
        std::fs::write(&makefile, "PORTNAME=y\n").unwrap();
        // What a change within the timestamp granularity leaves: the same signature.
        let now = StatSig::of(&std::fs::metadata(&makefile).unwrap());
        let key = makefile.to_str().unwrap();
        stored.get_mut(key).unwrap().stat = now;
        let racy = CrcMemo::with_signatures(stored.clone());
        assert_ne!(racy.dir(dir.path()), Some(before), "read again and found changed");
        assert_eq!(racy.dir(dir.path()), port_crc(dir.path()).ok());
        // The same entry recorded long after the file's times would be trusted:
        // the racy rule is what catches it.
        let signature = stored.get_mut(key).unwrap();
        signature.recorded_ns = now.ctime_ns.max(now.mtime_ns) + 10 * RACY_WINDOW_NS;
        let Signed::File { crc: old_crc } = signature.signed else { panic!("a file signature") };
        assert_ne!(Some(old_crc), file_crc(&makefile).ok());
        assert_eq!(CrcMemo::with_signatures(stored).file(&makefile), Some(old_crc), "trusted, so not read");
    }

    #[test]
    fn every_field_of_the_signature_counts() {
        let stat = StatSig { size: 10, mtime_ns: 1_000, ctime_ns: 2_000, inode: 7, device: 3 };
        let signature = Signature { stat, recorded_ns: 100 * RACY_WINDOW_NS, signed: Signed::File { crc: 1 } };
        assert!(signature.trusted(&stat));
        for other in [
            StatSig { size: 11, ..stat },
            StatSig { mtime_ns: 1_001, ..stat },
            StatSig { ctime_ns: 2_001, ..stat },
            StatSig { inode: 8, ..stat },
            StatSig { device: 4, ..stat },
        ] {
            assert!(!signature.trusted(&other), "{other:?}");
        }
        let racy = Signature { recorded_ns: stat.ctime_ns + RACY_WINDOW_NS, ..signature.clone() };
        assert!(!racy.trusted(&stat), "ctime within the window");
        let future_mtime = StatSig { mtime_ns: 200 * RACY_WINDOW_NS, ..stat };
        assert!(!Signature { stat: future_mtime, ..signature }.trusted(&future_mtime), "mtime after the recording");
    }

    #[test]
    fn content_changes_behind_an_old_mtime_and_new_inodes_are_read() {
        let dir = port();
        let makefile = dir.path().join("Makefile");
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        let first = CrcMemo::default();
        set_mtime(&makefile, old);
        let before = first.dir(dir.path()).unwrap();
        let stored = aged(&first);
        // Same size, mtime set back: the ctime differs.
        std::fs::write(&makefile, "PORTNAME=y\n").unwrap();
        set_mtime(&makefile, old);
        let second = next(&stored);
        assert_ne!(second.dir(dir.path()), Some(before));
        assert_eq!(second.dir(dir.path()), port_crc(dir.path()).ok());
        assert_eq!(counts(&second).1, 1, "only that file read");
        // Replaced by a rename.
        let third = aged(&second);
        let replacement = dir.path().join("files/new");
        std::fs::write(&replacement, "PORTNAME=z\n").unwrap();
        set_mtime(&replacement, old);
        std::fs::rename(&replacement, &makefile).unwrap();
        let fourth = next(&third);
        assert_eq!(fourth.dir(dir.path()), port_crc(dir.path()).ok());
        assert_ne!(fourth.dir(dir.path()), second.dir(dir.path()));
    }

    #[test]
    fn added_and_removed_files_change_the_port_crc() {
        let dir = port();
        let first = CrcMemo::default();
        let before = first.dir(dir.path()).unwrap();
        let stored = aged(&first);
        std::fs::write(dir.path().join("files/patch-b"), "--- b\n").unwrap();
        let second = next(&stored);
        let with_patch = second.dir(dir.path()).unwrap();
        assert_ne!(with_patch, before);
        assert_eq!(Some(with_patch), port_crc(dir.path()).ok());
        let stored = aged(&second);
        std::fs::remove_file(dir.path().join("distinfo")).unwrap();
        let third = next(&stored);
        assert_eq!(third.dir(dir.path()), port_crc(dir.path()).ok());
        assert_ne!(third.dir(dir.path()), Some(with_patch));
    }

    #[test]
    fn listings_round_trip() {
        let entries = vec![('d', "files".to_string()), ('f', "Makefile".to_string()), ('l', "ünï".to_string())];
        assert_eq!(Listing::decode(&Listing::encode(&entries)), entries);
        assert!(Listing::decode("").is_empty());
    }

    fn set_mtime(path: &Path, time: std::time::SystemTime) {
        std::fs::File::options().write(true).open(path).unwrap().set_modified(time).unwrap();
    }
}
