//! One build as a Slurm job: what the coordinator writes for the node (the
//! [`JobSpec`]), what the node writes back (the [`NodeOutcome`] and a
//! progress file), and the node's side, `portsynth slurm-job SPEC`.
//!
//! The node runs the very runner of a local build
//! ([`crate::sandbox::runner::build_in_slot`]: the same helper, namespaces,
//! watchdogs, limits and log), with the paths the nodes see: its ports tree,
//! the repository read-only, the distfiles, a node-local build base, and the
//! build's outbox on shared storage as its logs directory. Only the delivery
//! differs: the package is handed over into the outbox unverified
//! ([`Delivery::HandOver`]); the coordinator verifies it and places it, and
//! writes the database. A node never writes the repository or the database.
//!
//! Everything the coordinator reads back from an outbox was written next to
//! a hostile port's build, so it is read as untrusted: bounded in size,
//! parsed strictly, checked against the request ([`NodeOutcome::validate`]),
//! and the package goes through the verification of every local build.
//!
//! slurmstepd ends a cancelled job with SIGTERM (SIGKILL after `KillWait`):
//! the node's runner turns SIGTERM into its [`Cancel`], kills the helper
//! (and with it the sandbox's namespaces), removes its slot directories and
//! writes an `Interrupted` outcome, as a local build does on the second
//! Ctrl-C.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::builddb::PhaseUsage;
use crate::config::Config;
use crate::ports::{Origin, Phase};
use crate::sandbox::runner::{
    build_in_slot, default_helper, BuildOutcome, Cancel, Delivery, Dependency, OutcomeStatus, Progress, SandboxRequest,
};
use crate::sandbox::work_area::WorkArea;

/// The spec's name in a build's outbox.
pub const SPEC: &str = "spec.json";
/// The node's outcome (written last, by rename: its presence means done).
pub const OUTCOME: &str = "outcome.json";
/// The node's current phase and output lines, replaced as they change.
pub const PROGRESS: &str = "progress.json";

/// The most an outcome file may be (its reason and abnormal lines are
/// bounded further by [`NodeOutcome::validate`]).
const MAX_OUTCOME_SIZE: u64 = 1 << 20;
const MAX_PROGRESS_SIZE: u64 = 4096;
const MAX_REASON: usize = 8192;
const MAX_ABNORMAL_LINES: usize = 200;
const MAX_ABNORMAL_LINE: usize = 1024;

/// What the node needs to run one build (paths as the node sees them).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobSpec {
    /// The config file and profile the build runs with.
    pub config: PathBuf,
    pub profile: Option<String>,
    pub ports_dir: PathBuf,
    pub packages_dir: PathBuf,
    pub distfiles_dir: PathBuf,
    pub build_base: PathBuf,
    /// This build's outbox.
    pub outbox: PathBuf,
    pub request: RequestSpec,
}

/// A [`SandboxRequest`] as JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestSpec {
    pub slot: u32,
    pub origin: String,
    pub pkgname: String,
    pub phases: Vec<Phase>,
    /// Each dependency's package file and origin.
    pub dependencies: Vec<(String, String)>,
    pub keep_work_on_failure: bool,
    pub variant: Vec<String>,
    pub bootstrap_pkg: bool,
    pub make_jobs: u32,
    pub work_area: WorkArea,
}

impl RequestSpec {
    pub fn of(request: &SandboxRequest) -> RequestSpec {
        RequestSpec {
            slot: request.slot,
            origin: request.origin.to_string(),
            pkgname: request.pkgname.clone(),
            phases: request.phases.clone(),
            dependencies: request.dependencies.iter().map(|d| (d.file.clone(), d.origin.to_string())).collect(),
            keep_work_on_failure: request.keep_work_on_failure,
            variant: request.variant.clone(),
            bootstrap_pkg: request.bootstrap_pkg,
            make_jobs: request.make_jobs,
            work_area: request.work_area,
        }
    }

