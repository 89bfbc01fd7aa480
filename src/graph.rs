//! The dependency graph of a build: which port needs which, what for, and what
//! the framework calls that dependency. It knows nothing about scanning or
//! building; the frameworks fill it, the planner and the scheduler ask it
//! questions.
//!
//! Design choices, and why:
//!
//! - **Dense ids, adjacency in both directions.** Nodes are `usize` indices with a
//!   label (the origin, e.g. `lang/minilang@full`). Every algorithm here walks edges
//!   either towards dependencies (what must exist first) or towards dependents (what
//!   a result affects), so both directions are stored and kept in step by
//!   [`Graph::add_edge`]. Plain vectors keep per-node state in flat arrays instead of
//!   hash maps.
//! - **Edge kinds are the graph's own.** An [`EdgeKind`] says what the builder
//!   needs ([`Need`]: the sandbox filler follows only what comes along at run time)
//!   and what the framework calls the dependency, since a cycle report is only
//!   useful if it names what closes the loop in the framework's words. Each
//!   framework maps its entries to it, so a kind it cannot tell apart (pkgsrc's
//!   `ALL_DEPENDS`) is not dressed up as one it can. One port may need another
//!   through several kinds; each is kept. Exact duplicates are dropped so counts
//!   do not depend on how often a Makefile repeats itself.
//! - **No recursion.** go-synth overflowed its stack on a dependency cycle; a long
//!   chain does the same to any recursive walk. Every traversal uses an explicit
//!   stack, queue or heap, so depth costs heap memory, never stack.
//! - **Cycles are reported, not tripped over.** Strongly connected components are
//!   found with an iterative Tarjan pass; each non-trivial one (including a port
//!   that depends on itself) yields one concrete, shortest loop through its
//!   alphabetically first member, so the message reads the same on every run.
//!   The other algorithms work on the condensation (one node per component), so
//!   a cyclic graph gives well-defined, documented answers instead of a hang.
//! - **Determinism.** Wherever several answers are equally right, ties are broken
//!   by label, so logs, reports and build order are reproducible.
//! - **Critical path first.** Scheduling priority is the longest weighted path from
//!   a port to the end of the graph, so a long chain starts early and a bulk build
//!   does not end in a long single-threaded tail (dsynth, synth and poudriere order
//!   by dependent counts alone). The exact transitive dependent count breaks ties;
//!   it is computed with bitsets in column blocks so memory stays bounded on a
//!   whole tree.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};

use serde::Serialize;

use crate::queue::{CriticalPath, DependencyQueue, Order, Rank, ReadySet};

/// Index of a node in a [`Graph`]; ids are dense, `0..graph.len()`.
pub type NodeId = usize;

/// What a dependency edge asks of the builder, and the framework's name for it.
///
/// Frameworks define their kinds as statics and map their dependency entries
/// to them (`framework::bundled::edge_kind`, `framework::pkgsrc::ALL_DEPENDS`);
/// an edge holds a `&'static EdgeKind`, so it stays two words, as small as
/// with a one-byte kind. Shown (and serialized) as its label.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct EdgeKind {
    /// The framework's own order of its kinds (bundled: the phase order,
    /// `FETCH_DEPENDS` … `RUN_DEPENDS`). Compared first: a cycle search tries
    /// parallel edges in this order, so a report names the same kind on
    /// every run.
    pub rank: u8,
    pub need: Need,
    /// The framework's name for the dependency, for messages and JSON:
    /// `BUILD_DEPENDS`, `ALL_DEPENDS`.
    pub label: &'static str,
}

/// Hashes what tells a framework's kinds apart without hashing the label:
/// the graph hashes one kind per edge it adds. Equal kinds hash alike.
impl std::hash::Hash for EdgeKind {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (self.rank, self.need).hash(state);
    }
}

impl std::fmt::Display for EdgeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label)
    }
}

impl Serialize for EdgeKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.label)
    }
}

/// What the builder does with a dependency for its user. Every kind is built
/// before its user and installed into the sandbox that builds it (the
/// scheduler waits for every edge; `PortTree::install_set` installs every
/// direct dependency); they differ in whether the dependency is needed
/// wherever its user is installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Need {
    /// Only to build its user (bundled `FETCH`, `EXTRACT`, `PATCH`,
    /// `BUILD_DEPENDS`).
    Build,
    /// To build its user and to run it: it comes along wherever the user is
    /// installed (bundled `LIB_DEPENDS`, `RUN_DEPENDS`).
    BuildAndRun,
    /// To build its user and perhaps to run it: the framework does not say
    /// (pkgsrc's `ALL_DEPENDS` joins its `DEPENDS`, `BUILD_DEPENDS` and
    /// `TOOL_DEPENDS`). Treated as [`Need::BuildAndRun`], so a sandbox may get
    /// a package it does not need but never misses one.
    BuildPerhapsRun,
}

impl Need {
    /// Whether a sandbox that installs the user installs this dependency
    /// too: what filling a sandbox follows transitively.
    pub fn installed_with_its_user(self) -> bool {
        match self {
            Need::Build => false,
            Need::BuildAndRun | Need::BuildPerhapsRun => true,
        }
    }
}

/// One dependency edge as seen from one end: the node at the other end and the
/// kind of the dependency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Edge {
    pub to: NodeId,
    pub kind: &'static EdgeKind,
}

/// A directed dependency graph: `dependent -> dependency`, labelled by kind.
///
/// Ids passed to methods must come from [`Graph::add_node`] on the same graph;
/// an id out of range is a programming error and panics.
#[derive(Debug, Clone, Default)]
pub struct Graph {
    labels: Vec<String>,
    /// `deps[n]`: edges from `n` to what it depends on.
    deps: Vec<Vec<Edge>>,
    /// `rdeps[n]`: edges from `n` to what depends on it (same kinds).
    rdeps: Vec<Vec<Edge>>,
    /// Every `(dependent, dependency, kind)` already present, to drop duplicates
    /// in O(1) even when one node has tens of thousands of edges.
    edge_set: HashSet<(NodeId, NodeId, &'static EdgeKind)>,
}

/// A dependency loop: `path[i].0` depends on `path[i + 1].0` (wrapping around to
/// `path[0]`) through a dependency of kind `path[i].1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cycle {
    pub path: Vec<(NodeId, &'static EdgeKind)>,
}

impl Cycle {
    /// `a -[BUILD_DEPENDS]-> b -[RUN_DEPENDS]-> a`, starting and ending at the
    /// alphabetically first label in the loop.
    pub fn display(&self, g: &Graph) -> String {
        let Some(start) =
            (0..self.path.len()).min_by(|&a, &b| g.label(self.path[a].0).cmp(g.label(self.path[b].0)).then(a.cmp(&b)))
        else {
            return String::new();
        };
        let mut text = String::new();
        for step in 0..self.path.len() {
            let (node, kind) = self.path[(start + step) % self.path.len()];
            text.push_str(g.label(node));
            text.push_str(&format!(" -[{kind}]-> "));
        }
        text.push_str(g.label(self.path[start].0));
        text
    }

    /// The nodes of the loop, in path order.
    pub fn nodes(&self) -> impl Iterator<Item = NodeId> + '_ {
        self.path.iter().map(|&(node, _)| node)
    }
}

