//! Packages: reading, verifying and installing `${PKGNAME}.pkg` files, and
//! placing them into the repository atomically (DESIGN.md, "Packages").
//! What differs between package formats (file name, verification, the
//! repository index) is behind [`PackageFormat`] ([`format`]); the bundled
//! `.pkg` described here is [`format::Bundled`], pkgsrc's `.tgz` is in
//! `framework::pkgsrc::package`. Both read archives through [`archive`].
//!
//! # The format
//!
//! A package is what the bmake framework's `package` target writes
//! (`ports-testdata/Mk/Scripts/create-pkg.py`): a zstd-compressed GNU tar
//! whose first entry is `+MANIFEST`, a JSON [`Manifest`], followed by every
//! packing-list entry relative to `/` (`usr/local/bin/hello`). Only regular
//! files and symlinks are packed; the manifest lists each with the sha256 of
//! its contents, or for a symlink the sha256 of its target string.
//!
//! # Trust
//!
//! A package comes out of a build, i.e. out of code we do not trust, so it is
//! checked in full before anything relies on it. [`verify`] and [`install`]
//! share one streaming pass over the archive ([`package`]) that checks:
//!
//! * the file is zstd (magic number) and decompresses to its very end — a
//!   truncated or corrupt package is an error, never a shorter package;
//! * `+MANIFEST` is the first entry and is sane: clean absolute paths, all
//!   below `prefix`, each listed once, no file listed below another file;
//! * every archive entry has a clean relative path (no `..`, not absolute)
//!   inside the prefix, is listed in the manifest, appears once, and its
//!   sha256 matches; every listed file is present;
//! * hard links, devices, fifos and other entry types are refused.
//!
//! On top of that, [`verify`], [`install`] and [`deliver`] apply a
//! [`PackagePolicy`] ([`policy`]): the prefix must be the framework's
//! LOCALBASE, symlinks must point at or below it, the package file must be
//! a regular file (opened without following a symlink) of at most
//! `tmpfs_size` bytes, it may expand to at most `package_size_limit` bytes
//! (counted on the decompressor's output), setuid/setgid/sticky bits need
//! `setuid_ports`, and the manifest must name the expected origin and flavor.
//!
//! Every error names the package file, and the offending entry if there is
//! one, so a log line is enough to find the culprit.
//!
//! # Installing
//!
//! [`install`] runs the same checks while it extracts under a root directory
//! (`/` inside a worker sandbox). Nothing is written under a final name until
//! the whole package has verified: each entry is first written to a hidden
//! temporary name beside its destination, and only after the last entry
//! checked out are the temporaries renamed into place, the
//! `<prefix>/.pkgdb/<name>/+MANIFEST` record last. On any error the
//! temporaries and the directories the install created are removed, so a
//! bad package leaves the root as it was. Renaming replaces an existing file or symlink without
//! following it, and parent directories are created one component at a time,
//! refusing any that is a symlink, so a package can never write outside the
//! root. Installing a package again simply overwrites it.
//!
//! # Repository placement
//!
//! [`place_atomically`] copies a finished package into `All/` through a
//! temporary file, `fsync` and `rename`, so the repository never holds a
//! partial file under a package's name. [`deliver`] verifies a package and
//! places it that way from the descriptor it verified.

pub mod format;
pub mod fsutil;
pub mod index;
pub mod manifest;
pub mod package;
pub mod policy;

pub(crate) mod archive;
mod install;

#[cfg(test)]
mod hostile_tests;
#[cfg(test)]
pub(crate) mod testpkg;
#[cfg(test)]
mod tests;

pub use format::PackageFormat;
pub use fsutil::{place_atomically, sha256_file};
pub use manifest::{Manifest, ManifestDep, ManifestFile};
pub use package::{deliver, install, read_manifest, verify};
pub use policy::{PackagePolicy, LOCALBASE};