    fn request(&self) -> Result<SandboxRequest> {
        let origin = |text: &str| Origin::parse(text).map_err(|e| anyhow::anyhow!("spec: origin {text:?}: {e}"));
        Ok(SandboxRequest {
            slot: self.slot,
            origin: origin(&self.origin)?,
            pkgname: self.pkgname.clone(),
            phases: self.phases.clone(),
            dependencies: self
                .dependencies
                .iter()
                .map(|(file, dep)| Ok(Dependency { file: file.clone(), origin: origin(dep)? }))
                .collect::<Result<_>>()?,
            keep_work_on_failure: self.keep_work_on_failure,
            variant: self.variant.clone(),
            bootstrap_pkg: self.bootstrap_pkg,
            make_jobs: self.make_jobs,
            work_area: self.work_area,
            expected_memory: None,
            critical_path_ms: None,
        })
    }
}

/// A [`BuildOutcome`] as the node writes it: no paths (the coordinator
/// knows where the log and the package are), the node's name instead.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeOutcome {
    pub node: String,
    pub status: OutcomeStatus,
    pub failed_phase: Option<Phase>,
    pub reason: Option<String>,
    pub duration_ms: u64,
    /// A package was handed over into the outbox.
    pub package: bool,
    /// The failed build's work area is in the outbox (`portsynth test`).
    pub kept_work: bool,
    pub abnormal_output: Vec<String>,
    pub cpu_ms: Option<u64>,
    pub peak_memory: Option<u64>,
    pub phases: Vec<PhaseUsage>,
    pub make_jobs: u32,
    pub work_area: WorkArea,
    pub retried_on_disk: bool,
}

impl NodeOutcome {
    fn of(node: String, outcome: &BuildOutcome) -> NodeOutcome {
        NodeOutcome {
            node,
            status: outcome.status,
            failed_phase: outcome.failed_phase,
            reason: outcome.reason.clone(),
            duration_ms: outcome.duration.as_millis() as u64,
            package: outcome.package.is_some(),
            kept_work: outcome.kept_work.is_some(),
            abnormal_output: outcome.abnormal_output.clone(),
            cpu_ms: outcome.cpu_time.map(|c| c.as_millis() as u64),
            peak_memory: outcome.peak_memory,
            phases: outcome.phases.clone(),
            make_jobs: outcome.make_jobs,
            work_area: outcome.work_area,
            retried_on_disk: outcome.retried_on_disk,
        }
    }

    /// A node that could not even start the build.
    fn setup_failed(node: String, reason: String, request: &RequestSpec) -> NodeOutcome {
        NodeOutcome {
            node,
            status: OutcomeStatus::Failed,
            failed_phase: None,
            reason: Some(reason),
            duration_ms: 0,
            package: false,
            kept_work: false,
            abnormal_output: vec![],
            cpu_ms: None,
            peak_memory: None,
            phases: vec![],
            make_jobs: request.make_jobs,
            work_area: request.work_area,
            retried_on_disk: false,
        }
    }

    /// Reads `outbox/outcome.json` as untrusted input; `None` when the node
    /// wrote none.
    pub fn read(outbox: &Path, request: &SandboxRequest) -> Result<Option<NodeOutcome>> {
        let path = outbox.join(OUTCOME);
        let Some(bytes) = read_bounded(&path, MAX_OUTCOME_SIZE)? else { return Ok(None) };
        let outcome: NodeOutcome =
            serde_json::from_slice(&bytes).with_context(|| format!("{}: not a node outcome", path.display()))?;
        outcome.validate(request).with_context(|| format!("{}: rejected", path.display())).map(Some)
    }

