//! pkgsrc packages written by an attacker: each must be refused by
//! [`deliver`] (nothing reaches the repository) and by [`verify`], with an
//! error naming the package file and the rule it breaks. The well-formed
//! ones (regular files, a symlink, a hard link, a directory, a long name
//! in a pax header) must pass.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tar::EntryType;

use super::package::{deliver, verify};
use super::testpkg::{gzip, Spec};
use crate::repo::testpkg::{entry, names, tar_bytes, Body};
use crate::repo::PackagePolicy;

fn policy_for(origin: &str) -> PackagePolicy {
    PackagePolicy {
        prefix: "/usr/pkg".into(),
        max_file_size: 8 << 20,
        max_expanded_size: 64 << 20,
        allow_setuid: false,
        expected_origin: Some(origin.into()),
    }
}

/// Where packages are written, and a repository `All/` holding one.
struct Area {
    dir: tempfile::TempDir,
}

impl Area {
    fn new() -> Area {
        let area = Area { dir: tempfile::tempdir().unwrap() };
        fs::create_dir_all(area.path("in")).unwrap();
        fs::create_dir_all(area.path("All")).unwrap();
        fs::write(area.path("All/other-1.0.tgz"), b"keep").unwrap();
        area
    }

    fn path(&self, sub: &str) -> PathBuf {
        self.dir.path().join(sub)
    }

    fn incoming(&self) -> PathBuf {
        self.path("in")
    }

    /// `pkg` is refused by deliver and verify under `policy`, each error
    /// naming the file and containing `want`; `All/` is as it was.
    fn assert_refused(&self, pkg: &Path, pkgname: &str, policy: &PackagePolicy, want: &str) -> String {
        let check = |what: &str, err: anyhow::Error| {
            let err = format!("{err:#}");
            assert!(err.contains(&pkg.display().to_string()), "{what}: error does not name {}: {err}", pkg.display());
            assert!(err.contains(want), "{what}: expected {want:?} in: {err}");
            err
        };
        let err = check("deliver", deliver(pkg, pkgname, policy, &self.path("All")).expect_err("deliver must refuse"));
        check("verify", verify(pkg, pkgname, policy).expect_err("verify must refuse"));
        assert_eq!(names(&self.path("All")), ["other-1.0.tgz"], "the repository changed");
        err
    }
}

/// One pax record, `<len> key=value\n`, its length counting itself.
fn pax_record(key: &str, value: &[u8]) -> Vec<u8> {
    let body_len = key.len() + value.len() + 3; // space, '=', '\n'
    let mut len = body_len + 1;
    while len != body_len + len.to_string().len() {
        len = body_len + len.to_string().len();
    }
    let mut record = format!("{len} {key}=").into_bytes();
    record.extend_from_slice(value);
    record.push(b'\n');
    record
}

fn good() -> Spec {
    Spec::new("good-1.0")
        .file("bin/good", b"#!/bin/sh\necho good\n", 0o755)
        .hard_link("bin/good2", "bin/good")
        .symlink("man/man1/good2.1", "good.1")
        .file("man/man1/good.1", b".TH good 1\n", 0o644)
        .dir("share/good", 0o755)
        .symlink("lib/libgood.so", "/usr/pkg/lib/libgood.so.1")
}

#[test]
fn a_well_formed_package_is_verified_and_delivered() {
    let area = Area::new();
    let spec = good();
    let pkg = spec.write(&area.incoming());
    let policy = policy_for("misc/good");
    let metadata = verify(&pkg, "good-1.0", &policy).unwrap();
    assert_eq!(metadata.contents.name, "good-1.0");
    assert_eq!(metadata.build_info("PKGPATH"), Some("misc/good"));
    let placed = deliver(&pkg, "good-1.0", &policy, &area.path("All")).unwrap();
    assert_eq!(placed, area.path("All/good-1.0.tgz"));
    assert_eq!(fs::read(&placed).unwrap(), fs::read(&pkg).unwrap());
    assert_eq!(names(&area.path("All")), ["good-1.0.tgz", "other-1.0.tgz"]);
}

