//! The main-process side of the scan sandboxes (see [`super::scan`]): one
//! helper per thread that asks, started on its first query and reused for
//! every later one, so a cold scan pays the namespace and mount setup once
//! per rayon worker, not once per port.
//!
//! A sandbox belongs to the thread that started it: PDEATHSIG fires when the
//! *thread* that spawned a process ends, so a sandbox used by another thread
//! could die under it. The helper runs in its own session (a terminal's
//! Ctrl-C reaches only portsynth). A sandbox that dies or stops answering is
//! killed and dropped; the query fails, and the thread's next query starts a
//! new one. A sandbox that cannot even be set up (a missing build user, a
//! refused mount) fails every later query at once with the same reason.

use std::collections::HashMap;
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::Mutex;
use std::thread::ThreadId;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use nix::poll::{PollFd, PollFlags, PollTimeout};

use super::scan::{ScanReply, ScanRequest, ScanSpec, SCAN_PATH};

/// How long a helper may take to build its root and say it is ready.
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// Beyond the per-query deadline the helper enforces itself: time to kill
/// and reap before the main side gives up on it.
const REPLY_GRACE: Duration = Duration::from_secs(30);
/// How long a closed sandbox may take to exit before it is killed.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);

/// What every scan sandbox of a pool is made of.
#[derive(Debug, Clone)]
pub struct ScanSettings {
    /// The portsynth binary (its hidden `scan-helper` subcommand).
    pub helper: PathBuf,
    /// An empty host directory, the mount point of every sandbox's root.
    pub root: PathBuf,
    pub system_path: PathBuf,
    pub ports_dir: PathBuf,
    pub build_user: String,
    pub make_program: String,
    pub timeout: Duration,
    /// An unpacked bootstrap kit (host directory, prefix) for every sandbox.
    pub kit: Option<(PathBuf, PathBuf)>,
    /// Files written into every sandbox root (see `ScanSpec::files`).
    pub files: Vec<(PathBuf, String)>,
}

/// What one query printed and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MakeOutput {
    pub success: bool,
    /// `exit status: N` or `signal: N`, as `ExitStatus` displays it.
    pub status: String,
    pub stdout: String,
    pub stderr: String,
}

pub struct ScanPool {
    settings: ScanSettings,
    sandboxes: Mutex<HashMap<ThreadId, Sandbox>>,
    broken: Mutex<Option<String>>,
}

impl std::fmt::Debug for ScanPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScanPool").field("settings", &self.settings).finish_non_exhaustive()
    }
}

impl ScanPool {
    pub fn new(settings: ScanSettings) -> ScanPool {
        ScanPool { settings, sandboxes: Mutex::default(), broken: Mutex::default() }
    }

    /// The environment of every sandboxed query: fixed, like the build's,
    /// plus `PORTSDIR` and the config's make variables.
    pub fn environment(&self, make_env: &[(String, String)]) -> Vec<(String, String)> {
        let mut env = super::base_environment(SCAN_PATH, "/tmp");
        env.push(("PORTSDIR".into(), self.settings.ports_dir.to_string_lossy().into_owned()));
        env.extend(make_env.iter().cloned());
        env
    }