    /// Checks what a hostile build could have bent: the make jobs are the
    /// request's, the phases are the request's and in its order, names and
    /// texts are bounded; long texts are cut, not trusted.
    pub fn validate(mut self, request: &SandboxRequest) -> Result<NodeOutcome> {
        if self.make_jobs != request.make_jobs {
            bail!("make jobs {} instead of the {} requested", self.make_jobs, request.make_jobs);
        }
        if self.phases.len() > request.phases.len() {
            bail!("{} phases for {} requested", self.phases.len(), request.phases.len());
        }
        for (usage, wanted) in self.phases.iter().zip(&request.phases) {
            if usage.phase != wanted.name() {
                bail!("phase {:?} where {} was requested", cut(&usage.phase, 64), wanted.name());
            }
        }
        if self.failed_phase.is_some_and(|p| !request.phases.contains(&p)) {
            bail!("failed phase {:?} was not requested", self.failed_phase);
        }
        if self.package && self.status != OutcomeStatus::Success {
            bail!("a package handed over by a build that did not succeed");
        }
        self.node = cut(&self.node, 255);
        self.reason = self.reason.map(|r| cut(&r, MAX_REASON));
        self.abnormal_output.truncate(MAX_ABNORMAL_LINES);
        for line in &mut self.abnormal_output {
            *line = cut(line, MAX_ABNORMAL_LINE);
        }
        Ok(self)
    }

    /// The coordinator's [`BuildOutcome`]: the log where the coordinator
    /// put it, no package placed yet.
    pub fn into_outcome(self, log_path: PathBuf) -> BuildOutcome {
        BuildOutcome {
            status: self.status,
            failed_phase: self.failed_phase,
            reason: self.reason,
            duration: Duration::from_millis(self.duration_ms),
            log_path,
            package: None,
            kept_work: None,
            abnormal_output: self.abnormal_output,
            cpu_time: self.cpu_ms.map(Duration::from_millis),
            peak_memory: self.peak_memory,
            phases: self.phases,
            make_jobs: self.make_jobs,
            work_area: self.work_area,
            retried_on_disk: self.retried_on_disk,
        }
    }
}

/// The node's progress file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeProgress {
    pub phase: Option<Phase>,
    pub lines: u64,
}

impl NodeProgress {
    /// The progress file of `outbox`, if there is a readable one.
    pub fn read(outbox: &Path) -> Option<NodeProgress> {
        let bytes = read_bounded(&outbox.join(PROGRESS), MAX_PROGRESS_SIZE).ok()??;
        serde_json::from_slice(&bytes).ok()
    }
}

/// The file's contents, `None` when it does not exist; an error when it is
/// a symlink, not a regular file, or larger than `limit`.
pub fn read_bounded(path: &Path, limit: u64) -> Result<Option<Vec<u8>>> {
    let file = match crate::repo::fsutil::open_regular(path, "file") {
        Ok(file) => file,
        Err(e) if crate::repo::fsutil::is_not_found(&e) => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes).with_context(|| format!("cannot read {}", path.display()))?;
    if bytes.len() as u64 > limit {
        bail!("{} is larger than {limit} bytes", path.display());
    }
    Ok(Some(bytes))
}

/// At most `max` bytes of `text`, on a character boundary.
fn cut(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_string();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

/// Writes `bytes` to `dir/name` through a temporary file and a rename, so
/// a reader sees the old file or the new one, never half of one.
fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let temporary = dir.join(format!(".{name}.tmp"));
    std::fs::write(&temporary, bytes).with_context(|| format!("cannot write {}", temporary.display()))?;
    let target = dir.join(name);
    std::fs::rename(&temporary, &target).with_context(|| format!("cannot rename into {}", target.display()))
}

/// The config of the node's build: the config file as the nodes see it,
/// with the nodes' paths and the outbox as its logs directory.
fn node_config(spec: &JobSpec) -> Result<Config> {
    let config = crate::config::load(&spec.config, spec.profile.as_deref())?;
    Ok(Config {
        ports_dir: spec.ports_dir.clone(),
        packages_dir: spec.packages_dir.clone(),
        distfiles_dir: spec.distfiles_dir.clone(),
        build_base: spec.build_base.clone(),
        logs_dir: spec.outbox.clone(),
        ..config
    })
}

