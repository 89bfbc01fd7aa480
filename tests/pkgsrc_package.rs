//! pkgsrc's package format against the real tools: packages built by the
//! host-prefix testbed's `bmake package` (scripts/pkgsrc-testbed; cached in
//! its PACKAGES directory, built under a lock the first time, about 80 s)
//! and packages written by its `pkg_create`, checked by our verifier and
//! indexed by our `pkg_summary`, which must be byte for byte what the
//! testbed's `pkg_info -X` prints.

mod common;

use std::collections::HashMap;
use std::io::Read;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::repo;
use portsynth::framework::pkgsrc::package::{self, Tgz};
use portsynth::framework::pkgsrc::summary::{record_of, PKG_SUMMARY_GZ, PKG_SUMMARY_ZST};
use portsynth::repo::index::{RecordedDigests, SHA256SUMS};
use portsynth::repo::{PackageFormat, PackagePolicy};

/// Small real packages of ../shared/pkgsrc/packages.txt: `(pkgpath, PKGNAME)`.
/// rzip has a hard link (bin/rzip → bin/runzip) and a symlink;
/// pkg_rolling-replace DEPENDS on pkg_chk and pkg_tarup.
const PACKAGES: &[(&str, &str)] = &[
    ("pkgtools/digest", "digest-20121220"),
    ("archivers/rzip", "rzip-2.1"),
    ("misc/figlet", "figlet-2.2.5"),
    ("pkgtools/pkg_chk", "pkg_chk-2.0.6"),
    ("pkgtools/pkg_tarup", "pkg_tarup-1.9.1"),
    ("pkgtools/pkg_rolling-replace", "pkg_rolling-replace-0.24.1"),
];

/// The testbed's `TESTBED`, `PKGSRC` and `PREFIX`.
struct Testbed {
    dir: PathBuf,
    pkgsrc: PathBuf,
    prefix: PathBuf,
}

impl Testbed {
    fn setup() -> Testbed {
        let out = Command::new(repo().join("scripts/pkgsrc-testbed")).arg("setup").output().unwrap();
        assert!(out.status.success(), "pkgsrc-testbed setup:\n{}", String::from_utf8_lossy(&out.stderr));
        let vars: HashMap<String, String> = String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())))
            .collect();
        let var = |name: &str| PathBuf::from(vars.get(name).unwrap_or_else(|| panic!("no {name}= in {vars:?}")));
        Testbed { dir: var("TESTBED"), pkgsrc: var("PKGSRC"), prefix: var("PREFIX") }
    }

    fn all(&self) -> PathBuf {
        self.dir.join("packages/All")
    }

    fn tool(&self, name: &str) -> Command {
        let mut command = Command::new(self.prefix.join("sbin").join(name));
        command.stdin(Stdio::null());
        command
    }

    /// The package files of [`PACKAGES`], built with `bmake package` where
    /// missing (under a lock, so concurrent tests build each once).
    fn packages(&self) -> Vec<(PathBuf, &'static str, &'static str)> {
        let lock = std::fs::File::create(self.dir.join("portsynth-packages.lock")).unwrap();
        let _lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).map_err(|_| "lock").unwrap();
        let path =
            format!("{}:{}:{}", self.prefix.join("bin").display(), self.prefix.join("sbin").display(), env("PATH"));
        PACKAGES
            .iter()
            .map(|&(pkgpath, pkgname)| {
                let file = self.all().join(format!("{pkgname}.tgz"));
                if !file.is_file() {
                    let log = self.dir.join(format!("portsynth-{}.log", pkgpath.replace('/', "_")));
                    let status = Command::new(self.prefix.join("bin/bmake"))
                        .arg("package")
                        .current_dir(self.pkgsrc.join(pkgpath))
                        .env("PATH", &path)
                        .stdin(Stdio::null())
                        .stdout(std::fs::File::create(&log).unwrap())
                        .stderr(Stdio::from(std::fs::File::options().append(true).open(&log).unwrap()))
                        .status()
                        .unwrap();
                    assert!(
                        status.success() && file.is_file(),
                        "bmake package in {pkgpath} failed, see {}",
                        log.display()
                    );
                }
                (file, pkgpath, pkgname)
            })
            .collect()
    }

    /// `pkg_info -X files...`, as the testbed's pkg_info prints it.
    fn pkg_info_x(&self, files: &[&Path]) -> Vec<u8> {
        let out = self.tool("pkg_info").arg("-X").args(files).output().unwrap();
        assert!(out.status.success(), "pkg_info -X: {}", String::from_utf8_lossy(&out.stderr));
        assert!(out.stderr.is_empty(), "pkg_info -X warned: {}", String::from_utf8_lossy(&out.stderr));
        out.stdout
    }

    fn policy(&self, origin: &str) -> PackagePolicy {
        PackagePolicy {
            prefix: self.prefix.display().to_string(),
            max_file_size: 64 << 20,
            max_expanded_size: 256 << 20,
            allow_setuid: false,
            expected_origin: Some(origin.to_string()),
        }
    }
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_default()
}

