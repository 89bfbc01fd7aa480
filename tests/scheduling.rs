//! The scheduler allocating the machine in real runs: make jobs from the
//! core budget reach the build's environment and the database, and memory
//! admission against `memory_budget` (a fake machine size) never starts a
//! build whose expectation does not fit, and never deadlocks on one larger
//! than the machine; a port not safe for parallel make gets one job. The
//! fixture ports are tests/fixtures/resources.

mod common;

use common::Env;
use portsynth::builddb::{BuildDb, BuildRecord};

/// The fixture tree with the resource ports and `extra` config.
fn env(extra: &str) -> Env {
    let env = Env::fixtures();
    common::copy_tree(&common::repo().join("tests/fixtures/resources/resource"), &env.ports().join("resource"));
    env.write_config(&format!("throttle = false\n{extra}\n[make_conf]\nNAP = \"2\"\n"));
    env
}

fn run_ok(env: &Env, args: &[&str]) {
    let output = env.run(args);
    assert!(output.status.success(), "portsynth {args:?}: {}\n{}", output.status, common::stderr(&output));
}

fn newest(env: &Env, origin: &str) -> BuildRecord {
    let db = BuildDb::open_existing(env.base().join("builddb.sqlite")).unwrap().expect("a database");
    db.builds_of_port(origin, 1).unwrap().pop().unwrap_or_else(|| panic!("no build of {origin}"))
}

fn log_of(build: &BuildRecord) -> String {
    std::fs::read_to_string(build.log_path.as_ref().expect("a log")).unwrap_or_default()
}

fn overlap(a: &BuildRecord, b: &BuildRecord) -> bool {
    let (a_end, b_end) = (a.ended_ms.unwrap(), b.ended_ms.unwrap());
    a.started_ms < b_end && b.started_ms < a_end
}

#[test]
fn make_jobs_from_the_core_budget_reach_the_build_and_the_database() {
    // One worker, two cores, no history: the fair share is both cores.
    let env = env("workers = 1\njobs = 2");
    run_ok(&env, &["-y", "-q", "build", "resource/nap-a"]);
    let build = newest(&env, "resource/nap-a");
    assert_eq!(build.make_jobs, Some(2), "{build:?}");
    assert!(log_of(&build).contains("make jobs: 2"), "{}", log_of(&build));

    // make_jobs fixes the number whatever the budget.
    env.write_config("workers = 1\njobs = 2\nmake_jobs = 1\n[make_conf]\nNAP = \"0\"\n");
    run_ok(&env, &["-y", "-q", "force", "resource/nap-a"]);
    let build = newest(&env, "resource/nap-a");
    assert_eq!(build.make_jobs, Some(1), "{build:?}");
    assert!(log_of(&build).contains("make jobs: 1"), "{}", log_of(&build));
}

