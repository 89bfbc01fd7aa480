//! From scanned ports to a checked dependency graph.
//!
//! Every scanned port (each flavor separately) and every port that failed to
//! scan becomes a node, so that a dependent of a broken port can point at it
//! and say why it cannot be built. Each dependency entry is resolved to a node
//! here: an unflavored origin of a flavored port means its first flavor, an
//! unknown flavor or a missing port is an error on the *dependent*, naming the
//! variable and the entry. Problems are collected per node, never dropped, and
//! then spread to everything that depends on a problem port.

use std::collections::{BTreeMap, BTreeSet};

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use std::path::PathBuf;

use anyhow::Result;
use rayon::prelude::*;

use super::scan::{check_package_names, PortMeta, Scanner};
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
    /// What listing the tree skipped or noticed, one line each (a non-UTF-8
    /// or unreadable directory, a symlinked port inside the tree); shown
    /// as warnings and in the plan.
    pub problems: Vec<String>,
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
    pub fn load(
        scanner: &Scanner,
        scope: Scope,
        scan: &dyn Fn(&[Origin]) -> Vec<super::scan::DirScan>,
    ) -> Result<PortTree> {
        // The listing already checked its origins (symlinks, Makefile): the
        // first wave of a whole tree is not checked again.
        let (mut pending, problems, mut listed): (Vec<Origin>, Vec<String>, Option<HashMap<Origin, String>>) =
            match scope {
                Scope::Everything => {
                    let listing = scanner.list_ports()?;
                    (listing.origins, listing.problems, Some(listing.refused.into_iter().collect()))
                }
                Scope::Ports(ports) => (ports.iter().map(|o| o.with_flavor(None)).collect(), vec![], None),
            };
        // Port directories (`cat/port`) already taken.
        let mut seen: HashSet<String> = HashSet::with_capacity(pending.len());
        let mut nodes = Vec::new();
        let mut missing = BTreeSet::new();
        while !pending.is_empty() {
            pending.retain(|dir| seen.insert(dir.dir()));
            // A port directory that leads out of the tree through a symlink
            // is refused by name and never scanned.
            let checked: Vec<(Origin, Result<bool, String>)> = std::mem::take(&mut pending)
                .into_par_iter()
                .map(|dir| {
                    let present = match &listed {
                        Some(refused) => refused.get(&dir).map_or(Ok(true), |reason| Err(reason.clone())),
                        None => scanner.escape(&dir).map(|_| scanner.port_dir(&dir).join("Makefile").is_file()),
                    };
                    (dir, present)
                })
                .collect();
            listed = None;
            let mut present = Vec::new();
            for (dir, check) in checked {
                match check {
                    Ok(true) => present.push(dir),
                    Ok(false) => {
                        missing.insert(dir);
                    }
                    Err(reason) => nodes.push(Node { origin: dir, meta: None, errors: vec![reason] }),
                }
            }
            let mut next = BTreeSet::new();
            for (dir, result) in present.iter().zip(scan(&present)) {
                match result {
                    Ok(metas) => {
                        for meta in metas {
                            // Also catches metadata cached before the check existed.
                            let file = scanner.framework.framework().package_file(&meta.pkgname);
                            if let Err(e) = check_package_names(&meta.pkgname, &meta.pkgfile, &file) {
                                nodes.push(Node { origin: meta.origin.clone(), meta: None, errors: vec![e] });
                                continue;
                            }
                            // Only directories not yet taken are worth parsing for.
                            let taken = |dir: &str| seen.contains(dir);
                            for dir in scanner.framework.framework().dependency_dirs(&meta, &taken) {
                                if !seen.contains(&dir.dir()) {
                                    next.insert(dir);
                                }
                            }
                            nodes.push(Node { origin: meta.origin.clone(), meta: Some(meta), errors: vec![] });
                        }
                    }
                    Err(error) => nodes.push(Node { origin: dir.clone(), meta: None, errors: vec![error.message] }),
                }
            }
            pending = next.into_iter().collect();
        }
        nodes.sort_by(|a, b| a.origin.cmp(&b.origin));
        let mut tree = PortTree::resolve(nodes, scanner, &missing);
        tree.problems = problems;
        Ok(tree)
    }

    fn resolve(nodes: Vec<Node>, scanner: &Scanner, missing: &BTreeSet<Origin>) -> PortTree {
        let mut graph = Graph::with_capacity(nodes.len());
        let mut index = HashMap::with_capacity(nodes.len());
        let mut defaults = HashMap::with_capacity(nodes.len());
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
        let mut tree =
            PortTree { nodes, graph, not_buildable: BTreeMap::new(), problems: vec![], index, defaults, ports_dir };
        let resolved = scanner.framework.framework().resolve(&tree, scanner, missing);
        for (id, deps) in resolved.into_iter().enumerate() {
            for (dep, kind) in deps.edges {
                tree.graph.add_edge(id, dep, kind);
            }
            tree.nodes[id].errors.extend(deps.errors);
        }
        tree.duplicate_pkgnames();
        for cycle in tree.graph.find_cycles() {
            let text = format!("dependency cycle: {}", cycle.display(&tree.graph));
            for (member, _) in &cycle.path {
                tree.nodes[*member].errors.push(text.clone());
            }
        }
        tree.spread_problems();
        tree
    }

    pub(crate) fn resolve_spec(
        &self,
        spec: &DepSpec,
        scanner: &Scanner,
        missing: &BTreeSet<Origin>,
    ) -> Result<NodeId, String> {
        // Unflavored (most entries): the origin is its directory, no copy.
        let unflavored;
        let dir = match spec.origin.flavor {
            None => &spec.origin,
            Some(_) => {
                unflavored = spec.origin.with_flavor(None);
                &unflavored
            }
        };
        let default = match self.defaults.get(dir) {
            Some(&default) if !missing.contains(dir) => default,
            _ => return Err(format!("no such port {dir} (no Makefile in {})", scanner.port_dir(dir).display())),
        };
        let Some(flavor) = &spec.origin.flavor else {
            return Ok(default);
        };
        if let Some(&id) = self.index.get(&spec.origin) {
            return Ok(id);
        }
        let flavors = self.nodes[default].meta.as_ref().map(|m| m.flavors.join(" "));
        match flavors {
            Some(list) if !list.is_empty() => Err(format!("unknown flavor '{flavor}' of {dir} (FLAVORS: {list})")),
            Some(_) => Err(format!("unknown flavor '{flavor}': {dir} has no FLAVORS")),
            None => Err(format!("{dir} could not be scanned")),
        }
    }

    /// Two ports (or flavors) producing one PKGNAME would overwrite each
    /// other's `All/<PKGNAME>.pkg`: neither is built.
    fn duplicate_pkgnames(&mut self) {
        let mut producers: BTreeMap<&str, Vec<NodeId>> = BTreeMap::new();
        for (id, node) in self.nodes.iter().enumerate() {
            if let Some(meta) = &node.meta {
                producers.entry(meta.pkgname.as_str()).or_default().push(id);
            }
        }
        let mut errors = Vec::new();
        for (pkgname, ids) in producers.into_iter().filter(|(_, ids)| ids.len() > 1) {
            let origins: Vec<String> = ids.iter().map(|&id| self.nodes[id].origin.to_string()).collect();
            let (last, first) = origins.split_last().expect("two or more");
            let both = if first.len() == 1 { "both " } else { "" };
            let text = format!("PKGNAME {pkgname} is produced by {both}{} and {last}", first.join(", "));
            errors.extend(ids.into_iter().map(|id| (id, text.clone())));
        }
        for (id, text) in errors {
            self.nodes[id].errors.push(text);
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
    /// first: its direct dependencies of every kind plus, transitively, what
    /// comes along wherever those are installed (`Need::installed_with_its_user`:
    /// bundled's run and library dependencies, what dsynth installs).
    pub fn install_set(&self, node: NodeId) -> Vec<NodeId> {
        let direct: Vec<NodeId> = self.graph.dependencies(node).iter().map(|e| e.to).collect();
        let needed = self.graph.closure(&direct, |kind| kind.need.installed_with_its_user());
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
