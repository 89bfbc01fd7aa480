//! Where a build's work area (`/construction`, WRKDIRPREFIX) lives: a tmpfs
//! (memory, the default) or a disk work area, and what it holds.
//!
//! A tmpfs is fast and vanishes with the namespace, but its pages are
//! memory: a port whose work area outgrows `tmpfs_size` fails, and many
//! large ones at once compete for RAM. The disk work area keeps the tmpfs's
//! two properties that matter for hostile port code, an exact size limit and
//! nothing to delete afterwards, without using memory:
//!
//! * a sparse image file per slot, `build_base/work/<pid>-SLnn.img`, of
//!   `disk_work_size` (never more than the free space of its file system,
//!   less a reserve, shared among the workers), so a full work area is
//!   ENOSPC inside the sandbox, never a full host disk;
//! * `mkfs.ext4` without a journal and with lazy inode tables (milliseconds,
//!   a few MB on disk), `-m 0` so the build user gets all of it;
//! * a loop device with `LO_FLAGS_AUTOCLEAR` (`LOOP_CONFIGURE`, or
//!   `LOOP_SET_FD` + `LOOP_SET_STATUS64` on older kernels): the runner holds
//!   the device open until the helper has ended, the helper mounts it in its
//!   own namespace, and the kernel detaches it once the last of the two goes
//!   — also when portsynth is killed with `kill -9`, since the namespace dies
//!   with it;
//! * after the build the image is removed with one `unlink`; images of dead
//!   processes (`kill -9`) are removed at the next run's start and by
//!   `cleanup`, by name, each a single file.
//!
//! Usage is read with `statvfs` of the mounted file system, for both kinds:
//! by PID 1 at the end of every phase (sent with the phase's end event) and
//! by the runner while a phase runs, through `/proc/<helper>/root`.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

/// The kind of a build's work area.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WorkArea {
    #[default]
    Tmpfs,
    Disk,
}

impl WorkArea {
    pub fn name(self) -> &'static str {
        match self {
            WorkArea::Tmpfs => "tmpfs",
            WorkArea::Disk => "disk",
        }
    }

    pub fn from_name(name: &str) -> Option<WorkArea> {
        match name {
            "tmpfs" => Some(WorkArea::Tmpfs),
            "disk" => Some(WorkArea::Disk),
            _ => None,
        }
    }

    /// The work area config `work_dir` fixes, tmpfs for `auto` (which the
    /// scheduler may decide per build with [`place`]).
    pub fn for_config(config: &crate::config::Config) -> WorkArea {
        config.work_dir.fixed().unwrap_or(WorkArea::Tmpfs)
    }
}

/// Where an `auto` build's work area goes: a tmpfs when the work area its
/// history expects (with an eighth of headroom: builds vary) fits both
/// `tmpfs_size` and the memory still unclaimed (`memory_left`), else a disk
/// work area. Without history, a tmpfs: a build that fills it is retried
/// once on disk by the runner.
pub fn place(expected_peak_work: Option<u64>, tmpfs_size: u64, memory_left: u64) -> WorkArea {
    match expected_peak_work {
        None => WorkArea::Tmpfs,
        Some(peak) => {
            let needed = peak.saturating_add(peak / 8);
            if needed <= tmpfs_size && needed <= memory_left {
                WorkArea::Tmpfs
            } else {
                WorkArea::Disk
            }
        }
    }
}

/// How full a mounted work area is (`statvfs`), in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fill {
    pub used: u64,
    pub size: u64,
    /// What an unprivileged writer can still use (ext4 keeps a few blocks
    /// back even with `-m 0`).
    #[serde(default)]
    pub available: u64,
}

impl Fill {
    /// The file system mounted at `path`, if it can be read.
    pub fn of(path: &Path) -> Option<Fill> {
        let stat = nix::sys::statvfs::statvfs(path).ok()?;
        let block = stat.fragment_size() as u64;
        let blocks = stat.blocks() as u64;
        let free = stat.blocks_free() as u64;
        let available = stat.blocks_available() as u64 * block;
        Some(Fill { used: blocks.saturating_sub(free) * block, size: blocks * block, available })
    }

    /// Full for a build: less than 2% (at least 64 KiB) left, so a failure
    /// then is taken as the work area's.
    pub fn is_full(&self) -> bool {
        self.available <= (self.size / 50).max(64 << 10)
    }
}