    /// Runs one query in this thread's sandbox. `Err` is the reason the
    /// query has no answer (timeout, sandbox failure), ready for a
    /// `ScanError`.
    pub fn query(&self, request: &ScanRequest, what: &str) -> Result<MakeOutput, String> {
        if let Some(reason) = self.broken.lock().expect("scan pool lock").as_ref() {
            return Err(format!("cannot start the scan sandbox: {reason}"));
        }
        let thread = std::thread::current().id();
        let taken = self.sandboxes.lock().expect("scan pool lock").remove(&thread);
        let mut sandbox = match taken {
            Some(sandbox) => sandbox,
            None => match Sandbox::start(&self.settings) {
                Ok(sandbox) => sandbox,
                Err(e) => {
                    let reason = format!("{e:#}");
                    *self.broken.lock().expect("scan pool lock") = Some(reason.clone());
                    return Err(format!("cannot start the scan sandbox: {reason}"));
                }
            },
        };
        match sandbox.ask(request, self.settings.timeout + REPLY_GRACE) {
            Ok(reply) => {
                self.sandboxes.lock().expect("scan pool lock").insert(thread, sandbox);
                match reply {
                    ScanReply::Done { code, signal, stdout, stderr } => {
                        let status = match (code, signal) {
                            (Some(code), _) => format!("exit status: {code}"),
                            (None, Some(signal)) => match nix::sys::signal::Signal::try_from(signal) {
                                Ok(name) => format!("signal: {signal} ({name})"),
                                Err(_) => format!("signal: {signal}"),
                            },
                            (None, None) => "unknown status".into(),
                        };
                        Ok(MakeOutput { success: code == Some(0), status, stdout, stderr })
                    }
                    ScanReply::TimedOut { seconds } => Err(format!("scan timed out after {seconds} s")),
                    ScanReply::Failed { reason } => Err(reason),
                    other => Err(format!("the scan sandbox answered {other:?}")),
                }
            }
            Err(e) => {
                let detail = sandbox.kill();
                Err(format!(
                    "the scan sandbox died while scanning {what}: {e:#}{detail}; the next port gets a new sandbox"
                ))
            }
        }
    }
}

/// One running helper and its pipes.
struct Sandbox {
    child: Child,
    /// `None` once closed: PID 1 then ends its loop and exits.
    stdin: Option<ChildStdin>,
    stdout: ChildStdout,
    stderr: ChildStderr,
    /// Bytes read after the last complete line.
    pending: Vec<u8>,
}

impl Sandbox {
    fn start(settings: &ScanSettings) -> Result<Sandbox> {
        create_mount_point(&settings.root)?;
        let mut command = Command::new(&settings.helper);
        command.arg("scan-helper").stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        // SAFETY: setsid is async-signal-safe.
        unsafe {
            command.pre_exec(|| nix::unistd::setsid().map(drop).map_err(std::io::Error::from));
        }
        let mut child =
            command.spawn().with_context(|| format!("cannot run {} scan-helper", settings.helper.display()))?;
        let mut sandbox = Sandbox {
            stdin: child.stdin.take(),
            stdout: child.stdout.take().expect("piped"),
            stderr: child.stderr.take().expect("piped"),
            child,
            pending: Vec::new(),
        };
        let spec = ScanSpec {
            parent_pid: std::process::id(),
            root: settings.root.clone(),
            system_path: settings.system_path.clone(),
            ports_dir: settings.ports_dir.clone(),
            build_user: settings.build_user.clone(),
            make_program: settings.make_program.clone(),
            timeout_secs: settings.timeout.as_secs(),
            kit: settings.kit.clone(),
            files: settings.files.clone(),
        };
        let result = sandbox.send(&serde_json::to_vec(&spec)?).and_then(|_| sandbox.receive(START_TIMEOUT));
        match result {
            Ok(ScanReply::Ready) => Ok(sandbox),
            Ok(ScanReply::SetupFailed { reason }) => {
                sandbox.kill();
                bail!("{reason}")
            }
            Ok(other) => {
                sandbox.kill();
                bail!("the scan sandbox answered {other:?} instead of getting ready")
            }
            Err(e) => {
                let detail = sandbox.kill();
                Err(e.context(format!("the scan sandbox did not get ready{detail}")))
            }
        }
    }

    fn ask(&mut self, request: &ScanRequest, limit: Duration) -> Result<ScanReply> {
        self.send(&serde_json::to_vec(request)?)?;
        self.receive(limit)
    }

    fn send(&mut self, line: &[u8]) -> Result<()> {
        let mut framed = Vec::with_capacity(line.len() + 1);
        framed.extend_from_slice(line);
        framed.push(b'\n');
        let stdin = self.stdin.as_mut().context("the scan sandbox is closed")?;
        stdin.write_all(&framed).context("writing to the scan sandbox")
    }

