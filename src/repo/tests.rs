//! Tests of reading, verifying and installing packages: well-formed ones
//! built by [`super::testpkg`], every kind of bad input, and one real
//! package built by the bmake framework from `ports-testdata`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Result;

use super::testpkg::{entry, write_archive, Body, Spec};
use super::{install, read_manifest, verify, Manifest, PackagePolicy};

/// The bundled framework's rules, with limits no well-formed test package
/// comes near, and no expected origin.
fn policy() -> PackagePolicy {
    PackagePolicy::any_origin("/usr/local", 64 << 20, 64 << 20)
}

fn hello() -> Spec {
    Spec::new("hello", "2.1")
        .file("/usr/local/bin/hello", b"#!/bin/sh\necho hello\n", 0o755)
        .file("/usr/local/lib/libhello.so.1", b"\x7fELF not really", 0o644)
        .symlink("/usr/local/lib/libhello.so", "libhello.so.1")
        .file("/usr/local/share/doc/hello/README", b"read me\n", 0o444)
}

/// The error of `result`, with its whole context chain, after checking that
/// it names `pkg` and says `want`.
fn assert_err(result: Result<Manifest>, pkg: &Path, want: &str) -> String {
    let err = format!("{:#}", result.expect_err("must fail"));
    assert!(err.contains(&pkg.display().to_string()), "error does not name {}: {err}", pkg.display());
    assert!(err.contains(want), "expected {want:?} in: {err}");
    err
}

/// Every non-directory below `dir`, relative to it, sorted.
fn files_below(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in fs::read_dir(dir).unwrap() {
            let path = e.unwrap().path();
            if fs::symlink_metadata(&path).unwrap().is_dir() {
                walk(base, &path, out);
            } else {
                out.push(path.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

fn new_root(dir: &Path) -> PathBuf {
    let root = dir.join("root");
    fs::create_dir_all(&root).unwrap();
    root
}

/// Pseudo-random, incompressible bytes.
fn noise(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

#[test]
fn verify_accepts_the_framework_layout() {
    let dir = tempfile::tempdir().unwrap();
    let spec = hello();
    let pkg = spec.write(dir.path());
    let manifest = verify(&pkg, "hello-2.1", &policy()).unwrap();
    assert_eq!(manifest, spec.manifest());
    assert_eq!(manifest.pkgname(), "hello-2.1");
    assert_eq!(read_manifest(&pkg).unwrap(), manifest);
}

#[test]
fn install_extracts_files_modes_symlinks_and_records_the_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let spec = hello();
    let pkg = spec.write(dir.path());
    let root = new_root(dir.path());
    assert_eq!(install(&pkg, &root, &policy()).unwrap(), spec.manifest());

    let local = root.join("usr/local");
    assert_eq!(fs::read(local.join("bin/hello")).unwrap(), b"#!/bin/sh\necho hello\n");
    let mode = |p: &str| fs::symlink_metadata(local.join(p)).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode("bin/hello"), 0o755);
    assert_eq!(mode("share/doc/hello/README"), 0o444);
    assert_eq!(fs::read_link(local.join("lib/libhello.so")).unwrap(), Path::new("libhello.so.1"));
    assert_eq!(fs::read(local.join(".pkgdb/hello/+MANIFEST")).unwrap(), spec.manifest_json());
    assert_eq!(
        files_below(&root),
        [
            "usr/local/.pkgdb/hello/+MANIFEST",
            "usr/local/bin/hello",
            "usr/local/lib/libhello.so",
            "usr/local/lib/libhello.so.1",
            "usr/local/share/doc/hello/README",
        ]
    );
}

#[test]
fn installing_twice_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let pkg = hello().write(dir.path());
    let root = new_root(dir.path());
    install(&pkg, &root, &policy()).unwrap();
    let bin = root.join("usr/local/bin/hello");
    fs::write(&bin, b"clobbered").unwrap();
    install(&pkg, &root, &policy()).unwrap();
    assert_eq!(fs::read(&bin).unwrap(), b"#!/bin/sh\necho hello\n");
    assert_eq!(files_below(&root).len(), 5, "no temporaries: {:?}", files_below(&root));
}

#[test]
fn another_framework_passes_its_own_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let mut spec = Spec::new("base", "1").file("/usr/pkg/etc/base.conf", b"x=1\n", 0o644);
    spec.prefix = "/usr/pkg".into();
    let pkg = spec.write(dir.path());
    let root = new_root(dir.path());
    let pkgsrc = PackagePolicy::any_origin("/usr/pkg", 1 << 20, 1 << 20);
    install(&pkg, &root, &pkgsrc).unwrap();
    assert_eq!(files_below(&root), ["usr/pkg/.pkgdb/base/+MANIFEST", "usr/pkg/etc/base.conf"]);
    assert_err(
        verify(&pkg, "base-1", &policy()),
        &pkg,
        "base-1.pkg: prefix /usr/pkg is not the framework's LOCALBASE /usr/local",
    );
}

#[test]
fn missing_file_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let pkg = dir.path().join("nope-1.0.pkg");
    assert_err(verify(&pkg, "nope-1.0", &policy()), &pkg, "nope-1.0.pkg: cannot open package");
    assert_err(read_manifest(&pkg), &pkg, "cannot open package");
    assert_err(install(&pkg, &new_root(dir.path()), &policy()), &pkg, "cannot open package");
}

