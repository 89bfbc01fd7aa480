//! Reading, verifying and installing one package file.
//!
//! Everything goes through one streaming pass (`check_archive`) that
//! decompresses the package, checks `+MANIFEST` and then every entry against
//! it, and hands each checked entry to a `Sink`: `Discard` for
//! [`verify`], the installer's stager for [`install`]. Contents are hashed
//! while they stream to the sink, so no file is held in memory.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use sha2::Sha256;
use tar::EntryType;

use super::archive::{
    copy_hashed, entry_path, kind_name, link_stays_inside, next_entry, open_archive, raw_entries, read_to_end,
    special_mode, under_prefix, Member, Pax, Source, ZSTD,
};
use super::fsutil::{place_open_file, sha256_hex};
use super::install::Stager;
use super::manifest::MANIFEST_ENTRY;

// The whole package API is reachable here too (`repo::package::verify`, ...).
pub use super::fsutil::{place_atomically, sha256_file};
pub use super::manifest::{Manifest, ManifestDep, ManifestFile};
pub use super::policy::{PackagePolicy, LOCALBASE};

/// Bound on `+MANIFEST` so a hostile package cannot exhaust memory.
const MAX_MANIFEST_BYTES: u64 = 16 << 20;

/// Reads the `+MANIFEST` of `pkg`, decompressing only as far as that first
/// entry. The rest of the package is not checked; use [`verify`] for that.
/// A symlink, fifo or device is refused as for [`verify`].
pub fn read_manifest(pkg: &Path) -> Result<Manifest> {
    let unlimited = PackagePolicy::any_origin("/", u64::MAX, u64::MAX);
    let (mut archive, source, _file) = open_archive(pkg, &unlimited, &ZSTD)?;
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
    let (mut archive, source, file) = open_archive(pkg, policy, &ZSTD)?;
    let (manifest, raw) = {
        let mut entries = raw_entries(&mut archive, &source)?;
        let (manifest, raw) = first_manifest(&source, &mut entries)?;
        if let Some(want) = expected_pkgname {
            check_pkgname(pkg, &manifest, want)?;
        }
        check_manifest(pkg, &manifest, policy)?;
        let mut checker = Checker::new(&source, &manifest);
        while let Some(mut member) = next_entry(&source, &mut entries, Pax::Refuse)? {
            checker.entry(&mut member, sink)?;
        }
        checker.all_present()?;
        (manifest, raw)
    };
    // Decompress to the very end: a damaged tail is an error too, and so
    // is a tail that expands past the limit.
    read_to_end(archive, &source)?;
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
        self.source.bad(entry, why)
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
        match special_mode(kind, mode) {
            Some(special) if !self.source.policy.allow_setuid => bail!(
                "{}: {rel} is {special} (mode {mode:04o}); origin {} is not in setuid_ports",
                self.pkg.display(),
                self.manifest.full_origin()
            ),
            _ => Ok(()),
        }
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
        copy_hashed::<Sha256>(self.source, shown, data, out)
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
