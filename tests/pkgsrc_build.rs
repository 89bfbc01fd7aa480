//! Bulk builds of real pkgsrc packages: the 2014 tree of `../shared`, its
//! distfiles, the bootstrap kit made by `bootstrap-kit` (`common::pkgsrc`),
//! the kit's own bmake and pkg_add in the build sandboxes.
//!
//! One closure of `../shared/pkgsrc/packages.txt` is built once and then
//! edited: it holds the shared tool dependencies (digest, nbpatch), the
//! chains pkg_rolling-replace → pkg_chk/pkg_tarup and bmake →
//! bootstrap-mk-files (both BOOTSTRAP_PKG), an options user (safecat) and
//! the failing chain metacam → libgetopt → libtool-base, whose distfile
//! is not to be had.

mod common;

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::pkgsrc::{kit, shared, tree};
use serde_json::Value;

/// The bulk: what `everything` means here (`pkgpaths`).
const PKGPATHS: &[&str] =
    &["misc/figlet", "pkgtools/pkg_rolling-replace", "devel/bmake", "mail/safecat", "misc/since", "graphics/metacam"];

/// What the bulk builds: `PKGPATHS` and their dependencies, less the chain
/// that fails.
const BUILT: &[&str] = &[
    "devel/bmake",
    "devel/nbpatch",
    "mail/safecat",
    "misc/figlet",
    "misc/since",
    "pkgtools/bootstrap-mk-files",
    "pkgtools/digest",
    "pkgtools/pkg_chk",
    "pkgtools/pkg_rolling-replace",
    "pkgtools/pkg_tarup",
];

/// A writable tree (hard links to the shared unpacked one: an edit writes
/// a new file and renames it over the link, so the shared tree never
/// changes), a build base and a distfiles directory holding the set's
/// distfiles.
struct Bulk {
    dir: tempfile::TempDir,
}

impl Bulk {
    fn new(extra: &str) -> Bulk {
        let dir = tempfile::Builder::new().prefix("pkgsrc-build").tempdir_in("/var/tmp").unwrap();
        let status = Command::new("cp").arg("-al").arg(tree()).arg(dir.path().join("pkgsrc")).status().unwrap();
        assert!(status.success(), "cp -al of the tree");
        let distfiles = dir.path().join("distfiles");
        std::fs::create_dir(&distfiles).unwrap();
        for entry in std::fs::read_dir(shared().join("distfiles")).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), distfiles.join(entry.file_name())).unwrap();
        }
        let bulk = Bulk { dir };
        bulk.configure(extra);
        bulk
    }

    fn configure(&self, extra: &str) {
        let list = PKGPATHS.iter().map(|p| format!("\"{p}\"")).collect::<Vec<_>>().join(", ");
        let text = format!(
            "ports_dir = \"{}\"\nbuild_base = \"{}\"\ndistfiles_dir = \"{}\"\nbootstrap_kit = \"{}\"\n\
             pkgpaths = [{list}]\nworkers = 2\nthrottle = false\nfetch_upstream = false\n{extra}\n",
            self.tree().display(),
            self.base().display(),
            self.dir.path().join("distfiles").display(),
            kit().display(),
        );
        std::fs::write(self.dir.path().join("portsynth.toml"), text).unwrap();
    }

    fn tree(&self) -> PathBuf {
        self.dir.path().join("pkgsrc")
    }

    fn base(&self) -> PathBuf {
        self.dir.path().join("base")
    }

    fn all(&self) -> PathBuf {
        self.base().join("packages/All")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(common::bin());
        command.arg("--config").arg(self.dir.path().join("portsynth.toml")).args(args).stdin(Stdio::null());
        command
    }

    /// A `--json` build command run to its end: its events.
    fn run(&self, args: &[&str]) -> Run {
        let mut all = vec!["--json", "-y"];
        all.extend_from_slice(args);
        let output = self.command(&all).output().unwrap();
        Run::parse(&output.stdout, &common::stderr(&output), output.status.code())
    }

    fn plan(&self) -> Value {
        let output = self.command(&["--json", "status"]).output().unwrap();
        assert!(output.status.success(), "status: {}", common::stderr(&output));
        serde_json::from_slice(&output.stdout).unwrap()
    }

    /// Replaces a tree file by an edited copy (never writing through the
    /// hard link).
    fn edit(&self, file: &str, append: &str) {
        let path = self.tree().join(file);
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str(append);
        let new = path.with_extension("portsynth-edit");
        std::fs::write(&new, text).unwrap();
        std::fs::rename(&new, &path).unwrap();
    }
}

