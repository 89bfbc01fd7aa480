//! `+CONTENTS`, the packing list of a pkgsrc binary package.
//!
//! Parsed line by line exactly as pkg_install's `parse_plist`
//! (`pkgtools/pkg_install/files/lib/plist.c`) does, because what it yields
//! feeds two things that must agree with pkg_install: the verifier, which
//! must see the files `pkg_add` will extract, and `pkg_summary`, which must
//! be what `pkg_info -X` prints. So: trailing white space (C `isspace`) is
//! dropped and blank lines skipped; a line starting with `@` is a command,
//! recognised as pkg_install does, by the first command *name that prefixes
//! the line* in its table order (`@cwd/usr/pkg` is `@cwd /usr/pkg`); its
//! argument is the rest, leading white space dropped, none if empty; any
//! other line is a file. Two departures, both refusals of input pkg_install
//! would half-accept: an unknown command (pkg_install warns and skips it)
//! and a NUL byte (pkg_install stops reading there, so the files after it
//! would be unlisted) make the list invalid.
//!
//! [`Contents`] is the list after the structural rules every package must
//! satisfy before its files are trusted (one `@name`, `@cwd` before the
//! first file, clean relative paths listed once, each file's kind from the
//! comment pkg_create puts after it: `@comment MD5:<hex>` for a regular
//! file, `@comment Symlink:<target>` for a symlink, nothing for a
//! directory). The rules that depend on the builder's policy (the prefix,
//! setuid, the origin) are checked by [`super::package`].

use std::collections::HashSet;

/// A `+CONTENTS` command (pkg_install's `pl_ent_t`), or a file line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    File,
    Cwd,
    Src,
    Exec,
    Unexec,
    Mode,
    Owner,
    Group,
    Comment,
    Ignore,
    Name,
    Display,
    PkgDep,
    PkgCfl,
    PkgDir,
    DirRm,
    Option,
    BldDep,
}

/// pkg_install's `cmdv`, in its order: the first name that prefixes the
/// text after `@` wins.
const COMMANDS: &[(&str, Command)] = &[
    ("cwd", Command::Cwd),
    ("src", Command::Src),
    ("exec", Command::Exec),
    ("unexec", Command::Unexec),
    ("mode", Command::Mode),
    ("owner", Command::Owner),
    ("group", Command::Group),
    ("comment", Command::Comment),
    ("ignore", Command::Ignore),
    ("name", Command::Name),
    ("display", Command::Display),
    ("pkgdep", Command::PkgDep),
    ("pkgcfl", Command::PkgCfl),
    ("pkgdir", Command::PkgDir),
    ("dirrm", Command::DirRm),
    ("option", Command::Option),
    ("blddep", Command::BldDep),
];

/// The comment pkg_create puts after a regular file.
const MD5_COMMENT: &str = "MD5:";
/// The comment pkg_create puts after a symlink.
const SYMLINK_COMMENT: &str = "Symlink:";

/// One non-blank line: its number (from 1), command and argument.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub number: usize,
    pub command: Command,
    /// The argument, or the path of a file line; `None` when empty.
    pub arg: Option<String>,
}

/// C's `isspace` in the C locale.
fn is_c_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\x0b' | '\x0c' | '\r')
}

/// The lines of a `+CONTENTS`, or why it is not one.
pub fn parse(raw: &[u8]) -> Result<Vec<Line>, String> {
    if let Some(at) = raw.iter().position(|&b| b == 0) {
        return Err(format!("has a NUL byte at offset {at}"));
    }
    let text = std::str::from_utf8(raw).map_err(|e| format!("is not UTF-8 ({e})"))?;
    let mut lines = Vec::new();
    for (index, line) in text.split('\n').enumerate() {
        let line = line.trim_end_matches(is_c_space);
        if line.is_empty() {
            continue;
        }
        let number = index + 1;
        let (command, arg) = match line.strip_prefix('@') {
            None => (Command::File, Some(line)),
            Some(rest) => {
                let (name, command) = COMMANDS
                    .iter()
                    .find(|(name, _)| rest.starts_with(name))
                    .ok_or_else(|| format!("line {number}: unrecognised command {line}"))?;
                let arg = rest[name.len()..].trim_start_matches(is_c_space);
                (*command, (!arg.is_empty()).then_some(arg))
            }
        };
        lines.push(Line { number, command, arg: arg.map(str::to_string) });
    }
    Ok(lines)
}

