//! `status` on the real 2014 pkgsrc tree of `../shared`: the scan
//! (`pbulk-index` in the scan sandboxes with the bootstrap kit's bmake),
//! pbulk's resolution, MULTI_VERSION variants, the scan cache and what an
//! edit of a `buildlink3.mk` re-scans. The tree and the kit come from
//! `common::pkgsrc` (made once per machine).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::pkgsrc::{kit, tree};
use serde_json::Value;

struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    /// A config over `tree` with its own build base.
    fn new(tree: PathBuf) -> Env {
        Env::with(tree, "")
    }

    fn with(tree: PathBuf, extra: &str) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "{extra}ports_dir = \"{}\"\nbuild_base = \"{}\"\nbootstrap_kit = \"{}\"\n",
            tree.display(),
            dir.path().join("base").display(),
            kit().display()
        );
        std::fs::write(dir.path().join("portsynth.toml"), text).unwrap();
        Env { dir }
    }

    fn run(&self, args: &[&str]) -> Output {
        let output = Command::new(common::bin())
            .arg("--config")
            .arg(self.dir.path().join("portsynth.toml"))
            .args(args)
            .output()
            .unwrap();
        assert!(output.status.success(), "portsynth {args:?}: {}", String::from_utf8_lossy(&output.stderr));
        output
    }

    fn plan(&self, ports: &[&str]) -> Value {
        let mut args = vec!["--json", "status"];
        args.extend_from_slice(ports);
        serde_json::from_slice(&self.run(&args).stdout).unwrap()
    }

    /// "scan: N port directories from the cache, M scanned with bmake".
    fn scan_counts(&self, ports: &[&str]) -> (usize, usize) {
        let mut args = vec!["-v", "status"];
        args.extend_from_slice(ports);
        let stderr = String::from_utf8_lossy(&self.run(&args).stderr).into_owned();
        let line = stderr.lines().find(|l| l.starts_with("scan: ")).unwrap_or_else(|| panic!("no scan line: {stderr}"));
        let numbers: Vec<usize> = line.split_whitespace().filter_map(|w| w.parse().ok()).collect();
        (numbers[0], numbers[1])
    }
}

fn entry<'a>(plan: &'a Value, origin: &str) -> &'a Value {
    plan["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["origin"] == origin)
        .unwrap_or_else(|| panic!("no {origin} in {plan}"))
}

