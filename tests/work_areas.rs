//! Measurements and work areas on real sandboxes (as root): the per-phase
//! numbers a build records, a full tmpfs work area retried on disk, the
//! disk work area's size limit and what it leaves behind (no image, no loop
//! device, no mount), also after `kill -9` of portsynth, and the bundled
//! tree built on disk. The fixture port is tests/fixtures/resources.
//! Serialised: the leak checks look at every loop device and mount.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{mounts, Env};
use portsynth::builddb::{BuildDb, BuildRecord, PhaseUsage};
use portsynth::framework::Kind;
use portsynth::ports::Phase;
use portsynth::sandbox::runner::{BuildOutcome, OutcomeStatus};
use portsynth::sandbox::work_area::WorkArea;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The fixture tree with the resource ports; `extra` config, and the
/// writer's parameters as make variables.
fn env(extra: &str, write_mb: u32, hold: u32) -> Env {
    let env = Env::fixtures();
    common::copy_tree(&common::repo().join("tests/fixtures/resources/resource"), &env.ports().join("resource"));
    // No load throttle: a loaded machine must not change the make jobs a build gets.
    env.write_config(&format!(
        "throttle = false\n{extra}\n[make_conf]\nWRITE_MB = \"{write_mb}\"\nHOLD = \"{hold}\"\n"
    ));
    env
}

fn build(env: &Env, port: &str, work_area: WorkArea) -> BuildOutcome {
    common::build_alone(env, port, work_area)
}

fn log_of(path: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
}

/// Runs a portsynth command and asserts it succeeded; returns stdout.
fn run_ok(env: &Env, args: &[&str]) -> String {
    let output = env.run(args);
    assert!(
        output.status.success(),
        "portsynth {args:?}: {}\n{}\nport log:\n{}",
        output.status,
        common::stderr(&output),
        log_of(&env.base().join("logs/resource___writer.log"))
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The newest build of `origin` and its phases, from the database.
fn recorded(env: &Env, origin: &str) -> (BuildRecord, Vec<PhaseUsage>) {
    let db = BuildDb::open_existing(env.base().join("builddb.sqlite")).unwrap().expect("a database");
    let build = db.builds_of_port(origin, 1).unwrap().pop().expect("a build row");
    let phases = db.build_phases(&build.id).unwrap();
    (build, phases)
}

fn phase<'a>(phases: &'a [PhaseUsage], name: &str) -> &'a PhaseUsage {
    phases.iter().find(|p| p.phase == name).unwrap_or_else(|| panic!("no phase {name}: {phases:#?}"))
}

/// Loop devices whose backing file is below `dir`.
fn loops_below(dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy().into_owned();
    std::fs::read_dir("/sys/block")
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("loop"))
        .filter_map(|e| std::fs::read_to_string(e.path().join("loop/backing_file")).ok())
        .filter(|backing| backing.contains(&dir))
        .collect()
}

