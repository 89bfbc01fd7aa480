//! The coordinator and its worker pool.
//!
//! A port enters the ready queue the moment the last of its dependencies in
//! the build set succeeds, and leaves it the moment a slot is free and the
//! throttle allows one more build: there is no polling and no head-of-line
//! blocking, because readiness is counted (one counter of unfinished
//! dependencies per port, decremented on each success) instead of checked.
//!
//! Readiness lives in the one [`DependencyQueue`] the simulator and the
//! fetch pool use as well, so the simulated order is this order.
//!
//! The queue is ordered critical-path first: a port's priority is the
//! longest chain of expected build time from it to the end of the build set
//! (expected time = median of its past successful builds, else
//! [`DEFAULT_DURATION`]). Starting the long chains early is what removes
//! the single-threaded tail of a bulk build. Ties go to the port with more
//! transitive dependents, then to the alphabetically first origin, so the
//! order is deterministic.
//!
//! A free slot is not enough to start a port: [`crate::build::allocate`]
//! decides, from each port's speed-up model (fitted from its recorded
//! phases) and the critical path, how many of the `jobs` cores the next
//! port gets, and whether its expected peak memory fits what the running
//! builds leave of `memory_budget`; the header shows why a ready port waits.
//! `work_dir = "auto"` puts a port whose recorded work area would not fit
//! in memory on disk.
//!
//! Each worker thread owns one slot number for its whole life (so the UI's
//! slot lines and the sandbox directories stay stable) and drives one
//! build at a time through the run's [`crate::executor::Executor`] (a
//! sandbox of this host, or a Slurm job). The
//! coordinator is the only thread that touches the database and the
//! scheduling state; what happens it says as [`Event`]s, which the
//! reporters (terminal, NDJSON, summary logs, hooks) turn into output.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context, Result};
use crossbeam_channel::{select, unbounded, Receiver, Sender};

use super::allocate::{self, Decision, Machine, PortModel, ReadyPort, RunningPort, Sample};
use super::interrupts::{Interrupt, Stop};
use super::throttle::{self, Pressure};
use crate::builddb::keys::KeyInputs;
use crate::builddb::{BuildDb, BuildId, BuildStatus, NewBuild, PackageEntry, RunId};
use crate::config::Config;
use crate::events::{self, Event, Events, SkipCause, SlotStatus};
use crate::executor::{self, Executor};
use crate::graph::NodeId;
use crate::plan::{Plan, Verdict};
use crate::ports::PortTree;
use crate::queue::{CriticalPath, DependencyQueue};
use crate::report::RunLogs;
use crate::sandbox::runner::{BuildOutcome, Cancel, Dependency, OutcomeStatus, Progress, SandboxRequest};
use crate::sandbox::work_area::{self, WorkArea};

pub use crate::events::{FailedPort, Tally};

/// Expected duration of a port never built successfully before.
pub const DEFAULT_DURATION: Duration = Duration::from_secs(60);

/// How often the throttle and the header are refreshed.
const TICK: Duration = Duration::from_secs(1);

/// Everything a run needs; the plan is fixed before the run starts.
pub struct Run<'a> {
    pub config: &'a Config,
    pub tree: &'a PortTree,
    pub plan: &'a Plan,
    pub keys: &'a [Option<KeyInputs>],
    pub db: &'a BuildDb,
    pub run: &'a RunId,
    /// For the planning's own debug lines; the run's outcomes go to `events`.
    pub logs: &'a RunLogs,
    pub events: &'a Events,
    /// Ports built with `check-plist` whose work area is kept on failure
    /// (the `test` command's port).
    pub check_plist: HashSet<NodeId>,
    pub helper: PathBuf,
    pub workers: usize,
    pub interrupts: Receiver<Interrupt>,
}

pub struct Outcome {
    pub stop: Stop,
    pub tally: Tally,
    pub failed: Vec<FailedPort>,
    pub elapsed: Duration,
}

/// A job handed to a worker.
struct Job {
    node: NodeId,
    request: SandboxRequest,
}

/// What workers tell the coordinator.
enum Report {
    Progress { slot: u32, progress: Progress },
    Finished { slot: u32, node: NodeId, result: Result<BuildOutcome> },
}

