//! The run on the operator's screen, as two [`Reporter`]s of the event
//! stream (`crate::events`): [`Terminal`] draws indicatif bars on a
//! terminal (a header and one line per slot, events printed above them) or
//! prints one plain line per event when stdout is not a terminal, and
//! [`Ndjson`] prints every event as one JSON line on stdout (`--json`).
//!
//! Both only format what the coordinator said; the little state they keep
//! (what each slot shows) is display state. A closed stdout (`portsynth
//! everything | head`) ends the output, never the run: write errors are
//! ignored here, the run's facts are in the database and the logs.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::events::{BuildEnd, Event, FetchEnd, FetchProgress, Progress, Record, RunEnd, RunResult, RunScope};

/// The reporter that shows the run to people: bars on a terminal (unless
/// `quiet`), else plain lines. With `json` the NDJSON stream instead.
pub fn reporter(json: bool, quiet: bool, slots: usize) -> Box<dyn crate::events::Reporter> {
    if json {
        Box::new(Ndjson::new(Box::new(std::io::stdout()), Box::new(std::io::stderr())))
    } else if std::io::stderr().is_terminal() && !quiet {
        Box::new(Terminal::bars(slots))
    } else {
        Box::new(Terminal::plain(Box::new(std::io::stdout()), quiet))
    }
}

/// One JSON object per event on `out`; the run's summary text on `text`
/// (stderr) at its end, so stdout holds nothing but events.
pub struct Ndjson {
    out: Box<dyn Write + Send>,
    text: Box<dyn Write + Send>,
}

impl Ndjson {
    pub fn new(out: Box<dyn Write + Send>, text: Box<dyn Write + Send>) -> Ndjson {
        Ndjson { out, text }
    }
}

impl crate::events::Reporter for Ndjson {
    fn report(&mut self, record: &Record) {
        if let Ok(line) = serde_json::to_string(record) {
            let _ = writeln!(self.out, "{line}");
            let _ = self.out.flush();
        }
        if let Event::RunEnd(end) = &record.event {
            let _ = write!(self.text, "{}", summary_text(end));
            let _ = self.text.flush();
        }
    }
}

enum Screen {
    Plain { out: Box<dyn Write + Send>, quiet: bool },
    Bars { multi: MultiProgress, header: ProgressBar, slots: Vec<ProgressBar> },
}

/// What a slot line shows between two progress events.
struct SlotLine {
    origin: String,
    phase: String,
    started: Instant,
    lines: u64,
}

pub struct Terminal {
    screen: Screen,
    slots: HashMap<u32, SlotLine>,
}

impl Terminal {
    pub fn bars(slots: usize) -> Terminal {
        Terminal::bars_on(ProgressDrawTarget::stderr(), slots)
    }

    fn bars_on(target: ProgressDrawTarget, slots: usize) -> Terminal {
        let multi = MultiProgress::with_draw_target(target);
        let header = multi.add(ProgressBar::new_spinner());
        header.set_style(ProgressStyle::with_template("{msg}").expect("template"));
        let slots = (0..slots)
            .map(|_| {
                let bar = multi.add(ProgressBar::new_spinner());
                bar.set_style(ProgressStyle::with_template("  {msg}").expect("template"));
                bar
            })
            .collect();
        Terminal { screen: Screen::Bars { multi, header, slots }, slots: HashMap::new() }
    }

    /// One line per event on `out`; with `quiet` only the summary.
    pub fn plain(out: Box<dyn Write + Send>, quiet: bool) -> Terminal {
        Terminal { screen: Screen::Plain { out, quiet }, slots: HashMap::new() }
    }

    fn line(&mut self, text: String) {
        match &mut self.screen {
            Screen::Plain { quiet: true, .. } => {}
            Screen::Plain { out, .. } => {
                let _ = writeln!(out, "{text}");
                let _ = out.flush();
            }
            Screen::Bars { multi, .. } => {
                let _ = multi.println(text);
            }
        }
    }

    fn slot_message(&self, slot: u32, message: String) {
        if let Screen::Bars { slots, .. } = &self.screen {
            if let Some(bar) = slots.get((slot as usize).wrapping_sub(1)) {
                bar.set_message(message);
            }
        }
    }

    fn show_slot(&self, slot: u32) {
        if let Some(line) = self.slots.get(&slot) {
            self.slot_message(slot, slot_text(slot, &line.origin, &line.phase, line.started.elapsed(), line.lines));
        }
    }

    fn busy(&mut self, slot: u32, origin: &str, phase: &str) {
        let line = SlotLine { origin: origin.to_string(), phase: phase.to_string(), started: Instant::now(), lines: 0 };
        self.slots.insert(slot, line);
    }

