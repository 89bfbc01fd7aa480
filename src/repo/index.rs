//! The repository index of a packages directory (DESIGN.md, "Packages"):
//! `SHA256SUMS` (sha256sum(1) format) for every package format, built by
//! [`index_packages`], plus the format's own index: for the bundled `.pkg`
//! `packagesite.json` (one entry per package: name, version, origin, deps,
//! size, sha256, ...), built here by [`rebuild`]; pkgsrc's
//! `All/pkg_summary.{gz,zst}` is built by `framework::pkgsrc::summary` on
//! top of [`index_packages`]. Listing `All/`, obsolete packages and pruning
//! go by the format's extension ([`PackageFormat`]).
//!
//! # Why the index is written atomically
//!
//! `pkg`-style clients fetch the index while a build may be rewriting it.
//! Each index file is therefore written to a temporary beside it, fsynced and
//! renamed over the old one ([`write_atomically`]), so a reader sees either
//! the old or the new file in full, never a torn one. (The two files are
//! replaced one after the other; each is consistent on its own.)
//!
//! # Digests are not recomputed for files known unchanged
//!
//! After a run the index is rebuilt from `All/`, which on a full tree holds
//! tens of gigabytes; hashing all of it after every run (even one that built
//! nothing) would dominate the run. The caller passes the digests recorded
//! when packages were placed ([`RecordedDigest`]); a file whose size matches
//! and whose modification time is not later than the record is the file
//! that was hashed, and its digest is reused. Any other file is hashed.
//! `rebuild-repository` passes none and hashes everything.
//!
//! # Unreadable packages
//!
//! A package whose metadata (`+MANIFEST`, `+CONTENTS`) cannot be read is
//! left out of the index but never silently: [`index_packages`] reports it
//! in [`IndexSummary::unreadable`] with the error, and the index of the good
//! packages is still written.
//!
//! # Obsolete packages
//!
//! Package files that no port of the current tree produces any more are
//! only listed by [`obsolete`]; they are removed by [`prune`] when the
//! operator asks for it, never as a side effect of rebuilding the index.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use super::format::{Bundled, PackageFormat};
use super::fsutil::{sha256_file, write_atomically};
use super::manifest::{Manifest, ManifestDep};
use super::package::read_manifest;

/// Directory of the package files, below the packages directory.
pub const ALL_DIR: &str = "All";
/// The JSON index, in the packages directory.
pub const PACKAGESITE: &str = "packagesite.json";
/// The checksum list, in the packages directory.
pub const SHA256SUMS: &str = "SHA256SUMS";

/// A package file's digest as recorded when it was placed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedDigest {
    pub size: u64,
    pub sha256: String,
    /// When it was recorded, ms since the epoch.
    pub recorded_ms: i64,
}

/// Recorded digests by package file name (`hello-2.1.pkg`).
pub type RecordedDigests = HashMap<String, RecordedDigest>;

/// What [`rebuild`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct IndexSummary {
    /// Packages in the new index.
    pub packages: usize,
    /// Package files left out of the index: path and why.
    pub unreadable: Vec<(PathBuf, String)>,
}

/// The whole `packagesite.json` document.
#[derive(Debug, Serialize)]
struct Packagesite {
    packages: Vec<IndexEntry>,
}

/// One package in `packagesite.json`.
#[derive(Debug, Serialize)]
struct IndexEntry {
    name: String,
    version: String,
    origin: String,
    flavor: String,
    comment: String,
    prefix: String,
    deps: Vec<ManifestDep>,
    /// Relative to the packages directory: `All/<file name>`.
    file: String,
    size: u64,
    sha256: String,
}

/// A package file in `All/`.
pub(crate) struct PackageFile {
    /// The file name (`hello-2.1.pkg`).
    pub name: String,
    pub path: PathBuf,
}

/// A package of `All/` as every index sees it: what its format read from
/// it (`meta`), its file name, size and sha256.
pub(crate) struct Indexed<T> {
    pub meta: T,
    pub name: String,
    pub size: u64,
    pub sha256: String,
}