/// Where the images live: `build_base/work`.
pub fn images_dir(build_base: &Path) -> PathBuf {
    build_base.join("work")
}

/// What the host file system keeps free of disk work areas.
pub const DISK_RESERVE: u64 = 2 << 30;
/// The smallest disk work area (and `disk_work_size`).
pub const MIN_DISK_WORK_SIZE: u64 = 16 << 20;

/// The size of one image: `wanted`, but at most an equal share per worker
/// of what the file system has free beyond [`DISK_RESERVE`], in whole MiB.
pub fn image_size(wanted: u64, available: u64, workers: usize) -> Result<u64> {
    let share = available.saturating_sub(DISK_RESERVE) / workers.max(1) as u64;
    let size = wanted.min(share) >> 20 << 20;
    if size < MIN_DISK_WORK_SIZE {
        bail!(
            "not enough free space for a disk work area: {} MiB available, {} MiB kept free, {workers} worker(s)",
            available >> 20,
            DISK_RESERVE >> 20
        );
    }
    Ok(size)
}

/// A slot's disk work area: the image and the loop device holding it.
/// Dropping it closes the device (the kernel detaches it once the sandbox's
/// mount is gone too) and unlinks the image.
pub struct DiskImage {
    path: PathBuf,
    device: PathBuf,
    size: u64,
    _loop: File,
}

impl DiskImage {
    /// Creates, formats and attaches the image of `slot`.
    pub fn create(build_base: &Path, slot: u32, wanted: u64, workers: usize) -> Result<DiskImage> {
        let dir = images_dir(build_base);
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let available = nix::sys::statvfs::statvfs(&dir)
            .map(|s| s.blocks_available() * s.fragment_size())
            .with_context(|| format!("statvfs {}", dir.display()))?;
        let size = image_size(wanted, available, workers)?;
        let path = dir.join(format!("{}-SL{slot:02}.img", std::process::id()));
        remove_image(&path);
        let image = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        let made = image.set_len(size).context("sizing the image").and_then(|_| format(&path));
        let attached = made.and_then(|_| attach(&image).context("attaching a loop device"));
        match attached {
            Ok((device, handle)) => Ok(DiskImage { path, device, size, _loop: handle }),
            Err(e) => {
                remove_image(&path);
                Err(e.context(format!("disk work area {}", path.display())))
            }
        }
    }

    pub fn device(&self) -> &Path {
        &self.device
    }

    pub fn size(&self) -> u64 {
        self.size
    }
}

impl Drop for DiskImage {
    fn drop(&mut self) {
        remove_image(&self.path);
    }
}

/// One `unlink` of a regular file; never a directory, never recursive.
fn remove_image(path: &Path) {
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_file()) {
        let _ = std::fs::remove_file(path);
    }
}

