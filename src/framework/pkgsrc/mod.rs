//! The pkgsrc framework (NetBSD's `mk/bsd.pkg.mk`): ports are the pkgpaths
//! the category Makefiles list in `SUBDIR`; one `bmake pbulk-index` per
//! pkgpath yields a record per MULTI_VERSION variant; `ALL_DEPENDS` entries
//! are `pattern:../../cat/pkg`, resolved as pbulk does ([`resolve`]);
//! builds happen in a LOCALBASE `/usr/pkg` unpacked from a bootstrap kit
//! ([`prefix`]); packages are `All/<PKGNAME>.tgz` as pkg_create writes them
//! ([`package`], packing lists in [`plist`]), indexed by
//! `All/pkg_summary.{gz,zst}` ([`summary`]); distfiles are listed by
//! `mk/fetch/`'s variables ([`fetch_list`]) and checked against `distinfo`
//! ([`distinfo`]).

pub mod distinfo;
pub mod fetch_list;
pub mod kit;
pub mod package;
pub mod pattern;
pub mod pbulk;
pub mod plist;
pub mod prefix;
pub mod resolve;
pub mod summary;

#[cfg(test)]
mod hostile_tests;
#[cfg(test)]
mod testpkg;

use std::collections::BTreeSet;
use std::path::Path;

use anyhow::{Context, Result};

use super::{Framework, Kind, NodeDeps, References};
use crate::fetch::distinfo::{Distfile, Distinfo};
use crate::graph::{EdgeKind, Need};
use crate::ports::scan::{DirScan, Listing, PortMeta, ScanError, Scanner};
use crate::ports::Origin;
use crate::ports::Phase;
use crate::ports::PortTree;
use crate::sandbox::download::Wanted;

/// The `MAKECONF` of a pkgsrc sandbox (every scan, [`scan_mk_conf`], and
/// every build, `build_mk_conf`): root-owned, it includes the kit's own
/// `etc/mk.conf`.
pub const MK_CONF: &str = "/.portsynth/mk.conf";

/// The `MAKECONF` of the scan sandboxes: the kit's mk.conf, the config's
/// `mk_conf` lines, then a `.USE` hook that ends every `pbulk-index` record
/// with `MAKE_JOBS_SAFE=yes` or `no`, which the 2014 `mk/pbulk/pbulk-index.mk`
/// does not print. The verdict is `mk/build/build.mk`'s own rule
/// (`.if defined(MAKE_JOBS_SAFE) && !empty(MAKE_JOBS_SAFE:M[nN][oO])`: one
/// job when any word of the value is `no` in any case), evaluated by bmake
/// on the package's value, so nothing the package prints reaches the line
/// but that one word. It runs once per record: a MULTI_VERSION package's
/// `pbulk-index` runs `${MAKE} pbulk-index-item` per variant, each reading
/// this file again with the variant's assignments. A tree whose
/// pbulk-index prints MAKE_JOBS_SAFE itself gets the hook's line after its
/// own, and the last line of a key is the one that counts
/// (`pkgsrc::ScanIndex`). The hook exists only for `pbulk-index`: other
/// scan queries (the fetch list's `-V`) see the kit's mk.conf and the
/// config's lines alone. Changing this text changes what the scan yields:
/// bump [`crate::ports::scan::SCAN_FORMAT`].
pub fn scan_mk_conf(kit_prefix: &Path, mk_conf: Option<&str>) -> String {
    let mut text = format!(".include \"{}\"\n", kit_prefix.join("etc/mk.conf").display());
    if let Some(lines) = mk_conf {
        text.push_str(lines);
        text.push('\n');
    }
    text.push_str(
        "# portsynth: MAKE_JOBS_SAFE in every pbulk-index record (mk/build/build.mk's rule)\n\
         .if make(pbulk-index) || make(pbulk-index-item)\n\
         pbulk-index-item: _portsynth-make-jobs-safe\n\
         _portsynth-make-jobs-safe: .USE\n\
         \t@echo MAKE_JOBS_SAFE=${\"${MAKE_JOBS_SAFE:M[nN][oO]}\" == \"\":?yes:no}\n\
         .endif\n",
    );
    text
}

