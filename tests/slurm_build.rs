//! The Slurm executor on the real testbed (`scripts/slurm-testbed`,
//! docs/SLURM.md): the bundled tree built across the nodes and compared with
//! a local build, a node lost mid-build, Ctrl-C twice, and a coordinator
//! killed with kill -9. Each test holds the testbed's lock for its whole
//! length (`Testbed::acquire`), so they run one after the other whatever the
//! test harness's threads.
//!
//! The coordinator runs on this host with `command_prefix = ["nsenter",
//! "--net=…"]`: its Slurm commands reach slurmctld from the controller's
//! network namespace, the submit host. The nodes share this host's file
//! system, so every path is the same for them (the `[slurm]` path defaults).

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use common::gated::{gated_env, open_gate, TestPort};
use common::slurm::Testbed;
use common::{mounts, processes_with, Env};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;

const NODES: usize = 3;

/// The config lines of a Slurm run on the testbed: `workers` builds
/// submitted at once, one make job each (a node has 2 cores).
fn slurm_config(testbed: &Testbed, workers: usize) -> String {
    slurm_config_with(testbed, workers, 1)
}

fn slurm_config_with(testbed: &Testbed, workers: usize, make_jobs: usize) -> String {
    format!(
        "throttle = false\nworkers = {workers}\njobs = {workers}\nmake_jobs = {make_jobs}\nexecutor = \"slurm\"\n\
         [slurm]\ncommand_prefix = [\"nsenter\", \"--net={}\"]\n",
        testbed.submit_netns.display()
    )
}

/// The bundled tree with its distfiles mirror (scripts/make-distfiles).
fn testdata() -> Env {
    let mirror = common::repo().join("ports-testdata/Mirror");
    assert!(mirror.join("libgreet-1.2.tar.gz").exists(), "{} is missing: run scripts/make-distfiles", mirror.display());
    Env::testdata()
}

/// A coordinator running with `--json`, its stdout and stderr in files.
struct Live {
    child: Child,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Live {
    fn spawn(testbed: &Testbed, env: &Env, name: &str, args: &[&str]) -> Live {
        let stdout = env.path().join(format!("{name}.stdout"));
        let stderr = env.path().join(format!("{name}.stderr"));
        let child = env
            .command(&[&["--json"], args].concat())
            .env("SLURM_CONF", &testbed.conf)
            .stdout(Stdio::from(std::fs::File::create(&stdout).unwrap()))
            .stderr(Stdio::from(std::fs::File::create(&stderr).unwrap()))
            .spawn()
            .unwrap();
        Live { child, stdout, stderr }
    }

    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.id() as i32)
    }

    /// The events printed so far (complete lines only).
    fn events(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.stdout).unwrap_or_default();
        text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }

    fn describe(&self) -> String {
        let stdout = std::fs::read_to_string(&self.stdout).unwrap_or_default();
        let stderr = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        format!("stdout:\n{stdout}\nstderr:\n{stderr}")
    }

    /// Waits until `accept` finds what it wants in the events.
    fn wait_for<T>(&mut self, what: &str, timeout: Duration, accept: impl Fn(&[Value]) -> Option<T>) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(found) = accept(&self.events()) {
                return found;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("portsynth ended ({status}) before {what}\n{}", self.describe());
            }
            assert!(Instant::now() < deadline, "no {what} after {timeout:?}\n{}", self.describe());
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn signal(&self, signal: Signal) {
        kill(self.pid(), signal).unwrap();
    }

    /// Waits for the end; the exit status and the events.
    fn finish(mut self, timeout: Duration) -> (ExitStatus, Vec<Value>, String) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status, self.events(), self.describe());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("portsynth still running after {timeout:?}\n{}", self.describe());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn of<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == kind).collect()
}

/// Origins whose build has reached its `build` phase (where gated ports wait).
fn in_build_phase(events: &[Value]) -> BTreeSet<String> {
    of(events, "build_phase")
        .iter()
        .filter(|e| e["phase"] == "build")
        .map(|e| e["origin"].as_str().unwrap().to_string())
        .collect()
}

fn run_end<'a>(events: &'a [Value], context: &str) -> &'a Value {
    of(events, "run_end").into_iter().next().unwrap_or_else(|| panic!("no run_end\n{context}"))
}

fn build_end<'a>(events: &'a [Value], origin: &str, context: &str) -> &'a Value {
    of(events, "build_end")
        .into_iter()
        .find(|e| e["origin"] == origin)
        .unwrap_or_else(|| panic!("no build_end of {origin}\n{context}"))
}

