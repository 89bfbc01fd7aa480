//! File helpers shared by the repository code: sha256 of a file, opening a
//! file somebody else may have replaced (never following a symlink, never
//! blocking on a fifo, bounded in size), atomic placement of a finished
//! package, and atomic writing of a small file.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use sha2::{Digest, Sha256};

/// Lower-case hex sha256 of `bytes`.
pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// Lower-case hex sha256 of the contents of `path`.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let (_, hex) = sha256_of(&mut file).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(hex)
}

/// Bytes read and lowercase hex SHA256 of everything `reader` yields.
pub fn sha256_of(reader: &mut impl Read) -> std::io::Result<(u64, String)> {
    let mut hasher = Sha256::new();
    let size = std::io::copy(reader, &mut hasher)?;
    Ok((size, format!("{:x}", hasher.finalize())))
}

/// Opens `path` for reading as an untrusted file: a symlink is refused
/// (`O_NOFOLLOW`), a fifo or device cannot block the open (`O_NONBLOCK`) and
/// is refused by `fstat`, as is anything that is not a regular file, a file
/// larger than `max_size` (`limit` names that bound in the error) and, when
/// `owner` is given, a file owned by another uid. All checks are made on
/// the opened descriptor, so the file cannot be swapped after them.
pub fn open_untrusted(path: &Path, max_size: u64, limit: &str, owner: Option<u32>) -> Result<File> {
    let file = open_regular(path, "package")?;
    let meta = file.metadata().with_context(|| format!("{}: cannot stat package", path.display()))?;
    if let Some(uid) = owner.filter(|uid| *uid != meta.uid()) {
        bail!("{}: is owned by uid {}, not by the build user (uid {uid})", path.display(), meta.uid());
    }
    if meta.len() > max_size {
        bail!("{}: {} bytes is larger than {limit}", path.display(), meta.len());
    }
    Ok(file)
}

/// Opens `path` for reading if it is a regular file: a symlink is refused
/// (`O_NOFOLLOW`), a fifo or device cannot block the open (`O_NONBLOCK`) and
/// is refused by `fstat` on the opened descriptor. `what` names the file in
/// the errors; a missing file's error is an `io::ErrorKind::NotFound`
/// underneath ([`is_not_found`]).
pub fn open_regular(path: &Path, what: &str) -> Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(|err| match err.raw_os_error() {
            Some(libc::ELOOP) => anyhow!("{}: is a symlink; refusing to follow it", path.display()),
            _ => anyhow::Error::new(err).context(format!("{}: cannot open {what}", path.display())),
        })?;
    let meta = file.metadata().with_context(|| format!("{}: cannot stat {what}", path.display()))?;
    let kind = meta.file_type();
    if !kind.is_file() {
        let kind_name = if kind.is_fifo() {
            "a fifo"
        } else if kind.is_char_device() || kind.is_block_device() {
            "a device"
        } else if kind.is_dir() {
            "a directory"
        } else if kind.is_socket() {
            "a socket"
        } else {
            "not a regular file"
        };
        bail!("{}: is {kind_name}, not a regular file", path.display());
    }
    Ok(file)
}

/// The error of [`open_regular`] for a file that does not exist.
pub fn is_not_found(error: &anyhow::Error) -> bool {
    error.root_cause().downcast_ref::<io::Error>().is_some_and(|e| e.kind() == io::ErrorKind::NotFound)
}

/// Copies at most `max` bytes from `from` to `to`; more is an error
/// (`limit` names the bound), so a file that grows while it is copied
/// cannot fill the disk. Returns the number of bytes copied.
pub fn copy_capped(from: &mut impl Read, to: &mut impl Write, max: u64, limit: &str) -> io::Result<u64> {
    let copied = io::copy(&mut from.take(max), to)?;
    if copied == max {
        let mut probe = [0u8; 1];
        if from.read(&mut probe)? > 0 {
            return Err(io::Error::other(format!("larger than {limit}")));
        }
    }
    Ok(copied)
}