/// A graph of build edges for unit tests; `edges`: (dependent, dependency).
#[cfg(test)]
pub(crate) fn test_graph(labels: &[&str], edges: &[(usize, usize)]) -> Graph {
    let mut g = Graph::new();
    for label in labels {
        g.add_node(*label);
    }
    for &(from, to) in edges {
        g.add_edge(from, to, crate::framework::bundled::edge_kind(crate::ports::DepKind::Build));
    }
    g
}

/// A tiny deterministic LCG (Knuth's MMIX constants), for the random graphs
/// of unit tests.
#[cfg(test)]
pub(crate) struct Lcg(pub u64);

#[cfg(test)]
impl Lcg {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    pub fn below(&mut self, bound: usize) -> usize {
        (self.next() % bound as u64) as usize
    }
}

impl Graph {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn with_capacity(nodes: usize) -> Self {
        Graph {
            labels: Vec::with_capacity(nodes),
            deps: Vec::with_capacity(nodes),
            rdeps: Vec::with_capacity(nodes),
            edge_set: HashSet::new(),
        }
    }

    pub fn add_node(&mut self, label: impl Into<String>) -> NodeId {
        self.labels.push(label.into());
        self.deps.push(Vec::new());
        self.rdeps.push(Vec::new());
        self.labels.len() - 1
    }

