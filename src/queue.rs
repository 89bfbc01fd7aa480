//! The one dependency queue: which nodes of a graph may start now, in which
//! order, and what a finished or failed node releases.
//!
//! Modelled on cargo's `DependencyQueue`: every node of the work set holds a
//! count of its dependencies still to finish; a node whose count reaches zero
//! enters the ready set, [`DependencyQueue::dequeue`] hands out the best ready
//! node, and [`DependencyQueue::finish`] decrements the counts of its
//! dependents and returns the ones it made ready. Readiness is counted, never
//! re-checked, so a release costs the node's out-degree and there is no
//! polling.
//!
//! What we need beyond cargo's:
//!
//! - **A subset.** A build covers part of the tree: nodes outside the subset
//!   count as done, edges to them never hold anyone back.
//! - **Failure.** [`DependencyQueue::fail`] marks every waiting node that
//!   (transitively, through the subset) depends on the failed one as
//!   skipped, so it never becomes ready; the caller gets them, nearest first,
//!   and writes the reasons (the build scheduler builds its "via" chains with
//!   `Graph::dependents_closure`).
//! - **Picking another ready node.** A resource policy may start a node that
//!   is not the best ready one (the best one waits for memory), so the ready
//!   set is ordered (a `BTreeSet` keyed by the order's key), can be read in
//!   order ([`DependencyQueue::ready`]) and can give up any member
//!   ([`DependencyQueue::take`]).
//! - **Pluggable order.** [`Order`] turns a node into a sort key, smallest
//!   first. [`CriticalPath`] is the build scheduler's (longest expected chain,
//!   then transitive dependents, then label); [`Rank`] is a precomputed
//!   position (plan order, label order, a peer's policy); [`Fifo`] orders by
//!   release time ([`DependencyQueue::set_now`]), then by a rank.
//!
//! One structure serves the build scheduler, the fetch pool (a work set
//! without edges: [`DependencyQueue::independent`]), the simulator and the
//! graph's order functions, so the order the simulator predicts is the order
//! the scheduler follows, by construction.

use std::cmp::{Ordering, Reverse};
use std::collections::{BTreeSet, VecDeque};

use crate::graph::{Graph, NodeId};

/// How ready nodes are ranked: the node with the smallest key goes first.
pub trait Order {
    type Key: Ord + Copy;
    /// The key of `node`, made ready at `released` (the queue's clock).
    fn key(&self, node: NodeId, released: f64) -> Self::Key;
}

/// The build scheduler's order: the highest critical-path priority (longest
/// chain of expected build time to the end of the build), then the most
/// transitive dependents, then the alphabetically first label.
#[derive(Debug, Clone)]
pub struct CriticalPath {
    priority: Vec<f64>,
    dependents: Vec<u32>,
    label_rank: Vec<u32>,
}

impl CriticalPath {
    pub fn new(graph: &Graph, priority: Vec<f64>, dependents: Vec<u32>) -> Self {
        assert_eq!(priority.len(), graph.len(), "one priority per node");
        assert_eq!(dependents.len(), graph.len(), "one dependent count per node");
        CriticalPath { priority, dependents, label_rank: graph.label_ranks() }
    }

    /// The transitive dependent counts that break priority ties.
    pub fn dependents(&self) -> &[u32] {
        &self.dependents
    }

    pub fn priority(&self) -> &[f64] {
        &self.priority
    }
}

impl Order for CriticalPath {
    type Key = (Reverse<Ascending>, Reverse<u32>, u32);

    fn key(&self, node: NodeId, _released: f64) -> Self::Key {
        (Reverse(Ascending(self.priority[node])), Reverse(self.dependents[node]), self.label_rank[node])
    }
}

/// A precomputed position per node: the lowest goes first.
#[derive(Debug, Clone)]
pub struct Rank(pub Vec<u32>);

impl Rank {
    /// Label order (equal labels: by id).
    pub fn by_label(graph: &Graph) -> Self {
        Rank(graph.label_ranks())
    }
}

impl Order for Rank {
    type Key = u32;

    fn key(&self, node: NodeId, _released: f64) -> u32 {
        self.0[node]
    }
}

/// First released, first served; nodes released at the same instant by rank.
#[derive(Debug, Clone)]
pub struct Fifo(pub Rank);

impl Order for Fifo {
    type Key = (Ascending, u32);

    fn key(&self, node: NodeId, released: f64) -> Self::Key {
        (Ascending(released), self.0 .0[node])
    }
}

