//! Figure 10: simulated resources. Makespans of bulk builds on C cores when
//! each port's time depends on its make jobs, under our allocator, fixed
//! make jobs (today's scheduler, poudriere's and dsynth's orders) and bob's
//! allocator, each over the lower bound `max(critical path at every port's
//! useful maximum of jobs, CPU work / C)` (`sim::resources`).
//!
//! `cargo bench --bench resources [-- --cores=8,16 --ports=1000]`: the
//! synthetic DAGs of `benches/common` (1,000 and 30,000 ports, seed 1) with
//! per-port speed-up models drawn here (seed 2). Prints a table per DAG and
//! `FIG10 dag cores policy workers jobs makespan ratio` lines. Simulated
//! seconds: the same on every machine.
//!
//! Workers: ours runs `W = C` (the allocator decides the jobs). Every peer
//! is given its best configuration of a sweep, as a careful user would tune
//! it: fixed jobs `j ∈ {1, 2, 4, 8}` with `W = C / j` (so `W · j = C`); bob
//! `W ∈ {C/8, C/4, C/2, C}` with its budget `C`.
//!
//! Figure 10b, a build farm: the 30,000-port DAG on 1, 4, 16 and 64 hosts of
//! 16 cores (`--farm-ports=N`, `--hosts=1,4,…`, `--host-cores=16`), a build
//! on one host at most, ours against fixed make jobs, with the farm's bounds
//! (`sim::resources::farm_bounds`): `FIG10B ports hosts cores ours fixed
//! critical work tight` lines and a table.

mod common;

use portsynth::build::allocate::{Machine, PortModel};
use portsynth::graph::Graph;
use portsynth::sim::resources::{
    farm_bounds, lower_bound, lower_bound_energy, lower_bound_tradeoff, simulate, simulate_hosts, Allocation, Hosts,
    Ports,
};
use portsynth::sim::Policy;

const CORES: [u32; 4] = [8, 16, 64, 256];
const GIB: u64 = 1 << 30;
/// The memory of the main table: none of the peers admits builds by memory,
/// so the makespans compare with memory not binding.
const UNLIMITED: u64 = u64::MAX / 4;
/// The memory of the `ours, 2 GiB/core` column: admission binding.
const MEMORY_PER_CORE: u64 = 2 * GIB;

struct Options {
    cores: Vec<u32>,
    ports: Vec<usize>,
    farm_ports: Vec<usize>,
    hosts: Vec<u32>,
    host_cores: u32,
}

fn options() -> Options {
    let list = |v: &str, what: &str| -> Vec<u32> { v.split(',').map(|c| c.parse().expect(what)).collect() };
    let mut o = Options {
        cores: CORES.to_vec(),
        ports: vec![1_000, 30_000],
        farm_ports: vec![30_000],
        hosts: vec![1, 4, 16, 64],
        host_cores: 16,
    };
    for a in std::env::args().skip(1) {
        if let Some(v) = a.strip_prefix("--cores=") {
            o.cores = list(v, "--cores=N[,N…]");
        } else if let Some(v) = a.strip_prefix("--ports=") {
            o.ports = list(v, "--ports=N[,N…]").into_iter().map(|n| n as usize).collect();
        } else if let Some(v) = a.strip_prefix("--farm-ports=") {
            o.farm_ports = list(v, "--farm-ports=N[,N…]").into_iter().map(|n| n as usize).collect();
        } else if let Some(v) = a.strip_prefix("--hosts=") {
            o.hosts = list(v, "--hosts=N[,N…]");
        } else if let Some(v) = a.strip_prefix("--host-cores=") {
            o.host_cores = v.parse().expect("--host-cores=N");
        }
    }
    o
}