#[test]
fn a_port_not_safe_for_parallel_make_builds_with_one_job() {
    // One worker and two cores: nap-a gets both; nap-serial, MAKE_JOBS_UNSAFE,
    // one, in its make variable and its commands' environment, and the
    // database records one.
    let env = env("");
    env.write_config("throttle = false\nworkers = 1\njobs = 2\n[make_conf]\nNAP = \"0\"\n");
    run_ok(&env, &["-y", "-q", "build", "resource/nap-a", "resource/nap-serial"]);
    let (safe, serial) = (newest(&env, "resource/nap-a"), newest(&env, "resource/nap-serial"));
    assert_eq!((safe.status.as_str(), serial.status.as_str()), ("success", "success"));
    assert_eq!(safe.make_jobs, Some(2), "{safe:?}");
    assert!(log_of(&safe).contains("make jobs: 2"), "{}", log_of(&safe));
    assert_eq!(serial.make_jobs, Some(1), "{serial:?}");
    let log = log_of(&serial);
    assert!(log.contains("make jobs: 1\n") && log.contains("make jobs in the environment: 1\n"), "{log}");

    // A fixed make_jobs is not for it either.
    env.write_config("throttle = false\nworkers = 1\nmake_jobs = 2\n[make_conf]\nNAP = \"0\"\n");
    run_ok(&env, &["-y", "-q", "force", "resource/nap-a", "resource/nap-serial"]);
    let (safe, serial) = (newest(&env, "resource/nap-a"), newest(&env, "resource/nap-serial"));
    assert_eq!((safe.make_jobs, serial.make_jobs), (Some(2), Some(1)), "{safe:?} {serial:?}");

    // build-one gives a port alone the whole budget, this one a single job.
    let output = env.run(&["--json", "build-one", "resource/nap-serial"]);
    assert!(output.status.success(), "build-one: {}", common::stderr(&output));
    let outcome: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let log = std::fs::read_to_string(outcome["log_path"].as_str().expect("a log path")).unwrap();
    assert!(log.contains("make jobs: 1\n") && !log.contains("make jobs: 2"), "{log}");

    // The framework itself holds the port to one job whatever it is passed.
    let query = |port: &str| {
        let out = std::process::Command::new("bmake")
            .current_dir(env.ports().join(port))
            .args(["-m", env.ports().join("Mk").to_str().unwrap(), "-V", "MAKE_JOBS_NUMBER", "-V", "_MAKE_JOBS_SAFE"])
            .env("MAKE_JOBS_NUMBER", "4")
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(query("resource/nap-serial"), "1\nno\n");
    assert_eq!(query("resource/nap-a"), "4\nyes\n");
}

#[test]
fn memory_admission_keeps_within_the_budget_and_never_deadlocks() {
    // Two workers and cores; each port without history expects 1 GiB.
    // A budget of 1G fits one at a time; a budget of 512M fits none, and
    // each still runs, alone.
    for budget in ["1G", "512M"] {
        let env = env(&format!("workers = 2\njobs = 2\nmemory_budget = \"{budget}\""));
        run_ok(&env, &["-y", "-q", "build", "resource/nap-a", "resource/nap-b"]);
        let (a, b) = (newest(&env, "resource/nap-a"), newest(&env, "resource/nap-b"));
        assert_eq!((a.status.as_str(), b.status.as_str()), ("success", "success"));
        assert!(!overlap(&a, &b), "budget {budget}: both ran at once: {a:?} {b:?}");
    }
    // The control: with room for both, they do run at once.
    let env = env("workers = 2\njobs = 2\nmemory_budget = \"3G\"");
    run_ok(&env, &["-y", "-q", "build", "resource/nap-a", "resource/nap-b"]);
    let (a, b) = (newest(&env, "resource/nap-a"), newest(&env, "resource/nap-b"));
    assert!(overlap(&a, &b), "with 3G both should run at once: {a:?} {b:?}");
}

#[test]
fn the_build_phase_is_split_into_serial_time_and_parallel_work() {
    // One CPU-second alone, then one in each of two make jobs: however loaded
    // the machine, the serial part is the one CPU-second and the parallel
    // part the two CPU-seconds of the jobs.
    let env = env("workers = 1\njobs = 2");
    run_ok(&env, &["-y", "-q", "build", "resource/burner"]);
    let build = newest(&env, "resource/burner");
    assert_eq!(build.make_jobs, Some(2), "{build:?}");
    let db = BuildDb::open_existing(env.base().join("builddb.sqlite")).unwrap().expect("a database");
    let phases = db.build_phases(&build.id).unwrap();
    let phase = phases.iter().find(|p| p.phase == "build").expect("a build phase");
    let (serial, parallel) = (phase.serial_ms.expect("sampled"), phase.parallel_cpu_ms.expect("sampled"));
    // A transition misfiles at most one 250 ms interval of two cores.
    assert!((1_400..=2_600).contains(&parallel), "parallel CPU {parallel} ms: {phase:?}");
    assert!((700..=1_800).contains(&serial), "serial {serial} ms: {phase:?}");
    assert!(phase.cpu_ms.is_some_and(|cpu| cpu >= 2_800), "{phase:?}");
    let history = db.resource_history_all(1).unwrap();
    let sample = &history["resource/burner"][0];
    assert_eq!((sample.build_serial_ms, sample.build_parallel_cpu_ms), (Some(serial), Some(parallel)));
}
