//! Worker sandboxes: one fresh set of namespaces and one tmpfs root per port
//! build.
//!
//! The main process is multi-threaded, and `unshare`/`fork` without `exec`
//! are unsafe there, so all isolation happens in a re-exec of the binary
//! (`portsynth sandbox-helper`, hidden), which is single-threaded:
//!
//! ```text
//! main process (runner)            helper                      PID 1 of the new PID namespace
//!   spawn helper, spec on stdin ─▶ PDEATHSIG, unshare ─fork─▶  mounts, pivot_root, install deps,
//!   read output pipe ─ log           wait for PID 1              run each phase (fork+exec make),
//!   read events (fd 3) ─ banners                                 reap everything, kill leftovers
//!   watchdogs: SIGKILL helper ─▶ PDEATHSIG kills PID 1 ─▶ the kernel kills the namespace
//! ```
//!
//! Everything lives in namespaces owned by the helper and its PID 1, so when
//! they die — normally, by a watchdog, or because portsynth itself was killed
//! (PDEATHSIG at each level) — every process and every mount goes with them.
//! The host-side slot directories are plain empty directories.

pub mod abnormal;
pub mod confine;
pub mod download;
pub mod helper;
pub mod kit;
pub mod limits;
pub mod mounts;
pub mod parallelism;
pub mod runner;
pub mod scan;
pub mod scan_pool;
pub mod work_area;

use anyhow::{bail, Context, Result};
use nix::sched::CloneFlags;
use nix::sys::signal::Signal;
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::ForkResult;
use serde::{Deserialize, Serialize};

use crate::ports::Phase;

/// What every process in a sandbox starts its environment from (nothing of
/// the operator's environment gets in): `PATH`, `HOME`, `TERM`, `LANG` and
/// `SHELL`.
pub fn base_environment(path: &str, home: &str) -> Vec<(String, String)> {
    [("PATH", path), ("HOME", home), ("TERM", "dumb"), ("LANG", "C"), ("SHELL", "/bin/sh")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The namespaces of a sandbox without any network (scan, kit).
pub(crate) const ISOLATED: CloneFlags = CloneFlags::CLONE_NEWNS
    .union(CloneFlags::CLONE_NEWPID)
    .union(CloneFlags::CLONE_NEWIPC)
    .union(CloneFlags::CLONE_NEWUTS)
    .union(CloneFlags::CLONE_NEWNET);

/// How every re-exec'd helper (build, scan, kit) starts its sandbox: die
/// with the process that started it (PDEATHSIG, then a check that it is
/// still there, for the race), unshare `namespaces`, and fork PID 1 of the
/// new PID namespace, which runs `pid1` and exits with what it returns.
/// Returns PID 1's exit status (128 + signal when killed, 2 otherwise
/// unknown) as this process's exit code. Must run single-threaded.
pub(crate) fn start_pid1(parent_pid: u32, namespaces: CloneFlags, pid1: impl FnOnce() -> i32) -> Result<i32> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).context("PR_SET_PDEATHSIG")?;
    if nix::unistd::getppid().as_raw() as u32 != parent_pid {
        bail!("portsynth (pid {parent_pid}) is gone");
    }
    nix::sched::unshare(namespaces).context("unshare")?;
    // SAFETY: the helpers are fresh execs that started no threads.
    match unsafe { nix::unistd::fork() }.context("fork")? {
        ForkResult::Child => std::process::exit(pid1()),
        ForkResult::Parent { child } => {
            // What PID 1 owns (e.g. the event pipe) closes here, in the parent.
            drop(pid1);
            Ok(match waitpid(child, None)? {
                WaitStatus::Exited(_, code) => code,
                WaitStatus::Signaled(_, signal, _) => 128 + signal as i32,
                _ => 2,
            })
        }
    }
}

