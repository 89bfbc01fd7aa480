//! `portsynth fetch-only [PORT…]`: fills the distfiles cache for the ports
//! and everything they depend on (no ports: the whole tree).
//!
//! It is a run like a build: it takes the build-base lock (so a build and a
//! fetch-only never share slots), writes the summary logs and a run record,
//! and reacts to Ctrl-C the same way. Every port in scope with distfiles is
//! fetched, whatever its build status: an up-to-date port may be rebuilt
//! after the next edit, and a fetch does not depend on any other port.
//! Ignored ports are not fetched (the framework's check-sanity refuses
//! them); ports that could not be scanned have unknown distfiles and count
//! as failed.
//!
//! The run record reuses the build counters: fetched → `built`, failed (and
//! not scanned) → `failed`, present → `up_to_date`, ignored → `ignored`.

use std::collections::HashSet;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use rayon::prelude::*;

use super::prepare::{prepare, recover_dangling_runs, warn};
use crate::build::interrupts::Interrupts;
use crate::build::interrupts::Stop;
use crate::build::lock::BuildLock;
use crate::builddb::{BuildDb, RunCounts, RunStatus};
use crate::cli::{FetchOnlyArgs, GlobalArgs};
use crate::config::Config;
use crate::events::{Event, Events, FetchCounts, RunEnd, RunResult, RunScope, SkipCause, UnknownPort};
use crate::fetch::distinfo::Distfile;
use crate::fetch::pool::{self, FetchOutcome, FetchRun, Target};
use crate::graph::NodeId;
use crate::ports::{PortTree, Scanner};
use crate::report::RunLogs;
use crate::sandbox::runner::default_helper;

/// The ports of the request, sorted by what fetch-only does with them.
#[derive(Default)]
struct Scope {
    targets: Vec<Target>,
    ignored: Vec<(NodeId, String)>,
    /// Ports whose distfiles are unknown (scan error, unreadable distinfo).
    unknown: Vec<(NodeId, String)>,
    without_distfiles: usize,
}

impl Scope {
    fn distinct_distfiles(&self) -> usize {
        self.targets.iter().flat_map(|t| t.distfiles.iter().map(|d| d.key.as_str())).collect::<HashSet<_>>().len()
    }
}

pub fn run(config: &Config, global: &GlobalArgs, args: &FetchOnlyArgs) -> Result<ExitCode> {
    let origins = super::bulk_origins(config, &args.ports)?;
    let jobs = match args.fetch_jobs {
        Some(n) => crate::config::check_jobs(n as usize).map_err(|e| anyhow::anyhow!("--fetch-jobs: {e}"))?,
        None => config.fetch_jobs,
    };
    let _lock = BuildLock::acquire(&config.build_base)?;
    let db = BuildDb::open(&config.database_path)?;
    recover_dangling_runs(&db);
    let prepared = prepare(config, &db, &origins)?;
    let scanner = super::scanner(config)?;
    let nodes: Vec<NodeId> = prepared.plan.entries.iter().map(|e| e.node).collect();
    let scope = classify(&prepared.tree, &scanner, &nodes);
    let command =
        std::iter::once("fetch-only".to_string()).chain(args.ports.iter().cloned()).collect::<Vec<_>>().join(" ");
    let logs = Arc::new(RunLogs::create(&config.logs_dir)?);
    let run_id = db.start_run(&command, global.profile.as_deref())?;
    let events = super::run_events(config, global, jobs, &logs);
    events.emit(Event::RunStart {
        run: run_id.as_str().to_string(),
        command: command.clone(),
        scope: RunScope::Fetch { ports: scope.targets.len(), distfiles: scope.distinct_distfiles(), jobs },
    });
    record_unfetchable(&prepared.tree, &scope, &events);
    let interrupts = Interrupts::catch()?;
    let outcome = pool::execute(FetchRun {
        config,
        tree: &prepared.tree,
        targets: scope.targets.clone(),
        events: &events,
        helper: default_helper()?,
        jobs,
        interrupts: interrupts.receiver.clone(),
    })?;
    drop(interrupts);
    let status = match outcome.stop {
        Stop::None => RunStatus::Completed,
        Stop::Draining => RunStatus::Aborted,
        Stop::Killing => RunStatus::Interrupted,
    };
    if let Err(e) = db.finish_run(&run_id, status, &run_counts(&outcome, &scope)) {
        warn(&format!("{e:#}"));
        events.debug(format!("{e:#}"));
    }
    events.emit(Event::RunEnd(run_end(run_id.as_str(), &outcome, &scope, &prepared.tree, config)));
    events.finish();
    Ok(ExitCode::from(exit_code(&outcome, &scope)))
}