/// Rebuilds `packagesite.json` and `SHA256SUMS` in `packages_dir` from every
/// `All/*.pkg`, in file name order. Creates `All/` if it is missing (an
/// empty index). Packages whose manifest cannot be read are reported in the
/// summary and left out; they do not make the rebuild fail. `recorded`
/// digests are reused for files known unchanged (see the module doc).
pub fn rebuild(packages_dir: &Path, recorded: &RecordedDigests) -> Result<IndexSummary> {
    let (packages, summary) = index_packages(packages_dir, &Bundled, recorded, read_manifest)?;
    let entries = packages.into_iter().map(IndexEntry::from).collect();
    write_atomically(&packages_dir.join(PACKAGESITE), &packagesite_json(entries)?)?;
    Ok(summary)
}

/// The part of every format's index rebuild: reads each package of
/// `format` in `All/` (creating `All/` if it is missing) with `read`, in
/// file name order, digests it (reusing `recorded`, see the module doc)
/// and writes `SHA256SUMS` of those read. A package that `read` refuses
/// is left out and reported in the summary.
pub(crate) fn index_packages<T>(
    packages_dir: &Path,
    format: &dyn PackageFormat,
    recorded: &RecordedDigests,
    read: impl Fn(&Path) -> Result<T>,
) -> Result<(Vec<Indexed<T>>, IndexSummary)> {
    let all_dir = packages_dir.join(ALL_DIR);
    fs::create_dir_all(&all_dir).with_context(|| format!("cannot create {}", all_dir.display()))?;
    let mut packages = Vec::new();
    let mut summary = IndexSummary::default();
    for pkg in package_files(&all_dir, format)? {
        let indexed = read(&pkg.path).and_then(|meta| {
            let (size, sha256) = digest_of(&pkg, recorded.get(&pkg.name))?;
            Ok(Indexed { meta, name: pkg.name.clone(), size, sha256 })
        });
        match indexed {
            Ok(indexed) => packages.push(indexed),
            Err(err) => summary.unreadable.push((pkg.path, format!("{err:#}"))),
        }
    }
    summary.packages = packages.len();
    write_atomically(&packages_dir.join(SHA256SUMS), sha256sums(&packages).as_bytes())?;
    Ok((packages, summary))
}

/// The package files of `format` in `All/` of `packages_dir` whose file
/// name (`hello-2.1.pkg`) is not in `produced`, sorted. A missing `All/`
/// has none.
pub fn obsolete(packages_dir: &Path, format: &dyn PackageFormat, produced: &HashSet<String>) -> Result<Vec<PathBuf>> {
    let files = package_files(&packages_dir.join(ALL_DIR), format)?;
    Ok(files.into_iter().filter(|pkg| !produced.contains(&pkg.name)).map(|pkg| pkg.path).collect())
}

/// Removes `files` (each with a plain `remove_file`, never recursively).
/// A file that is already gone is fine. Returns how many were removed.
pub fn prune(files: &[PathBuf]) -> Result<usize> {
    let mut removed = 0;
    for file in files {
        match fs::remove_file(file) {
            Ok(()) => removed += 1,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {}
            Err(err) => return Err(err).with_context(|| format!("cannot remove {}", file.display())),
        }
    }
    Ok(removed)
}

/// The regular files of `format` in `all_dir`, sorted by name; temporaries
/// (names starting with `.`) are skipped. A missing directory has none.
fn package_files(all_dir: &Path, format: &dyn PackageFormat) -> Result<Vec<PackageFile>> {
    let listing = match fs::read_dir(all_dir) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        other => other.with_context(|| format!("cannot list {}", all_dir.display()))?,
    };
    let mut files = Vec::new();
    for dirent in listing {
        let dirent = dirent.with_context(|| format!("cannot list {}", all_dir.display()))?;
        let Some(name) = dirent.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if format.is_package_file(&name) && is_regular_file(&dirent)? {
            files.push(PackageFile { path: dirent.path(), name });
        }
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}

fn is_regular_file(dirent: &fs::DirEntry) -> Result<bool> {
    let kind = dirent.file_type().with_context(|| format!("cannot stat {}", dirent.path().display()))?;
    Ok(kind.is_file())
}

