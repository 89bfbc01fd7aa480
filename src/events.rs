//! The run as a stream of typed events: one producer, many reporters.
//!
//! A build or fetch run has one producer of facts, its coordinator
//! (`build::scheduler`, `fetch::pool`, and the command around them for the
//! run's start and end). It says what happened as an [`Event`] and hands
//! it to [`Events::emit`]; it never formats a line or writes a list
//! itself. Everything that shows or keeps the run is a [`Reporter`]: the
//! terminal bars or plain lines and the NDJSON stream (`ui`), the summary
//! logs `00_`…`07_` (`report`), the operator's hooks (`hooks`). This is
//! nextest's split of dispatcher, executor and reporter: the coordinator
//! owns the run's state, the reporters own only what they show.
//!
//! Why: the NDJSON schema is this type (`docs/EVENTS.md` is generated from
//! it by a test, and the stream parses back into it), a new view of the
//! run (an HTML report, a diff of two runs' streams) is one more reporter
//! instead of one more call in every handler, and each reporter is tested
//! against a hand-made event sequence without running a build.
//!
//! The database stays with the coordinator, not a reporter: its writes
//! return what the run needs next (a build's row id; a success that cannot
//! be indexed becomes a failure), so they are part of deciding, not of
//! reporting.
//!
//! Reporters run on the emitting thread, in the order they were given,
//! under one lock, so each sees every event once and in order. Anything
//! slow (a hook) is queued by its reporter to a thread of its own. Events
//! made on other threads (a hook's failure) are [`Events::post`]ed and
//! delivered with the next emitted event, or by [`Events::finish`].

use std::path::PathBuf;
use std::sync::Mutex;

use crossbeam_channel::{unbounded, Receiver, Sender};
use serde::{Deserialize, Serialize};

/// One fact of a run. Serialized as one NDJSON object per line with the
/// variant's name in `"event"` (`{"event":"build_start",...}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The run begins: its id (the build database's), its command line,
    /// and what it is about to do.
    RunStart {
        run: String,
        command: String,
        #[serde(flatten)]
        scope: RunScope,
    },
    /// A port of the plan whose package is current: nothing to build.
    UpToDate { origin: String, pkgname: String },
    /// A port the framework marks as not to be built (`IGNORE`, `PKG_SKIP_REASON`).
    Ignored {
        origin: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pkgname: Option<String>,
        reason: String,
    },
    /// A port the run will not build: `reason` is the text shown to people,
    /// `cause` the same fact as data.
    Skip {
        origin: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pkgname: Option<String>,
        reason: String,
        cause: SkipCause,
    },
    /// A build was handed to a slot's sandbox.
    BuildStart {
        slot: u32,
        origin: String,
        pkgname: String,
        /// Why it is built: the plan's reason ("new", "dependency changed: devel/libgreet").
        #[serde(default)]
        why: String,
        /// The make jobs the allocator gave it.
        make_jobs: u32,
        /// `tmpfs` or `disk`.
        work_area: String,
        /// The port's build log, written while it runs.
        log: PathBuf,
        /// The ports it depends on directly (every kind), sorted: with the
        /// builds' times, what a report draws the critical path from.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        depends: Vec<String>,
    },
    /// A running build entered a phase.
    BuildPhase { slot: u32, origin: String, phase: String },
    /// The run's figures and what every busy slot does, once a second and
    /// after every finished build.
    Progress(Progress),
    /// The throttle changed the number of builds allowed at once.
    ThrottleChange { workers: usize, previous: usize },
    /// A build ended.
    BuildEnd(BuildEnd),
    /// A fetch-only attempt started its sandbox.
    FetchStart { slot: u32, origin: String, attempt: u32, distfiles: Vec<String> },
    /// A fetch-only attempt failed and will be tried again after `delay_seconds`.
    FetchRetry { slot: u32, origin: String, attempt: u32, attempts: u32, delay_seconds: f64, reason: String },
    /// A fetch-only port ended.
    FetchEnd(FetchEnd),
    /// fetch-only's figures and its busy slots.
    FetchProgress(FetchProgress),
    /// Something the operator should read (a warning, an interrupt, a hook
    /// that failed). Also written to `07_debug.log`.
    Notice { message: String },
    /// A detail for `07_debug.log` only (the terminal does not show it).
    Debug { message: String },
    /// The run ended; the last event of a run.
    RunEnd(RunEnd),
}