    fn idle(&mut self, slot: u32) {
        self.slots.remove(&slot);
        self.slot_message(slot, format!("SL{slot:02} idle"));
    }

    fn header(&self, text: String) {
        if let Screen::Bars { header, .. } = &self.screen {
            header.set_message(text);
        }
    }

    fn progress(&mut self, slots: &[crate::events::SlotStatus]) {
        for status in slots {
            let started = Instant::now().checked_sub(Duration::from_secs_f64(status.seconds)).unwrap_or(Instant::now());
            let line =
                SlotLine { origin: status.origin.clone(), phase: status.phase.clone(), started, lines: status.lines };
            self.slots.insert(status.slot, line);
            self.show_slot(status.slot);
        }
    }

    fn run_end(&mut self, end: &RunEnd) {
        let text = summary_text(end);
        match &mut self.screen {
            Screen::Bars { multi, header, slots } => {
                header.finish_and_clear();
                for bar in slots.iter() {
                    bar.finish_and_clear();
                }
                let _ = multi.clear();
                let mut stdout = std::io::stdout().lock();
                let _ = write!(stdout, "{text}");
                let _ = stdout.flush();
            }
            Screen::Plain { out, .. } => {
                let _ = write!(out, "{text}");
                let _ = out.flush();
            }
        }
    }
}

impl crate::events::Reporter for Terminal {
    fn wants_eta(&self) -> bool {
        matches!(self.screen, Screen::Bars { .. })
    }

    fn report(&mut self, record: &Record) {
        match &record.event {
            Event::RunStart { run, command, scope: RunScope::Build(counts) } => {
                self.line(format!("run {run}: {command}, {} ports to build", counts.to_build))
            }
            Event::RunStart { run, command, scope: RunScope::Fetch { ports, distfiles, jobs } } => self.line(format!(
                "run {run}: {command}, {ports} ports with {distfiles} distfiles to check, {jobs} at a time"
            )),
            Event::UpToDate { .. } | Event::Debug { .. } | Event::ThrottleChange { .. } => {}
            Event::Ignored { origin, reason, .. } => self.line(format!("ignored {origin}: {reason}")),
            Event::Skip { origin, reason, .. } => self.line(format!("skipped {origin}: {reason}")),
            Event::BuildStart { slot, origin, .. } => {
                self.line(format!("[SL{slot:02}] start   {origin}"));
                self.busy(*slot, origin, "starting");
                self.slot_message(*slot, format!("SL{slot:02} {origin}: starting"));
            }
            Event::BuildPhase { slot, phase, .. } => {
                if let Some(line) = self.slots.get_mut(slot) {
                    line.phase = phase.clone();
                }
                self.show_slot(*slot);
            }
            Event::Progress(progress) => {
                self.header(header_text(progress));
                self.progress(&progress.slots);
            }
            Event::BuildEnd(end) => {
                self.line(build_end_text(end));
                self.idle(end.slot);
            }
            Event::FetchStart { slot, origin, attempt, distfiles } => {
                let files = distfiles.join(" ");
                self.line(match attempt {
                    1 => format!("[SL{slot:02}] fetch   {origin} ({files})"),
                    n => format!("[SL{slot:02}] fetch   {origin} ({files}), attempt {n}"),
                });
                self.busy(*slot, origin, "fetch");
                self.show_slot(*slot);
            }
            Event::FetchRetry { slot, origin, attempt, attempts, delay_seconds, reason } => {
                self.line(format!(
                    "[SL{slot:02}] retry   {origin} in {delay_seconds:.1}s (attempt {attempt} of {attempts} failed: {reason})"
                ));
                self.idle(*slot);
            }
            Event::FetchEnd(end) => {
                // A present port is an NDJSON event only: on a warm cache a
                // line per port would drown the rest.
                if end.status != crate::events::FetchStatus::Present {
                    self.line(fetch_end_text(end));
                }
                self.idle(end.slot);
            }
            Event::FetchProgress(progress) => {
                self.header(fetch_header_text(progress));
                self.progress(&progress.slots);
            }
            Event::Notice { message } => self.line(message.clone()),
            Event::RunEnd(end) => self.run_end(end),
        }
    }
}

fn slot_text(slot: u32, origin: &str, phase: &str, elapsed: Duration, lines: u64) -> String {
    format!("SL{slot:02} {origin:<32} {phase:<12} {:>5}s {lines:>7} lines", elapsed.as_secs())
}