/// An `f64` ordered by `total_cmp`, smallest first.
#[derive(Debug, Clone, Copy)]
pub struct Ascending(pub f64);

impl Ord for Ascending {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.total_cmp(&other.0)
    }
}

impl PartialOrd for Ascending {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Ascending {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Ascending {}

/// The ready nodes under an [`Order`]: insert, take the first, take any,
/// read in order.
pub struct ReadySet<O: Order> {
    order: O,
    set: BTreeSet<(O::Key, NodeId)>,
    keys: Vec<Option<O::Key>>,
}

impl<O: Order> ReadySet<O> {
    /// An empty set for node ids `0..len`.
    pub fn new(order: O, len: usize) -> Self {
        ReadySet { order, set: BTreeSet::new(), keys: vec![None; len] }
    }

    /// Makes `node` ready at time 0 (see [`DependencyQueue::set_now`]).
    pub fn push(&mut self, node: NodeId) {
        self.insert(node, 0.0);
    }

    pub fn insert(&mut self, node: NodeId, released: f64) {
        let key = self.order.key(node, released);
        if self.keys[node].is_none() {
            self.keys[node] = Some(key);
            self.set.insert((key, node));
        }
    }

    /// The first node in order, removed.
    pub fn pop(&mut self) -> Option<NodeId> {
        let (_, node) = self.set.pop_first()?;
        self.keys[node] = None;
        Some(node)
    }

    /// Removes `node`; false if it was not in the set.
    pub fn remove(&mut self, node: NodeId) -> bool {
        match self.keys[node].take() {
            Some(key) => self.set.remove(&(key, node)),
            None => false,
        }
    }

    pub fn contains(&self, node: NodeId) -> bool {
        self.keys[node].is_some()
    }

    /// The ready nodes, best first.
    pub fn iter(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.set.iter().map(|&(_, node)| node)
    }

    pub fn order(&self) -> &O {
        &self.order
    }

    pub fn len(&self) -> usize {
        self.set.len()
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }
}

impl ReadySet<CriticalPath> {
    /// The transitive dependent counts that break priority ties (the ETA
    /// simulation orders the remaining ports with them too).
    pub fn dependents(&self) -> &[u32] {
        self.order.dependents()
    }
}

/// Where a node of the work set stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeState {
    /// Not in the work set: counts as done.
    Outside,
    /// Some dependency in the work set has not finished.
    Waiting,
    Ready,
    Running,
    Finished,
    Failed,
    /// A dependency failed: it never becomes ready.
    Skipped,
}

/// Nodes with dependencies, handed out in order as they become ready; see
/// the module documentation.
pub struct DependencyQueue<'g, O: Order> {
    graph: Option<&'g Graph>,
    state: Vec<NodeState>,
    missing: Vec<u32>,
    ready: ReadySet<O>,
    now: f64,
    waiting: usize,
    running: usize,
}

impl<'g, O: Order> DependencyQueue<'g, O> {
    /// The nodes of `subset` (one flag per node of `graph`) with their edges
    /// inside the subset; those without such a dependency are ready.
    pub fn new(graph: &'g Graph, subset: &[bool], order: O) -> Self {
        assert_eq!(subset.len(), graph.len(), "one subset flag per node");
        let n = graph.len();
        let mut queue = DependencyQueue {
            graph: Some(graph),
            state: vec![NodeState::Outside; n],
            missing: vec![0; n],
            ready: ReadySet::new(order, n),
            now: 0.0,
            waiting: 0,
            running: 0,
        };
        for node in (0..n).filter(|&v| subset[v]) {
            let missing = graph.dependencies(node).iter().filter(|e| subset[e.to]).count();
            queue.missing[node] = missing as u32;
            queue.state[node] = NodeState::Waiting;
            queue.waiting += 1;
        }
        for node in 0..n {
            if queue.state[node] == NodeState::Waiting && queue.missing[node] == 0 {
                queue.make_ready(node);
            }
        }
        queue
    }

    /// `members` out of node ids `0..len`, with no dependencies at all: every
    /// member is ready at once (the fetch pool's work).
    pub fn independent(len: usize, members: &[NodeId], order: O) -> Self {
        let mut queue = DependencyQueue {
            graph: None,
            state: vec![NodeState::Outside; len],
            missing: vec![0; len],
            ready: ReadySet::new(order, len),
            now: 0.0,
            waiting: 0,
            running: 0,
        };
        for &node in members {
            if queue.state[node] == NodeState::Outside {
                queue.state[node] = NodeState::Waiting;
                queue.waiting += 1;
                queue.make_ready(node);
            }
        }
        queue
    }

