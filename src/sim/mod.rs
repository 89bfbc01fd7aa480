//! The scheduling simulator: how long a build of a dependency graph takes
//! with W workers under a given ready-queue policy.
//!
//! It is an event-driven list scheduler over virtual time. A port becomes
//! ready when the last of its dependencies still to build has finished; a
//! free worker slot takes the ready port the policy ranks first; a running
//! port holds its slot for its duration. Completions at the same instant are
//! all processed before any new port starts, so ties never depend on event
//! order. There is no overhead per build: the model measures the policy.
//!
//! The same code answers two questions:
//! - **the ETA** of a running build ([`crate::build::scheduler`]): the ports
//!   still waiting, their expected durations, the ports running now with
//!   their expected remaining time, the current worker limit, and our policy
//!   with the coordinator's own priorities;
//! - **policy comparison** (`benches/scheduling.rs`, figure 5 of
//!   `docs/PERFORMANCE.md`): our policy against the published policies of
//!   the peers, each makespan divided by [`lower_bound`].
//!
//! Policies ([`Policy`]):
//! - [`Policy::CriticalPath`] — portsynth: the longest remaining chain of
//!   expected build time first ([`Graph::priorities`]), ties by the number of
//!   transitive dependents ([`Graph::transitive_dependents_counts`]), then by
//!   origin. The simulation uses the scheduler's own queue
//!   ([`Graph::ready_queue`]), so the order is the scheduler's by
//!   construction.
//! - [`Policy::Fifo`] — ports in the order they became ready; ports released
//!   at the same instant in topological order ([`Graph::topo_order`]).
//! - [`Policy::Synth`] — synth: the most transitive dependents first.
//! - [`Policy::Poudriere`] — poudriere: the longest chain of dependents,
//!   counted in ports (not weighted by time), first.
//! - [`Policy::Dsynth`] — dsynth: slots `0..=W/2` take the ready port with the
//!   most direct dependents × dependent depth (`depi_count * depi_depth`),
//!   the other slots the one with the most direct dependencies
//!   (`idep_count`, which for a ready port counts its built dependencies).
//!
//! Every tie not named above is broken by origin (the node label), so a
//! simulation is deterministic.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeSet, BinaryHeap};

pub mod resources;

use crate::graph::{Graph, NodeId};
use crate::queue::{CriticalPath, DependencyQueue, Fifo, Order, Rank, ReadySet};

/// A ready-queue policy; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Policy {
    CriticalPath,
    Fifo,
    Synth,
    Poudriere,
    Dsynth,
}

impl Policy {
    pub const ALL: [Policy; 5] = [Policy::CriticalPath, Policy::Fifo, Policy::Synth, Policy::Poudriere, Policy::Dsynth];

    pub fn name(self) -> &'static str {
        match self {
            Policy::CriticalPath => "portsynth",
            Policy::Fifo => "fifo",
            Policy::Synth => "synth",
            Policy::Poudriere => "poudriere",
            Policy::Dsynth => "dsynth",
        }
    }
}

/// What is left to build.
#[derive(Clone, Copy)]
pub struct Workload<'a> {
    pub graph: &'a Graph,
    /// How long each node really takes (seconds, or any unit used
    /// consistently). Nodes outside the workload may hold anything.
    pub durations: &'a [f64],
    /// What [`Policy::CriticalPath`] believes the durations are (the median
    /// of past builds, or a default); `None`: the real durations.
    pub expected: Option<&'a [f64]>,
    /// The nodes still to start; `None`: every node. A node that is neither
    /// pending nor running counts as built.
    pub pending: Option<&'a [bool]>,
    /// Nodes building now with their remaining time; each holds a slot from
    /// time 0.
    pub running: &'a [(NodeId, f64)],
    /// Precomputed [`Policy::CriticalPath`] priorities (as the scheduler holds
    /// them); `None`: computed from `expected`.
    pub priority: Option<&'a [f64]>,
    /// Precomputed transitive dependent counts; `None`: computed.
    pub dependents: Option<&'a [u32]>,
}

impl<'a> Workload<'a> {
    /// Every node of `graph` still to build, nothing running.
    pub fn all(graph: &'a Graph, durations: &'a [f64]) -> Self {
        assert_eq!(durations.len(), graph.len(), "one duration per node");
        Workload { graph, durations, expected: None, pending: None, running: &[], priority: None, dependents: None }
    }

    fn is_pending(&self, n: NodeId) -> bool {
        self.pending.is_none_or(|p| p[n])
    }
}

/// How many ports may build at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Slots {
    pub workers: usize,
    /// The scheduler's start-up ramp: `start` workers, one more every `step`
    /// (seconds), counted from `elapsed` before simulated time 0.
    pub ramp: Option<Ramp>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ramp {
    pub start: usize,
    pub step: f64,
    pub elapsed: f64,
}

