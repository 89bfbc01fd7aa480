//! Scan sandboxes: the metadata queries (`bmake -V …`) run in a re-exec of
//! the binary (`portsynth scan-helper`, hidden) that serves many queries,
//! each in a fresh confined bmake.
//!
//! ```text
//! main process (ScanPool, one per thread)   helper                   PID 1 of the new PID namespace
//!   spawn helper, spec line on stdin ─────▶ PDEATHSIG, unshare ─fork─▶ mounts, pivot_root, "ready"
//!   request line ─────────────────────────────────────────────────────▶ fork confined bmake, capture
//!   ◀──────────────────────────────────────────────────────── reply line (deadline, kill leftovers)
//! ```
//!
//! The helper unshares mount, PID, IPC, UTS and network namespaces (the
//! network namespace has not even a loopback interface up). PID 1 builds a
//! minimal root ([`mounts::setup_scan_root`]: system directories and the
//! ports tree read-only, the tree at its own host path; a private `/tmp`,
//! `/dev` and `/proc`), then answers one JSON line per request line on its
//! stdin until EOF. Every bmake goes through [`Confinement::enter`] as the
//! build user, with stdin `/dev/null` and both outputs captured (at most
//! [`MAX_OUTPUT`] each). When the per-port deadline passes, PID 1 kills
//! every other process of the namespace (`kill(-1, SIGKILL)`) and answers
//! [`ScanReply::TimedOut`]; after every query it kills whatever is left.
//!
//! When portsynth dies, the helper dies by PDEATHSIG, PID 1 by PDEATHSIG
//! (its parent is the helper), and with PID 1 the kernel kills the whole
//! namespace; the mounts only ever existed in the helper's namespace.

use std::io::{BufRead, Write};
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::poll::{PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{Pid, User};
use serde::{Deserialize, Serialize};

use super::confine::Confinement;
use super::mounts::{self, classify_system_dir, Real, ScanLayout, SystemEntry, SYSTEM_DIRS};

/// `PATH` of every query (the build's), also where `make_program` is looked
/// up once, so each query execs it directly.
pub const SCAN_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// At most this much of each of bmake's stdout and stderr is kept.
pub const MAX_OUTPUT: usize = 1 << 20;

/// The first line on the helper's stdin.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScanSpec {
    /// The process that must stay alive (PDEATHSIG race check).
    pub parent_pid: u32,
    /// The mount point of the sandbox root (an empty host directory).
    pub root: PathBuf,
    pub system_path: PathBuf,
    /// Absolute; bound read-only at the same path inside.
    pub ports_dir: PathBuf,
    pub build_user: String,
    pub make_program: String,
    /// The per-query deadline (`scan_timeout`).
    pub timeout_secs: u64,
    /// An unpacked bootstrap kit (host directory, prefix), bound read-only
    /// at its prefix (pkgsrc).
    #[serde(default)]
    pub kit: Option<(PathBuf, PathBuf)>,
    /// Files PID 1 writes into the sandbox root (root-owned, read-only to
    /// the queries), e.g. a pkgsrc `MAKECONF` with the config's `mk_conf`.
    #[serde(default)]
    pub files: Vec<(PathBuf, String)>,
}

/// One query: run `make_program args…` in `dir` with exactly `env`
/// (plus `FLAVOR` when given).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScanRequest {
    pub dir: PathBuf,
    pub flavor: Option<String>,
    pub args: Vec<String>,
    pub env: Vec<(String, String)>,
}

/// One line from the helper: `Ready` or `SetupFailed` first, then one reply
/// per request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reply", rename_all = "snake_case")]
pub enum ScanReply {
    Ready,
    SetupFailed {
        reason: String,
    },
    /// bmake ended; `code` or `signal` says how.
    Done {
        code: Option<i32>,
        signal: Option<i32>,
        stdout: String,
        stderr: String,
    },
    TimedOut {
        seconds: u64,
    },
    /// bmake could not even be started.
    Failed {
        reason: String,
    },
}

