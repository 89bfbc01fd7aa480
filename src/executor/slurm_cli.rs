//! Slurm's command-line interface as the executor speaks it: the `sbatch`
//! arguments of a build and the machine-readable output of `sbatch
//! --parsable`, `squeue -h -o` and `sacct -X -n -P`. Pure functions, so
//! that every argument and every parse is unit-tested without a cluster.
//!
//! The fields are separated by `|`, which no job id, state or node list
//! contains; the free-form field (the comment) comes last and is split off
//! only once, so a `|` in it (a build base path may hold one) cannot shift
//! the others.

use std::path::Path;

use anyhow::{bail, Context, Result};

/// What `sbatch` is asked for one build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRequest<'a> {
    pub name: &'a str,
    pub comment: &'a str,
    /// `--cpus-per-task`: the build's make jobs.
    pub cpus: u32,
    /// `--mem` in MiB: the expected peak (none: the cluster's default).
    pub memory_mib: Option<u64>,
    /// `--time` in minutes.
    pub time_minutes: u64,
    /// `--nice`: how far behind the longest critical path the port is.
    pub nice: u32,
    pub partition: Option<&'a str>,
    pub constraint: Option<&'a str>,
    /// `--output`: the job's own stdout and stderr (slurmstepd's view).
    pub output: &'a Path,
    pub chdir: &'a Path,
    /// `sbatch_args` of the config, after portsynth's own.
    pub extra: &'a [String],
    /// The job's script, as `--wrap`.
    pub script: String,
}

/// The arguments of `sbatch` for `job` (the program name not included).
pub fn sbatch_args(job: &JobRequest) -> Vec<String> {
    let mut args = vec![
        "--parsable".to_string(),
        format!("--job-name={}", job.name),
        format!("--comment={}", job.comment),
        "--ntasks=1".to_string(),
        format!("--cpus-per-task={}", job.cpus.max(1)),
        format!("--time={}", job.time_minutes.max(1)),
        format!("--nice={}", job.nice),
        "--requeue".to_string(),
        format!("--output={}", job.output.display()),
        format!("--chdir={}", job.chdir.display()),
    ];
    if let Some(mib) = job.memory_mib {
        args.push(format!("--mem={}M", mib.max(1)));
    }
    if let Some(partition) = job.partition {
        args.push(format!("--partition={partition}"));
    }
    if let Some(constraint) = job.constraint {
        args.push(format!("--constraint={constraint}"));
    }
    args.extend(job.extra.iter().cloned());
    args.push(format!("--wrap={}", job.script));
    args
}

/// `exec 'WORD' 'WORD'…`: a shell command line running `words` as they are.
pub fn exec_line(words: &[&str]) -> String {
    let quoted: Vec<String> = words.iter().map(|w| shell_quote(w)).collect();
    format!("exec {}", quoted.join(" "))
}

/// `word` in single quotes for `/bin/sh`.
pub fn shell_quote(word: &str) -> String {
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// The job id of `sbatch --parsable`'s output (`ID` or `ID;CLUSTER`).
pub fn parse_job_id(stdout: &str) -> Result<u64> {
    let first = stdout.lines().next().unwrap_or("").split(';').next().unwrap_or("").trim();
    first.parse().with_context(|| format!("no job id in sbatch's output {stdout:?}"))
}

/// The comment that identifies a job's build base and run:
/// `portsynth base=BUILD_BASE run=RUN`.
pub fn job_comment(build_base: &Path, run: &str) -> String {
    format!("portsynth base={} run={run}", build_base.display())
}

/// The build base and run of a [`job_comment`]; `None` for any other
/// comment. The run id has no space, so the last ` run=` ends the base,
/// whatever the base's path holds.
pub fn parse_job_comment(comment: &str) -> Option<(&str, &str)> {
    let rest = comment.strip_prefix("portsynth base=")?;
    let (base, run) = rest.rsplit_once(" run=")?;
    (!run.is_empty() && !run.contains(char::is_whitespace)).then_some((base, run))
}

/// The `squeue -o` format of [`parse_queue`].
pub const QUEUE_FORMAT: &str = "%i|%T|%j|%k";

/// One job of `squeue -h -o '%i|%T|%j|%k'`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedJob {
    pub id: u64,
    pub state: String,
    pub name: String,
    pub comment: String,
}

/// The jobs of `squeue -h -o QUEUE_FORMAT` (lines that do not parse are
/// left out: squeue prints nothing else with `-h`).
pub fn parse_queue(stdout: &str) -> Vec<QueuedJob> {
    stdout
        .lines()
        .filter_map(|line| {
            let mut fields = line.splitn(4, '|');
            let id = fields.next()?.trim().parse().ok()?;
            let state = fields.next()?.to_string();
            let name = fields.next()?.to_string();
            let comment = fields.next()?.to_string();
            Some(QueuedJob { id, state, name, comment })
        })
        .collect()
}

/// The `squeue -o` format of [`parse_status`].
pub const STATUS_FORMAT: &str = "%T|%N|%r";

