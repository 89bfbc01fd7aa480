//! The bundled framework: the contract `ports-testdata/Mk/bsd.port.mk`
//! implements (`docs/FRAMEWORKS.md`). Ports are `category/port` directories
//! with a Makefile; one `bmake -V` query per port and per extra flavor
//! yields everything the builder needs; dependency entries are
//! `what:origin[:target]`; packages are `All/<PKGNAME>.pkg`, zstd tars with
//! a `+MANIFEST`, installed below `/usr/local`.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;

use anyhow::{bail, Context, Result};

use super::{Framework, Kind, NodeDeps, References};
use crate::fetch::distinfo::{self, Algorithm, Digest, Distfile, Distinfo, Entry, Expected};
use crate::graph::{EdgeKind, Need, NodeId};
use crate::ports::scan::{check_package_names, DirScan, Listing, PortMeta, ScanError, Scanner};
use crate::ports::DepSpec;
use crate::ports::PortTree;
use crate::ports::{DepKind, Origin, Phase};
use crate::sandbox::download::{check_key, Wanted};

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
    "_MAKE_JOBS_SAFE",
];

/// The graph's kinds of the six variables, in [`DepKind::ALL`] order (the
/// phase order, which ranks them): every one is built first and installed
/// into the sandbox of its user; library and run dependencies come along
/// wherever their user is installed.
static EDGE_KINDS: [EdgeKind; 6] = [
    EdgeKind { rank: 0, need: Need::Build, label: "FETCH_DEPENDS" },
    EdgeKind { rank: 1, need: Need::Build, label: "EXTRACT_DEPENDS" },
    EdgeKind { rank: 2, need: Need::Build, label: "PATCH_DEPENDS" },
    EdgeKind { rank: 3, need: Need::Build, label: "BUILD_DEPENDS" },
    EdgeKind { rank: 4, need: Need::BuildAndRun, label: "LIB_DEPENDS" },
    EdgeKind { rank: 5, need: Need::BuildAndRun, label: "RUN_DEPENDS" },
];