/// Entry point of the hidden subcommand. Never returns.
pub fn main() -> ! {
    let code = match run() {
        Ok(code) => code,
        Err(error) => {
            let reason = format!("{error:#}");
            eprintln!("portsynth scan sandbox: {reason}");
            let _ = reply(&mut std::io::stdout().lock(), &ScanReply::SetupFailed { reason });
            2
        }
    };
    std::process::exit(code)
}

fn run() -> Result<i32> {
    let mut input = std::io::stdin().lock();
    let mut line = String::new();
    input.read_line(&mut line).context("reading the scan sandbox spec")?;
    let spec: ScanSpec = serde_json::from_str(&line).context("reading the scan sandbox spec")?;
    super::start_pid1(spec.parent_pid, super::ISOLATED, move || {
        let mut output = std::io::stdout().lock();
        match pid1(&spec, &mut input, &mut output) {
            Ok(()) => 0,
            Err(error) => {
                let reason = format!("{error:#}");
                eprintln!("portsynth scan sandbox: {reason}");
                let _ = reply(&mut output, &ScanReply::SetupFailed { reason });
                2
            }
        }
    })
}

fn reply(output: &mut impl Write, reply: &ScanReply) -> Result<()> {
    let mut line = serde_json::to_vec(reply)?;
    line.push(b'\n');
    output.write_all(&line)?;
    output.flush()?;
    Ok(())
}

/// A file of the (pivoted) root, written by PID 1: mode 0644, its
/// directories 0755, all root's, so no query can change it.
fn write_root_file(path: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if !path.is_absolute() || path.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
        bail!("{} is not a plain absolute path", path.display());
    }
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .with_context(|| format!("mkdir {}", dir.display()))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o644)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(text.as_bytes()).with_context(|| format!("cannot write {}", path.display()))
}

/// PID 1: build the root, then answer requests until stdin closes.
fn pid1(spec: &ScanSpec, input: &mut impl BufRead, output: &mut impl Write) -> Result<()> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).context("PR_SET_PDEATHSIG in PID 1")?;
    let _ = nix::unistd::sethostname("portsynth-scan");
    let system: Vec<(&str, SystemEntry)> =
        SYSTEM_DIRS.iter().map(|d| (*d, classify_system_dir(&spec.system_path.join(d)))).collect();
    let kit = spec.kit.as_ref().map(|(host, prefix)| {
        let split = mounts::split_entries(&spec.system_path, prefix);
        mounts::KitMount { host: host.clone(), prefix: prefix.clone(), split }
    });
    let layout = ScanLayout {
        root: spec.root.clone(),
        system_path: spec.system_path.clone(),
        ports_dir: spec.ports_dir.clone(),
        kit,
    };
    mounts::setup_scan_root(&Real, &layout, &system).context("building the scan sandbox root")?;
    for (path, text) in &spec.files {
        write_root_file(path, text)?;
    }
    let user = User::from_name(&spec.build_user)?
        .with_context(|| format!("build user '{}' does not exist in the sandbox's /etc/passwd", spec.build_user))?;
    if user.uid.is_root() {
        bail!("build user '{}' is root; port code never runs with privilege", spec.build_user);
    }
    let mut confinement = Confinement::new(user.uid.as_raw(), user.gid.as_raw())?;
    // From here on PID 1 only forks, polls, kills and reaps: the filters go
    // on PID 1 itself, once, and every bmake inherits them.
    confinement.apply_to_spawner().context("confining PID 1")?;
    let timeout = Duration::from_secs(spec.timeout_secs);
    let program = find_program(&spec.make_program);
    // The stack of every spawned child until it execs (see `spawn`).
    let mut stack = vec![0u8; 256 * 1024];
    reply(output, &ScanReply::Ready)?;
    let mut line = String::new();
    loop {
        line.clear();
        if input.read_line(&mut line).context("reading a scan request")? == 0 {
            return Ok(());
        }
        let answer = match serde_json::from_str::<ScanRequest>(&line) {
            Ok(request) => query(&program, &confinement, &mut stack, &request, timeout),
            Err(e) => ScanReply::Failed { reason: format!("unreadable scan request: {e}") },
        };
        reply(output, &answer)?;
    }
}

