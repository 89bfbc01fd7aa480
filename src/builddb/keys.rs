//! Effective keys and the needs-build decision.
//!
//! A port's effective key folds together everything that can change what it
//! builds: its own files, the makefiles it reads outside its directory (the
//! framework and shared includes), its flavor, the build-affecting config and
//! the effective keys of all its dependencies. Because dependency keys are
//! folded in, a change anywhere below a port changes the port's key, so one
//! comparison per port is enough: editing a library rebuilds exactly the
//! library and what depends on it. The components are stored beside the key
//! so that the reason can be told: `changed`, `framework changed`,
//! `config changed`, or `dependency changed: cat/port`.

use std::collections::BTreeMap;

use rayon::prelude::*;

use super::crc::{crc_of_parts, CrcMemo, PartsCrc};
use super::PortState;
use crate::config::Config;
use crate::graph::NodeId;
use crate::ports::PortTree;

/// The inputs of one port as they are now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInputs {
    pub port_crc: u32,
    pub makefiles_crc: u32,
    pub config_crc: u32,
    pub dep_keys: BTreeMap<String, u32>,
    pub effective_key: u32,
}

impl KeyInputs {
    /// The state to store after a successful build from these inputs.
    pub fn to_state(&self, pkgname: &str, version: &str, package_file: &str) -> PortState {
        PortState {
            port_crc: self.port_crc,
            makefiles_crc: self.makefiles_crc,
            config_crc: self.config_crc,
            dep_keys: self.dep_keys.clone(),
            effective_key: self.effective_key,
            pkgname: pkgname.to_string(),
            version: version.to_string(),
            package_file: package_file.to_string(),
            last_build_id: None,
        }
    }
}

/// CRC of the config settings that change what a build produces.
pub fn config_crc(config: &Config) -> u32 {
    let mut parts: Vec<Vec<u8>> = vec![b"make_program".to_vec(), config.make_program.clone().into_bytes()];
    for (name, value) in &config.make_conf {
        parts.push(name.clone().into_bytes());
        parts.push(value.clone().into_bytes());
    }
    if let Some(lines) = &config.mk_conf {
        parts.push(b"mk_conf".to_vec());
        parts.push(lines.clone().into_bytes());
    }
    // A new kit is new mk files, a new bmake and a new mk.conf for every port.
    if let Some(kit) = &config.bootstrap_kit {
        parts.push(b"bootstrap_kit".to_vec());
        parts.push(super::crc::file_crc(kit).unwrap_or(0).to_le_bytes().to_vec());
    }
    crc_of_parts(parts.iter().map(Vec::as_slice))
}

/// Keys of every buildable node (None for nodes that are not buildable or
/// whose files cannot be read), computed dependencies first.
pub fn compute_keys(tree: &PortTree, memo: &CrcMemo, config_crc: u32) -> Vec<Option<KeyInputs>> {
    let buildable: Vec<bool> =
        (0..tree.len()).map(|n| tree.nodes[n].meta.is_some() && !tree.not_buildable.contains_key(&n)).collect();
    let own: Vec<Option<(u32, u32)>> =
        (0..tree.len()).into_par_iter().map(|n| if buildable[n] { own_crcs(tree, memo, n) } else { None }).collect();
    let zeros = vec![0.0; tree.len()];
    let no_ties = vec![0; tree.len()];
    let mut keys: Vec<Option<KeyInputs>> = vec![None; tree.len()];
    for node in tree.graph.schedule_order(&buildable, &zeros, &no_ties) {
        let Some((port_crc, makefiles_crc)) = own[node] else { continue };
        let mut dep_keys = BTreeMap::new();
        let mut complete = true;
        for edge in tree.graph.dependencies(node) {
            match &keys[edge.to] {
                Some(dep) => {
                    // The graph's label is the origin as text: no formatting per edge.
                    dep_keys.insert(tree.graph.label(edge.to).to_string(), dep.effective_key);
                }
                None => complete = false,
            }
        }
        if complete {
            let flavor = tree.nodes[node].origin.flavor.clone().unwrap_or_default();
            let effective_key = effective_key(port_crc, makefiles_crc, &flavor, config_crc, &dep_keys);
            keys[node] = Some(KeyInputs { port_crc, makefiles_crc, config_crc, dep_keys, effective_key });
        }
    }
    keys
}

