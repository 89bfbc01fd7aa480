//! `portsynth bootstrap-kit`: makes a pkgsrc binary kit for `/usr/pkg`
//! from a tree's own `bootstrap/`, cached by its inputs.
//!
//! The tree's bootstrap script, and the C it compiles, are port code: the
//! run happens in a kit sandbox ([`crate::sandbox::kit`]: no network, tmpfs
//! root, system directories and the tree read-only, only the build user's
//! tmpfs `/usr/pkg` and `/work` writable, confined as `build_user`, in a
//! cgroup with `memory_limit` and `max_processes`, killed at
//! `bootstrap_timeout`). The kit PID 1 copies out is verified here
//! ([`verify`]: a gzip tar whose every entry is below `./usr/pkg`, no device
//! node or fifo, no setuid or setgid bit, no link leaving `/usr/pkg`, at
//! most `tmpfs_size` expanded) before it is renamed into place.
//!
//! The kit's name carries the SHA-256 (first 16 hex digits) of everything
//! that goes into it ([`inputs_key`]): the tree's `bootstrap/` and `mk/`,
//! the package directories the bootstrap builds and the directories their
//! Makefiles name, the mk.conf fragment, `bootstrap_env`, the build user
//! and the bootstrap's arguments. A kit for the same inputs is reused.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Component, Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::sandbox::kit::{KitResult, KitSpec, KIT_FILE};
use crate::sandbox::limits::{self, Limits, SandboxCgroup};
use crate::sandbox::mounts::KIT_PREFIX;

/// The directories the 2014 `bootstrap/bootstrap` reads: itself, the
/// framework (`build_package` runs bmake on `mk/bsd.pkg.mk`), and every
/// package it copies sources from or builds (some only on some systems).
/// [`input_dirs`] adds what their Makefiles name (`../../cat/pkg`).
pub const INPUT_DIRS: &[&str] = &[
    "bootstrap",
    "mk",
    "pkgtools/bootstrap-mk-files",
    "pkgtools/bootstrap-extras",
    "pkgtools/libnbcompat",
    "pkgtools/pkg_install",
    "devel/bmake",
    "lang/nawk",
    "textproc/nbsed",
    "shells/pdksh",
    "sysutils/install-sh",
    "sysutils/bsdinstall",
];

/// Bumped when what the kit command does changes its kits.
const KEY_VERSION: &str = "portsynth-bootstrap-kit-1";
/// Beyond `bootstrap_timeout`, which PID 1 enforces: time for it to kill,
/// reap and deliver before the main side kills the sandbox.
const GRACE: Duration = Duration::from_secs(30);
/// The kit's log in `logs_dir`.
pub const LOG_NAME: &str = "bootstrap-kit.log";
/// Below `build_base`: the kits, and the mount point of the kit sandbox.
pub const KITS_DIR: &str = "kits";
pub const KIT_ROOT: &str = "kit-root";

/// What `bootstrap-kit` was asked.
#[derive(Debug, Clone)]
pub struct KitRequest {
    pub tree: PathBuf,
    pub fragment: Option<PathBuf>,
    pub output: Option<PathBuf>,
}

/// What it did.
#[derive(Debug, Clone)]
pub struct KitOutcome {
    /// The kit in `build_base/kits/`.
    pub kit: PathBuf,
    /// `--output`'s copy, when asked.
    pub output: Option<PathBuf>,
    pub key: String,
    /// The kit already existed for these inputs.
    pub cached: bool,
    pub entries: usize,
    pub log: PathBuf,
}

/// The file name of the kit for `key`.
pub fn kit_name(key: &str) -> String {
    format!("bootstrap-kit-{key}.tgz")
}

