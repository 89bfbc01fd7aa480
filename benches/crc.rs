//! Port directory CRC: what a no-change `status` pays per port.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use portsynth::builddb::crc::{file_crc, port_crc};
use std::hint::black_box;

/// A typical port: Makefile, distinfo, pkg-descr, pkg-plist, four patches.
fn typical_port(dir: &std::path::Path) -> u64 {
    let mut bytes = 0;
    let mut write = |name: &str, text: String| {
        let path = dir.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        bytes += text.len() as u64;
        std::fs::write(path, text).unwrap();
    };
    write("Makefile", "PORTNAME=\texample\nUSES=\tcmake pkgconfig\n".repeat(45));
    write(
        "distinfo",
        "TIMESTAMP = 1700000000\nSHA256 (example-1.0.tar.gz) = 00ff\nSIZE (example-1.0.tar.gz) = 123456\n".into(),
    );
    write("pkg-descr", "Example is a library for parsing widgets.\n".repeat(8));
    write("pkg-plist", (0..60).map(|i| format!("include/example/header{i}.h\n")).collect());
    for i in 0..4 {
        write(
            &format!("files/patch-src_file{i}.c"),
            "--- src/file.c.orig\n+++ src/file.c\n@@ -1 +1 @@\n-a\n+b\n".repeat(30),
        );
    }
    bytes
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let bytes = typical_port(dir.path());
    let mut group = c.benchmark_group("crc");
    group.throughput(Throughput::Bytes(bytes));
    group.bench_function("port_dir_typical_8_files", |b| b.iter(|| port_crc(black_box(dir.path())).unwrap()));
    group.finish();
    let mut group = c.benchmark_group("crc");
    let makefile = dir.path().join("Makefile");
    group.throughput(Throughput::Bytes(std::fs::metadata(&makefile).unwrap().len()));
    group.bench_function("one_file_2kb", |b| b.iter(|| file_crc(black_box(&makefile)).unwrap()));
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
