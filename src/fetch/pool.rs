//! The fetch pool: a coordinator thread and `fetch_jobs` worker threads, the
//! same shape as the build scheduler (`build::scheduler`).
//!
//! Fetching has no dependency order — a port's distfiles do not depend on
//! any other port's — so the queue is the build's [`DependencyQueue`] over a
//! work set without edges, ranked by plan order: every target is ready at
//! once, they leave in plan order, and a failed port stops nobody. Each worker owns one slot for its life and
//! handles one port at a time: first the present check in Rust (every
//! distfile present with distinfo's size and digests → done, no sandbox),
//! else the framework's fetch-only phases (`fetch`, and `checksum` where
//! it has one without dependencies) in a fresh sandbox.
//!
//! Retries belong to the coordinator: a failed attempt goes into a delayed
//! queue with exponential backoff (`fetch_retry_delay` × 2^(n-1)) and its
//! slot takes the next port meanwhile, so a flaky mirror never holds a slot
//! idle. The coordinator says what happens as events (`crate::events`);
//! the reporters show it and write the summary logs.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use crossbeam_channel::{select, unbounded, Receiver, Sender};

use super::distinfo::{Distfile, State};
use super::lock::DistfileLock;
use super::{attempt_log, failure};
use crate::build::interrupts::{Interrupt, Stop};
use crate::config::Config;
use crate::events::{Event, Events, FetchEnd, FetchProgress, FetchStatus, SlotStatus};
use crate::graph::NodeId;
use crate::ports::{Phase, PortTree};
use crate::queue::{DependencyQueue, Rank};
use crate::sandbox::runner::{build_one, Cancel, OutcomeStatus, Progress, SandboxRequest};

pub use crate::events::FailedFetch;

/// How often the header is refreshed when nothing happens.
const TICK: Duration = Duration::from_secs(1);

/// The shortest gap between two progress events.
const PROGRESS_GAP: Duration = Duration::from_millis(250);

/// The longest wait between two attempts, whatever the backoff says.
const MAX_DELAY: Duration = Duration::from_secs(300);

/// One port to fetch.
#[derive(Debug, Clone)]
pub struct Target {
    pub node: NodeId,
    pub distfiles: Vec<Distfile>,
}

/// Everything a fetch run needs.
pub struct FetchRun<'a> {
    pub config: &'a Config,
    pub tree: &'a PortTree,
    pub targets: Vec<Target>,
    pub events: &'a Events,
    pub helper: PathBuf,
    pub jobs: usize,
    pub interrupts: Receiver<Interrupt>,
}

/// What the run did with the ports it was given.
#[derive(Debug, Clone, Default)]
pub struct FetchTally {
    pub fetched: usize,
    pub present: usize,
    pub failed: usize,
    pub interrupted: usize,
    /// Ports never (re)tried because the run was stopped.
    pub not_started: usize,
}

pub struct FetchOutcome {
    pub stop: Stop,
    pub tally: FetchTally,
    pub failed: Vec<FailedFetch>,
    pub elapsed: Duration,
}

/// The per-port logs of fetch-only: `logs_dir/fetch/cat___port.log`, so a
/// fetch never overwrites the port's last build log.
pub fn fetch_logs_dir(config: &Config) -> PathBuf {
    config.logs_dir.join("fetch")
}

/// Total attempts of one port: the first plus `fetch_retries`.
pub fn max_attempts(config: &Config) -> u32 {
    config.fetch_retries.saturating_add(1)
}

/// The wait after failed attempt number `attempt` (1-based).
pub fn backoff(base: Duration, attempt: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(20));
    base.saturating_mul(factor).min(MAX_DELAY)
}

struct Job {
    node: NodeId,
    attempt: u32,
    request: SandboxRequest,
    distfiles: Vec<Distfile>,
}

/// How one attempt ended, as the worker saw it.
struct Attempt {
    status: OutcomeStatus,
    phase: Option<Phase>,
    reason: Option<String>,
    log: PathBuf,
}

