//! The main-process side of one sandboxed build: spawn the helper, turn its
//! output and events into the port's log, enforce the watchdogs, and move a
//! verified package into the repository.
//!
//! The runner never unshares or forks by itself (it may run on any of many
//! threads); it only spawns the helper with `Command`, in its own process
//! group. One `poll` over the output pipe and the event pipe, with a timeout
//! equal to the nearest watchdog deadline, drives everything: no polling
//! loop, no reader threads. A watchdog kills the helper with SIGKILL; its
//! PID 1 follows through PDEATHSIG and the kernel tears down the namespace.
//!
//! The same loop measures the build, phase by phase (the helper's phase
//! events are the boundaries): wall time, CPU time and peak memory from the
//! sandbox's cgroup (read, and the v1 peak reset, at each boundary), and the
//! peak size of the work area, sampled with `statvfs` through the helper's
//! root four times a second and taken once more by PID 1 at the phase's
//! end; the same samples split the phase into serial time and parallel
//! CPU time (see [`super::parallelism`]). A build whose tmpfs work area was full when a phase failed is run
//! once more with a disk work area (see [`super::work_area`]), so that a
//! port larger than `tmpfs_size` needs no operator and no scheduler.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use nix::poll::{PollFd, PollFlags, PollTimeout};
use serde::{Deserialize, Serialize};

use super::abnormal::AbnormalOutput;
use super::helper::{EXIT_OK, EXIT_PHASE_FAILED};
use super::limits::{self, Limits, SandboxCgroup, Usage};
use super::parallelism::Split;
use super::work_area::{DiskImage, Fill, WorkArea};
use super::{DependencyInstall, Event, HelperSpec, EVENT_FD};
use crate::builddb::{BuildUsage, PhaseUsage};
use crate::config::{format_size, Config};
use crate::framework::pkgsrc::prefix::UnpackedKit;
use crate::ports::{Origin, Phase};
use crate::repo::PackagePolicy;

/// The line that opens the footer a build log ends with (result, phase, usage).
pub const FOOTER_BANNER: &str = "=======================<result>============================";

/// One port to build in one slot.
#[derive(Debug, Clone)]
pub struct SandboxRequest {
    pub slot: u32,
    pub origin: Origin,
    pub pkgname: String,
    pub phases: Vec<Phase>,
    /// Packages in `packages_dir/All`, installed in this order.
    pub dependencies: Vec<Dependency>,
    /// On failure, keep the work area as `logs_dir/<port>.work.tar`.
    pub keep_work_on_failure: bool,
    /// The variant's make variable assignments (`PortMeta::variant`).
    pub variant: Vec<String>,
    /// The bootstrap kit holds this package already (`PortMeta::bootstrap_pkg`).
    pub bootstrap_pkg: bool,
    /// The build's make jobs, recorded with every phase.
    pub make_jobs: u32,
    /// Where the work area goes ([`WorkArea::for_config`], or the
    /// scheduler's [`super::work_area::place`] for `work_dir = "auto"`).
    pub work_area: WorkArea,
    /// The scheduler's expected peak memory of the build (bytes), where it
    /// made an estimate; an executor that reserves memory (Slurm's `--mem`)
    /// asks for this much.
    pub expected_memory: Option<u64>,
    /// The port's critical path (its expected time plus the longest chain
    /// after it, ms), where the scheduler ranked it: an executor with a
    /// queue of its own (Slurm) orders its pending builds by it.
    pub critical_path_ms: Option<u64>,
}

/// A dependency package: its file name in `packages_dir/All` and the port
/// that must have built it (checked against the package's manifest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    pub file: String,
    pub origin: Origin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutcomeStatus {
    Success,
    Failed,
    /// Killed on the operator's request.
    Interrupted,
}

/// Wakes the watch loop of every sandbox that was given it, which then
/// kills its helper: the second Ctrl-C. A pipe nobody reads stays readable,
/// so one byte reaches every poller.
pub struct Cancel {
    read: OwnedFd,
    write: OwnedFd,
}

impl Cancel {
    pub fn new() -> Result<Cancel> {
        let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        Ok(Cancel { read, write })
    }

    pub fn fire(&self) {
        let _ = nix::unistd::write(&self.write, b"x");
    }

    /// Fires when the process receives `signal` (the handler only writes
    /// to the pipe, which is async-signal-safe): how a build run as a
    /// Slurm job kills its sandbox when slurmstepd sends SIGTERM.
    pub fn fire_on(&self, signal: i32) -> Result<()> {
        let write = self.write.try_clone().context("cannot duplicate the cancel pipe")?;
        signal_hook::low_level::pipe::register(signal, write)
            .with_context(|| format!("cannot install the handler of signal {signal}"))?;
        Ok(())
    }

    /// Waits up to `timeout` for the cancel; true once it has fired.
    pub fn wait(&self, timeout: Duration) -> bool {
        let mut fds = [PollFd::new(self.read.as_fd(), PollFlags::POLLIN)];
        let timeout = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
        matches!(nix::poll::poll(&mut fds, timeout), Ok(n) if n > 0)
    }
}

