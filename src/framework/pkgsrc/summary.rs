//! The repository index of a pkgsrc packages directory:
//! `All/pkg_summary.gz` and `All/pkg_summary.zst`, what `pkgin` and
//! `pkg_add` users point at, plus `SHA256SUMS` as for every format
//! (`repo::index::index_packages`, which also reuses recorded digests).
//!
//! Each record is byte for byte what `pkg_info -X <file>` prints for the
//! package file (pkg_install's `info/show.c`, `show_summary`):
//!
//! 1. `PKGNAME=`, `DEPENDS=` and `CONFLICTS=` lines for the `@name`,
//!    `@pkgdep` and `@pkgcfl` lines of `+CONTENTS`, in their order;
//! 2. `COMMENT=` per line of `+COMMENT`; `SIZE_PKG=` per line of
//!    `+SIZE_PKG` if present;
//! 3. the lines of `+BUILD_INFO` that set one of [`BUILD_INFO_VARS`], as
//!    they stand, in the file's order;
//! 4. `FILE_NAME=` and `FILE_SIZE=` (the package file's name and size, as
//!    pkg_info adds them for a file);
//! 5. `DESCRIPTION=` per line of `+DESC`; then an empty line.
//!
//! "Per line" is pkg_info's `print_string_as_var`: every `\n`-ended line,
//! empty ones too, then what follows the last `\n` if anything; the files
//! are read as C strings, so a NUL ends them. Records follow each other in
//! file name order, so the whole file is `pkg_info -X All/*.tgz`.
//!
//! The index is generated here from the packages' metadata, not by running
//! pkg_info: the coordinator indexes the repository and must not run
//! anything a build produced.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};

use super::package::{read_metadata, Metadata, Tgz, COMMENT, DESC, SIZE_PKG};
use super::plist::Command;
use crate::repo::fsutil::write_atomically;
use crate::repo::index::{index_packages, IndexSummary, RecordedDigests, ALL_DIR};

/// The gzip'd summary, in `All/`.
pub const PKG_SUMMARY_GZ: &str = "pkg_summary.gz";
/// The zstd-compressed summary, in `All/`.
pub const PKG_SUMMARY_ZST: &str = "pkg_summary.zst";

/// The `+BUILD_INFO` variables a summary record carries (`show_summary`'s
/// `bi_vars`).
pub const BUILD_INFO_VARS: &[&str] = &[
    "PKGPATH",
    "CATEGORIES",
    "PROVIDES",
    "REQUIRES",
    "PKG_OPTIONS",
    "OPSYS",
    "OS_VERSION",
    "MACHINE_ARCH",
    "LICENSE",
    "HOMEPAGE",
    "PKGTOOLS_VERSION",
    "BUILD_DATE",
    "PREV_PKGPATH",
    "SUPERSEDES",
];

/// One package's record without its file: what comes before `FILE_NAME=`
/// and the `DESCRIPTION=` lines after it. Small, so a whole repository's
/// records are held while `All/` is read.
pub struct Record {
    head: Vec<u8>,
    description: Vec<u8>,
}

impl Record {
    pub fn of(metadata: &Metadata) -> Record {
        let mut head = Vec::new();
        for line in &metadata.contents.lines {
            let var = match line.command {
                Command::Name => "PKGNAME",
                Command::PkgDep => "DEPENDS",
                Command::PkgCfl => "CONFLICTS",
                _ => continue,
            };
            // printf("%s", NULL) of glibc, as pkg_info prints a bare command.
            let _ = writeln!(head, "{var}={}", line.arg.as_deref().unwrap_or("(null)"));
        }
        print_string_as_var(&mut head, "COMMENT", metadata.file(COMMENT).unwrap_or_default());
        if let Some(size) = metadata.file(SIZE_PKG) {
            print_string_as_var(&mut head, "SIZE_PKG", size);
        }
        if let Some(build_info) = metadata.file(super::package::BUILD_INFO) {
            copy_build_info(&mut head, build_info);
        }
        let mut description = Vec::new();
        print_string_as_var(&mut description, "DESCRIPTION", metadata.file(DESC).unwrap_or_default());
        Record { head, description }
    }

    /// The whole record of the package file `file_name` of `file_size`
    /// bytes, its closing empty line included.
    pub fn with_file(&self, file_name: &str, file_size: u64) -> Vec<u8> {
        let mut record = self.head.clone();
        let _ = write!(record, "FILE_NAME={file_name}\nFILE_SIZE={file_size}\n");
        record.extend_from_slice(&self.description);
        record.push(b'\n');
        record
    }
}

