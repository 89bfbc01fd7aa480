//! Packages written by an attacker: each must be refused by [`deliver`]
//! (nothing reaches the repository), by [`install`] (nothing is written
//! under the install root, not even a directory) and by [`verify`], with an
//! error naming the package file and the rule it breaks.

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tar::EntryType;

use super::fsutil::{copy_untrusted, open_untrusted};
use super::testpkg::{entry, write_bomb, Body, Spec};
use super::{deliver, install, verify, PackagePolicy};

/// The policy of a port `misc/<name>` of the bundled framework.
fn policy_for(origin: &str) -> PackagePolicy {
    PackagePolicy {
        prefix: "/usr/local".into(),
        max_file_size: 8 << 20,
        max_expanded_size: 64 << 20,
        allow_setuid: false,
        expected_origin: Some(origin.into()),
    }
}

/// Everything below `dir`, directories included, relative to it.
fn listing(dir: &Path) -> Vec<String> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        for e in fs::read_dir(dir).unwrap() {
            let path = e.unwrap().path();
            out.push(path.strip_prefix(base).unwrap().display().to_string());
            if fs::symlink_metadata(&path).unwrap().is_dir() {
                walk(base, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// A scratch area: where packages are written, an install root holding
/// one unrelated file, and a repository `All/` holding one package.
struct Area {
    dir: tempfile::TempDir,
}

impl Area {
    fn new() -> Area {
        let area = Area { dir: tempfile::tempdir().unwrap() };
        for sub in ["in", "root/usr/local/bin", "All"] {
            fs::create_dir_all(area.path(sub)).unwrap();
        }
        fs::write(area.path("root/usr/local/bin/existing"), b"keep").unwrap();
        fs::write(area.path("All/other-1.0.pkg"), b"keep").unwrap();
        area
    }

    fn path(&self, sub: &str) -> PathBuf {
        self.dir.path().join(sub)
    }

    fn incoming(&self) -> PathBuf {
        self.path("in")
    }

    /// `pkg` (named `pkgname`) is refused by deliver, install and verify
    /// under `policy`, each error naming the file and containing `want`;
    /// the install root and `All/` are as they were.
    fn assert_refused(&self, pkg: &Path, pkgname: &str, policy: &PackagePolicy, want: &str) -> String {
        let (root, all) = (self.path("root"), self.path("All"));
        let (root_before, all_before) = (listing(&root), listing(&all));
        let check = |what: &str, err: anyhow::Error| {
            let err = format!("{err:#}");
            assert!(err.contains(&pkg.display().to_string()), "{what}: error does not name {}: {err}", pkg.display());
            assert!(err.contains(want), "{what}: expected {want:?} in: {err}");
            err
        };
        let err = check("deliver", deliver(pkg, pkgname, policy, &all).expect_err("deliver must refuse"));
        check("install", install(pkg, &root, policy).expect_err("install must refuse"));
        check("verify", verify(pkg, pkgname, policy).expect_err("verify must refuse"));
        assert_eq!(listing(&root), root_before, "the install root changed");
        assert_eq!(listing(&all), all_before, "the repository changed");
        assert_eq!(fs::read(root.join("usr/local/bin/existing")).unwrap(), b"keep");
        err
    }
}

fn evil() -> Spec {
    let mut spec = Spec::new("evil", "1.0").file("/usr/local/bin/evil", b"#!/bin/sh\n", 0o755);
    spec.origin = "hostile/evil".into();
    spec
}

#[test]
fn a_well_formed_package_is_delivered_and_installed() {
    let area = Area::new();
    let pkg = evil().write(&area.incoming());
    let policy = policy_for("hostile/evil");
    let placed = deliver(&pkg, "evil-1.0", &policy, &area.path("All")).unwrap();
    assert_eq!(placed, area.path("All/evil-1.0.pkg"));
    assert_eq!(fs::read(&placed).unwrap(), fs::read(&pkg).unwrap());
    assert_eq!(fs::metadata(&placed).unwrap().permissions().mode() & 0o777, 0o644);
    assert_eq!(listing(&area.path("All")), ["evil-1.0.pkg", "other-1.0.pkg"]);
    install(&pkg, &area.path("root"), &policy).unwrap();
    assert!(area.path("root/usr/local/bin/evil").is_file());
}

#[test]
fn prefix_root_is_refused_before_anything_is_written() {
    let area = Area::new();
    let mut spec = Spec::new("evil", "1.0").file("/distfiles/evil-suid", b"\x7fELF", 0o4755).file(
        "/etc/passwd",
        b"root::0:0::/:/bin/sh\n",
        0o644,
    );
    spec.origin = "hostile/evil".into();
    spec.prefix = "/".into();
    let pkg = spec.write(&area.incoming());
    area.assert_refused(
        &pkg,
        "evil-1.0",
        &policy_for("hostile/evil"),
        "evil-1.0.pkg: prefix / is not the framework's LOCALBASE /usr/local",
    );
}

#[test]
fn entries_outside_the_prefix_are_refused() {
    let area = Area::new();
    let spec = evil();
    let policy = policy_for("hostile/evil");
    let cases: Vec<(&str, Body, String)> = vec![
        ("etc/passwd", Body::File(b"x".to_vec(), 0o644), "entry etc/passwd is outside the prefix /usr/local".into()),
        ("usr/local/../../etc/passwd", Body::File(b"x".to_vec(), 0o644), "unsafe path (contains ..)".into()),
        ("../../../tmp/evil", Body::File(b"x".to_vec(), 0o644), "unsafe path (contains ..)".into()),
        ("/etc/cron.d/evil", Body::File(b"x".to_vec(), 0o644), "entry /etc/cron.d/evil: unsafe path (absolute)".into()),
        ("usr/localx/evil", Body::File(b"x".to_vec(), 0o644), "entry usr/localx/evil is outside the prefix".into()),
        ("usr/local", Body::File(b"x".to_vec(), 0o644), "entry usr/local is outside the prefix".into()),
        ("etc/", Body::Dir(0o755), "entry etc/ is outside the prefix /usr/local".into()),
    ];
    for (path, body, want) in cases {
        // The bad entry comes after a good one, so the good one was already
        // staged (and its directory created) when the bad one is refused.
        let mut entries = spec.entries();
        entries.push(entry(path, body));
        let pkg = spec.write_entries(&area.incoming(), &entries);
        area.assert_refused(&pkg, "evil-1.0", &policy, &want);
    }
}

#[test]
fn symlinks_escaping_the_prefix_are_refused() {
    let area = Area::new();
    let policy = policy_for("hostile/evil");
    for (target, want) in [
        ("/etc/shadow", "symlink to /etc/shadow points outside the prefix /usr/local"),
        ("/distfiles", "symlink to /distfiles points outside"),
        ("../../../etc/shadow", "symlink to ../../../etc/shadow points outside"),
        ("../../../../../../../..", "points outside"),
        ("../lib/../../../etc", "has .. after a name"),
        ("/usr/localx/bin", "points outside"),
    ] {
        let spec = evil().symlink("/usr/local/lib/evil", target);
        let pkg = spec.write(&area.incoming());
        let err = area.assert_refused(&pkg, "evil-1.0", &policy, want);
        assert!(err.contains("entry usr/local/lib/evil"), "{err}");
    }
    // Inside the prefix, absolute or relative, is fine.
    let spec = evil().symlink("/usr/local/lib/a", "/usr/local/bin/evil").symlink("/usr/local/lib/b", "../bin/evil");
    let pkg = spec.write(&area.incoming());
    verify(&pkg, "evil-1.0", &policy).unwrap();
}

#[test]
fn hard_links_devices_and_fifos_are_refused() {
    let area = Area::new();
    let policy = policy_for("hostile/evil");
    let spec = evil().file("/usr/local/lib/x", b"", 0o644);
    for (body, want) in [
        (Body::HardLink("etc/shadow".into()), "entry usr/local/lib/x: is a hard link to etc/shadow; only regular files, directories and symlinks may be packed"),
        (Body::HardLink("/etc/shadow".into()), "is a hard link to /etc/shadow"),
        (Body::Special(EntryType::Char), "entry usr/local/lib/x: is a character device"),
        (Body::Special(EntryType::Block), "entry usr/local/lib/x: is a block device"),
        (Body::Special(EntryType::Fifo), "entry usr/local/lib/x: is a fifo"),
        (Body::Special(EntryType::GNUSparse), "entry usr/local/lib/x: is a sparse file"),
        (Body::Special(EntryType::Continuous), "is a contiguous file"),
        (Body::Special(EntryType::XHeader), "pax extended headers are not supported"),
    ] {
        let mut entries = spec.entries();
        entries.iter_mut().find(|e| e.path == "usr/local/lib/x").unwrap().body = body;
        let pkg = spec.write_entries(&area.incoming(), &entries);
        area.assert_refused(&pkg, "evil-1.0", &policy, want);
    }
}

#[test]
fn setuid_setgid_and_sticky_need_setuid_ports() {
    let area = Area::new();
    let mut policy = policy_for("hostile/suid");
    for (mode, what) in [(0o4755, "setuid (mode 4755)"), (0o2755, "setgid (mode 2755)"), (0o1755, "sticky (mode 1755)")]
    {
        let mut spec = Spec::new("suid", "1.0").file("/usr/local/bin/su", b"\x7fELF", mode);
        spec.origin = "hostile/suid".into();
        let pkg = spec.write(&area.incoming());
        let want = format!("suid-1.0.pkg: usr/local/bin/su is {what}; origin hostile/suid is not in setuid_ports");
        area.assert_refused(&pkg, "suid-1.0", &policy, &want);
    }
    let mut spec = Spec::new("suid", "1.0").file("/usr/local/bin/su", b"\x7fELF", 0o644);
    spec.origin = "hostile/suid".into();
    let mut entries = spec.entries();
    entries.insert(1, entry("usr/local/share/", Body::Dir(0o2775)));
    let pkg = spec.write_entries(&area.incoming(), &entries);
    area.assert_refused(&pkg, "suid-1.0", &policy, "usr/local/share is setgid");

    // Listed in setuid_ports: installed with its mode.
    let mut spec = Spec::new("suid", "1.0").file("/usr/local/bin/su", b"\x7fELF", 0o4755);
    spec.origin = "hostile/suid".into();
    let pkg = spec.write(&area.incoming());
    policy.allow_setuid = true;
    install(&pkg, &area.path("root"), &policy).unwrap();
    let meta = fs::metadata(area.path("root/usr/local/bin/su")).unwrap();
    assert_eq!(meta.permissions().mode() & 0o7777, 0o4755);
}

#[test]
fn setuid_ports_of_the_config_decide() {
    let dir = tempfile::tempdir().unwrap();
    fs::create_dir_all(dir.path().join("ports/Mk")).unwrap();
    fs::write(dir.path().join("ports/Mk/bsd.port.mk"), "").unwrap();
    let text = "ports_dir = \"ports\"\nbuild_base = \"base\"\ntmpfs_size = \"64M\"\npackage_size_limit = \"32M\"\n";
    let mut config = crate::config::parse(text, &dir.path().join("portsynth.toml"), None).unwrap();
    let suid = crate::ports::Origin::parse("hostile/suid").unwrap();
    assert!(!PackagePolicy::for_port(&config, &suid).allow_setuid);
    config.setuid_ports = vec!["hostile/suid".into()];
    let policy = PackagePolicy::for_port(&config, &suid);
    assert!(policy.allow_setuid);
    assert_eq!(policy.prefix, "/usr/local");
    assert_eq!(policy.expected_origin.as_deref(), Some("hostile/suid"));
    assert_eq!((policy.max_file_size, policy.max_expanded_size), (64 << 20, 32 << 20));
    let flavored = crate::ports::Origin::parse("hostile/suid@big").unwrap();
    assert!(PackagePolicy::for_port(&config, &flavored).allow_setuid, "the port's flavors are listed with it");
}

#[test]
fn the_manifest_must_name_the_expected_port_and_flavor() {
    let area = Area::new();
    let pkg = evil().write(&area.incoming());
    area.assert_refused(
        &pkg,
        "evil-1.0",
        &policy_for("misc/good"),
        "evil-1.0.pkg: built by hostile/evil, expected a package of misc/good",
    );
    let mut spec = evil();
    spec.flavor = "big".into();
    let pkg = spec.write(&area.incoming());
    area.assert_refused(
        &pkg,
        "evil-1.0",
        &policy_for("hostile/evil@small"),
        "built by hostile/evil@big, expected a package of hostile/evil@small",
    );
    area.assert_refused(
        &pkg,
        "evil-1.0",
        &policy_for("hostile/evil"),
        "built by hostile/evil@big, expected a package of hostile/evil",
    );
    verify(&pkg, "evil-1.0", &policy_for("hostile/evil@big")).unwrap();
}

#[test]
fn a_decompression_bomb_stops_at_the_limit() {
    let area = Area::new();
    let mut policy = policy_for("hostile/evil");
    policy.max_expanded_size = 4 << 20;
    let manifest = evil().manifest_json(); // lists usr/local/bin/evil
                                           // One entry of 1 GiB of zeros: refused on its declared size.
    let pkg = area.incoming().join("evil-1.0.pkg");
    write_bomb(&pkg, &manifest, "usr/local/bin/evil", 1 << 30, 0);
    assert!(fs::metadata(&pkg).unwrap().len() < 1 << 20, "the bomb is small on disk");
    let started = Instant::now();
    area.assert_refused(&pkg, "evil-1.0", &policy, "evil-1.0.pkg: expands past the package_size_limit of 4M");
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());

    // A small entry, then 1 GiB of zeros after the end of the archive: no
    // header declares it, the meter on the decompressor stops it.
    let bomb = Spec::new("evil", "1.0").file("/usr/local/bin/evil", &[0u8; 16], 0o755);
    let mut manifest = bomb.manifest();
    manifest.origin = "hostile/evil".into();
    let json = serde_json::to_vec(&manifest).unwrap();
    write_bomb(&pkg, &json, "usr/local/bin/evil", 16, 1 << 30);
    let started = Instant::now();
    area.assert_refused(&pkg, "evil-1.0", &policy, "evil-1.0.pkg: expands past the package_size_limit of 4M");
    assert!(started.elapsed() < Duration::from_secs(10), "took {:?}", started.elapsed());
}

#[test]
fn a_package_file_larger_than_tmpfs_size_is_not_read() {
    let area = Area::new();
    let mut policy = policy_for("hostile/evil");
    let pkg = evil().write(&area.incoming());
    policy.max_file_size = fs::metadata(&pkg).unwrap().len() - 1;
    area.assert_refused(&pkg, "evil-1.0", &policy, "is larger than the file size limit (tmpfs_size) of");
}

#[test]
fn a_symlinked_package_file_is_not_followed() {
    let area = Area::new();
    let policy = policy_for("hostile/evil");
    let real = evil().write(area.dir.path());
    let pkg = area.incoming().join("evil-1.0.pkg");
    std::os::unix::fs::symlink(&real, &pkg).unwrap();
    area.assert_refused(&pkg, "evil-1.0", &policy, "evil-1.0.pkg: is a symlink; refusing to follow it");
    let zero = area.incoming().join("zero-1.0.pkg");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    area.assert_refused(&zero, "zero-1.0", &policy, "zero-1.0.pkg: is a symlink");
}

#[test]
fn fifo_and_device_package_files_are_refused_without_blocking() {
    let area = Area::new();
    let policy = policy_for("hostile/evil");
    let fifo = area.incoming().join("fifo-1.0.pkg");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o644)).unwrap();
    area.assert_refused(&fifo, "fifo-1.0", &policy, "fifo-1.0.pkg: is a fifo, not a regular file");
    let err = format!("{:#}", open_untrusted(Path::new("/dev/zero"), 1 << 20, "x", None).unwrap_err());
    assert!(err.contains("/dev/zero: is a device, not a regular file"), "{err}");
    let err = format!("{:#}", open_untrusted(&area.incoming(), 1 << 20, "x", None).unwrap_err());
    assert!(err.contains("is a directory, not a regular file"), "{err}");
}