/// Makes (or finds) the kit for `request`.
pub fn make(config: &Config, request: &KitRequest, say: &mut dyn FnMut(&str)) -> Result<KitOutcome> {
    let tree = std::path::absolute(&request.tree)?;
    let script = tree.join("bootstrap/bootstrap");
    if !std::fs::symlink_metadata(&script).is_ok_and(|m| m.is_file()) {
        bail!("{} is not a pkgsrc tree: no bootstrap/bootstrap", tree.display());
    }
    let fragment = match &request.fragment {
        Some(file) => std::fs::read_to_string(file)
            .with_context(|| format!("cannot read the mk.conf fragment {}", file.display()))?,
        None => String::new(),
    };
    let key = inputs_key(&tree, &fragment, config)?;
    let kits = config.build_base.join(KITS_DIR);
    std::fs::create_dir_all(&kits).with_context(|| format!("cannot create {}", kits.display()))?;
    let kit = kits.join(kit_name(&key));
    let log = config.logs_dir.join(LOG_NAME);
    let max = config.tmpfs_size;
    let (entries, cached) = if kit.is_file() {
        let entries = verify(&mut open_kit(&kit)?, max)
            .with_context(|| format!("the cached kit {} is unusable; remove it", kit.display()))?;
        say(&format!("bootstrap kit for these inputs exists: {} (key {key}); nothing to build", kit.display()));
        (entries, true)
    } else {
        say(&format!(
            "building the bootstrap kit of {} in a sandbox (key {key}); log: {}",
            tree.display(),
            log.display()
        ));
        (build(config, &tree, &fragment, &key, &kits, &log)?, false)
    };
    let output = match &request.output {
        Some(output) => {
            let output = std::path::absolute(output)?;
            let dir = output.parent().context("--output has no directory")?;
            let name = output.file_name().context("--output has no file name")?;
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
            crate::repo::fsutil::place_open_file(&mut open_kit(&kit)?, name, u64::MAX, dir)?;
            Some(output)
        }
        None => None,
    };
    Ok(KitOutcome { kit, output, key, cached, entries, log })
}

fn open_kit(path: &Path) -> Result<File> {
    File::options()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))
}

