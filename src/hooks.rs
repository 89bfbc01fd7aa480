//! The operator's hooks (config `[hooks]`): a command run at the run's
//! start and end and for each port outcome, with the facts in
//! `PORTSYNTH_*` environment variables, as dsynth's `hook_*` scripts and
//! poudriere's hooks get them.
//!
//! Hooks are a [`Reporter`] of the event stream like the terminal and the
//! logs: [`hook_call`] turns an event into the hook it fires and its
//! variables (a pure function, unit-tested), and the reporter queues the
//! call to one hook thread that runs the calls in order. The coordinator
//! never waits for a hook, and a hook can never change the run: a hook
//! that cannot start, exits non-zero or outlives `hook_timeout` is a
//! notice (on the screen, in `07_debug.log`), nothing more. The hook's own
//! output goes to `logs_dir/hooks.log`.
//!
//! A hook is the operator's own command, trusted like the config: it runs
//! as portsynth's user, outside the sandboxes, with portsynth's
//! environment plus the variables. It runs without a shell
//! (`["/path/prog", "arg"]`, words passed as they are), unless the config
//! says `shell = true` and writes the command as one string, which then
//! runs as `/bin/sh -c STRING`: a shell is opt-in, so a `$` or a space in
//! an argument means nothing unless asked for. Each hook runs in its own
//! process group; at its deadline the group gets SIGTERM, then SIGKILL
//! after [`KILL_GRACE`].

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crossbeam_channel::{unbounded, Sender};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde::Serialize;

use crate::events::{BuildEndStatus, Event, FetchStatus, Record, Reporter, RunResult, RunScope, SkipCause};

/// The hooks' output, in `logs_dir`.
pub const LOG: &str = "hooks.log";

/// Default `hook_timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Between SIGTERM and SIGKILL of a hook past its deadline.
pub const KILL_GRACE: Duration = Duration::from_secs(2);

/// When a hook runs; its config key and its `PORTSYNTH_EVENT`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Hook {
    RunStart,
    RunEnd,
    Success,
    Failure,
    Ignored,
    Skipped,
}

impl Hook {
    pub const ALL: [Hook; 6] =
        [Hook::RunStart, Hook::RunEnd, Hook::Success, Hook::Failure, Hook::Ignored, Hook::Skipped];

    pub fn key(self) -> &'static str {
        match self {
            Hook::RunStart => "run_start",
            Hook::RunEnd => "run_end",
            Hook::Success => "success",
            Hook::Failure => "failure",
            Hook::Ignored => "ignored",
            Hook::Skipped => "skipped",
        }
    }
}

/// A hook's command as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HookCommand {
    /// Program and arguments, run without a shell.
    Exec(Vec<String>),
    /// Run as `/bin/sh -c STRING` (only with `shell = true`).
    Shell(String),
}

impl HookCommand {
    fn command(&self) -> Command {
        match self {
            HookCommand::Exec(words) => {
                let mut command = Command::new(&words[0]);
                command.args(&words[1..]);
                command
            }
            HookCommand::Shell(text) => {
                let mut command = Command::new("/bin/sh");
                command.arg("-c").arg(text);
                command
            }
        }
    }

    /// How the command is named in messages.
    pub fn describe(&self) -> String {
        match self {
            HookCommand::Exec(words) => words.join(" "),
            HookCommand::Shell(text) => format!("/bin/sh -c {text:?}"),
        }
    }
}

/// Config `[hooks]` and `hook_timeout`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookSettings {
    pub commands: BTreeMap<Hook, HookCommand>,
    pub timeout: Duration,
}

impl Default for HookSettings {
    fn default() -> Self {
        HookSettings { commands: BTreeMap::new(), timeout: DEFAULT_TIMEOUT }
    }
}

/// One hook to run: which, and its variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HookCall {
    pub hook: Hook,
    pub env: Vec<(String, String)>,
}

/// What the run is, for every hook's variables.
#[derive(Debug, Clone, Default)]
pub struct RunFacts {
    pub run_id: String,
    pub command: String,
}