/// `name` itself if it has a slash, else its first executable match in
/// [`SCAN_PATH`] (so a query does not try every directory with `execve`),
/// else `name` (whose spawn then fails with a clear error).
fn find_program(name: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    if name.contains('/') {
        return PathBuf::from(name);
    }
    SCAN_PATH
        .split(':')
        .map(|dir| Path::new(dir).join(name))
        .find(|path| std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
        .unwrap_or_else(|| PathBuf::from(name))
}

/// Runs one confined bmake and collects what it prints, within `timeout`.
fn query(
    program: &Path,
    confinement: &Confinement,
    stack: &mut [u8],
    request: &ScanRequest,
    timeout: Duration,
) -> ScanReply {
    let deadline = Instant::now() + timeout;
    let mut args = vec![program.as_os_str().to_owned()];
    args.extend(request.args.iter().map(Into::into));
    let mut env: Vec<std::ffi::OsString> = request.env.iter().map(|(k, v)| format!("{k}={v}").into()).collect();
    if let Some(flavor) = &request.flavor {
        env.push(format!("FLAVOR={flavor}").into());
    }
    let answer = match spawn(program, &args, &env, &request.dir, confinement, stack) {
        Ok((pid, stdout, stderr)) => collect(pid, stdout, stderr, deadline, timeout),
        Err(e) => ScanReply::Failed { reason: format!("cannot run {}: {e}", program.display()) },
    };
    kill_leftovers();
    answer
}

/// What the child of [`spawn`] needs, prepared before the clone: the child
/// shares PID 1's memory until it execs, so it must not allocate.
struct ChildSetup<'a> {
    program: &'a std::ffi::CStr,
    argv: &'a [*const libc::c_char],
    envp: &'a [*const libc::c_char],
    dir: &'a std::ffi::CStr,
    stdio: [libc::c_int; 3],
    error: libc::c_int,
    confinement: &'a Confinement,
}