/// The phases of a pkgsrc build. They are those of pbulk's `pkg-build`
/// (checksum, configure, all, stage-install, package, then a test
/// `pkg_add`), with extract and patch split out of configure so that a
/// failure names its phase; `depends` is a `pkg_add` of every dependency,
/// and pkgsrc checks its packing list itself in `stage-install`.
const PHASES: [Phase; 9] = [
    Phase::Depends,
    Phase::Fetch,
    Phase::Checksum,
    Phase::Extract,
    Phase::Patch,
    Phase::Configure,
    Phase::Build,
    Phase::Stage,
    Phase::Package,
];

/// The pkgsrc framework.
pub struct Pkgsrc;

/// The graph's kind of every pkgsrc edge: a resolved `ALL_DEPENDS` entry.
/// `pbulk-index` prints the package's `DEPENDS`, `BUILD_DEPENDS` and
/// `TOOL_DEPENDS` joined into that one variable, so an edge is built first and
/// installed for the build, and whether its user needs it at run time is not
/// known. Labelled with the variable it comes from, not `DEPENDS`, which in a
/// pkgsrc Makefile means a run-time dependency.
pub static ALL_DEPENDS: EdgeKind = EdgeKind { rank: 0, need: Need::BuildPerhapsRun, label: "ALL_DEPENDS" };

impl Framework for Pkgsrc {
    fn kind(&self) -> Kind {
        Kind::Pkgsrc
    }

    /// The top-level Makefile's `SUBDIR` names the categories, each
    /// category Makefile's `SUBDIR` its packages. Read as text: nothing of
    /// the tree runs to list it.
    fn list_ports(&self, scanner: &Scanner) -> Result<Listing> {
        let mut listing = Listing::default();
        for category in subdirs(&scanner.ports_dir.join("Makefile"))? {
            let makefile = scanner.ports_dir.join(&category).join("Makefile");
            let names = match subdirs(&makefile) {
                Ok(names) => names,
                Err(e) => {
                    listing.problems.push(format!("{e:#}; the packages of category {category} are skipped"));
                    continue;
                }
            };
            for name in names {
                match Origin::parse(&format!("{category}/{name}")) {
                    Ok(origin) if scanner.port_dir(&origin).join("Makefile").is_file() => listing.origins.push(origin),
                    Ok(_) => listing
                        .problems
                        .push(format!("{} lists {name}, which has no Makefile; skipped", makefile.display())),
                    Err(e) => {
                        listing.problems.push(format!("{}: SUBDIR entry {name}: {e}; skipped", makefile.display()))
                    }
                }
            }
        }
        listing.origins.sort();
        Ok(listing)
    }

