//! The sandbox's root file system, as a sequence of system calls behind the
//! [`Syscall`] trait (as youki does), so the order and flags are unit-tested
//! without root and the real thing is exercised by the integration tests.
//!
//! Order matters:
//! 1. `/` becomes recursively private first, or every later mount would
//!    propagate back to the host.
//! 2. The new root is a tmpfs, so `pivot_root` has a mount point to pivot to
//!    and everything written outside the binds disappears with the namespace.
//! 3. A bind mount ignores `MS_RDONLY`; read-only takes a second
//!    `MS_BIND|MS_REMOUNT|MS_RDONLY` call. System directories are bound
//!    non-recursively, so no host submount is carried in writable.
//! 4. `pivot_root` and a lazy unmount of the old root: unlike `chroot`, root
//!    cannot walk back out.

use std::path::{Path, PathBuf};

use anyhow::Result;
use nix::mount::MsFlags;

/// The system calls the root setup needs.
pub trait Syscall {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<()>;
    fn mkdir(&self, path: &Path, mode: u32) -> Result<()>;
    fn symlink(&self, target: &Path, link: &Path) -> Result<()>;
    fn touch(&self, path: &Path) -> Result<()>;
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> Result<()>;
    fn chdir(&self, path: &Path) -> Result<()>;
    fn umount_detach(&self, path: &Path) -> Result<()>;
    fn rmdir(&self, path: &Path) -> Result<()>;
    fn chmod(&self, path: &Path, mode: u32) -> Result<()>;
}

/// Device nodes bound from the host into the sandbox's `/dev`.
/// Never `tty`: sandbox processes have no controlling terminal, and the
/// operator's must stay out of reach.
pub const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom"];

/// System directories taken from `system_path`.
pub const SYSTEM_DIRS: &[&str] = &["usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc"];

/// What goes where. Host paths are absolute; `root` is the slot directory.
#[derive(Debug, Clone)]
pub struct Layout {
    pub root: PathBuf,
    pub system_path: PathBuf,
    pub ports_dir: PathBuf,
    pub packages_dir: PathBuf,
    pub distfiles_dir: PathBuf,
    pub outbox: PathBuf,
    pub tmpfs_size: u64,
    /// The block device of a disk work area (see
    /// [`super::work_area`]), mounted at `/construction` instead of its tmpfs.
    pub work_device: Option<PathBuf>,
    /// A framework whose LOCALBASE is a bootstrap kit (pkgsrc): the kit,
    /// bound read-only at [`KIT_COPY`] for PID 1 to copy into the writable
    /// tmpfs at its prefix. Without one, LOCALBASE is a tmpfs at `/usr/local`.
    pub kit: Option<KitMount>,
}

/// Where a build sandbox shows its unpacked bootstrap kit, read-only; PID 1
/// copies it into the LOCALBASE tmpfs, which the build then owns.
pub const KIT_COPY: &str = "/.portsynth/kit";

/// How one system directory enters the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SystemEntry {
    /// Host has it as a symlink (merged /usr): recreate the link.
    Link(PathBuf),
    Bind,
    Absent,
}

pub fn classify_system_dir(host: &Path) -> SystemEntry {
    match std::fs::symlink_metadata(host) {
        Ok(meta) if meta.file_type().is_symlink() => match std::fs::read_link(host) {
            Ok(target) => SystemEntry::Link(target),
            Err(_) => SystemEntry::Absent,
        },
        Ok(meta) if meta.is_dir() => SystemEntry::Bind,
        _ => SystemEntry::Absent,
    }
}

const NOSUID_NODEV: MsFlags = MsFlags::MS_NOSUID.union(MsFlags::MS_NODEV);

/// Builds the root at `layout.root` and pivots into it. `system` says how
/// each of [`SYSTEM_DIRS`] is present on the host.
pub fn setup_root(sys: &dyn Syscall, layout: &Layout, system: &[(&str, SystemEntry)]) -> Result<()> {
    let root = &layout.root;
    let at = |p: &str| root.join(p);
    let size = format!("size={}", layout.tmpfs_size);
    sys.mount(None, Path::new("/"), None, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None)?;
    sys.mount(Some(Path::new("tmpfs")), root, Some("tmpfs"), NOSUID_NODEV, Some("mode=0755,size=64m"))?;
    system_dirs(sys, root, &layout.system_path, layout.kit.as_ref(), system)?;
    bind(sys, &layout.ports_dir, &at("xports"), true)?;
    bind(sys, &layout.packages_dir, &at("packages"), true)?;
    // Read-only too: PID 1 makes them writable only around its own writes
    // (a verified download, the package delivery), when no port process runs.
    bind(sys, &layout.distfiles_dir, &at("distfiles"), true)?;
    bind(sys, &layout.outbox, &at("outbox"), true)?;
    match &layout.work_device {
        Some(device) => disk_work_area(sys, device, &at("construction"))?,
        None => tmpfs(sys, &at("construction"), &format!("mode=1777,{size}"))?,
    }
    tmpfs(sys, &at("tmp"), &format!("mode=1777,{size}"))?;
    match &layout.kit {
        Some(kit) => {
            tmpfs_at(sys, root, &kit.prefix, &format!("mode=0755,{size}"))?;
            bind_at(sys, root, &kit.host, Path::new(KIT_COPY))?;
        }
        None => tmpfs(sys, &at("usr/local"), &format!("mode=0755,{size}"))?,
    }
    finish_root(sys, root)
}