/// `mkfs.ext4`: no journal (the file system lives for one build), lazy
/// inode tables, no blocks reserved for root.
fn format(image: &Path) -> Result<()> {
    let program =
        ["/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4"].into_iter().find(|p| Path::new(p).exists()).unwrap_or("mkfs.ext4");
    let output = Command::new(program)
        .args(["-q", "-F", "-m", "0", "-O", "^has_journal", "-E", "lazy_itable_init=1,lazy_journal_init=1,nodiscard"])
        .arg(image)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .output()
        .with_context(|| format!("cannot run {program} (e2fsprogs)"))?;
    if !output.status.success() {
        bail!("{program} failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(())
}

const LOOP_SET_FD: libc::c_ulong = 0x4C00;
const LOOP_CLR_FD: libc::c_ulong = 0x4C01;
const LOOP_SET_STATUS64: libc::c_ulong = 0x4C04;
const LOOP_CONFIGURE: libc::c_ulong = 0x4C0A;
const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LO_FLAGS_AUTOCLEAR: u32 = 4;

/// `struct loop_info64` of `<linux/loop.h>`.
#[repr(C)]
struct LoopInfo64 {
    device: u64,
    inode: u64,
    rdevice: u64,
    offset: u64,
    sizelimit: u64,
    number: u32,
    encrypt_type: u32,
    encrypt_key_size: u32,
    flags: u32,
    file_name: [u8; 64],
    crypt_name: [u8; 64],
    encrypt_key: [u8; 32],
    init: [u64; 2],
}

/// `struct loop_config` of `<linux/loop.h>`.
#[repr(C)]
struct LoopConfig {
    fd: u32,
    block_size: u32,
    info: LoopInfo64,
    reserved: [u64; 8],
}

fn autoclear_info() -> LoopInfo64 {
    LoopInfo64 {
        device: 0,
        inode: 0,
        rdevice: 0,
        offset: 0,
        sizelimit: 0,
        number: 0,
        encrypt_type: 0,
        encrypt_key_size: 0,
        flags: LO_FLAGS_AUTOCLEAR,
        file_name: [0; 64],
        crypt_name: [0; 64],
        encrypt_key: [0; 32],
        init: [0; 2],
    }
}

/// A free loop device bound to `image` with autoclear, and an open handle
/// of it. Another process may take the free device first: then the next.
fn attach(image: &File) -> Result<(PathBuf, File)> {
    let control = OpenOptions::new().read(true).write(true).open("/dev/loop-control").context("/dev/loop-control")?;
    for _ in 0..32 {
        // SAFETY: LOOP_CTL_GET_FREE takes no argument.
        let number = unsafe { libc::ioctl(control.as_raw_fd(), LOOP_CTL_GET_FREE as _) };
        if number < 0 {
            return Err(std::io::Error::last_os_error()).context("LOOP_CTL_GET_FREE");
        }
        let path = PathBuf::from(format!("/dev/loop{number}"));
        let device =
            OpenOptions::new().read(true).write(true).open(&path).with_context(|| path.display().to_string())?;
        match configure(&device, image) {
            Ok(()) => return Ok((path, device)),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => continue,
            Err(e) => return Err(e).with_context(|| format!("binding {}", path.display())),
        }
    }
    bail!("no free loop device after 32 attempts")
}

fn configure(device: &File, image: &File) -> std::io::Result<()> {
    let config = LoopConfig { fd: image.as_raw_fd() as u32, block_size: 0, info: autoclear_info(), reserved: [0; 8] };
    // SAFETY: the argument is a valid `struct loop_config` for the call.
    if unsafe { libc::ioctl(device.as_raw_fd(), LOOP_CONFIGURE as _, &config) } == 0 {
        return Ok(());
    }
    let error = std::io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::EINVAL) | Some(libc::ENOTTY) => configure_legacy(device, image),
        _ => Err(error),
    }
}

/// Kernels before 5.8: bind, then set the flags; undone if the second fails.
fn configure_legacy(device: &File, image: &File) -> std::io::Result<()> {
    // SAFETY: LOOP_SET_FD takes a file descriptor by value.
    if unsafe { libc::ioctl(device.as_raw_fd(), LOOP_SET_FD as _, image.as_raw_fd() as libc::c_ulong) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let info = autoclear_info();
    // SAFETY: the argument is a valid `struct loop_info64`.
    if unsafe { libc::ioctl(device.as_raw_fd(), LOOP_SET_STATUS64 as _, &info) } != 0 {
        let error = std::io::Error::last_os_error();
        // SAFETY: LOOP_CLR_FD takes no argument.
        unsafe { libc::ioctl(device.as_raw_fd(), LOOP_CLR_FD as _) };
        return Err(error);
    }
    Ok(())
}

/// Removes the images of portsynth processes that are gone (killed with
/// `kill -9`: their loop devices went with their sandboxes, the files
/// stayed). Returns the files removed, each a single `unlink`.
pub fn remove_stale(build_base: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(images_dir(build_base)) else { return vec![] };
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = image_owner(&name) else { continue };
        let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
        if !alive && entry.file_type().is_ok_and(|t| t.is_file()) && std::fs::remove_file(entry.path()).is_ok() {
            removed.push(entry.path());
        }
    }
    removed
}

