//! Configuration: a TOML file with top-level settings and `[profile.NAME]`
//! sections that override them.
//!
//! Parsing and validation are separate steps. [`RawSettings`] mirrors the file
//! exactly (every key optional, every value with its byte span) and rejects
//! unknown keys and wrong types through serde, so toml's own error names the
//! key and the line. [`Config`] is the validated result: paths absolute,
//! defaults filled in, sizes and durations parsed. Validation errors that
//! concern a value (a missing ports tree, a zero worker count) are reported at
//! that value's line via its span.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::ops::Range;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Deserialize;
use toml::Spanned;

use crate::ports::Phase;

pub const ENV_CONFIG: &str = "PORTSYNTH_CONFIG";
pub const SYSTEM_CONFIG: &str = "/etc/portsynth/portsynth.toml";
pub const LOCAL_CONFIG: &str = "portsynth.toml";

/// The validated settings every command works from.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file the settings came from.
    pub file: PathBuf,
    pub profile: Option<String>,
    pub ports_dir: PathBuf,
    pub system_path: PathBuf,
    pub build_base: PathBuf,
    pub packages_dir: PathBuf,
    pub distfiles_dir: PathBuf,
    pub logs_dir: PathBuf,
    pub database_path: PathBuf,
    pub workers: usize,
    /// The core budget the running builds' make jobs share (`jobs`; default: CPUs).
    pub jobs: usize,
    /// Fixed make jobs for every build (`make_jobs`); `None`: allocated from `jobs`
    /// by [`crate::build::allocate`].
    pub make_jobs: Option<usize>,
    /// Memory the running builds may expect to use together (`memory_budget`;
    /// default: the machine's memory); memory-aware admission keeps within it.
    pub memory_budget: u64,
    pub make_program: String,
    pub build_user: String,
    pub tmpfs_size: u64,
    pub phase_timeouts: BTreeMap<Phase, Duration>,
    pub silent_timeout: Duration,
    pub make_conf: BTreeMap<String, String>,
    /// Ports fetched at once by `fetch-only` (independent of `workers`).
    pub fetch_jobs: usize,
    /// Extra attempts after a failed fetch (0: try once).
    pub fetch_retries: u32,
    /// Wait before the first retry; each further retry waits twice as long.
    pub fetch_retry_delay: Duration,
    /// Memory limit of one sandbox (its cgroup), bytes; tmpfs pages count.
    pub memory_limit: u64,
    /// Most processes (tasks) one sandbox may have at once (its cgroup).
    pub max_processes: u64,
    /// Largest per-port log; past it the build is killed.
    pub max_log_size: u64,
    /// Deadline of one port's metadata query.
    pub scan_timeout: Duration,
    /// Largest expanded size of one package (sum of its entries).
    pub package_size_limit: u64,
    /// Origins whose packages may install setuid/setgid files as dependencies.
    pub setuid_ports: Vec<String>,
    /// Hosts that are local to the build host (loopback, its own addresses)
    /// but that fetches may reach all the same: an operator's local mirror.
    pub fetch_local_hosts: Vec<String>,
    /// Base URLs every distfile is tried from first, its key (with
    /// `DIST_SUBDIR/`) appended, like MASTER_SITE_OVERRIDE.
    pub distfile_mirrors: Vec<String>,
    /// Whether fetches also try the framework's sites after the mirrors
    /// (`fetch_upstream`, default true).
    pub fetch_upstream: bool,
    /// The tree's framework (`framework`, or detected from the tree).
    pub framework: crate::framework::Kind,
    /// pkgsrc: the bootstrap kit (`bootstrap --gzip-binary-kit`) whose
    /// bmake scans the tree and whose prefix every build starts from.
    pub bootstrap_kit: Option<PathBuf>,
    /// What a bulk run means when not the whole tree (`pkgpaths`: a list,
    /// or a file with one port per line): `everything`, `status` and
    /// `fetch-only` without ports, as pbulk's and bob's limited bulk builds.
    pub pkgpaths: Option<Vec<crate::ports::Origin>>,
    /// pkgsrc: extra mk.conf lines, read after the kit's mk.conf by every
    /// make run (part of every key).
    pub mk_conf: Option<String>,
    /// Ramp the workers up and shrink them under load (`throttle`, default
    /// true); false: all `workers` from the start, whatever the load.
    pub throttle: bool,
    /// Environment of `bootstrap-kit`'s run of a pkgsrc tree's bootstrap
    /// (part of the kit's cache key).
    pub bootstrap_env: BTreeMap<String, String>,
    /// Deadline of `bootstrap-kit`'s bootstrap run.
    pub bootstrap_timeout: Duration,
    /// Where builds get their work area (`work_dir`, default `auto`).
    pub work_dir: WorkDir,
    /// Size of a disk work area (`disk_work_size`), at most; see
    /// [`crate::sandbox::work_area`].
    pub disk_work_size: u64,
    /// The operator's hooks (`[hooks]`, `hook_timeout`), see [`crate::hooks`].
    pub hooks: crate::hooks::HookSettings,
    /// Where the builds run (`executor`, default `local`).
    pub executor: ExecutorKind,
    /// The Slurm executor's settings (`[slurm]`), defaults filled in.
    pub slurm: SlurmSettings,
}

/// Config `executor`: each build in a sandbox of this host, or as a Slurm
/// job on a cluster (see [`crate::executor`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum ExecutorKind {
    #[default]
    Local,
    Slurm,
}

/// `[slurm]`: how the Slurm executor submits its jobs and where the nodes
/// see the shared directories (see [`crate::executor::slurm`]). Paths
/// named `node_*` or documented "as seen from the nodes" are never opened
/// by the coordinator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlurmSettings {
    /// Words put before every `sbatch`/`squeue`/`sacct`/`scancel` (e.g.
    /// `["nsenter", "--net=/proc/PID/ns/net"]` for the testbed's submit host).
    pub command_prefix: Vec<String>,
    pub partition: Option<String>,
    pub constraint: Option<String>,
    /// More `sbatch` arguments, appended after portsynth's own.
    pub sbatch_args: Vec<String>,
    /// The portsynth binary as seen from the nodes (`None`: this binary's path).
    pub binary: Option<PathBuf>,
    /// This config file as seen from the nodes.
    pub config: PathBuf,
    /// The ports tree, the repository (read-only) and the distfiles as seen
    /// from the nodes.
    pub ports_dir: PathBuf,
    pub packages_dir: PathBuf,
    pub distfiles_dir: PathBuf,
    /// The shared directory of the per-build outboxes, on the coordinator;
    /// one build base's own (a run removes the outboxes of other runs).
    pub outbox_dir: PathBuf,
    /// The same directory as seen from the nodes.
    pub node_outbox_dir: PathBuf,
    /// The node-local build base (slot directories, disk work areas).
    pub node_build_base: PathBuf,
}

/// Config `work_dir`: every build's work area in a tmpfs, on disk, or
/// decided per build by the scheduler from its history (`auto`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WorkDir {
    Tmpfs,
    Disk,
    #[default]
    Auto,
}

impl WorkDir {
    /// The work area this setting fixes; `None` for `auto`.
    pub fn fixed(self) -> Option<crate::sandbox::work_area::WorkArea> {
        match self {
            WorkDir::Tmpfs => Some(crate::sandbox::work_area::WorkArea::Tmpfs),
            WorkDir::Disk => Some(crate::sandbox::work_area::WorkArea::Disk),
            WorkDir::Auto => None,
        }
    }
}

/// Default `disk_work_size` (sparse: only what a build writes uses disk).
pub const DEFAULT_DISK_WORK_SIZE: u64 = 64 << 30;

impl Config {
    pub fn phase_timeout(&self, phase: Phase) -> Duration {
        self.phase_timeouts.get(&phase).copied().unwrap_or_else(|| phase.default_timeout())
    }
}

/// The file as written. Top-level keys and profile sections share one shape;
/// a `profile` table inside a profile is rejected during validation.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    ports_dir: Option<Spanned<PathBuf>>,
    system_path: Option<Spanned<PathBuf>>,
    build_base: Option<Spanned<PathBuf>>,
    packages_dir: Option<Spanned<PathBuf>>,
    distfiles_dir: Option<Spanned<PathBuf>>,
    logs_dir: Option<Spanned<PathBuf>>,
    database_path: Option<Spanned<PathBuf>>,
    workers: Option<Spanned<i64>>,
    jobs: Option<Spanned<i64>>,
    make_jobs: Option<Spanned<i64>>,
    memory_budget: Option<Spanned<String>>,
    make_program: Option<Spanned<String>>,
    build_user: Option<Spanned<String>>,
    tmpfs_size: Option<Spanned<String>>,
    phase_timeouts: Option<BTreeMap<Spanned<String>, Spanned<i64>>>,
    silent_timeout: Option<Spanned<i64>>,
    make_conf: Option<BTreeMap<String, Spanned<String>>>,
    fetch_jobs: Option<Spanned<i64>>,
    fetch_retries: Option<Spanned<i64>>,
    fetch_retry_delay: Option<Spanned<f64>>,
    memory_limit: Option<Spanned<String>>,
    max_processes: Option<Spanned<i64>>,
    max_log_size: Option<Spanned<String>>,
    scan_timeout: Option<Spanned<i64>>,
    package_size_limit: Option<Spanned<String>>,
    setuid_ports: Option<Vec<Spanned<String>>>,
    fetch_local_hosts: Option<Vec<Spanned<String>>>,
    distfile_mirrors: Option<Vec<Spanned<String>>>,
    fetch_upstream: Option<Spanned<bool>>,
    framework: Option<Spanned<String>>,
    bootstrap_kit: Option<Spanned<PathBuf>>,
    pkgpaths: Option<Spanned<toml::Value>>,
    mk_conf: Option<Spanned<String>>,
    throttle: Option<Spanned<bool>>,
    bootstrap_env: Option<BTreeMap<String, Spanned<String>>>,
    bootstrap_timeout: Option<Spanned<i64>>,
    work_dir: Option<Spanned<String>>,
    disk_work_size: Option<Spanned<String>>,
    hooks: Option<RawHooks>,
    hook_timeout: Option<Spanned<i64>>,
    executor: Option<Spanned<String>>,
    slurm: Option<RawSlurm>,
    profile: Option<BTreeMap<String, Spanned<RawSettings>>>,
}