    /// Records that `dependent` needs `dependency` through `kind`. The same pair
    /// may be added with several kinds; each kind is kept once. A self-edge is
    /// kept too: it is a cycle and [`Graph::find_cycles`] reports it.
    pub fn add_edge(&mut self, dependent: NodeId, dependency: NodeId, kind: &'static EdgeKind) {
        assert!(
            dependent < self.len() && dependency < self.len(),
            "add_edge({dependent}, {dependency}) on a graph of {} nodes",
            self.len()
        );
        if !self.edge_set.insert((dependent, dependency, kind)) {
            return;
        }
        self.deps[dependent].push(Edge { to: dependency, kind });
        self.rdeps[dependency].push(Edge { to: dependent, kind });
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Number of distinct `(dependent, dependency, kind)` edges.
    pub fn edge_count(&self) -> usize {
        self.edge_set.len()
    }

    pub fn label(&self, n: NodeId) -> &str {
        &self.labels[n]
    }

    /// What `n` depends on.
    pub fn dependencies(&self, n: NodeId) -> &[Edge] {
        &self.deps[n]
    }

    /// What depends on `n` (`Edge::to` is the dependent).
    pub fn dependents(&self, n: NodeId) -> &[Edge] {
        &self.rdeps[n]
    }

    /// Every dependency loop: one concrete, shortest loop for each strongly
    /// connected component with more than one node or with a self-edge. Each
    /// loop starts at its component's alphabetically first node (equal labels:
    /// lowest id), and the list is sorted by that label.
    pub fn find_cycles(&self) -> Vec<Cycle> {
        let components = self.components();
        let rank = self.label_ranks();
        let mut cycles: Vec<(u32, Cycle)> = Vec::new();
        for c in 0..components.count() {
            let members = components.members(c);
            let cyclic = members.len() > 1 || self.has_self_edge(members[0]);
            if !cyclic {
                continue;
            }
            let start = members.iter().copied().min_by_key(|&m| rank[m]).unwrap_or(members[0]);
            let cycle = self.shortest_loop_within(start, &components, &rank);
            cycles.push((rank[start], cycle));
        }
        cycles.sort_by_key(|&(start_rank, _)| start_rank);
        cycles.into_iter().map(|(_, cycle)| cycle).collect()
    }

    /// All nodes, dependencies before dependents; among nodes ready at the same
    /// time the alphabetically first comes first. On a cyclic graph, the first
    /// loop [`Graph::find_cycles`] reports.
    pub fn topo_order(&self) -> Result<Vec<NodeId>, Cycle> {
        let mut queue = DependencyQueue::new(self, &vec![true; self.len()], Rank::by_label(self));
        let order = drain_in_order(&mut queue);
        if order.len() == self.len() {
            return Ok(order);
        }
        let cycle = self.find_cycles().into_iter().next();
        Err(cycle.expect("Kahn's algorithm stalled, so the graph has a cycle"))
    }

    /// `roots` plus everything they transitively depend on through edges whose
    /// kind passes `follow`, sorted by id, without duplicates.
    pub fn closure(&self, roots: &[NodeId], follow: impl Fn(&EdgeKind) -> bool) -> Vec<NodeId> {
        let mut seen = vec![false; self.len()];
        let mut stack: Vec<NodeId> = Vec::new();
        for &root in roots {
            if !seen[root] {
                seen[root] = true;
                stack.push(root);
            }
        }
        while let Some(n) = stack.pop() {
            for edge in self.deps[n].iter().filter(|e| follow(e.kind)) {
                if !seen[edge.to] {
                    seen[edge.to] = true;
                    stack.push(edge.to);
                }
            }
        }
        (0..self.len()).filter(|&n| seen[n]).collect()
    }

    /// Every node that transitively depends on a seed (seeds themselves
    /// excluded), as `(node, via)` where `via` is the neighbour it was reached
    /// through: a seed or an earlier entry. Breadth-first, so entries come in
    /// order of distance and each via chain is a shortest path to a seed.
    /// Use [`via_chain`] or [`ViaIndex`] to walk back to the seed.
    pub fn dependents_closure(&self, seeds: &[NodeId]) -> Vec<(NodeId, NodeId)> {
        let mut seen = vec![false; self.len()];
        let mut queue: VecDeque<NodeId> = VecDeque::new();
        for &seed in seeds {
            if !seen[seed] {
                seen[seed] = true;
                queue.push_back(seed);
            }
        }
        let mut reached = Vec::new();
        while let Some(n) = queue.pop_front() {
            for edge in &self.rdeps[n] {
                if !seen[edge.to] {
                    seen[edge.to] = true;
                    reached.push((edge.to, n));
                    queue.push_back(edge.to);
                }
            }
        }
        reached
    }

    /// For each node, the exact number of other nodes that transitively depend
    /// on it.
    ///
    /// Meant for a DAG, but defined on any graph: members of a dependency loop
    /// count each other (they do depend on each other), never themselves.
    /// Works on the component condensation with bitset rows over a block of
    /// node columns at a time, so memory stays within about 32 MiB; see
    /// [`DependentCounter`] for how rows are shared and recycled.
    pub fn transitive_dependents_counts(&self) -> Vec<u32> {
        DependentCounter::new(self, None).count()
    }

    /// Longest weighted path from each node to the end of the graph:
    /// `prio(n) = weights[n] + max(prio(d) for dependents d)`, or just
    /// `weights[n]` for a node nothing depends on.
    ///
    /// Edges inside a dependency loop are ignored (a loop has no longest path);
    /// edges leaving it count as usual.
    pub fn priorities(&self, weights: &[f64]) -> Vec<f64> {
        assert_eq!(weights.len(), self.len(), "one weight per node");
        let components = self.components();
        let mut priority = vec![0.0; self.len()];
        // Tarjan emits dependencies first, so walking backwards visits every
        // dependent component before the components it depends on.
        for c in (0..components.count()).rev() {
            for &n in components.members(c) {
                let longest_after = self.rdeps[n]
                    .iter()
                    .filter(|e| components.of[e.to] != c)
                    .map(|e| priority[e.to])
                    .fold(None, |best: Option<f64>, p| Some(best.map_or(p, |b| b.max(p))));
                priority[n] = weights[n] + longest_after.unwrap_or(0.0);
            }
        }
        priority
    }

    /// The order one worker would build the nodes of `subset` in: a node becomes
    /// ready once its dependencies inside the subset are built, and the ready
    /// node with the highest `priority`, then the most `tiebreak_dependents`,
    /// then the alphabetically first label goes next. Nodes held back by a
    /// dependency loop inside the subset never become ready and are left out,
    /// so a result shorter than the subset means a loop.
    pub fn schedule_order(&self, subset: &[bool], priority: &[f64], tiebreak_dependents: &[u32]) -> Vec<NodeId> {
        assert_eq!(subset.len(), self.len(), "one subset flag per node");
        let order = CriticalPath::new(self, priority.to_vec(), tiebreak_dependents.to_vec());
        drain_in_order(&mut DependencyQueue::new(self, subset, order))
    }

    /// The set `nodes` in dependency order, ties by label: what
    /// [`Graph::schedule_order`] gives for that subset with no priorities,
    /// in time proportional to the subset rather than the whole graph (it
    /// runs once per build start, on the coordinator).
    pub fn dependency_order(&self, nodes: &[NodeId]) -> Vec<NodeId> {
        let members: HashSet<NodeId> = nodes.iter().copied().collect();
        let mut missing: HashMap<NodeId, usize> =
            members.iter().map(|&n| (n, self.deps[n].iter().filter(|e| members.contains(&e.to)).count())).collect();
        let entry = |n: NodeId| Reverse((self.labels[n].as_str(), n));
        let mut ready: BinaryHeap<Reverse<(&str, NodeId)>> =
            missing.iter().filter(|(_, &m)| m == 0).map(|(&n, _)| entry(n)).collect();
        let mut order = Vec::with_capacity(members.len());
        while let Some(Reverse((_, n))) = ready.pop() {
            order.push(n);
            for edge in &self.rdeps[n] {
                if let Some(m) = missing.get_mut(&edge.to) {
                    *m -= 1;
                    if *m == 0 {
                        ready.push(entry(edge.to));
                    }
                }
            }
        }
        order
    }

    /// An empty ready queue ordered as in [`Graph::schedule_order`].
    pub fn ready_queue(&self, priority: Vec<f64>, dependents: Vec<u32>) -> ReadyQueue {
        ReadySet::new(CriticalPath::new(self, priority, dependents), self.len())
    }

    fn has_self_edge(&self, n: NodeId) -> bool {
        self.deps[n].iter().any(|e| e.to == n)
    }

    /// Each node's position in label order (equal labels: by id).
    pub(crate) fn label_ranks(&self) -> Vec<u32> {
        let mut by_label: Vec<NodeId> = (0..self.len()).collect();
        by_label.sort_by(|&a, &b| self.labels[a].cmp(&self.labels[b]));
        let mut rank = vec![0; self.len()];
        for (position, &n) in by_label.iter().enumerate() {
            rank[n] = position as u32;
        }
        rank
    }

    /// Breadth-first search from `start` back to itself without leaving its
    /// component; edges are tried in label order, then kind order, so the loop
    /// found is the same on every run.
    fn shortest_loop_within(&self, start: NodeId, components: &Components, rank: &[u32]) -> Cycle {
        let component = components.of[start];
        let mut reached_by: HashMap<NodeId, (NodeId, &'static EdgeKind)> = HashMap::new();
        let mut queue = VecDeque::from([start]);
        while let Some(n) = queue.pop_front() {
            let mut edges: Vec<Edge> =
                self.deps[n].iter().copied().filter(|e| components.of[e.to] == component).collect();
            edges.sort_by_key(|e| (rank[e.to], e.kind));
            for edge in edges {
                if edge.to == start {
                    return Cycle { path: loop_path(start, n, edge.kind, &reached_by) };
                }
                if let std::collections::hash_map::Entry::Vacant(slot) = reached_by.entry(edge.to) {
                    slot.insert((n, edge.kind));
                    queue.push_back(edge.to);
                }
            }
        }
        unreachable!("every node of a cyclic component lies on a loop through any other member")
    }

    /// Strongly connected components by an iterative Tarjan pass over
    /// dependency edges. Components come out dependencies first: a component
    /// is emitted only after every component it depends on.
    fn components(&self) -> Components {
        let n = self.len();
        let mut walk = TarjanWalk::new(n);
        let mut components = Components { members: Vec::with_capacity(n), starts: vec![0], of: vec![0; n] };
        for root in 0..n {
            if walk.seen(root) {
                continue;
            }
            walk.open(root);
            while let Some(&(v, next_edge)) = walk.frames.last() {
                if let Some(edge) = self.deps[v].get(next_edge) {
                    walk.advance_top();
                    walk.follow(v, edge.to);
                    continue;
                }
                walk.frames.pop();
                if let Some(&(parent, _)) = walk.frames.last() {
                    walk.low[parent] = walk.low[parent].min(walk.low[v]);
                }
                if walk.low[v] == walk.index[v] {
                    components.close_from_stack(v, &mut walk.stack, &mut walk.on_stack);
                }
            }
        }
        components
    }
}

/// The path of the loop `start -> … -> last -> start`, rebuilt from the BFS
/// parent links.
fn loop_path(
    start: NodeId,
    last: NodeId,
    closing_kind: &'static EdgeKind,
    reached_by: &HashMap<NodeId, (NodeId, &'static EdgeKind)>,
) -> Vec<(NodeId, &'static EdgeKind)> {
    let mut path = vec![(last, closing_kind)];
    let mut node = last;
    while node != start {
        let Some(&(parent, kind)) = reached_by.get(&node) else { break };
        path.push((parent, kind));
        node = parent;
    }
    path.reverse();
    path
}

/// Width of a bitset column block, in 64-bit words: all nodes at once if the
/// rows alive at the same time fit the memory budget, narrower otherwise.
fn block_words_for(live_rows: usize, nodes: usize) -> usize {
    const BUDGET_WORDS: usize = (32 << 20) / 8;
    let needed = nodes.div_ceil(64).max(1);
    (BUDGET_WORDS / live_rows.max(1)).clamp(1, needed)
}

/// The explicit-stack state of Tarjan's algorithm: `frames` replaces the call
/// stack of the textbook recursive version, holding each open node and the
/// index of its next dependency edge to look at.
struct TarjanWalk {
    index: Vec<usize>,
    low: Vec<usize>,
    on_stack: Vec<bool>,
    stack: Vec<NodeId>,
    frames: Vec<(NodeId, usize)>,
    next_index: usize,
}

impl TarjanWalk {
    const UNSEEN: usize = usize::MAX;

    fn new(nodes: usize) -> Self {
        TarjanWalk {
            index: vec![Self::UNSEEN; nodes],
            low: vec![0; nodes],
            on_stack: vec![false; nodes],
            stack: Vec::new(),
            frames: Vec::new(),
            next_index: 0,
        }
    }

    fn seen(&self, v: NodeId) -> bool {
        self.index[v] != Self::UNSEEN
    }

    fn open(&mut self, v: NodeId) {
        self.index[v] = self.next_index;
        self.low[v] = self.next_index;
        self.next_index += 1;
        self.on_stack[v] = true;
        self.stack.push(v);
        self.frames.push((v, 0));
    }

    fn advance_top(&mut self) {
        if let Some(top) = self.frames.last_mut() {
            top.1 += 1;
        }
    }

    /// Handles the edge `v -> w`: descend into a new node, or note a back edge.
    fn follow(&mut self, v: NodeId, w: NodeId) {
        if !self.seen(w) {
            self.open(w);
        } else if self.on_stack[w] {
            self.low[v] = self.low[v].min(self.index[w]);
        }
    }
}

/// Strongly connected components in compressed form: the members of component
/// `c` are `members[starts[c]..starts[c + 1]]`; `of[n]` is `n`'s component.
struct Components {
    members: Vec<NodeId>,
    starts: Vec<usize>,
    of: Vec<usize>,
}

impl Components {
    fn count(&self) -> usize {
        self.starts.len() - 1
    }

    fn members(&self, c: usize) -> &[NodeId] {
        &self.members[self.starts[c]..self.starts[c + 1]]
    }

    /// Pops Tarjan's stack down to and including `root` as a new component.
    fn close_from_stack(&mut self, root: NodeId, stack: &mut Vec<NodeId>, on_stack: &mut [bool]) {
        let id = self.count();
        while let Some(member) = stack.pop() {
            on_stack[member] = false;
            self.of[member] = id;
            self.members.push(member);
            if member == root {
                break;
            }
        }
        self.starts.push(self.members.len());
    }
}

/// Rows of `usize` in compressed form: row `i` is `items[starts[i]..starts[i + 1]]`.
struct Csr {
    starts: Vec<usize>,
    items: Vec<usize>,
}

impl Csr {
    fn row(&self, i: usize) -> &[usize] {
        &self.items[self.starts[i]..self.starts[i + 1]]
    }
}

/// For each component, the distinct other components that directly depend on it.
fn dependent_components(graph: &Graph, components: &Components) -> Csr {
    let mut last_seen_from = vec![usize::MAX; components.count()];
    let mut csr = Csr { starts: vec![0], items: Vec::new() };
    for c in 0..components.count() {
        for &member in components.members(c) {
            for edge in graph.dependents(member) {
                let d = components.of[edge.to];
                if d != c && last_seen_from[d] != c {
                    last_seen_from[d] = c;
                    csr.items.push(d);
                }
            }
        }
        csr.starts.push(csr.items.len());
    }
    csr
}

/// Which bitset row each component uses, computed once and replayed for every
/// column block.
///
/// Components are processed dependents first (descending Tarjan index). A
/// component's row is read by the components it depends on, so it can be
/// recycled after the last of them. When a component is that last reader of
/// one of its dependents' rows, it *inherits* the row and adds to it in place
/// instead of copying it: a chain then costs O(1) per node instead of a row
/// copy, and the number of rows alive at once (`slots`) is usually far below
/// the number of components.
struct RowPlan {
    slot: Vec<usize>,
    inherits: Vec<bool>,
    /// The component depends on nothing, so no other row is built from its
    /// row: only its popcount matters.
    unread: Vec<bool>,
    /// Dependent components whose rows are merged in, besides an inherited one.
    merge_spans: Vec<(usize, usize)>,
    merge_items: Vec<usize>,
    slots: usize,
}

impl RowPlan {
    fn new(graph: &Graph, components: &Components) -> Self {
        let count = components.count();
        let dependents = dependent_components(graph, components);
        let last_reader = last_readers(&dependents, count);
        let mut plan = RowPlan {
            slot: vec![0; count],
            inherits: vec![false; count],
            unread: last_reader.iter().map(Option::is_none).collect(),
            merge_spans: vec![(0, 0); count],
            merge_items: Vec::new(),
            slots: 0,
        };
        let mut free_slots: Vec<usize> = Vec::new();
        for c in (0..count).rev() {
            let is_last_reader = |d: usize| last_reader[d] == Some(c);
            let heir_of = dependents.row(c).iter().copied().find(|&d| is_last_reader(d));
            plan.slot[c] = match heir_of {
                Some(d) => plan.slot[d],
                None => free_slots.pop().unwrap_or_else(|| plan.new_slot()),
            };
            plan.inherits[c] = heir_of.is_some();
            let first = plan.merge_items.len();
            for &d in dependents.row(c).iter().filter(|&&d| Some(d) != heir_of) {
                plan.merge_items.push(d);
                if is_last_reader(d) {
                    free_slots.push(plan.slot[d]);
                }
            }
            plan.merge_spans[c] = (first, plan.merge_items.len());
            if last_reader[c].is_none() {
                free_slots.push(plan.slot[c]);
            }
        }
        plan
    }

    fn merges(&self, c: usize) -> &[usize] {
        let (first, end) = self.merge_spans[c];
        &self.merge_items[first..end]
    }

    fn new_slot(&mut self) -> usize {
        self.slots += 1;
        self.slots - 1
    }
}

/// For each component, the last component (in dependents-first processing
/// order, i.e. the lowest index) that reads its row; `None` if nothing does.
fn last_readers(dependents: &Csr, count: usize) -> Vec<Option<usize>> {
    let mut last_reader: Vec<Option<usize>> = vec![None; count];
    for reader in (0..count).rev() {
        for &d in dependents.row(reader) {
            last_reader[d] = Some(reader);
        }
    }
    last_reader
}

/// The part of a bitset row that may be non-zero: words `lo..hi` (outside that
/// range the stored words are stale and count as zero), and its popcount.
#[derive(Clone, Copy, Default)]
struct RowExtent {
    lo: usize,
    hi: usize,
    ones: u32,
}

/// Exact transitive dependent counts: row(c) = the nodes that depend on
/// component `c`, plus `c`'s own members, as a bitset over a block of node
/// columns; row(c) = members(c) ∪ rows of `c`'s direct dependents. Columns are
/// numbered in processing order, so a row's set bits cluster in a few words,
/// and rows track that extent so sparse rows cost little to clear and merge.
struct DependentCounter<'g> {
    graph: &'g Graph,
    components: Components,
    plan: RowPlan,
    column: Vec<usize>,
    words: usize,
    bits: Vec<u64>,
    extents: Vec<RowExtent>,
}

impl<'g> DependentCounter<'g> {
    /// `block_words` forces the column block width (tests); `None` picks the
    /// widest one within the memory budget.
    fn new(graph: &'g Graph, block_words: Option<usize>) -> Self {
        let components = graph.components();
        let plan = RowPlan::new(graph, &components);
        let words = block_words.unwrap_or_else(|| block_words_for(plan.slots, graph.len())).max(1);
        let column = columns_in_processing_order(&components);
        DependentCounter {
            graph,
            bits: vec![0; plan.slots * words],
            extents: vec![RowExtent::default(); plan.slots],
            components,
            plan,
            column,
            words,
        }
    }

    fn count(mut self) -> Vec<u32> {
        let mut counts = vec![0u32; self.graph.len()];
        for block_start in (0..self.graph.len()).step_by(self.words * 64) {
            self.count_block(block_start, &mut counts);
        }
        // Each row includes the node itself; it is not its own dependent.
        counts.iter_mut().for_each(|count| *count = count.saturating_sub(1));
        counts
    }

    fn count_block(&mut self, block_start: usize, counts: &mut [u32]) {
        for c in (0..self.components.count()).rev() {
            let ones = self.fill_row(c, block_start);
            for &member in self.components.members(c) {
                counts[member] += ones;
            }
        }
    }

    /// Row `c`'s popcount in the block starting at column `block_start`,
    /// building the row itself only if a later component reads it or the
    /// count needs a real union.
    fn fill_row(&mut self, c: usize, block_start: usize) -> u32 {
        let own_bits = self.own_columns_in_block(c, block_start).count() as u32;
        // A component's own members are never in its dependents' rows, so with
        // at most one non-empty source the count is a plain sum.
        let single_source = self.single_source_ones(c);
        if let (true, Some(ones)) = (self.plan.unread[c], single_source) {
            return ones + own_bits;
        }
        self.build_row(c, block_start);
        let slot = self.plan.slot[c];
        let ones = match single_source {
            Some(ones) => ones + own_bits,
            None => self.popcount(slot),
        };
        self.extents[slot].ones = ones;
        ones
    }

    /// The popcount of the only non-empty row feeding row `c` (inherited or
    /// merged; 0 if none), or `None` if several do.
    fn single_source_ones(&self, c: usize) -> Option<u32> {
        let inherited = if self.plan.inherits[c] { self.extents[self.plan.slot[c]].ones } else { 0 };
        let mut sources = usize::from(inherited > 0);
        let mut ones = inherited;
        for &d in self.plan.merges(c) {
            let merged = self.extents[self.plan.slot[d]].ones;
            if merged > 0 {
                sources += 1;
                ones = merged;
            }
            if sources > 1 {
                return None;
            }
        }
        Some(ones)
    }

    fn build_row(&mut self, c: usize, block_start: usize) {
        let slot = self.plan.slot[c];
        if !self.plan.inherits[c] {
            self.extents[slot] = RowExtent::default();
        }
        for i in 0..self.plan.merges(c).len() {
            let source = self.plan.slot[self.plan.merges(c)[i]];
            if self.extents[source].ones > 0 {
                self.merge_row(slot, source);
            }
        }
        for i in self.components.starts[c]..self.components.starts[c + 1] {
            let column = self.column[self.components.members[i]];
            if let Some(bit) = column.checked_sub(block_start).filter(|&bit| bit < self.words * 64) {
                self.set_bit(slot, bit);
            }
        }
    }

    fn own_columns_in_block(&self, c: usize, block_start: usize) -> impl Iterator<Item = usize> + '_ {
        let block = block_start..block_start + self.words * 64;
        self.components.members(c).iter().map(|&m| self.column[m]).filter(move |column| block.contains(column))
    }

    fn merge_row(&mut self, target: usize, source: usize) {
        let RowExtent { lo, hi, .. } = self.extents[source];
        self.widen(target, lo, hi);
        let (target_row, source_row) = two_rows(&mut self.bits, self.words, target, source);
        for (t, s) in target_row[lo..hi].iter_mut().zip(&source_row[lo..hi]) {
            *t |= *s;
        }
    }

    fn set_bit(&mut self, slot: usize, bit: usize) {
        let word = bit / 64;
        self.widen(slot, word, word + 1);
        self.bits[slot * self.words + word] |= 1 << (bit % 64);
    }

    /// Grows the valid extent of `slot` to cover words `lo..hi`, zeroing the
    /// words that become valid.
    fn widen(&mut self, slot: usize, lo: usize, hi: usize) {
        let base = slot * self.words;
        let extent = &mut self.extents[slot];
        if extent.lo == extent.hi {
            self.bits[base + lo..base + hi].fill(0);
            (extent.lo, extent.hi) = (lo, hi);
            return;
        }
        if lo < extent.lo {
            self.bits[base + lo..base + extent.lo].fill(0);
            extent.lo = lo;
        }
        if hi > extent.hi {
            self.bits[base + extent.hi..base + hi].fill(0);
            extent.hi = hi;
        }
    }

    fn popcount(&self, slot: usize) -> u32 {
        let RowExtent { lo, hi, .. } = self.extents[slot];
        let base = slot * self.words;
        self.bits[base + lo..base + hi].iter().map(|w| w.count_ones()).sum()
    }
}

/// Row `target` mutably and row `source` shared, out of one flat bit array
/// (`target != source`).
fn two_rows(bits: &mut [u64], words: usize, target: usize, source: usize) -> (&mut [u64], &[u64]) {
    if target < source {
        let (low, high) = bits.split_at_mut(source * words);
        (&mut low[target * words..(target + 1) * words], &high[..words])
    } else {
        let (low, high) = bits.split_at_mut(target * words);
        (&mut high[..words], &low[source * words..(source + 1) * words])
    }
}

/// Node columns numbered in dependents-first order, so that the nodes a row
/// contains (all processed earlier) sit at low, nearby columns.
fn columns_in_processing_order(components: &Components) -> Vec<usize> {
    let mut column = vec![0; components.of.len()];
    let mut next = 0;
    for c in (0..components.count()).rev() {
        for &member in components.members(c) {
            column[member] = next;
            next += 1;
        }
    }
    column
}

/// The ready queue of list scheduling in the build scheduler's order: the
/// ready set of [`DependencyQueue`] under [`CriticalPath`], until the
/// scheduler holds the whole queue.
pub type ReadyQueue = ReadySet<CriticalPath>;

/// Dequeues and finishes every node in turn: the order one worker builds in.
fn drain_in_order<O: Order>(queue: &mut DependencyQueue<'_, O>) -> Vec<NodeId> {
    let mut order = Vec::new();
    while let Some(next) = queue.dequeue() {
        order.push(next);
        queue.finish(next);
    }
    order
}

/// Lookup over a [`Graph::dependents_closure`] result, for walking many via
/// chains without rescanning the result each time.
pub struct ViaIndex {
    via: HashMap<NodeId, NodeId>,
}

impl ViaIndex {
    pub fn new(reached: &[(NodeId, NodeId)]) -> Self {
        ViaIndex { via: reached.iter().copied().collect() }
    }

