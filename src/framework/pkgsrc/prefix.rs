//! A bootstrap kit (`bootstrap --gzip-binary-kit`: a gzipped tar of
//! `./PREFIX/…`) unpacked once per kit, for the scan sandboxes, which bind
//! its prefix read-only at the same path: the kit's bmake, its `share/mk`
//! and its `etc/mk.conf` are what `pbulk-index` needs.
//!
//! The directory is named by the CRC of the kit file, so a new kit gets a
//! new directory and an unchanged one is never unpacked twice; it is
//! unpacked into a temporary directory and renamed, so a half-unpacked kit
//! is never used. The kit is data: entries must stay below the directory
//! (the tar crate refuses others; hard links only to entries inside), and
//! device nodes, fifos and setuid/setgid bits are refused.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use crate::config::Config;
use crate::framework::Kind;

/// An unpacked kit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpackedKit {
    /// The kit's prefix on the host (inside the unpacked directory).
    pub host: PathBuf,
    /// The prefix the kit was made for (`/usr/pkg`): where sandboxes see it.
    pub prefix: PathBuf,
    /// CRC32 of the kit file: part of every pkgsrc port's build key.
    pub crc: u32,
}

impl UnpackedKit {
    /// The kit's make program.
    pub fn bmake(&self) -> PathBuf {
        self.prefix.join("bin/bmake")
    }
}

/// Below `build_base`: unpacked bootstrap kits, one directory per kit.
pub const KITS: &str = "kits";

/// The bootstrap kit of `config`'s tree, unpacked; `None` for a framework
/// without one. A pkgsrc tree without `bootstrap_kit` is an error.
pub fn of_config(config: &Config) -> Result<Option<UnpackedKit>> {
    match (config.framework, &config.bootstrap_kit) {
        (Kind::Bundled, _) => Ok(None),
        (Kind::Pkgsrc, Some(kit)) => unpack(kit, &config.build_base.join(KITS)).map(Some),
        (Kind::Pkgsrc, None) => bail!(
            "config {}: a pkgsrc tree is scanned and built with its bootstrap kit's bmake: set bootstrap_kit \
             (a kit made by `bootstrap --gzip-binary-kit`, or by `portsynth bootstrap-kit`)",
            config.file.display()
        ),
    }
}

/// The make program of scans and builds: the kit's bmake, unless the
/// config names another one.
pub fn make_program(config: &Config, kit: Option<&UnpackedKit>) -> String {
    match kit {
        Some(kit) if config.make_program == crate::config::DEFAULT_MAKE_PROGRAM => {
            kit.bmake().to_string_lossy().into_owned()
        }
        _ => config.make_program.clone(),
    }
}

/// Unpacks `kit` below `kits_dir` unless it already is.
pub fn unpack(kit: &Path, kits_dir: &Path) -> Result<UnpackedKit> {
    let crc = crate::builddb::crc::file_crc(kit)
        .with_context(|| format!("cannot read the bootstrap kit {}", kit.display()))?;
    let dir = kits_dir.join(format!("{crc:08x}"));
    if !dir.join(".complete").is_file() {
        std::fs::create_dir_all(kits_dir).with_context(|| format!("cannot create {}", kits_dir.display()))?;
        let temporary = kits_dir.join(format!(".{crc:08x}.{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&temporary);
        extract(kit, &temporary).with_context(|| format!("cannot unpack the bootstrap kit {}", kit.display()))?;
        std::fs::write(temporary.join(".complete"), b"")?;
        if let Err(e) = std::fs::rename(&temporary, &dir) {
            // Another portsynth unpacked the same kit meanwhile.
            let _ = std::fs::remove_dir_all(&temporary);
            if !dir.join(".complete").is_file() {
                return Err(e).with_context(|| format!("cannot rename the unpacked kit to {}", dir.display()));
            }
        }
    }
    let relative = find_prefix(&dir, Path::new(""), 0)
        .with_context(|| format!("the bootstrap kit {} holds no PREFIX/bin/bmake", kit.display()))?;
    Ok(UnpackedKit { host: dir.join(&relative), prefix: Path::new("/").join(relative), crc })
}

fn extract(kit: &Path, into: &Path) -> Result<()> {
    let file = std::fs::File::open(kit)?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    archive.set_preserve_permissions(true);
    archive.set_overwrite(false);
    std::fs::create_dir_all(into)?;
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        let kind = entry.header().entry_type();
        if kind.is_hard_link() {
            // pkg_install hard-links files in the pkgdb: fine within the kit.
            let target = entry.link_name()?.map(|t| t.into_owned()).unwrap_or_default();
            let inside = target
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_) | std::path::Component::CurDir));
            if !inside {
                bail!("{}: hard link to {} leaves the kit", path.display(), target.display());
            }
            // bootstrap's kit tar lists some pkgdb files twice, the second
            // time as a link to themselves.
            let plain =
                |p: &Path| p.components().filter(|c| !matches!(c, std::path::Component::CurDir)).collect::<PathBuf>();
            if plain(&target) == plain(&path) {
                continue;
            }
        } else if !(kind.is_file() || kind.is_dir() || kind.is_symlink()) {
            bail!("{}: entry type {kind:?} is not allowed in a kit", path.display());
        }
        if entry.header().mode()? & 0o6000 != 0 {
            bail!("{}: setuid/setgid bits are not allowed in a kit", path.display());
        }
        if !entry.unpack_in(into)? {
            bail!("{}: the entry leaves the kit", path.display());
        }
    }
    Ok(())
}

