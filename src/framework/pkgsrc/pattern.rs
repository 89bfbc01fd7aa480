//! Dependency patterns as pbulk matches them (`pkgtools/pbulk/files/pbulk/lib/match.c`).
//!
//! Well-formed patterns are the `pkgsrc` crate's [`Pattern`]. pbulk also accepts one
//! malformation the crate refuses, and a real tree has it (`textproc/p5-PDF-Reuse`
//! depends on `{perl>=5.7.3,p5-Digest-MD5-[0-9]}}`): `alternate_match` expands the
//! first `{` group, ends it at the brace that balances it, and appends everything after
//! that brace, stray `}` included, to each alternative, which is matched again on its
//! own. A stray `}` left in an alternative is then just a character: dewey's version
//! parse skips it, a glob or an exact name must match it literally. Only a group that
//! never closes (`{bar,baz-[0-9]*`) is an error, as it is to pbulk.
//!
//! Choosing the best of several matches is the crate's `pkg_order`
//! ([`Pattern::best_matcher_pbulk`]), applied to the names this matcher accepts.

use pkgsrc::{Dewey, Pattern};

/// A compiled dependency pattern.
#[derive(Clone, Debug)]
pub enum Matcher {
    /// Every well-formed pattern.
    Pkgsrc(Pattern),
    /// pbulk's expansion of a group followed by a stray `}`: any alternative matches.
    AnyOf(Vec<Matcher>),
    /// A dewey range with a stray `}` (pbulk's dewey parse skips it).
    Dewey(Dewey),
    /// A glob with a stray `}`, matched as `fnmatch` does.
    Glob(glob::Pattern),
    /// An exact name with a stray `}`.
    Exact(String),
}

impl Matcher {
    /// Compiles `text`, or says why pbulk would refuse it too.
    pub fn new(text: &str) -> Result<Matcher, String> {
        match Pattern::new(text) {
            Ok(pattern) => Ok(Matcher::Pkgsrc(pattern)),
            Err(refused) => tolerated(text).ok_or_else(|| refused.to_string())?,
        }
    }

    pub fn matches(&self, pkgname: &str) -> bool {
        match self {
            Matcher::Pkgsrc(p) => p.matches(pkgname),
            Matcher::AnyOf(alternatives) => alternatives.iter().any(|m| m.matches(pkgname)),
            Matcher::Dewey(d) => d.matches(pkgname),
            Matcher::Glob(g) => g.matches(pkgname),
            Matcher::Exact(name) => name == pkgname,
        }
    }
}

/// The matcher of a pattern the crate refused, where pbulk accepts it; `None` where
/// pbulk refuses it as well, `Some(Err)` where an alternative is itself invalid.
fn tolerated(text: &str) -> Option<Result<Matcher, String>> {
    if text.contains('{') {
        let alternatives = alternate_match(text)?;
        return Some(alternatives.iter().map(|a| Matcher::new(a)).collect::<Result<_, _>>().map(Matcher::AnyOf));
    }
    // no `{` left: the crate refused a stray `}`, which these parsers take literally
    Some(if text.contains(['<', '>']) {
        Dewey::new(text).map(Matcher::Dewey).map_err(|e| format!("{text}: {e}"))
    } else if text.contains(['*', '?', '[', ']']) {
        glob::Pattern::new(text).map(Matcher::Glob).map_err(|e| format!("{text}: {e}"))
    } else {
        Ok(Matcher::Exact(text.to_string()))
    })
}

/// pbulk's `alternate_match` expansion of the first brace group of `text`: each
/// alternative with the text before the group in front and everything after the
/// group's closing brace behind. `None` when the group never closes.
fn alternate_match(text: &str) -> Option<Vec<String>> {
    let open = text.find('{')?;
    let (before, group) = text.split_at(open);
    let mut depth = 0usize;
    let mut close = None;
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    close = Some(i);
                    break;
                }
            }
            _ => {}
        }
    }
    let close = close?;
    let (inner, after) = (&group[1..close], &group[close + 1..]);
    let mut alternatives = Vec::new();
    let (mut depth, mut start) = (0usize, 0);
    for (i, c) in inner.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                alternatives.push(format!("{before}{}{after}", &inner[start..i]));
                start = i + 1;
            }
            _ => {}
        }
    }
    alternatives.push(format!("{before}{}{after}", &inner[start..]));
    Some(alternatives)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alternate_match_expands_the_first_group_and_appends_the_rest() {
        assert_eq!(alternate_match("{a,b}-1").unwrap(), ["a-1", "b-1"]);
        assert_eq!(alternate_match("x{a,{b,c}}y{d,e}").unwrap(), ["xay{d,e}", "x{b,c}y{d,e}"]);
        assert_eq!(
            alternate_match("{perl>=5.7.3,p5-Digest-MD5-[0-9]}}").unwrap(),
            ["perl>=5.7.3}", "p5-Digest-MD5-[0-9]}"]
        );
        assert_eq!(alternate_match("perl{,-base}>=5").unwrap(), ["perl>=5", "perl-base>=5"]);
        assert_eq!(alternate_match("{bar,baz-[0-9]*"), None);
    }

    #[test]
    fn a_stray_closing_brace_is_tolerated_as_pbulk_does() {
        // textproc/p5-PDF-Reuse of the 2014 tree
        let m = Matcher::new("{perl>=5.7.3,p5-Digest-MD5-[0-9]}}").unwrap();
        assert!(m.matches("perl-5.20.1"));
        assert!(!m.matches("perl-5.6.1"));
        // the glob alternative must match its `}` literally: nothing real does
        assert!(!m.matches("p5-Digest-MD5-2"));
        assert!(Matcher::new("foo-1.0}").unwrap().matches("foo-1.0}"));
    }

    #[test]
    fn what_pbulk_refuses_stays_an_error() {
        assert!(Matcher::new("{bar,baz-[0-9]*").is_err());
        assert!(Matcher::new("{bar>=1>=2,baz}}").is_err());
    }

    #[test]
    fn well_formed_patterns_are_the_crates() {
        assert!(matches!(Matcher::new("{a,b}-[0-9]*").unwrap(), Matcher::Pkgsrc(_)));
        assert!(Matcher::new("{a,b}-[0-9]*").unwrap().matches("b-2"));
    }
}
