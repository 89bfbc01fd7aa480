//! portsynth's pkgsrc resolution against pbulk's own `pbulk-resolve`, record for record,
//! on a real scan: the closure of ../shared/pkgsrc/packages.txt plus
//! tests/fixtures/pkgsrc/closure.txt (about 300 records), scanned by
//! scripts/pkgsrc-testbed with the 2014 tree's bmake (cached by its inputs under
//! $PORTSYNTH_PKGSRC_CACHE, default /var/cache/portsynth-pkgsrc: the first run
//! bootstraps for about 4 minutes, the scan takes about 40 s, later runs reuse both).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;

use portsynth::framework::pkgsrc::pbulk;
use portsynth::framework::pkgsrc::resolve::{self, Scope, Status};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs the testbed's closure scan; None when the shared material is absent.
fn testbed() -> Option<HashMap<String, String>> {
    let shared = repo().join("../shared/pkgsrc");
    if !shared.join("pkgsrc-2014.tar.zst").exists() {
        eprintln!("skipped: no {}", shared.display());
        return None;
    }
    let out = Command::new(repo().join("scripts/pkgsrc-testbed"))
        .arg("scan")
        .arg("-f")
        .arg(shared.join("packages.txt"))
        .arg("-f")
        .arg(repo().join("tests/fixtures/pkgsrc/closure.txt"))
        .output()
        .expect("scripts/pkgsrc-testbed");
    assert!(out.status.success(), "pkgsrc-testbed failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let vars = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
        .collect();
    Some(vars)
}

fn portsynth(args: &[&Path]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_portsynth")).arg("pkgsrc-resolve").args(args).output().unwrap()
}

/// Record-for-record comparison with a readable diff of the first records that differ.
fn assert_same_presolve(ours: &[u8], theirs: &[u8]) {
    let a = pbulk::parse(ours).expect("our presolve parses");
    let b = pbulk::parse(theirs).expect("pbulk's presolve parses");
    let mut report = String::new();
    let mut differing = 0;
    for i in 0..a.len().max(b.len()) {
        let (x, y) = (a.get(i), b.get(i));
        if x.map(|e| e.text) == y.map(|e| e.text) {
            continue;
        }
        differing += 1;
        if differing > 5 {
            continue;
        }
        let lines = |e: Option<&pbulk::Entry<'_>>| -> Vec<String> {
            e.map_or(vec![], |e| String::from_utf8_lossy(e.text).lines().map(str::to_string).collect())
        };
        let (lx, ly) = (lines(x), lines(y));
        report += &format!(
            "record {i}: portsynth {} / pbulk {}\n",
            x.map_or("(none)", |e| e.pkgname),
            y.map_or("(none)", |e| e.pkgname)
        );
        for l in ly.iter().filter(|l| !lx.contains(l)) {
            report += &format!("  - {l}\n");
        }
        for l in lx.iter().filter(|l| !ly.contains(l)) {
            report += &format!("  + {l}\n");
        }
    }
    assert!(
        differing == 0 && ours == theirs,
        "presolve differs from pbulk-resolve's in {differing} of {} records (- pbulk, + portsynth):\n{report}",
        b.len()
    );
}