/// Runs the plan to the end (or until stopped) with `run.workers` slots.
pub fn execute(run: Run<'_>) -> Result<Outcome> {
    let cancel = Arc::new(Cancel::new().context("cannot create the pipe that cancels builds")?);
    let (executor, notices) = executor::for_config(run.config, run.helper.clone(), run.run.as_str())?;
    for notice in notices {
        run.events.notice(notice);
    }
    let (report_tx, report_rx) = unbounded::<Report>();
    std::thread::scope(|scope| {
        let mut job_senders = Vec::new();
        for slot in 1..=run.workers as u32 {
            let (job_tx, job_rx) = unbounded::<Job>();
            job_senders.push(job_tx);
            let (executor, reports, cancel) = (executor.as_ref(), report_tx.clone(), cancel.clone());
            scope.spawn(move || worker(executor, slot, job_rx, reports, &cancel));
        }
        drop(report_tx);
        let mut coordinator = Coordinator::new(&run, job_senders, cancel.clone());
        coordinator.record_unbuildable();
        coordinator.coordinate(&report_rx);
        Ok(coordinator.finish())
    })
}

fn worker(executor: &dyn Executor, slot: u32, jobs: Receiver<Job>, reports: Sender<Report>, cancel: &Cancel) {
    for job in jobs {
        let progress = |progress: Progress| {
            let _ = reports.send(Report::Progress { slot, progress });
        };
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| executor.build(&job.request, &progress, cancel)))
                .unwrap_or_else(|_| Err(anyhow!("the worker of slot {slot} panicked")));
        if reports.send(Report::Finished { slot, node: job.node, result }).is_err() {
            return;
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// In the build set, dependencies unfinished.
    Waiting,
    Ready,
    Running,
    Done,
}

struct Running {
    node: NodeId,
    build: Option<BuildId>,
    started: Instant,
    phase: &'static str,
    lines: u64,
    log_path: PathBuf,
    make_jobs: usize,
    /// What the allocator expected of it when it started.
    expected_ms: f64,
    memory: u64,
}

struct Coordinator<'r, 'a> {
    run: &'r Run<'a>,
    jobs: Vec<Sender<Job>>,
    cancel: Arc<Cancel>,
    state: Vec<Option<State>>,
    queue: DependencyQueue<'a, CriticalPath>,
    /// Each port's speed-up model, from its recorded builds.
    models: Vec<PortModel>,
    /// Expected time after each port to the end of the build (its tail).
    tails: Vec<f64>,
    /// Recorded peak work area of each port (for `work_dir = "auto"`).
    peak_work: Vec<Option<u64>>,
    /// One-job CPU work of the ports not started yet.
    pending_work_ms: f64,
    idle_slots: BTreeSet<u32>,
    running: HashMap<u32, Running>,
    limit: usize,
    pressure: Pressure,
    /// The last estimate of the time left, refreshed on ticks ([`Self::eta_due`]).
    eta: Option<Duration>,
    /// When the last estimate was made, and what it cost.
    eta_cost: Option<(Instant, Duration)>,
    /// Why the first ready port waits while a slot is free.
    waiting: Option<String>,
    stop: Stop,
    started: Instant,
    tally: Tally,
    failed: Vec<FailedPort>,
    /// The plan's reason to build each port of the build set.
    build_reasons: HashMap<NodeId, String>,
}

impl<'r, 'a> Coordinator<'r, 'a> {
    fn new(run: &'r Run<'a>, jobs: Vec<Sender<Job>>, cancel: Arc<Cancel>) -> Self {
        let tree = run.tree;
        let mut state = vec![None; tree.len()];
        for entry in run.plan.to_build() {
            state[entry.node] = Some(State::Waiting);
        }
        let weight_ms = expected_durations(run, &state);
        let priority = tree.graph.priorities(&weight_ms);
        let dependents = tree.graph.transitive_dependents_counts();
        let in_build: Vec<bool> = state.iter().map(Option::is_some).collect();
        let queue = DependencyQueue::new(&tree.graph, &in_build, CriticalPath::new(&tree.graph, priority, dependents));
        let (models, peak_work) = port_models(run, &weight_ms);
        let chains_after: Vec<f64> = queue.order().priority().iter().zip(&weight_ms).map(|(p, w)| p - w).collect();
        let work: Vec<f64> = models.iter().map(PortModel::work).collect();
        let pending_work_ms = (0..tree.len()).filter(|&n| in_build[n]).map(|n| work[n]).sum();
        let behind = allocate::work_behind(&tree.graph, &in_build, &work, queue.order().dependents());
        let tails = allocate::tails(&chains_after, &behind, run.config.jobs as u32);
        let workers = run.workers.max(1);
        let mut coordinator = Coordinator {
            run,
            jobs,
            cancel,
            state,
            queue,
            models,
            tails,
            peak_work,
            pending_work_ms,
            idle_slots: (1..=workers as u32).collect(),
            running: HashMap::new(),
            limit: if run.config.throttle { throttle::RAMP_START.min(workers) } else { workers },
            pressure: Pressure { load1: 0.0, cpus: 1, swap_used: 0.0 },
            eta: None,
            eta_cost: None,
            waiting: None,
            stop: Stop::None,
            started: Instant::now(),
            tally: Tally::default(),
            failed: Vec::new(),
            build_reasons: HashMap::new(),
        };
        for node in coordinator.queue.ready().collect::<Vec<_>>() {
            coordinator.state[node] = Some(State::Ready);
        }
        coordinator
    }