#[test]
fn a_long_name_in_a_pax_header_applies_to_the_next_entry() {
    let area = Area::new();
    let long = format!("share/doc/{}/README", "x".repeat(120));
    let spec = Spec::new("long-1.0").file(&long, b"read me\n", 0o644);
    let mut entries = spec.metadata_entries(&spec.contents());
    entries.push(entry("PaxHeader/README", Body::Pax(pax_record("path", long.as_bytes()))));
    entries.push(entry("share/doc/README", Body::File(b"read me\n".to_vec(), 0o644)));
    let pkg = spec.write_entries(&area.incoming(), &entries);
    verify(&pkg, "long-1.0", &policy_for("misc/long")).unwrap();

    let xattr = pax_record("SCHILY.xattr.security.capability", b"\x01\x00\x00\x02xxxxxxxx");
    let mut entries = spec.metadata_entries(&spec.contents());
    entries.push(entry("PaxHeader/README", Body::Pax(xattr)));
    entries.push(entry("share/doc/README", Body::File(b"read me\n".to_vec(), 0o644)));
    let pkg = spec.write_entries(&area.incoming(), &entries);
    area.assert_refused(
        &pkg,
        "long-1.0",
        &policy_for("misc/long"),
        "pax record SCHILY.xattr.security.capability is not supported",
    );

    let mut entries = spec.metadata_entries(&spec.contents());
    entries.push(entry("PaxHeader/README", Body::Pax(pax_record("size", b"99999"))));
    entries.push(entry("share/doc/README", Body::File(b"read me\n".to_vec(), 0o644)));
    let pkg = spec.write_entries(&area.incoming(), &entries);
    area.assert_refused(&pkg, "long-1.0", &policy_for("misc/long"), "pax size Some(99999) differs from the header's 8");
}

#[test]
fn traversal_and_absolute_paths_are_refused() {
    let area = Area::new();
    let spec = Spec::new("evil-1.0").file("bin/evil", b"x", 0o755);
    let policy = policy_for("misc/evil");
    for (path, want) in [
        ("../../etc/passwd", "entry ../../etc/passwd: unsafe path (contains ..)"),
        ("bin/../../../etc/passwd", "unsafe path (contains ..)"),
        ("/etc/passwd", "entry /etc/passwd: unsafe path (absolute)"),
    ] {
        let mut entries = spec.entries();
        entries.push(entry(path, Body::File(b"root::0:0::/:/bin/sh\n".to_vec(), 0o644)));
        let pkg = spec.write_entries(&area.incoming(), &entries);
        area.assert_refused(&pkg, "evil-1.0", &policy, want);

        let listed = Spec::new("evil-1.0").file(path, b"x", 0o644);
        let pkg = listed.write(&area.incoming());
        area.assert_refused(&pkg, "evil-1.0", &policy, &format!("entry +CONTENTS: line 3: {path}: unsafe path"));
    }
}

#[test]
fn unlisted_missing_twice_and_misordered_files_are_refused() {
    let area = Area::new();
    let spec = Spec::new("evil-1.0").file("bin/a", b"a", 0o755).file("bin/b", b"b", 0o755);
    let policy = policy_for("misc/evil");
    let files = spec.file_entries();
    let metadata = spec.metadata_entries(&spec.contents());
    let cases = [
        (
            vec![files[0].clone(), files[1].clone(), entry("bin/c", Body::File(b"c".to_vec(), 0o755))],
            "entry bin/c: not listed in +CONTENTS",
        ),
        (vec![files[0].clone()], "bin/b is listed in +CONTENTS (line 5) but missing from the archive"),
        (vec![files[0].clone(), files[0].clone(), files[1].clone()], "entry bin/a: appears twice in the archive"),
        (
            vec![files[1].clone(), files[0].clone()],
            "entry bin/b: is out of +CONTENTS order (pkg_add expects bin/a first)",
        ),
        (
            vec![entry("./bin/a", Body::File(b"a".to_vec(), 0o755)), files[1].clone()],
            "entry ./bin/a: not listed in +CONTENTS",
        ),
    ];
    for (tail, want) in cases {
        let entries: Vec<_> = metadata.iter().cloned().chain(tail).collect();
        let pkg = spec.write_entries(&area.incoming(), &entries);
        area.assert_refused(&pkg, "evil-1.0", &policy, want);
    }
}