/// The hook `event` fires, with its variables; `None` for events without one.
/// `facts` is learnt from the run's start.
pub fn hook_call(event: &Event, facts: &RunFacts) -> Option<HookCall> {
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |name: &str, value: String| env.push((format!("PORTSYNTH_{name}"), value));
    let hook = match event {
        Event::RunStart { scope, .. } => {
            match scope {
                RunScope::Build(counts) => count_vars(counts, &mut set),
                RunScope::Fetch { ports, distfiles, jobs } => {
                    set("PORTS", ports.to_string());
                    set("DISTFILES", distfiles.to_string());
                    set("JOBS", jobs.to_string());
                }
            }
            Hook::RunStart
        }
        Event::RunEnd(end) => {
            set("STATUS", end.status.name().to_string());
            set("SECONDS", format!("{:.1}", end.seconds));
            set("LOGS", end.logs.display().to_string());
            match &end.result {
                RunResult::Build { counts, .. } => count_vars(counts, &mut set),
                RunResult::Fetch { counts, .. } => count_vars(counts, &mut set),
            }
            Hook::RunEnd
        }
        Event::BuildEnd(end) => {
            let hook = match end.status {
                BuildEndStatus::Success => Hook::Success,
                BuildEndStatus::Failed => Hook::Failure,
                BuildEndStatus::Interrupted => return None,
            };
            set("ORIGIN", end.origin.clone());
            set("PKGNAME", end.pkgname.clone());
            set("SLOT", end.slot.to_string());
            set("SECONDS", format!("{:.1}", end.seconds));
            set("LOG", end.log.display().to_string());
            if let Some(phase) = &end.phase {
                set("PHASE", phase.clone());
            }
            if let Some(reason) = &end.reason {
                set("REASON", reason.clone());
            }
            hook
        }
        Event::FetchEnd(end) => {
            let hook = match end.status {
                FetchStatus::Fetched => Hook::Success,
                FetchStatus::Failed => Hook::Failure,
                FetchStatus::Present | FetchStatus::Interrupted => return None,
            };
            set("ORIGIN", end.origin.clone());
            set("PKGNAME", end.pkgname.clone());
            set("SLOT", end.slot.to_string());
            set("SECONDS", format!("{:.1}", end.seconds));
            if let Some(log) = &end.log {
                set("LOG", log.display().to_string());
            }
            if let Some(phase) = &end.phase {
                set("PHASE", phase.clone());
            }
            if let Some(reason) = &end.reason {
                set("REASON", reason.clone());
            }
            hook
        }
        Event::Ignored { origin, pkgname, reason } => {
            set("ORIGIN", origin.clone());
            if let Some(pkgname) = pkgname {
                set("PKGNAME", pkgname.clone());
            }
            set("REASON", reason.clone());
            Hook::Ignored
        }
        Event::Skip { origin, pkgname, reason, cause } => {
            set("ORIGIN", origin.clone());
            if let Some(pkgname) = pkgname {
                set("PKGNAME", pkgname.clone());
            }
            set("REASON", reason.clone());
            let kind = match cause {
                SkipCause::Plan => "plan",
                SkipCause::FailedDependency { failed, .. } => {
                    set("FAILED_DEPENDENCY", failed.clone());
                    "failed_dependency"
                }
                SkipCause::NotBuildable { .. } => "not_buildable",
                SkipCause::NotFetched { .. } => "not_fetched",
            };
            set("SKIP_CAUSE", kind.to_string());
            Hook::Skipped
        }
        _ => return None,
    };
    env.splice(
        0..0,
        [
            ("PORTSYNTH_EVENT".to_string(), hook.key().to_string()),
            ("PORTSYNTH_RUN_ID".to_string(), facts.run_id.clone()),
            ("PORTSYNTH_COMMAND".to_string(), facts.command.clone()),
        ],
    );
    Some(HookCall { hook, env })
}

/// Every number of a counts struct as `PORTSYNTH_<FIELD>` (`built` →
/// `PORTSYNTH_BUILT`), so the variables are the NDJSON's counts.
fn count_vars(counts: &impl Serialize, set: &mut impl FnMut(&str, String)) {
    if let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(counts) {
        for (name, value) in fields {
            set(&name.to_uppercase(), value.to_string());
        }
    }
}

