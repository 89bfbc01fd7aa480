//! Reading, verifying and installing one package file.
//!
//! Everything goes through one streaming pass (`check_archive`) that
//! decompresses the package, checks `+MANIFEST` and then every entry against
//! it, and hands each checked entry to a `Sink`: `Discard` for
//! [`verify`], the installer's stager for [`install`]. Contents are hashed
//! while they stream to the sink, so no file is held in memory.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use anyhow::{anyhow, bail, Context, Result};
use sha2::{Digest, Sha256};
use tar::EntryType;

use super::fsutil::{open_untrusted, place_open_file, sha256_hex};
use super::install::Stager;
use super::manifest::MANIFEST_ENTRY;

// The whole package API is reachable here too (`repo::package::verify`, ...).
pub use super::fsutil::{place_atomically, sha256_file};
pub use super::manifest::{Manifest, ManifestDep, ManifestFile};
pub use super::policy::{PackagePolicy, LOCALBASE};

/// First four bytes of every zstd frame.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
/// Bound on `+MANIFEST` so a hostile package cannot exhaust memory.
const MAX_MANIFEST_BYTES: u64 = 16 << 20;
/// Bound on a GNU long name or long link target (PATH_MAX).
const MAX_LONG_NAME: u64 = 4096;

/// The decompressed package: the file, metered, through zstd, metered.
type PkgReader = Metered<zstd::Decoder<'static, BufReader<Metered<File>>>>;
type PkgArchive = tar::Archive<PkgReader>;

/// Reads the `+MANIFEST` of `pkg`, decompressing only as far as that first
/// entry. The rest of the package is not checked; use [`verify`] for that.
/// A symlink, fifo or device is refused as for [`verify`].
pub fn read_manifest(pkg: &Path) -> Result<Manifest> {
    let unlimited = PackagePolicy::any_origin("/", u64::MAX, u64::MAX);
    let (mut archive, source, _file) = open_archive(pkg, &unlimited)?;
    let mut entries = raw_entries(&mut archive, &source)?;
    first_manifest(&source, &mut entries).map(|(manifest, _raw)| manifest)
}

/// Checks all of `pkg` (see the module docs of [`crate::repo`]) against
/// `policy` and that it is the package `expected_pkgname` (`name-version`).
pub fn verify(pkg: &Path, expected_pkgname: &str, policy: &PackagePolicy) -> Result<Manifest> {
    let (manifest, _raw) = check_archive(pkg, Some(expected_pkgname), policy, &mut Discard)?.0;
    Ok(manifest)
}

/// Verifies `pkg` as [`verify`] does and copies it into the repository
/// directory `all_dir` under its own file name ([`place_atomically`]'s
/// temporary, fsync and rename), from the very descriptor it verified.
/// Nothing reaches `all_dir` unless the whole package checked out.
pub fn deliver(pkg: &Path, expected_pkgname: &str, policy: &PackagePolicy, all_dir: &Path) -> Result<PathBuf> {
    let ((_manifest, _raw), mut file) = check_archive(pkg, Some(expected_pkgname), policy, &mut Discard)?;
    let name = pkg.file_name().ok_or_else(|| anyhow!("{}: has no file name", pkg.display()))?;
    std::fs::create_dir_all(all_dir).with_context(|| format!("cannot create {}", all_dir.display()))?;
    place_open_file(&mut file, name, policy.max_file_size, all_dir)
        .with_context(|| format!("{}: cannot place into {}", pkg.display(), all_dir.display()))
}

/// Checks `pkg` against `policy` while extracting it under `root`, then
/// records it in `root/<prefix>/.pkgdb/<name>/+MANIFEST` (the manifest
/// exactly as packed). Nothing lands under a final name unless the whole
/// package checked out, and a failed install removes the directories it
/// created.
pub fn install(pkg: &Path, root: &Path, policy: &PackagePolicy) -> Result<Manifest> {
    let mut stager = Stager::new(root).with_context(|| format!("{}: cannot install", pkg.display()))?;
    let (manifest, raw) = check_archive(pkg, None, policy, &mut stager)?.0;
    let record = pkgdb_entry(&manifest);
    stager.stage_bytes(&record, &raw).with_context(|| format!("{}: cannot record /{record}", pkg.display()))?;
    stager.commit().with_context(|| format!("{}: cannot install", pkg.display()))?;
    Ok(manifest)
}