/// What `+CONTENTS` says a listed path is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listed {
    Regular { md5: String },
    Symlink { target: String },
    Directory,
}

impl Listed {
    pub fn describe(&self) -> &'static str {
        match self {
            Listed::Regular { .. } => "a regular file",
            Listed::Symlink { .. } => "a symlink",
            Listed::Directory => "a directory",
        }
    }
}

/// A path `pkg_add` extracts, relative to the prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListedFile {
    pub line: usize,
    pub path: String,
    pub kind: Listed,
}

/// A checked `+CONTENTS`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contents {
    /// Every line, in order (the summary reads `@name`, `@pkgdep` and
    /// `@pkgcfl` from them).
    pub lines: Vec<Line>,
    /// The `@name` (PKGNAME).
    pub name: String,
    /// Every `@cwd` argument, with its line number.
    pub cwds: Vec<(usize, String)>,
    /// The files `pkg_add` extracts, in the order it expects them in the
    /// archive (the `@ignore`d metadata files are not among them).
    pub files: Vec<ListedFile>,
    /// The metadata files listed after `@ignore` (`+COMMENT`, ...).
    pub ignored: Vec<String>,
}

impl Contents {
    /// Parses `raw` and applies the structural rules (module doc).
    pub fn parse(raw: &[u8]) -> Result<Contents, String> {
        Contents::from_lines(parse(raw)?)
    }

    fn from_lines(lines: Vec<Line>) -> Result<Contents, String> {
        let mut names = Vec::new();
        let mut cwds = Vec::new();
        let mut files = Vec::new();
        let mut ignored = Vec::new();
        let mut listed = HashSet::new();
        let mut index = 0;
        while index < lines.len() {
            let line = &lines[index];
            let at = |why: String| format!("line {}: {why}", line.number);
            match line.command {
                Command::Name | Command::Cwd | Command::PkgDep | Command::PkgCfl | Command::BldDep
                    if line.arg.is_none() =>
                {
                    return Err(at(format!("@{} without an argument", command_name(line.command))));
                }
                Command::Name => names.push(line.arg.clone().unwrap_or_default()),
                Command::Cwd => cwds.push((line.number, line.arg.clone().unwrap_or_default())),
                Command::PkgDir => {
                    let dir = line.arg.as_deref().unwrap_or_default();
                    clean_relative(dir).map_err(|why| at(format!("@pkgdir {dir}: {why}")))?;
                }
                Command::Ignore => {
                    let next = lines.get(index + 1).filter(|next| next.command == Command::File);
                    let name = next.and_then(|next| next.arg.as_deref()).filter(|name| is_metadata_name(name));
                    let name = name.ok_or_else(|| at("@ignore is not followed by a metadata file (+NAME)".into()))?;
                    ignored.push(name.to_string());
                    index += 2;
                    continue;
                }
                Command::File => {
                    let path = line.arg.clone().unwrap_or_default();
                    clean_relative(&path).map_err(|why| at(format!("{path}: {why}")))?;
                    if cwds.is_empty() {
                        return Err(at(format!("{path} comes before any @cwd")));
                    }
                    if !listed.insert(path.clone()) {
                        return Err(at(format!("{path} is listed twice")));
                    }
                    let kind = listed_kind(lines.get(index + 1)).map_err(at)?;
                    files.push(ListedFile { line: line.number, path, kind });
                }
                _ => {}
            }
            index += 1;
        }
        let name = match names.as_slice() {
            [name] => name.clone(),
            [] => return Err("has no @name".into()),
            _ => return Err(format!("has {} @name lines", names.len())),
        };
        check_nothing_below_a_file(&files)?;
        Ok(Contents { lines, name, cwds, files, ignored })
    }

