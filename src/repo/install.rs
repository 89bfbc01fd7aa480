//! The installer's [`Sink`]: stages every entry under a hidden temporary name
//! beside its destination and renames them all into place on [`Stager::commit`].
//! Dropping an uncommitted stager removes its temporaries and the (then
//! empty) directories it created, so a refused package leaves the root as
//! it was.

use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::package::Sink;

/// One staged entry: written at `tmp`, to be renamed to `dest`.
struct Staged {
    tmp: PathBuf,
    dest: PathBuf,
}

pub(crate) struct Stager {
    root: PathBuf,
    staged: Vec<Staged>,
    /// Directories this install created, outermost first; removed again
    /// (when empty) if the install does not commit.
    created: Vec<PathBuf>,
}

impl Stager {
    pub(crate) fn new(root: &Path) -> Result<Stager> {
        let meta = fs::metadata(root).with_context(|| format!("install root {}", root.display()))?;
        if !meta.is_dir() {
            bail!("install root {} is not a directory", root.display());
        }
        Ok(Stager { root: root.to_path_buf(), staged: Vec::new(), created: Vec::new() })
    }

    /// Stages a file with contents `data` (mode 0644) at `rel`.
    pub(crate) fn stage_bytes(&mut self, rel: &str, data: &[u8]) -> Result<()> {
        let mut file = self.create(rel, 0o644)?;
        file.write_all(data).with_context(|| format!("cannot write {rel}"))
    }

    /// Renames every staged entry into place, in archive order.
    pub(crate) fn commit(mut self) -> Result<()> {
        let staged = std::mem::take(&mut self.staged);
        let mut pending = staged.into_iter();
        while let Some(entry) = pending.next() {
            if let Err(err) = fs::rename(&entry.tmp, &entry.dest) {
                self.staged.push(entry);
                self.staged.extend(pending); // removed by Drop
                let failed = &self.staged[0];
                return Err(err).with_context(|| format!("cannot replace {}", failed.dest.display()));
            }
        }
        self.created.clear();
        Ok(())
    }

    /// Creates the directories leading to `rel` and returns
    /// `(temporary, destination)` paths for it.
    fn slot(&mut self, rel: &str) -> Result<(PathBuf, PathBuf)> {
        let (dir, name) = rel.rsplit_once('/').unwrap_or(("", rel));
        let parent = self.make_dirs(dir, None)?;
        let tmp = parent.join(format!(".{name}.pkgtmp.{}", std::process::id()));
        remove_stale(&tmp)?;
        Ok((tmp, parent.join(name)))
    }

    /// Opens a new staged regular file for `rel`.
    fn create(&mut self, rel: &str, mode: u32) -> Result<File> {
        let (tmp, dest) = self.slot(rel)?;
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        self.staged.push(Staged { tmp: tmp.clone(), dest });
        file.set_permissions(Permissions::from_mode(mode))
            .with_context(|| format!("cannot chmod {}", tmp.display()))?;
        Ok(file)
    }

    /// Walks `rel_dir` below the root one component at a time, creating what
    /// is missing (the last one with `mode`, if given) and refusing any
    /// component that is a symlink or not a directory.
    fn make_dirs(&mut self, rel_dir: &str, mode: Option<u32>) -> Result<PathBuf> {
        let parts: Vec<&str> = rel_dir.split('/').filter(|p| !p.is_empty()).collect();
        let mut dir = self.root.clone();
        for (i, part) in parts.iter().enumerate() {
            dir.push(part);
            match fs::symlink_metadata(&dir) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    bail!("{} is a symlink; refusing to install through it", dir.display())
                }
                Ok(meta) if meta.is_dir() => {}
                Ok(_) => bail!("{} exists and is not a directory", dir.display()),
                Err(err) if err.kind() == io::ErrorKind::NotFound => {
                    fs::create_dir(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
                    self.created.push(dir.clone());
                    if let Some(mode) = mode.filter(|_| i + 1 == parts.len()) {
                        fs::set_permissions(&dir, Permissions::from_mode(mode))?;
                    }
                }
                Err(err) => return Err(err).with_context(|| format!("cannot stat {}", dir.display())),
            }
        }
        Ok(dir)
    }
}

/// Removes a temporary left by an earlier, killed install (same pid).
fn remove_stale(tmp: &Path) -> Result<()> {
    match fs::remove_file(tmp) {
        Err(err) if err.kind() != io::ErrorKind::NotFound => {
            Err(err).with_context(|| format!("cannot remove {}", tmp.display()))
        }
        _ => Ok(()),
    }
}

impl Sink for Stager {
    fn regular(&mut self, rel: &str, mode: u32) -> Result<Box<dyn Write + '_>> {
        Ok(Box::new(self.create(rel, mode)?))
    }

    fn symlink(&mut self, rel: &str, target: &[u8]) -> Result<()> {
        let (tmp, dest) = self.slot(rel)?;
        std::os::unix::fs::symlink(OsStr::from_bytes(target), &tmp)
            .with_context(|| format!("cannot create symlink {}", tmp.display()))?;
        self.staged.push(Staged { tmp, dest });
        Ok(())
    }

    fn directory(&mut self, rel: &str, mode: u32) -> Result<()> {
        self.make_dirs(rel, Some(mode)).map(drop)
    }
}

impl Drop for Stager {
    fn drop(&mut self) {
        for entry in &self.staged {
            let _ = fs::remove_file(&entry.tmp);
        }
        for dir in self.created.iter().rev() {
            let _ = fs::remove_dir(dir);
        }
    }
}