/// Where the installed manifest lives, relative to the root.
fn pkgdb_entry(manifest: &Manifest) -> String {
    let prefix = manifest.prefix_rel();
    let sep = if prefix.is_empty() { "" } else { "/" };
    format!("{prefix}{sep}.pkgdb/{}/{MANIFEST_ENTRY}", manifest.name)
}

/// Receives every checked entry; paths are relative to `/`.
pub(crate) trait Sink {
    /// Where the contents of regular file `rel` (mode `mode`) go.
    fn regular(&mut self, rel: &str, mode: u32) -> Result<Box<dyn Write + '_>>;
    fn symlink(&mut self, rel: &str, target: &[u8]) -> Result<()>;
    fn directory(&mut self, rel: &str, mode: u32) -> Result<()>;
}

/// The sink of [`verify`]: checks only.
struct Discard;

impl Sink for Discard {
    fn regular(&mut self, _rel: &str, _mode: u32) -> Result<Box<dyn Write + '_>> {
        Ok(Box::new(io::sink()))
    }
    fn symlink(&mut self, _rel: &str, _target: &[u8]) -> Result<()> {
        Ok(())
    }
    fn directory(&mut self, _rel: &str, _mode: u32) -> Result<()> {
        Ok(())
    }
}

/// Which bound a read went past.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Overrun {
    File,
    Expanded,
}

/// A reader that counts what goes through it and fails (recording why in
/// the shared flag) as soon as the count passes `max`.
struct Metered<R> {
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
struct Source<'a> {
    pkg: &'a Path,
    policy: &'a PackagePolicy,
    overrun: Rc<Cell<Option<Overrun>>>,
    /// Bytes out of the decompressor so far.
    expanded: Rc<Cell<u64>>,
}

impl Source<'_> {
    /// A read error: past a limit, or a damaged package.
    fn corrupt(&self, err: io::Error) -> anyhow::Error {
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
    fn charge(&self, size: u64) -> Result<()> {
        if self.expanded.get().saturating_add(size) > self.policy.max_expanded_size {
            self.overrun.set(Some(Overrun::Expanded));
            return Err(self.too_large());
        }
        Ok(())
    }
}

