//! Figure 5: simulated makespans of every ready-queue policy over the lower
//! bound `max(critical path, total work / W)`.
//!
//! `cargo bench --bench scheduling [-- MANIFEST…]`: each MANIFEST is a
//! `scripts/gen-tree` `.gen-tree.json`; without any, synthetic DAGs of 1,000
//! and 30,000 ports from `benches/common` are used. Prints one table row per
//! (DAG, W) and, per row, `FIG5 name W policy makespan ratio` lines that
//! `scripts/bench.sh` collects. Not a timing benchmark: the numbers are
//! simulated seconds, the same on every machine.
//!
//! Columns: W; the lower bound `max(critical path, work / W)`; each
//! policy's makespan over it; our policy without any build history (every
//! port expected to take the scheduler's default, as on a first run); the
//! tighter bound of `sim::lower_bound_energy` and our makespan over it.

mod common;

use std::path::Path;
use std::time::Instant;

use portsynth::sim::{lower_bound, lower_bound_energy, simulate, Policy, Ramp, Slots, Workload};

const WORKERS: [usize; 3] = [8, 16, 64];
/// What the scheduler assumes for a port never built before (seconds).
const DEFAULT_EXPECTED: f64 = 60.0;

/// Options after `--`: `--workers=8,16` (default 8,16,64), `--ramp=START:STEP`
/// (also simulate our policy with the scheduler's start-up ramp: START
/// workers, one more every STEP seconds), `--overhead=SECONDS` (added to
/// every build, e.g. a measured per-port sandbox and packaging cost).
struct Options {
    workers: Vec<usize>,
    ramp: Option<(usize, f64)>,
    overhead: f64,
}

fn options(args: &[String]) -> Options {
    let mut o = Options { workers: WORKERS.to_vec(), ramp: None, overhead: 0.0 };
    for a in args {
        if let Some(v) = a.strip_prefix("--workers=") {
            o.workers = v.split(',').map(|w| w.parse().expect("--workers=N[,N…]")).collect();
        } else if let Some(v) = a.strip_prefix("--ramp=") {
            let (start, step) = v.split_once(':').expect("--ramp=START:STEP");
            o.ramp = Some((start.parse().expect("ramp start"), step.parse().expect("ramp step")));
        } else if let Some(v) = a.strip_prefix("--overhead=") {
            o.overhead = v.parse().expect("--overhead=SECONDS");
        }
    }
    o
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = options(&args);
    let manifests: Vec<String> = args.iter().filter(|a| !a.starts_with("--")).cloned().collect();
    let mut cases: Vec<(String, common::Synthetic)> = Vec::new();
    if manifests.is_empty() {
        for n in [1_000, 30_000] {
            cases.push((format!("synthetic-{n}"), common::synthetic(n, 1)));
        }
    } else {
        for m in &manifests {
            let path = Path::new(m);
            let syn = common::from_manifest(path).unwrap_or_else(|e| panic!("{e}"));
            let name = path
                .parent()
                .and_then(|p| p.file_name())
                .map_or_else(|| m.clone(), |n| n.to_string_lossy().into_owned());
            cases.push((name, syn));
        }
    }
    let mut worst_ours: f64 = 0.0;
    let mut ours_beaten = Vec::new();
    for (name, syn) in cases.iter_mut() {
        if opts.overhead > 0.0 {
            for d in syn.durations.iter_mut() {
                *d += opts.overhead;
            }
        }
        let (name, syn) = (&*name, &*syn);
        let g = syn.graph();
        let total: f64 = syn.durations.iter().sum();
        let cp = g.priorities(&syn.durations).into_iter().fold(0.0, f64::max);
        println!(
            "\n{name}: {} builds, {} edges, total work {total:.1} s, critical path {cp:.1} s",
            g.len(),
            g.edge_count()
        );
        let mut header = format!("{:>4} {:>9}", "W", "bound s");
        for p in Policy::ALL {
            header.push_str(&format!(" {:>10}", p.name()));
        }
        header.push_str(&format!(" {:>10} {:>9} {:>10}", "ours-cold", "tight s", "ours/tight"));
        println!("{header}");
        let flat = vec![DEFAULT_EXPECTED; g.len()];
        for &w in &opts.workers {
            let work = Workload::all(&g, &syn.durations);
            let bound = lower_bound(&work, w);
            let mut line = format!("{w:>4} {bound:>9.1}");
            let mut results = Vec::new();
            for policy in Policy::ALL {
                let started = Instant::now();
                let s = simulate(&work, Slots::fixed(w), policy);
                let took = started.elapsed();
                assert_eq!(s.unscheduled, 0, "{name}: a loop in a generated DAG");
                let ratio = s.makespan / bound;
                line.push_str(&format!(" {ratio:>10.4}"));
                println!(
                    "FIG5 {name} {w} {} {:.3} {ratio:.4} {:.1}ms",
                    policy.name(),
                    s.makespan,
                    took.as_secs_f64() * 1e3
                );
                results.push((policy, s.makespan));
            }
            // Our policy on a first run: no history, every port expected to
            // take the default, so the priority is the chain length.
            let cold = Workload { expected: Some(&flat), ..work };
            let s = simulate(&cold, Slots::fixed(w), Policy::CriticalPath);
            let ratio = s.makespan / bound;
            line.push_str(&format!(" {ratio:>10.4}"));
            println!("FIG5 {name} {w} portsynth-no-history {:.3} {ratio:.4}", s.makespan);
            if let Some((start, step)) = opts.ramp {
                let slots = Slots { workers: w, ramp: Some(Ramp { start, step, elapsed: 0.0 }) };
                let s = simulate(&work, slots, Policy::CriticalPath);
                println!("FIG5 {name} {w} portsynth-ramp {:.3} {:.4}", s.makespan, s.makespan / bound);
            }
            let ours = results[0].1;
            let tight = lower_bound_energy(&work, w);
            line.push_str(&format!(" {tight:>9.1} {:>10.4}", ours / tight));
            println!("FIG5 {name} {w} bounds {bound:.3} {tight:.3} {:.4}", ours / tight);
            println!("{line}");
            worst_ours = worst_ours.max(ours / bound);
            for &(policy, m) in &results[1..] {
                if m < ours - 1e-9 {
                    ours_beaten.push(format!("{name} W={w}: {} {m:.1} < ours {ours:.1}", policy.name()));
                }
            }
        }
    }
    println!("\nFIG5 SUMMARY worst ours/bound {worst_ours:.4}; cases where a peer beats ours: {}", ours_beaten.len());
    for line in ours_beaten {
        println!("  {line}");
    }
}
