//! Command implementations: each turns parsed arguments and the validated
//! config into actions and output.

mod bootstrap_kit;
mod build;
mod build_one;
mod cleanup;
mod diff;
mod fetch;
pub mod history;
mod init;
mod logs;
mod monitor;
mod pkgsrc_resolve;
pub mod prepare;
mod purge;
mod reset_db;
mod status;

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use clap::Parser;

use crate::cli::{Cli, Command, GlobalArgs};
use crate::config::{self, Config};
use crate::events::Events;
use crate::ports::{Origin, Scanner};
use crate::report::html::HtmlReporter;
use crate::report::{LogsReporter, RunLogs};
use crate::sandbox::scan_pool::{ScanPool, ScanSettings};

/// Exit codes of DESIGN.md.
pub mod exit {
    pub const OK: u8 = 0;
    pub const PORT_FAILED: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const INTERRUPTED: u8 = 3;
}

/// An error that carries its own exit code (anything else exits 2).
#[derive(Debug)]
pub struct ExitWith(pub u8, pub String);

impl std::fmt::Display for ExitWith {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.1)
    }
}

impl std::error::Error for ExitWith {}

pub fn exit_code_of(error: &anyhow::Error) -> ExitCode {
    let code = error.chain().find_map(|e| e.downcast_ref::<ExitWith>()).map_or(exit::USAGE, |e| e.0);
    ExitCode::from(code)
}

/// Whether `error` is a write to a closed pipe (`portsynth status | head`):
/// the reader has what it wanted, so the command ends quietly with
/// success, as ripgrep does. Rust ignores SIGPIPE, so every write to
/// stdout must be a `writeln!` whose error reaches here, never a
/// `println!` (which panics).
pub fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        let kind = cause
            .downcast_ref::<std::io::Error>()
            .map(std::io::Error::kind)
            .or_else(|| cause.downcast_ref::<serde_json::Error>().and_then(serde_json::Error::io_error_kind));
        kind == Some(std::io::ErrorKind::BrokenPipe)
    })
}

/// The reporters of a build or fetch-only run's events: the screen (bars,
/// plain lines or NDJSON), the summary logs, the HTML report, and the
/// operator's hooks.
pub fn run_events(config: &Config, global: &GlobalArgs, slots: usize, logs: &Arc<RunLogs>) -> Events {
    let events =
        Events::new(vec![crate::ui::reporter(global.json, global.quiet, slots), Box::new(LogsReporter(logs.clone()))]);
    let database = Some(config.database_path.clone());
    events.add(Box::new(HtmlReporter::new(&config.logs_dir, slots, database, Some(events.poster()))));
    let hooks_log = config.logs_dir.join(crate::hooks::LOG);
    if let Some(hooks) = crate::hooks::Hooks::start(&config.hooks, &hooks_log, events.poster()) {
        events.add(Box::new(hooks));
    }
    events
}

