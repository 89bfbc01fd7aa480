//! pkgsrc's `distinfo` files (written by `mk/checksum/distinfo.awk`):
//!
//! ```text
//! $NetBSD: distinfo,v 1.11 2012/08/15 17:45:45 drochner Exp $
//!
//! SHA1 (figlet-2.2.5.tar.gz) = dda696958c161bd71d6590152c94c4f705415727
//! RMD160 (figlet-2.2.5.tar.gz) = 37abd6fc6ffdd7c0057850425640fe544278a2d9
//! Size (figlet-2.2.5.tar.gz) = 233201 bytes
//! SHA1 (patch-aa) = 7ff721d16e0bbc61dae8d397944cb518e6330325
//! ```
//!
//! Keys are relative to DISTDIR (`DIST_SUBDIR/name` when the package sets
//! one). Distfiles and PATCHFILES get every digest of
//! `_DIGEST_ALGORITHMS` plus `Size`; the package's own patches
//! (`PATCHDIR/patch-*`) get `_PATCH_DIGEST_ALGORITHMS` only and no `Size`,
//! which is how they are told apart here (the 2014 tree's 10,835 distinfo
//! files hold no distfile without `Size`; `devel/patch`'s
//! `patch-2.7.1.tar.xz` is a distfile). The file is data for portsynth, so
//! it is read strictly: a line that is not `ALGORITHM (key) = value`, an
//! unknown algorithm, a digest of the wrong length, a key that leaves the
//! distfiles directory, or a key given twice for one algorithm is an error
//! naming the file and the line.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::fetch::distinfo::{Algorithm, Digest, Distinfo, Entry};
use crate::framework::References;
use crate::sandbox::download::check_key;

/// What `Size` is called where a digest's algorithm would be.
const SIZE: &str = "Size";

/// The distfile entries of a pkgsrc distinfo (`file` names it in errors).
pub fn parse(text: &str, file: &Path) -> Result<Distinfo> {
    let mut entries: BTreeMap<String, Entry> = BTreeMap::new();
    let mut first_seen: HashMap<(String, String), (usize, String)> = HashMap::new();
    let mut data_seen = false;
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        let at = || format!("{} line {number}", file.display());
        if line.trim().is_empty() {
            continue;
        }
        if line.starts_with("$NetBSD") && !data_seen {
            continue;
        }
        data_seen = true;
        let (name, key, value) = split(line).with_context(|| format!("{}: {line:?}", at()))?;
        check_key(key).with_context(at)?;
        let seen = (name.to_string(), key.to_string());
        if let Some((first, old)) = first_seen.get(&seen) {
            let what = if old == value { "duplicate" } else { "conflicting" };
            bail!("{}: {what} {name} for {key} (first given at line {first}: {old:?}, here {value:?})", at());
        }
        first_seen.insert(seen, (number, value.to_string()));
        let entry = entries.entry(key.to_string()).or_default();
        if name == SIZE {
            entry.size = Some(size(value).with_context(|| format!("{}: Size of {key}", at()))?);
            continue;
        }
        let algorithm = Algorithm::from_name(name).with_context(|| {
            let known: Vec<&str> = Algorithm::ALL.iter().map(|a| a.name()).collect();
            format!("{}: unknown algorithm {name:?} for {key} (known: {}, Size)", at(), known.join(", "))
        })?;
        let digest = Digest::parse(algorithm, value).map_err(|e| anyhow::anyhow!("{}: {key}: {e}", at()))?;
        entry.digests.push(digest);
    }
    entries.retain(|key, entry| !is_own_patch(key, entry));
    Ok(Distinfo { entries })
}

/// `ALGORITHM (key) = value`; keys may hold parentheses and spaces.
fn split(line: &str) -> Result<(&str, &str, &str)> {
    let (name, rest) = line.split_once(" (").context("not `ALGORITHM (file) = value`")?;
    let (key, value) = rest.rsplit_once(") = ").context("not `ALGORITHM (file) = value`")?;
    if name.is_empty() || name.contains(char::is_whitespace) || value.trim().is_empty() {
        bail!("not `ALGORITHM (file) = value`");
    }
    Ok((name, key, value.trim()))
}

/// `233201 bytes`, or `233201` (a few files of the 2014 tree;
/// `mk/fetch/fetch` reads the unit as optional).
fn size(value: &str) -> Result<u64> {
    let number = value.strip_suffix(" bytes").unwrap_or(value);
    number.parse().with_context(|| format!("{value:?} is not `N bytes`"))
}