/// This build base's jobs still queued or running (`squeue` lists the
/// active states unless asked for others), as `(id, node)`.
fn active_jobs(testbed: &Testbed, env: &Env) -> Vec<(u64, String)> {
    let comment = format!("portsynth base={} ", env.base().display());
    testbed
        .run_ok("squeue", &["-h", "-o", "%i|%N|%k"])
        .lines()
        .filter_map(|line| {
            let mut fields = line.splitn(3, '|');
            let (id, node, rest) = (fields.next()?, fields.next()?, fields.next()?);
            rest.starts_with(&comment).then(|| (id.parse().unwrap(), node.to_string()))
        })
        .collect()
}

/// The one job of this build base running on a node.
fn running_job(testbed: &Testbed, env: &Env) -> (u64, String) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let jobs = active_jobs(testbed, env);
        if let [(id, node)] = jobs.as_slice() {
            if !node.is_empty() {
                return (*id, node.clone());
            }
        }
        assert!(Instant::now() < deadline, "not one running job of {}: {jobs:?}", env.base().display());
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Nothing of the run is left on the nodes or the host: no job queued or
/// running, no process naming the scratch directory (slurm-job runners,
/// sandboxes), no mount below it, no slot directory in the (node) build
/// base, an empty outbox directory.
fn assert_nothing_left(testbed: &Testbed, env: &Env) {
    let needle = env.path().to_string_lossy().into_owned();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let jobs = active_jobs(testbed, env);
        let processes = processes_with(&needle);
        let mounts: Vec<String> = mounts().into_iter().filter(|m| m.contains(&needle)).collect();
        let slots = slot_dirs(&env.base());
        let outboxes = dir_names(&env.base().join("slurm-outbox"));
        if jobs.is_empty() && processes.is_empty() && mounts.is_empty() && slots.is_empty() && outboxes.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "left behind: jobs {jobs:?}, processes {processes:?}, mounts {mounts:?}, slots {slots:?}, outboxes {outboxes:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn dir_names(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map_or(vec![], |d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
}

/// `SLnn` and `SLnn.out` below the build base.
fn slot_dirs(base: &Path) -> Vec<String> {
    dir_names(base).into_iter().filter(|n| n.starts_with("SL")).collect()
}

/// Each package file of the repository and its SHA-256.
fn packages(env: &Env) -> BTreeMap<String, String> {
    let all = env.base().join("packages/All");
    dir_names(&all)
        .into_iter()
        .map(|name| {
            let digest = portsynth::repo::fsutil::sha256_file(&all.join(&name)).unwrap();
            (name, digest)
        })
        .collect()
}

/// What the database says of each port, without ids, times and slots:
/// the builds (origin, package, status, phase, reason), the ports'
/// package files, the packages' digests. Not the keys: the makefiles' CRC
/// covers their paths, and the two trees are in two scratch directories.
fn database(env: &Env) -> Vec<String> {
    let conn = rusqlite::Connection::open(env.base().join("builddb.sqlite")).unwrap();
    let queries = [
        "SELECT origin, pkgname, version, status, last_phase, reason FROM builds ORDER BY origin",
        "SELECT origin, pkgname, version, package_file FROM ports ORDER BY origin",
        "SELECT origin, pkgname, version, file, sha256, size FROM packages ORDER BY origin",
    ];
    let mut rows = Vec::new();
    for query in queries {
        let mut statement = conn.prepare(query).unwrap();
        let columns = statement.column_count();
        let found = statement
            .query_map([], |row| {
                let values: Vec<String> =
                    (0..columns).map(|i| format!("{:?}", row.get::<_, rusqlite::types::Value>(i).unwrap())).collect();
                Ok(values.join("|"))
            })
            .unwrap();
        rows.extend(found.map(Result::unwrap));
    }
    rows
}

/// The Slurm job ids the coordinator wrote into the per-port logs
/// (`Slurm:    job N: …`).
fn job_ids_in_logs(env: &Env) -> BTreeMap<String, u64> {
    let logs = env.base().join("logs");
    let mut jobs = BTreeMap::new();
    for name in dir_names(&logs).into_iter().filter(|n| n.ends_with(".log") && n.contains("___")) {
        let text = std::fs::read_to_string(logs.join(&name)).unwrap();
        let id = text.lines().rev().find_map(|l| {
            let rest = l.strip_prefix("Slurm:    job ")?;
            rest.split(':').next()?.parse::<u64>().ok()
        });
        let id = id.unwrap_or_else(|| panic!("no Slurm job in log {name}"));
        jobs.insert(name, id);
    }
    jobs
}