/// Opens `pkg` as a zstd-compressed tar (see [`open_untrusted`]: no
/// symlink, fifo or device, at most `max_file_size` bytes), refusing
/// anything without the zstd magic number up front. Returns the archive
/// and a second descriptor of the same open file.
fn open_archive<'a>(pkg: &'a Path, policy: &'a PackagePolicy) -> Result<(PkgArchive, Source<'a>, File)> {
    let mut file = open_untrusted(pkg, policy.max_file_size, &policy.file_limit(), None)?;
    let mut magic = [0u8; 4];
    if file.read_exact(&mut magic).is_err() || magic != ZSTD_MAGIC {
        bail!("{}: not a package: not zstd-compressed", pkg.display());
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
    let decoder = zstd::Decoder::new(compressed).with_context(|| format!("{}: cannot start zstd", pkg.display()))?;
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
fn raw_entries<'a>(archive: &'a mut PkgArchive, source: &Source<'_>) -> Result<tar::Entries<'a, PkgReader>> {
    Ok(archive.entries().map_err(|e| source.corrupt(e))?.raw(true))
}

/// One archive member with its full path and link target.
struct Member<'a, R: Read> {
    entry: tar::Entry<'a, R>,
    path: Vec<u8>,
    link: Option<Vec<u8>>,
}

/// The next member, GNU long name (`L`) and long link (`K`) records applied
/// to it; pax headers are refused (the framework writes GNU tar).
fn next_entry<'a, R: Read>(source: &Source<'_>, entries: &mut tar::Entries<'a, R>) -> Result<Option<Member<'a, R>>> {
    let (mut long_name, mut long_link) = (None, None);
    loop {
        let mut entry = match entries.next() {
            None if long_name.is_some() || long_link.is_some() => {
                bail!("{}: corrupt or truncated package: long name without an entry", source.pkg.display())
            }
            None => return Ok(None),
            Some(entry) => entry.map_err(|e| source.corrupt(e))?,
        };
        let kind = entry.header().entry_type();
        let slot = match kind {
            EntryType::GNULongName => &mut long_name,
            EntryType::GNULongLink => &mut long_link,
            EntryType::XHeader | EntryType::XGlobalHeader => bail!(
                "{}: entry {}: pax extended headers are not supported",
                source.pkg.display(),
                String::from_utf8_lossy(&entry.path_bytes())
            ),
            _ => {
                let path = long_name.unwrap_or_else(|| entry.path_bytes().into_owned());
                let link = long_link.or_else(|| entry.link_name_bytes().map(|l| l.into_owned()));
                return Ok(Some(Member { entry, path, link }));
            }
        };
        if slot.is_some() {
            bail!("{}: corrupt package: two long names for one entry", source.pkg.display());
        }
        let size = entry.header().entry_size().map_err(|e| source.corrupt(e))?;
        if size > MAX_LONG_NAME {
            bail!("{}: a long name of {size} bytes is longer than {MAX_LONG_NAME}", source.pkg.display());
        }
        let mut name = Vec::new();
        (&mut entry).take(MAX_LONG_NAME).read_to_end(&mut name).map_err(|e| source.corrupt(e))?;
        while name.last() == Some(&0) {
            name.pop();
        }
        *slot = Some(name);
    }
}

/// Reads and parses the first entry, which must be `+MANIFEST`; returns it
/// with its raw bytes.
fn first_manifest<R: Read>(source: &Source<'_>, entries: &mut tar::Entries<'_, R>) -> Result<(Manifest, Vec<u8>)> {
    let pkg = source.pkg;
    let mut entry = match entries.next() {
        None => bail!("{}: not a package: empty archive, expected {MANIFEST_ENTRY} first", pkg.display()),
        Some(entry) => entry.map_err(|e| source.corrupt(e))?,
    };
    let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
    if name != MANIFEST_ENTRY {
        bail!("{}: not a package: first entry is {name}, expected {MANIFEST_ENTRY}", pkg.display());
    }
    if entry.header().entry_type() != EntryType::Regular {
        bail!("{}: not a package: {MANIFEST_ENTRY} is not a regular file", pkg.display());
    }
    let size = entry.header().entry_size().map_err(|e| source.corrupt(e))?;
    if size > MAX_MANIFEST_BYTES {
        bail!("{}: {MANIFEST_ENTRY} is larger than {MAX_MANIFEST_BYTES} bytes", pkg.display());
    }
    source.charge(size)?;
    let mut raw = Vec::new();
    (&mut entry).take(MAX_MANIFEST_BYTES + 1).read_to_end(&mut raw).map_err(|e| source.corrupt(e))?;
    Ok((Manifest::parse(pkg, &raw)?, raw))
}

/// The rules of `policy` that concern the manifest alone: the prefix and
/// the origin.
fn check_manifest(pkg: &Path, manifest: &Manifest, policy: &PackagePolicy) -> Result<()> {
    if manifest.prefix != policy.prefix {
        bail!("{}: prefix {} is not the framework's LOCALBASE {}", pkg.display(), manifest.prefix, policy.prefix);
    }
    if let Some(want) = &policy.expected_origin {
        let got = manifest.full_origin();
        if &got != want {
            bail!("{}: built by {got}, expected a package of {want}", pkg.display());
        }
    }
    Ok(())
}

/// The full check of `pkg`, feeding every entry after `+MANIFEST` to `sink`.
/// Returns the manifest and its raw bytes, and the opened package file.
fn check_archive(
    pkg: &Path,
    expected_pkgname: Option<&str>,
    policy: &PackagePolicy,
    sink: &mut dyn Sink,
) -> Result<((Manifest, Vec<u8>), File)> {
    let (mut archive, source, file) = open_archive(pkg, policy)?;
    let (manifest, raw) = {
        let mut entries = raw_entries(&mut archive, &source)?;
        let (manifest, raw) = first_manifest(&source, &mut entries)?;
        if let Some(want) = expected_pkgname {
            check_pkgname(pkg, &manifest, want)?;
        }
        check_manifest(pkg, &manifest, policy)?;
        let mut checker = Checker::new(&source, &manifest);
        while let Some(mut member) = next_entry(&source, &mut entries)? {
            checker.entry(&mut member, sink)?;
        }
        checker.all_present()?;
        (manifest, raw)
    };
    // Decompress to the very end: a damaged tail is an error too, and so
    // is a tail that expands past the limit.
    io::copy(&mut archive.into_inner(), &mut io::sink()).map_err(|e| source.corrupt(e))?;
    Ok(((manifest, raw), file))
}

fn check_pkgname(pkg: &Path, manifest: &Manifest, want: &str) -> Result<()> {
    let got = manifest.pkgname();
    if got != want {
        bail!("{}: package is {got}, expected {want}", pkg.display());
    }
    Ok(())
}

/// Checks entries against the manifest and the policy, one at a time.
struct Checker<'a> {
    source: &'a Source<'a>,
    pkg: &'a Path,
    prefix: &'a str,
    expected: HashMap<String, String>,
    seen: HashSet<String>,
    manifest: &'a Manifest,
}