/// The pid in an image name `<pid>-SLnn.img`.
fn image_owner(name: &str) -> Option<i32> {
    let (pid, slot) = name.strip_suffix(".img")?.split_once("-SL")?;
    slot.chars().all(|c| c.is_ascii_digit()).then_some(())?;
    pid.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_recorded_peak_that_fits_memory_and_tmpfs_stays_in_a_tmpfs() {
        assert_eq!(place(None, 1 << 30, 0), WorkArea::Tmpfs, "no history: tmpfs (retried on disk if full)");
        assert_eq!(place(Some(100 << 20), 1 << 30, 2 << 30), WorkArea::Tmpfs);
        assert_eq!(place(Some(1 << 30), 1 << 30, 8 << 30), WorkArea::Disk, "no headroom in tmpfs_size");
        assert_eq!(place(Some(900 << 20), 1 << 30, 8 << 30), WorkArea::Tmpfs, "900M + 1/8 fits 1G");
        assert_eq!(place(Some(500 << 20), 4 << 30, 400 << 20), WorkArea::Disk, "not enough memory left");
        assert_eq!(place(Some(u64::MAX), u64::MAX, u64::MAX), WorkArea::Tmpfs, "saturates");
    }

    #[test]
    fn image_size_is_capped_by_the_free_space_share_of_each_worker() {
        assert_eq!(image_size(64 << 30, 100 << 30, 1).unwrap(), 64 << 30);
        assert_eq!(image_size(64 << 30, 34 << 30, 2).unwrap(), 16 << 30);
        assert_eq!(image_size((32 << 20) + 5, 100 << 30, 1).unwrap(), 32 << 20, "whole MiB");
        let err = image_size(64 << 30, 2 << 30, 1).unwrap_err().to_string();
        assert!(err.contains("not enough free space"), "{err}");
    }

    #[test]
    fn fill_is_full_near_its_size() {
        let fill = |used: u64, available: u64| Fill { used, size: 16 << 20, available };
        assert!(fill(16 << 20, 0).is_full());
        assert!(fill((16 << 20) - (100 << 10), 100 << 10).is_full());
        assert!(fill(15 << 20, 0).is_full(), "what is left is kept back");
        assert!(!fill(8 << 20, 8 << 20).is_full());
        assert!(Fill::of(Path::new("/")).is_some_and(|f| f.size > 0));
    }

    #[test]
    fn image_names_carry_their_owner() {
        assert_eq!(image_owner("1234-SL01.img"), Some(1234));
        assert_eq!(image_owner("1234-SL01.img.part"), None);
        assert_eq!(image_owner("x-SL01.img"), None);
        assert_eq!(image_owner("1234-SLx.img"), None);
    }

    #[test]
    fn stale_images_of_dead_processes_are_removed_and_others_kept() {
        let base = tempfile::tempdir().unwrap();
        let dir = images_dir(base.path());
        std::fs::create_dir_all(&dir).unwrap();
        let dead = dir.join(format!("{}-SL01.img", i32::MAX));
        let alive = dir.join(format!("{}-SL02.img", std::process::id()));
        let other = dir.join("notes.txt");
        let dead_dir = dir.join(format!("{}-SL03.img", i32::MAX));
        for file in [&dead, &alive, &other] {
            std::fs::write(file, b"x").unwrap();
        }
        std::fs::create_dir(&dead_dir).unwrap();
        assert_eq!(remove_stale(base.path()), vec![dead.clone()]);
        assert!(!dead.exists() && alive.exists() && other.exists() && dead_dir.is_dir());
    }

    /// Needs root and a loop driver, as the sandbox tests do.
    #[test]
    fn a_disk_image_is_attached_with_autoclear_and_removed_on_drop() {
        let base = tempfile::tempdir().unwrap();
        let image = DiskImage::create(base.path(), 97, 32 << 20, 1).expect("disk image");
        assert_eq!(image.size(), 32 << 20);
        let name = image.device().file_name().unwrap().to_string_lossy().into_owned();
        let sys = Path::new("/sys/block").join(&name).join("loop");
        let backing = std::fs::read_to_string(sys.join("backing_file")).unwrap();
        assert!(backing.trim().ends_with(&format!("{}-SL97.img", std::process::id())), "{backing}");
        assert_eq!(std::fs::read_to_string(sys.join("autoclear")).unwrap().trim(), "1");
        let path = image.path.clone();
        drop(image);
        assert!(!path.exists());
        // The kernel detaches it when the last opener (udev may probe it) is gone.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while sys.join("backing_file").exists() && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        assert!(!sys.join("backing_file").exists(), "detached once nothing holds it");
    }
}
