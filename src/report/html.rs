//! The live HTML report in `logs_dir/report/`: `index.html` and `data.js`.
//!
//! # Design
//!
//! [`HtmlReporter`] is one more [`Reporter`] of the run's events: it folds
//! them into a [`ReportData`] (the run's header, what every slot does, one
//! row per port, the critical path, and at the run's end the diff against
//! the previous run and the history of the build base) and writes it as
//! `data.js`, a script that sets `window.PORTSYNTH_REPORT`.
//!
//! Why a script and not a JSON file: the report must work from `file://`,
//! where browsers refuse `fetch()`, as well as from any static web server,
//! offline. A `<script>` element may load a local file, so the page (the
//! static `index.html`, [`super::page`]) re-inserts one every few seconds
//! and renders what it set, until the data says the run has ended. The page
//! draws everything, charts included, from that one object with its own
//! DOM code, so a refresh needs no reload and there is one source of truth;
//! SVG images made on this side (plotters) would be more files to rewrite
//! and to reload on every refresh.
//!
//! Writes are atomic (a temporary file renamed over the old one), so a page
//! or a test never reads half a file. They happen on the coordinator's
//! progress events (once a second), at most every [`WRITE_INTERVAL_MS`],
//! and at the run's start and end; a write error is told once as a notice
//! and never stops the run.
//!
//! Port names, reasons and log lines are the ports' text, hostile by
//! assumption: the JSON embedded in `data.js` has every `<`, `>` and `&`
//! escaped (`\u003c`), so no `</script>` can end the script early, and the
//! page puts data into the DOM as text only (`textContent`).

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, Context, Result};
use crossbeam_channel::Sender;
use serde::{Deserialize, Serialize};

use crate::builddb::{BuildDb, RunId};
use crate::events::{
    BuildEnd, BuildEndStatus, Event, FetchEnd, FetchStatus, PhaseTime, Record, Reporter, RunEnd, RunScope, SkipCause,
};
use crate::repo::fsutil::write_atomically;
use crate::report::diff::RunDiff;
use crate::sandbox::runner::FOOTER_BANNER;

/// The report's directory below `logs_dir`.
pub const DIR: &str = "report";
/// The page and its data, in [`DIR`].
pub const PAGE: &str = "index.html";
pub const DATA: &str = "data.js";

/// Least time between two writes of `data.js` during a run.
pub const WRITE_INTERVAL_MS: i64 = 2000;
/// Lines of a failed build's log the report shows.
pub const LOG_TAIL_LINES: usize = 30;
/// Past runs in the history chart.
pub const HISTORY_RUNS: usize = 30;
/// Notices the report keeps (the newest).
const NOTICES: usize = 50;

const DATA_PREFIX: &str = "window.PORTSYNTH_REPORT = ";
const DATA_SUFFIX: &str = ";\n";

/// Everything the page shows; `data.js` is this as JSON.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReportData {
    pub run: RunHeader,
    /// Every slot of the run, busy or not, by number.
    pub slots: Vec<SlotView>,
    /// Every port the run has told of, in the order it first did.
    pub ports: Vec<PortView>,
    /// The longest chain of dependencies among this run's builds, by their
    /// actual durations, first build first.
    pub critical_path: Vec<String>,
    /// The newest notices of the run.
    pub notices: Vec<String>,
    /// Against the run before this one that built something (at the run's end).
    pub diff: Option<RunDiff>,
    /// The build base's latest runs, newest first (this one included at its end).
    pub history: Vec<HistoryRun>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunHeader {
    pub id: String,
    pub command: String,
    /// `build` or `fetch`.
    pub kind: String,
    pub started_ms: i64,
    /// When this data was written.
    pub updated_ms: i64,
    pub ended: bool,
    /// `running`, then the run end's status.
    pub status: String,
    pub elapsed_seconds: f64,
    pub eta_seconds: Option<f64>,
    /// Ports the run set out to build (or fetch).
    pub planned: usize,
    /// Of those, the ones done with: built, failed, interrupted, or skipped
    /// because a dependency failed.
    pub done: usize,
    pub counts: Counts,
    pub workers: usize,
    pub jobs_used: usize,
    pub jobs: usize,
    pub load1: Option<f64>,
    pub swap_used: Option<f64>,
    /// Expected peak memory of the running builds, of the budget (bytes).
    pub memory_expected: Option<u64>,
    pub memory_budget: Option<u64>,
    pub waiting: Option<String>,
}

/// The ports of each status, counted from [`ReportData::ports`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub running: usize,
    pub success: usize,
    pub failed: usize,
    pub interrupted: usize,
    pub skipped: usize,
    pub not_buildable: usize,
    pub ignored: usize,
    pub up_to_date: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SlotView {
    pub slot: u32,
    /// The port it builds; `None` when idle.
    pub origin: Option<String>,
    pub phase: Option<String>,
    pub seconds: Option<f64>,
    pub lines: Option<u64>,
}