    /// Records the plan's verdicts that need no build: ignored, skipped
    /// because of an ignored dependency, not buildable, up to date; and
    /// keeps why each of the others is built, for its `build_start` event.
    fn record_unbuildable(&mut self) {
        let run = self.run;
        for entry in &run.plan.entries {
            let origin = entry.origin.to_string();
            let pkgname = entry.pkgname.clone();
            match &entry.verdict {
                Verdict::Build(why) => {
                    self.build_reasons.insert(entry.node, why.clone());
                }
                Verdict::UpToDate => {
                    self.tally.up_to_date += 1;
                    let pkgname = pkgname.unwrap_or_else(|| "-".into());
                    run.events.emit(Event::UpToDate { origin, pkgname });
                }
                Verdict::Ignored(reason) => {
                    self.tally.ignored += 1;
                    self.record_outcome(entry.node, BuildStatus::Ignored, reason);
                    run.events.emit(Event::Ignored { origin, pkgname, reason: reason.clone() });
                }
                Verdict::Skipped(reason) => {
                    self.tally.skipped += 1;
                    self.record_outcome(entry.node, BuildStatus::Skipped, reason);
                    run.events.emit(Event::Skip { origin, pkgname, reason: reason.clone(), cause: SkipCause::Plan });
                }
                Verdict::NotBuildable(reason) => {
                    self.tally.not_buildable += 1;
                    run.events.emit(Event::Skip {
                        origin,
                        pkgname,
                        reason: format!("not buildable: {reason}"),
                        cause: SkipCause::NotBuildable { problem: reason.clone() },
                    });
                }
            }
        }
    }

    fn coordinate(&mut self, reports: &Receiver<Report>) {
        let ticker = crossbeam_channel::tick(TICK);
        self.refresh_limit();
        loop {
            self.dispatch();
            if self.running.is_empty() && (self.queue.is_empty() || self.stop != Stop::None) {
                break;
            }
            select! {
                recv(reports) -> report => match report {
                    Ok(report) => self.handle(report),
                    Err(_) => break,
                },
                recv(ticker) -> _ => self.refresh_limit(),
                recv(self.run.interrupts) -> interrupt => if let Ok(interrupt) = interrupt {
                    self.interrupt(interrupt);
                },
            }
        }
    }

    fn dispatch(&mut self) {
        self.waiting = None;
        while self.stop == Stop::None && self.running.len() < self.limit {
            let Some(&slot) = self.idle_slots.iter().next() else { return };
            let (node, jobs) = match self.allocate() {
                Ok(start) => start,
                Err(wait) => {
                    self.waiting = wait;
                    return;
                }
            };
            self.queue.take(node);
            self.idle_slots.remove(&slot);
            self.start(node, slot, jobs);
        }
    }