    /// One `pbulk-index` query: a record per MULTI_VERSION variant. Variants
    /// are told apart as flavors named by their PKGBASE
    /// (`textproc/py-libxml2@py27-libxml2`); the first is the default.
    fn scan_dir(&self, scanner: &Scanner, dir: &Origin) -> DirScan {
        let dir = dir.with_flavor(None);
        let fail = |message: String| ScanError { origin: dir.clone(), message };
        if !scanner.port_dir(&dir).join("Makefile").is_file() {
            return Err(fail(format!("no such package: {} has no Makefile", scanner.port_dir(&dir).display())));
        }
        let output = scanner.run_make(&dir, None, vec!["pbulk-index".into()]).map_err(fail)?;
        if !output.success {
            let stderr = output.stderr.lines().map(str::trim).collect::<Vec<_>>().join(" | ");
            return Err(fail(format!(
                "{} pbulk-index failed ({}): {}",
                scanner.make_program,
                output.status,
                if stderr.is_empty() { "no error output" } else { &stderr }
            )));
        }
        let records: Vec<pkgsrc::ScanIndex> = pkgsrc::ScanIndex::from_reader(output.stdout.as_bytes())
            .collect::<std::io::Result<_>>()
            .map_err(|e| fail(format!("pbulk-index printed a record that does not parse: {e}")))?;
        if records.is_empty() {
            return Err(fail("pbulk-index printed no record".into()));
        }
        // Variants that come out as the same package are one package, the
        // first (pbulk-scan keeps the first record of a PKGNAME).
        let mut seen = std::collections::HashSet::new();
        let records: Vec<_> = records.into_iter().filter(|r| seen.insert(r.pkgname.pkgname().to_string())).collect();
        let port_dir = scanner.port_dir(&dir);
        let flavors: Vec<String> =
            if records.len() > 1 { records.iter().map(|r| r.pkgname.pkgbase().to_string()).collect() } else { vec![] };
        records
            .iter()
            .enumerate()
            .map(|(i, record)| {
                let origin = dir.with_flavor(flavors.get(i).map(String::as_str));
                meta_of(record, origin, &port_dir, &scanner.ports_dir, flavors.clone()).map_err(fail)
            })
            .collect()
    }

    fn dependency_dirs(&self, meta: &PortMeta, _taken: &dyn Fn(&str) -> bool) -> Vec<Origin> {
        entries(meta).filter_map(|(_, pkgpath)| pkgpath.ok()).collect()
    }

    /// pbulk's resolution over every record of the tree (see [`resolve`]).
    fn resolve(&self, tree: &PortTree, _scanner: &Scanner, _missing: &BTreeSet<Origin>) -> Vec<NodeDeps> {
        let scanned: Vec<usize> = (0..tree.nodes.len()).filter(|&n| tree.nodes[n].meta.is_some()).collect();
        let records: Vec<resolve::Record> = scanned
            .iter()
            .map(|&n| {
                let meta = tree.nodes[n].meta.as_ref().expect("scanned");
                resolve::Record {
                    pkgname: meta.pkgname.clone(),
                    pkg_location: meta.origin.dir(),
                    all_depends: meta.depends.first().cloned().unwrap_or_default(),
                    ..Default::default()
                }
            })
            .collect();
        let resolution = resolve::resolve(&records, resolve::Scope::Tree);
        let mut deps: Vec<NodeDeps> = (0..tree.nodes.len()).map(|_| NodeDeps::default()).collect();
        for (record, resolved) in resolution.records.iter().enumerate() {
            let node = scanned[record];
            deps[node].edges = resolved.depends.iter().map(|&d| (scanned[d], &ALL_DEPENDS)).collect();
            deps[node].errors = resolved.errors.iter().map(|e| format!("{ALL_DEPENDS}: {e}")).collect();
        }
        deps
    }

    fn phases(&self, _check_plist: bool) -> Vec<Phase> {
        PHASES.to_vec()
    }

