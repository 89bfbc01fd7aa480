//! The simulator with cores and memory: a build of `W` workers and `C` cores
//! where each port's time depends on its make jobs.
//!
//! A port built with `j` jobs takes `T(j) = s + p/j` (its
//! [`PortModel`]) and holds `j` cores and its peak memory for all of that
//! time, for every policy alike. A policy that hands out more jobs than
//! there are cores (bob's may) does not get them for free: when the running
//! builds hold more jobs than cores, every build progresses at `C / Σj` of
//! its speed (processor sharing), so overcommitting slows everyone instead
//! of being an error. Between two events the rates are constant, so the
//! simulation steps from event to event exactly.
//!
//! Policies ([`Allocation`]):
//! - **ours**: the scheduler's order ([`CriticalPath`], weights at each
//!   port's useful maximum of jobs) and [`allocate::next_start`], the same
//!   function the build scheduler calls, for which port starts and with how
//!   many jobs;
//! - **fixed**: today's scheduler and the peers that pass one `MAKE_JOBS` to
//!   every build (poudriere, dsynth): a queue order from [`Policy`] and the
//!   same `j` for every build; `W · j ≤ C` is the caller's choice;
//! - **bob**: jperkin/bob as its source reads (`src/scheduler.rs`,
//!   `src/makejobs.rs`): ports ranked by summed `PBULK_WEIGHT` (uniform
//!   weights, so by transitive dependents), then dependents, CPU time, name;
//!   `MAKE_JOBS` from the port's CPU history on a log scale between 2 and
//!   `max(fair + 2, budget / 3)` (`fair = ⌈budget / W⌉`; fair without
//!   history); the whole budget to a sole builder (nothing else running or
//!   ready); in the tail (nothing waiting on dependencies) the uncommitted
//!   budget split in proportion to those values. bob does not wait for free
//!   cores.
//!
//! [`lower_bound`] is `max(critical path with every port at its useful
//! maximum, total CPU work / C)`.
//!
//! A build farm ([`simulate_hosts`], [`Hosts`]) is `H` hosts of `C` cores:
//! the policies see the farm's totals, and each build is placed on one host,
//! where it gets at most that host's cores: as Slurm places a job of `j`
//! CPUs, on the fullest host where it fits (best fit). Under ours, a build
//! that fits nowhere yet waits for the roomiest host, which nothing else may
//! take meanwhile (Slurm's reservation for its pending job of the highest
//! priority). One host is exactly [`simulate`]. [`remaining`] is the build
//! scheduler's ETA: the rest of a run from a [`Snapshot`].

use super::{peer_ranks, Policy, Workload};
use crate::build::allocate::{self, Decision, Machine, PortModel, ReadyPort, RunningPort};
use crate::graph::{Graph, NodeId};
use crate::queue::{CriticalPath, DependencyQueue, Fifo, Order, Rank};

/// How jobs are handed out; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Allocation {
    Ours,
    Fixed { order: Policy, jobs: u32 },
    Bob,
}

/// The ports of a build: how they behave, and what the policy believes.
#[derive(Clone, Copy)]
pub struct Ports<'a> {
    pub graph: &'a Graph,
    pub real: &'a [PortModel],
    /// The models fitted from history; `None`: the real ones.
    pub expected: Option<&'a [PortModel]>,
}

impl Ports<'_> {
    fn expected(&self, v: NodeId) -> &PortModel {
        self.expected.map_or(&self.real[v], |e| &e[v])
    }
}

/// One build of the simulation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Start {
    pub node: NodeId,
    pub time: f64,
    pub jobs: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ResourceSchedule {
    pub makespan: f64,
    /// Every build, in start order.
    pub starts: Vec<Start>,
    /// The most memory the running builds really used at once.
    pub peak_memory: u64,
    /// Core time the builds held: `Σ jobs × T(jobs)`.
    pub core_time: f64,
    /// Ports never started (a dependency loop).
    pub unscheduled: usize,
}

/// `max(critical path at each port's useful maximum of jobs (at most the
/// cores), work / cores)`.
pub fn lower_bound(ports: &Ports<'_>, cores: u32) -> f64 {
    let best: Vec<f64> = ports.real.iter().map(|m| m.time(m.max_jobs.min(cores))).collect();
    let critical = ports.graph.priorities(&best).into_iter().fold(0.0, f64::max);
    let work: f64 = ports.real.iter().map(PortModel::work).sum();
    critical.max(work / f64::from(cores.max(1)))
}

/// A tighter bound, to tell the policy's shortfall from the instance's: for
/// every instant `t`, `t` plus the CPU work of the ports that cannot start
/// before `t` (their longest chain of dependencies at the useful maximum of
/// jobs) over the cores, and the mirror image with the chains of
/// dependents. A port that most of the tree needs and that takes an hour
/// even with all its useful jobs leaves the machine idle whatever the
/// policy; [`lower_bound`] does not see that.
pub fn lower_bound_energy(ports: &Ports<'_>, cores: u32) -> f64 {
    let Chains { work, before, after } = chains(ports, cores);
    let cores = f64::from(cores.max(1));
    lower_bound(ports, cores as u32).max(energy(&before, &work, cores)).max(energy(&after, &work, cores))
}

