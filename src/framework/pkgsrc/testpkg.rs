//! Test helper: writes pkgsrc packages in pkg_create's layout (gzip'd tar,
//! `+CONTENTS` first with an `@comment MD5:`/`Symlink:` after each file,
//! then `+COMMENT`, `+DESC`, `+BUILD_INFO`, `+SIZE_PKG`, then the files in
//! packing list order), with raw tar headers (`repo::testpkg`) so tests
//! can also build hostile ones.

use std::io::Write;
use std::path::{Path, PathBuf};

use md5::{Digest, Md5};

use crate::repo::archive::hex;
use crate::repo::testpkg::{entry, tar_bytes, Body, Entry};

pub(crate) struct Spec {
    pub pkgname: String,
    pub prefix: String,
    pub pkgpath: String,
    /// `+CONTENTS` lines after `@name`, before the files.
    pub header_lines: Vec<String>,
    /// Paths relative to the prefix, in packing list order.
    pub files: Vec<(String, Body)>,
}

impl Spec {
    pub(crate) fn new(pkgname: &str) -> Spec {
        Spec {
            pkgname: pkgname.into(),
            prefix: "/usr/pkg".into(),
            pkgpath: format!("misc/{}", pkgsrc::pkgname::pkgbase(pkgname)),
            header_lines: Vec::new(),
            files: Vec::new(),
        }
    }

    pub(crate) fn file(mut self, path: &str, data: &[u8], mode: u32) -> Spec {
        self.files.push((path.into(), Body::File(data.to_vec(), mode)));
        self
    }

    pub(crate) fn symlink(mut self, path: &str, target: &str) -> Spec {
        self.files.push((path.into(), Body::Symlink(target.into())));
        self
    }

    pub(crate) fn hard_link(mut self, path: &str, target: &str) -> Spec {
        self.files.push((path.into(), Body::HardLink(target.into())));
        self
    }

    pub(crate) fn dir(mut self, path: &str, mode: u32) -> Spec {
        self.files.push((path.into(), Body::Dir(mode)));
        self
    }

    pub(crate) fn line(mut self, line: &str) -> Spec {
        self.header_lines.push(line.into());
        self
    }

    /// The MD5 `+CONTENTS` lists for `body` (a hard link's is its target's).
    fn md5_of(&self, body: &Body) -> Option<String> {
        match body {
            Body::File(data, _) => Some(hex(&Md5::digest(data))),
            Body::HardLink(target) => self.files.iter().find(|(p, _)| p == target).and_then(|(_, b)| self.md5_of(b)),
            _ => None,
        }
    }

    /// `+CONTENTS` as pkg_create writes it.
    pub(crate) fn contents(&self) -> String {
        let mut text = format!("@cwd {}\n@name {}\n", self.prefix, self.pkgname);
        for line in &self.header_lines {
            text.push_str(line);
            text.push('\n');
        }
        for (path, body) in &self.files {
            text.push_str(path);
            text.push('\n');
            match (body, self.md5_of(body)) {
                (Body::Symlink(target), _) => text.push_str(&format!("@comment Symlink:{target}\n")),
                (_, Some(md5)) => text.push_str(&format!("@comment MD5:{md5}\n")),
                _ => {}
            }
        }
        text.push_str(&format!("@cwd {}\n", self.prefix));
        for name in ["+COMMENT", "+DESC", "+BUILD_INFO", "+SIZE_PKG"] {
            text.push_str(&format!("@ignore\n{name}\n"));
        }
        text
    }

    pub(crate) fn build_info(&self) -> String {
        format!("BUILD_DATE=2026-12-01 12:00:00 +0000\nCATEGORIES=misc\nOPSYS=Linux\nPKGPATH={}\n", self.pkgpath)
    }

    /// The metadata entries, `+CONTENTS` first, in pkg_add's order.
    pub(crate) fn metadata_entries(&self, contents: &str) -> Vec<Entry> {
        vec![
            entry("+CONTENTS", Body::File(contents.as_bytes().to_vec(), 0o644)),
            entry("+COMMENT", Body::File(b"test package\n".to_vec(), 0o444)),
            entry("+DESC", Body::File(b"A package.\n".to_vec(), 0o444)),
            entry("+BUILD_INFO", Body::File(self.build_info().into_bytes(), 0o444)),
            entry("+SIZE_PKG", Body::File(b"42\n".to_vec(), 0o444)),
        ]
    }

    pub(crate) fn file_entries(&self) -> Vec<Entry> {
        self.files.iter().map(|(path, body)| entry(path, body.clone())).collect()
    }

    pub(crate) fn entries(&self) -> Vec<Entry> {
        let mut entries = self.metadata_entries(&self.contents());
        entries.extend(self.file_entries());
        entries
    }

    pub(crate) fn write(&self, dir: &Path) -> PathBuf {
        self.write_entries(dir, &self.entries())
    }

    /// Writes `dir/<pkgname>.tgz` holding `entries`.
    pub(crate) fn write_entries(&self, dir: &Path, entries: &[Entry]) -> PathBuf {
        let path = dir.join(format!("{}.tgz", self.pkgname));
        std::fs::write(&path, gzip(&tar_bytes(entries))).unwrap();
        path
    }
}

pub(crate) fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}