    /// The clock that release times are stamped with ([`Fifo`] orders by
    /// it; the other orders ignore it).
    pub fn set_now(&mut self, now: f64) {
        self.now = now;
    }

    /// The best ready node, now running.
    pub fn dequeue(&mut self) -> Option<NodeId> {
        let node = self.ready.pop()?;
        self.start(node);
        Some(node)
    }

    /// Starts the ready node `node`, wherever it stands in the order; false
    /// if it is not ready.
    pub fn take(&mut self, node: NodeId) -> bool {
        if !self.ready.remove(node) {
            return false;
        }
        self.start(node);
        true
    }

    /// `node` (running) succeeded: its dependents whose last missing
    /// dependency it was are ready now, and returned in graph order.
    pub fn finish(&mut self, node: NodeId) -> Vec<NodeId> {
        self.end(node, NodeState::Finished);
        let mut released = Vec::new();
        let Some(graph) = self.graph else { return released };
        for edge in graph.dependents(node) {
            let dependent = edge.to;
            if self.state[dependent] != NodeState::Waiting {
                continue;
            }
            self.missing[dependent] -= 1;
            if self.missing[dependent] == 0 {
                self.make_ready(dependent);
                released.push(dependent);
            }
        }
        released
    }

    /// `node` (running) failed: every waiting node that depends on it through
    /// the work set is skipped and returned, nearest first.
    pub fn fail(&mut self, node: NodeId) -> Vec<NodeId> {
        self.end(node, NodeState::Failed);
        let mut skipped = Vec::new();
        let Some(graph) = self.graph else { return skipped };
        let mut frontier = VecDeque::from([node]);
        while let Some(v) = frontier.pop_front() {
            for edge in graph.dependents(v) {
                let dependent = edge.to;
                if self.state[dependent] == NodeState::Waiting {
                    self.state[dependent] = NodeState::Skipped;
                    self.waiting -= 1;
                    skipped.push(dependent);
                    frontier.push_back(dependent);
                }
            }
        }
        skipped
    }

    /// The ready nodes, best first.
    pub fn ready(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.ready.iter()
    }

    pub fn ready_len(&self) -> usize {
        self.ready.len()
    }

    /// No node is ready (some may still wait or run).
    pub fn is_empty(&self) -> bool {
        self.ready.is_empty()
    }

    /// Nodes of the work set not yet ready, neither skipped.
    pub fn waiting_len(&self) -> usize {
        self.waiting
    }

    pub fn running_len(&self) -> usize {
        self.running
    }

    /// Nothing is ready, waiting or running.
    pub fn is_done(&self) -> bool {
        self.ready.is_empty() && self.waiting == 0 && self.running == 0
    }

    pub fn state(&self, node: NodeId) -> NodeState {
        self.state[node]
    }

    pub fn order(&self) -> &O {
        self.ready.order()
    }

    fn make_ready(&mut self, node: NodeId) {
        self.state[node] = NodeState::Ready;
        self.waiting -= 1;
        self.ready.insert(node, self.now);
    }

    fn start(&mut self, node: NodeId) {
        self.state[node] = NodeState::Running;
        self.running += 1;
    }

