//! The build commands: `everything`, `build`, `just-build`, `force`, `test`,
//! and `rebuild-repository`.
//!
//! All of them take the build-base lock first (so a second run fails before
//! scanning anything), recover what a dead run left behind, plan, and hand
//! the plan to the scheduler. The repository index is rebuilt from `All/`
//! after the run, whatever its end, because the packages that were placed
//! are real; only `just-build` leaves the index alone.

use std::collections::HashSet;
use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use serde_json::json;

use super::prepare::{prepare, prepare_forcing, recover_dangling_runs, warn, Prepared};
use super::reset_db::confirm;
use super::status::print_plan;
use crate::build::interrupts::Interrupts;
use crate::build::interrupts::Stop;
use crate::build::lock::BuildLock;
use crate::build::scheduler::{self, Outcome};
use crate::builddb::{BuildDb, RunCounts, RunStatus};
use crate::cli::GlobalArgs;
use crate::config::Config;
use crate::events::{Event, Events, RunEnd, RunResult, RunScope};
use crate::ports::PortTree;
use crate::repo::index;
use crate::report::{self, RunLogs};
use crate::sandbox::runner::default_helper;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Everything,
    Build,
    JustBuild,
    Force,
    Test,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::Everything => "everything",
            Mode::Build => "build",
            Mode::JustBuild => "just-build",
            Mode::Force => "force",
            Mode::Test => "test",
        }
    }
}

pub fn run(config: &Config, global: &GlobalArgs, mode: Mode, ports: &[String]) -> Result<ExitCode> {
    let origins = super::bulk_origins(config, ports)?;
    let _lock = BuildLock::acquire(&config.build_base)?;
    let db = BuildDb::open(&config.database_path)?;
    recover_dangling_runs(&db);
    // The cgroups of a run killed with kill -9 outlive it (its sandboxes do not).
    crate::sandbox::limits::remove_stale();
    // So are their disk work areas' image files (the loop devices went
    // with their sandboxes).
    crate::sandbox::work_area::remove_stale(&config.build_base);
    let forced = if mode == Mode::Force { origins.clone() } else { vec![] };
    let prepared = prepare_forcing(config, &db, &origins, &forced)?;
    if !global.quiet {
        let mut err = std::io::stderr().lock();
        print_plan(&mut err, &prepared.plan, config, global.verbose > 0)?;
    }
    if !confirmed(mode, global)? {
        eprintln!("Nothing built.");
        return Ok(ExitCode::SUCCESS);
    }
    let command = std::iter::once(mode.name().to_string()).chain(ports.iter().cloned()).collect::<Vec<_>>().join(" ");
    let logs = Arc::new(RunLogs::create(&config.logs_dir)?);
    let run_id = db.start_run(&command, global.profile.as_deref())?;
    let events = super::run_events(config, global, config.workers, &logs);
    events.emit(Event::RunStart {
        run: run_id.as_str().to_string(),
        command: command.clone(),
        scope: RunScope::Build(prepared.plan.counts),
    });
    let interrupts = Interrupts::catch()?;
    let check_plist = match mode {
        Mode::Test => origins.iter().filter_map(|o| prepared.tree.lookup(o)).collect(),
        _ => HashSet::new(),
    };
    let outcome = scheduler::execute(scheduler::Run {
        config,
        tree: &prepared.tree,
        plan: &prepared.plan,
        keys: &prepared.keys,
        db: &db,
        run: &run_id,
        logs: &logs,
        events: &events,
        check_plist,
        helper: default_helper()?,
        workers: config.workers,
        interrupts: interrupts.receiver.clone(),
    })?;
    let status = run_status(outcome.stop);
    if let Err(e) = db.finish_run(&run_id, status, &run_counts(&outcome)) {
        warn(&format!("{e:#}"));
        events.debug(format!("{e:#}"));
    }
    if mode != Mode::JustBuild {
        // Obsolete packages need every port of the tree, not a pkgpaths subset.
        let whole_tree = (mode == Mode::Everything && config.pkgpaths.is_none()).then_some(&prepared.tree);
        refresh_repository(config, &db, whole_tree, &events);
    }
    events.emit(Event::RunEnd(RunEnd {
        run: run_id.as_str().to_string(),
        status: outcome.stop.into(),
        seconds: outcome.elapsed.as_secs_f64(),
        logs: config.logs_dir.clone(),
        result: RunResult::Build { counts: outcome.tally.clone(), failed: outcome.failed.clone() },
    }));
    // The hooks' last calls (run_end) end before the process does.
    events.finish();
    drop(interrupts);
    Ok(ExitCode::from(exit_code(&outcome)))
}

