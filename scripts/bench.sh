#!/usr/bin/env bash
# Runs every whole-process figure of docs/PERFORMANCE.md in one go, each side by
# side with its baseline in the same run, and prints one line per figure (ratio
# first, then the absolute numbers behind it).
#
#   scripts/bench.sh [--quick] [--only 1,2,...] [--workdir DIR] [--micro]
#
#   --quick     smaller trees and fewer repetitions (a few minutes); the published
#               figures are the full run (about 15-25 minutes on 2 CPUs)
#   --only      figures to run (7, peak memory, comes with 2)
#   --workdir   where trees, build bases and results.json go
#               (default: $PORTSYNTH_BENCH_DIR or /var/tmp/portsynth-bench)
#   --micro     also run the criterion micro-benchmarks (cargo bench)
#
# Figures: 1 cold scan vs bare bmake queries (xargs -P CPUs); 2 warm no-change
# status vs reading every file; 3 no-op `everything` on the built ports-testdata;
# 4 per-port sandbox overhead vs the same phases run directly; 5 simulated
# scheduling policies vs the lower bound; 6 real -j8 scheduling vs `make -j8`;
# 7 peak RSS of status. Needs root (figures 3, 4 and 6 build in sandboxes) and
# what scripts/setup.sh installs. Generated trees are reused between runs.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=() only=() workdir="${PORTSYNTH_BENCH_DIR:-/var/tmp/portsynth-bench}" micro=0
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) quick=(--quick) ;;
        --only) only=(--only "$2"); shift ;;
        --only=*) only=(--only "${1#--only=}") ;;
        --workdir) workdir="$2"; shift ;;
        --workdir=*) workdir="${1#--workdir=}" ;;
        --micro) micro=1 ;;
        -h|--help) sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
if [ "$(id -u)" -ne 0 ]; then
    echo "bench.sh: figures 3, 4 and 6 build in sandboxes and must run as root" >&2
    exit 2
fi
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
for program in bmake make python3 cargo xargs find; do
    command -v "$program" >/dev/null 2>&1 || { echo "bench.sh: $program is missing; run scripts/setup.sh" >&2; exit 2; }
done
scripts/make-distfiles >/dev/null
cargo build --release --locked
cargo bench --locked --no-run 2>/dev/null || cargo bench --locked --no-run
if [ "$micro" = 1 ]; then
    cargo bench --locked --bench parse --bench crc --bench graph --bench keys
fi
exec python3 scripts/bench-figures --binary target/release/portsynth --workdir "$workdir" \
    ${quick[@]+"${quick[@]}"} ${only[@]+"${only[@]}"}
