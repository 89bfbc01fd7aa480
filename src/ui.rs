//! Run output in three forms: indicatif bars on a terminal (a header and one
//! line per slot, events printed above them), one plain line per event when
//! not on a terminal, or NDJSON events on stdout with `--json`.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

enum Mode {
    Json,
    Plain,
    Bars { multi: MultiProgress, header: ProgressBar, slots: Vec<ProgressBar> },
}

pub struct Ui {
    mode: Mode,
    quiet: bool,
    out: Mutex<()>,
}

/// The header's figures.
#[derive(Debug, Clone, Default)]
pub struct Totals {
    pub built: usize,
    pub failed: usize,
    pub ignored: usize,
    pub skipped: usize,
    pub remaining: usize,
    pub limit: usize,
    pub load1: f64,
    pub swap_used: f64,
    pub elapsed: Duration,
    pub eta: Option<Duration>,
    /// Make jobs of the running builds, of the core budget.
    pub jobs_used: usize,
    pub jobs: usize,
    /// Why the first ready port waits while slots are free (cores, memory).
    pub waiting: Option<String>,
}

impl Ui {
    pub fn new(json: bool, quiet: bool, slots: usize) -> Ui {
        let mode = if json {
            Mode::Json
        } else if std::io::stderr().is_terminal() && !quiet {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let header = multi.add(ProgressBar::new_spinner());
            header.set_style(ProgressStyle::with_template("{msg}").expect("template"));
            let slots = (0..slots)
                .map(|_| {
                    let bar = multi.add(ProgressBar::new_spinner());
                    bar.set_style(ProgressStyle::with_template("  {msg}").expect("template"));
                    bar
                })
                .collect();
            Mode::Bars { multi, header, slots }
        } else {
            Mode::Plain
        };
        Ui { mode, quiet, out: Mutex::new(()) }
    }

    fn event(&self, value: serde_json::Value, text: impl FnOnce() -> String) {
        let _guard = self.out.lock().expect("ui lock");
        match &self.mode {
            Mode::Json => {
                let mut stdout = std::io::stdout().lock();
                let _ = writeln!(stdout, "{value}");
                let _ = stdout.flush();
            }
            Mode::Plain if !self.quiet => println!("{}", text()),
            Mode::Plain => {}
            Mode::Bars { multi, .. } => {
                let _ = multi.println(text());
            }
        }
    }

    pub fn run_started(&self, run_id: &str, command: &str, counts: &crate::plan::Counts) {
        let mut value = json!({"event": "run_start", "run": run_id, "command": command});
        if let (Some(object), Ok(serde_json::Value::Object(counts))) =
            (value.as_object_mut(), serde_json::to_value(counts))
        {
            object.extend(counts);
        }
        self.event(value, || format!("run {run_id}: {command}, {} ports to build", counts.to_build));
    }

    pub fn build_started(&self, slot: u32, origin: &str) {
        self.event(json!({"event": "build_start", "slot": slot, "origin": origin}), || {
            format!("[SL{slot:02}] start   {origin}")
        });
        self.slot_message(slot, format!("SL{slot:02} {origin}: starting"));
    }

    pub fn phase(&self, slot: u32, origin: &str, phase: &str) {
        if let Mode::Json = self.mode {
            self.event(json!({"event": "build_phase", "slot": slot, "origin": origin, "phase": phase}), String::new);
        }
    }

    /// A slot's line under the header: origin, phase, elapsed, log lines.
    pub fn slot_status(&self, slot: u32, origin: &str, phase: &str, elapsed: Duration, lines: u64) {
        self.slot_message(
            slot,
            format!("SL{slot:02} {origin:<32} {phase:<12} {:>5}s {lines:>7} lines", elapsed.as_secs()),
        );
    }

    fn slot_message(&self, slot: u32, message: String) {
        if let Mode::Bars { slots, .. } = &self.mode {
            if let Some(bar) = slots.get(slot as usize - 1) {
                bar.set_message(message);
            }
        }
    }

    pub fn build_finished(&self, slot: u32, origin: &str, status: &str, seconds: f64, phase: Option<&str>, log: &str) {
        self.event(
            json!({"event": "build_end", "slot": slot, "origin": origin, "status": status, "seconds": seconds, "phase": phase, "log": log}),
            || match phase {
                Some(phase) => format!("[SL{slot:02}] {status:<7} {origin} in phase {phase} ({seconds:.1}s) log: {log}"),
                None => format!("[SL{slot:02}] {status:<7} {origin} ({seconds:.1}s)"),
            },
        );
        self.slot_message(slot, format!("SL{slot:02} idle"));
    }

    pub fn skipped(&self, origin: &str, reason: &str) {
        self.event(json!({"event": "skip", "origin": origin, "reason": reason}), || {
            format!("skipped {origin}: {reason}")
        });
    }

    pub fn ignored(&self, origin: &str, reason: &str) {
        self.event(json!({"event": "ignored", "origin": origin, "reason": reason}), || {
            format!("ignored {origin}: {reason}")
        });
    }

    pub fn notice(&self, message: &str) {
        self.event(json!({"event": "notice", "message": message}), || message.to_string());
    }

    /// Whether [`Ui::totals`] shows anything (only the terminal header does),
    /// so callers can skip computing them.
    pub fn shows_totals(&self) -> bool {
        matches!(self.mode, Mode::Bars { .. })
    }