    /// The arguments of the `@mode` lines, with their line numbers.
    pub fn modes(&self) -> impl Iterator<Item = (usize, &str)> {
        self.lines.iter().filter(|l| l.command == Command::Mode).filter_map(|l| Some((l.number, l.arg.as_deref()?)))
    }
}

/// No listed path lies below a listed regular file or symlink: extracting
/// it would go through a symlink (pkg_add's libarchive follows them) or
/// replace the file.
fn check_nothing_below_a_file(files: &[ListedFile]) -> Result<(), String> {
    let not_dirs: HashSet<&str> =
        files.iter().filter(|f| f.kind != Listed::Directory).map(|f| f.path.as_str()).collect();
    for file in files {
        let mut dir = file.path.as_str();
        while let Some((parent, _)) = dir.rsplit_once('/') {
            if not_dirs.contains(parent) {
                return Err(format!("line {}: {} is listed below file {parent}", file.line, file.path));
            }
            dir = parent;
        }
    }
    Ok(())
}

/// The kind of the file whose following line is `next`: pkg_create writes
/// `@comment MD5:` after a regular file, `@comment Symlink:` after a
/// symlink and nothing after a directory.
fn listed_kind(next: Option<&Line>) -> Result<Listed, String> {
    let comment = next.filter(|l| l.command == Command::Comment).and_then(|l| l.arg.as_deref()).unwrap_or("");
    if let Some(md5) = comment.strip_prefix(MD5_COMMENT) {
        if md5.len() != 32 || !md5.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return Err(format!("MD5 {md5:?} is not 32 lower-case hex digits"));
        }
        return Ok(Listed::Regular { md5: md5.to_string() });
    }
    if let Some(target) = comment.strip_prefix(SYMLINK_COMMENT) {
        return Ok(Listed::Symlink { target: target.to_string() });
    }
    Ok(Listed::Directory)
}

/// The name pkg_install's table gives `command` (for errors).
fn command_name(command: Command) -> &'static str {
    COMMANDS.iter().find(|(_, c)| *c == command).map_or("file", |(name, _)| name)
}

/// A metadata file of a package (`+CONTENTS`, `+COMMENT`, ...).
pub fn is_metadata_name(name: &str) -> bool {
    name.starts_with('+') && !name.contains('/')
}