fn header_text(t: &Progress) -> String {
    const GIB: f64 = (1u64 << 30) as f64;
    let hours = t.elapsed_seconds / 3600.0;
    let rate = if hours > 0.0 { t.built as f64 / hours } else { 0.0 };
    let eta = t.eta_seconds.map_or("-".to_string(), |s| format!("{}s", s as u64));
    let waiting = t.waiting.as_ref().map_or(String::new(), |w| format!(" | {w}"));
    format!(
        "built {} failed {} ignored {} skipped {} remaining {} | workers {} jobs {}/{} mem {:.1}/{:.1}G | load {:.2} swap {:.0}% | {:.0} pkg/h | elapsed {}s eta {}{waiting}",
        t.built, t.failed, t.ignored, t.skipped, t.remaining, t.workers, t.jobs_used, t.jobs,
        t.memory_expected as f64 / GIB, t.memory_budget as f64 / GIB, t.load1,
        t.swap_used * 100.0, rate, t.elapsed_seconds as u64, eta
    )
}

fn fetch_header_text(t: &FetchProgress) -> String {
    format!(
        "fetched {} present {} failed {} remaining {} | downloads {}/{} | elapsed {}s",
        t.fetched, t.present, t.failed, t.remaining, t.downloads, t.jobs, t.elapsed_seconds as u64
    )
}

fn build_end_text(end: &BuildEnd) -> String {
    let (slot, origin, status, seconds) = (end.slot, &end.origin, end.status.name(), end.seconds);
    match &end.phase {
        Some(phase) => {
            format!("[SL{slot:02}] {status:<7} {origin} in phase {phase} ({seconds:.1}s) log: {}", end.log.display())
        }
        None => format!("[SL{slot:02}] {status:<7} {origin} ({seconds:.1}s)"),
    }
}

fn fetch_end_text(end: &FetchEnd) -> String {
    let (slot, origin, status, seconds) = (end.slot, &end.origin, end.status.name(), end.seconds);
    match &end.reason {
        Some(reason) => {
            let log = end.log.as_ref().map_or("-".to_string(), |l| l.display().to_string());
            format!("[SL{slot:02}] {status:<7} {origin} ({seconds:.1}s): {reason} log: {log}")
        }
        None => format!("[SL{slot:02}] {status:<7} {origin} ({seconds:.1}s)"),
    }
}