/// The system directories of a build or scan root. The one holding a kit's
/// prefix (`usr` for `/usr/pkg`) is rebuilt entry by entry, without the
/// prefix's own entry, so the prefix gets a mount point of its own.
fn system_dirs(
    sys: &dyn Syscall,
    root: &Path,
    system_path: &Path,
    kit: Option<&KitMount>,
    system: &[(&str, SystemEntry)],
) -> Result<()> {
    let split = kit.and_then(|k| k.split.as_ref().map(|split| (k, split)));
    for (name, entry) in system {
        let at = root.join(name);
        match (entry, split) {
            (SystemEntry::Bind, Some((kit, (dir, entries)))) if dir == name => {
                sys.mkdir(&at, 0o755)?;
                let own = kit.prefix.components().nth(2).and_then(|c| c.as_os_str().to_str()).unwrap_or("");
                bind_entries(sys, &system_path.join(name), &at, entries, &[own])?;
            }
            (SystemEntry::Link(target), _) => sys.symlink(target, &at)?,
            (SystemEntry::Bind, _) => bind(sys, &system_path.join(name), &at, true)?,
            (SystemEntry::Absent, _) => {}
        }
    }
    Ok(())
}

/// Where a scan sandbox's root goes and what it shows.
#[derive(Debug, Clone)]
pub struct ScanLayout {
    /// The host mount point (an empty directory; one can serve every
    /// sandbox, each mounts its own tmpfs on it in its own namespace).
    pub root: PathBuf,
    pub system_path: PathBuf,
    /// Absolute; bound read-only at this same path inside.
    pub ports_dir: PathBuf,
    /// A bootstrap kit bound read-only at its prefix.
    pub kit: Option<KitMount>,
}

/// An unpacked bootstrap kit and where it goes. A prefix below a system
/// directory (`/usr/pkg`) cannot get a mount point inside that read-only
/// bind, so that directory is rebuilt instead: a directory of the tmpfs
/// root with each of its host entries bound (or linked) one by one, and the
/// kit's mount point beside them.
#[derive(Debug, Clone)]
pub struct KitMount {
    pub host: PathBuf,
    pub prefix: PathBuf,
    /// The system directory holding the prefix and its host entries, when
    /// the prefix is below one.
    pub split: Option<(String, Vec<(String, SystemEntry)>)>,
}

/// The entries of the system directory that holds `prefix`, if one does.
pub fn split_entries(system_path: &Path, prefix: &Path) -> Option<(String, Vec<(String, SystemEntry)>)> {
    let first = prefix.strip_prefix("/").ok()?.components().next()?.as_os_str().to_str()?.to_string();
    if !SYSTEM_DIRS.contains(&first.as_str()) || classify_system_dir(&system_path.join(&first)) != SystemEntry::Bind {
        return None;
    }
    let entries = dir_entries(&system_path.join(&first)).ok()?;
    Some((first, entries))
}

/// The entries of a host directory as they enter a sandbox, sorted: a
/// directory is bound, a symlink recreated, anything else left out.
pub fn dir_entries(dir: &Path) -> std::io::Result<Vec<(String, SystemEntry)>> {
    let mut entries: Vec<(String, SystemEntry)> = std::fs::read_dir(dir)?
        .flatten()
        .filter_map(|e| Some((e.file_name().into_string().ok()?, classify_system_dir(&e.path()))))
        .filter(|(_, kind)| *kind != SystemEntry::Absent)
        .collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(entries)
}

/// A system directory rebuilt at `target` (which exists) from its host
/// `entries` (see [`dir_entries`]), each bound read-only or its symlink
/// recreated, except the names in `skip`: a directory that must get a
/// mount point of its own (`/usr/pkg`) without one on the host.
fn bind_entries(
    sys: &dyn Syscall,
    host: &Path,
    target: &Path,
    entries: &[(String, SystemEntry)],
    skip: &[&str],
) -> Result<()> {
    for (name, kind) in entries.iter().filter(|(name, _)| !skip.contains(&name.as_str())) {
        match kind {
            SystemEntry::Link(link) => sys.symlink(link, &target.join(name))?,
            SystemEntry::Bind => bind(sys, &host.join(name), &target.join(name), true)?,
            SystemEntry::Absent => {}
        }
    }
    Ok(())
}