/// Exactly what happened to one build.
#[derive(Debug, Clone, Serialize)]
pub struct BuildOutcome {
    pub status: OutcomeStatus,
    pub failed_phase: Option<Phase>,
    pub reason: Option<String>,
    pub duration: Duration,
    pub log_path: PathBuf,
    /// The package placed in the repository.
    pub package: Option<PathBuf>,
    /// The failed build's work area, kept on request (`portsynth test`).
    pub kept_work: Option<PathBuf>,
    /// Output lines that looked wrong (see [`super::abnormal`]).
    pub abnormal_output: Vec<String>,
    /// CPU time of everything the sandbox ran (its cgroup), where known.
    pub cpu_time: Option<Duration>,
    /// Peak memory of the sandbox (its cgroup), where known.
    pub peak_memory: Option<u64>,
    /// What each phase used, in order (of the last attempt, when retried
    /// on disk).
    pub phases: Vec<PhaseUsage>,
    pub make_jobs: u32,
    /// Where the (last attempt's) work area was.
    pub work_area: WorkArea,
    /// The tmpfs work area filled up and the build was run again on disk.
    pub retried_on_disk: bool,
}

impl BuildOutcome {
    /// A build that failed before anything of it was measured (its host
    /// side could not run, or its Slurm job left no outcome).
    pub fn failed_unmeasured(
        reason: String,
        duration: Duration,
        log_path: PathBuf,
        make_jobs: u32,
        work_area: WorkArea,
    ) -> Self {
        BuildOutcome {
            status: OutcomeStatus::Failed,
            failed_phase: None,
            reason: Some(reason),
            duration,
            log_path,
            package: None,
            kept_work: None,
            abnormal_output: vec![],
            cpu_time: None,
            peak_memory: None,
            phases: vec![],
            make_jobs,
            work_area,
            retried_on_disk: false,
        }
    }

    /// Peak size of the work area (sampled), over all phases.
    pub fn peak_work(&self) -> Option<u64> {
        self.phases.iter().filter_map(|p| p.peak_work).max()
    }

    /// What the coordinator stores for the build.
    pub fn usage(&self) -> BuildUsage {
        BuildUsage {
            cpu: self.cpu_time,
            peak_memory: self.peak_memory,
            peak_work: self.peak_work(),
            make_jobs: Some(self.make_jobs),
            work_dir: Some(self.work_area.name()),
            retried_on_disk: self.retried_on_disk,
            phases: self.phases.clone(),
        }
    }
}

/// Progress for the UI.
#[derive(Debug, Clone)]
pub enum Progress {
    Phase(Phase),
    Lines(u64),
}

/// Where the helper binary is (the running `portsynth`, or for tests the
/// built binary).
pub fn default_helper() -> Result<PathBuf> {
    std::env::current_exe().context("cannot find the portsynth binary to run the sandbox helper")
}

/// What becomes of the package a successful build left in its slot's
/// outbox.
#[derive(Debug, Clone, Copy)]
pub enum Delivery<'a> {
    /// Verified and placed into `packages_dir/All` (a local build: this
    /// process is the coordinator).
    Repository,
    /// Copied, unverified, into this directory (a build run as a Slurm job:
    /// the coordinator verifies and places it, see [`deliver_package`]).
    HandOver(&'a Path),
}

/// Builds one port in a fresh sandbox and places its package into the
/// repository. `Err` means the host side could not even start (e.g. the
/// slot directory cannot be created); everything that happens inside is an
/// `Ok(BuildOutcome)`.
pub fn build_one(
    config: &Config,
    helper: &Path,
    request: &SandboxRequest,
    progress: &dyn Fn(Progress),
    cancel: Option<&Cancel>,
) -> Result<BuildOutcome> {
    build_in_slot(config, helper, request, progress, cancel, Delivery::Repository)
}

/// [`build_one`] with the package's `delivery` chosen by the caller.
pub fn build_in_slot(
    config: &Config,
    helper: &Path,
    request: &SandboxRequest,
    progress: &dyn Fn(Progress),
    cancel: Option<&Cancel>,
    delivery: Delivery<'_>,
) -> Result<BuildOutcome> {
    let started = Instant::now();
    let kit = crate::framework::pkgsrc::prefix::of_config(config)?;
    let slot = Slot::create(&config.build_base, request.slot)?;
    let mut dirs = vec![config.logs_dir.clone(), config.distfiles_dir.clone()];
    // A build that hands its package over never writes the repository.
    if let Delivery::Repository = delivery {
        dirs.push(config.packages_dir.join(crate::repo::index::ALL_DIR));
    }
    for dir in &dirs {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let log_path = request.origin.log_file(&config.logs_dir);
    let mut log = Log::create(&log_path, config.max_log_size)?;
    log.header(&spec_for(config, request, &slot, kit.as_ref(), None), request)?;
    let sandbox = Sandbox { config, helper, request, slot: &slot, kit: kit.as_ref(), progress, cancel };
    let (attempt, retried_on_disk) = sandbox.run(&mut log)?;
    let mut outcome = attempt.ended;
    let package = match outcome.status {
        // Only a request with the package phase has a package to deliver
        // (fetch-only runs fetch and checksum alone).
        OutcomeStatus::Success if !request.phases.contains(&Phase::Package) => None,
        OutcomeStatus::Success => match delivery.deliver(config, &slot, request) {
            Ok(path) => Some(path),
            Err(e) => {
                outcome = Ended {
                    status: OutcomeStatus::Failed,
                    failed_phase: Some(Phase::Package),
                    reason: Some(format!("{e:#}")),
                };
                None
            }
        },
        OutcomeStatus::Failed | OutcomeStatus::Interrupted => None,
    };
    let kept_work = match outcome.status {
        OutcomeStatus::Failed if request.keep_work_on_failure => keep_work(config, &slot, &request.origin),
        _ => None,
    };
    slot.remove();
    let outcome = BuildOutcome {
        status: outcome.status,
        failed_phase: outcome.failed_phase,
        reason: outcome.reason,
        duration: started.elapsed(),
        log_path,
        package,
        kept_work,
        abnormal_output: std::mem::take(&mut log.abnormal).finish(),
        cpu_time: attempt.usage.cpu,
        peak_memory: attempt.usage.peak_memory,
        phases: attempt.phases,
        make_jobs: request.make_jobs,
        work_area: attempt.work_area,
        retried_on_disk,
    };
    log.footer(&outcome)?;
    Ok(outcome)
}

/// Everything one attempt at a build needs besides its work area.
struct Sandbox<'a> {
    config: &'a Config,
    helper: &'a Path,
    request: &'a SandboxRequest,
    slot: &'a Slot,
    kit: Option<&'a UnpackedKit>,
    progress: &'a dyn Fn(Progress),
    cancel: Option<&'a Cancel>,
}