/// The `squeue -o` format of [`parse_board`]: the job id, then
/// [`STATUS_FORMAT`].
pub const BOARD_FORMAT: &str = "%i|%T|%N|%r";

/// Every job of `squeue -h -o BOARD_FORMAT`, by id (lines that do not parse
/// are left out).
pub fn parse_board(stdout: &str) -> std::collections::HashMap<u64, JobStatus> {
    stdout
        .lines()
        .filter_map(|line| {
            let (id, status) = line.split_once('|')?;
            Some((id.trim().parse().ok()?, parse_status(status)?))
        })
        .collect()
}

/// Where a job is, from `squeue -h -j ID -o '%T|%N|%r'` or sacct.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobStatus {
    pub state: JobState,
    /// The node list (empty while pending).
    pub nodes: String,
    /// squeue's reason (pending or why it ended), sacct's exit code.
    pub reason: String,
}

/// A job state as the executor acts on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobState {
    /// Waiting to run, or requeued and waiting again.
    Pending,
    /// Allocated: running, completing, configuring, suspended.
    Running,
    /// Ended; the state's name (`COMPLETED`, `FAILED`, `NODE_FAIL`,
    /// `CANCELLED`, `TIMEOUT`, …).
    Ended(String),
}

impl JobState {
    /// Slurm's state name (sacct adds `by UID` to `CANCELLED`).
    pub fn parse(text: &str) -> JobState {
        let name = text.split_whitespace().next().unwrap_or("").trim_end_matches('+');
        match name {
            "PENDING" | "REQUEUED" | "REQUEUE_HOLD" | "REQUEUE_FED" | "RESV_DEL_HOLD" => JobState::Pending,
            "RUNNING" | "COMPLETING" | "CONFIGURING" | "SUSPENDED" | "STOPPED" | "SIGNALING" | "STAGE_OUT"
            | "RESIZING" => JobState::Running,
            other => JobState::Ended(other.to_string()),
        }
    }
}

/// The job's status from `squeue -h -j ID -o STATUS_FORMAT`; `None` when
/// squeue no longer lists it.
pub fn parse_status(stdout: &str) -> Option<JobStatus> {
    let line = stdout.lines().find(|l| !l.trim().is_empty())?;
    let mut fields = line.splitn(3, '|');
    let state = JobState::parse(fields.next()?);
    let nodes = fields.next().unwrap_or("").trim().to_string();
    let reason = fields.next().unwrap_or("").trim().to_string();
    Some(JobStatus { state, nodes, reason })
}

/// The `sacct -o` fields of [`parse_sacct`].
pub const SACCT_FIELDS: &str = "JobID,State,NodeList,ExitCode";

/// Every run of a job from `sacct -X -D -n -P -j ID -o SACCT_FIELDS`,
/// oldest first (a requeued job has one record per run).
pub fn parse_sacct(stdout: &str) -> Result<Vec<JobStatus>> {
    let mut runs = Vec::new();
    for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split('|').collect();
        let [_id, state, nodes, exit] = fields[..] else {
            bail!("sacct line {line:?} has not the fields {SACCT_FIELDS}");
        };
        runs.push(JobStatus {
            state: JobState::parse(state),
            nodes: nodes.trim().to_string(),
            reason: format!("exit code {exit}"),
        });
    }
    Ok(runs)
}

/// The most CPUs of one node, from `sinfo -h -N -o %c` (one line per
/// node); `None` when sinfo lists none.
pub fn parse_largest_node(stdout: &str) -> Option<u32> {
    stdout.lines().filter_map(|l| l.trim().trim_end_matches('+').parse::<u32>().ok()).max()
}