/// The root of a scan sandbox: like [`setup_root`] without packages,
/// distfiles, outbox or work area, and with the ports tree at its own host
/// path, so `PORTSDIR` and the `.MAKE.MAKEFILES` paths bmake prints are the
/// host's. `/tmp` is mounted before the tree, so a tree below `/tmp` lands on
/// directories created in the private tmpfs (mode 0755, whatever the host's
/// parents are); a tree below a system directory uses the mount point the
/// host already has there.
pub fn setup_scan_root(sys: &dyn Syscall, layout: &ScanLayout, system: &[(&str, SystemEntry)]) -> Result<()> {
    let root = &layout.root;
    let at = |p: &str| root.join(p);
    sys.mount(None, Path::new("/"), None, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None)?;
    sys.mount(Some(Path::new("tmpfs")), root, Some("tmpfs"), NOSUID_NODEV, Some("mode=0755,size=16m"))?;
    system_dirs(sys, root, &layout.system_path, layout.kit.as_ref(), system)?;
    tmpfs(sys, &at("tmp"), "mode=1777,size=64m")?;
    bind_at(sys, root, &layout.ports_dir, &layout.ports_dir)?;
    if let Some(kit) = &layout.kit {
        bind_at(sys, root, &kit.host, &kit.prefix)?;
    }
    finish_root(sys, root)
}

/// Where a bootstrap-kit sandbox's root goes and what it shows (see
/// [`super::kit`]).
#[derive(Debug, Clone)]
pub struct KitLayout {
    /// The host mount point (an empty directory).
    pub root: PathBuf,
    pub system_path: PathBuf,
    /// The pkgsrc tree; bound read-only at [`KIT_TREE`].
    pub tree: PathBuf,
    /// Host directory bound read-only at `/outbox`.
    pub outbox: PathBuf,
    /// How each entry of `system_path/usr` enters the sandbox.
    pub usr: Vec<(String, SystemEntry)>,
    /// The build user, owner of the writable `/usr/pkg` and `/work`.
    pub uid: u32,
    pub gid: u32,
    /// Size of each of `/usr/pkg`, `/work` and `/tmp`.
    pub tmpfs_size: u64,
}

/// The tree's path inside a kit sandbox, so the kit does not depend on
/// where the tree lives on the host.
pub const KIT_TREE: &str = "usr/pkgsrc";
/// The LOCALBASE a kit is made for (without the leading slash).
pub const KIT_PREFIX: &str = "usr/pkg";

/// The root of a bootstrap-kit sandbox. `/usr` is a tmpfs holding a
/// read-only bind of each host `/usr` entry (never a host `pkg` or
/// `pkgsrc`), so `/usr/pkg` can be a writable tmpfs of the build user
/// without any mount point on the host; the tree is read-only at
/// `/usr/pkgsrc`; `/work` is the build user's, `/outbox` read-only until
/// PID 1 delivers the kit.
pub fn setup_kit_root(sys: &dyn Syscall, layout: &KitLayout, system: &[(&str, SystemEntry)]) -> Result<()> {
    let root = &layout.root;
    let at = |p: &str| root.join(p);
    let size = format!("size={}", layout.tmpfs_size);
    let owned = format!("uid={},gid={}", layout.uid, layout.gid);
    sys.mount(None, Path::new("/"), None, MsFlags::MS_REC | MsFlags::MS_PRIVATE, None)?;
    sys.mount(Some(Path::new("tmpfs")), root, Some("tmpfs"), NOSUID_NODEV, Some("mode=0755,size=16m"))?;
    for (name, entry) in system {
        match (*name, entry) {
            ("usr", SystemEntry::Bind) => {
                tmpfs(sys, &at("usr"), "mode=0755,size=1m")?;
                bind_entries(sys, &layout.system_path.join("usr"), &at("usr"), &layout.usr, &["pkg", "pkgsrc"])?;
            }
            ("usr", _) => anyhow::bail!("{} is not a directory", layout.system_path.join("usr").display()),
            (_, SystemEntry::Link(target)) => sys.symlink(target, &at(name))?,
            (_, SystemEntry::Bind) => bind(sys, &layout.system_path.join(name), &at(name), true)?,
            (_, SystemEntry::Absent) => {}
        }
    }
    bind(sys, &layout.tree, &at(KIT_TREE), true)?;
    tmpfs(sys, &at(KIT_PREFIX), &format!("mode=0755,{owned},{size}"))?;
    tmpfs(sys, &at("work"), &format!("mode=0700,{owned},{size}"))?;
    tmpfs(sys, &at("tmp"), &format!("mode=1777,{size}"))?;
    bind(sys, &layout.outbox, &at("outbox"), true)?;
    finish_root(sys, root)
}