/// One run of the sandbox, as it ended.
struct Attempt {
    ended: Ended,
    usage: Usage,
    phases: Vec<PhaseUsage>,
    work_area: WorkArea,
    /// A phase failed with the tmpfs work area full.
    tmpfs_full: bool,
}

impl Attempt {
    /// This attempt, after `earlier` one: the CPU time of both, the higher
    /// peak memory.
    fn after(mut self, earlier: Attempt) -> Attempt {
        self.usage.cpu = match (self.usage.cpu, earlier.usage.cpu) {
            (Some(a), Some(b)) => Some(a + b),
            (a, b) => a.or(b),
        };
        self.usage.peak_memory = self.usage.peak_memory.max(earlier.usage.peak_memory);
        self
    }
}

impl Sandbox<'_> {
    /// The build with the requested work area and, if a phase failed with
    /// its tmpfs full, once more on disk (the reason then says so). Returns
    /// the last attempt and whether it was the retry.
    fn run(&self, log: &mut Log) -> Result<(Attempt, bool)> {
        let first = self.attempt(self.request.work_area, log)?;
        if !first.tmpfs_full {
            return Ok((first, false));
        }
        let why = format!("work area full (tmpfs_size {})", format_size(self.config.tmpfs_size));
        log.line(&format!("\n*** {why}: building once more with a disk work area"))?;
        clear_files(&self.slot.outbox)?;
        let mut retry = self.attempt(WorkArea::Disk, log)?.after(first);
        retry.ended.reason = Some(match retry.ended.reason.take() {
            Some(reason) => format!("{why}, retried on disk: {reason}"),
            None => format!("{why}; retried on disk"),
        });
        Ok((retry, true))
    }

    /// Runs the helper once with a work area of `kind`, in a cgroup of its
    /// own; the disk image (if any) is removed when it has ended.
    fn attempt(&self, kind: WorkArea, log: &mut Log) -> Result<Attempt> {
        let (config, request) = (self.config, self.request);
        let disk = match kind {
            WorkArea::Tmpfs => None,
            WorkArea::Disk => {
                match DiskImage::create(&config.build_base, request.slot, config.disk_work_size, config.workers) {
                    Ok(image) => Some(image),
                    Err(e) => return Ok(Attempt::setup_failed(kind, format!("{e:#}"))),
                }
            }
        };
        let area = match &disk {
            Some(image) => format!("disk, {} ({})", format_size(image.size()), image.device().display()),
            None => format!("tmpfs, {}", format_size(config.tmpfs_size)),
        };
        log.line(&format!("Work area: {area}"))?;
        let spec = spec_for(config, request, self.slot, self.kit, disk.as_ref().map(|d| d.device().to_path_buf()));
        let limits = Limits { memory: config.memory_limit, processes: config.max_processes };
        let cgroup = SandboxCgroup::create(&SandboxCgroup::unique_name(request.slot), limits);
        let mut meter = Meter::new(cgroup.as_ref(), request.make_jobs);
        let watch = run_helper(self.helper, &spec, config, log, self.progress, self.cancel, &mut meter);
        let mut usage = cgroup.as_ref().map(SandboxCgroup::usage).unwrap_or_default();
        let (phases, failed_fill) = meter.finish(&mut usage);
        drop(cgroup);
        let disk_size = disk.as_ref().map(DiskImage::size);
        drop(disk);
        let mut ended = match watch {
            Ok(watch) => watch.outcome(request),
            Err(e) => Ended::setup_error(format!("{e:#}")),
        };
        let mut why = None;
        if ended.status == OutcomeStatus::Failed {
            why = limits::limit_reason(&usage, limits);
            if why.is_none() && failed_fill.is_some_and(|f| f.is_full()) {
                why = Some(match disk_size {
                    Some(size) => format!("work area full (disk_work_size {})", format_size(size)),
                    None => format!("work area full (tmpfs_size {})", format_size(config.tmpfs_size)),
                });
            }
        }
        let tmpfs_full = disk_size.is_none() && why.as_deref().is_some_and(|w| w.starts_with("work area full"));
        if let Some(why) = why.filter(|_| !tmpfs_full) {
            log.line(&format!("\n*** {why}"))?;
            ended.reason = Some(match ended.reason.take() {
                Some(reason) => format!("{why}; {reason}"),
                None => why,
            });
        }
        Ok(Attempt { ended, usage, phases, work_area: kind, tmpfs_full })
    }
}

