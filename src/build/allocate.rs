//! How many cores a build gets, and whether it may start at all: pure
//! functions over a picture of the machine, shared by the build scheduler and
//! the simulator (`sim::resources`), so what the figure measures is what the
//! scheduler does.
//!
//! A slot is not a unit of work. A port that runs `configure` for a minute
//! and compiles for ten seconds gains nothing from 16 make jobs; a compiler
//! that compiles for an hour gains nearly 16×. So each port has a speed-up
//! model fitted from its history ([`fit_model`]): Amdahl's law with a serial
//! time `s` (fetch, extract, configure, package, and the part of the build
//! that does not parallelise) and parallel work `p`, `T(j) = s + p / j`. A
//! build at `j > 1` determines both: the runner samples how many of its
//! threads were runnable (`sandbox::parallelism`), which splits its build
//! phase into serial time and parallel CPU time however many builds
//! shared the cores; phases other than `build` count wholly as serial.
//! (Wall and CPU alone, `wall = s + p/j` and `cpu ≈ s + p`, are the
//! fallback for builds recorded without the split: they read a contended
//! build as one that does not speed up.) A build that holds `j` cores for `T(j)` spends `j·s + p` core
//! time: every job beyond the first wastes `s`, which is why jobs are not
//! handed out evenly but where they shorten the build.
//!
//! The policy ([`next_start`]), in the order it is applied:
//!
//! 1. **Order is the queue's.** The ready ports come in the scheduler's
//!    order (critical path first, `queue::CriticalPath`); the allocator never
//!    reorders them, it only decides how much the next one gets, or that it
//!    must wait.
//! 2. **Memory is admission, never overcommitted.** A port starts only if its
//!    expected peak memory at one job fits the budget minus what the running
//!    builds expect at their jobs, and it gets no more jobs than keep it
//!    within what is left. Expected memory grows with the jobs: a fixed part
//!    and a part per job, fitted from the largest peak seen at each number of
//!    jobs ([`fit_memory`]); without history, [`DEFAULT_MEMORY`] at any
//!    jobs. A port that does not fit lets a smaller one behind it start;
//!    when nothing runs, the first ready port starts whatever its size, so a
//!    port larger than the machine cannot deadlock the build.
//! 3. **No core idles while a port is ready**, with one exception. The next
//!    port starts as soon as one core and one worker are free — unless it is
//!    on the critical path, needs more jobs than are free to stay there, and
//!    would end sooner by waiting for the running builds to free them than by
//!    starting crippled now; then it waits and nothing behind it takes the
//!    free cores (a critical port on one job for its whole build cost 25 % of
//!    the makespan in the simulation).
//! 4. **Jobs go where they shorten the makespan.** The remaining build
//!    cannot end before `E = max(remaining CPU work / cores, the longest
//!    remaining chain)`. A port whose chain (its own time plus what must
//!    still happen after it: the longest chain of expected time after it,
//!    or the exact work of its dependents in the build over the cores,
//!    whichever is longer — [`tails`]) fits within `E` with fewer jobs has
//!    slack: it gets the fewest jobs that keep it within `E` — one, on a
//!    full machine, the most efficient use of a core. A port on the critical
//!    path gets its useful maximum: the `j` beyond which one job more saves
//!    less than [`USEFUL_GAIN`] of its time ([`PortModel::useful_jobs`]).
//! 5. **Spare cores are shared, not hoarded.** Cores that no ready port needs
//!    for its chain are shared among the ports that can start now in
//!    proportion to their expected work (capped by their useful maximum), so
//!    a thin ready queue still uses the machine, a long build beside many
//!    short ones gets the cores they would hand back at once, and no port
//!    takes so many that the next one waits on an otherwise idle machine.
//! 6. **Without history, a fair share**: `cores / workers` jobs (at least
//!    one); a port that declares itself unsafe for parallel make (pkgsrc
//!    `MAKE_JOBS_SAFE=no`) always gets one.
//!
//! Cargo's job queue gives every unit one job token from a shared pool;
//! bob maps history onto a log scale of jobs per port without looking at the
//! graph. The difference here is the critical path: jobs are spent where the
//! end of the build is decided, cores are kept free for the ports that can
//! use them, and memory is a budget, not a hope.

use std::fmt;

use crate::graph::Graph;

/// What a port is expected to need when its history says nothing (bytes).
pub const DEFAULT_MEMORY: u64 = 1 << 30;

/// One more job is worth it while it saves at least this fraction of the
/// build's time.
pub const USEFUL_GAIN: f64 = 0.05;

/// Without a build at more than one job, the share of the build phase taken
/// as parallel (refined by the first build with `j > 1`).
pub const DEFAULT_PARALLEL_FRACTION: f64 = 0.7;

/// With the peak memory recorded at one number of jobs only, the share of it
/// taken as growing with the jobs (refined by builds at other jobs).
pub const DEFAULT_MEMORY_PER_JOB_FRACTION: f64 = 0.5;