/// (port directory CRC, CRC of the makefiles read from outside the port).
/// The makefile lists come sorted from the scan cache, so the sort is
/// skipped for them: on a whole pkgsrc tree these are 14,000 lists of a few
/// hundred paths, and sorting them was a quarter of a warm `status`.
fn own_crcs(tree: &PortTree, memo: &CrcMemo, node: NodeId) -> Option<(u32, u32)> {
    let meta = tree.nodes[node].meta.as_ref()?;
    let port_dir = tree.port_dir(node);
    let port_crc = memo.dir(&port_dir)?;
    let sorted_copy;
    let makefiles = if meta.makefiles.is_sorted() {
        &meta.makefiles
    } else {
        let mut copy = meta.makefiles.clone();
        copy.sort();
        sorted_copy = copy;
        &sorted_copy
    };
    let mut crc = PartsCrc::default();
    let mut last = None;
    for makefile in makefiles.iter().filter(|m| !crate::ports::cache::is_under(m, &port_dir)) {
        if last == Some(makefile) {
            continue;
        }
        last = Some(makefile);
        crc.part(makefile.as_os_str().as_encoded_bytes());
        crc.part(&memo.file(makefile)?.to_le_bytes());
    }
    Some((port_crc, crc.finish()))
}

fn effective_key(port: u32, makefiles: u32, flavor: &str, config: u32, deps: &BTreeMap<String, u32>) -> u32 {
    let head = [&port.to_le_bytes()[..], &makefiles.to_le_bytes(), flavor.as_bytes(), &config.to_le_bytes()];
    let dep_keys: Vec<[u8; 4]> = deps.values().map(|key| key.to_le_bytes()).collect();
    let deps = deps.keys().zip(&dep_keys).flat_map(|(origin, key)| [origin.as_bytes(), &key[..]]);
    crc_of_parts(head.into_iter().chain(deps))
}

/// Why a port must be built, or None when its package is current.
pub fn needs_build(current: &KeyInputs, stored: Option<&PortState>, package_present: bool) -> Option<String> {
    let Some(stored) = stored else {
        return Some("new".into());
    };
    if stored.effective_key == current.effective_key {
        return (!package_present).then(|| "package missing".into());
    }
    if stored.port_crc != current.port_crc {
        return Some("changed".into());
    }
    if stored.makefiles_crc != current.makefiles_crc {
        return Some("framework changed".into());
    }
    if stored.config_crc != current.config_crc {
        return Some("config changed".into());
    }
    let changed_dep = current
        .dep_keys
        .iter()
        .find(|(origin, key)| stored.dep_keys.get(*origin) != Some(key))
        .map(|(origin, _)| origin.clone())
        .or_else(|| stored.dep_keys.keys().find(|o| !current.dep_keys.contains_key(*o)).cloned());
    Some(match changed_dep {
        Some(origin) => format!("dependency changed: {origin}"),
        None => "changed".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs(port: u32, makefiles: u32, config: u32, deps: &[(&str, u32)]) -> KeyInputs {
        let dep_keys: BTreeMap<String, u32> = deps.iter().map(|(o, k)| (o.to_string(), *k)).collect();
        let effective_key = effective_key(port, makefiles, "", config, &dep_keys);
        KeyInputs { port_crc: port, makefiles_crc: makefiles, config_crc: config, dep_keys, effective_key }
    }

    fn stored(i: &KeyInputs) -> PortState {
        i.to_state("x-1", "1", "x-1.pkg")
    }

    #[test]
    fn each_reason_is_told_apart() {
        let base = inputs(1, 2, 3, &[("devel/a", 10), ("devel/b", 20)]);
        let state = stored(&base);
        assert_eq!(needs_build(&base, None, false).as_deref(), Some("new"));
        assert_eq!(needs_build(&base, Some(&state), true), None);
        assert_eq!(needs_build(&base, Some(&state), false).as_deref(), Some("package missing"));
        let cases = [
            (inputs(9, 2, 3, &[("devel/a", 10), ("devel/b", 20)]), "changed"),
            (inputs(1, 9, 3, &[("devel/a", 10), ("devel/b", 20)]), "framework changed"),
            (inputs(1, 2, 9, &[("devel/a", 10), ("devel/b", 20)]), "config changed"),
            (inputs(1, 2, 3, &[("devel/a", 10), ("devel/b", 21)]), "dependency changed: devel/b"),
            (inputs(1, 2, 3, &[("devel/a", 10)]), "dependency changed: devel/b"),
            (inputs(1, 2, 3, &[("devel/a", 10), ("devel/b", 20), ("devel/c", 1)]), "dependency changed: devel/c"),
        ];
        for (current, want) in cases {
            assert_eq!(needs_build(&current, Some(&state), true).as_deref(), Some(want));
        }
    }

    #[test]
    fn flavor_and_dependency_keys_change_the_effective_key() {
        let deps = BTreeMap::from([("a/b".to_string(), 1)]);
        let plain = effective_key(1, 2, "", 3, &deps);
        assert_ne!(plain, effective_key(1, 2, "full", 3, &deps));
        assert_ne!(plain, effective_key(1, 2, "", 3, &BTreeMap::from([("a/b".to_string(), 2)])));
        assert_eq!(plain, effective_key(1, 2, "", 3, &deps));
    }
}
