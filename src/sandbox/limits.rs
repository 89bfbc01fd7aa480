//! Per-sandbox resource limits: one cgroup per build holding its helper and
//! everything it starts, with a memory limit (tmpfs pages are charged to
//! it too, so the work areas count) and a process limit (a fork bomb stops
//! there), and the CPU time and peak memory it used.
//!
//! cgroups-rs finds the hierarchy: v2 where `/sys/fs/cgroup` is the unified
//! hierarchy, else the v1 controllers (`memory`, `pids`, `cpuacct`). Where
//! no usable cgroup exists, builds still run; the operator is told once that
//! the limits are not enforced.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use cgroups_rs::cgroup::Cgroup;
use cgroups_rs::cpu::CpuController;
use cgroups_rs::cpuacct::CpuAcctController;
use cgroups_rs::memory::MemController;
use cgroups_rs::pid::PidController;
use cgroups_rs::{CgroupPid, MaxValue};

/// What one sandbox may use.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub memory: u64,
    pub processes: u64,
}

/// What one sandbox used, read when it ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    pub cpu: Option<Duration>,
    pub peak_memory: Option<u64>,
    /// Processes the kernel's OOM killer ended inside the cgroup.
    pub oom_kills: u64,
    /// Forks refused by the process limit.
    pub refused_forks: u64,
}

/// A build's cgroup; removed on drop.
pub struct SandboxCgroup {
    cgroup: Cgroup,
    /// v2: the `memory.peak` reset at the running phase's start, where the
    /// kernel allows it (Linux 6.12+): read through this descriptor, it is
    /// the peak since that reset.
    phase_peak: std::sync::Mutex<Option<std::fs::File>>,
    /// The file listing the cgroup's threads (v1 `tasks` of the CPU
    /// accounting hierarchy, v2 `cgroup.threads`), found once.
    threads_file: Option<std::path::PathBuf>,
}

static WARNED: AtomicBool = AtomicBool::new(false);