    fn phase_target(&self, phase: Phase) -> Option<&'static str> {
        match phase {
            Phase::Depends | Phase::Fetch | Phase::CheckSanity | Phase::CheckPlist => None,
            Phase::Stage => Some("stage-install"),
            _ => Some(phase.name()),
        }
    }

    /// As pbulk's `pkg-build` runs make: `BATCH=1`, `DEPENDS_TARGET=/nonexistent`
    /// (a dependency that is not installed fails the build instead of being
    /// built inside it), and the variant's MULTI_VERSION assignments.
    fn make_args(&self, target: &str, variant: &[String]) -> Vec<String> {
        let mut args = vec![target.to_string(), "BATCH=1".into(), "DEPENDS_TARGET=/nonexistent".into()];
        args.extend(variant.iter().cloned());
        args
    }

    /// The kit's own `pkg_add`, recording into the kit's package database.
    fn install_command(&self, package: &Path) -> Option<Vec<String>> {
        let localbase = Path::new(self.localbase());
        Some(vec![
            localbase.join("sbin/pkg_add").to_string_lossy().into_owned(),
            "-K".into(),
            localbase.join("pkgdb").to_string_lossy().into_owned(),
            package.to_string_lossy().into_owned(),
        ])
    }

    fn test_install(&self, bootstrap_pkg: bool) -> bool {
        !bootstrap_pkg
    }

    /// The kit's mk.conf, then the config's `mk_conf`, then the sandbox's
    /// layout, which nothing may move: distfiles read-only at `/distfiles`,
    /// packages and work directories in the work area (never in the
    /// read-only tree).
    fn build_mk_conf(&self, kit_prefix: &Path, mk_conf: Option<&str>) -> Option<String> {
        use crate::sandbox::HelperSpec;
        let mut text = format!(".include \"{}\"\n", kit_prefix.join("etc/mk.conf").display());
        if let Some(lines) = mk_conf {
            text.push_str(lines);
            text.push('\n');
        }
        text.push_str(&format!(
            "DISTDIR=\t\t/distfiles\nPACKAGES=\t{}\nWRKOBJDIR=\t{}/work\nCREATE_WRKDIR_SYMLINK=\tno\n",
            HelperSpec::PACKAGES,
            HelperSpec::CONSTRUCTION
        ));
        Some(text)
    }

    fn build_environment(&self, _flavor: Option<&str>, make_jobs: usize) -> Vec<(String, String)> {
        vec![
            ("MAKE_JOBS".into(), make_jobs.to_string()),
            ("BATCH".into(), "yes".into()),
            ("MAKECONF".into(), MK_CONF.into()),
        ]
    }

    fn localbase(&self) -> &'static str {
        "/usr/pkg"
    }

    /// `pbulk-index` of the big meta packages really takes over a minute
    /// (x11/qt5-qttools: 65 s of CPU on this project's 2-CPU machine, bmake
    /// evaluating every buildlink3.mk of Qt5 for each of its options), and
    /// pbulk has no deadline at all. A scan that times out is retried by
    /// every later run (only results are cached), so the deadline is set where
    /// no real port of the tree reaches it.
    fn default_scan_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(600)
    }

    fn package_format(&self) -> &'static dyn crate::repo::PackageFormat {
        &package::Tgz
    }

    /// The download alone: pkgsrc's `checksum` needs the digest tool,
    /// pkgtools/digest, a dependency of every package with distfiles, which
    /// fetch-only does not install; the download verified every digest of
    /// distinfo already.
    fn fetch_only_phases(&self) -> Vec<Phase> {
        vec![Phase::Fetch]
    }

    fn parse_distinfo(&self, text: &str, file: &Path) -> Result<Distinfo> {
        distinfo::parse(text, file)
    }

    /// The variant's assignments, then the `-V` queries.
    fn fetch_list_args(&self, variant: &[String]) -> Vec<String> {
        variant.iter().cloned().chain(fetch_list::args()).collect()
    }

    fn parse_fetch_list(&self, output: &str, tree: &Path) -> Result<Vec<Wanted>> {
        fetch_list::parse(output, tree)
    }

    /// The scan does not say what a package fetches (pbulk-index has no
    /// DISTFILES): the fetch list is asked of the package in a scan
    /// sandbox, exactly as in a build sandbox.
    fn port_distfiles(&self, scanner: &Scanner, meta: &PortMeta) -> Result<Vec<Distfile>> {
        let dir = meta.origin.with_flavor(None);
        let output = scanner.run_make(&dir, None, self.fetch_list_args(&meta.variant)).map_err(anyhow::Error::msg)?;
        if !output.success {
            let stderr = output.stderr.lines().map(str::trim).collect::<Vec<_>>().join(" | ");
            anyhow::bail!("{dir}: {} listing the distfiles failed ({}): {stderr}", scanner.make_program, output.status);
        }
        let wanted = self.parse_fetch_list(&output.stdout, &scanner.ports_dir).with_context(|| format!("{dir}"))?;
        Ok(wanted.into_iter().map(|w| Distfile { key: w.key, expected: w.expected }).collect())
    }

    /// Every distinfo of the tree, without scanning (see
    /// [`distinfo::referenced`]).
    fn referenced_distfiles(
        &self,
        ports_dir: &Path,
        _scan: &mut dyn FnMut() -> Result<PortTree>,
    ) -> Result<References> {
        distinfo::referenced(ports_dir)
    }
}

