//! fetch-only and purge-distfiles on the real 2014 pkgsrc tree of
//! `../shared` (tree and kit from `common::pkgsrc`, distfiles from
//! `../shared/pkgsrc/distfiles`): pkgsrc's distinfo (SHA1, RMD160, Size),
//! its fetch list asked of bmake, the loopback mirror of `common::mirror`
//! as the only site (`fetch_upstream = false`: no test ever tries a real
//! MASTER_SITE).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use common::mirror::{Mirror, Reply};
use common::pkgsrc::{kit, shared, tree};
use common::{dump, events, run_end};
use portsynth::fetch::distinfo::Algorithm;
use portsynth::framework::Kind;
use serde_json::Value;

/// A build base of its own over the shared tree and kit.
struct Env {
    dir: tempfile::TempDir,
}

impl Env {
    fn new(ports_dir: &Path, extra: &str) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base");
        let extra = format!("fetch_retries = 0\nfetch_local_hosts = [\"127.0.0.1\"]\n{extra}");
        common::pkgsrc::write_config(dir.path(), ports_dir, &base, &extra);
        Env { dir }
    }

    /// Over the real tree, with its kit.
    fn real(extra: &str) -> Env {
        Env::new(&tree(), &format!("bootstrap_kit = \"{}\"\n{extra}", kit().display()))
    }

    fn distfiles(&self) -> PathBuf {
        self.dir.path().join("base/distfiles")
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(common::bin())
            .arg("--config")
            .arg(self.dir.path().join("portsynth.toml"))
            .args(args)
            .env_remove("PORTSYNTH_CONFIG")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn fetch(&self, ports: &[&str]) -> Output {
        let mut args = vec!["--json", "fetch-only"];
        args.extend_from_slice(ports);
        self.run(&args)
    }

    /// Copies these files of `../shared/pkgsrc/distfiles` into the cache.
    fn prefill(&self, files: &[&str]) {
        std::fs::create_dir_all(self.distfiles()).unwrap();
        for file in files {
            std::fs::copy(shared().join("distfiles").join(file), self.distfiles().join(file)).unwrap();
        }
    }

    /// Every file below the cache (not `.locks/`), relative, sorted; a
    /// DIST_SUBDIR directory may stay empty.
    fn listing(&self) -> Vec<String> {
        fn walk(dir: &Path, rel: &str, out: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let child = if rel.is_empty() { name.clone() } else { format!("{rel}/{name}") };
                match entry.file_type().unwrap().is_dir() {
                    true if rel.is_empty() && name == ".locks" => {}
                    true => walk(&entry.path(), &child, out),
                    false => out.push(child),
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.distfiles(), "", &mut out);
        out.sort();
        out
    }
}

/// (fetched, present, failed, without distfiles).
fn counts(output: &Output) -> (u64, u64, u64, u64) {
    let end = run_end(output);
    let c = &end["counts"];
    let n = |key: &str| c[key].as_u64().unwrap_or_else(|| panic!("no {key} in {end}"));
    (n("fetched"), n("present"), n("failed"), n("without_distfiles"))
}

/// The only site of a test: `fetch_upstream = false`, so no real
/// MASTER_SITE is ever tried.
fn only(mirror: &Mirror) -> String {
    format!("distfile_mirrors = [\"{}\"]\nfetch_upstream = false\n", mirror.url())
}

fn shared_distfile(file: &str) -> Vec<u8> {
    std::fs::read(shared().join("distfiles").join(file)).unwrap()
}

fn sandboxes_started(output: &Output) -> usize {
    events(output).iter().filter(|e| e["event"] == "fetch_start").count()
}

#[test]
fn every_distinfo_of_the_tree_parses_and_only_its_distfiles_are_kept() {
    let tree = tree();
    let framework = Kind::Pkgsrc.framework();
    let (mut files, mut distfiles) = (0, 0);
    for category in std::fs::read_dir(&tree).unwrap().flatten() {
        for package in std::fs::read_dir(category.path()).into_iter().flatten().flatten() {
            let path = package.path().join("distinfo");
            let Ok(text) = std::fs::read_to_string(&path) else { continue };
            let distinfo = framework.parse_distinfo(&text, &path).unwrap_or_else(|e| panic!("{e:#}"));
            files += 1;
            for (key, entry) in &distinfo.entries {
                let expected =
                    entry.expected().unwrap_or_else(|| panic!("{}: {key} vouches for nothing", path.display()));
                assert_eq!(expected.algorithms(), [Algorithm::Sha1, Algorithm::Rmd160], "{}: {key}", path.display());
                distfiles += 1;
            }
        }
    }
    // 10,835 distinfo files, 13,268 `Size` lines (python over the tree);
    // every other entry is one of the packages' own patches.
    assert_eq!((files, distfiles), (10_835, 13_268));
}

const PACKAGES: [&str; 3] = ["misc/figlet", "archivers/unzip", "pkgtools/digest"];
const DISTFILES: [&str; 2] = ["figlet-2.2.5.tar.gz", "unzip60.tgz"];

#[test]
fn fetch_only_fills_an_empty_cache_from_a_mirror_then_finds_everything_present() {
    let mirror = Mirror::directory(shared().join("distfiles"));
    let env = Env::real(&only(&mirror));
    let output = env.fetch(&PACKAGES);
    assert_eq!(output.status.code(), Some(0), "{}", dump(&output));
    assert_eq!(counts(&output), (2, 0, 0, 2), "{}", dump(&output));
    assert_eq!(env.listing(), DISTFILES, "nothing else, no .part left");
    for file in DISTFILES {
        assert_eq!(std::fs::read(env.distfiles().join(file)).unwrap(), shared_distfile(file), "{file}");
        assert_eq!(mirror.hits(file), 1, "{file} downloaded once");
    }
    assert_eq!(mirror.total_hits(), 2);

    let output = env.fetch(&PACKAGES);
    assert_eq!(counts(&output), (0, 2, 0, 2), "{}", dump(&output));
    assert_eq!(sandboxes_started(&output), 0, "present files need no sandbox: {}", dump(&output));
    assert_eq!(mirror.total_hits(), 2, "the second run downloads nothing");

    // A file that went bad in the cache (same size) is removed, named with
    // the digests that differ, and fetched again.
    let mut bytes = shared_distfile("figlet-2.2.5.tar.gz");
    bytes[1000] ^= 0xff;
    std::fs::write(env.distfiles().join("figlet-2.2.5.tar.gz"), &bytes).unwrap();
    let output = env.fetch(&PACKAGES);
    assert_eq!(counts(&output), (1, 1, 0, 2), "{}", dump(&output));
    let notices = String::from_utf8_lossy(&output.stdout);
    assert!(notices.contains("removed corrupt distfile") && notices.contains("figlet-2.2.5.tar.gz"), "{notices}");
    assert!(notices.contains("SHA1 dda696958c161bd71d6590152c94c4f705415727"), "{notices}");
    assert_eq!(
        std::fs::read(env.distfiles().join("figlet-2.2.5.tar.gz")).unwrap(),
        shared_distfile("figlet-2.2.5.tar.gz")
    );
    assert_eq!(mirror.hits("figlet-2.2.5.tar.gz"), 2);
}

#[test]
fn a_mirror_serving_wrong_bytes_leaves_nothing_and_names_the_file_and_the_algorithms() {
    let mirror = Mirror::start(|path, _| match std::fs::read(shared().join("distfiles").join(path)) {
        Ok(mut body) if path == "figlet-2.2.5.tar.gz" => {
            body[1000] ^= 0xff;
            Reply::File(body)
        }
        Ok(body) => Reply::File(body),
        Err(_) => Reply::Status(404),
    });
    let env = Env::real(&only(&mirror));
    let output = env.fetch(&PACKAGES);
    assert_eq!(output.status.code(), Some(1), "{}", dump(&output));
    assert_eq!(counts(&output), (1, 0, 1, 2), "{}", dump(&output));
    assert_eq!(env.listing(), ["unzip60.tgz"], "nothing of figlet, no .part");
    let end = run_end(&output);
    let reason = end["failed"][0]["reason"].as_str().unwrap_or_else(|| panic!("{end}"));
    assert_eq!(end["failed"][0]["origin"], "misc/figlet");
    assert!(reason.contains("checksum mismatch for figlet-2.2.5.tar.gz"), "{reason}");
    assert!(reason.contains("(SHA1, RMD160 differ)"), "{reason}");
    assert!(reason.contains("expected: SIZE 233201 SHA1 dda696958c161bd71d6590152c94c4f705415727 RMD160"), "{reason}");
    assert_eq!(mirror.hits("figlet-2.2.5.tar.gz"), 1, "fetch_retries = 0, and no other site is tried");
}

#[test]
fn dist_subdir_keys_and_patchfiles_are_asked_of_the_mirror_as_distinfo_names_them() {
    // Neither distfile is in ../shared: the mirror answers 404, and what
    // it was asked for is the evidence.
    let mirror = Mirror::start(|_, _| Reply::Status(404));
    let env = Env::real(&only(&mirror));
    let output = env.fetch(&["archivers/hpack", "audio/cddbd"]);
    assert_eq!(output.status.code(), Some(1), "{}", dump(&output));
    assert_eq!(counts(&output), (0, 0, 2, 2), "{}", dump(&output));
    for key in ["hpack-0.79/hpack79src.tar.gz", "cddbd-1.3.1.tar.gz", "cddbd-1.3.1.patch1.gz"] {
        assert_eq!(mirror.hits(key), 1, "{key}: {}", dump(&output));
    }
    assert_eq!(mirror.total_hits(), 3);
    let end = run_end(&output);
    let hpack = end["failed"].as_array().unwrap().iter().find(|f| f["origin"] == "archivers/hpack").unwrap();
    let url = format!("{}hpack-0.79/hpack79src.tar.gz", mirror.url());
    assert!(hpack["reason"].as_str().unwrap().contains(&url), "{hpack}");
    assert!(env.listing().is_empty(), "{:?}", env.listing());
}

#[test]
fn distfiles_in_the_cache_are_found_present_without_a_sandbox() {
    let env = Env::real("");
    env.prefill(&DISTFILES);
    let output = env.fetch(&PACKAGES);
    assert_eq!(output.status.code(), Some(0), "{}", dump(&output));
    // digest and nbpatch (a dependency of both) build from the tree's files/.
    assert_eq!(counts(&output), (0, 2, 0, 2), "{}", dump(&output));
    assert_eq!(sandboxes_started(&output), 0, "{}", dump(&output));
    assert_eq!(env.listing(), ["figlet-2.2.5.tar.gz", "unzip60.tgz"]);
}

#[test]
fn purge_keeps_every_distfile_a_distinfo_of_the_tree_lists_and_nothing_else() {
    let env = Env::real("");
    env.prefill(&["figlet-2.2.5.tar.gz"]);
    let junk = ["figlet-2.2.4.tar.gz", "patch-aa", "sub/old-1.0.tgz"];
    for file in junk {
        let path = env.distfiles().join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "x".repeat(10)).unwrap();
    }
    // devel/patch's distfile is called patch-*: a distfile, kept.
    std::fs::write(env.distfiles().join("patch-2.7.1.tar.xz"), "p").unwrap();

    let output = env.run(&["-v", "--json", "purge-distfiles"]);
    assert!(output.status.success(), "{}", dump(&output));
    let listed: Value = serde_json::from_slice(&output.stdout).unwrap();
    let names: Vec<&str> =
        listed["unreferenced"].as_array().unwrap().iter().map(|f| f["file"].as_str().unwrap()).collect();
    assert_eq!(names, junk, "the package's own patch-aa is no distfile");
    assert_eq!((listed["bytes"].as_u64(), &listed["deleted"]), (Some(30), &Value::Bool(false)));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!stderr.contains("scan: "), "pkgsrc's references are its distinfo files, not a scan: {stderr}");

    let output = env.run(&["--json", "-y", "purge-distfiles"]);
    assert!(output.status.success(), "{}", dump(&output));
    assert_eq!(env.listing(), ["figlet-2.2.5.tar.gz", "patch-2.7.1.tar.xz"]);
}