/// [`lower_bound_energy`], sharpened where it is weakest: it releases the
/// dependents of a port at the port's best time, as if its jobs were free.
/// They are not: a port run at `j` jobs ends no sooner than
/// `release + T(j)`, and it costs `(j - 1) · s` core time more than at one
/// job. So for the few ports with the most work behind them, every
/// combination of their jobs is tried, and for each the makespan is at
/// least each port's `release + T(j) + max(chain after it, work of its
/// transitive dependents / cores)` and `(all work + their extra core time)
/// / cores`; the bound is the least of these over the combinations. (Valid
/// for the simulator's model, where a build holds its jobs for all of its
/// time.)
pub fn lower_bound_tradeoff(ports: &Ports<'_>, cores: u32) -> f64 {
    const CANDIDATES: usize = 3;
    let g = ports.graph;
    let c = f64::from(cores.max(1));
    let Chains { work, before, after } = chains(ports, cores);
    let total: f64 = work.iter().sum();
    // The candidates: the ports whose dependents' work is largest.
    let mut behind: Vec<(f64, NodeId)> = (0..g.len())
        .filter(|&v| ports.real[v].parallel_safe && ports.real[v].serial_ms > 0.0)
        .map(|v| (dependents_work(g, v, &work), v))
        .collect();
    behind.sort_by(|a, b| b.0.total_cmp(&a.0));
    behind.truncate(CANDIDATES);
    let mut best_bound = f64::INFINITY;
    let mut jobs = vec![1u32; behind.len()];
    loop {
        let mut bound = total / c;
        let mut extra = 0.0;
        for (&(behind_work, v), &j) in behind.iter().zip(&jobs) {
            let model = &ports.real[v];
            bound = bound.max(before[v] + model.time(j) + after[v].max(behind_work / c));
            extra += f64::from(j - 1) * model.serial_ms;
        }
        best_bound = best_bound.min(bound.max((total + extra) / c));
        // The next combination of jobs, 1..=useful for each candidate.
        let mut i = 0;
        while i < jobs.len() {
            if jobs[i] < ports.real[behind[i].1].max_jobs.min(cores).max(1) {
                jobs[i] += 1;
                break;
            }
            jobs[i] = 1;
            i += 1;
        }
        if i == jobs.len() {
            break;
        }
    }
    lower_bound_energy(ports, cores).max(if best_bound.is_finite() { best_bound } else { 0.0 })
}

/// The CPU work of the transitive dependents of `v`.
fn dependents_work(g: &Graph, v: NodeId, work: &[f64]) -> f64 {
    let mut seen = vec![false; g.len()];
    let mut stack = vec![v];
    let mut sum = 0.0;
    while let Some(n) = stack.pop() {
        for e in g.dependents(n) {
            if !seen[e.to] {
                seen[e.to] = true;
                sum += work[e.to];
                stack.push(e.to);
            }
        }
    }
    sum
}

/// Per port at its useful maximum of jobs: its CPU work, the longest chain
/// of expected time before it can start, and the longest after it ends.
struct Chains {
    work: Vec<f64>,
    before: Vec<f64>,
    after: Vec<f64>,
}

fn chains(ports: &Ports<'_>, cores: u32) -> Chains {
    let g = ports.graph;
    let best: Vec<f64> = ports.real.iter().map(|m| m.time(m.max_jobs.min(cores))).collect();
    let work: Vec<f64> = ports.real.iter().map(PortModel::work).collect();
    let after: Vec<f64> = g.priorities(&best).iter().zip(&best).map(|(p, b)| p - b).collect();
    let mut before = vec![0.0_f64; g.len()];
    if let Ok(order) = g.topo_order() {
        for &v in &order {
            for e in g.dependents(v) {
                before[e.to] = before[e.to].max(before[v] + best[v]);
            }
        }
    }
    Chains { work, before, after }
}

/// `max over t of t + (work of the ports released at t or later) / cores`.
fn energy(release: &[f64], work: &[f64], cores: f64) -> f64 {
    let mut by_release: Vec<usize> = (0..release.len()).collect();
    by_release.sort_by(|&a, &b| release[b].total_cmp(&release[a]));
    let mut later = 0.0;
    let mut best: f64 = 0.0;
    for v in by_release {
        later += work[v];
        best = best.max(release[v] + later / cores);
    }
    best
}

/// A build farm: `count` hosts alike, each `per_host` (its cores, builds
/// and memory). A build runs on one host, so it gets at most one host's
/// cores; the scheduler (Slurm, for portsynth's cluster executor) puts it
/// on the fullest host where it fits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hosts {
    pub count: u32,
    pub per_host: Machine,
}

impl Hosts {
    /// The budgets of all hosts together.
    pub fn total(&self) -> Machine {
        let n = self.count.max(1);
        Machine {
            cores: self.per_host.cores * n,
            workers: self.per_host.workers * n,
            memory: self.per_host.memory.saturating_mul(u64::from(n)),
        }
    }
}

