//! Hostile ports against the sandbox (tests/fixtures/containment): the
//! operator's terminal, privileged hooks, log floods, fork and memory bombs.
//! Each test asserts that the host is unchanged and that the failure names
//! the limit that stopped the port. Real namespaces, cgroups and bmake, as
//! root; serialised like tests/sandbox.rs (one slot directory per tree, but
//! the leak checks look at every process of the machine).

mod common;

use std::collections::BTreeSet;
use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{mounts, processes_with, Env};
use portsynth::ports::Phase;
use portsynth::sandbox::runner::{BuildOutcome, OutcomeStatus};

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// The fixture tree plus the containment ports, with `extra` config.
fn env(extra: &str) -> Env {
    let env = Env::fixtures();
    common::copy_tree(&common::repo().join("tests/fixtures/containment/hostile"), &env.ports().join("hostile"));
    env.write_config(extra);
    env
}

fn build(env: &Env, port: &str) -> BuildOutcome {
    common::build_alone(env, port, portsynth::sandbox::work_area::WorkArea::Tmpfs)
}

fn log_of(outcome: &BuildOutcome) -> String {
    String::from_utf8_lossy(&std::fs::read(&outcome.log_path).unwrap()).into_owned()
}

/// Waits (bounded) until no sandbox process and no new mount is left.
fn assert_host_clean(mounts_before: &BTreeSet<String>, marker: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = processes_with(marker);
        let now = mounts();
        if left.is_empty() && &now == mounts_before {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "left behind: processes {left:?}, mounts {:?}",
            now.symmetric_difference(mounts_before).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn assert_failed_with(outcome: &BuildOutcome, phase: Phase, reason: &str) {
    assert_eq!((outcome.status, outcome.failed_phase), (OutcomeStatus::Failed, Some(phase)), "{outcome:?}");
    let why = outcome.reason.as_deref().unwrap_or_default();
    assert!(why.contains(reason), "reason {why:?} lacks {reason:?}\nlog:\n{}", log_of(outcome));
}

fn portsynth_cgroups() -> Vec<String> {
    let mine = format!("{}-", std::process::id());
    ["/sys/fs/cgroup/memory/portsynth", "/sys/fs/cgroup/pids/portsynth", "/sys/fs/cgroup/portsynth"]
        .iter()
        .flat_map(|dir| std::fs::read_dir(dir).into_iter().flatten().flatten())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(&mine))
        .collect()
}

#[test]
fn a_build_cannot_type_into_the_operators_terminal() {
    let _guard = serial();
    let env = env("");
    // The operator's shell under a real pty: portsynth runs, then the shell
    // reads a line. Anything a build pushed into the terminal's input queue
    // would be that line.
    let shell = format!(
        "{} --config {} build-one hostile/tty >/dev/null 2>&1; read -t 2 line; echo \"READ:[$line]\"",
        common::bin().display(),
        env.config().display()
    );
    // script's own input stays open (an EOF would reach the shell's read
    // as ^D and hide what was typed after it).
    let mut script = Command::new("script")
        .args(["-q", "-e", "-c", &shell, "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let input = script.stdin.take();
    let mut screen = String::new();
    script.stdout.take().unwrap().read_to_string(&mut screen).unwrap();
    script.wait().unwrap();
    drop(input);
    assert!(screen.contains("READ:[]"), "the shell read something typed by the build: {screen}");
    assert!(!screen.contains("PWNED"), "{screen}");
    let log = std::fs::read_to_string(env.base().join("logs/hostile___tty.log")).unwrap();
    for attempt in ["open /dev/tty", "TIOCSTI on fd 0", "TIOCSTI on fd 1", "TIOCSTI on fd 2", "TIOCSTI on an own pty"] {
        let line = log
            .lines()
            .find(|l| l.starts_with(&format!("ATTEMPT {attempt}:")))
            .unwrap_or_else(|| panic!("{attempt} not tried: {log}"));
        assert!(!line.ends_with("succeeded"), "{line}");
    }
    // The build's session is led by a sandbox process (a session led from
    // outside the PID namespace, like the operator's, reads as 0).
    let sid = log.lines().find_map(|l| l.strip_prefix("sid=")).expect("session line");
    let sid: u32 = sid.split_once(' ').unwrap().0.parse().unwrap();
    assert!(sid > 1, "the build's session is its own: {sid}");
}

#[test]
fn privileged_hooks_of_fetch_and_checksum_reach_nothing_of_the_host() {
    let _guard = serial();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let socket_name = format!("portsynth-containment-{}", std::process::id());
    let abstract_socket = abstract_listener(&socket_name);
    let env = env(&format!(
        "[make_conf]\nHOSTILE_PORT = \"{}\"\nHOSTILE_SOCKET = \"{socket_name}\"\n",
        listener.local_addr().unwrap().port()
    ));
    let before = mounts();
    let panic_sysctl = std::fs::read_to_string("/proc/sys/kernel/panic").unwrap();
    let tree_before = tree_listing(&env.ports());
    std::env::set_var("PORTSYNTH_TEST_SECRET", "hunter2-operator-secret");
    let outcome = build(&env, "hostile/privileged");
    let log = log_of(&outcome);

    for attempt in [
        "remount the ports tree rw",
        "write the ports tree",
        "remount /etc rw",
        "write the distfiles",
        "read /etc/shadow",
        "set a global sysctl",
        "mknod a disk",
        "mount a tmpfs",
        "user namespace",
        "mount namespace",
        "host loopback",
        "abstract socket",
        "environment",
    ] {
        let line = log
            .lines()
            .find(|l| l.starts_with(&format!("ATTEMPT {attempt}:")))
            .unwrap_or_else(|| panic!("{attempt} not tried: {log}"));
        assert!(line.contains(": failed"), "{line}");
    }
    assert!(log.contains("ATTEMPT uid: 65534"), "hooks run as the build user: {log}");
    assert!(log.contains("CapBnd:\t0000000000000000"), "{log}");
    assert!(!log.contains("hunter2-operator-secret"), "the operator's environment leaked");
    let shadow_root = std::fs::read_to_string("/etc/shadow").unwrap().lines().next().unwrap().to_string();
    assert!(!log.contains(&shadow_root), "/etc/shadow leaked");
    assert_eq!(std::fs::read_to_string("/proc/sys/kernel/panic").unwrap(), panic_sysctl);
    assert_eq!(tree_listing(&env.ports()), tree_before, "the ports tree is unchanged");
    assert!(!env.base().join("distfiles/PWNED").exists());
    assert!(listener.accept().is_err(), "the loopback listener saw a connection");
    assert!(!abstract_socket.accepted(), "the abstract socket saw a connection");
    assert_host_clean(&before, "hostile/privileged");
}

/// A listening abstract unix socket named `name`, polled without blocking.
struct AbstractListener(std::os::fd::OwnedFd);

fn abstract_listener(name: &str) -> AbstractListener {
    use nix::sys::socket::{bind, listen, socket, AddressFamily, Backlog, SockFlag, SockType, UnixAddr};
    let fd = socket(AddressFamily::Unix, SockType::Stream, SockFlag::SOCK_NONBLOCK, None).unwrap();
    bind(std::os::fd::AsRawFd::as_raw_fd(&fd), &UnixAddr::new_abstract(name.as_bytes()).unwrap()).unwrap();
    listen(&fd, Backlog::new(4).unwrap()).unwrap();
    AbstractListener(fd)
}

impl AbstractListener {
    fn accepted(&self) -> bool {
        nix::sys::socket::accept(std::os::fd::AsRawFd::as_raw_fd(&self.0)).is_ok()
    }
}

/// Every path below `dir` with its size, to see any change.
fn tree_listing(dir: &Path) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let meta = entry.metadata().unwrap();
            if meta.is_dir() {
                stack.push(entry.path());
            }
            found.insert(format!("{} {}", entry.path().display(), meta.len()));
        }
    }
    found
}

