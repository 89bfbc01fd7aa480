//! Metadata scan: one bmake query per port (and per extra flavor), run in
//! parallel with rayon.
//!
//! A port directory is scanned as a unit: the first query (without FLAVOR)
//! yields the default flavor and the list of FLAVORS, and each further flavor
//! gets one more query with `FLAVOR=` set. Failures never abort the scan: a
//! port whose query fails becomes a [`ScanError`] naming the port, and the
//! rest of the tree goes on. Dependency entries are parsed here so that a
//! malformed entry is reported against the port and variable it came from.
//!
//! Every command's bmake runs in a scan sandbox (see
//! [`crate::sandbox::scan`]): no network, read-only tree, the build user,
//! a deadline (`scan_timeout`), both outputs drained and bounded. Without a
//! sandbox (unit tests, benches) bmake runs on the host through
//! `Command::output`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use rayon::prelude::*;
use serde::Serialize;

use super::{DepKind, DepSpec, Origin};
use crate::framework::Kind;
use crate::sandbox::scan::ScanRequest;
use crate::sandbox::scan_pool::{MakeOutput, ScanPool};

/// Everything the builder needs to know about one port (one flavor of it).
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct PortMeta {
    /// `cat/port`, or `cat/port@flavor` for a flavored port.
    pub origin: Origin,
    pub pkgname: String,
    pub pkgversion: String,
    pub pkgfile: String,
    pub comment: String,
    /// Raw `*_DEPENDS` values, in [`DepKind::ALL`] order.
    pub depends: Vec<String>,
    pub ignore: Option<String>,
    pub flavors: Vec<String>,
    pub distfiles: Vec<String>,
    pub dist_subdir: String,
    /// `.MAKE.MAKEFILES`: every makefile read, as absolute paths.
    pub makefiles: Vec<PathBuf>,
    /// The make variable assignments that select this variant (pkgsrc's
    /// MULTI_VERSION, e.g. `PYTHON_VERSION_REQD=27`); passed to every make
    /// invocation of its build.
    pub variant: Vec<String>,
    /// The bootstrap kit holds this package already (pkgsrc's BOOTSTRAP_PKG).
    pub bootstrap_pkg: bool,
    /// The port may build with more than one make job; `false` (pkgsrc's
    /// `MAKE_JOBS_SAFE=no`, the bundled framework's `MAKE_JOBS_UNSAFE`): one
    /// job, always. Absent from entries of [`SCAN_FORMAT`] 1, which are never
    /// reused; the default only keeps them decodable.
    #[serde(default = "parallel_safe_by_default")]
    pub parallel_safe: bool,
}

fn parallel_safe_by_default() -> bool {
    true
}

/// The version of what a scan yields: the frameworks' queries (the bundled
/// `-V` list, pkgsrc's `pbulk-index` with the scan's own mk.conf) and the
/// fields of [`PortMeta`]. Part of every scan-cache entry's validity
/// ([`crate::ports::cache`]), so an entry scanned by an older portsynth is
/// scanned again; never part of a build key, so a new format rebuilds no
/// package. Bump it whenever a scan of an unchanged port would yield
/// something different.
///
/// 1: the first format; 2: `parallel_safe`.
pub const SCAN_FORMAT: u32 = 2;

impl PortMeta {
    /// The parsed dependency entries of every kind, plus one error per
    /// malformed entry naming the variable and the text.
    pub fn dep_specs(&self) -> (Vec<DepSpec>, Vec<String>) {
        let mut specs = Vec::new();
        let mut errors = Vec::new();
        for (kind, value) in DepKind::ALL.iter().zip(&self.depends) {
            let (ok, bad) = DepSpec::parse_list(*kind, value);
            specs.extend(ok);
            errors.extend(bad.into_iter().map(|e| format!("{kind}: malformed entry {e}")));
        }
        (specs, errors)
    }
}

/// A port that could not be scanned, with the reason (bmake's stderr included).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScanError {
    pub origin: Origin,
    pub message: String,
}

/// How to run bmake against a tree.
#[derive(Debug, Clone)]
pub struct Scanner {
    /// The tree's framework: how it is listed and queried.
    pub framework: Kind,
    pub ports_dir: PathBuf,
    pub make_program: String,
    /// Extra make variables, passed in the environment like a make.conf.
    pub make_env: Vec<(String, String)>,
    /// Where the queries run: the scan sandboxes of every command, or `None`
    /// for bmake straight on the host (unit tests and benches of trusted
    /// trees only).
    pub sandbox: Option<Arc<ScanPool>>,
}