/// The text a run ends with: its counts, its failures, where its logs are.
pub fn summary_text(end: &RunEnd) -> String {
    let elapsed = crate::commands::history::duration((end.seconds * 1000.0) as i64);
    let (run, status) = (&end.run, end.status);
    let mut text = match &end.result {
        RunResult::Build { counts: t, failed } => {
            let mut text = format!(
                "\nRun {run} {status} in {elapsed}: {} built, {} failed, {} ignored, {} skipped, {} up to date, {} not buildable",
                t.built, t.failed, t.ignored, t.skipped, t.up_to_date, t.not_buildable
            );
            for (count, what) in [(t.interrupted, "interrupted"), (t.not_started, "not started")] {
                if count > 0 {
                    text.push_str(&format!(", {count} {what}"));
                }
            }
            text.push('\n');
            if !failed.is_empty() {
                text.push_str("Failed ports:\n");
            }
            for port in failed {
                let phase = port.phase.as_deref().unwrap_or("setup");
                text.push_str(&format!("  {}  phase {phase}  log {}\n", port.origin, port.log.display()));
                if let Some(kept) = &port.kept_work {
                    text.push_str(&format!("    work area kept in {}\n", kept.display()));
                }
            }
            text
        }
        RunResult::Fetch { counts: t, failed, unknown, distfiles } => {
            let mut text = format!(
                "\nRun {run} {status} in {elapsed}: {} fetched, {} present, {} failed, {} ignored, {} without distfiles",
                t.fetched, t.present, t.failed, t.ignored, t.without_distfiles,
            );
            for (count, what) in
                [(t.unknown, "not scanned"), (t.interrupted, "interrupted"), (t.not_started, "not started")]
            {
                if count > 0 {
                    text.push_str(&format!(", {count} {what}"));
                }
            }
            text.push('\n');
            if !failed.is_empty() {
                text.push_str("Failed fetches:\n");
            }
            for port in failed {
                text.push_str(&format!("  {}  {}\n    log {}\n", port.origin, port.reason, port.log.display()));
            }
            for port in unknown {
                text.push_str(&format!("  {}  {}\n", port.origin, port.reason));
            }
            text.push_str(&format!("Distfiles: {}\n", distfiles.display()));
            text
        }
    };
    text.push_str(&format!("Logs: {}\n", end.logs.display()));
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{example_records, Reporter};
    use std::sync::{Arc, Mutex};

    /// A `Write` whose bytes the test reads afterwards.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Shared {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    #[test]
    fn ndjson_writes_one_parsable_line_per_event_and_the_summary_on_the_other_stream() {
        let (out, text) = (Shared::default(), Shared::default());
        let mut ndjson = Ndjson::new(Box::new(out.clone()), Box::new(text.clone()));
        for record in example_records() {
            ndjson.report(&record);
        }
        let parsed: Vec<Record> = out.text().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(parsed, example_records());
        let text = text.text();
        assert!(text.contains("Run 0193b8c1 completed in 10.5s: 1 built, 1 failed"), "{text}");
        assert!(text.contains("  misc/fails  phase build  log /var/cache/portsynth/logs/misc___fails.log"), "{text}");
        assert!(text.contains("Run 0193b8c2 aborted") && text.contains("1 not scanned, 1 not started"), "{text}");
        assert!(text.contains("  misc/broken  scan failed\nDistfiles: /var/cache/portsynth/distfiles\n"), "{text}");
    }

    #[test]
    fn plain_lines_name_each_outcome_and_leave_out_progress_and_debug() {
        let out = Shared::default();
        let mut terminal = Terminal::plain(Box::new(out.clone()), false);
        for record in example_records() {
            terminal.report(&record);
        }
        let text = out.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "run 0193b8c1: everything, 2 ports to build");
        assert_eq!(lines[1], "run 0193b8c2: fetch-only, 3 ports with 4 distfiles to check, 2 at a time");
        assert_eq!(lines[2], "ignored misc/ignored: is ignored");
        assert_eq!(lines[3], "skipped misc/needs-ignored: depends on misc/ignored, which is ignored");
        assert_eq!(lines[4], "skipped misc/broken: not buildable: scan failed");
        assert_eq!(lines[5], "[SL01] start   misc/hello");
        assert_eq!(lines[6], "[SL01] success misc/hello (4.2s)");
        assert_eq!(
            lines[7],
            "[SL02] failed  misc/fails in phase build (1.5s) log: /var/cache/portsynth/logs/misc___fails.log"
        );
        assert_eq!(lines[8], "skipped misc/needs-fails: skipped: misc/fails failed");
        assert_eq!(lines[9], "[SL01] fetch   misc/hello (hello-2.1.tar.gz)");
        assert!(lines[10].starts_with("[SL01] retry   misc/hello in 2.0s (attempt 1 of 3 failed: size mismatch)"));
        assert_eq!(lines[11], "[SL01] fetched misc/hello (2.5s)");
        assert_eq!(lines[12], "warning: database error recording a success: disk full");
        assert!(!text.contains("cannot read past durations"), "debug events stay out: {text}");
        assert!(text.contains("\nRun 0193b8c1 completed"), "{text}");
    }

    #[test]
    fn quiet_plain_output_is_the_summary_alone() {
        let out = Shared::default();
        let mut terminal = Terminal::plain(Box::new(out.clone()), true);
        for record in example_records() {
            terminal.report(&record);
        }
        assert!(out.text().starts_with("\nRun 0193b8c1 completed"), "{}", out.text());
    }

    #[test]
    fn the_bars_show_each_slot_s_build_and_the_run_s_figures() {
        let mut terminal = Terminal::bars_on(ProgressDrawTarget::hidden(), 2);
        let message = |terminal: &Terminal, slot: usize| match &terminal.screen {
            Screen::Bars { header, slots, .. } if slot == 0 => header.message(),
            Screen::Bars { slots, .. } => slots[slot - 1].message(),
            Screen::Plain { .. } => unreachable!(),
        };
        let records = example_records();
        let upto = |name: &str| records.iter().position(|r| r.event.name() == name).unwrap();
        for record in &records[..=upto("build_start")] {
            terminal.report(record);
        }
        assert_eq!(message(&terminal, 1), "SL01 misc/hello: starting");
        terminal.report(&records[upto("build_phase")]);
        assert!(
            message(&terminal, 1).starts_with("SL01 misc/hello                       build "),
            "{}",
            message(&terminal, 1)
        );
        terminal.report(&records[upto("progress")]);
        assert!(message(&terminal, 0).starts_with("built 0 failed 0 ignored 1"), "{}", message(&terminal, 0));
        assert!(message(&terminal, 1).ends_with("    2s     120 lines"), "{}", message(&terminal, 1));
        terminal.report(&records[upto("build_end")]);
        assert_eq!(message(&terminal, 1), "SL01 idle");
        assert_eq!(message(&terminal, 2), "", "slot 2 untouched");
    }

    #[test]
    fn the_header_shows_counts_workers_jobs_and_the_wait() {
        let Some(Event::Progress(progress)) = crate::events::examples().into_iter().find(|e| e.name() == "progress")
        else {
            panic!("no progress example")
        };
        let text = header_text(&progress);
        assert!(
            text.starts_with("built 0 failed 0 ignored 1 skipped 1 remaining 2 | workers 2 jobs 2/4 mem 2.0/16.0G"),
            "{text}"
        );
        assert!(text.ends_with("elapsed 3s eta 60s | waiting for memory"), "{text}");
    }
}