/// One past build of a port, as the build database records it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// The make jobs it had.
    pub jobs: u32,
    pub wall_ms: f64,
    /// CPU time of the whole process tree (user + system).
    pub cpu_ms: f64,
    /// Wall time of the phases that never run in parallel (fetch, extract,
    /// configure, package …), when the phases were timed.
    pub serial_phases_ms: Option<f64>,
    /// The build phase's serial time and parallel CPU time, sampled
    /// from its runnable threads (`sandbox::parallelism`), where recorded.
    pub build_split: Option<(f64, f64)>,
    /// Peak memory of the build's cgroup.
    pub peak_memory: Option<u64>,
}

/// A port's expected behaviour: `T(j) = serial_ms + parallel_ms / j`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PortModel {
    pub serial_ms: f64,
    pub parallel_ms: f64,
    /// The useful maximum of jobs (see [`PortModel::useful_jobs`]).
    pub max_jobs: u32,
    /// Expected peak memory (bytes) at one job; see [`PortModel::memory_at`].
    pub memory: u64,
    /// What each job beyond the first adds to the peak memory (bytes).
    pub memory_per_job: u64,
    pub parallel_safe: bool,
    /// False: no history, the numbers are defaults (fair share applies).
    pub from_history: bool,
}

impl PortModel {
    /// A port with this speed-up, safe for parallel make, memory unknown.
    pub fn new(serial_ms: f64, parallel_ms: f64) -> Self {
        let (serial_ms, parallel_ms) = (serial_ms.max(0.0), parallel_ms.max(0.0));
        let max_jobs = Self::useful_jobs(serial_ms, parallel_ms);
        PortModel {
            serial_ms,
            parallel_ms,
            max_jobs,
            memory: DEFAULT_MEMORY,
            memory_per_job: 0,
            parallel_safe: true,
            from_history: true,
        }
    }

    /// A port never built: `expected_ms` at one job, split by
    /// [`DEFAULT_PARALLEL_FRACTION`], memory [`DEFAULT_MEMORY`].
    pub fn unknown(expected_ms: f64) -> Self {
        let parallel = expected_ms * DEFAULT_PARALLEL_FRACTION;
        PortModel { from_history: false, ..Self::new(expected_ms - parallel, parallel) }
    }

    /// The same peak memory at any number of jobs.
    pub fn with_memory(self, memory: u64) -> Self {
        PortModel { memory, memory_per_job: 0, ..self }
    }

    /// Peak memory `memory` at one job, `per_job` more for each job beyond.
    pub fn with_memory_per_job(self, memory: u64, per_job: u64) -> Self {
        PortModel { memory, memory_per_job: per_job, ..self }
    }

    /// Expected peak memory with `jobs` make jobs: a fixed part (the one
    /// process that links, the work area) and a part per job (each
    /// compiler running at once).
    pub fn memory_at(&self, jobs: u32) -> u64 {
        let jobs = if self.parallel_safe { jobs.max(1) } else { 1 };
        self.memory.saturating_add(self.memory_per_job.saturating_mul(u64::from(jobs - 1)))
    }

    /// `MAKE_JOBS_SAFE=no`: one job, always.
    pub fn not_parallel_safe(self) -> Self {
        PortModel { parallel_safe: false, max_jobs: 1, ..self }
    }

    /// Expected wall time with `jobs` make jobs.
    pub fn time(&self, jobs: u32) -> f64 {
        let jobs = if self.parallel_safe { jobs.max(1) } else { 1 };
        self.serial_ms + self.parallel_ms / f64::from(jobs)
    }

    /// CPU work at one job: what the build costs the machine at the least.
    pub fn work(&self) -> f64 {
        self.serial_ms + self.parallel_ms
    }

    /// Expected time at the useful maximum of jobs.
    pub fn best_time(&self) -> f64 {
        self.time(self.max_jobs)
    }

    /// The smallest `j` from which one job more saves less than
    /// [`USEFUL_GAIN`] of `T(j)`: `T(j) - T(j+1) = p / (j (j+1))`.
    pub fn useful_jobs(serial_ms: f64, parallel_ms: f64) -> u32 {
        const CEILING: u32 = 1024;
        let mut j = 1;
        while j < CEILING {
            let time = serial_ms + parallel_ms / f64::from(j);
            let saved = parallel_ms / f64::from(j * (j + 1));
            if time <= 0.0 || saved < USEFUL_GAIN * time {
                break;
            }
            j += 1;
        }
        j
    }
}

/// Fits the model to a port's past builds: per build at `j > 1`, the
/// sampled split of its build phase (`s` = the other phases plus the build
/// phase's serial time, `p` = its parallel CPU time), which holds
/// however contended the build was; where it was not sampled, `p = (cpu -
/// wall) · j / (j - 1)` of the build phase and `s = wall - p / j`, which
/// holds only for a build that had its cores. The medians over the builds.
/// Without any build at `j > 1` the build phase is split by
/// [`DEFAULT_PARALLEL_FRACTION`]. Memory: see [`fit_memory`]. No samples:
/// [`PortModel::unknown`] at 60 s.
pub fn fit_model(samples: &[Sample]) -> PortModel {
    if samples.is_empty() {
        return PortModel::unknown(60_000.0);
    }
    let mut serial = Vec::with_capacity(samples.len());
    let mut parallel = Vec::with_capacity(samples.len());
    for sample in samples {
        let (s, p) = split(sample);
        serial.push(s);
        parallel.push(p);
    }
    let model = PortModel::new(median(&mut serial), median(&mut parallel));
    match fit_memory(samples) {
        Some((memory, per_job)) => model.with_memory_per_job(memory, per_job),
        None => model,
    }
}