/// `[slurm]` as written.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSlurm {
    command_prefix: Option<Vec<String>>,
    partition: Option<Spanned<String>>,
    constraint: Option<Spanned<String>>,
    sbatch_args: Option<Vec<String>>,
    binary: Option<Spanned<PathBuf>>,
    config: Option<Spanned<PathBuf>>,
    ports_dir: Option<Spanned<PathBuf>>,
    packages_dir: Option<Spanned<PathBuf>>,
    distfiles_dir: Option<Spanned<PathBuf>>,
    outbox_dir: Option<Spanned<PathBuf>>,
    node_outbox_dir: Option<Spanned<PathBuf>>,
    node_build_base: Option<Spanned<PathBuf>>,
}

/// `[hooks]` as written: each hook a list of words or (with `shell = true`)
/// a shell command string.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHooks {
    run_start: Option<Spanned<toml::Value>>,
    run_end: Option<Spanned<toml::Value>>,
    success: Option<Spanned<toml::Value>>,
    failure: Option<Spanned<toml::Value>>,
    ignored: Option<Spanned<toml::Value>>,
    skipped: Option<Spanned<toml::Value>>,
    shell: Option<Spanned<bool>>,
}

/// `pkgpaths`: a list of ports, or the name of a file with one port per
/// line (`#` comments).
fn pkgpaths(
    at: &Locator,
    base_dir: &Path,
    raw: Option<Spanned<toml::Value>>,
) -> Result<Option<Vec<crate::ports::Origin>>> {
    let parse = |text: &str| crate::ports::Origin::parse(text);
    let Some(raw) = raw else { return Ok(None) };
    match raw.get_ref() {
        toml::Value::Array(list) => list
            .iter()
            .map(|entry| match entry.as_str() {
                Some(text) => parse(text).map_err(|e| at.error("pkgpaths", &raw, e)),
                None => Err(at.error("pkgpaths", &raw, format!("{entry} is not a port name"))),
            })
            .collect::<Result<Vec<_>>>()
            .map(Some),
        toml::Value::String(file) => {
            let path = base_dir.join(file);
            let text = std::fs::read_to_string(&path)
                .map_err(|e| at.error("pkgpaths", &raw, format!("cannot read {}: {e}", path.display())))?;
            let mut origins = Vec::new();
            for (number, line) in text.lines().enumerate() {
                let line = line.split('#').next().unwrap_or("").trim();
                if !line.is_empty() {
                    origins
                        .push(parse(line).map_err(|e| anyhow::anyhow!("{} line {}: {e}", path.display(), number + 1))?);
                }
            }
            Ok(Some(origins))
        }
        other => {
            Err(at.error("pkgpaths", &raw, format!("must be a list of ports or a file name, not {}", other.type_str())))
        }
    }
}

macro_rules! overlay {
    ($base:expr, $top:expr, $($field:ident),*) => {
        $( if $top.$field.is_some() { $base.$field = $top.$field; } )*
    };
}

impl RawSettings {
    fn overlay(mut self, top: RawSettings) -> RawSettings {
        overlay!(
            self,
            top,
            throttle,
            ports_dir,
            system_path,
            build_base,
            packages_dir,
            distfiles_dir,
            logs_dir,
            database_path,
            workers,
            jobs,
            make_jobs,
            memory_budget,
            make_program,
            build_user,
            tmpfs_size,
            phase_timeouts,
            silent_timeout,
            make_conf,
            fetch_jobs,
            fetch_retries,
            fetch_retry_delay,
            memory_limit,
            max_processes,
            max_log_size,
            scan_timeout,
            package_size_limit,
            setuid_ports,
            fetch_local_hosts,
            distfile_mirrors,
            fetch_upstream,
            framework,
            bootstrap_kit,
            pkgpaths,
            mk_conf,
            bootstrap_env,
            bootstrap_timeout,
            work_dir,
            disk_work_size,
            hooks,
            hook_timeout,
            executor,
            slurm
        );
        self
    }
}

/// Where the config comes from, in the order DESIGN.md fixes.
pub fn locate(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(path) = explicit {
        return Ok(path.to_path_buf());
    }
    if let Some(path) = std::env::var_os(ENV_CONFIG).filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(path));
    }
    let candidates = [PathBuf::from(LOCAL_CONFIG), PathBuf::from(SYSTEM_CONFIG)];
    candidates.iter().find(|p| p.is_file()).cloned().with_context(|| {
        format!(
            "no config file found (looked for --config, ${ENV_CONFIG}, ./{LOCAL_CONFIG}, {SYSTEM_CONFIG}); \
             create one with `portsynth init`"
        )
    })
}

/// Reads, parses and validates a config file.
pub fn load(file: &Path, profile: Option<&str>) -> Result<Config> {
    let text = std::fs::read_to_string(file).with_context(|| format!("cannot read config file {}", file.display()))?;
    let file = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
    parse(&text, &file, profile)
}

/// Parses config text as if it came from `file` (relative paths are relative
/// to the file's directory).
pub fn parse(text: &str, file: &Path, profile: Option<&str>) -> Result<Config> {
    let mut raw: RawSettings =
        toml::from_str(text).map_err(|e| anyhow::anyhow!("config {}: {}", file.display(), e.to_string().trim_end()))?;
    let profiles = raw.profile.take().unwrap_or_default();
    let at = Locator { text, file };
    for (name, section) in &profiles {
        if section.get_ref().profile.is_some() {
            bail!("{}: profile '{name}' may not contain profiles", at.line_of(section.span()));
        }
    }
    let (profile, settings) = match profile {
        None => (None, raw),
        Some(name) => {
            let section = profiles.get(name).with_context(|| {
                let known: Vec<&str> = profiles.keys().map(String::as_str).collect();
                format!(
                    "config {}: no profile '{name}' (profiles defined: {})",
                    file.display(),
                    if known.is_empty() { "none".to_string() } else { known.join(", ") }
                )
            })?;
            (Some(name.to_string()), raw.overlay(section.get_ref().clone()))
        }
    };
    validate(settings, &at, profile)
}

/// Turns a span into "config FILE line N: " for error messages.
struct Locator<'a> {
    text: &'a str,
    file: &'a Path,
}

impl Locator<'_> {
    fn line_of(&self, span: std::ops::Range<usize>) -> String {
        let line = self.text[..span.start.min(self.text.len())].matches('\n').count() + 1;
        format!("config {} line {line}", self.file.display())
    }

    fn error<T>(&self, key: &str, value: &Spanned<T>, message: impl std::fmt::Display) -> anyhow::Error {
        anyhow::anyhow!("{}: {key}: {message}", self.line_of(value.span()))
    }

    /// [`error`](Self::error) for a value that may be a default: without a
    /// span the message names the key and the file.
    fn error_at(&self, key: &str, span: Option<Range<usize>>, message: impl std::fmt::Display) -> anyhow::Error {
        match span {
            Some(span) => anyhow::anyhow!("{}: {key}: {message}", self.line_of(span)),
            None => anyhow::anyhow!("config {}: {key} (not set, the default): {message}", self.file.display()),
        }
    }

    /// " (line N)" or " (default)", for naming a second value in a message.
    fn where_is(&self, span: &Option<Range<usize>>) -> String {
        match span {
            Some(span) => {
                let line = self.text[..span.start.min(self.text.len())].matches('\n').count() + 1;
                format!(" (line {line})")
            }
            None => " (default)".to_string(),
        }
    }
}