#[test]
fn bundled_tree_built_across_the_nodes_matches_a_local_build() {
    let testbed = Testbed::acquire(NODES);
    let slurm = testdata();
    slurm.write_config(&slurm_config(&testbed, 4));
    let output = slurm.command(&["--json", "-y", "everything"]).env("SLURM_CONF", &testbed.conf).output().unwrap();
    assert!(output.status.success(), "the Slurm run failed: {}", common::dump(&output));
    let end = common::run_end(&output);
    assert_eq!(end["counts"]["built"], 16, "{end}");
    assert_eq!(end["counts"]["failed"], 0, "{end}");

    let local = testdata();
    local.write_config("throttle = false\n");
    local.run_ok(&["-y", "everything"]);

    let built = packages(&slurm);
    assert_eq!(built.len(), 16, "{built:?}");
    assert_eq!(built, packages(&local), "the repository: file names and digests");
    assert_eq!(database(&slurm), database(&local), "the database's rows of every port");

    let jobs = job_ids_in_logs(&slurm);
    assert_eq!(jobs.len(), 16, "one job per build: {jobs:?}");
    let mut nodes = BTreeSet::new();
    for (log, job) in &jobs {
        let record = testbed.sacct(*job, Duration::from_secs(30));
        assert_eq!(record["State"], "COMPLETED", "job {job} of {log}: {record:?}");
        nodes.insert(record["NodeList"].clone());
    }
    assert!(nodes.len() >= 2, "the builds ran on {nodes:?} only");
    assert_nothing_left(&testbed, &slurm);
}

/// A run of one gated port (`slurm_extra` appended to the `[slurm]` table)
/// whose job's node is killed while the build waits at its gate: the
/// tree, the coordinator, the job and the lost node.
fn lose_the_node_of_a_gated_build(testbed: &Testbed, tag: &str, slurm_extra: &str) -> (Env, Live, u64, String) {
    let env = gated_env(tag, &[TestPort { name: "gated-1", deps: &[], gated: true }]);
    env.write_config(&format!("{}{slurm_extra}", slurm_config(testbed, 2)));
    let mut live = Live::spawn(testbed, &env, "run", &["-y", "everything"]);
    live.wait_for("the build at its gate", Duration::from_secs(60), |events| {
        (!in_build_phase(events).is_empty()).then_some(())
    });
    let (job, lost) = running_job(testbed, &env);
    testbed.kill_node(&lost);
    (env, live, job, lost)
}

