//! Plan-time checks on a hostile tree, with the real binary and real bmake:
//! PKGNAME/PKGFILE that are not plain file names, duplicate PKGNAMEs,
//! symlinked port directories inside and outside the tree, non-UTF-8
//! directory names. Each problem names the port (or directory) and the
//! value; the rest of the tree plans normally.

mod common;

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::symlink;
use std::path::PathBuf;

use common::{stderr, Env};
use serde_json::Value;

const PLAIN_MAKEFILE: &str = "PORTNAME=\tNAME\nPORTVERSION=\t1.0\nCATEGORIES=\tmisc\nDISTFILES=\n\
    COMMENT=\tC\nPLIST_FILES=\tbin/NAME\n\n.include <bsd.port.mk>\n";

/// The hostile tree in a temp dir, plus what git cannot hold: symlinks
/// (inside, outside, dangling; a category linked outside) and non-UTF-8
/// directory names. Returns the env and the marker file a scan of the
/// outside port would create.
fn hostile() -> (Env, PathBuf) {
    let env = Env { dir: tempfile::tempdir().unwrap() };
    common::copy_tree(&common::repo().join("tests/fixtures/hostile-tree"), &env.ports());
    common::copy_tree(&common::repo().join("ports-testdata/Mk"), &env.ports().join("Mk"));
    let ports = env.ports();
    symlink("../Shared/inside-target", ports.join("misc/inside-link")).unwrap();
    // Outside the tree: parsing its Makefile would create the marker.
    let marker = env.path().join("outside-was-scanned");
    let outside = env.path().join("outside/escape");
    std::fs::create_dir_all(&outside).unwrap();
    let makefile = PLAIN_MAKEFILE.replace("NAME", "escape");
    std::fs::write(outside.join("Makefile"), format!("_X!=\ttouch {}\n{makefile}", marker.display())).unwrap();
    symlink(&outside, ports.join("evil/outside-link")).unwrap();
    symlink("../nowhere", ports.join("evil/dangling")).unwrap();
    let outside_category = env.path().join("outside-category");
    std::fs::create_dir_all(outside_category.join("p")).unwrap();
    std::fs::write(outside_category.join("p/Makefile"), format!("_X!=\ttouch {}\n{makefile}", marker.display()))
        .unwrap();
    symlink(&outside_category, ports.join("linkedcat")).unwrap();
    // Non-UTF-8 names: a port directory and a category.
    let port = ports.join("misc").join(OsStr::from_bytes(b"caf\xe9"));
    std::fs::create_dir_all(&port).unwrap();
    std::fs::write(port.join("Makefile"), PLAIN_MAKEFILE.replace("NAME", "cafe")).unwrap();
    let category = ports.join(OsStr::from_bytes(b"b\xffd"));
    std::fs::create_dir_all(category.join("x")).unwrap();
    std::fs::write(category.join("x/Makefile"), PLAIN_MAKEFILE.replace("NAME", "x")).unwrap();
    env.write_config("");
    (env, marker)
}

fn by_origin(plan: &Value) -> BTreeMap<String, (String, String)> {
    plan["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let verdict = e["verdict"].as_str().unwrap().to_string();
            let reason = e["reason"].as_str().unwrap_or("").to_string();
            (e["origin"].as_str().unwrap().to_string(), (verdict, reason))
        })
        .collect()
}

