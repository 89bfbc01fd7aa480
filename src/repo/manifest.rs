//! The `+MANIFEST` of a package: its JSON shape and the sanity rules every
//! manifest must satisfy before its file list is trusted.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// Name of the manifest entry, always the first entry of a package.
pub const MANIFEST_ENTRY: &str = "+MANIFEST";

/// A package's `+MANIFEST`, as written by `create-pkg.py`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    pub origin: String,
    #[serde(default)]
    pub flavor: String,
    #[serde(default)]
    pub comment: String,
    pub prefix: String,
    #[serde(default)]
    pub deps: Vec<ManifestDep>,
    pub files: Vec<ManifestFile>,
}

/// A run-time dependency (RUN_DEPENDS and LIB_DEPENDS) of a package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestDep {
    pub name: String,
    pub version: String,
    pub origin: String,
}

/// One packed file: absolute path and sha256 (hex) of its contents, or of
/// the target string for a symlink.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    pub path: String,
    pub sha256: String,
}

impl Manifest {
    /// `name-version`, the package's file stem.
    pub fn pkgname(&self) -> String {
        format!("{}-{}", self.name, self.version)
    }

    /// The port that built the package as `cat/port[@flavor]`, the form
    /// of [`crate::ports::Origin`]'s `Display`.
    pub fn full_origin(&self) -> String {
        if self.flavor.is_empty() {
            self.origin.clone()
        } else {
            format!("{}@{}", self.origin, self.flavor)
        }
    }

    /// Parses and checks the raw `+MANIFEST` of package file `pkg`.
    pub(crate) fn parse(pkg: &Path, raw: &[u8]) -> Result<Manifest> {
        let manifest: Manifest =
            serde_json::from_slice(raw).with_context(|| format!("{}: +MANIFEST is not valid JSON", pkg.display()))?;
        if let Err(why) = manifest.check() {
            bail!("{}: invalid +MANIFEST: {why}", pkg.display());
        }
        Ok(manifest)
    }

    /// The prefix relative to `/` (`usr/local`; empty for `/`).
    pub(crate) fn prefix_rel(&self) -> &str {
        self.prefix.trim_start_matches('/')
    }

    /// Listed files as archive paths (relative to `/`) mapped to sha256.
    pub(crate) fn expected_entries(&self) -> HashMap<String, String> {
        self.files.iter().map(|f| (f.path.trim_start_matches('/').to_string(), f.sha256.clone())).collect()
    }

    fn check(&self) -> Result<(), String> {
        check_name(&self.name)?;
        if self.version.is_empty() || self.version.contains('/') {
            return Err(format!("bad version {:?}", self.version));
        }
        let prefix =
            clean_abs(&self.prefix).ok_or_else(|| format!("prefix {:?} is not a clean absolute path", self.prefix))?;
        let mut listed = HashSet::new();
        for file in &self.files {
            self.check_file(file, &prefix)?;
            if !listed.insert(file.path.as_str()) {
                return Err(format!("{} is listed twice", file.path));
            }
        }
        check_no_file_below_file(&listed)
    }

    fn check_file(&self, file: &ManifestFile, prefix: &[&str]) -> Result<(), String> {
        let comps = clean_abs(&file.path)
            .filter(|c| !c.is_empty())
            .ok_or_else(|| format!("file path {:?} is not a clean absolute path", file.path))?;
        if comps.len() <= prefix.len() || !comps.starts_with(prefix) {
            return Err(format!("{} is outside prefix {}", file.path, self.prefix));
        }
        if !is_sha256_hex(&file.sha256) {
            return Err(format!("{}: sha256 {:?} is not 64 hex digits", file.path, file.sha256));
        }
        Ok(())
    }
}

/// A package name must be usable as one directory name in the pkgdb.
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name == "." || name == ".." || name.contains('/') {
        return Err(format!("bad package name {name:?}"));
    }
    Ok(())
}

/// A file cannot also be a directory holding another listed file.
fn check_no_file_below_file(listed: &HashSet<&str>) -> Result<(), String> {
    for path in listed {
        let mut dir = *path;
        while let Some((parent, _)) = dir.rsplit_once('/') {
            if listed.contains(parent) {
                return Err(format!("{path} is listed below file {parent}"));
            }
            dir = parent;
        }
    }
    Ok(())
}

/// The components of a clean absolute path (`/` gives none), or `None` if
/// `path` is relative or has empty, `.` or `..` components.
fn clean_abs(path: &str) -> Option<Vec<&str>> {
    let rest = path.strip_prefix('/')?;
    if rest.is_empty() {
        return Some(Vec::new());
    }
    let comps: Vec<&str> = rest.split('/').collect();
    comps.iter().all(|c| !c.is_empty() && *c != "." && *c != "..").then_some(comps)
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(prefix: &str, paths: &[&str]) -> Manifest {
        Manifest {
            name: "hello".into(),
            version: "2.1".into(),
            origin: "misc/hello".into(),
            flavor: String::new(),
            comment: String::new(),
            prefix: prefix.into(),
            deps: vec![],
            files: paths.iter().map(|p| ManifestFile { path: p.to_string(), sha256: "ab".repeat(32) }).collect(),
        }
    }

    #[test]
    fn pkgname_is_name_dash_version() {
        assert_eq!(manifest("/usr/local", &[]).pkgname(), "hello-2.1");
    }

    #[test]
    fn accepts_clean_paths_below_prefix() {
        manifest("/usr/local", &["/usr/local/bin/hello", "/usr/local/lib/x"]).check().unwrap();
        manifest("/", &["/etc/x"]).check().unwrap();
    }

    #[test]
    fn rejects_unsafe_manifests() {
        let cases: &[(&str, &[&str], &str)] = &[
            ("usr/local", &[], "prefix \"usr/local\" is not a clean"),
            ("/usr/../etc", &[], "is not a clean absolute path"),
            ("/usr/local", &["/usr/local/../../etc/passwd"], "not a clean absolute path"),
            ("/usr/local", &["usr/local/bin/x"], "not a clean absolute path"),
            ("/usr/local", &["/etc/passwd"], "/etc/passwd is outside prefix /usr/local"),
            ("/usr/local", &["/usr/local"], "is outside prefix"),
            ("/usr/local", &["/usr/local/a", "/usr/local/a"], "/usr/local/a is listed twice"),
            ("/usr/local", &["/usr/local/a", "/usr/local/a/b"], "listed below file /usr/local/a"),
        ];
        for (prefix, paths, want) in cases {
            let err = manifest(prefix, paths).check().unwrap_err();
            assert!(err.contains(want), "{prefix} {paths:?}: {err}");
        }
    }

    #[test]
    fn rejects_bad_name_and_sha() {
        let mut m = manifest("/usr/local", &["/usr/local/a"]);
        m.files[0].sha256 = "xyz".into();
        assert!(m.check().unwrap_err().contains("is not 64 hex digits"));
        let mut m = manifest("/usr/local", &[]);
        m.name = "../evil".into();
        assert!(m.check().unwrap_err().contains("bad package name"));
    }
}
