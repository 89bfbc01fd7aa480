//! The bundled framework: the contract `ports-testdata/Mk/bsd.port.mk`
//! implements (`docs/FRAMEWORKS.md`). Ports are `category/port` directories
//! with a Makefile; one `bmake -V` query per port and per extra flavor
//! yields everything the builder needs; dependency entries are
//! `what:origin[:target]`; packages are `All/<PKGNAME>.pkg`, zstd tars with
//! a `+MANIFEST`, installed below `/usr/local`.

use std::collections::BTreeSet;

use super::{Framework, Kind, NodeDeps};
use crate::ports::scan::{check_package_names, DirScan, Listing, PortMeta, ScanError, Scanner};
use crate::ports::PortTree;
use crate::ports::{DepKind, Origin};

/// The bundled framework.
pub struct Bundled;

/// Variables queried from every port, in this order (one `-V` each).
pub const QUERY_VARS: &[&str] = &[
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

/// The framework directory of a tree, and of a build sandbox's tree.
const MK: &str = "Mk";
const SANDBOX_MK: &str = "/xports/Mk";

impl Framework for Bundled {
    fn kind(&self) -> Kind {
        Kind::Bundled
    }

    fn list_ports(&self, scanner: &Scanner) -> anyhow::Result<Listing> {
        scanner.list_category_ports()
    }

    /// The first query (without FLAVOR) yields the default flavor and the
    /// list of FLAVORS; each further flavor gets one more query.
    fn scan_dir(&self, scanner: &Scanner, dir: &Origin) -> DirScan {
        let unflavored = dir.with_flavor(None);
        if !scanner.port_dir(&unflavored).join("Makefile").is_file() {
            return Err(ScanError {
                origin: unflavored.clone(),
                message: format!("no such port: {} has no Makefile", scanner.port_dir(&unflavored).display()),
            });
        }
        let first = query(scanner, &unflavored, None)?;
        let Some(default_flavor) = first.flavors.first().cloned() else {
            return Ok(vec![first]);
        };
        let mut metas = vec![PortMeta { origin: dir.with_flavor(Some(&default_flavor)), ..first }];
        for flavor in metas[0].flavors.clone().iter().skip(1) {
            metas.push(query(scanner, &unflavored, Some(flavor))?);
        }
        Ok(metas)
    }

    fn dependency_dirs(&self, meta: &PortMeta) -> Vec<Origin> {
        meta.dep_specs().0.into_iter().map(|s| s.origin.with_flavor(None)).collect()
    }

    /// Each `what:origin[:target]` entry names a node: an unflavored
    /// origin of a flavored port means its first flavor; a malformed entry,
    /// a missing port or an unknown flavor is an error naming the variable
    /// and the entry.
    fn resolve(&self, tree: &PortTree, scanner: &Scanner, missing: &BTreeSet<Origin>) -> Vec<NodeDeps> {
        tree.nodes
            .iter()
            .map(|node| {
                let Some(meta) = &node.meta else { return NodeDeps::default() };
                let (specs, mut errors) = meta.dep_specs();
                let mut edges = Vec::new();
                for spec in &specs {
                    match tree.resolve_spec(spec, scanner, missing) {
                        Ok(dep) => edges.push((dep, spec.kind)),
                        Err(e) => errors.push(format!("{}: entry '{}': {e}", spec.kind, spec.text)),
                    }
                }
                NodeDeps { edges, errors }
            })
            .collect()
    }

    fn make_args(&self, target: &str) -> Vec<String> {
        vec!["-m".into(), SANDBOX_MK.into(), target.into()]
    }

    fn build_environment(&self, flavor: Option<&str>, make_jobs: usize) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = [
            ("PORTSDIR", "/xports"),
            ("WRKDIRPREFIX", crate::sandbox::HelperSpec::CONSTRUCTION),
            ("DISTDIR", "/distfiles"),
            ("PACKAGES", crate::sandbox::HelperSpec::PACKAGES),
            ("BATCH", "yes"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        env.push(("MAKE_JOBS_NUMBER".into(), make_jobs.to_string()));
        if let Some(flavor) = flavor {
            env.push(("FLAVOR".into(), flavor.to_string()));
        }
        env
    }

    fn localbase(&self) -> &'static str {
        "/usr/local"
    }

    fn package_file(&self, pkgname: &str) -> String {
        format!("{pkgname}.pkg")
    }
}

/// One bmake call: all of [`QUERY_VARS`] at once.
fn query(scanner: &Scanner, dir: &Origin, flavor: Option<&str>) -> Result<PortMeta, ScanError> {
    let origin = dir.with_flavor(flavor);
    let fail = |message: String| ScanError { origin: origin.clone(), message };
    let mut args = vec!["-m".to_string(), scanner.ports_dir.join(MK).to_string_lossy().into_owned()];
    for var in QUERY_VARS {
        args.push("-V".into());
        args.push(format!("${{{var}}}"));
    }
    let output = scanner.run_make(dir, flavor, args).map_err(fail)?;
    let stderr = output.stderr.lines().map(str::trim).collect::<Vec<_>>().join(" | ");
    if !output.success {
        return Err(fail(format!(
            "{} failed ({}): {}",
            scanner.make_program,
            output.status,
            if stderr.is_empty() { "no error output" } else { &stderr }
        )));
    }
    let lines: Vec<&str> = output.stdout.lines().collect();
    if lines.len() != QUERY_VARS.len() {
        return Err(fail(format!(
            "{} printed {} lines for {} variables: {}",
            scanner.make_program,
            lines.len(),
            QUERY_VARS.len(),
            output.stdout.trim()
        )));
    }
    parse_query(origin.clone(), &scanner.port_dir(dir), &lines).map_err(fail)
}

fn parse_query(origin: Origin, port_dir: &std::path::Path, lines: &[&str]) -> Result<PortMeta, String> {
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
    check_package_names(value("PKGNAME"), value("PKGFILE"), &Bundled.package_file(value("PKGNAME")))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_output_with_a_bad_pkgname_is_an_error() {
        let origin = Origin::parse("evil/x").unwrap();
        let mut lines = vec![""; QUERY_VARS.len()];
        lines[0] = "../../x-1.0";
        lines[1] = "1.0";
        lines[2] = "/p/All/../../x-1.0.pkg";
        let err = parse_query(origin, std::path::Path::new("/p/evil/x"), &lines).unwrap_err();
        assert!(err.contains("PKGNAME \"../../x-1.0\""), "{err}");
    }

    #[test]
    fn make_targets_and_the_environment_are_the_frameworks() {
        assert_eq!(Bundled.make_args("build"), ["-m", "/xports/Mk", "build"]);
        let env = Bundled.build_environment(Some("full"), 3);
        for pair in [("PORTSDIR", "/xports"), ("DISTDIR", "/distfiles"), ("MAKE_JOBS_NUMBER", "3"), ("FLAVOR", "full")] {
            assert!(env.contains(&(pair.0.to_string(), pair.1.to_string())), "{pair:?} in {env:?}");
        }
        assert!(!Bundled.build_environment(None, 1).iter().any(|(k, _)| k == "FLAVOR"));
        assert_eq!(Bundled.package_file("hello-1.0"), "hello-1.0.pkg");
    }
}
