//! The helper process (`portsynth sandbox-helper`): single-threaded by
//! construction, it is the only code that unshares, forks without exec,
//! mounts and changes credentials.
//!
//! PID 1 of the new PID namespace is its child. PID 1 is also the reaper:
//! while a phase runs it collects every process that dies in the namespace,
//! and after each phase it kills whatever the phase left running (a daemon
//! forked by a build), so the next phase and the next port start clean.

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use nix::sched::CloneFlags;
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{Pid, User};

use super::confine::Confinement;
use super::download::{self, Fetcher};
use super::mounts::{self, classify_system_dir, Real, SystemEntry, SYSTEM_DIRS};
use super::work_area::Fill;
use super::{DependencyInstall, Event, HelperSpec, EVENT_FD};
use crate::ports::Phase;

/// Exit codes of the helper, read by the runner.
pub const EXIT_OK: i32 = 0;
pub const EXIT_PHASE_FAILED: i32 = 1;
pub const EXIT_SETUP_FAILED: i32 = 2;

/// Entry point of the hidden subcommand. Never returns.
pub fn main() -> ! {
    let code = match run() {
        Ok(code) => code,
        Err(error) => {
            eprintln!("portsynth sandbox: {error:#}");
            EXIT_SETUP_FAILED
        }
    };
    std::process::exit(code)
}

fn run() -> Result<i32> {
    let spec: HelperSpec = serde_json::from_reader(std::io::stdin().lock()).context("reading the sandbox spec")?;
    // SAFETY: fd 3 was set up by the runner for this process alone.
    let events = unsafe { OwnedFd::from_raw_fd(EVENT_FD) };
    nix::fcntl::fcntl(&events, nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC))?;
    let mut events = std::fs::File::from(events);
    let namespaces =
        CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWUTS;
    super::start_pid1(spec.parent_pid, namespaces, move || match pid1(&spec, &mut events) {
        Ok(code) => code,
        Err(error) => {
            let reason = format!("{error:#}");
            eprintln!("portsynth sandbox: {reason}");
            send(&mut events, &Event::SetupFailed { reason });
            EXIT_SETUP_FAILED
        }
    })
}

fn send(events: &mut std::fs::File, event: &Event) {
    if let Ok(mut line) = serde_json::to_vec(event) {
        line.push(b'\n');
        let _ = events.write_all(&line);
    }
}

/// PID 1: build the root, install dependencies, run the phases.
fn pid1(spec: &HelperSpec, events: &mut std::fs::File) -> Result<i32> {
    nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).context("PR_SET_PDEATHSIG in PID 1")?;
    let _ = nix::unistd::sethostname(format!("portsynth-sl{:02}", spec.slot));
    let system: Vec<(&str, SystemEntry)> =
        SYSTEM_DIRS.iter().map(|d| (*d, classify_system_dir(&spec.system_path.join(d)))).collect();
    mounts::setup_root(&Real, &spec.layout(), &system).context("building the sandbox root")?;
    let user = User::from_name(&spec.build_user)?
        .with_context(|| format!("build user '{}' does not exist in the sandbox's /etc/passwd", spec.build_user))?;
    if user.uid.is_root() {
        bail!("build user '{}' is root; port code never runs with privilege", spec.build_user);
    }
    let confinement = Confinement::new(user.uid.as_raw(), user.gid.as_raw())?;
    if let Some((_, prefix)) = &spec.kit {
        copy_kit(Path::new(mounts::KIT_COPY), prefix, &user).context("copying the bootstrap kit into LOCALBASE")?;
    }
    if let Some((path, text)) = &spec.mk_conf {
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    let null = std::fs::File::open("/dev/null").context("/dev/null")?;
    nix::unistd::dup2_stdin(&null)?;
    let env = spec.make_environment();
    for &phase in &spec.phases {
        send(events, &Event::PhaseStart { phase });
        let result = match phase {
            Phase::Depends => install_dependencies(spec, events, &env, &confinement)
                .and_then(|_| run_phase(spec, phase, &env, &confinement)),
            Phase::Fetch => fetch_phase(spec, &env, &confinement),
            // Delivery belongs to the phase: a package that cannot be
            // delivered fails it, with the reason.
            Phase::Package => run_phase(spec, phase, &env, &confinement)
                .and_then(|_| test_install(spec, &env, &confinement))
                .and_then(|_| while_writable("/outbox", || deliver_package(spec, &user, events))?),
            _ => run_phase(spec, phase, &env, &confinement),
        };
        let ok = result.is_ok();
        let work = Fill::of(Path::new(HelperSpec::CONSTRUCTION));
        send(events, &Event::PhaseEnd { phase, ok, detail: result.err().map(|e| format!("{e:#}")), work });
        if !ok {
            if spec.keep_work {
                while_writable("/outbox", archive_work_area)?;
            }
            return Ok(EXIT_PHASE_FAILED);
        }
    }
    Ok(EXIT_OK)
}