enum Report {
    Notice(String),
    /// Every distfile is in the cache and intact: nothing started.
    Present {
        slot: u32,
        node: NodeId,
    },
    Started {
        slot: u32,
        node: NodeId,
    },
    Progress {
        slot: u32,
        progress: Progress,
    },
    Finished {
        slot: u32,
        node: NodeId,
        attempt: Attempt,
    },
}

/// Fetches every target (or until stopped) with `run.jobs` slots.
pub fn execute(run: FetchRun<'_>) -> Result<FetchOutcome> {
    let cancel = Arc::new(Cancel::new().context("cannot create the pipe that cancels fetches")?);
    let fetch_config = Config { logs_dir: fetch_logs_dir(run.config), ..run.config.clone() };
    let (report_tx, report_rx) = unbounded::<Report>();
    std::thread::scope(|scope| {
        let mut job_senders = Vec::new();
        for slot in 1..=run.jobs.max(1) as u32 {
            let (job_tx, job_rx) = unbounded::<Job>();
            job_senders.push(job_tx);
            let worker = Worker { config: &fetch_config, helper: &run.helper, slot, reports: report_tx.clone() };
            let cancel = cancel.clone();
            scope.spawn(move || worker.serve(job_rx, &cancel));
        }
        drop(report_tx);
        let mut coordinator = Coordinator::new(&run, job_senders, cancel.clone());
        coordinator.coordinate(&report_rx);
        Ok(coordinator.finish())
    })
}

struct Worker<'a> {
    config: &'a Config,
    helper: &'a Path,
    slot: u32,
    reports: Sender<Report>,
}

impl Worker<'_> {
    fn serve(&self, jobs: Receiver<Job>, cancel: &Cancel) {
        for job in jobs {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.handle(&job, cancel)))
                .unwrap_or_else(|_| Some(self.crashed(&job, "the fetch worker panicked")));
            let Some(attempt) = result else { continue };
            if self.reports.send(Report::Finished { slot: self.slot, node: job.node, attempt }).is_err() {
                return;
            }
        }
    }

    /// `None` when everything was present (reported already).
    fn handle(&self, job: &Job, cancel: &Cancel) -> Option<Attempt> {
        if job.attempt == 1 && self.all_present(&job.distfiles) {
            let _ = self.reports.send(Report::Present { slot: self.slot, node: job.node });
            return None;
        }
        let _ = self.reports.send(Report::Started { slot: self.slot, node: job.node });
        let log = job.request.origin.log_file(&self.config.logs_dir);
        if job.attempt == 1 {
            attempt_log::start(&log);
        }
        let progress = |progress: Progress| {
            let _ = self.reports.send(Report::Progress { slot: self.slot, progress });
        };
        let attempt = match build_one(self.config, self.helper, &job.request, &progress, Some(cancel)) {
            Ok(outcome) => Attempt {
                status: outcome.status,
                phase: outcome.failed_phase,
                reason: outcome.reason,
                log: outcome.log_path,
            },
            Err(e) => self.crashed(job, &format!("{e:#}")),
        };
        Some(self.explain(job, attempt))
    }

    fn crashed(&self, job: &Job, reason: &str) -> Attempt {
        Attempt {
            status: OutcomeStatus::Failed,
            phase: None,
            reason: Some(reason.to_string()),
            log: job.request.origin.log_file(&self.config.logs_dir),
        }
    }

    /// Replaces a failed attempt's generic reason ("exited with status 1")
    /// by the framework's own lines from the log, and keeps the log of
    /// every attempt in the port's log.
    fn explain(&self, job: &Job, mut attempt: Attempt) -> Attempt {
        let text = std::fs::read_to_string(&attempt.log).unwrap_or_default();
        if attempt.status == OutcomeStatus::Failed {
            let problems = failure::problems(&text, &job.request.origin.dir());
            if !problems.is_empty() {
                attempt.reason = Some(problems.join("; "));
            }
        }
        let last = attempt.status != OutcomeStatus::Failed || job.attempt >= max_attempts(self.config);
        if let Err(e) = attempt_log::finish(&attempt.log, job.attempt, last) {
            let _ = self.reports.send(Report::Notice(format!("warning: {e:#}")));
        }
        attempt
    }

    /// The present check. A file that is there but differs from distinfo
    /// is deleted under its lock (after checking again: a fetch may have
    /// replaced it meanwhile), so the sandbox fetches it afresh.
    fn all_present(&self, distfiles: &[Distfile]) -> bool {
        let dir = &self.config.distfiles_dir;
        let mut all = true;
        for distfile in distfiles {
            match distfile.state(dir) {
                Ok(State::Present) => {}
                Ok(State::Mismatch { .. }) => {
                    all = false;
                    self.remove_corrupt(distfile);
                }
                Ok(State::Missing | State::Unverifiable) => all = false,
                Err(e) => {
                    all = false;
                    let _ = self.reports.send(Report::Notice(format!("warning: {e:#}")));
                }
            }
        }
        all
    }

    fn remove_corrupt(&self, distfile: &Distfile) {
        let dir = &self.config.distfiles_dir;
        let result = DistfileLock::acquire(dir, &distfile.key).and_then(|_lock| match distfile.state(dir)? {
            State::Mismatch { expected, actual } => {
                let path = distfile.path(dir);
                std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
                Ok(Some(format!(
                    "removed corrupt distfile {}: expected {}, found {}",
                    path.display(),
                    expected.describe(),
                    actual.describe()
                )))
            }
            _ => Ok(None),
        });
        let notice = match result {
            Ok(Some(text)) => text,
            Ok(None) => return,
            Err(e) => format!("warning: {e:#}"),
        };
        let _ = self.reports.send(Report::Notice(notice));
    }
}