    /// The next port to start and its make jobs, or why none starts now
    /// (`None`: nothing is ready).
    fn allocate(&self) -> std::result::Result<(NodeId, u32), Option<String>> {
        // The allocator reads the first few ready ports in queue order: enough
        // to let a smaller port past one that waits for memory.
        let lookahead = self.limit.saturating_sub(self.running.len()) + 8;
        let candidates: Vec<NodeId> = self.queue.ready().take(lookahead).collect();
        if candidates.is_empty() {
            return Err(None);
        }
        let fixed = self.run.config.make_jobs.map(|j| j as u32);
        let machine = self.machine();
        let running: Vec<RunningPort> = self.running.values().map(|r| self.running_port(r)).collect();
        let ready: Vec<ReadyPort> =
            candidates.iter().map(|&n| ReadyPort { model: self.models[n], tail_ms: self.tails[n] }).collect();
        let running_work: f64 = running.iter().map(|r| f64::from(r.jobs) * r.left_ms).sum();
        match allocate::next_start(&machine, &running, &ready, self.pending_work_ms + running_work) {
            Decision::Start { index, jobs } => {
                let node = candidates[index];
                // A port unsafe for parallel make gets one job even where the number is fixed.
                Ok((node, fixed.filter(|_| self.models[node].parallel_safe).unwrap_or(jobs)))
            }
            Decision::Wait(wait) => Err(Some(wait.to_string())),
        }
    }

    fn running_port(&self, running: &Running) -> RunningPort {
        let left_ms = (running.expected_ms - running.started.elapsed().as_millis() as f64).max(0.0);
        RunningPort {
            jobs: running.make_jobs as u32,
            left_ms,
            memory: running.memory,
            chain_ms: left_ms + self.tails[running.node],
        }
    }

    /// Where the port's work area goes: the configured place, or with `auto` a
    /// tmpfs unless its recorded peak would not fit the memory left.
    fn work_area(&self, node: NodeId) -> WorkArea {
        let config = self.run.config;
        config.work_dir.fixed().unwrap_or_else(|| {
            let expected: u64 = self.running.values().map(|r| r.memory).sum();
            let left = config.memory_budget.saturating_sub(expected);
            work_area::place(self.peak_work[node], config.tmpfs_size, left)
        })
    }

    fn start(&mut self, node: NodeId, slot: u32, make_jobs: u32) {
        let run = self.run;
        let tree = run.tree;
        let meta = tree.nodes[node].meta.as_ref().expect("ports in the build set have metadata");
        let origin = tree.nodes[node].origin.clone();
        let memory = self.models[node].memory_at(make_jobs);
        let request = SandboxRequest {
            slot,
            origin: origin.clone(),
            pkgname: meta.pkgname.clone(),
            phases: run.config.framework.framework().phases(run.check_plist.contains(&node)),
            keep_work_on_failure: run.check_plist.contains(&node),
            variant: meta.variant.clone(),
            bootstrap_pkg: meta.bootstrap_pkg,
            make_jobs,
            work_area: self.work_area(node),
            expected_memory: Some(memory),
            critical_path_ms: Some(self.queue.order().priority()[node] as u64),
            dependencies: tree
                .install_set(node)
                .into_iter()
                .filter_map(|dep| {
                    let meta = tree.nodes[dep].meta.as_ref()?;
                    Some(Dependency {
                        file: run.config.framework.framework().package_file(&meta.pkgname),
                        origin: tree.nodes[dep].origin.clone(),
                    })
                })
                .collect(),
        };
        let log_path = origin.log_file(&run.config.logs_dir);
        let work_area = request.work_area;
        let new = NewBuild {
            origin: &origin.to_string(),
            pkgname: &meta.pkgname,
            version: &meta.pkgversion,
            slot: Some(slot),
            log_path: Some(&log_path),
            why: self.build_reasons.get(&node).map(String::as_str),
        };
        let build = self.db_write("recording a build start", run.db.start_build(run.run, &new));
        self.state[node] = Some(State::Running);
        let model = &self.models[node];
        self.pending_work_ms = (self.pending_work_ms - model.work()).max(0.0);
        let running = Running {
            node,
            build,
            started: Instant::now(),
            phase: "starting",
            lines: 0,
            log_path,
            make_jobs: make_jobs as usize,
            expected_ms: model.time(make_jobs),
            memory,
        };
        run.events.emit(Event::BuildStart {
            slot,
            origin: origin.to_string(),
            pkgname: meta.pkgname.clone(),
            why: self.build_reasons.get(&node).cloned().unwrap_or_default(),
            make_jobs,
            work_area: work_area.name().to_string(),
            log: running.log_path.clone(),
            depends: direct_dependencies(tree, node),
        });
        self.running.insert(slot, running);
        if self.jobs[slot as usize - 1].send(Job { node, request }).is_err() {
            let result = Err(anyhow!("the worker of slot {slot} is gone"));
            self.finished(slot, node, result);
        }
    }