#[test]
fn copy_untrusted_checks_the_owner_type_and_size_on_the_descriptor() {
    let area = Area::new();
    let src = area.incoming().join("good-1.0.pkg");
    fs::write(&src, vec![7u8; 1000]).unwrap();
    let uid = fs::metadata(&src).unwrap().uid();
    let out = area.path("outbox");
    fs::create_dir(&out).unwrap();

    assert_eq!(copy_untrusted(&src, uid, 1000, "tmpfs_size (1000)", &out.join("good-1.0.pkg")).unwrap(), 1000);
    assert_eq!(fs::read(out.join("good-1.0.pkg")).unwrap(), vec![7u8; 1000]);

    let err = format!("{:#}", copy_untrusted(&src, uid, 999, "tmpfs_size (999)", &out.join("b.pkg")).unwrap_err());
    assert!(err.contains("good-1.0.pkg: 1000 bytes is larger than tmpfs_size (999)"), "{err}");
    let err = format!("{:#}", copy_untrusted(&src, uid + 1, 1000, "x", &out.join("c.pkg")).unwrap_err());
    assert!(err.contains(&format!("is owned by uid {uid}, not by the build user (uid {})", uid + 1)), "{err}");
    let link = area.incoming().join("link-1.0.pkg");
    std::os::unix::fs::symlink("/dev/zero", &link).unwrap();
    let err = format!("{:#}", copy_untrusted(&link, uid, 1000, "x", &out.join("d.pkg")).unwrap_err());
    assert!(err.contains("link-1.0.pkg: is a symlink; refusing to follow it"), "{err}");
    // The destination is never replaced or followed.
    let err = format!("{:#}", copy_untrusted(&src, uid, 1000, "x", &out.join("good-1.0.pkg")).unwrap_err());
    assert!(err.contains("cannot create"), "{err}");
    assert_eq!(listing(&out), ["good-1.0.pkg"]);
}