/// Everything the helper needs, sent as JSON on its stdin.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HelperSpec {
    /// The process that must stay alive (PDEATHSIG race check).
    pub parent_pid: u32,
    pub slot: u32,
    pub root: std::path::PathBuf,
    pub system_path: std::path::PathBuf,
    pub ports_dir: std::path::PathBuf,
    pub packages_dir: std::path::PathBuf,
    pub distfiles_dir: std::path::PathBuf,
    pub outbox: std::path::PathBuf,
    pub tmpfs_size: u64,
    /// The loop device of a disk work area, mounted at `/construction`
    /// instead of a tmpfs (see [`work_area`]).
    #[serde(default)]
    pub work_device: Option<std::path::PathBuf>,
    /// `cat/port` directory of the port.
    pub port_dir: String,
    pub flavor: Option<String>,
    pub pkgname: String,
    pub phases: Vec<Phase>,
    /// Packages in `packages_dir/All` to install first, in this order, each
    /// with the policy it must satisfy.
    pub dependencies: Vec<DependencyInstall>,
    pub build_user: String,
    pub make_program: String,
    pub make_jobs: usize,
    pub make_env: Vec<(String, String)>,
    /// After a failed phase, archive the work area into the outbox.
    pub keep_work: bool,
    /// The tree's framework.
    #[serde(default)]
    pub framework: crate::framework::Kind,
    /// Local hosts the fetch phase may reach (`fetch_local_hosts`).
    #[serde(default)]
    pub fetch_local_hosts: Vec<String>,
    /// The variant's make variable assignments (see [`crate::ports::scan::PortMeta::variant`]).
    #[serde(default)]
    pub variant: Vec<String>,
    /// The bootstrap kit holds this package already.
    #[serde(default)]
    pub bootstrap_pkg: bool,
    /// The unpacked bootstrap kit (host directory of its prefix, the
    /// prefix) that becomes LOCALBASE, for a framework that has one.
    #[serde(default)]
    pub kit: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// The build's `mk.conf`: where PID 1 writes it, root-owned, and its
    /// text (pkgsrc: [`crate::framework::pkgsrc::MK_CONF`], the `MAKECONF`).
    #[serde(default)]
    pub mk_conf: Option<(std::path::PathBuf, String)>,
    /// Base URLs the fetch phase tries first (`distfile_mirrors`).
    #[serde(default)]
    pub distfile_mirrors: Vec<String>,
    /// Whether the fetch phase also tries the framework's sites
    /// (`fetch_upstream`).
    #[serde(default = "upstream_by_default")]
    pub fetch_upstream: bool,
}

fn upstream_by_default() -> bool {
    true
}

impl HelperSpec {
    pub fn layout(&self) -> mounts::Layout {
        mounts::Layout {
            root: self.root.clone(),
            system_path: self.system_path.clone(),
            ports_dir: self.ports_dir.clone(),
            packages_dir: self.packages_dir.clone(),
            distfiles_dir: self.distfiles_dir.clone(),
            outbox: self.outbox.clone(),
            tmpfs_size: self.tmpfs_size,
            work_device: self.work_device.clone(),
            kit: self.kit.as_ref().map(|(host, prefix)| mounts::KitMount {
                host: host.clone(),
                prefix: prefix.clone(),
                split: mounts::split_entries(&self.system_path, prefix),
            }),
        }
    }

    /// Where the framework writes the package inside the sandbox.
    pub const PACKAGES: &'static str = "/construction/packages";
    /// The work area, WRKDIRPREFIX of every build.
    pub const CONSTRUCTION: &'static str = "/construction";
    /// Name of the work-area archive in the outbox.
    pub const WORK_ARCHIVE: &'static str = "work.tar";

    /// The environment of every make phase (the log header shows it too):
    /// a fixed base, the framework's variables, then `make_conf`.
    pub fn make_environment(&self) -> Vec<(String, String)> {
        let framework = self.framework.framework();
        let localbase = framework.localbase();
        let path = format!("{localbase}/sbin:{localbase}/bin:/usr/sbin:/usr/bin:/sbin:/bin");
        let mut env = base_environment(&path, "/tmp");
        env.extend(framework.build_environment(self.flavor.as_deref(), self.make_jobs));
        env.extend(self.make_env.iter().cloned());
        env
    }
}

/// One dependency package for the helper to install: its file name in
/// `packages_dir/All` and what it is checked against (prefix, limits, the
/// origin that must have built it, setuid bits allowed or not).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DependencyInstall {
    pub file: String,
    pub policy: crate::repo::PackagePolicy,
}

/// What the helper reports on its event channel (fd 3), one JSON per line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    PhaseStart {
        phase: Phase,
    },
    Installed {
        package: String,
    },
    PhaseEnd {
        phase: Phase,
        ok: bool,
        detail: Option<String>,
        /// The work area when the phase ended (PID 1's `statvfs`).
        #[serde(default)]
        work: Option<work_area::Fill>,
    },
    Packaged {
        file: String,
    },
    SetupFailed {
        reason: String,
    },
}

/// The file descriptor number of the event channel in the helper.
pub const EVENT_FD: i32 = 3;
