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

use portsynth::sim::{lower_bound, lower_bound_energy, simulate, Policy, Slots, Workload};

const WORKERS: [usize; 3] = [8, 16, 64];
/// What the scheduler assumes for a port never built before (seconds).
const DEFAULT_EXPECTED: f64 = 60.0;

fn main() {
    let manifests: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with("--")).collect();
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
    for (name, syn) in &cases {
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
        for w in WORKERS {
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
                println!("FIG5 {name} {w} {} {:.3} {ratio:.4} {:.1}ms", policy.name(), s.makespan, took.as_secs_f64() * 1e3);
                results.push((policy, s.makespan));
            }
            // Our policy on a first run: no history, every port expected to
            // take the default, so the priority is the chain length.
            let cold = Workload { expected: Some(&flat), ..work };
            let s = simulate(&cold, Slots::fixed(w), Policy::CriticalPath);
            let ratio = s.makespan / bound;
            line.push_str(&format!(" {ratio:>10.4}"));
            println!("FIG5 {name} {w} portsynth-no-history {:.3} {ratio:.4}", s.makespan);
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