#[test]
fn gnu_long_names_are_honoured_and_bounded() {
    let area = Area::new();
    let policy = policy_for("hostile/evil");
    let long = format!("/usr/local/share/{}/file", "d".repeat(150));
    let mut spec = evil().file(&long, b"data", 0o644);
    spec.files.retain(|(p, _)| p != "/usr/local/bin/evil");
    let manifest = spec.manifest_json();
    let write = |name: &str, long_record: Option<u64>| -> PathBuf {
        let pkg = area.incoming().join(name);
        let mut builder = tar::Builder::new(Vec::new());
        let mut header = tar::Header::new_gnu();
        header.set_size(manifest.len() as u64);
        header.set_mode(0o644);
        builder.append_data(&mut header, "+MANIFEST", &manifest[..]).unwrap();
        if let Some(size) = long_record {
            let mut record = tar::Header::new_gnu();
            record.as_old_mut().name[..13].copy_from_slice(b"././@LongLink");
            record.set_entry_type(EntryType::GNULongName);
            record.set_size(size);
            record.set_cksum();
            builder.append(&record, std::io::repeat(b'a').take(size)).unwrap();
        }
        let mut header = tar::Header::new_gnu();
        header.set_size(4);
        header.set_mode(0o644);
        builder.append_data(&mut header, long.trim_start_matches('/'), &b"data"[..]).unwrap();
        fs::write(&pkg, zstd::encode_all(&builder.into_inner().unwrap()[..], 3).unwrap()).unwrap();
        pkg
    };
    use std::io::Read as _;
    let good = write("evil-1.0.pkg", None);
    install(&good, &area.path("root"), &policy).unwrap();
    assert_eq!(fs::read(area.path("root").join(long.trim_start_matches('/'))).unwrap(), b"data");
    let pkg = write("huge-1.0.pkg", Some(1 << 20));
    area.assert_refused(&pkg, "evil-1.0", &policy, "huge-1.0.pkg: a long name of 1048576 bytes is longer than 4096");
}