/// The `ALL_DEPENDS` entries of a record: the pattern and the pkgpath it
/// names (`../../cat/pkg`), or why the entry is malformed.
fn entries(meta: &PortMeta) -> impl Iterator<Item = (&str, Result<Origin, String>)> {
    meta.depends.first().into_iter().flat_map(|all| all.split_whitespace()).map(|entry| match entry.rsplit_once(':') {
        Some((pattern, path)) => {
            let pkgpath = path.strip_prefix("../../").ok_or_else(|| format!("{entry}: not pattern:../../cat/pkg"));
            (pattern, pkgpath.and_then(Origin::parse))
        }
        None => (entry, Err(format!("{entry}: not pattern:../../cat/pkg"))),
    })
}

fn meta_of(
    record: &pkgsrc::ScanIndex,
    origin: Origin,
    port_dir: &Path,
    ports_dir: &Path,
    flavors: Vec<String>,
) -> Result<PortMeta, String> {
    let pkgname = record.pkgname.pkgname().to_string();
    let file = Pkgsrc.package_file(&pkgname);
    let pkgfile = format!("/packages/All/{file}");
    crate::ports::scan::check_package_names(&pkgname, &pkgfile, &file)?;
    let reason = [&record.pkg_skip_reason, &record.pkg_fail_reason]
        .into_iter()
        .flatten()
        .find(|r| !r.trim().is_empty())
        .map(|r| r.trim().to_string());
    // The scan's mk.conf ends every record with this line ([`scan_mk_conf`]).
    let parallel_safe = record
        .make_jobs_safe
        .ok_or("pbulk-index printed no MAKE_JOBS_SAFE line (the scan's mk.conf hook did not run)")?
        .is_safe();
    // Makefiles outside the tree (the kit's mk files and mk.conf) are part
    // of the kit, whose own key covers them. The paths are normalised: the
    // scan cache tells a port's own files from the rest by prefix, and
    // `../../mk/bsd.pkg.mk` would pass for one of the port's own.
    let makefiles = record
        .scan_depends
        .as_ref()
        .map(|d| d.iter().map(|p| normalised(&port_dir.join(p))).filter(|p| p.starts_with(ports_dir)).collect())
        .unwrap_or_default();
    Ok(PortMeta {
        origin,
        pkgversion: record.pkgname.pkgversion().to_string(),
        pkgfile,
        pkgname,
        comment: String::new(),
        depends: vec![record.all_depends.as_ref().map(|d| d.as_str().to_string()).unwrap_or_default()],
        ignore: reason,
        flavors,
        distfiles: vec![],
        dist_subdir: String::new(),
        makefiles,
        variant: record.multi_version.clone().unwrap_or_default(),
        bootstrap_pkg: record.bootstrap_pkg.as_ref().is_some_and(|b| b.is_bootstrap()),
        parallel_safe,
    })
}

