//! What a pkgsrc package's fetch needs, as `mk/fetch/` computes it, asked
//! of bmake with `-V` (no target runs, nothing is fetched):
//!
//! - `_ALLFILES`: `_DISTFILES` and `_PATCHFILES` (DISTFILES and PATCHFILES
//!   with `DIST_SUBDIR/` in front, sorted, duplicates removed): the keys,
//!   relative to DISTDIR (`bsd.fetch-vars.mk`);
//! - `SITES.<file>` per file (`<file>` its basename with `=` as `--`),
//!   which defaults to MASTER_SITES for a distfile and PATCH_SITES for a
//!   patch file (`fetch.mk`);
//! - `_MASTER_SITE_OVERRIDE` and `_MASTER_SITE_BACKUP` (MASTER_SITE_OVERRIDE
//!   and MASTER_SITE_BACKUP with `DIST_SUBDIR/` appended): do-fetch-file
//!   tries `override… SITES.<file>… backup…` in this order;
//! - `DISTINFO_FILE`, read by portsynth (below the tree only).
//!
//! A URL is made as `mk/fetch/fetch` makes it: a site starting with `-` is
//! the whole URL without the `-`, any other gets the file's basename
//! appended. Two things of pkgsrc are not done: MASTER_SORT_RANDOM (on by
//! default) shuffles the sites in a shell command, portsynth tries them in
//! their order; and a site computed by a shell command (`` `…` ``, the
//! dynamic `files/getsite.sh` of two packages of the 2014 tree) is left
//! out: `distfile_mirrors` serves such files.

use std::path::Path;

use anyhow::{bail, Context, Result};

use crate::fetch::distinfo::Distinfo;
use crate::sandbox::download::{check_key, Wanted};

/// First line of the list: says the rest is what [`args`] asked for.
const HEADER: &str = "portsynth-pkgsrc-fetch-list-1";

/// The bmake arguments that print the list, one `-V` per line of output.
pub fn args() -> Vec<String> {
    [
        format!("${{:U{HEADER}}}"),
        "${DISTINFO_FILE}".into(),
        "${_MASTER_SITE_OVERRIDE}".into(),
        "${_MASTER_SITE_BACKUP}".into(),
        "${_ALLFILES:@f@${f} ${SITES.${f:T:S/=/--/}}${.newline}@}".into(),
    ]
    .into_iter()
    .flat_map(|expression| ["-V".to_string(), expression])
    .collect()
}

/// The list [`args`] printed, with what the distinfo it names expects.
/// `tree`: where the ports tree is in the view the list was made in.
pub fn parse(output: &str, tree: &Path) -> Result<Vec<Wanted>> {
    let mut lines = output.lines();
    if lines.next().map(str::trim) != Some(HEADER) {
        bail!("the fetch list does not start with {HEADER}: {:?}", output.lines().next().unwrap_or(""));
    }
    let mut fixed = || lines.next().context("the fetch list ends early");
    let distinfo_file = fixed()?.trim().to_string();
    let overrides: Vec<String> = plain_sites(fixed()?);
    let backups: Vec<String> = plain_sites(fixed()?);
    let files: Vec<(&str, Vec<String>)> = lines
        .filter_map(|line| {
            let (key, sites) = line.trim().split_once(' ').unwrap_or((line.trim(), ""));
            (!key.is_empty()).then(|| (key, plain_sites(sites)))
        })
        .collect();
    if files.is_empty() {
        return Ok(Vec::new());
    }
    let distinfo = read_distinfo(tree, &distinfo_file)?.unwrap_or_default();
    files
        .into_iter()
        .map(|(key, sites)| {
            check_key(key).context("in _ALLFILES")?;
            let file = key.rsplit('/').next().unwrap_or(key);
            let urls = overrides.iter().chain(&sites).chain(&backups).map(|site| url(site, file)).collect();
            Ok(Wanted { key: key.to_string(), expected: distinfo.expected(key), urls })
        })
        .collect()
}

/// The URL `mk/fetch/fetch` makes of `site` for `file`.
fn url(site: &str, file: &str) -> String {
    match site.strip_prefix('-') {
        Some(whole) => whole.to_string(),
        None => format!("{site}{file}"),
    }
}

/// The words of a site list, without shell command substitutions.
fn plain_sites(text: &str) -> Vec<String> {
    let mut in_command = false;
    let mut sites = Vec::new();
    for word in text.split_whitespace() {
        let quotes = word.matches('`').count();
        if !in_command && quotes == 0 {
            sites.push(word.to_string());
        }
        if quotes % 2 == 1 {
            in_command = !in_command;
        }
    }
    sites
}