/// Installs every dependency package, in order: by portsynth's installer,
/// or (pkgsrc) by the framework's command run unprivileged.
fn install_dependencies(
    spec: &HelperSpec,
    events: &mut std::fs::File,
    env: &[(String, String)],
    confinement: &Confinement,
) -> Result<()> {
    let framework = spec.framework.framework();
    for dep in &spec.dependencies {
        let path = Path::new("/packages/All").join(&dep.file);
        let installed = match framework.install_command(&path) {
            None => crate::repo::package::install(&path, Path::new("/"), &dep.policy).map(drop),
            Some(argv) => verify_dependency(framework, &path, dep)
                .and_then(|_| run_confined(&argv, Path::new("/tmp"), env, confinement)),
        };
        if let Err(e) = installed {
            println!("===> refused dependency {}: {e:#}", dep.file);
            return Err(e.context(format!("cannot install dependency package {}", dep.file)));
        }
        println!("===> installed dependency {}", dep.file);
        send(events, &Event::Installed { package: dep.file.clone() });
    }
    Ok(())
}

/// Checks a dependency package in full before the framework's installer
/// (which runs its scripts) sees it: a package of the repository is data
/// like any other.
fn verify_dependency(framework: &dyn crate::framework::Framework, path: &Path, dep: &DependencyInstall) -> Result<()> {
    let format = framework.package_format();
    let pkgname = dep.file.strip_suffix(&format!(".{}", format.extension())).unwrap_or(&dep.file);
    format.verify(path, pkgname, &dep.policy)
}

/// The make target of `phase`, if the framework has one for it.
fn run_phase(spec: &HelperSpec, phase: Phase, env: &[(String, String)], confinement: &Confinement) -> Result<()> {
    match spec.framework.framework().phase_target(phase) {
        Some(target) => run_make(spec, target, env, confinement),
        None => Ok(()),
    }
}

/// Installs the new package once into its own sandbox, where the framework
/// asks for it: a package that does not install is a failed package phase.
fn test_install(spec: &HelperSpec, env: &[(String, String)], confinement: &Confinement) -> Result<()> {
    let framework = spec.framework.framework();
    if !framework.test_install(spec.bootstrap_pkg) {
        return Ok(());
    }
    let built = built_package(spec);
    let Some(argv) = framework.install_command(&built) else { return Ok(()) };
    println!("===> test install of {}", built.display());
    run_confined(&argv, Path::new("/tmp"), env, confinement).context("the new package does not install")
}

/// Where the framework's `package` target leaves the package.
fn built_package(spec: &HelperSpec) -> std::path::PathBuf {
    Path::new(HelperSpec::PACKAGES).join("All").join(spec.framework.framework().package_file(&spec.pkgname))
}