/// Runs the bootstrap in a kit sandbox and places its verified kit at
/// `kits/<name>`. Returns the kit's entry count.
fn build(config: &Config, tree: &Path, fragment: &str, key: &str, kits: &Path, log_path: &Path) -> Result<usize> {
    let root = config.build_base.join(KIT_ROOT);
    std::fs::create_dir_all(&root).with_context(|| format!("cannot create {}", root.display()))?;
    let outbox = kits.join(format!(".outbox-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&outbox);
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&outbox)
        .with_context(|| format!("cannot create {}", outbox.display()))?;
    let result = (|| {
        let spec = KitSpec {
            parent_pid: std::process::id(),
            root,
            system_path: config.system_path.clone(),
            tree: tree.to_path_buf(),
            outbox: outbox.clone(),
            build_user: config.build_user.clone(),
            fragment: fragment.to_string(),
            env: config.bootstrap_env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            tmpfs_size: config.tmpfs_size,
            max_log_size: config.max_log_size,
            max_kit_size: config.tmpfs_size,
            timeout_secs: config.bootstrap_timeout.as_secs(),
        };
        run_sandbox(config, &spec, key, log_path)?;
        let mut file = open_kit(&outbox.join(KIT_FILE))?;
        let entries = verify(&mut file, config.tmpfs_size)
            .with_context(|| format!("the bootstrap's kit was refused (log: {})", log_path.display()))?;
        crate::repo::fsutil::place_open_file(&mut file, kit_name(key).as_ref(), config.tmpfs_size, kits)?;
        Ok(entries)
    })();
    let _ = std::fs::remove_dir_all(&outbox);
    result
}

/// Starts the helper in a cgroup, enforces the deadline, reads PID 1's
/// result. `Ok` means the kit is in the outbox.
fn run_sandbox(config: &Config, spec: &KitSpec, key: &str, log_path: &Path) -> Result<()> {
    if let Some(dir) = log_path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let mut log = File::options()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(log_path)
        .with_context(|| format!("cannot create the log {}", log_path.display()))?;
    writeln!(log, "portsynth bootstrap-kit: tree {} (at /usr/pkgsrc in the sandbox), key {key}", spec.tree.display())?;
    writeln!(log, "environment:")?;
    for (k, v) in spec.environment() {
        writeln!(log, "  {k}={v}")?;
    }
    writeln!(log, "mk.conf fragment: {} bytes", spec.fragment.len())?;
    log.flush()?;
    let helper = crate::sandbox::scan_pool::helper_binary()?;
    let mut command = Command::new(&helper);
    command.arg("kit-helper").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(log.try_clone()?);
    // SAFETY: setsid is async-signal-safe.
    unsafe {
        command.pre_exec(|| nix::unistd::setsid().map(drop).map_err(std::io::Error::from));
    }
    let limits = Limits { memory: config.memory_limit, processes: config.max_processes };
    let cgroup = SandboxCgroup::create(&SandboxCgroup::unique_name(0), limits);
    let mut child = command.spawn().with_context(|| format!("cannot run {} kit-helper", helper.display()))?;
    let started = (|| -> Result<()> {
        if let Some(cgroup) = &cgroup {
            cgroup.add(child.id())?;
        }
        let mut line = serde_json::to_vec(spec)?;
        line.push(b'\n');
        let mut stdin = child.stdin.take().expect("piped");
        stdin.write_all(&line).context("sending the kit sandbox its spec")?;
        Ok(())
    })();
    if let Err(e) = started {
        let _ = child.kill();
        let _ = child.wait();
        return Err(e);
    }
    let deadline = Instant::now() + config.bootstrap_timeout + GRACE;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stdout = String::new();
    let _ = child.stdout.take().expect("piped").take(1 << 20).read_to_string(&mut stdout);
    let usage = cgroup.as_ref().map(|c| c.usage()).unwrap_or_default();
    drop(cgroup);
    let result = stdout.lines().rev().find_map(|l| serde_json::from_str::<KitResult>(l).ok());
    let see = || format!("see {}{}", log_path.display(), log_tail(log_path));
    let reason = match (result, status) {
        (Some(KitResult::Done { .. }), Some(status)) if status.success() => return Ok(()),
        (_, None) => {
            format!("the kit sandbox did not end within bootstrap_timeout + {} s and was killed", GRACE.as_secs())
        }
        (Some(KitResult::TimedOut { seconds }), _) => {
            format!("the bootstrap did not finish within {seconds} s (bootstrap_timeout)")
        }
        (Some(KitResult::Failed { reason }), _) => reason,
        (Some(KitResult::SetupFailed { reason }), _) => format!("the kit sandbox could not be set up: {reason}"),
        (Some(KitResult::Done { .. }) | None, Some(status)) => {
            format!("the kit sandbox ended with {status} and no result")
        }
    };
    let reason = match limits::limit_reason(&usage, limits) {
        Some(limit) => format!("{reason}; {limit}"),
        None => reason,
    };
    bail!("bootstrap-kit failed: {reason}; {}", see())
}

/// The last lines of the log, for the error message.
fn log_tail(path: &Path) -> String {
    let Ok(text) = std::fs::read(path) else { return String::new() };
    let text = String::from_utf8_lossy(&text[text.len().saturating_sub(4096)..]).into_owned();
    let lines: Vec<&str> = text.lines().collect();
    let tail = &lines[lines.len().saturating_sub(8)..];
    if tail.is_empty() {
        String::new()
    } else {
        format!("; its end:\n  {}", tail.join("\n  "))
    }
}

/// The directories whose contents make up the key: [`INPUT_DIRS`] that
/// exist, and every `cat/pkg` that a Makefile or `*.mk` of a package among
/// them names as `../../cat/pkg`, transitively (pkg_install's pulls in
/// libarchive, libfetch, zlib, bzip2 and openssl). Sorted.
pub fn input_dirs(tree: &Path) -> Vec<String> {
    let mut dirs: BTreeSet<String> = BTreeSet::new();
    let mut todo: Vec<String> = INPUT_DIRS.iter().map(|d| d.to_string()).collect();
    while let Some(dir) = todo.pop() {
        if !tree.join(&dir).is_dir() || !dirs.insert(dir.clone()) || dir == "mk" || dir == "bootstrap" {
            continue;
        }
        let Ok(entries) = std::fs::read_dir(tree.join(&dir)) else { continue };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !(name.starts_with("Makefile") || name.ends_with(".mk")) || !entry.file_type().is_ok_and(|t| t.is_file())
            {
                continue;
            }
            let Ok(text) = std::fs::read_to_string(entry.path()) else { continue };
            todo.extend(package_references(&text).into_iter().filter(|d| !dirs.contains(d)));
        }
    }
    dirs.into_iter().collect()
}

/// Every `cat/pkg` of a `../../cat/pkg` in `text` (`mk` excluded: it is an
/// input of its own).
fn package_references(text: &str) -> Vec<String> {
    let part = |s: &str| -> Option<usize> {
        let end = s.find(|c: char| !(c.is_ascii_alphanumeric() || "_-.+".contains(c))).unwrap_or(s.len());
        (end > 0 && !s[..end].starts_with('.')).then_some(end)
    };
    let mut found = Vec::new();
    for (at, _) in text.match_indices("../../") {
        let rest = &text[at + 6..];
        let Some(cat) = part(rest) else { continue };
        if cat == 2 && &rest[..2] == "mk" || rest.as_bytes().get(cat) != Some(&b'/') {
            continue;
        }
        let Some(pkg) = part(&rest[cat + 1..]) else { continue };
        found.push(rest[..cat + 1 + pkg].to_string());
    }
    found
}

