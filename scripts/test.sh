#!/usr/bin/env bash
# Runs the whole test suite: unit, integration (real bmake, real mounts,
# real SQLite, as root) and a compile check of the benchmarks.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" -ne 0 ]; then
    echo "test.sh: the tests create namespaces and mounts and must run as root" >&2
    exit 2
fi
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
for program in bmake zstd curl patch gcc make python3 mkfs.ext4 slurmctld slurmd slurmdbd munged mariadbd chromium chromedriver cargo; do
    if ! command -v "$program" >/dev/null 2>&1; then
        echo "test.sh: $program is missing; running scripts/setup.sh"
        scripts/setup.sh
        break
    fi
done
scripts/make-distfiles
scripts/make-distfiles --check

if cargo fmt --version >/dev/null 2>&1; then
    cargo fmt --check || { echo "test.sh: the code is not cargo fmt clean (run cargo fmt)" >&2; exit 1; }
else
    echo "test.sh: rustfmt is not installed; the format check did not run" >&2
fi
cargo build --release --locked
# The Slurm tests reuse one testbed (tests/common/slurm.rs) and leave it up;
# it goes when the suite ends, under the tests' lock.
trap 'flock /run/lock/portsynth-slurm-testbed-tests.lock scripts/slurm-testbed down >/dev/null 2>&1 || true' EXIT
cargo test --release --locked -- --test-threads="$(nproc)"
cargo bench --locked --no-run
