//! Dependency resolution of a scanned pkgsrc tree, exactly as pbulk's `pbulk-resolve`
//! (`pkgtools/pbulk/files/pbulk/presolve/presolve.c`, matching in `lib/match.c`), plus
//! the state propagation of `pbulk-build`'s initialisation (`pbuild/jobs.c`).
//!
//! The rules (`docs/FRAMEWORKS.md` has them with their sources):
//! - Every `pattern:../../cat/pkg` entry of a record's `ALL_DEPENDS`, in order, resolves
//!   to the best PKGNAME among the candidate records that the pattern matches (pkgsrc
//!   patterns: `{a,b}` alternatives, `<`, `<=`, `>`, `>=` dewey ranges, globs, exact
//!   names; matching and comparison by the `pkgsrc` crate, plus the one malformation
//!   pbulk tolerates, see [`super::pattern`]). pbulk-resolve's candidates
//!   are all records of the scan, wherever they are ([`Scope::Tree`]); the pkgpath of
//!   the entry only yields a warning when the winner lives elsewhere.
//!   [`Scope::Pkgpath`] restricts the candidates to the records scanned at that pkgpath.
//! - Best is pbulk's `pkg_order`: the higher version by dewey comparison (`nb`
//!   revisions last), on equal versions the byte-wise greater PKGNAME.
//! - An entry whose pattern an already resolved dependency of the same record matches
//!   adds nothing (pbulk assumes the first match was the stricter one).
//! - An entry that no candidate matches is an error of that record; pbulk-resolve then
//!   fails as a whole, with `-p` it writes the record without `DEPENDS`. An entry that
//!   is not `pattern:../../pkgpath` is an error as well (fatal to pbulk even with `-p`).
//! - A record that already carries `DEPENDS` (a presolve file read again) keeps it.
//! - [`Status`]: a record with `PKG_SKIP_REASON` or `PKG_FAIL_REASON` is not built
//!   ("prefailed"), and neither is anything that depends on it, directly or not
//!   ("indirect-prefailed"); records with errors and records on a dependency cycle
//!   (pbulk-build stops at the first) are not built either, nor their dependents.

use std::collections::HashMap;
use std::fmt;

use pkgsrc::Pattern;

use super::pattern::Matcher;

/// One scan record: one PKGNAME (a pkgpath yields one per MULTI_VERSION variant).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Record {
    pub pkgname: String,
    /// `PKG_LOCATION`, the pkgpath it was scanned at (`cat/pkg`).
    pub pkg_location: String,
    /// The raw `ALL_DEPENDS` value: blank-separated `pattern:../../cat/pkg` entries.
    pub all_depends: String,
    /// `PKG_SKIP_REASON`, empty when none.
    pub pkg_skip_reason: String,
    /// `PKG_FAIL_REASON`, empty when none.
    pub pkg_fail_reason: String,
    /// An already resolved `DEPENDS` (from a presolve file); kept as it is.
    pub depends: Option<Vec<String>>,
}

impl Record {
    /// The record of a `pbulk-index` record as the `pkgsrc` crate parses it.
    pub fn from_scan_index(index: &pkgsrc::ScanIndex) -> Record {
        Record {
            pkgname: index.pkgname.pkgname().to_string(),
            pkg_location: index.pkg_location.as_ref().map(|p| p.as_str().to_string()).unwrap_or_default(),
            all_depends: index.all_depends.as_ref().map(|d| d.as_str().to_string()).unwrap_or_default(),
            pkg_skip_reason: index.pkg_skip_reason.clone().unwrap_or_default(),
            pkg_fail_reason: index.pkg_fail_reason.clone().unwrap_or_default(),
            depends: index.resolved_depends.as_ref().map(|d| d.iter().map(|n| n.pkgname().to_string()).collect()),
        }
    }
}

/// Which records a dependency entry may resolve to.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Scope {
    /// Any record of the scan, as pbulk-resolve does.
    #[default]
    Tree,
    /// Only the records scanned at the entry's pkgpath.
    Pkgpath,
}