impl SandboxCgroup {
    /// `<pid>-SLnn-<n>`: unique among this process's builds (and so among
    /// the threads of a test), and it names the process that made it.
    pub fn unique_name(slot: u32) -> String {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        format!("{}-SL{slot:02}-{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed))
    }

    /// Creates `portsynth/<name>` with `limits`, or `None` (after one
    /// warning per process) where no cgroup can be used.
    pub fn create(name: &str, limits: Limits) -> Option<SandboxCgroup> {
        match Self::try_create(name, limits) {
            Ok(cgroup) => Some(cgroup),
            Err(e) => {
                if !WARNED.swap(true, Ordering::Relaxed) {
                    eprintln!("warning: no usable cgroup ({e:#}); memory_limit and max_processes are not enforced");
                }
                None
            }
        }
    }

    fn try_create(name: &str, limits: Limits) -> Result<SandboxCgroup> {
        let hierarchy = cgroups_rs::hierarchies::auto();
        let v2 = hierarchy.v2();
        let controllers: Vec<String> =
            ["memory", "pids", if v2 { "cpu" } else { "cpuacct" }].iter().map(|c| c.to_string()).collect();
        let path = format!("portsynth/{name}");
        let cgroup = Cgroup::new_with_specified_controllers(hierarchy, &path, Some(controllers))
            .with_context(|| format!("cannot create cgroup {path}"))?;
        let threads_file = threads_file(&cgroup);
        let sandbox = SandboxCgroup { cgroup, phase_peak: std::sync::Mutex::new(None), threads_file };
        sandbox.apply(limits).with_context(|| format!("cannot set the limits of cgroup {path}"))?;
        Ok(sandbox)
    }

    fn apply(&self, limits: Limits) -> Result<()> {
        let memory: &MemController = self.cgroup.controller_of().context("no memory controller")?;
        let bytes = i64::try_from(limits.memory).unwrap_or(i64::MAX);
        memory.set_limit(bytes)?;
        // With swap accounting, swap may not extend the limit either; the
        // file is absent without it.
        let _ = memory.set_memswap_limit(bytes);
        let pids: &PidController = self.cgroup.controller_of().context("no pids controller")?;
        pids.set_pid_max(MaxValue::Value(i64::try_from(limits.processes).unwrap_or(i64::MAX)))?;
        Ok(())
    }

    /// Moves process `pid` (and so all it will start) into the cgroup.
    pub fn add(&self, pid: u32) -> Result<()> {
        self.cgroup.add_task_by_tgid(CgroupPid::from(pid as u64)).context("cannot move the sandbox into its cgroup")
    }

    /// CPU time (user + system) of everything the cgroup ran so far.
    pub fn cpu_now(&self) -> Option<Duration> {
        if let Some(cpuacct) = self.cgroup.controller_of::<CpuAcctController>() {
            return Some(Duration::from_nanos(cpuacct.cpuacct().usage));
        }
        cpu_stat_usage(&self.cgroup.controller_of::<CpuController>()?.cpu().stat)
    }

    /// How many of the cgroup's threads are runnable now (running or
    /// waiting for a CPU), counting no further than `at_most`: what the
    /// build wants of the machine at this moment, whatever it gets. The
    /// threads are the port's, so their number is bounded by
    /// `max_processes` and the count by `at_most`, not by the port.
    pub fn runnable_threads(&self, at_most: u32) -> Option<u32> {
        let list = std::fs::read_to_string(self.threads_file.as_ref()?).ok()?;
        let mut runnable = 0;
        for tid in list.split_ascii_whitespace() {
            if runnable >= at_most {
                break;
            }
            let Ok(stat) = std::fs::read(format!("/proc/{tid}/stat")) else { continue };
            if thread_state(&stat) == Some(b'R') {
                runnable += 1;
            }
        }
        Some(runnable)
    }

    /// Starts a new peak (a phase's): v1 resets `memory.max_usage_in_bytes`
    /// to the current usage; v2 opens `memory.peak` and writes to it, which
    /// resets the peak that descriptor reads (Linux 6.12+). Where v2 refuses,
    /// a phase's peak is the build's peak so far.
    pub fn reset_peak_memory(&self) {
        let Some(memory) = self.cgroup.controller_of::<MemController>() else { return };
        if !self.cgroup.v2() {
            let _ = memory.reset_max_usage();
            return;
        }
        let reset = cgroup_roots().into_iter().find_map(|root| {
            use std::io::Write;
            let path = root.join(self.cgroup.path()).join("memory.peak");
            let mut file = std::fs::OpenOptions::new().read(true).write(true).open(path).ok()?;
            file.write_all(b"reset\n").ok().map(|_| file)
        });
        *self.phase_peak.lock().unwrap_or_else(|e| e.into_inner()) = reset;
    }

    /// The peak memory since the last [`reset_peak_memory`](Self::reset_peak_memory).
    pub fn peak_memory_now(&self) -> Option<u64> {
        if let Some(file) = self.phase_peak.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            let mut text = [0u8; 32];
            let read = std::os::unix::fs::FileExt::read_at(file, &mut text, 0).ok()?;
            return parse_peak(&text[..read]);
        }
        let memory = self.cgroup.controller_of::<MemController>()?;
        Some(memory.memory_stat().max_usage_in_bytes).filter(|b| *b > 0)
    }

    pub fn usage(&self) -> Usage {
        let mut usage = Usage::default();
        if let Some(memory) = self.cgroup.controller_of::<MemController>() {
            let stat = memory.memory_stat();
            usage.peak_memory = Some(stat.max_usage_in_bytes).filter(|b| *b > 0);
            usage.oom_kills = stat.oom_control.oom_kill;
        }
        if let Some(pids) = self.cgroup.controller_of::<PidController>() {
            usage.refused_forks = pids.get_pid_events().unwrap_or(0);
        }
        if let Some(cpuacct) = self.cgroup.controller_of::<CpuAcctController>() {
            usage.cpu = Some(Duration::from_nanos(cpuacct.cpuacct().usage));
        } else if let Some(cpu) = self.cgroup.controller_of::<CpuController>() {
            usage.cpu = cpu_stat_usage(&cpu.cpu().stat);
        }
        usage
    }
}

impl Drop for SandboxCgroup {
    /// The namespace is gone by now, but its last processes may still be
    /// exiting: kill what is left and retry the removal for a moment.
    fn drop(&mut self) {
        drop(self.phase_peak.lock().unwrap_or_else(|e| e.into_inner()).take());
        for _ in 0..200 {
            let _ = self.cgroup.kill();
            if self.cgroup.delete().is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        eprintln!("warning: cannot remove cgroup {}", self.cgroup.path());
    }
}

/// Removes the build cgroups of portsynth processes that are gone (killed
/// with `kill -9`: their sandboxes died with them, their cgroups stayed).
/// Returns the paths removed. Only empty directories are removed (`rmdir`):
/// a cgroup directory cannot hold anything else.
pub fn remove_stale() -> Vec<std::path::PathBuf> {
    let mut removed = Vec::new();
    for root in cgroup_roots() {
        let Ok(entries) = std::fs::read_dir(root.join("portsynth")) else { continue };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let Some(pid) = name.split('-').next().and_then(|p| p.parse::<i32>().ok()) else { continue };
            let alive = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_ok();
            if !alive && std::fs::remove_dir(entry.path()).is_ok() {
                removed.push(entry.path());
            }
        }
    }
    removed
}