    fn handle(&mut self, report: Report) {
        match report {
            Report::Progress { slot, progress } => self.progress(slot, progress),
            Report::Finished { slot, node, result } => self.finished(slot, node, result),
        }
    }

    fn progress(&mut self, slot: u32, progress: Progress) {
        let run = self.run;
        let Some(running) = self.running.get_mut(&slot) else { return };
        match progress {
            Progress::Phase(phase) => {
                running.phase = phase.name();
                if let Some(build) = &running.build {
                    if let Err(e) = run.db.update_build_phase(build, phase.name()) {
                        run.events.debug(format!("database: {e:#}"));
                    }
                }
                let origin = run.tree.nodes[running.node].origin.to_string();
                run.events.emit(Event::BuildPhase { slot, origin, phase: phase.name().to_string() });
            }
            // Shown with the next progress event, once a second.
            Progress::Lines(lines) => running.lines = lines,
        }
    }

    fn finished(&mut self, slot: u32, node: NodeId, result: Result<BuildOutcome>) {
        let Some(running) = self.running.remove(&slot) else { return };
        self.idle_slots.insert(slot);
        self.state[node] = Some(State::Done);
        let outcome = result.unwrap_or_else(|e| {
            let (elapsed, log) = (running.started.elapsed(), running.log_path.clone());
            BuildOutcome::failed_unmeasured(format!("{e:#}"), elapsed, log, 0, WorkArea::Tmpfs)
        });
        if let (Some(build), true) = (&running.build, outcome.cpu_time.is_some() || !outcome.phases.is_empty()) {
            self.db_write("recording resource usage", self.run.db.record_usage(build, &outcome.usage()));
        }
        let outcome = match outcome.status {
            OutcomeStatus::Success => self.succeeded(node, running.build.as_ref(), outcome),
            _ => outcome,
        };
        self.run.events.emit(Event::BuildEnd(self.build_end(slot, node, &outcome)));
        match outcome.status {
            OutcomeStatus::Success => self.release_dependents(node),
            OutcomeStatus::Failed => self.failed(node, running.build.as_ref(), &outcome),
            OutcomeStatus::Interrupted => {
                self.tally.interrupted += 1;
                let reason = outcome.reason.as_deref().unwrap_or("interrupted");
                if let Some(build) = &running.build {
                    let phase = outcome.failed_phase.map(|p| p.name());
                    let result = self.run.db.finish_build(build, BuildStatus::Interrupted, phase, Some(reason));
                    self.db_write("recording an interrupted build", result);
                }
            }
        }
        self.emit_progress();
    }

    /// The `build_end` event of a finished build.
    fn build_end(&self, slot: u32, node: NodeId, outcome: &BuildOutcome) -> events::BuildEnd {
        let tree = self.run.tree;
        let reason = match outcome.status {
            // A success has a reason only when it was retried: on disk, or
            // requeued by Slurm after its node was lost.
            OutcomeStatus::Success => outcome.reason.clone(),
            OutcomeStatus::Failed => Some(outcome.reason.clone().unwrap_or_else(|| "failed".into())),
            OutcomeStatus::Interrupted => Some(outcome.reason.clone().unwrap_or_else(|| "interrupted".into())),
        };
        events::BuildEnd {
            slot,
            origin: tree.nodes[node].origin.to_string(),
            pkgname: tree.nodes[node].meta.as_ref().map_or_else(|| "-".into(), |m| m.pkgname.clone()),
            status: match outcome.status {
                OutcomeStatus::Success => events::BuildEndStatus::Success,
                OutcomeStatus::Failed => events::BuildEndStatus::Failed,
                OutcomeStatus::Interrupted => events::BuildEndStatus::Interrupted,
            },
            seconds: outcome.duration.as_secs_f64(),
            phase: outcome.failed_phase.map(|p| p.name().to_string()),
            log: outcome.log_path.clone(),
            reason,
            make_jobs: outcome.make_jobs,
            work_area: outcome.work_area.name().to_string(),
            retried_on_disk: outcome.retried_on_disk,
            phases: outcome
                .phases
                .iter()
                .map(|p| events::PhaseTime { phase: p.phase.clone(), seconds: p.wall_ms as f64 / 1000.0 })
                .collect(),
            kept_work: outcome.kept_work.clone(),
            abnormal_output: outcome.abnormal_output.clone(),
        }
    }