#[test]
fn a_wrong_md5_is_refused() {
    let area = Area::new();
    let spec = Spec::new("evil-1.0").file("bin/evil", b"what was built", 0o755);
    let mut entries = spec.entries();
    *entries.last_mut().unwrap() = entry("bin/evil", Body::File(b"something else".to_vec(), 0o755));
    let pkg = spec.write_entries(&area.incoming(), &entries);
    area.assert_refused(&pkg, "evil-1.0", &policy_for("misc/evil"), "entry bin/evil: MD5 ");
    let err = format!("{:#}", verify(&pkg, "evil-1.0", &policy_for("misc/evil")).unwrap_err());
    assert!(err.contains("does not match +CONTENTS"), "{err}");
}

#[test]
fn a_foreign_prefix_name_or_origin_is_refused() {
    let area = Area::new();
    let policy = policy_for("misc/evil");
    let mut spec = Spec::new("evil-1.0").file("bin/evil", b"x", 0o755);
    spec.prefix = "/etc".into();
    let pkg = spec.write(&area.incoming());
    area.assert_refused(
        &pkg,
        "evil-1.0",
        &policy,
        "entry +CONTENTS: line 1: @cwd /etc is not the framework's LOCALBASE /usr/pkg",
    );

    let mut spec = Spec::new("evil-1.0").file("bin/evil", b"x", 0o755);
    spec.pkgpath = "misc/other".into();
    let pkg = spec.write(&area.incoming());
    area.assert_refused(
        &pkg,
        "evil-1.0",
        &policy,
        "evil-1.0.tgz: built by PKGPATH misc/other, expected a package of misc/evil",
    );

    let pkg = Spec::new("evil-1.0").write(&area.incoming());
    area.assert_refused(&pkg, "good-1.0", &policy, "evil-1.0.tgz: package is evil-1.0, expected good-1.0");
    area.assert_refused(
        &pkg,
        "evil-1.0",
        &policy_for("misc/evil@py27-evil"),
        "package evil is not the variant py27-evil of misc/evil",
    );
    let variant = Spec { pkgpath: "misc/evil".into(), ..Spec::new("py27-evil-1.0") };
    let pkg = variant.write(&area.incoming());
    verify(&pkg, "py27-evil-1.0", &policy_for("misc/evil@py27-evil")).unwrap();
}

#[test]
fn symlinks_escaping_the_prefix_are_refused() {
    let area = Area::new();
    let policy = policy_for("misc/evil");
    for (target, want) in [
        ("/etc/shadow", "entry lib/x: symlink to /etc/shadow points outside the prefix /usr/pkg"),
        ("../../../etc/shadow", "points outside the prefix"),
        ("sub/../../../../etc", "has .. after a name"),
    ] {
        let spec = Spec::new("evil-1.0").symlink("lib/x", target);
        let pkg = spec.write(&area.incoming());
        area.assert_refused(&pkg, "evil-1.0", &policy, want);
    }
    let spec = Spec::new("evil-1.0").symlink("lib/x", "libx.so.1");
    let mut entries = spec.entries();
    *entries.last_mut().unwrap() = entry("lib/x", Body::Symlink("/etc/shadow".into()));
    let pkg = spec.write_entries(&area.incoming(), &entries);
    area.assert_refused(&pkg, "evil-1.0", &policy, "symlink to /etc/shadow, but +CONTENTS lists Symlink:libx.so.1");
}

