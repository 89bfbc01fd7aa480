//! The live HTML report in a real browser (issue 15): headless Chromium,
//! driven over WebDriver (`common::browser`), opens `logs_dir/report/
//! index.html` from `file://` during a gated run and after real runs, and
//! the tests read what it shows through executed JavaScript.
//!
//! No timing assertions: every wait is a bounded poll with a generous
//! deadline that panics with what it last saw. One browser per test.

mod common;

use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::browser::Browser;
use common::gated::{gated_env, open_gate, TestPort};
use common::Env;
use serde_json::Value;

/// Longest a portsynth run of these tests may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(240);
/// Longest wait for the page to show something.
const PAGE_TIMEOUT: Duration = Duration::from_secs(90);

/// A log line that would be markup if the page ever used it as such.
const HOSTILE_LINE: &str = "</script><script>window.hacked = 1</script><b>bold</b>";

fn report_page(env: &Env) -> PathBuf {
    env.base().join("logs/report/index.html")
}

fn start_build(env: &Env, ports: &[&str]) -> Child {
    let mut args = vec!["-y", "-q", "build"];
    args.extend_from_slice(ports);
    env.command(&args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap()
}

/// Waits for a run to end; its success.
fn wait_for_run(mut child: Child) -> bool {
    let deadline = Instant::now() + RUN_TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.success();
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("portsynth ran longer than {RUN_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn build(env: &Env, ports: &[&str]) -> bool {
    wait_for_run(start_build(env, ports))
}

/// Waits until the page says the run has ended.
fn wait_for_end(browser: &Browser) {
    browser.wait_for("the report of an ended run", PAGE_TIMEOUT, "return document.body.dataset.state === 'ended';");
}

/// Origin → status of every row of the ports table.
fn port_statuses(browser: &Browser) -> Value {
    browser.eval(
        "const rows = document.querySelectorAll('#ports tbody tr');
         return Object.fromEntries(Array.from(rows, (r) => [r.dataset.origin, r.dataset.status]));",
    )
}

#[test]
fn the_page_follows_a_gated_run_without_reloading() {
    let tag = "report-live";
    let env = gated_env(
        tag,
        &[
            TestPort { name: "gated-1", deps: &[], gated: true },
            TestPort { name: "after-1", deps: &["gated-1"], gated: false },
        ],
    );
    let run = start_build(&env, &["misc/after-1"]);
    let page = report_page(&env);
    let deadline = Instant::now() + PAGE_TIMEOUT;
    while !page.exists() {
        assert!(Instant::now() < deadline, "no {} after {PAGE_TIMEOUT:?}", page.display());
        std::thread::sleep(Duration::from_millis(100));
    }
    let browser = Browser::start(1280, 900);
    browser.open(&page);
    let slot = browser.wait_for(
        "misc/gated-1 in a slot, in its build phase",
        PAGE_TIMEOUT,
        "const row = document.querySelector('#slots tr[data-origin=\"misc/gated-1\"]');
         return row && row.cells[2].textContent === 'build' ? row.cells[0].textContent : null;",
    );
    assert!(slot.as_str().is_some_and(|s| s.parse::<u32>().is_ok()), "slot number {slot}");
    assert_eq!(port_statuses(&browser)["misc/gated-1"], "running");
    let eta = browser.wait_for(
        "the ETA in the header",
        PAGE_TIMEOUT,
        "const eta = document.querySelector('#run-figures [data-figure=\"ETA\"] dd');
         return eta && eta.textContent;",
    );
    assert!(eta.as_str().unwrap().ends_with(" s") || eta.as_str().unwrap().contains("min"), "{eta}");
    let memory = browser.eval("return document.querySelector('#run-figures [data-figure=\"memory\"] dd').textContent;");
    assert!(memory.as_str().is_some_and(|m| m.ends_with(" GiB expected") && m.contains(" / ")), "{memory}");
    assert_eq!(browser.eval("return document.body.dataset.state;"), "running");
    // A mark of this page load: a reload would lose it.
    browser.eval("window.loadedOnce = 'yes'; return null;");

    open_gate(&env, tag);
    let statuses = browser.wait_for(
        "both ports built, shown without a reload",
        RUN_TIMEOUT,
        "const rows = document.querySelectorAll('#ports tbody tr');
         const s = Object.fromEntries(Array.from(rows, (r) => [r.dataset.origin, r.dataset.status]));
         return s['misc/gated-1'] === 'success' && s['misc/after-1'] === 'success' ? s : null;",
    );
    assert_eq!(statuses["misc/gated-1"], "success", "{statuses}");
    wait_for_end(&browser);
    assert_eq!(browser.eval("return window.loadedOnce;"), "yes", "the page was never reloaded");
    // Its data is not loaded again once it says the run has ended.
    let loads = browser.eval("return document.body.dataset.loads;");
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(browser.eval("return document.body.dataset.loads;"), loads, "no reload of data.js after the end");
    assert_eq!(browser.eval("return document.querySelectorAll('#slots tr[data-origin]').length;"), 0, "slots idle");
    assert!(wait_for_run(run), "the gated run succeeds");
}

/// `misc/fails` fails in its build phase with a hostile line in its log.
fn write_failing_port(env: &Env) {
    let makefile = env.ports().join("misc/fails/Makefile");
    let good = std::fs::read_to_string(&makefile).unwrap();
    let target = format!("post-build:\n\t@echo '{HOSTILE_LINE}'\n\t@echo broken on purpose; false\n");
    std::fs::write(&makefile, good.replace(".include <bsd.port.mk>", &format!("{target}\n.include <bsd.port.mk>")))
        .unwrap();
}

#[test]
fn a_finished_run_shows_every_port_its_failure_and_one_bar_per_build() {
    let env = gated_env(
        "report-done",
        &[
            TestPort { name: "good", deps: &[], gated: false },
            TestPort { name: "lib", deps: &[], gated: false },
            TestPort { name: "app", deps: &["lib"], gated: false },
            TestPort { name: "fails", deps: &[], gated: false },
            TestPort { name: "needs-fails", deps: &["fails"], gated: false },
        ],
    );
    // A first run where misc/fails still builds: the screenshot then shows
    // a diff and a history of two runs.
    assert!(build(&env, &["misc/fails"]));
    write_failing_port(&env);
    let ports = ["misc/good", "misc/app", "misc/needs-fails"];
    assert!(!build(&env, &ports), "a run with a failure fails");

    let browser = Browser::start(1280, 900);
    browser.open(&report_page(&env));
    wait_for_end(&browser);
    let statuses = port_statuses(&browser);
    let expected = serde_json::json!({
        "misc/good": "success", "misc/lib": "success", "misc/app": "success",
        "misc/fails": "failed", "misc/needs-fails": "skipped",
    });
    assert_eq!(statuses, expected);
    let first = browser.eval("return document.querySelector('#ports tbody tr').dataset.origin;");
    assert_eq!(first, "misc/fails", "failures first");

    let failure = browser.eval(
        "const f = document.querySelector('#failures .failure[data-origin=\"misc/fails\"]');
         return f && { title: f.querySelector('h3').textContent, reason: f.querySelector('.reason').textContent,
                       tail: f.querySelector('pre.log-tail').textContent,
                       markup: f.querySelectorAll('pre.log-tail *').length,
                       log: f.querySelector('a.log-link').getAttribute('href') };",
    );
    assert!(failure["title"].as_str().unwrap().contains("in phase build"), "{failure}");
    assert!(!failure["reason"].as_str().unwrap().is_empty(), "{failure}");
    let tail = failure["tail"].as_str().unwrap();
    assert!(tail.contains("broken on purpose"), "the log's last lines: {failure}");
    assert!(tail.contains(HOSTILE_LINE), "the hostile line shows as text: {failure}");
    assert_eq!(failure["markup"], 0, "no element made of log text: {failure}");
    assert_eq!(browser.eval("return window.hacked === undefined;"), true, "no script of the log ran");
    assert_eq!(failure["log"], "../misc___fails.log", "{failure}");
    assert!(env.base().join("logs/misc___fails.log").exists());

    let skipped =
        browser.eval("return document.querySelector('#skipped li[data-origin=\"misc/needs-fails\"]').textContent;");
    assert!(skipped.as_str().unwrap().contains("misc/fails → misc/needs-fails"), "{skipped}");

    let bars = browser
        .eval("return Array.from(document.querySelectorAll('#timeline rect.bar'), (b) => b.dataset.origin).sort();");
    assert_eq!(bars, serde_json::json!(["misc/app", "misc/fails", "misc/good", "misc/lib"]), "one bar per build");
    let critical = browser.eval("return document.querySelectorAll('#timeline rect.bar.critical').length;");
    assert!(critical.as_u64().unwrap() >= 1, "the critical path is marked: {critical}");
    let phases = browser.eval("return document.querySelectorAll('#phases .phase-row').length;");
    assert_eq!(phases, 4, "a phase breakdown per build");

    let new_failures = browser
        .eval("return Array.from(document.querySelectorAll('#diff-new-failures li'), (li) => li.dataset.origin);");
    assert_eq!(new_failures, serde_json::json!(["misc/fails"]));

    // For a person to look at, before the table is sorted and filtered.
    let screenshot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).parent().unwrap().join("report-screenshot.png");
    let png = browser.screenshot();
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
    std::fs::write(&screenshot, png).unwrap();
    eprintln!("the finished report: {}", screenshot.display());

    let by_duration = browser.eval(
        "document.querySelector('#ports th[data-key=\"seconds\"]').click();
         return Array.from(document.querySelectorAll('#ports tbody tr'), (r) => r.cells[3].textContent);",
    );
    let durations: Vec<f64> = by_duration
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|d| d.as_str().unwrap().strip_suffix(" s").map(|n| n.parse().unwrap()))
        .collect();
    assert_eq!(durations.len(), 4, "{by_duration}");
    assert!(durations.windows(2).all(|w| w[0] <= w[1]), "sorted by duration: {by_duration}");
    browser.eval("document.querySelector('#ports th[data-key=\"origin\"]').click(); return null;");

    let shown = browser.eval(
        "const filter = document.getElementById('port-filter');
         filter.value = 'fails';
         filter.dispatchEvent(new Event('input'));
         return Array.from(document.querySelectorAll('#ports tbody tr'), (r) => r.dataset.origin);",
    );
    assert_eq!(shown, serde_json::json!(["misc/fails", "misc/needs-fails"]), "the filter");
    browser.eval("const f = document.getElementById('port-filter'); f.value = ''; f.dispatchEvent(new Event('input')); return null;");
}