/// The port directories of a tree, and what was skipped or is worth saying
/// about the listing (non-UTF-8 or invalid names, unreadable directories,
/// symlinks inside the tree).
#[derive(Debug, Default)]
pub struct Listing {
    pub origins: Vec<Origin>,
    pub problems: Vec<String>,
    /// Origins (also in `origins`) that lead out of the tree, with the
    /// reason; every other origin was checked as `PortTree::load` would
    /// (no escaping symlink, a `Makefile`), so it need not check again.
    pub refused: Vec<(Origin, String)>,
}

/// The result of scanning one port directory: every flavor, or the error.
pub type DirScan = Result<Vec<PortMeta>, ScanError>;

impl Scanner {
    /// A scanner running `bmake` straight on the host, without a scan
    /// sandbox: for the unit tests and benches of trusted trees only.
    pub fn on_host(framework: Kind, ports_dir: &Path) -> Scanner {
        Scanner {
            framework,
            ports_dir: ports_dir.to_path_buf(),
            make_program: "bmake".into(),
            make_env: vec![],
            sandbox: None,
        }
    }

    /// The port directories of the tree, as its framework lists them.
    pub fn list_ports(&self) -> anyhow::Result<Listing> {
        self.framework.framework().list_ports(self)
    }

    /// Every `category/port` directory of the tree that holds a Makefile.
    /// Categories are the lower-case top-level directories; `Mk`, hidden and
    /// capitalised directories (Templates, Tools, distfiles mirrors) are not.
    /// The Makefile checks run in parallel: on a 30,000-port tree they are
    /// 30,000 `stat` calls.
    ///
    /// Nothing is dropped silently: a directory whose name is not UTF-8 or
    /// not a valid origin, or that cannot be read, is skipped and named in
    /// [`Listing::problems`]; a symlinked category or port directory is
    /// listed (with a problem line when it stays inside the tree), and
    /// [`Scanner::escape`] refuses the ones that lead outside.
    pub fn list_category_ports(&self) -> anyhow::Result<Listing> {
        let mut problems = Vec::new();
        let mut candidates = Vec::new();
        let (categories, mut skipped) = sorted_dirs(&self.ports_dir)?;
        problems.append(&mut skipped);
        for category in categories {
            if !category.name.starts_with(|c: char| c.is_ascii_lowercase()) {
                continue;
            }
            if category.link.is_some() {
                // Outside the tree: each of its ports is refused by name.
                if let Ok(Some(target)) = self.escape_of(&category.name, None) {
                    problems.push(format!(
                        "category {} is a symlink to {target} inside the ports tree; its ports are scanned as {}/…",
                        category.name, category.name
                    ));
                }
            }
            let dir = self.ports_dir.join(&category.name);
            let (ports, mut skipped) = match sorted_dirs(&dir) {
                Ok(found) => found,
                Err(e) => {
                    problems.push(format!("{e:#}; the ports of category {} are skipped", category.name));
                    continue;
                }
            };
            problems.append(&mut skipped);
            for port in ports {
                if port.name.starts_with('.') {
                    continue;
                }
                let text = format!("{}/{}", category.name, port.name);
                match Origin::parse(&text) {
                    Ok(origin) => candidates.push((origin, category.link.is_some(), port.link.is_some())),
                    Err(e) => problems.push(format!("{}: {e}; skipped", dir.join(&port.name).display())),
                }
            }
        }
        let checked: Vec<(Origin, Option<String>, Option<String>)> = candidates
            .into_par_iter()
            .filter_map(|(origin, category_link, port_link)| {
                if !category_link && !port_link {
                    return self.port_dir(&origin).join("Makefile").is_file().then_some((origin, None, None));
                }
                match self.escape(&origin) {
                    // Outside the tree: listed, so that it is refused by name.
                    Err(reason) => Some((origin, None, Some(reason))),
                    Ok(_) if !self.port_dir(&origin).join("Makefile").is_file() => None,
                    Ok(Some(target)) if port_link => {
                        let note =
                            format!("{origin} is a symlink to {target} inside the ports tree; scanned as {origin}");
                        Some((origin, Some(note), None))
                    }
                    Ok(_) => Some((origin, None, None)),
                }
            })
            .collect();
        let mut origins = Vec::with_capacity(checked.len());
        let mut refused = Vec::new();
        for (origin, note, refusal) in checked {
            problems.extend(note);
            if let Some(reason) = refusal {
                refused.push((origin.clone(), reason));
            }
            origins.push(origin);
        }
        Ok(Listing { origins, problems, refused })
    }

