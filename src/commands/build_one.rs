//! `portsynth build-one PORT`: one sandboxed build, dependencies taken from
//! the repository. A tool for trying the sandbox alone; the database is not
//! touched (beyond the scan cache). Like every command that changes the build
//! base, it holds the build-base lock.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};

use super::prepare::prepare;
use crate::build::lock::BuildLock;
use crate::builddb::BuildDb;
use crate::cli::{BuildOneArgs, GlobalArgs};
use crate::config::Config;
use crate::ports::Origin;
use crate::sandbox::runner::{build_one, default_helper, Dependency, OutcomeStatus, Progress, SandboxRequest};

pub fn run(config: &Config, global: &GlobalArgs, args: &BuildOneArgs) -> Result<ExitCode> {
    let origin = Origin::parse(&args.port).map_err(|e| anyhow::anyhow!("bad port argument '{}': {e}", args.port))?;
    // Its slot, log and package are the build base's: one writer at a time.
    let _lock = BuildLock::acquire(&config.build_base)?;
    let db = BuildDb::open(&config.database_path)?;
    let prepared = prepare(config, &db, std::slice::from_ref(&origin))?;
    let tree = &prepared.tree;
    let node = tree.lookup(&origin).with_context(|| format!("{origin}: no such port in the tree"))?;
    if let Some(reason) = tree.not_buildable.get(&node) {
        bail!("{origin} is not buildable: {reason}");
    }
    let meta = tree.nodes[node].meta.as_ref().expect("buildable ports have metadata");
    if let Some(reason) = &meta.ignore {
        bail!("{origin} is ignored: {reason}");
    }
    let mut dependencies = Vec::new();
    for dep in tree.install_set(node) {
        let dep_meta = tree.nodes[dep].meta.as_ref().expect("dependencies of a buildable port are scanned");
        let file = config.framework.framework().package_file(&dep_meta.pkgname);
        if !config.packages_dir.join("All").join(&file).is_file() {
            bail!("{origin} needs {} ({file}), which is not packaged yet; build it first", tree.nodes[dep].origin);
        }
        dependencies.push(Dependency { file, origin: tree.nodes[dep].origin.clone() });
    }
    let request = SandboxRequest {
        slot: args.slot,
        origin: tree.nodes[node].origin.clone(),
        pkgname: meta.pkgname.clone(),
        phases: config.framework.framework().phases(args.check_plist),
        dependencies,
        keep_work_on_failure: false,
        variant: meta.variant.clone(),
        bootstrap_pkg: meta.bootstrap_pkg,
        // One build alone: the whole core budget unless make_jobs fixes it,
        // one job for a port that is not safe for parallel make.
        make_jobs: if meta.parallel_safe { config.make_jobs.unwrap_or(config.jobs) as u32 } else { 1 },
        work_area: crate::sandbox::work_area::WorkArea::for_config(config),
        expected_memory: None,
        critical_path_ms: None,
    };
    let quiet = global.quiet || global.json;
    let outcome = build_one(
        config,
        &default_helper()?,
        &request,
        &|event| {
            if let (Progress::Phase(phase), false) = (event, quiet) {
                eprintln!("[SL{:02}] {} {}", request.slot, request.origin, phase);
            }
        },
        None,
    )?;
    if global.json {
        writeln!(std::io::stdout().lock(), "{}", serde_json::to_string(&outcome)?)?;
    } else {
        match outcome.status {
            OutcomeStatus::Success => eprintln!(
                "{} built in {:.1} s: {}",
                request.origin,
                outcome.duration.as_secs_f64(),
                outcome.package.as_ref().map_or(String::new(), |p| p.display().to_string())
            ),
            OutcomeStatus::Failed | OutcomeStatus::Interrupted => eprintln!(
                "{} FAILED in phase {}: {} (log: {})",
                request.origin,
                outcome.failed_phase.map_or("setup", |p| p.name()),
                outcome.reason.as_deref().unwrap_or(""),
                outcome.log_path.display()
            ),
        }
    }
    Ok(ExitCode::from(match outcome.status {
        OutcomeStatus::Success => super::exit::OK,
        OutcomeStatus::Failed => super::exit::PORT_FAILED,
        OutcomeStatus::Interrupted => super::exit::INTERRUPTED,
    }))
}
