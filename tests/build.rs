//! The build commands end to end (issue 5): real scans, real sandboxes, real
//! builds, the real build database and repository, as root. Every run uses
//! `--json` and the tests read the NDJSON event stream, the database rows
//! (directly, with rusqlite) and the files under the build base.
//!
//! No timing assertions: orders are checked on the recorded start/end times,
//! and waits are bounded polls of the event stream or the database that
//! panic with what they saw. Ports that must still be running when a test
//! signals portsynth wait for a gate file (`ports/.gate-TAG/open`, outside
//! every port directory, so it changes no build key) that the test creates
//! when it wants them to finish.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{gated_env, open_gate, processes_with, Env, TestPort};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use sha2::{Digest, Sha256};

/// Longest any single portsynth run of this file may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(240);
/// Longest wait for an event or a database state during a run.
const WAIT: Duration = Duration::from_secs(90);

// ---------------------------------------------------------------------------
// Running portsynth: NDJSON events, exit code, stderr
// ---------------------------------------------------------------------------

/// A portsynth process started by a test; its stdout is read line by line
/// by a thread. Killed (SIGKILL) if the test panics while it runs.
struct Live {
    child: Option<Child>,
    args: Vec<String>,
    events: Arc<Mutex<Vec<Value>>>,
    bad_lines: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

/// A finished run.
struct Finished {
    args: Vec<String>,
    code: Option<i32>,
    events: Vec<Value>,
    stderr: String,
}

fn spawn(env: &Env, args: &[&str]) -> Live {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let mut child = env
        .command(&all)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start portsynth");
    let events = Arc::new(Mutex::new(Vec::new()));
    let bad_lines = Arc::new(Mutex::new(Vec::new()));
    let stderr = Arc::new(Mutex::new(String::new()));
    let stdout = child.stdout.take().unwrap();
    let out_reader = {
        let (events, bad_lines) = (events.clone(), bad_lines.clone());
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                match serde_json::from_str::<Value>(&line) {
                    Ok(value) if value.get("event").and_then(Value::as_str).is_some() => {
                        events.lock().unwrap().push(value)
                    }
                    _ => bad_lines.lock().unwrap().push(line),
                }
            }
        })
    };
    let mut child_stderr = child.stderr.take().unwrap();
    let err_reader = {
        let stderr = stderr.clone();
        std::thread::spawn(move || {
            let mut buffer = [0u8; 4096];
            loop {
                match child_stderr.read(&mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => stderr.lock().unwrap().push_str(&String::from_utf8_lossy(&buffer[..n])),
                }
            }
        })
    };
    Live {
        child: Some(child),
        args: all.iter().map(|s| s.to_string()).collect(),
        events,
        bad_lines,
        stderr,
        readers: vec![out_reader, err_reader],
    }
}

impl Live {
    fn pid(&self) -> Pid {
        Pid::from_raw(self.child.as_ref().unwrap().id() as i32)
    }

    fn events(&self) -> Vec<Value> {
        self.events.lock().unwrap().clone()
    }

    fn describe(&self) -> String {
        format!(
            "portsynth {:?}\nevents so far:\n{}\nstderr so far:\n{}",
            self.args,
            self.events().iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"),
            self.stderr.lock().unwrap()
        )
    }

    fn is_running(&mut self) -> bool {
        self.child.as_mut().unwrap().try_wait().unwrap().is_none()
    }

