//! Reading an untrusted compressed tar, shared by every package format
//! (the bundled `.pkg` in [`super::package`], pkgsrc's `.tgz` in
//! `framework::pkgsrc::package`).
//!
//! A package format differs in its compression, its metadata and its
//! rules, but the hostile-input defences are the same and live here once:
//! the file is opened without following a symlink or blocking on a fifo
//! ([`open_untrusted`]); both the compressed bytes and the decompressor's
//! output are metered against the policy's caps ([`Metered`]), so a
//! growing file or a decompression bomb stops the read instead of filling
//! memory or disk; declared entry sizes are charged before a byte of the
//! entry is read ([`Source::charge`]); tar records that extend the next
//! entry (GNU long names, pax headers) are read with a bound and applied
//! by [`next_entry`], never by the tar crate, so nothing is read into
//! memory unbounded; and paths, symlink targets and modes are judged by
//! the helpers at the end of this file.

use std::cell::Cell;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::rc::Rc;

use anyhow::{anyhow, bail, Context, Result};
use sha2::Digest;
use tar::EntryType;

use super::fsutil::open_untrusted;
use super::policy::PackagePolicy;

/// Bound on a GNU long name or long link target (PATH_MAX).
const MAX_LONG_NAME: u64 = 4096;
/// Bound on one pax extended header (its records only name the entry).
const MAX_PAX_HEADER: u64 = 16 * 1024;

/// The decompressed package, metered; the decoder reads the file through
/// its own meter.
pub(crate) type Expanded = Metered<Box<dyn Read>>;
pub(crate) type Archive = tar::Archive<Expanded>;

/// A compression a package format uses: how it is recognised and decoded.
pub(crate) struct Compression {
    pub name: &'static str,
    pub magic: &'static [u8],
    pub decoder: fn(Metered<File>) -> io::Result<Box<dyn Read>>,
}

/// zstd (the bundled `.pkg`): one or more frames.
pub(crate) const ZSTD: Compression = Compression {
    name: "zstd",
    magic: &[0x28, 0xb5, 0x2f, 0xfd],
    decoder: |file| Ok(Box::new(zstd::Decoder::new(file)?)),
};

/// gzip (pkgsrc's `.tgz`, as pkg_create writes it through libarchive).
/// Members are decoded one after the other, as libarchive does; bytes
/// after the last member that are not a gzip member are an error.
pub(crate) const GZIP: Compression = Compression {
    name: "gzip",
    magic: &[0x1f, 0x8b],
    decoder: |file| Ok(Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(file)))),
};

/// Which bound a read went past.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Overrun {
    File,
    Expanded,
}

/// A reader that counts what goes through it and fails (recording why in
/// the shared flag) as soon as the count passes `max`.
pub(crate) struct Metered<R> {
    inner: R,
    used: u64,
    max: u64,
    what: Overrun,
    overrun: Rc<Cell<Option<Overrun>>>,
    /// Shared with the checker, which charges declared entry sizes early.
    used_out: Option<Rc<Cell<u64>>>,
}

impl<R: Read> Read for Metered<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.used += n as u64;
        if let Some(shared) = &self.used_out {
            shared.set(self.used);
        }
        if self.used > self.max {
            self.overrun.set(Some(self.what));
            return Err(io::Error::other("size limit passed"));
        }
        Ok(n)
    }
}

/// The package being read: its name for errors, its limits and what the
/// readers measured.
pub(crate) struct Source<'a> {
    pub pkg: &'a Path,
    pub policy: &'a PackagePolicy,
    overrun: Rc<Cell<Option<Overrun>>>,
    /// Bytes out of the decompressor so far.
    expanded: Rc<Cell<u64>>,
}

impl Source<'_> {
    /// A read error: past a limit, or a damaged package.
    pub(crate) fn corrupt(&self, err: io::Error) -> anyhow::Error {
        match self.overrun.get() {
            Some(Overrun::Expanded) => self.too_large(),
            Some(Overrun::File) => anyhow!(
                "{}: is larger than {} (it grew while being read)",
                self.pkg.display(),
                self.policy.file_limit()
            ),
            None => anyhow::Error::new(err).context(format!("{}: corrupt or truncated package", self.pkg.display())),
        }
    }

    fn too_large(&self) -> anyhow::Error {
        anyhow!("{}: expands past {}", self.pkg.display(), self.policy.expanded_limit())
    }

    /// Refuses an entry whose declared size alone would pass the expanded
    /// limit, before a byte of it is decompressed. (The meter still counts
    /// every byte; a header cannot make an entry smaller than it is.)
    pub(crate) fn charge(&self, size: u64) -> Result<()> {
        if self.expanded.get().saturating_add(size) > self.policy.max_expanded_size {
            self.overrun.set(Some(Overrun::Expanded));
            return Err(self.too_large());
        }
        Ok(())
    }

    /// An error about entry `entry` of this package.
    pub(crate) fn bad(&self, entry: &str, why: impl std::fmt::Display) -> anyhow::Error {
        anyhow!("{}: entry {entry}: {why}", self.pkg.display())
    }
}