impl Slots {
    pub fn fixed(workers: usize) -> Self {
        Slots { workers: workers.max(1), ramp: None }
    }

    fn limit_at(&self, t: f64) -> usize {
        match self.ramp {
            None => self.workers,
            Some(r) => self.workers.min(r.start + ((r.elapsed + t) / r.step).floor() as usize).max(1),
        }
    }

    /// The next instant after `t` at which the limit grows, if it still does.
    fn next_growth(&self, t: f64) -> Option<f64> {
        let r = self.ramp?;
        if self.limit_at(t) >= self.workers {
            return None;
        }
        let steps = ((r.elapsed + t) / r.step).floor() + 1.0;
        Some(steps * r.step - r.elapsed)
    }
}

/// The outcome of one simulation.
#[derive(Debug, Clone, PartialEq)]
pub struct Schedule {
    /// When the last build ends (0 for an empty workload).
    pub makespan: f64,
    /// Start time of each node built in the simulation (pending nodes only).
    pub start: Vec<Option<f64>>,
    /// Pending nodes in the order they started.
    pub order: Vec<NodeId>,
    /// Pending nodes never started: held back by a dependency loop.
    pub unscheduled: usize,
}

/// Makespan of building every node of `graph` with `workers` slots.
pub fn makespan(graph: &Graph, durations: &[f64], workers: usize, policy: Policy) -> f64 {
    simulate(&Workload::all(graph, durations), Slots::fixed(workers), policy).makespan
}

/// `max(critical path, total work / W)`: no schedule can be shorter. Running
/// nodes count with their remaining time (and W is at least their number).
pub fn lower_bound(work: &Workload<'_>, workers: usize) -> f64 {
    let g = work.graph;
    let mut weight = vec![0.0; g.len()];
    for (n, w) in weight.iter_mut().enumerate() {
        if work.is_pending(n) {
            *w = work.durations[n];
        }
    }
    for &(n, left) in work.running {
        weight[n] = left.max(0.0);
    }
    let total: f64 = weight.iter().sum();
    let critical = g.priorities(&weight).into_iter().fold(0.0, f64::max);
    critical.max(total / workers.max(work.running.len()).max(1) as f64)
}

/// A tighter lower bound, for telling a policy's shortfall from the
/// instance's: [`lower_bound`], and for every instant `t`, `t` plus the work
/// that cannot be done before `t` divided by W (a port cannot start before
/// its longest chain of dependencies has run, so at least
/// `min(d, earliest start + d - t)` of it falls after `t`), and the mirror
/// image with the chains of dependents at the end. It sees what the simple
/// bound misses: a few heavily shared ports at the start of a tree hold
/// every worker idle, whatever the policy.
pub fn lower_bound_energy(work: &Workload<'_>, workers: usize) -> f64 {
    let g = work.graph;
    let n = g.len();
    let mut weight = vec![0.0; n];
    for (v, w) in weight.iter_mut().enumerate() {
        if work.is_pending(v) {
            *w = work.durations[v].max(0.0);
        }
    }
    for &(v, left) in work.running {
        weight[v] = left.max(0.0);
    }
    let w = workers.max(work.running.len()).max(1) as f64;
    // Longest chain after each node (its own weight excluded) ...
    let after: Vec<f64> = g.priorities(&weight).iter().zip(&weight).map(|(p, d)| p - d).collect();
    // ... and before it: the same on the reversed graph, by a topological walk.
    let mut before = vec![0.0_f64; n];
    if let Ok(order) = g.topo_order() {
        for &v in &order {
            for e in g.dependents(v) {
                before[e.to] = before[e.to].max(before[v] + weight[v]);
            }
        }
    }
    let sweep = |release: &[f64]| -> f64 {
        let mut points: Vec<f64> = (0..n).filter(|&v| weight[v] > 0.0).map(|v| release[v]).collect();
        points.sort_by(f64::total_cmp);
        points.dedup();
        const SAMPLES: usize = 1024;
        let step = points.len().div_ceil(SAMPLES).max(1);
        let mut best: f64 = 0.0;
        let candidates = points.iter().step_by(step).chain(points.last());
        for &t in candidates {
            let late: f64 =
                (0..n).filter(|&v| weight[v] > 0.0).map(|v| weight[v].min(release[v] + weight[v] - t).max(0.0)).sum();
            best = best.max(t + late / w);
        }
        best
    };
    lower_bound(work, workers).max(sweep(&before)).max(sweep(&after))
}

