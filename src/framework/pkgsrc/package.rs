//! pkgsrc binary packages (`All/<PKGNAME>.tgz`) as `pkg_create` writes
//! them, and their verification before they enter the repository.
//!
//! # The format
//!
//! A gzip-compressed tar (libarchive, pax-restricted: ustar headers, a pax
//! header for a long name). Its first entry is `+CONTENTS`, the packing
//! list ([`super::plist`]); then the other metadata files in the order
//! `pkg_add` requires (`+COMMENT`, `+DESC`, then those present of
//! `+INSTALL`, `+DEINSTALL`, `+DISPLAY`, `+MTREE_DIRS`, `+BUILD_VERSION`,
//! `+BUILD_INFO`, `+SIZE_PKG`, `+SIZE_ALL`, `+PRESERVE`); then every file of
//! the packing list, in its order, relative to the `@cwd` prefix. A regular
//! file is listed with `@comment MD5:<md5>`, a symlink with `@comment
//! Symlink:<target>`; a second name of a hard-linked file is a tar hard
//! link to the first (pkg_create's libarchive link resolver; e.g.
//! archivers/rzip's `bin/rzip` → `bin/runzip`).
//!
//! # Trust
//!
//! The same rules as the bundled format (`repo::package`, "Packages are
//! data" in docs/ARCHITECTURE.md), through the same helpers
//! (`repo::archive`): the file opened untrusted and at most
//! `max_file_size`, gzip decoded to its very end (a truncated or damaged
//! stream is an error), every expanded byte metered against
//! `max_expanded_size`, declared sizes charged before reading. On top of
//! that, what pkgsrc's format needs:
//!
//! * `+CONTENTS` first, at most [`MAX_CONTENTS`] bytes, every other
//!   metadata file at most [`MAX_METADATA`]; metadata in pkg_add's order,
//!   each once, `+COMMENT` and `+DESC` present; `+VIEWS`, `+REQUIRED_BY`
//!   and `+INSTALLED_INFO` (pkgviews and pkgdb state) refused;
//! * `@name` is the expected PKGNAME, every `@cwd` is `policy.prefix`;
//! * the expected origin `cat/pkg[@variant]`: `+BUILD_INFO`'s `PKGPATH` is
//!   `cat/pkg`, and a MULTI_VERSION variant (a flavor named by its
//!   PKGBASE) is the PKGBASE of `@name`;
//! * every archive entry after the metadata is the next file of the packing
//!   list, by its exact name (pkg_add compares names, and refuses a
//!   misordered, missing or unlisted file; so do we, at delivery); entries
//!   are regular files whose MD5 matches, symlinks whose target is the
//!   listed one and resolves at or below the prefix, directories listed
//!   without a digest, or hard links (without data) to an earlier regular
//!   file of the package whose MD5 is theirs; nothing else;
//! * no setuid, setgid or sticky bit, in an entry's mode or in an `@mode`
//!   of the packing list, unless `policy.allow_setuid`.
//!
//! `+INSTALL`/`+DEINSTALL` scripts and `@exec`/`@unexec` commands are
//! package code: they are only ever run by the kit's `pkg_add` inside a
//! build sandbox, never by the coordinator, which only reads the metadata
//! as data ([`read_metadata`], for the repository index).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use md5::Md5;
use tar::EntryType;

use super::plist::{Contents, Listed, ListedFile};
use crate::repo::archive::{
    copy_hashed, entry_path, kind_name, link_stays_inside, next_entry, open_archive, raw_entries, read_to_end,
    special_mode, Expanded, Member, Pax, Source, GZIP,
};
use crate::repo::fsutil::place_open_file;
use crate::repo::index::{IndexSummary, RecordedDigests};
use crate::repo::{PackageFormat, PackagePolicy};

/// Bound on `+CONTENTS` (the packing list of a large package is a few MiB).
pub const MAX_CONTENTS: u64 = 16 << 20;
/// Bound on each other metadata file.
pub const MAX_METADATA: u64 = 4 << 20;

pub const CONTENTS: &str = "+CONTENTS";
pub const COMMENT: &str = "+COMMENT";
pub const DESC: &str = "+DESC";
pub const BUILD_INFO: &str = "+BUILD_INFO";
pub const SIZE_PKG: &str = "+SIZE_PKG";