struct Running {
    node: NodeId,
    /// Set when the sandbox starts; a present check alone never sets it.
    started: Option<Instant>,
    phase: &'static str,
    lines: u64,
}

struct Coordinator<'r, 'a> {
    run: &'r FetchRun<'a>,
    jobs: Vec<Sender<Job>>,
    cancel: Arc<Cancel>,
    targets: HashMap<NodeId, Vec<Distfile>>,
    /// First attempts, in plan order; retries wait in `delayed`.
    queue: DependencyQueue<'a, Rank>,
    /// Retries waiting for their time, earliest first.
    delayed: BinaryHeap<Reverse<(Instant, NodeId)>>,
    attempts: HashMap<NodeId, u32>,
    first_start: HashMap<NodeId, Instant>,
    idle: BTreeSet<u32>,
    running: HashMap<u32, Running>,
    stop: Stop,
    started: Instant,
    tally: FetchTally,
    failed: Vec<FailedFetch>,
    /// When the last progress event went out, and whether something it
    /// shows changed since (line counts alone wait for the next second).
    last_progress: Option<Instant>,
    changed: bool,
}

impl<'r, 'a> Coordinator<'r, 'a> {
    fn new(run: &'r FetchRun<'a>, jobs: Vec<Sender<Job>>, cancel: Arc<Cancel>) -> Self {
        Coordinator {
            run,
            jobs,
            cancel,
            targets: run.targets.iter().map(|t| (t.node, t.distfiles.clone())).collect(),
            queue: plan_order_queue(run.tree.len(), &run.targets),
            delayed: BinaryHeap::new(),
            attempts: HashMap::new(),
            first_start: HashMap::new(),
            idle: (1..=run.jobs.max(1) as u32).collect(),
            running: HashMap::new(),
            stop: Stop::None,
            started: Instant::now(),
            tally: FetchTally::default(),
            failed: Vec::new(),
            last_progress: None,
            changed: true,
        }
    }