/// Figure 10b: one DAG on farms of more and more hosts.
fn farm(o: &Options) {
    for &n in &o.farm_ports {
        let syn = common::synthetic(n, 1);
        let g = syn.graph();
        let real = models(&syn, &g, 2);
        let ports = Ports { graph: &g, real: &real, expected: None };
        let c = o.host_cores;
        println!("\nfarm{n}: {n} ports on hosts of {c} cores (a build on one host)");
        println!(
            "{:>5} {:>6} {:>10} {:>8} {:>12} {:>10} {:>10} {:>10} {:>9} {:>9}",
            "hosts", "cores", "ours s", "speed-up", "fixed s (j)", "critical", "work/C", "tight", "ours/tight", "limit"
        );
        let mut one_host = None;
        for &hosts in &o.hosts {
            let farm = Hosts { count: hosts, per_host: Machine { cores: c, workers: c, memory: UNLIMITED } };
            let ours = simulate_hosts(&ports, farm, Allocation::Ours);
            assert_eq!(ours.unscheduled, 0, "a loop in a generated DAG");
            let mut fixed = (f64::INFINITY, 0);
            for j in [1, 2, 4, 8].into_iter().filter(|&j| j <= c) {
                let per_host = Machine { cores: c, workers: c / j, memory: UNLIMITED };
                let allocation = Allocation::Fixed { order: Policy::CriticalPath, jobs: j };
                let s = simulate_hosts(&ports, Hosts { count: hosts, per_host }, allocation);
                if s.makespan < fixed.0 {
                    fixed = (s.makespan, j);
                }
            }
            let (critical, work, tight) = farm_bounds(&ports, farm);
            let ours_s = ours.makespan / 1000.0;
            let speed_up = one_host.get_or_insert(ours_s).to_owned() / ours_s;
            let limit = if critical >= work { "critical" } else { "work" };
            println!(
                "FIG10B {n} {hosts} {} {ours_s:.1} {:.1} {:.1} {:.1} {:.1}",
                hosts * c,
                fixed.0 / 1000.0,
                critical / 1000.0,
                work / 1000.0,
                tight / 1000.0
            );
            println!(
                "{hosts:>5} {:>6} {ours_s:>10.1} {speed_up:>7.2}× {:>8.1} ({}) {:>10.1} {:>10.1} {:>10.1} {:>9.4} {limit:>9}",
                hosts * c,
                fixed.0 / 1000.0,
                fixed.1,
                critical / 1000.0,
                work / 1000.0,
                tight / 1000.0,
                ours.makespan / tight
            );
        }
    }
}

/// Speed-up models for the synthetic DAG: its log-normal durations scaled to
/// a median of 20 s of CPU, a Pareto tail (1 % of ports × 5–100), the
/// longest chains ending in very long parallel builds (compilers: 1–3 h of
/// CPU), small ports mostly serial (a tenth unsafe for parallel make), large
/// ones mostly parallel; memory log-normal around 300 MB, 2–8 GB for the
/// largest.
fn models(syn: &common::Synthetic, g: &Graph, seed: u64) -> Vec<PortModel> {
    let mut rng = common::Rng::new(seed);
    let depth = g.priorities(&vec![1.0; g.len()]);
    let mut by_depth: Vec<usize> = (0..g.len()).filter(|&v| syn.durations[v] > 0.0).collect();
    by_depth.sort_by(|&a, &b| depth[b].total_cmp(&depth[a]).then(a.cmp(&b)));
    let compilers: Vec<usize> = by_depth.iter().copied().take((g.len() / 1000).max(3)).collect();
    (0..g.len())
        .map(|v| {
            let mut work = syn.durations[v] * 20.0;
            if rng.unit() < 0.01 {
                work *= (5.0 / rng.unit().max(1e-3).powf(1.0 / 1.2)).min(100.0);
            }
            if compilers.contains(&v) {
                work = 3600.0 + 7200.0 * rng.unit();
            }
            model(work, &mut rng)
        })
        .collect()
}