/// The hooks as a reporter: calls queued, in order, to the hook thread.
pub struct Hooks {
    commands: BTreeMap<Hook, HookCommand>,
    facts: RunFacts,
    queue: Option<Sender<(HookCommand, HookCall)>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Hooks {
    /// Starts the hook thread; `None` when no hook is configured. The
    /// hooks' output goes to `output` (truncated), their failures to
    /// `notices` as [`Event::Notice`].
    pub fn start(settings: &HookSettings, output: &Path, notices: Sender<Event>) -> Option<Hooks> {
        if settings.commands.is_empty() {
            return None;
        }
        let (queue, calls) = unbounded::<(HookCommand, HookCall)>();
        let (timeout, output) = (settings.timeout, output.to_path_buf());
        let thread = std::thread::Builder::new()
            .name("hooks".into())
            .spawn(move || {
                let log = HookLog::create(&output);
                for (command, call) in calls {
                    if let Err(problem) = run_hook(&command, &call, timeout, &log) {
                        let message = format!("warning: hook {} ({}) {problem}", call.hook.key(), command.describe());
                        let _ = notices.send(Event::Notice { message });
                    }
                }
            })
            .ok()?;
        Some(Hooks {
            commands: settings.commands.clone(),
            facts: RunFacts::default(),
            queue: Some(queue),
            thread: Some(thread),
        })
    }
}

impl Reporter for Hooks {
    fn report(&mut self, record: &Record) {
        if let Event::RunStart { run, command, .. } = &record.event {
            self.facts = RunFacts { run_id: run.clone(), command: command.clone() };
        }
        let Some(call) = hook_call(&record.event, &self.facts) else { return };
        let (Some(command), Some(queue)) = (self.commands.get(&call.hook), &self.queue) else { return };
        let _ = queue.send((command.clone(), call));
    }