    /// Stores the success; a package that cannot be indexed turns the
    /// success into a failure rather than an index naming a bad file.
    fn succeeded(&mut self, node: NodeId, build: Option<&BuildId>, outcome: BuildOutcome) -> BuildOutcome {
        let run = self.run;
        let meta = run.tree.nodes[node].meta.as_ref().expect("built ports have metadata");
        let Some(package) = outcome.package.clone() else {
            return BuildOutcome {
                status: OutcomeStatus::Failed,
                reason: Some("no package delivered".into()),
                ..outcome
            };
        };
        let entry = match package_entry(&package, &meta.pkgname, &meta.pkgversion) {
            Ok(entry) => entry,
            Err(e) => return BuildOutcome { status: OutcomeStatus::Failed, reason: Some(format!("{e:#}")), ..outcome },
        };
        if let (Some(build), Some(key)) = (build, &run.keys[node]) {
            let state = key.to_state(&meta.pkgname, &meta.pkgversion, &entry.file);
            self.db_write(
                "recording a success",
                run.db.record_success(build, &state, &entry, outcome.reason.as_deref()),
            );
        }
        self.tally.built += 1;
        outcome
    }

    fn release_dependents(&mut self, node: NodeId) {
        for dependent in self.queue.finish(node) {
            if self.state[dependent] == Some(State::Waiting) {
                self.state[dependent] = Some(State::Ready);
            }
        }
    }

    fn failed(&mut self, node: NodeId, build: Option<&BuildId>, outcome: &BuildOutcome) {
        let run = self.run;
        let origin = run.tree.nodes[node].origin.to_string();
        let phase = outcome.failed_phase.map(|p| p.name());
        let reason = outcome.reason.clone().unwrap_or_else(|| "failed".into());
        if let Some(build) = build {
            let result = run.db.finish_build(build, BuildStatus::Failed, phase, Some(&reason));
            self.db_write("recording a failure", result);
        }
        self.queue.fail(node);
        self.tally.failed += 1;
        self.failed.push(FailedPort {
            origin,
            phase: phase.map(str::to_string),
            reason,
            log: outcome.log_path.clone(),
            kept_work: outcome.kept_work.clone(),
        });
        self.skip_dependents(node);
    }

    /// Skips every waiting port that depends on `failed` through ports of
    /// the build set, with the chain that leads to it.
    fn skip_dependents(&mut self, failed: NodeId) {
        let run = self.run;
        let tree = run.tree;
        let reached = tree.graph.dependents_closure(&[failed]);
        let mut skipped: HashMap<NodeId, Vec<NodeId>> = HashMap::new();
        skipped.insert(failed, vec![]);
        for (node, via) in reached {
            let Some(chain) = skipped.get(&via).cloned() else { continue };
            if self.state[node] != Some(State::Waiting) {
                continue;
            }
            let mut text = format!("skipped: {} failed", tree.nodes[failed].origin);
            let via: Vec<String> = chain.iter().rev().map(|n| tree.nodes[*n].origin.to_string()).collect();
            if !via.is_empty() {
                text.push_str(&format!(" (via {})", via.join(", ")));
            }
            self.state[node] = Some(State::Done);
            // Never started: its work is no longer ahead of the build.
            self.pending_work_ms = (self.pending_work_ms - self.models[node].work()).max(0.0);
            self.tally.skipped += 1;
            self.record_outcome(node, BuildStatus::Skipped, &text);
            run.events.emit(Event::Skip {
                origin: tree.nodes[node].origin.to_string(),
                pkgname: tree.nodes[node].meta.as_ref().map(|m| m.pkgname.clone()),
                reason: text,
                cause: SkipCause::FailedDependency { failed: tree.nodes[failed].origin.to_string(), via },
            });
            let mut next = vec![node];
            next.extend(chain);
            skipped.insert(node, next);
        }
    }

    fn record_outcome(&mut self, node: NodeId, status: BuildStatus, reason: &str) {
        let run = self.run;
        let origin = run.tree.nodes[node].origin.to_string();
        let (pkgname, version) =
            run.tree.nodes[node].meta.as_ref().map_or(("-", "-"), |m| (m.pkgname.as_str(), m.pkgversion.as_str()));
        let result = run.db.record_outcome(run.run, &origin, pkgname, version, status, reason);
        self.db_write("recording an outcome", result);
    }

