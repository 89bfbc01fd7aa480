//! pbulk's file formats: the `pscan` file that `pbulk-scan` writes (the concatenated
//! `bmake pbulk-index` output, a `PKG_LOCATION=` line after each `PKGNAME=` line) and
//! the `presolve` file that `pbulk-resolve` writes (the same records, each followed by
//! a `DEPENDS=` line naming the resolved packages).
//!
//! Parsing follows `pkgtools/pbulk/files/pbulk/presolve/presolve.c` (`read_entries`,
//! `pbulk_item_end`, `pkgname_dup`, `find_content`) byte for byte: a record starts at a
//! line `PKGNAME=<name>` (at least 4 bytes, no blank) and runs to the next line that
//! starts with `PKGNAME=` or to the end of the file; a field is the first line of the
//! record that starts with `KEY=`. The record text is kept verbatim, so that
//! [`write_presolve`] reproduces pbulk-resolve's output exactly.

use std::fmt;
use std::io::{self, Write};

use super::resolve::{Record, Resolution};

/// One record of a pscan (or presolve) file, borrowed from the file's bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry<'a> {
    /// The record's lines, verbatim, from its `PKGNAME=` line to just before the next
    /// record.
    pub text: &'a [u8],
    pub pkgname: &'a str,
    pub pkg_location: &'a str,
}

/// Why a pscan file is not one pbulk-resolve would read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FormatError {
    /// The bytes at this offset do not start a record (pbulk: "Invalid input").
    NotARecord { offset: usize },
    /// The record's last line has no newline (pbulk: "Invalid input").
    Unterminated { pkgname: String },
    /// The record has no `PKG_LOCATION=` line (pbulk: "Invalid input").
    NoLocation { pkgname: String },
    /// The record has no `ALL_DEPENDS=` line (pbulk: "No ALL_DEPENDS line for ...").
    NoAllDepends { pkgname: String },
    /// A field that must be text is not UTF-8.
    NotUtf8 { pkgname: String, field: &'static str },
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FormatError::NotARecord { offset } => {
                write!(f, "invalid input at byte {offset}: expected a line PKGNAME=<name>")
            }
            FormatError::Unterminated { pkgname } => write!(f, "{pkgname}: the record's last line has no newline"),
            FormatError::NoLocation { pkgname } => write!(f, "{pkgname}: no PKG_LOCATION line"),
            FormatError::NoAllDepends { pkgname } => write!(f, "No ALL_DEPENDS line for {pkgname}"),
            FormatError::NotUtf8 { pkgname, field } => write!(f, "{pkgname}: {field} is not UTF-8"),
        }
    }
}

impl std::error::Error for FormatError {}

/// The value of the first line of `text` that starts with `prefix` (pbulk's
/// `find_content`), without its newline.
pub fn find_content<'a>(text: &'a [u8], prefix: &str) -> Option<&'a [u8]> {
    text.split_inclusive(|&b| b == b'\n').find_map(|line| {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        line.strip_prefix(prefix.as_bytes())
    })
}

/// `pkgname_dup`: the name on a `PKGNAME=` line that starts at `at`, if it is one.
fn pkgname_at(input: &[u8], at: usize) -> Option<&[u8]> {
    let rest = input[at..].strip_prefix(b"PKGNAME=")?;
    let end = rest.iter().position(|&b| b == b'\n')?;
    let name = &rest[..end];
    if name.len() < 4 || name.iter().any(|&b| b == b' ' || b == b'\t') {
        return None;
    }
    Some(name)
}

/// `pbulk_item_end`: where the record starting at `begin` ends, or `None` when a line
/// of it has no newline.
fn item_end(input: &[u8], begin: usize) -> Option<usize> {
    let mut line = begin;
    loop {
        let eol = input[line..].iter().position(|&b| b == b'\n')?;
        line += eol + 1;
        if line == input.len() || input[line..].starts_with(b"PKGNAME=") {
            return Some(line);
        }
    }
}

fn utf8<'a>(bytes: &'a [u8], pkgname: &str, field: &'static str) -> Result<&'a str, FormatError> {
    std::str::from_utf8(bytes).map_err(|_| FormatError::NotUtf8 { pkgname: pkgname.to_string(), field })
}

/// Splits a pscan or presolve file into its records, as pbulk-resolve's `read_entries`.
pub fn parse(input: &[u8]) -> Result<Vec<Entry<'_>>, FormatError> {
    let mut entries = Vec::new();
    let mut at = 0;
    while let Some(name) = pkgname_at(input, at) {
        let pkgname = std::str::from_utf8(name).map_err(|_| FormatError::NotUtf8 {
            pkgname: String::from_utf8_lossy(name).into_owned(),
            field: "PKGNAME",
        })?;
        let end = item_end(input, at).ok_or_else(|| FormatError::Unterminated { pkgname: pkgname.to_string() })?;
        let text = &input[at..end];
        let location = find_content(text, "PKG_LOCATION=")
            .ok_or_else(|| FormatError::NoLocation { pkgname: pkgname.to_string() })?;
        let pkg_location = utf8(location, pkgname, "PKG_LOCATION")?;
        entries.push(Entry { text, pkgname, pkg_location });
        at = end;
    }
    if at != input.len() {
        return Err(FormatError::NotARecord { offset: at });
    }
    Ok(entries)
}

