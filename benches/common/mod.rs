//! Shared by the benches: a deterministic synthetic ports graph shaped like a
//! real tree, a loader for `scripts/gen-tree` manifests, and an on-disk tree
//! for the benches that need real port directories.
#![allow(dead_code)]

use std::path::Path;

use portsynth::graph::Graph;
use portsynth::ports::{DepKind, Origin, PortMeta, PortTree, Scanner, Scope};

/// splitmix64: small, fast, deterministic.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    pub fn below(&mut self, bound: usize) -> usize {
        (self.next_u64() % bound.max(1) as u64) as usize
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u = self.unit().max(1e-12);
        let v = self.unit();
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }
}

const CATEGORIES: &[&str] = &[
    "devel",
    "devel",
    "devel",
    "devel",
    "www",
    "www",
    "textproc",
    "textproc",
    "sysutils",
    "sysutils",
    "net",
    "graphics",
    "security",
    "misc",
    "databases",
    "math",
    "multimedia",
    "audio",
    "x11",
    "science",
    "lang",
    "games",
    "mail",
    "net-mgmt",
    "print",
    "x11-toolkits",
    "editors",
    "archivers",
    "converters",
    "deskutils",
    "dns",
];

/// A dependency graph with labels `category/pNNNNN`, build durations in
/// seconds, and the edges as (dependent, dependency, kind).
pub struct Synthetic {
    pub labels: Vec<String>,
    pub durations: Vec<f64>,
    pub edges: Vec<(usize, usize, DepKind)>,
}

impl Synthetic {
    pub fn graph(&self) -> Graph {
        let mut g = Graph::with_capacity(self.labels.len());
        for label in &self.labels {
            g.add_node(label.as_str());
        }
        for &(from, to, kind) in &self.edges {
            g.add_edge(from, to, portsynth::framework::bundled::edge_kind(kind));
        }
        g
    }
}

/// A tree-shaped DAG of `n` ports, deterministic from `seed`, shaped like
/// `scripts/gen-tree --shape realistic` (the same ingredients, simpler
/// arithmetic): six hubs that 30-58 % of the ports depend on, a second tier
/// of up to 20 popular ports, Pareto-popular other targets (~4 direct
/// dependencies per port), chains of 30-60 ports, meta ports with many run
/// dependencies and no build time, and log-normal durations (median 1 s,
/// sigma 1.3, clamped to 0.05-60 s; hubs x4; 0.4 % of ports x10-40).
#[allow(clippy::needless_range_loop)] // ids index several parallel arrays
pub fn synthetic(n: usize, seed: u64) -> Synthetic {
    let mut rng = Rng::new(seed);
    let hubs = [0.58, 0.50, 0.44, 0.40, 0.34, 0.30];
    let hub_count = hubs.len().min(n);
    let tier2_end = (hub_count + (n / 150).min(20)).min(n);
    let tier2_share: Vec<f64> = (hub_count..tier2_end).map(|_| 0.01 + 0.19 * rng.unit().powi(2)).collect();
    let mut labels = Vec::with_capacity(n);
    let mut durations = Vec::with_capacity(n);
    let mut edges = Vec::new();
    // Chains: consecutive ids, each member depends on the previous one.
    let chains = ((n as f64 / 2500.0).round() as usize).clamp(1, 12);
    let mut chain_prev = vec![usize::MAX; n];
    for _ in 0..chains {
        if n < 100 {
            break;
        }
        let len = 30 + rng.below(31);
        let start = tier2_end + rng.below(n.saturating_sub(tier2_end + len).max(1));
        for i in start + 1..(start + len).min(n) {
            chain_prev[i] = i - 1;
        }
    }
    for i in 0..n {
        let category = CATEGORIES[rng.below(CATEGORIES.len())];
        labels.push(format!("{category}/p{i:05}"));
        let meta = i > n * 2 / 5 && rng.unit() < 1.0 / 150.0;
        let mut dur = (1.3 * rng.normal()).exp().clamp(0.05, 60.0);
        if i < hub_count || category == "lang" {
            dur = (dur * 4.0).min(60.0);
        }
        if rng.unit() < 0.004 {
            dur = (dur * (10.0 + 30.0 * rng.unit())).min(600.0);
        }
        durations.push(if meta { 0.0 } else { (dur * 1000.0).round() / 1000.0 });
        if i == 0 {
            continue;
        }
        let mut deps: Vec<(usize, DepKind)> = Vec::new();
        if meta {
            for _ in 0..5 + rng.below(46) {
                deps.push((rng.below(i), DepKind::Run));
            }
        } else {
            for (h, share) in hubs.iter().enumerate().take(hub_count.min(i)) {
                if rng.unit() < *share {
                    deps.push((h, if h == 0 || h == 3 || h == 4 { DepKind::Build } else { DepKind::Lib }));
                }
            }
            for (k, share) in tier2_share.iter().enumerate() {
                let t = hub_count + k;
                if t < i && rng.unit() < *share {
                    deps.push((t, DepKind::Lib));
                }
            }
            let others = ((0.3 + 0.8 * rng.normal()).exp().round() as usize).min(60).min(i);
            for _ in 0..others {
                // Pareto-ish popularity: early ports are depended on more.
                let j = ((i as f64) * rng.unit().powf(2.5)) as usize;
                let kind = match rng.below(10) {
                    0..=4 => DepKind::Build,
                    5..=7 => DepKind::Lib,
                    _ => DepKind::Run,
                };
                deps.push((j.min(i - 1), kind));
            }
            if chain_prev[i] != usize::MAX {
                deps.push((chain_prev[i], DepKind::Build));
            }
        }
        deps.sort();
        deps.dedup();
        edges.extend(deps.into_iter().map(|(j, kind)| (i, j, kind)));
    }
    Synthetic { labels, durations, edges }
}