/// Opens `pkg` as a tar compressed with `compression` (see
/// [`open_untrusted`]: no symlink, fifo or device, at most `max_file_size`
/// bytes), refusing anything without its magic number up front. Returns
/// the archive and a second descriptor of the same open file.
pub(crate) fn open_archive<'a>(
    pkg: &'a Path,
    policy: &'a PackagePolicy,
    compression: &Compression,
) -> Result<(Archive, Source<'a>, File)> {
    let mut file = open_untrusted(pkg, policy.max_file_size, &policy.file_limit(), None)?;
    let mut magic = vec![0u8; compression.magic.len()];
    if file.read_exact(&mut magic).is_err() || magic != compression.magic {
        bail!("{}: not a package: not {}-compressed", pkg.display(), compression.name);
    }
    file.seek(SeekFrom::Start(0)).with_context(|| format!("{}: cannot read package", pkg.display()))?;
    let source = Source { pkg, policy, overrun: Rc::default(), expanded: Rc::default() };
    let reader = file.try_clone().with_context(|| format!("{}: cannot read package", pkg.display()))?;
    let compressed = Metered {
        inner: reader,
        used: 0,
        max: policy.max_file_size,
        what: Overrun::File,
        overrun: source.overrun.clone(),
        used_out: None,
    };
    let decoder = (compression.decoder)(compressed)
        .with_context(|| format!("{}: cannot start {}", pkg.display(), compression.name))?;
    let expanded = Metered {
        inner: decoder,
        used: 0,
        max: policy.max_expanded_size,
        what: Overrun::Expanded,
        overrun: source.overrun.clone(),
        used_out: Some(source.expanded.clone()),
    };
    Ok((tar::Archive::new(expanded), source, file))
}

/// The archive's entries as stored: GNU long names and pax headers are
/// handled by [`next_entry`], with bounds, not by the tar crate.
pub(crate) fn raw_entries<'a>(archive: &'a mut Archive, source: &Source<'_>) -> Result<tar::Entries<'a, Expanded>> {
    Ok(archive.entries().map_err(|e| source.corrupt(e))?.raw(true))
}

/// Decompresses what is left of the archive: a damaged tail is an error,
/// and so is a tail that expands past the limit.
pub(crate) fn read_to_end(archive: Archive, source: &Source<'_>) -> Result<()> {
    io::copy(&mut archive.into_inner(), &mut io::sink()).map_err(|e| source.corrupt(e))?;
    Ok(())
}

/// One archive member with its full path and link target.
pub(crate) struct Member<'a, R: Read> {
    pub entry: tar::Entry<'a, R>,
    pub path: Vec<u8>,
    pub link: Option<Vec<u8>>,
}

impl<R: Read> Member<'_, R> {
    /// The path for an error message.
    pub(crate) fn shown(&self) -> String {
        String::from_utf8_lossy(&self.path).into_owned()
    }
}

/// What a format makes of pax extended headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pax {
    /// Refused: the format's writer never emits them (the bundled GNU tar).
    Refuse,
    /// A per-entry header's `path` and `linkpath` apply to the next entry
    /// (pkg_create writes pax-restricted archives: ustar, plus a pax header
    /// for a long name). Records that would make an extractor see another
    /// file than we check (a `size` other than the header's, sparse maps)
    /// or give it more than data (xattrs, ACLs, file flags) are refused;
    /// so are global headers.
    Apply,
}

/// Long-name records seen before a member.
#[derive(Default)]
struct Pending {
    path: Option<Vec<u8>>,
    link: Option<Vec<u8>>,
    /// A pax `size`, which must equal the header's.
    size: Option<u64>,
}

