//! The part every planning command shares: scan the tree through the scan
//! cache, compute effective keys, and classify the requested ports.

use std::collections::HashSet;
use std::path::Path;

use anyhow::Result;

use crate::builddb::crc::{CrcCounts, CrcMemo};
use crate::builddb::keys::{compute_keys, config_crc, needs_build, KeyInputs};
use crate::builddb::BuildDb;
use crate::config::Config;
use crate::plan::{Plan, Request};
use crate::ports::cache::CachedScanner;
use crate::ports::{Origin, PortTree, Scope};

pub struct Prepared {
    pub tree: PortTree,
    pub keys: Vec<Option<KeyInputs>>,
    pub plan: Plan,
    /// (scan cache hits, bmake scans).
    pub scan_stats: (usize, usize),
    /// Files and directories trusted by their stat signature, or read.
    pub crc_counts: CrcCounts,
}

/// Scans, resolves and plans. Scan-cache write failures are warnings: the
/// cache only saves time.
pub fn prepare(config: &Config, db: &BuildDb, origins: &[Origin]) -> Result<Prepared> {
    prepare_forcing(config, db, origins, &[])
}

/// [`prepare`], with the `forced` ports planned for a build even when up to
/// date (`portsynth force`).
pub fn prepare_forcing(config: &Config, db: &BuildDb, origins: &[Origin], forced: &[Origin]) -> Result<Prepared> {
    let stage = Stages::new();
    let scanner = super::scanner(config)?;
    let signatures = db.signatures_load().unwrap_or_else(|e| {
        warn(&format!("stat signatures unreadable, reading every file: {e:#}"));
        Default::default()
    });
    let mut memo = CrcMemo::with_signatures(signatures);
    stage.done("load the stat signatures");
    let config_crc = config_crc(config);
    let stored = db.scan_cache_load().unwrap_or_else(|e| {
        warn(&format!("scan cache unreadable, scanning everything: {e:#}"));
        Default::default()
    });
    stage.done("load the scan cache");
    let cached = CachedScanner::new(&scanner, &memo, config_crc, stored);
    let scope = if origins.is_empty() { Scope::Everything } else { Scope::Ports(origins) };
    let tree = load_flushing(config, &cached, || PortTree::load(&scanner, scope, &|dirs| cached.scan_dirs(dirs)))?;
    stage.done("list, validate, decode, resolve (PortTree::load)");
    for problem in &tree.problems {
        warn(problem);
    }
    if let Err(e) = db.scan_cache_store(&cached.take_fresh()) {
        warn(&format!("cannot update the scan cache: {e:#}"));
    }
    let scan_stats = cached.stats();
    drop(cached);
    // The keys need the CRCs of the scanned ports only, all memoised now.
    memo.release_stored();
    stage.done("store the scan cache");
    let keys = compute_keys(&tree, &memo, config_crc);
    stage.done("effective keys");
    if let Err(e) = db.signatures_store(&memo.take_changed()) {
        warn(&format!("cannot update the stat signatures: {e:#}"));
    }
    stage.done("store the stat signatures");
    let states = db.port_states().unwrap_or_else(|e| {
        warn(&format!("cannot read stored port states, treating every port as new: {e:#}"));
        Default::default()
    });
    let request = if origins.is_empty() { Request::Everything } else { Request::Ports(origins) };
    let packages = packages_present(&config.packages_dir.join("All"));
    let forced: Vec<_> = forced.iter().filter_map(|origin| tree.lookup(origin)).collect();
    let plan = Plan::make(&tree, request, &mut |node| {
        let meta = tree.nodes[node].meta.as_ref()?;
        if forced.contains(&node) {
            return Some("forced".into());
        }
        let Some(current) = &keys[node] else {
            return Some("changed (port files unreadable)".into());
        };
        let present = packages.contains(&config.framework.framework().package_file(&meta.pkgname));
        needs_build(current, states.get(&tree.nodes[node].origin.to_string()), present)
    })?;
    stage.done("plan");
    Ok(Prepared { tree, keys, plan, scan_stats, crc_counts: memo.counts() })
}