/// The graph's kind of an entry of `kind`'s variable.
pub fn edge_kind(kind: DepKind) -> &'static EdgeKind {
    &EDGE_KINDS[kind as usize]
}

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

    /// Only entries naming a directory not yet taken are parsed.
    fn dependency_dirs(&self, meta: &PortMeta, taken: &dyn Fn(&str) -> bool) -> Vec<Origin> {
        let mut dirs = Vec::new();
        for (kind, value) in DepKind::ALL.iter().zip(&meta.depends) {
            for entry in value.split_whitespace() {
                if entry_dir(entry).is_some_and(taken) {
                    continue;
                }
                if let Ok(spec) = DepSpec::parse(*kind, entry) {
                    dirs.push(spec.origin.with_flavor(None));
                }
            }
        }
        dirs
    }

    /// Each `what:origin[:target]` entry names a node: an unflavored
    /// origin of a flavored port means its first flavor; a malformed entry,
    /// a missing port or an unknown flavor is an error naming the variable
    /// and the entry.
    ///
    /// Entries repeat across a tree (a hub's entry is in half of its
    /// ports), and what an entry resolves to does not depend on who has it:
    /// each distinct entry is parsed and resolved once.
    fn resolve(&self, tree: &PortTree, scanner: &Scanner, missing: &BTreeSet<Origin>) -> Vec<NodeDeps> {
        enum Resolved {
            Node(NodeId),
            Unresolved(String),
            Malformed(String),
        }
        let mut known: HashMap<&str, Resolved> = HashMap::with_capacity(tree.nodes.len() * 2);
        let mut all = Vec::with_capacity(tree.nodes.len());
        for node in &tree.nodes {
            let mut deps = NodeDeps::default();
            if let Some(meta) = &node.meta {
                // Malformed entries first, then unresolvable ones, as `dep_specs` orders them.
                let mut unresolved = Vec::new();
                for (kind, value) in DepKind::ALL.iter().zip(&meta.depends) {
                    for entry in value.split_whitespace() {
                        let resolved = known.entry(entry).or_insert_with(|| match DepSpec::parse(*kind, entry) {
                            Ok(spec) => match tree.resolve_spec(&spec, scanner, missing) {
                                Ok(dep) => Resolved::Node(dep),
                                Err(e) => Resolved::Unresolved(e),
                            },
                            Err(e) => Resolved::Malformed(e),
                        });
                        match resolved {
                            Resolved::Node(dep) => deps.edges.push((*dep, edge_kind(*kind))),
                            Resolved::Unresolved(e) => unresolved.push(format!("{kind}: entry '{entry}': {e}")),
                            Resolved::Malformed(e) => deps.errors.push(format!("{kind}: malformed entry {e}")),
                        }
                    }
                }
                deps.errors.append(&mut unresolved);
            }
            all.push(deps);
        }
        all
    }

    fn phases(&self, check_plist: bool) -> Vec<Phase> {
        Phase::ALL.into_iter().filter(|p| check_plist || *p != Phase::CheckPlist).collect()
    }

    /// Every phase is the make target of its name; fetch lists the files
    /// (`fetch-list`) and portsynth downloads them.
    fn phase_target(&self, phase: Phase) -> Option<&'static str> {
        match phase {
            Phase::Fetch => None,
            _ => Some(phase.name()),
        }
    }

    fn make_args(&self, target: &str, _variant: &[String]) -> Vec<String> {
        vec!["-m".into(), SANDBOX_MK.into(), target.into()]
    }

    fn install_command(&self, _package: &Path) -> Option<Vec<String>> {
        None
    }

    fn test_install(&self, _bootstrap_pkg: bool) -> bool {
        false
    }

    fn build_mk_conf(&self, _kit_prefix: &Path, _mk_conf: Option<&str>) -> Option<String> {
        None
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

    /// A bundled port's query is one `bmake -V` of a few variables: a minute
    /// is generous, and a hostile Makefile that hangs costs at most that.
    fn default_scan_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(60)
    }

    fn package_format(&self) -> &'static dyn crate::repo::PackageFormat {
        &crate::repo::format::Bundled
    }

    /// The framework's own checksum after portsynth's download.
    fn fetch_only_phases(&self) -> Vec<Phase> {
        vec![Phase::Fetch, Phase::Checksum]
    }

    /// `SHA256 (KEY) = hex` and `SIZE (KEY) = bytes`; any other line is
    /// ignored, as `Mk/Scripts/common.sh` ignores it.
    fn parse_distinfo(&self, text: &str, _file: &Path) -> Result<Distinfo> {
        Ok(parse_distinfo(text))
    }

    /// `make fetch-list`: `key size sha256 url…` per distfile.
    fn fetch_list_args(&self, variant: &[String]) -> Vec<String> {
        self.make_args("fetch-list", variant)
    }

    fn parse_fetch_list(&self, output: &str, _tree: &Path) -> Result<Vec<Wanted>> {
        parse_fetch_list(output)
    }

    /// DISTFILES and DIST_SUBDIR from the scan, checked against the port's
    /// `distinfo`; without one every file is unverifiable (the checksum
    /// phase says so).
    fn port_distfiles(&self, scanner: &Scanner, meta: &PortMeta) -> Result<Vec<Distfile>> {
        if meta.distfiles.is_empty() {
            return Ok(Vec::new());
        }
        let path = scanner.port_dir(&meta.origin).join("distinfo");
        let distinfo = distinfo::read(self, &path)?.unwrap_or_default();
        Ok(meta
            .distfiles
            .iter()
            .map(|file| {
                let key = distinfo::key(&meta.dist_subdir, file);
                Distfile { expected: distinfo.expected(&key), key }
            })
            .collect())
    }

    /// The DISTFILES of every scanned port (any flavor); a port that could
    /// not be scanned makes the set unknown.
    fn referenced_distfiles(
        &self,
        _ports_dir: &Path,
        scan: &mut dyn FnMut() -> Result<PortTree>,
    ) -> Result<References> {
        let tree = scan()?;
        let metas = tree.nodes.iter().filter_map(|n| n.meta.as_ref());
        Ok(References {
            keys: metas.flat_map(|m| m.distfiles.iter().map(|f| distinfo::key(&m.dist_subdir, f))).collect(),
            unknown: tree
                .nodes
                .iter()
                .filter(|n| n.meta.is_none())
                .map(|n| format!("{} could not be scanned", n.origin))
                .collect(),
        })
    }
}