/// Peak memory at one job and per job beyond it, from the largest peak seen
/// at each number of jobs: with peaks at two or more numbers, the
/// least-squares slope (never negative), raised so that the line lies on or
/// above every peak — admission must not under-expect; with peaks at one
/// number `j0` only, [`DEFAULT_MEMORY_PER_JOB_FRACTION`] of that peak is
/// taken as growing with the jobs (`j0` jobs' worth of it). A port's peak
/// is one process's (a link) or the sum of its compilers', and one number
/// of jobs cannot tell which.
fn fit_memory(samples: &[Sample]) -> Option<(u64, u64)> {
    let mut peaks = std::collections::BTreeMap::<u32, u64>::new();
    for sample in samples {
        if let Some(peak) = sample.peak_memory {
            let at = peaks.entry(sample.jobs.max(1)).or_default();
            *at = (*at).max(peak);
        }
    }
    let points: Vec<(f64, f64)> = peaks.iter().map(|(&j, &m)| (f64::from(j), m as f64)).collect();
    let slope = match points.as_slice() {
        [] => return None,
        [(j0, m0)] => m0 * DEFAULT_MEMORY_PER_JOB_FRACTION / j0,
        _ => least_squares_slope(&points).max(0.0),
    };
    // The intercept at one job that puts every point on or below the line,
    // both rounded up so that none falls below it in whole bytes.
    let slope = slope.ceil();
    let at_one = points.iter().map(|(j, m)| m - slope * (j - 1.0)).fold(f64::NEG_INFINITY, f64::max);
    Some((at_one.max(0.0).ceil() as u64, slope as u64))
}

fn least_squares_slope(points: &[(f64, f64)]) -> f64 {
    let n = points.len() as f64;
    let (mean_x, mean_y) = points.iter().fold((0.0, 0.0), |(x, y), p| (x + p.0 / n, y + p.1 / n));
    let (cov, var) =
        points.iter().fold((0.0, 0.0), |(c, v), (x, y)| (c + (x - mean_x) * (y - mean_y), v + (x - mean_x).powi(2)));
    if var > 0.0 {
        cov / var
    } else {
        0.0
    }
}

/// `(serial, parallel)` of one build.
fn split(sample: &Sample) -> (f64, f64) {
    let phases = sample.serial_phases_ms.unwrap_or(0.0).clamp(0.0, sample.wall_ms);
    let build_wall = sample.wall_ms - phases;
    let build_cpu = (sample.cpu_ms - phases).max(build_wall);
    if let (true, Some((serial, parallel_cpu))) = (sample.jobs > 1, sample.build_split) {
        return (phases + serial.clamp(0.0, build_wall), parallel_cpu.max(0.0));
    }
    if sample.jobs > 1 {
        let j = f64::from(sample.jobs);
        let parallel = ((build_cpu - build_wall) * j / (j - 1.0)).min(build_wall * j);
        return (phases + build_wall - parallel / j, parallel);
    }
    // One job shows nothing of what more would do: the build phase is split
    // by the default, never taken as wholly parallel (which made the
    // scheduler hold two cores for builds that then ran mostly serial).
    (phases + build_wall * (1.0 - DEFAULT_PARALLEL_FRACTION), build_wall * DEFAULT_PARALLEL_FRACTION)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// What must still happen after each port once it is built, in time: the
/// longer of its chain of dependents (`chains_after`: its critical-path
/// priority minus its own expected time) and the work of its transitive
/// dependents spread over every core ([`work_behind`]). A port that much of
/// the build waits for is critical even when no single chain through it is
/// long.
pub fn tails(chains_after: &[f64], work_behind: &[f64], cores: u32) -> Vec<f64> {
    let cores = f64::from(cores.max(1));
    chains_after.iter().zip(work_behind).map(|(&chain, &behind)| chain.max(behind / cores)).collect()
}

/// Visits of one port's dependents beyond which [`work_behind`] estimates.
pub const WORK_BEHIND_WALK: usize = 4096;

/// For each port of `subset`, the work of the ports of `subset` that
/// transitively depend on it: exact, by a walk of its dependents, where the
/// walk stays within [`WORK_BEHIND_WALK`] visits; past that (the few ports
/// most of a big tree needs) its count of transitive dependents in the
/// whole graph (`dependents`) times the subset's mean work. The estimate
/// alone made a port look critical whenever its dependents were many, and
/// not only when their work was: on figure 11's tree it overstated the work
/// behind its two longest builds by 35–45 %, and the scheduler gave them
/// jobs that cost more core time than they saved.
pub fn work_behind(graph: &Graph, subset: &[bool], work: &[f64], dependents: &[u32]) -> Vec<f64> {
    let members = subset.iter().filter(|&&m| m).count().max(1);
    let mean = (0..graph.len()).filter(|&v| subset[v]).map(|v| work[v]).sum::<f64>() / members as f64;
    let mut stamp = vec![usize::MAX; graph.len()];
    let mut stack = Vec::new();
    (0..graph.len())
        .map(|v| {
            if !subset[v] {
                return 0.0;
            }
            let (mut sum, mut visits) = (0.0, 0);
            stack.clear();
            stack.push(v);
            stamp[v] = v;
            while let Some(n) = stack.pop() {
                for edge in graph.dependents(n) {
                    if stamp[edge.to] == v {
                        continue;
                    }
                    stamp[edge.to] = v;
                    visits += 1;
                    if visits > WORK_BEHIND_WALK {
                        return f64::from(dependents[v]) * mean;
                    }
                    if subset[edge.to] {
                        sum += work[edge.to];
                    }
                    stack.push(edge.to);
                }
            }
            sum
        })
        .collect()
}

/// The budgets of a run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Machine {
    /// Make jobs in all (default: the CPUs).
    pub cores: u32,
    /// Builds at once.
    pub workers: u32,
    /// Bytes the builds may expect to use together.
    pub memory: u64,
}

