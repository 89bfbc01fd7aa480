//! Parsing what bmake prints: dependency specs and origins.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use portsynth::ports::{DepKind, DepSpec, Origin};
use std::hint::black_box;

/// A BUILD_DEPENDS value as a real port prints it: programs, libraries,
/// paths, package specs, a flavored origin, a target.
const BUILD_DEPENDS: &str = "pkgconf:devel/pkgconf gmake:devel/gmake \
    libiconv.so:converters/libiconv libintl.so:devel/gettext-runtime \
    /usr/local/share/aclocal/glib-2.0.m4:devel/glib20 py311-setuptools>=63.1.0:devel/py-setuptools@py311 \
    perl5.36:lang/perl5.36 libxml2.so:textproc/libxml2 cmake:${PORTSDIR}/devel/cmake-core:build \
    ninja:devel/ninja";

fn bench(c: &mut Criterion) {
    let entries = BUILD_DEPENDS.split_whitespace().count() as u64;
    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Elements(entries));
    group.bench_function("depspec_parse_list_10_entries", |b| {
        b.iter(|| DepSpec::parse_list(DepKind::Build, black_box(BUILD_DEPENDS)))
    });
    group.finish();
    let mut group = c.benchmark_group("parse");
    group.throughput(Throughput::Elements(1));
    group.bench_function("origin_flavored", |b| b.iter(|| Origin::parse(black_box("devel/py-setuptools@py311"))));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