/// The SHA256 and SIZE lines of a bundled distinfo.
fn parse_distinfo(text: &str) -> Distinfo {
    let mut parsed = Distinfo::default();
    for line in text.lines() {
        let Some((algorithm, rest)) = line.split_once(" (") else { continue };
        let Some((key, value)) = rest.rsplit_once(") = ") else { continue };
        let value = value.trim();
        match algorithm.trim() {
            "SHA256" => {
                if let Ok(digest) = Digest::parse(Algorithm::Sha256, value) {
                    parsed.entries.entry(key.to_string()).or_default().digests = vec![digest];
                }
            }
            "SIZE" => {
                if let Ok(bytes) = value.parse() {
                    parsed.entries.entry(key.to_string()).or_default().size = Some(bytes);
                }
            }
            _ => {}
        }
    }
    parsed
}

/// `make fetch-list` output: `key size sha256 url…` per line, `-` for a
/// size or digest distinfo lacks; a line that is not data is an error
/// naming it.
fn parse_fetch_list(text: &str) -> Result<Vec<Wanted>> {
    let mut wanted = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut words = line.split_whitespace();
        let (Some(key), Some(size), Some(sha256)) = (words.next(), words.next(), words.next()) else {
            bail!("fetch-list printed a malformed line: {line:?}");
        };
        check_key(key).with_context(|| format!("fetch-list line {line:?}"))?;
        let size = match size {
            "-" => None,
            s => Some(s.parse().with_context(|| format!("fetch-list: bad size {s:?} for {key}"))?),
        };
        let digest = match sha256 {
            "-" => None,
            s => Some(
                Digest::parse(Algorithm::Sha256, s).map_err(|e| anyhow::anyhow!("fetch-list: bad {e} for {key}"))?,
            ),
        };
        let entry = Entry { size, digests: digest.into_iter().collect() };
        let expected: Option<Expected> = entry.expected();
        wanted.push(Wanted { key: key.to_string(), expected, urls: words.map(str::to_string).collect() });
    }
    Ok(wanted)
}