impl Machine {
    /// Jobs of a port without history: `cores / workers`, at least one.
    pub fn fair_share(&self) -> u32 {
        (self.cores / self.workers.max(1)).max(1)
    }
}

/// A build running now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RunningPort {
    pub jobs: u32,
    /// Its expected time left.
    pub left_ms: f64,
    /// Its expected peak memory.
    pub memory: u64,
    /// Expected time left of it plus the longest chain of expected time
    /// after it.
    pub chain_ms: f64,
}

/// A port ready to start, with the longest chain of expected time of the
/// ports after it (its critical-path priority minus its own time).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReadyPort {
    pub model: PortModel,
    pub tail_ms: f64,
}

impl ReadyPort {
    fn chain(&self, jobs: u32) -> f64 {
        self.model.time(jobs) + self.tail_ms
    }
}

/// What the allocator decides for the next ready port.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Decision {
    /// Start `ready[index]` with `jobs` make jobs.
    Start {
        index: usize,
        jobs: u32,
    },
    Wait(Wait),
}

/// Why nothing starts now.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Wait {
    /// No port is ready.
    Nothing,
    /// Every worker is busy.
    Workers,
    /// Every core is taken.
    Cores,
    /// The first ready port needs more memory than is left.
    Memory { needs: u64, free: u64 },
}

impl fmt::Display for Wait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Wait::Nothing => f.write_str("waiting: nothing ready"),
            Wait::Workers => f.write_str("waiting: workers"),
            Wait::Cores => f.write_str("waiting: cores"),
            Wait::Memory { needs, free } => {
                write!(f, "waiting: memory (needs {}, {} free)", gibibytes(*needs), gibibytes(*free))
            }
        }
    }
}

fn gibibytes(bytes: u64) -> String {
    format!("{:.1}G", bytes as f64 / f64::from(1u32 << 30))
}

/// Decides whether the next port starts, which one and with how many jobs;
/// see the module documentation for the rules. `ready` is in queue order
/// (the caller may pass only the first ports, as long as they are at least
/// as many as the free workers); `remaining_work_ms` is the core time still
/// to spend: jobs × expected time left of each running build, plus the CPU
/// work at one job of every port not started.
pub fn next_start(machine: &Machine, running: &[RunningPort], ready: &[ReadyPort], remaining_work_ms: f64) -> Decision {
    if ready.is_empty() {
        return Decision::Wait(Wait::Nothing);
    }
    if running.len() >= machine.workers.max(1) as usize {
        return Decision::Wait(Wait::Workers);
    }
    let used_cores: u32 = running.iter().map(|r| r.jobs).sum();
    let free_cores = machine.cores.max(1).saturating_sub(used_cores);
    if free_cores == 0 {
        return Decision::Wait(Wait::Cores);
    }
    let index = match first_that_fits(machine, running, ready) {
        Ok(index) => index,
        Err(wait) => return Decision::Wait(wait),
    };
    let startable = ready.len().min(machine.workers.max(1) as usize - running.len());
    let horizon = horizon(machine, running, ready, remaining_work_ms);
    let port = &ready[index];
    if starved_on_the_critical_path(machine, running, port, horizon, free_cores) {
        return Decision::Wait(Wait::Cores);
    }
    let share = share_of_free_cores(index, &ready[..startable.max(index + 1)], free_cores);
    let jobs = jobs_for(machine, port, horizon, free_cores, share);
    Decision::Start { index, jobs: within_memory(&port.model, jobs, free_memory(machine, running)) }
}

fn free_memory(machine: &Machine, running: &[RunningPort]) -> u64 {
    machine.memory.saturating_sub(running.iter().map(|r| r.memory).sum())
}

/// The first ready port whose memory at one job fits; the first of all when
/// nothing runs (no deadlock).
fn first_that_fits(machine: &Machine, running: &[RunningPort], ready: &[ReadyPort]) -> Result<usize, Wait> {
    if running.is_empty() {
        return Ok(0);
    }
    let free = free_memory(machine, running);
    let needs = |port: &ReadyPort| port.model.memory_at(1);
    ready.iter().position(|port| needs(port) <= free).ok_or(Wait::Memory { needs: needs(&ready[0]), free })
}

