//! Port origins (`category/name[@flavor]`) and dependency specifications
//! (`what:origin[:target]`), the two vocabularies a ports tree speaks.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Where a port lives in the tree, plus the flavor it is built with.
///
/// `flavor == None` means "the port's default flavor": the scanner resolves it
/// to the first entry of `FLAVORS`, so after a scan every node of a flavored
/// port carries `Some(flavor)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Origin {
    pub category: String,
    pub name: String,
    pub flavor: Option<String>,
}

impl Origin {
    /// Parses `cat/port` or `cat/port@flavor`, accepting a leading
    /// `${PORTSDIR}/` or an absolute ports-tree prefix ending in `/cat/port`.
    pub fn parse(text: &str) -> Result<Origin, String> {
        let text = text.trim();
        let text = text.strip_prefix("${PORTSDIR}/").unwrap_or(text);
        if text.is_empty() {
            return Err("empty origin".into());
        }
        let (path, flavor) = match text.split_once('@') {
            Some((path, flavor)) => {
                if !is_name(flavor) {
                    return Err(format!("bad flavor '{flavor}' in origin '{text}'"));
                }
                (path, Some(flavor.to_string()))
            }
            None => (text, None),
        };
        let mut parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
        if path.starts_with('/') && parts.len() > 2 {
            parts = parts.split_off(parts.len() - 2);
        }
        match parts.as_slice() {
            [category, name] if is_name(category) && is_name(name) => {
                Ok(Origin { category: category.to_string(), name: name.to_string(), flavor })
            }
            _ => Err(format!("origin '{text}' is not of the form category/port[@flavor]")),
        }
    }

    /// `cat/port` without the flavor: the port directory relative to the tree.
    pub fn dir(&self) -> String {
        format!("{}/{}", self.category, self.name)
    }

    pub fn with_flavor(&self, flavor: Option<&str>) -> Origin {
        Origin { category: self.category.clone(), name: self.name.clone(), flavor: flavor.map(str::to_string) }
    }

    /// The per-port log file stem: `cat___port[@flavor]`.
    pub fn log_stem(&self) -> String {
        match &self.flavor {
            Some(f) => format!("{}___{}@{}", self.category, self.name, f),
            None => format!("{}___{}", self.category, self.name),
        }
    }

    /// The port's log in `dir`: `dir/cat___port[@flavor].log`.
    pub fn log_file(&self, dir: &std::path::Path) -> std::path::PathBuf {
        dir.join(format!("{}.log", self.log_stem()))
    }
}

fn is_name(s: &str) -> bool {
    !s.is_empty() && s != "." && s != ".." && s.chars().all(|c| c.is_ascii_alphanumeric() || "-_.+".contains(c))
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.flavor {
            Some(flavor) => write!(f, "{}/{}@{}", self.category, self.name, flavor),
            None => write!(f, "{}/{}", self.category, self.name),
        }
    }
}

impl Serialize for Origin {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Origin {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Origin, D::Error> {
        let text = String::deserialize(d)?;
        Origin::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The six dependency variables of the contract, kept distinguishable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum DepKind {
    #[serde(rename = "FETCH_DEPENDS")]
    Fetch,
    #[serde(rename = "EXTRACT_DEPENDS")]
    Extract,
    #[serde(rename = "PATCH_DEPENDS")]
    Patch,
    #[serde(rename = "BUILD_DEPENDS")]
    Build,
    #[serde(rename = "LIB_DEPENDS")]
    Lib,
    #[serde(rename = "RUN_DEPENDS")]
    Run,
}

impl DepKind {
    pub const ALL: [DepKind; 6] =
        [DepKind::Fetch, DepKind::Extract, DepKind::Patch, DepKind::Build, DepKind::Lib, DepKind::Run];

    /// The make variable holding this kind, e.g. `BUILD_DEPENDS`.
    pub fn variable(self) -> &'static str {
        match self {
            DepKind::Fetch => "FETCH_DEPENDS",
            DepKind::Extract => "EXTRACT_DEPENDS",
            DepKind::Patch => "PATCH_DEPENDS",
            DepKind::Build => "BUILD_DEPENDS",
            DepKind::Lib => "LIB_DEPENDS",
            DepKind::Run => "RUN_DEPENDS",
        }
    }
}

impl fmt::Display for DepKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.variable())
    }
}

/// What a dependency entry checks for before the origin is considered present.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", content = "value", rename_all = "snake_case")]
pub enum Requirement {
    /// An absolute path that must exist.
    Path(String),
    /// A library name found in LOCALBASE/lib (`libfoo.so`, `libfoo.so.1`, `libfoo.a`).
    Library(String),
    /// A program found in PATH.
    Program(String),
    /// A package spec such as `name>=1.0`, checked against the package database.
    Package { name: String, op: String, version: String },
}

impl Requirement {
    pub fn parse(what: &str) -> Result<Requirement, String> {
        if what.is_empty() {
            return Err("empty 'what' part".into());
        }
        if what.chars().any(char::is_whitespace) {
            return Err(format!("'what' part '{what}' contains whitespace"));
        }
        if what.starts_with('/') {
            return Ok(Requirement::Path(what.to_string()));
        }
        if let Some(at) = what.find(['<', '>', '=']) {
            let (name, rest) = what.split_at(at);
            let op_len = rest.chars().take_while(|c| "<>=".contains(*c)).count();
            let (op, version) = rest.split_at(op_len);
            if name.is_empty() || version.is_empty() || !["<", ">", "<=", ">=", "="].contains(&op) {
                return Err(format!("malformed package spec '{what}'"));
            }
            return Ok(Requirement::Package {
                name: name.to_string(),
                op: op.to_string(),
                version: version.to_string(),
            });
        }
        if what.starts_with("lib") && (what.contains(".so") || what.ends_with(".a")) {
            return Ok(Requirement::Library(what.to_string()));
        }
        if what.contains('/') {
            return Err(format!("'what' part '{what}' is a relative path"));
        }
        Ok(Requirement::Program(what.to_string()))
    }
}