/// Runs the workload under `policy` and returns the schedule.
pub fn simulate(work: &Workload<'_>, slots: Slots, policy: Policy) -> Schedule {
    let g = work.graph;
    assert_eq!(work.durations.len(), g.len(), "one duration per node");
    let mut in_scope: Vec<bool> = (0..g.len()).map(|v| work.is_pending(v)).collect();
    for &(node, _) in work.running {
        in_scope[node] = true;
    }
    match policy {
        Policy::CriticalPath => {
            let order = critical_path_order(work, &in_scope);
            run(work, slots, DependencyQueue::new(g, &in_scope, order), None)
        }
        Policy::Fifo => run(work, slots, DependencyQueue::new(g, &in_scope, Fifo(topological_rank(g))), None),
        Policy::Synth | Policy::Poudriere => {
            let rank = peer_ranks(work, &in_scope, policy).remove(0);
            run(work, slots, DependencyQueue::new(g, &in_scope, rank), None)
        }
        Policy::Dsynth => {
            let mut ranks = peer_ranks(work, &in_scope, policy);
            let other_slots = ReadySet::new(ranks.remove(1), g.len());
            run(work, slots, DependencyQueue::new(g, &in_scope, ranks.remove(0)), Some(other_slots))
        }
    }
}

/// Our order as the scheduler builds it: expected durations (0 outside the
/// build) for the priorities, unless they are given.
pub fn critical_path_order(work: &Workload<'_>, in_scope: &[bool]) -> CriticalPath {
    let g = work.graph;
    let priority = match work.priority {
        Some(p) => p.to_vec(),
        None => {
            let expected = work.expected.unwrap_or(work.durations);
            let weights: Vec<f64> = (0..g.len()).map(|v| if in_scope[v] { expected[v] } else { 0.0 }).collect();
            g.priorities(&weights)
        }
    };
    let dependents = work.dependents.map_or_else(|| g.transitive_dependents_counts(), <[u32]>::to_vec);
    CriticalPath::new(g, priority, dependents)
}

/// The list scheduler over one dependency queue. `other_slots` is dsynth's
/// second order: slots above `W/2` take from it; a port started from either
/// order leaves both.
fn run<O: Order>(
    work: &Workload<'_>,
    slots: Slots,
    mut queue: DependencyQueue<'_, O>,
    mut other_slots: Option<ReadySet<Rank>>,
) -> Schedule {
    let n = work.graph.len();
    let mut schedule = Schedule { makespan: 0.0, start: vec![None; n], order: Vec::new(), unscheduled: 0 };
    let mut events: BinaryHeap<Reverse<Event>> = BinaryHeap::new();
    let total_slots = slots.workers.max(work.running.len()).max(1);
    let mut free: BTreeSet<usize> = (work.running.len()..total_slots).collect();
    for (slot, &(node, left)) in work.running.iter().enumerate() {
        queue.take(node);
        events.push(Reverse(Event { time: left.max(0.0), node, slot }));
    }
    if let Some(other) = other_slots.as_mut() {
        queue.ready().for_each(|v| other.push(v));
    }
    let mut busy = work.running.len();
    let mut now = 0.0_f64;
    loop {
        while busy < slots.limit_at(now) {
            let Some(&slot) = free.iter().next() else { break };
            let Some(node) = next_for_slot(&mut queue, other_slots.as_mut(), slot, total_slots) else { break };
            free.remove(&slot);
            busy += 1;
            schedule.start[node] = Some(now);
            schedule.order.push(node);
            events.push(Reverse(Event { time: now + work.durations[node].max(0.0), node, slot }));
        }
        let next_event = events.peek().map(|Reverse(e)| e.time);
        let growth = if queue.is_empty() { None } else { slots.next_growth(now) };
        now = match (next_event, growth) {
            (Some(e), Some(g)) if g < e => {
                now = g;
                continue;
            }
            (None, Some(g)) => {
                now = g;
                continue;
            }
            (Some(e), _) => e,
            (None, None) => break,
        };
        queue.set_now(now);
        while let Some(Reverse(event)) = events.peek().copied() {
            if event.time != now {
                break;
            }
            events.pop();
            free.insert(event.slot);
            busy -= 1;
            schedule.makespan = schedule.makespan.max(now);
            let released = queue.finish(event.node);
            if let Some(other) = other_slots.as_mut() {
                released.into_iter().for_each(|v| other.push(v));
            }
        }
    }
    schedule.unscheduled = queue.ready_len() + queue.waiting_len();
    schedule
}

/// The port `slot` builds next. dsynth's first `W/2 + 1` slots use its
/// dependents order, the others its dependencies order.
fn next_for_slot<O: Order>(
    queue: &mut DependencyQueue<'_, O>,
    other_slots: Option<&mut ReadySet<Rank>>,
    slot: usize,
    slots: usize,
) -> Option<NodeId> {
    let Some(other) = other_slots else { return queue.dequeue() };
    if slot > slots / 2 {
        let node = other.pop()?;
        queue.take(node);
        Some(node)
    } else {
        let node = queue.dequeue()?;
        other.remove(node);
        Some(node)
    }
}

