//! Reading, verifying and installing one package file.
//!
//! Everything goes through one streaming pass (`check_archive`) that
//! decompresses the package, checks `+MANIFEST` and then every entry against
//! it, and hands each checked entry to a `Sink`: `Discard` for
//! [`verify`], the installer's stager for [`install`]. Contents are hashed
//! while they stream to the sink, so no file is held in memory.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom, Write};
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use sha2::{Digest, Sha256};
use tar::EntryType;

use super::fsutil::sha256_hex;
use super::install::Stager;
use super::manifest::MANIFEST_ENTRY;

// The whole package API is reachable here too (`repo::package::verify`, ...).
pub use super::fsutil::{place_atomically, sha256_file};
pub use super::manifest::{Manifest, ManifestDep, ManifestFile};

/// First four bytes of every zstd frame.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
/// Bound on `+MANIFEST` so a hostile package cannot exhaust memory.
const MAX_MANIFEST_BYTES: u64 = 16 << 20;

type PkgArchive = tar::Archive<zstd::Decoder<'static, BufReader<File>>>;

/// Reads the `+MANIFEST` of `pkg`, decompressing only as far as that first
/// entry. The rest of the package is not checked; use [`verify`] for that.
pub fn read_manifest(pkg: &Path) -> Result<Manifest> {
    let mut archive = open_archive(pkg)?;
    let mut entries = archive.entries().map_err(|e| corrupt(pkg, e))?;
    first_manifest(pkg, &mut entries).map(|(manifest, _raw)| manifest)
}

/// Checks all of `pkg` (see the module docs of [`crate::repo`]) and that it
/// is the package `expected_pkgname` (`name-version`).
pub fn verify(pkg: &Path, expected_pkgname: &str) -> Result<Manifest> {
    let (manifest, _raw) = check_archive(pkg, Some(expected_pkgname), &mut Discard)?;
    Ok(manifest)
}

/// Checks `pkg` while extracting it under `root`, then records it in
/// `root/<prefix>/.pkgdb/<name>/+MANIFEST` (the manifest exactly as packed).
/// Nothing lands under a final name unless the whole package checked out.
pub fn install(pkg: &Path, root: &Path) -> Result<Manifest> {
    let mut stager = Stager::new(root).with_context(|| format!("{}: cannot install", pkg.display()))?;
    let (manifest, raw) = check_archive(pkg, None, &mut stager)?;
    let record = pkgdb_entry(&manifest);
    stager
        .stage_bytes(&record, &raw)
        .with_context(|| format!("{}: cannot record /{record}", pkg.display()))?;
    stager
        .commit()
        .with_context(|| format!("{}: cannot install", pkg.display()))?;
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

/// Opens `pkg` as a zstd-compressed tar, refusing anything without the
/// zstd magic number up front.
fn open_archive(pkg: &Path) -> Result<PkgArchive> {
    let mut file = File::open(pkg).with_context(|| format!("{}: cannot open package", pkg.display()))?;
    let mut magic = [0u8; 4];
    if file.read_exact(&mut magic).is_err() || magic != ZSTD_MAGIC {
        bail!("{}: not a package: not zstd-compressed", pkg.display());
    }
    file.seek(SeekFrom::Start(0))
        .with_context(|| format!("{}: cannot read package", pkg.display()))?;
    let decoder = zstd::Decoder::new(file).with_context(|| format!("{}: cannot start zstd", pkg.display()))?;
    Ok(tar::Archive::new(decoder))
}

fn corrupt(pkg: &Path, err: io::Error) -> anyhow::Error {
    anyhow::Error::new(err).context(format!("{}: corrupt or truncated package", pkg.display()))
}

/// Reads and parses the first entry, which must be `+MANIFEST`; returns it
/// with its raw bytes.
fn first_manifest<R: Read>(pkg: &Path, entries: &mut tar::Entries<'_, R>) -> Result<(Manifest, Vec<u8>)> {
    let mut entry = match entries.next() {
        None => bail!(
            "{}: not a package: empty archive, expected {MANIFEST_ENTRY} first",
            pkg.display()
        ),
        Some(entry) => entry.map_err(|e| corrupt(pkg, e))?,
    };
    let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
    if name != MANIFEST_ENTRY {
        bail!(
            "{}: not a package: first entry is {name}, expected {MANIFEST_ENTRY}",
            pkg.display()
        );
    }
    if entry.header().entry_type() != EntryType::Regular {
        bail!(
            "{}: not a package: {MANIFEST_ENTRY} is not a regular file",
            pkg.display()
        );
    }
    let mut raw = Vec::new();
    (&mut entry)
        .take(MAX_MANIFEST_BYTES + 1)
        .read_to_end(&mut raw)
        .map_err(|e| corrupt(pkg, e))?;
    if raw.len() as u64 > MAX_MANIFEST_BYTES {
        bail!(
            "{}: {MANIFEST_ENTRY} is larger than {MAX_MANIFEST_BYTES} bytes",
            pkg.display()
        );
    }
    Ok((Manifest::parse(pkg, &raw)?, raw))
}

/// The full check of `pkg`, feeding every entry after `+MANIFEST` to `sink`.
/// Returns the manifest and its raw bytes.
fn check_archive(pkg: &Path, expected_pkgname: Option<&str>, sink: &mut dyn Sink) -> Result<(Manifest, Vec<u8>)> {
    let mut archive = open_archive(pkg)?;
    let (manifest, raw) = {
        let mut entries = archive.entries().map_err(|e| corrupt(pkg, e))?;
        let (manifest, raw) = first_manifest(pkg, &mut entries)?;
        if let Some(want) = expected_pkgname {
            check_pkgname(pkg, &manifest, want)?;
        }
        let mut checker = Checker::new(pkg, &manifest);
        for entry in entries {
            checker.entry(&mut entry.map_err(|e| corrupt(pkg, e))?, sink)?;
        }
        checker.all_present()?;
        (manifest, raw)
    };
    // Decompress to the very end: a damaged tail is an error too.
    io::copy(&mut archive.into_inner(), &mut io::sink()).map_err(|e| corrupt(pkg, e))?;
    Ok((manifest, raw))
}

fn check_pkgname(pkg: &Path, manifest: &Manifest, want: &str) -> Result<()> {
    let got = manifest.pkgname();
    if got != want {
        bail!("{}: package is {got}, expected {want}", pkg.display());
    }
    Ok(())
}

/// Checks entries against the manifest, one at a time.
struct Checker<'a> {
    pkg: &'a Path,
    prefix: &'a str,
    expected: HashMap<String, String>,
    seen: HashSet<String>,
    manifest: &'a Manifest,
}