    /// One reply line, within `limit`.
    fn receive(&mut self, limit: Duration) -> Result<ScanReply> {
        let deadline = Instant::now() + limit;
        let mut searched = 0;
        let mut buffer = vec![0u8; 65536];
        loop {
            if let Some(end) = self.pending[searched..].iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.pending.drain(..=searched + end).collect();
                return serde_json::from_slice(&line).context("unreadable reply from the scan sandbox");
            }
            searched = self.pending.len();
            let now = Instant::now();
            if now >= deadline {
                bail!("no answer within {} s", limit.as_secs());
            }
            let wait = PollTimeout::try_from(deadline - now).unwrap_or(PollTimeout::MAX);
            let mut fds = [PollFd::new(self.stdout.as_fd(), PollFlags::POLLIN)];
            match nix::poll::poll(&mut fds, wait) {
                Ok(0) | Err(nix::errno::Errno::EINTR) => continue,
                Ok(_) => {}
                Err(e) => return Err(e).context("poll"),
            }
            match nix::unistd::read(&self.stdout, &mut buffer) {
                Ok(0) => bail!("it ended without a reply"),
                Ok(n) => self.pending.extend_from_slice(&buffer[..n]),
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(e).context("reading from the scan sandbox"),
            }
        }
    }

    /// Kills the helper (PID 1 and the namespace follow) and says how it
    /// ended, with the last of its error output.
    fn kill(&mut self) -> String {
        let _ = self.child.kill();
        let status = self.child.wait().map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
        let _ = nix::fcntl::fcntl(&self.stderr, nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK));
        let mut errors = vec![0u8; 4096];
        let n = nix::unistd::read(&self.stderr, &mut errors).unwrap_or(0);
        let text = String::from_utf8_lossy(&errors[..n]).lines().map(str::trim).collect::<Vec<_>>().join(" | ");
        if text.is_empty() {
            format!(" ({status})")
        } else {
            format!(" ({status}: {text})")
        }
    }
}

impl Sandbox {
    /// Closes the request pipe: PID 1 sees EOF and exits, the helper reaps
    /// it and exits too. Ending this way, rather than by a kill, accounts
    /// every bmake's CPU time to portsynth's children.
    fn close_input(&mut self) {
        self.stdin = None;
    }

    /// Waits for the helper to end by itself until `deadline`, then kills it.
    fn finish(&mut self, deadline: Instant) {
        let mut buffer = [0u8; 4096];
        loop {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let wait = PollTimeout::try_from(deadline - now).unwrap_or(PollTimeout::MAX);
            let mut fds = [PollFd::new(self.stdout.as_fd(), PollFlags::POLLIN)];
            match nix::poll::poll(&mut fds, wait) {
                Ok(0) => break,
                Ok(_) => match nix::unistd::read(&self.stdout, &mut buffer) {
                    Ok(0) => break,
                    Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                    Err(_) => break,
                },
                Err(nix::errno::Errno::EINTR) => {}
                Err(_) => break,
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.close_input();
            self.finish(Instant::now() + SHUTDOWN_TIMEOUT);
        }
    }
}

impl Drop for ScanPool {
    /// All sandboxes are told to end at once, then waited for.
    fn drop(&mut self) {
        let mut sandboxes: Vec<Sandbox> =
            std::mem::take(&mut *self.sandboxes.lock().unwrap_or_else(|e| e.into_inner())).into_values().collect();
        for sandbox in &mut sandboxes {
            sandbox.close_input();
        }
        let deadline = Instant::now() + SHUTDOWN_TIMEOUT;
        for sandbox in &mut sandboxes {
            sandbox.finish(deadline);
        }
    }
}

/// The binary that serves `scan-helper`: the running one, except in a
/// program Cargo built next to the `portsynth` binary that links the library
/// (an integration test calling `commands::prepare`, in
/// `target/<profile>/deps/`), which uses `target/<profile>/portsynth`.
pub fn helper_binary() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find the portsynth binary to run the scan sandbox")?;
    let dir = exe.parent().filter(|d| d.file_name().is_some_and(|n| n == "deps"));
    if let Some(sibling) = dir.and_then(Path::parent).map(|p| p.join("portsynth")).filter(|p| p.is_file()) {
        if exe.file_name().is_some_and(|n| n != "portsynth") {
            return Ok(sibling);
        }
    }
    Ok(exe)
}

/// The mount point: a plain directory, empty on the host (every mount on it
/// lives in a sandbox's own namespace).
fn create_mount_point(root: &Path) -> Result<()> {
    std::fs::create_dir_all(root).with_context(|| format!("cannot create {}", root.display()))
}