/// The bounds of a farm: `(critical path, CPU work / all cores, tight)`. The
/// critical path has every port at its useful maximum of jobs up to one
/// host's cores, which no number of hosts shortens: where it is the largest
/// term, more hosts stop helping. `tight` is [`lower_bound_energy`]'s bound
/// with those chains over all the cores.
pub fn farm_bounds(ports: &Ports<'_>, hosts: Hosts) -> (f64, f64, f64) {
    let per_host = hosts.per_host.cores.max(1);
    let total = f64::from(hosts.total().cores.max(1));
    let Chains { work, before, after } = chains(ports, per_host);
    let best: Vec<f64> = ports.real.iter().map(|m| m.time(m.max_jobs.min(per_host))).collect();
    let critical = ports.graph.priorities(&best).into_iter().fold(0.0, f64::max);
    let work_bound = work.iter().sum::<f64>() / total;
    let tight = critical.max(work_bound).max(energy(&before, &work, total)).max(energy(&after, &work, total));
    (critical, work_bound, tight)
}

/// Simulates building every port of `ports` on `machine` under `allocation`.
pub fn simulate(ports: &Ports<'_>, machine: Machine, allocation: Allocation) -> ResourceSchedule {
    simulate_hosts(ports, Hosts { count: 1, per_host: machine }, allocation)
}

/// [`simulate`] on a farm of `hosts`: the policies see the farm's total
/// budgets, and each start is placed on one host.
pub fn simulate_hosts(ports: &Ports<'_>, hosts: Hosts, allocation: Allocation) -> ResourceSchedule {
    let g = ports.graph;
    assert_eq!(ports.real.len(), g.len(), "one model per port");
    let all = vec![true; g.len()];
    let machine = hosts.total();
    match allocation {
        Allocation::Ours => {
            let (order, chains_after) = our_order(ports);
            let behind = allocate::work_behind(g, &all, &ports_work(ports), order.dependents());
            let tails = allocate::tails(&chains_after, &behind, machine.cores);
            let mut starter = Ours::new(tails, (0..g.len()).map(|v| ports.expected(v).work()).sum());
            Run::on_hosts(ports, hosts, DependencyQueue::new(g, &all, order)).go(&mut starter)
        }
        Allocation::Fixed { order: Policy::CriticalPath, jobs } => {
            let (order, _) = our_order(ports);
            Run::on_hosts(ports, hosts, DependencyQueue::new(g, &all, order)).go(&mut Fixed(jobs))
        }
        Allocation::Fixed { order: Policy::Fifo, jobs } => {
            let order = Fifo(super::topological_rank(g));
            Run::on_hosts(ports, hosts, DependencyQueue::new(g, &all, order)).go(&mut Fixed(jobs))
        }
        Allocation::Fixed { order, jobs } => {
            // dsynth: its first order (the slots up to W/2) for every slot.
            let zeros = vec![0.0; g.len()];
            let rank = peer_ranks(&Workload::all(g, &zeros), &all, order).remove(0);
            Run::on_hosts(ports, hosts, DependencyQueue::new(g, &all, rank)).go(&mut Fixed(jobs))
        }
        Allocation::Bob => {
            let mut starter = Bob::new(ports, machine);
            let rank = bob_rank(ports);
            Run::on_hosts(ports, hosts, DependencyQueue::new(g, &all, rank)).go(&mut starter)
        }
    }
}

/// A run part-way through, as the build scheduler sees it.
pub struct Snapshot<'a> {
    /// The scheduler's queue order and each port's tail ([`allocate::tails`]).
    pub order: CriticalPath,
    pub tails: &'a [f64],
    /// Ports not started yet (waiting or ready).
    pub pending: &'a [bool],
    /// Running builds: port, make jobs, expected time left.
    pub running: &'a [(NodeId, u32, f64)],
    /// Every port's make jobs, where the configuration fixes them.
    pub fixed_jobs: Option<u32>,
}

/// The time the rest of the run is expected to take: the snapshot's running
/// builds and pending ports, on `machine`, under the scheduler's own
/// allocator ([`allocate::next_start`], or the fixed jobs) and queue order.
/// The build scheduler's ETA, so the estimate plans with cores and memory
/// as the run does.
pub fn remaining(ports: &Ports<'_>, machine: Machine, snapshot: Snapshot<'_>) -> f64 {
    let g = ports.graph;
    let mut members = snapshot.pending.to_vec();
    for &(node, _, _) in snapshot.running {
        members[node] = true;
    }
    let mut run = Run::new(ports, machine, DependencyQueue::new(g, &members, snapshot.order));
    for &(node, jobs, left) in snapshot.running {
        if run.queue.take(node) {
            let host = roomiest(&run.free_cores());
            run.active.push(Active { node, jobs: jobs.max(1), left: left.max(0.0), host });
        }
    }
    match snapshot.fixed_jobs {
        Some(jobs) => run.go(&mut Fixed(jobs)).makespan,
        None => {
            let remaining_work = (0..g.len()).filter(|&v| snapshot.pending[v]).map(|v| ports.expected(v).work()).sum();
            run.go(&mut Ours::new(snapshot.tails.to_vec(), remaining_work)).makespan
        }
    }
}