/// The directory below `root` that holds `bin/bmake` (the kit's prefix).
fn find_prefix(root: &Path, relative: &Path, depth: usize) -> Option<PathBuf> {
    let here = root.join(relative);
    if here.join("bin/bmake").is_file() && here.join("share/mk").is_dir() {
        return Some(relative.to_path_buf());
    }
    if depth >= 6 {
        return None;
    }
    let mut names: Vec<_> = std::fs::read_dir(&here)
        .ok()?
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name())
        .collect();
    names.sort();
    names.into_iter().find_map(|name| find_prefix(root, &relative.join(name), depth + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kit(entries: &[(&str, u32, &[u8])]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kit.tgz");
        let gz = flate2::write::GzEncoder::new(std::fs::File::create(&path).unwrap(), flate2::Compression::fast());
        let mut builder = tar::Builder::new(gz);
        for (name, mode, data) in entries {
            let mut header = tar::Header::new_gnu();
            if name.ends_with('/') {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_size(0);
            } else {
                header.set_size(data.len() as u64);
            }
            header.set_mode(*mode);
            // Written raw: the builder itself refuses `..` in names.
            let raw = &mut header.as_old_mut().name;
            raw[..name.len()].copy_from_slice(name.as_bytes());
            header.set_cksum();
            builder.append(&header, *data).unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap();
        (dir, path)
    }

    #[test]
    fn a_kit_is_unpacked_once_and_its_prefix_found() {
        let (dir, path) = kit(&[
            ("./usr/pkg/bin/bmake", 0o755, b"#!"),
            ("./usr/pkg/share/mk/", 0o755, b""),
            ("./usr/pkg/etc/mk.conf", 0o644, b"X=1\n"),
        ]);
        let kits = dir.path().join("kits");
        let unpacked = unpack(&path, &kits).unwrap();
        assert_eq!(unpacked.prefix, Path::new("/usr/pkg"));
        assert_eq!(unpacked.bmake(), Path::new("/usr/pkg/bin/bmake"));
        assert!(unpacked.host.join("etc/mk.conf").is_file());
        std::fs::write(unpacked.host.join("marker"), b"").unwrap();
        assert_eq!(unpack(&path, &kits).unwrap(), unpacked);
        assert!(unpacked.host.join("marker").is_file(), "not unpacked twice");
    }

    #[test]
    fn hostile_kits_are_refused_and_leave_nothing() {
        for (entries, needle) in [
            (vec![("./usr/pkg/bin/su", 0o4755, &b"x"[..])], "setuid"),
            (vec![("../escape", 0o644, &b"x"[..])], "leaves the kit"),
            (vec![("./usr/pkg/etc/mk.conf", 0o644, &b"x"[..])], "no PREFIX/bin/bmake"),
        ] {
            let (dir, path) = kit(&entries);
            let kits = dir.path().join("kits");
            let err = format!("{:#}", unpack(&path, &kits).unwrap_err());
            assert!(err.contains(needle) && err.contains("kit"), "{needle}: {err}");
            assert!(!dir.path().join("escape").exists());
        }
    }
}