/// `portsynth slurm-job SPEC`: one build on this node. Exits 0 when an
/// outcome was written (whatever it says), 1 when not even that.
pub fn main(spec_path: &Path) -> Result<ExitCode> {
    let node = nix::unistd::gethostname().map_or_else(|_| "?".into(), |h| h.to_string_lossy().into_owned());
    let bytes =
        read_bounded(spec_path, MAX_OUTCOME_SIZE)?.with_context(|| format!("no spec {}", spec_path.display()))?;
    let spec: JobSpec =
        serde_json::from_slice(&bytes).with_context(|| format!("{}: not a job spec", spec_path.display()))?;
    let outcome = match run(&spec, &node) {
        Ok(outcome) => NodeOutcome::of(node, &outcome),
        Err(e) => NodeOutcome::setup_failed(node.clone(), format!("on node {node}: {e:#}"), &spec.request),
    };
    let text = serde_json::to_vec(&outcome)?;
    write_atomically(&spec.outbox, OUTCOME, &text)
        .with_context(|| format!("on node {}: cannot write the outcome of {}", outcome.node, spec.request.origin))?;
    Ok(ExitCode::SUCCESS)
}

fn run(spec: &JobSpec, node: &str) -> Result<BuildOutcome> {
    let config = node_config(spec)?;
    let request = spec.request.request()?;
    clear_earlier_attempt(&config, &spec.outbox, &request)?;
    let cancel = Cancel::new()?;
    cancel.fire_on(signal_hook::consts::SIGTERM)?;
    cancel.fire_on(signal_hook::consts::SIGINT)?;
    let reporter = ProgressFile::new(&spec.outbox);
    let progress = |progress: Progress| reporter.update(progress);
    let helper = default_helper()?;
    build_in_slot(&config, &helper, &request, &progress, Some(&cancel), Delivery::HandOver(&spec.outbox))
        .with_context(|| format!("on node {node}: building {}", request.origin))
}

/// A requeued job runs again in the same outbox: what its earlier run
/// left (outcome, progress, package, log, work archive) goes first. The
/// spec and Slurm's own output file stay.
fn clear_earlier_attempt(config: &Config, outbox: &Path, request: &SandboxRequest) -> Result<()> {
    let package = crate::sandbox::runner::package_file_name(config, &request.pkgname);
    let log = request.origin.log_file(outbox);
    let work = outbox.join(format!("{}.work.tar", request.origin.log_stem()));
    for path in [outbox.join(OUTCOME), outbox.join(PROGRESS), outbox.join(package), log, work] {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot remove {}", path.display())),
        }
    }
    Ok(())
}

/// Writes the node's [`NodeProgress`]: at once on a new phase, at most
/// once a second for output lines.
struct ProgressFile<'a> {
    outbox: &'a Path,
    state: std::cell::RefCell<(NodeProgress, Instant)>,
}

impl<'a> ProgressFile<'a> {
    const EVERY: Duration = Duration::from_secs(1);