#[test]
fn a_node_lost_mid_build_is_requeued_and_the_build_finishes_on_another_node() {
    let testbed = Testbed::acquire(NODES);
    let tag = "slurm-node-lost";
    let (env, live, job, lost) = lose_the_node_of_a_gated_build(&testbed, tag, "");
    open_gate(&env, tag);
    let (status, events, context) = live.finish(Duration::from_secs(180));
    testbed.start_node(&lost);

    assert!(status.success(), "{context}");
    let end = build_end(&events, "misc/gated-1", &context);
    assert_eq!(end["status"], "success", "{context}");
    let reason = end["reason"].as_str().unwrap_or_default();
    assert!(reason.contains(&format!("lost its node {lost}")) && reason.contains("requeued"), "{end}");
    let success_list = std::fs::read_to_string(env.base().join("logs/01_success_list.log")).unwrap();
    assert!(success_list.contains("requeued"), "the summary log shows the retry: {success_list}");
    let conn = rusqlite::Connection::open(env.base().join("builddb.sqlite")).unwrap();
    let (status, stored): (String, Option<String>) = conn
        .query_row("SELECT status, reason FROM builds WHERE origin = 'misc/gated-1'", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(status, "success");
    assert!(stored.as_deref().is_some_and(|r| r.contains("requeued")), "the database records the retry: {stored:?}");

    let runs = testbed.runs_ending(job, "COMPLETED", Duration::from_secs(30));
    assert!(runs.len() >= 2, "one run on the lost node, one elsewhere: {runs:?}");
    assert_eq!((runs[0]["State"].as_str(), runs[0]["NodeList"].as_str()), ("NODE_FAIL", lost.as_str()), "{runs:?}");
    let last = runs.last().unwrap();
    assert_ne!(last["NodeList"], lost, "{runs:?}");
    let log = std::fs::read_to_string(env.base().join("logs/misc___gated-1.log")).unwrap();
    assert!(log.contains(&format!("NODE_FAIL on {lost}, ")), "the log's Slurm section has both runs: {log}");
    assert!(env.base().join("packages/All/gated-1-1.0.pkg").is_file());
    assert_nothing_left(&testbed, &env);
}

/// A cluster that does not requeue (here `--no-requeue`; `JobRequeue=0` or a
/// requeue limit do the same): the job ends NODE_FAIL with its node, and the
/// executor submits the build again as a new job, which finishes elsewhere.
#[test]
fn a_node_lost_without_a_requeue_is_resubmitted_and_finishes_elsewhere() {
    let testbed = Testbed::acquire(NODES);
    let tag = "slurm-no-requeue";
    let (env, live, job, lost) = lose_the_node_of_a_gated_build(&testbed, tag, "sbatch_args = [\"--no-requeue\"]\n");
    let failed = testbed.runs_ending(job, "NODE_FAIL", Duration::from_secs(120));
    assert_eq!(failed.len(), 1, "Slurm ran the job once and did not requeue it: {failed:?}");
    open_gate(&env, tag);
    let (status, events, context) = live.finish(Duration::from_secs(180));
    testbed.start_node(&lost);

    assert!(status.success(), "{context}");
    let end = build_end(&events, "misc/gated-1", &context);
    assert_eq!(end["status"], "success", "{context}");
    let reason = end["reason"].as_str().unwrap_or_default();
    let resubmitted = format!("job {job} ended NODE_FAIL on {lost} and Slurm did not requeue it; resubmitted as job ");
    assert!(reason.contains(&resubmitted), "{end}");
    let next: u64 = reason[reason.find(&resubmitted).unwrap() + resubmitted.len()..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|id| id.parse().ok())
        .unwrap_or_else(|| panic!("the new job's id in {reason}"));
    let runs = testbed.runs_ending(next, "COMPLETED", Duration::from_secs(30));
    assert_ne!(runs.last().unwrap()["NodeList"], lost, "{runs:?}");
    assert!(env.base().join("packages/All/gated-1-1.0.pkg").is_file());
    assert_nothing_left(&testbed, &env);
}

#[test]
fn ctrl_c_twice_cancels_the_jobs_and_leaves_nothing_on_the_nodes() {
    let testbed = Testbed::acquire(NODES);
    let tag = "slurm-ctrl-c";
    let ports: Vec<TestPort> =
        ["gated-1", "gated-2", "gated-3"].iter().map(|name| TestPort { name, deps: &[], gated: true }).collect();
    let env = gated_env(tag, &ports);
    env.write_config(&slurm_config(&testbed, 3));
    let mut live = Live::spawn(&testbed, &env, "run", &["-y", "everything"]);
    let waiting = live.wait_for("three builds at their gates", Duration::from_secs(90), |events| {
        let waiting = in_build_phase(events);
        (waiting.len() == 3).then_some(waiting)
    });
    live.signal(Signal::SIGINT);
    live.wait_for("the notice of the first Ctrl-C", Duration::from_secs(10), |events| {
        (!of(events, "notice").is_empty()).then_some(())
    });
    assert_eq!(active_jobs(&testbed, &env).len(), 3, "one Ctrl-C cancels nothing");
    live.signal(Signal::SIGINT);
    let (status, events, context) = live.finish(Duration::from_secs(90));

    assert_eq!(status.code(), Some(3), "{context}");
    for origin in &waiting {
        assert_eq!(build_end(&events, origin, &context)["status"], "interrupted", "{context}");
    }
    assert_eq!(run_end(&events, &context)["status"], "interrupted", "{context}");
    assert_nothing_left(&testbed, &env);
}

#[test]
fn the_run_after_a_kill_9_cancels_the_jobs_the_killed_coordinator_left() {
    let testbed = Testbed::acquire(NODES);
    let tag = "slurm-kill-9";
    let env = gated_env(tag, &[TestPort { name: "gated-1", deps: &[], gated: true }]);
    // 3 make jobs: more than a node's 2 cores, so the job asks for a whole node.
    env.write_config(&slurm_config_with(&testbed, 2, 3));
    let mut first = Live::spawn(&testbed, &env, "first", &["-y", "everything"]);
    first.wait_for("the build at its gate", Duration::from_secs(60), |events| {
        (!in_build_phase(events).is_empty()).then_some(())
    });
    let (orphan, _) = running_job(&testbed, &env);
    first.signal(Signal::SIGKILL);
    first.finish(Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        active_jobs(&testbed, &env).iter().map(|j| j.0).collect::<Vec<_>>(),
        [orphan],
        "the job outlives its coordinator"
    );

    let mut second = Live::spawn(&testbed, &env, "second", &["-y", "everything"]);
    let notice = second.wait_for("the orphan's cancel", Duration::from_secs(60), |events| {
        of(events, "notice")
            .into_iter()
            .find(|n| n["message"].as_str().is_some_and(|m| m.contains(&format!("cancelled job {orphan} "))))
            .cloned()
    });
    assert!(!active_jobs(&testbed, &env).iter().any(|j| j.0 == orphan), "{notice}");
    let record = testbed.sacct(orphan, Duration::from_secs(30));
    assert!(record["State"].starts_with("CANCELLED"), "{record:?} {notice}");
    open_gate(&env, tag);
    let (status, events, context) = second.finish(Duration::from_secs(120));
    assert!(status.success(), "{context}");
    let end = build_end(&events, "misc/gated-1", &context);
    assert_eq!(end["status"], "success", "{context}");
    assert_eq!(end["make_jobs"], 2, "3 make jobs fitted to the largest node's 2 CPUs: {end}");
    assert_nothing_left(&testbed, &env);
}