    fn coordinate(&mut self, reports: &Receiver<Report>) {
        loop {
            self.dispatch();
            self.refresh_header();
            let idle = self.queue.is_empty() && self.delayed.is_empty();
            if self.running.is_empty() && (idle || self.stop != Stop::None) {
                break;
            }
            let wait = self.next_due().map_or(TICK, |due| due.saturating_duration_since(Instant::now()).min(TICK));
            select! {
                recv(reports) -> report => match report {
                    Ok(report) => self.handle(report),
                    Err(_) => break,
                },
                recv(self.run.interrupts) -> interrupt => if let Ok(interrupt) = interrupt {
                    self.interrupt(interrupt);
                },
                default(wait) => {}
            }
        }
    }

    fn next_due(&self) -> Option<Instant> {
        self.delayed.peek().map(|Reverse((due, _))| *due)
    }

    /// Retries whose time has come go first, then the queue in plan order.
    fn dispatch(&mut self) {
        while self.stop == Stop::None {
            let Some(&slot) = self.idle.iter().next() else { return };
            let node = match self.next_due() {
                Some(due) if due <= Instant::now() => self.delayed.pop().map(|Reverse((_, node))| node),
                _ => self.queue.dequeue(),
            };
            let Some(node) = node else { return };
            self.idle.remove(&slot);
            self.start(node, slot);
        }
    }

    fn start(&mut self, node: NodeId, slot: u32) {
        let tree = self.run.tree;
        let meta = tree.nodes[node].meta.as_ref().expect("fetch targets have metadata");
        let attempt = {
            let count = self.attempts.entry(node).or_insert(0);
            *count += 1;
            *count
        };
        let request = SandboxRequest {
            slot,
            origin: tree.nodes[node].origin.clone(),
            pkgname: meta.pkgname.clone(),
            phases: self.run.config.framework.framework().fetch_only_phases(),
            dependencies: vec![],
            keep_work_on_failure: false,
            variant: meta.variant.clone(),
            bootstrap_pkg: meta.bootstrap_pkg,
            make_jobs: self.run.config.make_jobs.unwrap_or(1) as u32,
            work_area: crate::sandbox::work_area::WorkArea::Tmpfs,
            expected_memory: None,
            critical_path_ms: None,
        };
        let distfiles = self.targets.get(&node).cloned().unwrap_or_default();
        self.running.insert(slot, Running { node, started: None, phase: "check", lines: 0 });
        let job = Job { node, attempt, request, distfiles };
        if self.jobs[slot as usize - 1].send(job).is_err() {
            let attempt = Attempt {
                status: OutcomeStatus::Failed,
                phase: None,
                reason: Some(format!("the fetch worker of slot {slot} is gone")),
                log: self.log_path(node),
            };
            self.finished(slot, node, attempt);
        }
    }

    fn log_path(&self, node: NodeId) -> PathBuf {
        self.run.tree.nodes[node].origin.log_file(&fetch_logs_dir(self.run.config))
    }

    fn origin(&self, node: NodeId) -> String {
        self.run.tree.nodes[node].origin.to_string()
    }

    fn pkgname(&self, node: NodeId) -> &str {
        self.run.tree.nodes[node].meta.as_ref().map_or("-", |m| m.pkgname.as_str())
    }

    fn handle(&mut self, report: Report) {
        match report {
            Report::Notice(text) => self.run.events.notice(text),
            Report::Present { slot, node } => self.present(slot, node),
            Report::Started { slot, node } => self.sandbox_started(slot, node),
            Report::Progress { slot, progress } => self.progress(slot, progress),
            Report::Finished { slot, node, attempt } => self.finished(slot, node, attempt),
        }
    }

    fn present(&mut self, slot: u32, node: NodeId) {
        self.running.remove(&slot);
        self.idle.insert(slot);
        self.tally.present += 1;
        self.queue.finish(node);
        self.run.events.emit(Event::FetchEnd(FetchEnd {
            slot,
            origin: self.origin(node),
            pkgname: self.pkgname(node).to_string(),
            status: FetchStatus::Present,
            seconds: 0.0,
            attempts: 0,
            phase: None,
            reason: None,
            log: None,
        }));
        self.changed = true;
    }

