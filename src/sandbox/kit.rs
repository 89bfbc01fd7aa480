//! The bootstrap-kit sandbox (`portsynth kit-helper`, hidden): runs a pkgsrc
//! tree's `bootstrap/bootstrap` to make a binary kit for `/usr/pkg`, as the
//! build user, without network, with nothing writable but tmpfs.
//!
//! ```text
//! main process (framework::pkgsrc::kit)   helper                    PID 1 of the new PID namespace
//!   cgroup, spec line on stdin ─────────▶ PDEATHSIG, unshare ─fork─▶ mounts, pivot_root, fragment,
//!   watchdog (deadline + grace)             wait for PID 1             confined bootstrap (deadline),
//!   ◀────────────────────────────────────────────────────────────── kill leftovers, copy the kit out,
//!   verify, rename into place                                          one result line on stdout
//! ```
//!
//! The helper unshares mount, PID, IPC, UTS and network namespaces (no
//! interface at all: the bootstrap builds from the tree's own sources).
//! PID 1 builds the root of [`mounts::setup_kit_root`], writes the mk.conf
//! fragment into `/work`, and runs the bootstrap through
//! [`Confinement::enter`] as the build user with `--unprivileged`, stdin
//! `/dev/null`, stdout and stderr on the log (the helper's stderr, a file
//! the main process opened) and `RLIMIT_FSIZE` at `max_log_size`, so
//! neither the log nor any file it writes grows past that. At the deadline
//! PID 1 kills every other process of the namespace. After the bootstrap,
//! whatever it left is killed, and only then PID 1 copies
//! `/work/kit.tgz` (`O_NOFOLLOW`, a regular file of the build user, at most
//! `max_kit_size` bytes) to `/outbox`, remounted writable for that copy
//! alone. The main process verifies the copy before it uses it.

use std::io::{BufRead, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{Pid, User};
use serde::{Deserialize, Serialize};

use super::confine::Confinement;
use super::mounts::{self, classify_system_dir, KitLayout, Real, SystemEntry, KIT_PREFIX, KIT_TREE, SYSTEM_DIRS};

/// `PATH` of the bootstrap.
pub const KIT_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";
/// Where the bootstrap writes the kit, and its name in the outbox.
pub const KIT_FILE: &str = "kit.tgz";
/// The bootstrap's `--workdir` (it must not exist yet).
const WORKDIR: &str = "/work/bootstrap";
const FRAGMENT: &str = "/work/mk.conf.fragment";

/// The line on the helper's stdin.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KitSpec {
    /// The process that must stay alive (PDEATHSIG race check).
    pub parent_pid: u32,
    /// The mount point of the sandbox root (an empty host directory).
    pub root: PathBuf,
    pub system_path: PathBuf,
    /// Absolute; bound read-only at `/usr/pkgsrc`.
    pub tree: PathBuf,
    pub outbox: PathBuf,
    pub build_user: String,
    /// Appended to `PREFIX/etc/mk.conf` by `--mk-fragment`.
    pub fragment: String,
    /// Added to the bootstrap's fixed environment (`bootstrap_env`).
    pub env: Vec<(String, String)>,
    pub tmpfs_size: u64,
    pub max_log_size: u64,
    pub max_kit_size: u64,
    pub timeout_secs: u64,
}

impl KitSpec {
    /// The bootstrap's command line inside the sandbox.
    pub fn arguments() -> Vec<String> {
        let prefix = format!("/{KIT_PREFIX}");
        [
            "./bootstrap",
            "--prefix",
            &prefix,
            "--pkgdbdir",
            &format!("{prefix}/pkgdb"),
            "--varbase",
            &format!("{prefix}/var"),
            "--workdir",
            WORKDIR,
            "--unprivileged",
            "--gzip-binary-kit",
            &format!("/work/{KIT_FILE}"),
            "--mk-fragment",
            FRAGMENT,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    }

    /// The bootstrap's whole environment: fixed, plus `bootstrap_env`.
    pub fn environment(&self) -> Vec<(String, String)> {
        let mut env = super::base_environment(KIT_PATH, "/work");
        env.push(("TMPDIR".into(), "/tmp".into()));
        env.extend(self.env.iter().cloned());
        env
    }
}

/// PID 1's one line on stdout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum KitResult {
    /// The kit is in the outbox.
    Done {
        size: u64,
    },
    SetupFailed {
        reason: String,
    },
    /// The bootstrap ended without a kit.
    Failed {
        reason: String,
    },
    TimedOut {
        seconds: u64,
    },
}

/// Entry point of the hidden subcommand. Never returns.
pub fn main() -> ! {
    let code = match run() {
        Ok(code) => code,
        Err(error) => {
            let reason = format!("{error:#}");
            eprintln!("portsynth kit sandbox: {reason}");
            result(&KitResult::SetupFailed { reason });
            2
        }
    };
    std::process::exit(code)
}

fn result(result: &KitResult) {
    if let Ok(mut line) = serde_json::to_vec(result) {
        line.push(b'\n');
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(&line).and_then(|_| out.flush());
    }
}

fn run() -> Result<i32> {
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).context("reading the kit sandbox spec")?;
    let spec: KitSpec = serde_json::from_str(&line).context("reading the kit sandbox spec")?;
    super::start_pid1(spec.parent_pid, super::ISOLATED, move || {
        let outcome = pid1(&spec).unwrap_or_else(|e| {
            let reason = format!("{e:#}");
            eprintln!("portsynth kit sandbox: {reason}");
            KitResult::SetupFailed { reason }
        });
        result(&outcome);
        if matches!(outcome, KitResult::Done { .. }) {
            0
        } else {
            1
        }
    })
}