/// The most of `jobs` whose expected memory fits `free` (one at least: a
/// port admitted at one job, or one larger than the machine running alone).
fn within_memory(model: &PortModel, jobs: u32, free: u64) -> u32 {
    (1..=jobs).rev().find(|&j| model.memory_at(j) <= free).unwrap_or(1)
}

/// The earliest the remaining build can end, from now: the remaining core
/// time spread over every core, or the longest chain (running ports as they
/// are, ready ones at their useful maximum). The jobs that the ready ports
/// on the critical path will need to stay within it cost core time of their
/// own (`(j - 1) · s` each), so the work term is taken again with them.
fn horizon(machine: &Machine, running: &[RunningPort], ready: &[ReadyPort], remaining_work_ms: f64) -> f64 {
    let cores = f64::from(machine.cores.max(1));
    let running_chain = running.iter().map(|r| r.chain_ms).fold(0.0, f64::max);
    let ready_chain = ready.iter().map(|r| r.chain(r.model.max_jobs)).fold(0.0, f64::max);
    let first = (remaining_work_ms / cores).max(running_chain).max(ready_chain);
    let extra: f64 = ready
        .iter()
        .filter(|r| r.model.parallel_safe && r.model.from_history)
        .map(|r| f64::from(fewest_jobs_within(r, first, machine.cores) - 1) * r.model.serial_ms)
        .sum();
    first.max((remaining_work_ms + extra) / cores)
}

/// The fewest jobs (up to the useful maximum) that keep `port`'s chain
/// within `horizon`.
fn fewest_jobs_within(port: &ReadyPort, horizon: f64, cores: u32) -> u32 {
    let useful = port.model.max_jobs.min(cores).max(1);
    (1..=useful).find(|&j| port.chain(j) <= horizon * (1.0 + 1e-9)).unwrap_or(useful)
}

/// The port needs more jobs than are free to stay within the horizon, and it
/// would end sooner by waiting for the running builds to free them than by
/// starting now with what is free: it waits, and nothing behind it takes the
/// free cores meanwhile (a critical port crippled for its whole build costs
/// more than cores idle until the next builds end).
fn starved_on_the_critical_path(
    machine: &Machine,
    running: &[RunningPort],
    port: &ReadyPort,
    horizon: f64,
    free_cores: u32,
) -> bool {
    let model = &port.model;
    if running.is_empty() || !model.parallel_safe || !model.from_history {
        return false;
    }
    let needed = fewest_jobs_within(port, horizon, machine.cores);
    if needed <= free_cores || port.chain(free_cores) <= horizon * (1.0 + 1e-9) {
        return false;
    }
    let mut ends: Vec<(f64, u32)> = running.iter().map(|r| (r.left_ms, r.jobs)).collect();
    ends.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut free = free_cores;
    for (left, jobs) in ends {
        free += jobs;
        if free >= needed {
            return left + model.time(needed) < model.time(free_cores);
        }
    }
    false
}

/// The part of the free cores that `startable[index]` may take when no
/// chain needs them: a share in proportion to its expected work among the
/// ports that can start now. An even split gave a compiler of two hours
/// the one core that each of thirty ten-second ports beside it got; those
/// end at once and leave their cores idle, while the compiler holds its one
/// core for two hours (on figure 10's 30,000 ports × 64 cores, half the
/// machine stood idle for an hour that way).
fn share_of_free_cores(index: usize, startable: &[ReadyPort], free_cores: u32) -> u32 {
    let work: f64 = startable.iter().map(|p| p.model.work()).sum();
    let own = startable[index].model.work();
    if work <= 0.0 {
        return free_cores / startable.len().max(1) as u32;
    }
    (f64::from(free_cores) * own / work).floor() as u32
}

