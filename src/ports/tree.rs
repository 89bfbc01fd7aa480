//! From scanned ports to a checked dependency graph.
//!
//! Every scanned port (each flavor separately) and every port that failed to
//! scan becomes a node, so that a dependent of a broken port can point at it
//! and say why it cannot be built. Each dependency entry is resolved to a node
//! here: an unflavored origin of a flavored port means its first flavor, an
//! unknown flavor or a missing port is an error on the *dependent*, naming the
//! variable and the entry. Problems are collected per node, never dropped, and
//! then spread to everything that depends on a problem port.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;

use anyhow::Result;

use super::scan::{PortMeta, Scanner};
use super::{DepSpec, Origin};
use crate::graph::{Graph, NodeId};

/// One node: a scanned port, or a port directory whose scan failed.
#[derive(Debug, Clone)]
pub struct Node {
    pub origin: Origin,
    pub meta: Option<PortMeta>,
    /// Why this port itself cannot be built (scan error, malformed or
    /// unresolvable dependency, cycle). Dependents are handled separately.
    pub errors: Vec<String>,
}

/// The scanned tree with its resolved graph. Node ids index `nodes`.
#[derive(Debug)]
pub struct PortTree {
    pub nodes: Vec<Node>,
    pub graph: Graph,
    /// For each node with a problem of its own or through a dependency: the
    /// reason, e.g. "depends on bad/malformed, which is not buildable".
    pub not_buildable: BTreeMap<NodeId, String>,
    index: HashMap<Origin, NodeId>,
    /// `cat/port` → node of its default flavor.
    defaults: HashMap<Origin, NodeId>,
    ports_dir: PathBuf,
}

/// What to scan: the whole tree, or some ports and everything they need.
pub enum Scope<'a> {
    Everything,
    Ports(&'a [Origin]),
}

impl PortTree {
    /// Scans (through `scan`, which may consult a cache) and resolves.
    pub fn load(scanner: &Scanner, scope: Scope, scan: &dyn Fn(&[Origin]) -> Vec<super::scan::DirScan>) -> Result<PortTree> {
        let mut pending: Vec<Origin> = match scope {
            Scope::Everything => scanner.list_ports()?,
            Scope::Ports(ports) => ports.iter().map(|o| o.with_flavor(None)).collect(),
        };
        let mut seen: BTreeSet<Origin> = BTreeSet::new();
        let mut nodes = Vec::new();
        let mut missing = BTreeSet::new();
        while !pending.is_empty() {
            pending.retain(|dir| seen.insert(dir.clone()));
            let (present, absent): (Vec<Origin>, Vec<Origin>) =
                pending.drain(..).partition(|dir| scanner.port_dir(dir).join("Makefile").is_file());
            missing.extend(absent);
            let mut next = BTreeSet::new();
            for (dir, result) in present.iter().zip(scan(&present)) {
                match result {
                    Ok(metas) => {
                        for meta in metas {
                            let (specs, _) = meta.dep_specs();
                            next.extend(specs.into_iter().map(|s| s.origin.with_flavor(None)));
                            nodes.push(Node { origin: meta.origin.clone(), meta: Some(meta), errors: vec![] });
                        }
                    }
                    Err(error) => nodes.push(Node { origin: dir.clone(), meta: None, errors: vec![error.message] }),
                }
            }
            pending = next.into_iter().filter(|d| !seen.contains(d)).collect();
        }
        nodes.sort_by(|a, b| a.origin.cmp(&b.origin));
        Ok(PortTree::resolve(nodes, scanner, &missing))
    }