/// Our queue order (critical path, each port weighted at its useful maximum
/// of expected jobs) and each port's tail: the longest chain after it.
pub fn our_order(ports: &Ports<'_>) -> (CriticalPath, Vec<f64>) {
    let g = ports.graph;
    let weights: Vec<f64> = (0..g.len()).map(|v| ports.expected(v).best_time()).collect();
    let priority = g.priorities(&weights);
    let tails = priority.iter().zip(&weights).map(|(p, w)| p - w).collect();
    (CriticalPath::new(g, priority, g.transitive_dependents_counts()), tails)
}

/// Expected CPU work of every port.
fn ports_work(ports: &Ports<'_>) -> Vec<f64> {
    (0..ports.graph.len()).map(|v| ports.expected(v).work()).collect()
}

/// bob's rank: summed PBULK_WEIGHT (uniform, so transitive dependents), then
/// dependents, then CPU time, then name.
fn bob_rank(ports: &Ports<'_>) -> Rank {
    let g = ports.graph;
    let dependents = g.transitive_dependents_counts();
    let cpu: Vec<f64> = (0..g.len()).map(|v| ports.expected(v).work()).collect();
    super::rank_by(g, &vec![true; g.len()], |a, b| dependents[b].cmp(&dependents[a]).then(cpu[b].total_cmp(&cpu[a])))
}

/// The host for a build of `jobs` among hosts with `free` cores each: the one
/// with the fewest free that has `jobs` free (best fit, as Slurm's
/// `cons_tres` packs nodes, keeping whole hosts free for the big builds).
fn best_fit(free: &[u32], jobs: u32) -> Option<u32> {
    let fitting = free.iter().enumerate().filter(|(_, &f)| f >= jobs).min_by_key(|(h, &f)| (f, *h));
    fitting.map(|(host, _)| host as u32)
}

/// The host with the most free cores, the first of equals.
fn roomiest(free: &[u32]) -> u32 {
    (0..free.len()).max_by_key(|&h| (free[h], std::cmp::Reverse(h))).unwrap_or(0) as u32
}

/// A build in progress: `left` is its time still to run at full speed.
#[derive(Debug, Clone, Copy)]
struct Active {
    node: NodeId,
    jobs: u32,
    left: f64,
    host: u32,
}

/// The state a policy sees when it starts builds.
struct Run<'p, 'g, O: Order> {
    ports: &'p Ports<'g>,
    /// All hosts together.
    machine: Machine,
    hosts: Hosts,
    queue: DependencyQueue<'g, O>,
    active: Vec<Active>,
    now: f64,
    schedule: ResourceSchedule,
}

/// Starts builds at the current instant until the policy waits.
trait Starter<O: Order> {
    fn start_what_can(&mut self, run: &mut Run<'_, '_, O>);
}

impl<'p, 'g, O: Order> Run<'p, 'g, O> {
    fn new(ports: &'p Ports<'g>, machine: Machine, queue: DependencyQueue<'g, O>) -> Self {
        Self::on_hosts(ports, Hosts { count: 1, per_host: machine }, queue)
    }

    fn on_hosts(ports: &'p Ports<'g>, hosts: Hosts, queue: DependencyQueue<'g, O>) -> Self {
        let schedule =
            ResourceSchedule { makespan: 0.0, starts: Vec::new(), peak_memory: 0, core_time: 0.0, unscheduled: 0 };
        Run { ports, machine: hosts.total(), hosts, queue, active: Vec::new(), now: 0.0, schedule }
    }

    /// Cores each host has left, by host.
    fn free_cores(&self) -> Vec<u32> {
        let mut free = vec![self.hosts.per_host.cores.max(1); self.hosts.count.max(1) as usize];
        for a in &self.active {
            free[a.host as usize] = free[a.host as usize].saturating_sub(a.jobs);
        }
        free
    }

    fn go(mut self, starter: &mut impl Starter<O>) -> ResourceSchedule {
        loop {
            starter.start_what_can(&mut self);
            if self.active.is_empty() {
                break;
            }
            self.advance_to_next_end();
        }
        self.schedule.unscheduled = self.queue.ready_len() + self.queue.waiting_len();
        self.schedule
    }

    /// Starts `node` with `jobs` (at most one host's cores: a build runs on
    /// one host) on the host [`best_fit`] picks, else the roomiest.
    fn start(&mut self, node: NodeId, jobs: u32) {
        let jobs = self.jobs_on_a_host(node, jobs);
        let free = self.free_cores();
        let host = best_fit(&free, jobs).unwrap_or_else(|| roomiest(&free));
        self.start_on(node, jobs, host);
    }

    /// `jobs` as a build of `node` can have them: one if it is unsafe for
    /// parallel make, at most one host's cores.
    fn jobs_on_a_host(&self, node: NodeId, jobs: u32) -> u32 {
        if self.ports.real[node].parallel_safe {
            jobs.clamp(1, self.hosts.per_host.cores.max(1))
        } else {
            1
        }
    }

    fn start_on(&mut self, node: NodeId, jobs: u32, host: u32) {
        let time = self.ports.real[node].time(jobs);
        self.active.push(Active { node, jobs, left: time, host });
        self.schedule.core_time += f64::from(jobs) * time;
        self.schedule.starts.push(Start { node, time: self.now, jobs });
        let memory = self.active.iter().map(|a| self.ports.real[a.node].memory_at(a.jobs)).sum();
        self.schedule.peak_memory = self.schedule.peak_memory.max(memory);
    }