impl<'a> Checker<'a> {
    fn new(pkg: &'a Path, manifest: &'a Manifest) -> Self {
        Checker {
            pkg,
            prefix: manifest.prefix_rel(),
            expected: manifest.expected_entries(),
            seen: HashSet::new(),
            manifest,
        }
    }

    fn bad(&self, entry: &str, why: impl std::fmt::Display) -> anyhow::Error {
        anyhow!("{}: entry {entry}: {why}", self.pkg.display())
    }

    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>, sink: &mut dyn Sink) -> Result<()> {
        let shown = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let rel = entry_path(&entry.path_bytes()).map_err(|why| self.bad(&shown, why))?;
        let kind = entry.header().entry_type();
        let mode = entry.header().mode().map_err(|e| corrupt(self.pkg, e))? & 0o7777;
        if kind.is_dir() {
            return self.directory(&rel, &shown, mode, sink);
        }
        self.check_listed(&rel, &shown)?;
        let got = match kind {
            EntryType::Regular | EntryType::Continuous => self.regular(&rel, &shown, mode, entry, sink)?,
            EntryType::Symlink => self.symlink(&rel, &shown, entry, sink)?,
            other => return Err(self.bad(&shown, format!("unsupported entry type {other:?}"))),
        };
        let want = &self.expected[&rel];
        if &got != want {
            return Err(self.bad(&shown, format!("sha256 {got} does not match +MANIFEST ({want})")));
        }
        Ok(())
    }

    /// The entry lies in the prefix, is listed, and comes for the first time.
    fn check_listed(&mut self, rel: &str, shown: &str) -> Result<()> {
        if !under_prefix(rel, self.prefix) {
            return Err(self.bad(shown, format!("outside prefix {}", self.manifest.prefix)));
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
        let out = sink
            .regular(rel, mode)
            .with_context(|| format!("{}: entry {shown}", self.pkg.display()))?;
        copy_hashed(self.pkg, shown, data, out)
    }

    fn symlink<R: Read>(
        &self,
        rel: &str,
        shown: &str,
        entry: &tar::Entry<'_, R>,
        sink: &mut dyn Sink,
    ) -> Result<String> {
        let target = entry
            .link_name_bytes()
            .ok_or_else(|| self.bad(shown, "symlink without a target"))?;
        sink.symlink(rel, &target)
            .with_context(|| format!("{}: entry {shown}", self.pkg.display()))?;
        Ok(sha256_hex(&target))
    }

    /// Directories are not packed by the framework; tolerate them inside the
    /// prefix or on the way to it.
    fn directory(&self, rel: &str, shown: &str, mode: u32, sink: &mut dyn Sink) -> Result<()> {
        if !under_prefix(rel, self.prefix) && !under_prefix(self.prefix, rel) {
            return Err(self.bad(shown, format!("outside prefix {}", self.manifest.prefix)));
        }
        if self.expected.contains_key(rel) {
            return Err(self.bad(shown, "is a directory, but +MANIFEST lists a file"));
        }
        sink.directory(rel, mode)
            .with_context(|| format!("{}: entry {shown}", self.pkg.display()))
    }

    /// Every listed file was in the archive.
    fn all_present(&self) -> Result<()> {
        match self
            .manifest
            .files
            .iter()
            .find(|f| !self.seen.contains(f.path.trim_start_matches('/')))
        {
            Some(f) => bail!(
                "{}: {} is listed in +MANIFEST but missing from the archive",
                self.pkg.display(),
                f.path
            ),
            None => Ok(()),
        }
    }
}

/// Copies `from` to `to`, returning the sha256 of what went through. Read
/// errors mean a damaged package, write errors a problem at the destination.
fn copy_hashed(pkg: &Path, shown: &str, from: &mut impl Read, mut to: impl Write) -> Result<String> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(corrupt(pkg, e)),
        };
        hasher.update(&buf[..n]);
        to.write_all(&buf[..n])
            .with_context(|| format!("{}: entry {shown}: cannot write", pkg.display()))?;
    }
    to.flush()
        .with_context(|| format!("{}: entry {shown}: cannot write", pkg.display()))?;
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
    fn prefix_containment() {
        assert!(under_prefix("usr/local/bin", "usr/local"));
        assert!(under_prefix("usr/local", "usr/local"));
        assert!(!under_prefix("usr/localx/bin", "usr/local"));
        assert!(!under_prefix("etc", "usr/local"));
        assert!(under_prefix("etc", ""));
    }
}