/// The cache key: see the module comment.
pub fn inputs_key(tree: &Path, fragment: &str, config: &Config) -> Result<String> {
    let mut hash = Sha256::new();
    let mut field = |hash: &mut Sha256, tag: &str, bytes: &[u8]| {
        hash.update(tag.as_bytes());
        hash.update((bytes.len() as u64).to_le_bytes());
        hash.update(bytes);
    };
    field(&mut hash, "version", KEY_VERSION.as_bytes());
    field(&mut hash, "prefix", KIT_PREFIX.as_bytes());
    field(&mut hash, "arguments", KitSpec::arguments().join("\0").as_bytes());
    field(&mut hash, "user", config.build_user.as_bytes());
    for (k, v) in &config.bootstrap_env {
        field(&mut hash, "env", format!("{k}={v}").as_bytes());
    }
    field(&mut hash, "fragment", fragment.as_bytes());
    for dir in input_dirs(tree) {
        field(&mut hash, "dir", dir.as_bytes());
        hash_dir(&mut hash, &tree.join(&dir), Path::new(&dir), &mut field)
            .with_context(|| format!("cannot read {}", tree.join(&dir).display()))?;
    }
    let digest = hash.finalize();
    Ok(digest[..8].iter().map(|b| format!("{b:02x}")).collect())
}

/// Every entry below `dir` in name order, without following links: name,
/// kind, executable bit and contents (a link's target). A package's
/// `work` directory (an in-tree build's) is left out.
fn hash_dir(hash: &mut Sha256, dir: &Path, rel: &Path, field: &mut dyn FnMut(&mut Sha256, &str, &[u8])) -> Result<()> {
    let mut entries: Vec<_> = std::fs::read_dir(dir)?.collect::<std::io::Result<_>>()?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name();
        let path = rel.join(&name);
        let meta = std::fs::symlink_metadata(entry.path())?;
        let shown = path.to_string_lossy();
        if meta.is_dir() {
            if name == "work" && rel.components().count() == 2 {
                continue;
            }
            field(hash, "d", shown.as_bytes());
            hash_dir(hash, &entry.path(), &path, field)?;
        } else if meta.file_type().is_symlink() {
            field(hash, "l", shown.as_bytes());
            field(hash, "target", std::fs::read_link(entry.path())?.as_os_str().as_encoded_bytes());
        } else if meta.is_file() {
            let kind = if meta.permissions().mode() & 0o111 != 0 { "x" } else { "f" };
            field(hash, kind, shown.as_bytes());
            field(hash, "data", &std::fs::read(entry.path())?);
        }
    }
    Ok(())
}

/// Checks a kit: a gzip tar whose entries all lie below `./usr/pkg`
/// (`usr/pkg` itself included), directories, regular files and links only,
/// no setuid or setgid bit, no symbolic or hard link whose target leaves
/// `/usr/pkg`, at most `max_expanded` bytes of contents. Returns the entry
/// count.
pub fn verify(file: &mut File, max_expanded: u64) -> Result<usize> {
    use std::io::Seek;
    file.seek(std::io::SeekFrom::Start(0))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(&mut *file));
    let mut entries = 0;
    let mut total: u64 = 0;
    for entry in archive.entries().context("not a gzip tar")? {
        let entry = entry.context("not a readable gzip tar")?;
        let header = entry.header();
        let raw = entry.path_bytes();
        let path = Path::new(std::str::from_utf8(&raw).map_err(|_| anyhow::anyhow!("an entry name is not UTF-8"))?);
        let shown = path.display().to_string();
        let inside = below_prefix(path).with_context(|| format!("entry {shown} is not below ./{KIT_PREFIX}"))?;
        let mode = header.mode().unwrap_or(0);
        if mode & 0o6000 != 0 {
            bail!("entry {shown} is setuid or setgid (mode {mode:o})");
        }
        let kind = header.entry_type();
        match kind {
            tar::EntryType::Directory | tar::EntryType::Regular | tar::EntryType::Continuous => {}
            tar::EntryType::Symlink | tar::EntryType::Link => {
                let target = entry.link_name()?.with_context(|| format!("link {shown} has no target"))?;
                let resolved = if kind == tar::EntryType::Link {
                    below_prefix(&target).map(|_| ())
                } else if target.is_absolute() {
                    below_prefix(&Path::new(".").join(target.strip_prefix("/").unwrap_or(&target))).map(|_| ())
                } else {
                    let base = inside.parent().unwrap_or(Path::new(""));
                    lexical_below(&base.join(&target)).then_some(())
                };
                if resolved.is_none() {
                    bail!("link {shown} -> {} leaves /{KIT_PREFIX}", target.display());
                }
            }
            other => bail!("entry {shown} is a {other:?}, not a file, directory or link"),
        }
        total = total.saturating_add(header.size().unwrap_or(0));
        if total > max_expanded {
            bail!("the kit expands to more than {} (tmpfs_size)", crate::config::format_size(max_expanded));
        }
        entries += 1;
    }
    if entries == 0 {
        bail!("the kit is empty");
    }
    Ok(entries)
}