    /// Every build runs at `min(1, C / Σ jobs)` of its speed (`C` and `Σ
    /// jobs` of its host) until the first one ends; all that end then
    /// finish together, in node order.
    fn advance_to_next_end(&mut self) {
        let mut demand = vec![0u32; self.hosts.count.max(1) as usize];
        for a in &self.active {
            demand[a.host as usize] += a.jobs;
        }
        let cores = f64::from(self.hosts.per_host.cores.max(1));
        let speed = |a: &Active| (cores / f64::from(demand[a.host as usize].max(1))).min(1.0);
        let step = self.active.iter().map(|a| a.left / speed(a)).fold(f64::INFINITY, f64::min);
        self.now += step;
        let mut ended = Vec::new();
        self.active.retain_mut(|a| {
            let progress = step * (cores / f64::from(demand[a.host as usize].max(1))).min(1.0);
            a.left -= progress;
            let done = a.left <= 1e-9 * (1.0 + progress);
            if done {
                ended.push(a.node);
            }
            !done
        });
        ended.sort_unstable();
        self.queue.set_now(self.now);
        for node in ended {
            self.queue.finish(node);
        }
        self.schedule.makespan = self.now;
    }

    fn used_cores(&self) -> u32 {
        self.active.iter().map(|a| a.jobs).sum()
    }
}

/// A fixed number of jobs per build, as many builds as workers.
struct Fixed(u32);

impl<O: Order> Starter<O> for Fixed {
    fn start_what_can(&mut self, run: &mut Run<'_, '_, O>) {
        while run.active.len() < run.machine.workers as usize {
            let Some(node) = run.queue.dequeue() else { return };
            run.start(node, self.0);
        }
    }
}

/// Our allocator over the scheduler's queue.
struct Ours {
    tails: Vec<f64>,
    /// Expected CPU work of the ports not started yet.
    remaining_work: f64,
    /// Builds handed out that no host has the jobs for yet (farms only),
    /// each holding a host that nothing else may start on until it fits
    /// there, as a Slurm job pending for its cores holds its reservation
    /// against lower-priority jobs (backfill).
    held: Vec<Held>,
}

#[derive(Debug, Clone, Copy)]
struct Held {
    node: NodeId,
    jobs: u32,
    host: u32,
}

impl Ours {
    fn new(tails: Vec<f64>, remaining_work: f64) -> Self {
        Ours { tails, remaining_work, held: Vec::new() }
    }

    /// The running builds and the held ones (committed: they hold their
    /// cores in the allocator's view).
    fn running(&self, run: &Run<'_, '_, CriticalPath>) -> Vec<RunningPort> {
        let ports = run.ports;
        let held = self.held.iter().map(|h| (h.node, h.jobs, 1.0));
        let active = run
            .active
            .iter()
            .map(|a| (a.node, a.jobs, a.left / ports.real[a.node].time(a.jobs).max(f64::MIN_POSITIVE)));
        held.chain(active)
            .map(|(node, jobs, fraction_left)| {
                let expected = ports.expected(node);
                let left = expected.time(jobs) * fraction_left;
                RunningPort { jobs, left_ms: left, memory: expected.memory_at(jobs), chain_ms: left + self.tails[node] }
            })
            .collect()
    }

    /// Free cores per host, none on a host a held build waits for.
    fn free_cores(&self, run: &Run<'_, '_, CriticalPath>) -> Vec<u32> {
        let mut free = run.free_cores();
        for held in &self.held {
            free[held.host as usize] = 0;
        }
        free
    }

    /// Starts every held build whose host now has its jobs free.
    fn place_held(&mut self, run: &mut Run<'_, '_, CriticalPath>) {
        let mut index = 0;
        while index < self.held.len() {
            let held = self.held[index];
            if run.free_cores()[held.host as usize] >= held.jobs {
                run.start_on(held.node, held.jobs, held.host);
                self.held.remove(index);
            } else {
                index += 1;
            }
        }
    }
}

impl Starter<CriticalPath> for Ours {
    fn start_what_can(&mut self, run: &mut Run<'_, '_, CriticalPath>) {
        self.place_held(run);
        loop {
            let committed = run.active.len() + self.held.len();
            let window = run.machine.workers as usize - committed.min(run.machine.workers as usize) + 8;
            let candidates: Vec<NodeId> = run.queue.ready().take(window).collect();
            let ready: Vec<ReadyPort> = candidates
                .iter()
                .map(|&v| ReadyPort { model: *run.ports.expected(v), tail_ms: self.tails[v] })
                .collect();
            let running = self.running(run);
            let work = self.remaining_work + running.iter().map(|r| f64::from(r.jobs) * r.left_ms).sum::<f64>();
            let free = self.free_cores(run);
            if free.iter().all(|&f| f == 0) {
                return;
            }
            let Decision::Start { index, jobs } = allocate::next_start(&run.machine, &running, &ready, work) else {
                return;
            };
            let node = candidates[index];
            run.queue.take(node);
            self.remaining_work -= run.ports.expected(node).work();
            let jobs = run.jobs_on_a_host(node, jobs);
            // Where it fits; else the build waits for the roomiest host
            // (never on one host only: a machine's free cores always fit).
            match best_fit(&free, jobs) {
                Some(host) => run.start_on(node, jobs, host),
                None => self.held.push(Held { node, jobs, host: roomiest(&free) }),
            }
        }
    }
}