    fn sandbox_started(&mut self, slot: u32, node: NodeId) {
        let now = Instant::now();
        self.first_start.entry(node).or_insert(now);
        if let Some(running) = self.running.get_mut(&slot) {
            running.started = Some(now);
            running.phase = "fetch";
        }
        let keys: Vec<String> = self.targets.get(&node).map_or(vec![], |d| d.iter().map(|d| d.key.clone()).collect());
        let attempt = self.attempts.get(&node).copied().unwrap_or(1);
        self.run.events.emit(Event::FetchStart { slot, origin: self.origin(node), attempt, distfiles: keys });
        self.changed = true;
    }

    fn progress(&mut self, slot: u32, progress: Progress) {
        let Some(running) = self.running.get_mut(&slot) else { return };
        match progress {
            Progress::Phase(phase) => {
                running.phase = phase.name();
                running.lines = 0;
                self.changed = true;
            }
            Progress::Lines(lines) => running.lines = lines,
        }
    }

    fn finished(&mut self, slot: u32, node: NodeId, attempt: Attempt) {
        self.running.remove(&slot);
        self.idle.insert(slot);
        self.changed = true;
        let tries = self.attempts.get(&node).copied().unwrap_or(1);
        let reason = attempt.reason.clone().unwrap_or_else(|| "failed".into());
        match attempt.status {
            OutcomeStatus::Success => self.fetched(slot, node, &attempt, tries),
            OutcomeStatus::Failed if tries < max_attempts(self.run.config) && self.stop == Stop::None => {
                let delay = backoff(self.run.config.fetch_retry_delay, tries);
                self.delayed.push(Reverse((Instant::now() + delay, node)));
                let max = max_attempts(self.run.config);
                self.run.events.emit(Event::FetchRetry {
                    slot,
                    origin: self.origin(node),
                    attempt: tries,
                    attempts: max,
                    delay_seconds: delay.as_secs_f64(),
                    reason,
                });
            }
            OutcomeStatus::Failed => self.failed(slot, node, &attempt, tries, reason),
            OutcomeStatus::Interrupted => {
                self.tally.interrupted += 1;
                let end = self.end(slot, node, FetchStatus::Interrupted, &attempt, tries, Some(reason));
                self.run.events.emit(Event::FetchEnd(end));
            }
        }
    }

    fn end(
        &self,
        slot: u32,
        node: NodeId,
        status: FetchStatus,
        attempt: &Attempt,
        tries: u32,
        reason: Option<String>,
    ) -> FetchEnd {
        FetchEnd {
            slot,
            origin: self.origin(node),
            pkgname: self.pkgname(node).to_string(),
            status,
            seconds: self.first_start.get(&node).map_or(0.0, |s| s.elapsed().as_secs_f64()),
            attempts: tries,
            phase: attempt.phase.map(|p| p.name().to_string()),
            reason,
            log: Some(attempt.log.clone()),
        }
    }

    fn fetched(&mut self, slot: u32, node: NodeId, attempt: &Attempt, tries: u32) {
        self.tally.fetched += 1;
        self.queue.finish(node);
        let end = self.end(slot, node, FetchStatus::Fetched, attempt, tries, None);
        self.run.events.emit(Event::FetchEnd(end));
    }

    fn failed(&mut self, slot: u32, node: NodeId, attempt: &Attempt, tries: u32, reason: String) {
        self.tally.failed += 1;
        self.queue.fail(node);
        let origin = self.origin(node);
        let phase = attempt.phase.map(|p| p.name());
        let reason = if tries > 1 { format!("{reason} (after {tries} attempts)") } else { reason };
        let end = self.end(slot, node, FetchStatus::Failed, attempt, tries, Some(reason.clone()));
        self.run.events.emit(Event::FetchEnd(end));
        self.failed.push(FailedFetch {
            origin,
            phase: phase.map(str::to_string),
            reason,
            attempts: tries,
            log: attempt.log.clone(),
        });
    }