/// A path relative to the prefix that stays below it: not empty, not
/// absolute, no empty, `.` or `..` component.
pub fn clean_relative(path: &str) -> Result<(), &'static str> {
    if path.starts_with('/') {
        return Err("unsafe path (absolute)");
    }
    if path.split('/').any(|part| part == "..") {
        return Err("unsafe path (contains ..)");
    }
    if path.split('/').any(|part| part.is_empty() || part == ".") {
        return Err("not a clean relative path");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const DIGEST: &str = "@cwd /usr/pkg\n@name digest-20121220\n@comment $NetBSD: PLIST,v 1.3 $\nbin/digest\n\
        @comment MD5:d167e5397e41bcbe59b34438a0aa2376\nman/man1/digest.1\n\
        @comment MD5:7786d2983458b4265f58cda93a8d020d\n@cwd /usr/pkg\n@ignore\n+COMMENT\n@ignore\n+DESC\n";

    #[test]
    fn a_real_packing_list_parses() {
        let contents = Contents::parse(DIGEST.as_bytes()).unwrap();
        assert_eq!(contents.name, "digest-20121220");
        assert_eq!(contents.cwds, [(1, "/usr/pkg".to_string()), (8, "/usr/pkg".to_string())]);
        let files: Vec<(&str, &Listed)> = contents.files.iter().map(|f| (f.path.as_str(), &f.kind)).collect();
        assert_eq!(
            files,
            [
                ("bin/digest", &Listed::Regular { md5: "d167e5397e41bcbe59b34438a0aa2376".into() }),
                ("man/man1/digest.1", &Listed::Regular { md5: "7786d2983458b4265f58cda93a8d020d".into() }),
            ]
        );
        assert_eq!(contents.ignored, ["+COMMENT", "+DESC"]);
    }

    #[test]
    fn commands_are_recognised_as_pkg_install_does() {
        let lines =
            parse(b"@cwd/usr/pkg  \r\n\n   \n@pkgdep   foo>=1 \t\n@commentary\n@ignore\n@option preserve\nbin/x\n")
                .unwrap();
        let got: Vec<(usize, Command, Option<&str>)> =
            lines.iter().map(|l| (l.number, l.command, l.arg.as_deref())).collect();
        assert_eq!(
            got,
            [
                (1, Command::Cwd, Some("/usr/pkg")),
                (4, Command::PkgDep, Some("foo>=1")),
                (5, Command::Comment, Some("ary")),
                (6, Command::Ignore, None),
                (7, Command::Option, Some("preserve")),
                (8, Command::File, Some("bin/x")),
            ]
        );
        assert!(parse(b"@cwd /usr/pkg\n@frobnicate x\n")
            .unwrap_err()
            .contains("line 2: unrecognised command @frobnicate"));
        assert!(parse(b"@name x-1\nbin/a\0bin/b\n").unwrap_err().contains("NUL byte"));
    }

    #[test]
    fn kinds_come_from_the_comment_after_the_file() {
        let contents = Contents::parse(
            b"@cwd /p\n@name x-1\nlib/libx.so\n@comment Symlink:libx.so.1\nlib/libx.so.1\n\
              @comment MD5:00112233445566778899aabbccddeeff\nshare/x\n@pkgdir share/empty\n",
        )
        .unwrap();
        let kinds: Vec<&Listed> = contents.files.iter().map(|f| &f.kind).collect();
        assert_eq!(
            kinds,
            [
                &Listed::Symlink { target: "libx.so.1".into() },
                &Listed::Regular { md5: "00112233445566778899aabbccddeeff".into() },
                &Listed::Directory
            ]
        );
    }

    #[test]
    fn unsafe_packing_lists_are_refused() {
        let cases: &[(&str, &str)] = &[
            ("@cwd /p\nbin/x\n", "has no @name"),
            ("@cwd /p\n@name a-1\n@name b-1\n", "has 2 @name lines"),
            ("@name a-1\n@cwd\n", "line 2: @cwd without an argument"),
            ("@name a-1\n@pkgdep\n", "line 2: @pkgdep without an argument"),
            ("@name a-1\nbin/x\n@cwd /p\n", "line 2: bin/x comes before any @cwd"),
            ("@cwd /p\n@name a-1\n../../etc/passwd\n", "line 3: ../../etc/passwd: unsafe path (contains ..)"),
            ("@cwd /p\n@name a-1\n/etc/passwd\n", "line 3: /etc/passwd: unsafe path (absolute)"),
            ("@cwd /p\n@name a-1\nbin//x\n", "not a clean relative path"),
            ("@cwd /p\n@name a-1\n./bin/x\n", "not a clean relative path"),
            ("@cwd /p\n@name a-1\nbin/x\nbin/x\n", "line 4: bin/x is listed twice"),
            ("@cwd /p\n@name a-1\n@ignore\nbin/x\n", "line 3: @ignore is not followed by a metadata file"),
            ("@cwd /p\n@name a-1\n@ignore\n", "@ignore is not followed"),
            ("@cwd /p\n@name a-1\n@pkgdir ../../etc\n", "line 3: @pkgdir ../../etc: unsafe path"),
            ("@cwd /p\n@name a-1\nbin/x\n@comment MD5:xyz\n", "line 3: MD5 \"xyz\" is not 32"),
            (
                "@cwd /p\n@name a-1\nlib/d\n@comment Symlink:/etc\nlib/d/passwd\n",
                "lib/d/passwd is listed below file lib/d",
            ),
        ];
        for (raw, want) in cases {
            let err = Contents::parse(raw.as_bytes()).unwrap_err();
            assert!(err.contains(want), "{raw:?}: {err}");
        }
    }
}
