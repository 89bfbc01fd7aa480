#!/usr/bin/env bash
# bench-fetch.sh -- fetch-only throughput against plain `xargs -P N curl`.
#
# usage: scripts/bench-fetch.sh [--ports N] [--size BYTES] [--jobs J] [--runs R]
#
# Generates a tree of N ports (default 200) on top of ports-testdata/Mk,
# each with one distfile of SIZE bytes (default 16384) served by a local
# threaded HTTP server (python3 http.server) on loopback, then times, R
# times each (default 3):
#   - portsynth fetch-only --fetch-jobs J into an empty cache (the scan
#     cache is warmed first, so this is the fetch pool alone: one sandbox
#     per port, fetch + checksum, the present check, the locks);
#   - portsynth fetch-only again, everything present (no sandbox at all);
#   - xargs -P J curl -fsSL -o ... over the same URLs into an empty dir.
# Needs root (sandboxes), bmake, curl, python3 and a release build.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD

ports=200 size=16384 jobs=8 runs=3
while [ $# -gt 0 ]; do
    case $1 in
        --ports) ports=$2; shift 2 ;;
        --size) size=$2; shift 2 ;;
        --jobs) jobs=$2; shift 2 ;;
        --runs) runs=$2; shift 2 ;;
        *) echo "usage: $0 [--ports N] [--size BYTES] [--jobs J] [--runs R]" >&2; exit 2 ;;
    esac
done
bin=$repo/target/release/portsynth
[ -x "$bin" ] || cargo build --release
[ "$(id -u)" -eq 0 ] || { echo "bench-fetch.sh: run as root (sandboxes)" >&2; exit 2; }

work=$(mktemp -d /tmp/bench-fetch.XXXXXX)
server_pid=
cleanup() {
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# The tree and the mirror.
mkdir -p "$work/ports/bench" "$work/mirror"
cp -r "$repo/ports-testdata/Mk" "$work/ports/Mk"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
for i in $(seq -w 1 "$ports"); do
    name=p$i
    file=$name-1.0.tar.gz
    head -c "$size" /dev/urandom > "$work/mirror/$file"
    mkdir -p "$work/ports/bench/$name"
    cat > "$work/ports/bench/$name/Makefile" <<EOF
PORTNAME=	$name
PORTVERSION=	1.0
CATEGORIES=	bench
MASTER_SITES=	http://127.0.0.1:$port/
MAINTAINER=	bench@portsynth.example
COMMENT=	fetch benchmark port
NO_BUILD=	yes
.include <bsd.port.mk>
EOF
    printf 'SHA256 (%s) = %s\nSIZE (%s) = %s\n' "$file" "$(sha256sum < "$work/mirror/$file" | cut -d' ' -f1)" \
        "$file" "$size" > "$work/ports/bench/$name/distinfo"
    echo "http://127.0.0.1:$port/$file" >> "$work/urls"
done
(cd "$work/mirror" && exec python3 -m http.server "$port" --bind 127.0.0.1 >/dev/null 2>&1) &
server_pid=$!
for _ in $(seq 100); do curl -fsS -o /dev/null "$(head -n 1 "$work/urls")" 2>/dev/null && break; sleep 0.1; done
printf 'ports_dir = "ports"\nbuild_base = "base"\n' > "$work/portsynth.toml"
psynth() { "$bin" --config "$work/portsynth.toml" "$@"; }
psynth -q status >/dev/null 2>&1 || true # warms the scan cache

now() { date +%s.%N; }
rate() { python3 -c "import sys; n,t=int(sys.argv[1]),float(sys.argv[2]); print(f'{t:7.2f} s  {n/t:7.1f} files/s')" "$1" "$2"; }

echo "bench-fetch: $ports distfiles of $size bytes from http://127.0.0.1:$port/, $jobs at a time, $(nproc) CPUs, load $(cut -d' ' -f1 /proc/loadavg)"
for run in $(seq 1 "$runs"); do
    rm -rf "$work/base/distfiles" "$work/curl"
    start=$(now)
    psynth --json fetch-only --fetch-jobs "$jobs" > "$work/fetch.json" 2> "$work/fetch.err" || { tail -n 3 "$work/fetch.json"; exit 1; }
    cold=$(python3 -c "print($(now) - $start)")
    fetched=$(python3 -c 'import json,sys; e=[json.loads(l) for l in open(sys.argv[1])]; print([x for x in e if x["event"]=="run_end"][0]["counts"]["fetched"])' "$work/fetch.json")
    [ "$fetched" -eq "$ports" ] || { echo "fetch-only fetched $fetched of $ports" >&2; exit 1; }
    breakdown=$(python3 - "$work/base/logs/fetch" <<'PY'
import glob, re, sys
sums, n = {}, 0
for log in glob.glob(sys.argv[1] + "/*.log"):
    text = open(log).read()
    n += 1
    for key, pattern in (("fetch", r"===> fetch ok \(([\d.]+) s\)"), ("checksum", r"===> checksum ok \(([\d.]+) s\)"),
                         ("sandbox total", r"Total:\s+([\d.]+) s")):
        sums[key] = sums.get(key, 0.0) + sum(float(x) for x in re.findall(pattern, text))
print(", ".join(f"{k} {v / max(n, 1) * 1000:.0f} ms" for k, v in sums.items()) + f" (mean per port, {n} ports)")
PY
)
    start=$(now)
    psynth -q fetch-only --fetch-jobs "$jobs" > /dev/null 2>&1
    warm=$(python3 -c "print($(now) - $start)")
    mkdir -p "$work/curl"
    start=$(now)
    (cd "$work/curl" && xargs -P "$jobs" -n 1 curl -fsSLO < "$work/urls")
    curl_s=$(python3 -c "print($(now) - $start)")
    [ "$(ls "$work/curl" | wc -l)" -eq "$ports" ] || { echo "curl fetched $(ls "$work/curl" | wc -l) files" >&2; exit 1; }
    echo "run $run:"
    echo "  portsynth fetch-only, empty cache : $(rate "$ports" "$cold")"
    echo "  portsynth fetch-only, all present : $(rate "$ports" "$warm")"
    echo "    per sandbox: $breakdown"
    echo "  xargs -P $jobs curl                : $(rate "$ports" "$curl_s")"
done