/// A build ending: at `time`, `node` frees `slot`.
#[derive(Debug, Clone, Copy)]
struct Event {
    time: f64,
    node: NodeId,
    slot: usize,
}

impl Ord for Event {
    fn cmp(&self, other: &Self) -> Ordering {
        self.time.total_cmp(&other.time).then(self.node.cmp(&other.node))
    }
}

impl PartialOrd for Event {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Event {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Event {}

/// Each node's position in topological order (label order on a cyclic graph).
fn topological_rank(g: &Graph) -> Rank {
    let order = g.topo_order().unwrap_or_else(|_| {
        let mut all: Vec<NodeId> = (0..g.len()).collect();
        all.sort_by(|&a, &b| g.label(a).cmp(g.label(b)));
        all
    });
    let mut rank = vec![u32::MAX; g.len()];
    for (position, v) in order.into_iter().enumerate() {
        rank[v] = position as u32;
    }
    Rank(rank)
}

/// The static orders of synth, poudriere and dsynth (dsynth: two).
pub fn peer_ranks(work: &Workload<'_>, in_scope: &[bool], policy: Policy) -> Vec<Rank> {
    let g = work.graph;
    let n = g.len();
    match policy {
        Policy::Synth => {
            let dependents = work.dependents.map_or_else(|| g.transitive_dependents_counts(), <[u32]>::to_vec);
            vec![rank_by(g, in_scope, |a, b| dependents[b].cmp(&dependents[a]))]
        }
        Policy::Poudriere => {
            let ones: Vec<f64> = (0..n).map(|v| if in_scope[v] { 1.0 } else { 0.0 }).collect();
            let chain = g.priorities(&ones);
            vec![rank_by(g, in_scope, |a, b| chain[b].total_cmp(&chain[a]))]
        }
        Policy::Dsynth => {
            // depi_depth: the longest chain of ports that depend on me,
            // not counting me (0 for a port nothing depends on).
            let ones = vec![1.0; n];
            let depth = g.priorities(&ones);
            let depi_key: Vec<f64> = (0..n).map(|v| distinct_dependents(g, v) as f64 * (depth[v] - 1.0)).collect();
            let idep_key: Vec<usize> = (0..n).map(|v| distinct_dependencies(g, v)).collect();
            vec![
                rank_by(g, in_scope, |a, b| depi_key[b].total_cmp(&depi_key[a])),
                rank_by(g, in_scope, |a, b| idep_key[b].cmp(&idep_key[a])),
            ]
        }
        Policy::CriticalPath | Policy::Fifo => panic!("{policy:?} has no static rank"),
    }
}

/// Position of each in-scope node in the order `better` (then label)
/// defines; nodes out of scope get `u32::MAX`.
pub fn rank_by(g: &Graph, in_scope: &[bool], better: impl Fn(NodeId, NodeId) -> Ordering) -> Rank {
    let mut nodes: Vec<NodeId> = (0..g.len()).filter(|&v| in_scope[v]).collect();
    nodes.sort_by(|&a, &b| better(a, b).then_with(|| g.label(a).cmp(g.label(b))).then(a.cmp(&b)));
    let mut rank = vec![u32::MAX; g.len()];
    for (position, v) in nodes.into_iter().enumerate() {
        rank[v] = position as u32;
    }
    Rank(rank)
}

fn distinct_dependents(g: &Graph, v: NodeId) -> usize {
    let mut others: Vec<NodeId> = g.dependents(v).iter().map(|e| e.to).collect();
    others.sort_unstable();
    others.dedup();
    others.len()
}

fn distinct_dependencies(g: &Graph, v: NodeId) -> usize {
    let mut others: Vec<NodeId> = g.dependencies(v).iter().map(|e| e.to).collect();
    others.sort_unstable();
    others.dedup();
    others.len()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::bundled::edge_kind;
    use crate::ports::DepKind;

    use crate::graph::test_graph as graph;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    fn labels(g: &Graph, nodes: &[NodeId]) -> Vec<String> {
        nodes.iter().map(|&n| g.label(n).to_string()).collect()
    }

    #[test]
    fn empty_and_single_node() {
        let g = Graph::new();
        assert_eq!(makespan(&g, &[], 4, Policy::CriticalPath), 0.0);
        let g = graph(&["a/a"], &[]);
        for policy in Policy::ALL {
            assert_eq!(makespan(&g, &[3.0], 4, policy), 3.0);
        }
    }

    #[test]
    fn independent_jobs_fill_the_workers() {
        // 4 jobs of 2 on 2 workers: 4. On 1 worker: 8. On 8 workers: 2.
        let g = graph(&["a/1", "a/2", "a/3", "a/4"], &[]);
        let d = [2.0; 4];
        assert!(close(makespan(&g, &d, 2, Policy::CriticalPath), 4.0));
        assert!(close(makespan(&g, &d, 1, Policy::CriticalPath), 8.0));
        assert!(close(makespan(&g, &d, 8, Policy::CriticalPath), 2.0));
    }

    #[test]
    fn a_chain_takes_its_sum_whatever_the_workers() {
        let g = graph(&["c/1", "c/2", "c/3"], &[(1, 0), (2, 1)]);
        for policy in Policy::ALL {
            for w in [1, 2, 16] {
                assert!(close(makespan(&g, &[1.0, 2.0, 3.0], w, policy), 6.0), "{policy:?} W={w}");
            }
        }
    }

    /// A diamond a <- {b, c} <- d: d needs b and c, both need a.
    #[test]
    fn diamond_known_answers() {
        let g = graph(&["x/a", "x/b", "x/c", "x/d"], &[(1, 0), (2, 0), (3, 1), (3, 2)]);
        let d = [1.0, 2.0, 3.0, 1.0];
        // Two workers: a (0-1), b and c in parallel (1-3, 1-4), d (4-5).
        assert!(close(makespan(&g, &d, 2, Policy::CriticalPath), 5.0));
        // One worker: the sum.
        assert!(close(makespan(&g, &d, 1, Policy::CriticalPath), 7.0));
        let work = Workload::all(&g, &d);
        assert!(close(lower_bound(&work, 2), 5.0), "critical path a-c-d");
        assert!(close(lower_bound(&work, 1), 7.0), "total work");
    }

    /// The classic case for critical-path scheduling: one long chain and
    /// many short independent jobs. Whoever starts the chain late pays for it
    /// at the end; we start it at once.
    fn chain_and_crowd(chain: usize, crowd: usize) -> (Graph, Vec<f64>) {
        let mut g = Graph::new();
        let mut d = Vec::new();
        // Labels sort the crowd before the chain ("a/…" < "z/…"), so label
        // order and FIFO both favour the crowd.
        for i in 0..crowd {
            g.add_node(format!("a/short{i:04}"));
            d.push(1.0);
        }
        for i in 0..chain {
            let n = g.add_node(format!("z/chain{i:04}"));
            d.push(1.0);
            if i > 0 {
                g.add_edge(n, n - 1, edge_kind(DepKind::Build));
            }
        }
        (g, d)
    }

    #[test]
    fn our_policy_meets_the_lower_bound_on_a_long_chain() {
        let (g, d) = chain_and_crowd(40, 120);
        let work = Workload::all(&g, &d);
        for w in [2, 4, 8] {
            let bound = lower_bound(&work, w);
            let ours = makespan(&g, &d, w, Policy::CriticalPath);
            assert!(ours >= bound - 1e-9, "never below the bound");
            assert!(ours <= bound * 1.05 + 1e-9, "W={w}: {ours} vs bound {bound}");
            let fifo = makespan(&g, &d, w, Policy::Fifo);
            assert!(ours <= fifo, "W={w}: ours {ours} fifo {fifo}");
        }
        // With 4 workers the chain (40) dominates total/W (40): FIFO runs
        // the 120 short jobs first and starts the chain at 30.
        assert!(close(makespan(&g, &d, 4, Policy::Fifo), 70.0));
        assert!(close(makespan(&g, &d, 4, Policy::CriticalPath), 40.0));
    }

    #[test]
    fn every_policy_is_within_graham_bound_and_above_the_lower_bound() {
        // Random layered DAG with skewed durations.
        let mut g = Graph::new();
        let mut d = Vec::new();
        let mut rng = crate::graph::Lcg(12345);
        let mut next = || rng.next() as usize;
        for i in 0..300 {
            let n = g.add_node(format!("c{}/p{i:03}", next() % 7));
            d.push(if next() % 10 == 0 { 20.0 } else { 1.0 + (next() % 5) as f64 });
            for _ in 0..(next() % 4) {
                if i > 0 {
                    let dep = next() % i;
                    g.add_edge(n, dep, edge_kind(DepKind::Build));
                }
            }
        }
        let work = Workload::all(&g, &d);
        for w in [1, 3, 8, 64] {
            let bound = lower_bound(&work, w);
            for policy in Policy::ALL {
                let schedule = simulate(&work, Slots::fixed(w), policy);
                assert_eq!(schedule.unscheduled, 0);
                assert_eq!(schedule.order.len(), g.len());
                assert!(schedule.makespan >= bound - 1e-9, "{policy:?} W={w}");
                assert!(schedule.makespan <= bound * 2.0 + 1e-9, "{policy:?} W={w}: Graham's bound");
                // Dependencies finish before dependents start.
                for v in 0..g.len() {
                    for e in g.dependencies(v) {
                        let dep_end = schedule.start[e.to].unwrap() + d[e.to];
                        assert!(schedule.start[v].unwrap() >= dep_end - 1e-9);
                    }
                }
            }
        }
    }

    /// Four ports ready at once (the "roots") that differ in what depends on
    /// them; with one worker, the order in which the roots start is the
    /// policy's order.
    /// - a/heavy: one dependent, y/big, which takes 50 (longest weighted path)
    /// - b/wide: three direct dependents, leaves (most dependents)
    /// - c/deep: a chain of two dependents above it (longest chain in ports)
    /// - d/lone: nothing depends on it
    fn policy_case() -> (Graph, Vec<f64>) {
        let g = graph(
            &["b/wide", "c/deep", "a/heavy", "d/lone", "w/leaf1", "w/leaf2", "w/leaf3", "x/deep1", "x/deep2", "y/big"],
            &[(4, 0), (5, 0), (6, 0), (7, 1), (8, 7), (9, 2)],
        );
        let d = vec![1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 50.0];
        (g, d)
    }

    fn root_order(policy: Policy) -> Vec<String> {
        let (g, d) = policy_case();
        let schedule = simulate(&Workload::all(&g, &d), Slots::fixed(1), policy);
        let roots: Vec<NodeId> = schedule.order.into_iter().filter(|&n| n < 4).collect();
        labels(&g, &roots)
    }

    #[test]
    fn critical_path_orders_by_weighted_chain_then_dependents_then_origin() {
        // a/heavy leads to 51, c/deep to 3, b/wide to 2, d/lone to 1.
        assert_eq!(root_order(Policy::CriticalPath), ["a/heavy", "c/deep", "b/wide", "d/lone"]);
        // Equal chains: more transitive dependents first, then origin.
        let g = graph(&["b/few", "c/many", "a/few", "x/1", "x/2", "x/3"], &[(3, 0), (4, 1), (5, 1), (3, 2)]);
        let s = simulate(&Workload::all(&g, &[1.0; 6]), Slots::fixed(1), Policy::CriticalPath);
        assert_eq!(labels(&g, &s.order[..3]), ["c/many", "a/few", "b/few"]);
    }

    #[test]
    fn fifo_orders_by_release_then_topological_order() {
        // The roots are released together, before anything else.
        assert_eq!(root_order(Policy::Fifo), ["a/heavy", "b/wide", "c/deep", "d/lone"]);
        let (g, d) = policy_case();
        let s = simulate(&Workload::all(&g, &d), Slots::fixed(1), Policy::Fifo);
        assert_eq!(labels(&g, &s.order[..5]), ["a/heavy", "b/wide", "c/deep", "d/lone", "y/big"]);
    }

    #[test]
    fn synth_orders_by_transitive_dependents() {
        // b/wide: 3, c/deep: 2, a/heavy: 1, d/lone: 0.
        assert_eq!(root_order(Policy::Synth), ["b/wide", "c/deep", "a/heavy", "d/lone"]);
    }

    #[test]
    fn poudriere_orders_by_longest_chain_of_dependents() {
        // c/deep: 3 ports on its chain; a/heavy and b/wide: 2 (by origin); d/lone: 1.
        assert_eq!(root_order(Policy::Poudriere), ["c/deep", "a/heavy", "b/wide", "d/lone"]);
    }

    #[test]
    fn dsynth_first_half_of_the_slots_orders_by_dependents_times_depth() {
        // depi = direct dependents × depth: b/wide 3×1, c/deep 1×2,
        // a/heavy 1×1, d/lone 0. One worker: slot 0 uses that order.
        assert_eq!(root_order(Policy::Dsynth), ["b/wide", "c/deep", "a/heavy", "d/lone"]);
        // Three slots: 0 and 1 (<= 3/2) by depi, slot 2 by own dependency
        // count (0 for every root: origin order).
        let (g, d) = policy_case();
        let s = simulate(&Workload::all(&g, &d), Slots::fixed(3), Policy::Dsynth);
        assert_eq!(labels(&g, &s.order[..3]), ["b/wide", "c/deep", "a/heavy"]);
        // At t=1: slot 0 takes x/deep1 (depi 1), slot 1 d/lone (0, first
        // origin), slot 2 the first origin with one dependency, w/leaf1.
        assert_eq!(labels(&g, &s.order[3..6]), ["x/deep1", "d/lone", "w/leaf1"]);
    }

    #[test]
    fn dsynth_other_slots_order_by_own_dependency_count() {
        // r/1..3 are built; m/many needs all three, a/few one. Two running
        // ports hold slots 0 and 1; with W=3 the free slot is 2, which picks
        // by dependency count: m/many.
        let g =
            graph(&["r/1", "r/2", "r/3", "m/many", "a/few", "x/busy1", "x/busy2"], &[(3, 0), (3, 1), (3, 2), (4, 0)]);
        let d = [1.0, 1.0, 1.0, 5.0, 5.0, 100.0, 100.0];
        let pending = [false, false, false, true, true, false, false];
        let running = [(5, 100.0), (6, 100.0)];
        let work = Workload { pending: Some(&pending), running: &running, ..Workload::all(&g, &d) };
        assert_eq!(simulate(&work, Slots::fixed(3), Policy::Dsynth).order, [3, 4]);
        // One running port, W=2: the free slot is 1 (<= 2/2), which picks by
        // depi (0 for both): origin order.
        let work = Workload { running: &running[..1], ..work };
        assert_eq!(simulate(&work, Slots::fixed(2), Policy::Dsynth).order, [4, 3]);
    }

    #[test]
    fn the_energy_bound_sees_a_shared_root() {
        // One root of 4, then 8 jobs of 4 that need it, on 4 workers:
        // critical path 8, work/W 9, but nothing but the root can run in
        // the first 4, so 4 + 32/4 = 12, which the schedule achieves.
        let labels: Vec<String> = (0..9).map(|i| format!("e/{i}")).collect();
        let refs: Vec<&str> = labels.iter().map(String::as_str).collect();
        let edges: Vec<(usize, usize)> = (1..9).map(|i| (i, 0)).collect();
        let g = graph(&refs, &edges);
        let d = [4.0; 9];
        let work = Workload::all(&g, &d);
        assert!(close(lower_bound(&work, 4), 9.0));
        assert!(close(lower_bound_energy(&work, 4), 12.0));
        assert!(close(makespan(&g, &d, 4, Policy::CriticalPath), 12.0));
        // Mirror image: 8 jobs all needed by one last port.
        let edges: Vec<(usize, usize)> = (1..9).map(|i| (0, i)).collect();
        let g = graph(&refs, &edges);
        let work = Workload::all(&g, &d);
        assert!(close(lower_bound_energy(&work, 4), 12.0));
    }

    #[test]
    fn the_energy_bound_is_a_bound() {
        let (g, d) = chain_and_crowd(30, 90);
        let work = Workload::all(&g, &d);
        for w in [1, 2, 3, 5, 8, 64] {
            let tight = lower_bound_energy(&work, w);
            assert!(tight >= lower_bound(&work, w) - 1e-9);
            for policy in Policy::ALL {
                assert!(makespan(&g, &d, w, policy) >= tight - 1e-9, "{policy:?} W={w}");
            }
        }
    }

    #[test]
    fn pending_and_running_model_a_build_in_progress() {
        // a <- b <- c, a is done, b runs with 2 left, c waits (3).
        let g = graph(&["p/a", "p/b", "p/c"], &[(1, 0), (2, 1)]);
        let d = [10.0, 10.0, 3.0];
        let pending = [false, false, true];
        let running = [(1, 2.0)];
        let work = Workload { pending: Some(&pending), running: &running, ..Workload::all(&g, &d) };
        let s = simulate(&work, Slots::fixed(4), Policy::CriticalPath);
        assert!(close(s.makespan, 5.0));
        assert_eq!(s.start[2], Some(2.0));
        assert_eq!(s.order, [2]);
        assert!(close(lower_bound(&work, 4), 5.0));
    }

    #[test]
    fn precomputed_priorities_are_used() {
        // Two ready ports, one worker: the given priorities decide.
        let g = graph(&["a/one", "b/two"], &[]);
        let d = [1.0, 1.0];
        let priority = [1.0, 2.0];
        let dependents = [0, 0];
        let work = Workload { priority: Some(&priority), dependents: Some(&dependents), ..Workload::all(&g, &d) };
        assert_eq!(simulate(&work, Slots::fixed(1), Policy::CriticalPath).order, [1, 0]);
    }

    #[test]
    fn expected_durations_steer_our_policy_but_real_ones_time_it() {
        // Without history every port "takes" the default: the chain of two
        // short ports looks longer than the single long port.
        let g = graph(&["a/long", "b/s1", "b/s2", "c/other"], &[(2, 1)]);
        let d = [10.0, 1.0, 1.0, 1.0];
        let flat = [60.0; 4];
        let informed = simulate(&Workload::all(&g, &d), Slots::fixed(1), Policy::CriticalPath);
        assert_eq!(informed.order[0], 0, "the long port first");
        let blind = simulate(
            &Workload { expected: Some(&flat), ..Workload::all(&g, &d) },
            Slots::fixed(1),
            Policy::CriticalPath,
        );
        assert_eq!(blind.order[0], 1, "the two-port chain first");
        assert!(close(blind.makespan, 13.0) && close(informed.makespan, 13.0));
    }

    #[test]
    fn the_ramp_limits_workers_at_the_start() {
        // 8 independent jobs of 1 on 8 workers, ramp 2 + 1 per second.
        let labels: Vec<String> = (0..8).map(|i| format!("r/{i}")).collect();
        let refs: Vec<&str> = labels.iter().map(String::as_str).collect();
        let g = graph(&refs, &[]);
        let d = [1.0; 8];
        let slots = Slots { workers: 8, ramp: Some(Ramp { start: 2, step: 1.0, elapsed: 0.0 }) };
        // t=0: 2 start; t=1: limit 3, 3 start; t=2: limit 4, 3 left start; end 3.
        let s = simulate(&Workload::all(&g, &d), slots, Policy::CriticalPath);
        assert!(close(s.makespan, 3.0));
        assert_eq!(s.start.iter().filter(|t| **t == Some(0.0)).count(), 2);
        // A ramp that has run its course changes nothing.
        let late = Slots { workers: 8, ramp: Some(Ramp { start: 2, step: 1.0, elapsed: 100.0 }) };
        assert!(close(simulate(&Workload::all(&g, &d), late, Policy::CriticalPath).makespan, 1.0));
        // Long jobs: the ramp grows while everything runs.
        let long = [10.0; 8];
        let s = simulate(&Workload::all(&g, &long), slots, Policy::CriticalPath);
        assert!(close(s.makespan, 16.0), "last two start at t=6: {}", s.makespan);
    }

    #[test]
    fn a_loop_leaves_ports_unscheduled() {
        let g = graph(&["l/a", "l/b", "l/c"], &[(0, 1), (1, 0)]);
        let s = simulate(&Workload::all(&g, &[1.0; 3]), Slots::fixed(2), Policy::CriticalPath);
        assert_eq!(s.unscheduled, 2);
        assert!(close(s.makespan, 1.0));
    }

    /// The scheduler's loop over the one queue: fill the free slots with
    /// `dequeue`, and on each completion (in the order the simulation says
    /// builds end) `finish` the port and fill again.
    fn drive_like_the_scheduler(g: &Graph, order: CriticalPath, workers: usize, ends: &[NodeId]) -> Vec<NodeId> {
        let mut queue = DependencyQueue::new(g, &vec![true; g.len()], order);
        let mut started = Vec::new();
        let mut running = 0;
        let mut fill = |queue: &mut DependencyQueue<'_, CriticalPath>, running: &mut usize| {
            while *running < workers {
                let Some(node) = queue.dequeue() else { break };
                started.push(node);
                *running += 1;
            }
        };
        fill(&mut queue, &mut running);
        for &node in ends {
            queue.finish(node);
            running -= 1;
            fill(&mut queue, &mut running);
        }
        started
    }