impl Attempt {
    fn setup_failed(kind: WorkArea, reason: String) -> Attempt {
        Attempt {
            ended: Ended::setup_error(reason),
            usage: Usage::default(),
            phases: vec![],
            work_area: kind,
            tmpfs_full: false,
        }
    }
}

/// The per-phase measurements of one attempt (see the module docs).
struct Meter<'a> {
    cgroup: Option<&'a SandboxCgroup>,
    make_jobs: u32,
    /// The work area as seen through the helper's root.
    work: Option<PathBuf>,
    running: Option<RunningPhase>,
    phases: Vec<PhaseUsage>,
    /// The build's peak memory across the per-phase resets.
    peak_memory: Option<u64>,
    /// The work area when a phase failed, as PID 1 saw it.
    failed_fill: Option<Fill>,
    last_sample: Instant,
}

struct RunningPhase {
    phase: Phase,
    started: Instant,
    cpu: Option<Duration>,
    peak_work: Option<u64>,
    split: Split,
    /// No sample of the runnable threads failed: the split is whole.
    split_complete: bool,
}

impl<'a> Meter<'a> {
    /// How often a running phase's work area, CPU time and runnable
    /// threads are sampled.
    const SAMPLE_EVERY: Duration = Duration::from_millis(250);

    fn new(cgroup: Option<&'a SandboxCgroup>, make_jobs: u32) -> Meter<'a> {
        Meter {
            cgroup,
            make_jobs,
            work: None,
            running: None,
            phases: vec![],
            peak_memory: None,
            failed_fill: None,
            last_sample: Instant::now(),
        }
    }

    /// The helper's PID 1 pivots the helper's root too, so its `root` link
    /// shows the sandbox's work area.
    fn watch(&mut self, helper_pid: u32) {
        self.work = Some(PathBuf::from(format!("/proc/{helper_pid}/root{}", HelperSpec::CONSTRUCTION)));
    }

    fn start(&mut self, phase: Phase) {
        self.peak_memory = self.peak_memory.max(self.cgroup.and_then(SandboxCgroup::peak_memory_now));
        if let Some(cgroup) = self.cgroup {
            cgroup.reset_peak_memory();
        }
        let cpu = self.cgroup.and_then(SandboxCgroup::cpu_now);
        self.running = Some(RunningPhase {
            phase,
            started: Instant::now(),
            cpu,
            peak_work: None,
            split: Split::default(),
            split_complete: true,
        });
        self.sample();
    }

    fn next_sample(&self) -> Option<Instant> {
        self.running.as_ref().map(|_| self.last_sample + Self::SAMPLE_EVERY)
    }

    fn sample(&mut self) {
        self.last_sample = Instant::now();
        let used = self.work.as_deref().and_then(Fill::of).map(|f| f.used);
        let cpu = self.cgroup.and_then(|c| Some((c.cpu_now()?, c.runnable_threads(2)?)));
        if let Some(running) = &mut self.running {
            running.peak_work = running.peak_work.max(used);
            match cpu {
                Some((cpu, runnable)) => running.split.sample(self.last_sample, cpu, runnable),
                None => running.split_complete = false,
            }
        }
    }

    /// Ends the running phase; returns its wall time.
    fn end(&mut self, ok: bool, fill: Option<Fill>) -> Duration {
        self.sample();
        let Some(running) = self.running.take() else { return Duration::ZERO };
        let phase = running.phase;
        let wall = running.started.elapsed();
        let split = running.split_complete.then_some(running.split);
        let cpu = match (self.cgroup.and_then(SandboxCgroup::cpu_now), running.cpu) {
            (Some(now), Some(then)) => Some(now.saturating_sub(then)),
            _ => None,
        };
        let peak_memory = self.cgroup.and_then(SandboxCgroup::peak_memory_now);
        self.peak_memory = self.peak_memory.max(peak_memory);
        if !ok {
            self.failed_fill = fill;
        }
        self.phases.push(PhaseUsage {
            phase: phase.name().to_string(),
            wall_ms: wall.as_millis() as u64,
            cpu_ms: cpu.map(|c| c.as_millis() as u64),
            make_jobs: self.make_jobs,
            peak_memory,
            peak_work: running.peak_work.max(fill.map(|f| f.used)),
            serial_ms: split.map(|s| s.serial.as_millis() as u64),
            parallel_cpu_ms: split.map(|s| s.parallel_cpu.as_millis() as u64),
        });
        wall
    }

    /// The phases, and the work area of a failed one; folds the phases'
    /// peaks into the build's `usage`.
    /// A phase still running (its sandbox was killed) ends here.
    fn finish(mut self, usage: &mut Usage) -> (Vec<PhaseUsage>, Option<Fill>) {
        if self.running.is_some() {
            self.end(false, None);
        }
        usage.peak_memory = usage.peak_memory.max(self.peak_memory);
        (self.phases, self.failed_fill)
    }
}

fn spec_for(
    config: &Config,
    request: &SandboxRequest,
    slot: &Slot,
    kit: Option<&UnpackedKit>,
    work_device: Option<PathBuf>,
) -> HelperSpec {
    let framework = config.framework.framework();
    HelperSpec {
        parent_pid: std::process::id(),
        slot: request.slot,
        root: slot.root.clone(),
        system_path: config.system_path.clone(),
        ports_dir: config.ports_dir.clone(),
        packages_dir: config.packages_dir.clone(),
        distfiles_dir: config.distfiles_dir.clone(),
        outbox: slot.outbox.clone(),
        tmpfs_size: config.tmpfs_size,
        work_device,
        port_dir: request.origin.dir(),
        flavor: request.origin.flavor.clone(),
        pkgname: request.pkgname.clone(),
        phases: request.phases.clone(),
        dependencies: request
            .dependencies
            .iter()
            .map(|dep| DependencyInstall {
                file: dep.file.clone(),
                policy: PackagePolicy::for_port(config, &dep.origin),
            })
            .collect(),
        keep_work: request.keep_work_on_failure,
        build_user: config.build_user.clone(),
        make_program: crate::framework::pkgsrc::prefix::make_program(config, kit),
        make_jobs: request.make_jobs as usize,
        make_env: config.make_conf.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        fetch_local_hosts: config.fetch_local_hosts.clone(),
        distfile_mirrors: config.distfile_mirrors.clone(),
        fetch_upstream: config.fetch_upstream,
        framework: config.framework,
        variant: request.variant.clone(),
        bootstrap_pkg: request.bootstrap_pkg,
        kit: kit.map(|kit| (kit.host.clone(), kit.prefix.clone())),
        mk_conf: kit.and_then(|kit| {
            let text = framework.build_mk_conf(&kit.prefix, config.mk_conf.as_deref())?;
            Some((crate::framework::pkgsrc::MK_CONF.into(), text))
        }),
    }
}

/// `build_base/SLnn` (the sandbox root's mount point) and `SLnn.out` (where
/// the helper leaves the package). Plain directories on the host: every
/// mount on them exists only inside the helper's namespace.
struct Slot {
    root: PathBuf,
    outbox: PathBuf,
}

impl Slot {
    fn create(build_base: &Path, number: u32) -> Result<Slot> {
        let root = build_base.join(format!("SL{number:02}"));
        let outbox = build_base.join(format!("SL{number:02}.out"));
        for dir in [&root, &outbox] {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create slot directory {}", dir.display()))?;
        }
        clear_files(&outbox)?;
        Ok(Slot { root, outbox })
    }

