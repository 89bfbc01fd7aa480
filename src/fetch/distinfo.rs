//! A port's distfiles as the framework sees them, and whether the cache
//! already holds them intact.
//!
//! Every framework's `distinfo` says, per key, a file's size and one or
//! more digests (bundled: `SIZE` and `SHA256`; pkgsrc: `Size` and `SHA1`,
//! `RMD160`, `SHA512`, `BLAKE2s`); the text is the framework's to parse
//! ([`crate::framework::Framework::parse_distinfo`]), the result is the
//! [`Distinfo`] here. A KEY is the distfile name prefixed with
//! `DIST_SUBDIR/` when the port sets one, and the file lives at
//! `distfiles_dir/KEY`. A file is verified against every digest distinfo
//! lists for it, all computed in one pass over the file ([`measure`]); an
//! entry with no size or no digest cannot vouch for anything.
//!
//! Checking here, in the main process, lets fetch-only skip the sandbox
//! entirely for a port whose files are all present and intact: the common
//! case of a warm cache.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

/// A digest algorithm of distinfo files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Algorithm {
    Sha1,
    Rmd160,
    Sha256,
    Sha512,
    Blake2s,
}

impl Algorithm {
    pub const ALL: [Algorithm; 5] =
        [Algorithm::Sha1, Algorithm::Rmd160, Algorithm::Sha256, Algorithm::Sha512, Algorithm::Blake2s];

    /// The name distinfo files use (pkgsrc's `digest` spells BLAKE2s so).
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Sha1 => "SHA1",
            Algorithm::Rmd160 => "RMD160",
            Algorithm::Sha256 => "SHA256",
            Algorithm::Sha512 => "SHA512",
            Algorithm::Blake2s => "BLAKE2s",
        }
    }

    pub fn from_name(name: &str) -> Option<Algorithm> {
        Algorithm::ALL.into_iter().find(|a| a.name() == name)
    }

    /// Length of the digest in hex digits.
    pub fn hex_len(self) -> usize {
        match self {
            Algorithm::Sha1 | Algorithm::Rmd160 => 40,
            Algorithm::Sha256 | Algorithm::Blake2s => 64,
            Algorithm::Sha512 => 128,
        }
    }

    fn hasher(self) -> Box<dyn sha2::digest::DynDigest> {
        match self {
            Algorithm::Sha1 => Box::new(sha1::Sha1::default()),
            Algorithm::Rmd160 => Box::new(ripemd::Ripemd160::default()),
            Algorithm::Sha256 => Box::new(sha2::Sha256::default()),
            Algorithm::Sha512 => Box::new(sha2::Sha512::default()),
            Algorithm::Blake2s => Box::new(blake2::Blake2s256::default()),
        }
    }
}

impl std::fmt::Display for Algorithm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One digest of a file, lower-case hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Digest {
    pub algorithm: Algorithm,
    pub hex: String,
}

impl Digest {
    /// `hex` checked for the algorithm's length and digits (any case).
    pub fn parse(algorithm: Algorithm, hex: &str) -> std::result::Result<Digest, String> {
        if hex.len() != algorithm.hex_len() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!("{algorithm} {hex:?} is not {} hex digits", algorithm.hex_len()));
        }
        Ok(Digest { algorithm, hex: hex.to_ascii_lowercase() })
    }
}

/// What distinfo says one file must be: its size and at least one digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Expected {
    pub size: u64,
    pub digests: Vec<Digest>,
}

/// A file as read: its size and its digests in the algorithms asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Measured {
    pub size: u64,
    pub digests: Vec<Digest>,
}

impl Expected {
    pub fn algorithms(&self) -> Vec<Algorithm> {
        self.digests.iter().map(|d| d.algorithm).collect()
    }