/// The metadata files a package may carry, in the order pkg_add requires
/// (`add/perform.c`, `pkg_meta_descriptors`).
const METADATA_ORDER: &[&str] = &[
    CONTENTS,
    COMMENT,
    DESC,
    "+INSTALL",
    "+DEINSTALL",
    "+DISPLAY",
    "+MTREE_DIRS",
    "+BUILD_VERSION",
    BUILD_INFO,
    SIZE_PKG,
    "+SIZE_ALL",
    "+PRESERVE",
];
/// Metadata pkg_add would take from a package but that no package we build
/// carries: pkgviews and the state of an installed package's pkgdb entry.
const REFUSED_METADATA: &[&str] = &["+VIEWS", "+REQUIRED_BY", "+INSTALLED_INFO"];
/// Metadata a package must have (pkg_add and pkg_info refuse it without).
const REQUIRED_METADATA: &[&str] = &[CONTENTS, COMMENT, DESC];

/// pkgsrc's package format: `All/<PKGNAME>.tgz`, indexed by
/// `All/pkg_summary.{gz,zst}` ([`super::summary`]).
pub struct Tgz;

impl PackageFormat for Tgz {
    fn extension(&self) -> &'static str {
        "tgz"
    }

    fn verify(&self, pkg: &Path, expected_pkgname: &str, policy: &PackagePolicy) -> Result<()> {
        verify(pkg, expected_pkgname, policy).map(drop)
    }

    fn deliver(&self, pkg: &Path, expected_pkgname: &str, policy: &PackagePolicy, all_dir: &Path) -> Result<PathBuf> {
        deliver(pkg, expected_pkgname, policy, all_dir)
    }

    fn rebuild_index(&self, packages_dir: &Path, recorded: &RecordedDigests) -> Result<IndexSummary> {
        super::summary::rebuild_index(packages_dir, recorded)
    }
}

/// The metadata of a package: its packing list and the other `+` files.
#[derive(Debug, Clone)]
pub struct Metadata {
    pub contents: Contents,
    /// Every metadata file but `+CONTENTS`, as stored.
    pub files: BTreeMap<&'static str, Vec<u8>>,
}

impl Metadata {
    pub fn file(&self, name: &str) -> Option<&[u8]> {
        self.files.get(name).map(Vec::as_slice)
    }

    /// The value of `var` in `+BUILD_INFO` (`VAR=value` or `VAR= value`,
    /// as pkg_install's `var_get` reads it), if set.
    pub fn build_info(&self, var: &str) -> Option<&str> {
        let text = std::str::from_utf8(self.file(BUILD_INFO)?).ok()?;
        text.lines().find_map(|line| {
            let value = line.strip_prefix(var)?.strip_prefix('=')?;
            Some(value.strip_prefix(' ').unwrap_or(value))
        })
    }
}

/// Reads the metadata of `pkg` for the repository index, decompressing
/// only as far as the first file entry. The files are not checked; the
/// package was verified when it was delivered. No size cap on the file,
/// the metadata bounds still hold; a symlink, fifo or device is refused.
pub fn read_metadata(pkg: &Path) -> Result<Metadata> {
    let unlimited = PackagePolicy::any_origin("/", u64::MAX, u64::MAX);
    let (mut archive, source, _file) = open_archive(pkg, &unlimited, &GZIP)?;
    let mut entries = raw_entries(&mut archive, &source)?;
    read_metadata_entries(&source, &mut entries).map(|(metadata, _first_file)| metadata)
}

/// Checks all of `pkg` (module doc) against `policy` and that it is the
/// package `expected_pkgname`.
pub fn verify(pkg: &Path, expected_pkgname: &str, policy: &PackagePolicy) -> Result<Metadata> {
    check_archive(pkg, expected_pkgname, policy).map(|(metadata, _file)| metadata)
}