fn model(work_s: f64, rng: &mut common::Rng) -> PortModel {
    let serial_fraction = if work_s < 30.0 {
        if rng.unit() < 0.4 {
            1.0
        } else {
            0.6 + 0.4 * rng.unit()
        }
    } else if work_s < 600.0 {
        0.15 + 0.45 * rng.unit()
    } else {
        0.02 + 0.13 * rng.unit()
    };
    let ms = work_s * 1000.0;
    let memory_mb = if work_s > 600.0 { 2048.0 + 6144.0 * rng.unit() } else { 300.0 * (0.8 * rng.normal()).exp() };
    let m = PortModel::new(ms * serial_fraction, ms * (1.0 - serial_fraction)).with_memory((memory_mb * 1e6) as u64);
    if work_s < 30.0 && rng.unit() < 0.1 {
        m.not_parallel_safe()
    } else {
        m
    }
}

/// The best makespan of `allocation_for(W)` over the workers `sweep`.
fn best_of(
    ports: &Ports<'_>,
    cores: u32,
    sweep: &[(u32, u32)],
    allocation_for: impl Fn(u32) -> Allocation,
) -> (f64, u32, u32, u64) {
    let mut best = (f64::INFINITY, 0, 0, 0);
    for &(workers, jobs) in sweep {
        let machine = Machine { cores, workers, memory: UNLIMITED };
        let s = simulate(ports, machine, allocation_for(jobs));
        assert_eq!(s.unscheduled, 0, "a loop in a generated DAG");
        if s.makespan < best.0 {
            best = (s.makespan, workers, jobs, s.peak_memory);
        }
    }
    best
}

fn gib(bytes: u64) -> f64 {
    bytes as f64 / GIB as f64
}