fn validate(raw: RawSettings, at: &Locator, profile: Option<String>) -> Result<Config> {
    let base_dir = at.file.parent().unwrap_or(Path::new("/")).to_path_buf();
    let path = |value: Option<Spanned<PathBuf>>| value.map(|v| base_dir.join(v.into_inner()));
    let span = |value: &Option<Spanned<PathBuf>>| value.as_ref().map(Spanned::span);
    let base_span = span(&raw.build_base);
    // A default under build_base is reported at build_base's line.
    let under = |value: &Option<Spanned<PathBuf>>| (span(value).or(base_span.clone()), value.is_none());
    let dir_spans = [
        ("ports_dir", (span(&raw.ports_dir), false)),
        ("build_base", (base_span.clone(), false)),
        ("packages_dir", under(&raw.packages_dir)),
        ("distfiles_dir", under(&raw.distfiles_dir)),
        ("logs_dir", under(&raw.logs_dir)),
        ("database_path", under(&raw.database_path)),
    ];
    let user_span = raw.build_user.as_ref().map(Spanned::span);
    let build_base = path(raw.build_base).unwrap_or_else(|| PathBuf::from("/var/cache/portsynth"));
    let under_base = |value, default: &str| path(value).unwrap_or_else(|| build_base.join(default));

    let (ports_dir, detected) = match &raw.ports_dir {
        Some(value) => {
            let dir = base_dir.join(value.get_ref());
            let kind = crate::framework::detect(&dir).map_err(|e| at.error("ports_dir", value, format!("{e:#}")))?;
            (dir, kind)
        }
        None => {
            let dir = PathBuf::from("/usr/ports");
            let kind = crate::framework::detect(&dir).map_err(|e| {
                anyhow::anyhow!("config {}: ports_dir is not set and the default {e:#}", at.file.display())
            })?;
            (dir, kind)
        }
    };
    let framework = match &raw.framework {
        None => detected,
        Some(value) => {
            let kind = crate::framework::Kind::from_name(value.get_ref()).ok_or_else(|| {
                at.error("framework", value, format!("unknown framework '{}' (bundled or pkgsrc)", value.get_ref()))
            })?;
            if !ports_dir.join(kind.marker()).is_file() {
                return Err(at.error(
                    "framework",
                    value,
                    format!("{} has no {}: it is not a {kind} tree", ports_dir.display(), kind.marker()),
                ));
            }
            kind
        }
    };
    let cpus = cpus();
    let ram = machine_memory();
    let executor = executor(at, raw.executor)?;
    // With Slurm, `workers` (jobs kept submitted), `jobs` (the cluster's
    // cores) and `memory_budget` (its memory) describe the cluster, not
    // this host.
    let cluster = executor == ExecutorKind::Slurm;
    let count = |key: &str, value: Option<Spanned<i64>>| -> Result<Option<usize>> {
        if cluster {
            positive(at, key, value)
        } else {
            at_most_jobs(at, key, value)
        }
    };
    let workers = count("workers", raw.workers)?.unwrap_or(cpus);
    let tmpfs_size = match raw.tmpfs_size {
        Some(v) => size_at_most(at, "tmpfs_size", &v, ram)?,
        None => default_tmpfs_size(ram, workers),
    };
    let memory_limit = match raw.memory_limit {
        Some(v) => size_at_most(at, "memory_limit", &v, ram)?,
        None => default_memory_limit(ram, workers),
    };
    let memory_budget = match raw.memory_budget {
        Some(v) if cluster => parse_size(v.get_ref()).map_err(|e| at.error("memory_budget", &v, e))?,
        Some(v) => size_at_most(at, "memory_budget", &v, ram)?,
        None => ram,
    };
    let max_log_size = match raw.max_log_size {
        Some(v) => parse_size(v.get_ref()).map_err(|e| at.error("max_log_size", &v, e))?,
        None => DEFAULT_MAX_LOG_SIZE,
    };
    let package_size_limit = match raw.package_size_limit {
        Some(v) => parse_size(v.get_ref()).map_err(|e| at.error("package_size_limit", &v, e))?,
        None => tmpfs_size,
    };

    let packages_dir = under_base(raw.packages_dir, "packages");
    let distfiles_dir = under_base(raw.distfiles_dir, "distfiles");
    let shared = SharedPaths { ports_dir: &ports_dir, packages_dir: &packages_dir, distfiles_dir: &distfiles_dir };
    let slurm = slurm(at, &base_dir, raw.slurm.unwrap_or_default(), &shared, &build_base)?;
    let config = Config {
        file: at.file.to_path_buf(),
        profile,
        ports_dir,
        system_path: path(raw.system_path).unwrap_or_else(|| PathBuf::from("/")),
        packages_dir,
        distfiles_dir,
        logs_dir: under_base(raw.logs_dir, "logs"),
        database_path: under_base(raw.database_path, "builddb.sqlite"),
        build_base,
        workers,
        jobs: count("jobs", raw.jobs)?.unwrap_or(cpus),
        make_jobs: at_most_jobs(at, "make_jobs", raw.make_jobs)?,
        memory_budget,
        make_program: non_empty(at, "make_program", raw.make_program)?.unwrap_or_else(|| DEFAULT_MAKE_PROGRAM.into()),
        build_user: non_empty(at, "build_user", raw.build_user)?.unwrap_or_else(|| "nobody".into()),
        tmpfs_size,
        phase_timeouts: phase_timeouts(at, raw.phase_timeouts)?,
        silent_timeout: Duration::from_secs(positive(at, "silent_timeout", raw.silent_timeout)?.unwrap_or(7200) as u64),
        make_conf: make_conf(at, raw.make_conf)?,
        fetch_jobs: at_most_jobs(at, "fetch_jobs", raw.fetch_jobs)?.unwrap_or_else(|| default_fetch_jobs(cpus)),
        fetch_retries: match raw.fetch_retries {
            Some(v) if !(0..=100).contains(v.get_ref()) => {
                return Err(at.error("fetch_retries", &v, format!("must be between 0 and 100, not {}", v.get_ref())))
            }
            Some(v) => *v.get_ref() as u32,
            None => 3,
        },
        fetch_retry_delay: match raw.fetch_retry_delay {
            Some(v) if !(0.0..=3600.0).contains(v.get_ref()) => {
                return Err(at.error(
                    "fetch_retry_delay",
                    &v,
                    format!("must be between 0 and 3600 seconds, not {}", v.get_ref()),
                ))
            }
            Some(v) => Duration::from_secs_f64(*v.get_ref()),
            None => DEFAULT_FETCH_RETRY_DELAY,
        },
        memory_limit,
        max_processes: positive(at, "max_processes", raw.max_processes)?.map_or(DEFAULT_MAX_PROCESSES, |n| n as u64),
        max_log_size,
        scan_timeout: positive(at, "scan_timeout", raw.scan_timeout)?
            .map_or(framework.framework().default_scan_timeout(), |n| Duration::from_secs(n as u64)),
        package_size_limit,
        setuid_ports: raw.setuid_ports.unwrap_or_default().into_iter().map(Spanned::into_inner).collect(),
        fetch_local_hosts: raw.fetch_local_hosts.unwrap_or_default().into_iter().map(Spanned::into_inner).collect(),
        distfile_mirrors: distfile_mirrors(at, &raw.distfile_mirrors)?,
        fetch_upstream: raw.fetch_upstream.is_none_or(Spanned::into_inner),
        mk_conf: match raw.mk_conf {
            Some(lines) if framework != crate::framework::Kind::Pkgsrc => {
                return Err(at.error("mk_conf", &lines, "mk.conf lines are for pkgsrc trees; use [make_conf] here"))
            }
            other => other.map(Spanned::into_inner),
        },
        throttle: raw.throttle.is_none_or(Spanned::into_inner),
        pkgpaths: pkgpaths(at, &base_dir, raw.pkgpaths)?,
        framework,
        bootstrap_kit: match raw.bootstrap_kit {
            Some(kit) if !base_dir.join(kit.get_ref()).is_file() => {
                return Err(at.error(
                    "bootstrap_kit",
                    &kit,
                    format!("{} is not a file", base_dir.join(kit.get_ref()).display()),
                ))
            }
            Some(kit) => Some(base_dir.join(kit.into_inner())),
            None => None,
        },
        bootstrap_env: bootstrap_env(at, raw.bootstrap_env)?,
        bootstrap_timeout: Duration::from_secs(
            positive(at, "bootstrap_timeout", raw.bootstrap_timeout)?
                .map_or(DEFAULT_BOOTSTRAP_TIMEOUT_SECS, |n| n as u64),
        ),
        work_dir: work_dir(at, raw.work_dir)?,
        disk_work_size: disk_work_size(at, raw.disk_work_size)?,
        hooks: hooks(at, raw.hooks, raw.hook_timeout)?,
        executor,
        slurm,
    };
    let paths = [
        &config.ports_dir,
        &config.build_base,
        &config.packages_dir,
        &config.distfiles_dir,
        &config.logs_dir,
        &config.database_path,
    ];
    let dirs: Vec<DirSetting> = dir_spans
        .into_iter()
        .zip(paths)
        .map(|((key, (span, derived)), path)| DirSetting::new(key, path, span, derived))
        .collect();
    check_dirs(at, &dirs, &config.system_path)?;
    if config.executor == ExecutorKind::Slurm && config.slurm.outbox_dir.starts_with(&config.packages_dir) {
        bail!(
            "config {}: slurm.outbox_dir {} is inside packages_dir: the nodes would write into the repository",
            at.file.display(),
            config.slurm.outbox_dir.display()
        );
    }
    check_build_user(at, user_span, &config.build_user, &config.system_path)?;
    Ok(config)
}

/// `[hooks]` and `hook_timeout`. A string is a shell command and needs
/// `shell = true`: without it a hook never goes through a shell.
fn hooks(at: &Locator, raw: Option<RawHooks>, timeout: Option<Spanned<i64>>) -> Result<crate::hooks::HookSettings> {
    use crate::hooks::{Hook, HookCommand, HookSettings};
    let timeout =
        positive(at, "hook_timeout", timeout)?.map_or(crate::hooks::DEFAULT_TIMEOUT, |n| Duration::from_secs(n as u64));
    let Some(raw) = raw else { return Ok(HookSettings { commands: BTreeMap::new(), timeout }) };
    let shell = raw.shell.as_ref().is_some_and(|s| *s.get_ref());
    let mut commands = BTreeMap::new();
    let written = [
        (Hook::RunStart, raw.run_start),
        (Hook::RunEnd, raw.run_end),
        (Hook::Success, raw.success),
        (Hook::Failure, raw.failure),
        (Hook::Ignored, raw.ignored),
        (Hook::Skipped, raw.skipped),
    ];
    for (hook, value) in written {
        let Some(value) = value else { continue };
        let key = format!("hooks.{}", hook.key());
        let command = match value.get_ref() {
            toml::Value::Array(items) => {
                let words: Option<Vec<String>> = items.iter().map(|i| i.as_str().map(str::to_string)).collect();
                match words {
                    Some(words) if words.first().is_some_and(|w| !w.is_empty()) => HookCommand::Exec(words),
                    Some(_) => return Err(at.error(&key, &value, "needs a program: [\"/path/prog\", \"arg\", ...]")),
                    None => return Err(at.error(&key, &value, "every word of the command must be a string")),
                }
            }
            toml::Value::String(text) if shell && !text.trim().is_empty() => HookCommand::Shell(text.clone()),
            toml::Value::String(_) if shell => return Err(at.error(&key, &value, "the shell command is empty")),
            toml::Value::String(_) => {
                return Err(at.error(
                    &key,
                    &value,
                    "a string is a shell command: write the command as a list of words ([\"/path/prog\", \"arg\"]), \
                     or set shell = true in [hooks] to run strings with /bin/sh -c",
                ))
            }
            other => {
                return Err(at.error(
                    &key,
                    &value,
                    format!("must be a list of words or a string, not {}", other.type_str()),
                ))
            }
        };
        commands.insert(hook, command);
    }
    Ok(HookSettings { commands, timeout })
}

/// `distfile_mirrors`: each a base URL portsynth can fetch from.
fn distfile_mirrors(at: &Locator, mirrors: &Option<Vec<Spanned<String>>>) -> Result<Vec<String>> {
    let list = mirrors.as_deref().unwrap_or_default();
    for mirror in list {
        crate::sandbox::download::check_mirror(mirror.get_ref())
            .map_err(|e| at.error("distfile_mirrors", mirror, format!("{e:#}")))?;
    }
    Ok(list.iter().map(|m| m.get_ref().clone()).collect())
}