/// The record of one package file, as `pkg_info -X <file>` prints it.
pub fn record_of(pkg: &Path) -> Result<Vec<u8>> {
    let record = Record::of(&read_metadata(pkg)?);
    let size = std::fs::metadata(pkg).with_context(|| format!("cannot stat {}", pkg.display()))?.len();
    let name = pkg.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(record.with_file(&name, size))
}

/// Rewrites `SHA256SUMS`, `All/pkg_summary.gz` and `All/pkg_summary.zst`
/// of `packages_dir` from its `All/*.tgz` (each file atomically).
pub fn rebuild_index(packages_dir: &Path, recorded: &RecordedDigests) -> Result<IndexSummary> {
    let read = |pkg: &Path| read_metadata(pkg).map(|metadata| Record::of(&metadata));
    let (packages, summary) = index_packages(packages_dir, &Tgz, recorded, read)?;
    let text: Vec<u8> = packages.iter().flat_map(|p| p.meta.with_file(&p.name, p.size)).collect();
    let all_dir = packages_dir.join(ALL_DIR);
    write_atomically(&all_dir.join(PKG_SUMMARY_GZ), &gzip(&text)?)?;
    let zst = zstd::encode_all(&text[..], 19).context("cannot compress pkg_summary with zstd")?;
    write_atomically(&all_dir.join(PKG_SUMMARY_ZST), &zst)?;
    Ok(summary)
}

fn gzip(text: &[u8]) -> Result<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(text).and_then(|()| encoder.finish()).context("cannot compress pkg_summary with gzip")
}

/// A metadata file as pkg_info holds it: a C string, ended by a NUL.
fn c_string(bytes: &[u8]) -> &[u8] {
    bytes.split(|&b| b == 0).next().unwrap_or_default()
}

/// pkg_info's `print_string_as_var`: `VAR=line` for every `\n`-ended
/// line, then for what follows the last one, if anything.
fn print_string_as_var(out: &mut Vec<u8>, var: &str, value: &[u8]) {
    let value = c_string(value);
    let mut lines = value.split(|&b| b == b'\n').peekable();
    while let Some(line) = lines.next() {
        if lines.peek().is_none() && line.is_empty() {
            break;
        }
        out.extend_from_slice(var.as_bytes());
        out.push(b'=');
        out.extend_from_slice(line);
        out.push(b'\n');
    }
}