/// One parsed entry of a `*_DEPENDS` variable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DepSpec {
    pub kind: DepKind,
    pub requirement: Requirement,
    pub origin: Origin,
    pub target: Option<String>,
    /// The entry as written, for error messages.
    pub text: String,
}

impl DepSpec {
    pub fn parse(kind: DepKind, text: &str) -> Result<DepSpec, String> {
        let mut parts = text.splitn(3, ':');
        let what = parts.next().unwrap_or_default();
        let origin = parts.next().ok_or_else(|| format!("'{text}' is not of the form what:origin[:target]"))?;
        let target = match parts.next() {
            Some("") => return Err(format!("'{text}' has an empty target")),
            Some(t) if t.contains(':') => return Err(format!("'{text}' has too many ':' fields")),
            Some(t) => Some(t.to_string()),
            None => None,
        };
        let requirement = Requirement::parse(what).map_err(|e| format!("'{text}': {e}"))?;
        let origin = Origin::parse(origin).map_err(|e| format!("'{text}': {e}"))?;
        Ok(DepSpec { kind, requirement, origin, target, text: text.to_string() })
    }

    /// Parses a whole variable value (whitespace-separated entries); every
    /// malformed entry is reported, none is dropped.
    pub fn parse_list(kind: DepKind, value: &str) -> (Vec<DepSpec>, Vec<String>) {
        let mut specs = Vec::new();
        let mut errors = Vec::new();
        for entry in value.split_whitespace() {
            match DepSpec::parse(kind, entry) {
                Ok(spec) => specs.push(spec),
                Err(e) => errors.push(e),
            }
        }
        (specs, errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(cat: &str, name: &str, flavor: Option<&str>) -> Origin {
        Origin { category: cat.into(), name: name.into(), flavor: flavor.map(Into::into) }
    }

    #[test]
    fn origins_parse_table() {
        let ok: &[(&str, Origin)] = &[
            ("devel/libgreet", origin("devel", "libgreet", None)),
            ("lang/minilang@full", origin("lang", "minilang", Some("full"))),
            ("${PORTSDIR}/misc/hello", origin("misc", "hello", None)),
            ("/usr/ports/misc/hello", origin("misc", "hello", None)),
            ("x11/meta-bundle/", origin("x11", "meta-bundle", None)),
            ("lang/py3-foo_bar+1.2", origin("lang", "py3-foo_bar+1.2", None)),
        ];
        for (text, want) in ok {
            assert_eq!(Origin::parse(text).as_ref(), Ok(want), "{text}");
        }
        for bad in ["", "hello", "a/b/c", "a/", "/b", "a/b@", "a/b@x y", "../b", "a/b@f@g"] {
            assert!(Origin::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn origin_display_and_log_stem() {
        let o = origin("lang", "minilang", Some("full"));
        assert_eq!(o.to_string(), "lang/minilang@full");
        assert_eq!(o.log_stem(), "lang___minilang@full");
        assert_eq!(o.dir(), "lang/minilang");
        assert_eq!(origin("a", "b", None).log_stem(), "a___b");
    }

    #[test]
    fn dependency_specs_parse_table() {
        use Requirement::*;
        let cases: &[(&str, Requirement, &str, Option<&str>)] = &[
            ("libgreet.so:devel/libgreet", Library("libgreet.so".into()), "devel/libgreet", None),
            ("libz.so.1:devel/zlib", Library("libz.so.1".into()), "devel/zlib", None),
            ("libfoo.a:devel/foo", Library("libfoo.a".into()), "devel/foo", None),
            ("codegen:devel/codegen", Program("codegen".into()), "devel/codegen", None),
            ("/usr/local/share/x:misc/x", Path("/usr/local/share/x".into()), "misc/x", None),
            (
                "greet>=1.0:devel/libgreet",
                Package { name: "greet".into(), op: ">=".into(), version: "1.0".into() },
                "devel/libgreet",
                None,
            ),
            ("minilang-full:lang/minilang@full", Program("minilang-full".into()), "lang/minilang@full", None),
            ("gmake:${PORTSDIR}/devel/gmake:build", Program("gmake".into()), "devel/gmake", Some("build")),
        ];
        for (text, req, orig, target) in cases {
            let spec = DepSpec::parse(DepKind::Build, text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(&spec.requirement, req, "{text}");
            assert_eq!(spec.origin, Origin::parse(orig).unwrap(), "{text}");
            assert_eq!(spec.target.as_deref(), *target, "{text}");
        }
    }

    #[test]
    fn malformed_dependency_specs_are_errors_naming_the_text() {
        for bad in [
            "just-a-word",
            "foo:",
            ":devel/x",
            "foo:devel",
            "foo:devel/x:",
            "foo:devel/x:build:extra",
            "name>=:devel/x",
            ">=1.0:devel/x",
            "a=>1:devel/x",
            "rel/path:devel/x",
            "foo:devel/x@",
        ] {
            let err = DepSpec::parse(DepKind::Run, bad).expect_err(bad);
            assert!(err.contains(bad) || err.contains(bad.split(':').nth(1).unwrap_or(bad)), "{bad}: {err}");
        }
    }

    #[test]
    fn parse_list_keeps_good_entries_and_reports_every_bad_one() {
        let (specs, errors) = DepSpec::parse_list(DepKind::Lib, " libgreet.so:devel/libgreet  bogus  x:misc/y  foo: ");
        assert_eq!(specs.len(), 2);
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].contains("bogus"));
        assert!(errors[1].contains("foo:"));
    }
}