#[test]
fn uncompressed_or_empty_file_is_not_zstd() {
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain.pkg");
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(2);
    header.set_cksum();
    builder.append_data(&mut header, "+MANIFEST", &b"{}"[..]).unwrap();
    fs::write(&plain, builder.into_inner().unwrap()).unwrap();
    assert_err(verify(&plain, "x-1", &policy()), &plain, "plain.pkg: not a package: not zstd-compressed");

    let empty = dir.path().join("empty.pkg");
    fs::write(&empty, b"").unwrap();
    assert_err(read_manifest(&empty), &empty, "not zstd-compressed");
}

#[test]
fn zstd_that_is_not_a_tar_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let pkg = dir.path().join("junk.pkg");
    fs::write(&pkg, zstd::encode_all(&noise(4096)[..], 3).unwrap()).unwrap();
    assert_err(verify(&pkg, "junk-1", &policy()), &pkg, "corrupt or truncated package");
}

#[test]
fn truncated_package_is_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let spec = hello().file("/usr/local/share/hello/data", &noise(256 * 1024), 0o644);
    let good = spec.write(dir.path());
    let bytes = fs::read(&good).unwrap();
    for (name, len) in [("half.pkg", bytes.len() / 2), ("tail.pkg", bytes.len() - 4)] {
        let pkg = dir.path().join(name);
        fs::write(&pkg, &bytes[..len]).unwrap();
        assert_err(verify(&pkg, "hello-2.1", &policy()), &pkg, "corrupt or truncated package");
        let root = new_root(&dir.path().join(name).with_extension("d"));
        assert_err(install(&pkg, &root, &policy()), &pkg, "corrupt or truncated package");
        assert!(files_below(&root).is_empty(), "left behind: {:?}", files_below(&root));
    }
}

#[test]
fn wrong_pkgname_names_both() {
    let dir = tempfile::tempdir().unwrap();
    let pkg = hello().write(dir.path());
    assert_err(verify(&pkg, "hello-2.2", &policy()), &pkg, "package is hello-2.1, expected hello-2.2");
}

#[test]
fn listed_file_missing_from_archive() {
    let dir = tempfile::tempdir().unwrap();
    let spec = hello();
    let mut entries = spec.entries();
    entries.retain(|e| e.path != "usr/local/bin/hello");
    let pkg = spec.write_entries(dir.path(), &entries);
    assert_err(
        verify(&pkg, "hello-2.1", &policy()),
        &pkg,
        "/usr/local/bin/hello is listed in +MANIFEST but missing from the archive",
    );
}

#[test]
fn sha256_mismatch_names_the_entry() {
    let dir = tempfile::tempdir().unwrap();
    let spec = hello();
    let mut entries = spec.entries();
    entries[1].body = Body::File(b"#!/bin/sh\nrm -rf /\n".to_vec(), 0o755);
    let pkg = spec.write_entries(dir.path(), &entries);
    let err = assert_err(verify(&pkg, "hello-2.1", &policy()), &pkg, "entry usr/local/bin/hello: sha256 ");
    assert!(err.contains("does not match +MANIFEST"), "{err}");
}

#[test]
fn symlink_target_is_checked() {
    let dir = tempfile::tempdir().unwrap();
    let spec = hello();
    let mut entries = spec.entries();
    let link = entries.iter_mut().find(|e| e.path == "usr/local/lib/libhello.so").unwrap();
    link.body = Body::Symlink("libhello.so.2".into());
    let pkg = spec.write_entries(dir.path(), &entries);
    assert_err(verify(&pkg, "hello-2.1", &policy()), &pkg, "entry usr/local/lib/libhello.so: sha256 ");
}