struct Run {
    events: Vec<Value>,
    stderr: String,
    code: Option<i32>,
}

impl Run {
    fn parse(stdout: &[u8], stderr: &str, code: Option<i32>) -> Run {
        Run { events: common::ndjson(stdout), stderr: stderr.to_string(), code }
    }

    fn describe(&self) -> String {
        let events: Vec<String> = self.events.iter().map(Value::to_string).collect();
        format!("exit {:?}\nevents:\n{}\nstderr:\n{}", self.code, events.join("\n"), self.stderr)
    }

    fn ended(&self, status: &str) -> BTreeSet<String> {
        self.events
            .iter()
            .filter(|e| e["event"] == "build_end" && e["status"] == status)
            .map(|e| e["origin"].as_str().unwrap().to_string())
            .collect()
    }

    fn skipped(&self) -> Vec<(String, String)> {
        self.events
            .iter()
            .filter(|e| e["event"] == "skip")
            .map(|e| (e["origin"].as_str().unwrap().to_string(), e["reason"].as_str().unwrap().to_string()))
            .collect()
    }

    fn build_end(&self, origin: &str) -> &Value {
        self.events
            .iter()
            .find(|e| e["event"] == "build_end" && e["origin"] == origin)
            .unwrap_or_else(|| panic!("no build_end of {origin}\n{}", self.describe()))
    }
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The records of `All/pkg_summary.gz`: PKGNAME → every line of its record.
fn summary(all: &Path) -> Vec<Vec<String>> {
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(all.join("pkg_summary.gz")).unwrap())
        .read_to_string(&mut text)
        .unwrap();
    text.split("\n\n").filter(|r| !r.trim().is_empty()).map(|r| r.lines().map(str::to_string).collect()).collect()
}

fn field<'a>(record: &'a [String], key: &str) -> Vec<&'a str> {
    record.iter().filter_map(|l| l.strip_prefix(key)?.strip_prefix('=')).collect()
}

/// Runs `script` as root in a private mount namespace where `/usr` is an
/// overlay (the host's `/usr` stays as it is) and the kit is unpacked at
/// `/usr/pkg`: a fresh pkgsrc installation, as a user of the repository has.
fn in_fresh_kit(scratch: &Path, script: &str, args: &[&Path]) -> std::process::Output {
    for dir in ["upper", "work"] {
        std::fs::create_dir_all(scratch.join(dir)).unwrap();
    }
    let setup = format!(
        "set -e; mount -t overlay overlay -o lowerdir=/usr,upperdir={u},workdir={w} /usr; \
         tar -xzf \"$KIT\" -C /; {script}",
        u = scratch.join("upper").display(),
        w = scratch.join("work").display(),
    );
    let mut command = Command::new("unshare");
    command.args(["-m", "--propagation", "private", "sh", "-c", &setup, "sh"]).args(args).env("KIT", kit());
    command.stdin(Stdio::null()).output().unwrap()
}