/// Copies the kit (read-only at `from`) into the LOCALBASE tmpfs `to`, all
/// of it owned by the build user: the build installs its dependencies
/// there and pkgsrc's unprivileged mode writes its package database.
fn copy_kit(from: &Path, to: &Path, user: &User) -> Result<()> {
    use std::os::unix::fs::{lchown, PermissionsExt};
    let (uid, gid) = (Some(user.uid.as_raw()), Some(user.gid.as_raw()));
    lchown(to, uid, gid).with_context(|| format!("chown {}", to.display()))?;
    for entry in std::fs::read_dir(from).with_context(|| format!("reading {}", from.display()))? {
        let entry = entry?;
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        let meta = std::fs::symlink_metadata(&source)?;
        let kind = meta.file_type();
        if kind.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&source)?, &target)?;
            lchown(&target, uid, gid)?;
        } else if kind.is_dir() {
            std::fs::create_dir(&target)?;
            copy_kit(&source, &target, user)?;
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(meta.permissions().mode() & 0o777))?;
        } else if kind.is_file() {
            std::fs::copy(&source, &target).with_context(|| format!("copying {}", source.display()))?;
            lchown(&target, uid, gid)?;
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(meta.permissions().mode() & 0o777))?;
        }
    }
    Ok(())
}

/// Runs `write` with the bind at `path` writable; only PID 1 runs then
/// (every phase's processes were killed when it ended).
fn while_writable<T>(path: &str, write: impl FnOnce() -> T) -> Result<T> {
    mounts::set_writable(&Real, Path::new(path), true)?;
    let result = write();
    mounts::set_writable(&Real, Path::new(path), false)?;
    Ok(result)
}

/// The fetch phase: the framework lists, portsynth downloads (see
/// [`super::download`]).
fn fetch_phase(spec: &HelperSpec, env: &[(String, String)], confinement: &Confinement) -> Result<()> {
    let framework = spec.framework.framework();
    let list = make_output(spec, framework.fetch_list_args(&spec.variant), "fetch-list", env, confinement)?;
    let wanted = framework.parse_fetch_list(&list, Path::new(SANDBOX_TREE))?;
    let fetcher = Fetcher {
        port_dir: &spec.port_dir,
        confinement,
        local_hosts: &spec.fetch_local_hosts,
        mirrors: &spec.distfile_mirrors,
        upstream: spec.fetch_upstream,
    };
    let result = while_writable(download::DISTFILES, || fetcher.fetch_all(&wanted))?;
    kill_leftovers();
    result
}

/// Where the ports tree is in a build sandbox.
const SANDBOX_TREE: &str = "/xports";

/// A make command (`args`), run unprivileged and without network (see
/// [`Confinement`]).
fn make_command(spec: &HelperSpec, args: Vec<String>, env: &[(String, String)], confinement: &Confinement) -> Command {
    let mut command = confined_command(&spec.make_program, env, confinement);
    command.args(args).current_dir(Path::new(SANDBOX_TREE).join(&spec.port_dir));
    command
}

/// `program` as the build user, without network, in a clean environment.
fn confined_command(program: &str, env: &[(String, String)], confinement: &Confinement) -> Command {
    let mut command = Command::new(program);
    command.env_clear().envs(env.iter().map(|(k, v)| (k, v)));
    let confinement = confinement.clone();
    // SAFETY: only async-signal-safe system calls run between fork and exec.
    unsafe {
        command.pre_exec(move || {
            nix::sched::unshare(CloneFlags::CLONE_NEWNET)?;
            confinement.enter()
        });
    }
    command
}

/// Runs one make target as a child, reaping every process of the namespace
/// while it runs and killing whatever it leaves behind.
fn run_make(spec: &HelperSpec, target: &str, env: &[(String, String)], confinement: &Confinement) -> Result<()> {
    let child = make_command(spec, spec.framework.framework().make_args(target, &spec.variant), env, confinement)
        .spawn()
        .with_context(|| format!("cannot start {}", spec.make_program))?;
    finish(&format!("{} {target}", spec.make_program), child)
}

/// Runs `argv` as [`run_make`] runs a target, in `dir`.
fn run_confined(argv: &[String], dir: &Path, env: &[(String, String)], confinement: &Confinement) -> Result<()> {
    let (program, args) = argv.split_first().context("an empty command")?;
    let child = confined_command(program, env, confinement)
        .args(args)
        .current_dir(dir)
        .spawn()
        .with_context(|| format!("cannot start {program}"))?;
    finish(&argv.join(" "), child)
}