impl<'a> Checker<'a> {
    fn new(source: &'a Source<'a>, manifest: &'a Manifest) -> Self {
        Checker {
            source,
            pkg: source.pkg,
            prefix: manifest.prefix_rel(),
            expected: manifest.expected_entries(),
            seen: HashSet::new(),
            manifest,
        }
    }

    fn bad(&self, entry: &str, why: impl std::fmt::Display) -> anyhow::Error {
        anyhow!("{}: entry {entry}: {why}", self.pkg.display())
    }

    fn outside(&self, entry: &str) -> anyhow::Error {
        anyhow!("{}: entry {entry} is outside the prefix {}", self.pkg.display(), self.manifest.prefix)
    }

    fn entry<R: Read>(&mut self, member: &mut Member<'_, R>, sink: &mut dyn Sink) -> Result<()> {
        let shown = String::from_utf8_lossy(&member.path).into_owned();
        let rel = entry_path(&member.path).map_err(|why| self.bad(&shown, why))?;
        let header = member.entry.header();
        let kind = header.entry_type();
        let mode = header.mode().map_err(|e| self.source.corrupt(e))? & 0o7777;
        let size = header.entry_size().map_err(|e| self.source.corrupt(e))?;
        self.source.charge(size)?;
        if !matches!(kind, EntryType::Regular | EntryType::Directory | EntryType::Symlink) {
            let link = member.link.as_deref().map(String::from_utf8_lossy);
            return Err(self.bad(
                &shown,
                format!(
                    "{}; only regular files, directories and symlinks may be packed",
                    kind_name(kind, link.as_deref())
                ),
            ));
        }
        self.check_mode(&rel, kind, mode)?;
        if kind == EntryType::Directory {
            return self.directory(&rel, &shown, mode, sink);
        }
        self.check_listed(&rel, &shown)?;
        let got = match kind {
            EntryType::Regular => self.regular(&rel, &shown, mode, &mut member.entry, sink)?,
            _ => self.symlink(&rel, &shown, member.link.as_deref(), sink)?,
        };
        let want = &self.expected[&rel];
        if &got != want {
            return Err(self.bad(&shown, format!("sha256 {got} does not match +MANIFEST ({want})")));
        }
        Ok(())
    }