/// What fetch-only does with one port.
enum Listed {
    Ignored(String),
    Unknown(String),
    Distfiles(Vec<Distfile>),
}

/// Sorts the ports; their distfiles are the framework's to list (for
/// pkgsrc one query per package, in the scan sandboxes, in parallel).
fn classify(tree: &PortTree, scanner: &Scanner, nodes: &[NodeId]) -> Scope {
    let listed: Vec<Listed> = nodes.par_iter().map(|&node| list_distfiles(tree, scanner, node)).collect();
    let mut scope = Scope::default();
    for (&node, listed) in nodes.iter().zip(listed) {
        match listed {
            Listed::Ignored(reason) => scope.ignored.push((node, reason)),
            Listed::Unknown(reason) => scope.unknown.push((node, reason)),
            Listed::Distfiles(distfiles) if distfiles.is_empty() => scope.without_distfiles += 1,
            Listed::Distfiles(distfiles) => scope.targets.push(Target { node, distfiles }),
        }
    }
    scope
}

fn list_distfiles(tree: &PortTree, scanner: &Scanner, node: NodeId) -> Listed {
    let Some(meta) = &tree.nodes[node].meta else {
        let reason = tree.not_buildable.get(&node).cloned().unwrap_or_else(|| "not scanned".into());
        return Listed::Unknown(format!("distfiles unknown: {reason}"));
    };
    if let Some(reason) = &meta.ignore {
        return Listed::Ignored(reason.clone());
    }
    match scanner.framework.framework().port_distfiles(scanner, meta) {
        Ok(distfiles) => Listed::Distfiles(distfiles),
        Err(e) => Listed::Unknown(format!("{e:#}")),
    }
}

fn record_unfetchable(tree: &PortTree, scope: &Scope, events: &Events) {
    for (node, reason) in &scope.ignored {
        let origin = tree.nodes[*node].origin.to_string();
        let pkgname = tree.nodes[*node].meta.as_ref().map(|m| m.pkgname.clone());
        events.emit(Event::Ignored { origin, pkgname, reason: reason.clone() });
    }
    for (node, reason) in &scope.unknown {
        events.emit(Event::Skip {
            origin: tree.nodes[*node].origin.to_string(),
            pkgname: None,
            reason: format!("not fetched: {reason}"),
            cause: SkipCause::NotFetched { problem: reason.clone() },
        });
    }
}

fn run_counts(outcome: &FetchOutcome, scope: &Scope) -> RunCounts {
    let t = &outcome.tally;
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    RunCounts {
        built: count(t.fetched),
        failed: count(t.failed + scope.unknown.len()),
        ignored: count(scope.ignored.len()),
        skipped: 0,
        up_to_date: count(t.present),
    }
}

fn exit_code(outcome: &FetchOutcome, scope: &Scope) -> u8 {
    if outcome.stop != Stop::None {
        super::exit::INTERRUPTED
    } else if outcome.tally.failed > 0 || !scope.unknown.is_empty() {
        super::exit::PORT_FAILED
    } else {
        super::exit::OK
    }
}

/// The `run_end` event: fetch-only's counts, failures and unknown ports.
fn run_end(run_id: &str, outcome: &FetchOutcome, scope: &Scope, tree: &PortTree, config: &Config) -> RunEnd {
    let t = &outcome.tally;
    let unknown = scope
        .unknown
        .iter()
        .map(|(node, reason)| UnknownPort { origin: tree.nodes[*node].origin.to_string(), reason: reason.clone() })
        .collect();
    RunEnd {
        run: run_id.to_string(),
        status: outcome.stop.into(),
        seconds: outcome.elapsed.as_secs_f64(),
        logs: config.logs_dir.clone(),
        result: RunResult::Fetch {
            counts: FetchCounts {
                fetched: t.fetched,
                present: t.present,
                failed: t.failed,
                interrupted: t.interrupted,
                not_started: t.not_started,
                ignored: scope.ignored.len(),
                unknown: scope.unknown.len(),
                without_distfiles: scope.without_distfiles,
            },
            failed: outcome.failed.clone(),
            unknown,
            distfiles: config.distfiles_dir.clone(),
        },
    }
}