    fn remove(&self) {
        let _ = clear_files(&self.outbox);
        let _ = std::fs::remove_dir(&self.outbox);
        let _ = std::fs::remove_dir(&self.root);
    }
}

/// Removes the regular files directly in `dir`; never recurses.
pub fn clear_files(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            std::fs::remove_file(entry.path()).with_context(|| format!("cannot remove {}", entry.path().display()))?;
        }
    }
    Ok(())
}

/// Moves the helper's archive of the failed work area next to the log.
fn keep_work(config: &Config, slot: &Slot, origin: &Origin) -> Option<PathBuf> {
    let archive = slot.outbox.join(HelperSpec::WORK_ARCHIVE);
    let kept = config.logs_dir.join(format!("{}.work.tar", origin.log_stem()));
    std::fs::rename(&archive, &kept).ok().map(|_| kept)
}

impl Delivery<'_> {
    /// Delivers the package the helper left in the slot's outbox; returns
    /// where it went.
    fn deliver(self, config: &Config, slot: &Slot, request: &SandboxRequest) -> Result<PathBuf> {
        let file = slot.outbox.join(package_file_name(config, &request.pkgname));
        match self {
            Delivery::Repository => deliver_package(config, &file, request),
            Delivery::HandOver(dir) => hand_over(&file, dir, config.package_size_limit),
        }
    }
}

/// What a package file may have beyond its contents: headers, manifest,
/// padding.
pub const ARCHIVE_OVERHEAD: u64 = 1 << 20;

/// The package file a build of `pkgname` leaves, in the framework's format.
pub fn package_file_name(config: &Config, pkgname: &str) -> String {
    config.framework.framework().package_format().file_name(pkgname)
}

/// Verifies the package `file` against the port's policy, in the
/// framework's package format (see [`crate::repo::PackageFormat::deliver`]),
/// and places it into `All/`; on any problem nothing reaches `All/`.
pub fn deliver_package(config: &Config, file: &Path, request: &SandboxRequest) -> Result<PathBuf> {
    let format = config.framework.framework().package_format();
    let policy = PackagePolicy::for_port(config, &request.origin);
    format.deliver(file, &request.pkgname, &policy, &config.packages_dir.join(crate::repo::index::ALL_DIR))
}

/// Copies the package `file` into `dir`: a regular file no larger than
/// `expanded_limit` (what its contents may be, `package_size_limit`) plus
/// [`ARCHIVE_OVERHEAD`].
fn hand_over(file: &Path, dir: &Path, expanded_limit: u64) -> Result<PathBuf> {
    let meta = std::fs::symlink_metadata(file).with_context(|| format!("no package {}", file.display()))?;
    let limit = expanded_limit.saturating_add(ARCHIVE_OVERHEAD);
    if !meta.is_file() || meta.len() > limit {
        anyhow::bail!("{} is not a regular file of at most {limit} bytes", file.display());
    }
    let name = file.file_name().with_context(|| format!("{} has no file name", file.display()))?;
    let target = dir.join(name);
    std::fs::copy(file, &target).with_context(|| format!("cannot copy {} to {}", file.display(), target.display()))?;
    Ok(target)
}

/// The outcome as the watch loop saw it, before the package is delivered.
struct Ended {
    status: OutcomeStatus,
    failed_phase: Option<Phase>,
    reason: Option<String>,
}

