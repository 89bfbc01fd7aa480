//! The seam between portsynth and a ports framework: the makefiles that
//! turn a port directory into metadata, phases and a package.
//!
//! Everything that differs between frameworks is asked of a [`Framework`]:
//! how its tree marks itself, how its ports are listed and queried, how a
//! make target is invoked inside a build sandbox and with which framework
//! variables, where its LOCALBASE is and the format of its package files
//! (`repo::PackageFormat`: their name, verification and repository index),
//! how its `distinfo` files read and how it lists a port's distfiles.
//! Everything else — the scan sandboxes, the scan cache, the graph, the
//! build database, the scheduler, the sandboxes, the repository's atomic
//! placement — is portsynth's and the same for every framework. A framework
//! is a zero-sized value looked up by its [`Kind`], which is what travels
//! in the config and in a sandbox's spec.
//!
//! Two frameworks: [`bundled`] (the contract `ports-testdata/` follows, see
//! `docs/FRAMEWORKS.md`) and pkgsrc (NetBSD's `mk/bsd.pkg.mk`).

pub mod bundled;
pub mod pkgsrc;

use std::collections::{BTreeSet, HashSet};
use std::path::Path;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use crate::fetch::distinfo::{Distfile, Distinfo};
use crate::graph::{EdgeKind, NodeId};
use crate::ports::scan::{DirScan, Listing, PortMeta, Scanner};
use crate::ports::Origin;
use crate::ports::Phase;
use crate::ports::PortTree;
use crate::repo::PackageFormat;
use crate::sandbox::download::Wanted;

/// Which framework a tree uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    #[default]
    Bundled,
    Pkgsrc,
}

