//! The Slurm executor: each build one `sbatch` job, watched from the
//! coordinator through Slurm's own commands, its package handed back
//! through an outbox on shared storage.
//!
//! **Why Slurm's CLI.** Slurm already allocates cores and memory per job,
//! orders its queue, notices lost nodes and requeues their jobs, and keeps
//! accounts; portsynth asks it in its machine-readable forms (`sbatch
//! --parsable`, `squeue -h -o`, `sacct -X -n -P`, `scancel`, see
//! [`super::slurm_cli`]) instead of growing a cluster protocol of its own.
//! `command_prefix` puts words before every one of them (the testbed's
//! submit host is a network namespace: `nsenter --net=…`).
//!
//! **One job per build.** `--cpus-per-task` is the make jobs the scheduler
//! chose (at most the CPUs of the partition's largest node, from `sinfo` at
//! the start: a larger job would never run), `--mem` its expected peak memory, `--time` twice the sum of the
//! requested phases' timeouts (the runner may build once more on disk) plus
//! [`SETUP_MINUTES`]. Priority is `--nice`, not `--priority`: setting a
//! priority needs Slurm operator rights, a positive nice value any user may
//! set, and it lowers the job's priority under both `priority/basic` and
//! `priority/multifactor`. The nice value is how far (in seconds, at most
//! [`MAX_NICE`]) the port's critical path is behind the longest of the run
//! — the first port the scheduler starts, whose chain is the longest — so
//! that among pending jobs Slurm starts the long chains first, as the
//! scheduler's own queue does. The job runs `portsynth slurm-job SPEC` (see
//! [`super::job`]); `--requeue` lets Slurm run it again elsewhere when its
//! node is lost. Where Slurm does not (the cluster's `JobRequeue=0`, a
//! requeue limit, `--no-requeue` in `sbatch_args`), a job that ends
//! `NODE_FAIL` or `BOOT_FAIL` without an outcome from its node is submitted
//! again, up to [`MAX_RESUBMITS`] times, into the same outbox.
//!
//! **Identity.** Every job is named `portsynth:ORIGIN` and carries the
//! comment `portsynth base=BUILD_BASE run=RUN`: a coordinator killed with
//! kill -9 leaves jobs that the next run on the same build base (exactly
//! that path; the build-base lock makes it the only coordinator there)
//! finds in `squeue` and cancels before it submits anything
//! ([`SlurmExecutor::cancel_orphans`]). Cancelling rather than adopting: an
//! orphan's outcome would arrive for a plan the new run did not make.
//!
//! **Watching.** Each build's worker thread polls its job once a second
//! (one `squeue --me` a second for all the run's jobs, shared by the
//! workers through a [`Board`]; `sacct` once the job has left squeue), the
//! outbox's progress file (the phase for the display) and the node's log,
//! whose new bytes it appends to the build's log in `logs_dir` (bounded),
//! so `logs -f` and `monitor` follow a Slurm build as a local one. A job that
//! leaves RUNNING for PENDING was requeued: the coordinator notes the lost
//! node, and the note goes into the build's log and its reason (the
//! `build_end` event and the summary logs show it). When the job has ended,
//! its outcome is read from the outbox as untrusted input, the log's
//! Slurm section written (every run from `sacct -D`), and a successful build's package verified and
//! placed exactly as a local build's; the outbox is removed (its files,
//! never recursively).
//!
//! **Cancelling.** The second Ctrl-C fires the [`Cancel`]: the worker runs
//! `scancel` and waits until the job has ended; slurmstepd's SIGTERM makes
//! the node's runner kill its sandbox and remove its slot.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use super::job::{JobSpec, NodeOutcome, NodeProgress, RequestSpec, OUTCOME, SPEC};
use super::slurm_cli::{self, JobRequest, JobState, JobStatus};
use super::Executor;
use crate::config::Config;
use crate::sandbox::runner::{
    clear_files, deliver_package, package_file_name, BuildOutcome, Cancel, OutcomeStatus, Progress, SandboxRequest,
};