/// A `scripts/gen-tree` manifest (`.gen-tree.json`) as a graph: one node per
/// port and flavor (as portsynth and the generated Makefile see it), the
/// port's duration on each.
pub fn from_manifest(path: &Path) -> Result<Synthetic, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let ports = json["ports"].as_array().ok_or_else(|| format!("{}: no ports array", path.display()))?;
    let mut first_flavor = std::collections::HashMap::new();
    let mut index = std::collections::HashMap::new();
    let mut labels = Vec::new();
    let mut durations = Vec::new();
    for p in ports {
        let origin = p["origin"].as_str().ok_or("port without origin")?.to_string();
        let flavors: Vec<String> = p["flavors"]
            .as_array()
            .map(|f| f.iter().filter_map(|x| x.as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        first_flavor.insert(origin.clone(), flavors.first().cloned());
        let names: Vec<String> = if flavors.is_empty() {
            vec![origin.clone()]
        } else {
            flavors.iter().map(|f| format!("{origin}@{f}")).collect()
        };
        for name in names {
            index.insert(name.clone(), labels.len());
            labels.push(name);
            durations.push(p["duration"].as_f64().unwrap_or(0.0));
        }
    }
    let mut edges = Vec::new();
    let mut node = 0;
    for p in ports {
        let origin = p["origin"].as_str().unwrap_or_default();
        let count = p["flavors"].as_array().map_or(0, Vec::len).max(1);
        let mut targets = Vec::new();
        for d in p["deps"].as_array().into_iter().flatten() {
            let dep = d["origin"].as_str().ok_or_else(|| format!("{origin}: dependency without origin"))?;
            let name = match (dep.contains('@'), first_flavor.get(dep)) {
                (true, _) => dep.to_string(),
                (false, Some(Some(f))) => format!("{dep}@{f}"),
                (false, Some(None)) => dep.to_string(),
                (false, None) => return Err(format!("{origin}: unknown dependency {dep}")),
            };
            let target = *index.get(&name).ok_or_else(|| format!("{origin}: unknown dependency {name}"))?;
            let kind = match d["kind"].as_str().unwrap_or("BUILD") {
                "FETCH" => DepKind::Fetch,
                "EXTRACT" => DepKind::Extract,
                "PATCH" => DepKind::Patch,
                "LIB" => DepKind::Lib,
                "RUN" => DepKind::Run,
                _ => DepKind::Build,
            };
            targets.push((target, kind));
        }
        for k in 0..count {
            for &(target, kind) in &targets {
                edges.push((node + k, target, kind));
            }
        }
        node += count;
    }
    Ok(Synthetic { labels, durations, edges })
}

/// Writes `syn` as a minimal ports tree under `root` (one Makefile per port
/// plus `Mk/bsd.port.mk`) and loads it as a [`PortTree`] without bmake: the
/// metadata comes from `syn` itself.
pub fn tree_on_disk(syn: &Synthetic, root: &Path) -> PortTree {
    let mk = root.join("Mk");
    std::fs::create_dir_all(&mk).unwrap();
    std::fs::write(mk.join("bsd.port.mk"), "# framework stand-in\n".repeat(200)).unwrap();
    std::fs::write(mk.join("sys.mk"), "").unwrap();
    let mut by_dir = std::collections::HashMap::new();
    let mut depends: Vec<[String; 6]> = vec![Default::default(); syn.labels.len()];
    for &(from, to, kind) in &syn.edges {
        let slot = DepKind::ALL.iter().position(|k| *k == kind).unwrap();
        let target = &syn.labels[to];
        let name = target.split('/').nth(1).unwrap();
        let entry = &mut depends[from][slot];
        if !entry.is_empty() {
            entry.push(' ');
        }
        entry.push_str(&format!("{name}:{target}"));
    }
    for (i, label) in syn.labels.iter().enumerate() {
        let dir = root.join(label);
        std::fs::create_dir_all(&dir).unwrap();
        let text = format!("PORTNAME=\t{}\nPORTVERSION=\t1.0\n# {}\n.include <bsd.port.mk>\n", label, "x".repeat(300));
        std::fs::write(dir.join("Makefile"), text).unwrap();
        std::fs::write(dir.join("pkg-descr"), format!("The {label} port.\n")).unwrap();
        let origin = Origin::parse(label).unwrap();
        let name = &origin.name;
        let meta = PortMeta {
            origin: origin.clone(),
            pkgname: format!("{name}-1.0"),
            pkgversion: "1.0".into(),
            pkgfile: format!("/packages/All/{name}-1.0.pkg"),
            comment: "synthetic".into(),
            depends: depends[i].to_vec(),
            ignore: None,
            flavors: vec![],
            distfiles: vec![],
            dist_subdir: String::new(),
            makefiles: vec![dir.join("Makefile"), mk.join("bsd.port.mk"), mk.join("sys.mk")],
            variant: vec![],
            bootstrap_pkg: false,
            parallel_safe: true,
        };
        by_dir.insert(origin.dir(), meta);
    }
    let scanner = Scanner::on_host(portsynth::framework::Kind::Bundled, root);
    PortTree::load(&scanner, Scope::Everything, &|dirs| {
        dirs.iter().map(|d| Ok(vec![by_dir[&d.dir()].clone()])).collect()
    })
    .unwrap()
}