/// The CPUs this process may use (at least 1).
pub fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The most `workers`, `jobs`, `fetch_jobs` and `make_jobs` (and `--workers`,
/// `--fetch-jobs`) may be: 4 per CPU. More only thrashes the machine.
pub fn max_jobs() -> usize {
    4 * cpus()
}

/// "must be at most 8 (4 per CPU, 2 CPUs), not 9" when `n` is too large.
pub fn check_jobs(n: usize) -> std::result::Result<usize, String> {
    if n > max_jobs() {
        return Err(format!("must be at most {} (4 per CPU, {} CPUs), not {n}", max_jobs(), cpus()));
    }
    Ok(n)
}

/// A positive job count no larger than [`max_jobs`].
fn at_most_jobs(at: &Locator, key: &str, value: Option<Spanned<i64>>) -> Result<Option<usize>> {
    let Some(n) = positive(at, key, value.clone())? else { return Ok(None) };
    check_jobs(n).map(Some).map_err(|e| at.error(key, value.as_ref().expect("a value was read"), e))
}

/// One of the six directory settings, for the overlap checks: the path as
/// configured (made absolute and lexically normal) and as it resolves on
/// disk (symlinks of its existing part followed), so a symlink cannot hide
/// an overlap.
struct DirSetting {
    key: &'static str,
    lexical: PathBuf,
    resolved: PathBuf,
    span: Option<Range<usize>>,
    /// Not in the file: the default under build_base (`span` is build_base's).
    derived: bool,
}

impl DirSetting {
    fn new(key: &'static str, path: &Path, span: Option<Range<usize>>, derived: bool) -> DirSetting {
        let lexical = lexical_normal(path);
        let resolved = resolve_existing(&lexical);
        DirSetting { key, lexical, resolved, span, derived }
    }

    /// `self` is `other` or lies below it.
    fn within(&self, other: &DirSetting) -> bool {
        self.lexical.starts_with(&other.lexical) || self.resolved.starts_with(&other.resolved)
    }

    fn same(&self, other: &DirSetting) -> bool {
        self.lexical == other.lexical || self.resolved == other.resolved
    }

    fn shown(&self) -> String {
        let mut text = self.lexical.display().to_string();
        if self.lexical != self.resolved {
            text.push_str(&format!(" (-> {})", self.resolved.display()));
        }
        if self.derived {
            text.push_str(" (the default, under build_base)");
        }
        text
    }
}

/// Absolute, without `.` and with `..` applied to the path text.
fn lexical_normal(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut out = PathBuf::from("/");
    for component in absolute.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(name) => out.push(name),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// The longest existing ancestor canonicalized, the rest appended.
fn resolve_existing(path: &Path) -> PathBuf {
    let mut existing = path.to_path_buf();
    let mut rest = Vec::new();
    loop {
        if let Ok(real) = existing.canonicalize() {
            return rest.iter().rev().fold(real, |acc: PathBuf, name: &std::ffi::OsString| acc.join(name));
        }
        match (existing.file_name().map(|n| n.to_os_string()), existing.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name);
                existing = parent.to_path_buf();
            }
            _ => return path.to_path_buf(),
        }
    }
}

/// Directories a build base must not be (nor contain): the host's system
/// directories, and the same under `system_path`.
const SYSTEM_DIRS: &[&str] = &[
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/home",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/libexec",
    "/media",
    "/mnt",
    "/opt",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/srv",
    "/sys",
    "/tmp",
    "/usr",
    "/usr/bin",
    "/usr/include",
    "/usr/lib",
    "/usr/lib32",
    "/usr/lib64",
    "/usr/libexec",
    "/usr/local",
    "/usr/sbin",
    "/usr/share",
    "/var",
    "/var/cache",
    "/var/db",
    "/var/lib",
    "/var/log",
    "/var/mail",
    "/var/spool",
    "/var/tmp",
];

/// The overlap rules: nothing is `/`; the build base is no system directory
/// (nor above one); the distfiles, packages, logs and database are neither
/// in, nor equal to, nor above the ports tree; the distfiles directory (whose
/// unreferenced files purge-distfiles deletes) holds none of the others;
/// packages and logs are apart.
fn check_dirs(at: &Locator, dirs: &[DirSetting], system_path: &Path) -> Result<()> {
    let get = |key: &str| dirs.iter().find(|d| d.key == key).expect("every directory key");
    let fail = |subject: &DirSetting, message: String| at.error_at(subject.key, subject.span.clone(), message);
    let other = |d: &DirSetting| format!("{} {}{}", d.key, d.shown(), at.where_is(&d.span));
    for dir in dirs {
        if dir.lexical == Path::new("/") || dir.resolved == Path::new("/") {
            return Err(fail(dir, format!("{} is the root directory /", dir.shown())));
        }
    }
    let base = get("build_base");
    let system_root = lexical_normal(system_path);
    let mut systems = Vec::new();
    for system in SYSTEM_DIRS {
        systems.push(PathBuf::from(system));
        if system_root != Path::new("/") {
            systems.push(system_root.join(system.trim_start_matches('/')));
        }
    }
    // The exact match first: with a merged /usr, /bin resolves into /usr.
    let exact = systems.iter().find(|s| **s == base.lexical || resolve_existing(s) == base.resolved);
    let above =
        systems.iter().find(|s| s.starts_with(&base.lexical) || resolve_existing(s).starts_with(&base.resolved));
    if let Some(system) = exact.or(above) {
        let what = if exact.is_some() { "is" } else { "contains" };
        return Err(fail(
            base,
            format!(
                "{} {what} the system directory {}; use a directory of its own such as /var/cache/portsynth",
                base.shown(),
                system.display()
            ),
        ));
    }
    let ports = get("ports_dir");
    for key in ["distfiles_dir", "packages_dir", "logs_dir", "database_path"] {
        let dir = get(key);
        if dir.same(ports) {
            return Err(fail(dir, format!("{} is the same as {}", dir.shown(), other(ports))));
        }
        if dir.within(ports) {
            return Err(fail(dir, format!("{} is inside {}", dir.shown(), other(ports))));
        }
        if ports.within(dir) {
            return Err(fail(dir, format!("{} contains {}", dir.shown(), other(ports))));
        }
    }
    let distfiles = get("distfiles_dir");
    for key in ["build_base", "packages_dir", "logs_dir", "database_path"] {
        let dir = get(key);
        if dir.within(distfiles) {
            let what = if dir.same(distfiles) { "is the same as" } else { "contains" };
            return Err(fail(
                distfiles,
                format!(
                    "{} {what} {} (purge-distfiles deletes every file in it that no port references)",
                    distfiles.shown(),
                    other(dir)
                ),
            ));
        }
    }
    let (packages, logs) = (get("packages_dir"), get("logs_dir"));
    if logs.within(packages) || packages.within(logs) {
        let what = if logs.same(packages) {
            "is the same as"
        } else if logs.within(packages) {
            "is inside"
        } else {
            "contains"
        };
        return Err(fail(logs, format!("{} {what} {}", logs.shown(), other(packages))));
    }
    Ok(())
}

/// The build user must exist in the sandbox's passwd (`system_path/etc/passwd`)
/// and must not be root: every phase after checksum runs as this user.
fn check_build_user(at: &Locator, span: Option<Range<usize>>, user: &str, system_path: &Path) -> Result<()> {
    let passwd = system_path.join("etc/passwd");
    let text = std::fs::read_to_string(&passwd).map_err(|e| {
        at.error_at("build_user", span.clone(), format!("cannot read {} to look up '{user}': {e}", passwd.display()))
    })?;
    let uid = text.lines().find_map(|line| {
        let mut fields = line.split(':');
        (fields.next() == Some(user)).then(|| fields.nth(1).unwrap_or("").trim().to_string())
    });
    match uid.as_deref().map(str::parse::<u32>) {
        None => Err(at.error_at("build_user", span, format!("no user '{user}' in {}", passwd.display()))),
        Some(Err(_)) => {
            Err(at.error_at("build_user", span, format!("'{user}' has no valid uid in {}", passwd.display())))
        }
        Some(Ok(0)) => Err(at.error_at(
            "build_user",
            span,
            format!("'{user}' has uid 0 in {}: the build phases must not run as root", passwd.display()),
        )),
        Some(Ok(_)) => Ok(()),
    }
}

pub const DEFAULT_MAX_PROCESSES: u64 = 4096;
pub const DEFAULT_MAKE_PROGRAM: &str = "bmake";
pub const DEFAULT_MAX_LOG_SIZE: u64 = 256 << 20;

/// Physical memory of this machine (`MemTotal`), or 1 GiB if unreadable.
pub fn machine_memory() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(1 << 30, |kib| kib << 10)
}

/// Every sandbox has three tmpfs of `tmpfs_size` (`/construction`,
/// `/usr/local`, `/tmp`): sized so that all of them on every worker
/// together cannot exceed the machine's memory.
pub fn default_tmpfs_size(ram: u64, workers: usize) -> u64 {
    (ram / (3 * workers.max(1) as u64)).max(64 << 20) >> 20 << 20
}

/// A fair share of the memory per worker, at least 256 MiB.
pub fn default_memory_limit(ram: u64, workers: usize) -> u64 {
    (ram / workers.max(1) as u64).max(256 << 20) >> 20 << 20
}

fn size_at_most(at: &Locator, key: &str, value: &Spanned<String>, ram: u64) -> Result<u64> {
    let size = parse_size(value.get_ref()).map_err(|e| at.error(key, value, e))?;
    if size > ram {
        return Err(at.error(
            key,
            value,
            format!("{} is more than this machine's memory ({} MiB)", value.get_ref(), ram >> 20),
        ));
    }
    Ok(size)
}

/// Downloads wait on the network, not the CPU: a few per CPU, capped so a
/// big host does not open hundreds of connections to one mirror.
pub fn default_fetch_jobs(cpus: usize) -> usize {
    (4 * cpus).clamp(1, 64)
}

/// Base delay of fetch-only's exponential backoff.
pub const DEFAULT_FETCH_RETRY_DELAY: Duration = Duration::from_secs(2);

fn positive(at: &Locator, key: &str, value: Option<Spanned<i64>>) -> Result<Option<usize>> {
    match value {
        Some(v) if *v.get_ref() < 1 => Err(at.error(key, &v, format!("must be at least 1, not {}", v.get_ref()))),
        Some(v) => Ok(Some(*v.get_ref() as usize)),
        None => Ok(None),
    }
}

fn work_dir(at: &Locator, value: Option<Spanned<String>>) -> Result<WorkDir> {
    match value.as_ref().map(|v| v.get_ref().as_str()) {
        None | Some("auto") => Ok(WorkDir::Auto),
        Some("tmpfs") => Ok(WorkDir::Tmpfs),
        Some("disk") => Ok(WorkDir::Disk),
        Some(other) => {
            let v = value.as_ref().expect("set");
            Err(at.error("work_dir", v, format!("'{other}' is not a work area (tmpfs, disk or auto)")))
        }
    }
}

fn executor(at: &Locator, value: Option<Spanned<String>>) -> Result<ExecutorKind> {
    match value.as_ref().map(|v| v.get_ref().as_str()) {
        None | Some("local") => Ok(ExecutorKind::Local),
        Some("slurm") => Ok(ExecutorKind::Slurm),
        Some(other) => {
            let v = value.as_ref().expect("set");
            Err(at.error("executor", v, format!("'{other}' is not an executor (local or slurm)")))
        }
    }
}

/// The coordinator's shared directories: what the nodes see them as when
/// `[slurm]` does not say otherwise.
struct SharedPaths<'a> {
    ports_dir: &'a Path,
    packages_dir: &'a Path,
    distfiles_dir: &'a Path,
}