#[test]
fn purge_deletes_nothing_when_a_distinfo_does_not_parse() {
    let dir = tempfile::tempdir().unwrap();
    let ports = dir.path().join("pkgsrc");
    for (file, text) in [
        ("mk/bsd.pkg.mk", ""),
        ("Makefile", "SUBDIR+=\tmisc\n"),
        ("misc/Makefile", "SUBDIR+=\tgood\nSUBDIR+=\tbad\n"),
        ("misc/good/distinfo", "$NetBSD$\n\nSize (good-1.0.tgz) = 4 bytes\n"),
        ("misc/bad/distinfo", "$NetBSD$\n\nSize (bad-1.0.tgz) = 4 bytes\nMD5 (bad-1.0.tgz) = 00\n"),
    ] {
        std::fs::create_dir_all(ports.join(file).parent().unwrap()).unwrap();
        std::fs::write(ports.join(file), text).unwrap();
    }
    let env = Env::new(&ports, "");
    std::fs::create_dir_all(env.distfiles()).unwrap();
    std::fs::write(env.distfiles().join("junk-1.0.tgz"), "junk").unwrap();
    let output = env.run(&["-y", "purge-distfiles"]);
    assert!(!output.status.success(), "{}", dump(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not deleting anything"), "{stderr}");
    assert!(stderr.contains("misc/bad/distinfo line 4: unknown algorithm \"MD5\""), "{stderr}");
    assert_eq!(env.listing(), ["junk-1.0.tgz"]);
}