/// The end of every root: `/dev`, a fresh `/proc`, `pivot_root` and a lazy
/// unmount of the old root.
fn finish_root(sys: &dyn Syscall, root: &Path) -> Result<()> {
    let at = |p: &str| root.join(p);
    setup_dev(sys, &at("dev"))?;
    sys.mkdir(&at("proc"), 0o555)?;
    sys.mount(Some(Path::new("proc")), &at("proc"), Some("proc"), NOSUID_NODEV | MsFlags::MS_NOEXEC, None)?;
    sys.mkdir(&at(".oldroot"), 0o700)?;
    sys.pivot_root(root, &at(".oldroot"))?;
    sys.chdir(Path::new("/"))?;
    sys.umount_detach(Path::new("/.oldroot"))?;
    sys.rmdir(Path::new("/.oldroot"))
}

/// Binds `source` read-only at the absolute path `target` inside `root`,
/// creating the parents of the mount point in the root's tmpfs.
fn bind_at(sys: &dyn Syscall, root: &Path, source: &Path, target: &Path) -> Result<()> {
    bind(sys, source, &parents_made(sys, root, target)?, true)
}

/// A tmpfs at the absolute path `target` inside `root`, its parents created
/// as for [`bind_at`].
fn tmpfs_at(sys: &dyn Syscall, root: &Path, target: &Path, data: &str) -> Result<()> {
    tmpfs(sys, &parents_made(sys, root, target)?, data)
}

/// `root` + the absolute `target`, after creating the parents of it that
/// the root's tmpfs lacks.
fn parents_made(sys: &dyn Syscall, root: &Path, target: &Path) -> Result<PathBuf> {
    let inside =
        target.strip_prefix("/").map_err(|_| anyhow::anyhow!("{} is not an absolute path", target.display()))?;
    let mut dir = root.to_path_buf();
    let components: Vec<_> = inside.components().collect();
    for component in &components[..components.len().saturating_sub(1)] {
        dir.push(component);
        sys.mkdir(&dir, 0o755)?;
    }
    Ok(root.join(inside))
}

/// Bind `source` at `target`, then make it read-only if asked: the flags of
/// the first call are ignored for a bind, so read-only needs the remount.
pub(super) fn bind(sys: &dyn Syscall, source: &Path, target: &Path, read_only: bool) -> Result<()> {
    sys.mkdir(target, 0o755)?;
    sys.mount(Some(source), target, None, MsFlags::MS_BIND, None)?;
    let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | NOSUID_NODEV;
    if read_only {
        flags |= MsFlags::MS_RDONLY;
    }
    sys.mount(None, target, None, flags, None)
}

/// A disk work area: the ext4 file system on `device`, nosuid and nodev,
/// its root opened to everyone as the tmpfs's (mode 1777).
fn disk_work_area(sys: &dyn Syscall, device: &Path, target: &Path) -> Result<()> {
    sys.mkdir(target, 0o755)?;
    sys.mount(Some(device), target, Some("ext4"), NOSUID_NODEV, None)?;
    sys.chmod(target, 0o1777)
}

pub(super) fn tmpfs(sys: &dyn Syscall, target: &Path, data: &str) -> Result<()> {
    sys.mkdir(target, 0o755)?;
    sys.mount(Some(Path::new("tmpfs")), target, Some("tmpfs"), NOSUID_NODEV, Some(data))
}

/// A minimal `/dev`: a tmpfs with bound device nodes, a private devpts and
/// the usual links; never the host's `/dev`.
pub(super) fn setup_dev(sys: &dyn Syscall, dev: &Path) -> Result<()> {
    sys.mkdir(dev, 0o755)?;
    sys.mount(Some(Path::new("tmpfs")), dev, Some("tmpfs"), MsFlags::MS_NOSUID, Some("mode=0755,size=1m"))?;
    for name in DEVICES {
        let node = dev.join(name);
        sys.touch(&node)?;
        sys.mount(Some(&Path::new("/dev").join(name)), &node, None, MsFlags::MS_BIND, None)?;
    }
    sys.mkdir(&dev.join("pts"), 0o755)?;
    sys.mount(
        Some(Path::new("devpts")),
        &dev.join("pts"),
        Some("devpts"),
        MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
        Some("newinstance,ptmxmode=0666,mode=0620"),
    )?;
    sys.symlink(Path::new("pts/ptmx"), &dev.join("ptmx"))?;
    tmpfs(sys, &dev.join("shm"), "mode=1777,size=64m")?;
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        sys.symlink(Path::new(target), &dev.join(link))?;
    }
    Ok(())
}

