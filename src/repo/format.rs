//! The package format seam: what differs between the package files of two
//! frameworks — their file name, how one is verified and delivered into
//! `All/`, and the repository index their clients read.
//!
//! Everything around a package is the same for every format and stays in
//! `repo`: the [`PackagePolicy`] it is checked against, opening it as an
//! untrusted file, metering its decompression ([`super::archive`]), placing
//! it atomically from the descriptor that was verified
//! ([`super::fsutil::place_open_file`]), and `SHA256SUMS` with the recorded
//! digests ([`super::index`]). A framework names its format through
//! `Framework::package_format`; the runner and the repository commands go
//! through it and never assume an extension.
//!
//! Two formats: [`Bundled`] (`.pkg`, zstd tar with a JSON `+MANIFEST`,
//! index `packagesite.json`) and pkgsrc's (`.tgz`, pkg_create's gzip tar
//! with `+CONTENTS`, index `All/pkg_summary.{gz,zst}`), which lives with its
//! framework in `framework::pkgsrc::package`.

use std::path::{Path, PathBuf};

use anyhow::Result;

use super::index::{self, IndexSummary, RecordedDigests};
use super::package;
use super::policy::PackagePolicy;

/// What portsynth asks of a package format.
pub trait PackageFormat: Sync {
    /// The file name extension of a package, without the dot (`pkg`).
    fn extension(&self) -> &'static str;

    /// The file name of the package `pkgname` in `All/`: the one place a
    /// package file name is built.
    fn file_name(&self, pkgname: &str) -> String {
        format!("{pkgname}.{}", self.extension())
    }

    /// Whether `name` (a file name in `All/`) is a package of this format;
    /// hidden names (placement temporaries) are not.
    fn is_package_file(&self, name: &str) -> bool {
        let suffix = self.extension();
        !name.starts_with('.')
            && name.len() > suffix.len() + 1
            && name.strip_suffix(suffix).is_some_and(|stem| stem.ends_with('.'))
    }

    /// Checks all of `pkg` against `policy` and that it is the package
    /// `expected_pkgname`. Every error names the file (and the entry).
    fn verify(&self, pkg: &Path, expected_pkgname: &str, policy: &PackagePolicy) -> Result<()>;

    /// Verifies `pkg` in full, then places it into `all_dir` under its own
    /// name from the very descriptor it verified; nothing reaches `all_dir`
    /// unless the whole package checked out.
    fn deliver(&self, pkg: &Path, expected_pkgname: &str, policy: &PackagePolicy, all_dir: &Path) -> Result<PathBuf>;

    /// Rewrites the repository index files of `packages_dir` (and
    /// `SHA256SUMS`) from its `All/`, reusing `recorded` digests for files
    /// known unchanged. Unreadable packages are reported, not fatal.
    fn rebuild_index(&self, packages_dir: &Path, recorded: &RecordedDigests) -> Result<IndexSummary>;
}

/// The bundled framework's format: `All/<PKGNAME>.pkg` (see [`super`]).
pub struct Bundled;

impl PackageFormat for Bundled {
    fn extension(&self) -> &'static str {
        "pkg"
    }

    fn verify(&self, pkg: &Path, expected_pkgname: &str, policy: &PackagePolicy) -> Result<()> {
        package::verify(pkg, expected_pkgname, policy).map(drop)
    }

    fn deliver(&self, pkg: &Path, expected_pkgname: &str, policy: &PackagePolicy, all_dir: &Path) -> Result<PathBuf> {
        package::deliver(pkg, expected_pkgname, policy, all_dir)
    }

    fn rebuild_index(&self, packages_dir: &Path, recorded: &RecordedDigests) -> Result<IndexSummary> {
        index::rebuild(packages_dir, recorded)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_files_are_told_by_their_extension() {
        assert_eq!(Bundled.file_name("hello-2.1"), "hello-2.1.pkg");
        assert!(Bundled.is_package_file("hello-2.1.pkg"));
        for name in [".hello-2.1.pkg.tmp.1", ".pkg", "pkg", "hello-2.1.tgz", "hello-2.1pkg", "hello.pkg.sig"] {
            assert!(!Bundled.is_package_file(name), "{name}");
        }
    }
}