    /// Whether a port directory leaves the tree through a symlink (of its
    /// category or of itself): `Ok(None)` no symlink, `Ok(Some(target))` a
    /// symlink resolving inside the tree, `Err(reason)` one that resolves
    /// outside it or not at all. Such a port is never scanned: its Makefile
    /// is not part of the tree.
    pub fn escape(&self, dir: &Origin) -> Result<Option<String>, String> {
        self.escape_of(&dir.category, Some(&dir.name))
    }

    fn escape_of(&self, category: &str, name: Option<&str>) -> Result<Option<String>, String> {
        let category_dir = self.ports_dir.join(category);
        let port_dir = name.map(|n| category_dir.join(n));
        let is_link = |p: &Path| std::fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink());
        let link = match &port_dir {
            Some(dir) if is_link(dir) => dir.clone(),
            _ if is_link(&category_dir) => category_dir.clone(),
            _ => return Ok(None),
        };
        let shown = link.strip_prefix(&self.ports_dir).unwrap_or(&link).display().to_string();
        let path = port_dir.as_ref().unwrap_or(&category_dir);
        let target = path
            .canonicalize()
            .map_err(|e| format!("{shown} is a symlink to {}, which does not resolve ({e})", link_text(&link)))?;
        let root = self.ports_dir.canonicalize().unwrap_or_else(|_| self.ports_dir.clone());
        match target.strip_prefix(&root) {
            Ok(inside) => Ok(Some(inside.display().to_string())),
            Err(_) => Err(format!(
                "{shown} is a symlink to {} (resolving to {}), outside the ports tree {}; not scanned",
                link_text(&link),
                target.display(),
                root.display()
            )),
        }
    }
    pub fn port_dir(&self, origin: &Origin) -> PathBuf {
        self.ports_dir.join(&origin.category).join(&origin.name)
    }

    /// Scans many port directories in parallel.
    pub fn scan_dirs(&self, dirs: &[Origin]) -> Vec<DirScan> {
        dirs.par_iter().map(|dir| self.scan_dir(dir)).collect()
    }

    /// Every variant of one port directory, as its framework scans it.
    pub fn scan_dir(&self, dir: &Origin) -> DirScan {
        self.framework.framework().scan_dir(self, dir)
    }

    /// Runs the make program with `args` in the directory of `dir` (with
    /// `FLAVOR` set or unset): in a scan sandbox, or without one on the host.
    /// `Err` when it could not run at all; its exit status is in the output.
    pub fn run_make(&self, dir: &Origin, flavor: Option<&str>, args: Vec<String>) -> Result<MakeOutput, String> {
        let port_dir = self.port_dir(dir);
        match &self.sandbox {
            Some(pool) => {
                let request = ScanRequest {
                    dir: port_dir,
                    flavor: flavor.map(str::to_string),
                    args,
                    env: pool.environment(&self.make_env),
                };
                pool.query(&request, &dir.with_flavor(flavor).to_string())
            }
            None => self.query_on_host(&port_dir, flavor, &args),
        }
    }

    /// The query without a sandbox, through `Command::output`, which drains
    /// both pipes.
    fn query_on_host(&self, port_dir: &Path, flavor: Option<&str>, args: &[String]) -> Result<MakeOutput, String> {
        let mut command = Command::new(&self.make_program);
        command.current_dir(port_dir).args(args);
        command.env("PORTSDIR", &self.ports_dir).envs(self.make_env.iter().map(|(k, v)| (k, v)));
        match flavor {
            Some(f) => command.env("FLAVOR", f),
            None => command.env_remove("FLAVOR"),
        };
        let output = command.output().map_err(|e| format!("cannot run {}: {e}", self.make_program))?;
        Ok(MakeOutput {
            success: output.status.success(),
            status: output.status.to_string(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }
}

/// PKGNAME names a file (`All/${PKGNAME}.pkg`) in the repository and in
/// every sandbox: it must be a plain file name, and PKGFILE must be
/// `${PACKAGES}/All/${PKGNAME}.pkg` as the framework defines it. A port that
/// sets them otherwise is not buildable.
pub fn check_package_names(pkgname: &str, pkgfile: &str, package_file: &str) -> Result<(), String> {
    plain_file_name(pkgname).map_err(|e| format!("PKGNAME {:?} is not a plain file name: {e}", pkgname))?;
    let mut parts = pkgfile.rsplit('/');
    let (file, all, rest) = (parts.next().unwrap_or(""), parts.next(), parts.next());
    plain_file_name(file).map_err(|e| format!("PKGFILE {:?}: its file name is not plain: {e}", pkgfile))?;
    if file != package_file || all != Some("All") || rest.is_none() {
        return Err(format!("PKGFILE {:?} is not of the form <packages>/All/{package_file}", pkgfile));
    }
    Ok(())
}

/// A name with no `/`, not `.` or `..`, no control characters or whitespace.
pub fn plain_file_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        Err("empty")
    } else if name == "." || name == ".." {
        Err("a directory reference")
    } else if name.contains('/') {
        Err("contains '/'")
    } else if name.chars().any(char::is_control) {
        Err("contains a control character")
    } else if name.chars().any(char::is_whitespace) {
        Err("contains whitespace")
    } else {
        Ok(())
    }
}