#[test]
fn real_packages_verify_and_their_records_are_what_pkg_info_x_prints() {
    let testbed = Testbed::setup();
    let all = tempfile::tempdir().unwrap();
    for (file, pkgpath, pkgname) in testbed.packages() {
        let policy = testbed.policy(pkgpath);
        let metadata = package::verify(&file, pkgname, &policy).unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(metadata.contents.name, pkgname);
        let placed = Tgz.deliver(&file, pkgname, &policy, all.path()).unwrap();
        assert_eq!(std::fs::read(&placed).unwrap(), std::fs::read(&file).unwrap(), "{pkgname}: delivered as built");

        let ours = record_of(&file).unwrap();
        let theirs = testbed.pkg_info_x(&[&file]);
        assert_eq!(String::from_utf8_lossy(&ours), String::from_utf8_lossy(&theirs), "{pkgname}");

        let other = testbed.policy("misc/other");
        let err = format!("{:#}", Tgz.verify(&file, pkgname, &other).unwrap_err());
        assert!(err.contains(&format!("built by PKGPATH {pkgpath}, expected a package of misc/other")), "{err}");
    }
    let rzip = testbed.all().join("rzip-2.1.tgz");
    let listed = package::read_metadata(&rzip).unwrap();
    let kinds: Vec<String> =
        listed.contents.files.iter().map(|f| format!("{} {}", f.path, f.kind.describe())).collect();
    assert!(kinds.contains(&"man/man1/runzip.1 a symlink".to_string()), "{kinds:?}");
}

#[test]
fn the_repository_index_is_pkg_info_x_of_every_package() {
    let testbed = Testbed::setup();
    let packages = tempfile::tempdir().unwrap();
    let all = packages.path().join("All");
    std::fs::create_dir(&all).unwrap();
    let mut files = Vec::new();
    for (file, _, _) in testbed.packages() {
        let copy = all.join(file.file_name().unwrap());
        std::fs::copy(&file, &copy).unwrap();
        files.push(copy);
    }
    files.sort();

    let summary = Tgz.rebuild_index(packages.path(), &RecordedDigests::new()).unwrap();
    assert_eq!((summary.packages, summary.unreadable.len()), (PACKAGES.len(), 0), "{:?}", summary.unreadable);
    let theirs = testbed.pkg_info_x(&files.iter().map(PathBuf::as_path).collect::<Vec<_>>());
    let text = String::from_utf8_lossy(&theirs);
    assert!(
        text.contains("PKGNAME=pkg_rolling-replace-0.24.1\nDEPENDS=pkg_chk>=1.76\nDEPENDS=pkg_tarup>=1.6.6\n"),
        "{text}"
    );
    assert!(text.contains("FILE_NAME=digest-20121220.tgz\n"), "{text}");

    let mut gunzipped = Vec::new();
    let gz = std::fs::read(all.join(PKG_SUMMARY_GZ)).unwrap();
    flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut gunzipped).unwrap();
    assert_eq!(String::from_utf8_lossy(&gunzipped), text);
    let zst = zstd::decode_all(&std::fs::read(all.join(PKG_SUMMARY_ZST)).unwrap()[..]).unwrap();
    assert_eq!(zst, theirs);
    let sums = std::fs::read_to_string(packages.path().join(SHA256SUMS)).unwrap();
    assert_eq!(sums.lines().count(), PACKAGES.len(), "{sums}");
    let check = Command::new("sha256sum")
        .arg("-c")
        .arg("--quiet")
        .arg(SHA256SUMS)
        .current_dir(packages.path())
        .output()
        .unwrap();
    assert!(check.status.success(), "sha256sum -c: {}", String::from_utf8_lossy(&check.stdout));
}