impl Ended {
    fn setup_error(reason: String) -> Ended {
        Ended { status: OutcomeStatus::Failed, failed_phase: None, reason: Some(reason) }
    }
}

/// Everything observed while the helper ran.
struct Watch {
    exit: std::process::ExitStatus,
    current: Option<Phase>,
    failed: Option<(Phase, Option<String>)>,
    setup_failure: Option<String>,
    killed_by: Option<String>,
    interrupted: bool,
}

impl Watch {
    fn outcome(self, request: &SandboxRequest) -> Ended {
        let failed = |phase: Option<Phase>, reason: String| Ended {
            status: OutcomeStatus::Failed,
            failed_phase: phase,
            reason: Some(reason),
        };
        if let Some(reason) = &self.killed_by {
            let mut ended = failed(self.current, reason.clone());
            if self.interrupted {
                ended.status = OutcomeStatus::Interrupted;
            }
            return ended;
        }
        if let Some((phase, detail)) = &self.failed {
            return failed(Some(*phase), detail.clone().unwrap_or_else(|| format!("{phase} failed")));
        }
        if let Some(reason) = &self.setup_failure {
            return failed(self.current, format!("sandbox setup failed: {reason}"));
        }
        match self.exit.code() {
            Some(EXIT_OK) if self.current == request.phases.last().copied() => {
                Ended { status: OutcomeStatus::Success, failed_phase: None, reason: None }
            }
            Some(EXIT_PHASE_FAILED) => failed(self.current, "a phase failed".into()),
            _ => failed(self.current, format!("sandbox helper ended with {}", self.exit)),
        }
    }
}