/// A listed directory: its (UTF-8) name, and whether it is a symlink.
#[derive(Debug)]
struct DirEntry {
    name: String,
    link: Option<PathBuf>,
}

/// The directories in `dir` (hidden ones and `Mk` left out), sorted, and
/// one problem line per directory skipped because its name is not UTF-8 or
/// its entry cannot be read. Symlinks to directories are listed (with
/// `link` set), dangling symlinks too (a port directory leading nowhere is
/// refused by name rather than dropped).
fn sorted_dirs(dir: &Path) -> anyhow::Result<(Vec<DirEntry>, Vec<String>)> {
    use anyhow::Context;
    let mut names = Vec::new();
    let mut problems = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                problems.push(format!("cannot read an entry of {}: {e}; skipped", dir.display()));
                continue;
            }
        };
        let lossy = entry.file_name().to_string_lossy().into_owned();
        if lossy.starts_with('.') || lossy == "Mk" {
            continue;
        }
        let kind = match entry.file_type() {
            Ok(kind) => kind,
            Err(e) => {
                problems.push(format!("cannot read {}: {e}; skipped", entry.path().display()));
                continue;
            }
        };
        let link = if kind.is_symlink() {
            let target = std::fs::read_link(entry.path()).unwrap_or_default();
            match std::fs::metadata(entry.path()) {
                Ok(meta) if meta.is_dir() => Some(target),
                Ok(_) => continue,
                Err(_) => Some(target),
            }
        } else if kind.is_dir() {
            None
        } else {
            continue;
        };
        match entry.file_name().into_string() {
            Ok(name) => names.push(DirEntry { name, link }),
            Err(_) => problems.push(format!(
                "{}: the directory name is not UTF-8 (shown with replacement characters); skipped",
                dir.join(&lossy).display()
            )),
        }
    }
    names.sort_by(|a, b| a.name.cmp(&b.name));
    Ok((names, problems))
}

/// "`target`" of a symlink as written.
fn link_text(link: &Path) -> String {
    std::fs::read_link(link).map_or_else(|_| "?".to_string(), |t| t.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_names_must_be_plain_and_pkgfile_framework_shaped() {
        assert_eq!(check_package_names("hello-1.0", "/usr/ports/packages/All/hello-1.0.pkg", "hello-1.0.pkg"), Ok(()));
        for (pkgname, pkgfile, needle) in [
            ("../x-1.0", "/p/All/../x-1.0.pkg", "PKGNAME \"../x-1.0\" is not a plain file name: contains '/'"),
            ("..", "/p/All/...pkg", "a directory reference"),
            (".", "/p/All/..pkg", "a directory reference"),
            ("a b", "/p/All/a b.pkg", "contains whitespace"),
            ("a\u{1}b", "/p/All/a\u{1}b.pkg", "contains a control character"),
            ("x-1.0", "/tmp/x-1.0.pkg", "is not of the form <packages>/All/x-1.0.pkg"),
            ("x-1.0", "All/x-1.0.pkg", "is not of the form"),
            ("x-1.0", "/p/All/y-1.0.pkg", "is not of the form"),
            ("x-1.0", "/p/All/", "its file name is not plain: empty"),
        ] {
            let err = check_package_names(pkgname, pkgfile, &format!("{pkgname}.pkg")).expect_err(pkgname);
            assert!(err.contains(needle), "{pkgname} {pkgfile}: {err}");
        }
    }
}
