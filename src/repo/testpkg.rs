//! Test helper: writes packages in the bundled framework's exact layout
//! (`create-pkg.py`): GNU tar, owner 0:0, mtime 0, `+MANIFEST` first, then
//! the files relative to `/` sorted by name, compressed as one zstd frame.
//! Entries are written with raw header names, so tests can also build
//! hostile packages (absolute paths, `..`) that `tar::Builder` would refuse.

use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use tar::{EntryType, Header};

use super::fsutil::sha256_hex;
use super::manifest::{Manifest, ManifestFile, MANIFEST_ENTRY};

/// What an archive entry holds.
#[derive(Clone)]
pub(crate) enum Body {
    File(Vec<u8>, u32),
    Symlink(String),
    Dir(u32),
    HardLink(String),
    /// A device, fifo or other special entry of this type.
    Special(EntryType),
    /// A pax extended header holding these records.
    Pax(Vec<u8>),
}

/// One raw archive entry; `path` goes into the header verbatim.
#[derive(Clone)]
pub(crate) struct Entry {
    pub path: String,
    pub body: Body,
}

pub(crate) fn entry(path: &str, body: Body) -> Entry {
    Entry { path: path.to_string(), body }
}

/// Writes `entries`, in order, as a zstd-compressed tar at `dest`.
pub(crate) fn write_archive(dest: &Path, entries: &[Entry]) {
    fs::write(dest, zstd::encode_all(&tar_bytes(entries)[..], 19).unwrap()).unwrap();
}

/// `entries`, in order, as an uncompressed tar.
pub(crate) fn tar_bytes(entries: &[Entry]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for e in entries {
        let (kind, data, mode, link): (EntryType, &[u8], u32, Option<&str>) = match &e.body {
            Body::File(data, mode) => (EntryType::Regular, data, *mode, None),
            Body::Symlink(target) => (EntryType::Symlink, b"", 0o777, Some(target)),
            Body::Dir(mode) => (EntryType::Directory, b"", *mode, None),
            Body::HardLink(target) => (EntryType::Link, b"", 0o644, Some(target)),
            Body::Special(kind) => (*kind, b"", 0o666, None),
            Body::Pax(records) => (EntryType::XHeader, records, 0o644, None),
        };
        let header = header(&e.path, kind, data.len() as u64, mode, link);
        builder.append(&header, data).unwrap();
    }
    builder.into_inner().unwrap()
}

/// Writes, streaming, a package whose `+MANIFEST` is `manifest` and whose
/// one further entry `path` holds `size` zero bytes, followed (after the
/// end of the archive) by `trailing` more zero bytes inside the zstd
/// stream: a decompression bomb of a few KiB on disk.
pub(crate) fn write_bomb(dest: &Path, manifest: &[u8], path: &str, size: u64, trailing: u64) {
    let mut encoder = zstd::Encoder::new(fs::File::create(dest).unwrap(), 1).unwrap();
    {
        let mut builder = tar::Builder::new(&mut encoder);
        let first = header(MANIFEST_ENTRY, EntryType::Regular, manifest.len() as u64, 0o644, None);
        builder.append(&first, manifest).unwrap();
        let bomb = header(path, EntryType::Regular, size, 0o644, None);
        builder.append(&bomb, io::repeat(0).take(size)).unwrap();
        builder.finish().unwrap();
    }
    io::copy(&mut io::repeat(0).take(trailing), &mut encoder).unwrap();
    encoder.finish().unwrap().flush().unwrap();
}

fn header(path: &str, kind: EntryType, size: u64, mode: u32, link: Option<&str>) -> Header {
    let mut header = Header::new_gnu();
    let name = &mut header.as_old_mut().name;
    assert!(path.len() < name.len(), "test path too long: {path}");
    name[..path.len()].copy_from_slice(path.as_bytes());
    if let Some(link) = link {
        let slot = &mut header.as_old_mut().linkname;
        slot[..link.len()].copy_from_slice(link.as_bytes());
    }
    header.set_entry_type(kind);
    header.set_size(size);
    header.set_mode(mode);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(0);
    header.set_cksum();
    header
}

/// A well-formed package: its manifest is computed from its files.
pub(crate) struct Spec {
    pub name: String,
    pub version: String,
    pub prefix: String,
    /// `cat/port` and flavor recorded in the manifest.
    pub origin: String,
    pub flavor: String,
    /// Absolute path → contents.
    pub files: Vec<(String, Body)>,
}

impl Spec {
    pub(crate) fn new(name: &str, version: &str) -> Spec {
        Spec {
            name: name.into(),
            version: version.into(),
            prefix: "/usr/local".into(),
            origin: format!("misc/{name}"),
            flavor: String::new(),
            files: Vec::new(),
        }
    }

    pub(crate) fn file(mut self, path: &str, data: &[u8], mode: u32) -> Spec {
        self.files.push((path.into(), Body::File(data.to_vec(), mode)));
        self.files.sort_by(|a, b| a.0.cmp(&b.0));
        self
    }

    pub(crate) fn symlink(mut self, path: &str, target: &str) -> Spec {
        self.files.push((path.into(), Body::Symlink(target.into())));
        self.files.sort_by(|a, b| a.0.cmp(&b.0));
        self
    }

    pub(crate) fn pkgname(&self) -> String {
        format!("{}-{}", self.name, self.version)
    }

    pub(crate) fn manifest(&self) -> Manifest {
        let files = self.files.iter().map(|(path, body)| ManifestFile { path: path.clone(), sha256: digest(body) });
        Manifest {
            name: self.name.clone(),
            version: self.version.clone(),
            origin: self.origin.clone(),
            flavor: self.flavor.clone(),
            comment: "test package".into(),
            prefix: self.prefix.clone(),
            deps: Vec::new(),
            files: files.collect(),
        }
    }

    /// The manifest as `create-pkg.py` writes it (indent 2, final newline).
    pub(crate) fn manifest_json(&self) -> Vec<u8> {
        let mut json = serde_json::to_vec_pretty(&self.manifest()).unwrap();
        json.push(b'\n');
        json
    }

    /// `+MANIFEST`, then every file relative to `/`.
    pub(crate) fn entries(&self) -> Vec<Entry> {
        let mut entries = vec![entry(MANIFEST_ENTRY, Body::File(self.manifest_json(), 0o644))];
        entries.extend(self.files.iter().map(|(path, body)| entry(path.trim_start_matches('/'), body.clone())));
        entries
    }

    /// Writes `dir/<pkgname>.pkg`.
    pub(crate) fn write(&self, dir: &Path) -> PathBuf {
        self.write_entries(dir, &self.entries())
    }

    /// Writes `dir/<pkgname>.pkg` holding `entries` instead of the real ones.
    pub(crate) fn write_entries(&self, dir: &Path, entries: &[Entry]) -> PathBuf {
        let path = dir.join(format!("{}.pkg", self.pkgname()));
        write_archive(&path, entries);
        path
    }
}

/// The manifest digest of a body: contents, or the symlink target string.
fn digest(body: &Body) -> String {
    match body {
        Body::File(data, _) => sha256_hex(data),
        Body::Symlink(target) | Body::HardLink(target) => sha256_hex(target.as_bytes()),
        Body::Dir(_) | Body::Special(_) | Body::Pax(_) => sha256_hex(b""),
    }
}

/// The entries of `dir`, sorted by name (to check nothing was left behind).
pub fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names
}