/// pkg_install's `var_copy_list` over [`BUILD_INFO_VARS`]: every line
/// that sets one of them, as it stands.
fn copy_build_info(out: &mut Vec<u8>, build_info: &[u8]) {
    for line in c_string(build_info).split(|&b| b == b'\n') {
        let sets = |var: &&str| line.strip_prefix(var.as_bytes()).is_some_and(|rest| rest.first() == Some(&b'='));
        if BUILD_INFO_VARS.iter().any(sets) {
            out.extend_from_slice(line);
            out.push(b'\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framework::pkgsrc::plist::Contents;
    use std::collections::BTreeMap;

    fn metadata(contents: &str, files: &[(&'static str, &str)]) -> Metadata {
        Metadata {
            contents: Contents::parse(contents.as_bytes()).unwrap(),
            files: files.iter().map(|(name, text)| (*name, text.as_bytes().to_vec())).collect::<BTreeMap<_, _>>(),
        }
    }

    #[test]
    fn multi_line_values_are_printed_line_by_line() {
        let mut out = Vec::new();
        print_string_as_var(&mut out, "D", b"one\n\n\ttwo\nthree");
        print_string_as_var(&mut out, "E", b"");
        print_string_as_var(&mut out, "F", b"x\n");
        print_string_as_var(&mut out, "G", b"cut\0 after a NUL\n");
        assert_eq!(String::from_utf8(out).unwrap(), "D=one\nD=\nD=\ttwo\nD=three\nF=x\nG=cut\n");
    }

    #[test]
    fn a_record_is_in_pkg_info_order() {
        let meta = metadata(
            "@cwd /usr/pkg\n@name b-1.0\n@blddep a-1.0\n@pkgdep a>=1\n@pkgcfl c-[0-9]*\n@pkgdep d-[0-9]*\nbin/b\n\
             @comment MD5:00112233445566778899aabbccddeeff\n",
            &[
                (COMMENT, "B tool\n"),
                (DESC, "Line one.\n\nLine three.\n"),
                ("+BUILD_INFO", "ABI=64\nBUILD_DATE=2026-12-01 12:27:42 +0000\nCATEGORIES=misc\nHOMEPAGE= http://b/\nOPSYS=Linux\nPKGPATHX=no\nPKGPATH=misc/b\nREQUIRES=/lib/libc.so.6\nREQUIRES=/lib/libm.so.6\n"),
                (SIZE_PKG, "1234\n"),
            ],
        );
        let record = Record::of(&meta).with_file("b-1.0.tgz", 99);
        let want = "PKGNAME=b-1.0\nDEPENDS=a>=1\nCONFLICTS=c-[0-9]*\nDEPENDS=d-[0-9]*\nCOMMENT=B tool\nSIZE_PKG=1234\n\
            BUILD_DATE=2026-12-01 12:27:42 +0000\nCATEGORIES=misc\nHOMEPAGE= http://b/\nOPSYS=Linux\nPKGPATH=misc/b\n\
            REQUIRES=/lib/libc.so.6\nREQUIRES=/lib/libm.so.6\nFILE_NAME=b-1.0.tgz\nFILE_SIZE=99\n\
            DESCRIPTION=Line one.\nDESCRIPTION=\nDESCRIPTION=Line three.\n\n";
        assert_eq!(String::from_utf8(record).unwrap(), want);
    }

    #[test]
    fn optional_metadata_leaves_its_lines_out() {
        let meta = metadata("@cwd /usr/pkg\n@name b-1.0\n", &[(COMMENT, "c"), (DESC, "d")]);
        let record = Record::of(&meta).with_file("b-1.0.tgz", 1);
        assert_eq!(
            String::from_utf8(record).unwrap(),
            "PKGNAME=b-1.0\nCOMMENT=c\nFILE_NAME=b-1.0.tgz\nFILE_SIZE=1\nDESCRIPTION=d\n\n"
        );
    }

    #[test]
    fn the_index_holds_every_package_in_file_name_order() {
        use crate::framework::pkgsrc::testpkg::Spec;
        use crate::repo::index::{obsolete, SHA256SUMS};
        use crate::repo::sha256_file;
        use std::io::Read;

        let dir = tempfile::tempdir().unwrap();
        let all = dir.path().join(ALL_DIR);
        std::fs::create_dir(&all).unwrap();
        let b = Spec::new("b-1.0").line("@pkgdep a>=1").file("bin/b", b"b", 0o755).write(&all);
        let a = Spec::new("a-1.0").file("bin/a", b"a", 0o755).write(&all);
        let broken = all.join("broken-1.0.tgz");
        std::fs::write(&broken, b"not gzip").unwrap();
        std::fs::write(all.join("bundled-1.0.pkg"), b"another format").unwrap();

        let summary = rebuild_index(dir.path(), &RecordedDigests::new()).unwrap();
        assert_eq!(summary.packages, 2);
        assert_eq!(summary.unreadable.len(), 1);
        assert_eq!(summary.unreadable[0].0, broken);
        assert!(summary.unreadable[0].1.contains("not gzip-compressed"), "{:?}", summary.unreadable);

        let want = [record_of(&a).unwrap(), record_of(&b).unwrap()].concat();
        assert!(String::from_utf8_lossy(&want).contains("PKGNAME=b-1.0\nDEPENDS=a>=1\n"));
        let mut gunzipped = Vec::new();
        let gz = std::fs::read(all.join(PKG_SUMMARY_GZ)).unwrap();
        flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut gunzipped).unwrap();
        assert_eq!(gunzipped, want);
        assert_eq!(zstd::decode_all(&std::fs::read(all.join(PKG_SUMMARY_ZST)).unwrap()[..]).unwrap(), want);
        let sums = std::fs::read_to_string(dir.path().join(SHA256SUMS)).unwrap();
        let want_sums =
            format!("{}  All/a-1.0.tgz\n{}  All/b-1.0.tgz\n", sha256_file(&a).unwrap(), sha256_file(&b).unwrap());
        assert_eq!(sums, want_sums);

        let produced = ["a-1.0.tgz".to_string()].into();
        assert_eq!(obsolete(dir.path(), &Tgz, &produced).unwrap(), [b, broken]);
    }
}