fn main() {
    let o = options();
    let mut worst: f64 = 0.0;
    let mut worst_tight: f64 = 0.0;
    let mut worst_tradeoff: f64 = 0.0;
    let mut beaten = Vec::new();
    let mut gains = Vec::new();
    for &n in &o.ports {
        let syn = common::synthetic(n, 1);
        let g = syn.graph();
        let real = models(&syn, &g, 2);
        let ports = Ports { graph: &g, real: &real, expected: None };
        let work: f64 = real.iter().map(PortModel::work).sum::<f64>() / 1000.0;
        let serial = real.iter().filter(|m| m.max_jobs == 1).count();
        println!(
            "\nsim{n}: {} ports, {} edges, CPU work {work:.0} s, {serial} ports without useful parallelism",
            g.len(),
            g.edge_count()
        );
        println!(
            "{:>5} {:>9} {:>7} {:>13} {:>13} {:>13} {:>13} {:>9} {:>9} {:>10} {:>9} {:>10} {:>9} {:>11} {:>6}",
            "cores",
            "bound s",
            "ours",
            "fixed (j)",
            "poudriere (j)",
            "dsynth (j)",
            "bob (W)",
            "gain",
            "tight s",
            "ours/tight",
            "trade s",
            "ours/trade",
            "ours-mem",
            "peak/budget",
            "fixed"
        );
        for &cores in &o.cores {
            let bound = lower_bound(&ports, cores) / 1000.0;
            let machine = Machine { cores, workers: cores, memory: UNLIMITED };
            let started = std::time::Instant::now();
            let ours = simulate(&ports, machine, Allocation::Ours);
            let took = started.elapsed().as_secs_f64();
            let ours_s = ours.makespan / 1000.0;
            let fixed_sweep: Vec<(u32, u32)> =
                [1, 2, 4, 8].into_iter().filter(|&j| j <= cores).map(|j| (cores / j, j)).collect();
            let bob_sweep: Vec<(u32, u32)> =
                [8, 4, 2, 1].into_iter().filter(|&d| d <= cores).map(|d| (cores / d, 0)).collect();
            let mut line = format!("{cores:>5} {bound:>9.1} {:>7.4}", ours_s / bound);
            let idle = 1.0 - ours.core_time / (f64::from(cores) * ours.makespan);
            let waste = ours.core_time / (work * 1000.0) - 1.0;
            println!(
                "FIG10 sim{n} {cores} ours {cores} - {ours_s:.1} {:.4} {took:.2}s idle {:.1}% extra-core-time {:.1}%",
                ours_s / bound,
                idle * 100.0,
                waste * 100.0
            );
            let peers: [(&str, Policy); 3] =
                [("fixed", Policy::CriticalPath), ("poudriere", Policy::Poudriere), ("dsynth", Policy::Dsynth)];
            let mut fixed_ours_order = 0.0;
            let mut fixed_peak = 0;
            for (name, order) in peers {
                let (m, w, j, peak) = best_of(&ports, cores, &fixed_sweep, |jobs| Allocation::Fixed { order, jobs });
                let m = m / 1000.0;
                println!("FIG10 sim{n} {cores} {name} {w} {j} {m:.1} {:.4}", m / bound);
                line.push_str(&format!(" {:>8.4} ({j})", m / bound));
                if name == "fixed" {
                    fixed_ours_order = m;
                    fixed_peak = peak;
                }
                if m < ours_s - 1e-6 {
                    beaten.push(format!("sim{n} C={cores}: {name} {m:.1} < ours {ours_s:.1}"));
                }
            }
            let (m, w, _, _) = best_of(&ports, cores, &bob_sweep, |_| Allocation::Bob);
            let m = m / 1000.0;
            println!("FIG10 sim{n} {cores} bob {w} - {m:.1} {:.4}", m / bound);
            line.push_str(&format!(" {:>7.4} ({w})", m / bound));
            if m < ours_s - 1e-6 {
                beaten.push(format!("sim{n} C={cores}: bob {m:.1} < ours {ours_s:.1}"));
            }
            let gain = fixed_ours_order / ours_s;
            line.push_str(&format!(" {gain:>8.3}×"));
            let tight = lower_bound_energy(&ports, cores) / 1000.0;
            line.push_str(&format!(" {tight:>9.1} {:>10.4}", ours_s / tight));
            println!("FIG10 sim{n} {cores} bounds {bound:.1} {tight:.1} {:.4}", ours_s / tight);
            worst_tight = worst_tight.max(ours_s / tight);
            let tradeoff = lower_bound_tradeoff(&ports, cores) / 1000.0;
            line.push_str(&format!(" {tradeoff:>9.1} {:>10.4}", ours_s / tradeoff));
            println!("FIG10 sim{n} {cores} tradeoff-bound {tradeoff:.1} {:.4}", ours_s / tradeoff);
            worst_tradeoff = worst_tradeoff.max(ours_s / tradeoff);
            let budget = u64::from(cores) * MEMORY_PER_CORE;
            let tight_memory = simulate(&ports, Machine { memory: budget, ..machine }, Allocation::Ours);
            let m = tight_memory.makespan / 1000.0;
            line.push_str(&format!(" {:>9.4} {:>5.1}/{:<5.1}", m / bound, gib(tight_memory.peak_memory), gib(budget)));
            line.push_str(&format!(" {:>6.1}", gib(fixed_peak)));
            println!(
                "FIG10 sim{n} {cores} ours-memory {cores} - {m:.1} {:.4} peak {:.1} GiB of {:.1}; fixed peak {:.1} GiB",
                m / bound,
                gib(tight_memory.peak_memory),
                gib(budget),
                gib(fixed_peak)
            );
            println!("{line}");
            worst = worst.max(ours_s / bound);
            gains.push(gain);
        }
    }
    let low = gains.iter().copied().fold(f64::INFINITY, f64::min);
    let high = gains.iter().copied().fold(0.0, f64::max);
    println!(
        "\nFIG10 SUMMARY worst ours/bound {worst:.4}, ours/tight {worst_tight:.4}, ours/tradeoff {worst_tradeoff:.4}; gain over fixed jobs {low:.3}-{high:.3}x; cases where a peer beats ours: {}",
        beaten.len()
    );
    for line in beaten {
        println!("  {line}");
    }
    farm(&o);
}