/// PID 1: the root, the confined bootstrap, the delivery.
fn pid1(spec: &KitSpec) -> Result<KitResult> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).context("PR_SET_PDEATHSIG in PID 1")?;
    let _ = nix::unistd::sethostname("portsynth-kit");
    let user = User::from_name(&spec.build_user)?
        .with_context(|| format!("build user '{}' does not exist in /etc/passwd", spec.build_user))?;
    if user.uid.is_root() {
        bail!("build user '{}' is root; port code never runs with privilege", spec.build_user);
    }
    let system: Vec<(&str, SystemEntry)> =
        SYSTEM_DIRS.iter().map(|d| (*d, classify_system_dir(&spec.system_path.join(d)))).collect();
    let usr_dir = spec.system_path.join("usr");
    let usr = mounts::dir_entries(&usr_dir).with_context(|| format!("cannot list {}", usr_dir.display()))?;
    let layout = KitLayout {
        root: spec.root.clone(),
        system_path: spec.system_path.clone(),
        tree: spec.tree.clone(),
        outbox: spec.outbox.clone(),
        usr,
        uid: user.uid.as_raw(),
        gid: user.gid.as_raw(),
        tmpfs_size: spec.tmpfs_size,
    };
    mounts::setup_kit_root(&Real, &layout, &system).context("building the kit sandbox root")?;
    std::fs::write(FRAGMENT, &spec.fragment).context("writing the mk.conf fragment")?;
    let confinement = Confinement::new(user.uid.as_raw(), user.gid.as_raw())?;
    let null = std::fs::File::open("/dev/null").context("/dev/null")?;
    nix::unistd::dup2_stdin(&null)?;
    let log =
        std::os::fd::AsFd::as_fd(&std::io::stderr()).try_clone_to_owned().context("duplicating the log descriptor")?;
    let args = KitSpec::arguments();
    let env = spec.environment();
    eprintln!("===> bootstrap as {} in /{KIT_TREE}/bootstrap: {}", spec.build_user, args.join(" "));
    let mut command = Command::new(&args[0]);
    command
        .args(&args[1..])
        .current_dir(Path::new("/").join(KIT_TREE).join("bootstrap"))
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdout(log);
    let fsize = spec.max_log_size;
    // SAFETY: only async-signal-safe system calls run between fork and exec.
    unsafe {
        command.pre_exec(move || {
            let limit = libc::rlimit { rlim_cur: fsize, rlim_max: fsize };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            confinement.enter()
        });
    }
    let child = command.spawn().with_context(|| format!("cannot start /{KIT_TREE}/bootstrap/bootstrap"))?;
    let pid = Pid::from_raw(child.id() as i32);
    drop(child);
    let timeout = Duration::from_secs(spec.timeout_secs);
    let Some(status) = reap_until(pid, Instant::now() + timeout) else {
        kill_leftovers();
        eprintln!("===> bootstrap killed after {} s (bootstrap_timeout)", timeout.as_secs());
        return Ok(KitResult::TimedOut { seconds: timeout.as_secs() });
    };
    kill_leftovers();
    match status {
        WaitStatus::Exited(_, 0) => {}
        WaitStatus::Exited(_, code) => {
            return Ok(KitResult::Failed { reason: format!("the bootstrap exited with status {code}") })
        }
        WaitStatus::Signaled(_, signal, _) => {
            return Ok(KitResult::Failed { reason: format!("the bootstrap was killed by {signal}") })
        }
        other => return Ok(KitResult::Failed { reason: format!("the bootstrap ended unexpectedly: {other:?}") }),
    }
    eprintln!("===> bootstrap done; delivering the kit");
    let limit = format!("max_kit_size ({})", crate::config::format_size(spec.max_kit_size));
    let built = Path::new("/work").join(KIT_FILE);
    let outbox = Path::new("/outbox");
    mounts::set_writable(&Real, outbox, true)?;
    let copied = crate::repo::fsutil::copy_untrusted(
        &built,
        user.uid.as_raw(),
        spec.max_kit_size,
        &limit,
        &outbox.join(KIT_FILE),
    );
    mounts::set_writable(&Real, outbox, false)?;
    Ok(match copied {
        Ok(size) => KitResult::Done { size },
        Err(e) => KitResult::Failed { reason: format!("the bootstrap made no usable kit: {e:#}") },
    })
}

/// Reaps every child of PID 1 (orphans included) until `pid` ends, or
/// `None` at the deadline, when every other process of the namespace is
/// killed.
fn reap_until(pid: Pid, deadline: Instant) -> Option<WaitStatus> {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL)) {
            Ok(status) if status.pid() == Some(pid) => return Some(status),
            Ok(WaitStatus::StillAlive) => {}
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return None,
        }
        if Instant::now() >= deadline {
            let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// From PID 1, `kill(-1)` reaches every other process of the namespace.
fn kill_leftovers() {
    let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::__WALL)) {
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bootstrap_is_unprivileged_for_usr_pkg_with_everything_below_it() {
        let args = KitSpec::arguments();
        let joined = args.join(" ");
        assert!(
            joined.starts_with("./bootstrap --prefix /usr/pkg --pkgdbdir /usr/pkg/pkgdb --varbase /usr/pkg/var "),
            "{joined}"
        );
        assert!(args.contains(&"--unprivileged".to_string()));
        assert!(joined.contains("--gzip-binary-kit /work/kit.tgz --mk-fragment /work/mk.conf.fragment"), "{joined}");
    }

    #[test]
    fn results_are_one_tagged_json_line() {
        let line = serde_json::to_string(&KitResult::Done { size: 3 }).unwrap();
        assert_eq!(line, "{\"result\":\"done\",\"size\":3}");
        assert_eq!(serde_json::from_str::<KitResult>(&line).unwrap(), KitResult::Done { size: 3 });
    }
}