/// How often a build's job and progress are polled.
const POLL: Duration = Duration::from_secs(1);
/// How often a job is polled once its node has written the outcome.
const ENDING_POLL: Duration = Duration::from_millis(100);
/// How many times a build whose node failed is submitted again when Slurm
/// does not requeue it.
pub const MAX_RESUBMITS: u32 = 2;
/// `--time` beyond the phases' timeouts: the sandbox's setup and teardown,
/// a node's start of the job.
pub const SETUP_MINUTES: u64 = 10;
/// The largest `--nice` (seconds of critical path behind the longest).
pub const MAX_NICE: u32 = 100_000;
/// How long a cancelled job may take to end: slurmstepd's SIGKILL follows
/// SIGTERM after `KillWait` (30 s by default).
const CANCEL_WAIT: Duration = Duration::from_secs(90);
/// Polls in a row whose `squeue` and `sacct` both failed before the job
/// counts as lost to the coordinator (and is cancelled).
const MAX_POLL_FAILURES: u32 = 60;
/// The job name's prefix.
const NAME_PREFIX: &str = "portsynth:";
/// Room for the runner's header and footer around a log's capped output.
const LOG_MARGIN: u64 = 1 << 20;

pub struct SlurmExecutor<'a> {
    config: &'a Config,
    /// The portsynth binary as the nodes see it.
    binary: PathBuf,
    run: String,
    /// The longest critical path submitted so far (ms): nice 0.
    longest_chain_ms: AtomicU64,
    /// The most CPUs one node (of the partition) has: no job asks for more.
    largest_node_cpus: u32,
    /// Where this run's jobs are, from one `squeue` for all of them.
    board: std::sync::Mutex<Board>,
}

/// The jobs the workers watch and the last `squeue` of them all: however
/// many builds run, slurmctld answers one `squeue` per [`POLL`], not one per
/// build (a cluster's admins count those).
#[derive(Default)]
struct Board {
    /// Each watched job and when it was submitted (a snapshot taken before
    /// then cannot know it).
    watched: std::collections::HashMap<u64, Instant>,
    snapshot: std::collections::HashMap<u64, JobStatus>,
    taken: Option<Instant>,
}

impl Board {
    /// The snapshot is young and was taken after `job` was submitted.
    fn knows(&self, job: u64) -> bool {
        let submitted = self.watched.get(&job).copied();
        self.taken.is_some_and(|taken| taken.elapsed() < POLL && submitted.is_some_and(|s| taken >= s))
    }
}