    /// `[node, via, via's via, …, seed]`; just `[node]` for a seed or a node
    /// that was not reached.
    pub fn chain(&self, node: NodeId) -> Vec<NodeId> {
        let mut chain = vec![node];
        let mut current = node;
        // A well-formed result is a BFS tree; the bound only guards hand-made input.
        while let Some(&via) = self.via.get(&current) {
            if chain.len() > self.via.len() {
                break;
            }
            chain.push(via);
            current = via;
        }
        chain
    }

    /// The seed `node` was reached from (itself if it was not reached).
    pub fn seed(&self, node: NodeId) -> NodeId {
        self.chain(node).last().copied().unwrap_or(node)
    }
}

/// `[node, via, …, seed]` in a [`Graph::dependents_closure`] result. Builds an
/// index on each call; use [`ViaIndex`] for many lookups.
pub fn via_chain(reached: &[(NodeId, NodeId)], node: NodeId) -> Vec<NodeId> {
    ViaIndex::new(reached).chain(node)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::bundled::edge_kind as kind;
    use crate::ports::DepKind::{self, *};

    /// Edges in the bundled framework's kinds, the ones its reports print.
    fn graph_of(labels: &[&str], edges: &[(usize, usize, DepKind)]) -> Graph {
        let mut g = Graph::new();
        for label in labels {
            g.add_node(*label);
        }
        for &(from, to, dep_kind) in edges {
            g.add_edge(from, to, kind(dep_kind));
        }
        g
    }

    fn runtime(kind: &EdgeKind) -> bool {
        kind.need.installed_with_its_user()
    }

    #[test]
    fn the_ready_queue_pops_critical_path_then_dependents_then_label() {
        let g = graph_of(&["a/short", "z/long", "b/many", "a/alpha"], &[]);
        let mut ready = g.ready_queue(vec![10.0, 50.0, 10.0, 10.0], vec![0, 1, 5, 0]);
        for n in 0..4 {
            ready.push(n);
        }
        assert_eq!(ready.len(), 4);
        let order: Vec<&str> = std::iter::from_fn(|| ready.pop()).map(|n| g.label(n)).collect();
        assert_eq!(order, ["z/long", "b/many", "a/alpha", "a/short"]);
        assert!(ready.is_empty());
    }

    #[test]
    fn dependency_order_of_a_subset_matches_schedule_order_without_priorities() {
        let g = random_dag(2_000, 3, 7);
        let mut rng = Lcg(11);
        for _ in 0..20 {
            let roots: Vec<NodeId> = (0..3).map(|_| rng.below(g.len())).collect();
            let subset_nodes = g.closure(&roots, |_| true);
            let mut subset = vec![false; g.len()];
            for &n in &subset_nodes {
                subset[n] = true;
            }
            let expected = g.schedule_order(&subset, &vec![0.0; g.len()], &vec![0; g.len()]);
            assert_eq!(g.dependency_order(&subset_nodes), expected);
        }
    }

    /// Random DAG: nodes only depend on lower ids, labels shuffled against ids.
    fn random_dag(nodes: usize, edges_per_node: usize, seed: u64) -> Graph {
        let mut rng = Lcg(seed);
        let mut g = Graph::with_capacity(nodes);
        for n in 0..nodes {
            g.add_node(format!("cat/p{:08}", rng.next() % 100_000_000 * 16 + n as u64 % 16));
        }
        for n in 1..nodes {
            for _ in 0..rng.below(edges_per_node * 2 + 1) {
                let window = n.min(64 + rng.below(n));
                g.add_edge(n, n - 1 - rng.below(window), kind(DepKind::ALL[rng.below(6)]));
            }
        }
        g
    }

    fn brute_force_dependents(g: &Graph, n: NodeId) -> u32 {
        let mut seen = vec![false; g.len()];
        let mut stack = vec![n];
        let mut count = 0;
        while let Some(v) = stack.pop() {
            for e in g.dependents(v) {
                if !seen[e.to] {
                    seen[e.to] = true;
                    count += u32::from(e.to != n);
                    stack.push(e.to);
                }
            }
        }
        count
    }

    fn assert_respects_edges(g: &Graph, order: &[NodeId]) {
        let mut position = vec![usize::MAX; g.len()];
        for (i, &n) in order.iter().enumerate() {
            position[n] = i;
        }
        for n in 0..g.len() {
            if position[n] == usize::MAX {
                continue;
            }
            for e in g.dependencies(n) {
                assert!(position[e.to] < position[n], "{} before {}", g.label(e.to), g.label(n));
            }
        }
    }

    fn labels_of(g: &Graph, nodes: &[NodeId]) -> Vec<String> {
        nodes.iter().map(|&n| g.label(n).to_string()).collect()
    }

    #[test]
    fn self_loop_is_a_cycle() {
        let g = graph_of(&["bad/self"], &[(0, 0, Patch)]);
        let cycles = g.find_cycles();
        assert_eq!(cycles.len(), 1);
        assert_eq!(cycles[0].path, vec![(0, kind(Patch))]);
        assert_eq!(cycles[0].display(&g), "bad/self -[PATCH_DEPENDS]-> bad/self");
        assert!(g.topo_order().is_err());
    }

    #[test]
    fn two_node_cycle_starts_at_smallest_label() {
        let g = graph_of(&["bad/z", "bad/a"], &[(0, 1, Run), (1, 0, Build)]);
        let cycles = g.find_cycles();
        assert_eq!(cycles.len(), 1);
        assert_eq!(cycles[0].path, vec![(1, kind(Build)), (0, kind(Run))]);
        assert_eq!(cycles[0].display(&g), "bad/a -[BUILD_DEPENDS]-> bad/z -[RUN_DEPENDS]-> bad/a");
    }

    #[test]
    fn three_node_cycle_with_kinds() {
        let g = graph_of(
            &["bad/cycle-c", "bad/cycle-b", "bad/cycle-a", "ok/leaf"],
            &[(2, 1, Build), (1, 0, Run), (0, 2, Lib), (0, 3, Build)],
        );
        let cycles = g.find_cycles();
        assert_eq!(cycles.len(), 1);
        assert_eq!(cycles[0].path, vec![(2, kind(Build)), (1, kind(Run)), (0, kind(Lib))]);
        assert_eq!(
            cycles[0].display(&g),
            "bad/cycle-a -[BUILD_DEPENDS]-> bad/cycle-b -[RUN_DEPENDS]-> bad/cycle-c -[LIB_DEPENDS]-> bad/cycle-a"
        );
        assert_eq!(g.topo_order().unwrap_err(), cycles[0]);
    }

    #[test]
    fn display_rotates_to_smallest_label() {
        let g = graph_of(&["x/b", "x/a"], &[]);
        let cycle = Cycle { path: vec![(0, kind(Fetch)), (1, kind(Extract))] };
        assert_eq!(cycle.display(&g), "x/a -[EXTRACT_DEPENDS]-> x/b -[FETCH_DEPENDS]-> x/a");
    }

    #[test]
    fn shortest_loop_is_reported_inside_a_large_component() {
        // a -> b -> c -> d -> a and the shortcut c -> a: the loop through a is a, b, c.
        let g = graph_of(
            &["s/a", "s/b", "s/c", "s/d"],
            &[(0, 1, Build), (1, 2, Build), (2, 3, Build), (3, 0, Build), (2, 0, Run)],
        );
        let cycles = g.find_cycles();
        assert_eq!(cycles.len(), 1);
        assert_eq!(cycles[0].display(&g), "s/a -[BUILD_DEPENDS]-> s/b -[BUILD_DEPENDS]-> s/c -[RUN_DEPENDS]-> s/a");
    }

    #[test]
    fn disjoint_cycles_are_all_found_and_sorted() {
        let g = graph_of(
            &["z/one", "z/two", "a/one", "a/two", "m/free"],
            &[(0, 1, Build), (1, 0, Build), (2, 3, Run), (3, 2, Lib), (4, 0, Build), (4, 4, Fetch)],
        );
        let shown: Vec<String> = g.find_cycles().iter().map(|c| c.display(&g)).collect();
        assert_eq!(
            shown,
            vec![
                "a/one -[RUN_DEPENDS]-> a/two -[LIB_DEPENDS]-> a/one",
                "m/free -[FETCH_DEPENDS]-> m/free",
                "z/one -[BUILD_DEPENDS]-> z/two -[BUILD_DEPENDS]-> z/one",
            ]
        );
    }

    #[test]
    fn dag_has_no_cycles() {
        let g = random_dag(500, 3, 7);
        assert!(g.find_cycles().is_empty());
        assert!(graph_of(&[], &[]).find_cycles().is_empty());
    }

    #[test]
    fn an_edge_is_two_words() {
        assert_eq!(std::mem::size_of::<Edge>(), 2 * std::mem::size_of::<usize>());
    }

    #[test]
    fn duplicate_edges_are_dropped_but_kinds_kept() {
        let g = graph_of(&["a/a", "a/b"], &[(0, 1, Build), (0, 1, Build), (0, 1, Run)]);
        assert_eq!(g.dependencies(0), &[Edge { to: 1, kind: kind(Build) }, Edge { to: 1, kind: kind(Run) }]);
        assert_eq!(g.dependents(1), &[Edge { to: 0, kind: kind(Build) }, Edge { to: 0, kind: kind(Run) }]);
        assert_eq!(g.edge_count(), 2);
        assert_eq!(g.topo_order().unwrap(), vec![1, 0]);
    }

    #[test]
    fn topo_order_respects_edges_and_breaks_ties_by_label() {
        let g = graph_of(
            &["d/top", "c/mid", "b/leaf", "a/leaf", "e/alone"],
            &[(0, 1, Build), (1, 2, Lib), (1, 3, Run), (0, 3, Build)],
        );
        let order = g.topo_order().unwrap();
        assert_eq!(labels_of(&g, &order), vec!["a/leaf", "b/leaf", "c/mid", "d/top", "e/alone"]);

        let big = random_dag(3000, 3, 11);
        let order = big.topo_order().unwrap();
        assert_eq!(order.len(), big.len());
        assert_respects_edges(&big, &order);
        assert_eq!(order, big.topo_order().unwrap());
    }

    #[test]
    fn answers_do_not_depend_on_insertion_order() {
        let labels = ["p/e", "p/b", "p/d", "p/a", "p/c", "q/x", "q/y"];
        let edges = [
            ("p/e", "p/b", Build),
            ("p/e", "p/d", Run),
            ("p/d", "p/a", Lib),
            ("p/c", "p/a", Build),
            ("p/b", "p/c", Build),
            ("q/x", "q/y", Build),
            ("q/y", "q/x", Run),
            ("q/y", "q/x", Build),
        ];
        let build = |reverse: bool| {
            let mut g = Graph::new();
            let mut order: Vec<&str> = labels.to_vec();
            let mut edge_order = edges.to_vec();
            if reverse {
                order.reverse();
                edge_order.reverse();
            }
            let ids: HashMap<&str, NodeId> = order.iter().map(|&l| (l, g.add_node(l))).collect();
            for (from, to, dep_kind) in edge_order {
                g.add_edge(ids[from], ids[to], kind(dep_kind));
            }
            g
        };
        let (forward, backward) = (build(false), build(true));
        let shown = |g: &Graph| g.find_cycles().iter().map(|c| c.display(g)).collect::<Vec<_>>();
        assert_eq!(shown(&forward), shown(&backward));
        assert_eq!(shown(&forward), vec!["q/x -[BUILD_DEPENDS]-> q/y -[BUILD_DEPENDS]-> q/x"]);
        let acyclic = |g: &Graph| {
            let subset: Vec<bool> = (0..g.len()).map(|n| g.label(n).starts_with("p/")).collect();
            labels_of(g, &g.schedule_order(&subset, &vec![0.0; g.len()], &vec![0; g.len()]))
        };
        assert_eq!(acyclic(&forward), acyclic(&backward));
        assert_eq!(acyclic(&forward), vec!["p/a", "p/c", "p/b", "p/d", "p/e"]);
    }

    #[test]
    fn closure_follows_only_accepted_kinds() {
        // app -BUILD-> compiler -RUN-> runtime; app -LIB-> libx -RUN-> data; libx -BUILD-> tool
        let g = graph_of(
            &["x/app", "x/compiler", "x/runtime", "x/libx", "x/data", "x/tool", "x/other"],
            &[(0, 1, Build), (1, 2, Run), (0, 3, Lib), (3, 4, Run), (3, 5, Build)],
        );
        assert_eq!(g.closure(&[0], |_| true), vec![0, 1, 2, 3, 4, 5]);
        assert_eq!(g.closure(&[0], runtime), vec![0, 3, 4]);
        assert_eq!(g.closure(&[3, 6, 3], runtime), vec![3, 4, 6]);
        assert_eq!(g.closure(&[], |_| true), Vec::<NodeId>::new());
    }

    #[test]
    fn dependents_closure_reports_via_chains() {
        // c -> b -> a (failed), d -> c, e -> a, f unrelated
        let g = graph_of(
            &["devel/a", "devel/b", "devel/c", "devel/d", "devel/e", "devel/f"],
            &[(1, 0, Build), (2, 1, Lib), (3, 2, Run), (4, 0, Run), (5, 5, Build)],
        );
        let reached = g.dependents_closure(&[0]);
        let mut nodes: Vec<NodeId> = reached.iter().map(|&(n, _)| n).collect();
        nodes.sort();
        assert_eq!(nodes, vec![1, 2, 3, 4]);
        assert_eq!(via_chain(&reached, 3), vec![3, 2, 1, 0]);
        assert_eq!(via_chain(&reached, 4), vec![4, 0]);
        assert_eq!(via_chain(&reached, 0), vec![0]);
        let index = ViaIndex::new(&reached);
        assert_eq!(index.chain(2), vec![2, 1, 0]);
        assert_eq!(index.seed(3), 0);

        // Two seeds: a seed reached from the other is not reported.
        let reached = g.dependents_closure(&[0, 1]);
        assert!(reached.iter().all(|&(n, _)| n != 0 && n != 1));
        assert_eq!(via_chain(&reached, 3), vec![3, 2, 1]);
    }

    #[test]
    fn dependent_counts_match_brute_force_on_random_graphs() {
        for seed in 0..6 {
            let g = random_dag(300, 2, seed);
            let expected: Vec<u32> = (0..g.len()).map(|n| brute_force_dependents(&g, n)).collect();
            assert_eq!(g.transitive_dependents_counts(), expected, "seed {seed}");
            for words in [1, 2, 3] {
                assert_eq!(DependentCounter::new(&g, Some(words)).count(), expected);
            }
        }
    }

    #[test]
    fn dependent_counts_span_several_blocks() {
        let g = random_dag(9000, 2, 42);
        let counts = g.transitive_dependents_counts();
        assert_eq!(DependentCounter::new(&g, Some(4096 / 64)).count(), counts, "three 4096-column blocks");
        for n in (0..g.len()).step_by(37).chain([0, 4095, 4096, 8191, 8192, 8999]) {
            assert_eq!(counts[n], brute_force_dependents(&g, n), "node {n}");
        }
    }

    #[test]
    fn dependent_counts_on_cyclic_graphs_count_loop_members() {
        // leaf <- a <-> b <- top
        let g = graph_of(&["x/leaf", "x/a", "x/b", "x/top"], &[(1, 0, Build), (1, 2, Run), (2, 1, Run), (3, 2, Build)]);
        assert_eq!(g.transitive_dependents_counts(), vec![3, 2, 2, 0]);
        let mut rng = Lcg(5);
        let mut g = Graph::new();
        for n in 0..400 {
            g.add_node(format!("r/{n}"));
        }
        for _ in 0..600 {
            g.add_edge(rng.below(400), rng.below(400), kind(Build));
        }
        let expected: Vec<u32> = (0..g.len()).map(|n| brute_force_dependents(&g, n)).collect();
        assert_eq!(g.transitive_dependents_counts(), expected);
        assert_eq!(DependentCounter::new(&g, Some(1)).count(), expected);
    }

    #[test]
    fn priorities_are_longest_weighted_remaining_paths() {
        // base <- lib <- app1 ; base <- tool <- app2 ; base <- app3
        let g = graph_of(
            &["x/base", "x/lib", "x/tool", "x/app1", "x/app2", "x/app3"],
            &[(1, 0, Lib), (2, 0, Build), (3, 1, Lib), (4, 2, Build), (5, 0, Run)],
        );
        let weights = [1.0, 10.0, 2.0, 5.0, 20.0, 3.0];
        // app1 5, app2 20, app3 3, lib 15, tool 22, base 1 + max(15, 22, 3) = 23
        assert_eq!(g.priorities(&weights), vec![23.0, 15.0, 22.0, 5.0, 20.0, 3.0]);
    }

    #[test]
    fn priorities_ignore_edges_inside_loops() {
        let g = graph_of(&["x/a", "x/b", "x/top"], &[(0, 1, Build), (1, 0, Build), (2, 0, Build)]);
        assert_eq!(g.priorities(&[1.0, 2.0, 4.0]), vec![5.0, 2.0, 4.0]);
    }

    #[test]
    fn schedule_prefers_the_critical_path() {
        // A long chain long1 <- long2 <- long3 and many short independent ports
        // that sort first by name and have more dependents than the chain head.
        let g = graph_of(
            &["z/long1", "z/long2", "z/long3", "a/short1", "a/short2", "a/top"],
            &[(1, 0, Build), (2, 1, Build), (5, 3, Build), (5, 4, Build)],
        );
        let weights = [10.0, 10.0, 10.0, 1.0, 1.0, 1.0];
        let priority = g.priorities(&weights);
        let counts = g.transitive_dependents_counts();
        let everything = vec![true; g.len()];
        let order = g.schedule_order(&everything, &priority, &counts);
        assert_eq!(labels_of(&g, &order), vec!["z/long1", "z/long2", "z/long3", "a/short1", "a/short2", "a/top"]);

        // Equal priorities: more dependents first, then by label.
        let flat = vec![1.0; g.len()];
        let order = g.schedule_order(&everything, &flat, &counts);
        assert_eq!(labels_of(&g, &order)[..3], ["z/long1", "a/short1", "a/short2"]);

        let big = random_dag(2000, 3, 3);
        let weights: Vec<f64> = (0..big.len()).map(|n| (n % 7) as f64 + 1.0).collect();
        let order =
            big.schedule_order(&vec![true; big.len()], &big.priorities(&weights), &big.transitive_dependents_counts());
        assert_eq!(order.len(), big.len());
        assert_respects_edges(&big, &order);
    }

    #[test]
    fn schedule_only_counts_edges_inside_the_subset() {
        // top -> mid -> leaf, but leaf is already built (not in the subset).
        let g = graph_of(&["x/leaf", "x/mid", "x/top", "x/unrelated"], &[(1, 0, Build), (2, 1, Run)]);
        let subset = [false, true, true, true];
        let order = g.schedule_order(&subset, &[0.0, 2.0, 1.0, 0.5], &[0, 1, 0, 0]);
        assert_eq!(order, vec![1, 2, 3]);

        // A loop inside the subset holds its members (and their dependents) back.
        let g = graph_of(&["x/a", "x/b", "x/c"], &[(0, 1, Build), (1, 0, Build)]);
        assert_eq!(g.schedule_order(&[true; 3], &[0.0; 3], &[0; 3]), vec![2]);
    }

    const HUGE: usize = 100_000;

    fn huge_labels(g: &mut Graph) {
        for n in 0..HUGE {
            g.add_node(format!("cat/p{n:06}"));
        }
    }

    fn exercise_everything(g: &Graph, seed: NodeId) -> (Vec<u32>, Vec<f64>, Vec<(NodeId, NodeId)>) {
        assert!(g.find_cycles().is_empty());
        let order = g.topo_order().expect("acyclic");
        assert_respects_edges(g, &order);
        let priority = g.priorities(&vec![1.0; g.len()]);
        let counts = g.transitive_dependents_counts();
        let schedule = g.schedule_order(&vec![true; g.len()], &priority, &counts);
        assert_eq!(schedule.len(), g.len());
        assert_respects_edges(g, &schedule);
        let reached = g.dependents_closure(&[seed]);
        (counts, priority, reached)
    }

    #[test]
    fn huge_chain_does_not_overflow() {
        let mut g = Graph::with_capacity(HUGE);
        huge_labels(&mut g);
        for n in 1..HUGE {
            g.add_edge(n, n - 1, kind(Build));
        }
        let (counts, priority, reached) = exercise_everything(&g, 0);
        assert_eq!(counts[0], (HUGE - 1) as u32);
        assert_eq!(counts[HUGE - 1], 0);
        assert_eq!(priority[0], HUGE as f64);
        assert_eq!(reached.len(), HUGE - 1);
        assert_eq!(ViaIndex::new(&reached).chain(5), vec![5, 4, 3, 2, 1, 0]);
        assert_eq!(g.closure(&[HUGE - 1], |_| true).len(), HUGE);

        g.add_edge(0, HUGE - 1, kind(Run));
        let cycles = g.find_cycles();
        assert_eq!(cycles.len(), 1);
        assert_eq!(cycles[0].path.len(), HUGE);
        assert_eq!(cycles[0].path[0], (0, kind(Run)));
        assert!(g.topo_order().is_err());
    }

    #[test]
    fn huge_fan_in_does_not_overflow() {
        let mut g = Graph::with_capacity(HUGE);
        huge_labels(&mut g);
        for n in 1..HUGE {
            g.add_edge(0, n, kind(Build));
        }
        let (counts, priority, reached) = exercise_everything(&g, 7);
        assert_eq!(counts[0], 0);
        assert!(counts[1..].iter().all(|&c| c == 1));
        assert_eq!(priority[7], 2.0);
        assert_eq!(reached, vec![(0, 7)]);
    }

    #[test]
    fn huge_fan_out_does_not_overflow() {
        let mut g = Graph::with_capacity(HUGE);
        huge_labels(&mut g);
        for n in 1..HUGE {
            g.add_edge(n, 0, kind(Lib));
        }
        let (counts, priority, reached) = exercise_everything(&g, 0);
        // Every leaf row stays alive until the root is processed, so the
        // default block width is narrower than the graph: several blocks run.
        assert!(DependentCounter::new(&g, None).words * 64 < HUGE);
        assert_eq!(counts[0], (HUGE - 1) as u32);
        assert!(counts[1..].iter().all(|&c| c == 0));
        assert_eq!(priority[0], 2.0);
        assert_eq!(reached.len(), HUGE - 1);
        assert_eq!(g.closure(&[5], runtime), vec![0, 5]);
    }
}