/// `[slurm]`, its node paths absolute (they name places on other hosts,
/// never relative to this file) and defaulting to the coordinator's own:
/// one file system shared by all. The outboxes default to
/// `build_base/slurm-outbox`.
fn slurm(
    at: &Locator,
    base_dir: &Path,
    raw: RawSlurm,
    shared: &SharedPaths,
    build_base: &Path,
) -> Result<SlurmSettings> {
    let node_path = |key: &str, value: Option<Spanned<PathBuf>>, default: &Path| -> Result<PathBuf> {
        match value {
            Some(v) if !v.get_ref().is_absolute() => {
                Err(at.error(&format!("slurm.{key}"), &v, "must be an absolute path (as the nodes see it)"))
            }
            Some(v) => Ok(v.into_inner()),
            None => Ok(default.to_path_buf()),
        }
    };
    let text = |key: &str, value: Option<Spanned<String>>| non_empty(at, &format!("slurm.{key}"), value);
    let outbox_dir = raw.outbox_dir.map_or_else(|| build_base.join("slurm-outbox"), |v| base_dir.join(v.into_inner()));
    let binary = match raw.binary {
        Some(v) if !v.get_ref().is_absolute() => {
            return Err(at.error("slurm.binary", &v, "must be an absolute path (as the nodes see it)"))
        }
        other => other.map(Spanned::into_inner),
    };
    Ok(SlurmSettings {
        command_prefix: raw.command_prefix.unwrap_or_default(),
        partition: text("partition", raw.partition)?,
        constraint: text("constraint", raw.constraint)?,
        sbatch_args: raw.sbatch_args.unwrap_or_default(),
        binary,
        config: node_path("config", raw.config, at.file)?,
        ports_dir: node_path("ports_dir", raw.ports_dir, shared.ports_dir)?,
        packages_dir: node_path("packages_dir", raw.packages_dir, shared.packages_dir)?,
        distfiles_dir: node_path("distfiles_dir", raw.distfiles_dir, shared.distfiles_dir)?,
        node_outbox_dir: node_path("node_outbox_dir", raw.node_outbox_dir, &outbox_dir)?,
        outbox_dir,
        node_build_base: node_path("node_build_base", raw.node_build_base, build_base)?,
    })
}

fn disk_work_size(at: &Locator, value: Option<Spanned<String>>) -> Result<u64> {
    let Some(v) = value else { return Ok(DEFAULT_DISK_WORK_SIZE) };
    let size = parse_size(v.get_ref()).map_err(|e| at.error("disk_work_size", &v, e))?;
    let min = crate::sandbox::work_area::MIN_DISK_WORK_SIZE;
    if size < min {
        return Err(at.error("disk_work_size", &v, format!("must be at least {}", format_size(min))));
    }
    Ok(size)
}

fn non_empty(at: &Locator, key: &str, value: Option<Spanned<String>>) -> Result<Option<String>> {
    match value {
        Some(v) if v.get_ref().trim().is_empty() => Err(at.error(key, &v, "must not be empty")),
        Some(v) => Ok(Some(v.into_inner())),
        None => Ok(None),
    }
}

fn phase_timeouts(
    at: &Locator,
    raw: Option<BTreeMap<Spanned<String>, Spanned<i64>>>,
) -> Result<BTreeMap<Phase, Duration>> {
    let mut timeouts: BTreeMap<Phase, Duration> = Phase::ALL.into_iter().map(|p| (p, p.default_timeout())).collect();
    for (name, secs) in raw.unwrap_or_default() {
        let phase = Phase::from_name(name.get_ref()).ok_or_else(|| {
            let known: Vec<&str> = Phase::ALL.iter().map(|p| p.name()).collect();
            at.error(
                &format!("phase_timeouts.{}", name.get_ref()),
                &name,
                format!("unknown phase (phases: {})", known.join(", ")),
            )
        })?;
        let key = format!("phase_timeouts.{}", name.get_ref());
        let secs = positive(at, &key, Some(secs))?.unwrap_or_default();
        timeouts.insert(phase, Duration::from_secs(secs as u64));
    }
    Ok(timeouts)
}

fn make_conf(at: &Locator, raw: Option<BTreeMap<String, Spanned<String>>>) -> Result<BTreeMap<String, String>> {
    let mut vars = BTreeMap::new();
    for (name, value) in raw.unwrap_or_default() {
        let valid = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !valid {
            return Err(at.error(&format!("make_conf.{name}"), &value, "not a valid make variable name"));
        }
        vars.insert(name, value.into_inner());
    }
    Ok(vars)
}

/// `bootstrap_env`: environment variable names only. No dots: the 2014
/// bootstrap runs under `/bin/sh`, and dash drops such variables.
fn bootstrap_env(at: &Locator, raw: Option<BTreeMap<String, Spanned<String>>>) -> Result<BTreeMap<String, String>> {
    let mut vars = BTreeMap::new();
    for (name, value) in raw.unwrap_or_default() {
        let valid = !name.is_empty()
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            && !name.starts_with(|c: char| c.is_ascii_digit());
        if !valid {
            return Err(at.error(&format!("bootstrap_env.{name}"), &value, "not a valid environment variable name"));
        }
        vars.insert(name, value.into_inner());
    }
    Ok(vars)
}

/// Default deadline of `bootstrap-kit` (the 2014 tree takes under 3 min).
pub const DEFAULT_BOOTSTRAP_TIMEOUT_SECS: u64 = 3600;

/// Parses `512M`, `8G`, `1024` (bytes); suffixes K, M, G, T are binary.
pub fn parse_size(text: &str) -> std::result::Result<u64, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    let (digits, suffix) = text.split_at(split);
    let number: u64 = digits.parse().map_err(|_| format!("'{text}' is not a size like 512M or 8G"))?;
    let shift = match suffix.to_ascii_uppercase().trim_end_matches(['B', 'I']) {
        "" => 0,
        "K" => 10,
        "M" => 20,
        "G" => 30,
        "T" => 40,
        _ => return Err(format!("'{text}' has an unknown size suffix '{suffix}' (use K, M, G or T)")),
    };
    if number == 0 {
        return Err(format!("'{text}' must be larger than zero"));
    }
    number.checked_shl(shift).filter(|v| v >> shift == number).ok_or_else(|| format!("'{text}' is too large"))
}

/// `8G`, `512M` or bytes: the shortest exact form `parse_size` reads back.
pub fn format_size(bytes: u64) -> String {
    for (shift, suffix) in [(40, "T"), (30, "G"), (20, "M"), (10, "K")] {
        if bytes >= 1 << shift && bytes.is_multiple_of(1 << shift) {
            return format!("{}{suffix}", bytes >> shift);
        }
    }
    bytes.to_string()
}