/// The next member, GNU long name (`L`) and long link (`K`) records and
/// (with [`Pax::Apply`]) pax headers applied to it.
pub(crate) fn next_entry<'a, R: Read>(
    source: &Source<'_>,
    entries: &mut tar::Entries<'a, R>,
    pax: Pax,
) -> Result<Option<Member<'a, R>>> {
    let mut pending = Pending::default();
    let mut extended = false;
    loop {
        let mut entry = match entries.next() {
            None if extended => {
                bail!("{}: corrupt or truncated package: long name without an entry", source.pkg.display())
            }
            None => return Ok(None),
            Some(entry) => entry.map_err(|e| source.corrupt(e))?,
        };
        let kind = entry.header().entry_type();
        let shown = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        match kind {
            EntryType::GNULongName => {
                let name = read_long_name(source, &mut entry)?;
                set_once(source, &mut pending.path, name)?;
            }
            EntryType::GNULongLink => {
                let name = read_long_name(source, &mut entry)?;
                set_once(source, &mut pending.link, name)?;
            }
            EntryType::XHeader if pax == Pax::Apply => apply_pax(source, &shown, &mut entry, &mut pending)?,
            EntryType::XHeader | EntryType::XGlobalHeader => {
                bail!("{}: entry {shown}: pax extended headers are not supported", source.pkg.display())
            }
            _ => {
                let size = entry.header().entry_size().map_err(|e| source.corrupt(e))?;
                if pending.size.is_some_and(|pax_size| pax_size != size) {
                    bail!(
                        "{}: entry {shown}: pax size {:?} differs from the header's {size}",
                        source.pkg.display(),
                        pending.size
                    );
                }
                let path = pending.path.unwrap_or_else(|| entry.path_bytes().into_owned());
                let link = pending.link.or_else(|| entry.link_name_bytes().map(|l| l.into_owned()));
                return Ok(Some(Member { entry, path, link }));
            }
        }
        extended = true;
    }
}

fn set_once(source: &Source<'_>, slot: &mut Option<Vec<u8>>, value: Vec<u8>) -> Result<()> {
    if slot.is_some() {
        bail!("{}: corrupt package: two long names for one entry", source.pkg.display());
    }
    *slot = Some(value);
    Ok(())
}

/// The body of a GNU long name or long link record, NULs trimmed.
fn read_long_name<R: Read>(source: &Source<'_>, entry: &mut tar::Entry<'_, R>) -> Result<Vec<u8>> {
    let size = entry.header().entry_size().map_err(|e| source.corrupt(e))?;
    if size > MAX_LONG_NAME {
        bail!("{}: a long name of {size} bytes is longer than {MAX_LONG_NAME}", source.pkg.display());
    }
    let mut name = Vec::new();
    entry.by_ref().take(MAX_LONG_NAME).read_to_end(&mut name).map_err(|e| source.corrupt(e))?;
    while name.last() == Some(&0) {
        name.pop();
    }
    Ok(name)
}

/// pax records that only describe the entry and change nothing an
/// extractor does with its data. libarchive's pax writer (pkg_create) puts
/// the `SCHILY.` device, inode and link count in every pax header it writes.
const HARMLESS_PAX_KEYS: &[&str] = &[
    "mtime",
    "atime",
    "ctime",
    "uid",
    "gid",
    "uname",
    "gname",
    "hdrcharset",
    "comment",
    "SCHILY.dev",
    "SCHILY.ino",
    "SCHILY.nlink",
];

/// Reads one pax extended header (bounded) and records what it says about
/// the next entry.
fn apply_pax<R: Read>(
    source: &Source<'_>,
    shown: &str,
    entry: &mut tar::Entry<'_, R>,
    pending: &mut Pending,
) -> Result<()> {
    let size = entry.header().entry_size().map_err(|e| source.corrupt(e))?;
    if size > MAX_PAX_HEADER {
        bail!("{}: entry {shown}: a pax header of {size} bytes is longer than {MAX_PAX_HEADER}", source.pkg.display());
    }
    let mut data = Vec::new();
    entry.by_ref().take(MAX_PAX_HEADER).read_to_end(&mut data).map_err(|e| source.corrupt(e))?;
    for record in pax_records(&data).map_err(|why| source.bad(shown, why))? {
        let (key, value) = record;
        match key {
            "path" => set_once(source, &mut pending.path, value.to_vec())?,
            "linkpath" => set_once(source, &mut pending.link, value.to_vec())?,
            "size" => {
                let parsed = std::str::from_utf8(value).ok().and_then(|v| v.parse::<u64>().ok());
                pending.size = Some(parsed.ok_or_else(|| source.bad(shown, "pax size is not a number"))?);
            }
            key if HARMLESS_PAX_KEYS.contains(&key) => {}
            key => return Err(source.bad(shown, format!("pax record {key} is not supported"))),
        }
    }
    Ok(())
}