/// The size and sha256 of one package file: the recorded digest when the
/// file is unchanged since it was recorded, else hashed now.
fn digest_of(pkg: &PackageFile, recorded: Option<&RecordedDigest>) -> Result<(u64, String)> {
    let metadata = fs::metadata(&pkg.path).with_context(|| format!("cannot stat {}", pkg.path.display()))?;
    let size = metadata.len();
    let sha256 = match recorded {
        Some(digest) if digest.size == size && modified_ms(&metadata) <= Some(digest.recorded_ms) => {
            digest.sha256.clone()
        }
        _ => sha256_file(&pkg.path)?,
    };
    Ok((size, sha256))
}

impl From<Indexed<Manifest>> for IndexEntry {
    fn from(package: Indexed<Manifest>) -> IndexEntry {
        let manifest = package.meta;
        IndexEntry {
            name: manifest.name,
            version: manifest.version,
            origin: manifest.origin,
            flavor: manifest.flavor,
            comment: manifest.comment,
            prefix: manifest.prefix,
            deps: manifest.deps,
            file: format!("{ALL_DIR}/{}", package.name),
            size: package.size,
            sha256: package.sha256,
        }
    }
}

/// Modification time in ms since the epoch; `None` (never trusted) if unknown.
fn modified_ms(metadata: &fs::Metadata) -> Option<i64> {
    let since_epoch = metadata.modified().ok()?.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(since_epoch.as_millis()).ok()
}

/// `SHA256SUMS` in sha256sum(1) format: `<sha256>  All/<file>` per line.
fn sha256sums<T>(packages: &[Indexed<T>]) -> String {
    packages.iter().map(|package| format!("{}  {ALL_DIR}/{}\n", package.sha256, package.name)).collect()
}