/// The resolver's view of a parsed record.
pub fn record(entry: &Entry<'_>) -> Result<Record, FormatError> {
    let pkgname = entry.pkgname;
    let field = |key: &str| find_content(entry.text, key).map(|v| String::from_utf8_lossy(v).into_owned());
    let all_depends = find_content(entry.text, "ALL_DEPENDS=");
    let depends = find_content(entry.text, "DEPENDS=");
    if all_depends.is_none() && depends.is_none() {
        return Err(FormatError::NoAllDepends { pkgname: pkgname.to_string() });
    }
    Ok(Record {
        pkgname: pkgname.to_string(),
        pkg_location: entry.pkg_location.to_string(),
        all_depends: match all_depends {
            Some(v) => utf8(v, pkgname, "ALL_DEPENDS")?.to_string(),
            None => String::new(),
        },
        pkg_skip_reason: field("PKG_SKIP_REASON=").unwrap_or_default(),
        pkg_fail_reason: field("PKG_FAIL_REASON=").unwrap_or_default(),
        depends: match depends {
            Some(v) => Some(utf8(v, pkgname, "DEPENDS")?.split_ascii_whitespace().map(str::to_string).collect()),
            None => None,
        },
    })
}

/// Parses a pscan file into the resolver's records.
pub fn records(entries: &[Entry<'_>]) -> Result<Vec<Record>, FormatError> {
    entries.iter().map(record).collect()
}

/// Writes the presolve file pbulk-resolve writes: every record verbatim, followed by
/// `DEPENDS=<names>` when it has resolved dependencies (`write_entries`). A record
/// that already had a `DEPENDS=` line is written unchanged; one whose resolution
/// failed is written without a `DEPENDS=` line (what `pbulk-resolve -p` does; without
/// `-p` pbulk-resolve writes nothing at all when any record failed, and so should the
/// caller).
pub fn write_presolve(
    out: &mut impl Write,
    entries: &[Entry<'_>],
    records: &[Record],
    resolution: &Resolution,
) -> io::Result<()> {
    for (i, entry) in entries.iter().enumerate() {
        out.write_all(entry.text)?;
        if records[i].depends.is_some() {
            continue;
        }
        let resolved = &resolution.records[i];
        if !resolved.errors.is_empty() || resolved.depends.is_empty() {
            continue;
        }
        out.write_all(b"DEPENDS=")?;
        for (n, &dep) in resolved.depends.iter().enumerate() {
            if n > 0 {
                out.write_all(b" ")?;
            }
            out.write_all(records[dep].pkgname.as_bytes())?;
        }
        out.write_all(b"\n")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PSCAN: &str = "PKGNAME=figlet-2.2.5\nPKG_LOCATION=misc/figlet\nALL_DEPENDS=  digest>=20010302:../../pkgtools/digest \nPKG_SKIP_REASON=\nPKG_FAIL_REASON=\nMAINTAINER=pkgsrc-users@NetBSD.org\n\
PKGNAME=digest-20121220\nPKG_LOCATION=pkgtools/digest\nALL_DEPENDS=\nPKG_SKIP_REASON=\nPKG_FAIL_REASON=broken\n";

    #[test]
    fn parses_records_as_pbulk() {
        let entries = parse(PSCAN.as_bytes()).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].pkgname, "figlet-2.2.5");
        assert_eq!(entries[0].pkg_location, "misc/figlet");
        assert!(entries[0].text.ends_with(b"NetBSD.org\n"));
        assert_eq!(entries[1].pkg_location, "pkgtools/digest");
        let records = records(&entries).unwrap();
        assert_eq!(records[0].all_depends, "  digest>=20010302:../../pkgtools/digest ");
        assert_eq!(records[1].pkg_fail_reason, "broken");
        assert_eq!(records[1].depends, None);
    }

    #[test]
    fn empty_input_has_no_records() {
        assert_eq!(parse(b"").unwrap(), vec![]);
    }

    #[test]
    fn rejects_what_pbulk_rejects() {
        assert_eq!(parse(b"garbage\n"), Err(FormatError::NotARecord { offset: 0 }));
        // a PKGNAME shorter than 4 bytes is no record
        assert_eq!(parse(b"PKGNAME=a-1\nPKG_LOCATION=x/y\n"), Err(FormatError::NotARecord { offset: 0 }));
        assert!(matches!(parse(b"PKGNAME=foo-1\nPKG_LOCATION=x/y"), Err(FormatError::Unterminated { .. })));
        assert!(matches!(parse(b"PKGNAME=foo-1\nALL_DEPENDS=\n"), Err(FormatError::NoLocation { .. })));
        let entries = parse(b"PKGNAME=foo-1\nPKG_LOCATION=x/y\n").unwrap();
        assert_eq!(record(&entries[0]), Err(FormatError::NoAllDepends { pkgname: "foo-1".into() }));
    }

    #[test]
    fn a_presolve_depends_line_is_kept() {
        let input = b"PKGNAME=foo-1\nPKG_LOCATION=x/foo\nALL_DEPENDS=bar-[0-9]*:../../x/bar\nDEPENDS=bar-1\n";
        let entries = parse(input).unwrap();
        assert_eq!(records(&entries).unwrap()[0].depends, Some(vec!["bar-1".to_string()]));
    }
}