/// Copies the untrusted file `src` (see [`open_untrusted`]; owned by
/// `owner`, at most `max_size` bytes) to a new file `dest`, which must not
/// exist. Reads from the descriptor it checked, never by path again. On
/// error `dest` is removed.
pub fn copy_untrusted(src: &Path, owner: u32, max_size: u64, limit: &str, dest: &Path) -> Result<u64> {
    let mut input = open_untrusted(src, max_size, limit, Some(owner))?;
    let mut output = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dest)
        .with_context(|| format!("cannot create {}", dest.display()))?;
    match copy_capped(&mut input, &mut output, max_size, limit) {
        Ok(n) => Ok(n),
        Err(err) => {
            drop(output);
            let _ = fs::remove_file(dest);
            Err(err).with_context(|| format!("cannot copy {} to {}", src.display(), dest.display()))
        }
    }
}

/// Like [`place_atomically`], but copies from the already opened (and
/// checked) `src`, from its start, at most `max_size` bytes, to
/// `dest_dir/name`.
pub fn place_open_file(src: &mut File, name: &OsStr, max_size: u64, dest_dir: &Path) -> Result<PathBuf> {
    let dest = dest_dir.join(name);
    let tmp = dest_dir.join(temp_name(name));
    let copied = (|| -> Result<()> {
        src.seek(SeekFrom::Start(0)).context("cannot rewind the package")?;
        let mut output = create_temp(&tmp)?;
        copy_capped(src, &mut output, max_size, "the size it was verified with")
            .with_context(|| format!("cannot copy {} to {}", Path::new(name).display(), tmp.display()))?;
        output
            .set_permissions(fs::Permissions::from_mode(0o644))
            .with_context(|| format!("cannot chmod {}", tmp.display()))?;
        output.sync_all().with_context(|| format!("cannot fsync {}", tmp.display()))
    })();
    if let Err(err) = copied.and_then(|()| rename(&tmp, &dest)) {
        let _ = fs::remove_file(&tmp);
        return Err(err);
    }
    sync_dir(dest_dir)?;
    Ok(dest)
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
    let name = src.file_name().ok_or_else(|| anyhow!("{}: has no file name", src.display()))?;
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
    let name = path.file_name().ok_or_else(|| anyhow!("{}: has no file name", path.display()))?;
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
    output.write_all(bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    output.sync_all().with_context(|| format!("cannot fsync {}", tmp.display()))
}

fn temp_name(name: &std::ffi::OsStr) -> OsString {
    let mut tmp = OsString::from(".");
    tmp.push(name);
    tmp.push(format!(".tmp.{}", std::process::id()));
    tmp
}

/// Creates (or truncates) the temporary `tmp`, mode 0600, never through a
/// symlink.
fn create_temp(tmp: &Path) -> Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))
}

/// Copies `src` to a new `tmp` (same permissions) and fsyncs it. `src` is
/// not followed if it is a symlink.
fn copy_synced(src: &Path, tmp: &Path) -> Result<()> {
    let mut input = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(src)
        .with_context(|| format!("cannot open {}", src.display()))?;
    let perms = input.metadata().with_context(|| format!("cannot stat {}", src.display()))?.permissions();
    let mut output = create_temp(tmp)?;
    std::io::copy(&mut input, &mut output)
        .with_context(|| format!("cannot copy {} to {}", src.display(), tmp.display()))?;
    output.set_permissions(perms).with_context(|| format!("cannot chmod {}", tmp.display()))?;
    output.flush()?;
    output.sync_all().with_context(|| format!("cannot fsync {}", tmp.display()))
}

fn rename(from: &Path, to: &Path) -> Result<()> {
    fs::rename(from, to).with_context(|| format!("cannot rename {} to {}", from.display(), to.display()))
}

/// Makes a rename in `dir` durable.
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).with_context(|| format!("cannot fsync directory {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::testpkg::names;

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
        assert!(err.contains("cannot create") && err.contains("nodir/.index.json.tmp."), "{err}");
        assert_eq!(names(dir.path()), ["index.json"]);
    }

    #[test]
    fn place_atomically_into_missing_dir_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("hello-2.1.pkg");
        fs::write(&src, b"package bytes").unwrap();
        let missing = dir.path().join("All");
        let err = format!("{:#}", place_atomically(&src, &missing).unwrap_err());
        assert!(err.contains("cannot create") && err.contains("All/.hello-2.1.pkg.tmp."), "{err}");
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

        let err = format!("{:#}", place_atomically(&dir.path().join("gone.pkg"), &all).unwrap_err());
        assert!(err.contains("cannot open") && err.contains("gone.pkg"), "{err}");
        assert!(names(&all).is_empty());
    }
}
