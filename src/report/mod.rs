//! The run's summary logs in `logs_dir`, dsynth style:
//! `00_last_results.log` (every outcome), `01_success_list.log`,
//! `02_failure_list.log`, `03_ignored_list.log`, `04_skipped_list.log`,
//! `05_abnormal_command_output.log`, `06_obsolete_packages.log`,
//! `07_debug.log`.
//!
//! Only a build run creates (truncates) them; read-only commands never do.
//! Each list holds one line per port per outcome: a port reported twice in
//! the same list is written once.
//!
//! [`LogsReporter`] writes them from the run's event stream
//! (`crate::events`); [`RunLogs`] is also shared with the code around the
//! run for its debug lines (planning, the repository index).
//!
//! Next to them, [`html`] keeps the live HTML report (`report/index.html`
//! and its `data.js`) and [`diff`] compares two runs, for `portsynth diff`
//! and the report's "since the previous run".

pub mod diff;
pub mod html;
mod page;

use std::collections::HashSet;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};

use crate::events::{BuildEndStatus, Event, FetchStatus, Record, Reporter, SkipCause};

/// The obsolete-packages list, rewritten whole by every index rebuild.
pub const OBSOLETE: &str = "06_obsolete_packages.log";

pub const FILES: [&str; 8] = [
    "00_last_results.log",
    "01_success_list.log",
    "02_failure_list.log",
    "03_ignored_list.log",
    "04_skipped_list.log",
    "05_abnormal_command_output.log",
    OBSOLETE,
    "07_debug.log",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum List {
    Results,
    Success,
    Failure,
    Ignored,
    Skipped,
    Abnormal,
    /// Written whole by [`write_obsolete`], never line by line.
    _Obsolete,
    Debug,
}

pub struct RunLogs {
    files: Mutex<Vec<File>>,
    seen: Mutex<HashSet<(List, String)>>,
}

impl RunLogs {
    /// Starts a run's logs: every summary file is truncated.
    pub fn create(dir: &Path) -> Result<RunLogs> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut files = Vec::new();
        for name in FILES {
            let path = dir.join(name);
            files.push(File::create(&path).with_context(|| format!("cannot create {}", path.display()))?);
        }
        Ok(RunLogs { files: Mutex::new(files), seen: Mutex::default() })
    }

    fn write(&self, list: List, key: Option<&str>, line: &str) {
        if let Some(key) = key {
            if !self.seen.lock().expect("log lock").insert((list, key.to_string())) {
                return;
            }
        }
        let mut files = self.files.lock().expect("log lock");
        let _ = writeln!(files[list as usize], "{line}");
        let _ = files[list as usize].flush();
    }

    fn result(&self, list: List, origin: &str, line: String) {
        self.write(list, Some(origin), &line);
        self.write(
            List::Results,
            Some(&format!("{list:?} {origin}")),
            &format!("{:<8} {line}", format!("{list:?}").to_lowercase()),
        );
    }

    /// `note`: what else happened on the way (a retry on disk).
    pub fn success(&self, origin: &str, pkgname: &str, seconds: f64, note: Option<&str>) {
        let note = note.map_or(String::new(), |n| format!(" ({n})"));
        self.result(List::Success, origin, format!("{origin} {pkgname} {seconds:.1}s{note}"));
    }

    pub fn failure(&self, origin: &str, pkgname: &str, phase: &str, reason: &str, log: &Path) {
        self.result(
            List::Failure,
            origin,
            format!("{origin} {pkgname} phase={phase} {reason} (log: {})", log.display()),
        );
    }

    pub fn ignored(&self, origin: &str, pkgname: &str, reason: &str) {
        self.result(List::Ignored, origin, format!("{origin} {pkgname} {reason}"));
    }

    pub fn skipped(&self, origin: &str, pkgname: &str, reason: &str) {
        self.result(List::Skipped, origin, format!("{origin} {pkgname} {reason}"));
    }

    /// A port that cannot even be planned (scan error, bad dependency,
    /// cycle): listed with the failures, as phase `scan`.
    pub fn not_buildable(&self, origin: &str, reason: &str) {
        self.result(List::Failure, origin, format!("{origin} - phase=scan {reason}"));
    }

    /// Up-to-date ports appear in the results list only.
    pub fn up_to_date(&self, origin: &str, pkgname: &str) {
        self.write(List::Results, Some(&format!("up-to-date {origin}")), &format!("up-to-date {origin} {pkgname}"));
    }

    /// Output of a command that looked wrong (e.g. the build ended with
    /// text on a stream where none was expected).
    pub fn abnormal(&self, what: &str, output: &str) {
        self.write(List::Abnormal, None, &format!("{what}:\n{}\n", output.trim_end()));
    }

    pub fn debug(&self, message: &str) {
        let now = utc_time(crate::builddb::now_ms());
        self.write(List::Debug, None, &format!("{now} {message}"));
    }
}

/// The summary logs as a reporter of the run's events. Every notice is
/// also a line of `07_debug.log`, so the log holds what the operator saw.
pub struct LogsReporter(pub Arc<RunLogs>);