/// A staging directory of files for `pkg_create -p`, its packing list and
/// metadata, under `dir`.
fn stage_crafted(dir: &Path) -> PathBuf {
    let stage = dir.join("stage");
    // A file name longer than a ustar name field (100): pkg_create writes a pax header.
    let long_name = format!("share/doc/{}.txt", "a-file-name-longer-than-a-tar-name-field-".repeat(3));
    for sub in ["bin", "lib", "share/doc"] {
        std::fs::create_dir_all(stage.join(sub)).unwrap();
    }
    std::fs::write(stage.join("bin/crafted"), "#!/bin/sh\necho crafted\n").unwrap();
    std::fs::hard_link(stage.join("bin/crafted"), stage.join("bin/crafted-too")).unwrap();
    std::fs::write(stage.join("lib/libcrafted.so.1"), "\x7fELF not really\n").unwrap();
    symlink("libcrafted.so.1", stage.join("lib/libcrafted.so")).unwrap();
    std::fs::write(stage.join(&long_name), "a file whose path needs a pax header\n").unwrap();
    let plist = format!(
        "@comment $NetBSD$\nbin/crafted\nbin/crafted-too\nlib/libcrafted.so\nlib/libcrafted.so.1\n{long_name}\n"
    );
    std::fs::write(dir.join("PLIST"), plist).unwrap();
    std::fs::write(dir.join("INSTALL"), "#!/bin/sh\necho installing $1 $2\n").unwrap();
    std::fs::write(dir.join("MESSAGE"), "Thank you for installing crafted.\n").unwrap();
    std::fs::write(dir.join("SIZE_PKG"), "123\n").unwrap();
    std::fs::write(
        dir.join("BUILD_INFO"),
        "BUILD_DATE=2026-12-01 12:00:00 +0000\nCATEGORIES=misc devel\nHOMEPAGE= http://example.org/\n\
         LICENSE=modified-bsd\nMACHINE_ARCH=x86_64\nOPSYS=Linux\nOS_VERSION=6.1\nPKGPATH=misc/crafted\n\
         PKGTOOLS_VERSION=20091115\nREQUIRES=/lib/libc.so.6\nPROVIDES=/usr/pkg/lib/libcrafted.so.1\n",
    )
    .unwrap();
    stage
}

fn pkg_create(testbed: &Testbed, dir: &Path, stage: &Path, name: &str) -> PathBuf {
    let file = dir.join(format!("{name}.tgz"));
    let out = testbed
        .tool("pkg_create")
        .args(["-c", "-A package pkg_create wrote", "-d", "-Line one.\n\nLine three.\n"])
        .arg("-f")
        .arg(dir.join("PLIST"))
        .arg("-p")
        .arg(stage)
        .arg("-I")
        .arg(&testbed.prefix)
        .arg("-B")
        .arg(dir.join("BUILD_INFO"))
        .arg("-i")
        .arg(dir.join("INSTALL"))
        .arg("-D")
        .arg(dir.join("MESSAGE"))
        .arg("-s")
        .arg(dir.join("SIZE_PKG"))
        .args(["-P", "digest>=20010302 figlet-[0-9]*", "-C", "crafted-old-[0-9]*"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(out.status.success() && file.is_file(), "pkg_create: {}", String::from_utf8_lossy(&out.stderr));
    file
}

#[test]
fn a_package_pkg_create_writes_with_a_hard_link_a_symlink_a_long_name_and_scripts() {
    let testbed = Testbed::setup();
    let dir = tempfile::tempdir().unwrap();
    let stage = stage_crafted(dir.path());
    let file = pkg_create(&testbed, dir.path(), &stage, "crafted-1.0");
    let mut tar = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&file).unwrap()).read_to_end(&mut tar).unwrap();
    let has = |needle: &[u8]| tar.windows(needle.len()).any(|w| w == needle);
    assert!(has(b" path=share/doc/a-file-name") && has(b" SCHILY.nlink="), "pkg_create wrote no pax header");

    let metadata =
        package::verify(&file, "crafted-1.0", &testbed.policy("misc/crafted")).unwrap_or_else(|e| panic!("{e:#}"));
    assert!(metadata.file("+INSTALL").is_some() && metadata.file("+DISPLAY").is_some(), "{:?}", metadata.files.keys());
    let ours = record_of(&file).unwrap();
    let theirs = testbed.pkg_info_x(&[&file]);
    assert_eq!(String::from_utf8_lossy(&ours), String::from_utf8_lossy(&theirs));
    assert!(String::from_utf8_lossy(&theirs).contains("DEPENDS=figlet-[0-9]*\nCONFLICTS=crafted-old-[0-9]*\n"));

    // What pkg_create packs, but a builder must not deliver.
    symlink("/etc/shadow", stage.join("lib/libcrafted.so.2")).unwrap();
    let plist = std::fs::read_to_string(dir.path().join("PLIST")).unwrap() + "lib/libcrafted.so.2\n";
    std::fs::write(dir.path().join("PLIST"), plist).unwrap();
    let escaping = pkg_create(&testbed, dir.path(), &stage, "crafted-1.1");
    let err = format!("{:#}", package::verify(&escaping, "crafted-1.1", &testbed.policy("misc/crafted")).unwrap_err());
    assert!(
        err.contains("crafted-1.1.tgz: entry lib/libcrafted.so.2: symlink to /etc/shadow points outside the prefix"),
        "{err}"
    );
}