#[test]
fn a_bulk_build_of_real_packages_installs_runs_and_rebuilds_exactly_what_an_edit_reaches() {
    let bulk = Bulk::new("");

    // The bulk: everything of the closure but the failing chain.
    let first = bulk.run(&["everything"]);
    assert_eq!(first.ended("success"), set(BUILT), "\n{}", first.describe());
    assert_eq!(first.ended("failed"), set(&["devel/libtool-base"]), "\n{}", first.describe());
    let failure = first.build_end("devel/libtool-base");
    assert_eq!(failure["phase"], "fetch", "{failure}");
    let log = std::fs::read_to_string(failure["log"].as_str().unwrap()).unwrap();
    assert!(log.contains("libtool-2.4.2.tar.gz"), "the log names the missing distfile:\n{log}");
    let skipped = first.skipped();
    let skipped_origins: BTreeSet<String> = skipped.iter().map(|(o, _)| o.clone()).collect();
    assert_eq!(skipped_origins, set(&["devel/libgetopt", "graphics/metacam"]), "\n{}", first.describe());
    let (_, metacam) = skipped.iter().find(|(o, _)| o == "graphics/metacam").unwrap();
    assert!(
        metacam.contains("devel/libgetopt") && metacam.contains("devel/libtool-base"),
        "the reason holds the chain: {metacam}"
    );

    // The repository: every package, verified, indexed with its dependencies.
    let records = summary(&bulk.all());
    let pkgnames: BTreeSet<&str> = records.iter().flat_map(|r| field(r, "PKGNAME")).collect();
    assert_eq!(pkgnames.len(), BUILT.len(), "{pkgnames:?}");
    for record in &records {
        let file = field(record, "FILE_NAME");
        assert_eq!(file.len(), 1, "{record:?}");
        assert!(bulk.all().join(file[0]).is_file(), "{record:?}");
        assert_eq!(field(record, "PKGPATH").len(), 1, "{record:?}");
    }
    let rolling = records.iter().find(|r| field(r, "PKGPATH") == ["pkgtools/pkg_rolling-replace"]).unwrap();
    let depends = field(rolling, "DEPENDS");
    for dep in ["pkg_chk", "pkg_tarup"] {
        assert!(depends.iter().any(|d| d.starts_with(dep)), "pkg_rolling-replace DEPENDS {dep}: {depends:?}");
    }

    // A user of the repository: pkg_add by name into a fresh kit, and run.
    let scratch = tempfile::tempdir_in("/var/tmp").unwrap();
    let installed = in_fresh_kit(
        scratch.path(),
        "PKG_PATH=\"$1\" /usr/pkg/sbin/pkg_add -K /usr/pkg/pkgdb figlet pkg_rolling-replace; \
         /usr/pkg/bin/figlet portsynth; /usr/pkg/sbin/pkg_info -K /usr/pkg/pkgdb",
        &[&bulk.all()],
    );
    let out = String::from_utf8_lossy(&installed.stdout);
    assert!(installed.status.success(), "{out}\n{}", common::stderr(&installed));
    assert!(out.contains("| '_ \\"), "figlet printed its banner:\n{out}");
    for pkg in ["figlet-2.2.5", "pkg_rolling-replace-", "pkg_chk-", "pkg_tarup-"] {
        assert!(out.contains(pkg), "{pkg} installed (dependencies by pkg_add itself):\n{out}");
    }
    assert!(!Path::new("/usr/pkg").exists(), "the host's /usr is unchanged");

    // No change: nothing builds.
    let again = bulk.run(&["everything"]);
    assert!(again.ended("success").is_empty(), "a no-change rerun builds nothing\n{}", again.describe());

    // A package's Makefile: that package.
    bulk.edit("misc/figlet/Makefile", "\n# edited\n");
    let edited = bulk.run(&["everything"]);
    assert_eq!(edited.ended("success"), set(&["misc/figlet"]), "\n{}", edited.describe());

    // An mk/ file only some packages read: exactly those.
    let readers = bulk.plan()["entries"].as_array().unwrap().iter().filter(|e| e["verdict"] == "up-to-date").count();
    assert!(readers >= BUILT.len(), "everything is up to date before the mk/ edit");
    bulk.edit("mk/bsd.options.mk", "\n# edited\n");
    let options = bulk.run(&["everything"]);
    assert_eq!(options.ended("success"), set(&["mail/safecat"]), "\n{}", options.describe());

    // mk_conf is part of every key: all of it needs building again.
    bulk.configure("mk_conf = \"PKG_DEVELOPER= no\"");
    let plan = bulk.plan();
    let stale: BTreeSet<String> = plan["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["verdict"] == "build")
        .map(|e| e["origin"].as_str().unwrap().to_string())
        .collect();
    assert!(set(BUILT).is_subset(&stale), "mk_conf reaches every package: {plan}");
    let digest = bulk.run(&["build", "pkgtools/digest"]);
    assert_eq!(digest.ended("success"), set(&["pkgtools/digest"]), "\n{}", digest.describe());
}

#[test]
fn a_coordinator_killed_mid_build_leaves_nothing_and_the_next_run_finishes() {
    let bulk = Bulk::new("");
    let mut live = bulk
        .command(&["--json", "-y", "build", "pkgtools/digest"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let log = bulk.base().join("logs/pkgtools___digest.log");
    let deadline = Instant::now() + Duration::from_secs(300);
    while !std::fs::read_to_string(&log).unwrap_or_default().contains("phase: build") {
        assert!(Instant::now() < deadline, "the build phase of digest never started");
        assert!(live.try_wait().unwrap().is_none(), "portsynth ended before the build phase");
        std::thread::sleep(Duration::from_millis(100));
    }
    live.kill().unwrap();
    live.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let helpers = || common::processes_with(&bulk.base().to_string_lossy());
    while !helpers().is_empty() {
        assert!(Instant::now() < deadline, "sandbox processes outlived the coordinator: {:?}", helpers());
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!common::mounts().iter().any(|m| m.contains(&*bulk.base().to_string_lossy())));

    let resumed = bulk.run(&["build", "pkgtools/digest"]);
    assert_eq!(resumed.ended("success"), set(&["pkgtools/digest"]), "\n{}", resumed.describe());
    let history = bulk.command(&["history", "pkgtools/digest"]).output().unwrap();
    let text = String::from_utf8_lossy(&history.stdout);
    assert!(text.contains("interrupted") && text.contains("success"), "history:\n{text}");
}

/// The names in a directory, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = match std::fs::read_dir(dir) {
        Ok(entries) => entries.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => vec![],
    };
    names.sort();
    names
}

#[test]
fn a_hostile_pkgsrc_build_changes_nothing_outside_its_sandbox() {
    let bulk = Bulk::new("");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let fixture = common::repo().join("tests/fixtures/pkgsrc/hostile");
    let dir = bulk.tree().join("misc/portsynth-hostile");
    common::copy_tree(&fixture, &dir);
    let attack = std::fs::read_to_string(fixture.join("files/attack.sh")).unwrap().replace("LISTENER", &port);
    std::fs::write(dir.join("files/attack.sh"), attack).unwrap();
    let distfiles = bulk.dir.path().join("distfiles");
    let (distfiles_before, mounts_before) = (listing(&distfiles), common::mounts());

    let run = bulk.run(&["build", "misc/portsynth-hostile"]);
    let end = run.build_end("misc/portsynth-hostile");
    let log = std::fs::read_to_string(end["log"].as_str().unwrap()).unwrap();
    let attacks: Vec<&str> = log.lines().filter(|l| l.starts_with("ATTACK ")).collect();
    assert_eq!(attacks.len(), 8, "every attack ran:\n{log}");
    assert_eq!(attacks[0], "ATTACK control-work-area: escaped", "the harness reports what works");
    assert!(attacks[1..].iter().all(|a| a.ends_with(": blocked")), "{attacks:#?}");
    assert_eq!(end["status"], "success", "the build itself goes on\n{}", run.describe());

    assert!(!bulk.tree().join("misc/figlet/PWNED").exists() && !tree().join("misc/figlet/PWNED").exists());
    assert_eq!(listing(&distfiles), distfiles_before, "distfiles unchanged");
    assert!(!listing(&bulk.all()).iter().any(|f| f.contains("PWNED")), "repository unchanged");
    assert!(listener.accept().is_err(), "nothing reached the host's loopback listener");
    assert_eq!(common::mounts(), mounts_before, "no mount left on the host");
}