    /// What differs between `actual` and this: `SIZE` and the names of
    /// the algorithms whose digests differ; empty when it matches.
    pub fn differences(&self, actual: &Measured) -> Vec<&'static str> {
        let mut found = Vec::new();
        if actual.size != self.size {
            found.push("SIZE");
        }
        for want in &self.digests {
            if !actual.digests.iter().any(|got| got.algorithm == want.algorithm && got.hex == want.hex) {
                found.push(want.algorithm.name());
            }
        }
        found
    }

    /// `SIZE n SHA1 x RMD160 y`, as the log shows it.
    pub fn describe(&self) -> String {
        describe(self.size, &self.digests)
    }
}

impl Measured {
    pub fn describe(&self) -> String {
        describe(self.size, &self.digests)
    }
}

fn describe(size: u64, digests: &[Digest]) -> String {
    let mut text = format!("SIZE {size}");
    for digest in digests {
        text.push_str(&format!(" {} {}", digest.algorithm, digest.hex));
    }
    text
}

/// Size and digests of everything `reader` yields, in one pass.
pub fn measure(reader: &mut impl Read, algorithms: &[Algorithm]) -> std::io::Result<Measured> {
    let mut hashers: Vec<_> = algorithms.iter().map(|a| (*a, a.hasher())).collect();
    let mut buffer = vec![0u8; 64 << 10];
    let mut size = 0u64;
    loop {
        let n = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        size += n as u64;
        for (_, hasher) in &mut hashers {
            hasher.update(&buffer[..n]);
        }
    }
    let digests =
        hashers.into_iter().map(|(algorithm, hasher)| Digest { algorithm, hex: hex(&hasher.finalize()) }).collect();
    Ok(Measured { size, digests })
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One key of a distinfo file: what the file says about it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Entry {
    pub size: Option<u64>,
    pub digests: Vec<Digest>,
}

impl Entry {
    /// The entry as something a file can be checked against: `None`
    /// without a size or without any digest.
    pub fn expected(&self) -> Option<Expected> {
        let size = self.size?;
        (!self.digests.is_empty()).then(|| Expected { size, digests: self.digests.clone() })
    }
}

/// The distfile entries of one distinfo file by key (a framework's own
/// patches, which pkgsrc lists there too, are not distfiles and not in it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Distinfo {
    pub entries: BTreeMap<String, Entry>,
}

impl Distinfo {
    pub fn expected(&self, key: &str) -> Option<Expected> {
        self.entries.get(key).and_then(Entry::expected)
    }
}