/// A dependency entry that did not resolve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResolveError {
    /// No candidate matches the pattern.
    NoMatch { pkgname: String, pattern: String, pkgpath: String, scanned_there: usize },
    /// The entry is not `pattern:../../cat/pkg`.
    BadEntry { pkgname: String, entry: String },
    /// The pattern does not parse.
    BadPattern { pkgname: String, pattern: String, pkgpath: String, message: String },
    /// The record's `DEPENDS` names a package that is not in the scan.
    UnknownDepends { pkgname: String, depends: String },
}

impl fmt::Display for ResolveError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResolveError::NoMatch { pkgname, pattern, pkgpath, scanned_there } => {
                write!(f, "{pkgname}: no package at ../../{pkgpath} matches {pattern}")?;
                match scanned_there {
                    0 => write!(f, " (nothing was scanned at {pkgpath})"),
                    _ => Ok(()),
                }
            }
            ResolveError::BadEntry { pkgname, entry } => {
                write!(f, "{pkgname}: dependency `{entry}` is not pattern:../../category/package")
            }
            ResolveError::BadPattern { pkgname, pattern, pkgpath, message } => {
                write!(f, "{pkgname}: invalid pattern {pattern} for ../../{pkgpath}: {message}")
            }
            ResolveError::UnknownDepends { pkgname, depends } => {
                write!(f, "{pkgname}: DEPENDS names {depends}, which is not in the scan")
            }
        }
    }
}

impl std::error::Error for ResolveError {}

/// Something pbulk-resolve -v says without failing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Warning {
    /// The best match of `pattern` is `best`, which was not scanned at `pkgpath`
    /// (pbulk: "Best matching %s differs from location %s for dependency %s of package %s").
    ElsewhereThanPkgpath { pkgname: String, pattern: String, pkgpath: String, best: String },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::ElsewhereThanPkgpath { pkgname, pattern, pkgpath, best } => write!(
                f,
                "Best matching {best} differs from location {pkgpath} for dependency {pattern} of package {pkgname}"
            ),
        }
    }
}

/// Whether a record can be built, after propagation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Status {
    Buildable,
    /// `PKG_SKIP_REASON` (pbulk: prefailed).
    Skip(String),
    /// `PKG_FAIL_REASON` (pbulk: prefailed).
    Fail(String),
    /// A dependency entry did not resolve.
    Unresolved,
    /// On a dependency cycle (the records of the cycle, in order).
    Cycle(Vec<usize>),
    /// The dependency `via` (a record index) is not buildable (pbulk: indirect-prefailed).
    Indirect {
        via: usize,
    },
}

/// The resolution of one record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resolved {
    /// The records its dependencies resolved to, in `ALL_DEPENDS` order, once each.
    pub depends: Vec<usize>,
    pub errors: Vec<ResolveError>,
    pub warnings: Vec<Warning>,
}

/// The resolution of a whole scan, record for record (same indices as the input).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resolution {
    pub records: Vec<Resolved>,
    pub status: Vec<Status>,
}

impl Resolution {
    /// Every error, in record order.
    pub fn errors(&self) -> impl Iterator<Item = &ResolveError> {
        self.records.iter().flat_map(|r| r.errors.iter())
    }

    /// The record whose own state made `index` not buildable (follows `Indirect`).
    pub fn root_cause(&self, mut index: usize) -> usize {
        let mut steps = 0;
        while let Status::Indirect { via } = self.status[index] {
            index = via;
            steps += 1;
            if steps > self.status.len() {
                break;
            }
        }
        index
    }
}

/// pbulk's `quick_pkg_match` condition in `find_match`: patterns whose first four bytes
/// are alphanumeric or `-` and that have no `{` are looked up in a hash chain (newest
/// record first), all others by a scan of every record (oldest first). The order only
/// matters for identical PKGNAMEs, where the last one considered wins.
fn hashed_lookup(pattern: &str) -> bool {
    let b = pattern.as_bytes();
    b.len() >= 4 && b[..4].iter().all(|&c| c.is_ascii_alphanumeric() || c == b'-') && !pattern.contains('{')
}