/// Starts `program` confined, with stdin `/dev/null` and stdout and stderr
/// on new pipes, in `dir`. `clone(CLONE_VM | CLONE_VFORK)` as
/// `posix_spawn` does, not `fork`: a forked child's exec had to tear down
/// its copy of PID 1's address space, which was the largest cost of a scan
/// query after bmake itself. PID 1 waits until the child has exec'd (or
/// failed, reporting `errno` on a close-on-exec pipe).
fn spawn(
    program: &Path,
    args: &[std::ffi::OsString],
    env: &[std::ffi::OsString],
    dir: &Path,
    confinement: &Confinement,
    stack: &mut [u8],
) -> std::io::Result<(Pid, OwnedFd, OwnedFd)> {
    use std::ffi::CString;
    use std::os::fd::AsRawFd;
    use std::os::unix::ffi::OsStrExt;
    let c = |s: &std::ffi::OsStr| CString::new(s.as_bytes()).map_err(std::io::Error::other);
    let program_c = c(program.as_os_str())?;
    let dir_c = c(dir.as_os_str())?;
    let args_c = args.iter().map(|a| c(a)).collect::<std::io::Result<Vec<_>>>()?;
    let env_c = env.iter().map(|e| c(e)).collect::<std::io::Result<Vec<_>>>()?;
    let argv: Vec<*const libc::c_char> = args_c.iter().map(|a| a.as_ptr()).chain([std::ptr::null()]).collect();
    let envp: Vec<*const libc::c_char> = env_c.iter().map(|e| e.as_ptr()).chain([std::ptr::null()]).collect();
    let null = std::fs::File::open("/dev/null")?;
    let (stdout_read, stdout_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let (stderr_read, stderr_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let (error_read, error_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let setup = ChildSetup {
        program: &program_c,
        argv: &argv,
        envp: &envp,
        dir: &dir_c,
        stdio: [null.as_raw_fd(), stdout_write.as_raw_fd(), stderr_write.as_raw_fd()],
        error: error_write.as_raw_fd(),
        confinement,
    };
    // The stack grows down; keep the top 16-byte aligned.
    let top = unsafe { stack.as_mut_ptr().add(stack.len()) } as usize & !15;
    // SAFETY: `child` only issues system calls on data that outlives the
    // call (PID 1 is suspended until the child execs or exits: CLONE_VFORK).
    let pid = unsafe {
        libc::clone(
            child,
            top as *mut libc::c_void,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            &setup as *const ChildSetup as *mut libc::c_void,
        )
    };
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let pid = Pid::from_raw(pid);
    drop((null, stdout_write, stderr_write, error_write));
    let mut errno = [0u8; 4];
    let failed = loop {
        match nix::unistd::read(&error_read, &mut errno) {
            Err(nix::errno::Errno::EINTR) => continue,
            Ok(4) => break true,
            _ => break false,
        }
    };
    if failed {
        let _ = waitpid(pid, None);
        return Err(std::io::Error::from_raw_os_error(i32::from_ne_bytes(errno)));
    }
    Ok((pid, stdout_read, stderr_read))
}

/// The child of [`spawn`]: system calls only, then `execve` or `_exit`.
extern "C" fn child(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `arg` is the `ChildSetup` of `spawn`, alive while PID 1 waits.
    let setup = unsafe { &*(arg as *const ChildSetup) };
    let fail = |errno: i32| -> ! {
        unsafe {
            libc::write(setup.error, &errno as *const i32 as *const libc::c_void, 4);
            libc::_exit(127)
        }
    };
    let errno = || std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EINVAL);
    unsafe {
        for (fd, target) in setup.stdio.iter().zip(0..) {
            if libc::dup2(*fd, target) < 0 {
                fail(errno());
            }
        }
        if libc::chdir(setup.dir.as_ptr()) < 0 {
            fail(errno());
        }
        // The Rust runtime ignores SIGPIPE; bmake gets the default back.
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    if let Err(e) = setup.confinement.enter() {
        fail(e.raw_os_error().unwrap_or(libc::EPERM));
    }
    unsafe { libc::execve(setup.program.as_ptr(), setup.argv.as_ptr(), setup.envp.as_ptr()) };
    fail(errno())
}

/// Reads both pipes until bmake exits (its pidfd turns readable) or the
/// deadline passes. A process bmake left behind may hold the pipes open:
/// once bmake itself is gone, what is buffered is read and the rest is
/// [`kill_leftovers`]' business.
fn collect(pid: Pid, stdout: OwnedFd, stderr: OwnedFd, deadline: Instant, timeout: Duration) -> ScanReply {
    let mut pipes = [Capture::new(Some(stdout)), Capture::new(Some(stderr))];
    let pidfd = pidfd_open(pid);
    let mut exited = false;
    while !exited {
        if pidfd.is_none() && pipes.iter().all(|p| p.fd.is_none()) {
            break;
        }
        let now = Instant::now();
        if now >= deadline {
            let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
            let _ = waitpid(pid, None);
            return ScanReply::TimedOut { seconds: timeout.as_secs() };
        }
        let mut fds: Vec<PollFd> = Vec::with_capacity(3);
        let mut owners = Vec::with_capacity(3);
        for (i, pipe) in pipes.iter().enumerate() {
            if let Some(fd) = &pipe.fd {
                fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
                owners.push(Some(i));
            }
        }
        if let Some(fd) = &pidfd {
            fds.push(PollFd::new(fd.as_fd(), PollFlags::POLLIN));
            owners.push(None);
        }
        let wait = PollTimeout::try_from(deadline - now).unwrap_or(PollTimeout::MAX);
        match nix::poll::poll(&mut fds, wait) {
            Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
            Ok(_) => {}
            Err(_) => break,
        }
        let ready: Vec<bool> = fds.iter().map(|f| f.revents().is_some_and(|r| !r.is_empty())).collect();
        drop(fds);
        for (owner, ready) in owners.into_iter().zip(ready) {
            match (owner, ready) {
                (Some(i), true) => pipes[i].read_available(),
                (None, true) => exited = true,
                _ => {}
            }
        }
    }
    for pipe in &mut pipes {
        pipe.read_available();
    }
    let status = loop {
        match waitpid(pid, None) {
            Err(nix::errno::Errno::EINTR) => continue,
            other => break other,
        }
    };
    let (code, signal) = match status {
        Ok(WaitStatus::Exited(_, code)) => (Some(code), None),
        Ok(WaitStatus::Signaled(_, signal, _)) => (None, Some(signal as i32)),
        _ => (None, None),
    };
    let [stdout, stderr] = pipes;
    ScanReply::Done { code, signal, stdout: stdout.text(), stderr: stderr.text() }
}

/// One output pipe, non-blocking, and what was read from it (bounded).
struct Capture {
    fd: Option<OwnedFd>,
    data: Vec<u8>,
    dropped: usize,
}

impl Capture {
    fn new(fd: Option<OwnedFd>) -> Capture {
        if let Some(fd) = &fd {
            let _ = nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK));
        }
        Capture { fd, data: Vec::new(), dropped: 0 }
    }

    /// Reads until the pipe would block (or at most a few MiB, so a writer
    /// that never stops cannot keep PID 1 here); EOF closes it.
    fn read_available(&mut self) {
        let Some(fd) = &self.fd else { return };
        let mut buffer = [0u8; 16384];
        let mut budget = 4 * MAX_OUTPUT;
        loop {
            match nix::unistd::read(fd, &mut buffer) {
                Ok(0) => break,
                Ok(n) => {
                    let keep = n.min(MAX_OUTPUT - self.data.len());
                    self.data.extend_from_slice(&buffer[..keep]);
                    self.dropped += n - keep;
                    budget = budget.saturating_sub(n);
                    if budget == 0 {
                        return;
                    }
                }
                Err(nix::errno::Errno::EINTR) => continue,
                Err(nix::errno::Errno::EAGAIN) => return,
                Err(_) => break,
            }
        }
        self.fd = None;
    }

    fn text(self) -> String {
        let mut text = String::from_utf8_lossy(&self.data).into_owned();
        if self.dropped > 0 {
            text.push_str(&format!("\n[{} more bytes not kept]", self.dropped));
        }
        text
    }
}

fn pidfd_open(pid: Pid) -> Option<OwnedFd> {
    // SAFETY: a plain system call; a valid descriptor is owned by us.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid.as_raw(), 0) };
    (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

/// From PID 1, `kill(-1)` reaches every other process of the namespace.
/// Every process of the namespace descends from PID 1 (orphans are
/// reparented to it), so when PID 1 has no child at all nothing is left and
/// the kill, which walks every process of the machine, is skipped.
fn kill_leftovers() {
    if waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG | WaitPidFlag::__WALL)) == Err(nix::errno::Errno::ECHILD) {
        return;
    }
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
    fn output_beyond_the_limit_is_counted_not_kept() {
        let (read, write) = nix::unistd::pipe().unwrap();
        let mut capture = Capture::new(Some(read));
        let chunk = vec![b'x'; 60000];
        let mut written = 0;
        while written < MAX_OUTPUT + 100_000 {
            written += nix::unistd::write(&write, &chunk).unwrap();
            capture.read_available();
        }
        drop(write);
        capture.read_available();
        assert!(capture.fd.is_none(), "EOF closes the pipe");
        assert_eq!(capture.data.len(), MAX_OUTPUT);
        let text = capture.text();
        assert!(
            text.ends_with(&format!("[{} more bytes not kept]", written - MAX_OUTPUT)),
            "{}",
            &text[text.len() - 40..]
        );
    }

    #[test]
    fn replies_are_one_tagged_json_object_per_line() {
        let done = ScanReply::Done { code: Some(0), signal: None, stdout: "a\nb\n".into(), stderr: String::new() };
        let line = serde_json::to_string(&done).unwrap();
        assert!(!line.contains('\n') && line.starts_with("{\"reply\":\"done\""), "{line}");
        assert_eq!(serde_json::from_str::<ScanReply>(&line).unwrap(), done);
        let timed_out = serde_json::to_string(&ScanReply::TimedOut { seconds: 2 }).unwrap();
        assert_eq!(timed_out, "{\"reply\":\"timed_out\",\"seconds\":2}");
    }

    #[test]
    fn the_make_program_is_looked_up_once_in_the_scan_path() {
        assert_eq!(find_program("/opt/x/bmake"), Path::new("/opt/x/bmake"));
        let sh = find_program("sh");
        assert!(sh.is_absolute() && sh.ends_with("sh"), "{}", sh.display());
        assert_eq!(find_program("no-such-make-program"), Path::new("no-such-make-program"));
    }
}