/// An event as reporters get it and NDJSON prints it: the event and when
/// the coordinator emitted it (`"time_ms"`, milliseconds since the Unix
/// epoch, next to `"event"`), so a stream read back later (a report, a
/// diff of two runs) has the times without the wall clock of its reader.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    pub time_ms: i64,
    #[serde(flatten)]
    pub event: Event,
}

/// What a run is about to do: a build's plan counts, or fetch-only's scope.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RunScope {
    Build(crate::plan::Counts),
    Fetch { ports: usize, distfiles: usize, jobs: usize },
}

/// Why a port is skipped.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SkipCause {
    /// The plan skipped it (a dependency is ignored or not buildable).
    Plan,
    /// `failed` failed during this run; `via` are the skipped ports between
    /// the two, nearest the failure first.
    FailedDependency { failed: String, via: Vec<String> },
    /// It cannot be planned: a scan error, a bad dependency, a cycle.
    NotBuildable { problem: String },
    /// fetch-only: its distfiles are unknown.
    NotFetched { problem: String },
}

/// How a build ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BuildEndStatus {
    Success,
    Failed,
    Interrupted,
}

impl BuildEndStatus {
    pub fn name(self) -> &'static str {
        match self {
            BuildEndStatus::Success => "success",
            BuildEndStatus::Failed => "failed",
            BuildEndStatus::Interrupted => "interrupted",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildEnd {
    pub slot: u32,
    pub origin: String,
    pub pkgname: String,
    pub status: BuildEndStatus,
    pub seconds: f64,
    /// The phase that failed (or was running when interrupted).
    pub phase: Option<String>,
    pub log: PathBuf,
    /// Why it failed; for a success, what happened on the way (a retry on disk).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default)]
    pub make_jobs: u32,
    /// `tmpfs` or `disk` (of the last attempt).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub work_area: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub retried_on_disk: bool,
    /// Wall time of each phase that ran, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phases: Vec<PhaseTime>,
    /// The work area kept by `portsynth test` after a failure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept_work: Option<PathBuf>,
    /// Output lines that looked wrong (for `05_abnormal_command_output.log`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub abnormal_output: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhaseTime {
    pub phase: String,
    pub seconds: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Progress {
    pub built: usize,
    pub failed: usize,
    pub ignored: usize,
    pub skipped: usize,
    /// Ports of the build set not finished yet (running ones included).
    pub remaining: usize,
    /// Builds allowed at once now (the throttle's limit).
    pub workers: usize,
    pub load1: f64,
    /// Fraction of swap in use.
    pub swap_used: f64,
    pub elapsed_seconds: f64,
    /// The simulated time left, when a reporter asked for it ([`Reporter::wants_eta`]).
    pub eta_seconds: Option<f64>,
    /// Make jobs of the running builds, of the core budget `jobs`.
    pub jobs_used: usize,
    pub jobs: usize,
    /// Peak memory the running builds are expected to use at their jobs, of
    /// the `memory_budget` (bytes).
    pub memory_expected: u64,
    pub memory_budget: u64,
    /// Why the first ready port waits while slots are free (cores, memory).
    pub waiting: Option<String>,
    /// The busy slots, by slot number.
    pub slots: Vec<SlotStatus>,
}

/// What one busy slot does.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlotStatus {
    pub slot: u32,
    pub origin: String,
    pub phase: String,
    pub seconds: f64,
    /// Lines of its log so far.
    pub lines: u64,
}

/// How a fetch-only port ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FetchStatus {
    Fetched,
    /// Every distfile was in the cache already, intact: no sandbox ran.
    Present,
    Failed,
    Interrupted,
}

impl FetchStatus {
    pub fn name(self) -> &'static str {
        match self {
            FetchStatus::Fetched => "fetched",
            FetchStatus::Present => "present",
            FetchStatus::Failed => "failed",
            FetchStatus::Interrupted => "interrupted",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FetchEnd {
    pub slot: u32,
    pub origin: String,
    #[serde(default)]
    pub pkgname: String,
    pub status: FetchStatus,
    pub seconds: f64,
    pub attempts: u32,
    pub phase: Option<String>,
    pub reason: Option<String>,
    pub log: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct FetchProgress {
    pub fetched: usize,
    pub present: usize,
    pub failed: usize,
    pub remaining: usize,
    /// Sandboxes downloading now, of `jobs` (`fetch_jobs`).
    pub downloads: usize,
    pub jobs: usize,
    pub elapsed_seconds: f64,
    pub slots: Vec<SlotStatus>,
}

/// How a run ended (the runs table's status).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunEndStatus {
    Completed,
    /// Stopped by a first interrupt: no new builds, the running ones finished.
    Aborted,
    /// Stopped by a second interrupt or SIGTERM: running builds were killed.
    Interrupted,
}

impl RunEndStatus {
    pub fn name(self) -> &'static str {
        match self {
            RunEndStatus::Completed => "completed",
            RunEndStatus::Aborted => "aborted",
            RunEndStatus::Interrupted => "interrupted",
        }
    }
}

impl From<crate::build::interrupts::Stop> for RunEndStatus {
    fn from(stop: crate::build::interrupts::Stop) -> RunEndStatus {
        use crate::build::interrupts::Stop;
        match stop {
            Stop::None => RunEndStatus::Completed,
            Stop::Draining => RunEndStatus::Aborted,
            Stop::Killing => RunEndStatus::Interrupted,
        }
    }
}

impl std::fmt::Display for RunEndStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunEnd {
    pub run: String,
    pub status: RunEndStatus,
    pub seconds: f64,
    /// The run's summary logs (`logs_dir`).
    #[serde(default)]
    pub logs: PathBuf,
    #[serde(flatten)]
    pub result: RunResult,
}

/// The counts and failures of a build run or of a fetch-only run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RunResult {
    Build { counts: Tally, failed: Vec<FailedPort> },
    Fetch { counts: FetchCounts, failed: Vec<FailedFetch>, unknown: Vec<UnknownPort>, distfiles: PathBuf },
}

/// What a build run did, for the run record, the summary and the exit code.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    pub built: usize,
    pub failed: usize,
    pub ignored: usize,
    pub skipped: usize,
    pub up_to_date: usize,
    pub not_buildable: usize,
    pub interrupted: usize,
    /// Ports of the build set never started because the run was stopped.
    pub not_started: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedPort {
    pub origin: String,
    pub phase: Option<String>,
    pub reason: String,
    pub log: PathBuf,
    /// The work area, kept by `portsynth test`.
    pub kept_work: Option<PathBuf>,
}

/// What a fetch-only run did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchCounts {
    pub fetched: usize,
    pub present: usize,
    pub failed: usize,
    pub interrupted: usize,
    pub not_started: usize,
    pub ignored: usize,
    /// Ports whose distfiles are unknown (scan error, unreadable distinfo).
    pub unknown: usize,
    pub without_distfiles: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedFetch {
    pub origin: String,
    pub phase: Option<String>,
    pub reason: String,
    pub attempts: u32,
    pub log: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnknownPort {
    pub origin: String,
    pub reason: String,
}

impl Event {
    /// The `"event"` name of this event in the NDJSON stream.
    pub fn name(&self) -> &'static str {
        match self {
            Event::RunStart { .. } => "run_start",
            Event::UpToDate { .. } => "up_to_date",
            Event::Ignored { .. } => "ignored",
            Event::Skip { .. } => "skip",
            Event::BuildStart { .. } => "build_start",
            Event::BuildPhase { .. } => "build_phase",
            Event::Progress(_) => "progress",
            Event::ThrottleChange { .. } => "throttle_change",
            Event::BuildEnd(_) => "build_end",
            Event::FetchStart { .. } => "fetch_start",
            Event::FetchRetry { .. } => "fetch_retry",
            Event::FetchEnd(_) => "fetch_end",
            Event::FetchProgress(_) => "fetch_progress",
            Event::Notice { .. } => "notice",
            Event::Debug { .. } => "debug",
            Event::RunEnd(_) => "run_end",
        }
    }

    pub fn notice(message: impl Into<String>) -> Event {
        Event::Notice { message: message.into() }
    }

    pub fn debug(message: impl Into<String>) -> Event {
        Event::Debug { message: message.into() }
    }
}

/// Something that shows or keeps a run's events.
pub trait Reporter: Send {
    fn report(&mut self, record: &Record);