/// The distinfo file at `path` parsed by the tree's framework; `None` when
/// there is none.
pub fn read(framework: &dyn crate::framework::Framework, path: &Path) -> Result<Option<Distinfo>> {
    match std::fs::read_to_string(path) {
        Ok(text) => framework.parse_distinfo(&text, path).map(Some),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
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
        actual: Measured,
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

impl Distfile {
    pub fn path(&self, distfiles_dir: &Path) -> PathBuf {
        distfiles_dir.join(&self.key)
    }

    /// Compares the cached file with distinfo: size first (cheap), then
    /// every digest distinfo lists, in one read of the file.
    pub fn state(&self, distfiles_dir: &Path) -> Result<State> {
        let path = self.path(distfiles_dir);
        let metadata = match std::fs::metadata(&path) {
            Ok(m) if m.is_file() => m,
            Ok(_) => return Ok(State::Missing),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(State::Missing),
            Err(e) => return Err(e).with_context(|| format!("cannot stat {}", path.display())),
        };
        let Some(expected) = &self.expected else { return Ok(State::Unverifiable) };
        if metadata.len() == expected.size {
            let actual = measure_file(&path, &expected.algorithms())?;
            if expected.differences(&actual).is_empty() {
                return Ok(State::Present);
            }
            return Ok(State::Mismatch { expected: expected.clone(), actual });
        }
        let actual = measure_file(&path, &expected.algorithms())?;
        Ok(State::Mismatch { expected: expected.clone(), actual })
    }
}

fn measure_file(path: &Path, algorithms: &[Algorithm]) -> Result<Measured> {
    let mut file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    measure(&mut file, algorithms).with_context(|| format!("cannot read {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA_A: &str = "ca978112ca1bbdcafac231b39a23dc4da786eff8147c4e72b9807785afee48bb";

    fn expected_a() -> Expected {
        Expected { size: 1, digests: vec![Digest { algorithm: Algorithm::Sha256, hex: SHA_A.into() }] }
    }

    #[test]
    fn every_algorithm_is_computed_in_one_pass() {
        let all = Algorithm::ALL;
        let measured = measure(&mut "abc".as_bytes(), &all).unwrap();
        assert_eq!(measured.size, 3);
        let hex: Vec<&str> = measured.digests.iter().map(|d| d.hex.as_str()).collect();
        // The published test vectors for "abc".
        assert_eq!(
            hex,
            [
                "a9993e364706816aba3e25717850c26c9cd0d89d",
                "8eb208f7e05d987a9b044a8e98c6b087f15a0bfc",
                "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
                "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
                 2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
                "508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982",
            ]
        );
        for (algorithm, digest) in all.iter().zip(&measured.digests) {
            assert_eq!(digest.hex.len(), algorithm.hex_len(), "{algorithm}");
            assert_eq!(Algorithm::from_name(algorithm.name()), Some(*algorithm));
        }
        assert_eq!(Algorithm::from_name("MD5"), None);
    }

    #[test]
    fn differences_name_the_size_and_each_algorithm_that_differs() {
        let expected = Expected {
            size: 3,
            digests: vec![
                Digest::parse(Algorithm::Sha1, "A9993E364706816ABA3E25717850C26C9CD0D89D").unwrap(),
                Digest::parse(Algorithm::Rmd160, &"0".repeat(40)).unwrap(),
            ],
        };
        let abc = measure(&mut "abc".as_bytes(), &expected.algorithms()).unwrap();
        assert_eq!(expected.differences(&abc), ["RMD160"]);
        let other = measure(&mut "abcd".as_bytes(), &expected.algorithms()).unwrap();
        assert_eq!(expected.differences(&other), ["SIZE", "SHA1", "RMD160"]);
        assert_eq!(
            expected.describe(),
            format!("SIZE 3 SHA1 a9993e364706816aba3e25717850c26c9cd0d89d RMD160 {}", "0".repeat(40))
        );
        assert!(Digest::parse(Algorithm::Sha1, "abc").is_err());
        assert!(Digest::parse(Algorithm::Sha1, &"g".repeat(40)).is_err());
        assert_eq!(Entry { size: Some(1), digests: vec![] }.expected(), None);
        assert_eq!(Entry { size: None, digests: expected.digests.clone() }.expected(), None);
    }

    #[test]
    fn states_of_cached_files() {
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path();
        std::fs::create_dir_all(cache.join("sub")).unwrap();
        let file = |key: &str, expected: Option<Expected>| Distfile { key: key.into(), expected };
        let files = [
            file("sub/a", Some(expected_a())),
            file("sub/b", Some(expected_a())),
            file("sub/c", None),
            file("sub/d", Some(expected_a())),
            file("sub/e", Some(expected_a())),
        ];
        std::fs::write(cache.join("sub/a"), "a").unwrap();
        std::fs::write(cache.join("sub/b"), "bb").unwrap();
        std::fs::write(cache.join("sub/c"), "c").unwrap();
        std::fs::write(cache.join("sub/e"), "e").unwrap();
        assert_eq!(files[0].state(cache).unwrap(), State::Present);
        match files[1].state(cache).unwrap() {
            State::Mismatch { expected, actual } => {
                assert_eq!(expected.size, 1);
                assert_eq!(actual.size, 2);
                assert_eq!(actual.digests[0].hex, crate::repo::fsutil::sha256_file(&cache.join("sub/b")).unwrap());
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(files[2].state(cache).unwrap(), State::Unverifiable);
        assert_eq!(files[3].state(cache).unwrap(), State::Missing);
        assert!(matches!(files[4].state(cache).unwrap(), State::Mismatch { actual: Measured { size: 1, .. }, .. }));
    }
}