/// bob's `MAKE_JOBS` allocator (`makejobs::Allocator`) and its tail rule.
struct Bob {
    budget: u32,
    fair: u32,
    min_jobs: u32,
    max_jobs: u32,
    log_min: f64,
    log_range: f64,
    cpu: Vec<f64>,
}

impl Bob {
    fn new(ports: &Ports<'_>, machine: Machine) -> Self {
        let budget = machine.cores.max(1);
        let fair = budget.div_ceil(machine.workers.max(1));
        let cpu: Vec<f64> = (0..ports.graph.len()).map(|v| ports.expected(v).work()).collect();
        let safe = (0..cpu.len()).filter(|&v| ports.expected(v).parallel_safe).map(|v| cpu[v].max(1.0));
        let (low, high) = safe.fold((f64::INFINITY, 0.0_f64), |(lo, hi), c| (lo.min(c), hi.max(c)));
        let (log_min, log_range) = if high > 0.0 { (low.ln(), (high.ln() - low.ln()).max(1.0)) } else { (0.0, 0.0) };
        Bob {
            budget,
            fair,
            min_jobs: 2.min(budget),
            max_jobs: (fair + 2).max(budget / 3).min(budget),
            log_min,
            log_range,
            cpu,
        }
    }

    /// The log-scale value of a port with history.
    fn assign(&self, node: NodeId) -> u32 {
        if self.log_range == 0.0 {
            return self.fair;
        }
        let t = ((self.cpu[node].max(1.0).ln() - self.log_min) / self.log_range).clamp(0.0, 1.0);
        let j = f64::from(self.min_jobs) + t * f64::from(self.max_jobs - self.min_jobs);
        (j.round() as u32).clamp(self.min_jobs, self.max_jobs)
    }

    /// `tail_assign`: the sole builder gets the budget; in the tail the
    /// uncommitted budget is split in proportion.
    fn jobs_for(&self, node: NodeId, run: &Run<'_, '_, Rank>) -> u32 {
        let base = self.assign(node);
        if run.active.is_empty() && run.queue.is_empty() {
            return self.budget;
        }
        if run.queue.waiting_len() > 0 {
            return base;
        }
        let available = self.budget.saturating_sub(run.used_cores());
        let ready_weight: u32 = run.queue.ready().map(|v| self.assign(v)).sum();
        let scaled = (f64::from(available) * f64::from(base) / f64::from(base + ready_weight)).round() as u32;
        scaled.max(base)
    }
}

