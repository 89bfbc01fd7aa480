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
use crate::sandbox::scan::ScanRequest;
use crate::sandbox::scan_pool::{MakeOutput, ScanPool};

/// Variables queried from every port, in this order (one `-V` each).
const QUERY_VARS: &[&str] = &[
    "PKGNAME",
    "PKGVERSION",
    "PKGFILE",
    "FETCH_DEPENDS",
    "EXTRACT_DEPENDS",
    "PATCH_DEPENDS",
    "BUILD_DEPENDS",
    "LIB_DEPENDS",
    "RUN_DEPENDS",
    "IGNORE",
    "FLAVORS",
    "FLAVOR",
    "DISTFILES",
    "DIST_SUBDIR",
    "COMMENT",
    ".MAKE.MAKEFILES",
];

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
}

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
    pub ports_dir: PathBuf,
    pub make_program: String,
    /// Extra make variables, passed in the environment like a make.conf.
    pub make_env: Vec<(String, String)>,
    /// Where the queries run: the scan sandboxes of every command, or `None`
    /// for bmake straight on the host (unit tests and benches of trusted
    /// trees only).
    pub sandbox: Option<Arc<ScanPool>>,
}

/// The result of scanning one port directory: every flavor, or the error.
pub type DirScan = Result<Vec<PortMeta>, ScanError>;

impl Scanner {
    /// Every `category/port` directory of the tree that holds a Makefile.
    /// Categories are the lower-case top-level directories; `Mk`, hidden and
    /// capitalised directories (Templates, Tools, distfiles mirrors) are not.
    /// The Makefile checks run in parallel: on a 30,000-port tree they are
    /// 30,000 `stat` calls.
    pub fn list_ports(&self) -> anyhow::Result<Vec<Origin>> {
        let mut candidates = Vec::new();
        for category in sorted_dirs(&self.ports_dir)? {
            if !category.starts_with(|c: char| c.is_ascii_lowercase()) {
                continue;
            }
            for name in sorted_dirs(&self.ports_dir.join(&category))? {
                if !name.starts_with('.') {
                    candidates.push(format!("{category}/{name}"));
                }
            }
        }
        Ok(candidates
            .into_par_iter()
            .filter(|dir| self.ports_dir.join(dir).join("Makefile").is_file())
            .filter_map(|dir| Origin::parse(&dir).ok())
            .collect())
    }

    pub fn port_dir(&self, origin: &Origin) -> PathBuf {
        self.ports_dir.join(&origin.category).join(&origin.name)
    }

    /// Scans many port directories in parallel.
    pub fn scan_dirs(&self, dirs: &[Origin]) -> Vec<DirScan> {
        dirs.par_iter().map(|dir| self.scan_dir(dir)).collect()
    }

    /// Scans every flavor of one port directory (`dir.flavor` is ignored).
    pub fn scan_dir(&self, dir: &Origin) -> DirScan {
        let unflavored = dir.with_flavor(None);
        if !self.port_dir(&unflavored).join("Makefile").is_file() {
            return Err(ScanError {
                origin: unflavored.clone(),
                message: format!("no such port: {} has no Makefile", self.port_dir(&unflavored).display()),
            });
        }
        let first = self.query(&unflavored, None)?;
        let Some(default_flavor) = first.flavors.first().cloned() else {
            return Ok(vec![first]);
        };
        let mut metas = vec![PortMeta { origin: dir.with_flavor(Some(&default_flavor)), ..first }];
        for flavor in metas[0].flavors.clone().iter().skip(1) {
            metas.push(self.query(&unflavored, Some(flavor))?);
        }
        Ok(metas)
    }

    /// One bmake call: all of [`QUERY_VARS`] at once.
    pub fn query(&self, dir: &Origin, flavor: Option<&str>) -> Result<PortMeta, ScanError> {
        let origin = dir.with_flavor(flavor);
        let port_dir = self.port_dir(dir);
        let fail = |message: String| ScanError { origin: origin.clone(), message };
        let mut args = vec!["-m".to_string(), self.ports_dir.join("Mk").to_string_lossy().into_owned()];
        for var in QUERY_VARS {
            args.push("-V".into());
            args.push(format!("${{{var}}}"));
        }
        let output = match &self.sandbox {
            Some(pool) => {
                let request = ScanRequest {
                    dir: port_dir.clone(),
                    flavor: flavor.map(str::to_string),
                    args,
                    env: pool.environment(&self.make_env),
                };
                pool.query(&request, &origin.to_string()).map_err(fail)?
            }
            None => self.query_on_host(&port_dir, flavor, &args).map_err(fail)?,
        };
        let stderr = output.stderr.lines().map(str::trim).collect::<Vec<_>>().join(" | ");
        if !output.success {
            return Err(fail(format!(
                "{} failed ({}): {}",
                self.make_program,
                output.status,
                if stderr.is_empty() { "no error output" } else { &stderr }
            )));
        }
        let stdout = output.stdout;
        let lines: Vec<&str> = stdout.lines().collect();
        if lines.len() != QUERY_VARS.len() {
            return Err(fail(format!(
                "{} printed {} lines for {} variables: {}",
                self.make_program,
                lines.len(),
                QUERY_VARS.len(),
                stdout.trim()
            )));
        }
        parse_query(origin.clone(), &port_dir, &lines).map_err(fail)
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

fn parse_query(origin: Origin, port_dir: &Path, lines: &[&str]) -> Result<PortMeta, String> {
    let value = |name: &str| -> &str {
        let index = QUERY_VARS.iter().position(|v| *v == name).expect("queried variable");
        lines[index].trim()
    };
    let words = |name: &str| value(name).split_whitespace().map(str::to_string).collect::<Vec<_>>();
    for required in ["PKGNAME", "PKGVERSION", "PKGFILE"] {
        if value(required).is_empty() {
            return Err(format!("{required} is empty (does the Makefile include bsd.port.mk?)"));
        }
    }
    let flavors = words("FLAVORS");
    if let (Some(wanted), false) = (&origin.flavor, flavors.is_empty()) {
        if value("FLAVOR") != wanted {
            return Err(format!("FLAVOR is '{}', expected '{wanted}'", value("FLAVOR")));
        }
    }
    Ok(PortMeta {
        pkgname: value("PKGNAME").to_string(),
        pkgversion: value("PKGVERSION").to_string(),
        pkgfile: value("PKGFILE").to_string(),
        comment: value("COMMENT").to_string(),
        depends: DepKind::ALL.iter().map(|k| value(k.variable()).to_string()).collect(),
        ignore: Some(value("IGNORE").to_string()).filter(|s| !s.is_empty()),
        flavors,
        distfiles: words("DISTFILES"),
        dist_subdir: value("DIST_SUBDIR").to_string(),
        makefiles: words(".MAKE.MAKEFILES").iter().map(|m| port_dir.join(m)).collect(),
        origin,
    })
}

fn sorted_dirs(dir: &Path) -> anyhow::Result<Vec<String>> {
    use anyhow::Context;
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') && name != "Mk" && entry.file_type().is_ok_and(|t| t.is_dir()) {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}