    pub fn totals(&self, t: &Totals) {
        if let Mode::Bars { header, .. } = &self.mode {
            let hours = t.elapsed.as_secs_f64() / 3600.0;
            let rate = if hours > 0.0 { t.built as f64 / hours } else { 0.0 };
            let eta = t.eta.map_or("-".to_string(), |d| format!("{}s", d.as_secs()));
            let waiting = t.waiting.as_ref().map_or(String::new(), |w| format!(" | {w}"));
            header.set_message(format!(
                "built {} failed {} ignored {} skipped {} remaining {} | workers {} jobs {}/{} | load {:.2} swap {:.0}% | {:.0} pkg/h | elapsed {}s eta {}{waiting}",
                t.built, t.failed, t.ignored, t.skipped, t.remaining, t.limit, t.jobs_used, t.jobs, t.load1,
                t.swap_used * 100.0, rate, t.elapsed.as_secs(), eta
            ));
        }
    }

    pub fn run_finished(&self, summary: serde_json::Value, text: &str) {
        if let Mode::Bars { multi, header, slots } = &self.mode {
            header.finish_and_clear();
            for bar in slots {
                bar.finish_and_clear();
            }
            let _ = multi.clear();
        }
        let mut value = summary;
        value["event"] = json!("run_end");
        match self.mode {
            Mode::Json => {
                println!("{value}");
                eprint!("{text}");
            }
            _ => print!("{text}"),
        }
    }
}

/// The fetch-only header's figures.
#[derive(Debug, Clone, Copy, Default)]
pub struct FetchTotals {
    pub fetched: usize,
    pub present: usize,
    pub failed: usize,
    pub remaining: usize,
    /// Sandboxes downloading right now, and the most allowed (`fetch_jobs`).
    pub downloads: usize,
    pub jobs: usize,
    pub elapsed: Duration,
}

/// fetch-only's events: `fetch_start`, `fetch_retry`, `fetch_end` (status
/// `fetched`, `present`, `failed` or `interrupted`). A present port is an
/// NDJSON event only: on a warm cache a line per port would drown the rest.
impl Ui {
    pub fn fetch_run_started(&self, run_id: &str, command: &str, ports: usize, distfiles: usize, jobs: usize) {
        let value = json!({"event": "run_start", "run": run_id, "command": command, "ports": ports, "distfiles": distfiles, "jobs": jobs});
        self.event(value, || {
            format!("run {run_id}: {command}, {ports} ports with {distfiles} distfiles to check, {jobs} at a time")
        });
    }

    pub fn fetch_started(&self, slot: u32, origin: &str, attempt: u32, distfiles: &[String]) {
        let value =
            json!({"event": "fetch_start", "slot": slot, "origin": origin, "attempt": attempt, "distfiles": distfiles});
        self.event(value, || match attempt {
            1 => format!("[SL{slot:02}] fetch   {origin} ({})", distfiles.join(" ")),
            n => format!("[SL{slot:02}] fetch   {origin} ({}), attempt {n}", distfiles.join(" ")),
        });
        self.slot_status(slot, origin, "fetch", Duration::ZERO, 0);
    }

    pub fn fetch_retry(
        &self,
        slot: u32,
        origin: &str,
        failed_attempt: u32,
        attempts: u32,
        delay: Duration,
        reason: &str,
    ) {
        let seconds = delay.as_secs_f64();
        let value = json!({"event": "fetch_retry", "slot": slot, "origin": origin, "attempt": failed_attempt, "attempts": attempts, "delay_seconds": seconds, "reason": reason});
        self.event(value, || {
            format!("[SL{slot:02}] retry   {origin} in {seconds:.1}s (attempt {failed_attempt} of {attempts} failed: {reason})")
        });
        self.slot_message(slot, format!("SL{slot:02} idle"));
    }

    /// The end of a port: `status` is fetched, present, failed or interrupted.
    pub fn fetch_finished(&self, slot: u32, origin: &str, status: &str, end: &FetchEnd<'_>) {
        let value = json!({"event": "fetch_end", "slot": slot, "origin": origin, "status": status,
            "seconds": end.seconds, "attempts": end.attempts, "phase": end.phase, "reason": end.reason, "log": end.log});
        if status == "present" {
            if let Mode::Json = self.mode {
                self.event(value, String::new);
            }
            return;
        }
        self.event(value, || match end.reason {
            Some(reason) => {
                format!(
                    "[SL{slot:02}] {status:<7} {origin} ({:.1}s): {reason} log: {}",
                    end.seconds,
                    end.log.unwrap_or("-")
                )
            }
            None => format!("[SL{slot:02}] {status:<7} {origin} ({:.1}s)", end.seconds),
        });
        self.slot_message(slot, format!("SL{slot:02} idle"));
    }

    pub fn fetch_totals(&self, t: &FetchTotals) {
        if let Mode::Bars { header, .. } = &self.mode {
            header.set_message(format!(
                "fetched {} present {} failed {} remaining {} | downloads {}/{} | elapsed {}s",
                t.fetched,
                t.present,
                t.failed,
                t.remaining,
                t.downloads,
                t.jobs,
                t.elapsed.as_secs()
            ));
        }
    }
}

/// The details of a `fetch_end` event.
#[derive(Debug, Clone, Copy, Default)]
pub struct FetchEnd<'a> {
    pub seconds: f64,
    pub attempts: u32,
    pub phase: Option<&'a str>,
    pub reason: Option<&'a str>,
    pub log: Option<&'a str>,
}