/// Mount points of the cgroup file systems (v1 hierarchies and v2).
fn cgroup_roots() -> Vec<std::path::PathBuf> {
    let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") else { return vec![] };
    mountinfo
        .lines()
        .filter_map(|line| {
            let (mount, fstype) = line.split_once(" - ")?;
            let fstype = fstype.split(' ').next()?;
            (fstype == "cgroup" || fstype == "cgroup2")
                .then(|| mount.split(' ').nth(4).map(std::path::PathBuf::from))?
        })
        .collect()
}

/// Where the cgroup's thread list is read: v1 `tasks` under the CPU
/// accounting hierarchy, v2 `cgroup.threads`.
fn threads_file(cgroup: &Cgroup) -> Option<std::path::PathBuf> {
    use cgroups_rs::Controller;
    let path = match cgroup.controller_of::<CpuAcctController>() {
        Some(accounting) => accounting.path().join("tasks"),
        None => cgroup.controller_of::<CpuController>()?.path().join("cgroup.threads"),
    };
    Some(path).filter(|path| path.is_file())
}

/// The state letter of a `/proc/<tid>/stat` line: the field after the
/// command name, which is in parentheses and may itself hold `)` or spaces.
fn thread_state(stat: &[u8]) -> Option<u8> {
    let close = stat.iter().rposition(|&b| b == b')')?;
    stat[close + 1..].iter().copied().find(|b| !b.is_ascii_whitespace())
}

/// A v2 `memory.peak` as read: bytes and a newline.
fn parse_peak(text: &[u8]) -> Option<u64> {
    std::str::from_utf8(text).ok()?.trim().parse().ok().filter(|b| *b > 0)
}

/// `usage_usec` of a v2 `cpu.stat`.
fn cpu_stat_usage(stat: &str) -> Option<Duration> {
    stat.lines()
        .find_map(|l| l.strip_prefix("usage_usec "))
        .and_then(|v| v.trim().parse().ok())
        .map(Duration::from_micros)
}