    fn interrupt(&mut self, interrupt: Interrupt) {
        self.stop.apply(interrupt, ("build", "builds"), self.running.len(), self.run.events, &self.cancel);
    }

    fn refresh_limit(&mut self) {
        let pressure = Pressure::read();
        let workers = self.run.workers.max(1);
        let previous = self.limit;
        self.limit =
            if self.run.config.throttle { throttle::limit(workers, self.started.elapsed(), pressure) } else { workers };
        self.pressure = pressure;
        if self.limit != previous {
            self.run.events.emit(Event::ThrottleChange { workers: self.limit, previous });
        }
        if self.run.events.wants_eta() && self.eta_due() {
            // Simulating the rest of the run costs up to ~100 ms on a big
            // tree: never per event, only when shown, and no more often than
            // keeps it under a tenth of the coordinator's time.
            let started = Instant::now();
            self.eta = Some(self.eta());
            self.eta_cost = Some((Instant::now(), started.elapsed()));
        }
        self.emit_progress();
    }

    /// The run's figures and the busy slots, for the header and the reports.
    fn emit_progress(&self) {
        let mut slots: Vec<SlotStatus> = self
            .running
            .iter()
            .map(|(slot, running)| SlotStatus {
                slot: *slot,
                origin: self.run.tree.nodes[running.node].origin.to_string(),
                phase: running.phase.to_string(),
                seconds: running.started.elapsed().as_secs_f64(),
                lines: running.lines,
            })
            .collect();
        slots.sort_by_key(|s| s.slot);
        let pressure = self.pressure;
        self.run.events.emit(Event::Progress(events::Progress {
            built: self.tally.built,
            failed: self.tally.failed,
            ignored: self.tally.ignored,
            skipped: self.tally.skipped,
            remaining: self.remaining(),
            workers: self.limit,
            load1: pressure.load1,
            swap_used: pressure.swap_used,
            elapsed_seconds: self.started.elapsed().as_secs_f64(),
            eta_seconds: self.eta.map(|d| d.as_secs_f64()),
            jobs_used: self.running.values().map(|r| r.make_jobs).sum(),
            jobs: self.run.config.jobs,
            memory_expected: self.running.values().map(|r| r.memory).sum(),
            memory_budget: self.run.config.memory_budget,
            waiting: self.waiting.clone(),
            slots,
        }));
    }

    fn remaining(&self) -> usize {
        self.state.iter().filter(|s| matches!(s, Some(State::Waiting | State::Ready | State::Running))).count()
    }

    /// Whether the estimate is due: at least ten times its cost after the
    /// last one.
    fn eta_due(&self) -> bool {
        self.eta_cost.is_none_or(|(at, cost)| at.elapsed() >= cost * 10)
    }

    /// The duration model's estimate: the rest of the run simulated with
    /// cores and memory ([`crate::sim::resources::remaining`]): the same
    /// queue order and allocator, each port's speed-up model, the current
    /// worker limit and the expected time left of the running builds.
    fn eta(&self) -> Duration {
        use crate::sim::resources::{remaining, Ports, Snapshot};
        let pending: Vec<bool> = self.state.iter().map(|s| matches!(s, Some(State::Waiting | State::Ready))).collect();
        let running: Vec<(NodeId, u32, f64)> =
            self.running.values().map(|r| (r.node, r.make_jobs as u32, self.running_port(r).left_ms)).collect();
        let snapshot = Snapshot {
            order: self.queue.order().clone(),
            tails: &self.tails,
            pending: &pending,
            running: &running,
            fixed_jobs: self.run.config.make_jobs.map(|j| j as u32),
        };
        let ports = Ports { graph: &self.run.tree.graph, real: &self.models, expected: None };
        Duration::from_millis(remaining(&ports, self.machine(), snapshot) as u64)
    }

    /// The budgets the allocator works with now.
    fn machine(&self) -> Machine {
        let fixed = self.run.config.make_jobs.map(|j| j as u32);
        Machine {
            // Fixed make jobs are today's policy: cores never hold a port back.
            cores: fixed.map_or(self.run.config.jobs as u32, |j| j * self.limit as u32),
            workers: self.limit as u32,
            memory: self.run.config.memory_budget,
        }
    }