    fn new(outbox: &'a Path) -> ProgressFile<'a> {
        ProgressFile { outbox, state: std::cell::RefCell::new((NodeProgress::default(), Instant::now())) }
    }

    fn update(&self, progress: Progress) {
        let mut state = self.state.borrow_mut();
        let (current, written) = &mut *state;
        let due = match progress {
            Progress::Phase(phase) => {
                current.phase = Some(phase);
                true
            }
            Progress::Lines(lines) => {
                current.lines = lines;
                written.elapsed() >= Self::EVERY
            }
        };
        if due {
            *written = Instant::now();
            if let Ok(text) = serde_json::to_vec(current) {
                // Progress is for the display only: a failed write loses nothing.
                let _ = write_atomically(self.outbox, PROGRESS, &text);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> SandboxRequest {
        SandboxRequest {
            slot: 2,
            origin: Origin::parse("misc/hello").unwrap(),
            pkgname: "hello-1.0".into(),
            phases: vec![Phase::Fetch, Phase::Build, Phase::Package],
            dependencies: vec![Dependency { file: "lib-1.pkg".into(), origin: Origin::parse("devel/lib").unwrap() }],
            keep_work_on_failure: false,
            variant: vec![],
            bootstrap_pkg: false,
            make_jobs: 2,
            work_area: WorkArea::Tmpfs,
            expected_memory: Some(1 << 30),
            critical_path_ms: Some(5000),
        }
    }

    fn phase(name: &str) -> PhaseUsage {
        PhaseUsage {
            phase: name.into(),
            wall_ms: 10,
            cpu_ms: None,
            make_jobs: 2,
            peak_memory: None,
            peak_work: None,
            serial_ms: None,
            parallel_cpu_ms: None,
        }
    }

    fn outcome() -> NodeOutcome {
        NodeOutcome {
            phases: vec![phase("fetch"), phase("build"), phase("package")],
            package: true,
            status: OutcomeStatus::Success,
            ..NodeOutcome::setup_failed("node1".into(), "x".into(), &RequestSpec::of(&request()))
        }
    }

    #[test]
    fn a_request_survives_its_spec() {
        let spec = RequestSpec::of(&request());
        let text = serde_json::to_string(&spec).unwrap();
        let back: RequestSpec = serde_json::from_str(&text).unwrap();
        let again = back.request().unwrap();
        let original = request();
        assert_eq!(again.origin, original.origin);
        assert_eq!(again.dependencies, original.dependencies);
        assert_eq!((again.slot, again.make_jobs, again.phases.clone()), (2, 2, original.phases));
    }

    #[test]
    fn an_honest_outcome_passes_and_becomes_a_build_outcome() {
        let checked = outcome().validate(&request()).unwrap();
        let build = checked.into_outcome(PathBuf::from("/logs/misc___hello.log"));
        assert_eq!(build.status, OutcomeStatus::Success);
        assert_eq!(build.package, None, "placing the package is the coordinator's");
        assert_eq!(build.phases.len(), 3);
    }

    #[test]
    fn outcomes_a_hostile_build_could_bend_are_rejected() {
        let wrong_jobs = NodeOutcome { make_jobs: 64, ..outcome() };
        assert!(wrong_jobs.validate(&request()).is_err());
        let extra_phase = NodeOutcome { phases: vec![phase("fetch"), phase("stage")], ..outcome() };
        assert!(extra_phase.validate(&request()).is_err());
        let failed_with_package = NodeOutcome { status: OutcomeStatus::Failed, ..outcome() };
        assert!(failed_with_package.validate(&request()).is_err());
        let unrequested = NodeOutcome { failed_phase: Some(Phase::Configure), ..outcome() };
        assert!(unrequested.validate(&request()).is_err());
    }

    #[test]
    fn long_texts_are_cut() {
        let long = NodeOutcome {
            reason: Some("é".repeat(MAX_REASON)),
            abnormal_output: vec!["x".repeat(5000); 1000],
            ..outcome()
        };
        let checked = long.validate(&request()).unwrap();
        assert!(checked.reason.unwrap().len() <= MAX_REASON + "…".len());
        assert_eq!(checked.abnormal_output.len(), MAX_ABNORMAL_LINES);
        assert!(checked.abnormal_output.iter().all(|l| l.len() <= MAX_ABNORMAL_LINE + "…".len()));
    }

    #[test]
    fn outcome_files_are_bounded_and_strict() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(NodeOutcome::read(dir.path(), &request()).unwrap(), None);
        std::fs::write(dir.path().join(OUTCOME), vec![b' '; (MAX_OUTCOME_SIZE + 1) as usize]).unwrap();
        assert!(NodeOutcome::read(dir.path(), &request()).is_err());
        std::fs::write(dir.path().join(OUTCOME), br#"{"node":"n","unknown":1}"#).unwrap();
        assert!(NodeOutcome::read(dir.path(), &request()).is_err());
        write_atomically(dir.path(), OUTCOME, &serde_json::to_vec(&outcome()).unwrap()).unwrap();
        assert_eq!(NodeOutcome::read(dir.path(), &request()).unwrap(), Some(outcome()));
        std::fs::remove_file(dir.path().join(OUTCOME)).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", dir.path().join(OUTCOME)).unwrap();
        assert!(NodeOutcome::read(dir.path(), &request()).is_err(), "the file a symlink names is not read");
    }

    #[test]
    fn progress_is_read_back() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(NodeProgress::read(dir.path()), None);
        let file = ProgressFile::new(dir.path());
        file.update(Progress::Phase(Phase::Build));
        assert_eq!(NodeProgress::read(dir.path()), Some(NodeProgress { phase: Some(Phase::Build), lines: 0 }));
    }
}