/// `rebuild-repository [--prune]`: the index from `All/`, obsolete packages
/// listed, and removed only with `--prune`.
pub fn rebuild_repository(config: &Config, global: &GlobalArgs, prune: bool) -> Result<ExitCode> {
    let _lock = BuildLock::acquire(&config.build_base)?;
    let db = BuildDb::open(&config.database_path)?;
    let Prepared { tree, .. } = prepare(config, &db, &[])?;
    let format = config.framework.framework().package_format();
    let obsolete = index::obsolete(&config.packages_dir, format, &produced_files(config, &tree))?;
    let pruned = if prune { prune_packages(&db, &obsolete)? } else { 0 };
    let still_there: Vec<_> = obsolete.iter().filter(|f| f.exists()).cloned().collect();
    report::write_obsolete(&config.logs_dir, &still_there)?;
    // The operator's own rebuild trusts no recorded digest: every file is hashed.
    let summary = format.rebuild_index(&config.packages_dir, &index::RecordedDigests::new())?;
    for (path, error) in &summary.unreadable {
        warn(&format!("{} left out of the index: {error}", path.display()));
    }
    let mut out = std::io::stdout().lock();
    if global.json {
        let result = json!({"packages": summary.packages, "obsolete": obsolete, "pruned": pruned, "unreadable": summary.unreadable});
        writeln!(out, "{result}")?;
    } else {
        writeln!(out, "{}: {} packages indexed", config.packages_dir.display(), summary.packages)?;
        match (obsolete.len(), prune) {
            (0, _) => writeln!(out, "no obsolete packages")?,
            (n, true) => writeln!(out, "{n} obsolete packages removed ({pruned} files)")?,
            (n, false) => writeln!(
                out,
                "{n} obsolete packages, listed in {} (remove them with --prune)",
                config.logs_dir.join(report::OBSOLETE).display()
            )?,
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Removes the files, then forgets them in the database. A file removed
/// but still indexed would make the next run trust a missing package, so
/// the rows go even if removing some file failed half-way.
fn prune_packages(db: &BuildDb, files: &[std::path::PathBuf]) -> Result<usize> {
    let removed = index::prune(files);
    let names: Vec<String> = files
        .iter()
        .filter(|f| !f.exists())
        .filter_map(|f| f.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .collect();
    db.forget_packages(&names)?;
    removed
}

fn confirmed(mode: Mode, global: &GlobalArgs) -> Result<bool> {
    if global.yes || mode == Mode::JustBuild || !std::io::stdin().is_terminal() {
        return Ok(true);
    }
    confirm("Proceed with the build?")
}

/// The index from `All/`; with the whole tree known, the obsolete list too.
fn refresh_repository(config: &Config, db: &BuildDb, whole_tree: Option<&PortTree>, events: &Events) {
    let format = config.framework.framework().package_format();
    if let Some(tree) = whole_tree {
        match index::obsolete(&config.packages_dir, format, &produced_files(config, tree)) {
            Ok(files) if !files.is_empty() => {
                events.notice(format!("{} obsolete package(s), listed in {}", files.len(), report::OBSOLETE));
                if let Err(e) = report::write_obsolete(&config.logs_dir, &files) {
                    events.debug(format!("{e:#}"));
                }
            }
            Ok(_) => {}
            Err(e) => events.debug(format!("cannot list obsolete packages: {e:#}")),
        }
    }
    let recorded = recorded_digests(db).unwrap_or_else(|e| {
        events.debug(format!("cannot read recorded package digests, hashing every package: {e:#}"));
        index::RecordedDigests::new()
    });
    match format.rebuild_index(&config.packages_dir, &recorded).context("cannot rebuild the repository index") {
        Ok(summary) => {
            for (path, error) in &summary.unreadable {
                events.notice(format!("warning: {} left out of the index: {error}", path.display()));
            }
        }
        // A notice is in 07_debug.log as well.
        Err(e) => events.notice(format!("warning: {e:#}")),
    }
}

/// The digests the database recorded when it indexed each package.
fn recorded_digests(db: &BuildDb) -> Result<index::RecordedDigests> {
    Ok(db
        .packages()?
        .into_iter()
        .map(|p| {
            let digest = index::RecordedDigest { size: p.size, sha256: p.sha256, recorded_ms: p.updated_ms };
            (p.file, digest)
        })
        .collect())
}

/// The package file names the ports of `tree` produce.
fn produced_files(config: &Config, tree: &PortTree) -> HashSet<String> {
    let framework = config.framework.framework();
    tree.nodes.iter().filter_map(|n| n.meta.as_ref()).map(|m| framework.package_file(&m.pkgname)).collect()
}

fn run_status(stop: Stop) -> RunStatus {
    match stop {
        Stop::None => RunStatus::Completed,
        Stop::Draining => RunStatus::Aborted,
        Stop::Killing => RunStatus::Interrupted,
    }
}

fn run_counts(outcome: &Outcome) -> RunCounts {
    let t = &outcome.tally;
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    RunCounts {
        built: count(t.built),
        failed: count(t.failed),
        ignored: count(t.ignored),
        skipped: count(t.skipped),
        up_to_date: count(t.up_to_date),
    }
}

fn exit_code(outcome: &Outcome) -> u8 {
    if outcome.stop != Stop::None {
        super::exit::INTERRUPTED
    } else if outcome.tally.failed > 0 || outcome.tally.not_buildable > 0 {
        super::exit::PORT_FAILED
    } else {
        super::exit::OK
    }
}