#[test]
fn resolution_equals_pbulk_resolve_on_a_real_closure() {
    let Some(tb) = testbed() else { return };
    let pscan = PathBuf::from(&tb["PSCAN"]);
    let records: usize = tb["RECORDS"].parse().unwrap();
    eprintln!("{records} records at {} pkgpaths, scanned in {} s", tb["PKGPATHS"], tb["SCAN_SECONDS"]);
    assert!(records >= 300, "only {records} records");
    assert_eq!(tb["PRESOLVE_RC"], "0", "pbulk-resolve failed on the closure");

    let dir = tempfile::tempdir().unwrap();
    let ours = dir.path().join("presolve");
    let out = portsynth(&[&pscan, Path::new("-o"), &ours]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_same_presolve(&std::fs::read(&ours).unwrap(), &std::fs::read(&tb["PRESOLVE"]).unwrap());

    // the library view of the same scan: known chains and MULTI_VERSION records
    let input = std::fs::read(&pscan).unwrap();
    let entries = pbulk::parse(&input).unwrap();
    let records = pbulk::records(&entries).unwrap();
    let res = resolve::resolve(&records, Scope::Tree);
    assert_eq!(res.errors().count(), 0);
    let at =
        |name: &str| records.iter().position(|r| r.pkgname.starts_with(name)).unwrap_or_else(|| panic!("no {name}"));
    let deps =
        |i: usize| -> Vec<&str> { res.records[i].depends.iter().map(|&d| records[d].pkg_location.as_str()).collect() };
    assert!(deps(at("pkg_rolling-replace-")).contains(&"pkgtools/pkg_chk"));
    assert!(deps(at("pkg_rolling-replace-")).contains(&"pkgtools/pkg_tarup"));
    assert!(deps(at("bmake-")).contains(&"pkgtools/bootstrap-mk-files"));
    assert!(deps(at("metacam-")).contains(&"devel/libgetopt"));
    assert!(deps(at("libgetopt-")).contains(&"devel/libtool-base"));
    assert!(deps(at("libtool-base-")).contains(&"pkgtools/digest"));
    let variants: BTreeSet<&str> =
        records.iter().filter(|r| r.pkg_location == "textproc/py-libxml2").map(|r| r.pkgname.as_str()).collect();
    assert!(variants.len() >= 2, "MULTI_VERSION variants of textproc/py-libxml2: {variants:?}");
    for (i, r) in records.iter().enumerate().filter(|(_, r)| r.pkg_location == "textproc/py-libxml2") {
        let version = &r.pkgname[2..4];
        assert!(deps(i).contains(&format!("lang/python{version}").as_str()), "{}: {:?}", r.pkgname, deps(i));
    }
    // the pkgpath-restricted scope agrees on this tree
    assert_eq!(resolve::resolve(&records, Scope::Pkgpath).records, res.records);
    assert!(res.status.iter().all(|s| *s == Status::Buildable));
}

#[test]
fn unresolvable_dependencies_match_pbulk_resolve() {
    let Some(tb) = testbed() else { return };
    // the same scan without pkgtools/digest and textproc/libxml2: many patterns match nothing
    let input = std::fs::read_to_string(&tb["PSCAN"]).unwrap();
    let mut cut = String::new();
    let mut skip = false;
    for line in input.split_inclusive('\n') {
        if let Some(name) = line.strip_prefix("PKGNAME=") {
            skip = name.starts_with("digest-") || name.starts_with("libxml2-");
        }
        if !skip {
            cut.push_str(line);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let pscan = dir.path().join("pscan");
    std::fs::write(&pscan, &cut).unwrap();
    let pbulk_resolve = |partial: bool| {
        let mut cmd = Command::new(&tb["PBULK_RESOLVE"]);
        if partial {
            cmd.arg("-p");
        }
        cmd.arg(&pscan).output().unwrap()
    };

    // without -p both fail and write nothing
    let theirs = pbulk_resolve(false);
    let ours = portsynth(&[&pscan]);
    assert_eq!(theirs.status.code(), Some(1));
    assert_eq!(ours.status.code(), Some(1));
    assert!(theirs.stdout.is_empty() && ours.stdout.is_empty());

    // with -p both write the same presolve and name the same unresolved dependencies
    let theirs = pbulk_resolve(true);
    let ours = portsynth(&[Path::new("-p"), &pscan]);
    assert!(theirs.status.success() && ours.status.success());
    assert_same_presolve(&ours.stdout, &theirs.stdout);
    let pbulk_missing: BTreeSet<(String, String)> = String::from_utf8_lossy(&theirs.stderr)
        .lines()
        .filter_map(|l| l.strip_prefix("pbulk-resolve: No match found for dependency "))
        .filter_map(|l| l.split_once(" of package "))
        .map(|(pattern, pkg)| (pkg.to_string(), pattern.to_string()))
        .collect();
    let records = pbulk::records(&pbulk::parse(cut.as_bytes()).unwrap()).unwrap();
    let res = resolve::resolve(&records, Scope::Tree);
    let our_missing: BTreeSet<(String, String)> = res
        .errors()
        .map(|e| match e {
            resolve::ResolveError::NoMatch { pkgname, pattern, .. } => (pkgname.clone(), pattern.clone()),
            other => panic!("unexpected {other}"),
        })
        .collect();
    assert!(!pbulk_missing.is_empty());
    assert_eq!(our_missing, pbulk_missing);
    let stderr = String::from_utf8_lossy(&ours.stderr);
    assert!(
        stderr.contains(
            "no package at ../../pkgtools/digest matches digest>=20010302 (nothing was scanned at pkgtools/digest)"
        ),
        "{stderr}"
    );
    // what depends on an unresolved record is not buildable either
    let figlet = records.iter().position(|r| r.pkgname.starts_with("figlet-")).unwrap();
    assert_eq!(res.status[figlet], Status::Unresolved);
    let python = records.iter().position(|r| r.pkgname.starts_with("py27-libxml2-")).unwrap();
    assert_ne!(res.status[python], Status::Buildable);
}