fn first_two(name: &str) -> [u8; 2] {
    let b = name.as_bytes();
    [b.first().copied().unwrap_or(0), b.get(1).copied().unwrap_or(0)]
}

struct Index<'a> {
    records: &'a [Record],
    /// Record indices by the first two bytes of their PKGNAME (a pattern that starts
    /// with two alphanumerics or `-` only matches names that start with them).
    by_prefix: HashMap<[u8; 2], Vec<usize>>,
    by_location: HashMap<&'a str, Vec<usize>>,
    by_name: HashMap<&'a str, usize>,
    patterns: HashMap<String, Result<Matcher, String>>,
    /// Orders candidates by `pkg_order` once a matcher has accepted them.
    any: Pattern,
}

impl<'a> Index<'a> {
    fn new(records: &'a [Record]) -> Index<'a> {
        let mut by_prefix: HashMap<[u8; 2], Vec<usize>> = HashMap::new();
        let mut by_location: HashMap<&str, Vec<usize>> = HashMap::new();
        let mut by_name = HashMap::new();
        for (i, r) in records.iter().enumerate() {
            by_prefix.entry(first_two(&r.pkgname)).or_default().push(i);
            by_location.entry(r.pkg_location.as_str()).or_default().push(i);
            by_name.entry(r.pkgname.as_str()).or_insert(i);
        }
        let any = Pattern::new("*").expect("`*` is a pattern");
        Index { records, by_prefix, by_location, by_name, patterns: HashMap::new(), any }
    }

    fn compile(&mut self, pattern: &str) -> Result<Matcher, String> {
        self.patterns.entry(pattern.to_string()).or_insert_with(|| Matcher::new(pattern)).clone()
    }

    /// pbulk's `find_match`: the best record among the candidates, or `None`.
    fn best(&self, text: &str, pattern: &Matcher, scope: Scope, pkgpath: &str) -> Result<Option<usize>, String> {
        let simple = |c: u8| c.is_ascii_alphanumeric() || c == b'-';
        let all: Vec<usize>;
        let candidates: &[usize] = match scope {
            Scope::Pkgpath => self.by_location.get(pkgpath).map_or(&[], Vec::as_slice),
            Scope::Tree => {
                let b = text.as_bytes();
                if b.len() >= 2 && simple(b[0]) && simple(b[1]) {
                    self.by_prefix.get(&[b[0], b[1]]).map_or(&[], Vec::as_slice)
                } else {
                    all = (0..self.records.len()).collect();
                    &all
                }
            }
        };
        let newest_first = hashed_lookup(text);
        let mut matcher = self.any.best_matcher_pbulk();
        let mut best = None;
        let order: Box<dyn Iterator<Item = &usize>> =
            if newest_first { Box::new(candidates.iter().rev()) } else { Box::new(candidates.iter()) };
        for &i in order {
            let name = self.records[i].pkgname.as_str();
            // pkg_order: on an identical name the later candidate wins; BestMatch keeps the earlier
            if !pattern.matches(name) {
                continue;
            }
            if matcher.consider(name).map_err(|e| e.to_string())? || matcher.best() == Some(name) {
                best = Some(i);
            }
        }
        Ok(best)
    }
}

/// Resolves every record's dependencies (see the module documentation).
pub fn resolve(records: &[Record], scope: Scope) -> Resolution {
    let mut index = Index::new(records);
    let mut resolved = Vec::with_capacity(records.len());
    for record in records {
        resolved.push(resolve_record(&mut index, record, scope));
    }
    let status = propagate(records, &resolved);
    Resolution { records: resolved, status }
}

fn resolve_record(index: &mut Index<'_>, record: &Record, scope: Scope) -> Resolved {
    let mut out = Resolved::default();
    let pkgname = &record.pkgname;
    if let Some(depends) = &record.depends {
        for name in depends {
            match index.by_name.get(name.as_str()) {
                Some(&i) => out.depends.push(i),
                None => {
                    out.errors.push(ResolveError::UnknownDepends { pkgname: pkgname.clone(), depends: name.clone() })
                }
            }
        }
        return out;
    }
    for entry in record.all_depends.split_ascii_whitespace() {
        let Some((pattern_text, location)) = entry.split_once(':') else {
            out.errors.push(ResolveError::BadEntry { pkgname: pkgname.clone(), entry: entry.to_string() });
            continue;
        };
        let Some(pkgpath) = location.strip_prefix("../../") else {
            out.errors.push(ResolveError::BadEntry { pkgname: pkgname.clone(), entry: entry.to_string() });
            continue;
        };
        let pattern = match index.compile(pattern_text) {
            Ok(p) => p,
            Err(message) => {
                out.errors.push(ResolveError::BadPattern {
                    pkgname: pkgname.clone(),
                    pattern: pattern_text.to_string(),
                    pkgpath: pkgpath.to_string(),
                    message,
                });
                continue;
            }
        };
        // A dependency already resolved that this pattern matches: pbulk takes it as
        // the stricter one and adds nothing.
        let earlier = out.depends.iter().copied().find(|&d| {
            let dep = &index.records[d];
            pattern.matches(&dep.pkgname) && (scope == Scope::Tree || dep.pkg_location == pkgpath)
        });
        let best = match earlier {
            Some(d) => {
                warn_elsewhere(&mut out, index.records, pkgname, pattern_text, pkgpath, d);
                continue;
            }
            None => index.best(pattern_text, &pattern, scope, pkgpath),
        };
        match best {
            Ok(Some(d)) => {
                warn_elsewhere(&mut out, index.records, pkgname, pattern_text, pkgpath, d);
                out.depends.push(d);
            }
            Ok(None) => out.errors.push(ResolveError::NoMatch {
                pkgname: pkgname.clone(),
                pattern: pattern_text.to_string(),
                pkgpath: pkgpath.to_string(),
                scanned_there: index.by_location.get(pkgpath).map_or(0, Vec::len),
            }),
            Err(message) => out.errors.push(ResolveError::BadPattern {
                pkgname: pkgname.clone(),
                pattern: pattern_text.to_string(),
                pkgpath: pkgpath.to_string(),
                message,
            }),
        }
    }
    out
}

fn warn_elsewhere(out: &mut Resolved, records: &[Record], pkgname: &str, pattern: &str, pkgpath: &str, best: usize) {
    if records[best].pkg_location != pkgpath {
        out.warnings.push(Warning::ElsewhereThanPkgpath {
            pkgname: pkgname.to_string(),
            pattern: pattern.to_string(),
            pkgpath: pkgpath.to_string(),
            best: records[best].pkgname.clone(),
        });
    }
}

/// pbulk-build's initial states: own reasons first, then what the dependencies pass on.
fn propagate(records: &[Record], resolved: &[Resolved]) -> Vec<Status> {
    let n = records.len();
    let mut status: Vec<Option<Status>> = records
        .iter()
        .zip(resolved)
        .map(|(r, res)| {
            if !r.pkg_skip_reason.is_empty() {
                Some(Status::Skip(r.pkg_skip_reason.clone()))
            } else if !r.pkg_fail_reason.is_empty() {
                Some(Status::Fail(r.pkg_fail_reason.clone()))
            } else if !res.errors.is_empty() {
                Some(Status::Unresolved)
            } else {
                None
            }
        })
        .collect();
    // Depth-first over the dependency graph, iteratively: 0 unvisited, 1 on the stack, 2 done.
    let mut mark = vec![0u8; n];
    for root in 0..n {
        if mark[root] != 0 {
            continue;
        }
        let mut stack: Vec<(usize, usize)> = vec![(root, 0)];
        mark[root] = 1;
        while let Some(&mut (node, ref mut next)) = stack.last_mut() {
            if let Some(&dep) = resolved[node].depends.get(*next) {
                *next += 1;
                match mark[dep] {
                    0 => {
                        mark[dep] = 1;
                        stack.push((dep, 0));
                    }
                    1 => {
                        let from = stack.iter().position(|&(s, _)| s == dep).unwrap_or(0);
                        let cycle: Vec<usize> = stack[from..].iter().map(|&(s, _)| s).collect();
                        for &c in &cycle {
                            if status[c].is_none() {
                                status[c] = Some(Status::Cycle(cycle.clone()));
                            }
                        }
                    }
                    _ => {}
                }
                continue;
            }
            stack.pop();
            mark[node] = 2;
            if status[node].is_none() {
                let via =
                    resolved[node].depends.iter().copied().find(|&d| !matches!(status[d], Some(Status::Buildable)));
                status[node] = Some(match via {
                    Some(via) => Status::Indirect { via },
                    None => Status::Buildable,
                });
            }
        }
    }
    status.into_iter().map(|s| s.unwrap_or(Status::Buildable)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(pkgname: &str, location: &str, all_depends: &str) -> Record {
        Record {
            pkgname: pkgname.into(),
            pkg_location: location.into(),
            all_depends: all_depends.into(),
            ..Record::default()
        }
    }

    fn names(records: &[Record], res: &Resolution, i: usize) -> Vec<String> {
        res.records[i].depends.iter().map(|&d| records[d].pkgname.clone()).collect()
    }

    /// The record `user` depending on `pattern` among `candidates` (name, location).
    fn best_of(pattern: &str, candidates: &[(&str, &str)]) -> Option<String> {
        let mut records = vec![rec("user-1.0", "misc/user", &format!("{pattern}:../../devel/dep"))];
        records.extend(candidates.iter().map(|(n, l)| rec(n, l, "")));
        let res = resolve(&records, Scope::Tree);
        names(&records, &res, 0).into_iter().next()
    }

    #[test]
    fn glob_picks_the_highest_version() {
        let c = [("bar-1.0", "devel/dep"), ("bar-2.0", "devel/dep"), ("bar-1.5", "devel/dep"), ("barx-9", "devel/dep")];
        assert_eq!(best_of("bar-[0-9]*", &c).as_deref(), Some("bar-2.0"));
    }

    #[test]
    fn dewey_ranges() {
        let c =
            [("bar-1.9", "devel/dep"), ("bar-2.0", "devel/dep"), ("bar-2.5", "devel/dep"), ("bar-3.0", "devel/dep")];
        assert_eq!(best_of("bar>=2.0", &c).as_deref(), Some("bar-3.0"));
        assert_eq!(best_of("bar>=2.0<3", &c).as_deref(), Some("bar-2.5"));
        assert_eq!(best_of("bar<2", &c).as_deref(), Some("bar-1.9"));
        assert_eq!(best_of("bar<=2.0", &c).as_deref(), Some("bar-2.0"));
        assert_eq!(best_of("bar>2.5", &c).as_deref(), Some("bar-3.0"));
        assert_eq!(best_of("bar>=4", &c), None);
        // the name must be the whole base: bar>=1 does not match barx-9
        assert_eq!(best_of("bar>=1", &[("barx-9", "devel/dep")]), None);
    }

    #[test]
    fn nb_revisions_and_dewey_modifiers() {
        let c = [("bar-1.0", "d/b"), ("bar-1.0nb2", "d/b"), ("bar-1.0nb10", "d/b")];
        assert_eq!(best_of("bar-[0-9]*", &c).as_deref(), Some("bar-1.0nb10"));
        assert_eq!(best_of("bar>=1.0nb3", &c).as_deref(), Some("bar-1.0nb10"));
        assert_eq!(best_of("bar<1.0nb1", &c).as_deref(), Some("bar-1.0"));
        // alpha < beta < rc < release < pl; 1.10 > 1.9
        let c = [("bar-1.0alpha1", "d/b"), ("bar-1.0beta2", "d/b"), ("bar-1.0rc1", "d/b")];
        assert_eq!(best_of("bar-[0-9]*", &c).as_deref(), Some("bar-1.0rc1"));
        assert_eq!(best_of("bar>=1.0", &[("bar-1.0rc1", "d/b"), ("bar-1.0", "d/b")]).as_deref(), Some("bar-1.0"));
        assert_eq!(best_of("bar-[0-9]*", &[("bar-1.10", "d/b"), ("bar-1.9", "d/b")]).as_deref(), Some("bar-1.10"));
        assert_eq!(best_of("bar-[0-9]*", &[("bar-1.0pl1", "d/b"), ("bar-1.0", "d/b")]).as_deref(), Some("bar-1.0pl1"));
        // a letter counts as ".N": 1.0a < 1.0b < 1.1
        assert_eq!(best_of("bar-[0-9]*", &[("bar-1.0b", "d/b"), ("bar-1.0a", "d/b")]).as_deref(), Some("bar-1.0b"));
    }

    #[test]
    fn equal_versions_prefer_the_greater_name() {
        // pbulk's pkg_order: 1.0 and 1.0.0 compare equal, then strcmp decides
        let c = [("bar-1.0", "d/b"), ("bar-1.0.0", "d/b")];
        assert_eq!(best_of("bar-[0-9]*", &c).as_deref(), Some("bar-1.0.0"));
        let c = [("py27-foo-1.0", "d/foo"), ("py33-foo-1.0", "d/foo")];
        assert_eq!(best_of("{py27,py33}-foo-[0-9]*", &c).as_deref(), Some("py33-foo-1.0"));
    }

    #[test]
    fn alternatives() {
        let c = [("mysql-client-5.5", "db/m"), ("mariadb-client-10.0", "db/ma"), ("pg-9", "db/p")];
        assert_eq!(best_of("{mysql,mariadb}-client-[0-9]*", &c).as_deref(), Some("mariadb-client-10.0"));
        assert_eq!(best_of("{mysql,mariadb}-client>=5<6", &c).as_deref(), Some("mysql-client-5.5"));
        assert_eq!(best_of("{gcc48,gcc47}-4.*", &[("gcc47-4.7.3", "l/g")]).as_deref(), Some("gcc47-4.7.3"));
        assert_eq!(best_of("perl{,-base}>=5", &[("perl-base-5.18", "l/p")]).as_deref(), Some("perl-base-5.18"));
    }

    #[test]
    fn a_stray_closing_brace_resolves_as_pbulk_resolves_it() {
        // textproc/p5-PDF-Reuse of the 2014 tree
        let c = [("perl-5.20.1", "lang/perl5"), ("p5-Digest-MD5-2.53", "security/p5-Digest-MD5")];
        assert_eq!(best_of("{perl>=5.7.3,p5-Digest-MD5-[0-9]}}", &c).as_deref(), Some("perl-5.20.1"));
        assert_eq!(best_of("{perl>=5.30,p5-Digest-MD5-[0-9]}}", &c), None);
    }

    #[test]
    fn exact_names_and_globs() {
        let c = [("bar-1.0", "d/b"), ("bar-1.1", "d/b")];
        assert_eq!(best_of("bar-1.0", &c).as_deref(), Some("bar-1.0"));
        // pbulk 2014 has no implicit "-[0-9]*": a bare name matches nothing
        assert_eq!(best_of("bar", &c), None);
        assert_eq!(best_of("bar-1.[01]", &c).as_deref(), Some("bar-1.1"));
        assert_eq!(best_of("ba?-1.0", &c).as_deref(), Some("bar-1.0"));
        assert_eq!(best_of("b*-1.0", &c).as_deref(), Some("bar-1.0"));
    }

    #[test]
    fn tree_scope_takes_the_best_anywhere_and_warns() {
        let records = vec![
            rec("user-1.0", "misc/user", "bar>=1:../../devel/bar"),
            rec("bar-1.0", "devel/bar", ""),
            rec("bar-2.0", "devel/bar-devel", ""),
        ];
        let res = resolve(&records, Scope::Tree);
        assert_eq!(names(&records, &res, 0), ["bar-2.0"]);
        assert_eq!(
            res.records[0].warnings[0].to_string(),
            "Best matching bar-2.0 differs from location devel/bar for dependency bar>=1 of package user-1.0"
        );
        let res = resolve(&records, Scope::Pkgpath);
        assert_eq!(names(&records, &res, 0), ["bar-1.0"]);
        assert!(res.records[0].warnings.is_empty());
    }

    #[test]
    fn multi_version_records_at_one_pkgpath() {
        let records = vec![
            rec("user-1.0", "misc/user", "py33-foo-[0-9]*:../../devel/py-foo"),
            rec("py27-foo-1.0", "devel/py-foo", ""),
            rec("py33-foo-1.0", "devel/py-foo", ""),
        ];
        for scope in [Scope::Tree, Scope::Pkgpath] {
            let res = resolve(&records, scope);
            assert_eq!(names(&records, &res, 0), ["py33-foo-1.0"]);
        }
    }

    #[test]
    fn a_dependency_matched_before_is_not_repeated() {
        let records = vec![
            rec(
                "user-1.0",
                "misc/user",
                "  libffi>=1.20:../../devel/libffi  db4>=4.8:../../databases/db4 libffi>=3.0.11:../../devel/libffi db4>=4.8:../../databases/db4 ",
            ),
            rec("libffi-3.0.13", "devel/libffi", ""),
            rec("db4-4.8.30", "databases/db4", ""),
        ];
        let res = resolve(&records, Scope::Tree);
        assert_eq!(names(&records, &res, 0), ["libffi-3.0.13", "db4-4.8.30"]);
    }

    #[test]
    fn no_match_names_the_package_the_pattern_and_the_pkgpath() {
        let records = vec![rec("foo-1.0", "misc/foo", "bar>=2.0:../../devel/bar"), rec("bar-1.0", "devel/bar", "")];
        let res = resolve(&records, Scope::Tree);
        let errors: Vec<String> = res.errors().map(ToString::to_string).collect();
        assert_eq!(errors, ["foo-1.0: no package at ../../devel/bar matches bar>=2.0"]);
        assert_eq!(res.status[0], Status::Unresolved);
        assert_eq!(res.status[1], Status::Buildable);
        let records = vec![rec("foo-1.0", "misc/foo", "bar>=2.0:../../devel/bar")];
        let res = resolve(&records, Scope::Pkgpath);
        assert_eq!(
            res.errors().next().unwrap().to_string(),
            "foo-1.0: no package at ../../devel/bar matches bar>=2.0 (nothing was scanned at devel/bar)"
        );
    }

    #[test]
    fn bad_entries_and_patterns_are_errors() {
        let records = vec![rec("foo-1.0", "misc/foo", "bar-[0-9]* bar>=1:devel/bar {bar,baz-[0-9]*:../../devel/bar")];
        let res = resolve(&records, Scope::Tree);
        let errors: Vec<&ResolveError> = res.errors().collect();
        assert!(matches!(errors[0], ResolveError::BadEntry { entry, .. } if entry == "bar-[0-9]*"));
        assert!(matches!(errors[1], ResolveError::BadEntry { entry, .. } if entry == "bar>=1:devel/bar"));
        assert!(matches!(errors[2], ResolveError::BadPattern { pattern, .. } if pattern == "{bar,baz-[0-9]*"));
        assert_eq!(res.status[0], Status::Unresolved);
    }

    #[test]
    fn skip_and_fail_reasons_propagate_to_dependents() {
        let mut records = vec![
            rec("top-1", "misc/top", "mid-[0-9]*:../../misc/mid"),
            rec("mid-1", "misc/mid", "low-[0-9]*:../../misc/low"),
            rec("low-1", "misc/low", ""),
            rec("other-1", "misc/other", "low-[0-9]*:../../misc/low"),
            rec("fine-1", "misc/fine", ""),
        ];
        records[2].pkg_fail_reason = "broken on Linux".into();
        let res = resolve(&records, Scope::Tree);
        assert_eq!(res.status[2], Status::Fail("broken on Linux".into()));
        assert_eq!(res.status[1], Status::Indirect { via: 2 });
        assert_eq!(res.status[0], Status::Indirect { via: 1 });
        assert_eq!(res.root_cause(0), 2);
        assert_eq!(res.status[3], Status::Indirect { via: 2 });
        assert_eq!(res.status[4], Status::Buildable);
        records[1].pkg_skip_reason = "license".into();
        let res = resolve(&records, Scope::Tree);
        assert_eq!(res.status[1], Status::Skip("license".into()));
        assert_eq!(res.status[0], Status::Indirect { via: 1 });
    }

    #[test]
    fn unresolved_propagates_and_cycles_are_found() {
        let records = vec![
            rec("a-1", "x/a", "b-[0-9]*:../../x/b"),
            rec("b-1", "x/b", "c-[0-9]*:../../x/c"),
            rec("c-1", "x/c", "a-[0-9]*:../../x/a"),
            rec("d-1", "x/d", "c-[0-9]*:../../x/c nope-[0-9]*:../../x/nope"),
            rec("e-1", "x/e", "d-[0-9]*:../../x/d"),
        ];
        let res = resolve(&records, Scope::Tree);
        assert_eq!(res.status[0], Status::Cycle(vec![0, 1, 2]));
        assert_eq!(res.status[1], Status::Cycle(vec![0, 1, 2]));
        assert_eq!(res.status[3], Status::Unresolved);
        assert_eq!(names(&records, &res, 3), ["c-1"]);
        assert_eq!(res.status[4], Status::Indirect { via: 3 });
    }

    #[test]
    fn existing_depends_are_kept() {
        let mut records = vec![rec("a-1", "x/a", "b>=5:../../x/b"), rec("b-1", "x/b", "")];
        records[0].depends = Some(vec!["b-1".into()]);
        let res = resolve(&records, Scope::Tree);
        assert_eq!(names(&records, &res, 0), ["b-1"]);
        assert!(res.records[0].errors.is_empty());
    }

    #[test]
    fn identical_names_resolve_like_pbulk() {
        // hash-chain lookup (newest first): the first record in the input wins;
        // a full scan (pattern starting with '{'): the last one wins
        let records = vec![
            rec("u-1", "x/u", "bar-[0-9]*:../../x/b {bar,baz}-[0-9]*:../../x/b"),
            rec("bar-1", "x/b1", ""),
            rec("bar-1", "x/b2", ""),
        ];
        let mut index = Index::new(&records);
        let p = index.compile("bar-[0-9]*").unwrap();
        assert_eq!(index.best("bar-[0-9]*", &p, Scope::Tree, "x/b").unwrap(), Some(1));
        let p = index.compile("{bar,baz}-[0-9]*").unwrap();
        assert_eq!(index.best("{bar,baz}-[0-9]*", &p, Scope::Tree, "x/b").unwrap(), Some(2));
    }

    #[test]
    fn from_scan_index() {
        let text = "PKGNAME=foo-1.0\nPKG_LOCATION=misc/foo\nALL_DEPENDS=bar-[0-9]*:../../devel/bar\nPKG_SKIP_REASON=no\nPKG_FAIL_REASON=\n";
        let index: Vec<pkgsrc::ScanIndex> =
            pkgsrc::ScanIndex::from_reader(std::io::BufReader::new(text.as_bytes())).collect::<Result<_, _>>().unwrap();
        let r = Record::from_scan_index(&index[0]);
        assert_eq!(r.pkgname, "foo-1.0");
        assert_eq!(r.pkg_location, "misc/foo");
        assert_eq!(r.all_depends, "bar-[0-9]*:../../devel/bar");
        assert_eq!(r.pkg_skip_reason, "no");
        assert_eq!(r.depends, None);
    }
}
