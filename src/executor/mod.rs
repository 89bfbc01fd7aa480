//! Where a build runs: the seam between the scheduler and the sandboxes.
//!
//! The scheduler decides what to build, when, with how many make jobs, how
//! much memory it expects and where its work area goes; it puts all of that
//! in a [`SandboxRequest`] and hands it to an [`Executor`], which returns
//! the build's [`BuildOutcome`] with the package already placed in the
//! repository. Everything else — the database, the events, the summary
//! logs, the dependents released or skipped — stays with the coordinator,
//! whichever executor ran the build.
//!
//! Two executors exist. [`LocalExecutor`] is the sandbox of this host
//! ([`crate::sandbox::runner::build_one`]). [`slurm::SlurmExecutor`]
//! submits each build as one Slurm job that runs the very same runner on a
//! node (`portsynth slurm-job`, [`job`]) and hands its package back through
//! an outbox on shared storage; the coordinator verifies and places it. The
//! trait is one blocking call per build because the worker threads of
//! [`crate::build::scheduler`] already give every running build a thread of
//! its own: a Slurm build's thread waits on the job as a local build's
//! thread waits on its helper.

pub mod job;
pub mod slurm;
pub mod slurm_cli;

use std::path::PathBuf;

use anyhow::Result;

use crate::config::{Config, ExecutorKind};
use crate::sandbox::runner::{build_one, BuildOutcome, Cancel, Progress, SandboxRequest};

/// Runs one build to its end. `progress` gets the phases (and output lines,
/// where known) as they happen; `cancel` fires on the second Ctrl-C, when
/// the build must be killed and end `Interrupted`. `Err`: the build could
/// not even be started (or its end not be learnt); the coordinator records
/// it failed.
pub trait Executor: Sync {
    fn build(&self, request: &SandboxRequest, progress: &dyn Fn(Progress), cancel: &Cancel) -> Result<BuildOutcome>;
}

/// Today's sandboxes on this host.
pub struct LocalExecutor<'a> {
    pub config: &'a Config,
    pub helper: PathBuf,
}

impl Executor for LocalExecutor<'_> {
    fn build(&self, request: &SandboxRequest, progress: &dyn Fn(Progress), cancel: &Cancel) -> Result<BuildOutcome> {
        build_one(self.config, &self.helper, request, progress, Some(cancel))
    }
}

/// The executor `config.executor` names, and what its start-up had to say
/// (the Slurm executor cancels the jobs a killed earlier run left behind).
pub fn for_config<'a>(config: &'a Config, helper: PathBuf, run: &str) -> Result<(Box<dyn Executor + 'a>, Vec<String>)> {
    match config.executor {
        ExecutorKind::Local => Ok((Box::new(LocalExecutor { config, helper }), vec![])),
        ExecutorKind::Slurm => {
            let executor = slurm::SlurmExecutor::new(config, helper, run)?;
            let notices = executor.cancel_orphans()?;
            Ok((Box::new(executor), notices))
        }
    }
}
