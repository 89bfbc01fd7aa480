//! A port's distfiles as the framework sees them, and whether the cache
//! already holds them intact.
//!
//! `distinfo` records `SHA256 (KEY) = hex` and `SIZE (KEY) = bytes`, where
//! KEY is the distfile name prefixed with `DIST_SUBDIR/` when the port sets
//! one (the same rule as `Mk/Scripts/common.sh`), and the file lives at
//! `distfiles_dir/KEY`. Checking here, in the main process, lets fetch-only
//! skip the sandbox entirely for a port whose files are all present and
//! intact: the common case of a warm cache.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use crate::ports::PortMeta;

/// What distinfo says one file must be.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Expected {
    pub sha256: String,
    pub size: u64,
}

/// One distfile of one port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Distfile {
    /// `DIST_SUBDIR/name` or `name`: the distinfo key, the path below the
    /// distfiles directory and the name of its lock.
    pub key: String,
    /// `None` when distinfo has no complete entry (checksum will fail).
    pub expected: Option<Expected>,
}

/// The state of one distfile in the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    Present,
    Missing,
    /// The file exists but differs from distinfo.
    Mismatch {
        expected: Expected,
        actual: Expected,
    },
    /// The file exists but distinfo cannot vouch for it.
    Unverifiable,
}

/// The distinfo key of `file` for a port with `dist_subdir`.
pub fn key(dist_subdir: &str, file: &str) -> String {
    if dist_subdir.is_empty() {
        file.to_string()
    } else {
        format!("{dist_subdir}/{file}")
    }
}

/// The port's distfiles with what its `distinfo` (in `port_dir`) expects.
/// A missing distinfo is not an error here: the files are then
/// unverifiable and the framework's checksum phase reports it.
pub fn distfiles(meta: &PortMeta, port_dir: &Path) -> Result<Vec<Distfile>> {
    let path = port_dir.join("distinfo");
    let entries = match std::fs::read_to_string(&path) {
        Ok(text) => parse(&text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => HashMap::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    Ok(meta
        .distfiles
        .iter()
        .map(|file| {
            let key = key(&meta.dist_subdir, file);
            Distfile { expected: entries.get(&key).cloned(), key }
        })
        .collect())
}

/// Parses distinfo text into key → expected digest and size; keys missing
/// either line are left out.
pub fn parse(text: &str) -> HashMap<String, Expected> {
    let mut sha: HashMap<String, String> = HashMap::new();
    let mut size: HashMap<String, u64> = HashMap::new();
    for line in text.lines() {
        let Some((algo, rest)) = line.split_once(" (") else { continue };
        let Some((key, value)) = rest.rsplit_once(") = ") else { continue };
        match algo.trim() {
            "SHA256" => {
                sha.insert(key.to_string(), value.trim().to_ascii_lowercase());
            }
            "SIZE" => {
                if let Ok(bytes) = value.trim().parse() {
                    size.insert(key.to_string(), bytes);
                }
            }
            _ => {}
        }
    }
    sha.into_iter().filter_map(|(key, sha256)| size.get(&key).map(|&size| (key, Expected { sha256, size }))).collect()
}

impl Distfile {
    pub fn path(&self, distfiles_dir: &Path) -> PathBuf {
        distfiles_dir.join(&self.key)
    }

    /// Compares the cached file with distinfo: size first (cheap), then the
    /// SHA256 of the whole file.
    pub fn state(&self, distfiles_dir: &Path) -> Result<State> {
        let path = self.path(distfiles_dir);
        let metadata = match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => m,
            Ok(_) => return Ok(State::Missing),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::Missing),
            Err(e) => return Err(e).with_context(|| format!("cannot stat {}", path.display())),
        };
        let Some(expected) = &self.expected else { return Ok(State::Unverifiable) };
        let actual_size = metadata.len();
        let actual_sha =
            if actual_size == expected.size { crate::repo::fsutil::sha256_file(&path)? } else { String::new() };
        if actual_size == expected.size && actual_sha == expected.sha256 {
            return Ok(State::Present);
        }
        let sha256 = if actual_sha.is_empty() { crate::repo::fsutil::sha256_file(&path)? } else { actual_sha };
        Ok(State::Mismatch { expected: expected.clone(), actual: Expected { sha256, size: actual_size } })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(distfiles: &[&str], dist_subdir: &str) -> PortMeta {
        PortMeta {
            origin: crate::ports::Origin::parse("misc/x").unwrap(),
            pkgname: "x-1".into(),
            pkgversion: "1".into(),
            pkgfile: "/p/All/x-1.pkg".into(),
            comment: String::new(),
            depends: vec![String::new(); 6],
            ignore: None,
            flavors: vec![],
            distfiles: distfiles.iter().map(|s| s.to_string()).collect(),
            dist_subdir: dist_subdir.into(),
            makefiles: vec![],
            variant: vec![],
            bootstrap_pkg: false,
        }
    }

    const SHA_A: &str = "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb";

    #[test]
    fn parses_keys_with_and_without_subdir_and_ignores_noise() {
        let text = format!(
            "TIMESTAMP = 1\nSHA256 (a.tar.gz) = {SHA_A}\nSIZE (a.tar.gz) = 1\n\
             SHA256 (sub/b (1).tgz) = {}\nSIZE (sub/b (1).tgz) = 22\nSHA256 (only-sha) = 00\ngarbage\n",
            SHA_A.to_uppercase()
        );
        let parsed = parse(&text);
        assert_eq!(parsed.len(), 2);
        assert_eq!(parsed["a.tar.gz"], Expected { sha256: SHA_A.into(), size: 1 });
        assert_eq!(parsed["sub/b (1).tgz"].size, 22);
        assert_eq!(parsed["sub/b (1).tgz"].sha256, SHA_A);
    }

    #[test]
    fn states_of_cached_files() {
        let dir = tempfile::tempdir().unwrap();
        let port = dir.path().join("port");
        let cache = dir.path().join("cache");
        std::fs::create_dir_all(port.clone()).unwrap();
        std::fs::create_dir_all(cache.join("sub")).unwrap();
        std::fs::write(
            port.join("distinfo"),
            format!("SHA256 (sub/a) = {SHA_A}\nSIZE (sub/a) = 1\nSHA256 (sub/b) = {SHA_A}\nSIZE (sub/b) = 1\n"),
        )
        .unwrap();
        let files = distfiles(&meta(&["a", "b", "c", "d"], "sub"), &port).unwrap();
        assert_eq!(files.iter().map(|f| f.key.as_str()).collect::<Vec<_>>(), ["sub/a", "sub/b", "sub/c", "sub/d"]);
        std::fs::write(cache.join("sub/a"), "a").unwrap();
        std::fs::write(cache.join("sub/b"), "bb").unwrap();
        std::fs::write(cache.join("sub/c"), "c").unwrap();
        assert_eq!(files[0].state(&cache).unwrap(), State::Present);
        match files[1].state(&cache).unwrap() {
            State::Mismatch { expected, actual } => {
                assert_eq!(expected.size, 1);
                assert_eq!(actual.size, 2);
                assert_eq!(actual.sha256, crate::repo::fsutil::sha256_file(&cache.join("sub/b")).unwrap());
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(files[2].state(&cache).unwrap(), State::Unverifiable);
        assert_eq!(files[3].state(&cache).unwrap(), State::Missing);
    }

    #[test]
    fn no_distinfo_means_unverifiable_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let files = distfiles(&meta(&["a"], ""), dir.path()).unwrap();
        assert_eq!(files, vec![Distfile { key: "a".into(), expected: None }]);
    }
}