/// One of the package's own patches (`patch-*` in PATCHDIR): digests and
/// no size.
fn is_own_patch(key: &str, entry: &Entry) -> bool {
    key.starts_with("patch-") && !key.contains('/') && entry.size.is_none()
}

/// Every distfile key of every package's `distinfo` in the tree at
/// `ports_dir` (`CATEGORY/PACKAGE/distinfo`), whatever the options and
/// whichever package reads it (`DISTINFO_FILE` may name another package's,
/// always one of these): a superset of what any build of the tree fetches.
/// A distinfo that does not parse makes the set unknown.
pub fn referenced(ports_dir: &Path) -> Result<References> {
    let mut references = References { keys: HashSet::new(), unknown: Vec::new() };
    for category in sorted_dirs(ports_dir)? {
        for package in sorted_dirs(&category)? {
            let path = package.join("distinfo");
            match crate::fetch::distinfo::read(&super::Pkgsrc, &path) {
                Ok(Some(distinfo)) => references.keys.extend(distinfo.entries.into_keys()),
                Ok(None) => {}
                Err(e) => references.unknown.push(format!("{e:#}")),
            }
        }
    }
    Ok(references)
}

/// The subdirectories of `dir` (not following symlinks), sorted; hidden
/// ones left out.
fn sorted_dirs(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    let mut dirs = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
        if entry.file_type().is_ok_and(|t| t.is_dir()) && !entry.file_name().to_string_lossy().starts_with('.') {
            dirs.push(entry.path());
        }
    }
    dirs.sort();
    Ok(dirs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fetch::distinfo::Expected;

    const FIGLET: &str = "$NetBSD: distinfo,v 1.11 2012/08/15 17:45:45 drochner Exp $

SHA1 (figlet-2.2.5.tar.gz) = dda696958c161bd71d6590152c94c4f705415727
RMD160 (figlet-2.2.5.tar.gz) = 37abd6fc6ffdd7c0057850425640fe544278a2d9
Size (figlet-2.2.5.tar.gz) = 233201 bytes
SHA1 (patch-aa) = 7ff721d16e0bbc61dae8d397944cb518e6330325
SHA1 (patch-ab) = e798522fd5842afb2686a5265973f94c4b5a366b
SHA1 (patch-utf8.h) = 928db9ed97546cc7b2f31f2f196ccdf93187d53a
";

    fn file() -> &'static Path {
        Path::new("/t/misc/figlet/distinfo")
    }

    fn error(text: &str) -> String {
        format!("{:#}", parse(text, file()).expect_err(text))
    }

    #[test]
    fn distfiles_have_every_digest_and_the_size_and_own_patches_are_left_out() {
        let parsed = parse(FIGLET, file()).unwrap();
        assert_eq!(parsed.entries.keys().collect::<Vec<_>>(), ["figlet-2.2.5.tar.gz"]);
        let expected = parsed.expected("figlet-2.2.5.tar.gz").unwrap();
        assert_eq!(
            expected,
            Expected {
                size: 233201,
                digests: vec![
                    Digest::parse(Algorithm::Sha1, "dda696958c161bd71d6590152c94c4f705415727").unwrap(),
                    Digest::parse(Algorithm::Rmd160, "37abd6fc6ffdd7c0057850425640fe544278a2d9").unwrap(),
                ]
            }
        );
    }

    #[test]
    fn subdirectories_newer_algorithms_and_patchfiles_named_patch_are_distfiles() {
        let sha512 = "ab".repeat(64);
        let blake2s = "cd".repeat(32);
        let text = format!(
            "$NetBSD$\n\nSHA512 (gnome/x-1 (2).tar.xz) = {sha512}\nBLAKE2s (gnome/x-1 (2).tar.xz) = {blake2s}\n\
             Size (gnome/x-1 (2).tar.xz) = 5 bytes\nSHA1 (patch-2.7.1.tar.xz) = {}\nSize (patch-2.7.1.tar.xz) = 9 bytes\n",
            "e".repeat(40)
        );
        let parsed = parse(&text, file()).unwrap();
        assert_eq!(parsed.entries.keys().collect::<Vec<_>>(), ["gnome/x-1 (2).tar.xz", "patch-2.7.1.tar.xz"]);
        let algorithms = parsed.expected("gnome/x-1 (2).tar.xz").unwrap().algorithms();
        assert_eq!(algorithms, [Algorithm::Sha512, Algorithm::Blake2s]);
        assert_eq!(parsed.expected("patch-2.7.1.tar.xz").unwrap().size, 9);
    }

    #[test]
    fn an_entry_without_a_digest_or_a_size_vouches_for_nothing() {
        let text = format!("Size (a.tgz) = 3 bytes\nSHA1 (b.tgz) = {}\nSize (c.tgz) = 5\n", "0".repeat(40));
        let parsed = parse(&text, file()).unwrap();
        assert_eq!(parsed.entries.len(), 3, "all are distfiles (purge keeps them)");
        assert_eq!(parsed.entries["c.tgz"].size, Some(5), "`bytes` may be left out");
        assert_eq!((parsed.expected("a.tgz"), parsed.expected("b.tgz")), (None, None));
    }

    #[test]
    fn bad_input_is_an_error_naming_the_file_and_the_line() {
        let sha1 = "0".repeat(40);
        let cases = [
            (
                format!("$NetBSD$\n\nMD5 (a.tgz) = {}\n", "0".repeat(32)),
                "line 3",
                "unknown algorithm \"MD5\" for a.tgz",
            ),
            ("SHA1 (a.tgz) = 12345\n".to_string(), "line 1", "SHA1 \"12345\" is not 40 hex digits"),
            (format!("SHA1 (a.tgz) = {}\n", "x".repeat(40)), "line 1", "is not 40 hex digits"),
            (
                "Size (a.tgz) = 3 bytes\nSize (a.tgz) = 4 bytes\n".to_string(),
                "line 2",
                "conflicting Size for a.tgz (first given at line 1",
            ),
            (format!("SHA1 (a.tgz) = {sha1}\n\nSHA1 (a.tgz) = {sha1}\n"), "line 3", "duplicate SHA1 for a.tgz"),
            ("Size (a.tgz) = 3 kB\n".to_string(), "line 1", "\"3 kB\" is not `N bytes`"),
            ("Size (a.tgz) = many bytes\n".to_string(), "line 1", "is not `N bytes`"),
            ("Size (a.tgz) = -3 bytes\n".to_string(), "line 1", "is not `N bytes`"),
            ("SHA1 a.tgz = 1\n".to_string(), "line 1", "not `ALGORITHM (file) = value`"),
            (format!("SHA1 (a.tgz) = {sha1}\n$NetBSD$\n"), "line 2", "not `ALGORITHM (file) = value`"),
            (format!("SHA1 (../a.tgz) = {sha1}\n"), "line 1", "\"../a.tgz\" is not a plain relative path"),
            (format!("SHA1 (/etc/a) = {sha1}\n"), "line 1", "is not a plain relative path"),
        ];
        for (text, line, message) in cases {
            let err = error(&text);
            assert!(err.contains(&format!("/t/misc/figlet/distinfo {line}")), "{text:?}: {err}");
            assert!(err.contains(message), "{text:?}: {err}");
        }
    }

    #[test]
    fn the_referenced_set_is_every_distinfo_of_the_tree_without_own_patches() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path();
        let write = |path: &str, text: &str| {
            std::fs::create_dir_all(tree.join(path).parent().unwrap()).unwrap();
            std::fs::write(tree.join(path), text).unwrap();
        };
        write("misc/figlet/distinfo", FIGLET);
        let sha1 = "0".repeat(40);
        write("misc/other/distinfo", &format!("SHA1 (sub/o-1.tgz) = {sha1}\nSize (sub/o-1.tgz) = 1 bytes\n"));
        write("misc/none/Makefile", "");
        write("mk/bsd.pkg.mk", "");
        let references = referenced(tree).unwrap();
        let mut keys: Vec<&String> = references.keys.iter().collect();
        keys.sort();
        assert_eq!(keys, ["figlet-2.2.5.tar.gz", "sub/o-1.tgz"]);
        assert!(references.unknown.is_empty());
        write("misc/broken/distinfo", "garbage\n");
        let references = referenced(tree).unwrap();
        assert_eq!(references.unknown.len(), 1);
        assert!(references.unknown[0].contains("misc/broken/distinfo line 1"), "{:?}", references.unknown);
    }
}
