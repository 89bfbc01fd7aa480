//! What every process that runs port-supplied code goes through between
//! `fork` and `exec`: its own session (no controlling terminal), an empty
//! capability bounding set, the unprivileged build user, `no_new_privs` and a
//! seccomp filter.
//!
//! The filter is a deny list in the spirit of Docker's default profile and
//! bubblewrap: a build compiles, links, runs tests and packs files; it never
//! needs to mount, pivot, create namespaces (user namespaces included, the
//! usual first step of a kernel exploit), load modules or BPF programs, trace
//! other processes, touch the kernel keyring or push characters into a
//! terminal (`TIOCSTI`, `TIOCLINUX`). Denied calls fail with `EPERM`, except
//! `clone3`, which fails with `ENOSYS` so that the C library falls back to
//! `clone`, whose flags the filter can inspect (`clone3` passes them in
//! memory, out of seccomp's reach).
//!
//! The filters are compiled once, before any fork; [`Confinement::enter`] only
//! issues system calls, so it is safe in a `pre_exec` hook. A process that
//! forks many confined children (the scan sandbox's PID 1) takes the
//! inheritable part once ([`Confinement::apply_to_spawner`]).

use std::collections::BTreeMap;
use std::io;

use anyhow::{Context, Result};
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule,
};

/// System calls a build never needs; see the module comment.
const DENIED: &[i64] = &[
    libc::SYS_mount,
    libc::SYS_umount2,
    libc::SYS_pivot_root,
    libc::SYS_chroot,
    libc::SYS_move_mount,
    libc::SYS_open_tree,
    libc::SYS_fsopen,
    libc::SYS_fsconfig,
    libc::SYS_fsmount,
    libc::SYS_fspick,
    libc::SYS_mount_setattr,
    libc::SYS_unshare,
    libc::SYS_setns,
    libc::SYS_kexec_load,
    libc::SYS_kexec_file_load,
    libc::SYS_init_module,
    libc::SYS_finit_module,
    libc::SYS_delete_module,
    libc::SYS_bpf,
    libc::SYS_perf_event_open,
    libc::SYS_keyctl,
    libc::SYS_add_key,
    libc::SYS_request_key,
    libc::SYS_ptrace,
    libc::SYS_process_vm_readv,
    libc::SYS_process_vm_writev,
    libc::SYS_kcmp,
    libc::SYS_pidfd_getfd,
    libc::SYS_userfaultfd,
    libc::SYS_open_by_handle_at,
    libc::SYS_name_to_handle_at,
    libc::SYS_swapon,
    libc::SYS_swapoff,
    libc::SYS_reboot,
    libc::SYS_syslog,
    libc::SYS_acct,
    libc::SYS_quotactl,
    libc::SYS_settimeofday,
    libc::SYS_clock_settime,
    libc::SYS_clock_adjtime,
    libc::SYS_adjtimex,
    libc::SYS_sethostname,
    libc::SYS_setdomainname,
    libc::SYS_lookup_dcookie,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_iopl,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_ioperm,
    #[cfg(target_arch = "x86_64")]
    libc::SYS_uselib,
    #[cfg(target_arch = "x86_64")]
    libc::SYS__sysctl,
];

/// Namespace flags `clone` may not carry.
const CLONE_NAMESPACES: &[u64] = &[
    libc::CLONE_NEWNS as u64,
    libc::CLONE_NEWUTS as u64,
    libc::CLONE_NEWIPC as u64,
    libc::CLONE_NEWUSER as u64,
    libc::CLONE_NEWPID as u64,
    libc::CLONE_NEWNET as u64,
    libc::CLONE_NEWCGROUP as u64,
    0x80, // CLONE_NEWTIME
];

/// Terminal ioctls that inject input or reach the console.
const DENIED_IOCTLS: &[u64] = &[libc::TIOCSTI, libc::TIOCLINUX];

/// Who the confined process becomes, and the compiled filters.
#[derive(Clone)]
pub struct Confinement {
    uid: libc::uid_t,
    gid: libc::gid_t,
    last_cap: libc::c_ulong,
    filters: Vec<BpfProgram>,
    /// The bounding set is already empty and the filters already loaded in
    /// the forking process (see [`Confinement::apply_to_spawner`]).
    inherited: bool,
}