#[test]
fn a_log_flood_is_cut_at_max_log_size_keeping_head_and_tail() {
    let _guard = serial();
    let env = env("max_log_size = \"1M\"\n");
    let before = mounts();
    let outcome = build(&env, "hostile/log-flood");
    assert_failed_with(&outcome, Phase::Build, "log size limit of 1M reached (max_log_size)");
    let size = std::fs::metadata(&outcome.log_path).unwrap().len();
    assert!(size < (1 << 20) + (64 << 10), "the log is {size} bytes");
    let log = log_of(&outcome);
    assert!(log.starts_with("Origin:   hostile/log-flood"), "the head is kept");
    assert!(log.contains("FLOOD-BEGINS"));
    assert!(!log.contains("FLOOD-ENDED"), "the build was stopped");
    assert!(log.contains("bytes of output left out (max_log_size)"), "the cut is marked");
    let tail_start = log.find("bytes of output left out").unwrap();
    assert!(log[tail_start..].contains("flooding the log of this build"), "the tail is kept");
    assert!(log.contains("Result:   FAILED"), "the footer is written");
    assert_host_clean(&before, "flooding the log");
}

#[test]
fn a_fork_bomb_stops_at_max_processes_and_leaves_nothing() {
    let _guard = serial();
    let env = env("max_processes = 64\n");
    let before = mounts();
    let outcome = build(&env, "hostile/fork-bomb");
    assert_failed_with(&outcome, Phase::Build, "process limit of 64 reached (max_processes)");
    assert_host_clean(&before, "sleep 600");
    assert!(portsynth_cgroups().is_empty(), "cgroups left: {:?}", portsynth_cgroups());
}