/// Verifies `pkg` as [`verify`] does and copies it into `all_dir` under
/// its own name (temporary, fsync, rename) from the very descriptor it
/// verified. Nothing reaches `all_dir` unless the whole package checked out.
pub fn deliver(pkg: &Path, expected_pkgname: &str, policy: &PackagePolicy, all_dir: &Path) -> Result<PathBuf> {
    let (_metadata, mut file) = check_archive(pkg, expected_pkgname, policy)?;
    let name = pkg.file_name().ok_or_else(|| anyhow!("{}: has no file name", pkg.display()))?;
    std::fs::create_dir_all(all_dir).with_context(|| format!("cannot create {}", all_dir.display()))?;
    place_open_file(&mut file, name, policy.max_file_size, all_dir)
        .with_context(|| format!("{}: cannot place into {}", pkg.display(), all_dir.display()))
}

/// The one streaming pass: metadata, its rules, every file, the tail.
fn check_archive(pkg: &Path, expected_pkgname: &str, policy: &PackagePolicy) -> Result<(Metadata, File)> {
    let (mut archive, source, file) = open_archive(pkg, policy, &GZIP)?;
    let metadata = {
        let mut entries = raw_entries(&mut archive, &source)?;
        let (metadata, mut member) = read_metadata_entries(&source, &mut entries)?;
        check_metadata(&source, &metadata, expected_pkgname)?;
        let mut checker = Checker::new(&source, &metadata.contents);
        while let Some(mut current) = member {
            checker.entry(&mut current)?;
            member = next_entry(&source, &mut entries, Pax::Apply)?;
        }
        checker.all_present()?;
        metadata
    };
    read_to_end(archive, &source)?;
    Ok((metadata, file))
}

/// Reads `+CONTENTS` (first) and the metadata files after it; returns
/// them with the first entry that is not metadata (the first file).
fn read_metadata_entries<'a>(
    source: &Source<'_>,
    entries: &mut tar::Entries<'a, Expanded>,
) -> Result<(Metadata, Option<Member<'a, Expanded>>)> {
    let pkg = source.pkg;
    let mut first = next_entry(source, entries, Pax::Apply)?
        .ok_or_else(|| anyhow!("{}: not a package: empty archive, expected {CONTENTS} first", pkg.display()))?;
    if first.path != CONTENTS.as_bytes() {
        bail!("{}: not a package: first entry is {}, expected {CONTENTS}", pkg.display(), first.shown());
    }
    let raw = read_metadata_file(source, &mut first, MAX_CONTENTS)?;
    let contents = Contents::parse(&raw).map_err(|why| source.bad(CONTENTS, why))?;
    let mut files = BTreeMap::new();
    let mut last = 0;
    let first_file = loop {
        let Some(mut member) = next_entry(source, entries, Pax::Apply)? else {
            break None;
        };
        let shown = member.shown();
        if REFUSED_METADATA.contains(&shown.as_str()) {
            return Err(source.bad(&shown, "pkgviews and pkgdb metadata are not accepted in a package"));
        }
        let Some(position) = METADATA_ORDER.iter().position(|name| *name == shown) else {
            break Some(member);
        };
        if position == 0 || files.contains_key(METADATA_ORDER[position]) {
            return Err(source.bad(&shown, "appears twice in the archive"));
        }
        if position < last {
            return Err(source.bad(&shown, "metadata out of order (pkg_add refuses a misordered package)"));
        }
        last = position;
        files.insert(METADATA_ORDER[position], read_metadata_file(source, &mut member, MAX_METADATA)?);
    };
    if let Some(missing) = REQUIRED_METADATA[1..].iter().find(|name| !files.contains_key(*name)) {
        bail!("{}: not a package: no {missing}", pkg.display());
    }
    Ok((Metadata { contents, files }, first_file))
}

/// The contents of a metadata entry: a regular file of at most `max`.
fn read_metadata_file(source: &Source<'_>, member: &mut Member<'_, Expanded>, max: u64) -> Result<Vec<u8>> {
    let shown = member.shown();
    if member.entry.header().entry_type() != EntryType::Regular {
        return Err(source.bad(&shown, "is not a regular file"));
    }
    let size = member.entry.header().entry_size().map_err(|e| source.corrupt(e))?;
    if size > max {
        return Err(source.bad(&shown, format!("is larger than {max} bytes")));
    }
    source.charge(size)?;
    let mut raw = Vec::new();
    member.entry.by_ref().take(max + 1).read_to_end(&mut raw).map_err(|e| source.corrupt(e))?;
    Ok(raw)
}

