//! Packages are data: hostile packages against real sandboxes, as root.
//! A port whose package has the prefix `/`, a port that swaps its package
//! file for a symlink or a fifo after packaging, and hostile packages put
//! into `All/` as if an earlier build had made them, then installed as the
//! dependency of another port. None of them may reach the repository or
//! the host (distfiles, outbox). The tests run one at a time (a global
//! lock), like tests/sandbox.rs.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::Env;
use portsynth::builddb::BuildDb;
use portsynth::commands::prepare::prepare;
use portsynth::framework::Kind;
use portsynth::ports::{Origin, Phase};
use portsynth::sandbox::runner::{build_one, BuildOutcome, Dependency, OutcomeStatus, SandboxRequest};
use sha2::{Digest, Sha256};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Builds one port through the library API with the dependency packages the
/// builder would install (they must be in All/ already).
fn build(env: &Env, port: &str) -> BuildOutcome {
    let config = portsynth::config::load(&env.config(), None).unwrap();
    let db = BuildDb::open(&config.database_path).unwrap();
    let origin = Origin::parse(port).unwrap();
    let prepared = prepare(&config, &db, std::slice::from_ref(&origin)).unwrap();
    let tree = &prepared.tree;
    let node = tree.lookup(&origin).unwrap();
    let pkgname = |n: usize| tree.nodes[n].meta.as_ref().unwrap().pkgname.clone();
    let request = SandboxRequest {
        slot: 1,
        origin: tree.nodes[node].origin.clone(),
        pkgname: pkgname(node),
        phases: Kind::Bundled.framework().phases(false),
        dependencies: tree
            .install_set(node)
            .into_iter()
            .map(|n| Dependency { file: format!("{}.pkg", pkgname(n)), origin: tree.nodes[n].origin.clone() })
            .collect(),
        keep_work_on_failure: false,
        variant: vec![],
        bootstrap_pkg: false,
        make_jobs: 1,
        work_area: portsynth::sandbox::work_area::WorkArea::Tmpfs,
        expected_memory: None,
        critical_path_ms: None,
    };
    build_one(&config, &common::bin(), &request, &|_| {}, None).unwrap()
}

fn log_of(outcome: &BuildOutcome) -> String {
    std::fs::read_to_string(&outcome.log_path).unwrap()
}