#[test]
fn a_memory_bomb_stops_at_memory_limit() {
    let _guard = serial();
    let env = env("memory_limit = \"128M\"\n");
    let before = mounts();
    let outcome = build(&env, "hostile/memory-bomb");
    assert_failed_with(&outcome, Phase::Build, "memory limit of 128M reached (memory_limit)");
    assert!(outcome.peak_memory.is_some_and(|p| p <= 128 << 20), "{:?}", outcome.peak_memory);
    assert_host_clean(&before, "bytearray");
}

#[test]
fn filling_the_tmpfs_work_area_counts_against_memory_limit() {
    let _guard = serial();
    let env = env("memory_limit = \"128M\"\n");
    let before = mounts();
    let available_before = available_memory();
    let outcome = build(&env, "hostile/tmpfs-bomb");
    assert_failed_with(&outcome, Phase::Build, "memory limit of 128M reached (memory_limit)");
    assert_host_clean(&before, "of=/construction");
    // The tmpfs went with the namespace: its pages are free again.
    let available_after = available_memory();
    assert!(available_after + (256 << 20) > available_before, "{available_before} -> {available_after}");
}

fn available_memory() -> u64 {
    let mut text = String::new();
    std::fs::File::open("/proc/meminfo").unwrap().read_to_string(&mut text).unwrap();
    let line = text.lines().find(|l| l.starts_with("MemAvailable:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() << 10
}

#[test]
fn successful_builds_record_their_cgroup_cpu_time() {
    let _guard = serial();
    let env = env("");
    let outcome = build(&env, "misc/good");
    assert_eq!(outcome.status, OutcomeStatus::Success, "{}", log_of(&outcome));
    assert!(outcome.cpu_time.is_some_and(|c| c > Duration::ZERO), "{:?}", outcome.cpu_time);
    assert!(log_of(&outcome).contains("CPU:"), "the footer shows it");
    assert!(portsynth_cgroups().is_empty(), "cgroups left: {:?}", portsynth_cgroups());
}