/// The rules of the policy that concern the metadata: the PKGNAME, the
/// prefix, `@mode`, and the origin.
fn check_metadata(source: &Source<'_>, metadata: &Metadata, expected_pkgname: &str) -> Result<()> {
    let (pkg, policy, contents) = (source.pkg, source.policy, &metadata.contents);
    if contents.name != expected_pkgname {
        bail!("{}: package is {}, expected {expected_pkgname}", pkg.display(), contents.name);
    }
    if let Some((line, cwd)) = contents.cwds.iter().find(|(_, cwd)| *cwd != policy.prefix) {
        let why = format!("line {line}: @cwd {cwd} is not the framework's LOCALBASE {}", policy.prefix);
        return Err(source.bad(CONTENTS, why));
    }
    if !policy.allow_setuid {
        if let Some((line, mode)) = contents.modes().find(|(_, mode)| mode_is_special(mode)) {
            let why = format!("line {line}: @mode {mode} sets a setuid, setgid or sticky bit; {}", not_listed(policy));
            return Err(source.bad(CONTENTS, why));
        }
    }
    check_origin(source, metadata)
}

/// `+BUILD_INFO`'s PKGPATH is the expected `cat/pkg`, and a variant is
/// the package's PKGBASE.
fn check_origin(source: &Source<'_>, metadata: &Metadata) -> Result<()> {
    let Some(want) = &source.policy.expected_origin else {
        return Ok(());
    };
    let (pkgpath, variant) = want.split_once('@').map_or((want.as_str(), None), |(dir, v)| (dir, Some(v)));
    match metadata.build_info("PKGPATH") {
        None => return Err(source.bad(BUILD_INFO, format!("no PKGPATH; expected a package of {want}"))),
        Some(got) if got != pkgpath => {
            bail!("{}: built by PKGPATH {got}, expected a package of {want}", source.pkg.display())
        }
        Some(_) => {}
    }
    let pkgbase = pkgsrc::pkgname::pkgbase(&metadata.contents.name);
    match variant {
        Some(variant) if variant != pkgbase => {
            bail!("{}: package {pkgbase} is not the variant {variant} of {pkgpath}", source.pkg.display())
        }
        _ => Ok(()),
    }
}

/// Whether an `@mode` argument (octal or chmod(1) symbolic) can set a
/// setuid, setgid or sticky bit.
fn mode_is_special(mode: &str) -> bool {
    match u32::from_str_radix(mode, 8) {
        Ok(octal) => octal & 0o7000 != 0,
        Err(_) => mode.contains(['s', 't']),
    }
}

fn not_listed(policy: &PackagePolicy) -> String {
    let origin = policy.expected_origin.as_deref().unwrap_or("the port");
    format!("origin {origin} is not in setuid_ports")
}

/// Checks the file entries against the packing list, one at a time.
struct Checker<'a> {
    source: &'a Source<'a>,
    prefix: &'a str,
    files: &'a [ListedFile],
    /// Each listed path's index in `files`.
    position: HashMap<&'a str, usize>,
    /// The index of the file the next entry must be.
    next: usize,
    /// Regular files seen so far, with their MD5: hard link targets.
    regular: HashMap<String, String>,
}

impl<'a> Checker<'a> {
    fn new(source: &'a Source<'a>, contents: &'a Contents) -> Self {
        let position = contents.files.iter().enumerate().map(|(i, f)| (f.path.as_str(), i)).collect();
        Checker {
            source,
            prefix: source.policy.prefix.trim_start_matches('/'),
            files: &contents.files,
            position,
            next: 0,
            regular: HashMap::new(),
        }
    }