    /// Setuid and setgid bits (and sticky on a file) need `setuid_ports`.
    fn check_mode(&self, rel: &str, kind: EntryType, mode: u32) -> Result<()> {
        if self.source.policy.allow_setuid || kind == EntryType::Symlink {
            return Ok(());
        }
        let special = if mode & 0o4000 != 0 {
            "setuid"
        } else if mode & 0o2000 != 0 {
            "setgid"
        } else if mode & 0o1000 != 0 && kind != EntryType::Directory {
            "sticky"
        } else {
            return Ok(());
        };
        bail!(
            "{}: {rel} is {special} (mode {mode:04o}); origin {} is not in setuid_ports",
            self.pkg.display(),
            self.manifest.full_origin()
        )
    }

    /// The entry lies strictly below the prefix, is listed, and comes for the
    /// first time.
    fn check_listed(&mut self, rel: &str, shown: &str) -> Result<()> {
        if !under_prefix(rel, self.prefix) || rel == self.prefix {
            return Err(self.outside(shown));
        }
        if !self.expected.contains_key(rel) {
            return Err(self.bad(shown, "not listed in +MANIFEST"));
        }
        if !self.seen.insert(rel.to_string()) {
            return Err(self.bad(shown, "appears twice in the archive"));
        }
        Ok(())
    }

    fn regular<R: Read>(&self, rel: &str, shown: &str, mode: u32, data: &mut R, sink: &mut dyn Sink) -> Result<String> {
        let out = sink.regular(rel, mode).with_context(|| format!("{}: entry {shown}", self.pkg.display()))?;
        copy_hashed(self.source, shown, data, out)
    }

    fn symlink(&self, rel: &str, shown: &str, target: Option<&[u8]>, sink: &mut dyn Sink) -> Result<String> {
        let target = target.ok_or_else(|| self.bad(shown, "symlink without a target"))?;
        if let Err(why) = link_stays_inside(rel, target, self.prefix) {
            return Err(self.bad(
                shown,
                format!("symlink to {} {why} the prefix {}", String::from_utf8_lossy(target), self.manifest.prefix),
            ));
        }
        sink.symlink(rel, target).with_context(|| format!("{}: entry {shown}", self.pkg.display()))?;
        Ok(sha256_hex(target))
    }

    /// Directories are not packed by the framework; tolerate them inside the
    /// prefix or on the way to it. Only those strictly inside are created
    /// with their mode; the others are left as the root has them.
    fn directory(&self, rel: &str, shown: &str, mode: u32, sink: &mut dyn Sink) -> Result<()> {
        if !under_prefix(rel, self.prefix) && !under_prefix(self.prefix, rel) {
            return Err(self.outside(shown));
        }
        if self.expected.contains_key(rel) {
            return Err(self.bad(shown, "is a directory, but +MANIFEST lists a file"));
        }
        if rel == self.prefix || !under_prefix(rel, self.prefix) {
            return Ok(());
        }
        sink.directory(rel, mode).with_context(|| format!("{}: entry {shown}", self.pkg.display()))
    }

    /// Every listed file was in the archive.
    fn all_present(&self) -> Result<()> {
        match self.manifest.files.iter().find(|f| !self.seen.contains(f.path.trim_start_matches('/'))) {
            Some(f) => bail!("{}: {} is listed in +MANIFEST but missing from the archive", self.pkg.display(), f.path),
            None => Ok(()),
        }
    }
}

/// What an entry type is, for an error.
fn kind_name(kind: EntryType, link: Option<&str>) -> String {
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

/// Copies `from` to `to`, returning the sha256 of what went through. Read
/// errors mean a damaged package (or one past its limits), write errors a
/// problem at the destination.
fn copy_hashed(source: &Source<'_>, shown: &str, from: &mut impl Read, mut to: impl Write) -> Result<String> {
    let pkg = source.pkg;
    let mut hasher = Sha256::new();
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
    Ok(format!("{:x}", hasher.finalize()))
}

/// An archive path made relative to `/` (`./` and repeated `/` dropped), or
/// why it is unsafe.
fn entry_path(raw: &[u8]) -> Result<String, &'static str> {
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
fn link_stays_inside(rel: &str, target: &[u8], prefix: &str) -> Result<(), &'static str> {
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
fn under_prefix(rel: &str, prefix: &str) -> bool {
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
}
