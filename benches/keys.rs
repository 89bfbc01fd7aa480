//! Effective keys for a 30,000-port tree: folding every port's CRCs with its
//! dependencies' keys, dependencies first (file CRCs already memoised, as
//! they are after the scan-cache check of the same command).

mod common;

use criterion::{criterion_group, criterion_main, Criterion};
use portsynth::builddb::crc::CrcMemo;
use portsynth::builddb::keys::compute_keys;
use std::hint::black_box;

const PORTS: usize = 30_000;

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let syn = common::synthetic(PORTS, 1);
    let tree = common::tree_on_disk(&syn, dir.path());
    let memo = CrcMemo::default();
    let keys = compute_keys(&tree, &memo, 0);
    assert_eq!(keys.iter().filter(|k| k.is_some()).count(), PORTS);
    let mut group = c.benchmark_group("keys_30k");
    group.sample_size(10);
    group.bench_function("effective_keys_memoised_crcs", |b| b.iter(|| black_box(compute_keys(&tree, &memo, 0))));
    group.bench_function("effective_keys_cold_memo", |b| {
        b.iter(|| black_box(compute_keys(&tree, &CrcMemo::default(), 0)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