#[test]
fn hostile_names_and_links_are_refused_by_name_and_the_rest_plans() {
    let (env, marker) = hostile();
    let output = env.run(&["--json", "status"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let plan: Value = serde_json::from_slice(&output.stdout).unwrap();
    let entries = by_origin(&plan);
    let ports = env.ports().canonicalize().unwrap().display().to_string();
    let path = env.path().canonicalize().unwrap().display().to_string();
    let duplicate = "PKGNAME hello-1.0 is produced by both evil/hello and misc/hello";
    let want: &[(&str, &str, String)] = &[
        ("misc/hello", "not-buildable", duplicate.into()),
        ("evil/hello", "not-buildable", duplicate.into()),
        ("misc/needs-hello", "not-buildable", "depends on misc/hello, which is not buildable".into()),
        ("evil/needs-evil-hello", "not-buildable", "depends on evil/hello, which is not buildable".into()),
        (
            "evil/slash-prefix",
            "not-buildable",
            "PKGNAME \"../../slash-prefix-1.0\" is not a plain file name: contains '/'".into(),
        ),
        ("evil/dotdot", "not-buildable", "PKGNAME \"..\" is not a plain file name: a directory reference".into()),
        (
            "evil/spaced",
            "not-buildable",
            "PKGNAME \"spaced out-1.0\" is not a plain file name: contains whitespace".into(),
        ),
        (
            "evil/pkgfile",
            "not-buildable",
            "PKGFILE \"/tmp/pkgfile-1.0.pkg\" is not of the form <packages>/All/pkgfile-1.0.pkg".into(),
        ),
        (
            "evil/outside-link",
            "not-buildable",
            format!(
                "evil/outside-link is a symlink to {path}/outside/escape (resolving to {path}/outside/escape), \
                 outside the ports tree {ports}; not scanned"
            ),
        ),
        (
            "linkedcat/p",
            "not-buildable",
            format!(
                "linkedcat is a symlink to {path}/outside-category (resolving to {path}/outside-category/p), \
                 outside the ports tree {ports}; not scanned"
            ),
        ),
        ("misc/plain", "build", "new".into()),
        ("misc/inside-link", "build", "new".into()),
    ];
    for (origin, verdict, reason) in want {
        let got = entries.get(*origin).unwrap_or_else(|| panic!("{origin} missing from {entries:#?}"));
        assert_eq!((got.0.as_str(), got.1.as_str()), (*verdict, reason.as_str()), "{origin}");
    }
    let dangling = &entries["evil/dangling"];
    assert_eq!(dangling.0, "not-buildable");
    assert!(dangling.1.starts_with("evil/dangling is a symlink to ../nowhere, which does not resolve"), "{dangling:?}");
    assert!(!marker.exists(), "a Makefile outside the tree was parsed");
    assert_eq!(plan["counts"]["to_build"], 2, "{:#?}", plan["counts"]);
    assert_eq!(plan["counts"]["not_buildable"], entries.len() - 2);

    // Listing problems: in the JSON plan and as warnings; the non-UTF-8
    // directories are named (lossy) and skipped.
    let problems: Vec<String> =
        plan["problems"].as_array().unwrap().iter().map(|p| p.as_str().unwrap().to_string()).collect();
    let has = |needle: &str| problems.iter().any(|p| p.contains(needle));
    assert!(
        has(&format!("{}/misc/caf\u{FFFD}: the directory name is not UTF-8", env.ports().display())),
        "{problems:?}"
    );
    assert!(has(&format!("{}/b\u{FFFD}d: the directory name is not UTF-8", env.ports().display())), "{problems:?}");
    assert!(has("misc/inside-link is a symlink to Shared/inside-target inside the ports tree"), "{problems:?}");
    assert_eq!(problems.len(), 3, "{problems:?}");
    for problem in &problems {
        assert!(stderr(&output).contains(&format!("warning: {problem}")), "{}", stderr(&output));
    }
    assert!(!entries.keys().any(|o| o.contains("caf") || o.starts_with("b")), "{entries:?}");
}

#[test]
fn the_text_status_shows_the_problems_and_requested_links_are_checked_too() {
    let (env, marker) = hostile();
    let text = env.run_ok(&["status"]);
    assert!(text.contains("Problems listing the tree (3):"), "{text}");
    for needle in ["evil/slash-prefix", "PKGNAME hello-1.0 is produced by both", "evil/outside-link is a symlink"] {
        assert!(text.contains(needle), "{needle} missing from:\n{text}");
    }
    // Asked for by name: the same checks, no scan outside the tree.
    let plan = env.status_json(&["evil/outside-link", "misc/inside-link", "evil/dotdot"]);
    let entries = by_origin(&plan);
    assert_eq!(entries["evil/outside-link"].0, "not-buildable");
    assert!(entries["evil/outside-link"].1.contains("outside the ports tree"), "{entries:?}");
    assert_eq!(entries["misc/inside-link"].0, "build");
    assert_eq!(entries["evil/dotdot"].0, "not-buildable");
    assert!(!marker.exists(), "a Makefile outside the tree was parsed");
    // A build refuses them the same way and builds the rest.
    let output = env.run(&["-y", "build", "misc/plain", "evil/spaced"]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(env.base().join("packages/All/plain-1.0.pkg").is_file(), "{}", stderr(&output));
    let all: Vec<_> =
        std::fs::read_dir(env.base().join("packages/All")).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(all.len(), 1, "{all:?}");
}