#[test]
fn the_diff_section_lists_a_port_broken_since_the_previous_run() {
    let env = Env::fixtures();
    common::copy_tree(&common::repo().join("tests/fixtures/resources/resource"), &env.ports().join("resource"));
    env.write_config("throttle = false\nworkers = 2\n[make_conf]\nNAP = \"0\"\n");
    let ports = ["resource/nap-a", "resource/nap-b"];
    assert!(build(&env, &ports));
    let makefile = env.ports().join("resource/nap-a/Makefile");
    let good = std::fs::read_to_string(&makefile).unwrap();
    std::fs::write(&makefile, format!("{good}\npost-build:\n\t@echo broken on purpose; false\n")).unwrap();
    assert!(!build(&env, &ports));

    let browser = Browser::start(1280, 900);
    browser.open(&report_page(&env));
    wait_for_end(&browser);
    let new_failures = browser.eval(
        "return Array.from(document.querySelectorAll('#diff-new-failures li'), (li) => [li.dataset.origin, li.textContent]);",
    );
    let list = new_failures.as_array().unwrap();
    assert_eq!(list.len(), 1, "{new_failures}");
    assert_eq!(list[0][0], "resource/nap-a", "{new_failures}");
    assert!(list[0][1].as_str().unwrap().contains("changed since its last success: its own files"), "{new_failures}");
    let runs = browser.eval("return document.querySelectorAll('#history rect.duration').length;");
    assert_eq!(runs, 2, "both runs in the history chart");
}