/// Every path below `dir` with its size and mode (empty if `dir` is missing).
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (u64, u32)> {
    use std::os::unix::fs::MetadataExt;
    fn walk(dir: &Path, out: &mut BTreeMap<PathBuf, (u64, u32)>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let meta = entry.path().symlink_metadata().unwrap();
            out.insert(entry.path(), (meta.len(), meta.mode()));
            if meta.is_dir() {
                walk(&entry.path(), out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, &mut out);
    out
}

/// The host side a sandbox can write to: distfiles, the repository and the
/// slot's outbox.
struct Host {
    distfiles: PathBuf,
    all: PathBuf,
    outbox: PathBuf,
    before: BTreeMap<PathBuf, (u64, u32)>,
}

impl Host {
    fn watch(env: &Env) -> Host {
        let distfiles = env.base().join("distfiles");
        let all = env.base().join("packages/All");
        std::fs::create_dir_all(&distfiles).unwrap();
        std::fs::create_dir_all(&all).unwrap();
        std::fs::write(distfiles.join("precious.tar.gz"), b"a distfile").unwrap();
        let mut host = Host { distfiles, all, outbox: env.base().join("SL01.out"), before: BTreeMap::new() };
        host.before = host.now();
        host
    }

    fn now(&self) -> BTreeMap<PathBuf, (u64, u32)> {
        let mut all = snapshot(&self.distfiles);
        all.extend(snapshot(&self.all));
        all
    }

    fn assert_unchanged(&self, when: &str) {
        assert_eq!(self.now(), self.before, "{when}: the host's distfiles or All/ changed");
        assert!(!self.outbox.exists(), "{when}: the outbox is left behind");
    }
}

fn assert_failed(outcome: &BuildOutcome, phase: Phase, want: &str) -> String {
    let log = log_of(outcome);
    assert_eq!(outcome.status, OutcomeStatus::Failed, "{outcome:?}\n{log}");
    assert_eq!(outcome.failed_phase, Some(phase), "{outcome:?}\n{log}");
    assert!(outcome.package.is_none());
    let reason = outcome.reason.clone().unwrap_or_default();
    assert!(reason.contains(want), "reason {reason:?} lacks {want:?}\n{log}");
    assert!(log.contains(want), "the log lacks {want:?}:\n{log}");
    reason
}

#[test]
fn a_package_with_prefix_root_is_refused_at_delivery() {
    let _guard = serial();
    let env = Env::fixtures();
    let host = Host::watch(&env);
    let outcome = build(&env, "hostile/root-prefix");
    assert_failed(
        &outcome,
        Phase::Package,
        "root-prefix-1.0.pkg: prefix / is not the framework's LOCALBASE /usr/local",
    );
    host.assert_unchanged("after a prefix-/ package");
    assert!(!host.distfiles.join("evil-suid").exists());
}

#[test]
fn a_package_file_swapped_for_a_symlink_or_fifo_is_not_delivered() {
    let _guard = serial();
    let env = Env::fixtures();
    let host = Host::watch(&env);
    for (conf, want) in [
        ("", "package-symlink-1.0.pkg: is a symlink; refusing to follow it"),
        ("[make_conf]\nHOSTILE_TARGET = \"/proc/self/mem\"\n", "package-symlink-1.0.pkg: is a symlink"),
        ("[make_conf]\nHOSTILE_REPLACE = \"fifo\"\n", "package-symlink-1.0.pkg: is a fifo, not a regular file"),
    ] {
        env.write_config(conf);
        let started = Instant::now();
        let outcome = build(&env, "hostile/package-symlink");
        let reason = assert_failed(&outcome, Phase::Package, want);
        assert!(reason.contains("/construction/packages/All/package-symlink-1.0.pkg"), "{reason}");
        assert!(started.elapsed() < Duration::from_secs(60), "delivery did not fail fast: {:?}", started.elapsed());
        host.assert_unchanged(&format!("after a swapped package file ({conf:?})"));
    }
}

/// One archive entry of a hand-made package.
enum Body<'a> {
    File(&'a [u8], u32),
    Symlink(&'a str),
}

/// Writes a package as `create-pkg.py` lays it out, with whatever manifest
/// fields and entries a test wants.
fn write_package(dest: &Path, origin: &str, prefix: &str, files: &[(&str, Body)]) {
    let digest = |body: &Body| match body {
        Body::File(data, _) => format!("{:x}", Sha256::digest(data)),
        Body::Symlink(target) => format!("{:x}", Sha256::digest(target.as_bytes())),
    };
    // Through the crate's own type, so the keys keep create-pkg.py's order
    // (the framework's depends.sh reads the first "version" before "deps").
    let manifest = portsynth::repo::Manifest {
        name: "root-prefix".into(),
        version: "1.0".into(),
        origin: origin.into(),
        flavor: String::new(),
        comment: "hostile".into(),
        prefix: prefix.into(),
        deps: vec![],
        files: files
            .iter()
            .map(|(path, body)| portsynth::repo::ManifestFile { path: path.to_string(), sha256: digest(body) })
            .collect(),
    };
    let manifest = serde_json::to_vec_pretty(&manifest).unwrap();
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(manifest.len() as u64);
    header.set_mode(0o644);
    builder.append_data(&mut header, "+MANIFEST", &manifest[..]).unwrap();
    for (path, body) in files {
        let mut header = tar::Header::new_gnu();
        let rel = path.trim_start_matches('/');
        match body {
            Body::File(data, mode) => {
                header.set_size(data.len() as u64);
                header.set_mode(*mode);
                builder.append_data(&mut header, rel, *data).unwrap();
            }
            Body::Symlink(target) => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_size(0);
                header.set_mode(0o777);
                builder.append_link(&mut header, rel, target).unwrap();
            }
        }
    }
    let tar = builder.into_inner().unwrap();
    std::fs::write(dest, zstd::encode_all(&tar[..], 3).unwrap()).unwrap();
}

#[test]
fn hostile_dependency_packages_are_refused_in_depends() {
    let _guard = serial();
    let env = Env::fixtures();
    let host = Host::watch(&env);
    let package = host.all.join("root-prefix-1.0.pkg");
    let suid = b"#!/bin/sh\nid\n";
    // (origin, prefix, files, the reason expected)
    type Case<'a> = (&'a str, &'a str, Vec<(&'a str, Body<'a>)>, &'a str);
    let cases: Vec<Case> = vec![
        (
            "hostile/root-prefix",
            "/",
            vec![("/distfiles/evil-suid", Body::File(suid, 0o4755))],
            "root-prefix-1.0.pkg: prefix / is not the framework's LOCALBASE /usr/local",
        ),
        (
            "hostile/root-prefix",
            "/usr/local",
            vec![("/usr/local/bin/evil-suid", Body::File(suid, 0o4755))],
            "root-prefix-1.0.pkg: usr/local/bin/evil-suid is setuid (mode 4755); origin hostile/root-prefix is not in setuid_ports",
        ),
        (
            "misc/good",
            "/usr/local",
            vec![("/usr/local/bin/good", Body::File(suid, 0o755))],
            "root-prefix-1.0.pkg: built by misc/good, expected a package of hostile/root-prefix",
        ),
        (
            "hostile/root-prefix",
            "/usr/local",
            vec![("/usr/local/lib/out", Body::Symlink("/distfiles"))],
            "entry usr/local/lib/out: symlink to /distfiles points outside the prefix /usr/local",
        ),
    ];
    for (origin, prefix, files, want) in &cases {
        write_package(&package, origin, prefix, files);
        let outcome = build(&env, "hostile/needs-root-prefix");
        assert_failed(&outcome, Phase::Depends, want);
        assert!(log_of(&outcome).contains("===> refused dependency root-prefix-1.0.pkg: "), "{}", log_of(&outcome));
        assert_unchanged_but_package(&host, &package, &format!("after refusing {want:?}"));
    }

    // Listed in setuid_ports, the setuid package is installed and the
    // dependent builds.
    env.write_config("setuid_ports = [\"hostile/root-prefix\"]\n");
    write_package(&package, "hostile/root-prefix", "/usr/local", &cases[1].2);
    let outcome = build(&env, "hostile/needs-root-prefix");
    assert_eq!(outcome.status, OutcomeStatus::Success, "{outcome:?}\n{}", log_of(&outcome));
    assert!(log_of(&outcome).contains("===> installed dependency root-prefix-1.0.pkg"));
    assert_eq!(std::fs::read_dir(&host.distfiles).unwrap().count(), 1, "only precious.tar.gz");
}

/// The test itself writes `All/root-prefix-1.0.pkg`; nothing else may change.
fn assert_unchanged_but_package(host: &Host, package: &Path, when: &str) {
    let mut now = host.now();
    let mut before = host.before.clone();
    now.remove(package);
    before.remove(package);
    assert_eq!(now, before, "{when}: the host's distfiles or All/ changed");
    assert!(!host.outbox.exists(), "{when}: the outbox is left behind");
}