fn depends(plan: &Value, origin: &str) -> Vec<String> {
    entry(plan, origin)["depends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["origin"].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn status_of_a_real_pkgsrc_tree_plans_with_pbulks_resolution_and_caches_the_scan() {
    let env = Env::new(tree());
    let ports = ["misc/figlet", "textproc/py-libxml2", "textproc/py-libxml2@py33-libxml2"];
    let plan = env.plan(&ports);
    for (origin, pkgname) in [
        ("misc/figlet", "figlet-2.2.5"),
        ("textproc/py-libxml2@py27-libxml2", "py27-libxml2-2.9.1"),
        ("textproc/py-libxml2@py33-libxml2", "py33-libxml2-2.9.1"),
        ("textproc/libxml2", "libxml2-2.9.1nb1"),
        ("lang/python27", "python27-2.7.6nb3"),
    ] {
        assert_eq!(entry(&plan, origin)["pkgname"], pkgname, "{origin}");
        assert_eq!(entry(&plan, origin)["verdict"], "build", "{origin}");
    }
    let figlet = depends(&plan, "misc/figlet");
    assert!(
        figlet.contains(&"pkgtools/digest".to_string()) && figlet.contains(&"devel/nbpatch".to_string()),
        "{figlet:?}"
    );
    // MULTI_VERSION: each variant resolves its own python.
    assert!(depends(&plan, "textproc/py-libxml2@py27-libxml2").contains(&"lang/python27".to_string()));
    let py33 = depends(&plan, "textproc/py-libxml2@py33-libxml2");
    assert!(py33.contains(&"lang/python33".to_string()) && !py33.contains(&"lang/python27".to_string()), "{py33:?}");
    assert!(py33.contains(&"textproc/py-expat@py33-expat".to_string()), "{py33:?}");

    // Nothing changed: no bmake at all.
    let (cached, scanned) = env.scan_counts(&ports);
    assert_eq!(scanned, 0, "a no-change status scans nothing");
    assert!(cached >= 15, "{cached}");
}

#[test]
fn make_jobs_safe_is_scanned_per_record() {
    // net/xymonclient sets `MAKE_JOBS_SAFE= NO`, archivers/bzip2 `no`;
    // figlet and both variants of py-libxml2 say nothing (safe).
    let env = Env::new(tree());
    let ports = ["net/xymonclient", "archivers/bzip2", "misc/figlet", "textproc/py-libxml2"];
    env.plan(&ports);
    let db = portsynth::builddb::BuildDb::open_existing(env.dir.path().join("base/builddb.sqlite")).unwrap().unwrap();
    let cache = db.scan_cache_load().unwrap();
    let safe = |dir: &str| -> Vec<(String, bool)> {
        let entry = cache.get(dir).unwrap_or_else(|| panic!("{dir} is not in the scan cache"));
        let metas: Vec<portsynth::ports::scan::PortMeta> = serde_json::from_str(&entry.metadata).unwrap();
        metas.into_iter().map(|m| (m.pkgname, m.parallel_safe)).collect()
    };
    assert_eq!(safe("net/xymonclient"), [("xymonclient-4.3.17".to_string(), false)]);
    assert_eq!(safe("archivers/bzip2"), [("bzip2-1.0.6nb1".to_string(), false)]);
    assert_eq!(safe("misc/figlet"), [("figlet-2.2.5".to_string(), true)]);
    let variants = safe("textproc/py-libxml2");
    assert_eq!(variants.len(), 3, "{variants:?}");
    assert!(variants.iter().all(|(_, safe)| *safe), "{variants:?}");
}

#[test]
fn a_buildlink3_edit_rescans_exactly_the_packages_that_read_it() {
    // A copy of the tree that shares the files (hard links), so that one
    // file can be replaced without touching the shared tree.
    let original = tree();
    let scratch = tempfile::tempdir().unwrap();
    let copy = scratch.path().join("pkgsrc");
    let status = Command::new("cp").arg("-al").arg(&original).arg(&copy).status().unwrap();
    assert!(status.success());
    let env = Env::new(copy.clone());
    let ports = ["misc/figlet", "textproc/py-libxml2"];
    env.plan(&ports);
    let (_, first) = env.scan_counts(&ports);
    assert_eq!(first, 0);
    let bl3 = copy.join("textproc/libxml2/buildlink3.mk");
    replace_file(&bl3, &format!("{}\n# edited\n", std::fs::read_to_string(&bl3).unwrap()));
    let (cached, rescanned) = env.scan_counts(&ports);
    // py-libxml2 includes libxml2's buildlink3.mk, and the file is
    // libxml2's own; figlet, digest, nbpatch, the pythons and the rest of
    // the closure do not read it.
    assert_eq!(rescanned, 2, "rescanned {rescanned}, from the cache {cached}");
    assert!(cached > rescanned * 3, "rescanned {rescanned}, from the cache {cached}");
    assert!(
        !std::fs::read_to_string(original.join("textproc/libxml2/buildlink3.mk")).unwrap().contains("# edited"),
        "the shared tree is untouched"
    );
}

/// Writes a new file and renames it over `path` (a hard-linked original
/// stays as it was).
fn replace_file(path: &Path, text: &str) {
    let temporary = path.with_extension("new");
    std::fs::write(&temporary, text).unwrap();
    std::fs::rename(&temporary, path).unwrap();
}

#[test]
fn mk_conf_lines_are_read_after_the_kits_mk_conf_by_every_scan() {
    let mk_conf = "mk_conf = \"\"\"\n.if ${PKGPATH} == \"misc/figlet\"\nPKG_FAIL_REASON+= \"not wanted on this host\"\n.endif\n\"\"\"\n";
    let env = Env::with(tree(), mk_conf);
    let plan = env.plan(&["misc/figlet"]);
    let figlet = entry(&plan, "misc/figlet");
    assert_eq!(figlet["verdict"], "ignored", "{figlet}");
    assert!(figlet["reason"].as_str().unwrap().contains("not wanted on this host"), "{figlet}");
    assert_eq!(entry(&plan, "pkgtools/digest")["verdict"], "build");
}