/// Whole MiB for `--mem`, rounded up.
pub fn mebibytes(bytes: u64) -> u64 {
    bytes.div_ceil(1 << 20)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request<'a>(extra: &'a [String]) -> JobRequest<'a> {
        JobRequest {
            name: "portsynth:misc/hello",
            comment: "portsynth base=/b run=r1",
            cpus: 3,
            memory_mib: Some(700),
            time_minutes: 95,
            nice: 12,
            partition: Some("builds"),
            constraint: Some("ssd"),
            output: Path::new("/shared/out/job.out"),
            chdir: Path::new("/shared/out"),
            extra,
            script: exec_line(&["/opt/portsynth", "slurm-job", "/shared/out/spec.json"]),
        }
    }

    #[test]
    fn sbatch_arguments_carry_cores_memory_time_priority_and_identity() {
        let extra = vec!["--exclusive".to_string()];
        let args = sbatch_args(&request(&extra));
        assert_eq!(
            args,
            [
                "--parsable",
                "--job-name=portsynth:misc/hello",
                "--comment=portsynth base=/b run=r1",
                "--ntasks=1",
                "--cpus-per-task=3",
                "--time=95",
                "--nice=12",
                "--requeue",
                "--output=/shared/out/job.out",
                "--chdir=/shared/out",
                "--mem=700M",
                "--partition=builds",
                "--constraint=ssd",
                "--exclusive",
                "--wrap=exec '/opt/portsynth' 'slurm-job' '/shared/out/spec.json'",
            ]
        );
    }

    #[test]
    fn sbatch_leaves_out_what_is_not_set() {
        let job = JobRequest { memory_mib: None, partition: None, constraint: None, cpus: 0, ..request(&[]) };
        let args = sbatch_args(&job);
        assert!(args.contains(&"--cpus-per-task=1".to_string()), "{args:?}");
        assert!(!args.iter().any(|a| a.starts_with("--mem") || a.starts_with("--partition")), "{args:?}");
        assert!(!args.iter().any(|a| a.starts_with("--constraint")), "{args:?}");
    }

    #[test]
    fn shell_quoting_survives_quotes_and_spaces() {
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(exec_line(&["/x y/p", "$HOME"]), "exec '/x y/p' '$HOME'");
    }

    #[test]
    fn job_ids_of_parsable_output() {
        assert_eq!(parse_job_id("42\n").unwrap(), 42);
        assert_eq!(parse_job_id("43;cluster1\n").unwrap(), 43);
        assert!(parse_job_id("sbatch: error: Batch job submission failed\n").is_err());
        assert!(parse_job_id("").is_err());
    }

    #[test]
    fn queue_lines_with_a_bar_in_the_comment() {
        let text = "12|RUNNING|portsynth:misc/a|portsynth base=/b|x run=r\n\
                    13|PENDING|other|\n\
                    garbage\n";
        let jobs = parse_queue(text);
        assert_eq!(
            jobs,
            [
                QueuedJob {
                    id: 12,
                    state: "RUNNING".into(),
                    name: "portsynth:misc/a".into(),
                    comment: "portsynth base=/b|x run=r".into()
                },
                QueuedJob { id: 13, state: "PENDING".into(), name: "other".into(), comment: String::new() },
            ]
        );
    }

    #[test]
    fn one_squeue_for_every_job() {
        let text = "12|RUNNING|node2|None\n13|PENDING||Resources\n14_1|RUNNING|node1|None\ngarbage\n";
        let board = parse_board(text);
        assert_eq!(board.len(), 2, "{board:?}");
        assert_eq!(board[&12], JobStatus { state: JobState::Running, nodes: "node2".into(), reason: "None".into() });
        assert_eq!(board[&13].state, JobState::Pending);
        assert_eq!(board[&13].reason, "Resources");
    }

    #[test]
    fn job_comments_name_the_build_base_exactly() {
        let comment = job_comment(Path::new("/var/cache/port synth run=x"), "01a2");
        assert_eq!(parse_job_comment(&comment), Some(("/var/cache/port synth run=x", "01a2")));
        assert_eq!(parse_job_comment("portsynth base=/b"), None);
        assert_eq!(parse_job_comment("someone else's job"), None);
        assert_eq!(parse_job_comment("portsynth base=/b run="), None);
    }

    #[test]
    fn job_states_as_the_executor_sees_them() {
        assert_eq!(JobState::parse("PENDING"), JobState::Pending);
        assert_eq!(JobState::parse("REQUEUED"), JobState::Pending);
        assert_eq!(JobState::parse("COMPLETING"), JobState::Running);
        assert_eq!(JobState::parse("CANCELLED by 0"), JobState::Ended("CANCELLED".into()));
        assert_eq!(JobState::parse("NODE_FAIL"), JobState::Ended("NODE_FAIL".into()));
        assert_eq!(JobState::parse("COMPLETED"), JobState::Ended("COMPLETED".into()));
    }

    #[test]
    fn squeue_status_and_its_absence() {
        assert_eq!(
            parse_status("RUNNING|node2|None\n"),
            Some(JobStatus { state: JobState::Running, nodes: "node2".into(), reason: "None".into() })
        );
        assert_eq!(
            parse_status("PENDING||BeginTime\n"),
            Some(JobStatus { state: JobState::Pending, nodes: String::new(), reason: "BeginTime".into() })
        );
        assert_eq!(parse_status(""), None);
    }

    #[test]
    fn sacct_runs_of_a_requeued_job() {
        let text = "7|NODE_FAIL|node2|0:0\n7|COMPLETED|node3|0:0\n";
        let runs = parse_sacct(text).unwrap();
        assert_eq!(runs.len(), 2);
        assert_eq!(runs[0].state, JobState::Ended("NODE_FAIL".into()));
        assert_eq!(runs[1].nodes, "node3");
        assert!(parse_sacct("7|COMPLETED\n").is_err());
        assert!(parse_sacct("").unwrap().is_empty());
    }

    #[test]
    fn the_largest_node_of_sinfo() {
        assert_eq!(parse_largest_node("2\n64\n8\n"), Some(64));
        assert_eq!(parse_largest_node("16+\n"), Some(16));
        assert_eq!(parse_largest_node(""), None);
    }

    #[test]
    fn memory_in_whole_mebibytes() {
        assert_eq!(mebibytes(1), 1);
        assert_eq!(mebibytes(1 << 20), 1);
        assert_eq!(mebibytes((1 << 30) + 1), 1025);
    }
}