/// The `key=value` records of a pax header (`<len> <key>=<value>\n`, the
/// length counting the whole record).
fn pax_records(mut data: &[u8]) -> Result<Vec<(&str, &[u8])>, String> {
    let mut records = Vec::new();
    while !data.is_empty() {
        let space = data.iter().position(|&b| b == b' ').ok_or("pax record without a length")?;
        let len: usize = std::str::from_utf8(&data[..space])
            .ok()
            .and_then(|l| l.parse().ok())
            .ok_or("pax record with a bad length")?;
        if len <= space + 1 || len > data.len() || data[len - 1] != b'\n' {
            return Err("pax record with a bad length".into());
        }
        let body = &data[space + 1..len - 1];
        let eq = body.iter().position(|&b| b == b'=').ok_or("pax record without =")?;
        let key = std::str::from_utf8(&body[..eq]).map_err(|_| "pax key is not UTF-8")?;
        records.push((key, &body[eq + 1..]));
        data = &data[len..];
    }
    Ok(records)
}

/// What an entry type is, for an error.
pub(crate) fn kind_name(kind: EntryType, link: Option<&str>) -> String {
    match kind {
        EntryType::Link => format!("is a hard link to {}", link.unwrap_or("?")),
        EntryType::Char => "is a character device".into(),
        EntryType::Block => "is a block device".into(),
        EntryType::Fifo => "is a fifo".into(),
        EntryType::Continuous => "is a contiguous file".into(),
        EntryType::GNUSparse => "is a sparse file".into(),
        other => format!("has the unsupported entry type {other:?}"),
    }
}

/// The special bit of `mode` that needs `setuid_ports`, if any: setuid,
/// setgid, or sticky on anything but a directory. Symlinks have none.
pub(crate) fn special_mode(kind: EntryType, mode: u32) -> Option<&'static str> {
    if kind == EntryType::Symlink {
        None
    } else if mode & 0o4000 != 0 {
        Some("setuid")
    } else if mode & 0o2000 != 0 {
        Some("setgid")
    } else if mode & 0o1000 != 0 && kind != EntryType::Directory {
        Some("sticky")
    } else {
        None
    }
}

/// Copies `from` to `to`, returning the lower-case hex digest `D` of what
/// went through. Read errors mean a damaged package (or one past its
/// limits), write errors a problem at the destination.
pub(crate) fn copy_hashed<D: Digest>(
    source: &Source<'_>,
    shown: &str,
    from: &mut impl Read,
    mut to: impl Write,
) -> Result<String> {
    let pkg = source.pkg;
    let mut hasher = D::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(source.corrupt(e)),
        };
        hasher.update(&buf[..n]);
        to.write_all(&buf[..n]).with_context(|| format!("{}: entry {shown}: cannot write", pkg.display()))?;
    }
    to.flush().with_context(|| format!("{}: entry {shown}: cannot write", pkg.display()))?;
    Ok(hex(&hasher.finalize()))
}

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An archive path made relative to `/` (`./` and repeated `/` dropped), or
/// why it is unsafe.
pub(crate) fn entry_path(raw: &[u8]) -> Result<String, &'static str> {
    let path = std::str::from_utf8(raw).map_err(|_| "path is not UTF-8")?;
    if path.starts_with('/') {
        return Err("unsafe path (absolute)");
    }
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err("unsafe path (contains ..)"),
            _ => parts.push(part),
        }
    }
    if parts.is_empty() {
        return Err("empty path");
    }
    Ok(parts.join("/"))
}