/// The distinfo at `path` (as bmake printed it), refused unless it is
/// below `tree`; `None` when the package has none.
fn read_distinfo(tree: &Path, path: &str) -> Result<Option<Distinfo>> {
    if path.is_empty() {
        return Ok(None);
    }
    let real = match Path::new(path).canonicalize() {
        Ok(real) => real,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("DISTINFO_FILE {path}")),
    };
    let root = tree.canonicalize().with_context(|| format!("cannot resolve the ports tree {}", tree.display()))?;
    if !real.starts_with(&root) {
        bail!("DISTINFO_FILE {path} is not in the ports tree {}: not read", tree.display());
    }
    crate::fetch::distinfo::read(&super::Pkgsrc, &real)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA1: &str = "dda696958c161bd71d6590152c94c4f705415727";

    fn tree_with_distinfo(text: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("misc/x")).unwrap();
        std::fs::write(dir.path().join("misc/x/distinfo"), text).unwrap();
        dir
    }

    fn list(distinfo: &Path, lines: &[&str]) -> String {
        let mut text = format!("{HEADER}\n{}\n", distinfo.display());
        for line in lines {
            text.push_str(line);
            text.push('\n');
        }
        text
    }

    #[test]
    fn the_arguments_ask_for_one_line_each_and_one_line_per_file() {
        let args = args();
        assert_eq!(args.iter().filter(|a| *a == "-V").count(), 5);
        assert!(args.contains(&"${_ALLFILES:@f@${f} ${SITES.${f:T:S/=/--/}}${.newline}@}".to_string()));
    }

    #[test]
    fn sites_come_in_pkgsrc_order_with_the_basename_appended() {
        let dir = tree_with_distinfo(&format!(
            "$NetBSD$\n\nSHA1 (sub/a-1.tgz) = {SHA1}\nSize (sub/a-1.tgz) = 3 bytes\nSHA1 (patch-aa) = {SHA1}\n"
        ));
        let distinfo = dir.path().join("misc/x/distinfo");
        let output = list(
            &distinfo,
            &[
                "http://override/sub/",
                "ftp://backup/distfiles/sub/ http://backup2/sub/",
                "sub/a-1.tgz http://up/a/ -http://get/a?id=1",
                " sub/p-1.diff `sh getsite.sh p-1.diff` http://patches/",
                "",
            ],
        );
        let wanted = parse(&output, dir.path()).unwrap();
        assert_eq!(wanted.len(), 2);
        assert_eq!(wanted[0].key, "sub/a-1.tgz");
        assert_eq!(
            wanted[0].urls,
            [
                "http://override/sub/a-1.tgz",
                "http://up/a/a-1.tgz",
                "http://get/a?id=1",
                "ftp://backup/distfiles/sub/a-1.tgz",
                "http://backup2/sub/a-1.tgz"
            ]
        );
        assert_eq!(wanted[0].expected.as_ref().unwrap().size, 3);
        assert_eq!(wanted[1].key, "sub/p-1.diff");
        assert_eq!(wanted[1].urls[1], "http://patches/p-1.diff", "the shell command is left out");
        assert_eq!(wanted[1].expected, None, "not in distinfo: refused when fetched");
    }

    #[test]
    fn no_files_need_no_distinfo_and_bad_lists_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(parse(&list(Path::new("/nowhere/distinfo"), &["", "", ""]), dir.path()).unwrap(), vec![]);
        let missing = parse(&list(&dir.path().join("misc/x/distinfo"), &["", "", "a-1.tgz http://up/"]), dir.path());
        assert_eq!(missing.unwrap()[0].expected, None);
        assert!(format!("{:#}", parse("figlet-2.2.5.tar.gz\n", dir.path()).unwrap_err()).contains(HEADER));
        assert!(format!("{:#}", parse(&format!("{HEADER}\n/x\n"), dir.path()).unwrap_err()).contains("ends early"));
        let escape = parse(&list(&dir.path().join("misc/x/distinfo"), &["", "", "../a-1.tgz http://up/"]), dir.path());
        assert!(format!("{:#}", escape.unwrap_err()).contains("\"../a-1.tgz\" is not a plain relative path"));
    }

    #[test]
    fn a_distinfo_outside_the_tree_is_not_read() {
        let outside = tree_with_distinfo(&format!("SHA1 (a-1.tgz) = {SHA1}\nSize (a-1.tgz) = 3 bytes\n"));
        let tree = tempfile::tempdir().unwrap();
        let output = list(&outside.path().join("misc/x/distinfo"), &["", "", "a-1.tgz http://up/"]);
        let err = format!("{:#}", parse(&output, tree.path()).unwrap_err());
        assert!(err.contains("is not in the ports tree"), "{err}");
        std::os::unix::fs::symlink(outside.path().join("misc"), tree.path().join("misc")).unwrap();
        let output = list(&tree.path().join("misc/x/distinfo"), &["", "", "a-1.tgz http://up/"]);
        let err = format!("{:#}", parse(&output, tree.path()).unwrap_err());
        assert!(err.contains("is not in the ports tree"), "a symlink out of the tree is refused too: {err}");
    }
}
