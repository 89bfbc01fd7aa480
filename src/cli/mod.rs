//! Command-line definitions (clap derive). Parsing only: every value is
//! validated into settings by the command that uses it.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "portsynth", version, about = "Parallel ports builder for Linux build hosts")]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, clap::Args)]
pub struct GlobalArgs {
    /// Config file (default: $PORTSYNTH_CONFIG, ./portsynth.toml, /etc/portsynth/portsynth.toml).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Profile section of the config to apply ([profile.NAME]).
    #[arg(long, global = true, value_name = "NAME")]
    pub profile: Option<String>,
    /// Number of ports built at once (overrides `workers`).
    #[arg(short = 'j', long, global = true, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub workers: Option<u32>,
    /// Answer yes to every question.
    #[arg(short = 'y', long = "yes", global = true)]
    pub yes: bool,
    /// NDJSON events / JSON results on stdout, human text on stderr.
    #[arg(long, global = true)]
    pub json: bool,
    /// Less output.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// More output (repeatable).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a commented default config and create the directories.
    Init(InitArgs),
    /// Show what would be built, in build order, and why.
    Status(PortsArgs),
    /// Past runs, or past builds of one port.
    History(HistoryArgs),
    /// What changed between two runs (default: the last two that built
    /// something): new failures and what changed in their inputs, fixed
    /// ports, newly skipped ones, durations that moved.
    Diff(DiffArgs),
    /// Remove the build database (after confirmation, or with -y).
    ResetDb,
    /// Build every port of the tree that is not up to date.
    Everything,
    /// Build the ports and whatever they need, then rebuild the repository index.
    Build(PortsRequired),
    /// Like build, without asking and without rebuilding the repository index.
    JustBuild(PortsRequired),
    /// Rebuild the ports even if up to date (their dependents follow the usual rules).
    Force(PortsRequired),
    /// Build one port with check-plist; on failure keep its work directory.
    Test(TestArgs),
    /// Regenerate packagesite.json and SHA256SUMS from All/ and list obsolete packages.
    RebuildRepository(RebuildRepositoryArgs),
    /// Build one port in a sandbox, its dependencies taken from the
    /// repository as already packaged (a debugging aid: records nothing in
    /// the build database).
    BuildOne(BuildOneArgs),
    /// Download the distfiles of the ports and their dependencies (none: the
    /// whole tree) into the distfiles cache, several at once, with retries.
    FetchOnly(FetchOnlyArgs),
    /// List the distfiles no port of the tree references, and delete them
    /// after confirmation (or with -y).
    PurgeDistfiles,
    /// Remove leftover slot directories and mark stale database rows.
    Cleanup,
    /// A port's last build log (without PORT: the last run's results).
    Logs(LogsArgs),
    /// What the current or last run is doing (live on a terminal).
    Monitor(MonitorArgs),
    /// Resolve a pbulk scan file (pscan) into pbulk's presolve format, as pbulk-resolve
    /// (-v: also say where a best match lives elsewhere than the pkgpath named).
    PkgsrcResolve(PkgsrcResolveArgs),
    /// pkgsrc: make a binary kit for /usr/pkg from the tree's bootstrap/, in
    /// a sandbox, unless the kit for the same inputs exists.
    BootstrapKit(BootstrapKitArgs),
    /// Print the version.
    Version,
    /// Internal: the single-threaded sandbox helper.
    #[command(hide = true)]
    SandboxHelper,
    /// Internal: the single-threaded scan sandbox (metadata queries).
    #[command(hide = true)]
    ScanHelper,
    /// Internal: the single-threaded bootstrap-kit sandbox.
    #[command(hide = true)]
    KitHelper,
    /// Internal: one build on a Slurm node (the job of the Slurm executor).
    #[command(hide = true)]
    SlurmJob {
        /// The job's spec in its outbox.
        spec: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
pub struct BootstrapKitArgs {
    /// The pkgsrc tree (default: ports_dir).
    #[arg(long, value_name = "DIR")]
    pub tree: Option<PathBuf>,
    /// mk.conf lines appended to the kit's /usr/pkg/etc/mk.conf.
    #[arg(long, value_name = "FILE")]
    pub mk_fragment: Option<PathBuf>,
    /// Also place a copy of the kit here (it is kept in build_base/kits/).
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct PkgsrcResolveArgs {
    /// The pscan file (pbulk-scan's output: pbulk-index records with PKG_LOCATION).
    #[arg(value_name = "PSCAN")]
    pub pscan: std::path::PathBuf,
    /// Write the presolve here instead of standard output.
    #[arg(short = 'o', long, value_name = "PRESOLVE")]
    pub output: Option<std::path::PathBuf>,
    /// Write the records that resolved even when others did not (pbulk-resolve -p).
    #[arg(short = 'p', long)]
    pub partial: bool,
    /// Resolve only to records scanned at the dependency's pkgpath (pbulk-resolve
    /// takes the best match anywhere in the scan).
    #[arg(long)]
    pub at_pkgpath: bool,
}

#[derive(Debug, clap::Args)]
pub struct BuildOneArgs {
    /// The port (category/port[@flavor]).
    #[arg(value_name = "PORT")]
    pub port: String,
    /// Also run the check-plist phase.
    #[arg(long)]
    pub check_plist: bool,
    /// Slot number to use.
    #[arg(long, default_value_t = 1)]
    pub slot: u32,
}

#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    /// A port (category/port[@flavor]); without it, past runs are listed.
    #[arg(value_name = "PORT")]
    pub port: Option<String>,
    /// How many entries to show, newest first.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
}

#[derive(Debug, clap::Args)]
pub struct DiffArgs {
    /// The older run (an id or a unique prefix, see `history`).
    #[arg(value_name = "OLD")]
    pub old: Option<String>,
    /// The newer run (default: the newest other run that built something).
    #[arg(value_name = "NEW")]
    pub new: Option<String>,
    /// Durations are listed when they move by this many percent (and 5 s).
    #[arg(long, value_name = "PERCENT", default_value_t = crate::report::diff::DEFAULT_THRESHOLD_PERCENT)]
    pub threshold: f64,
}

#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Ports tree to write into the new config.
    #[arg(long, value_name = "DIR", default_value = "/usr/ports")]
    pub ports_dir: PathBuf,
    /// Build base to write into the new config.
    #[arg(long, value_name = "DIR", default_value = "/var/cache/portsynth")]
    pub build_base: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct PortsArgs {
    /// Ports as category/port[@flavor]; none means the whole tree.
    #[arg(value_name = "PORT")]
    pub ports: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct PortsRequired {
    /// Ports as category/port[@flavor].
    #[arg(value_name = "PORT", required = true)]
    pub ports: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// The port (category/port[@flavor]).
    #[arg(value_name = "PORT")]
    pub port: String,
}

#[derive(Debug, clap::Args)]
pub struct RebuildRepositoryArgs {
    /// Also remove the obsolete packages (no port of the tree produces them).
    #[arg(long)]
    pub prune: bool,
}

#[derive(Debug, clap::Args)]
pub struct FetchOnlyArgs {
    /// Ports as category/port[@flavor]; none means the whole tree.
    #[arg(value_name = "PORT")]
    pub ports: Vec<String>,
    /// Ports fetched at once (overrides `fetch_jobs`).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub fetch_jobs: Option<u32>,
}

#[derive(Debug, clap::Args)]
pub struct LogsArgs {
    /// The port (category/port[@flavor]); without it, 00_last_results.log.
    #[arg(value_name = "PORT")]
    pub port: Option<String>,
    /// Print the log's path instead of its content.
    #[arg(long)]
    pub path: bool,
    /// The port's last fetch-only log instead of its build log.
    #[arg(long, requires = "port")]
    pub fetch: bool,
    /// Follow the port's running build: print its log as it grows and end
    /// when the build ends (a port not building now: its last log, once).
    #[arg(short = 'f', long, requires = "port", conflicts_with_all = ["path", "fetch"])]
    pub follow: bool,
}

#[derive(Debug, clap::Args)]
pub struct MonitorArgs {
    /// Print one snapshot and exit (the default when not on a terminal).
    #[arg(long)]
    pub once: bool,
}