#[test]
fn unlisted_extra_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let spec = hello();
    let mut entries = spec.entries();
    entries.push(entry("usr/local/bin/extra", Body::File(b"x".to_vec(), 0o755)));
    let pkg = spec.write_entries(dir.path(), &entries);
    assert_err(verify(&pkg, "hello-2.1", &policy()), &pkg, "entry usr/local/bin/extra: not listed in +MANIFEST");
}

#[test]
fn dotdot_entry_is_refused_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let spec = hello();
    let mut entries = spec.entries();
    entries.insert(1, entry("usr/local/../../../evil", Body::File(b"x".to_vec(), 0o644)));
    let pkg = spec.write_entries(dir.path(), &entries);
    let want = "entry usr/local/../../../evil: unsafe path (contains ..)";
    assert_err(verify(&pkg, "hello-2.1", &policy()), &pkg, want);
    let root = new_root(&dir.path().join("a/b"));
    assert_err(install(&pkg, &root, &policy()), &pkg, want);
    assert!(files_below(dir.path()).iter().all(|f| !f.contains("evil")));
}

#[test]
fn absolute_entry_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let spec = hello();
    let mut entries = spec.entries();
    entries.push(entry("/usr/local/bin/hello2", Body::File(b"x".to_vec(), 0o755)));
    let pkg = spec.write_entries(dir.path(), &entries);
    assert_err(verify(&pkg, "hello-2.1", &policy()), &pkg, "entry /usr/local/bin/hello2: unsafe path (absolute)");
}

#[test]
fn entry_outside_prefix_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let spec = hello();
    let mut entries = spec.entries();
    entries.push(entry("etc/passwd", Body::File(b"root::0:0::/:/bin/sh\n".to_vec(), 0o644)));
    let pkg = spec.write_entries(dir.path(), &entries);
    assert_err(verify(&pkg, "hello-2.1", &policy()), &pkg, "entry etc/passwd is outside the prefix /usr/local");
}

#[test]
fn manifest_must_be_first() {
    let dir = tempfile::tempdir().unwrap();
    let spec = hello();
    let mut entries = spec.entries();
    entries.swap(0, 1);
    let pkg = spec.write_entries(dir.path(), &entries);
    let want = "hello-2.1.pkg: not a package: first entry is usr/local/bin/hello, expected +MANIFEST";
    assert_err(read_manifest(&pkg), &pkg, want);
    assert_err(verify(&pkg, "hello-2.1", &policy()), &pkg, want);
}

#[test]
fn empty_archive_has_no_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let pkg = dir.path().join("empty-1.pkg");
    write_archive(&pkg, &[]);
    assert_err(read_manifest(&pkg), &pkg, "not a package: empty archive, expected +MANIFEST first");
}

#[test]
fn invalid_manifest_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let spec = Spec::new("evil", "1").file("/etc/cron.d/evil", b"x", 0o644);
    let pkg = spec.write(dir.path());
    assert_err(read_manifest(&pkg), &pkg, "invalid +MANIFEST: /etc/cron.d/evil is outside prefix /usr/local");

    let pkg = dir.path().join("json-1.pkg");
    write_archive(&pkg, &[entry("+MANIFEST", Body::File(b"{not json".to_vec(), 0o644))]);
    assert_err(read_manifest(&pkg), &pkg, "+MANIFEST is not valid JSON");
}

#[test]
fn duplicate_and_odd_entries_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let spec = hello();
    let mut entries = spec.entries();
    entries.push(entries[1].clone());
    let pkg = spec.write_entries(dir.path(), &entries);
    assert_err(verify(&pkg, "hello-2.1", &policy()), &pkg, "entry usr/local/bin/hello: appears twice in the archive");

    let sub = dir.path().join("sub");
    fs::create_dir(&sub).unwrap();
    let spec = Spec::new("hl", "1").symlink("/usr/local/bin/hl", "/etc/shadow");
    let mut entries = spec.entries();
    entries[1].body = Body::HardLink("/etc/shadow".into());
    let pkg = spec.write_entries(&sub, &entries);
    assert_err(
        verify(&pkg, "hl-1", &policy()),
        &pkg,
        "entry usr/local/bin/hl: is a hard link to /etc/shadow; only regular files, directories and symlinks may be packed",
    );
}

#[test]
fn directory_entries_inside_the_prefix_are_tolerated() {
    let dir = tempfile::tempdir().unwrap();
    let spec = hello();
    let mut entries = spec.entries();
    entries.insert(1, entry("usr/", Body::Dir(0o755)));
    entries.insert(2, entry("usr/local/share/examples/", Body::Dir(0o750)));
    let pkg = spec.write_entries(dir.path(), &entries);
    verify(&pkg, "hello-2.1", &policy()).unwrap();
    let root = new_root(dir.path());
    install(&pkg, &root, &policy()).unwrap();
    let examples = root.join("usr/local/share/examples");
    assert_eq!(fs::metadata(&examples).unwrap().permissions().mode() & 0o777, 0o750);

    entries.push(entry("etc/", Body::Dir(0o755)));
    let pkg = spec.write_entries(dir.path(), &entries);
    assert_err(verify(&pkg, "hello-2.1", &policy()), &pkg, "entry etc/ is outside the prefix /usr/local");
}