/// Remounts a bind (`/distfiles`, `/outbox`) writable or read-only again.
pub fn set_writable(sys: &dyn Syscall, path: &Path, writable: bool) -> Result<()> {
    let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | NOSUID_NODEV;
    if !writable {
        flags |= MsFlags::MS_RDONLY;
    }
    sys.mount(None, path, None, flags, None)
}

/// The real system calls.
pub struct Real;

impl Syscall for Real {
    fn mount(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<()> {
        nix::mount::mount(source, target, fstype, flags, data).map_err(|e| {
            anyhow::anyhow!(
                "mount {} on {} ({flags:?}): {e}",
                source.map_or("-".into(), |s| s.display().to_string()),
                target.display()
            )
        })
    }

    fn mkdir(&self, path: &Path, mode: u32) -> Result<()> {
        use std::os::unix::fs::DirBuilderExt;
        match std::fs::DirBuilder::new().mode(mode).create(path) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
                Err(anyhow::anyhow!("mkdir {}: {e}", path.display()))
            }
            _ => Ok(()),
        }
    }

    fn symlink(&self, target: &Path, link: &Path) -> Result<()> {
        std::os::unix::fs::symlink(target, link).map_err(|e| anyhow::anyhow!("symlink {}: {e}", link.display()))
    }

    fn touch(&self, path: &Path) -> Result<()> {
        std::fs::File::create(path).map(drop).map_err(|e| anyhow::anyhow!("create {}: {e}", path.display()))
    }

    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> Result<()> {
        nix::unistd::pivot_root(new_root, put_old)
            .map_err(|e| anyhow::anyhow!("pivot_root {}: {e}", new_root.display()))
    }

    fn chdir(&self, path: &Path) -> Result<()> {
        nix::unistd::chdir(path).map_err(|e| anyhow::anyhow!("chdir {}: {e}", path.display()))
    }

    fn umount_detach(&self, path: &Path) -> Result<()> {
        nix::mount::umount2(path, nix::mount::MntFlags::MNT_DETACH)
            .map_err(|e| anyhow::anyhow!("umount {}: {e}", path.display()))
    }

    fn rmdir(&self, path: &Path) -> Result<()> {
        std::fs::remove_dir(path).map_err(|e| anyhow::anyhow!("rmdir {}: {e}", path.display()))
    }

    fn chmod(&self, path: &Path, mode: u32) -> Result<()> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| anyhow::anyhow!("chmod {}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;

    /// Records every call as a line of text.
    #[derive(Default)]
    struct Recorder(RefCell<Vec<String>>);

    impl Recorder {
        fn push(&self, line: String) -> Result<()> {
            self.0.borrow_mut().push(line);
            Ok(())
        }
    }

    impl Syscall for Recorder {
        fn mount(&self, s: Option<&Path>, t: &Path, f: Option<&str>, flags: MsFlags, d: Option<&str>) -> Result<()> {
            let names: Vec<&str> = flags.iter_names().map(|(name, _)| name).collect();
            self.push(format!("mount {:?} {} {:?} {} {:?}", s, t.display(), f, names.join("|"), d))
        }
        fn mkdir(&self, p: &Path, _: u32) -> Result<()> {
            self.push(format!("mkdir {}", p.display()))
        }
        fn symlink(&self, t: &Path, l: &Path) -> Result<()> {
            self.push(format!("symlink {} -> {}", l.display(), t.display()))
        }
        fn touch(&self, p: &Path) -> Result<()> {
            self.push(format!("touch {}", p.display()))
        }
        fn pivot_root(&self, n: &Path, o: &Path) -> Result<()> {
            self.push(format!("pivot_root {} {}", n.display(), o.display()))
        }
        fn chdir(&self, p: &Path) -> Result<()> {
            self.push(format!("chdir {}", p.display()))
        }
        fn umount_detach(&self, p: &Path) -> Result<()> {
            self.push(format!("umount {}", p.display()))
        }
        fn rmdir(&self, p: &Path) -> Result<()> {
            self.push(format!("rmdir {}", p.display()))
        }
        fn chmod(&self, p: &Path, mode: u32) -> Result<()> {
            self.push(format!("chmod {} {mode:o}", p.display()))
        }
    }

    fn layout() -> Layout {
        Layout {
            root: "/b/SL01".into(),
            system_path: "/".into(),
            ports_dir: "/ports".into(),
            packages_dir: "/pkgs".into(),
            distfiles_dir: "/dist".into(),
            outbox: "/b/SL01.out".into(),
            tmpfs_size: 1 << 20,
            work_device: None,
            kit: None,
        }
    }

    fn calls() -> Vec<String> {
        let recorder = Recorder::default();
        let system = [
            ("usr", SystemEntry::Bind),
            ("bin", SystemEntry::Link("usr/bin".into())),
            ("lib32", SystemEntry::Absent),
            ("etc", SystemEntry::Bind),
        ];
        setup_root(&recorder, &layout(), &system).unwrap();
        recorder.0.into_inner()
    }

    fn position(calls: &[String], prefix: &str) -> usize {
        calls.iter().position(|c| c.starts_with(prefix)).unwrap_or_else(|| panic!("no call {prefix}: {calls:#?}"))
    }

    #[test]
    fn root_is_made_private_before_anything_else() {
        let calls = calls();
        assert_eq!(calls[0], "mount None / None MS_REC|MS_PRIVATE None");
        assert!(calls[1].starts_with("mount Some(\"tmpfs\") /b/SL01 Some(\"tmpfs\")"), "{}", calls[1]);
    }

    #[test]
    fn every_read_only_bind_is_followed_by_a_read_only_remount() {
        let calls = calls();
        for (source, target) in [
            ("/usr", "/b/SL01/usr"),
            ("/etc", "/b/SL01/etc"),
            ("/ports", "/b/SL01/xports"),
            ("/pkgs", "/b/SL01/packages"),
            ("/dist", "/b/SL01/distfiles"),
            ("/b/SL01.out", "/b/SL01/outbox"),
        ] {
            let bind = position(&calls, &format!("mount Some({source:?}) {target} None MS_BIND None"));
            let remount = &calls[bind + 1];
            assert!(remount.starts_with(&format!("mount None {target} None")), "{remount}");
            for flag in ["MS_RDONLY", "MS_REMOUNT", "MS_BIND", "MS_NOSUID", "MS_NODEV"] {
                assert!(remount.contains(flag), "{remount} lacks {flag}");
            }
        }
    }

    #[test]
    fn a_kit_localbase_is_a_tmpfs_of_its_own_beside_the_hosts_usr_entries() {
        let recorder = Recorder::default();
        let kit = KitMount {
            host: "/b/kits/1/usr/pkg".into(),
            prefix: "/usr/pkg".into(),
            split: Some(("usr".into(), vec![("bin".into(), SystemEntry::Bind), ("pkg".into(), SystemEntry::Bind)])),
        };
        let layout = Layout { kit: Some(kit), ..layout() };
        setup_root(&recorder, &layout, &[("usr", SystemEntry::Bind), ("etc", SystemEntry::Bind)]).unwrap();
        let calls = recorder.0.into_inner();
        assert!(!calls.iter().any(|c| c.contains("Some(\"/usr\") /b/SL01/usr ")), "no bind of the whole /usr");
        position(&calls, "mount Some(\"/usr/bin\") /b/SL01/usr/bin None MS_BIND");
        assert!(!calls.iter().any(|c| c.contains("Some(\"/usr/pkg\")")), "a host /usr/pkg stays out: {calls:#?}");
        let localbase = position(&calls, "mount Some(\"tmpfs\") /b/SL01/usr/pkg Some(\"tmpfs\")");
        assert!(calls[localbase].contains("MS_NOSUID") && calls[localbase].contains("size=1048576"));
        let copy = position(&calls, "mount Some(\"/b/kits/1/usr/pkg\") /b/SL01/.portsynth/kit None MS_BIND");
        assert!(calls[copy + 1].contains("MS_RDONLY"), "the kit itself is read-only: {}", calls[copy + 1]);
        assert!(!calls.iter().any(|c| c.contains("usr/local")), "no bundled LOCALBASE");
    }

    #[test]
    fn merged_usr_links_are_recreated_and_absent_dirs_skipped() {
        let calls = calls();
        assert!(calls.contains(&"symlink /b/SL01/bin -> usr/bin".to_string()));
        assert!(!calls.iter().any(|c| c.contains("lib32")));
    }

    #[test]
    fn dev_holds_only_the_allowed_nodes_and_a_private_devpts() {
        let calls = calls();
        let dev_binds: Vec<&String> = calls.iter().filter(|c| c.starts_with("mount Some(\"/dev/")).collect();
        assert_eq!(dev_binds.len(), DEVICES.len());
        assert!(calls.iter().any(|c| c.contains("devpts") && c.contains("newinstance")));
        assert!(!calls.iter().any(|c| c.starts_with("mount Some(\"/dev\")")), "never the host /dev");
    }

    #[test]
    fn tmpfs_areas_have_the_size_limit_and_pivot_comes_last() {
        let calls = calls();
        for dir in ["construction", "tmp", "usr/local"] {
            let call = &calls[position(&calls, &format!("mount Some(\"tmpfs\") /b/SL01/{dir} "))];
            assert!(call.contains("size=1048576"), "{call}");
        }
        let proc_ = position(&calls, "mount Some(\"proc\") /b/SL01/proc");
        let pivot = position(&calls, "pivot_root /b/SL01 /b/SL01/.oldroot");
        assert!(proc_ < pivot);
        assert_eq!(&calls[pivot + 1..], ["chdir /", "umount /.oldroot", "rmdir /.oldroot"]);
    }

    #[test]
    fn a_disk_work_area_replaces_the_construction_tmpfs_nosuid_nodev_and_open_to_all() {
        let recorder = Recorder::default();
        let layout = Layout { work_device: Some("/dev/loop7".into()), ..layout() };
        setup_root(&recorder, &layout, &[("usr", SystemEntry::Bind)]).unwrap();
        let calls = recorder.0.into_inner();
        let mount = position(&calls, "mount Some(\"/dev/loop7\") /b/SL01/construction Some(\"ext4\")");
        assert_eq!(
            calls[mount],
            "mount Some(\"/dev/loop7\") /b/SL01/construction Some(\"ext4\") MS_NOSUID|MS_NODEV None"
        );
        assert_eq!(calls[mount - 1], "mkdir /b/SL01/construction");
        assert_eq!(calls[mount + 1], "chmod /b/SL01/construction 1777");
        assert!(!calls.iter().any(|c| c.starts_with("mount Some(\"tmpfs\") /b/SL01/construction ")), "{calls:#?}");
        // After the sandbox's own tmpfs root, before the pivot; the other
        // tmpfs areas stay.
        assert!(position(&calls, "mount Some(\"tmpfs\") /b/SL01 ") < mount);
        assert!(mount < position(&calls, "pivot_root"));
        for dir in ["tmp", "usr/local"] {
            position(&calls, &format!("mount Some(\"tmpfs\") /b/SL01/{dir} "));
        }
    }

    #[test]
    fn binds_are_made_writable_and_sealed_again_by_remounts() {
        let recorder = Recorder::default();
        set_writable(&recorder, Path::new("/distfiles"), true).unwrap();
        set_writable(&recorder, Path::new("/distfiles"), false).unwrap();
        let calls = recorder.0.borrow();
        assert!(calls[0].starts_with("mount None /distfiles None") && calls[0].contains("MS_REMOUNT"));
        assert!(!calls[0].contains("MS_RDONLY") && calls[0].contains("MS_NOSUID"));
        assert!(calls[1].contains("MS_RDONLY") && calls[1].contains("MS_REMOUNT"));
    }

    fn scan_calls(ports: &str) -> Vec<String> {
        let recorder = Recorder::default();
        let system =
            [("usr", SystemEntry::Bind), ("bin", SystemEntry::Link("usr/bin".into())), ("etc", SystemEntry::Bind)];
        let layout = ScanLayout { root: "/b/scan".into(), system_path: "/".into(), ports_dir: ports.into(), kit: None };
        setup_scan_root(&recorder, &layout, &system).unwrap();
        recorder.0.into_inner()
    }

    #[test]
    fn scan_root_is_private_first_and_pivots_last() {
        let calls = scan_calls("/home/me/ports");
        assert_eq!(calls[0], "mount None / None MS_REC|MS_PRIVATE None");
        assert!(calls[1].starts_with("mount Some(\"tmpfs\") /b/scan Some(\"tmpfs\")"), "{}", calls[1]);
        let proc_ = position(&calls, "mount Some(\"proc\") /b/scan/proc");
        let pivot = position(&calls, "pivot_root /b/scan /b/scan/.oldroot");
        assert!(proc_ < pivot);
        assert_eq!(&calls[pivot + 1..], ["chdir /", "umount /.oldroot", "rmdir /.oldroot"]);
    }

    #[test]
    fn scan_root_binds_the_tree_read_only_at_its_host_path() {
        let calls = scan_calls("/home/me/ports");
        for (source, target) in
            [("/usr", "/b/scan/usr"), ("/etc", "/b/scan/etc"), ("/home/me/ports", "/b/scan/home/me/ports")]
        {
            let bind = position(&calls, &format!("mount Some({source:?}) {target} None MS_BIND None"));
            let remount = &calls[bind + 1];
            assert!(remount.starts_with(&format!("mount None {target} None")), "{remount}");
            for flag in ["MS_RDONLY", "MS_REMOUNT", "MS_BIND", "MS_NOSUID", "MS_NODEV"] {
                assert!(remount.contains(flag), "{remount} lacks {flag}");
            }
        }
        let home = position(&calls, "mkdir /b/scan/home");
        let me = position(&calls, "mkdir /b/scan/home/me");
        let bind = position(&calls, "mount Some(\"/home/me/ports\")");
        assert!(home < me && me < bind);
        // Nothing but the tree and the system directories comes from the host.
        let host_binds: Vec<&String> =
            calls.iter().filter(|c| c.starts_with("mount Some(\"/") && !c.starts_with("mount Some(\"/dev/")).collect();
        assert_eq!(host_binds.len(), 3, "{host_binds:#?}");
        assert!(!calls.iter().any(|c| c.contains("packages") || c.contains("distfiles") || c.contains("outbox")));
    }

    #[test]
    fn scan_tmp_is_mounted_before_a_tree_below_it() {
        let calls = scan_calls("/tmp/.tmpX/ports");
        let tmp = position(&calls, "mount Some(\"tmpfs\") /b/scan/tmp ");
        assert!(calls[tmp].contains("mode=1777"), "{}", calls[tmp]);
        let mkdir = position(&calls, "mkdir /b/scan/tmp/.tmpX");
        let bind = position(&calls, "mount Some(\"/tmp/.tmpX/ports\") /b/scan/tmp/.tmpX/ports None MS_BIND");
        assert!(tmp < mkdir && mkdir < bind);
        assert!(position(&calls, "mount Some(\"devpts\")") < position(&calls, "pivot_root"));
    }

    #[test]
    fn scan_root_refuses_a_relative_tree() {
        let layout =
            ScanLayout { root: "/b/scan".into(), system_path: "/".into(), ports_dir: "ports".into(), kit: None };
        assert!(setup_scan_root(&Recorder::default(), &layout, &[]).is_err());
    }

    fn kit_calls() -> Vec<String> {
        let recorder = Recorder::default();
        let system =
            [("usr", SystemEntry::Bind), ("bin", SystemEntry::Link("usr/bin".into())), ("etc", SystemEntry::Bind)];
        let layout = KitLayout {
            root: "/b/kit".into(),
            system_path: "/".into(),
            tree: "/src/pkgsrc".into(),
            outbox: "/b/kits/.outbox".into(),
            usr: vec![
                ("bin".into(), SystemEntry::Bind),
                ("lib64".into(), SystemEntry::Link("lib".into())),
                ("pkg".into(), SystemEntry::Bind),
                ("pkgsrc".into(), SystemEntry::Bind),
            ],
            uid: 65534,
            gid: 65534,
            tmpfs_size: 1 << 20,
        };
        setup_kit_root(&recorder, &layout, &system).unwrap();
        recorder.0.into_inner()
    }

    #[test]
    fn kit_root_binds_usr_entry_by_entry_read_only_and_never_a_host_pkg() {
        let calls = kit_calls();
        assert_eq!(calls[0], "mount None / None MS_REC|MS_PRIVATE None");
        let usr = position(&calls, "mount Some(\"tmpfs\") /b/kit/usr Some(\"tmpfs\")");
        for (source, target) in [
            ("/usr/bin", "/b/kit/usr/bin"),
            ("/etc", "/b/kit/etc"),
            ("/src/pkgsrc", "/b/kit/usr/pkgsrc"),
            ("/b/kits/.outbox", "/b/kit/outbox"),
        ] {
            let bind = position(&calls, &format!("mount Some({source:?}) {target} None MS_BIND None"));
            assert!(usr < bind);
            let remount = &calls[bind + 1];
            for flag in ["MS_RDONLY", "MS_REMOUNT", "MS_BIND", "MS_NOSUID", "MS_NODEV"] {
                assert!(
                    remount.starts_with(&format!("mount None {target} None")) && remount.contains(flag),
                    "{remount}"
                );
            }
        }
        assert!(calls.contains(&"symlink /b/kit/usr/lib64 -> lib".to_string()));
        assert!(!calls.iter().any(|c| c.contains("\"/usr/pkg") || c.contains("\"/usr/pkgsrc")), "{calls:#?}");
        // The writable places are tmpfs of the build user, made after the tree.
        let tree = position(&calls, "mount Some(\"/src/pkgsrc\")");
        for dir in ["usr/pkg", "work"] {
            let mount = position(&calls, &format!("mount Some(\"tmpfs\") /b/kit/{dir} "));
            assert!(tree < mount && calls[mount].contains("uid=65534,gid=65534"), "{}", calls[mount]);
        }
        let pivot = position(&calls, "pivot_root /b/kit /b/kit/.oldroot");
        assert_eq!(&calls[pivot + 1..], ["chdir /", "umount /.oldroot", "rmdir /.oldroot"]);
    }

    #[test]
    fn the_terminal_is_never_bound_in() {
        assert!(!DEVICES.contains(&"tty"));
        assert!(!calls().iter().any(|c| c.contains("tty")));
    }
}