/// The file names in `All/` that are regular files (or symlinks to one):
/// one directory read instead of a `stat` per port of the tree, which on a
/// 30,000-port tree with few packages was 30,000 failing system calls.
fn packages_present(all_dir: &Path) -> HashSet<String> {
    let Ok(entries) = std::fs::read_dir(all_dir) else { return HashSet::new() };
    entries
        .filter_map(Result::ok)
        .filter(|entry| match entry.file_type() {
            Ok(kind) if kind.is_file() => true,
            Ok(kind) if kind.is_symlink() => entry.path().is_file(),
            _ => false,
        })
        .filter_map(|entry| entry.file_name().into_string().ok())
        .collect()
}

/// How often a long scan stores what it has scanned so far
/// (`PORTSYNTH_SCAN_FLUSH_MS` overrides it, for the tests).
fn scan_flush_interval() -> std::time::Duration {
    let ms = std::env::var("PORTSYNTH_SCAN_FLUSH_MS").ok().and_then(|v| v.parse().ok()).unwrap_or(30_000);
    std::time::Duration::from_millis(ms)
}

/// Runs `load` while a second thread stores the scan cache's fresh entries every
/// [`scan_flush_interval`], through a connection of its own: a cold scan of a whole
/// pkgsrc tree takes hours, and one that is interrupted (Ctrl-C, a crash, the
/// machine going down) resumes from what it stored instead of starting over.
/// Entries are keyed by content, so storing them early is as valid as at the end.
fn load_flushing<T>(config: &Config, cached: &CachedScanner<'_>, load: impl FnOnce() -> T) -> T {
    let (done, finished) = crossbeam_channel::bounded::<()>(0);
    let interval = scan_flush_interval();
    std::thread::scope(|scope| {
        scope.spawn(move || {
            let mut db = None;
            while let Err(crossbeam_channel::RecvTimeoutError::Timeout) = finished.recv_timeout(interval) {
                let fresh = cached.take_fresh();
                if fresh.is_empty() {
                    continue;
                }
                if db.is_none() {
                    db = BuildDb::open(&config.database_path)
                        .map_err(|e| warn(&format!("cannot store the scan so far: {e:#}")))
                        .ok();
                }
                if let Some(Err(e)) = db.as_ref().map(|db| db.scan_cache_store(&fresh)) {
                    warn(&format!("cannot store the scan so far: {e:#}"));
                }
            }
        });
        let tree = load();
        drop(done);
        tree
    })
}

/// Stage timestamps (and the resident set after each stage) on stderr when
/// `PORTSYNTH_STAGE_TIMES` is set: how the stage breakdowns of docs/PERFORMANCE.md
/// are measured.
pub struct Stages(Option<std::cell::Cell<std::time::Instant>>);

impl Stages {
    pub fn new() -> Stages {
        Stages(std::env::var_os("PORTSYNTH_STAGE_TIMES").map(|_| std::cell::Cell::new(std::time::Instant::now())))
    }

    pub fn done(&self, what: &str) {
        if let Some(last) = &self.0 {
            let now = std::time::Instant::now();
            let rss = std::fs::read_to_string("/proc/self/status")
                .ok()
                .and_then(|status| status.lines().find_map(|l| l.strip_prefix("VmRSS:").map(|v| v.trim().to_string())));
            let rss = rss.unwrap_or_default();
            eprintln!("stage: {:7.1} ms  {rss:>10}  {what}", (now - last.get()).as_secs_f64() * 1000.0);
            last.set(now);
        }
    }
}

impl Default for Stages {
    fn default() -> Self {
        Stages::new()
    }
}

pub fn warn(message: &str) {
    eprintln!("portsynth: warning: {message}");
}

/// Marks what a dead earlier run left `running` as interrupted, and says so.
pub fn recover_dangling_runs(db: &BuildDb) {
    match db.recover_dangling() {
        Ok(recovered) if recovered.runs + recovered.builds > 0 => eprintln!(
            "portsynth: {} earlier run(s) ended without finishing; {} build(s) marked interrupted",
            recovered.runs, recovered.builds
        ),
        Ok(_) => {}
        Err(e) => warn(&format!("cannot recover earlier runs: {e:#}")),
    }
}