#[test]
fn setuid_needs_setuid_ports() {
    let area = Area::new();
    let mut policy = policy_for("misc/evil");
    let spec = Spec::new("evil-1.0").file("bin/su", b"\x7fELF", 0o4755);
    let pkg = spec.write(&area.incoming());
    area.assert_refused(
        &pkg,
        "evil-1.0",
        &policy,
        "entry bin/su: is setuid (mode 4755); origin misc/evil is not in setuid_ports",
    );
    let sgid = Spec::new("evil-1.0").dir("share/games", 0o2775).write(&area.incoming());
    area.assert_refused(&sgid, "evil-1.0", &policy, "entry share/games: is setgid");
    let by_mode = Spec::new("evil-1.0").line("@mode 4755").file("bin/su", b"\x7fELF", 0o755).write(&area.incoming());
    area.assert_refused(&by_mode, "evil-1.0", &policy, "line 3: @mode 4755 sets a setuid, setgid or sticky bit");
    policy.allow_setuid = true;
    verify(&pkg, "evil-1.0", &policy).unwrap();
    verify(&by_mode, "evil-1.0", &policy).unwrap();
}

#[test]
fn hard_links_fifos_and_devices_are_refused() {
    let area = Area::new();
    let policy = policy_for("misc/evil");
    let outside = Spec::new("evil-1.0").file("bin/a", b"a", 0o755);
    let mut entries = outside.entries();
    *entries.last_mut().unwrap() = entry("bin/a", Body::HardLink("../../etc/shadow".into()));
    let pkg = outside.write_entries(&area.incoming(), &entries);
    area.assert_refused(
        &pkg,
        "evil-1.0",
        &policy,
        "entry bin/a: hard link to ../../etc/shadow, which is not an earlier file",
    );

    let later = Spec::new("evil-1.0").hard_link("bin/a", "bin/b").file("bin/b", b"b", 0o755);
    let pkg = later.write(&area.incoming());
    area.assert_refused(&pkg, "evil-1.0", &policy, "hard link to bin/b, which is not an earlier file");

    for (kind, want) in [
        (EntryType::Fifo, "entry bin/a: is a fifo; only regular files, directories, symlinks and hard links"),
        (EntryType::Char, "entry bin/a: is a character device"),
        (EntryType::Block, "entry bin/a: is a block device"),
    ] {
        let mut entries = outside.entries();
        *entries.last_mut().unwrap() = entry("bin/a", Body::Special(kind));
        let pkg = outside.write_entries(&area.incoming(), &entries);
        area.assert_refused(&pkg, "evil-1.0", &policy, want);
    }
}

#[test]
fn contents_must_come_first_and_metadata_in_order() {
    let area = Area::new();
    let policy = policy_for("misc/evil");
    let spec = Spec::new("evil-1.0").file("bin/a", b"a", 0o755);
    let mut entries = spec.entries();
    entries.swap(0, 1);
    let pkg = spec.write_entries(&area.incoming(), &entries);
    area.assert_refused(&pkg, "evil-1.0", &policy, "not a package: first entry is +COMMENT, expected +CONTENTS");

    let mut entries = spec.entries();
    entries.swap(1, 2);
    let pkg = spec.write_entries(&area.incoming(), &entries);
    area.assert_refused(&pkg, "evil-1.0", &policy, "entry +COMMENT: metadata out of order");

    let mut entries = spec.entries();
    entries.insert(2, entry("+REQUIRED_BY", Body::File(b"other-1.0\n".to_vec(), 0o644)));
    let pkg = spec.write_entries(&area.incoming(), &entries);
    area.assert_refused(&pkg, "evil-1.0", &policy, "entry +REQUIRED_BY: pkgviews and pkgdb metadata are not accepted");

    let mut entries = spec.entries();
    entries.remove(2);
    let pkg = spec.write_entries(&area.incoming(), &entries);
    area.assert_refused(&pkg, "evil-1.0", &policy, "not a package: no +DESC");

    let mut entries = spec.entries();
    entries[0] = entry("+CONTENTS", Body::File(vec![b'#'; (super::package::MAX_CONTENTS + 1) as usize], 0o644));
    let pkg = spec.write_entries(&area.incoming(), &entries);
    area.assert_refused(&pkg, "evil-1.0", &policy, "entry +CONTENTS: is larger than 16777216 bytes");
}