    fn entry(&mut self, member: &mut Member<'_, Expanded>) -> Result<()> {
        let shown = member.shown();
        entry_path(&member.path).map_err(|why| self.source.bad(&shown, why))?;
        let listed = self.listed(&shown)?;
        let header = member.entry.header();
        let kind = header.entry_type();
        let mode = header.mode().map_err(|e| self.source.corrupt(e))? & 0o7777;
        let size = header.entry_size().map_err(|e| self.source.corrupt(e))?;
        self.source.charge(size)?;
        if let Some(special) = special_mode(kind, mode).filter(|_| !self.source.policy.allow_setuid) {
            let why = format!("is {special} (mode {mode:04o}); {}", not_listed(self.source.policy));
            return Err(self.source.bad(&shown, why));
        }
        match (kind, &listed.kind) {
            (EntryType::Regular, Listed::Regular { md5 }) => {
                let got = copy_hashed::<Md5>(self.source, &shown, &mut member.entry, io::sink())?;
                self.check_md5(&shown, &got, md5)?;
                self.regular.insert(shown, got);
                Ok(())
            }
            (EntryType::Link, Listed::Regular { md5 }) => self.hard_link(&shown, member.link.as_deref(), size, md5),
            (EntryType::Symlink, Listed::Symlink { target }) => self.symlink(&shown, member.link.as_deref(), target),
            (EntryType::Directory, Listed::Directory) => Ok(()),
            (EntryType::Regular | EntryType::Link | EntryType::Symlink | EntryType::Directory, listed) => {
                Err(self.source.bad(&shown, format!("+CONTENTS lists {}, the archive has {kind:?}", listed.describe())))
            }
            (kind, _) => {
                let link = member.link.as_deref().map(String::from_utf8_lossy);
                let why = format!(
                    "{}; only regular files, directories, symlinks and hard links to an earlier file may be packed",
                    kind_name(kind, link.as_deref())
                );
                Err(self.source.bad(&shown, why))
            }
        }
    }

    /// The listed file `shown` must be: the next one of the packing list.
    fn listed(&mut self, shown: &str) -> Result<&'a ListedFile> {
        let files = self.files;
        match self.position.get(shown).copied() {
            None => Err(self.source.bad(shown, "not listed in +CONTENTS")),
            Some(index) if index < self.next => Err(self.source.bad(shown, "appears twice in the archive")),
            Some(index) if index > self.next => Err(self
                .source
                .bad(shown, format!("is out of +CONTENTS order (pkg_add expects {} first)", files[self.next].path))),
            Some(index) => {
                self.next += 1;
                Ok(&files[index])
            }
        }
    }

    fn check_md5(&self, shown: &str, got: &str, want: &str) -> Result<()> {
        if got != want {
            return Err(self.source.bad(shown, format!("MD5 {got} does not match +CONTENTS ({want})")));
        }
        Ok(())
    }

    /// A second name of a file: it carries no data (an extractor would
    /// write data into the first file) and names a regular file already
    /// in the archive, whose MD5 is the one listed.
    fn hard_link(&self, shown: &str, target: Option<&[u8]>, size: u64, md5: &str) -> Result<()> {
        let target = String::from_utf8_lossy(target.unwrap_or_default());
        if size != 0 {
            return Err(self.source.bad(shown, format!("hard link to {target} carries {size} bytes of data")));
        }
        let Some(got) = self.regular.get(target.as_ref()) else {
            return Err(self
                .source
                .bad(shown, format!("hard link to {target}, which is not an earlier file of the package")));
        };
        self.check_md5(shown, got, md5)
    }

    fn symlink(&self, shown: &str, target: Option<&[u8]>, listed: &str) -> Result<()> {
        let target = target.ok_or_else(|| self.source.bad(shown, "symlink without a target"))?;
        if target != listed.as_bytes() {
            let got = String::from_utf8_lossy(target);
            return Err(self.source.bad(shown, format!("symlink to {got}, but +CONTENTS lists Symlink:{listed}")));
        }
        let installed = format!("{}/{shown}", self.prefix);
        link_stays_inside(&installed, target, self.prefix).map_err(|why| {
            self.source.bad(shown, format!("symlink to {listed} {why} the prefix {}", self.source.policy.prefix))
        })
    }

    /// Every listed file was in the archive.
    fn all_present(&self) -> Result<()> {
        match self.files.get(self.next) {
            Some(missing) => bail!(
                "{}: {} is listed in +CONTENTS (line {}) but missing from the archive",
                self.source.pkg.display(),
                missing.path,
                missing.line
            ),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn special_modes_are_found_in_octal_and_symbolic_modes() {
        for mode in ["4755", "2755", "1777", "04555", "u+s", "g+s", "+t", "a=rwxs"] {
            assert!(mode_is_special(mode), "{mode}");
        }
        for mode in ["0755", "644", "u+x", "go-w", "a=rx"] {
            assert!(!mode_is_special(mode), "{mode}");
        }
    }
}