    fn db_write<T>(&self, what: &str, result: Result<T>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(e) => {
                // The logs reporter puts every notice in 07_debug.log too.
                self.run.events.notice(format!("warning: database error {what}: {e:#}"));
                None
            }
        }
    }

    fn finish(self) -> Outcome {
        let mut tally = self.tally;
        tally.not_started = self.state.iter().filter(|s| matches!(s, Some(State::Waiting | State::Ready))).count();
        let stop = if self.stop == Stop::Draining && tally.not_started == 0 { Stop::None } else { self.stop };
        Outcome { stop, tally, failed: self.failed, elapsed: self.started.elapsed() }
    }
}

/// Expected build time of each port of the build set in milliseconds (0
/// for ports outside it, so priorities measure remaining work only).
fn expected_durations(run: &Run<'_>, state: &[Option<State>]) -> Vec<f64> {
    let history = run.db.success_durations_all().unwrap_or_else(|e| {
        run.logs.debug(&format!("cannot read past durations, using the default: {e:#}"));
        HashMap::new()
    });
    let default_ms = DEFAULT_DURATION.as_millis() as f64;
    (0..run.tree.len())
        .map(|node| {
            if state[node].is_none() {
                return 0.0;
            }
            history.get(&run.tree.nodes[node].origin.to_string()).and_then(|d| median(d)).unwrap_or(default_ms)
        })
        .collect()
}

/// Each port's speed-up model and recorded peak work area, from its last
/// measured successful builds; a port without any gets the fair share of
/// [`PortModel::unknown`] at its expected duration.
fn port_models(run: &Run<'_>, weight_ms: &[f64]) -> (Vec<PortModel>, Vec<Option<u64>>) {
    let history = run.db.resource_history_all(HISTORY_PER_PORT).unwrap_or_else(|e| {
        run.logs.debug(&format!("cannot read the recorded resource use, using defaults: {e:#}"));
        HashMap::new()
    });
    let tree = run.tree;
    (0..tree.len())
        .map(|node| {
            let samples = history.get(&tree.nodes[node].origin.to_string()).map_or(&[][..], Vec::as_slice);
            let peak_work = samples.iter().filter_map(|s| s.peak_work).max();
            let model = if samples.is_empty() {
                PortModel::unknown(weight_ms[node])
            } else {
                let samples: Vec<Sample> = samples.iter().map(sample_of).collect();
                allocate::fit_model(&samples)
            };
            let safe = tree.nodes[node].meta.as_ref().is_none_or(|m| m.parallel_safe);
            (if safe { model } else { model.not_parallel_safe() }, peak_work)
        })
        .unzip()
}

/// Builds of a port its model is fitted from.
const HISTORY_PER_PORT: usize = 5;

fn sample_of(recorded: &crate::builddb::ResourceSample) -> Sample {
    Sample {
        jobs: recorded.make_jobs.max(1),
        wall_ms: recorded.wall_ms as f64,
        cpu_ms: recorded.cpu_ms.unwrap_or(recorded.wall_ms) as f64,
        serial_phases_ms: Some(recorded.serial_ms as f64),
        build_split: recorded
            .build_serial_ms
            .zip(recorded.build_parallel_cpu_ms)
            .map(|(serial, parallel)| (serial as f64, parallel as f64)),
        peak_memory: recorded.peak_memory,
    }
}

fn median(values: &[u64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let mid = sorted.len() / 2;
    Some(if sorted.len().is_multiple_of(2) { (sorted[mid - 1] + sorted[mid]) as f64 / 2.0 } else { sorted[mid] as f64 })
}

fn package_entry(package: &std::path::Path, pkgname: &str, version: &str) -> Result<PackageEntry> {
    let file = package.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
    let size = std::fs::metadata(package).map_err(|e| anyhow!("{}: {e}", package.display()))?.len();
    Ok(PackageEntry {
        pkgname: pkgname.to_string(),
        version: version.to_string(),
        file,
        sha256: crate::repo::fsutil::sha256_file(package)?,
        size,
    })
}

/// The origins `node` depends on directly, sorted, each once (for `build_start`).
fn direct_dependencies(tree: &PortTree, node: NodeId) -> Vec<String> {
    let origins: BTreeSet<String> =
        tree.graph.dependencies(node).iter().map(|edge| tree.nodes[edge.to].origin.to_string()).collect();
    origins.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_past_durations() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[7]), Some(7.0));
        assert_eq!(median(&[9, 1, 5]), Some(5.0));
        assert_eq!(median(&[4, 1, 3, 2]), Some(2.5));
    }
}