    fn interrupt(&mut self, interrupt: Interrupt) {
        self.stop.apply(interrupt, ("fetch", "fetches"), self.running.len(), self.run.events, &self.cancel);
    }

    /// A progress event when something it shows changed (at most every
    /// [`PROGRESS_GAP`]: a warm cache finishes thousands of ports a second),
    /// else once per [`TICK`].
    fn refresh_header(&mut self) {
        let since = self.last_progress.map(|at| at.elapsed());
        if since.is_some_and(|since| since < if self.changed { PROGRESS_GAP } else { TICK }) {
            return;
        }
        let mut slots: Vec<SlotStatus> = self
            .running
            .iter()
            .filter_map(|(slot, running)| {
                Some(SlotStatus {
                    slot: *slot,
                    origin: self.origin(running.node),
                    phase: running.phase.to_string(),
                    seconds: running.started?.elapsed().as_secs_f64(),
                    lines: running.lines,
                })
            })
            .collect();
        slots.sort_by_key(|s| s.slot);
        self.run.events.emit(Event::FetchProgress(FetchProgress {
            fetched: self.tally.fetched,
            present: self.tally.present,
            failed: self.tally.failed,
            remaining: self.queue.ready_len() + self.delayed.len() + self.running.len(),
            downloads: self.running.values().filter(|r| r.started.is_some()).count(),
            jobs: self.run.jobs,
            elapsed_seconds: self.started.elapsed().as_secs_f64(),
            slots,
        }));
        self.last_progress = Some(Instant::now());
        self.changed = false;
    }

    fn finish(self) -> FetchOutcome {
        let mut tally = self.tally;
        tally.not_started = self.queue.ready_len() + self.delayed.len();
        let stop = if self.stop == Stop::Draining && tally.not_started == 0 { Stop::None } else { self.stop };
        FetchOutcome { stop, tally, failed: self.failed, elapsed: self.started.elapsed() }
    }
}

/// Every target ready at once, leaving in the order of `targets` (the plan's);
/// a port listed twice is fetched once, at its first place.
fn plan_order_queue(nodes: usize, targets: &[Target]) -> DependencyQueue<'static, Rank> {
    let mut position = vec![u32::MAX; nodes];
    for (index, target) in targets.iter().enumerate().rev() {
        position[target.node] = index as u32;
    }
    let members: Vec<NodeId> = targets.iter().map(|t| t.node).collect();
    DependencyQueue::independent(nodes, &members, Rank(position))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(node: NodeId) -> Target {
        Target { node, distfiles: vec![] }
    }

    #[test]
    fn targets_leave_the_queue_in_plan_order() {
        let targets = [target(4), target(0), target(7), target(2)];
        let mut queue = plan_order_queue(8, &targets);
        let order: Vec<NodeId> = std::iter::from_fn(|| queue.dequeue()).collect();
        assert_eq!(order, [4, 0, 7, 2]);
    }

    #[test]
    fn a_target_listed_twice_is_fetched_once_at_its_first_place() {
        let targets = [target(3), target(1), target(3)];
        let mut queue = plan_order_queue(4, &targets);
        let order: Vec<NodeId> = std::iter::from_fn(|| queue.dequeue()).collect();
        assert_eq!(order, [3, 1]);
    }

    #[test]
    fn backoff_doubles_from_the_base_and_is_capped() {
        let base = Duration::from_millis(100);
        assert_eq!(backoff(base, 1), Duration::from_millis(100));
        assert_eq!(backoff(base, 2), Duration::from_millis(200));
        assert_eq!(backoff(base, 3), Duration::from_millis(400));
        assert_eq!(backoff(Duration::from_secs(10), 30), MAX_DELAY);
        assert_eq!(backoff(Duration::ZERO, 5), Duration::ZERO);
    }
}