/// Whether the symlink at `rel` (relative to `/`) with `target` resolves,
/// once installed, to `prefix` or below it. Resolved lexically: an absolute
/// target from `/`, a relative one from the symlink's directory. `..` may
/// only lead the target: the symlink's directory is a real directory (the
/// installer refuses symlinked parents), so leading `..` climb real
/// directories, while a `..` after a name could climb out of whatever that
/// name is, e.g. another symlink. The names that follow stay below the
/// point reached, and symlinks among them obey the same rule.
pub(crate) fn link_stays_inside(rel: &str, target: &[u8], prefix: &str) -> Result<(), &'static str> {
    let target = std::str::from_utf8(target).map_err(|_| "(not UTF-8) is not allowed in")?;
    if target.is_empty() {
        return Err("(empty) is not allowed in");
    }
    let mut at: Vec<&str> = if target.starts_with('/') {
        Vec::new()
    } else {
        rel.split('/').collect::<Vec<_>>().split_last().map_or(Vec::new(), |(_, dir)| dir.to_vec())
    };
    let mut named = false;
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." if named => return Err("has .. after a name; it could climb out of"),
            ".." => {
                if at.pop().is_none() {
                    return Err("points outside");
                }
            }
            name => {
                named = true;
                at.push(name);
            }
        }
    }
    if under_prefix(&at.join("/"), prefix) {
        Ok(())
    } else {
        Err("points outside")
    }
}

/// `rel` is `prefix` or below it (both relative to `/`; "" is `/`).
pub(crate) fn under_prefix(rel: &str, prefix: &str) -> bool {
    prefix.is_empty() || rel == prefix || rel.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_paths_are_normalised_or_refused() {
        assert_eq!(entry_path(b"usr/local/bin/x"), Ok("usr/local/bin/x".into()));
        assert_eq!(entry_path(b"./usr//local/"), Ok("usr/local".into()));
        assert_eq!(entry_path(b"/etc/passwd"), Err("unsafe path (absolute)"));
        assert_eq!(entry_path(b"usr/local/../../etc"), Err("unsafe path (contains ..)"));
        assert_eq!(entry_path(b"./"), Err("empty path"));
    }

    #[test]
    fn symlink_targets_must_stay_in_the_prefix() {
        let ok = |rel: &str, target: &str| link_stays_inside(rel, target.as_bytes(), "usr/local");
        assert_eq!(ok("usr/local/lib/libx.so", "libx.so.1"), Ok(()));
        assert_eq!(ok("usr/local/bin/x", "../libexec/x"), Ok(()));
        assert_eq!(ok("usr/local/bin/x", "/usr/local/libexec/x"), Ok(()));
        assert_eq!(ok("usr/local/bin/x", "./.././share/x"), Ok(()));
        assert_eq!(ok("usr/local/bin/up", ".."), Ok(()));
        assert_eq!(ok("usr/local/bin/x", "/etc/shadow"), Err("points outside"));
        assert_eq!(ok("usr/local/bin/x", "../../../etc/shadow"), Err("points outside"));
        assert_eq!(ok("usr/local/bin/x", "../../../../../.."), Err("points outside"));
        assert_eq!(ok("usr/local/bin/x", "/"), Err("points outside"));
        assert_eq!(ok("usr/local/x", "../localx/y"), Err("points outside"));
        assert_eq!(ok("usr/local/x", "bin/up/../../etc"), Err("has .. after a name; it could climb out of"));
        assert!(ok("usr/local/x", "").is_err());
    }

    #[test]
    fn prefix_containment() {
        assert!(under_prefix("usr/local/bin", "usr/local"));
        assert!(under_prefix("usr/local", "usr/local"));
        assert!(!under_prefix("usr/localx/bin", "usr/local"));
        assert!(!under_prefix("etc", "usr/local"));
        assert!(under_prefix("etc", ""));
    }

    #[test]
    fn pax_records_are_parsed_by_their_lengths() {
        let data = b"32 path=usr/pkg/share/a b=c.txt\n12 uid=1000\n";
        assert_eq!(pax_records(data).unwrap(), [("path", &b"usr/pkg/share/a b=c.txt"[..]), ("uid", &b"1000"[..])]);
        for bad in [&b"5 x=1\n"[..], b"99 path=x\n", b"path=x\n", b"8 pathx\n", b"6 a=bc\n"] {
            assert!(pax_records(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn special_modes_need_setuid_ports() {
        assert_eq!(special_mode(EntryType::Regular, 0o4755), Some("setuid"));
        assert_eq!(special_mode(EntryType::Directory, 0o2755), Some("setgid"));
        assert_eq!(special_mode(EntryType::Regular, 0o1644), Some("sticky"));
        assert_eq!(special_mode(EntryType::Directory, 0o1777), None);
        assert_eq!(special_mode(EntryType::Symlink, 0o7777), None);
        assert_eq!(special_mode(EntryType::Regular, 0o755), None);
    }
}