/// Waits (bounded) until no loop device uses an image below `dir` and the
/// mounts are back to `before`: the kernel releases both as the sandbox's
/// namespace goes.
fn assert_nothing_attached(dir: &Path, before: &BTreeSet<String>) {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (loops, now) = (loops_below(dir), mounts());
        if loops.is_empty() && &now == before {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "left behind: loop devices {loops:?}, mounts {:?}",
            now.symmetric_difference(before).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn images(env: &Env) -> Vec<PathBuf> {
    std::fs::read_dir(env.base().join("work"))
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

#[test]
fn every_phase_is_measured_and_recorded_in_the_database() {
    let _guard = serial();
    let env = env("work_dir = \"tmpfs\"", 40, 2);
    run_ok(&env, &["-y", "build", "resource/writer"]);
    let (build, phases) = recorded(&env, "resource/writer");
    assert_eq!(build.status.as_str(), "success", "{build:?}");
    let names: Vec<&str> = phases.iter().map(|p| p.phase.as_str()).collect();
    let expected: Vec<&str> = Kind::Bundled.framework().phases(false).iter().map(|p| p.name()).collect();
    assert_eq!(names, expected);
    let built = phase(&phases, "build");
    assert!(built.wall_ms >= 2000, "the build phase holds its file 2 s: {built:?}");
    assert!(built.cpu_ms.is_some_and(|c| c > 0), "the loop burns CPU: {built:?}");
    assert!(built.peak_memory.is_some_and(|m| m > 0), "{built:?}");
    assert!(built.peak_work.is_some_and(|w| w >= 40 << 20), "40 MiB sampled in the work area: {built:?}");
    assert_eq!(built.make_jobs, 1);
    assert!(phases.iter().all(|p| p.cpu_ms.is_some() && p.peak_memory.is_some()), "{phases:#?}");
    assert!(phase(&phases, "extract").peak_work.is_some_and(|w| w < 40 << 20), "before the file: {phases:#?}");
    assert!(build.peak_work.is_some_and(|w| w >= 40 << 20), "{build:?}");
    assert_eq!((build.make_jobs, build.work_dir.as_deref(), build.retried_on_disk), (Some(1), Some("tmpfs"), false));
    assert!(build.cpu_ms.is_some_and(|c| c >= built.cpu_ms.unwrap()), "{build:?}");

    let history = run_ok(&env, &["history", "resource/writer"]);
    assert!(history.contains("work area tmpfs, peak"), "{history}");
    let row = history.lines().find(|l| l.trim_start().starts_with("build ") && l.contains("MiB"));
    let row = row.unwrap_or_else(|| panic!("{history}"));
    assert!(row.contains(" s") && row.contains("MiB"), "{row}");
    let json: serde_json::Value =
        serde_json::from_str(&run_ok(&env, &["--json", "history", "resource/writer"])).unwrap();
    assert_eq!(json[0]["phases"].as_array().map(Vec::len), Some(expected.len()), "{json}");
    assert_eq!(json[0]["work_dir"], "tmpfs");

    let samples =
        BuildDb::open_existing(env.base().join("builddb.sqlite")).unwrap().unwrap().resource_history_all(5).unwrap();
    let sample = &samples["resource/writer"][0];
    assert_eq!(sample.build_wall_ms, built.wall_ms);
    assert!(sample.serial_ms > 0 && sample.peak_work >= Some(40 << 20), "{sample:?}");
    let footer = log_of(&build.log_path.unwrap());
    assert!(footer.contains("work area") && footer.contains("Work:     tmpfs"), "{footer}");
}

#[test]
fn a_build_that_fills_its_tmpfs_is_retried_once_on_disk_and_succeeds() {
    let _guard = serial();
    let env = env("tmpfs_size = \"16M\"\ndisk_work_size = \"256M\"", 64, 0);
    let before = mounts();
    run_ok(&env, &["-y", "build", "resource/writer"]);
    let (build, phases) = recorded(&env, "resource/writer");
    assert_eq!(build.status.as_str(), "success", "{build:?}");
    assert_eq!((build.work_dir.as_deref(), build.retried_on_disk), (Some("disk"), true), "{build:?}");
    assert!(phase(&phases, "build").peak_work.is_some_and(|w| w >= 64 << 20), "{phases:#?}");
    let log = log_of(&build.log_path.unwrap());
    let retry = log.find("*** work area full (tmpfs_size 16M): building once more with a disk work area");
    let disk = log.find("Work area: disk, 256M");
    assert!(retry.is_some() && disk > retry, "the retry is announced before it runs:\n{log}");
    assert!(log.contains("No space left on device"), "the first attempt hit the full tmpfs:\n{log}");
    assert!(log.contains("retried on disk: the tmpfs work area was full"), "{log}");
    let successes = std::fs::read_to_string(env.base().join("logs/01_success_list.log")).unwrap();
    assert!(
        successes.contains("resource/writer writer-1.0") && successes.contains("(work area full (tmpfs_size 16M)"),
        "the success list names the retry: {successes}"
    );
    assert!(env.base().join("packages/All/writer-1.0.pkg").is_file());
    assert!(images(&env).is_empty(), "{:?}", images(&env));
    assert_nothing_attached(env.path(), &before);
}

#[test]
fn a_disk_work_area_cannot_grow_past_disk_work_size_and_leaves_nothing() {
    let _guard = serial();
    let env = env("work_dir = \"disk\"\ndisk_work_size = \"32M\"", 64, 0);
    let before = mounts();
    let outcome = build(&env, "resource/writer", WorkArea::Disk);
    let log = log_of(&outcome.log_path);
    assert_eq!((outcome.status, outcome.failed_phase), (OutcomeStatus::Failed, Some(Phase::Build)), "{log}");
    let reason = outcome.reason.clone().unwrap();
    assert!(reason.starts_with("work area full (disk_work_size 32M)"), "{reason}");
    assert!(log.contains("No space left on device"), "{log}");
    assert!(!outcome.retried_on_disk && outcome.work_area == WorkArea::Disk);
    let peak = outcome.peak_work().unwrap();
    assert!(peak > 24 << 20 && peak <= 32 << 20, "filled up to its size, no more: {peak}");
    assert!(images(&env).is_empty(), "the image is removed: {:?}", images(&env));
    assert_nothing_attached(env.path(), &before);
}

#[test]
fn killing_portsynth_mid_build_leaves_no_loop_device_and_cleanup_removes_the_image() {
    let _guard = serial();
    let env = env("work_dir = \"disk\"\ndisk_work_size = \"64M\"", 1, 120);
    let before = mounts();
    let mut child = env.command(&["build-one", "resource/writer"]).stderr(std::process::Stdio::null()).spawn().unwrap();
    let log = env.base().join("logs/resource___writer.log");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !log_of(&log).contains("wrote 1 MiB, holding 120 s") {
        assert!(Instant::now() < deadline, "the build never reached its hold:\n{}", log_of(&log));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(loops_below(env.path()).len(), 1, "the build runs on its loop device");
    child.kill().unwrap();
    child.wait().unwrap();
    assert_nothing_attached(env.path(), &before);
    assert_eq!(images(&env).len(), 1, "the dead run's image stays until cleanup: {:?}", images(&env));
    let output = env.run(&["cleanup"]);
    assert!(output.status.success(), "{}", common::stderr(&output));
    assert!(common::stderr(&output).contains("removed stale disk work area"), "{}", common::stderr(&output));
    assert!(images(&env).is_empty(), "{:?}", images(&env));
}

#[test]
fn work_dir_disk_builds_the_bundled_trees_port() {
    let _guard = serial();
    let env = Env::testdata();
    env.write_config("work_dir = \"disk\"\ndisk_work_size = \"128M\"\n");
    let before = mounts();
    let output = env.run(&["-y", "build", "misc/hello"]);
    assert!(output.status.success(), "{}", common::stderr(&output));
    assert!(env.base().join("packages/All/hello-2.1.pkg").is_file());
    let (build, phases) = recorded(&env, "misc/hello");
    assert_eq!((build.status.as_str(), build.work_dir.as_deref()), ("success", Some("disk")), "{build:?}");
    assert!(phase(&phases, "build").peak_work.is_some_and(|w| w > 0), "{phases:#?}");
    assert!(log_of(&build.log_path.unwrap()).contains("Work area: disk, 128M"));
    assert!(images(&env).is_empty());
    assert_nothing_attached(env.path(), &before);
}