/// The sentence a failed build's reason gets when a limit fired.
pub fn limit_reason(usage: &Usage, limits: Limits) -> Option<String> {
    if usage.oom_kills > 0 {
        return Some(format!(
            "memory limit of {} reached (memory_limit): the kernel killed {} process(es)",
            crate::config::format_size(limits.memory),
            usage.oom_kills
        ));
    }
    (usage.refused_forks > 0).then(|| {
        format!(
            "process limit of {} reached (max_processes): {} fork(s) refused",
            limits.processes, usage.refused_forks
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_v2_peak_is_read_as_bytes() {
        assert_eq!(parse_peak(b"1048576\n"), Some(1 << 20));
        assert_eq!(parse_peak(b"0\n"), None);
        assert_eq!(parse_peak(b"max\n"), None);
    }

    #[test]
    fn phase_peaks_restart_at_the_current_usage() {
        let name = format!("unit-peak-{}", std::process::id());
        let cgroup = SandboxCgroup::create(&name, Limits { memory: 256 << 20, processes: 16 }).expect("cgroup");
        // Held on stdin until it is in the cgroup; then it writes 64 MiB.
        let mut child = std::process::Command::new("python3")
            .args(["-c", "import sys; sys.stdin.read(); b = b'x' * (64 << 20)"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        cgroup.add(child.id()).unwrap();
        drop(child.stdin.take());
        child.wait().unwrap();
        assert!(cgroup.peak_memory_now().is_some_and(|p| p >= 64 << 20), "{:?}", cgroup.peak_memory_now());
        cgroup.reset_peak_memory();
        let after = cgroup.peak_memory_now().unwrap_or(0);
        assert!(after < 32 << 20, "a new phase starts from the current usage: {after}");
    }

    #[test]
    fn the_thread_state_follows_the_last_parenthesis() {
        assert_eq!(thread_state(b"42 (cc1) R 1 42 42 0"), Some(b'R'));
        assert_eq!(thread_state(b"42 (a) S (b) R 1) S 1 42"), Some(b'S'), "a name holding ') R'");
        assert_eq!(thread_state(b"42 (make"), None);
    }

    #[test]
    fn runnable_threads_count_what_burns_and_not_what_sleeps() {
        let name = format!("unit-runnable-{}", std::process::id());
        let cgroup = SandboxCgroup::create(&name, Limits { memory: 256 << 20, processes: 16 }).expect("cgroup");
        // Released on stdin once in the cgroup: two processes burn, one sleeps.
        let script =
            "import os, sys, time\nsys.stdin.read()\nif os.fork() == 0:\n    time.sleep(30)\n    os._exit(0)\n\
                      os.fork()\nend = time.time() + 30\nwhile time.time() < end: pass\n";
        let mut child = std::process::Command::new("python3")
            .args(["-c", script])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        cgroup.add(child.id()).unwrap();
        drop(child.stdin.take());
        // Past the forks, the sleeper sleeps and both burners stay runnable
        // (running or waiting for a CPU) however loaded the machine is.
        std::thread::sleep(Duration::from_millis(1500));
        let seen: Vec<_> = (0..5)
            .map(|_| {
                std::thread::sleep(Duration::from_millis(20));
                cgroup.runnable_threads(8)
            })
            .collect();
        let capped = cgroup.runnable_threads(1);
        let tasks = std::fs::read_to_string(cgroup.threads_file.as_ref().unwrap()).unwrap();
        for tid in tasks.split_ascii_whitespace() {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(tid.parse().unwrap()), nix::sys::signal::SIGKILL);
        }
        let _ = child.wait();
        drop(cgroup);
        assert_eq!(seen, vec![Some(2); 5], "two burning processes are runnable, the sleeping one is not");
        assert_eq!(capped, Some(1), "counting stops at at_most");
    }

    #[test]
    fn v2_cpu_usage_is_read_from_cpu_stat() {
        assert_eq!(cpu_stat_usage("usage_usec 1500000\nuser_usec 1\n"), Some(Duration::from_millis(1500)));
        assert_eq!(cpu_stat_usage("nothing"), None);
    }

    #[test]
    fn the_reason_names_the_limit_that_fired() {
        let limits = Limits { memory: 512 << 20, processes: 64 };
        let oom = Usage { oom_kills: 2, ..Usage::default() };
        assert_eq!(
            limit_reason(&oom, limits).unwrap(),
            "memory limit of 512M reached (memory_limit): the kernel killed 2 process(es)"
        );
        let forks = Usage { refused_forks: 9, ..Usage::default() };
        assert!(limit_reason(&forks, limits).unwrap().contains("process limit of 64 reached (max_processes)"));
        assert_eq!(limit_reason(&Usage::default(), limits), None);
    }

    #[test]
    fn stale_cgroups_of_dead_processes_are_removed_and_live_ones_kept() {
        // A pid that cannot exist (above pid_max) and our own, living one.
        let dead = SandboxCgroup::create(&format!("{}-SL99-0", i32::MAX), Limits { memory: 64 << 20, processes: 8 });
        let alive =
            SandboxCgroup::create(&SandboxCgroup::unique_name(98), Limits { memory: 64 << 20, processes: 8 }).unwrap();
        let dead = dead.unwrap();
        let dead_path = dead.cgroup.path().to_string();
        std::mem::forget(dead);
        let removed = remove_stale();
        assert!(removed.iter().any(|p| p.ends_with(&dead_path)), "{removed:?}");
        assert!(!removed.iter().any(|p| p.ends_with(alive.cgroup.path())), "{removed:?}");
        assert!(cgroup_roots().iter().all(|root| !root.join(&dead_path).exists()));
    }

    #[test]
    fn a_real_cgroup_limits_and_accounts_a_process() {
        let name = format!("unit-{}", std::process::id());
        let cgroup = SandboxCgroup::create(&name, Limits { memory: 64 << 20, processes: 16 }).expect("cgroup");
        let mut child = std::process::Command::new("sh")
            .args(["-c", "read x; i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done"])
            .stdin(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        cgroup.add(child.id()).unwrap();
        drop(child.stdin.take());
        child.wait().unwrap();
        let usage = cgroup.usage();
        assert!(usage.cpu.is_some_and(|c| c > Duration::ZERO), "{usage:?}");
        assert_eq!((usage.oom_kills, usage.refused_forks), (0, 0));
    }
}