    /// Whether [`Progress::eta_seconds`] should be computed (a simulation of
    /// the rest of the run, milliseconds on a big tree, once per second).
    fn wants_eta(&self) -> bool {
        false
    }

    /// The run is over: flush, wait for queued work (hooks, bounded by their
    /// timeout).
    fn finish(&mut self) {}
}

/// The dispatcher: every emitted event goes to every reporter, in order.
pub struct Events {
    reporters: Mutex<Vec<Box<dyn Reporter>>>,
    wants_eta: std::sync::atomic::AtomicBool,
    posted: (Sender<Event>, Receiver<Event>),
}

impl Events {
    pub fn new(reporters: Vec<Box<dyn Reporter>>) -> Events {
        let wants_eta = reporters.iter().any(|r| r.wants_eta()).into();
        Events { reporters: Mutex::new(reporters), wants_eta, posted: unbounded() }
    }

    /// One more reporter, after the others (one made with [`poster`](Self::poster)).
    pub fn add(&self, reporter: Box<dyn Reporter>) {
        if reporter.wants_eta() {
            self.wants_eta.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        self.reporters.lock().unwrap_or_else(|e| e.into_inner()).push(reporter);
    }

    /// Delivers `event`, stamped with the time, to every reporter, then
    /// whatever other threads posted (stamped when delivered).
    pub fn emit(&self, event: Event) {
        let mut reporters = self.reporters.lock().unwrap_or_else(|e| e.into_inner());
        deliver(&mut reporters, event);
        while let Ok(posted) = self.posted.1.try_recv() {
            deliver(&mut reporters, posted);
        }
    }

    /// A sender for events made on another thread; they are delivered with
    /// the next [`emit`](Self::emit) or by [`finish`](Self::finish).
    pub fn poster(&self) -> Sender<Event> {
        self.posted.0.clone()
    }

    pub fn notice(&self, message: impl Into<String>) {
        self.emit(Event::notice(message));
    }

    pub fn debug(&self, message: impl Into<String>) {
        self.emit(Event::debug(message));
    }

    pub fn wants_eta(&self) -> bool {
        self.wants_eta.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Ends the run's reporting: each reporter finishes in turn, and what
    /// one posted while finishing (a hook's failure) reaches the others.
    pub fn finish(&self) {
        let mut reporters = self.reporters.lock().unwrap_or_else(|e| e.into_inner());
        for index in 0..reporters.len() {
            reporters[index].finish();
            while let Ok(posted) = self.posted.1.try_recv() {
                deliver(&mut reporters, posted);
            }
        }
    }
}

fn deliver(reporters: &mut [Box<dyn Reporter>], event: Event) {
    let record = Record { time_ms: crate::builddb::now_ms(), event };
    for reporter in reporters.iter_mut() {
        reporter.report(&record);
    }
}

/// A reporter that keeps every event, for tests of producers.
#[derive(Default, Clone)]
pub struct Recorder(pub std::sync::Arc<Mutex<Vec<Record>>>);

impl Recorder {
    pub fn records(&self) -> Vec<Record> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

impl Reporter for Recorder {
    fn report(&mut self, record: &Record) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(record.clone());
    }
}

/// [`examples`] as the records of a run one second apart, from
/// 2026-11-18 11:06:40 UTC.
pub fn example_records() -> Vec<Record> {
    let start = 1_795_000_000_000;
    examples().into_iter().enumerate().map(|(i, event)| Record { time_ms: start + 1000 * i as i64, event }).collect()
}

/// One event of every kind with every field set: the examples of
/// `docs/EVENTS.md` and the sequence the reporters' unit tests replay.
pub fn examples() -> Vec<Event> {
    let log = PathBuf::from("/var/cache/portsynth/logs/misc___hello.log");
    let counts = crate::plan::Counts { to_build: 2, up_to_date: 1, ignored: 1, skipped: 1, not_buildable: 1 };
    vec![
        Event::RunStart { run: "0193b8c1".into(), command: "everything".into(), scope: RunScope::Build(counts) },
        Event::RunStart {
            run: "0193b8c2".into(),
            command: "fetch-only".into(),
            scope: RunScope::Fetch { ports: 3, distfiles: 4, jobs: 2 },
        },
        Event::UpToDate { origin: "misc/current".into(), pkgname: "current-1.0".into() },
        Event::Ignored {
            origin: "misc/ignored".into(),
            pkgname: Some("ignored-1.0".into()),
            reason: "is ignored".into(),
        },
        Event::Skip {
            origin: "misc/needs-ignored".into(),
            pkgname: Some("needs-ignored-1.0".into()),
            reason: "depends on misc/ignored, which is ignored".into(),
            cause: SkipCause::Plan,
        },
        Event::Skip {
            origin: "misc/broken".into(),
            pkgname: None,
            reason: "not buildable: scan failed".into(),
            cause: SkipCause::NotBuildable { problem: "scan failed".into() },
        },
        Event::BuildStart {
            slot: 1,
            origin: "misc/hello".into(),
            pkgname: "hello-2.1".into(),
            why: "new".into(),
            make_jobs: 2,
            work_area: "tmpfs".into(),
            log: log.clone(),
            depends: vec!["devel/libgreet".into()],
        },
        Event::BuildPhase { slot: 1, origin: "misc/hello".into(), phase: "build".into() },
        Event::Progress(Progress {
            built: 0,
            failed: 0,
            ignored: 1,
            skipped: 1,
            remaining: 2,
            workers: 2,
            load1: 0.5,
            swap_used: 0.0,
            elapsed_seconds: 3.0,
            eta_seconds: Some(60.0),
            jobs_used: 2,
            jobs: 4,
            memory_expected: 2 << 30,
            memory_budget: 16 << 30,
            waiting: Some("waiting for memory".into()),
            slots: vec![SlotStatus {
                slot: 1,
                origin: "misc/hello".into(),
                phase: "build".into(),
                seconds: 2.5,
                lines: 120,
            }],
        }),
        Event::ThrottleChange { workers: 2, previous: 1 },
        Event::BuildEnd(BuildEnd {
            slot: 1,
            origin: "misc/hello".into(),
            pkgname: "hello-2.1".into(),
            status: BuildEndStatus::Success,
            seconds: 4.25,
            phase: None,
            log: log.clone(),
            reason: None,
            make_jobs: 2,
            work_area: "tmpfs".into(),
            retried_on_disk: false,
            phases: vec![PhaseTime { phase: "build".into(), seconds: 3.5 }],
            kept_work: None,
            abnormal_output: vec![],
        }),
        Event::BuildEnd(BuildEnd {
            slot: 2,
            origin: "misc/fails".into(),
            pkgname: "fails-1.0".into(),
            status: BuildEndStatus::Failed,
            seconds: 1.5,
            phase: Some("build".into()),
            log: PathBuf::from("/var/cache/portsynth/logs/misc___fails.log"),
            reason: Some("make exited with status 2".into()),
            make_jobs: 1,
            work_area: "disk".into(),
            retried_on_disk: false,
            phases: vec![PhaseTime { phase: "build".into(), seconds: 1.0 }],
            kept_work: Some(PathBuf::from("/var/cache/portsynth/logs/misc___fails.work.tar")),
            abnormal_output: vec!["Segmentation fault".into()],
        }),
        Event::Skip {
            origin: "misc/needs-fails".into(),
            pkgname: Some("needs-fails-1.0".into()),
            reason: "skipped: misc/fails failed".into(),
            cause: SkipCause::FailedDependency { failed: "misc/fails".into(), via: vec![] },
        },
        Event::FetchStart {
            slot: 1,
            origin: "misc/hello".into(),
            attempt: 1,
            distfiles: vec!["hello-2.1.tar.gz".into()],
        },
        Event::FetchRetry {
            slot: 1,
            origin: "misc/hello".into(),
            attempt: 1,
            attempts: 3,
            delay_seconds: 2.0,
            reason: "size mismatch".into(),
        },
        Event::FetchEnd(FetchEnd {
            slot: 1,
            origin: "misc/hello".into(),
            pkgname: "hello-2.1".into(),
            status: FetchStatus::Fetched,
            seconds: 2.5,
            attempts: 2,
            phase: None,
            reason: None,
            log: Some(PathBuf::from("/var/cache/portsynth/logs/fetch/misc___hello.log")),
        }),
        Event::FetchProgress(FetchProgress {
            fetched: 1,
            present: 1,
            failed: 0,
            remaining: 1,
            downloads: 1,
            jobs: 2,
            elapsed_seconds: 3.0,
            slots: vec![],
        }),
        Event::notice("warning: database error recording a success: disk full"),
        Event::debug("cannot read past durations, using the default"),
        Event::RunEnd(RunEnd {
            run: "0193b8c1".into(),
            status: RunEndStatus::Completed,
            seconds: 10.5,
            logs: PathBuf::from("/var/cache/portsynth/logs"),
            result: RunResult::Build {
                counts: Tally { built: 1, failed: 1, ignored: 1, skipped: 2, up_to_date: 1, ..Tally::default() },
                failed: vec![FailedPort {
                    origin: "misc/fails".into(),
                    phase: Some("build".into()),
                    reason: "make exited with status 2".into(),
                    log: PathBuf::from("/var/cache/portsynth/logs/misc___fails.log"),
                    kept_work: None,
                }],
            },
        }),
        Event::RunEnd(RunEnd {
            run: "0193b8c2".into(),
            status: RunEndStatus::Aborted,
            seconds: 3.0,
            logs: PathBuf::from("/var/cache/portsynth/logs"),
            result: RunResult::Fetch {
                counts: FetchCounts { fetched: 1, present: 1, not_started: 1, unknown: 1, ..FetchCounts::default() },
                failed: vec![],
                unknown: vec![UnknownPort { origin: "misc/broken".into(), reason: "scan failed".into() }],
                distfiles: PathBuf::from("/var/cache/portsynth/distfiles"),
            },
        }),
    ]
}

/// `docs/EVENTS.md`: the NDJSON schema, generated from [`Event`] by
/// `events::tests::the_events_document_is_current`.
pub fn events_document() -> String {
    let mut text = String::from(
        "# The NDJSON event stream\n\n\
         <!-- Generated from src/events.rs by `cargo test --release --locked events_document`; do not edit. -->\n\n\
         `portsynth --json` prints one JSON object per line on stdout while a build\n\
         or fetch-only run lasts; human text goes to stderr. Each object is one\n\
         `portsynth::events::Record`: an `Event`, its kind in `\"event\"`, and\n\
         `\"time_ms\"`, when it was emitted (milliseconds since the Unix epoch).\n\
         The Rust types (with their doc comments) are the schema; below is one\n\
         example of every kind, as the program serializes it (`docs/EVENTS.md`\n\
         pretty-prints; the stream has one line per record).\n\
         Fields may be added; none is renamed or removed without a note here.\n\
         `null` marks an optional value that is absent.\n\n",
    );
    let mut seen = std::collections::BTreeSet::new();
    for record in example_records() {
        let name = record.event.name();
        if seen.insert(name) {
            text.push_str(&format!("## `{name}`\n\n{}\n\n", describe(&record.event)));
        }
        let json = serde_json::to_string_pretty(&record).expect("events serialize");
        text.push_str(&format!("```json\n{json}\n```\n\n"));
    }
    text
}

/// The one-paragraph meaning of each kind, for the document.
fn describe(event: &Event) -> &'static str {
    match event {
        Event::RunStart { .. } => {
            "The first event of a run. A build run flattens the plan's counts into it \
             (`to_build`, `up_to_date`, `ignored`, `skipped`, `not_buildable`); fetch-only gives \
             `ports`, `distfiles` and `jobs`."
        }
        Event::UpToDate { .. } => "A port of the plan whose package is current; nothing is built.",
        Event::Ignored { .. } => "A port the framework says not to build (`IGNORE`, `PKG_SKIP_REASON`).",
        Event::Skip { .. } => {
            "A port that is not built. `reason` is the text people read; `cause.kind` is `plan` \
             (an ignored or unbuildable dependency), `failed_dependency` (with `failed` and the \
             skipped ports `via` which it is reached), `not_buildable` or `not_fetched` (with the \
             `problem`)."
        }
        Event::BuildStart { .. } => {
            "A build was handed to slot `slot` with `make_jobs`; `why` is the plan's reason to build it, `log` its log, \
             `depends` the ports it depends on directly."
        }
        Event::BuildPhase { .. } => "A running build entered `phase`.",
        Event::Progress(_) => {
            "Once a second and after every build: the run's counts, the throttle's `workers`, \
             load, swap, elapsed time, the ETA (`null` unless a reporter needs it) and every busy \
             slot."
        }
        Event::ThrottleChange { .. } => "The throttle changed the number of builds allowed at once.",
        Event::BuildEnd(_) => {
            "A build ended: `status` is `success`, `failed` or `interrupted`; `phase` is the \
             failed phase, `reason` why, `phases` the wall time of each phase."
        }
        Event::FetchStart { .. } => "fetch-only started a sandbox for one attempt of a port.",
        Event::FetchRetry { .. } => "An attempt failed; the port is tried again after `delay_seconds`.",
        Event::FetchEnd(_) => "fetch-only is done with a port: `fetched`, `present`, `failed` or `interrupted`.",
        Event::FetchProgress(_) => "fetch-only's counts and busy slots (at most once a second, and on changes).",
        Event::Notice { .. } => "A message for the operator; also in `07_debug.log`.",
        Event::Debug { .. } => "A detail for `07_debug.log`; not shown on the terminal.",
        Event::RunEnd(_) => {
            "The last event: `status` (`completed`, `aborted`, `interrupted`), `seconds`, `logs`, \
             and for a build run `counts` (a `Tally`) and `failed` ports; for fetch-only its \
             `counts`, `failed`, `unknown` ports and the `distfiles` directory."
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_example_round_trips_through_json() {
        for event in examples() {
            let line = serde_json::to_string(&event).unwrap();
            let value: serde_json::Value = serde_json::from_str(&line).unwrap();
            assert_eq!(value["event"], event.name(), "{line}");
            let back: Event = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line}: {e}"));
            assert_eq!(back, event, "{line}");
        }
    }

    #[test]
    fn records_round_trip_with_their_time_beside_the_event() {
        for (index, event) in examples().into_iter().enumerate() {
            let record = Record { time_ms: 1_795_000_000_000 + index as i64, event };
            let line = serde_json::to_string(&record).unwrap();
            let value: serde_json::Value = serde_json::from_str(&line).unwrap();
            assert_eq!(value["time_ms"], record.time_ms, "{line}");
            assert_eq!(value["event"], record.event.name(), "{line}");
            let back: Record = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{line}: {e}"));
            assert_eq!(back, record, "{line}");
        }
    }

    #[test]
    fn the_examples_cover_every_kind() {
        let names: std::collections::BTreeSet<&str> = examples().iter().map(Event::name).collect();
        // `Event::name` is an exhaustive match: a new kind must be named there and here.
        let all = [
            "run_start",
            "up_to_date",
            "ignored",
            "skip",
            "build_start",
            "build_phase",
            "progress",
            "throttle_change",
            "build_end",
            "fetch_start",
            "fetch_retry",
            "fetch_end",
            "fetch_progress",
            "notice",
            "debug",
            "run_end",
        ];
        assert_eq!(names, all.into_iter().collect());
    }

    /// Keeps `docs/EVENTS.md` the type's: rewrites it and fails when it was stale.
    #[test]
    fn the_events_document_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/EVENTS.md");
        let wanted = events_document();
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        if current != wanted {
            std::fs::write(&path, &wanted).unwrap();
            panic!("{} was stale and has been rewritten; commit it", path.display());
        }
    }

    #[test]
    fn reporters_see_every_event_in_order_and_posted_ones_after() {
        let recorder = Recorder::default();
        let events = Events::new(vec![Box::new(recorder.clone())]);
        let poster = events.poster();
        events.notice("one");
        poster.send(Event::notice("posted")).unwrap();
        events.debug("two");
        poster.send(Event::notice("late")).unwrap();
        events.finish();
        let records = recorder.records();
        assert!(records.windows(2).all(|w| w[0].time_ms <= w[1].time_ms), "{records:?}");
        let messages: Vec<String> = records
            .into_iter()
            .map(|r| match r.event {
                Event::Notice { message } | Event::Debug { message } => message,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(messages, ["one", "two", "posted", "late"]);
    }
}