impl Kind {
    pub const ALL: [Kind; 2] = [Kind::Bundled, Kind::Pkgsrc];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Bundled => "bundled",
            Kind::Pkgsrc => "pkgsrc",
        }
    }

    pub fn from_name(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The file whose presence marks a tree of this framework.
    pub fn marker(self) -> &'static str {
        match self {
            Kind::Bundled => "Mk/bsd.port.mk",
            Kind::Pkgsrc => "mk/bsd.pkg.mk",
        }
    }

    /// The framework itself.
    pub fn framework(self) -> &'static dyn Framework {
        match self {
            Kind::Bundled => &bundled::Bundled,
            Kind::Pkgsrc => &pkgsrc::Pkgsrc,
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The framework of the tree at `dir`, from its marker file.
pub fn detect(dir: &Path) -> Result<Kind> {
    if !dir.is_dir() {
        bail!("{} does not exist or is not a directory", dir.display());
    }
    match Kind::ALL.into_iter().find(|k| dir.join(k.marker()).is_file()) {
        Some(kind) => Ok(kind),
        None => bail!(
            "{} is not a ports tree (no {})",
            dir.display(),
            Kind::ALL.map(|k| format!("{} for {k}", k.marker())).join(", no ")
        ),
    }
}

/// One node's resolved dependencies.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct NodeDeps {
    pub edges: Vec<(NodeId, &'static EdgeKind)>,
    pub errors: Vec<String>,
}

/// The distfiles purge-distfiles must keep.
#[derive(Debug, Default)]
pub struct References {
    /// Distinfo keys (`DIST_SUBDIR/name` or `name`).
    pub keys: HashSet<String>,
    /// What makes some distfiles unknown (a port that could not be scanned,
    /// a distinfo that does not parse): then nothing may be deleted.
    pub unknown: Vec<String>,
}

/// What portsynth asks of a ports framework.
pub trait Framework: Sync {
    fn kind(&self) -> Kind;

    /// The port directories of the tree.
    fn list_ports(&self, scanner: &Scanner) -> Result<Listing>;

    /// Every variant (flavor) of one port directory, by querying its
    /// makefiles through `scanner` (which runs the queries in the scan
    /// sandboxes), or the error that makes it not buildable.
    fn scan_dir(&self, scanner: &Scanner, dir: &Origin) -> DirScan;

    /// The port directories `meta`'s dependencies name: scanned next, so
    /// that a partial scan holds the whole dependency closure.
    /// `taken(dir)` says a directory (`cat/port`) is known already: a
    /// framework may skip the entries naming one.
    fn dependency_dirs(&self, meta: &PortMeta, taken: &dyn Fn(&str) -> bool) -> Vec<Origin>;

    /// Every node's dependencies resolved to nodes, or the errors that make
    /// it not buildable (indexed like `tree.nodes`; nodes without metadata
    /// get nothing). `missing`: directories named but without a Makefile.
    fn resolve(&self, tree: &PortTree, scanner: &Scanner, missing: &BTreeSet<Origin>) -> Vec<NodeDeps>;

    /// The phases of a build, in order; `check_plist` adds the packing-list
    /// check where the framework has one of its own.
    fn phases(&self, check_plist: bool) -> Vec<Phase>;

    /// The make target that runs `phase` in the port's directory, or `None`
    /// when portsynth alone does the phase: the fetch phase's download, and
    /// for pkgsrc the dependency installs.
    fn phase_target(&self, phase: Phase) -> Option<&'static str>;

    /// The arguments of the make program for `target`, run in the port's
    /// directory inside a build sandbox; `variant` holds the variable
    /// assignments that select the variant being built (pkgsrc's
    /// MULTI_VERSION).
    fn make_args(&self, target: &str, variant: &[String]) -> Vec<String>;

    /// How a dependency package at `package` (a path inside the sandbox) is
    /// installed: `None`, by portsynth's own installer ([`crate::repo::install`]);
    /// otherwise by this command, run unprivileged like a phase after
    /// portsynth has verified the package.
    fn install_command(&self, package: &Path) -> Option<Vec<String>>;

    /// Whether a freshly made package is installed once into its own sandbox,
    /// to test its install rules before it is delivered (pbulk's `pkg-build`
    /// does it for every package but the bootstrap ones, which the kit holds).
    fn test_install(&self, bootstrap_pkg: bool) -> bool;

    /// The `mk.conf` of a build sandbox whose LOCALBASE is a bootstrap kit
    /// unpacked at `kit_prefix`, with the config's `mk_conf` lines; `None`
    /// for a framework without one.
    fn build_mk_conf(&self, kit_prefix: &Path, mk_conf: Option<&str>) -> Option<String>;

    /// The framework's variables in the environment of every make
    /// invocation of a build of `port` (`flavor`, with `make_jobs`).
    fn build_environment(&self, flavor: Option<&str>, make_jobs: usize) -> Vec<(String, String)>;

    /// LOCALBASE inside a build sandbox: where dependencies are installed
    /// and the prefix every package's files must be below.
    fn localbase(&self) -> &'static str;

    /// How long one port's metadata query may take unless `scan_timeout`
    /// says otherwise.
    fn default_scan_timeout(&self) -> std::time::Duration;

    /// The format of the framework's package files: their name,
    /// verification, delivery and repository index.
    fn package_format(&self) -> &'static dyn PackageFormat;

    /// The file name of the package `pkgname` in the repository's `All/`.
    fn package_file(&self, pkgname: &str) -> String {
        self.package_format().file_name(pkgname)
    }

    /// The phases fetch-only runs in a sandbox (no dependency is installed
    /// there).
    fn fetch_only_phases(&self) -> Vec<Phase>;

    /// The distfile entries of a distinfo file's `text` (`file` names it
    /// in errors, with the line).
    fn parse_distinfo(&self, text: &str, file: &Path) -> Result<Distinfo>;

    /// The make arguments that print what a port's fetch needs (its
    /// distfiles, their sites, its distinfo), run in the port's directory,
    /// unprivileged and without network: in a build sandbox before portsynth
    /// downloads, and in a scan sandbox for fetch-only's present check;
    /// `variant` as for [`Self::make_args`].
    fn fetch_list_args(&self, variant: &[String]) -> Vec<String>;

    /// What [`Self::fetch_list_args`] printed, as the files to download
    /// with what their distinfo expects. `tree` is where the ports tree is
    /// in the view the list was made in; a distinfo file the list names is
    /// read from below it, never from elsewhere.
    fn parse_fetch_list(&self, output: &str, tree: &Path) -> Result<Vec<Wanted>>;

    /// A port's distfiles with what distinfo expects, for fetch-only's
    /// present check (no build sandbox).
    fn port_distfiles(&self, scanner: &Scanner, meta: &PortMeta) -> Result<Vec<Distfile>>;

    /// Every distfile the tree references, for purge-distfiles; `scan`
    /// scans the whole tree, for a framework that needs the scan for it.
    fn referenced_distfiles(&self, ports_dir: &Path, scan: &mut dyn FnMut() -> Result<PortTree>) -> Result<References>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trees_are_recognised_by_their_marker() {
        let dir = tempfile::tempdir().unwrap();
        let err = format!("{:#}", detect(dir.path()).unwrap_err());
        assert!(err.contains("no Mk/bsd.port.mk for bundled") && err.contains("mk/bsd.pkg.mk for pkgsrc"), "{err}");
        std::fs::create_dir_all(dir.path().join("mk")).unwrap();
        std::fs::write(dir.path().join("mk/bsd.pkg.mk"), "").unwrap();
        assert_eq!(detect(dir.path()).unwrap(), Kind::Pkgsrc);
        std::fs::create_dir_all(dir.path().join("Mk")).unwrap();
        std::fs::write(dir.path().join("Mk/bsd.port.mk"), "").unwrap();
        assert_eq!(detect(dir.path()).unwrap(), Kind::Bundled, "the bundled marker is checked first");
        assert!(detect(&dir.path().join("nowhere")).is_err());
    }

    #[test]
    fn kinds_round_trip_through_their_names() {
        for kind in Kind::ALL {
            assert_eq!(Kind::from_name(kind.name()), Some(kind));
            assert_eq!(kind.framework().kind(), kind);
        }
        assert_eq!(Kind::from_name("ports"), None);
    }
}