/// Like [`run_make`] with `args` (`what` names them in errors), returning
/// what make printed (at most 1 MiB).
fn make_output(
    spec: &HelperSpec,
    args: Vec<String>,
    what: &str,
    env: &[(String, String)],
    confinement: &Confinement,
) -> Result<String> {
    let mut child = make_command(spec, args, env, confinement)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", spec.make_program))?;
    let mut output = Vec::new();
    let read = child.stdout.take().expect("piped").take(download::MAX_LIST).read_to_end(&mut output);
    finish(&format!("{} {what}", spec.make_program), child)?;
    read.with_context(|| format!("reading the output of {} {what}", spec.make_program))?;
    String::from_utf8(output)
        .with_context(|| format!("{} {what} printed something that is not UTF-8", spec.make_program))
}

/// Waits for the command `what` (as the messages name it) and kills what it
/// left behind.
fn finish(what: &str, child: std::process::Child) -> Result<()> {
    let pid = Pid::from_raw(child.id() as i32);
    drop(child);
    let status = reap_until(pid)?;
    kill_leftovers();
    match status {
        WaitStatus::Exited(_, 0) => Ok(()),
        WaitStatus::Exited(_, code) => bail!("{what} exited with status {code}"),
        WaitStatus::Signaled(_, signal, _) => bail!("{what} killed by {signal}"),
        other => bail!("{what} ended unexpectedly: {other:?}"),
    }
}

/// Reaps any child of PID 1 until `pid` itself has ended.
fn reap_until(pid: Pid) -> Result<WaitStatus> {
    loop {
        match waitpid(Pid::from_raw(-1), None) {
            Ok(status) if status.pid() == Some(pid) => return Ok(status),
            Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => bail!("waiting for the phase: {e}"),
        }
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

/// Archives the work area (without the staged packages) into the outbox,
/// for `portsynth test`. Best effort: the failure is what matters.
fn archive_work_area() {
    let result = (|| -> Result<()> {
        let file = std::fs::File::create(Path::new("/outbox").join(HelperSpec::WORK_ARCHIVE))?;
        let mut archive = tar::Builder::new(file);
        archive.follow_symlinks(false);
        for entry in std::fs::read_dir(HelperSpec::CONSTRUCTION)? {
            let entry = entry?;
            // A disk work area's lost+found is the file system's, not the build's.
            if entry.path() == Path::new(HelperSpec::PACKAGES) || entry.file_name() == "lost+found" {
                continue;
            }
            let name = entry.file_name();
            if entry.file_type()?.is_dir() {
                archive.append_dir_all(&name, entry.path())?;
            } else {
                archive.append_path_with_name(entry.path(), &name)?;
            }
        }
        archive.finish()?;
        Ok(())
    })();
    match result {
        Ok(()) => println!("===> work area kept in {}", HelperSpec::WORK_ARCHIVE),
        Err(e) => println!("===> could not keep the work area: {e:#}"),
    }
}

/// Copies the built package to the outbox, where the runner verifies it.
/// The build user wrote it, so it is opened without following a symlink or
/// blocking on a fifo, must be a regular file of the build user, and at
/// most `tmpfs_size` bytes are copied from the descriptor checked.
fn deliver_package(spec: &HelperSpec, user: &User, events: &mut std::fs::File) -> Result<()> {
    let file = spec.framework.framework().package_file(&spec.pkgname);
    let built = built_package(spec);
    let limit = format!("tmpfs_size ({})", crate::config::format_size(spec.tmpfs_size));
    crate::repo::fsutil::copy_untrusted(
        &built,
        user.uid.as_raw(),
        spec.tmpfs_size,
        &limit,
        &Path::new("/outbox").join(&file),
    )
    .with_context(|| format!("{} cannot be delivered", built.display()))?;
    send(events, &Event::Packaged { file });
    Ok(())
}