#[test]
fn install_refuses_to_write_through_a_symlinked_parent() {
    let dir = tempfile::tempdir().unwrap();
    let pkg = hello().write(dir.path());
    let root = new_root(dir.path());
    let elsewhere = dir.path().join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    fs::create_dir(root.join("usr")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, root.join("usr/local")).unwrap();
    assert_err(install(&pkg, &root, &policy()), &pkg, "usr/local is a symlink; refusing to install through it");
    assert!(files_below(&elsewhere).is_empty());
}

#[test]
fn failed_install_leaves_no_file_and_no_record() {
    let dir = tempfile::tempdir().unwrap();
    let spec = hello();
    let mut entries = spec.entries();
    let last = entries.len() - 1; // share/doc/hello/README, after the others
    entries[last].body = Body::File(b"tampered".to_vec(), 0o444);
    let pkg = spec.write_entries(dir.path(), &entries);
    let root = new_root(dir.path());
    assert_err(install(&pkg, &root, &policy()), &pkg, "entry usr/local/share/doc/hello/README: sha256");
    assert!(files_below(&root).is_empty(), "left behind: {:?}", files_below(&root));
}

#[test]
fn failed_commit_cleans_up_temporaries() {
    let dir = tempfile::tempdir().unwrap();
    let pkg = hello().write(dir.path());
    let root = new_root(dir.path());
    let blocker = root.join("usr/local/lib/libhello.so.1/occupied");
    fs::create_dir_all(&blocker).unwrap();
    assert_err(install(&pkg, &root, &policy()), &pkg, "cannot install");
    let left = files_below(&root);
    assert!(left.iter().all(|f| !f.contains(".pkgtmp.")), "temporaries left: {left:?}");
    assert!(!root.join("usr/local/.pkgdb/hello/+MANIFEST").exists());
}

/// Builds devel/libgreet with the real framework into temporary
/// directories, then verifies and installs the package.
#[test]
fn real_package_from_the_bmake_framework() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let ports = repo.join("ports-testdata");
    let status = Command::new(repo.join("scripts/make-distfiles")).status().expect("run make-distfiles");
    assert!(status.success(), "make-distfiles failed");

    let tmp = tempfile::tempdir().unwrap();
    let packages = tmp.path().join("packages");
    let output = Command::new("bmake")
        .arg("-m")
        .arg(ports.join("Mk"))
        .arg("-C")
        .arg(ports.join("devel/libgreet"))
        .arg("package")
        .env("PORTSDIR", &ports)
        .env("WRKDIRPREFIX", tmp.path().join("wrk"))
        .env("DISTDIR", tmp.path().join("distfiles"))
        .env("PACKAGES", &packages)
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS")
        .env_remove("MAKELEVEL")
        .output()
        .expect("run bmake");
    assert!(output.status.success(), "bmake package failed:\n{}", String::from_utf8_lossy(&output.stderr));

    let pkg = packages.join("All/libgreet-1.2.pkg");
    let mut libgreet = policy();
    libgreet.expected_origin = Some("devel/libgreet".into());
    let manifest = verify(&pkg, "libgreet-1.2", &libgreet).unwrap();
    assert_eq!((manifest.origin.as_str(), manifest.prefix.as_str()), ("devel/libgreet", "/usr/local"));
    assert!(manifest.files.iter().any(|f| f.path == "/usr/local/lib/libgreet.so"));

    let root = new_root(tmp.path());
    assert_eq!(install(&pkg, &root, &libgreet).unwrap(), manifest);
    assert!(root.join("usr/local/lib/libgreet.so.1").is_file());
    assert_eq!(fs::read_link(root.join("usr/local/lib/libgreet.so")).unwrap(), Path::new("libgreet.so.1"));
    let record = root.join("usr/local/.pkgdb/libgreet/+MANIFEST");
    let recorded: Manifest = serde_json::from_slice(&fs::read(&record).unwrap()).unwrap();
    assert_eq!(recorded, manifest);
    assert_err(verify(&pkg, "libgreet-1.3", &policy()), &pkg, "package is libgreet-1.2, expected libgreet-1.3");
}
