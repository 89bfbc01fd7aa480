//! The dependency graph of a whole tree (30,000 ports): construction, the
//! cycle check, critical-path priorities, transitive dependent counts, the
//! ready queue, and the ETA simulation the scheduler runs every second.

mod common;

use criterion::{criterion_group, criterion_main, Criterion};
use portsynth::graph::Graph;
use portsynth::sim::{simulate, Policy, Slots, Workload};
use std::hint::black_box;

const PORTS: usize = 30_000;

fn bench(c: &mut Criterion) {
    let syn = common::synthetic(PORTS, 1);
    let g = syn.graph();
    let mut group = c.benchmark_group("graph_30k");
    group.sample_size(10);
    group.bench_function("construct", |b| b.iter(|| black_box(syn.graph())));
    group.bench_function("construct+cycles+priorities", |b| {
        b.iter(|| {
            let g = syn.graph();
            assert!(g.find_cycles().is_empty());
            black_box(g.priorities(&syn.durations))
        })
    });
    group.bench_function("find_cycles", |b| b.iter(|| black_box(g.find_cycles())));
    group.bench_function("priorities", |b| b.iter(|| black_box(g.priorities(&syn.durations))));
    group.bench_function("transitive_dependents_counts", |b| b.iter(|| black_box(g.transitive_dependents_counts())));

    // Ready queue: every port pushed and popped once in priority order,
    // readiness counters included (Graph::schedule_order is the scheduler's
    // ordering: critical path, then dependents, then origin).
    let all = vec![true; g.len()];
    let priority = g.priorities(&syn.durations);
    let dependents = g.transitive_dependents_counts();
    group.bench_function("ready_queue_all_ports", |b| {
        b.iter(|| black_box(g.schedule_order(&all, &priority, &dependents)))
    });
    // The scheduler's queue alone: 30,000 pushes, then 30,000 pops.
    group.bench_function("ready_queue_push_pop_30k", |b| {
        b.iter_batched(
            || g.ready_queue(priority.clone(), dependents.clone()),
            |mut q| {
                for n in 0..PORTS {
                    q.push(n);
                }
                while let Some(n) = q.pop() {
                    black_box(n);
                }
            },
            criterion::BatchSize::LargeInput,
        )
    });

    // The ETA: a whole remaining build simulated with the coordinator's own
    // priorities, 8 workers.
    let work =
        Workload { priority: Some(&priority), dependents: Some(&dependents), ..Workload::all(&g, &syn.durations) };
    group.bench_function("eta_simulation_w8", |b| {
        b.iter(|| black_box(simulate(&work, Slots::fixed(8), Policy::CriticalPath)))
    });
    group.finish();
    let _: &Graph = &g;
}

criterion_group!(benches, bench);
criterion_main!(benches);