fn packagesite_json(packages: Vec<IndexEntry>) -> Result<Vec<u8>> {
    let mut json =
        serde_json::to_vec_pretty(&Packagesite { packages }).context("cannot serialise the package index")?;
    json.push(b'\n');
    Ok(json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::testpkg::names;
    use crate::repo::testpkg::Spec;
    use serde_json::Value;

    /// A packages directory with `All/` holding `specs`.
    fn repo_with(specs: &[Spec]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let all = dir.path().join(ALL_DIR);
        fs::create_dir(&all).unwrap();
        for spec in specs {
            spec.write(&all);
        }
        (dir, all)
    }

    fn hello() -> Spec {
        Spec::new("hello", "2.1").file("/usr/local/bin/hello", b"#!/bin/sh\necho hi\n", 0o755)
    }

    fn libfoo() -> Spec {
        Spec::new("libfoo", "1.0")
            .file("/usr/local/lib/libfoo.so.1", b"\x7fELF fake", 0o644)
            .symlink("/usr/local/lib/libfoo.so", "libfoo.so.1")
    }

    fn packagesite(dir: &Path) -> Value {
        serde_json::from_slice(&fs::read(dir.join(PACKAGESITE)).unwrap()).unwrap()
    }

    fn indexed_files(dir: &Path) -> Vec<String> {
        let site = packagesite(dir);
        let packages = site["packages"].as_array().unwrap();
        packages.iter().map(|p| p["file"].as_str().unwrap().to_string()).collect()
    }

    #[test]
    fn a_recorded_digest_is_reused_only_for_a_file_unchanged_since() {
        let (dir, all) = repo_with(&[hello()]);
        let file = all.join("hello-2.1.pkg");
        let size = fs::metadata(&file).unwrap().len();
        let real = sha256_file(&file).unwrap();
        let sha_of_index = |recorded: RecordedDigest| {
            let digests = RecordedDigests::from([("hello-2.1.pkg".to_string(), recorded)]);
            rebuild(dir.path(), &digests).unwrap();
            packagesite(dir.path())["packages"][0]["sha256"].as_str().unwrap().to_string()
        };
        let marker = "recorded-digest".to_string();
        let far_future = i64::MAX;
        assert_eq!(
            sha_of_index(RecordedDigest { size, sha256: marker.clone(), recorded_ms: far_future }),
            marker,
            "same size, not modified since the record: the recorded digest, file not read"
        );
        assert_eq!(
            sha_of_index(RecordedDigest { size, sha256: marker.clone(), recorded_ms: 0 }),
            real,
            "modified after the record: hashed again"
        );
        assert_eq!(
            sha_of_index(RecordedDigest { size: size + 1, sha256: marker, recorded_ms: far_future }),
            real,
            "another size: hashed again"
        );
    }

    #[test]
    fn index_lists_every_package_with_size_and_sha256() {
        let (dir, all) = repo_with(&[libfoo(), hello()]);
        let summary = rebuild(dir.path(), &RecordedDigests::new()).unwrap();
        assert_eq!(summary, IndexSummary { packages: 2, unreadable: vec![] });

        let site = packagesite(dir.path());
        let packages = site["packages"].as_array().unwrap();
        assert_eq!(indexed_files(dir.path()), ["All/hello-2.1.pkg", "All/libfoo-1.0.pkg"]);
        for (entry, spec) in packages.iter().zip([hello(), libfoo()]) {
            let file = all.join(format!("{}.pkg", spec.pkgname()));
            assert_eq!(entry["name"], spec.name.as_str());
            assert_eq!(entry["version"], spec.version.as_str());
            assert_eq!(entry["origin"], format!("misc/{}", spec.name).as_str());
            assert_eq!(entry["prefix"], "/usr/local");
            assert_eq!(entry["comment"], "test package");
            assert_eq!(entry["flavor"], "");
            assert_eq!(entry["deps"], serde_json::json!([]));
            assert_eq!(entry["size"], fs::metadata(&file).unwrap().len());
            assert_eq!(entry["sha256"], sha256_file(&file).unwrap().as_str());
        }
    }

    #[test]
    fn index_records_dependencies() {
        let (dir, all) = repo_with(&[]);
        let mut manifest = hello().manifest();
        manifest.deps.push(ManifestDep { name: "libfoo".into(), version: "1.0".into(), origin: "misc/libfoo".into() });
        let mut entries = hello().entries();
        entries[0] = crate::repo::testpkg::entry(
            "+MANIFEST",
            crate::repo::testpkg::Body::File(serde_json::to_vec(&manifest).unwrap(), 0o644),
        );
        hello().write_entries(&all, &entries);

        rebuild(dir.path(), &RecordedDigests::new()).unwrap();
        let deps = &packagesite(dir.path())["packages"][0]["deps"];
        let want = serde_json::json!([{"name": "libfoo", "version": "1.0", "origin": "misc/libfoo"}]);
        assert_eq!(deps, &want);
    }

    #[test]
    fn sha256sums_matches_the_package_files() {
        let (dir, all) = repo_with(&[hello(), libfoo()]);
        rebuild(dir.path(), &RecordedDigests::new()).unwrap();
        let sums = fs::read_to_string(dir.path().join(SHA256SUMS)).unwrap();
        let want = format!(
            "{}  All/hello-2.1.pkg\n{}  All/libfoo-1.0.pkg\n",
            sha256_file(&all.join("hello-2.1.pkg")).unwrap(),
            sha256_file(&all.join("libfoo-1.0.pkg")).unwrap(),
        );
        assert_eq!(sums, want);
    }

    #[test]
    fn corrupt_package_is_reported_not_indexed() {
        let (dir, all) = repo_with(&[hello()]);
        let corrupt = all.join("broken-1.0.pkg");
        fs::write(&corrupt, b"\x01\x02 random bytes, not zstd \xff").unwrap();

        let summary = rebuild(dir.path(), &RecordedDigests::new()).unwrap();
        assert_eq!(summary.packages, 1);
        assert_eq!(summary.unreadable.len(), 1);
        let (path, why) = &summary.unreadable[0];
        assert_eq!(path, &corrupt);
        assert!(why.contains("broken-1.0.pkg") && why.contains("not zstd"), "{why}");
        assert_eq!(indexed_files(dir.path()), ["All/hello-2.1.pkg"]);
        let sums = fs::read_to_string(dir.path().join(SHA256SUMS)).unwrap();
        assert!(!sums.contains("broken"), "{sums}");
    }

    #[test]
    fn rebuilding_after_removal_drops_the_package() {
        let (dir, all) = repo_with(&[hello(), libfoo()]);
        rebuild(dir.path(), &RecordedDigests::new()).unwrap();
        fs::remove_file(all.join("libfoo-1.0.pkg")).unwrap();

        let summary = rebuild(dir.path(), &RecordedDigests::new()).unwrap();
        assert_eq!(summary.packages, 1);
        assert_eq!(indexed_files(dir.path()), ["All/hello-2.1.pkg"]);
        let sums = fs::read_to_string(dir.path().join(SHA256SUMS)).unwrap();
        assert_eq!(sums.lines().count(), 1, "{sums}");
        assert!(sums.ends_with("  All/hello-2.1.pkg\n"), "{sums}");
    }

    #[test]
    fn temporaries_are_ignored_and_none_left_behind() {
        let (dir, all) = repo_with(&[hello()]);
        fs::write(all.join(".libfoo-1.0.pkg.tmp.123"), b"half a package").unwrap();
        fs::write(all.join("README"), b"not a package").unwrap();
        fs::create_dir(all.join("sub.pkg")).unwrap();

        let summary = rebuild(dir.path(), &RecordedDigests::new()).unwrap();
        assert_eq!(summary, IndexSummary { packages: 1, unreadable: vec![] });
        assert_eq!(names(dir.path()), [ALL_DIR, SHA256SUMS, PACKAGESITE]);
        rebuild(dir.path(), &RecordedDigests::new()).unwrap();
        assert_eq!(names(dir.path()), [ALL_DIR, SHA256SUMS, PACKAGESITE]);
    }

    #[test]
    fn empty_and_missing_all_give_an_empty_index() {
        let (dir, _all) = repo_with(&[]);
        assert_eq!(rebuild(dir.path(), &RecordedDigests::new()).unwrap(), IndexSummary::default());
        assert_eq!(packagesite(dir.path()), serde_json::json!({"packages": []}));
        assert_eq!(fs::read_to_string(dir.path().join(SHA256SUMS)).unwrap(), "");

        let bare = tempfile::tempdir().unwrap();
        assert_eq!(obsolete(bare.path(), &Bundled, &HashSet::new()).unwrap(), Vec::<PathBuf>::new());
        assert_eq!(rebuild(bare.path(), &RecordedDigests::new()).unwrap(), IndexSummary::default());
        assert!(bare.path().join(ALL_DIR).is_dir(), "All/ is created");
        assert_eq!(packagesite(bare.path()), serde_json::json!({"packages": []}));
    }

    #[test]
    fn obsolete_lists_only_unproduced_files() {
        let (dir, all) = repo_with(&[hello(), libfoo(), Spec::new("old", "0.9")]);
        fs::write(all.join(".old-0.9.pkg.tmp.1"), b"").unwrap();
        let produced: HashSet<String> = ["hello-2.1.pkg".to_string(), "new-1.0.pkg".to_string()].into();

        let stale = obsolete(dir.path(), &Bundled, &produced).unwrap();
        assert_eq!(stale, [all.join("libfoo-1.0.pkg"), all.join("old-0.9.pkg")]);
        assert_eq!(names(&all).len(), 4, "obsolete() removes nothing");
    }

    #[test]
    fn prune_removes_files_and_tolerates_missing_ones() {
        let (dir, all) = repo_with(&[hello(), libfoo(), Spec::new("old", "0.9")]);
        let produced: HashSet<String> = ["hello-2.1.pkg".to_string()].into();
        let stale = obsolete(dir.path(), &Bundled, &produced).unwrap();
        fs::remove_file(all.join("old-0.9.pkg")).unwrap();

        assert_eq!(prune(&stale).unwrap(), 1);
        assert_eq!(names(&all), ["hello-2.1.pkg"]);
        assert_eq!(prune(&stale).unwrap(), 0, "already gone");
    }

    #[test]
    fn prune_refuses_directories() {
        let dir = tempfile::tempdir().unwrap();
        let subdir = dir.path().join("x.pkg");
        fs::create_dir(&subdir).unwrap();
        fs::write(subdir.join("keep"), b"").unwrap();
        let err = format!("{:#}", prune(std::slice::from_ref(&subdir)).unwrap_err());
        assert!(err.contains("cannot remove") && err.contains("x.pkg"), "{err}");
        assert!(subdir.join("keep").exists());
    }
}