impl Starter<Rank> for Bob {
    fn start_what_can(&mut self, run: &mut Run<'_, '_, Rank>) {
        while run.active.len() < run.machine.workers as usize {
            let Some(node) = run.queue.dequeue() else { return };
            let jobs = if run.ports.expected(node).parallel_safe { self.jobs_for(node, run) } else { 1 };
            run.start(node, jobs);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    use crate::graph::test_graph as graph;

    fn machine(cores: u32, workers: u32) -> Machine {
        Machine { cores, workers, memory: 1024 * GIB }
    }

    /// One long parallel port on a chain and many small serial ones.
    fn compiler_and_crowd() -> (Graph, Vec<PortModel>) {
        let mut labels = vec!["lang/compiler".to_string(), "lang/runtime".to_string()];
        labels.extend((0..30).map(|i| format!("misc/small{i:02}")));
        let refs: Vec<&str> = labels.iter().map(String::as_str).collect();
        let g = graph(&refs, &[(1, 0)]);
        let mut models = vec![PortModel::new(5.0, 400.0), PortModel::new(2.0, 100.0)];
        models.extend((0..30).map(|_| PortModel::new(10.0, 0.0)));
        (g, models)
    }

    #[test]
    fn a_root_that_much_waits_for_cannot_be_both_quick_and_cheap() {
        // a (s 400, p 400) before 16 serial leaves of 100 s; 8 independent
        // serial ports of 300 s; 8 cores. The energy bound runs a at its
        // useful maximum of 4 jobs (500 s) for free: 500 + 1600 / 8 = 700.
        // But at j jobs a costs
        // 400 (j - 1) core seconds more, so no schedule ends before
        // min over j of max(400 + 400 / j + 200, (4800 + 400 (j - 1)) / 8).
        let mut labels = vec!["a/root".to_string()];
        labels.extend((0..16).map(|i| format!("b/leaf{i:02}")));
        labels.extend((0..8).map(|i| format!("c/free{i}")));
        let refs: Vec<&str> = labels.iter().map(String::as_str).collect();
        let edges: Vec<(usize, usize)> = (1..=16).map(|i| (i, 0)).collect();
        let g = graph(&refs, &edges);
        let mut models = vec![PortModel::new(400.0, 400.0)];
        models.extend((0..16).map(|_| PortModel::new(100.0, 0.0)));
        models.extend((0..8).map(|_| PortModel::new(300.0, 0.0)));
        let ports = Ports { graph: &g, real: &models, expected: None };
        let energy = lower_bound_energy(&ports, 8);
        assert_eq!(models[0].max_jobs, 4);
        assert!((energy - 700.0).abs() < 1e-9, "{energy}");
        let expected = (1..=models[0].max_jobs.min(8))
            .map(|j| {
                let j = f64::from(j);
                (400.0 + 400.0 / j + 200.0).max((4800.0 + 400.0 * (j - 1.0)) / 8.0)
            })
            .fold(f64::INFINITY, f64::min);
        let tradeoff = lower_bound_tradeoff(&ports, 8);
        assert!((tradeoff - expected).abs() < 1e-9 && tradeoff > energy + 30.0, "{tradeoff} vs {expected}");
        let schedule = simulate(&ports, machine(8, 8), Allocation::Ours);
        assert!(schedule.makespan + 1e-9 >= tradeoff, "no schedule beats a lower bound: {}", schedule.makespan);
    }

    #[test]
    fn a_build_with_j_jobs_takes_s_plus_p_over_j() {
        let g = graph(&["a/one"], &[]);
        let models = [PortModel::new(10.0, 80.0)];
        let ports = Ports { graph: &g, real: &models, expected: None };
        let fixed = simulate(&ports, machine(8, 2), Allocation::Fixed { order: Policy::CriticalPath, jobs: 4 });
        assert!((fixed.makespan - 30.0).abs() < 1e-9);
        assert_eq!(fixed.starts[0].jobs, 4);
    }

    #[test]
    fn overcommitted_cores_slow_every_build() {
        // Two ports of 0 + 80 with 8 jobs each on 8 cores: each would take
        // 10, sharing the cores both take 20.
        let g = graph(&["a/one", "a/two"], &[]);
        let models = [PortModel::new(0.0, 80.0); 2];
        let ports = Ports { graph: &g, real: &models, expected: None };
        let s = simulate(&ports, machine(8, 2), Allocation::Fixed { order: Policy::CriticalPath, jobs: 8 });
        assert!((s.makespan - 20.0).abs() < 1e-9, "{}", s.makespan);
    }

    #[test]
    fn ours_gives_the_critical_chain_its_jobs_and_beats_the_peers() {
        let (g, models) = compiler_and_crowd();
        let ports = Ports { graph: &g, real: &models, expected: None };
        let m = machine(16, 16);
        let ours = simulate(&ports, m, Allocation::Ours);
        assert_eq!(ours.unscheduled, 0);
        assert_eq!(ours.starts[0].node, 0, "the compiler first");
        assert!(ours.starts[0].jobs > 4, "{:?}", ours.starts[0]);
        let bound = lower_bound(&ports, 16);
        assert!(ours.makespan >= bound - 1e-9);
        assert!(ours.makespan >= lower_bound_energy(&ports, 16) - 1e-9);
        assert!(lower_bound_energy(&ports, 16) >= bound);
        // The bound is not attainable here: the 30 serial ports need 300
        // core-seconds beside the compiler, which holds its jobs for 41 s.
        assert!(ours.makespan <= bound * 1.2, "{} vs {bound}: {:?}", ours.makespan, ours.starts);
        for jobs in [1, 4] {
            let fixed = Allocation::Fixed { order: Policy::CriticalPath, jobs };
            let fixed = simulate(&ports, Machine { workers: 16 / jobs, ..m }, fixed);
            assert!(ours.makespan <= fixed.makespan, "j={jobs}: {} vs {}", ours.makespan, fixed.makespan);
        }
        let bob = simulate(&ports, Machine { workers: 4, ..m }, Allocation::Bob);
        assert!(ours.makespan <= bob.makespan);
    }

    #[test]
    fn the_remaining_run_from_the_start_is_the_whole_simulation() {
        let (g, models) = compiler_and_crowd();
        let ports = Ports { graph: &g, real: &models, expected: None };
        let m = machine(16, 16);
        let (order, chains_after) = our_order(&ports);
        let all = vec![true; g.len()];
        let behind = allocate::work_behind(&g, &all, &ports_work(&ports), order.dependents());
        let tails = allocate::tails(&chains_after, &behind, m.cores);
        let snapshot = Snapshot { order, tails: &tails, pending: &all, running: &[], fixed_jobs: None };
        let whole = simulate(&ports, m, Allocation::Ours).makespan;
        assert!((remaining(&ports, m, snapshot) - whole).abs() < 1e-9);
    }

    #[test]
    fn the_remaining_run_waits_for_the_running_builds() {
        // a/two needs a/one, which runs with 2 jobs and 5 s left; a/two takes
        // 1 + 8 / j. With 4 cores it then gets its 4 jobs: 5 + 3; with one
        // fixed job: 5 + 9.
        let g = graph(&["a/one", "a/two"], &[(1, 0)]);
        let models = [PortModel::new(1.0, 8.0); 2];
        let ports = Ports { graph: &g, real: &models, expected: None };
        let (order, tails) = our_order(&ports);
        let pending = [false, true];
        let running = [(0, 2, 5.0)];
        let snapshot = |fixed_jobs| Snapshot {
            order: order.clone(),
            tails: &tails,
            pending: &pending,
            running: &running,
            fixed_jobs,
        };
        assert!((remaining(&ports, machine(4, 4), snapshot(None)) - 8.0).abs() < 1e-9);
        assert!((remaining(&ports, machine(4, 4), snapshot(Some(1))) - 14.0).abs() < 1e-9);
        let done = Snapshot { pending: &[false, false], running: &[], ..snapshot(None) };
        assert_eq!(remaining(&ports, machine(4, 4), done), 0.0);
    }

    #[test]
    fn a_build_on_a_farm_gets_one_host_at_most() {
        // Two ports of 0 + 80 asking for 8 jobs each, two hosts of 4 cores:
        // 4 jobs each, one per host, both done at 20. On one host of 8 they
        // would share its cores and end together at 20 as well; a single
        // such port on the farm still takes 20, not 10.
        let g = graph(&["a/one", "a/two"], &[]);
        let models = [PortModel::new(0.0, 80.0); 2];
        let ports = Ports { graph: &g, real: &models, expected: None };
        let farm = Hosts { count: 2, per_host: machine(4, 1) };
        let fixed = Allocation::Fixed { order: Policy::CriticalPath, jobs: 8 };
        let s = simulate_hosts(&ports, farm, fixed);
        assert!((s.makespan - 20.0).abs() < 1e-9, "{}", s.makespan);
        assert!(s.starts.iter().all(|start| start.jobs == 4), "{:?}", s.starts);
        let ours = simulate_hosts(&ports, farm, Allocation::Ours);
        assert!(ours.starts.iter().all(|start| start.jobs <= 4), "{:?}", ours.starts);
        assert!((ours.makespan - 20.0).abs() < 1e-9, "{}", ours.makespan);
        let (critical, work, tight) = farm_bounds(&ports, farm);
        assert!((critical - 20.0).abs() < 1e-9 && (work - 20.0).abs() < 1e-9 && tight >= 20.0 - 1e-9);
    }

    #[test]
    fn one_host_is_the_machine() {
        let (g, models) = compiler_and_crowd();
        let ports = Ports { graph: &g, real: &models, expected: None };
        let m = machine(16, 16);
        let alone = simulate(&ports, m, Allocation::Ours);
        let farm = simulate_hosts(&ports, Hosts { count: 1, per_host: m }, Allocation::Ours);
        assert_eq!(alone, farm);
        let four = simulate_hosts(&ports, Hosts { count: 4, per_host: machine(4, 4) }, Allocation::Ours);
        assert!(four.starts.iter().all(|start| start.jobs <= 4));
        assert!(four.makespan >= alone.makespan - 1e-9, "16 cores in 4 hosts cannot beat 16 in one");
    }

    #[test]
    fn ours_never_holds_more_cores_or_memory_than_the_machine() {
        let (g, models) = compiler_and_crowd();
        let models: Vec<PortModel> = models.into_iter().map(|m| m.with_memory(3 * GIB)).collect();
        let ports = Ports { graph: &g, real: &models, expected: None };
        let m = Machine { cores: 8, workers: 8, memory: 10 * GIB };
        let s = simulate(&ports, m, Allocation::Ours);
        assert_eq!(s.unscheduled, 0);
        assert!(s.peak_memory <= 10 * GIB, "{}", s.peak_memory);
        assert!(s.starts.iter().all(|start| start.jobs <= 8));
    }

    #[test]
    fn bob_scales_jobs_by_history_and_gives_the_sole_builder_the_whole_budget() {
        // a/three needs a/one and a/two. 16 cores, 4 workers: fair 4, the
        // log scale from 2 to max(4 + 2, 16 / 3) = 6 over CPU 11..101.
        let g = graph(&["a/one", "a/two", "a/three"], &[(2, 0), (2, 1)]);
        let models = [PortModel::new(1.0, 100.0), PortModel::new(1.0, 10.0), PortModel::new(1.0, 10.0)];
        let ports = Ports { graph: &g, real: &models, expected: None };
        let s = simulate(&ports, machine(16, 4), Allocation::Bob);
        let jobs: Vec<(NodeId, u32)> = s.starts.iter().map(|s| (s.node, s.jobs)).collect();
        assert_eq!(jobs, [(0, 6), (1, 2), (2, 16)]);
    }

    #[test]
    fn a_port_not_safe_for_parallel_make_runs_with_one_job_under_every_policy() {
        let g = graph(&["a/one"], &[]);
        let models = [PortModel::new(1.0, 100.0).not_parallel_safe()];
        let ports = Ports { graph: &g, real: &models, expected: None };
        for allocation in [Allocation::Ours, Allocation::Bob, Allocation::Fixed { order: Policy::Poudriere, jobs: 4 }] {
            let s = simulate(&ports, machine(16, 4), allocation);
            assert_eq!(s.starts[0].jobs, 1, "{allocation:?}");
            assert!((s.makespan - 101.0).abs() < 1e-9);
        }
    }
}