/// `a/b/../../c` → `c`, lexically (the paths pkgsrc prints are relative
/// to the package directory).
fn normalised(path: &Path) -> std::path::PathBuf {
    let mut out = std::path::PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

/// The `SUBDIR+=` entries of a Makefile, in order, commented ones left out.
fn subdirs(makefile: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(makefile).with_context(|| format!("cannot read {}", makefile.display()))?;
    Ok(text
        .lines()
        .filter_map(|line| {
            let line = line.split('#').next().unwrap_or("").trim();
            let rest = line.strip_prefix("SUBDIR")?.trim_start();
            let value = rest.strip_prefix("+=").or_else(|| rest.strip_prefix('='))?;
            Some(value.split_whitespace().map(str::to_string).collect::<Vec<_>>())
        })
        .flatten()
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_run_as_pbulk_runs_them() {
        let targets: Vec<_> = Pkgsrc.phases(true).into_iter().filter_map(|p| Pkgsrc.phase_target(p)).collect();
        assert_eq!(targets, ["checksum", "extract", "patch", "configure", "build", "stage-install", "package"]);
        assert_eq!(Pkgsrc.phase_target(Phase::Depends), None, "dependencies are pkg_add'ed, not made");
        let variant = ["PYTHON_VERSION_REQD=27".to_string()];
        assert_eq!(
            Pkgsrc.make_args("build", &variant),
            ["build", "BATCH=1", "DEPENDS_TARGET=/nonexistent", "PYTHON_VERSION_REQD=27"]
        );
        let add = Pkgsrc.install_command(Path::new("/packages/All/digest-20121220.tgz")).unwrap();
        assert_eq!(add, ["/usr/pkg/sbin/pkg_add", "-K", "/usr/pkg/pkgdb", "/packages/All/digest-20121220.tgz"]);
        assert!(Pkgsrc.test_install(false) && !Pkgsrc.test_install(true), "bootstrap packages are in the kit");
        let conf = Pkgsrc.build_mk_conf(Path::new("/usr/pkg"), Some("PKG_OPTIONS.x= y")).unwrap();
        let lines: Vec<_> = conf.lines().collect();
        assert_eq!(lines[0], ".include \"/usr/pkg/etc/mk.conf\"");
        assert_eq!(lines[1], "PKG_OPTIONS.x= y");
        let layout = lines.iter().position(|l| l.starts_with("DISTDIR=")).unwrap();
        assert!(layout > 1, "the layout comes after the config's lines, which cannot move it");
        assert!(conf.contains("WRKOBJDIR=\t/construction/work") && conf.contains("PACKAGES=\t/construction/packages"));
    }

    #[test]
    fn subdir_lists_are_read_without_comments() {
        let dir = tempfile::tempdir().unwrap();
        let makefile = dir.path().join("Makefile");
        std::fs::write(
            &makefile,
            "# $NetBSD$\nCOMMENT= x\nSUBDIR+=\tfiglet\n#SUBDIR+=\tbroken\nSUBDIR+= a b # two\nSUBDIR=c\n",
        )
        .unwrap();
        assert_eq!(subdirs(&makefile).unwrap(), ["figlet", "a", "b", "c"]);
        assert!(format!("{:#}", subdirs(&dir.path().join("none")).unwrap_err()).contains("none"));
    }

    #[test]
    fn all_depends_entries_name_their_pkgpaths() {
        let meta = PortMeta {
            origin: Origin::parse("misc/figlet").unwrap(),
            pkgname: "figlet-2.2.5".into(),
            pkgversion: "2.2.5".into(),
            pkgfile: "/packages/All/figlet-2.2.5.tgz".into(),
            comment: String::new(),
            depends: vec!["digest>=20010302:../../pkgtools/digest nbpatch-[0-9]*:../../devel/nbpatch bad".into()],
            ignore: None,
            flavors: vec![],
            distfiles: vec![],
            dist_subdir: String::new(),
            makefiles: vec![],
            variant: vec![],
            bootstrap_pkg: false,
            parallel_safe: true,
        };
        assert_eq!(
            Pkgsrc.dependency_dirs(&meta, &|_| false),
            [Origin::parse("pkgtools/digest").unwrap(), Origin::parse("devel/nbpatch").unwrap()]
        );
        assert_eq!(normalised(Path::new("/t/misc/figlet/../../mk/bsd.pkg.mk")), Path::new("/t/mk/bsd.pkg.mk"));
        assert_eq!(Pkgsrc.package_file("figlet-2.2.5"), "figlet-2.2.5.tgz");
    }

    #[test]
    fn the_makefiles_a_record_read_are_the_trees_by_their_normalised_paths() {
        let record = "PKGNAME=figlet-2.2.5\nALL_DEPENDS=\nSCAN_DEPENDS=../../mk/bsd.options.mk \
                      ../../textproc/libxml2/buildlink3.mk /usr/pkg/share/mk/sys.mk Makefile\nMAKE_JOBS_SAFE=yes\n";
        let index = pkgsrc::ScanIndex::from_reader(record.as_bytes()).next().unwrap().unwrap();
        let tree = Path::new("/t");
        let meta = meta_of(&index, Origin::parse("misc/figlet").unwrap(), &tree.join("misc/figlet"), tree, vec![]);
        assert_eq!(
            meta.unwrap().makefiles,
            [
                Path::new("/t/mk/bsd.options.mk"),
                Path::new("/t/textproc/libxml2/buildlink3.mk"),
                Path::new("/t/misc/figlet/Makefile")
            ],
            "outside the package directory, not dropped as its own; the kit's are left out"
        );
    }

    /// The scan's hook, run by bmake on a stand-in for pbulk-index.mk: each
    /// record ends with build.mk's verdict on the package's MAKE_JOBS_SAFE,
    /// whatever the value holds, and only `pbulk-index` runs get the hook.
    #[test]
    fn the_scan_mk_conf_ends_each_record_with_build_mks_verdict() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(dir.path().join("etc/mk.conf"), "KIT_MK_CONF= read\n").unwrap();
        let conf = dir.path().join("scan-mk.conf");
        std::fs::write(&conf, scan_mk_conf(dir.path(), Some("CONFIG_LINE= read"))).unwrap();
        // bsd.prefs.mk includes MAKECONF before the package sets its
        // variables; pbulk-index-item is defined later, with its commands,
        // and pbulk-index (without MULTI_VERSION) depends on it.
        let makefile = format!(
            ".include \"{}\"\n.if defined(VALUE)\nMAKE_JOBS_SAFE= ${{VALUE}}\n.endif\n\
             pbulk-index: pbulk-index-item\n\
             pbulk-index-item other:\n\t@echo PKGNAME=x-1 ${{KIT_MK_CONF}} ${{CONFIG_LINE}}\n",
            conf.display()
        );
        std::fs::write(dir.path().join("Makefile"), makefile).unwrap();
        let run = |target: &str, value: Option<&str>| {
            let mut command = std::process::Command::new("bmake");
            command.current_dir(dir.path()).arg(target);
            if let Some(value) = value {
                command.env("VALUE", value);
            }
            let out = command.output().unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8(out.stdout).unwrap()
        };
        for (value, verdict) in [
            (None, "yes"),
            (Some(""), "yes"),
            (Some("yes"), "yes"),
            (Some("no"), "no"),
            (Some("NO"), "no"),
            (Some("nO"), "no"),
            (Some("yes no"), "no"),
            (Some("nope"), "yes"),
            (Some("no\""), "yes"),
            (Some("\" } $(x) yes\n"), "yes"),
        ] {
            let out = run("pbulk-index-item", value);
            assert_eq!(out, format!("PKGNAME=x-1 read read\nMAKE_JOBS_SAFE={verdict}\n"), "{value:?}");
        }
        assert!(run("pbulk-index", Some("no")).ends_with("\nMAKE_JOBS_SAFE=no\n"));
        assert_eq!(run("other", Some("no")), "PKGNAME=x-1 read read\n", "no hook outside pbulk-index");
    }

    #[test]
    fn make_jobs_safe_of_a_record_is_required() {
        let meta = |record: &str| {
            let index = pkgsrc::ScanIndex::from_reader(record.as_bytes()).next().unwrap().unwrap();
            meta_of(&index, Origin::parse("misc/x").unwrap(), Path::new("/t/misc/x"), Path::new("/t"), vec![])
        };
        assert!(meta("PKGNAME=x-1\nALL_DEPENDS=\nMAKE_JOBS_SAFE=yes\n").unwrap().parallel_safe);
        assert!(!meta("PKGNAME=x-1\nALL_DEPENDS=\nMAKE_JOBS_SAFE=no\n").unwrap().parallel_safe);
        // A tree whose pbulk-index prints the package's value first: the hook's line, last, counts.
        assert!(!meta("PKGNAME=x-1\nMAKE_JOBS_SAFE=yes no\nALL_DEPENDS=\nMAKE_JOBS_SAFE=no\n").unwrap().parallel_safe);
        let err = meta("PKGNAME=x-1\nALL_DEPENDS=\n").unwrap_err();
        assert!(err.contains("no MAKE_JOBS_SAFE line"), "{err}");
    }

    /// A tree of `(pkgpath, pbulk-index record)` loaded as `status` loads
    /// one, the records standing in for the scan.
    fn tree_of(packages: &[(&str, &str)]) -> PortTree {
        let root = tempfile::tempdir().unwrap();
        let mut metas = std::collections::HashMap::new();
        for (pkgpath, record) in packages {
            let origin = Origin::parse(pkgpath).unwrap();
            let port_dir = root.path().join(pkgpath);
            std::fs::create_dir_all(&port_dir).unwrap();
            std::fs::write(port_dir.join("Makefile"), "").unwrap();
            let index = pkgsrc::ScanIndex::from_reader(record.as_bytes()).next().unwrap().unwrap();
            metas.insert(origin.dir(), meta_of(&index, origin, &port_dir, root.path(), vec![]).unwrap());
        }
        let scanner = Scanner::on_host(Kind::Pkgsrc, root.path());
        let requested = [Origin::parse(packages[0].0).unwrap()];
        let scan = |dirs: &[Origin]| dirs.iter().map(|d| Ok(vec![metas[&d.dir()].clone()])).collect();
        PortTree::load(&scanner, crate::ports::Scope::Ports(&requested), &scan).unwrap()
    }

    #[test]
    fn edges_are_all_depends_entries_in_cycles_and_plans() {
        let tree = tree_of(&[
            ("misc/top", "PKGNAME=top-1\nALL_DEPENDS=a-[0-9]*:../../x/a\nMAKE_JOBS_SAFE=yes\n"),
            ("x/a", "PKGNAME=a-1\nALL_DEPENDS=b>=1:../../x/b\nMAKE_JOBS_SAFE=yes\n"),
            ("x/b", "PKGNAME=b-1\nALL_DEPENDS=a-[0-9]*:../../x/a\nMAKE_JOBS_SAFE=yes\n"),
        ]);
        let node = |origin: &str| tree.id(&Origin::parse(origin).unwrap()).unwrap();
        let cycle = "dependency cycle: x/a -[ALL_DEPENDS]-> x/b -[ALL_DEPENDS]-> x/a";
        assert_eq!(tree.not_buildable[&node("x/a")], cycle);
        assert_eq!(tree.not_buildable[&node("x/b")], cycle);
        assert_eq!(tree.not_buildable[&node("misc/top")], "depends on x/a, which is not buildable");
        let edges = tree.graph.dependencies(node("misc/top"));
        assert_eq!(edges, [crate::graph::Edge { to: node("x/a"), kind: &ALL_DEPENDS }]);
        assert!(edges[0].kind.need.installed_with_its_user(), "a sandbox gets what it may need at run time");

        let plan = crate::plan::Plan::make(&tree, crate::plan::Request::Everything, &mut |_| None).unwrap();
        let json = serde_json::to_value(&plan).unwrap();
        let top = json["entries"].as_array().unwrap().iter().find(|e| e["origin"] == "misc/top").unwrap();
        assert_eq!(top["depends"], serde_json::json!([{"origin": "x/a", "kind": "ALL_DEPENDS"}]));
    }
}