impl Confinement {
    /// Compiles the filters for a process that will run as `uid:gid`.
    pub fn new(uid: u32, gid: u32) -> Result<Confinement> {
        let last_cap = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(63);
        Ok(Confinement {
            uid,
            gid,
            last_cap,
            filters: filters().context("compiling the seccomp filter")?,
            inherited: false,
        })
    }

    /// The user the process runs as.
    pub fn uid(&self) -> u32 {
        self.uid
    }

    /// For a long-lived process that forks many confined children (the scan
    /// sandbox's PID 1): everything of [`Confinement::enter`] that survives
    /// fork and exec is done here, once — its own session, no ambient
    /// capabilities, an empty bounding set, no core dumps, `no_new_privs`
    /// and the filters — so `enter` in its children only changes the user.
    /// Loading a filter makes the kernel check and JIT-compile the program,
    /// and a new session creates a scheduler autogroup: per child, that was
    /// most of the scan sandbox's overhead over a bare bmake. The caller
    /// keeps its effective capabilities (it never execs) but can no longer
    /// mount, unshare or do anything else the filter denies.
    pub fn apply_to_spawner(&mut self) -> io::Result<()> {
        check(unsafe { libc::setsid() })?;
        self.inheritable_parts()?;
        self.no_new_privs_and_filters()?;
        self.inherited = true;
        Ok(())
    }

    fn inheritable_parts(&self) -> io::Result<()> {
        check(unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) })?;
        for cap in 0..=self.last_cap {
            // EINVAL past the kernel's last capability is harmless.
            unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) };
        }
        let no_core = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        unsafe { libc::setrlimit(libc::RLIMIT_CORE, &no_core) };
        Ok(())
    }

    fn no_new_privs_and_filters(&self) -> io::Result<()> {
        check(unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) })?;
        for filter in &self.filters {
            seccompiler::apply_filter(filter).map_err(|e| io::Error::other(e.to_string()))?;
        }
        Ok(())
    }

    /// In the child, between fork and exec: system calls only (no
    /// allocation), so it is async-signal-safe. Order matters: dropping the
    /// bounding set needs `CAP_SETPCAP`, so it comes before the user change;
    /// the filter comes last, so it does not have to allow what precedes it.
    /// In a child of a process confined by [`Confinement::apply_to_spawner`]
    /// only the user changes; the rest is inherited.
    pub fn enter(&self) -> io::Result<()> {
        if !self.inherited {
            check(unsafe { libc::setsid() })?;
            self.inheritable_parts()?;
        }
        check(unsafe { libc::setgroups(1, &self.gid) })?;
        check(unsafe { libc::setresgid(self.gid, self.gid, self.gid) })?;
        check(unsafe { libc::setresuid(self.uid, self.uid, self.uid) })?;
        if !self.inherited {
            self.no_new_privs_and_filters()?;
        }
        Ok(())
    }
}

fn check(result: libc::c_int) -> io::Result<()> {
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Two programs: the deny list (`EPERM`) and `clone3` (`ENOSYS`).
fn filters() -> Result<Vec<BpfProgram>> {
    let arch = std::env::consts::ARCH.try_into().map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = DENIED.iter().map(|&call| (call, vec![])).collect();
    let flag_rules = CLONE_NAMESPACES
        .iter()
        .map(|&flag| rule(0, SeccompCmpArgLen::Qword, SeccompCmpOp::MaskedEq(flag), flag))
        .collect::<Result<Vec<_>>>()?;
    rules.insert(libc::SYS_clone, flag_rules);
    let ioctl_rules = DENIED_IOCTLS
        .iter()
        .map(|&request| rule(1, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, request))
        .collect::<Result<Vec<_>>>()?;
    rules.insert(libc::SYS_ioctl, ioctl_rules);
    let deny = SeccompFilter::new(rules, SeccompAction::Allow, SeccompAction::Errno(libc::EPERM as u32), arch)?;
    let clone3 = SeccompFilter::new(
        [(libc::SYS_clone3, vec![])].into_iter().collect(),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::ENOSYS as u32),
        arch,
    )?;
    Ok(vec![deny.try_into()?, clone3.try_into()?])
}

fn rule(arg: u8, len: SeccompCmpArgLen, op: SeccompCmpOp, value: u64) -> Result<SeccompRule> {
    Ok(SeccompRule::new(vec![SeccompCondition::new(arg, len, op, value)?])?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_filters_compile_for_this_machine() {
        let filters = filters().unwrap();
        assert_eq!(filters.len(), 2);
        assert!(filters[0].len() > DENIED.len(), "one jump at least per denied call");
    }
}