    #[test]
    fn the_scheduler_driving_the_queue_starts_ports_in_the_simulated_order() {
        // A random DAG with distinct durations, so no two builds end at the
        // same instant (the scheduler sees one report at a time).
        let mut g = Graph::new();
        let mut d = Vec::new();
        let mut rng = crate::graph::Lcg(99);
        let mut next = || rng.next() as usize;
        for i in 0..400 {
            let n = g.add_node(format!("c{}/p{i:03}", next() % 5));
            d.push(1.0 + (next() % 100_000) as f64 / 997.0 + i as f64 * 1e-7);
            for _ in 0..(next() % 4) {
                if i > 0 {
                    g.add_edge(n, next() % i, edge_kind(DepKind::Build));
                }
            }
        }
        for workers in [1, 3, 8, 50] {
            let work = Workload::all(&g, &d);
            let schedule = simulate(&work, Slots::fixed(workers), Policy::CriticalPath);
            let mut ends: Vec<NodeId> = (0..g.len()).collect();
            ends.sort_by(|&a, &b| {
                let end = |v: NodeId| schedule.start[v].unwrap() + d[v];
                end(a).total_cmp(&end(b)).then(a.cmp(&b))
            });
            let order = critical_path_order(&work, &vec![true; g.len()]);
            assert_eq!(drive_like_the_scheduler(&g, order, workers, &ends), schedule.order, "W={workers}");
        }
    }

    #[test]
    fn the_simulated_order_is_the_scheduler_order_with_one_worker() {
        // With one worker and every duration known, our policy's start
        // order is Graph::schedule_order with the same keys.
        let (g, d) = chain_and_crowd(5, 7);
        let all = vec![true; g.len()];
        let priority = g.priorities(&d);
        let dependents = g.transitive_dependents_counts();
        let expected = g.schedule_order(&all, &priority, &dependents);
        let s = simulate(&Workload::all(&g, &d), Slots::fixed(1), Policy::CriticalPath);
        assert_eq!(s.order, expected);
    }
}