pub fn run() -> Result<ExitCode> {
    let cli = Cli::parse();
    match cli.command {
        Command::Init(args) => init::run(&cli.global, &args),
        Command::Status(args) => status::run(&load_config(&cli.global)?, &cli.global, &args.ports),
        Command::History(args) => history::run(&load_config(&cli.global)?, &cli.global, &args),
        Command::Diff(args) => diff::run(&load_config(&cli.global)?, &cli.global, &args),
        Command::ResetDb => reset_db::run(&load_config(&cli.global)?, &cli.global),
        Command::Everything => build::run(&load_config(&cli.global)?, &cli.global, build::Mode::Everything, &[]),
        Command::Build(args) => build::run(&load_config(&cli.global)?, &cli.global, build::Mode::Build, &args.ports),
        Command::JustBuild(args) => {
            build::run(&load_config(&cli.global)?, &cli.global, build::Mode::JustBuild, &args.ports)
        }
        Command::Force(args) => build::run(&load_config(&cli.global)?, &cli.global, build::Mode::Force, &args.ports),
        Command::Test(args) => {
            build::run(&load_config(&cli.global)?, &cli.global, build::Mode::Test, std::slice::from_ref(&args.port))
        }
        Command::RebuildRepository(args) => {
            build::rebuild_repository(&load_config(&cli.global)?, &cli.global, args.prune)
        }
        Command::BuildOne(args) => build_one::run(&load_config(&cli.global)?, &cli.global, &args),
        Command::FetchOnly(args) => fetch::run(&load_config(&cli.global)?, &cli.global, &args),
        Command::PurgeDistfiles => purge::run(&load_config(&cli.global)?, &cli.global),
        Command::Cleanup => cleanup::run(&load_config(&cli.global)?),
        Command::SandboxHelper => crate::sandbox::helper::main(),
        Command::ScanHelper => crate::sandbox::scan::main(),
        Command::KitHelper => crate::sandbox::kit::main(),
        Command::SlurmJob { spec } => crate::executor::job::main(&spec),
        Command::BootstrapKit(args) => bootstrap_kit::run(&load_config(&cli.global)?, &cli.global, &args),
        Command::Logs(args) => logs::run(&load_config(&cli.global)?, &args),
        Command::Monitor(args) => monitor::run(&load_config(&cli.global)?, &cli.global, &args),
        Command::PkgsrcResolve(args) => pkgsrc_resolve::run(&args, cli.global.verbose > 0),
        Command::Version => {
            use std::io::Write;
            writeln!(std::io::stdout().lock(), "portsynth {}", env!("CARGO_PKG_VERSION"))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The config file of the search order, with command-line overrides applied.
pub fn load_config(global: &GlobalArgs) -> Result<Config> {
    let file = config::locate(global.config.as_deref())?;
    let mut config = config::load(&file, global.profile.as_deref())?;
    if let Some(workers) = global.workers {
        config.workers = config::check_jobs(workers as usize).map_err(|e| anyhow::anyhow!("--workers: {e}"))?;
    }
    Ok(config)
}

/// The scanner of every command: each bmake query runs in a scan sandbox
/// (see [`crate::sandbox::scan`]). The tree's path is made absolute, since
/// the sandbox shows it at its host path.
pub fn scanner(config: &Config) -> Result<Scanner> {
    let ports_dir = std::path::absolute(&config.ports_dir)?;
    let kit = crate::framework::pkgsrc::prefix::of_config(config)?;
    let make_program = crate::framework::pkgsrc::prefix::make_program(config, kit.as_ref());
    // pkgsrc: the kit's own mk.conf, the config's mk_conf lines, the scan's hook.
    let mk_conf = kit.as_ref().map(|kit| {
        (
            std::path::PathBuf::from(crate::framework::pkgsrc::MK_CONF),
            crate::framework::pkgsrc::scan_mk_conf(&kit.prefix, config.mk_conf.as_deref()),
        )
    });
    let settings = ScanSettings {
        helper: crate::sandbox::scan_pool::helper_binary()?,
        root: config.build_base.join(SCAN_ROOT),
        system_path: config.system_path.clone(),
        ports_dir: ports_dir.clone(),
        build_user: config.build_user.clone(),
        make_program: make_program.clone(),
        timeout: config.scan_timeout,
        kit: kit.as_ref().map(|k| (k.host.clone(), k.prefix.clone())),
        files: mk_conf.iter().cloned().collect(),
    };
    let mut make_env: Vec<(String, String)> = config.make_conf.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    if let Some((path, _)) = &mk_conf {
        make_env.push(("MAKECONF".into(), path.to_string_lossy().into_owned()));
    }
    Ok(Scanner {
        framework: config.framework,
        ports_dir,
        make_program,
        make_env,
        sandbox: Some(std::sync::Arc::new(ScanPool::new(settings))),
    })
}

/// Below `build_base`: the mount point of every scan sandbox's root.
pub const SCAN_ROOT: &str = "scan";

/// The ports a bulk command means: those given, else the config's
/// `pkgpaths`, else (empty) the whole tree.
pub fn bulk_origins(config: &Config, args: &[String]) -> Result<Vec<Origin>> {
    let origins = parse_origins(args)?;
    Ok(match (&config.pkgpaths, origins.is_empty()) {
        (Some(pkgpaths), true) => pkgpaths.clone(),
        _ => origins,
    })
}

/// Parses the origins given on the command line; a bad one is a usage error.
pub fn parse_origins(args: &[String]) -> Result<Vec<Origin>> {
    args.iter().map(|a| Origin::parse(a).map_err(|e| anyhow::anyhow!("bad port argument '{a}': {e}"))).collect()
}
