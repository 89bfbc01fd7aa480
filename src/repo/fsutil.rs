//! File helpers shared by the repository code: sha256 of a file, atomic
//! placement of a finished package, and atomic writing of a small file.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use sha2::{Digest, Sha256};

/// Lower-case hex sha256 of `bytes`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// Lower-case hex sha256 of the contents of `path`.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = file
            .read(&mut buf)
            .with_context(|| format!("cannot read {}", path.display()))?;
        if n == 0 {
            return Ok(format!("{:x}", hasher.finalize()));
        }
        hasher.update(&buf[..n]);
    }
}

/// Copies `src` to `dest_dir/<file name of src>` so that the final name only
/// ever holds a complete, synced file: the copy goes to
/// `dest_dir/.<name>.tmp.<pid>`, is fsynced, renamed over the final name,
/// and the directory is fsynced. On any error before the rename the
/// temporary is removed. Returns the final path.
///
/// The temporary name is per process, so one process must not place two
/// files of the same name into the same directory at the same time.
pub fn place_atomically(src: &Path, dest_dir: &Path) -> Result<PathBuf> {
    let name = src
        .file_name()
        .ok_or_else(|| anyhow!("{}: has no file name", src.display()))?;
    let dest = dest_dir.join(name);
    let tmp = dest_dir.join(temp_name(name));
    if let Err(err) = copy_synced(src, &tmp).and_then(|()| rename(&tmp, &dest)) {
        let _ = fs::remove_file(&tmp);
        return Err(err);
    }
    sync_dir(dest_dir)?;
    Ok(dest)
}

/// Writes `bytes` to `path` so that `path` only ever holds the old or the
/// complete new contents: the data goes to `.<name>.tmp.<pid>` in the same
/// directory, is fsynced, renamed over `path`, and the directory is fsynced.
/// On any error before the rename the temporary is removed. The new file is
/// created with mode 0644 (less the umask).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| anyhow!("{}: has no file name", path.display()))?;
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    let tmp = dir.join(temp_name(name));
    if let Err(err) = write_synced(&tmp, bytes).and_then(|()| rename(&tmp, path)) {
        let _ = fs::remove_file(&tmp);
        return Err(err);
    }
    sync_dir(dir)
}

/// Creates `tmp` holding `bytes` and fsyncs it.
fn write_synced(tmp: &Path, bytes: &[u8]) -> Result<()> {
    let mut output = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    output
        .write_all(bytes)
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    output
        .sync_all()
        .with_context(|| format!("cannot fsync {}", tmp.display()))
}

fn temp_name(name: &std::ffi::OsStr) -> OsString {
    let mut tmp = OsString::from(".");
    tmp.push(name);
    tmp.push(format!(".tmp.{}", std::process::id()));
    tmp
}

/// Copies `src` to a new `tmp` (same permissions) and fsyncs it.
fn copy_synced(src: &Path, tmp: &Path) -> Result<()> {
    let mut input = File::open(src).with_context(|| format!("cannot open {}", src.display()))?;
    let perms = input
        .metadata()
        .with_context(|| format!("cannot stat {}", src.display()))?
        .permissions();
    let mut output = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    std::io::copy(&mut input, &mut output)
        .with_context(|| format!("cannot copy {} to {}", src.display(), tmp.display()))?;
    output
        .set_permissions(perms)
        .with_context(|| format!("cannot chmod {}", tmp.display()))?;
    output.flush()?;
    output
        .sync_all()
        .with_context(|| format!("cannot fsync {}", tmp.display()))
}

fn rename(from: &Path, to: &Path) -> Result<()> {
    fs::rename(from, to).with_context(|| format!("cannot rename {} to {}", from.display(), to.display()))
}

/// Makes a rename in `dir` durable.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot fsync directory {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::testpkg::names;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn sha256_file_matches_known_digest() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("abc");
        fs::write(&file, b"abc").unwrap();
        let want = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(sha256_file(&file).unwrap(), want);
        assert_eq!(sha256_hex(b"abc"), want);
        let err = format!("{:#}", sha256_file(&dir.path().join("nope")).unwrap_err());
        assert!(err.contains("cannot open") && err.contains("nope"), "{err}");
    }

    #[test]
    fn place_atomically_copies_under_the_same_name() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("hello-2.1.pkg");
        fs::write(&src, b"package bytes").unwrap();
        fs::set_permissions(&src, fs::Permissions::from_mode(0o644)).unwrap();
        let all = dir.path().join("All");
        fs::create_dir(&all).unwrap();
        fs::write(all.join("hello-2.1.pkg"), b"old").unwrap();

        let placed = place_atomically(&src, &all).unwrap();
        assert_eq!(placed, all.join("hello-2.1.pkg"));
        assert_eq!(fs::read(&placed).unwrap(), b"package bytes");
        assert_eq!(fs::metadata(&placed).unwrap().permissions().mode() & 0o777, 0o644);
        assert_eq!(names(&all), ["hello-2.1.pkg"], "no temporary left behind");
    }

    #[test]
    fn write_atomically_replaces_the_whole_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("index.json");
        fs::write(&path, b"old contents, longer than the new ones").unwrap();
        write_atomically(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(names(dir.path()), ["index.json"], "no temporary left behind");

        let missing = dir.path().join("nodir").join("index.json");
        let err = format!("{:#}", write_atomically(&missing, b"x").unwrap_err());
        assert!(
            err.contains("cannot create") && err.contains("nodir/.index.json.tmp."),
            "{err}"
        );
        assert_eq!(names(dir.path()), ["index.json"]);
    }

    #[test]
    fn place_atomically_into_missing_dir_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("hello-2.1.pkg");
        fs::write(&src, b"package bytes").unwrap();
        let missing = dir.path().join("All");
        let err = format!("{:#}", place_atomically(&src, &missing).unwrap_err());
        assert!(
            err.contains("cannot create") && err.contains("All/.hello-2.1.pkg.tmp."),
            "{err}"
        );
        assert!(!missing.exists());
        assert_eq!(names(dir.path()), ["hello-2.1.pkg"]);
    }

    #[test]
    fn place_atomically_failed_copy_removes_the_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("notafile.pkg");
        fs::create_dir(&src).unwrap(); // opens, but reading fails (EISDIR)
        let all = dir.path().join("All");
        fs::create_dir(&all).unwrap();
        let err = format!("{:#}", place_atomically(&src, &all).unwrap_err());
        assert!(err.contains("cannot copy") && err.contains("notafile.pkg"), "{err}");
        assert!(names(&all).is_empty(), "left behind: {:?}", names(&all));

        let err = format!(
            "{:#}",
            place_atomically(&dir.path().join("gone.pkg"), &all).unwrap_err()
        );
        assert!(err.contains("cannot open") && err.contains("gone.pkg"), "{err}");
        assert!(names(&all).is_empty());
    }
}