impl<'a> SlurmExecutor<'a> {
    pub fn new(config: &'a Config, helper: PathBuf, run: &str) -> Result<SlurmExecutor<'a>> {
        // The nodes mount the repository read-only and never create it.
        let all = config.packages_dir.join(crate::repo::index::ALL_DIR);
        for dir in [&config.slurm.outbox_dir, &all] {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let mut executor = SlurmExecutor {
            config,
            binary: config.slurm.binary.clone().unwrap_or(helper),
            run: run.to_string(),
            longest_chain_ms: AtomicU64::new(0),
            largest_node_cpus: u32::MAX,
            board: Default::default(),
        };
        executor.largest_node_cpus = executor.largest_node()?;
        Ok(executor)
    }

    /// The most CPUs of a node of the partition (`sinfo`).
    fn largest_node(&self) -> Result<u32> {
        let mut args: Vec<String> = ["-h", "-N", "-o", "%c"].map(String::from).to_vec();
        if let Some(partition) = &self.config.slurm.partition {
            args.push(format!("--partition={partition}"));
        }
        let text = self.slurm("sinfo", &args)?;
        slurm_cli::parse_largest_node(&text).context("sinfo lists no node to build on")
    }

    fn comment(&self) -> String {
        slurm_cli::job_comment(&self.config.build_base, &self.run)
    }

    /// A job of an earlier run on this build base.
    fn is_orphan(&self, job: &slurm_cli::QueuedJob) -> bool {
        let base = self.config.build_base.to_string_lossy();
        job.name.starts_with(NAME_PREFIX)
            && slurm_cli::parse_job_comment(&job.comment).is_some_and(|(b, run)| b == base && run != self.run)
    }

    /// A Slurm command through `command_prefix`.
    fn command(&self, program: &str) -> Command {
        let prefix = &self.config.slurm.command_prefix;
        let mut command = match prefix.first() {
            Some(first) => {
                let mut command = Command::new(first);
                command.args(&prefix[1..]).arg(program);
                command
            }
            None => Command::new(program),
        };
        command.stdin(std::process::Stdio::null());
        command
    }

    /// Runs a Slurm command; its stdout, or an error with its stderr.
    fn slurm(&self, program: &str, args: &[String]) -> Result<String> {
        let output = self.command(program).args(args).output().with_context(|| format!("cannot run {program}"))?;
        if !output.status.success() {
            bail!(
                "{program} {} failed ({}): {}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// Cancels the jobs of earlier runs on this build base that are still
    /// queued or running (their coordinator was killed), waits until they
    /// have ended, and removes their outboxes. Returns a notice per job.
    pub fn cancel_orphans(&self) -> Result<Vec<String>> {
        let queue = self.slurm("squeue", &["-h".into(), "-o".into(), slurm_cli::QUEUE_FORMAT.into()])?;
        let orphans: Vec<_> = slurm_cli::parse_queue(&queue).into_iter().filter(|job| self.is_orphan(job)).collect();
        let mut notices = Vec::new();
        for job in &orphans {
            self.slurm("scancel", &[job.id.to_string()])
                .with_context(|| format!("cancelling job {} ({}) of an earlier run", job.id, job.name))?;
            let run = slurm_cli::parse_job_comment(&job.comment).map_or("?", |(_, run)| run);
            notices.push(format!(
                "slurm: cancelled job {} ({}, {}) of an earlier run on this build base (run {run})",
                job.id,
                job.name.trim_start_matches(NAME_PREFIX),
                job.state.to_lowercase(),
            ));
        }
        for job in &orphans {
            self.wait_ended(job.id)?;
            self.forget(job.id);
        }
        self.remove_stale_outboxes();
        Ok(notices)
    }

    /// The outboxes of other runs (their jobs have ended): files removed,
    /// then the directory; never recursively.
    fn remove_stale_outboxes(&self) {
        let Ok(entries) = std::fs::read_dir(&self.config.slurm.outbox_dir) else { return };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.file_type().is_ok_and(|t| t.is_dir()) && !name.starts_with(&self.run) {
                let _ = clear_files(&entry.path());
                let _ = std::fs::remove_dir(entry.path());
            }
        }
    }

    /// Waits until the job has ended; an error after [`CANCEL_WAIT`].
    fn wait_ended(&self, job: u64) -> Result<JobStatus> {
        let deadline = Instant::now() + CANCEL_WAIT;
        loop {
            let status = self.status(job)?;
            if matches!(status.state, JobState::Ended(_)) {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("job {job} still {} {} s after scancel", state_name(&status.state), CANCEL_WAIT.as_secs());
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Where the job is: squeue's view while it lists the job (from the
    /// [`Board`]), else the last run of sacct's.
    fn status(&self, job: u64) -> Result<JobStatus> {
        if let Some(status) = self.queued(job) {
            return Ok(status);
        }
        self.last_run(job)
    }

    /// The job's last run, from accounting (it has left squeue).
    fn last_run(&self, job: u64) -> Result<JobStatus> {
        self.runs(job)?.pop().with_context(|| format!("neither squeue nor sacct knows job {job}"))
    }

    /// Where the job is now: its own `squeue -j`, else sacct.
    fn status_now(&self, job: u64) -> Result<JobStatus> {
        let args = ["-h", "-j", &job.to_string(), "-o", slurm_cli::STATUS_FORMAT].map(String::from);
        // squeue fails with "Invalid job id" once the job has aged out of it.
        if let Some(status) = self.slurm("squeue", &args).ok().and_then(|text| slurm_cli::parse_status(&text)) {
            return Ok(status);
        }
        self.last_run(job)
    }

    /// The job as the board's snapshot has it, the snapshot refreshed by one
    /// `squeue` of all this user's jobs when it is older than [`POLL`] or
    /// older than the job.
    fn queued(&self, job: u64) -> Option<JobStatus> {
        let mut board = self.board.lock().unwrap_or_else(|e| e.into_inner());
        board.watched.entry(job).or_insert_with(Instant::now);
        if !board.knows(job) {
            let taken = Instant::now();
            let args = ["-h", "--me", "-o", slurm_cli::BOARD_FORMAT].map(String::from);
            let text = self.slurm("squeue", &args).ok()?;
            let mut snapshot = slurm_cli::parse_board(&text);
            snapshot.retain(|id, _| board.watched.contains_key(id));
            board.snapshot = snapshot;
            board.taken = Some(taken);
        }
        board.snapshot.get(&job).cloned()
    }

    /// The job is no longer watched (its build ended).
    fn forget(&self, job: u64) {
        let mut board = self.board.lock().unwrap_or_else(|e| e.into_inner());
        board.watched.remove(&job);
        board.snapshot.remove(&job);
    }

    /// Every run of the job, from accounting.
    fn runs(&self, job: u64) -> Result<Vec<JobStatus>> {
        let args = ["-X", "-D", "-n", "-P", "-j", &job.to_string(), "-o", slurm_cli::SACCT_FIELDS].map(String::from);
        slurm_cli::parse_sacct(&self.slurm("sacct", &args)?).with_context(|| format!("accounting of job {job}"))
    }

    /// The job ended because its node failed, without an outcome from the
    /// node, and Slurm will not run it again (`--no-requeue`, the cluster's
    /// `JobRequeue=0`, or its requeue limit): the state and node, for a
    /// resubmission.
    fn lost_without_requeue(&self, job: u64, request: &SandboxRequest, outbox: &Outbox) -> Option<String> {
        let status = self.status(job).ok()?;
        let JobState::Ended(state) = &status.state else { return None };
        let node_failed = matches!(state.as_str(), "NODE_FAIL" | "BOOT_FAIL");
        let no_outcome = matches!(NodeOutcome::read(&outbox.local, request), Ok(None));
        (node_failed && no_outcome).then(|| format!("{state} on {}", status.nodes))
    }

    /// `--nice` of a port whose critical path is `chain_ms` (none: 0).
    fn nice(&self, chain_ms: Option<u64>) -> u32 {
        let Some(chain) = chain_ms else { return 0 };
        let longest = self.longest_chain_ms.fetch_max(chain, Ordering::Relaxed).max(chain);
        nice_behind(longest, chain)
    }

    /// `--time` in minutes.
    fn time_minutes(&self, request: &SandboxRequest) -> u64 {
        time_limit_minutes(request.phases.iter().map(|p| self.config.phase_timeout(*p)).sum())
    }

    fn submit(&self, request: &SandboxRequest, outbox: &Outbox) -> Result<u64> {
        let slurm = &self.config.slurm;
        let spec = JobSpec {
            config: slurm.config.clone(),
            profile: self.config.profile.clone(),
            ports_dir: slurm.ports_dir.clone(),
            packages_dir: slurm.packages_dir.clone(),
            distfiles_dir: slurm.distfiles_dir.clone(),
            build_base: slurm.node_build_base.clone(),
            outbox: outbox.node.clone(),
            request: RequestSpec::of(request),
        };
        let spec_file = outbox.local.join(SPEC);
        std::fs::write(&spec_file, serde_json::to_vec_pretty(&spec)?)
            .with_context(|| format!("cannot write {}", spec_file.display()))?;
        let name = format!("{NAME_PREFIX}{}", request.origin);
        let comment = self.comment();
        let node_spec = outbox.node.join(SPEC);
        let binary = self.binary.to_string_lossy();
        let job = JobRequest {
            name: &name,
            comment: &comment,
            cpus: request.make_jobs,
            memory_mib: request.expected_memory.map(slurm_cli::mebibytes),
            time_minutes: self.time_minutes(request),
            nice: self.nice(request.critical_path_ms),
            partition: slurm.partition.as_deref(),
            constraint: slurm.constraint.as_deref(),
            output: &outbox.node.join("slurm-%j.out"),
            chdir: &outbox.node,
            extra: &slurm.sbatch_args,
            script: slurm_cli::exec_line(&[&binary, "slurm-job", &node_spec.to_string_lossy()]),
        };
        let stdout = self.slurm("sbatch", &slurm_cli::sbatch_args(&job))?;
        let id = slurm_cli::parse_job_id(&stdout)?;
        // Only a snapshot taken from now on can list it.
        self.board.lock().unwrap_or_else(|e| e.into_inner()).watched.insert(id, Instant::now());
        Ok(id)
    }

    /// Polls the job until it has ended, reporting its phase; scancels it
    /// when `cancel` fires.
    fn watch(
        &self,
        job: u64,
        outbox: &Outbox,
        log: &mut LogMirror,
        progress: &dyn Fn(Progress),
        cancel: &Cancel,
    ) -> Result<Watched> {
        let mut watched = Watched { cancelled: false, notes: vec![], node: None };
        let mut shown = NodeProgress::default();
        let mut failures = 0;
        loop {
            // The node has written its outcome: the job is about to end, so
            // it is asked about directly and often rather than through the
            // board's snapshot, which would see the end up to a poll late.
            let ending = outbox.local.join(OUTCOME).exists();
            if cancel.wait(if ending { ENDING_POLL } else { POLL }) {
                self.slurm("scancel", &[job.to_string()]).with_context(|| format!("cancelling job {job}"))?;
                let status = self.wait_ended(job)?;
                watched.cancelled = true;
                watched.notes.push(format!("job {job} cancelled ({})", state_name(&status.state)));
                return Ok(watched);
            }
            log.pump()?;
            if let Some(now) = NodeProgress::read(&outbox.local) {
                if now.phase != shown.phase {
                    if let Some(phase) = now.phase {
                        progress(Progress::Phase(phase));
                    }
                }
                if now.lines != shown.lines {
                    progress(Progress::Lines(now.lines));
                }
                shown = now;
            }
            let status = match if ending { self.status_now(job) } else { self.status(job) } {
                Ok(status) => {
                    failures = 0;
                    status
                }
                // slurmctld busy or restarting: Slurm's commands time out now and then.
                Err(_) if failures < MAX_POLL_FAILURES => {
                    failures += 1;
                    continue;
                }
                Err(e) => return Err(e).with_context(|| format!("job {job} of {}", outbox.origin)),
            };
            match status.state {
                JobState::Running if !status.nodes.is_empty() => {
                    // Requeued and started elsewhere between two polls.
                    if watched.node.as_ref().is_some_and(|node| *node != status.nodes) {
                        let lost = watched.node.take().unwrap_or_default();
                        watched.notes.push(format!("job {job} lost its node {lost}; Slurm requeued it"));
                    }
                    watched.node = Some(status.nodes);
                }
                JobState::Running => {}
                JobState::Pending => {
                    if let Some(lost) = watched.node.take() {
                        watched.notes.push(format!("job {job} lost its node {lost}; Slurm requeued it"));
                        // The next run starts from the beginning.
                        shown = NodeProgress::default();
                    }
                }
                JobState::Ended(_) => return Ok(watched),
            }
        }
    }

    /// The build's outcome from its outbox, its log in `logs_dir`, its
    /// package verified and placed.
    fn collect(
        &self,
        job: u64,
        request: &SandboxRequest,
        outbox: &Outbox,
        log: LogMirror,
        watched: &Watched,
    ) -> Result<BuildOutcome> {
        let config = self.config;
        let log_path = log.path.clone();
        let runs = self.runs(job).unwrap_or_default();
        let node_outcome = NodeOutcome::read(&outbox.local, request);
        let mut trail = watched.notes.clone();
        // slurmdbd may not have the last run's end yet: this is what it knew.
        trail.push(format!("job {job}: {} (accounting)", describe_runs(&runs)));
        let mut outcome = match node_outcome {
            Ok(Some(node)) => node.into_outcome(log_path.clone()),
            Ok(None) => no_outcome(job, &runs, request, log_path.clone()),
            Err(e) => {
                BuildOutcome { reason: Some(format!("{e:#}")), ..no_outcome(job, &runs, request, log_path.clone()) }
            }
        };
        if watched.cancelled {
            outcome.status = OutcomeStatus::Interrupted;
            outcome.reason.get_or_insert_with(|| "interrupted by the operator; Slurm job cancelled".into());
        }
        if outcome.status == OutcomeStatus::Success && request.phases.contains(&crate::ports::Phase::Package) {
            let file = outbox.local.join(package_file_name(config, &request.pkgname));
            match deliver_package(config, &file, request) {
                Ok(placed) => outcome.package = Some(placed),
                Err(e) => {
                    outcome.status = OutcomeStatus::Failed;
                    outcome.failed_phase = Some(crate::ports::Phase::Package);
                    outcome.reason = Some(format!("package from job {job}: {e:#}"));
                }
            }
        }
        if outcome.status == OutcomeStatus::Failed && request.keep_work_on_failure {
            outcome.kept_work = keep_work(&outbox.local, &config.logs_dir, &request.origin);
        }
        let requeues = watched.notes.iter().filter(|n| n.contains("requeued") || n.contains("resubmitted")).count();
        if requeues > 0 && outcome.status == OutcomeStatus::Success {
            let note = watched.notes.join("; ");
            outcome.reason = Some(match outcome.reason.take() {
                Some(reason) => format!("{reason}; {note}"),
                None => note,
            });
        }
        log.finish(&outbox.local, &trail, &outcome)?;
        Ok(outcome)
    }
}

impl Executor for SlurmExecutor<'_> {
    fn build(&self, request: &SandboxRequest, progress: &dyn Fn(Progress), cancel: &Cancel) -> Result<BuildOutcome> {
        // More make jobs than any node has cores would never be scheduled:
        // the build gets a whole node's worth (its outcome says so).
        let fitted;
        let request = if request.make_jobs > self.largest_node_cpus {
            fitted = SandboxRequest { make_jobs: self.largest_node_cpus, ..request.clone() };
            &fitted
        } else {
            request
        };
        let outbox = Outbox::create(&self.config.slurm, &self.run, request)?;
        let job = match self.submit(request, &outbox) {
            Ok(job) => job,
            Err(e) => {
                outbox.remove();
                return Err(e).with_context(|| format!("submitting {}", request.origin));
            }
        };
        let log = LogMirror::create(request, &outbox.local, &self.config.logs_dir, self.config.max_log_size);
        let mut current = job;
        let result = log.and_then(|mut log| {
            let mut notes = Vec::new();
            for resubmits in 0.. {
                let mut watched = self.watch(current, &outbox, &mut log, progress, cancel)?;
                watched.notes.splice(0..0, notes.drain(..));
                let lost = (!watched.cancelled && resubmits < MAX_RESUBMITS)
                    .then(|| self.lost_without_requeue(current, request, &outbox))
                    .flatten();
                let Some(lost) = lost else { return self.collect(current, request, &outbox, log, &watched) };
                let next = self.submit(request, &outbox).with_context(|| format!("resubmitting {}", request.origin))?;
                notes = watched.notes;
                notes.push(format!(
                    "job {current} ended {lost} and Slurm did not requeue it; resubmitted as job {next}"
                ));
                self.forget(current);
                current = next;
            }
            unreachable!("the resubmissions are bounded")
        });
        if result.is_err() {
            // Whatever went wrong here, no job of ours goes on unwatched.
            let _ = self.slurm("scancel", &[current.to_string()]);
        }
        outbox.remove();
        self.forget(current);
        result.with_context(|| format!("Slurm job {current} of {}", request.origin))
    }
}

/// What watching a job saw.
struct Watched {
    cancelled: bool,
    /// What happened to the job besides running once (requeues, cancel).
    notes: Vec<String>,
    /// The node it runs on now.
    node: Option<String>,
}

/// One build's outbox: `outbox_dir/RUN-SLnn-STEM`, on the coordinator and
/// as the nodes see it.
struct Outbox {
    local: PathBuf,
    node: PathBuf,
    origin: String,
}

impl Outbox {
    fn create(slurm: &crate::config::SlurmSettings, run: &str, request: &SandboxRequest) -> Result<Outbox> {
        let name = format!("{run}-SL{:02}-{}", request.slot, request.origin.log_stem());
        let local = slurm.outbox_dir.join(&name);
        std::fs::create_dir_all(&local).with_context(|| format!("cannot create the outbox {}", local.display()))?;
        clear_files(&local)?;
        Ok(Outbox { local, node: slurm.node_outbox_dir.join(&name), origin: request.origin.to_string() })
    }

    fn remove(&self) {
        let _ = clear_files(&self.local);
        let _ = std::fs::remove_dir(&self.local);
    }
}

/// A job that ended without an outcome: failed, with what Slurm says.
fn no_outcome(job: u64, runs: &[JobStatus], request: &SandboxRequest, log_path: PathBuf) -> BuildOutcome {
    let reason = format!(
        "Slurm job {job} ended without an outcome ({}); see its output slurm-{job}.out in the log",
        describe_runs(runs)
    );
    BuildOutcome::failed_unmeasured(reason, Duration::ZERO, log_path, request.make_jobs, request.work_area)
}

/// Seconds of critical path behind the longest, at most [`MAX_NICE`].
fn nice_behind(longest_ms: u64, chain_ms: u64) -> u32 {
    (longest_ms.saturating_sub(chain_ms) / 1000).min(u64::from(MAX_NICE)) as u32
}

/// A job's time limit for phases whose timeouts add up to `phases`: twice
/// that (the runner may build once more on disk) plus [`SETUP_MINUTES`].
fn time_limit_minutes(phases: Duration) -> u64 {
    (2 * phases.as_secs()).div_ceil(60) + SETUP_MINUTES
}

fn state_name(state: &JobState) -> String {
    match state {
        JobState::Pending => "PENDING".into(),
        JobState::Running => "RUNNING".into(),
        JobState::Ended(name) => name.clone(),
    }
}

/// `NODE_FAIL on node1, COMPLETED on node3`.
pub fn describe_runs(runs: &[JobStatus]) -> String {
    if runs.is_empty() {
        return "no accounting record".into();
    }
    let each: Vec<String> = runs
        .iter()
        .map(|run| {
            let nodes = if run.nodes.is_empty() || run.nodes == "None assigned" { "no node" } else { &run.nodes };
            format!("{} on {nodes}", state_name(&run.state))
        })
        .collect();
    each.join(", ")
}

/// The node's log, copied into `logs_dir` as it grows, so that `logs -f`
/// and `monitor` follow a Slurm build as they follow a local one. At most
/// `max_log_size` plus [`LOG_MARGIN`] bytes of it (the runner's own cap
/// plus its header and footer): the outbox is not trusted to respect it. A
/// requeued job's node starts a new log (another file): the copy says so
/// and goes on with it.
struct LogMirror {
    source: PathBuf,
    path: PathBuf,
    target: std::fs::File,
    /// The node's log file being copied (inode and birth time: an inode
    /// number is soon reused) and how far.
    inode: Option<(u64, Option<std::time::SystemTime>)>,
    offset: u64,
    written: u64,
    limit: u64,
    cut: bool,
}

impl LogMirror {
    fn create(request: &SandboxRequest, outbox: &Path, logs_dir: &Path, max_log_size: u64) -> Result<LogMirror> {
        std::fs::create_dir_all(logs_dir).with_context(|| format!("cannot create {}", logs_dir.display()))?;
        let path = request.origin.log_file(logs_dir);
        let target = std::fs::File::create(&path).with_context(|| format!("cannot create log {}", path.display()))?;
        Ok(LogMirror {
            source: request.origin.log_file(outbox),
            path,
            target,
            inode: None,
            offset: 0,
            written: 0,
            limit: max_log_size + LOG_MARGIN,
            cut: false,
        })
    }

    /// Copies what the node's log has gained since the last call.
    fn pump(&mut self) -> Result<()> {
        use std::io::{Read, Seek, Write};
        use std::os::unix::fs::MetadataExt;
        let Ok(mut file) = crate::repo::fsutil::open_regular(&self.source, "log") else { return Ok(()) };
        let meta = file.metadata().with_context(|| format!("cannot stat {}", self.source.display()))?;
        // Another file, or one shorter than what was copied.
        let identity = (meta.ino(), meta.created().ok());
        if self.inode.is_some_and(|inode| inode != identity) || meta.len() < self.offset {
            writeln!(self.target, "\n*** the job runs again: the node's new log follows\n")?;
            self.offset = 0;
        }
        self.inode = Some(identity);
        let room = self.limit.saturating_sub(self.written);
        if room == 0 {
            if !self.cut {
                self.cut = true;
                writeln!(self.target, "\n*** the node's log was cut at {} bytes", self.limit)?;
            }
            return Ok(());
        }
        file.seek(std::io::SeekFrom::Start(self.offset))?;
        let copied = std::io::copy(&mut file.take(room), &mut self.target)
            .with_context(|| format!("cannot copy {} to {}", self.source.display(), self.path.display()))?;
        self.offset += copied;
        self.written += copied;
        Ok(())
    }

    /// The rest of the node's log (or, when the node wrote none, Slurm's
    /// output of the job), then what Slurm did.
    fn finish(mut self, outbox: &Path, trail: &[String], outcome: &BuildOutcome) -> Result<()> {
        use std::io::Write;
        self.pump()?;
        if self.inode.is_none() {
            if let Some(output) = slurm_output(outbox) {
                self.source = output;
                self.pump()?;
            }
        }
        writeln!(self.target, "\n=======================<slurm>============================")?;
        for line in trail {
            writeln!(self.target, "Slurm:    {line}")?;
        }
        if let Some(package) = &outcome.package {
            writeln!(self.target, "Placed:   {}", package.display())?;
        }
        Ok(())
    }
}

/// Slurm's own output file of the job (`slurm-ID.out`), if any.
fn slurm_output(outbox: &Path) -> Option<PathBuf> {
    std::fs::read_dir(outbox).ok()?.flatten().map(|e| e.path()).find(|p| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("slurm-") && n.to_string_lossy().ends_with(".out"))
    })
}

/// Moves the node's archive of the failed work area next to the log.
fn keep_work(outbox: &Path, logs_dir: &Path, origin: &crate::ports::Origin) -> Option<PathBuf> {
    let name = format!("{}.work.tar", origin.log_stem());
    let archive = outbox.join(&name);
    let meta = std::fs::symlink_metadata(&archive).ok()?;
    if !meta.is_file() {
        return None;
    }
    let kept = logs_dir.join(&name);
    if std::fs::rename(&archive, &kept).is_ok() {
        return Some(kept);
    }
    // Another file system: copy, then remove the outbox's copy.
    std::fs::copy(&archive, &kept).ok()?;
    let _ = std::fs::remove_file(&archive);
    Some(kept)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    #[test]
    fn the_board_answers_from_a_snapshot_younger_than_the_poll_and_the_job() {
        let mut board = Board::default();
        let before = Instant::now();
        board.watched.insert(7, before);
        assert!(!board.knows(7), "no snapshot yet");
        board.taken = Some(Instant::now());
        assert!(board.knows(7), "a fresh snapshot taken after the submission");
        board.watched.insert(8, Instant::now() + Duration::from_millis(1));
        assert!(!board.knows(8), "submitted after the snapshot: squeue must be asked again");
        assert!(!board.knows(9), "a job nobody watches");
        board.taken = Some(before - POLL);
        assert!(!board.knows(7), "older than the poll");
    }

    fn request() -> SandboxRequest {
        SandboxRequest {
            slot: 1,
            origin: crate::ports::Origin::parse("misc/hello").unwrap(),
            pkgname: "hello-1.0".into(),
            phases: vec![crate::ports::Phase::Build],
            dependencies: vec![],
            keep_work_on_failure: false,
            variant: vec![],
            bootstrap_pkg: false,
            make_jobs: 1,
            work_area: crate::sandbox::work_area::WorkArea::Tmpfs,
            expected_memory: None,
            critical_path_ms: None,
        }
    }

    #[test]
    fn the_nodes_log_is_followed_across_a_requeue_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let (outbox, logs) = (dir.path().join("outbox"), dir.path().join("logs"));
        std::fs::create_dir_all(&outbox).unwrap();
        let node_log = outbox.join("misc___hello.log");
        let mut mirror = LogMirror::create(&request(), &outbox, &logs, 100).unwrap();
        mirror.pump().unwrap();
        std::fs::write(&node_log, "first run\n").unwrap();
        mirror.pump().unwrap();
        std::fs::OpenOptions::new().append(true).open(&node_log).unwrap().write_all(b"more\n").unwrap();
        mirror.pump().unwrap();
        // A requeued run's node removes the old log and starts another.
        std::fs::remove_file(&node_log).unwrap();
        std::fs::write(&node_log, "second run\n").unwrap();
        mirror.pump().unwrap();
        let text = std::fs::read_to_string(logs.join("misc___hello.log")).unwrap();
        assert_eq!(text, "first run\nmore\n\n*** the job runs again: the node's new log follows\n\nsecond run\n");

        std::fs::write(&node_log, "x".repeat(LOG_MARGIN as usize + 500)).unwrap();
        let mut bounded = LogMirror::create(&request(), &outbox, &logs, 100).unwrap();
        bounded.pump().unwrap();
        bounded.pump().unwrap();
        bounded
            .finish(&outbox, &["job 7: COMPLETED on node1".into()], &no_outcome(7, &[], &request(), "x".into()))
            .unwrap();
        let text = std::fs::read_to_string(logs.join("misc___hello.log")).unwrap();
        assert!(text.starts_with(&"x".repeat(LOG_MARGIN as usize + 100)), "the allowed bytes are copied");
        assert!(text.contains("cut at"), "{}", &text[text.len() - 200..]);
        assert!(text.ends_with("Slurm:    job 7: COMPLETED on node1\n"), "{}", &text[text.len() - 200..]);
    }

    #[test]
    fn nice_is_the_seconds_behind_the_longest_chain() {
        assert_eq!(nice_behind(90_000, 90_000), 0);
        assert_eq!(nice_behind(90_000, 30_500), 59);
        assert_eq!(nice_behind(10, 20), 0, "a longer chain than the reference is not penalised");
        assert_eq!(nice_behind(u64::MAX, 0), MAX_NICE);
    }

    #[test]
    fn time_limits_cover_a_retry_on_disk_and_the_setup() {
        assert_eq!(time_limit_minutes(Duration::from_secs(600)), 20 + SETUP_MINUTES);
        assert_eq!(time_limit_minutes(Duration::from_secs(61)), 3 + SETUP_MINUTES);
        assert_eq!(time_limit_minutes(Duration::ZERO), SETUP_MINUTES);
    }

    #[test]
    fn runs_are_described_node_by_node() {
        let runs = slurm_cli::parse_sacct("7|NODE_FAIL|node1|0:0\n7|COMPLETED|node3|0:0\n").unwrap();
        assert_eq!(describe_runs(&runs), "NODE_FAIL on node1, COMPLETED on node3");
        let pending = slurm_cli::parse_sacct("8|CANCELLED by 0|None assigned|0:0\n").unwrap();
        assert_eq!(describe_runs(&pending), "CANCELLED on no node");
        assert_eq!(describe_runs(&[]), "no accounting record");
    }
}