    /// Waits for the queued hooks (each bounded by `hook_timeout`).
    fn finish(&mut self) {
        self.queue = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// `logs_dir/hooks.log`: what each hook printed, after a line naming it.
struct HookLog {
    path: PathBuf,
    file: Option<File>,
}

impl HookLog {
    fn create(path: &Path) -> HookLog {
        HookLog { path: path.to_path_buf(), file: File::create(path).ok() }
    }

    fn header(&self, text: &str) {
        if let Some(mut file) = self.file.as_ref() {
            let now = crate::report::utc_time(crate::builddb::now_ms());
            let _ = writeln!(file, "{now} {text}");
        }
    }

    fn stdio(&self) -> Stdio {
        match self.file.as_ref().and_then(|f| f.try_clone().ok()) {
            Some(file) => Stdio::from(file),
            None => Stdio::null(),
        }
    }
}

/// Runs one hook to its end or its deadline; `Err` says what went wrong.
fn run_hook(command: &HookCommand, call: &HookCall, timeout: Duration, log: &HookLog) -> Result<(), String> {
    log.header(&format!("{} {}", call.hook.key(), command.describe()));
    let mut process = command.command();
    process.envs(call.env.iter().map(|(k, v)| (k, v))).stdin(Stdio::null()).stdout(log.stdio()).stderr(log.stdio());
    process.process_group(0);
    let mut child = process.spawn().map_err(|e| format!("cannot start: {e}"))?;
    let group = Pid::from_raw(child.id() as i32);
    let deadline = Instant::now() + timeout;
    let status = match wait_until(&mut child, deadline) {
        Some(status) => status,
        None => {
            let _ = killpg(group, Signal::SIGTERM);
            if wait_until(&mut child, Instant::now() + KILL_GRACE).is_none() {
                let _ = killpg(group, Signal::SIGKILL);
                let _ = child.wait();
            }
            let message = format!("timed out after {} s (hook_timeout) and was killed", timeout.as_secs());
            log.header(&format!("{}: {message}", call.hook.key()));
            return Err(message);
        }
    };
    if status.success() {
        return Ok(());
    }
    let message = describe_status(status);
    log.header(&format!("{}: {message} (see {})", call.hook.key(), log.path.display()));
    Err(format!("{message} (its output is in {})", log.path.display()))
}

fn wait_until(child: &mut std::process::Child, deadline: Instant) -> Option<ExitStatus> {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() >= deadline => return None,
            Ok(None) => std::thread::sleep(Duration::from_millis(10)),
            Err(_) => return None,
        }
    }
}

fn describe_status(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        _ => format!("ended with {status}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{example_records, examples};

    fn var<'a>(call: &'a HookCall, name: &str) -> Option<&'a str> {
        call.env.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    #[test]
    fn events_fire_their_hooks_with_the_facts() {
        let facts = RunFacts { run_id: "r1".into(), command: "everything".into() };
        let calls: Vec<HookCall> = examples().iter().filter_map(|e| hook_call(e, &facts)).collect();
        let hooks: Vec<&str> = calls.iter().map(|c| c.hook.key()).collect();
        assert_eq!(
            hooks,
            [
                "run_start",
                "run_start",
                "ignored",
                "skipped",
                "skipped",
                "success",
                "failure",
                "skipped",
                "success",
                "run_end",
                "run_end"
            ]
        );
        for call in &calls {
            assert_eq!(var(call, "PORTSYNTH_EVENT"), Some(call.hook.key()));
            assert_eq!(var(call, "PORTSYNTH_RUN_ID"), Some("r1"));
            assert_eq!(var(call, "PORTSYNTH_COMMAND"), Some("everything"));
        }
        assert_eq!(var(&calls[0], "PORTSYNTH_TO_BUILD"), Some("2"));
        assert_eq!(var(&calls[1], "PORTSYNTH_DISTFILES"), Some("4"));
        let failure = &calls[6];
        assert_eq!(var(failure, "PORTSYNTH_ORIGIN"), Some("misc/fails"));
        assert_eq!(var(failure, "PORTSYNTH_PKGNAME"), Some("fails-1.0"));
        assert_eq!(var(failure, "PORTSYNTH_PHASE"), Some("build"));
        assert_eq!(var(failure, "PORTSYNTH_REASON"), Some("make exited with status 2"));
        assert_eq!(var(failure, "PORTSYNTH_LOG"), Some("/var/cache/portsynth/logs/misc___fails.log"));
        let skipped = &calls[7];
        assert_eq!(var(skipped, "PORTSYNTH_SKIP_CAUSE"), Some("failed_dependency"));
        assert_eq!(var(skipped, "PORTSYNTH_FAILED_DEPENDENCY"), Some("misc/fails"));
        let end = &calls[9];
        assert_eq!(var(end, "PORTSYNTH_STATUS"), Some("completed"));
        assert_eq!((var(end, "PORTSYNTH_BUILT"), var(end, "PORTSYNTH_FAILED")), (Some("1"), Some("1")));
        assert_eq!(var(&calls[10], "PORTSYNTH_FETCHED"), Some("1"));
    }

    fn settings(commands: &[(Hook, HookCommand)], timeout: Duration) -> HookSettings {
        HookSettings { commands: commands.iter().cloned().collect(), timeout }
    }

    fn sh(text: &str) -> HookCommand {
        HookCommand::Exec(vec!["/bin/sh".into(), "-c".into(), text.into()])
    }

    #[test]
    fn hooks_run_in_order_and_their_failures_become_notices() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let commands = [
            (Hook::Success, sh(&format!("echo \"$PORTSYNTH_EVENT $PORTSYNTH_ORIGIN\" >> {}", out.display()))),
            (Hook::Failure, sh("echo complaining; exit 3")),
            (Hook::RunEnd, HookCommand::Exec(vec!["/nonexistent/hook".into()])),
        ];
        let (tx, rx) = unbounded();
        let mut hooks = Hooks::start(&settings(&commands, Duration::from_secs(10)), &dir.path().join("hooks.log"), tx)
            .expect("hooks configured");
        for record in example_records() {
            hooks.report(&record);
        }
        hooks.finish();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "success misc/hello\nsuccess misc/hello\n");
        let notices: Vec<String> = rx.try_iter().map(|e| format!("{e:?}")).collect();
        assert_eq!(notices.len(), 3, "one failure, two run_end hooks that cannot start: {notices:?}");
        assert!(notices[0].contains("hook failure (/bin/sh -c echo complaining; exit 3) exited with status 3"));
        assert!(notices[1].contains("hook run_end (/nonexistent/hook) cannot start"), "{notices:?}");
        let log = std::fs::read_to_string(dir.path().join("hooks.log")).unwrap();
        assert!(log.contains("complaining\n"), "{log}");
    }

    #[test]
    fn a_hanging_hook_and_its_group_are_killed_at_the_deadline() {
        let dir = tempfile::tempdir().unwrap();
        let pids = dir.path().join("pids");
        // The hook ignores SIGTERM and leaves a child behind: only SIGKILL
        // of its process group ends both.
        let text = format!("trap '' TERM; sleep 300 & echo $! > {}; wait", pids.display());
        let (tx, rx) = unbounded();
        let commands = [(Hook::RunStart, sh(&text))];
        let mut hooks =
            Hooks::start(&settings(&commands, Duration::from_secs(1)), &dir.path().join("hooks.log"), tx).unwrap();
        let started = Instant::now();
        hooks.report(&example_records()[0]);
        hooks.finish();
        let took = started.elapsed();
        assert!(took < Duration::from_secs(1) + KILL_GRACE + Duration::from_secs(3), "{took:?}");
        let notice = format!("{:?}", rx.try_recv().unwrap());
        assert!(notice.contains("timed out after 1 s (hook_timeout) and was killed"), "{notice}");
        let child: i32 = std::fs::read_to_string(&pids).unwrap().trim().parse().unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let state = std::fs::read_to_string(format!("/proc/{child}/stat")).unwrap_or_default();
        assert!(state.is_empty() || state.contains(") Z "), "the hook's child {child} survived: {state}");
    }
}