/// The part of `path` below `usr/pkg` (`./` optional, no `..`), or `None`.
fn below_prefix(path: &Path) -> Option<PathBuf> {
    let mut normal = Vec::new();
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::Normal(part) => normal.push(part),
            _ => return None,
        }
    }
    let prefix: Vec<&str> = KIT_PREFIX.split('/').collect();
    if normal.len() < prefix.len() || normal.iter().zip(&prefix).any(|(a, b)| *a != std::ffi::OsStr::new(b)) {
        return None;
    }
    Some(normal[prefix.len()..].iter().collect())
}

/// A relative path that, resolved lexically, never climbs above its start.
fn lexical_below(path: &Path) -> bool {
    let mut depth: i64 = 0;
    for component in path.components() {
        match component {
            Component::CurDir => {}
            Component::Normal(_) => depth += 1,
            Component::ParentDir => {
                depth -= 1;
                if depth < 0 {
                    return false;
                }
            }
            _ => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Name, type, mode, link target.
    type Entry<'a> = (&'a str, tar::EntryType, u32, Option<&'a str>);

    fn kit(entries: &[Entry]) -> File {
        let mut file = tempfile::tempfile().unwrap();
        {
            let gz = flate2::write::GzEncoder::new(&mut file, flate2::Compression::fast());
            let mut builder = tar::Builder::new(gz);
            for (name, kind, mode, link) in entries {
                let mut header = tar::Header::new_gnu();
                header.set_entry_type(*kind);
                header.set_mode(*mode);
                header.set_size(if *kind == tar::EntryType::Regular { 3 } else { 0 });
                header.as_gnu_mut().unwrap().name[..name.len()].copy_from_slice(name.as_bytes());
                if let Some(link) = link {
                    header.set_link_name(link).unwrap();
                }
                header.set_cksum();
                let data: &[u8] = if *kind == tar::EntryType::Regular { b"abc" } else { b"" };
                builder.append(&header, data).unwrap();
            }
            builder.into_inner().unwrap().finish().unwrap();
        }
        file
    }

    use tar::EntryType::{Block, Directory as D, Fifo, Link, Regular as F, Symlink};

    #[test]
    fn a_kit_below_usr_pkg_passes() {
        let mut file = kit(&[
            ("./usr/pkg", D, 0o755, None),
            ("./usr/pkg/bin/bmake", F, 0o755, None),
            ("./usr/pkg/man/cat1/x.0", Symlink, 0o777, Some("../man1/x.1")),
            ("./usr/pkg/bin/b2", Link, 0o755, Some("./usr/pkg/bin/bmake")),
            ("./usr/pkg/etc/abs", Symlink, 0o777, Some("/usr/pkg/etc/mk.conf")),
        ]);
        assert_eq!(verify(&mut file, 1 << 20).unwrap(), 5);
    }

    #[test]
    fn hostile_kits_are_refused_with_the_entry_named() {
        let cases: &[(&[Entry], &str)] = &[
            (&[("./etc/passwd", F, 0o644, None)], "./etc/passwd is not below"),
            (&[("./usr/pkg/../../etc/x", F, 0o644, None)], "is not below"),
            (&[("./usr/pkgX/a", F, 0o644, None)], "is not below"),
            (&[("./usr/pkg/bin/su", F, 0o4755, None)], "setuid"),
            (&[("./usr/pkg/dev/sda", Block, 0o644, None)], "Block"),
            (&[("./usr/pkg/fifo", Fifo, 0o644, None)], "Fifo"),
            (&[("./usr/pkg/a/l", Symlink, 0o777, Some("../../../etc/shadow"))], "leaves /usr/pkg"),
            (&[("./usr/pkg/l", Symlink, 0o777, Some("/etc/shadow"))], "leaves /usr/pkg"),
            (&[("./usr/pkg/h", Link, 0o644, Some("./etc/shadow"))], "leaves /usr/pkg"),
        ];
        for (entries, expected) in cases {
            let err = format!("{:#}", verify(&mut kit(entries), 1 << 20).unwrap_err());
            assert!(err.contains(expected), "{entries:?}: {err}");
        }
        let mut big = kit(&[("./usr/pkg/a", F, 0o644, None), ("./usr/pkg/b", F, 0o644, None)]);
        assert!(format!("{:#}", verify(&mut big, 5).unwrap_err()).contains("expands to more than"));
        let mut garbage = tempfile::tempfile().unwrap();
        garbage.write_all(b"not a kit").unwrap();
        assert!(verify(&mut garbage, 1 << 20).is_err());
    }

    #[test]
    fn makefile_references_name_package_directories() {
        let text = ".include \"../../mk/bsd.prefs.mk\"\n.include \"../../archivers/libarchive/builtin.mk\"\n\
                    FILESDIR.zlib?=\t${.CURDIR}/../../devel/zlib/files\nDEPENDS+= x-[0-9]*:../../shells/pdksh\n";
        assert_eq!(package_references(text), ["archivers/libarchive", "devel/zlib", "shells/pdksh"]);
    }

    #[test]
    fn the_key_follows_the_inputs() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path();
        for (file, text) in [
            ("bootstrap/bootstrap", "#!/bin/sh\n"),
            ("mk/bsd.pkg.mk", "# mk\n"),
            ("pkgtools/pkg_install/Makefile", ".include \"../../net/libfetch/buildlink3.mk\"\n"),
            ("net/libfetch/buildlink3.mk", "# bl3\n"),
            ("games/other/Makefile", "# not an input\n"),
        ] {
            std::fs::create_dir_all(tree.join(file).parent().unwrap()).unwrap();
            std::fs::write(tree.join(file), text).unwrap();
        }
        assert_eq!(input_dirs(tree), ["bootstrap", "mk", "net/libfetch", "pkgtools/pkg_install"]);
        let config_dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(config_dir.path().join("ports/Mk")).unwrap();
        std::fs::write(config_dir.path().join("ports/Mk/bsd.port.mk"), "").unwrap();
        let file = config_dir.path().join("portsynth.toml");
        std::fs::write(&file, "ports_dir = \"ports\"\nbuild_base = \"base\"\n").unwrap();
        let mut config = crate::config::load(&file, None).unwrap();
        let key = inputs_key(tree, "", &config).unwrap();
        assert_eq!(key.len(), 16);
        assert_eq!(inputs_key(tree, "", &config).unwrap(), key, "stable");
        std::fs::write(tree.join("games/other/Makefile"), "# changed\n").unwrap();
        assert_eq!(inputs_key(tree, "", &config).unwrap(), key, "other packages do not count");
        let mut keys = BTreeSet::from([key.clone()]);
        keys.insert(inputs_key(tree, "X=1\n", &config).unwrap());
        std::fs::write(tree.join("net/libfetch/buildlink3.mk"), "# changed\n").unwrap();
        keys.insert(inputs_key(tree, "", &config).unwrap());
        std::fs::write(tree.join("mk/bsd.pkg.mk"), "# changed\n").unwrap();
        keys.insert(inputs_key(tree, "", &config).unwrap());
        std::fs::set_permissions(tree.join("mk/bsd.pkg.mk"), std::fs::Permissions::from_mode(0o755)).unwrap();
        keys.insert(inputs_key(tree, "", &config).unwrap());
        config.bootstrap_env.insert("SH".into(), "/bin/bash".into());
        keys.insert(inputs_key(tree, "", &config).unwrap());
        assert_eq!(keys.len(), 6, "every input changes the key: {keys:?}");
    }
}