/// The commented default config written by `portsynth init`.
pub fn default_config_text(ports_dir: &Path, build_base: &Path) -> String {
    let cpus = cpus();
    let mut text = String::new();
    let _ = write!(
        text,
        r#"# portsynth configuration (TOML). Unknown keys are errors.
# Relative paths are relative to this file's directory.

# The ports tree: category/port/Makefile plus Mk/bsd.port.mk.
ports_dir = "{ports}"
# Root whose /usr, /bin, /sbin, /lib*, /etc are bound read-only into every sandbox.
system_path = "/"
# Slots, database, logs, packages and distfiles live here unless set below.
# None of these may be /, build_base no system directory (/usr, /var, /tmp…);
# distfiles, packages, logs and the database stay out of ports_dir (and it out
# of them), and distfiles_dir holds none of the others (purge-distfiles
# deletes what no port references).
build_base = "{base}"
# packages_dir = "{base}/packages"
# distfiles_dir = "{base}/distfiles"
# logs_dir = "{base}/logs"
# database_path = "{base}/builddb.sqlite"

# Ports built at once (default: number of CPUs), and the cores their make jobs
# share (default: number of CPUs): each build gets make jobs when it starts,
# more on the critical path, as its history says they help; 1 for a port that
# is not parallel-safe. make_jobs fixes the same number for every build
# instead. Each at most 4 per CPU ({max_jobs} here), like fetch_jobs and --workers.
workers = {cpus}
jobs = {cpus}
# make_jobs = 1
# Memory the running builds may expect to use together (their recorded peaks,
# tmpfs included); a build waits until its expectation fits (default: all of
# this machine's memory). A build larger than all of it runs alone.
# memory_budget = "{ram}"
make_program = "bmake"
# Unprivileged user for every phase after checksum; it must exist in
# system_path/etc/passwd and must not have uid 0.
build_user = "nobody"
# Size limit of each sandbox tmpfs (/construction, /usr/local, /tmp); the
# default fits all of them on every worker into this machine's memory.
# tmpfs_size = "{tmpfs}"
# Where each build's work area (/construction, WRKDIRPREFIX) lives: "tmpfs"
# (memory, at most tmpfs_size), "disk" (an ext4 image of its own under
# build_base/work, at most disk_work_size, removed after the build) or
# "auto" (tmpfs unless the port's recorded work area does not fit). A build
# whose tmpfs work area fills up is retried once on disk.
# work_dir = "auto"
# Size of a disk work area; sparse, and never more than each worker's share
# of the free space of build_base's file system (less 2G).
# disk_work_size = "64G"
# Per-sandbox limits (cgroups): memory including tmpfs pages (default: the
# machine's memory divided by workers) and processes.
# memory_limit = "{memory}"
# max_processes = {max_processes}
# A build whose log grows past this is killed.
# max_log_size = "256M"
# Largest expanded size of a package (default: tmpfs_size).
# package_size_limit = "{tmpfs}"
# Ports whose packages may install setuid/setgid files into a sandbox.
# setuid_ports = []
# Seconds one port's metadata query may take (default 60, pkgsrc 600).
# scan_timeout = 60
# Local hosts (loopback, this machine's own addresses) that fetches may
# reach: a local mirror. Everything else local is refused.
# fetch_local_hosts = []
# Base URLs every distfile is tried from first, before the port's own sites,
# with its distinfo key (DIST_SUBDIR/ included) appended, as
# MASTER_SITE_OVERRIDE does; fetch_upstream = false tries only these
# (without mirrors: nothing is downloaded, builds use what distfiles_dir has).
# distfile_mirrors = ["https://distfiles.example.org/distfiles/"]
# fetch_upstream = true
# Seconds `bootstrap-kit` may take (pkgsrc).
# bootstrap_timeout = 3600
# Seconds without any output before a build is killed.
silent_timeout = 7200
# Seconds a hook ([hooks] below) may run before it is killed.
# hook_timeout = 60

# fetch-only: ports fetched at once (default 4 per CPU, at most 64; never
# more than 4 per CPU, {max_jobs} here), extra
# attempts after a failure, and the first retry's delay in seconds (each
# further retry waits twice as long).
# fetch_jobs = {fetch_jobs}
# fetch_retries = 3
# fetch_retry_delay = 2.0

# Per-phase wall-clock limits in seconds (defaults shown).
[phase_timeouts]
"#,
        ports = ports_dir.display(),
        base = build_base.display(),
        fetch_jobs = default_fetch_jobs(cpus),
        max_jobs = max_jobs(),
        tmpfs = format_size(default_tmpfs_size(machine_memory(), cpus)),
        memory = format_size(default_memory_limit(machine_memory(), cpus)),
        ram = format_size(machine_memory()),
        max_processes = DEFAULT_MAX_PROCESSES,
    );
    for phase in Phase::ALL {
        let _ = writeln!(text, "# {} = {}", phase.name(), phase.default_timeout().as_secs());
    }
    text.push_str(
        r#"
# Extra make variables passed to every make invocation (part of every port's build key).
[make_conf]
# CFLAGS = "-O2 -pipe"

# pkgsrc: environment of `portsynth bootstrap-kit`'s run of the tree's
# bootstrap (part of the kit's cache key; names without dots). What the
# 2014 tree needs on Debian 12:
[bootstrap_env]
# SH = "/bin/bash"
# CFLAGS = "-O2 -fcommon"
# NOGCCERROR = "yes"
# PREFER_PKGSRC = "openssl"
# NBCOMPAT_CONFIGURE_ARGS = "--enable-db"

# Commands run at a run's start and end and for each port's outcome, facts
# in PORTSYNTH_* variables (README, "Hooks"). A list runs without a shell;
# a string runs with /bin/sh -c only with shell = true. A failing or slow
# hook is a notice, never a change to the run.
[hooks]
# run_end = ["/usr/local/bin/notify-run", "--quiet"]
# failure = "mail -s \"$PORTSYNTH_ORIGIN failed\" root < \"$PORTSYNTH_LOG\""
# shell = true

# Profiles override the settings above: portsynth --profile quick ...
# [profile.quick]
# workers = 1
"#,
    );
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("ports/Mk")).unwrap();
        std::fs::write(dir.path().join("ports/Mk/bsd.port.mk"), "").unwrap();
        dir
    }

    fn parse_in(dir: &Path, text: &str, profile: Option<&str>) -> Result<Config> {
        parse(text, &dir.join("portsynth.toml"), profile)
    }

    fn error_in(dir: &Path, text: &str) -> String {
        format!("{:#}", parse_in(dir, text, None).expect_err(text))
    }

    #[test]
    fn defaults_are_relative_to_build_base_and_file() {
        let dir = tree();
        let config = parse_in(dir.path(), "ports_dir = \"ports\"\nbuild_base = \"base\"\n", None).unwrap();
        assert_eq!(config.ports_dir, dir.path().join("ports"));
        assert_eq!(config.build_base, dir.path().join("base"));
        assert_eq!(config.packages_dir, dir.path().join("base/packages"));
        assert_eq!(config.distfiles_dir, dir.path().join("base/distfiles"));
        assert_eq!(config.logs_dir, dir.path().join("base/logs"));
        assert_eq!(config.database_path, dir.path().join("base/builddb.sqlite"));
        assert_eq!(config.make_program, "bmake");
        assert_eq!(config.build_user, "nobody");
        assert_eq!((config.make_jobs, config.jobs, config.memory_budget), (None, cpus(), machine_memory()));
        assert!(config.workers >= 1);
        assert_eq!(config.tmpfs_size, default_tmpfs_size(machine_memory(), config.workers));
        assert!(config.tmpfs_size * 3 * config.workers as u64 <= machine_memory());
        assert_eq!(config.memory_limit, default_memory_limit(machine_memory(), config.workers));
        assert_eq!(config.max_log_size, DEFAULT_MAX_LOG_SIZE);
        assert_eq!(config.scan_timeout, Duration::from_secs(60));
        assert_eq!(config.package_size_limit, config.tmpfs_size);
        assert!(config.throttle);
        assert_eq!(config.phase_timeout(Phase::Build), Duration::from_secs(86400));
        assert_eq!(config.silent_timeout, Duration::from_secs(7200));
        assert_eq!(config.fetch_jobs, default_fetch_jobs(std::thread::available_parallelism().map_or(1, |n| n.get())));
        assert_eq!(config.fetch_retries, 3);
        assert_eq!(config.fetch_retry_delay, DEFAULT_FETCH_RETRY_DELAY);
    }

    #[test]
    fn slurm_settings_default_to_the_coordinators_paths() {
        let dir = tree();
        let c = parse_in(dir.path(), "ports_dir = \"ports\"\nbuild_base = \"base\"\n", None).unwrap();
        assert_eq!(c.executor, ExecutorKind::Local);
        assert_eq!(c.slurm.outbox_dir, dir.path().join("base/slurm-outbox"));
        assert_eq!(c.slurm.node_outbox_dir, c.slurm.outbox_dir);
        assert_eq!((&c.slurm.ports_dir, &c.slurm.packages_dir), (&c.ports_dir, &c.packages_dir));
        assert_eq!((&c.slurm.node_build_base, &c.slurm.config), (&c.build_base, &c.file));
        assert_eq!(c.slurm.binary, None);
    }

    #[test]
    fn slurm_settings_are_read_and_checked() {
        let dir = tree();
        let text = "ports_dir = \"ports\"\nexecutor = \"slurm\"\nworkers = 500\njobs = 4000\n\
                    [slurm]\ncommand_prefix = [\"nsenter\", \"--net=/proc/1/ns/net\"]\npartition = \"builds\"\n\
                    constraint = \"ssd\"\nsbatch_args = [\"--exclusive\"]\nbinary = \"/shared/bin/portsynth\"\n\
                    ports_dir = \"/shared/ports\"\nnode_build_base = \"/scratch/portsynth\"\n\
                    outbox_dir = \"outbox\"\nnode_outbox_dir = \"/shared/outbox\"\n";
        let c = parse_in(dir.path(), text, None).unwrap();
        assert_eq!(c.executor, ExecutorKind::Slurm);
        assert_eq!((c.workers, c.jobs), (500, 4000), "a cluster's counts are not this host's");
        assert_eq!(c.slurm.command_prefix, ["nsenter", "--net=/proc/1/ns/net"]);
        assert_eq!((c.slurm.partition.as_deref(), c.slurm.constraint.as_deref()), (Some("builds"), Some("ssd")));
        assert_eq!(c.slurm.sbatch_args, ["--exclusive"]);
        assert_eq!(c.slurm.binary.as_deref(), Some(Path::new("/shared/bin/portsynth")));
        assert_eq!(c.slurm.ports_dir, Path::new("/shared/ports"));
        assert_eq!(c.slurm.outbox_dir, dir.path().join("outbox"));
        assert_eq!(c.slurm.node_outbox_dir, Path::new("/shared/outbox"));
        assert_eq!(c.slurm.node_build_base, Path::new("/scratch/portsynth"));
        for (text, wanted) in [
            ("executor = \"ssh\"\n", "not an executor"),
            ("[slurm]\nports_dir = \"relative\"\n", "slurm.ports_dir: must be an absolute path"),
            ("executor = \"slurm\"\n[slurm]\noutbox_dir = \"base/packages/x\"\n", "inside packages_dir"),
            ("[slurm]\nunknown = 1\n", "unknown field"),
            ("workers = 500\n", "workers"),
        ] {
            let text = format!("ports_dir = \"ports\"\nbuild_base = \"base\"\n{text}");
            let error = format!("{:#}", parse_in(dir.path(), &text, None).unwrap_err());
            assert!(error.contains(wanted), "{text}: {error}");
        }
    }

    #[test]
    fn fetch_keys_are_read_and_checked() {
        let dir = tree();
        let text = "ports_dir = \"ports\"\nfetch_jobs = 5\nfetch_retries = 0\nfetch_retry_delay = 0.25\n";
        let c = parse_in(dir.path(), text, None).unwrap();
        assert_eq!((c.fetch_jobs, c.fetch_retries), (5, 0));
        assert_eq!(c.fetch_retry_delay, Duration::from_millis(250));
        let c = parse_in(dir.path(), "ports_dir = \"ports\"\nfetch_retry_delay = 3\n", None).unwrap();
        assert_eq!(c.fetch_retry_delay, Duration::from_secs(3));
        let c = parse_in(dir.path(), "ports_dir = \"ports\"\n[profile.p]\nfetch_jobs = 2\n", Some("p")).unwrap();
        assert_eq!(c.fetch_jobs, 2);
        for (text, key) in [
            ("ports_dir = \"ports\"\nfetch_jobs = 0\n", "fetch_jobs"),
            ("ports_dir = \"ports\"\nfetch_retries = -1\n", "fetch_retries"),
            ("ports_dir = \"ports\"\nfetch_retry_delay = -0.5\n", "fetch_retry_delay"),
        ] {
            let err = error_in(dir.path(), text);
            assert!(err.contains(&format!("{key}:")) && err.contains("line 2"), "{text}: {err}");
        }
        assert_eq!(default_fetch_jobs(1), 4);
        assert_eq!(default_fetch_jobs(64), 64);
    }

    #[test]
    fn mirrors_are_base_urls_and_upstream_can_be_off() {
        let dir = tree();
        let c = parse_in(dir.path(), "ports_dir = \"ports\"\n", None).unwrap();
        assert!(c.distfile_mirrors.is_empty() && c.fetch_upstream, "no mirrors and upstream by default");
        let text = "ports_dir = \"ports\"\ndistfile_mirrors = [\"http://127.0.0.1:8080/d/\", \"file:///srv/d\"]\n\
                    fetch_upstream = false\n";
        let c = parse_in(dir.path(), text, None).unwrap();
        assert_eq!(c.distfile_mirrors, ["http://127.0.0.1:8080/d/", "file:///srv/d"]);
        assert!(!c.fetch_upstream);
        let offline = parse_in(dir.path(), "ports_dir = \"ports\"\nfetch_upstream = false\n", None).unwrap();
        assert!(offline.distfile_mirrors.is_empty() && !offline.fetch_upstream, "offline: only what the cache has");
        let text = "ports_dir = \"ports\"\n[profile.p]\ndistfile_mirrors = [\"https://m/\"]\n";
        assert_eq!(parse_in(dir.path(), text, Some("p")).unwrap().distfile_mirrors, ["https://m/"]);
        for (text, key, line, why) in [
            (
                "ports_dir = \"ports\"\ndistfile_mirrors = [\n  \"http://m/\",\n  \"m/d\"]\n",
                "distfile_mirrors",
                4,
                "is not a URL",
            ),
            ("ports_dir = \"ports\"\ndistfile_mirrors = [\"gopher://m/\"]\n", "distfile_mirrors", 2, "scheme gopher"),
            ("ports_dir = \"ports\"\ndistfile_mirrors = [\"http://m/?x=1\"]\n", "distfile_mirrors", 2, "base URL"),
            ("ports_dir = \"ports\"\nfetch_upstream = \"no\"\n", "fetch_upstream", 2, "invalid type"),
        ] {
            let err = error_in(dir.path(), text);
            assert!(err.contains(&format!("line {line}")) && err.contains(key) && err.contains(why), "{text}: {err}");
            assert!(err.contains("portsynth.toml"), "{err}");
        }
    }

    #[test]
    fn every_key_is_read() {
        let dir = tree();
        let text = r#"
ports_dir = "ports"
system_path = "sysroot"
build_base = "b"
packages_dir = "p"
distfiles_dir = "d"
logs_dir = "l"
database_path = "db.sqlite"
workers = 3
jobs = 1
make_jobs = 2
memory_budget = "1G"
make_program = "fmake"
build_user = "builder"
tmpfs_size = "512M"
silent_timeout = 60
memory_limit = "1G"
max_processes = 100
max_log_size = "1M"
scan_timeout = 7
package_size_limit = "2M"
setuid_ports = ["sysutils/sudo"]
fetch_local_hosts = ["127.0.0.1", "mirror.lan"]
distfile_mirrors = ["http://mirror.lan/distfiles/"]
fetch_upstream = false
throttle = false
[phase_timeouts]
build = 120
check-plist = 5
[make_conf]
CFLAGS = "-O1"
"#;
        std::fs::create_dir_all(dir.path().join("sysroot/etc")).unwrap();
        std::fs::write(
            dir.path().join("sysroot/etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nbuilder:x:1001:1001::/:/bin/sh\n",
        )
        .unwrap();
        let c = parse_in(dir.path(), text, None).unwrap();
        assert_eq!(c.system_path, dir.path().join("sysroot"));
        assert_eq!(c.build_base, dir.path().join("b"));
        assert_eq!(c.packages_dir, dir.path().join("p"));
        assert_eq!(c.distfiles_dir, dir.path().join("d"));
        assert_eq!(c.logs_dir, dir.path().join("l"));
        assert_eq!(c.database_path, dir.path().join("db.sqlite"));
        assert_eq!((c.workers, c.jobs, c.make_jobs, c.memory_budget), (3, 1, Some(2), 1 << 30));
        assert_eq!(c.make_program, "fmake");
        assert_eq!(c.build_user, "builder");
        assert_eq!(c.tmpfs_size, 512 << 20);
        assert_eq!(c.silent_timeout, Duration::from_secs(60));
        assert_eq!(c.phase_timeout(Phase::Build), Duration::from_secs(120));
        assert_eq!(c.phase_timeout(Phase::CheckPlist), Duration::from_secs(5));
        assert_eq!(c.phase_timeout(Phase::Fetch), Phase::Fetch.default_timeout());
        assert_eq!(c.make_conf.get("CFLAGS").map(String::as_str), Some("-O1"));
        assert_eq!((c.memory_limit, c.max_processes, c.max_log_size), (1 << 30, 100, 1 << 20));
        assert_eq!((c.scan_timeout, c.package_size_limit), (Duration::from_secs(7), 2 << 20));
        assert_eq!(c.setuid_ports, ["sysutils/sudo"]);
        assert_eq!(c.fetch_local_hosts, ["127.0.0.1", "mirror.lan"]);
        assert_eq!(
            (c.distfile_mirrors.as_slice(), c.fetch_upstream),
            (&["http://mirror.lan/distfiles/".to_string()][..], false)
        );
        assert!(!c.throttle);
    }

    #[test]
    fn profiles_override_top_level_settings() {
        let dir = tree();
        let text = "ports_dir = \"ports\"\nworkers = 4\n[profile.quick]\nworkers = 1\nmake_jobs = 3\n";
        let base = parse_in(dir.path(), text, None).unwrap();
        assert_eq!((base.workers, base.make_jobs), (4, None));
        let quick = parse_in(dir.path(), text, Some("quick")).unwrap();
        assert_eq!((quick.workers, quick.make_jobs), (1, Some(3)));
        assert_eq!(quick.profile.as_deref(), Some("quick"));
        let err = format!("{:#}", parse_in(dir.path(), text, Some("slow")).unwrap_err());
        assert!(err.contains("no profile 'slow'") && err.contains("quick"), "{err}");
    }

    #[test]
    fn unknown_key_names_key_file_and_line() {
        let dir = tree();
        let err = error_in(dir.path(), "ports_dir = \"ports\"\n\nwrokers = 2\n");
        assert!(err.contains("wrokers"), "{err}");
        assert!(err.contains("line 3"), "{err}");
        assert!(err.contains("portsynth.toml"), "{err}");
        let err = error_in(dir.path(), "ports_dir = \"ports\"\n[profile.x]\nbogus = 1\n");
        assert!(err.contains("bogus") && err.contains("line 3"), "{err}");
    }

    #[test]
    fn wrong_type_names_key_and_line() {
        let dir = tree();
        let err = error_in(dir.path(), "ports_dir = \"ports\"\nworkers = \"many\"\n");
        assert!(err.contains("line 2") && err.contains("portsynth.toml"), "{err}");
        assert!(err.contains("workers"), "{err}");
    }

    #[test]
    fn invalid_values_name_key_and_line() {
        let dir = tree();
        for (text, key, line) in [
            ("ports_dir = \"ports\"\nworkers = 0\n", "workers", 2),
            ("ports_dir = \"ports\"\n\ntmpfs_size = \"lots\"\n", "tmpfs_size", 3),
            ("ports_dir = \"ports\"\njobs = 0\n", "jobs", 2),
            ("ports_dir = \"ports\"\nmemory_budget = \"1P\"\n", "memory_budget", 2),
            ("ports_dir = \"ports\"\n[phase_timeouts]\ninstall = 5\n", "phase_timeouts.install", 3),
            ("ports_dir = \"ports\"\n[phase_timeouts]\nbuild = -1\n", "phase_timeouts.build", 3),
            ("ports_dir = \"ports\"\nbuild_user = \" \"\n", "build_user", 2),
            ("ports_dir = \"ports\"\n[make_conf]\n\"BAD NAME\" = \"x\"\n", "make_conf.BAD NAME", 3),
            (
                "ports_dir = \"ports\"\n[bootstrap_env]\n\"USE_BUILTIN.openssl\" = \"no\"\n",
                "bootstrap_env.USE_BUILTIN.openssl",
                3,
            ),
            ("ports_dir = \"ports\"\nbootstrap_timeout = 0\n", "bootstrap_timeout", 2),
            ("ports_dir = \"ports\"\nwork_dir = \"ssd\"\n", "work_dir", 2),
            ("ports_dir = \"ports\"\n\ndisk_work_size = \"1M\"\n", "disk_work_size", 3),
            ("ports_dir = \"ports\"\ndisk_work_size = \"big\"\n", "disk_work_size", 2),
        ] {
            let err = error_in(dir.path(), text);
            assert!(err.contains(&format!("{key}:")), "{text}: {err}");
            assert!(err.contains(&format!("line {line}")), "{text}: {err}");
        }
    }

    #[test]
    fn work_dir_and_disk_work_size_are_read_with_defaults() {
        let dir = tree();
        let config = parse_in(dir.path(), "ports_dir = \"ports\"\n", None).unwrap();
        assert_eq!((config.work_dir, config.disk_work_size), (WorkDir::Auto, DEFAULT_DISK_WORK_SIZE));
        let text = "ports_dir = \"ports\"\nwork_dir = \"disk\"\ndisk_work_size = \"2G\"\n";
        let config = parse_in(dir.path(), text, None).unwrap();
        assert_eq!((config.work_dir, config.disk_work_size), (WorkDir::Disk, 2 << 30));
        let config = parse_in(dir.path(), "ports_dir = \"ports\"\nwork_dir = \"tmpfs\"\n", None).unwrap();
        assert_eq!(config.work_dir.fixed(), Some(crate::sandbox::work_area::WorkArea::Tmpfs));
        let err = error_in(dir.path(), "ports_dir = \"ports\"\nwork_dir = \"ssd\"\n");
        assert!(err.contains("'ssd' is not a work area (tmpfs, disk or auto)"), "{err}");
    }

    #[test]
    fn bootstrap_env_and_a_pkgsrc_tree_are_accepted() {
        let dir = tree();
        std::fs::create_dir_all(dir.path().join("pkgsrc/mk")).unwrap();
        std::fs::write(dir.path().join("pkgsrc/mk/bsd.pkg.mk"), "").unwrap();
        let text = "ports_dir = \"pkgsrc\"\nbootstrap_timeout = 60\n[bootstrap_env]\nSH = \"/bin/bash\"\n";
        let config = parse_in(dir.path(), text, None).unwrap();
        assert_eq!(config.bootstrap_env.get("SH").map(String::as_str), Some("/bin/bash"));
        assert_eq!(config.bootstrap_timeout, Duration::from_secs(60));
        assert_eq!(config.scan_timeout, Duration::from_secs(600), "pkgsrc's default scan deadline");
        let defaults = parse_in(dir.path(), "ports_dir = \"ports\"\n", None).unwrap();
        assert!(defaults.bootstrap_env.is_empty());
        assert_eq!(defaults.bootstrap_timeout, Duration::from_secs(DEFAULT_BOOTSTRAP_TIMEOUT_SECS));
    }

    #[test]
    fn missing_ports_tree_names_key_file_and_line() {
        let dir = tree();
        let err = error_in(dir.path(), "build_base = \"b\"\nports_dir = \"nowhere\"\n");
        assert!(err.contains("ports_dir") && err.contains("line 2"), "{err}");
        assert!(err.contains("nowhere") && err.contains("does not exist"), "{err}");
        std::fs::create_dir_all(dir.path().join("empty")).unwrap();
        let err = error_in(dir.path(), "ports_dir = \"empty\"\n");
        assert!(err.contains("no Mk/bsd.port.mk") && err.contains("line 1"), "{err}");
    }

    fn error_lines(dir: &Path, cases: &[(&str, &str, usize, &str)]) {
        for (text, key, line, needle) in cases {
            let err = error_in(dir, text);
            assert!(err.contains(&format!("line {line}: {key}: ")), "{text}: {err}");
            assert!(err.contains(needle), "{text}: wanted '{needle}' in {err}");
        }
    }

    #[test]
    fn directories_overlapping_the_ports_tree_name_key_and_line() {
        let dir = tree();
        let ports = dir.path().join("ports").display().to_string();
        let cases: Vec<(String, &str, usize, String)> = ["distfiles_dir", "packages_dir", "logs_dir", "database_path"]
            .iter()
            .flat_map(|key| {
                [
                    (
                        format!("ports_dir = \"ports\"\n{key} = \"ports\"\n"),
                        *key,
                        2,
                        format!("is the same as ports_dir {ports} (line 1)"),
                    ),
                    (
                        format!("ports_dir = \"ports\"\n{key} = \"ports/x\"\n"),
                        *key,
                        2,
                        format!("is inside ports_dir {ports} (line 1)"),
                    ),
                    (
                        format!("ports_dir = \"ports\"\n\n{key} = \".\"\n"),
                        *key,
                        3,
                        format!("contains ports_dir {ports} (line 1)"),
                    ),
                ]
            })
            .collect();
        let cases: Vec<(&str, &str, usize, &str)> =
            cases.iter().map(|(t, k, l, n)| (t.as_str(), *k, *l, n.as_str())).collect();
        error_lines(dir.path(), &cases);
        // A default under build_base is reported at build_base's line.
        error_lines(
            dir.path(),
            &[(
                "ports_dir = \"ports\"\nbuild_base = \"ports/base\"\n",
                "distfiles_dir",
                2,
                "ports/base/distfiles (the default, under build_base) is inside ports_dir",
            )],
        );
        // A symlink does not hide the overlap.
        std::os::unix::fs::symlink(dir.path().join("ports"), dir.path().join("alias")).unwrap();
        error_lines(
            dir.path(),
            &[(
                "ports_dir = \"ports\"\ndistfiles_dir = \"alias/distfiles\"\n",
                "distfiles_dir",
                2,
                "is inside ports_dir",
            )],
        );
    }

    #[test]
    fn the_root_and_system_directories_are_refused() {
        let dir = tree();
        let mut cases = vec![];
        for key in ["build_base", "packages_dir", "distfiles_dir", "logs_dir", "database_path"] {
            cases.push((
                format!("ports_dir = \"ports\"\n{key} = \"/\"\n"),
                key,
                2,
                "is the root directory /".to_string(),
            ));
        }
        for system in ["/usr", "/etc", "/var", "/tmp", "/home", "/lib64", "/usr/local", "/root", "/proc"] {
            cases.push((
                format!("ports_dir = \"ports\"\nbuild_base = \"{system}\"\n"),
                "build_base",
                2,
                format!("is the system directory {system}"),
            ));
        }
        cases.push((
            "ports_dir = \"ports\"\nsystem_path = \"sysroot\"\nbuild_base = \"sysroot\"\n".into(),
            "build_base",
            3,
            "contains the system directory".into(),
        ));
        let cases: Vec<(&str, &str, usize, &str)> =
            cases.iter().map(|(t, k, l, n)| (t.as_str(), *k, *l, n.as_str())).collect();
        error_lines(dir.path(), &cases);
        let err = error_in(dir.path(), "ports_dir = \"/\"\n");
        assert!(err.contains("ports_dir"), "{err}");
        // /var/cache/portsynth (the default) and a directory under /tmp are fine.
        assert!(parse_in(dir.path(), "ports_dir = \"ports\"\n", None).is_ok());
    }

    #[test]
    fn distfiles_holds_nothing_else_and_packages_and_logs_are_apart() {
        let dir = tree();
        error_lines(dir.path(), &[
            ("ports_dir = \"ports\"\nbuild_base = \"b\"\ndistfiles_dir = \"b\"\n", "distfiles_dir", 3, "is the same as build_base"),
            ("ports_dir = \"ports\"\nbuild_base = \"b/c\"\ndistfiles_dir = \"b\"\n", "distfiles_dir", 3, "contains build_base"),
            ("ports_dir = \"ports\"\nbuild_base = \"b\"\ndistfiles_dir = \"d\"\npackages_dir = \"d/p\"\n", "distfiles_dir", 3, "contains packages_dir"),
            ("ports_dir = \"ports\"\nbuild_base = \"b\"\ndistfiles_dir = \"d\"\nlogs_dir = \"d\"\n", "distfiles_dir", 3, "is the same as logs_dir"),
            ("ports_dir = \"ports\"\nbuild_base = \"b\"\ndistfiles_dir = \"d\"\ndatabase_path = \"d/db.sqlite\"\n", "distfiles_dir", 3, "purge-distfiles deletes"),
            ("ports_dir = \"ports\"\nbuild_base = \"b\"\npackages_dir = \"x\"\nlogs_dir = \"x\"\n", "logs_dir", 4, "is the same as packages_dir"),
            ("ports_dir = \"ports\"\nbuild_base = \"b\"\npackages_dir = \"x\"\nlogs_dir = \"x/All\"\n", "logs_dir", 4, "is inside packages_dir"),
            ("ports_dir = \"ports\"\nbuild_base = \"b\"\ndistfiles_dir = \"p\"\npackages_dir = \"p\"\n", "distfiles_dir", 3, "is the same as packages_dir"),
        ]);
    }

    #[test]
    fn the_build_user_must_exist_and_not_be_root() {
        let dir = tree();
        std::fs::create_dir_all(dir.path().join("sys/etc")).unwrap();
        std::fs::write(
            dir.path().join("sys/etc/passwd"),
            "root:x:0:0::/root:/bin/sh\ntoor:x:0:0::/:/bin/sh\nbuilder:x:1001:1001::/:/bin/sh\n",
        )
        .unwrap();
        let passwd = dir.path().join("sys/etc/passwd").display().to_string();
        let ok = parse_in(dir.path(), "ports_dir = \"ports\"\nsystem_path = \"sys\"\nbuild_user = \"builder\"\n", None);
        assert_eq!(ok.unwrap().build_user, "builder");
        let missing = format!("no user 'ghost' in {passwd}");
        let root = format!("'toor' has uid 0 in {passwd}");
        error_lines(
            dir.path(),
            &[
                ("ports_dir = \"ports\"\nsystem_path = \"sys\"\nbuild_user = \"root\"\n", "build_user", 3, "uid 0"),
                ("ports_dir = \"ports\"\nsystem_path = \"sys\"\nbuild_user = \"toor\"\n", "build_user", 3, &root),
                ("ports_dir = \"ports\"\nsystem_path = \"sys\"\n\nbuild_user = \"ghost\"\n", "build_user", 4, &missing),
            ],
        );
        // The default user, looked up in a passwd without it: key and file named.
        let err = error_in(dir.path(), "ports_dir = \"ports\"\nsystem_path = \"sys\"\n");
        assert!(err.contains("build_user (not set, the default)") && err.contains("no user 'nobody'"), "{err}");
        assert!(err.contains("portsynth.toml") && err.contains(&passwd), "{err}");
        let err = error_in(dir.path(), "ports_dir = \"ports\"\nsystem_path = \"nowhere\"\nbuild_user = \"x\"\n");
        assert!(err.contains("line 3: build_user: cannot read") && err.contains("nowhere/etc/passwd"), "{err}");
    }

    #[test]
    fn job_counts_are_at_most_four_per_cpu() {
        let dir = tree();
        let max = max_jobs();
        assert_eq!(max, 4 * cpus());
        for key in ["workers", "jobs", "fetch_jobs", "make_jobs"] {
            let c = parse_in(dir.path(), &format!("ports_dir = \"ports\"\n{key} = {max}\n"), None);
            assert!(c.is_ok(), "{key} = {max}: {:#}", c.unwrap_err());
            let text = format!("ports_dir = \"ports\"\n{key} = {}\n", max + 1);
            let err = error_in(dir.path(), &text);
            assert!(err.contains(&format!("line 2: {key}: must be at most {max} (4 per CPU")), "{err}");
        }
        assert!(check_jobs(max).is_ok() && check_jobs(max + 1).is_err());
        assert!(default_config_text(Path::new("/p"), Path::new("/b")).contains(&format!("{max} here")));
    }

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("1024"), Ok(1024));
        assert_eq!(parse_size("4k"), Ok(4096));
        assert_eq!(parse_size("2G"), Ok(2 << 30));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert!(parse_size("0").is_err());
        assert!(parse_size("5X").is_err());
        assert!(parse_size("G").is_err());
        assert!(parse_size("99999999999T").is_err());
    }

    #[test]
    fn hooks_are_words_unless_a_shell_is_asked_for() {
        use crate::hooks::{Hook, HookCommand};
        let dir = tree();
        let text = "ports_dir = \"ports\"\nhook_timeout = 5\n[hooks]\nsuccess = [\"/bin/echo\", \"built\"]\n";
        let config = parse_in(dir.path(), text, None).unwrap();
        assert_eq!(config.hooks.timeout, Duration::from_secs(5));
        assert_eq!(config.hooks.commands[&Hook::Success], HookCommand::Exec(vec!["/bin/echo".into(), "built".into()]));
        assert_eq!(parse_in(dir.path(), "ports_dir = \"ports\"\n", None).unwrap().hooks.commands.len(), 0);
        let shell = "ports_dir = \"ports\"\n[hooks]\nshell = true\nfailure = \"echo $PORTSYNTH_ORIGIN\"\n";
        let config = parse_in(dir.path(), shell, None).unwrap();
        assert_eq!(config.hooks.commands[&Hook::Failure], HookCommand::Shell("echo $PORTSYNTH_ORIGIN".into()));
        for (text, wanted) in [
            ("[hooks]\nfailure = \"echo x\"\n", "line 3: hooks.failure: a string is a shell command"),
            ("[hooks]\nrun_end = []\n", "line 3: hooks.run_end: needs a program"),
            ("[hooks]\nrun_end = [\"/bin/echo\", 3]\n", "hooks.run_end: every word of the command must be a string"),
            ("[hooks]\nrun_end = 3\n", "hooks.run_end: must be a list of words or a string, not integer"),
            ("[hooks]\nbuilt = [\"/bin/true\"]\n", "unknown field `built`"),
            ("hook_timeout = 0\n", "line 2: hook_timeout: must be at least 1"),
        ] {
            let err = error_in(dir.path(), &format!("ports_dir = \"ports\"\n{text}"));
            assert!(err.contains(wanted), "{text}: {err}");
        }
    }

    #[test]
    fn default_config_text_parses_back() {
        let dir = tree();
        let text = default_config_text(&dir.path().join("ports"), &dir.path().join("base"));
        let config = parse_in(dir.path(), &text, None).unwrap();
        assert_eq!(config.build_base, dir.path().join("base"));
    }
}