/// The `cat/port` of a dependency entry (`what:origin[:target]`) as a slice
/// of it, the way `Origin::parse` finds it, without parsing the entry (None
/// when it has no origin part). Only a shortcut: an entry whose directory is
/// not known is parsed in full.
fn entry_dir(entry: &str) -> Option<&str> {
    let origin = entry.split(':').nth(1)?.trim();
    let origin = origin.strip_prefix("${PORTSDIR}/").unwrap_or(origin);
    let path = origin.split_once('@').map_or(origin, |(path, _)| path).trim_end_matches('/');
    if !path.starts_with('/') {
        return Some(path);
    }
    let mut slashes = path.rmatch_indices('/').map(|(at, _)| at);
    slashes.next()?;
    let start = slashes.next()?;
    Some(&path[start + 1..])
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
    // bsd.port.mk derives it from MAKE_JOBS_UNSAFE; anything else is a
    // Makefile that overrode the framework's variable.
    let parallel_safe = match value("_MAKE_JOBS_SAFE") {
        "yes" => true,
        "no" => false,
        other => return Err(format!("_MAKE_JOBS_SAFE is {other:?}, not yes or no (set by bsd.port.mk only)")),
    };
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
        variant: vec![],
        bootstrap_pkg: false,
        parallel_safe,
        origin,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA_A: &str = "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb";

    #[test]
    fn distinfo_keys_with_and_without_subdir_parse_and_noise_is_ignored() {
        let text = format!(
            "TIMESTAMP = 1\nSHA256 (a.tar.gz) = {SHA_A}\nSIZE (a.tar.gz) = 1\n\
             SHA256 (sub/b (1).tgz) = {}\nSIZE (sub/b (1).tgz) = 22\nSHA256 (only-sha) = 00\nSIZE (no-sha) = 3\ngarbage\n",
            SHA_A.to_uppercase()
        );
        let parsed = Bundled.parse_distinfo(&text, Path::new("/t/misc/x/distinfo")).unwrap();
        let sha = Digest { algorithm: Algorithm::Sha256, hex: SHA_A.into() };
        assert_eq!(parsed.expected("a.tar.gz"), Some(Expected { size: 1, digests: vec![sha.clone()] }));
        assert_eq!(parsed.expected("sub/b (1).tgz"), Some(Expected { size: 22, digests: vec![sha] }));
        assert_eq!((parsed.expected("only-sha"), parsed.expected("no-sha")), (None, None));
    }

    #[test]
    fn a_ports_distfiles_are_its_scanned_distfiles_with_its_distinfo() {
        let dir = tempfile::tempdir().unwrap();
        let scanner = Scanner::on_host(Kind::Bundled, dir.path());
        let meta = |distfiles: &[&str]| PortMeta {
            origin: Origin::parse("misc/x").unwrap(),
            pkgname: "x-1".into(),
            pkgversion: "1".into(),
            pkgfile: "/p/All/x-1.pkg".into(),
            comment: String::new(),
            depends: vec![String::new(); 6],
            ignore: None,
            flavors: vec![],
            distfiles: distfiles.iter().map(|s| s.to_string()).collect(),
            dist_subdir: "sub".into(),
            makefiles: vec![],
            variant: vec![],
            bootstrap_pkg: false,
            parallel_safe: true,
        };
        let unverifiable = Bundled.port_distfiles(&scanner, &meta(&["a"])).unwrap();
        assert_eq!(unverifiable, [Distfile { key: "sub/a".into(), expected: None }], "no distinfo: unverifiable");
        std::fs::create_dir_all(dir.path().join("misc/x")).unwrap();
        std::fs::write(dir.path().join("misc/x/distinfo"), format!("SHA256 (sub/a) = {SHA_A}\nSIZE (sub/a) = 1\n"))
            .unwrap();
        let files = Bundled.port_distfiles(&scanner, &meta(&["a", "b"])).unwrap();
        assert_eq!(files.iter().map(|f| f.key.as_str()).collect::<Vec<_>>(), ["sub/a", "sub/b"]);
        assert_eq!((files[0].expected.as_ref().map(|e| e.size), &files[1].expected), (Some(1), &None));
        assert!(Bundled.port_distfiles(&scanner, &meta(&[])).unwrap().is_empty());
    }

    #[test]
    fn fetch_list_lines_parse_and_bad_ones_are_named() {
        let sha = "a".repeat(64);
        let text = format!("sub/x-1.tgz 10 {sha} http://h/x-1.tgz file:///xports/Mirror/x-1.tgz\nnone - - \n");
        let wanted = parse_fetch_list(&text).unwrap();
        assert_eq!(wanted[0].key, "sub/x-1.tgz");
        let expected = wanted[0].expected.as_ref().unwrap();
        assert_eq!((expected.size, expected.digests[0].hex.as_str()), (10, sha.as_str()));
        assert_eq!(wanted[0].urls.len(), 2);
        assert_eq!(wanted[1].expected, None);
        for bad in ["../etc/passwd 1 - u", "/etc/passwd 1 - u", ".locks/x 1 - u", "a/../b 1 - u", "x.part 1 - u", "x"] {
            let err = format!("{:#}", parse_fetch_list(bad).unwrap_err());
            assert!(err.contains(bad.split(' ').next().unwrap()), "{bad}: {err}");
        }
        assert!(parse_fetch_list("x 1 nothex u").is_err());
        assert!(parse_fetch_list("x many - u").is_err());
    }

    #[test]
    fn entry_dir_finds_the_directory_origin_parse_finds() {
        for entry in [
            "pkgconf:devel/pkgconf",
            "libx.so:devel/libx@lite",
            "x:${PORTSDIR}/misc/hello",
            "x:/usr/ports/misc/hello/",
            "x:misc/hello:build",
            "py>=1.0:lang/py@py311:stage",
        ] {
            let spec = DepSpec::parse(DepKind::Build, entry).unwrap();
            assert_eq!(entry_dir(entry), Some(spec.origin.dir().as_str()), "{entry}");
        }
        assert_eq!(entry_dir("no-origin"), None);
        assert_eq!(entry_dir("x:/hello"), None);
    }

    #[test]
    fn each_variable_maps_to_its_own_edge_kind_in_phase_order() {
        for (position, dep_kind) in DepKind::ALL.into_iter().enumerate() {
            let kind = edge_kind(dep_kind);
            assert_eq!(kind.label, dep_kind.variable());
            assert_eq!(kind.to_string(), dep_kind.to_string(), "shown as the variable");
            assert_eq!(usize::from(kind.rank), position);
            let runtime = matches!(dep_kind, DepKind::Lib | DepKind::Run);
            assert_eq!(kind.need, if runtime { Need::BuildAndRun } else { Need::Build }, "{dep_kind}");
            assert_eq!(kind.need.installed_with_its_user(), runtime, "{dep_kind}");
        }
        let mut by_kind = DepKind::ALL;
        by_kind.sort_by_key(|&k| edge_kind(k));
        assert_eq!(by_kind, DepKind::ALL, "edge kinds order as the variables do");
        assert_eq!(serde_json::to_value(edge_kind(DepKind::Lib)).unwrap(), "LIB_DEPENDS");
    }

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
    fn make_jobs_safe_is_yes_or_no_and_nothing_else() {
        let origin = Origin::parse("misc/x").unwrap();
        let at = QUERY_VARS.iter().position(|v| *v == "_MAKE_JOBS_SAFE").unwrap();
        let parse = |value: &str| {
            let mut lines = vec![""; QUERY_VARS.len()];
            (lines[0], lines[1], lines[2], lines[at]) = ("x-1.0", "1.0", "/p/All/x-1.0.pkg", value);
            parse_query(origin.clone(), std::path::Path::new("/p/misc/x"), &lines)
        };
        assert!(parse("yes").unwrap().parallel_safe);
        assert!(!parse("no").unwrap().parallel_safe);
        for bad in ["", "NO", "yes no", "maybe"] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains("_MAKE_JOBS_SAFE") && err.contains(&format!("{bad:?}")), "{bad}: {err}");
        }
    }

    #[test]
    fn make_targets_and_the_environment_are_the_frameworks() {
        assert_eq!(Bundled.make_args("build", &[]), ["-m", "/xports/Mk", "build"]);
        let env = Bundled.build_environment(Some("full"), 3);
        for pair in [("PORTSDIR", "/xports"), ("DISTDIR", "/distfiles"), ("MAKE_JOBS_NUMBER", "3"), ("FLAVOR", "full")]
        {
            assert!(env.contains(&(pair.0.to_string(), pair.1.to_string())), "{pair:?} in {env:?}");
        }
        assert!(!Bundled.build_environment(None, 1).iter().any(|(k, _)| k == "FLAVOR"));
        assert_eq!(Bundled.package_file("hello-1.0"), "hello-1.0.pkg");
    }
}
