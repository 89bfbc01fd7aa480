//! The Slurm testbed of `scripts/slurm-testbed` (docs/SLURM.md) for the
//! tests: one test at a time holds it (a lock shared by every test binary
//! and worktree of the machine), brings it up or reuses it, and talks to it
//! with Slurm's own commands run in the controller's network namespace (the
//! testbed's submit host).

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};

use super::repo;

/// Held by the test that uses the testbed, for its whole length.
pub const TESTS_LOCK: &str = "/run/lock/portsynth-slurm-testbed-tests.lock";

pub fn script() -> PathBuf {
    repo().join("scripts/slurm-testbed")
}

/// Runs `scripts/slurm-testbed ARGS`; panics with its output when it fails.
pub fn testbed_ok(args: &[&str]) -> String {
    let output = Command::new(script()).args(args).output().unwrap();
    assert!(output.status.success(), "slurm-testbed {args:?} failed: {}", super::dump(&output));
    String::from_utf8(output.stdout).unwrap()
}

/// The `KEY=VALUE` lines of `up`/`env`.
pub fn parse_env(text: &str) -> BTreeMap<String, String> {
    text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// Takes the tests' lock (waiting for another test to finish with the
/// testbed).
pub fn lock() -> Flock<File> {
    std::fs::create_dir_all(Path::new(TESTS_LOCK).parent().unwrap()).unwrap();
    let file = File::create(TESTS_LOCK).unwrap();
    Flock::lock(file, FlockArg::LockExclusive).unwrap_or_else(|_| panic!("cannot lock {TESTS_LOCK}"))
}

/// A testbed that is up, for the holder of the tests' lock.
pub struct Testbed {
    pub conf: PathBuf,
    pub nodes: Vec<String>,
    pub state_dir: PathBuf,
    /// The controller's network namespace (a file for `nsenter --net`).
    pub submit_netns: PathBuf,
    _lock: Flock<File>,
}

impl Testbed {
    /// Takes the lock and brings the testbed up with `nodes` nodes, or
    /// reuses it when it is already up with as many.
    pub fn acquire(nodes: usize) -> Testbed {
        let lock = lock();
        Testbed::up(nodes, lock)
    }

    /// Brings the testbed up (or reuses it) under a lock already taken.
    pub fn up(nodes: usize, lock: Flock<File>) -> Testbed {
        let env = parse_env(&testbed_ok(&["up", "--nodes", &nodes.to_string()]));
        let get = |key: &str| env.get(key).unwrap_or_else(|| panic!("slurm-testbed up printed no {key}=")).clone();
        Testbed {
            conf: PathBuf::from(get("SLURM_CONF")),
            nodes: get("NODES").split(',').map(String::from).collect(),
            state_dir: PathBuf::from(get("STATE_DIR")),
            submit_netns: PathBuf::from(get("SUBMIT_NETNS")),
            _lock: lock,
        }
    }

    /// A Slurm command (`sbatch`, `srun`, `squeue`, `sacct`, …) run on the
    /// submit host: in the controller's network namespace, with SLURM_CONF.
    pub fn command(&self, program: &str) -> Command {
        let mut command = Command::new("nsenter");
        command.arg(format!("--net={}", self.submit_netns.display())).arg(program).env("SLURM_CONF", &self.conf);
        command
    }

    pub fn output(&self, program: &str, args: &[&str]) -> Output {
        self.command(program).args(args).output().unwrap()
    }

    /// Runs a Slurm command and returns its stdout; panics when it fails.
    pub fn run_ok(&self, program: &str, args: &[&str]) -> String {
        let output = self.output(program, args);
        assert!(output.status.success(), "{program} {args:?} failed: {}", super::dump(&output));
        String::from_utf8(output.stdout).unwrap()
    }

    /// `sbatch --parsable ARGS`: the job id.
    pub fn sbatch(&self, args: &[&str]) -> u64 {
        let mut all = vec!["--parsable"];
        all.extend_from_slice(args);
        parse_job_id(&self.run_ok("sbatch", &all))
    }

    /// `sbatch --parsable --wait ARGS`: the job id and sbatch's output
    /// (its exit status is the job's).
    pub fn sbatch_wait(&self, args: &[&str]) -> (u64, Output) {
        let mut all = vec!["--parsable", "--wait"];
        all.extend_from_slice(args);
        let output = self.output("sbatch", &all);
        (parse_job_id(&String::from_utf8_lossy(&output.stdout)), output)
    }

    /// Every accounting record of a job's allocation, oldest first (`sacct
    /// -X -D`: one per run of a requeued job), each field name to value.
    pub fn sacct_attempts(&self, job: u64) -> Vec<BTreeMap<String, String>> {
        let text = self.run_ok("sacct", &["-X", "-D", "-n", "-P", "-j", &job.to_string(), "-o", SACCT_FIELDS]);
        text.lines()
            .map(|line| SACCT_FIELDS.split(',').map(String::from).zip(line.split('|').map(String::from)).collect())
            .collect()
    }

    /// The latest accounting record of a job (`sacct -X`) once slurmdbd has
    /// it in a final state (COMPLETED, FAILED, NODE_FAIL, …); panics after
    /// `timeout`.
    pub fn sacct(&self, job: u64, timeout: Duration) -> BTreeMap<String, String> {
        self.wait_sacct(job, timeout, |attempts| {
            attempts.last().filter(|r| !matches!(r["State"].as_str(), "PENDING" | "RUNNING" | "REQUEUED")).cloned()
        })
    }

    /// Every run of the job once the last of them is in `state` (`sacct -X
    /// -D`); panics after `timeout`.
    pub fn runs_ending(&self, job: u64, state: &str, timeout: Duration) -> Vec<BTreeMap<String, String>> {
        self.wait_sacct(job, timeout, |runs| runs.last().filter(|r| r["State"] == state).map(|_| runs.to_vec()))
    }

    /// Waits until `accept` finds what it wants in the job's accounting
    /// records (`sacct_attempts`); panics after `timeout`.
    pub fn wait_sacct<T>(
        &self,
        job: u64,
        timeout: Duration,
        accept: impl Fn(&[BTreeMap<String, String>]) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            let attempts = self.sacct_attempts(job);
            if let Some(found) = accept(&attempts) {
                return found;
            }
            assert!(Instant::now() < deadline, "sacct of job {job} after {timeout:?}: {attempts:?}");
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The job's line in slurmctld's job completion log (`jobcomp/filetxt`:
    /// `JobId=… Name=… JobState=… NodeList=…`), field name to value, once
    /// it is there; panics after `timeout`. Unlike sacct's, its `Name` is
    /// always the job's: slurmdbd records a job that ended before its start
    /// reached the database under the name "allocation".
    pub fn jobcomp(&self, job: u64, timeout: Duration) -> BTreeMap<String, String> {
        let deadline = Instant::now() + timeout;
        let prefix = format!("JobId={job} ");
        loop {
            let log = std::fs::read_to_string(self.state_dir.join("jobcomp.log")).unwrap_or_default();
            if let Some(line) = log.lines().rfind(|l| l.starts_with(&prefix)) {
                return line
                    .split(' ')
                    .filter_map(|field| field.split_once('='))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect();
            }
            assert!(Instant::now() < deadline, "no line of job {job} in jobcomp.log after {timeout:?}");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The job's state in the queue (`squeue -h -j JOB -o %T`: `PENDING`,
    /// `RUNNING`, …; empty once it has left the queue).
    pub fn job_state(&self, job: u64) -> String {
        let output = self.output("squeue", &["-h", "-j", &job.to_string(), "-o", "%T"]);
        String::from_utf8_lossy(&output.stdout).trim().to_string()
    }

    /// Waits until the job is in state `state`; panics after `timeout`.
    pub fn wait_job_state(&self, job: u64, state: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let now = self.job_state(job);
            if now == state {
                return;
            }
            assert!(Instant::now() < deadline, "job {job} still {now:?}, not {state}, after {timeout:?}");
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// The node's state as `sinfo -h -N -n NODE -o %T` prints it (`idle`,
    /// `idle*` for not responding, `down*`, …).
    pub fn node_state(&self, node: &str) -> String {
        self.run_ok("sinfo", &["-h", "-N", "-n", node, "-o", "%T"]).trim().to_string()
    }

    /// Waits until `accept(state)` for the node's state; returns it and the
    /// time it took; panics after `timeout`.
    pub fn wait_node_state(&self, node: &str, timeout: Duration, accept: impl Fn(&str) -> bool) -> (String, Duration) {
        let start = Instant::now();
        loop {
            let state = self.node_state(node);
            if accept(&state) {
                return (state, start.elapsed());
            }
            assert!(start.elapsed() < timeout, "{node} still {state:?} after {timeout:?}");
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// `scripts/slurm-testbed kill-node NODE`: its slurmd and its job steps
    /// killed with SIGKILL, as a crashed machine.
    pub fn kill_node(&self, node: &str) {
        testbed_ok(&["kill-node", node]);
    }

    /// `scripts/slurm-testbed start-node NODE` (returns once it is back).
    pub fn start_node(&self, node: &str) {
        testbed_ok(&["start-node", node]);
    }

    /// The network namespace of `name` (`ctl` or a node) as
    /// `/proc/PID/ns/net` reads: `net:[INODE]`.
    pub fn netns_id(&self, name: &str) -> String {
        let pid = std::fs::read_to_string(self.state_dir.join(format!("netns/{name}.pid"))).unwrap();
        std::fs::read_link(format!("/proc/{}/ns/net", pid.trim())).unwrap().to_string_lossy().into_owned()
    }

    /// The network namespace of the controller and of every node.
    pub fn netns_ids(&self) -> Vec<String> {
        std::iter::once("ctl").chain(self.nodes.iter().map(String::as_str)).map(|n| self.netns_id(n)).collect()
    }

    /// Tears the testbed down (`scripts/slurm-testbed down`) and releases
    /// the lock.
    pub fn down(self) {
        testbed_ok(&["down"]);
    }
}

/// The fields of `Testbed::sacct_attempts`' records.
pub const SACCT_FIELDS: &str = "JobID,JobName,State,NodeList,ExitCode,Start,End,Elapsed";

fn parse_job_id(text: &str) -> u64 {
    let first = text.lines().next().unwrap_or("").split(';').next().unwrap_or("").trim();
    first.parse().unwrap_or_else(|_| panic!("no job id in sbatch's output {text:?}"))
}

/// Expands a Slurm host list (`node[1-3,5],other`) into names.
pub fn expand_nodelist(list: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = list.trim();
    while !rest.is_empty() {
        let (item, tail) = split_top(rest);
        rest = tail;
        match item.split_once('[') {
            Some((prefix, ranges)) => {
                for range in ranges.trim_end_matches(']').split(',') {
                    let (lo, hi) = range.split_once('-').unwrap_or((range, range));
                    let width = lo.len();
                    let (lo, hi): (u64, u64) = (lo.parse().unwrap(), hi.parse().unwrap());
                    names.extend((lo..=hi).map(|i| format!("{prefix}{i:0width$}")));
                }
            }
            None => names.push(item.to_string()),
        }
    }
    names
}

/// The first item of a host list (up to a comma outside brackets) and the rest.
fn split_top(list: &str) -> (&str, &str) {
    let mut depth = 0;
    for (i, c) in list.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth -= 1,
            ',' if depth == 0 => return (&list[..i], &list[i + 1..]),
            _ => {}
        }
    }
    (list, "")
}

/// The live (not zombie) processes in the network namespace `id`
/// (`net:[INODE]`), as `pid: command line`.
pub fn processes_in_netns(id: &str) -> Vec<String> {
    let wanted = id;
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        let zombie = std::fs::read_to_string(entry.path().join("stat"))
            .map(|stat| stat.rsplit_once(") ").map(|(_, rest)| rest.starts_with('Z')).unwrap_or(false))
            .unwrap_or(true);
        if !zombie
            && std::fs::read_link(entry.path().join("ns/net")).map(|l| l.to_string_lossy() == wanted).unwrap_or(false)
        {
            let cmdline = String::from_utf8_lossy(&std::fs::read(entry.path().join("cmdline")).unwrap_or_default())
                .replace('\0', " ");
            found.push(format!("{name}: {cmdline}"));
        }
    }
    found
}

/// The pids of the running (not zombie) processes whose name is one of the
/// testbed's daemons.
pub fn daemon_pids() -> std::collections::BTreeSet<String> {
    const DAEMONS: &[&str] = &["munged", "mariadbd", "slurmdbd", "slurmctld", "slurmd", "slurmstepd"];
    let mut found = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.chars().all(|c| c.is_ascii_digit()) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        let comm = &stat[open + 1..close];
        let state = stat[close + 1..].split_whitespace().next().unwrap_or("");
        if DAEMONS.contains(&comm) && state != "Z" {
            found.insert(format!("{name} {comm}"));
        }
    }
    found
}

/// The names of the host's network links (`ip -o link`).
pub fn host_links() -> Vec<String> {
    let output = Command::new("ip").args(["-o", "link", "show"]).output().unwrap();
    assert!(output.status.success());
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| l.split(':').nth(1).map(|n| n.trim().to_string()))
        .collect()
}