/// Jobs for `port`: the fewest that keep its chain within `horizon`, raised
/// to its `share` of the free cores, capped by its useful maximum and the
/// free cores.
fn jobs_for(machine: &Machine, port: &ReadyPort, horizon: f64, free_cores: u32, share: u32) -> u32 {
    let model = &port.model;
    if !model.parallel_safe {
        return 1;
    }
    if !model.from_history {
        return machine.fair_share().min(free_cores).max(1);
    }
    let useful = model.max_jobs.min(machine.cores).max(1);
    let needed = fewest_jobs_within(port, horizon, machine.cores);
    needed.max(share).min(useful).min(free_cores).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn machine(cores: u32, workers: u32, memory: u64) -> Machine {
        Machine { cores, workers, memory }
    }

    fn ready(model: PortModel, tail_ms: f64) -> ReadyPort {
        ReadyPort { model, tail_ms }
    }

    fn running(jobs: u32, memory: u64) -> RunningPort {
        RunningPort { jobs, left_ms: 0.0, memory, chain_ms: 0.0 }
    }

    /// A port that parallelises well: 10 s serial, 100 s parallel.
    fn compiler() -> PortModel {
        PortModel::new(10_000.0, 100_000.0)
    }

    #[test]
    fn the_work_behind_a_port_is_its_dependents_work_in_the_build() {
        use crate::graph::test_graph;
        // d <- b <- a, d <- c <- a (a depends on b and c, both on d); e is
        // outside the build.
        let g = test_graph(&["x/a", "x/b", "x/c", "x/d", "x/e"], &[(0, 1), (0, 2), (1, 3), (2, 3), (4, 3)]);
        let subset = [true, true, true, true, false];
        let work = [1.0, 10.0, 100.0, 1000.0, 5000.0];
        let behind = work_behind(&g, &subset, &work, &g.transitive_dependents_counts());
        assert_eq!(behind, vec![0.0, 1.0, 1.0, 111.0, 0.0], "a counted once below d, e not at all");
    }

    #[test]
    fn the_model_fits_one_parallel_build_exactly() {
        // s = 10, p = 80, j = 4: wall 30, cpu 90.
        let sample = Sample {
            jobs: 4,
            wall_ms: 30_000.0,
            cpu_ms: 90_000.0,
            serial_phases_ms: None,
            build_split: None,
            peak_memory: None,
        };
        let model = fit_model(&[sample]);
        assert!((model.serial_ms - 10_000.0).abs() < 1e-6, "{model:?}");
        assert!((model.parallel_ms - 80_000.0).abs() < 1e-6, "{model:?}");
        assert!(model.from_history);
        assert_eq!(model.memory, DEFAULT_MEMORY);
    }

    #[test]
    fn a_contended_build_is_fitted_from_its_sampled_split() {
        // s = 10 s, p = 80 s at 2 jobs, but sharing 2 CPUs with another build
        // of 2 jobs: the parallel part took 80 s instead of 40.
        let sample = Sample {
            jobs: 2,
            wall_ms: 5_000.0 + 5_000.0 + 80_000.0,
            cpu_ms: 5_000.0 + 5_000.0 + 80_000.0,
            serial_phases_ms: Some(5_000.0),
            build_split: Some((5_000.0, 80_000.0)),
            peak_memory: None,
        };
        let model = fit_model(&[sample]);
        assert_eq!((model.serial_ms, model.parallel_ms), (10_000.0, 80_000.0));
        let unsampled = fit_model(&[Sample { build_split: None, ..sample }]);
        assert!(unsampled.parallel_ms < 1.0, "wall and CPU alone read no speed-up: {unsampled:?}");
    }

    #[test]
    fn timed_serial_phases_count_wholly_as_serial() {
        // 20 s of phases, a build phase of 40 s at one job: the phases serial,
        // the build phase split by the default fraction.
        let sample = Sample {
            jobs: 1,
            wall_ms: 60_000.0,
            cpu_ms: 60_000.0,
            serial_phases_ms: Some(20_000.0),
            build_split: None,
            peak_memory: Some(3 * GIB),
        };
        let model = fit_model(&[sample]);
        let parallel = 40_000.0 * DEFAULT_PARALLEL_FRACTION;
        assert!((model.serial_ms - (60_000.0 - parallel)).abs() < 1e-6, "{model:?}");
        assert!((model.parallel_ms - parallel).abs() < 1e-6, "{model:?}");
        assert_eq!(model.memory, 3 * GIB);
    }

    #[test]
    fn the_model_takes_the_median_of_several_builds() {
        let at = |jobs: u32, s: f64, p: f64| Sample {
            jobs,
            wall_ms: s + p / f64::from(jobs),
            cpu_ms: s + p,
            serial_phases_ms: None,
            build_split: None,
            peak_memory: Some(u64::from(jobs) * GIB),
        };
        let model = fit_model(&[at(2, 10.0, 100.0), at(8, 12.0, 90.0), at(4, 11.0, 95.0)]);
        assert!((model.serial_ms - 11.0).abs() < 1e-9 && (model.parallel_ms - 95.0).abs() < 1e-9, "{model:?}");
        assert_eq!(model.memory_at(8), 8 * GIB, "the largest peak, at its jobs");
        assert_eq!((model.memory, model.memory_per_job), (GIB, GIB), "1 GiB a job");
    }

    #[test]
    fn peak_memory_grows_with_the_jobs() {
        let at = |jobs: u32, peak: u64| Sample {
            jobs,
            wall_ms: 1.0,
            cpu_ms: 1.0,
            serial_phases_ms: None,
            build_split: None,
            peak_memory: Some(peak),
        };
        // One number of jobs: half of its peak grows with them.
        let once = fit_model(&[at(4, 4 * GIB)]);
        assert_eq!(once.memory_at(4), 4 * GIB);
        assert_eq!(once.memory_at(8), 6 * GIB);
        assert_eq!(once.memory_at(1), 5 * GIB / 2);
        // Several: the line lies on or above every recorded peak.
        let noisy = [at(1, 3 * GIB), at(2, 2 * GIB), at(4, 6 * GIB), at(4, 5 * GIB), at(8, 9 * GIB)];
        let model = fit_model(&noisy);
        for sample in &noisy {
            assert!(model.memory_at(sample.jobs) >= sample.peak_memory.unwrap(), "{model:?} under {sample:?}");
        }
        assert!(model.memory_per_job > 0 && model.memory_at(16) > 9 * GIB, "{model:?}");
        // A port unsafe for parallel make runs with one job whatever it is given.
        assert_eq!(model.not_parallel_safe().memory_at(8), model.memory_at(1));
        assert_eq!(PortModel::unknown(1.0).memory_at(64), DEFAULT_MEMORY, "no history: the default at any jobs");
    }

    #[test]
    fn a_port_gets_no_more_jobs_than_fit_in_memory() {
        // 1 GiB + 1 GiB a job on a 64-core machine with 8 GiB, 3 of them
        // expected by a running build: 5 GiB free, so 5 jobs at most.
        let m = machine(64, 8, 8 * GIB);
        let hungry = ready(PortModel::new(0.0, 1e6).with_memory_per_job(GIB, GIB), 1e9);
        assert!(hungry.model.max_jobs > 5);
        let busy = [running(1, 3 * GIB)];
        assert_eq!(next_start(&m, &busy, &[hungry], 1e9), Decision::Start { index: 0, jobs: 5 });
        // Alone on the machine: what fits in all of it.
        assert_eq!(next_start(&m, &[], &[hungry], 1e9), Decision::Start { index: 0, jobs: 8 });
        // Larger than the machine even at one job: it still runs alone, at one.
        let huge = ready(PortModel::new(0.0, 1e6).with_memory_per_job(16 * GIB, GIB), 1e9);
        assert_eq!(next_start(&m, &[], &[huge], 1e9), Decision::Start { index: 0, jobs: 1 });
    }

    #[test]
    fn useful_jobs_stop_where_one_more_saves_little() {
        assert_eq!(PortModel::useful_jobs(10.0, 0.0), 1, "nothing to parallelise");
        let j = PortModel::useful_jobs(10.0, 100.0);
        let gain = |j: u32| (100.0 / f64::from(j * (j + 1))) / (10.0 + 100.0 / f64::from(j));
        assert!(gain(j) < USEFUL_GAIN && gain(j - 1) >= USEFUL_GAIN, "j = {j}");
        assert!(PortModel::useful_jobs(0.0, 100.0) > PortModel::useful_jobs(10.0, 100.0));
    }

    #[test]
    fn memory_is_never_overcommitted() {
        // 8 GiB machine, 6 GiB expected by the running builds: a 3 GiB port
        // waits, a 1 GiB port behind it starts.
        let m = machine(16, 8, 8 * GIB);
        let busy = [running(2, 4 * GIB), running(2, 2 * GIB)];
        let big = ready(compiler().with_memory(3 * GIB), 0.0);
        let small = ready(compiler().with_memory(GIB), 0.0);
        assert_eq!(next_start(&m, &busy, &[big], 0.0), Decision::Wait(Wait::Memory { needs: 3 * GIB, free: 2 * GIB }));
        assert!(matches!(next_start(&m, &busy, &[big, small], 0.0), Decision::Start { index: 1, .. }));
        let text = Wait::Memory { needs: 3_328_599_654, free: 1_288_490_189 }.to_string();
        assert_eq!(text, "waiting: memory (needs 3.1G, 1.2G free)");
    }

    #[test]
    fn memory_checks_hold_over_a_whole_fill() {
        // Start ports until the allocator waits: the expected total never
        // exceeds the machine.
        let m = machine(64, 64, 10 * GIB);
        let ports: Vec<ReadyPort> =
            (0..40).map(|i| ready(compiler().with_memory((1 + i % 3) as u64 * GIB), 0.0)).collect();
        let mut busy: Vec<RunningPort> = Vec::new();
        let mut left = ports.clone();
        while let Decision::Start { index, jobs } = next_start(&m, &busy, &left, 1e9) {
            busy.push(running(jobs, left.remove(index).model.memory));
        }
        assert!(busy.iter().map(|r| r.memory).sum::<u64>() <= 10 * GIB);
        assert!(!busy.is_empty());
    }

    #[test]
    fn a_port_larger_than_the_machine_starts_when_nothing_runs() {
        let m = machine(4, 2, 2 * GIB);
        let huge = ready(compiler().with_memory(64 * GIB), 0.0);
        assert!(matches!(next_start(&m, &[], &[huge], 0.0), Decision::Start { index: 0, .. }));
        let other = [running(1, GIB)];
        assert!(matches!(next_start(&m, &other, &[huge], 0.0), Decision::Wait(Wait::Memory { .. })));
    }

    #[test]
    fn a_port_not_safe_for_parallel_make_gets_one_job() {
        let m = machine(64, 4, 64 * GIB);
        let port = ready(compiler().not_parallel_safe(), 1e9);
        assert_eq!(next_start(&m, &[], &[port], 1e9), Decision::Start { index: 0, jobs: 1 });
        assert_eq!(port.model.time(16), port.model.time(1));
    }

    #[test]
    fn without_history_a_port_gets_the_fair_share() {
        let m = machine(16, 4, 64 * GIB);
        let first = ready(PortModel::unknown(60_000.0), 0.0);
        assert_eq!(next_start(&m, &[], &[first; 3], 1e9), Decision::Start { index: 0, jobs: 4 });
        // Fewer free cores than the share: what is free.
        let busy = [running(14, 0)];
        assert_eq!(next_start(&m, &busy, &[first], 1e9), Decision::Start { index: 0, jobs: 2 });
    }

    #[test]
    fn cores_never_idle_while_a_port_is_ready() {
        // Whatever runs, as long as a core and a worker are free, a ready
        // port starts.
        let m = machine(16, 16, 64 * GIB);
        let port = ready(compiler(), 0.0);
        for used in 0..16 {
            let busy = [running(used, 0)];
            let busy = if used == 0 { &busy[..0] } else { &busy[..] };
            match next_start(&m, busy, &[port; 4], 1e7) {
                Decision::Start { jobs, .. } => assert!(jobs >= 1 && jobs <= 16 - used, "used {used}: {jobs}"),
                Decision::Wait(w) => panic!("used {used}: {w}"),
            }
        }
        assert_eq!(next_start(&m, &[running(16, 0)], &[port], 1e7), Decision::Wait(Wait::Cores));
    }

    #[test]
    fn the_critical_port_gets_its_useful_maximum_and_slack_ports_get_one() {
        // 64 cores, a long remaining chain after the first port; the machine
        // has plenty of work (remaining work / cores = 50 s).
        let m = machine(64, 64, 64 * GIB);
        let critical = ready(compiler(), 1_000_000.0);
        let slack = ready(compiler(), 0.0);
        let busy = [RunningPort { jobs: 40, left_ms: 900_000.0, memory: 0, chain_ms: 1_000_000.0 }];
        let work = 64.0 * 50_000.0;
        let many_ready = vec![slack; 40];
        let mut with_critical = vec![critical];
        with_critical.extend(&many_ready);
        assert_eq!(
            next_start(&m, &busy, &with_critical, work),
            Decision::Start { index: 0, jobs: compiler().max_jobs.min(24) }
        );
        // Its chain is short: one job keeps it within the horizon.
        assert_eq!(next_start(&m, &busy, &many_ready, work), Decision::Start { index: 0, jobs: 1 });
    }

    #[test]
    fn a_critical_port_waits_for_cores_when_that_ends_it_sooner() {
        // 16 cores, 14 held by a build ending in 1 s; the critical compiler
        // (10 + 100 s) would take 60 s with the 2 free cores, 20 s with 10
        // after waiting 1 s: it waits. If the running build had 500 s left,
        // it starts now.
        let m = machine(16, 16, 64 * GIB);
        let critical = ready(compiler(), 1_000_000.0);
        let soon = [RunningPort { jobs: 14, left_ms: 1_000.0, memory: 0, chain_ms: 1_000.0 }];
        assert_eq!(next_start(&m, &soon, &[critical], 0.0), Decision::Wait(Wait::Cores));
        let late = [RunningPort { left_ms: 500_000.0, chain_ms: 500_000.0, ..soon[0] }];
        assert_eq!(next_start(&m, &late, &[critical], 0.0), Decision::Start { index: 0, jobs: 2 });
    }

    #[test]
    fn a_thin_queue_shares_the_free_cores_without_taking_them_all() {
        // Idle 32-core machine, two ready ports with slack: each gets an even
        // share (16, within its useful maximum), not all 32.
        let m = machine(32, 32, 64 * GIB);
        let wide = PortModel::new(0.0, 100_000.0);
        let port = ready(wide, 0.0);
        assert!(wide.max_jobs >= 16);
        assert_eq!(next_start(&m, &[], &[port, port], 200_000.0), Decision::Start { index: 0, jobs: 16 });
    }

    #[test]
    fn free_cores_are_shared_in_proportion_to_the_work() {
        // 32 free cores, a two-hour compiler ready beside thirty ports of
        // ten seconds, none of them critical: the compiler takes most of the
        // cores (up to its useful maximum), each small port one.
        let m = machine(64, 64, 64 * GIB);
        let big = ready(PortModel::new(60_000.0, 7_200_000.0), 0.0);
        let small = ready(PortModel::new(2_000.0, 8_000.0), 0.0);
        let mut queue = vec![big];
        queue.extend([small; 30]);
        let busy = [RunningPort { jobs: 32, left_ms: 1e7, memory: 0, chain_ms: 1e7 }];
        let Decision::Start { index: 0, jobs } = next_start(&m, &busy, &queue, 64.0 * 1e7) else { panic!() };
        assert_eq!(jobs, big.model.max_jobs.min(32), "an even split would give it {}", 32 / 31);
        assert_eq!(next_start(&m, &busy, &queue[1..], 64.0 * 1e7), Decision::Start { index: 0, jobs: 1 });
    }

    #[test]
    fn every_worker_busy_means_waiting() {
        let m = machine(64, 2, 64 * GIB);
        let busy = [running(1, 0), running(1, 0)];
        assert_eq!(next_start(&m, &busy, &[ready(compiler(), 0.0)], 0.0), Decision::Wait(Wait::Workers));
        assert_eq!(next_start(&m, &[], &[], 0.0), Decision::Wait(Wait::Nothing));
    }
}