fn run_helper(
    helper: &Path,
    spec: &HelperSpec,
    config: &Config,
    log: &mut Log,
    progress: &dyn Fn(Progress),
    cancel: Option<&Cancel>,
    meter: &mut Meter,
) -> Result<Watch> {
    let (output_read, output_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let (event_read, event_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let mut command = Command::new(helper);
    command
        .arg("sandbox-helper")
        .stdin(Stdio::piped())
        .stdout(Stdio::from(output_write.try_clone()?))
        .stderr(Stdio::from(output_write));
    let event_raw = event_write.as_raw_fd();
    // SAFETY: dup2 and setsid are async-signal-safe.
    unsafe {
        command.pre_exec(move || {
            // A session of its own: no controlling terminal for anything in
            // the sandbox, and the terminal's signals reach only portsynth.
            nix::unistd::setsid()?;
            if libc::dup2(event_raw, EVENT_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().with_context(|| format!("cannot start the sandbox helper {}", helper.display()))?;
    drop(command);
    drop(event_write);
    // The helper waits for its spec, so it is in the cgroup before it
    // starts anything.
    if let Some(Err(e)) = meter.cgroup.map(|c| c.add(child.id())) {
        let _ = child.kill();
        let _ = child.wait();
        return Err(e);
    }
    let mut stdin = child.stdin.take().expect("piped stdin");
    serde_json::to_writer(&mut stdin, spec)?;
    drop(stdin);
    let mut watch = Watch {
        exit: std::process::ExitStatus::default(),
        current: None,
        failed: None,
        setup_failure: None,
        killed_by: None,
        interrupted: false,
    };
    let pipes = HelperPipes { output: output_read, events: event_read, helper_pid: child.id() };
    meter.watch(child.id());
    let result = pump(&mut watch, pipes, config, log, progress, cancel, meter);
    if result.is_err() {
        let _ = child.kill();
    }
    watch.exit = child.wait()?;
    result?;
    Ok(watch)
}

/// The running helper as the watch loop sees it.
struct HelperPipes {
    output: OwnedFd,
    events: OwnedFd,
    helper_pid: u32,
}

/// Reads output and events until both pipes close, enforcing the watchdogs.
fn pump(
    watch: &mut Watch,
    pipes: HelperPipes,
    config: &Config,
    log: &mut Log,
    progress: &dyn Fn(Progress),
    cancel: Option<&Cancel>,
    meter: &mut Meter,
) -> Result<()> {
    let helper_pid = pipes.helper_pid;
    let mut output = Some(File::from(pipes.output));
    let mut events = Some(File::from(pipes.events));
    let mut event_buffer = Vec::new();
    let mut phase_started = Instant::now();
    let mut last_output = Instant::now();
    let mut buffer = vec![0u8; 64 * 1024];
    while output.is_some() || events.is_some() {
        let limit = watch.current.map_or(Duration::from_secs(600), |p| config.phase_timeout(p));
        let deadlines = [
            (
                phase_started + limit,
                format!(
                    "phase {} ran longer than its limit of {} s (phase_timeouts)",
                    phase_name(watch.current),
                    limit.as_secs()
                ),
            ),
            (
                last_output + config.silent_timeout,
                format!("no output for {} s (silent_timeout)", config.silent_timeout.as_secs()),
            ),
        ];
        let (deadline, reason) = deadlines.into_iter().min_by_key(|(d, _)| *d).expect("two deadlines");
        let mut now = Instant::now();
        if meter.next_sample().is_some_and(|at| now >= at) {
            meter.sample();
            now = Instant::now();
        }
        if now >= deadline {
            watch.killed_by = Some(format!("watchdog: {reason}; sandbox killed"));
            log.line(&format!("\n*** watchdog: {reason}; killing the sandbox"))?;
            kill_helper(helper_pid);
            return drain(output, events);
        }
        let wake = meter.next_sample().map_or(deadline, |at| at.min(deadline));
        let timeout = PollTimeout::try_from(wake.saturating_duration_since(now)).unwrap_or(PollTimeout::MAX);
        let mut fds: Vec<PollFd> = Vec::new();
        let output_at = output.as_ref().map(|f| {
            fds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
            fds.len() - 1
        });
        let events_at = events.as_ref().map(|f| {
            fds.push(PollFd::new(f.as_fd(), PollFlags::POLLIN));
            fds.len() - 1
        });
        let cancel_at = cancel.map(|c| {
            fds.push(PollFd::new(c.read.as_fd(), PollFlags::POLLIN));
            fds.len() - 1
        });
        match nix::poll::poll(&mut fds, timeout) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(e) => return Err(e).context("poll"),
        }
        let ready: Vec<bool> = fds.iter().map(|f| f.revents().is_some_and(|r| !r.is_empty())).collect();
        drop(fds);
        if cancel_at.is_some_and(|i| ready[i]) {
            watch.killed_by = Some("interrupted by the operator; sandbox killed".into());
            watch.interrupted = true;
            log.line("\n*** interrupted by the operator; killing the sandbox")?;
            kill_helper(helper_pid);
            return drain(output, events);
        }
        if output_at.is_some_and(|i| ready[i]) {
            let n = output.as_mut().expect("open").read(&mut buffer)?;
            if n == 0 {
                output = None;
            } else {
                last_output = Instant::now();
                log.output(&buffer[..n])?;
                progress(Progress::Lines(log.lines));
                if log.over_limit() {
                    let reason = format!(
                        "log size limit of {} reached (max_log_size)",
                        crate::config::format_size(config.max_log_size)
                    );
                    watch.killed_by = Some(format!("{reason}; sandbox killed"));
                    kill_helper(helper_pid);
                    drain(output, events)?;
                    log.close_tail()?;
                    log.line(&format!("\n*** {reason}; sandbox killed"))?;
                    return Ok(());
                }
            }
        }
        if events_at.is_some_and(|i| ready[i]) {
            let n = events.as_mut().expect("open").read(&mut buffer)?;
            if n == 0 {
                events = None;
            }
            event_buffer.extend_from_slice(&buffer[..n]);
            while let Some(end) = event_buffer.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = event_buffer.drain(..=end).collect();
                if let Ok(event) = serde_json::from_slice::<Event>(&line) {
                    let clocks = (&mut phase_started, &mut last_output);
                    handle_event(watch, event, log, progress, clocks, meter)?;
                }
            }
        }
    }
    Ok(())
}

fn phase_name(phase: Option<Phase>) -> &'static str {
    phase.map_or("setup", Phase::name)
}

fn kill_helper(pid: u32) {
    {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
    }
}

/// After a kill, the pipes close as soon as the namespace is gone.
fn drain(output: Option<File>, events: Option<File>) -> Result<()> {
    for mut file in [output, events].into_iter().flatten() {
        let mut sink = Vec::new();
        let _ = file.read_to_end(&mut sink);
    }
    Ok(())
}

fn handle_event(
    watch: &mut Watch,
    event: Event,
    log: &mut Log,
    progress: &dyn Fn(Progress),
    (phase_started, last_output): (&mut Instant, &mut Instant),
    meter: &mut Meter,
) -> Result<()> {
    match event {
        Event::PhaseStart { phase } => {
            watch.current = Some(phase);
            *phase_started = Instant::now();
            *last_output = Instant::now();
            meter.start(phase);
            log.line(&format!("\n=======================<phase: {:<12}>============================", phase.name()))?;
            progress(Progress::Phase(phase));
        }
        Event::PhaseEnd { phase, ok, detail, work } => {
            let took = meter.end(ok, work);
            let verdict = if ok { "ok".to_string() } else { format!("FAILED: {}", detail.clone().unwrap_or_default()) };
            log.line(&format!("===> {} {verdict} ({:.2} s)", phase.name(), took.as_secs_f64()))?;
            if !ok {
                watch.failed = Some((phase, detail));
            }
        }
        Event::Installed { .. } | Event::Packaged { .. } => {}
        Event::SetupFailed { reason } => watch.setup_failure = Some(reason),
    }
    Ok(())
}

/// The per-port log: header, phase banners, merged output, footer.
///
/// The build's output is capped at `max_log_size`: its head is written as it
/// comes, the last [`Log::tail_size`] bytes are kept in memory once the head
/// is full, and when the cap is passed the build is killed and the tail
/// written after a note of what was left out.
struct Log {
    file: BufWriter<File>,
    lines: u64,
    abnormal: AbnormalOutput,
    /// Output bytes seen so far.
    seen: u64,
    cap: u64,
    tail: std::collections::VecDeque<u8>,
}

impl Log {
    fn create(path: &Path, cap: u64) -> Result<Log> {
        let file = File::create(path).with_context(|| format!("cannot create log {}", path.display()))?;
        Ok(Log {
            file: BufWriter::new(file),
            lines: 0,
            abnormal: AbnormalOutput::default(),
            seen: 0,
            cap,
            tail: Default::default(),
        })
    }

    /// A quarter of the cap, at most 1 MiB.
    fn tail_size(&self) -> u64 {
        (self.cap / 4).min(1 << 20)
    }

    fn over_limit(&self) -> bool {
        self.seen > self.cap
    }

    /// Writes the kept tail after a note of the bytes left out.
    fn close_tail(&mut self) -> Result<()> {
        let head = self.cap - self.tail_size();
        let omitted = self.seen.saturating_sub(head + self.tail.len() as u64);
        self.line(&format!(
            "\n*** {omitted} bytes of output left out (max_log_size); the last {} follow ***",
            self.tail.len()
        ))?;
        let (a, b) = self.tail.as_slices();
        self.file.write_all(a)?;
        self.file.write_all(b)?;
        self.tail.clear();
        self.file.flush()?;
        Ok(())
    }

    fn header(&mut self, spec: &HelperSpec, request: &SandboxRequest) -> Result<()> {
        let mut text = format!(
            "Origin:   {}\nPackage:  {}\nSlot:     SL{:02}\nStarted:  {}\nPhases:   {}\n\nEnvironment:\n",
            request.origin,
            request.pkgname,
            request.slot,
            crate::report::utc_time(unix_ms()),
            request.phases.iter().map(|p| p.name()).collect::<Vec<_>>().join(" "),
        );
        for (key, value) in spec.make_environment() {
            text.push_str(&format!("  {key}={value}\n"));
        }
        text.push_str("\nDependency packages installed:\n");
        if request.dependencies.is_empty() {
            text.push_str("  (none)\n");
        }
        for dep in &request.dependencies {
            text.push_str(&format!("  {}\n", dep.file));
        }
        self.file.write_all(text.as_bytes())?;
        self.file.flush()?;
        Ok(())
    }

    fn output(&mut self, bytes: &[u8]) -> Result<()> {
        self.lines += bytes.iter().filter(|b| **b == b'\n').count() as u64;
        self.abnormal.feed(bytes);
        let head = self.cap - self.tail_size();
        let room = head.saturating_sub(self.seen).min(bytes.len() as u64) as usize;
        self.seen += bytes.len() as u64;
        let (to_file, to_tail) = bytes.split_at(room);
        self.tail.extend(to_tail);
        let excess = self.tail.len().saturating_sub(self.tail_size() as usize);
        self.tail.drain(..excess);
        self.file.write_all(to_file)?;
        // Flushed per read so `tail -f` on the log follows the build.
        self.file.flush()?;
        Ok(())
    }

    fn line(&mut self, text: &str) -> Result<()> {
        self.file.write_all(text.as_bytes())?;
        self.file.write_all(b"\n")?;
        self.file.flush()?;
        Ok(())
    }

    fn footer(&mut self, outcome: &BuildOutcome) -> Result<()> {
        let mut text = format!("\n{FOOTER_BANNER}\n");
        match outcome.status {
            OutcomeStatus::Success => text.push_str("Result:   success\n"),
            OutcomeStatus::Failed | OutcomeStatus::Interrupted => {
                text.push_str(if outcome.status == OutcomeStatus::Failed {
                    "Result:   FAILED\n"
                } else {
                    "Result:   INTERRUPTED\n"
                });
                text.push_str(&format!("Phase:    {}\n", phase_name(outcome.failed_phase)));
                text.push_str(&format!("Reason:   {}\n", outcome.reason.as_deref().unwrap_or("")));
            }
        }
        text.push_str(&format!("  {}\n", phase_header()));
        for phase in &outcome.phases {
            text.push_str(&format!("  {}\n", phase_row(phase)));
        }
        text.push_str(&format!("Work:     {}", outcome.work_area.name()));
        if outcome.retried_on_disk {
            text.push_str(" (retried on disk: the tmpfs work area was full)");
        }
        text.push_str(&format!(", {} peak\n", megabytes(outcome.peak_work())));
        text.push_str(&format!("Total:    {:.2} s\n", outcome.duration.as_secs_f64()));
        if let Some(cpu) = outcome.cpu_time {
            text.push_str(&format!("CPU:      {:.2} s\n", cpu.as_secs_f64()));
        }
        if let Some(peak) = outcome.peak_memory {
            text.push_str(&format!("Memory:   {} MiB peak\n", peak >> 20));
        }
        if let Some(package) = &outcome.package {
            text.push_str(&format!("Package:  {}\n", package.display()));
        }
        self.line(text.trim_end())
    }
}

/// One phase as the log footer and `history` show it.
pub fn phase_row(phase: &PhaseUsage) -> String {
    let seconds = |ms: u64| format!("{:.2} s", ms as f64 / 1000.0);
    format!(
        "{:<12} {:>10} {:>10} {:>5} {:>10} {:>10} {:>10} {:>10}",
        phase.phase,
        seconds(phase.wall_ms),
        phase.cpu_ms.map_or("-".into(), seconds),
        phase.make_jobs,
        phase.serial_ms.map_or("-".into(), seconds),
        phase.parallel_cpu_ms.map_or("-".into(), seconds),
        megabytes(phase.peak_memory),
        megabytes(phase.peak_work)
    )
}

/// The column names over [`phase_row`]s: `serial` is the wall time with at
/// most one thread runnable, `par. CPU` the CPU time with more.
pub fn phase_header() -> String {
    format!(
        "{:<12} {:>10} {:>10} {:>5} {:>10} {:>10} {:>10} {:>10}",
        "phase", "wall", "CPU", "jobs", "serial", "par. CPU", "memory", "work area"
    )
}

/// `12.5 MiB`, or `-` when unknown.
pub fn megabytes(bytes: Option<u64>) -> String {
    bytes.map_or("-".into(), |b| format!("{:.1} MiB", b as f64 / (1 << 20) as f64))
}

fn unix_ms() -> i64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
