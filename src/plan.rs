//! The plan: for every port in scope, what a build would do with it and why.
//!
//! The plan is a pure function of the resolved tree, the requested scope and
//! a needs-build decision supplied by the caller (the build database decides
//! it; a test can supply anything). Keeping the decision outside lets
//! `status` and the builder share one classification and one build order.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::graph::{EdgeKind, NodeId};
use crate::ports::{Origin, PortTree};

/// What happens to one port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", content = "reason", rename_all = "kebab-case")]
pub enum Verdict {
    /// Must be built; the reason says why (e.g. "new", "dependency changed: devel/libgreet").
    Build(String),
    UpToDate,
    /// IGNORE or BROKEN set by the port.
    Ignored(String),
    /// Depends (transitively) on an ignored port.
    Skipped(String),
    /// Scan error, bad dependency, cycle, or depends on such a port.
    NotBuildable(String),
}

#[derive(Debug, Clone, Serialize)]
pub struct PlanEntry {
    #[serde(skip)]
    pub node: NodeId,
    pub origin: Origin,
    pub pkgname: Option<String>,
    #[serde(flatten)]
    pub verdict: Verdict,
    /// Resolved direct dependencies.
    pub depends: Vec<Dependency>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Dependency {
    pub origin: Origin,
    /// Serialized as the framework's label: `BUILD_DEPENDS`, `ALL_DEPENDS`.
    pub kind: &'static EdgeKind,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Counts {
    pub to_build: usize,
    pub up_to_date: usize,
    pub ignored: usize,
    pub skipped: usize,
    pub not_buildable: usize,
}

/// Ports to build in build order, then everything else by origin.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub entries: Vec<PlanEntry>,
    pub counts: Counts,
    /// What listing the tree skipped or noticed ([`PortTree::problems`]).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

/// The ports a command asked for.
pub enum Request<'a> {
    Everything,
    Ports(&'a [Origin]),
}

impl Plan {
    /// `needs_build(node)` returns the reason a buildable port must be built,
    /// or `None` when it is up to date.
    pub fn make(
        tree: &PortTree,
        request: Request,
        needs_build: &mut dyn FnMut(NodeId) -> Option<String>,
    ) -> anyhow::Result<Plan> {
        let in_scope = scope(tree, request)?;
        let mut verdicts: BTreeMap<NodeId, Verdict> = BTreeMap::new();
        let ignored: Vec<NodeId> = in_scope
            .iter()
            .copied()
            .filter(|n| !tree.not_buildable.contains_key(n) && ignore_reason(tree, *n).is_some())
            .collect();
        let skipped: BTreeMap<NodeId, NodeId> = tree.graph.dependents_closure(&ignored).into_iter().collect();
        for &node in &in_scope {
            let verdict = if let Some(reason) = tree.not_buildable.get(&node) {
                Verdict::NotBuildable(reason.clone())
            } else if let Some(reason) = ignore_reason(tree, node) {
                Verdict::Ignored(reason)
            } else if let Some(&via) = skipped.get(&node) {
                Verdict::Skipped(skip_reason(tree, &skipped, via))
            } else {
                match needs_build(node) {
                    Some(reason) => Verdict::Build(reason),
                    None => Verdict::UpToDate,
                }
            };
            verdicts.insert(node, verdict);
        }
        Ok(Plan::ordered(tree, verdicts))
    }

    fn ordered(tree: &PortTree, verdicts: BTreeMap<NodeId, Verdict>) -> Plan {
        let mut to_build = vec![false; tree.len()];
        for (node, verdict) in &verdicts {
            to_build[*node] = matches!(verdict, Verdict::Build(_));
        }
        // The order's inputs cost more than the rest of the plan on a big
        // tree: not computed when nothing is to be built (a warm status).
        let order = if to_build.contains(&true) {
            let weights = vec![1.0; tree.len()];
            let priority = tree.graph.priorities(&weights);
            let dependents = tree.graph.transitive_dependents_counts();
            tree.graph.schedule_order(&to_build, &priority, &dependents)
        } else {
            Vec::new()
        };
        let entry = |node: NodeId| PlanEntry {
            node,
            origin: tree.nodes[node].origin.clone(),
            pkgname: tree.nodes[node].meta.as_ref().map(|m| m.pkgname.clone()),
            verdict: verdicts[&node].clone(),
            depends: tree
                .graph
                .dependencies(node)
                .iter()
                .map(|e| Dependency { origin: tree.nodes[e.to].origin.clone(), kind: e.kind })
                .collect(),
        };
        let mut entries: Vec<PlanEntry> = order.into_iter().map(entry).collect();
        entries.extend(verdicts.keys().copied().filter(|n| !to_build[*n]).map(entry));
        let mut counts = Counts::default();
        for verdict in verdicts.values() {
            *match verdict {
                Verdict::Build(_) => &mut counts.to_build,
                Verdict::UpToDate => &mut counts.up_to_date,
                Verdict::Ignored(_) => &mut counts.ignored,
                Verdict::Skipped(_) => &mut counts.skipped,
                Verdict::NotBuildable(_) => &mut counts.not_buildable,
            } += 1;
        }
        Plan { entries, counts, problems: tree.problems.clone() }
    }

    pub fn to_build(&self) -> impl Iterator<Item = &PlanEntry> {
        self.entries.iter().filter(|e| matches!(e.verdict, Verdict::Build(_)))
    }
}

fn ignore_reason(tree: &PortTree, node: NodeId) -> Option<String> {
    tree.nodes[node].meta.as_ref()?.ignore.clone()
}

/// "depends on ignored misc/ignored (via misc/calc)".
fn skip_reason(tree: &PortTree, skipped: &BTreeMap<NodeId, NodeId>, via: NodeId) -> String {
    let mut chain = vec![via];
    while let Some(&next) = skipped.get(chain.last().expect("non-empty")) {
        chain.push(next);
    }
    let root = chain.pop().expect("non-empty");
    let mut text = format!("depends on ignored {}", tree.nodes[root].origin);
    if !chain.is_empty() {
        let via: Vec<String> = chain.iter().map(|n| tree.nodes[*n].origin.to_string()).collect();
        text.push_str(&format!(" (via {})", via.join(", ")));
    }
    text
}

/// The nodes a request covers: every node, or the requested ports plus
/// everything they depend on through any kind of dependency.
fn scope(tree: &PortTree, request: Request) -> anyhow::Result<Vec<NodeId>> {
    match request {
        Request::Everything => Ok((0..tree.len()).collect()),
        Request::Ports(ports) => {
            let mut roots = Vec::new();
            for origin in ports {
                let node = tree.lookup(origin).ok_or_else(|| unknown_port(tree, origin))?;
                roots.push(node);
            }
            Ok(tree.graph.closure(&roots, |_| true))
        }
    }
}

fn unknown_port(tree: &PortTree, origin: &Origin) -> anyhow::Error {
    match tree.lookup(&origin.with_flavor(None)).and_then(|n| tree.nodes[n].meta.as_ref()) {
        Some(meta) if origin.flavor.is_some() => anyhow::anyhow!(
            "{origin}: unknown flavor (FLAVORS: {})",
            if meta.flavors.is_empty() { "none".to_string() } else { meta.flavors.join(" ") }
        ),
        _ => anyhow::anyhow!("{origin}: no such port in the tree"),
    }
}