impl Reporter for LogsReporter {
    fn report(&mut self, record: &Record) {
        let logs = &self.0;
        match &record.event {
            Event::UpToDate { origin, pkgname } => logs.up_to_date(origin, pkgname),
            Event::Ignored { origin, pkgname, reason } => {
                logs.ignored(origin, pkgname.as_deref().unwrap_or("-"), reason)
            }
            Event::Skip {
                origin,
                cause: SkipCause::NotBuildable { problem } | SkipCause::NotFetched { problem },
                ..
            } => logs.not_buildable(origin, problem),
            Event::Skip { origin, pkgname, reason, .. } => {
                logs.skipped(origin, pkgname.as_deref().unwrap_or("-"), reason)
            }
            Event::BuildEnd(end) => {
                match end.status {
                    BuildEndStatus::Success => {
                        // Only a retried success has a reason (on disk, or a Slurm requeue).
                        let note = end.reason.as_deref();
                        logs.success(&end.origin, &end.pkgname, end.seconds, note);
                    }
                    BuildEndStatus::Failed => logs.failure(
                        &end.origin,
                        &end.pkgname,
                        end.phase.as_deref().unwrap_or("setup"),
                        end.reason.as_deref().unwrap_or("failed"),
                        &end.log,
                    ),
                    BuildEndStatus::Interrupted => {}
                }
                if !end.abnormal_output.is_empty() {
                    let what = format!("{} (log: {})", end.origin, end.log.display());
                    logs.abnormal(&what, &end.abnormal_output.join("\n"));
                }
            }
            Event::FetchEnd(end) => match end.status {
                FetchStatus::Present => logs.up_to_date(&end.origin, &end.pkgname),
                FetchStatus::Fetched => logs.success(&end.origin, &end.pkgname, end.seconds, None),
                FetchStatus::Failed => logs.failure(
                    &end.origin,
                    &end.pkgname,
                    end.phase.as_deref().unwrap_or("setup"),
                    end.reason.as_deref().unwrap_or("failed"),
                    end.log.as_deref().unwrap_or(Path::new("-")),
                ),
                FetchStatus::Interrupted => {}
            },
            Event::Notice { message } | Event::Debug { message } => logs.debug(message),
            Event::RunStart { .. }
            | Event::BuildStart { .. }
            | Event::BuildPhase { .. }
            | Event::Progress(_)
            | Event::ThrottleChange { .. }
            | Event::FetchStart { .. }
            | Event::FetchRetry { .. }
            | Event::FetchProgress(_)
            | Event::RunEnd(_) => {}
        }
    }
}

/// Replaces `06_obsolete_packages.log` with `files`, one path per line
/// (`rebuild-repository` writes it without starting a run's logs).
pub fn write_obsolete(dir: &Path, files: &[PathBuf]) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let text: String = files.iter().map(|f| format!("{}\n", f.display())).collect();
    crate::repo::fsutil::write_atomically(&dir.join(OBSOLETE), text.as_bytes())
}

/// UTC time of a ms timestamp as `YYYY-MM-DD HH:MM:SS`.
pub fn utc_time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}", rem / 3600, rem / 60 % 60, rem % 60)
}

/// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_times_format() {
        assert_eq!(utc_time(0), "1970-01-01 00:00:00");
        assert_eq!(utc_time(1_795_000_000_000), "2026-11-18 11:06:40");
    }

    #[test]
    fn lists_hold_one_line_per_port_and_outcome() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("02_failure_list.log"), "old run\n").unwrap();
        let logs = RunLogs::create(dir.path()).unwrap();
        logs.success("misc/hello", "hello-2.1", 1.25, None);
        logs.success("misc/hello", "hello-2.1", 1.25, None);
        logs.failure("misc/fails", "fails-1.0", "build", "make exited 2", Path::new("/l/misc___fails.log"));
        logs.skipped("misc/needs-fails", "needs-fails-1.0", "skipped: misc/fails failed");
        logs.ignored("misc/ignored", "ignored-1.0", "is ignored");
        logs.debug("database write failed");
        let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
        assert_eq!(read("01_success_list.log"), "misc/hello hello-2.1 1.2s\n");
        assert_eq!(
            read("02_failure_list.log"),
            "misc/fails fails-1.0 phase=build make exited 2 (log: /l/misc___fails.log)\n"
        );
        assert_eq!(read("04_skipped_list.log"), "misc/needs-fails needs-fails-1.0 skipped: misc/fails failed\n");
        assert_eq!(read("00_last_results.log").lines().count(), 4);
        assert!(read("00_last_results.log").starts_with("success  misc/hello"));
        assert!(read("07_debug.log").contains("database write failed"));
        assert_eq!(read("06_obsolete_packages.log"), "");
    }

    #[test]
    fn the_logs_reporter_files_each_event_in_its_list() {
        let dir = tempfile::tempdir().unwrap();
        let mut reporter = LogsReporter(Arc::new(RunLogs::create(dir.path()).unwrap()));
        for record in crate::events::example_records() {
            reporter.report(&record);
        }
        let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
        // The build's success and the fetch's are one port: listed once.
        assert_eq!(read("01_success_list.log"), "misc/hello hello-2.1 4.2s\n");
        assert_eq!(
            read("02_failure_list.log"),
            "misc/broken - phase=scan scan failed\n\
             misc/fails fails-1.0 phase=build make exited with status 2 (log: /var/cache/portsynth/logs/misc___fails.log)\n"
        );
        assert_eq!(read("03_ignored_list.log"), "misc/ignored ignored-1.0 is ignored\n");
        assert_eq!(
            read("04_skipped_list.log"),
            "misc/needs-ignored needs-ignored-1.0 depends on misc/ignored, which is ignored\n\
             misc/needs-fails needs-fails-1.0 skipped: misc/fails failed\n"
        );
        assert_eq!(
            read("05_abnormal_command_output.log"),
            "misc/fails (log: /var/cache/portsynth/logs/misc___fails.log):\nSegmentation fault\n\n"
        );
        let results = read("00_last_results.log");
        assert!(results.contains("up-to-date misc/current current-1.0\n"), "{results}");
        let debug = read("07_debug.log");
        assert!(debug.contains("warning: database error recording a success: disk full"), "{debug}");
        assert!(debug.contains("cannot read past durations"), "{debug}");
    }
}