    fn resolve(nodes: Vec<Node>, scanner: &Scanner, missing: &BTreeSet<Origin>) -> PortTree {
        let mut graph = Graph::with_capacity(nodes.len());
        let mut index = HashMap::new();
        let mut defaults = HashMap::new();
        for node in &nodes {
            let id = graph.add_node(node.origin.to_string());
            index.insert(node.origin.clone(), id);
            let is_default = match &node.meta {
                Some(meta) => meta.flavors.first() == node.origin.flavor.as_ref(),
                None => true,
            };
            if is_default {
                defaults.insert(node.origin.with_flavor(None), id);
            }
        }
        let ports_dir = scanner.ports_dir.clone();
        let mut tree = PortTree { nodes, graph, not_buildable: BTreeMap::new(), index, defaults, ports_dir };
        for id in 0..tree.nodes.len() {
            let Some(meta) = tree.nodes[id].meta.clone() else { continue };
            let (specs, mut errors) = meta.dep_specs();
            for spec in &specs {
                match tree.resolve_spec(spec, scanner, missing) {
                    Ok(dep) => tree.graph.add_edge(id, dep, spec.kind),
                    Err(e) => errors.push(format!("{}: entry '{}': {e}", spec.kind, spec.text)),
                }
            }
            tree.nodes[id].errors.extend(errors);
        }
        for cycle in tree.graph.find_cycles() {
            let text = format!("dependency cycle: {}", cycle.display(&tree.graph));
            for (member, _) in &cycle.path {
                tree.nodes[*member].errors.push(text.clone());
            }
        }
        tree.spread_problems();
        tree
    }

    fn resolve_spec(&self, spec: &DepSpec, scanner: &Scanner, missing: &BTreeSet<Origin>) -> Result<NodeId, String> {
        let dir = spec.origin.with_flavor(None);
        if missing.contains(&dir) || !self.defaults.contains_key(&dir) {
            return Err(format!("no such port {dir} (no Makefile in {})", scanner.port_dir(&dir).display()));
        }
        let Some(flavor) = &spec.origin.flavor else {
            return Ok(self.defaults[&dir]);
        };
        if let Some(&id) = self.index.get(&spec.origin) {
            return Ok(id);
        }
        let flavors = self.nodes[self.defaults[&dir]].meta.as_ref().map(|m| m.flavors.join(" "));
        match flavors {
            Some(list) if !list.is_empty() => Err(format!("unknown flavor '{flavor}' of {dir} (FLAVORS: {list})")),
            Some(_) => Err(format!("unknown flavor '{flavor}': {dir} has no FLAVORS")),
            None => Err(format!("{dir} could not be scanned")),
        }
    }

    /// Marks each problem port and everything that depends on it.
    fn spread_problems(&mut self) {
        let seeds: Vec<NodeId> = (0..self.nodes.len()).filter(|&n| !self.nodes[n].errors.is_empty()).collect();
        for &seed in &seeds {
            self.not_buildable.insert(seed, self.nodes[seed].errors.join("; "));
        }
        for (node, via) in self.graph.dependents_closure(&seeds) {
            self.not_buildable
                .entry(node)
                .or_insert_with(|| format!("depends on {}, which is not buildable", self.nodes[via].origin));
        }
    }

    pub fn id(&self, origin: &Origin) -> Option<NodeId> {
        self.index.get(origin).copied()
    }

    /// The node an origin names: the exact flavor, or the default flavor of
    /// an unflavored origin.
    pub fn lookup(&self, origin: &Origin) -> Option<NodeId> {
        match origin.flavor {
            Some(_) => self.id(origin),
            None => self.defaults.get(origin).copied(),
        }
    }

    /// The ports whose packages a build of `node` installs, dependencies
    /// first: its direct dependencies of every kind plus the run and library
    /// closure of those (what dsynth installs).
    pub fn install_set(&self, node: NodeId) -> Vec<NodeId> {
        let direct: Vec<NodeId> = self.graph.dependencies(node).iter().map(|e| e.to).collect();
        let needed = self.graph.closure(&direct, |kind| kind.is_runtime());
        self.graph.dependency_order(&needed)
    }

    /// The directory of a node's port in the tree.
    pub fn port_dir(&self, node: NodeId) -> PathBuf {
        let origin = &self.nodes[node].origin;
        self.ports_dir.join(&origin.category).join(&origin.name)
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
}