impl SlotView {
    fn idle(slot: u32) -> SlotView {
        SlotView { slot, origin: None, phase: None, seconds: None, lines: None }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PortStatus {
    Running,
    Success,
    Failed,
    Interrupted,
    Skipped,
    NotBuildable,
    Ignored,
    UpToDate,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PortView {
    pub origin: String,
    pub pkgname: Option<String>,
    pub status: PortStatus,
    /// The running phase, or the failed one.
    pub phase: Option<String>,
    pub slot: Option<u32>,
    pub started_ms: Option<i64>,
    pub ended_ms: Option<i64>,
    pub seconds: Option<f64>,
    pub make_jobs: Option<u32>,
    /// Why it failed, was skipped or ignored.
    pub reason: Option<String>,
    /// Why it was built (the plan's reason).
    pub why: Option<String>,
    /// Its log, relative to the report's directory when it is in `logs_dir`.
    pub log: Option<String>,
    /// Kept for the critical path only: not written (it would make the
    /// data of a big tree several times larger).
    #[serde(skip_serializing, default)]
    pub depends: Vec<String>,
    pub phases: Vec<PhaseTime>,
    /// The last lines of a failed build's log.
    pub log_tail: Vec<String>,
    /// A skipped port's chain: the failed port, the skipped ones between, this one.
    pub skip_chain: Vec<String>,
    pub critical: bool,
    /// When its current phase started (a running build's phase times are
    /// measured from its `build_phase` events until its end gives them).
    #[serde(skip)]
    phase_started_ms: Option<i64>,
}

impl PortView {
    /// A running build enters `phase`: the one before it ends now.
    fn enter_phase(&mut self, phase: &str, now: i64) {
        if let (Some(previous), Some(started)) = (&self.phase, self.phase_started_ms) {
            self.phases.push(PhaseTime { phase: previous.clone(), seconds: (now - started).max(0) as f64 / 1000.0 });
        }
        self.phase = Some(phase.to_string());
        self.phase_started_ms = Some(now);
    }

    fn new(origin: &str, status: PortStatus) -> PortView {
        PortView {
            origin: origin.to_string(),
            pkgname: None,
            status,
            phase: None,
            slot: None,
            started_ms: None,
            ended_ms: None,
            seconds: None,
            make_jobs: None,
            reason: None,
            why: None,
            log: None,
            depends: vec![],
            phases: vec![],
            log_tail: vec![],
            skip_chain: vec![],
            critical: false,
            phase_started_ms: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistoryRun {
    pub id: String,
    pub command: String,
    pub started_ms: i64,
    pub seconds: Option<f64>,
    pub status: String,
    pub built: u32,
    pub failed: u32,
}

/// The reporter that keeps `logs_dir/report/` current.
pub struct HtmlReporter {
    dir: PathBuf,
    logs_dir: PathBuf,
    database: Option<PathBuf>,
    data: ReportData,
    /// Index of each origin in `data.ports`.
    rows: HashMap<String, usize>,
    last_write_ms: Option<i64>,
    unwritten: bool,
    page_written: bool,
    warned: bool,
    notices: Option<Sender<Event>>,
}

impl HtmlReporter {
    /// A report in `logs_dir/report` of a run with `slots` slots. With
    /// `database`, the run's end adds the diff and the history; a write
    /// error is posted to `notices` (once).
    pub fn new(logs_dir: &Path, slots: usize, database: Option<PathBuf>, notices: Option<Sender<Event>>) -> Self {
        let slots = (1..=u32::try_from(slots).unwrap_or(u32::MAX)).map(SlotView::idle).collect();
        HtmlReporter {
            dir: logs_dir.join(DIR),
            logs_dir: logs_dir.to_path_buf(),
            database,
            data: ReportData {
                slots,
                run: RunHeader { status: "running".into(), ..RunHeader::default() },
                ..Default::default()
            },
            rows: HashMap::new(),
            last_write_ms: None,
            unwritten: false,
            page_written: false,
            warned: false,
            notices,
        }
    }

    /// What the report holds now.
    pub fn data(&self) -> &ReportData {
        &self.data
    }

    fn port(&mut self, origin: &str, status: PortStatus) -> &mut PortView {
        let index = *self.rows.entry(origin.to_string()).or_insert_with(|| {
            self.data.ports.push(PortView::new(origin, status));
            self.data.ports.len() - 1
        });
        let port = &mut self.data.ports[index];
        port.status = status;
        port
    }

    fn slot(&mut self, slot: u32) -> &mut SlotView {
        if let Some(index) = self.data.slots.iter().position(|s| s.slot == slot) {
            return &mut self.data.slots[index];
        }
        self.data.slots.push(SlotView::idle(slot));
        self.data.slots.sort_by_key(|s| s.slot);
        let index = self.data.slots.iter().position(|s| s.slot == slot).expect("just added");
        &mut self.data.slots[index]
    }

    /// Frees `slot` if it still shows `origin`.
    fn free_slot(&mut self, slot: u32, origin: &str) {
        let view = self.slot(slot);
        if view.origin.as_deref() == Some(origin) {
            *view = SlotView::idle(slot);
        }
    }

    fn log_link(&self, log: &Path) -> String {
        log_link(&self.logs_dir, log)
    }

    fn fold(&mut self, record: &Record) {
        let now = record.time_ms;
        match &record.event {
            Event::RunStart { run, command, scope } => self.run_start(now, run, command, scope),
            Event::UpToDate { origin, pkgname } => {
                self.port(origin, PortStatus::UpToDate).pkgname = Some(pkgname.clone());
            }
            Event::Ignored { origin, pkgname, reason } => {
                let port = self.port(origin, PortStatus::Ignored);
                port.pkgname.clone_from(pkgname);
                port.reason = Some(reason.clone());
            }
            Event::Skip { origin, pkgname, reason, cause } => self.skip(origin, pkgname, reason, cause),
            Event::BuildStart { slot, origin, pkgname, why, make_jobs, log, depends, .. } => {
                let port = self.port(origin, PortStatus::Running);
                port.pkgname = Some(pkgname.clone());
                port.why = Some(why.clone()).filter(|w| !w.is_empty());
                port.make_jobs = Some(*make_jobs);
                port.depends.clone_from(depends);
                port.phases.clear();
                port.started_ms = Some(now);
                self.slot_starts(now, *slot, origin, "starting", Some(log));
            }
            Event::BuildPhase { slot, origin, phase } => {
                self.port(origin, PortStatus::Running).enter_phase(phase, now);
                let view = self.slot(*slot);
                if view.origin.as_deref() == Some(origin.as_str()) {
                    view.phase = Some(phase.clone());
                }
            }
            Event::Progress(progress) => self.progress(progress),
            Event::ThrottleChange { workers, .. } => self.data.run.workers = *workers,
            Event::BuildEnd(end) => self.build_end(now, end),
            Event::FetchStart { slot, origin, .. } => self.slot_starts(now, *slot, origin, "fetch", None),
            Event::FetchRetry { origin, reason, .. } => {
                self.port(origin, PortStatus::Running).reason = Some(reason.clone());
            }
            Event::FetchEnd(end) => self.fetch_end(now, end),
            Event::FetchProgress(progress) => {
                let header = &mut self.data.run;
                header.elapsed_seconds = progress.elapsed_seconds;
                header.jobs_used = progress.downloads;
                header.jobs = progress.jobs;
                self.show_slots(&progress.slots);
            }
            Event::Notice { message } => self.notice(message),
            Event::Debug { .. } => {}
            Event::RunEnd(end) => self.run_end(end),
        }
    }

    /// `origin` starts (a build, or a fetch attempt: the first one's start stays) in `slot`.
    fn slot_starts(&mut self, now: i64, slot: u32, origin: &str, phase: &str, log: Option<&Path>) {
        let log = log.map(|l| self.log_link(l));
        let port = self.port(origin, PortStatus::Running);
        port.slot = Some(slot);
        port.started_ms.get_or_insert(now);
        port.phase = Some(phase.to_string());
        port.phase_started_ms = None;
        if log.is_some() {
            port.log = log;
        }
        *self.slot(slot) = SlotView {
            slot,
            origin: Some(origin.to_string()),
            phase: Some(phase.to_string()),
            seconds: Some(0.0),
            lines: None,
        };
    }

    fn progress(&mut self, progress: &crate::events::Progress) {
        let header = &mut self.data.run;
        header.elapsed_seconds = progress.elapsed_seconds;
        header.eta_seconds = progress.eta_seconds;
        header.workers = progress.workers;
        header.jobs_used = progress.jobs_used;
        header.jobs = progress.jobs;
        header.load1 = Some(progress.load1);
        header.swap_used = Some(progress.swap_used);
        header.memory_expected = Some(progress.memory_expected);
        header.memory_budget = Some(progress.memory_budget);
        header.waiting.clone_from(&progress.waiting);
        self.show_slots(&progress.slots);
    }

    fn notice(&mut self, message: &str) {
        self.data.notices.push(message.to_string());
        let excess = self.data.notices.len().saturating_sub(NOTICES);
        self.data.notices.drain(..excess);
    }

    fn run_start(&mut self, now: i64, run: &str, command: &str, scope: &RunScope) {
        let header = &mut self.data.run;
        header.id = run.to_string();
        header.command = command.to_string();
        header.started_ms = now;
        (header.kind, header.planned, header.jobs) = match scope {
            RunScope::Build(counts) => ("build".into(), counts.to_build, header.jobs),
            RunScope::Fetch { ports, jobs, .. } => ("fetch".into(), *ports, *jobs),
        };
        match self.history() {
            Ok(history) => self.data.history = history,
            Err(e) => self.notice(&format!("report: cannot read the history of runs: {e:#}")),
        }
    }

    fn skip(&mut self, origin: &str, pkgname: &Option<String>, reason: &str, cause: &SkipCause) {
        let status = match cause {
            SkipCause::NotBuildable { .. } | SkipCause::NotFetched { .. } => PortStatus::NotBuildable,
            SkipCause::Plan | SkipCause::FailedDependency { .. } => PortStatus::Skipped,
        };
        let port = self.port(origin, status);
        port.pkgname.clone_from(pkgname);
        port.reason = Some(reason.to_string());
        port.skip_chain = match cause {
            SkipCause::FailedDependency { failed, via } => {
                std::iter::once(failed).chain(via).cloned().chain(std::iter::once(origin.to_string())).collect()
            }
            _ => vec![],
        };
        if status == PortStatus::NotBuildable {
            port.phase = Some("scan".into());
        }
    }

    /// The busy slots of a progress event; every other slot is idle.
    fn show_slots(&mut self, busy: &[crate::events::SlotStatus]) {
        for view in &mut self.data.slots {
            *view = SlotView::idle(view.slot);
        }
        for status in busy {
            *self.slot(status.slot) = SlotView {
                slot: status.slot,
                origin: Some(status.origin.clone()),
                phase: Some(status.phase.clone()),
                seconds: Some(status.seconds),
                lines: Some(status.lines),
            };
        }
    }

    fn build_end(&mut self, now: i64, end: &BuildEnd) {
        let status = match end.status {
            BuildEndStatus::Success => PortStatus::Success,
            BuildEndStatus::Failed => PortStatus::Failed,
            BuildEndStatus::Interrupted => PortStatus::Interrupted,
        };
        let log = self.log_link(&end.log);
        let tail = failure_tail(status, Some(&end.log));
        let port = self.port(&end.origin, status);
        port.pkgname = Some(end.pkgname.clone());
        port.slot = Some(end.slot);
        port.seconds = Some(end.seconds);
        port.ended_ms = Some(now);
        port.started_ms.get_or_insert(now - (end.seconds * 1000.0) as i64);
        port.phase.clone_from(&end.phase);
        port.reason.clone_from(&end.reason);
        port.make_jobs = Some(end.make_jobs);
        port.phases.clone_from(&end.phases);
        port.log = Some(log);
        port.log_tail = tail;
        self.free_slot(end.slot, &end.origin);
    }

    fn fetch_end(&mut self, now: i64, end: &FetchEnd) {
        let status = match end.status {
            FetchStatus::Fetched => PortStatus::Success,
            FetchStatus::Present => PortStatus::UpToDate,
            FetchStatus::Failed => PortStatus::Failed,
            FetchStatus::Interrupted => PortStatus::Interrupted,
        };
        let log = end.log.as_deref().map(|l| self.log_link(l));
        let tail = failure_tail(status, end.log.as_deref());
        let port = self.port(&end.origin, status);
        port.pkgname = Some(end.pkgname.clone()).filter(|p| !p.is_empty());
        port.seconds = Some(end.seconds);
        port.ended_ms = Some(now);
        if end.status != FetchStatus::Present {
            port.slot = Some(end.slot);
            port.started_ms.get_or_insert(now - (end.seconds * 1000.0) as i64);
        }
        port.phase.clone_from(&end.phase);
        port.reason.clone_from(&end.reason);
        port.log = log;
        port.log_tail = tail;
        self.free_slot(end.slot, &end.origin);
    }

    fn run_end(&mut self, end: &RunEnd) {
        let header = &mut self.data.run;
        header.ended = true;
        header.status = end.status.name().to_string();
        header.elapsed_seconds = end.seconds;
        header.eta_seconds = None;
        header.waiting = None;
        for view in &mut self.data.slots {
            *view = SlotView::idle(view.slot);
        }
        match self.history() {
            Ok(history) => self.data.history = history,
            Err(e) => self.notice(&format!("report: cannot read the history of runs: {e:#}")),
        }
        match self.diff() {
            Ok(diff) => self.data.diff = diff,
            Err(e) => self.notice(&format!("report: cannot compare with the previous run: {e:#}")),
        }
    }

    fn open_database(&self) -> Result<Option<BuildDb>> {
        match &self.database {
            Some(path) => BuildDb::open_existing(path),
            None => Ok(None),
        }
    }

    fn history(&self) -> Result<Vec<HistoryRun>> {
        let Some(db) = self.open_database()? else { return Ok(vec![]) };
        Ok(db.runs(HISTORY_RUNS)?.into_iter().map(HistoryRun::from).collect())
    }

    fn diff(&self) -> Result<Option<RunDiff>> {
        let Some(db) = self.open_database()? else { return Ok(None) };
        if self.data.run.id.is_empty() || self.data.run.kind != "build" {
            return Ok(None);
        }
        crate::report::diff::against_previous(
            &db,
            &RunId::from(self.data.run.id.clone()),
            crate::report::diff::DEFAULT_THRESHOLD_PERCENT,
        )
    }

    /// The counts and the critical path, from the ports as they are now.
    fn derive(&mut self, now: i64) {
        self.data.run.updated_ms = now;
        if !self.data.run.ended && self.data.run.started_ms > 0 {
            self.data.run.elapsed_seconds =
                self.data.run.elapsed_seconds.max((now - self.data.run.started_ms) as f64 / 1000.0);
        }
        self.data.run.counts = count(&self.data.ports);
        self.data.run.done = self.data.ports.iter().filter(|p| is_done(p)).count();
        self.data.critical_path = critical_path(&self.data.ports);
        for port in &mut self.data.ports {
            port.critical = false;
        }
        for origin in &self.data.critical_path {
            if let Some(&index) = self.rows.get(origin) {
                self.data.ports[index].critical = true;
            }
        }
    }

    /// Writes the page (once) and the data now.
    pub fn write(&mut self, now: i64) -> Result<()> {
        self.derive(now);
        std::fs::create_dir_all(&self.dir).with_context(|| format!("cannot create {}", self.dir.display()))?;
        if !self.page_written {
            let page = super::page::render(&self.data.run.command, &self.data.run.id);
            write_atomically(&self.dir.join(PAGE), page.as_bytes())?;
            self.page_written = true;
        }
        write_atomically(&self.dir.join(DATA), data_js(&self.data)?.as_bytes())?;
        self.last_write_ms = Some(now);
        self.unwritten = false;
        Ok(())
    }

    fn write_or_warn(&mut self, now: i64) {
        if let Err(e) = self.write(now) {
            if !self.warned {
                self.warned = true;
                if let Some(notices) = &self.notices {
                    let _ = notices.send(Event::notice(format!("warning: the HTML report is not updated: {e:#}")));
                }
            }
        }
    }

    /// Whether `record` is a moment to write: the run's start and end
    /// always, a progress tick when the last write is old enough.
    fn due(&self, record: &Record) -> bool {
        match &record.event {
            Event::RunStart { .. } | Event::RunEnd(_) => true,
            Event::Progress(_) | Event::FetchProgress(_) => {
                self.last_write_ms.is_none_or(|last| record.time_ms - last >= WRITE_INTERVAL_MS)
            }
            _ => false,
        }
    }
}

impl Reporter for HtmlReporter {
    /// The header shows the ETA: the coordinator simulates the rest of the
    /// run once per tick for it (milliseconds on a big tree).
    fn wants_eta(&self) -> bool {
        true
    }

    fn report(&mut self, record: &Record) {
        self.fold(record);
        self.unwritten = true;
        if self.due(record) {
            self.write_or_warn(record.time_ms);
        }
    }

    fn finish(&mut self) {
        if self.unwritten {
            self.write_or_warn(crate::builddb::now_ms());
        }
    }
}

impl From<crate::builddb::RunRecord> for HistoryRun {
    fn from(run: crate::builddb::RunRecord) -> HistoryRun {
        HistoryRun {
            id: run.id.as_str().to_string(),
            command: run.command,
            started_ms: run.started_ms,
            seconds: run.ended_ms.map(|end| (end - run.started_ms).max(0) as f64 / 1000.0),
            status: run.status.to_string(),
            built: run.counts.built,
            failed: run.counts.failed,
        }
    }
}

/// Whether a port of the build set is done with (see [`RunHeader::done`]).
fn is_done(port: &PortView) -> bool {
    match port.status {
        PortStatus::Success | PortStatus::Failed | PortStatus::Interrupted => port.started_ms.is_some(),
        PortStatus::Skipped => !port.skip_chain.is_empty(),
        PortStatus::Running | PortStatus::NotBuildable | PortStatus::Ignored | PortStatus::UpToDate => false,
    }
}

fn count(ports: &[PortView]) -> Counts {
    let mut counts = Counts::default();
    for port in ports {
        *match port.status {
            PortStatus::Running => &mut counts.running,
            PortStatus::Success => &mut counts.success,
            PortStatus::Failed => &mut counts.failed,
            PortStatus::Interrupted => &mut counts.interrupted,
            PortStatus::Skipped => &mut counts.skipped,
            PortStatus::NotBuildable => &mut counts.not_buildable,
            PortStatus::Ignored => &mut counts.ignored,
            PortStatus::UpToDate => &mut counts.up_to_date,
        } += 1;
    }
    counts
}

/// The longest chain of finished builds, each depending on the one before,
/// by their durations. A dependency ends before its dependent starts, so
/// the builds in start order are in dependency order.
pub fn critical_path(ports: &[PortView]) -> Vec<String> {
    let mut built: Vec<&PortView> = ports
        .iter()
        .filter(|p| matches!(p.status, PortStatus::Success | PortStatus::Failed) && p.started_ms.is_some())
        .collect();
    built.sort_by_key(|p| (p.started_ms, p.origin.clone()));
    // For each build: the longest chain ending with it, and its predecessor there.
    let mut best: BTreeMap<&str, (f64, Option<&str>)> = BTreeMap::new();
    for port in &built {
        let before = port
            .depends
            .iter()
            .filter_map(|d| best.get_key_value(d.as_str()).map(|(&k, &(length, _))| (k, length)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        let own = port.seconds.unwrap_or(0.0);
        best.insert(&port.origin, (own + before.map_or(0.0, |b| b.1), before.map(|b| b.0)));
    }
    let Some((mut last, _)) = best.iter().max_by(|a, b| a.1 .0.total_cmp(&b.1 .0)).map(|(k, v)| (*k, v.0)) else {
        return vec![];
    };
    let mut chain = vec![last.to_string()];
    while let Some(&(_, Some(previous))) = best.get(last) {
        chain.push(previous.to_string());
        last = previous;
    }
    chain.reverse();
    chain
}

/// `data.js`: the data as a script setting `window.PORTSYNTH_REPORT`, its
/// JSON with `<`, `>` and `&` escaped so no text of it can close the
/// script element or open a comment.
pub fn data_js(data: &ReportData) -> Result<String> {
    let json = serde_json::to_string(data).context("cannot serialize the report's data")?;
    Ok(format!("{DATA_PREFIX}{}{DATA_SUFFIX}", escape_for_script(&json)))
}

/// JSON that can stand inside `<script>`: the characters HTML looks at, and
/// the line separators old JavaScript did not allow in strings, as `\u` escapes.
/// Valid because they can only occur inside JSON strings.
fn escape_for_script(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    for c in json.chars() {
        match c {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// The data of a `data.js` (what [`data_js`] wrote).
pub fn parse_data_js(text: &str) -> Result<ReportData> {
    let json = text
        .strip_prefix(DATA_PREFIX)
        .and_then(|rest| rest.strip_suffix(DATA_SUFFIX))
        .ok_or_else(|| anyhow!("not a report data file (it must be `{DATA_PREFIX}{{...}}{DATA_SUFFIX:?}`)"))?;
    serde_json::from_str(json).context("the report's data is not valid JSON")
}

/// The href of a log from the report's directory: relative when the log is
/// in `logs_dir`, else a `file://` URL.
fn log_link(logs_dir: &Path, log: &Path) -> String {
    match log.strip_prefix(logs_dir) {
        Ok(relative) => format!("../{}", url_path(relative)),
        Err(_) => format!("file://{}", url_path(log)),
    }
}

/// A path as URL text: the characters that would change a URL's meaning escaped.
fn url_path(path: &Path) -> String {
    let mut out = String::new();
    for byte in path.to_string_lossy().bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' | b'~' | b'+' | b'@' => {
                out.push(byte as char)
            }
            other => out.push_str(&format!("%{other:02X}")),
        }
    }
    out
}

/// What a failure shows of its log: its last lines, or why they cannot be read.
fn failure_tail(status: PortStatus, log: Option<&Path>) -> Vec<String> {
    match (status, log) {
        (PortStatus::Failed, Some(path)) => {
            log_tail(path, LOG_TAIL_LINES).unwrap_or_else(|e| vec![format!("(the log cannot be read: {e:#})")])
        }
        _ => vec![],
    }
}

/// The last `lines` lines of a build log before its footer (of its last 64 KiB).
pub fn log_tail(path: &Path, lines: usize) -> Result<Vec<String>> {
    const WINDOW: u64 = 64 * 1024;
    let mut file = std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let length = file.metadata().with_context(|| format!("cannot stat {}", path.display()))?.len();
    let start = length.saturating_sub(WINDOW);
    file.seek(SeekFrom::Start(start)).with_context(|| format!("cannot seek in {}", path.display()))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).with_context(|| format!("cannot read {}", path.display()))?;
    let text = String::from_utf8_lossy(&bytes);
    let mut all: Vec<&str> = text.lines().collect();
    if start > 0 && !all.is_empty() {
        // The first line of the window is probably cut.
        all.remove(0);
    }
    // The port's own output, without the runner's footer (the report shows its facts).
    if let Some(footer) = all.iter().rposition(|line| *line == FOOTER_BANNER) {
        all.truncate(footer);
        while all.last().is_some_and(|line| line.trim().is_empty()) {
            all.pop();
        }
    }
    Ok(all[all.len().saturating_sub(lines)..].iter().map(|l| l.to_string()).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{BuildEnd, Progress, RunEndStatus, RunResult, SlotStatus, Tally};

    const START: i64 = 1_795_000_000_000;
    const HOSTILE: &str = "</script><script>window.hacked = 1</script><!--";

    fn build_start(slot: u32, origin: &str, logs: &Path, depends: &[&str]) -> Event {
        Event::BuildStart {
            slot,
            origin: origin.into(),
            pkgname: format!("{}-1.0", origin.split('/').nth(1).unwrap()),
            why: "new".into(),
            make_jobs: 2,
            work_area: "tmpfs".into(),
            log: logs.join(format!("{}.log", origin.replace('/', "___"))),
            depends: depends.iter().map(|d| d.to_string()).collect(),
        }
    }

    fn build_end(slot: u32, origin: &str, logs: &Path, status: BuildEndStatus, seconds: f64) -> Event {
        let failed = status == BuildEndStatus::Failed;
        Event::BuildEnd(BuildEnd {
            slot,
            origin: origin.into(),
            pkgname: format!("{}-1.0", origin.split('/').nth(1).unwrap()),
            status,
            seconds,
            phase: failed.then(|| "build".into()),
            log: logs.join(format!("{}.log", origin.replace('/', "___"))),
            reason: failed.then(|| format!("make exited with status 2 {HOSTILE}")),
            make_jobs: 2,
            work_area: "tmpfs".into(),
            retried_on_disk: false,
            phases: vec![
                PhaseTime { phase: "extract".into(), seconds: 0.5 },
                PhaseTime { phase: "build".into(), seconds: seconds - 0.5 },
            ],
            kept_work: None,
            abnormal_output: vec![],
        })
    }

    fn progress(slots: Vec<SlotStatus>) -> Event {
        Event::Progress(Progress { workers: 2, jobs: 4, jobs_used: 2, load1: 0.7, slots, ..Progress::default() })
    }

    /// A run of two slots: devel/lib (3 s) then misc/app (4 s, needs lib) on
    /// slot 1, misc/fails (5 s, a hostile log) on slot 2, misc/needs-fails
    /// skipped because of it, an ignored and an up-to-date port. The events
    /// are `seconds` apart.
    fn run(logs: &Path) -> Vec<Record> {
        let counts = crate::plan::Counts { to_build: 4, up_to_date: 1, ignored: 1, skipped: 0, not_buildable: 0 };
        std::fs::write(
            logs.join("misc___fails.log"),
            (1..=40).map(|i| format!("line {i}\n")).collect::<String>()
                + HOSTILE
                + &format!("\n\n{FOOTER_BANNER}\nResult:   FAILED\n"),
        )
        .unwrap();
        let busy = |slot: u32, origin: &str| SlotStatus {
            slot,
            origin: origin.into(),
            phase: "build".into(),
            seconds: 1.0,
            lines: 10,
        };
        let events = vec![
            Event::RunStart { run: "run-2".into(), command: "build misc/app".into(), scope: RunScope::Build(counts) },
            Event::UpToDate { origin: "misc/current".into(), pkgname: "current-1.0".into() },
            Event::Ignored { origin: "misc/ignored".into(), pkgname: None, reason: "is ignored".into() },
            build_start(1, "devel/lib", logs, &[]),
            build_start(2, "misc/fails", logs, &[]),
            Event::BuildPhase { slot: 1, origin: "devel/lib".into(), phase: "build".into() },
            progress(vec![busy(1, "devel/lib"), busy(2, "misc/fails")]),
            build_end(1, "devel/lib", logs, BuildEndStatus::Success, 3.0),
            build_start(1, "misc/app", logs, &["devel/lib"]),
            build_end(2, "misc/fails", logs, BuildEndStatus::Failed, 5.0),
            Event::Skip {
                origin: "misc/needs-fails".into(),
                pkgname: Some("needs-fails-1.0".into()),
                reason: "skipped: misc/fails failed".into(),
                cause: SkipCause::FailedDependency { failed: "misc/fails".into(), via: vec!["misc/middle".into()] },
            },
            progress(vec![busy(1, "misc/app")]),
            build_end(1, "misc/app", logs, BuildEndStatus::Success, 4.0),
            Event::notice(HOSTILE),
            Event::RunEnd(RunEnd {
                run: "run-2".into(),
                status: RunEndStatus::Completed,
                seconds: 9.0,
                logs: logs.to_path_buf(),
                result: RunResult::Build { counts: Tally::default(), failed: vec![] },
            }),
        ];
        events.into_iter().enumerate().map(|(i, event)| Record { time_ms: START + 1000 * i as i64, event }).collect()
    }

    fn read_data(logs: &Path) -> ReportData {
        let text = std::fs::read_to_string(logs.join(DIR).join(DATA)).unwrap();
        parse_data_js(&text).unwrap_or_else(|e| panic!("{e:#}: {text}"))
    }

    fn port<'a>(data: &'a ReportData, origin: &str) -> &'a PortView {
        data.ports.iter().find(|p| p.origin == origin).unwrap_or_else(|| panic!("no {origin}: {data:#?}"))
    }

    #[test]
    fn a_run_becomes_one_row_per_port_with_the_failure_and_the_chain() {
        let logs = tempfile::tempdir().unwrap();
        let mut reporter = HtmlReporter::new(logs.path(), 2, None, None);
        for record in run(logs.path()) {
            reporter.report(&record);
        }
        let data = read_data(logs.path());
        let mut written = reporter.data().clone();
        for port in &mut written.ports {
            // Not written: the dependencies and the running phase's start.
            port.depends.clear();
            port.phase_started_ms = None;
        }
        assert_eq!(data, written, "the file holds what the reporter has");
        let statuses: Vec<(&str, PortStatus)> = data.ports.iter().map(|p| (p.origin.as_str(), p.status)).collect();
        assert_eq!(
            statuses,
            [
                ("misc/current", PortStatus::UpToDate),
                ("misc/ignored", PortStatus::Ignored),
                ("devel/lib", PortStatus::Success),
                ("misc/fails", PortStatus::Failed),
                ("misc/app", PortStatus::Success),
                ("misc/needs-fails", PortStatus::Skipped),
            ]
        );
        let header = &data.run;
        assert!(header.ended && header.status == "completed" && header.planned == 4, "{header:#?}");
        assert_eq!(header.done, 4, "three builds and the port skipped because of one");
        assert_eq!((header.counts.success, header.counts.failed, header.counts.skipped), (2, 1, 1));
        assert_eq!((header.workers, header.jobs, header.load1), (2, 4, Some(0.7)));
        let fails = port(&data, "misc/fails");
        assert_eq!((fails.phase.as_deref(), fails.slot, fails.seconds), (Some("build"), Some(2), Some(5.0)));
        assert!(fails.reason.as_deref().unwrap().contains(HOSTILE));
        assert_eq!(fails.log.as_deref(), Some("../misc___fails.log"), "relative to the report's directory");
        assert_eq!(fails.log_tail.len(), LOG_TAIL_LINES);
        assert_eq!(fails.log_tail.first().map(String::as_str), Some("line 12"));
        assert_eq!(fails.log_tail.last().map(String::as_str), Some(HOSTILE));
        let skipped = port(&data, "misc/needs-fails");
        assert_eq!(skipped.skip_chain, ["misc/fails", "misc/middle", "misc/needs-fails"]);
        let app = port(&data, "misc/app");
        assert_eq!((app.started_ms, app.ended_ms), (Some(START + 8000), Some(START + 12_000)));
        assert_eq!(app.phases.len(), 2);
        assert!(data.slots.iter().all(|s| s.origin.is_none()), "every slot is idle at the end: {:?}", data.slots);
        assert_eq!(data.notices, [HOSTILE]);
    }

    #[test]
    fn slots_show_what_runs_now() {
        let logs = tempfile::tempdir().unwrap();
        let mut reporter = HtmlReporter::new(logs.path(), 3, None, None);
        for record in run(logs.path()).into_iter().take(9) {
            reporter.report(&record);
        }
        let slots: Vec<(u32, Option<&str>, Option<&str>)> =
            reporter.data().slots.iter().map(|s| (s.slot, s.origin.as_deref(), s.phase.as_deref())).collect();
        assert_eq!(
            slots,
            [(1, Some("misc/app"), Some("starting")), (2, Some("misc/fails"), Some("build")), (3, None, None)]
        );
        assert_eq!(port(reporter.data(), "misc/app").status, PortStatus::Running);
    }

    #[test]
    fn a_running_build_has_the_times_of_its_finished_phases() {
        let logs = tempfile::tempdir().unwrap();
        let mut reporter = HtmlReporter::new(logs.path(), 1, None, None);
        let at = |ms: i64, event: Event| Record { time_ms: START + ms, event };
        let phase = |name: &str| Event::BuildPhase { slot: 1, origin: "misc/a".into(), phase: name.into() };
        reporter.report(&at(0, build_start(1, "misc/a", logs.path(), &[])));
        reporter.report(&at(100, phase("fetch")));
        reporter.report(&at(1600, phase("build")));
        reporter.report(&at(4100, phase("package")));
        let times: Vec<(&str, f64)> =
            port(reporter.data(), "misc/a").phases.iter().map(|p| (p.phase.as_str(), p.seconds)).collect();
        assert_eq!(times, [("fetch", 1.5), ("build", 2.5)]);
        reporter.report(&at(5000, build_end(1, "misc/a", logs.path(), BuildEndStatus::Success, 5.0)));
        let times: Vec<(&str, f64)> =
            port(reporter.data(), "misc/a").phases.iter().map(|p| (p.phase.as_str(), p.seconds)).collect();
        assert_eq!(times, [("extract", 0.5), ("build", 4.5)], "the build's end has the measured ones");
    }

    #[test]
    fn every_kind_of_event_folds_into_data_that_parses_back() {
        let logs = tempfile::tempdir().unwrap();
        let mut reporter = HtmlReporter::new(logs.path(), 2, None, None);
        for record in crate::events::example_records() {
            reporter.report(&record);
        }
        reporter.finish();
        let data = read_data(logs.path());
        assert!(data.run.ended, "{:#?}", data.run);
        assert_eq!(port(&data, "misc/broken").status, PortStatus::NotBuildable);
        assert_eq!(port(&data, "misc/fails").status, PortStatus::Failed);
        assert_eq!(port(&data, "misc/hello").status, PortStatus::Success, "built, then fetched");
    }

    #[test]
    fn the_critical_path_is_the_longest_chain_by_duration() {
        let logs = tempfile::tempdir().unwrap();
        let mut reporter = HtmlReporter::new(logs.path(), 2, None, None);
        for record in run(logs.path()) {
            reporter.report(&record);
        }
        // lib (3 s) + app (4 s) beats fails (5 s) alone.
        assert_eq!(reporter.data().critical_path, ["devel/lib", "misc/app"]);
        let critical: Vec<&str> =
            reporter.data().ports.iter().filter(|p| p.critical).map(|p| p.origin.as_str()).collect();
        assert_eq!(critical, ["devel/lib", "misc/app"]);
    }

    #[test]
    fn hostile_text_cannot_leave_the_script() {
        let logs = tempfile::tempdir().unwrap();
        let mut reporter = HtmlReporter::new(logs.path(), 2, None, None);
        for record in run(logs.path()) {
            reporter.report(&record);
        }
        let text = std::fs::read_to_string(logs.path().join(DIR).join(DATA)).unwrap();
        for markup in ["<", ">", "&"] {
            assert!(!text.contains(markup), "{markup} in data.js: {text}");
        }
        assert!(text.contains("\\u003c/script\\u003e"), "{text}");
        assert_eq!(port(&read_data(logs.path()), "misc/fails").log_tail.last().map(String::as_str), Some(HOSTILE));
    }

    #[test]
    fn writes_wait_for_the_interval_except_at_start_and_end() {
        let logs = tempfile::tempdir().unwrap();
        let mut reporter = HtmlReporter::new(logs.path(), 1, None, None);
        let written = || read_data(logs.path()).run.updated_ms - START;
        let at = |ms: i64, event: Event| Record { time_ms: START + ms, event };
        let counts = crate::plan::Counts { to_build: 1, up_to_date: 0, ignored: 0, skipped: 0, not_buildable: 0 };
        reporter.report(&at(
            0,
            Event::RunStart { run: "r".into(), command: "build".into(), scope: RunScope::Build(counts) },
        ));
        assert!(logs.path().join(DIR).join(PAGE).exists(), "the page is there from the run's start");
        assert_eq!(written(), 0);
        reporter.report(&at(1000, progress(vec![])));
        assert_eq!(written(), 0, "a second after the last write");
        reporter.report(&at(1500, build_start(1, "misc/a", logs.path(), &[])));
        assert_eq!(written(), 0, "builds do not write by themselves");
        reporter.report(&at(2000, progress(vec![])));
        assert_eq!(written(), 2000);
        reporter.report(&at(2500, Event::notice("late")));
        reporter.finish();
        assert!(read_data(logs.path()).notices == ["late"], "finish writes what is left");
    }

    #[test]
    fn a_reader_never_sees_a_partial_data_file() {
        let logs = tempfile::tempdir().unwrap();
        let records = run(logs.path());
        let mut reporter = HtmlReporter::new(logs.path(), 2, None, None);
        reporter.report(&records[0]);
        let path = logs.path().join(DIR).join(DATA);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reader = {
            let (stop, path) = (stop.clone(), path.clone());
            std::thread::spawn(move || {
                let mut reads = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let text = std::fs::read_to_string(&path).unwrap();
                    parse_data_js(&text).unwrap_or_else(|e| panic!("read {reads}: {e:#}: {text}"));
                    reads += 1;
                }
                reads
            })
        };
        // Many writes of a growing file, each a whole new version.
        for round in 0..200 {
            for record in &records[1..] {
                reporter.fold(record);
            }
            reporter.data.notices.push("x".repeat(round * 10));
            reporter.write(START + round as i64).unwrap();
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let reads = reader.join().unwrap();
        assert!(reads > 0);
        let leftovers: Vec<_> =
            std::fs::read_dir(logs.path().join(DIR)).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(leftovers.len(), 2, "no temporary file left: {leftovers:?}");
    }

    /// A run of the database `db` that built `origin` with `status`.
    fn recorded_run(db: &BuildDb, origin: &str, status: crate::builddb::BuildStatus) -> RunId {
        let run = db.start_run("build", None).unwrap();
        let new = crate::builddb::NewBuild {
            origin,
            pkgname: "a-1.0",
            version: "1.0",
            slot: Some(1),
            log_path: None,
            why: Some("changed"),
        };
        let build = db.start_build(&run, &new).unwrap();
        let reason = (status == crate::builddb::BuildStatus::Failed).then_some("make exited with status 2");
        db.finish_build(&build, status, Some("build"), reason).unwrap();
        db.finish_run(&run, crate::builddb::RunStatus::Completed, &crate::builddb::RunCounts::default()).unwrap();
        run
    }

    #[test]
    fn the_end_of_a_run_brings_its_diff_and_the_history() {
        use crate::builddb::BuildStatus;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("builds.sqlite");
        let db = BuildDb::open(&path).unwrap();
        recorded_run(&db, "misc/a", BuildStatus::Success);
        let second = recorded_run(&db, "misc/a", BuildStatus::Failed);
        let mut reporter = HtmlReporter::new(dir.path(), 1, Some(path), None);
        let counts = crate::plan::Counts { to_build: 1, up_to_date: 0, ignored: 0, skipped: 0, not_buildable: 0 };
        let events = [
            Event::RunStart { run: second.as_str().into(), command: "build".into(), scope: RunScope::Build(counts) },
            Event::RunEnd(RunEnd {
                run: second.as_str().into(),
                status: RunEndStatus::Completed,
                seconds: 1.0,
                logs: dir.path().to_path_buf(),
                result: RunResult::Build { counts: Tally::default(), failed: vec![] },
            }),
        ];
        for event in events {
            reporter.report(&Record { time_ms: START, event });
        }
        let data = read_data(dir.path());
        let diff = data.diff.expect("a diff against the first run");
        let failures: Vec<(&str, Option<&str>)> =
            diff.new_failures.iter().map(|f| (f.origin.as_str(), f.changed.as_deref())).collect();
        assert_eq!(failures, [("misc/a", Some("changed"))]);
        assert_eq!(data.history.len(), 2);
        assert_eq!(data.history[0].id, second.as_str(), "newest first");
        assert!(data.history.iter().all(|run| run.seconds.is_some()), "{:?}", data.history);
    }

    #[test]
    fn log_links_are_relative_inside_logs_dir() {
        let logs = Path::new("/var/log/portsynth");
        assert_eq!(log_link(logs, &logs.join("misc___a.log")), "../misc___a.log");
        assert_eq!(log_link(logs, Path::new("/elsewhere/a b#c.log")), "file:///elsewhere/a%20b%23c.log");
    }

    #[test]
    fn a_write_error_is_one_notice() {
        let logs = tempfile::tempdir().unwrap();
        std::fs::write(logs.path().join(DIR), "a file where the directory should be").unwrap();
        let (sender, receiver) = crossbeam_channel::unbounded();
        let mut reporter = HtmlReporter::new(logs.path(), 1, None, Some(sender));
        for record in run(logs.path()) {
            reporter.report(&record);
        }
        let notices: Vec<Event> = receiver.try_iter().collect();
        assert_eq!(notices.len(), 1, "{notices:?}");
        assert!(matches!(&notices[0], Event::Notice { message } if message.contains("HTML report")), "{notices:?}");
    }
}