#[test]
fn a_gzip_bomb_stops_at_the_expanded_cap() {
    let area = Area::new();
    let mut policy = policy_for("misc/evil");
    policy.max_expanded_size = 4 << 20;
    let spec = Spec::new("evil-1.0").file("bin/a", b"a", 0o755);
    // The declared size alone passes the cap: refused before decompressing it.
    let mut entries = spec.metadata_entries(&spec.contents());
    entries.push(entry("bin/a", Body::File(vec![0; 8 << 20], 0o755)));
    let pkg = spec.write_entries(&area.incoming(), &entries);
    area.assert_refused(&pkg, "evil-1.0", &policy, "evil-1.0.tgz: expands past the package_size_limit of 4M");
    // Zeros after the end of the archive, inside the gzip stream: metered.
    let mut tar = tar_bytes(&spec.entries());
    let start = Instant::now();
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(&tar).unwrap();
    tar.clear();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..256 {
        encoder.write_all(&zeros).unwrap();
    }
    let bomb = area.incoming().join("evil-1.0.tgz");
    fs::write(&bomb, encoder.finish().unwrap()).unwrap();
    assert!(fs::metadata(&bomb).unwrap().len() < 1 << 20, "a bomb: 256 MiB in less than 1 MiB");
    let checked = Instant::now();
    area.assert_refused(&bomb, "evil-1.0", &policy, "expands past the package_size_limit of 4M");
    assert!(
        checked.elapsed() < Duration::from_secs(5),
        "stopped early: {:?} (writing took {:?})",
        checked.elapsed(),
        checked - start
    );
}

#[test]
fn truncated_damaged_or_foreign_files_are_refused() {
    let area = Area::new();
    let policy = policy_for("misc/good");
    let whole = fs::read(good().write(&area.incoming())).unwrap();
    let pkg = area.incoming().join("good-1.0.tgz");
    for cut in [whole.len() / 2, whole.len() - 4] {
        fs::write(&pkg, &whole[..cut]).unwrap();
        area.assert_refused(&pkg, "good-1.0", &policy, "corrupt or truncated package");
    }
    let mut damaged = whole.clone();
    let crc = damaged.len() - 8;
    damaged[crc] ^= 0xff;
    fs::write(&pkg, &damaged).unwrap();
    area.assert_refused(&pkg, "good-1.0", &policy, "corrupt or truncated package");
    let mut trailing = whole.clone();
    trailing.extend_from_slice(b"garbage after the gzip member");
    fs::write(&pkg, &trailing).unwrap();
    area.assert_refused(&pkg, "good-1.0", &policy, "corrupt or truncated package");
    fs::write(&pkg, zstd::encode_all(&tar_bytes(&good().entries())[..], 3).unwrap()).unwrap();
    area.assert_refused(&pkg, "good-1.0", &policy, "not a package: not gzip-compressed");
    fs::write(&pkg, gzip(b"not a tar at all, just some bytes that fill more than nothing")).unwrap();
    area.assert_refused(&pkg, "good-1.0", &policy, "good-1.0.tgz");
}

#[test]
fn a_package_file_larger_than_tmpfs_size_is_not_read() {
    let area = Area::new();
    let mut policy = policy_for("misc/good");
    let pkg = good().write(&area.incoming());
    policy.max_file_size = 100;
    area.assert_refused(&pkg, "good-1.0", &policy, "is larger than the file size limit (tmpfs_size) of 100");
}