    fn end(&mut self, node: NodeId, state: NodeState) {
        assert_eq!(self.state[node], NodeState::Running, "only a running node can end");
        self.state[node] = state;
        self.running -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::graph::test_graph as graph;

    /// a <- b, a <- c, {b, c} <- d; e alone.
    fn diamond() -> Graph {
        graph(&["x/a", "x/b", "x/c", "x/d", "x/e"], &[(1, 0), (2, 0), (3, 1), (3, 2)])
    }

    fn all(g: &Graph) -> Vec<bool> {
        vec![true; g.len()]
    }

    #[test]
    fn nodes_become_ready_when_their_last_dependency_finishes() {
        let g = diamond();
        let mut q = DependencyQueue::new(&g, &all(&g), Rank::by_label(&g));
        assert_eq!(q.ready().collect::<Vec<_>>(), [0, 4]);
        assert_eq!(q.dequeue(), Some(0));
        assert_eq!(q.finish(0), [1, 2]);
        assert_eq!(q.dequeue(), Some(1));
        assert!(q.finish(1).is_empty(), "d still needs c");
        assert_eq!(q.dequeue(), Some(2));
        assert_eq!(q.finish(2), [3]);
        assert_eq!(q.dequeue(), Some(3));
        assert_eq!(q.dequeue(), Some(4));
        assert!(!q.is_done());
        q.finish(3);
        q.finish(4);
        assert!(q.is_done());
    }

    #[test]
    fn nodes_outside_the_subset_count_as_done() {
        let g = diamond();
        let subset = [false, true, false, true, false];
        let mut q = DependencyQueue::new(&g, &subset, Rank::by_label(&g));
        assert_eq!(q.ready().collect::<Vec<_>>(), [1]);
        assert_eq!(q.state(0), NodeState::Outside);
        assert_eq!(q.dequeue(), Some(1));
        assert_eq!(q.finish(1), [3], "c is outside, so d waits for b only");
    }

    #[test]
    fn a_failure_skips_its_dependents_and_nothing_else() {
        let g = diamond();
        let mut q = DependencyQueue::new(&g, &all(&g), Rank::by_label(&g));
        q.dequeue();
        q.finish(0);
        assert_eq!(q.dequeue(), Some(1));
        assert_eq!(q.fail(1), [3]);
        assert_eq!(q.state(3), NodeState::Skipped);
        assert_eq!(q.dequeue(), Some(2));
        assert!(q.finish(2).is_empty(), "d was skipped, it never becomes ready");
        assert_eq!(q.dequeue(), Some(4));
        q.finish(4);
        assert!(q.is_done());
        assert_eq!(q.waiting_len(), 0);
    }

    #[test]
    fn a_failure_skips_transitively_nearest_first() {
        // a <- b <- c <- d, and a <- e.
        let g = graph(&["c/a", "c/b", "c/c", "c/d", "c/e"], &[(1, 0), (2, 1), (3, 2), (4, 0)]);
        let mut q = DependencyQueue::new(&g, &all(&g), Rank::by_label(&g));
        q.dequeue();
        assert_eq!(q.fail(0), [1, 4, 2, 3]);
        assert!(q.is_done());
    }

    #[test]
    fn the_critical_path_order_is_priority_then_dependents_then_label() {
        let g = graph(&["b/one", "a/two", "c/three", "d/four"], &[]);
        let priority = vec![5.0, 5.0, 9.0, 5.0];
        let dependents = vec![1, 1, 0, 2];
        let order = CriticalPath::new(&g, priority, dependents);
        let q = DependencyQueue::new(&g, &all(&g), order);
        assert_eq!(q.ready().collect::<Vec<_>>(), [2, 3, 1, 0]);
    }

    #[test]
    fn take_starts_any_ready_node() {
        let g = diamond();
        let mut q = DependencyQueue::new(&g, &all(&g), Rank::by_label(&g));
        assert!(q.take(4));
        assert!(!q.take(4), "already running");
        assert!(!q.take(3), "not ready");
        assert_eq!(q.dequeue(), Some(0));
        assert_eq!(q.running_len(), 2);
    }

    #[test]
    fn fifo_orders_by_release_time_then_rank() {
        let g = graph(&["f/a", "f/b", "f/c", "f/d"], &[(2, 0), (3, 1)]);
        let mut q = DependencyQueue::new(&g, &all(&g), Fifo(Rank(vec![0, 1, 3, 2])));
        q.dequeue();
        q.dequeue();
        q.set_now(2.0);
        q.finish(0);
        q.set_now(1.0);
        q.finish(1);
        assert_eq!(q.ready().collect::<Vec<_>>(), [3, 2], "d was released earlier");
    }

    #[test]
    fn independent_members_are_all_ready_in_their_order() {
        let mut q = DependencyQueue::independent(6, &[5, 1, 3], Rank(vec![9, 2, 9, 0, 9, 1]));
        assert_eq!(q.ready().collect::<Vec<_>>(), [3, 5, 1]);
        assert_eq!(q.dequeue(), Some(3));
        assert!(q.finish(3).is_empty());
        let next = q.dequeue().unwrap();
        assert!(q.fail(next).is_empty());
        assert_eq!(q.ready_len(), 1);
    }

    #[test]
    fn a_loop_never_becomes_ready() {
        let g = graph(&["l/a", "l/b", "l/c"], &[(0, 1), (1, 0)]);
        let mut q = DependencyQueue::new(&g, &all(&g), Rank::by_label(&g));
        assert_eq!(q.dequeue(), Some(2));
        q.finish(2);
        assert_eq!(q.dequeue(), None);
        assert_eq!(q.waiting_len(), 2);
    }
}