    /// Polls the event stream until `check` returns Some, or panics.
    fn wait_for<T>(&mut self, what: &str, mut check: impl FnMut(&[Value]) -> Option<T>) -> T {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(found) = check(&self.events()) {
                return found;
            }
            if !self.is_running() {
                // The process is gone: read what it wrote last, then give up.
                std::thread::sleep(Duration::from_millis(200));
                if let Some(found) = check(&self.events()) {
                    return found;
                }
                panic!("portsynth exited while waiting for {what}\n{}", self.describe());
            }
            if Instant::now() > deadline {
                panic!("timed out after {WAIT:?} waiting for {what}\n{}", self.describe());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Polls the event stream until `check` holds or `limit` passes; no panic.
    fn wait_briefly(&mut self, limit: Duration, check: impl Fn(&[Value]) -> bool) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline && self.is_running() {
            if check(&self.events()) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        check(&self.events())
    }

    fn signal(&self, signal: Signal) {
        kill(self.pid(), signal).unwrap_or_else(|e| panic!("kill {signal}: {e}"));
    }

    /// Waits (bounded) for the process to exit and collects everything.
    fn finish(mut self) -> Finished {
        let deadline = Instant::now() + RUN_TIMEOUT;
        let status = loop {
            if let Some(status) = self.child.as_mut().unwrap().try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let description = self.describe();
                let _ = self.child.as_mut().unwrap().kill();
                panic!("portsynth did not finish within {RUN_TIMEOUT:?}\n{description}");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        self.child = None;
        for reader in self.readers.drain(..) {
            reader.join().unwrap();
        }
        let bad = self.bad_lines.lock().unwrap().clone();
        let finished = Finished {
            args: self.args.clone(),
            code: status.code(),
            events: self.events(),
            stderr: self.stderr.lock().unwrap().clone(),
        };
        assert!(bad.is_empty(), "stdout must hold only NDJSON events; other lines: {bad:?}\n{}", finished.describe());
        finished
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Runs portsynth with `--json` to the end.
fn run(env: &Env, args: &[&str]) -> Finished {
    spawn(env, args).finish()
}

impl Finished {
    fn describe(&self) -> String {
        format!(
            "portsynth {:?} exited with {:?}\nevents:\n{}\nstderr:\n{}",
            self.args,
            self.code,
            self.events.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n"),
            self.stderr
        )
    }

    fn expect_code(&self, code: i32) -> &Self {
        assert_eq!(self.code, Some(code), "unexpected exit code\n{}", self.describe());
        self
    }

    fn of(&self, kind: &str) -> Vec<&Value> {
        events_of(&self.events, kind)
    }

    /// The single event of a kind.
    fn one(&self, kind: &str) -> &Value {
        let found = self.of(kind);
        assert_eq!(found.len(), 1, "expected exactly one {kind} event\n{}", self.describe());
        found[0]
    }

    /// Origins of the events of a kind, each at most once.
    fn origins(&self, kind: &str) -> BTreeSet<String> {
        let list: Vec<String> = self.of(kind).iter().map(|e| str_of(e, "origin")).collect();
        let set: BTreeSet<String> = list.iter().cloned().collect();
        assert_eq!(set.len(), list.len(), "an origin appears twice in {kind} events\n{}", self.describe());
        set
    }

    /// The build_end event of a port.
    fn build_end(&self, origin: &str) -> &Value {
        let found: Vec<&Value> = self.of("build_end").into_iter().filter(|e| e["origin"] == origin).collect();
        assert_eq!(found.len(), 1, "expected one build_end for {origin}\n{}", self.describe());
        found[0]
    }

    fn run_id(&self) -> String {
        let id = str_of(self.one("run_start"), "run");
        assert_eq!(str_of(self.one("run_end"), "run"), id, "run_start and run_end disagree\n{}", self.describe());
        id
    }

    fn counts(&self) -> &Value {
        &self.one("run_end")["counts"]
    }
}

fn events_of<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["event"] == kind).collect()
}

fn str_of(value: &Value, key: &str) -> String {
    value[key].as_str().unwrap_or_else(|| panic!("no string {key:?} in {value}")).to_string()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

// ---------------------------------------------------------------------------
// The plan, from `status --json`
// ---------------------------------------------------------------------------

struct Entry {
    origin: String,
    pkgname: Option<String>,
    verdict: String,
    depends: Vec<String>,
}

struct Plan {
    entries: Vec<Entry>,
}

fn plan(env: &Env) -> Plan {
    let json = env.status_json(&[]);
    let entries = json["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| Entry {
            origin: str_of(e, "origin"),
            pkgname: e["pkgname"].as_str().map(str::to_string),
            verdict: str_of(e, "verdict"),
            depends: e["depends"].as_array().unwrap().iter().map(|d| str_of(d, "origin")).collect(),
        })
        .collect();
    Plan { entries }
}

impl Plan {
    fn with_verdict(&self, verdict: &str) -> BTreeSet<String> {
        self.entries.iter().filter(|e| e.verdict == verdict).map(|e| e.origin.clone()).collect()
    }

    fn pkgname(&self, origin: &str) -> String {
        self.entries
            .iter()
            .find(|e| e.origin == origin)
            .and_then(|e| e.pkgname.clone())
            .unwrap_or_else(|| panic!("no pkgname for {origin} in the plan"))
    }

    /// (dependency, dependent) pairs.
    fn edges(&self) -> Vec<(String, String)> {
        let mut edges = Vec::new();
        for entry in &self.entries {
            for dep in &entry.depends {
                edges.push((dep.clone(), entry.origin.clone()));
            }
        }
        edges
    }
}

// ---------------------------------------------------------------------------
// The build database, read directly
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
struct BuildRow {
    id: String,
    run_id: String,
    origin: String,
    pkgname: String,
    status: String,
    last_phase: Option<String>,
    slot: Option<i64>,
    started_ms: i64,
    ended_ms: Option<i64>,
    reason: Option<String>,
    log_path: Option<String>,
}

#[derive(Debug, Clone)]
struct RunRow {
    id: String,
    command: String,
    status: String,
    built: i64,
    failed: i64,
    ignored: i64,
    skipped: i64,
    up_to_date: i64,
    ended_ms: Option<i64>,
}

fn db(env: &Env) -> rusqlite::Connection {
    let path = env.base().join("builddb.sqlite");
    assert!(path.exists(), "no build database at {}", path.display());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.busy_timeout(Duration::from_secs(10)).unwrap();
    conn
}

fn all_builds(env: &Env) -> Vec<BuildRow> {
    let conn = db(env);
    let mut statement = conn
        .prepare(
            "SELECT id, run_id, origin, pkgname, status, last_phase, slot, started_ms, ended_ms, reason, log_path
             FROM builds ORDER BY started_ms, id",
        )
        .unwrap();
    statement
        .query_map([], |r| {
            Ok(BuildRow {
                id: r.get(0)?,
                run_id: r.get(1)?,
                origin: r.get(2)?,
                pkgname: r.get(3)?,
                status: r.get(4)?,
                last_phase: r.get(5)?,
                slot: r.get(6)?,
                started_ms: r.get(7)?,
                ended_ms: r.get(8)?,
                reason: r.get(9)?,
                log_path: r.get(10)?,
            })
        })
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

fn builds_of_run(env: &Env, run: &str) -> Vec<BuildRow> {
    all_builds(env).into_iter().filter(|b| b.run_id == run).collect()
}

/// Origin → the run's single row of that status.
fn rows_with_status(rows: &[BuildRow], status: &str) -> BTreeMap<String, BuildRow> {
    let mut map = BTreeMap::new();
    for row in rows.iter().filter(|r| r.status == status) {
        assert!(
            map.insert(row.origin.clone(), row.clone()).is_none(),
            "two {status} rows for {}: {rows:#?}",
            row.origin
        );
    }
    map
}

fn runs(env: &Env) -> Vec<RunRow> {
    let conn = db(env);
    let mut statement = conn
        .prepare(
            "SELECT id, command, status, built, failed, ignored, skipped, up_to_date, ended_ms
             FROM runs ORDER BY started_ms, id",
        )
        .unwrap();
    statement
        .query_map([], |r| {
            Ok(RunRow {
                id: r.get(0)?,
                command: r.get(1)?,
                status: r.get(2)?,
                built: r.get(3)?,
                failed: r.get(4)?,
                ignored: r.get(5)?,
                skipped: r.get(6)?,
                up_to_date: r.get(7)?,
                ended_ms: r.get(8)?,
            })
        })
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

fn run_row(env: &Env, id: &str) -> RunRow {
    runs(env).into_iter().find(|r| r.id == id).unwrap_or_else(|| panic!("no runs row {id}"))
}

/// origin → (effective_key, package_file, last_build_id)
fn port_states(env: &Env) -> BTreeMap<String, (i64, String, Option<String>)> {
    let conn = db(env);
    let mut statement = conn.prepare("SELECT origin, effective_key, package_file, last_build_id FROM ports").unwrap();
    statement
        .query_map([], |r| Ok((r.get::<_, String>(0)?, (r.get(1)?, r.get(2)?, r.get(3)?))))
        .unwrap()
        .collect::<Result<BTreeMap<_, _>, _>>()
        .unwrap()
}

#[derive(Debug)]
struct PackageRow {
    pkgname: String,
    file: String,
    sha256: String,
    size: i64,
}

fn package_rows(env: &Env) -> BTreeMap<String, PackageRow> {
    let conn = db(env);
    let mut statement = conn.prepare("SELECT origin, pkgname, file, sha256, size FROM packages").unwrap();
    statement
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                PackageRow { pkgname: r.get(1)?, file: r.get(2)?, sha256: r.get(3)?, size: r.get(4)? },
            ))
        })
        .unwrap()
        .collect::<Result<BTreeMap<_, _>, _>>()
        .unwrap()
}

/// Polls the database until `check` returns Some, or panics.
fn wait_for_db<T>(env: &Env, live: &mut Live, what: &str, check: impl Fn(&[BuildRow]) -> Option<T>) -> T {
    let deadline = Instant::now() + WAIT;
    loop {
        let rows = all_builds(env);
        if let Some(found) = check(&rows) {
            return found;
        }
        if Instant::now() > deadline || !live.is_running() {
            panic!("gave up waiting for {what} in the database; rows: {rows:#?}\n{}", live.describe());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------
// Files: repository, logs, mounts, processes
// ---------------------------------------------------------------------------

fn packages_dir(env: &Env) -> PathBuf {
    env.base().join("packages")
}

fn logs_dir(env: &Env) -> PathBuf {
    env.base().join("logs")
}

fn sha256_hex(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// File names in `All/` (empty when it does not exist).
fn all_files(env: &Env) -> BTreeSet<String> {
    match std::fs::read_dir(packages_dir(env).join("All")) {
        Ok(dir) => dir.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect(),
        Err(_) => BTreeSet::new(),
    }
}

/// A package path as stored in the database: absolute, relative to the
/// packages directory (`All/x.pkg`), or a bare file name in `All/`.
fn package_path(env: &Env, file: &str) -> PathBuf {
    let path = Path::new(file);
    if path.is_absolute() {
        path.to_path_buf()
    } else if file.contains('/') {
        packages_dir(env).join(path)
    } else {
        packages_dir(env).join("All").join(path)
    }
}

/// Everything in `All/` is a complete `.pkg`; the database's package rows and
/// port states point at existing files with the recorded digests. Returns
/// file name → sha256.
fn assert_database_matches_files(env: &Env) -> BTreeMap<String, String> {
    let files = all_files(env);
    for name in &files {
        assert!(
            name.ends_with(".pkg") && !name.starts_with('.'),
            "All/ holds something that is not a finished package: {name} (all: {files:?})"
        );
    }
    let digests: BTreeMap<String, String> =
        files.iter().map(|n| (n.clone(), sha256_hex(&packages_dir(env).join("All").join(n)))).collect();
    for (origin, row) in package_rows(env) {
        let path = package_path(env, &row.file);
        assert!(path.exists(), "packages row of {origin} names a missing file {}", path.display());
        assert_eq!(
            path.file_name().unwrap().to_string_lossy(),
            format!("{}.pkg", row.pkgname),
            "packages row of {origin}: file and pkgname disagree"
        );
        assert_eq!(sha256_hex(&path), row.sha256, "packages row of {origin}: sha256 differs from {}", path.display());
        assert_eq!(std::fs::metadata(&path).unwrap().len() as i64, row.size, "packages row of {origin}: size");
    }
    for (origin, (_, file, _)) in port_states(env) {
        assert!(package_path(env, &file).exists(), "ports row of {origin} names a missing package {file}");
    }
    digests
}

/// packagesite.json and SHA256SUMS describe exactly the files in `All/`.
fn assert_index_matches_files(env: &Env) {
    let digests = assert_database_matches_files(env);
    let site_path = packages_dir(env).join("packagesite.json");
    let site: Value = serde_json::from_str(
        &std::fs::read_to_string(&site_path).unwrap_or_else(|e| panic!("{}: {e}", site_path.display())),
    )
    .unwrap_or_else(|e| panic!("{}: not JSON: {e}", site_path.display()));
    let mut indexed = BTreeMap::new();
    for package in site["packages"].as_array().unwrap_or_else(|| panic!("no packages array in {site}")) {
        let file = str_of(package, "file");
        let name = file.strip_prefix("All/").unwrap_or_else(|| panic!("index file {file} is not under All/"));
        assert_eq!(
            format!("{}-{}.pkg", str_of(package, "name"), str_of(package, "version")),
            name,
            "index entry name/version vs file: {package}"
        );
        let path = packages_dir(env).join(&file);
        assert_eq!(
            package["size"].as_u64(),
            Some(std::fs::metadata(&path).map(|m| m.len()).unwrap_or(u64::MAX)),
            "{package}"
        );
        for key in ["origin", "comment", "prefix"] {
            assert!(package[key].is_string(), "index entry without {key}: {package}");
        }
        assert!(package["deps"].is_array(), "index entry without deps: {package}");
        indexed.insert(name.to_string(), str_of(package, "sha256"));
    }
    assert_eq!(indexed, digests, "packagesite.json vs the files in All/");

    let sums_path = packages_dir(env).join("SHA256SUMS");
    let sums = std::fs::read_to_string(&sums_path).unwrap_or_else(|e| panic!("{}: {e}", sums_path.display()));
    let mut listed = BTreeMap::new();
    for line in sums.lines().filter(|l| !l.trim().is_empty()) {
        let (hex, file) = line.split_once("  ").unwrap_or_else(|| panic!("SHA256SUMS line {line:?}"));
        let name = file.strip_prefix("All/").unwrap_or_else(|| panic!("SHA256SUMS line {line:?}"));
        listed.insert(name.to_string(), hex.to_string());
    }
    assert_eq!(listed, digests, "SHA256SUMS vs the files in All/");
}

fn log_text(env: &Env, name: &str) -> String {
    std::fs::read_to_string(logs_dir(env).join(name)).unwrap_or_default()
}

/// Lines of a summary log whose first two words are `origin pkgname`.
fn log_lines_for(env: &Env, log: &str, origin: &str, pkgname: &str) -> Vec<String> {
    log_text(env, log)
        .lines()
        .filter(|l| {
            let mut words = l.split_whitespace();
            words.next() == Some(origin) && words.next() == Some(pkgname)
        })
        .map(str::to_string)
        .collect()
}

/// First words of the lines of a summary log.
fn log_origins(env: &Env, log: &str) -> Vec<String> {
    log_text(env, log).lines().filter_map(|l| l.split_whitespace().next()).map(str::to_string).collect()
}

/// Mount points at or below `dir` in our mount namespace.
fn mounts_under(dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy().into_owned();
    std::fs::read_to_string("/proc/self/mountinfo")
        .unwrap()
        .lines()
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .filter(|m| m == &dir || m.starts_with(&format!("{dir}/")))
        .collect()
}

/// No mount under the build base and no process of the tagged ports left
/// (bounded wait: namespaces are torn down asynchronously).
fn assert_nothing_left(env: &Env, tag: &str) {
    let needle = format!(".gate-{tag}");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (mounts, processes) = (mounts_under(env.path()), processes_with(&needle));
        if mounts.is_empty() && processes.is_empty() {
            return;
        }
        if Instant::now() > deadline {
            panic!("left behind: mounts {mounts:?}, processes {processes:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

// ---------------------------------------------------------------------------
// Cross-checks shared by the scenarios
// ---------------------------------------------------------------------------

/// Scenario 6: the counts of run_end, the runs row and the builds rows (and
/// the events) agree, status by status. Returns the run's build rows.
fn assert_counts_agree(env: &Env, finished: &Finished) -> Vec<BuildRow> {
    let context = finished.describe();
    let id = finished.run_id();
    let start = finished.one("run_start");
    let end = finished.one("run_end");
    let counts = finished.counts();
    let count = |key: &str| counts[key].as_i64().unwrap_or_else(|| panic!("run_end counts without {key}\n{context}"));
    let row = run_row(env, &id);
    assert_eq!(str_of(end, "status"), row.status, "run_end status vs runs row\n{context}");
    assert_eq!(str_of(start, "command"), row.command, "run_start command vs runs row\n{context}");
    assert!(row.ended_ms.is_some(), "finished run without ended_ms: {row:?}");
    for (key, stored) in [
        ("built", row.built),
        ("failed", row.failed),
        ("ignored", row.ignored),
        ("skipped", row.skipped),
        ("up_to_date", row.up_to_date),
    ] {
        assert_eq!(count(key), stored, "run_end counts.{key} vs the runs row {row:?}\n{context}");
    }
    let rows = builds_of_run(env, &id);
    let by_status = |status: &str| rows.iter().filter(|r| r.status == status).count() as i64;
    assert_eq!(by_status("running"), 0, "builds left running: {rows:#?}");
    assert_eq!(count("built"), by_status("success"), "built vs success rows {rows:#?}\n{context}");
    assert_eq!(count("failed"), by_status("failed"), "failed vs failed rows {rows:#?}\n{context}");
    assert_eq!(count("skipped"), by_status("skipped"), "skipped vs skipped rows {rows:#?}\n{context}");
    assert_eq!(count("ignored"), by_status("ignored"), "ignored vs ignored rows {rows:#?}\n{context}");
    let ends = |status: &str| finished.of("build_end").iter().filter(|e| e["status"] == status).count() as i64;
    assert_eq!(count("built"), ends("success"), "built vs build_end success events\n{context}");
    assert_eq!(count("failed"), ends("failed"), "failed vs build_end failed events\n{context}");
    assert_eq!(by_status("interrupted"), ends("interrupted"), "interrupted rows vs events\n{context}");
    if let Some(interrupted) = counts.get("interrupted") {
        assert_eq!(interrupted.as_i64(), Some(by_status("interrupted")), "counts.interrupted vs rows\n{context}");
    }
    assert_eq!(count("skipped"), finished.of("skip").len() as i64, "skipped vs skip events\n{context}");
    assert_eq!(count("ignored"), finished.of("ignored").len() as i64, "ignored vs ignored events\n{context}");
    assert_eq!(finished.of("build_start").len(), finished.of("build_end").len(), "every started build ends\n{context}");
    assert_eq!(start["up_to_date"], counts["up_to_date"], "up_to_date at start and end\n{context}");
    assert_eq!(start["ignored"], counts["ignored"], "ignored at start and end\n{context}");
    assert_eq!(start["not_buildable"], counts["not_buildable"], "not_buildable at start and end\n{context}");
    if str_of(end, "status") == "completed" {
        let planned = start["to_build"].as_i64().unwrap() + start["skipped"].as_i64().unwrap();
        assert_eq!(
            planned,
            count("built") + count("failed") + count("skipped"),
            "a completed run settles every port\n{context}"
        );
    }
    // The failed list names the failed rows, with their phase and log.
    let failed: BTreeSet<String> = rows.iter().filter(|r| r.status == "failed").map(|r| r.origin.clone()).collect();
    let listed: BTreeSet<String> = end["failed"]
        .as_array()
        .unwrap_or_else(|| panic!("run_end without failed list\n{context}"))
        .iter()
        .map(|f| {
            assert!(f["phase"].is_string() && f["log"].is_string(), "failed entry {f}");
            str_of(f, "origin")
        })
        .collect();
    assert_eq!(listed, failed, "run_end failed list vs failed rows\n{context}");
    // Rows and events agree on the slot of each started build.
    for event in finished.of("build_start") {
        let origin = str_of(event, "origin");
        let started: Vec<&BuildRow> = rows
            .iter()
            .filter(|r| r.origin == origin && matches!(r.status.as_str(), "success" | "failed" | "interrupted"))
            .collect();
        assert_eq!(started.len(), 1, "one build row per started build of {origin}: {rows:#?}");
        assert_eq!(
            Some(event["slot"].as_i64().unwrap()),
            started[0].slot,
            "slot of {origin}: {event} vs {:?}",
            started[0]
        );
    }
    rows
}

/// For every plan edge with both ends built in `rows`: the dependency ended
/// before the dependent started. Returns how many edges were checked.
fn assert_dependency_order(plan: &Plan, rows: &[BuildRow]) -> usize {
    let built = rows_with_status(rows, "success");
    let mut checked = 0;
    for (dep, dependent) in plan.edges() {
        if let (Some(d), Some(p)) = (built.get(&dep), built.get(&dependent)) {
            let ended = d.ended_ms.unwrap_or_else(|| panic!("success row without ended_ms: {d:?}"));
            assert!(
                ended <= p.started_ms,
                "{dependent} started at {} before its dependency {dep} ended at {ended}",
                p.started_ms
            );
            checked += 1;
        }
    }
    checked
}

/// The build_start origins of a run, in event order.
fn start_order(finished: &Finished) -> Vec<String> {
    finished.of("build_start").iter().map(|e| str_of(e, "origin")).collect()
}

fn assert_all_succeeded(finished: &Finished) {
    for end in finished.of("build_end") {
        assert_eq!(end["status"], "success", "{end}\n{}", finished.describe());
        assert!(end["phase"].is_null(), "a successful build names no failed phase: {end}");
        let log = str_of(end, "log");
        assert!(Path::new(&log).is_file(), "build_end log {log} does not exist");
    }
}

/// `rebuild-repository` with `--json`: one JSON result object.
fn rebuild_repository(env: &Env, extra: &[&str]) -> Value {
    let mut args = vec!["--json", "rebuild-repository"];
    args.extend_from_slice(extra);
    let stdout = env.run_ok(&args);
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("rebuild-repository --json printed {stdout:?}: {e}"))
}

fn append(path: &Path, text: &str) {
    let mut content = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    content.push_str(text);
    std::fs::write(path, content).unwrap();
}

/// The bundled tree, with its distfiles mirror (made by scripts/make-distfiles).
fn testdata() -> Env {
    let mirror = common::repo().join("ports-testdata/Mirror");
    assert!(
        mirror.join("libgreet-1.2.tar.gz").exists(),
        "{} is missing: run scripts/make-distfiles (scripts/test.sh does)",
        mirror.display()
    );
    let env = Env::testdata();
    assert!(env.ports().join("Mirror/libgreet-1.2.tar.gz").exists(), "the copied tree has no Mirror/");
    env
}

// ---------------------------------------------------------------------------
// Small trees of gated ports
// ---------------------------------------------------------------------------

/// Origins whose build has reached the `build` phase (where gated ports wait).
fn in_build_phase(events: &[Value]) -> BTreeSet<String> {
    events_of(events, "build_phase").iter().filter(|e| e["phase"] == "build").map(|e| str_of(e, "origin")).collect()
}

/// Waits until a gated build sits in its build phase, then gives a second
/// slot a moment to fill (the throttle may allow only one); returns the
/// started origins.
fn wait_for_gated_builds(live: &mut Live, want: usize) -> BTreeSet<String> {
    live.wait_for("a build waiting at its gate", |events| (!in_build_phase(events).is_empty()).then_some(()));
    live.wait_briefly(Duration::from_secs(5), |events| in_build_phase(events).len() >= want);
    let started: BTreeSet<String> =
        events_of(&live.events(), "build_start").iter().map(|e| str_of(e, "origin")).collect();
    assert!(!started.is_empty());
    started
}

/// After the first signal, waits (briefly) for portsynth to say something
/// about it, so that a second signal is not merged with the first.
fn wait_for_notice(live: &mut Live, before: usize) {
    live.wait_briefly(Duration::from_secs(3), |events| events_of(events, "notice").len() > before);
}

// ---------------------------------------------------------------------------
// Scenarios 1, 2, 3, 5 and 6 on the bundled tree, one first build reused
// ---------------------------------------------------------------------------

#[test]
fn bundled_tree_first_build_no_change_library_edit_and_chain() {
    let env = testdata();

    // ---- 1. First build: every buildable port, ignored ports reported.
    let plan1 = plan(&env);
    let buildable = plan1.with_verdict("build");
    let ignored = plan1.with_verdict("ignored");
    assert_eq!(buildable.len(), 16, "the bundled tree has 16 buildable nodes");
    assert_eq!(ignored, set(&["misc/ignored", "sysutils/broken"]));
    assert!(plan1.with_verdict("not-buildable").is_empty());

    let first = run(&env, &["-y", "everything"]);
    first.expect_code(0);
    let start = first.one("run_start");
    assert_eq!(start["command"], "everything");
    assert_eq!(start["to_build"], 16, "{start}");
    assert_eq!(start["up_to_date"], 0, "{start}");
    assert_eq!(start["ignored"], 2, "{start}");
    assert_eq!(first.origins("build_start"), buildable, "{}", first.describe());
    assert_eq!(first.origins("build_end"), buildable);
    assert_all_succeeded(&first);
    assert_eq!(first.origins("ignored"), ignored, "ignored events\n{}", first.describe());
    for event in first.of("ignored") {
        assert!(!str_of(event, "reason").is_empty(), "{event}");
    }
    assert!(first.of("skip").is_empty(), "{}", first.describe());
    let end = first.one("run_end");
    assert_eq!(end["status"], "completed");
    assert_eq!(end["counts"]["built"], 16);
    assert_eq!(end["counts"]["failed"], 0);
    assert_eq!(end["counts"]["ignored"], 2);
    assert_eq!(end["counts"]["skipped"], 0);
    assert_eq!(end["counts"]["up_to_date"], 0);
    assert_eq!(end["failed"], serde_json::json!([]));
    for event in first.of("build_phase") {
        assert!(buildable.contains(&str_of(event, "origin")) && event["phase"].is_string(), "{event}");
    }

    let rows1 = assert_counts_agree(&env, &first);
    let success1 = rows_with_status(&rows1, "success");
    assert_eq!(success1.keys().cloned().collect::<BTreeSet<_>>(), buildable, "one success row per port");
    assert_eq!(
        rows_with_status(&rows1, "ignored").keys().cloned().collect::<BTreeSet<_>>(),
        ignored,
        "ignored ports are recorded as ignored"
    );
    let states = port_states(&env);
    let packages = package_rows(&env);
    assert_eq!(states.keys().cloned().collect::<BTreeSet<_>>(), buildable, "a stored key per built port");
    assert_eq!(packages.keys().cloned().collect::<BTreeSet<_>>(), buildable, "a package row per built port");
    for origin in &buildable {
        let row = &success1[origin];
        let pkgname = plan1.pkgname(origin);
        assert_eq!(row.pkgname, pkgname);
        assert!(row.ended_ms.is_some() && row.slot.is_some(), "{row:?}");
        assert!(row.last_phase.is_some(), "{row:?}");
        let log = row.log_path.as_ref().unwrap_or_else(|| panic!("no log path: {row:?}"));
        assert!(Path::new(log).is_file(), "{log}");
        assert_eq!(states[origin].2.as_deref(), Some(row.id.as_str()), "ports.last_build_id of {origin}");
        assert_eq!(packages[origin].pkgname, pkgname);
        assert!(packages_dir(&env).join("All").join(format!("{pkgname}.pkg")).is_file(), "{pkgname}.pkg");
        assert_eq!(
            log_lines_for(&env, "01_success_list.log", origin, &pkgname).len(),
            1,
            "01_success_list.log line of {origin}:\n{}",
            log_text(&env, "01_success_list.log")
        );
    }
    assert_eq!(all_files(&env).len(), 16);
    assert!(logs_dir(&env).join("misc___hello.log").is_file());
    assert!(logs_dir(&env).join("devel___libgreet.log").is_file());
    assert_index_matches_files(&env);
    assert_eq!(assert_dependency_order(&plan1, &rows1), plan1.edges().len(), "every edge built in the first run");
    let ignored_log = log_origins(&env, "03_ignored_list.log");
    assert_eq!(ignored_log.iter().cloned().collect::<BTreeSet<_>>(), ignored, "03_ignored_list.log");
    assert_eq!(ignored_log.len(), 2, "no duplicates in 03_ignored_list.log");
    assert!(log_origins(&env, "02_failure_list.log").is_empty(), "{}", log_text(&env, "02_failure_list.log"));
    assert!(log_origins(&env, "04_skipped_list.log").is_empty());
    assert!(logs_dir(&env).join("00_last_results.log").is_file());
    assert!(logs_dir(&env).join("07_debug.log").is_file());
    let repository1 = assert_database_matches_files(&env);

    // ---- 2. No change: nothing built, no new success records. No -y: stdin
    // is not a terminal, so there is no prompt.
    let second = run(&env, &["everything"]);
    second.expect_code(0);
    assert_eq!(second.one("run_start")["to_build"], 0);
    assert_eq!(second.one("run_start")["up_to_date"], 16);
    assert!(second.of("build_start").is_empty(), "{}", second.describe());
    assert_eq!(second.counts()["built"], 0);
    assert_eq!(second.counts()["up_to_date"], 16);
    assert_eq!(second.one("run_end")["status"], "completed");
    let rows2 = assert_counts_agree(&env, &second);
    assert!(rows2.iter().all(|r| r.status == "ignored"), "a no-change run records no builds: {rows2:#?}");
    assert_eq!(rows_with_status(&all_builds(&env), "success").len(), 16, "no new success rows");
    assert_eq!(assert_database_matches_files(&env), repository1, "the repository is untouched");
    assert_index_matches_files(&env);
    // Without --json: the counts are printed as text.
    let text = env.run(&["everything"]);
    assert_eq!(text.status.code(), Some(0), "{}", common::stderr(&text));
    let printed = format!("{}{}", String::from_utf8_lossy(&text.stdout), common::stderr(&text));
    for count in ["0 built", "0 failed", "2 ignored", "16 up to date"] {
        assert!(printed.contains(count), "the summary prints {count:?}:\n{printed}");
    }

    // ---- 3. A comment in devel/libgreet/Makefile: libgreet and its dependents.
    append(&env.ports().join("devel/libgreet/Makefile"), "# a comment\n");
    let plan3 = plan(&env);
    let expected3 = plan3.with_verdict("build");
    assert_eq!(expected3, set(&["devel/libgreet", "misc/hello", "x11/meta-bundle"]), "status after the edit");
    let third = run(&env, &["-y", "everything"]);
    third.expect_code(0);
    assert_eq!(third.origins("build_start"), expected3, "{}", third.describe());
    assert_all_succeeded(&third);
    assert_eq!(third.one("run_start")["to_build"], 3);
    assert_eq!(third.one("run_start")["up_to_date"], 13);
    assert_eq!(third.counts()["built"], 3);
    assert_eq!(third.counts()["up_to_date"], 13);
    let rows3 = assert_counts_agree(&env, &third);
    assert_dependency_order(&plan3, &rows3);
    assert_eq!(start_order(&third)[0], "devel/libgreet");
    assert_index_matches_files(&env);
    assert!(plan(&env).with_verdict("build").is_empty(), "everything up to date afterwards");
    let success_lines = log_origins(&env, "01_success_list.log");
    assert_eq!(success_lines.iter().cloned().collect::<BTreeSet<_>>(), expected3, "01 lists this run's builds");

    // ---- 5. Chain top → middle → bottom. The top's own files: it alone.
    append(&env.ports().join("misc/chain-top/pkg-descr"), "more\n");
    let top_only = run(&env, &["-y", "build", "misc/chain-top"]);
    top_only.expect_code(0);
    assert_eq!(start_order(&top_only), vec!["misc/chain-top".to_string()], "{}", top_only.describe());
    assert!(str_of(top_only.one("run_start"), "command").starts_with("build"), "{}", top_only.describe());
    assert_counts_agree(&env, &top_only);
    assert_index_matches_files(&env);

    // The bottom: bottom, middle, top, in that order (just-build: no prompt,
    // no repository index rebuild; rebuild-repository does that alone).
    append(&env.ports().join("misc/chain-bottom/pkg-descr"), "more\n");
    let plan5 = plan(&env);
    assert_eq!(plan5.with_verdict("build"), set(&["misc/chain-bottom", "misc/chain-middle", "misc/chain-top"]));
    let site = packages_dir(&env).join("packagesite.json");
    let site_modified = std::fs::metadata(&site).unwrap().modified().unwrap();
    let chain = run(&env, &["just-build", "misc/chain-top"]);
    chain.expect_code(0);
    assert_eq!(
        std::fs::metadata(&site).unwrap().modified().unwrap(),
        site_modified,
        "just-build leaves the repository index alone"
    );
    let order = ["misc/chain-bottom", "misc/chain-middle", "misc/chain-top"];
    assert_eq!(start_order(&chain), order.map(String::from).to_vec(), "{}", chain.describe());
    let rows5 = assert_counts_agree(&env, &chain);
    let built5 = rows_with_status(&rows5, "success");
    for pair in order.windows(2) {
        let (dep, dependent) = (&built5[pair[0]], &built5[pair[1]]);
        assert!(dep.ended_ms.unwrap() <= dependent.started_ms, "{dep:?} must end before {dependent:?} starts");
    }
    assert_dependency_order(&plan5, &rows5);
    assert_database_matches_files(&env);
    let rebuilt = rebuild_repository(&env, &[]);
    assert_eq!(rebuilt["packages"], 16, "{rebuilt}");
    assert_index_matches_files(&env);

    // force: rebuilt although up to date.
    let forced = run(&env, &["-y", "force", "misc/chain-bottom"]);
    forced.expect_code(0);
    assert!(forced.origins("build_start").contains("misc/chain-bottom"), "{}", forced.describe());
    assert_all_succeeded(&forced);
    assert_counts_agree(&env, &forced);
    assert_index_matches_files(&env);
}

/// A port removed from the tree: its package is obsolete, listed in
/// 06_obsolete_packages.log, kept by a run and removed only by
/// `rebuild-repository --prune`, which leaves the database consistent.
#[test]
fn obsolete_packages_are_listed_and_pruned_only_on_request() {
    let env = gated_env(
        "obsolete",
        &[TestPort { name: "keep", deps: &[], gated: false }, TestPort { name: "goner", deps: &[], gated: false }],
    );
    run(&env, &["-y", "everything"]).expect_code(0);
    assert_eq!(all_files(&env), set(&["goner-1.0.pkg", "keep-1.0.pkg"]));
    std::fs::remove_dir_all(env.ports().join("misc/goner")).unwrap();
    let after_removal = run(&env, &["-y", "everything"]);
    after_removal.expect_code(0);
    assert!(after_removal.of("build_start").is_empty(), "{}", after_removal.describe());
    let obsolete = log_text(&env, "06_obsolete_packages.log");
    assert!(obsolete.lines().any(|l| l.trim_end().ends_with("goner-1.0.pkg")), "06_obsolete_packages.log:\n{obsolete}");
    assert!(!obsolete.contains("keep-1.0.pkg"), "{obsolete}");
    assert!(all_files(&env).contains("goner-1.0.pkg"), "listed, not removed");
    let listed = rebuild_repository(&env, &[]);
    assert!(listed["obsolete"].to_string().contains("goner-1.0.pkg"), "{listed}");
    assert!(all_files(&env).contains("goner-1.0.pkg"), "rebuild-repository without --prune keeps it");
    let pruned = rebuild_repository(&env, &["--prune"]);
    assert_eq!(pruned["pruned"], 1, "{pruned}");
    assert!(pruned["obsolete"].to_string().contains("goner-1.0.pkg"), "{pruned}");
    assert_eq!(all_files(&env), set(&["keep-1.0.pkg"]), "--prune removes it");
    assert_index_matches_files(&env);
}

// ---------------------------------------------------------------------------
// Scenario 4: a failing port, its dependents skipped, then fixed
// ---------------------------------------------------------------------------

#[test]
fn a_failing_port_skips_its_dependents_and_is_built_once_fixed() {
    let env = Env::fixtures();
    let ports = ["misc/good", "misc/needs-needs-fails"];
    let plan1 = plan(&env);

    let failing = run(&env, &["-y", "build", ports[0], ports[1]]);
    failing.expect_code(1);
    assert_eq!(failing.one("run_start")["to_build"], 4, "{}", failing.describe());
    assert_eq!(failing.origins("build_start"), set(&["misc/fails", "misc/good"]), "{}", failing.describe());
    let fails_end = failing.build_end("misc/fails");
    assert_eq!(fails_end["status"], "failed", "{fails_end}");
    assert_eq!(fails_end["phase"], "build", "{fails_end}");
    let fails_log = str_of(fails_end, "log");
    let log = std::fs::read_to_string(&fails_log).unwrap_or_else(|e| panic!("{fails_log}: {e}"));
    assert!(log.contains("not_declared"), "the compiler's error is in the port's log:\n{log}");
    assert_eq!(failing.build_end("misc/good")["status"], "success");
    assert_eq!(failing.origins("skip"), set(&["misc/needs-fails", "misc/needs-needs-fails"]), "{}", failing.describe());
    for skip in failing.of("skip") {
        assert!(str_of(skip, "reason").contains("misc/fails"), "the skip reason names the failed port: {skip}");
    }
    let end = failing.one("run_end");
    assert_eq!(end["status"], "completed");
    assert_eq!(end["counts"]["built"], 1);
    assert_eq!(end["counts"]["failed"], 1);
    assert_eq!(end["counts"]["skipped"], 2);
    let failed = &end["failed"][0];
    assert_eq!((failed["origin"].as_str(), failed["phase"].as_str()), (Some("misc/fails"), Some("build")), "{end}");
    assert_eq!(str_of(failed, "log"), fails_log);

    let rows = assert_counts_agree(&env, &failing);
    let failed_rows = rows_with_status(&rows, "failed");
    assert_eq!(failed_rows.keys().cloned().collect::<BTreeSet<_>>(), set(&["misc/fails"]));
    assert_eq!(failed_rows["misc/fails"].last_phase.as_deref(), Some("build"), "{:?}", failed_rows["misc/fails"]);
    assert!(failed_rows["misc/fails"].ended_ms.is_some());
    let skipped_rows = rows_with_status(&rows, "skipped");
    assert_eq!(
        skipped_rows.keys().cloned().collect::<BTreeSet<_>>(),
        set(&["misc/needs-fails", "misc/needs-needs-fails"])
    );
    for row in skipped_rows.values() {
        assert!(row.reason.as_deref().unwrap_or("").contains("misc/fails"), "{row:?}");
    }
    assert_eq!(rows_with_status(&rows, "success").keys().cloned().collect::<BTreeSet<_>>(), set(&["misc/good"]));
    assert_eq!(
        port_states(&env).keys().cloned().collect::<BTreeSet<_>>(),
        set(&["misc/good"]),
        "no stored key for a failure"
    );
    assert_eq!(
        package_rows(&env).keys().cloned().collect::<BTreeSet<_>>(),
        set(&["misc/good"]),
        "no index entry for a failure"
    );
    assert_eq!(all_files(&env), set(&["good-1.0.pkg"]));
    assert_index_matches_files(&env);

    let failure_lines = log_lines_for(&env, "02_failure_list.log", "misc/fails", "fails-1.0");
    assert_eq!(failure_lines.len(), 1, "02_failure_list.log:\n{}", log_text(&env, "02_failure_list.log"));
    assert!(failure_lines[0].contains("phase=build"), "{}", failure_lines[0]);
    assert!(failure_lines[0].contains(&fails_log), "{}", failure_lines[0]);
    for (origin, pkgname) in
        [("misc/needs-fails", "needs-fails-1.0"), ("misc/needs-needs-fails", "needs-needs-fails-1.0")]
    {
        let lines = log_lines_for(&env, "04_skipped_list.log", origin, pkgname);
        assert_eq!(lines.len(), 1, "04_skipped_list.log:\n{}", log_text(&env, "04_skipped_list.log"));
        assert!(lines[0].contains("misc/fails"), "{}", lines[0]);
    }
    assert_eq!(log_origins(&env, "01_success_list.log"), vec!["misc/good".to_string()]);

    // Without --json: the final summary names the failed port, its phase and log.
    let text = env.run(&["-y", "build", ports[0], ports[1]]);
    assert_eq!(text.status.code(), Some(1), "{}", common::stderr(&text));
    let printed = format!("{}{}", String::from_utf8_lossy(&text.stdout), common::stderr(&text));
    let summary = printed.lines().filter(|l| l.contains("misc/fails") && l.contains(&fails_log)).collect::<Vec<_>>();
    assert!(
        summary.iter().any(|l| l.contains("build")),
        "the summary lists misc/fails with its phase and log {fails_log}:\n{printed}"
    );
    assert!(printed.contains("1 failed") && printed.contains("2 skipped"), "{printed}");

    // Fix the port: it and its dependents are built, misc/good is up to date.
    std::fs::write(
        env.ports().join("misc/fails/files/fails.c"),
        "#include <stdio.h>\nint main(void) { puts(\"fixed\"); return 0; }\n",
    )
    .unwrap();
    let plan2 = plan(&env);
    let expected = set(&["misc/fails", "misc/needs-fails", "misc/needs-needs-fails"]);
    assert!(expected.is_subset(&plan2.with_verdict("build")));
    let fixed = run(&env, &["-y", "build", ports[0], ports[1]]);
    fixed.expect_code(0);
    assert_eq!(fixed.origins("build_start"), expected, "{}", fixed.describe());
    assert_all_succeeded(&fixed);
    assert_eq!(fixed.counts()["up_to_date"], 1);
    assert!(fixed.of("skip").is_empty());
    let rows2 = assert_counts_agree(&env, &fixed);
    assert_dependency_order(&plan2, &rows2);
    assert_dependency_order(&plan1, &rows2);
    assert_eq!(
        start_order(&fixed),
        ["misc/fails", "misc/needs-fails", "misc/needs-needs-fails"].map(String::from).to_vec()
    );
    assert_eq!(port_states(&env).len(), 4);
    assert_eq!(all_files(&env).len(), 4);
    assert_index_matches_files(&env);
    assert!(log_origins(&env, "02_failure_list.log").is_empty(), "the summary logs describe the last run");
    assert!(log_origins(&env, "04_skipped_list.log").is_empty());
}

// ---------------------------------------------------------------------------
// Scenario 7: parallel builds that respect dependencies
// ---------------------------------------------------------------------------

#[test]
fn four_workers_overlap_and_never_start_before_dependencies() {
    let env = Env::generated(&[
        "--ports",
        "12",
        "--mode",
        "sleep",
        "--min-duration",
        "1",
        "--max-duration",
        "1",
        "--shape",
        "realistic",
    ]);
    env.write_config("workers = 4\n");
    let plan = plan(&env);
    let buildable = plan.with_verdict("build");
    assert_eq!(buildable.len(), 12);
    assert!(plan.edges().len() >= 10, "the realistic shape has dependencies");

    let finished = run(&env, &["-y", "-j", "4", "everything"]);
    finished.expect_code(0);
    assert_eq!(finished.origins("build_start"), buildable);
    assert_all_succeeded(&finished);
    let rows = assert_counts_agree(&env, &finished);
    let built: Vec<BuildRow> = rows_with_status(&rows, "success").into_values().collect();
    assert_eq!(built.len(), 12);
    assert_eq!(assert_dependency_order(&plan, &rows), plan.edges().len(), "every edge checked");

    let interval = |r: &BuildRow| (r.started_ms, r.ended_ms.unwrap());
    let mut overlapping = Vec::new();
    for (i, a) in built.iter().enumerate() {
        for b in &built[i + 1..] {
            let ((a0, a1), (b0, b1)) = (interval(a), interval(b));
            if a0 < b1 && b0 < a1 {
                assert_ne!(a.slot, b.slot, "overlapping builds share a slot: {a:?} {b:?}");
                overlapping.push((a.origin.clone(), b.origin.clone()));
            }
        }
    }
    assert!(!overlapping.is_empty(), "no two builds overlapped: {built:#?}");
    // Never more than 4 at once, every slot within 1..=4.
    for row in &built {
        let slot = row.slot.unwrap();
        assert!((1..=4).contains(&slot), "{row:?}");
        let at = row.started_ms;
        let running = built.iter().filter(|r| r.started_ms <= at && at < r.ended_ms.unwrap()).count();
        assert!(running <= 4, "{running} builds at once at {at}: {built:#?}");
    }
    assert_index_matches_files(&env);
}

// ---------------------------------------------------------------------------
// Scenario 8: Ctrl-C once, Ctrl-C twice, SIGTERM, the lock, kill -9
// ---------------------------------------------------------------------------

/// 8a: one SIGINT lets the running builds finish and starts nothing new.
#[test]
fn first_ctrl_c_lets_running_builds_finish_and_starts_nothing_new() {
    let tag = "sigint-once";
    let env = gated_env(
        tag,
        &[
            TestPort { name: "gated-1", deps: &[], gated: true },
            TestPort { name: "gated-2", deps: &[], gated: true },
            TestPort { name: "gated-3", deps: &[], gated: true },
            TestPort { name: "gated-4", deps: &[], gated: true },
            TestPort { name: "after-1", deps: &["gated-1"], gated: false },
        ],
    );
    let all = plan(&env).with_verdict("build");
    assert_eq!(all.len(), 5);

    let mut live = spawn(&env, &["-y", "-j", "2", "everything"]);
    let started = wait_for_gated_builds(&mut live, 2);
    let notices = events_of(&live.events(), "notice").len();
    live.signal(Signal::SIGINT);
    wait_for_notice(&mut live, notices);
    assert!(live.is_running(), "one Ctrl-C waits for the running builds\n{}", live.describe());
    open_gate(&env, tag);
    let finished = live.finish();
    finished.expect_code(3);

    assert_eq!(finished.origins("build_start"), started, "nothing starts after Ctrl-C\n{}", finished.describe());
    for origin in &started {
        assert_eq!(finished.build_end(origin)["status"], "success", "{}", finished.describe());
    }
    let end = finished.one("run_end");
    assert_eq!(end["status"], "aborted", "{}", finished.describe());
    assert_eq!(end["counts"]["built"], started.len() as u64);
    assert!(
        finished.of("notice").iter().any(|n| n["message"].is_string()),
        "the first Ctrl-C is announced\n{}",
        finished.describe()
    );
    let rows = assert_counts_agree(&env, &finished);
    assert_eq!(run_row(&env, &finished.run_id()).status, "aborted");
    let recorded: BTreeSet<String> = rows.iter().map(|r| r.origin.clone()).collect();
    assert_eq!(recorded, started, "ports that never started have no build rows: {rows:#?}");
    assert!(rows.iter().all(|r| r.status == "success"), "{rows:#?}");
    assert_eq!(port_states(&env).keys().cloned().collect::<BTreeSet<_>>(), started);
    assert_eq!(all_files(&env).len(), started.len());
    assert_index_matches_files(&env);
    assert_nothing_left(&env, tag);

    // The plan now: the finished ones up to date, the rest still to build.
    let after = plan(&env);
    assert_eq!(after.with_verdict("up-to-date"), started);
    assert_eq!(after.with_verdict("build"), all.difference(&started).cloned().collect());
}

/// 8b and 8c: while a run builds, a second run on the same build base is
/// refused naming the holder's pid; then two SIGINTs interrupt the builds.
#[test]
fn lock_refuses_a_second_run_and_second_ctrl_c_interrupts() {
    let tag = "sigint-twice";
    let env = gated_env(
        tag,
        &[
            TestPort { name: "gated-1", deps: &[], gated: true },
            TestPort { name: "gated-2", deps: &[], gated: true },
            TestPort { name: "gated-3", deps: &[], gated: true },
        ],
    );
    let mut live = spawn(&env, &["-y", "-j", "2", "everything"]);
    let started = wait_for_gated_builds(&mut live, 2);

    // 8c: the lock.
    let pid = live.pid();
    let second = run(&env, &["-y", "everything"]);
    second.expect_code(2);
    assert!(
        second.stderr.contains(&format!("pid {pid}")),
        "the refusal names the holder's pid {pid}:\n{}",
        second.stderr
    );
    assert!(second.of("build_start").is_empty());
    assert!(live.is_running(), "the first run goes on\n{}", live.describe());
    assert_eq!(runs(&env).len(), 1, "a refused run records nothing: {:?}", runs(&env));
    assert!(env.base().join("portsynth.lock").exists());

    // 8b: Ctrl-C twice.
    let notices = events_of(&live.events(), "notice").len();
    live.signal(Signal::SIGINT);
    wait_for_notice(&mut live, notices);
    assert!(live.is_running(), "one Ctrl-C does not kill builds\n{}", live.describe());
    let deadline = Instant::now() + Duration::from_secs(30);
    while live.is_running() {
        assert!(Instant::now() < deadline, "two Ctrl-C did not end the run\n{}", live.describe());
        live.signal(Signal::SIGINT);
        live.wait_briefly(Duration::from_millis(500), |_| false);
    }
    let finished = live.finish();
    finished.expect_code(3);
    assert_eq!(finished.origins("build_start"), started, "{}", finished.describe());
    for origin in &started {
        assert_eq!(finished.build_end(origin)["status"], "interrupted", "{}", finished.describe());
    }
    assert_eq!(finished.one("run_end")["status"], "interrupted");
    assert_eq!(finished.counts()["built"], 0);
    let rows = assert_counts_agree(&env, &finished);
    assert_eq!(rows.iter().map(|r| r.origin.clone()).collect::<BTreeSet<_>>(), started, "{rows:#?}");
    assert!(rows.iter().all(|r| r.status == "interrupted" && r.ended_ms.is_some()), "{rows:#?}");
    assert_eq!(run_row(&env, &finished.run_id()).status, "interrupted");
    assert_nothing_left(&env, tag);
    assert!(all_files(&env).is_empty(), "no package, partial or not: {:?}", all_files(&env));
    assert!(port_states(&env).is_empty() && package_rows(&env).is_empty());
    assert_database_matches_files(&env);

    // The lock is free again and everything builds.
    open_gate(&env, tag);
    let again = run(&env, &["-y", "everything"]);
    again.expect_code(0);
    assert_eq!(again.counts()["built"], 3, "{}", again.describe());
    assert_counts_agree(&env, &again);
    assert_index_matches_files(&env);
}

/// SIGTERM is a second Ctrl-C at once.
#[test]
fn sigterm_interrupts_running_builds() {
    let tag = "sigterm";
    let env = gated_env(
        tag,
        &[
            TestPort { name: "gated-1", deps: &[], gated: true },
            TestPort { name: "after-1", deps: &["gated-1"], gated: false },
        ],
    );
    let mut live = spawn(&env, &["-y", "-j", "1", "everything"]);
    live.wait_for("gated-1 at its gate", |events| in_build_phase(events).contains("misc/gated-1").then_some(()));
    live.signal(Signal::SIGTERM);
    let finished = live.finish();
    finished.expect_code(3);
    assert_eq!(finished.origins("build_start"), set(&["misc/gated-1"]));
    assert_eq!(finished.build_end("misc/gated-1")["status"], "interrupted");
    assert_eq!(finished.one("run_end")["status"], "interrupted");
    let rows = assert_counts_agree(&env, &finished);
    assert_eq!(rows.len(), 1, "{rows:#?}");
    assert_eq!(rows[0].status, "interrupted");
    assert_nothing_left(&env, tag);
    assert!(all_files(&env).is_empty());
}

/// 8d: kill -9 mid-run, then a new run recovers: the dead run's running
/// builds are interrupted, finished packages kept, the rest built.
#[test]
fn after_kill_9_the_next_run_recovers_and_keeps_finished_packages() {
    let tag = "kill9";
    let env = gated_env(
        tag,
        &[
            TestPort { name: "quick-a", deps: &[], gated: false },
            TestPort { name: "quick-b", deps: &[], gated: false },
            TestPort { name: "gated-1", deps: &[], gated: true },
            TestPort { name: "after-gated", deps: &["gated-1"], gated: false },
        ],
    );
    let plan = plan(&env);
    assert_eq!(plan.with_verdict("build").len(), 4);

    let mut live = spawn(&env, &["-y", "-j", "3", "everything"]);
    let first_run =
        live.wait_for("run_start", |events| events_of(events, "run_start").first().map(|e| str_of(e, "run")));
    live.wait_for("gated-1 at its gate", |events| in_build_phase(events).contains("misc/gated-1").then_some(()));
    wait_for_db(&env, &mut live, "quick-a and quick-b recorded as built, gated-1 running", |rows| {
        let ours: Vec<&BuildRow> = rows.iter().filter(|r| r.run_id == first_run).collect();
        let status = |o: &str| ours.iter().find(|r| r.origin == o).map(|r| r.status.clone());
        (status("misc/quick-a").as_deref() == Some("success")
            && status("misc/quick-b").as_deref() == Some("success")
            && status("misc/gated-1").as_deref() == Some("running"))
        .then_some(())
    });
    let kept: BTreeMap<String, (String, std::time::SystemTime)> = ["quick-a-1.0.pkg", "quick-b-1.0.pkg"]
        .iter()
        .map(|name| {
            let path = packages_dir(&env).join("All").join(name);
            assert!(path.is_file(), "{} missing after its success was recorded", path.display());
            (name.to_string(), (sha256_hex(&path), std::fs::metadata(&path).unwrap().modified().unwrap()))
        })
        .collect();
    live.signal(Signal::SIGKILL);
    let killed = live.finish();
    assert_eq!(killed.code, None, "killed by a signal\n{}", killed.describe());
    assert!(killed.of("run_end").is_empty());
    assert_nothing_left(&env, tag);
    assert_eq!(all_files(&env), kept.keys().cloned().collect(), "only finished packages in All/");

    open_gate(&env, tag);
    let next = run(&env, &["-y", "everything"]);
    next.expect_code(0);
    assert_eq!(next.origins("build_start"), set(&["misc/gated-1", "misc/after-gated"]), "{}", next.describe());
    assert_all_succeeded(&next);
    assert_eq!(next.one("run_start")["up_to_date"], 2);
    let rows = assert_counts_agree(&env, &next);
    assert_dependency_order(&plan, &rows);

    // The dead run: marked interrupted, its running build too, its successes kept.
    let dead = run_row(&env, &first_run);
    assert_eq!(dead.status, "interrupted", "{dead:?}");
    let dead_rows = builds_of_run(&env, &first_run);
    let status_of = |origin: &str| {
        dead_rows
            .iter()
            .find(|r| r.origin == origin)
            .map(|r| r.status.clone())
            .unwrap_or_else(|| panic!("{dead_rows:#?}"))
    };
    assert_eq!(status_of("misc/gated-1"), "interrupted");
    assert_eq!(status_of("misc/quick-a"), "success");
    assert_eq!(status_of("misc/quick-b"), "success");
    assert!(all_builds(&env).iter().all(|r| r.status != "running"), "{:#?}", all_builds(&env));
    for (name, (sha, modified)) in &kept {
        let path = packages_dir(&env).join("All").join(name);
        assert_eq!(&sha256_hex(&path), sha, "{name} kept as it was");
        assert_eq!(&std::fs::metadata(&path).unwrap().modified().unwrap(), modified, "{name} not rewritten");
    }
    assert_eq!(all_files(&env).len(), 4);
    assert_index_matches_files(&env);
    assert!(plan_is_settled(&env));
}

fn plan_is_settled(env: &Env) -> bool {
    let plan = plan(env);
    plan.with_verdict("build").is_empty() && plan.with_verdict("up-to-date").len() == plan.entries.len()
}

#[test]
fn test_keeps_the_failed_work_area_and_suspicious_output_is_listed() {
    let env = Env::fixtures();

    let failed = run(&env, &["-y", "test", "misc/fails"]);
    failed.expect_code(1);
    let end = failed.one("run_end");
    let kept = PathBuf::from(str_of(&end["failed"][0], "kept_work"));
    assert_eq!(kept, logs_dir(&env).join("misc___fails.work.tar"), "{end}");
    let listing = std::process::Command::new("tar").arg("tf").arg(&kept).output().unwrap();
    let listing = String::from_utf8_lossy(&listing.stdout);
    assert!(
        listing.lines().any(|l| l.ends_with("work/fails-1.0/fails.c")),
        "the kept work area holds the source that failed to compile:\n{listing}"
    );
    assert!(!all_files(&env).iter().any(|f| f.contains("fails-1.0.pkg")), "no package from a failed test");

    let odd = run(&env, &["-y", "test", "misc/odd-output"]);
    odd.expect_code(0);
    assert_eq!(odd.build_end("misc/odd-output")["status"], "success");
    let log = std::fs::read_to_string(str_of(odd.build_end("misc/odd-output"), "log")).unwrap();
    let phases = log.lines().find(|l| l.starts_with("Phases:")).unwrap_or_default();
    assert!(phases.split_whitespace().any(|p| p == "check-plist"), "test runs check-plist:\n{log}");
    let abnormal = log_text(&env, "05_abnormal_command_output.log");
    assert!(abnormal.starts_with("misc/odd-output (log: "), "{abnormal}");
    assert!(abnormal.contains("exec(portsynth-no-such-tool) failed"), "{abnormal}");
    assert!(!logs_dir(&env).join("misc___odd-output.work.tar").exists(), "a success keeps no work area");
}

#[test]
fn monitor_shows_the_running_build_and_logs_prints_its_log() {
    let tag = "monitor";
    let env = gated_env(tag, &[TestPort { name: "watched", deps: &[], gated: true }]);
    let mut live = spawn(&env, &["-y", "-j", "1", "everything"]);
    live.wait_for("misc/watched waiting at its gate", |events| {
        in_build_phase(events).contains("misc/watched").then_some(())
    });

    let snapshot = env.run_ok(&["monitor", "--once"]);
    let lines: Vec<&str> = snapshot.lines().collect();
    assert!(lines[0].contains("everything") && lines[0].contains("running"), "{snapshot}");
    assert!(lines[1].ends_with("running 1"), "{snapshot}");
    assert!(lines[2].starts_with("  SL01  misc/watched") && lines[2].contains("build"), "{snapshot}");
    let json: Value = serde_json::from_str(&env.run_ok(&["--json", "monitor"])).unwrap();
    assert_eq!(json["run"]["status"], "running");
    assert_eq!(json["builds"][0]["origin"], "misc/watched");
    // The phase event can come before the phase's first output is logged.
    live.wait_for("the gate message in the live log", |_| {
        env.run_ok(&["logs", "misc/watched"]).contains("waiting for").then_some(())
    });
    let log = env.run_ok(&["logs", "misc/watched"]);
    assert!(log.contains(".gate-monitor/open") && log.starts_with("Origin:   misc/watched"), "{log}");
    let path = env.run_ok(&["logs", "--path", "misc/watched"]);
    assert_eq!(PathBuf::from(path.trim()), logs_dir(&env).join("misc___watched.log"));

    open_gate(&env, tag);
    live.finish().expect_code(0);
    let after = env.run_ok(&["monitor"]);
    assert!(after.lines().nth(1).unwrap().starts_with("built 1  failed 0"), "{after}");
    assert!(env.run_ok(&["logs"]).contains("misc/watched"), "without a port: the results list");
    let missing = env.run(&["logs", "misc/nothere"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(common::stderr(&missing).contains("no log for misc/nothere"), "{}", common::stderr(&missing));
}
