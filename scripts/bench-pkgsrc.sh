#!/usr/bin/env bash
# bench-pkgsrc.sh -- portsynth's pkgsrc scan (and, with --builds, its bulk builds) side by side with bob
# (https://crates.io/crates/bob, a comparison only, never a dependency), on the
# same real tree (../shared/pkgsrc/pkgsrc-2014.tar.zst), the same bootstrap kit,
# the same pkgpaths and the same number of scan threads.
#
#   scripts/bench-pkgsrc.sh [--reps N] [--workdir DIR] [--threads N] [--pause PGID]...
#                           [--binary FILE] [--kit FILE] [--whole-tree] [--builds]
#
#   --reps N       repetitions of every phase, the tools alternating (default 3)
#   --workdir DIR  scratch directory (default /var/tmp/bench-pkgsrc): a writable
#                  copy of the tree, bob (cargo install --root DIR/bob), both
#                  tools' caches, the logs and results.tsv
#   --threads N    scan threads of both tools (default 2: bob's scan_threads,
#                  portsynth's RAYON_NUM_THREADS)
#   --pause PGID   a process group (e.g. a long background job) stopped with
#                  SIGSTOP while a command is timed and continued right after
#                  (and on any exit); repeatable
#   --binary FILE  the portsynth binary (default: a copy of target/release/portsynth,
#                  built with cargo build --release --locked if missing)
#   --kit FILE     the bootstrap kit (default: the one the tests cache under
#                  /var/cache/portsynth-pkgsrc/kit-test, else one made here with
#                  `portsynth bootstrap-kit`)
#   --builds       instead of the scan phases: BULK BUILDS side by side (figure
#                  9: 36 packages of packages.txt, 2 builders and MAKE_JOBS 1
#                  each; bulk, no-change rerun, mk/ edit, kill -9 and resume;
#                  results in WORKDIR/builds); --reps counts its repetitions;
#                  BENCH_BULK_ONLY=1: the bulk phase only; BENCH_DYNAMIC=1: make
#                  jobs from a budget of $(nproc) cores instead of 1 each (portsynth
#                  jobs = CPUs, bob dynamic = { jobs = CPUs }), the bulk from empty
#                  and a second bulk with the history of the first (packages
#                  removed, databases kept), results in results-dynamic.tsv;
#                  BENCH_KILL_AFTER=S
#                  (default 45): when the kill phase kills the coordinator
#   --whole-tree   also: warm no-change `status` of the whole tree (a second,
#                  pristine copy); the first time this runs the cold whole-tree
#                  scan (1-3 h on 2 CPUs, not paused around, not timed as a figure)
#
# Phases, each repeated --reps times, the tool that goes first alternating:
#   cold       empty caches (portsynth: its build base; bob: its dbdir), a scan of
#              the closure of the pkgpaths (tests/fixtures/pkgsrc/closure.txt plus
#              ../shared/pkgsrc/packages.txt)
#   warm       the same again, nothing changed
#   options    after appending a comment to mk/bsd.options.mk
#   bl3        after appending a comment to textproc/libxml2/buildlink3.mk
# then once, untimed: an edit that changes what pbulk-index says (a
# PKG_FAIL_REASON in textproc/libxml2/buildlink3.mk), to show what each tool
# reports afterwards; the edited files are restored at the end.
#
# portsynth runs `portsynth -v status` (scan, pbulk resolution, plan) with
# framework = "pkgsrc", bootstrap_kit, pkgpaths; bob runs `bob scan` (scan,
# resolution, up-to-date check) with the sandbox setup of bob's own
# config/linux.lua, inside `unshare -m --propagation private` (bob mounts in the
# mount namespace it is started in; this keeps its mounts off the host and makes
# them vanish with it). Each timed command is reaped by /usr/bin/time (wait4):
# wall, and CPU = user + system of the whole process tree. Must run as root (bob's
# sandboxes mount and chroot; portsynth's scan sandboxes use namespaces).
set -euo pipefail
export LC_ALL=C

repo=$(cd "$(dirname "$0")/.." && pwd)
shared=${PORTSYNTH_PKGSRC_SHARED:-$repo/../shared/pkgsrc}
reps=3 workdir=/var/tmp/bench-pkgsrc threads=2 binary='' kit='' whole=0 builds=0 pause=()
while [ $# -gt 0 ]; do
    case "$1" in
        --reps) reps=$2; shift ;;
        --workdir) workdir=$2; shift ;;
        --threads) threads=$2; shift ;;
        --pause) pause+=("$2"); shift ;;
        --binary) binary=$2; shift ;;
        --kit) kit=$2; shift ;;
        --whole-tree) whole=1 ;;
        --builds) builds=1 ;;
        -h|--help) sed -n '2,52p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "bench-pkgsrc.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
    shift
done
die() { echo "bench-pkgsrc.sh: $*" >&2; exit 1; }
log() { echo "bench-pkgsrc: $*" >&2; }
[ "$(id -u)" -eq 0 ] || die "must run as root (bob's sandboxes mount and chroot)"
[ -f "$shared/pkgsrc-2014.tar.zst" ] || die "no $shared/pkgsrc-2014.tar.zst"
case $reps in ''|*[!0-9]*|0) die "--reps wants a positive number" ;; esac
case $threads in ''|*[!0-9]*|0) die "--threads wants a positive number" ;; esac

# --- the processes paused while timing ----------------------------------------
resume_all() {
    local g
    for g in ${pause[@]+"${pause[@]}"}; do kill -CONT -- "-$g" 2>/dev/null || true; done
}
pause_all() {
    local g
    for g in ${pause[@]+"${pause[@]}"}; do kill -STOP -- "-$g" 2>/dev/null || true; done
}
trap resume_all EXIT
trap 'exit 130' INT TERM HUP

# --- prerequisites --------------------------------------------------------------
need_apt=()
[ -x /usr/bin/time ] || need_apt+=(time)
command -v zstd >/dev/null 2>&1 || need_apt+=(zstd)
command -v unshare >/dev/null 2>&1 || need_apt+=(util-linux)
if [ ${#need_apt[@]} -gt 0 ]; then
    apt-get update -qq && apt-get install -y -qq "${need_apt[@]}"
fi
[ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
mkdir -p "$workdir"
workdir=$(cd "$workdir" && pwd)

if [ -z "$binary" ]; then
    if [ ! -x "$repo/target/release/portsynth" ]; then
        (cd "$repo" && cargo build --release --locked)
    fi
    # a copy, so that a rebuild in the repository does not change it mid-run
    cp "$repo/target/release/portsynth" "$workdir/portsynth"
    binary=$workdir/portsynth
    rev=$(git -C "$repo" rev-parse HEAD 2>/dev/null || echo unknown)
    if [ -n "$(git -C "$repo" status --porcelain --untracked-files=no -- src Cargo.toml Cargo.lock 2>/dev/null)" ]; then
        rev="$rev (src modified)"
    fi
else
    rev="given binary $binary, sha256 $(sha256sum "$binary" | cut -c1-12)"
fi
bob=$workdir/bob/bin/bob
if [ ! -x "$bob" ]; then
    log "installing bob: cargo install bob --locked --root $workdir/bob"
    cargo install bob --locked --root "$workdir/bob"
fi
bob_version=$("$bob" --version)

# --- the tree (a writable copy: the edits go there) ----------------------------
tree=$workdir/tree/pkgsrc
if [ ! -e "$workdir/tree/.done" ]; then
    log "unpacking the tree into $workdir/tree"
    rm -rf "$workdir/tree" && mkdir -p "$workdir/tree"
    zstd -dc "$shared/pkgsrc-2014.tar.zst" | tar -x -C "$workdir/tree"
    touch "$workdir/tree/.done"
fi
edited=(mk/bsd.options.mk textproc/libxml2/buildlink3.mk)
restore_tree() {
    # the files the edits touch, back to the tarball's bytes (only when changed)
    local f
    for f in "${edited[@]}"; do
        zstd -dc "$shared/pkgsrc-2014.tar.zst" | tar -x -O "pkgsrc/$f" >"$workdir/orig.tmp"
        cmp -s "$workdir/orig.tmp" "$tree/$f" || cp "$workdir/orig.tmp" "$tree/$f"
    done
    rm -f "$workdir/orig.tmp"
}
restore_tree

# --- the kit ------------------------------------------------------------------------
if [ -z "$kit" ]; then
    kit=$(ls /var/cache/portsynth-pkgsrc/kit-test/base/kits/bootstrap-kit-*.tgz 2>/dev/null | head -1 || true)
fi
if [ -z "$kit" ]; then
    log "no kit: making one with portsynth bootstrap-kit (about 3.5 min)"
    mkdir -p "$workdir/kit"
    cat >"$workdir/kit/portsynth.toml" <<EOF
framework = "pkgsrc"
ports_dir = "$tree"
build_base = "$workdir/kit/base"

[bootstrap_env]
SH = "/bin/bash"
CFLAGS = "-O2 -fcommon"
NOGCCERROR = "yes"
PREFER_PKGSRC = "openssl"
NBCOMPAT_CONFIGURE_ARGS = "--enable-db"
EOF
    "$binary" --config "$workdir/kit/portsynth.toml" bootstrap-kit --mk-fragment "$shared/mk.conf.fragment" >&2
    kit=$(ls "$workdir"/kit/base/kits/bootstrap-kit-*.tgz | head -1)
fi
[ -f "$kit" ] || die "no kit $kit"

# --- the pkgpaths ---------------------------------------------------------------
pkgpaths=$workdir/pkgpaths.txt
{ grep -v '^#' "$repo/tests/fixtures/pkgsrc/closure.txt"; grep -v '^#' "$shared/packages.txt"; } \
    | awk 'NF { print $1 }' | sort -u >"$pkgpaths"

# --- configurations -------------------------------------------------------------
scan_path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin   # portsynth's SCAN_PATH
ps_dir=$workdir/portsynth-closure
mkdir -p "$ps_dir"
cat >"$ps_dir/portsynth.toml" <<EOF
framework = "pkgsrc"
ports_dir = "$tree"
build_base = "$ps_dir/base"
bootstrap_kit = "$kit"
pkgpaths = "$pkgpaths"
EOF
bob_dir=$workdir/bob-closure
mkdir -p "$bob_dir"
# bob's config/linux.lua setup (mounts, symlinks, a copy of /etc, the tree), the
# tree read-only as its comment recommends, and the environment of portsynth's
# scan queries, so that both run pbulk-index with the same PATH and variables.
cat >"$bob_dir/config.lua" <<EOF
options = {
    build_threads = 1,
    scan_threads = $threads,
    dbdir = "$bob_dir/db",
    log_level = "info",
    tui = false,
}
pkgsrc = {
    basedir = "$tree",
    bootstrap = "$kit",
    make = "/usr/pkg/bin/bmake",
    pkgpaths = read_pkgpaths("$pkgpaths"),
}
sandboxes = {
    basedir = "$bob_dir/chroot",
    environment = {
        build = {
            clear = true,
            vars = {
                PATH = "$scan_path",
                HOME = "/tmp", TERM = "dumb", LANG = "C", SHELL = "/bin/sh",
            },
        },
    },
    setup = {
        { action = "mount", fs = "dev", dir = "/dev" },
        { action = "mount", fs = "proc", dir = "/proc" },
        { action = "mount", fs = "tmp", dir = "/tmp", opts = "size=1G" },
        { action = "mount", fs = "tmp", dir = "/var", opts = "size=1G" },
        { action = "mount", fs = "bind", dir = "/usr/bin", opts = "ro" },
        { action = "mount", fs = "bind", dir = "/usr/sbin", opts = "ro" },
        { action = "mount", fs = "bind", dir = "/usr/lib", opts = "ro" },
        { action = "mount", fs = "bind", dir = "/usr/lib64", opts = "ro" },
        { action = "mount", fs = "bind", dir = "/usr/libexec", opts = "ro" },
        { action = "mount", fs = "bind", dir = "/usr/include", opts = "ro" },
        { action = "mount", fs = "bind", dir = "/usr/share", opts = "ro" },
        { action = "symlink", src = "usr/bin", dest = "/bin" },
        { action = "symlink", src = "usr/lib", dest = "/lib" },
        { action = "symlink", src = "usr/lib64", dest = "/lib64" },
        { action = "symlink", src = "usr/sbin", dest = "/sbin" },
        { action = "copy", dir = "/etc" },
        { action = "cmd", chroot = true, create = "mkdir -m 1777 /var/tmp; chmod 1777 /tmp" },
        { action = "mount", fs = "bind", dir = pkgsrc.basedir, opts = "ro" },
    },
}
EOF

# A directory is removed only when nothing is mounted below it (bob's sandbox
# mounts live in the private namespace it ran in and are gone with it).
safe_rm() {
    local d=$1
    [ -e "$d" ] || return 0
    if awk -v d="$d" '$5 == d || index($5, d "/") == 1 { found = 1 } END { exit !found }' /proc/self/mountinfo; then
        die "something is mounted below $d; not removing it"
    fi
    rm -rf "$d"
}

# --- timing -----------------------------------------------------------------------
results=$workdir/results.tsv
printf 'rep\tphase\ttool\torder\twall\tcpu\tscanned\tcached\tload1\tplan\tdetail\n' >"$results"
logs=$workdir/logs
rm -rf "$logs" && mkdir -p "$logs"

# timed NAME CMD...: runs CMD with the paused groups stopped; sets wall, cpu, load.
timed() {
    local name=$1 rc=0
    shift
    load=$(cut -d' ' -f1 /proc/loadavg)
    pause_all
    /usr/bin/time -f '%e %U %S' -o "$logs/$name.time" "$@" >"$logs/$name.out" 2>"$logs/$name.err" || rc=$?
    resume_all
    [ $rc -eq 0 ] || { tail -20 "$logs/$name.err" >&2; die "$name failed (exit $rc), see $logs/$name.*"; }
    read -r wall user sys <"$logs/$name.time"
    cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')
}

run_portsynth() {   # rep phase order [cold]
    local name="$1-$2-portsynth"
    [ "${4:-}" = cold ] && safe_rm "$ps_dir/base"
    timed "$name" env RAYON_NUM_THREADS="$threads" "$binary" --config "$ps_dir/portsynth.toml" -v status
    # "scan: N port directories from the cache, M scanned with bmake"
    local line plan
    line=$(grep '^scan: ' "$logs/$name.err" | tail -1)
    cached=$(echo "$line" | awk '{ print $2 }')
    scanned=$(echo "$line" | awk '{ print $(NF-3) }')
    plan=$(grep -E '^[0-9]+ to build' "$logs/$name.out" | tail -1)
    printf '%s\t%s\tportsynth\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$wall" "$cpu" "$scanned" "$cached" "$load" "$plan" \
        "$(grep '^files: ' "$logs/$name.err" | tail -1)" >>"$results"
}

run_bob() {   # rep phase order [cold]
    local name="$1-$2-bob"
    if [ "${4:-}" = cold ]; then
        safe_rm "$bob_dir/chroot"
        safe_rm "$bob_dir/db"
    fi
    timed "$name" unshare -m --propagation private "$bob" -c "$bob_dir/config.lua" scan
    # "Scanned 273 package paths in 48s (273 succeeded, 0 failed)" (cold),
    # "... (S scanned, C cached, F failed)" (partly cached), or
    # "All 273 package paths already scanned" (nothing scanned)
    local out=$logs/$name.out plan
    if grep -q '^All [0-9]* package paths already scanned' "$out"; then
        scanned=0
        cached=$(sed -n 's/^All \([0-9]*\) package paths already scanned.*/\1/p' "$out" | tail -1)
    elif grep -q '^Scanned .* cached' "$out"; then
        scanned=$(sed -n 's/^Scanned .*(\([0-9]*\) scanned, \([0-9]*\) cached.*/\1/p' "$out" | tail -1)
        cached=$(sed -n 's/^Scanned .*(\([0-9]*\) scanned, \([0-9]*\) cached.*/\2/p' "$out" | tail -1)
    else
        scanned=$(sed -n 's/^Scanned \([0-9]*\) package paths.*/\1/p' "$out" | tail -1)
        cached=0
    fi
    plan=$(grep -E '^[0-9]+ pending' "$out" | tail -1)
    # bob's own stopwatch: creating the sandbox, the scan, destroying the sandbox
    local detail
    detail=$(awk '
        /^Creating sandbox\.\.\. done/ { c = $4 }
        /^Destroying sandbox\.\.\. done/ { d = $4 }
        /^Scanned [0-9]+ package paths in / {   # "in 37s", "in 1m 2s", "in 1h 0m 3s"
            t = 0
            for (i = 6; i <= NF && substr($i, 1, 1) != "("; i++) {
                v = $i; u = substr(v, length(v)); v = substr(v, 1, length(v) - 1)
                t += v * (u == "h" ? 3600 : u == "m" ? 60 : 1)
            }
            sc = t
        }
        END { gsub(/[()s]/, "", c); gsub(/[()s]/, "", d); print "create " c " scan " sc " destroy " d }' "$out")
    printf '%s\t%s\tbob\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$wall" "$cpu" "$scanned" "$cached" "$load" "$plan" "$detail" >>"$results"
}

# run_both REP PHASE [cold]: both tools, bob first on odd repetitions.
run_both() {
    if [ $(($1 % 2)) -eq 1 ]; then
        run_bob "$1" "$2" 1 "${3:-}"
        run_portsynth "$1" "$2" 2 "${3:-}"
    else
        run_portsynth "$1" "$2" 1 "${3:-}"
        run_bob "$1" "$2" 2 "${3:-}"
    fi
    log "rep $1 $2 done (load $(cut -d' ' -f1-3 /proc/loadavg))"
}

append_comment() {
    printf '# bench-pkgsrc.sh edit %s\n' "$(date +%s.%N)" >>"$tree/$1"
}

# How many scanned pkgpaths read FILE, according to pbulk-index's own
# SCAN_DEPENDS (in bob's stored scan: `bob util print-pscan`).
readers() {
    awk -v f="$1" '
        /^PKG_LOCATION=/ { loc = substr($0, 14) }
        /^SCAN_DEPENDS=/ {
            n = split(substr($0, 14), a, " ")
            for (i = 1; i <= n; i++) {
                p = a[i]; lp = length(p); lf = length(f)
                if (lp >= lf && substr(p, lp - lf + 1) == f && (lp == lf || substr(p, lp - lf, 1) == "/")) {
                    print loc; break
                }
            }
        }' "$workdir/bob.pscan" | sort -u | wc -l
}

if [ "$builds" = 1 ]; then
# --- --builds: BUILDS side by side with bob (figure 9) -------------------------------
# The same tree (a hard-linked copy of the unpacked one: the edit writes a new
# file and renames it over the link), the same kit, the same package set
# ($build_set: fast "ok" packages of packages.txt plus the shared tool deps
# pkgtools/digest and devel/nbpatch), each tool its own copy of the distfiles
# (filled from ../shared/pkgsrc/distfiles) and its own empty repository, 2
# builders each, MAKE_JOBS 1. bob runs inside `unshare -m -n` (mounts private to
# it, and no network at all: it cannot fetch from the internet); portsynth runs
# with fetch_upstream = false (its builds have no network anyway).
# Phases, per repetition (the tool that goes first alternating):
#   bulk      empty repositories, build everything
#   nochange  the same again
#   mkedit    after appending a comment to mk/bsd.options.mk (new file renamed
#             over it): what each rebuilds, against the packages whose
#             pbulk-index SCAN_DEPENDS lists mk/bsd.options.mk
#   kill      from empty repositories, kill -9 of the coordinator 45 s in: the
#             mounts, processes and package files left behind, then a resumed run
#             (timed) to its end
# What a run rebuilt is read off the repository itself: the All/*.tgz whose
# (inode, mtime) changed.
build_set=(pkgtools/digest devel/nbpatch
    archivers/fcrackzip archivers/nomarch archivers/rzip audio/cd-discid audio/mp3val
    audio/rexima benchmarks/pipebench biology/fastDNAml biology/lucy devel/cpuflags
    devel/cvsps games/fortune-strfile games/ninvaders graphics/exiftags mail/bmf
    mail/safecat misc/bsdiff misc/figlet misc/parchive misc/since misc/xtail
    net/corkscrew net/hf6to4 net/proxycheck pkgtools/pkg_chk pkgtools/pkg_tarup
    pkgtools/pkg_rolling-replace security/hashcash security/portsentry
    sysutils/nrg2iso textproc/dadadodo textproc/rman sysutils/free print/papersize)
bd=$workdir/builds
kill_after=${BENCH_KILL_AFTER:-45}   # seconds into the bulk of the kill phase
bulk_only=${BENCH_BULK_ONLY:-0}      # 1: the bulk phase only (more repetitions of it)
dynamic=${BENCH_DYNAMIC:-0}          # 1: make jobs from a core budget, bulk and history bulk only
cpus=$(nproc)
if [ "$dynamic" = 1 ]; then
    ps_jobs="jobs = $cpus" bob_dynamic="dynamic = { jobs = $cpus }" bob_make_jobs="" jobs_text="a budget of $cpus cores"
else
    ps_jobs="make_jobs = 1" bob_dynamic="" bob_make_jobs='MAKE_JOBS = "1",' jobs_text="MAKE_JOBS 1"
fi
variant=${BENCH_BULK_ONLY:+-bulk}
[ "$dynamic" = 1 ] && variant=-dynamic
mkdir -p "$bd"
btree=$bd/tree/pkgsrc
if [ ! -e "$bd/tree/.done" ]; then
    rm -rf "$bd/tree" && mkdir -p "$bd/tree"
    cp -al "$tree" "$btree"
    touch "$bd/tree/.done"
fi
# replace FILE CONTENT-FROM: write a new file, rename it over (never in place)
replace_file() {
    cp "$2" "$btree/$1.bench-new" && mv -f "$btree/$1.bench-new" "$btree/$1"
}
zstd -dc "$shared/pkgsrc-2014.tar.zst" | tar -x -O pkgsrc/mk/bsd.options.mk >"$bd/bsd.options.mk.orig"
cmp -s "$bd/bsd.options.mk.orig" "$btree/mk/bsd.options.mk" || replace_file mk/bsd.options.mk "$bd/bsd.options.mk.orig"
restore_btree() { cmp -s "$bd/bsd.options.mk.orig" "$btree/mk/bsd.options.mk" || replace_file mk/bsd.options.mk "$bd/bsd.options.mk.orig"; }
trap 'restore_btree; resume_all' EXIT

ps_b=$bd/portsynth bob_b=$bd/bob
list=$(printf '"%s", ' "${build_set[@]}")
mkdir -p "$ps_b" "$bob_b"
cat >"$ps_b/portsynth.toml" <<EOF
framework = "pkgsrc"
ports_dir = "$btree"
build_base = "$ps_b/base"
distfiles_dir = "$ps_b/distfiles"
bootstrap_kit = "$kit"
pkgpaths = [${list%, }]
workers = 2
$ps_jobs
throttle = false
fetch_upstream = false
EOF
lualist=$(printf '"%s", ' "${build_set[@]}")
cat >"$bob_b/config.lua" <<EOF
options = {
    build_threads = 2,
    scan_threads = $threads,
    dbdir = "$bob_b/db",
    log_level = "info",
    tui = false,
}
$bob_dynamic
pkgsrc = {
    basedir = "$btree",
    bootstrap = "$kit",
    make = "/usr/pkg/bin/bmake",
    pkgpaths = { ${lualist%, } },
}
sandboxes = {
    basedir = "$bob_b/chroot",
    environment = {
        build = {
            clear = true,
            vars = {
                PATH = "$scan_path",
                HOME = "/tmp", TERM = "dumb", LANG = "C", SHELL = "/bin/sh",
                DISTDIR = "$bob_b/distfiles",
                PACKAGES = "$bob_b/packages",
                WRKOBJDIR = "/tmp/work",
                $bob_make_jobs
            },
        },
    },
    setup = {
        { action = "mount", fs = "dev", dir = "/dev" },
        { action = "mount", fs = "proc", dir = "/proc" },
        { action = "mount", fs = "tmp", dir = "/tmp", opts = "size=1G" },
        { action = "mount", fs = "tmp", dir = "/var", opts = "size=1G" },
        { action = "mount", fs = "bind", dir = "/usr/bin", opts = "ro" },
        { action = "mount", fs = "bind", dir = "/usr/sbin", opts = "ro" },
        { action = "mount", fs = "bind", dir = "/usr/lib", opts = "ro" },
        { action = "mount", fs = "bind", dir = "/usr/lib64", opts = "ro" },
        { action = "mount", fs = "bind", dir = "/usr/libexec", opts = "ro" },
        { action = "mount", fs = "bind", dir = "/usr/include", opts = "ro" },
        { action = "mount", fs = "bind", dir = "/usr/share", opts = "ro" },
        { action = "symlink", src = "usr/bin", dest = "/bin" },
        { action = "symlink", src = "usr/lib", dest = "/lib" },
        { action = "symlink", src = "usr/lib64", dest = "/lib64" },
        { action = "symlink", src = "usr/sbin", dest = "/sbin" },
        { action = "copy", dir = "/etc" },
        { action = "cmd", chroot = true, create = "mkdir -m 1777 /var/tmp; chmod 1777 /tmp" },
        { action = "mount", fs = "bind", dir = pkgsrc.basedir, opts = "ro" },
        { action = "mount", fs = "bind", dir = "$bob_b/distfiles" },
        { action = "mount", fs = "bind", dir = "$bob_b/packages", opts = "ro" },
    },
}
EOF
ps_repo=$ps_b/base/packages/All bob_repo=$bob_b/packages/All
b_results=$bd/results$variant.tsv
printf 'rep\tphase\ttool\torder\twall\tcpu\tload1\trc\tpackages\trebuilt\tdetail\n' >"$b_results"
blogs=$bd/logs$variant
rm -rf "$blogs" && mkdir -p "$blogs"

fresh() {   # tool: empty repository and state
    if [ "$1" = portsynth ]; then
        safe_rm "$ps_b/base"; rm -rf "$ps_b/distfiles"; mkdir -p "$ps_b/distfiles"
        cp "$shared"/distfiles/* "$ps_b/distfiles/"
    else
        safe_rm "$bob_b/chroot"; safe_rm "$bob_b/db"; rm -rf "$bob_b/packages" "$bob_b/distfiles"
        mkdir -p "$bob_b/packages/All" "$bob_b/distfiles"
        cp "$shared"/distfiles/* "$bob_b/distfiles/"
    fi
}
snap() {   # repo-dir: "name inode mtime" of every package file
    [ -d "$1" ] || return 0
    find "$1" -maxdepth 1 -name '*.tgz' -printf '%f %i %T@\n' | sort
}
tool_cmd() {   # tool
    if [ "$1" = portsynth ]; then
        echo "$binary --config $ps_b/portsynth.toml --json -y everything"
    else
        echo "unshare -m -n --propagation private $bob -c $bob_b/config.lua ${bob_subcommand:-build}"
    fi
}
repo_of() { [ "$1" = portsynth ] && echo "$ps_repo" || echo "$bob_repo"; }

btimed() {   # rep phase tool order
    local name="$1-$2-$3" rc=0 before after rebuilt n repo
    repo=$(repo_of "$3")
    before=$(snap "$repo")
    load=$(cut -d' ' -f1 /proc/loadavg)
    pause_all
    # shellcheck disable=SC2046
    /usr/bin/time -f '%e %U %S' -o "$blogs/$name.time" $(tool_cmd "$3") \
        </dev/null >"$blogs/$name.out" 2>"$blogs/$name.err" || rc=$?
    resume_all
    after=$(snap "$repo")
    read -r wall user sys <"$blogs/$name.time" || true
    cpu=$(awk -v u="$user" -v s="$sys" 'BEGIN { printf "%.2f", u + s }')
    n=$(printf '%s\n' "$after" | grep -c . || true)
    rebuilt=$(comm -13 <(printf '%s\n' "$before") <(printf '%s\n' "$after") | awk 'NF { sub(/\.tgz$/, "", $1); print $1 }' | sort -u | paste -sd, -)
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$wall" "$cpu" "$load" "$rc" "$n" "${rebuilt:--}" "${5:-}" >>"$b_results"
    log "$name: wall $wall cpu $cpu rc $rc, $n packages, rebuilt $(printf '%s' "$rebuilt" | tr ',' '\n' | grep -c . || true) (load $(cut -d' ' -f1-3 /proc/loadavg))"
}

# kill -9 of the coordinator $kill_after s into a bulk from empty; then what is left
killtest() {   # rep tool order
    local name="$1-kill-$2" pid sid desc left mnt partial
    fresh "$2"
    pause_all
    # shellcheck disable=SC2046
    setsid $(tool_cmd "$2") </dev/null >"$blogs/$name.out" 2>"$blogs/$name.err" &
    pid=$!
    sleep "$kill_after"
    # every descendant of the coordinator, just before the kill
    desc=$(ps -eo pid=,ppid= | awk -v r="$pid" '{ p[$1] = $2 } END { for (x in p) { y = x; while (y in p && y != r && y > 1) y = p[y]; if (y == r) print x } }' | sort -n | paste -sd' ' -)
    sid=$(ps -o sid= -p "$pid" | tr -d ' ')
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    sleep 3
    left=$(for p in $desc; do [ -d "/proc/$p" ] && echo "$p:$(tr '\0' ' ' <"/proc/$p/cmdline" | cut -c1-60)"; done; ps -eo pid=,sid= | awk -v s="$sid" '$2 == s { print $1 }' | while read -r p; do case " $desc " in *" $p "*) ;; *) echo "$p(new):$(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null | cut -c1-60)" ;; esac; done)
    # mounts: the host's, and those of any survivor's namespace, below the tool's dirs
    local base; [ "$2" = portsynth ] && base=$ps_b || base=$bob_b
    mnt=$(awk -v d="$base" 'index($5, d) == 1' /proc/self/mountinfo | wc -l)
    local smnt=0 p
    for p in $desc; do
        [ -r "/proc/$p/mountinfo" ] && smnt=$((smnt + $(awk -v d="$base" 'index($5, d) == 1' "/proc/$p/mountinfo" | wc -l)))
    done
    resume_all
    local repo; repo=$(repo_of "$2")
    partial=$(find "$(dirname "$repo")" -type f 2>/dev/null | while read -r f; do
        case $f in *.tgz) gzip -t "$f" 2>/dev/null || echo "corrupt:$(basename "$f")" ;;
                   *pkg_summary*|*SHA256SUMS*) ;; *) echo "other:$(basename "$f")" ;; esac; done | paste -sd, -)
    local ntgz; ntgz=$(find "$repo" -maxdepth 1 -name '*.tgz' 2>/dev/null | wc -l)
    local sbx=''
    [ "$2" = bob ] && sbx="sandbox dirs left: $(ls "$bob_b/chroot" 2>/dev/null | paste -sd' ' -) ($(du -sm "$bob_b/chroot" 2>/dev/null | cut -f1) MB)"
    [ "$2" = portsynth ] && sbx="work dirs: $(find "$ps_b/base" -maxdepth 2 -type d 2>/dev/null | wc -l) dirs in base ($(du -sm "$ps_b/base" 2>/dev/null | cut -f1) MB)"
    printf '%s\tkill\t%s\t%s\t%s\t-\t%s\t-9\t%s\t-\tsurvivors [%s]; host mounts %s; survivor-namespace mounts %s; bad files [%s]; %s\n' \
        "$1" "$2" "$3" "$kill_after" "$load" "$ntgz" "$(echo $left)" "$mnt" "$smnt" "${partial:-none}" "$sbx" >>"$b_results"
    log "$name: survivors [$(echo $left)] host mounts $mnt survivor mounts $smnt bad [$partial] $sbx"
    # survivors are ours (descendants of the coordinator we started): end them by pid
    for p in $desc; do [ -d "/proc/$p" ] && kill -9 "$p" 2>/dev/null; done
    sleep 1
    btimed "$1" resume "$2" "$3"
}

readers_of() {   # FILE: PKGNAMEs of the set whose SCAN_DEPENDS lists FILE (bob's stored scan)
    "$bob" -c "$bob_b/config.lua" util print-pscan 2>/dev/null | awk -v f="$1" '
        /^PKGNAME=/ { name = substr($0, 9) }
        /^SCAN_DEPENDS=/ {
            n = split(substr($0, 14), a, " ")
            for (i = 1; i <= n; i++) {
                p = a[i]; lp = length(p); lf = length(f)
                if (lp >= lf && substr(p, lp - lf + 1) == f && (lp == lf || substr(p, lp - lf, 1) == "/")) { print name; break }
            }
        }' | sort -u | paste -sd, -
}

log "builds: portsynth $rev; $bob_version; kit $kit; ${#build_set[@]} pkgpaths; 2 builders, $jobs_text; $reps reps"
bstarted=$(date -u '+%Y-%m-%d %H:%M UTC')
for rep in $(seq 1 "$reps"); do
    if [ $((rep % 2)) -eq 1 ]; then order=(bob portsynth); else order=(portsynth bob); fi
    restore_btree
    i=1; for t in "${order[@]}"; do fresh "$t"; btimed "$rep" bulk "$t" $i; i=$((i + 1)); done
    if [ "$dynamic" = 1 ]; then
        # The same bulk again with the first one's history: packages removed, state kept.
        rm -f "$ps_repo"/*.tgz "$bob_repo"/*.tgz
        # bob trusts its database over the repository: `bob build` would rebuild nothing.
        bob_subcommand="rebuild ${build_set[*]}"
        i=1; for t in "${order[@]}"; do btimed "$rep" history "$t" $i; i=$((i + 1)); done
        bob_subcommand=
        continue
    fi
    [ "$bulk_only" = 1 ] && continue
    i=1; for t in "${order[@]}"; do btimed "$rep" nochange "$t" $i; i=$((i + 1)); done
    { cat "$bd/bsd.options.mk.orig"; printf '# bench-pkgsrc.sh edit %s\n' "$(date +%s.%N)"; } >"$bd/bsd.options.mk.edit"
    replace_file mk/bsd.options.mk "$bd/bsd.options.mk.edit"
    "$binary" --config "$ps_b/portsynth.toml" --json status >"$blogs/$rep-mkedit-portsynth.status.json" 2>/dev/null || true
    i=1; for t in "${order[@]}"; do btimed "$rep" mkedit "$t" $i; i=$((i + 1)); done
    [ "$rep" = 1 ] && readers_of mk/bsd.options.mk >"$bd/readers-bsd.options.mk"
    restore_btree
    i=1; for t in "${order[@]}"; do killtest "$rep" "$t" $i; i=$((i + 1)); done
done
restore_btree
echo
echo "portsynth pkgsrc BUILDS vs $bob_version, $(date -u '+%Y-%m-%d %H:%M UTC') (started $bstarted)"
echo "portsynth $rev; kit $(basename "$kit"); ${#build_set[@]} pkgpaths; 2 builders each, $jobs_text; $(nproc) CPUs; $reps reps"
echo "right set after the mk/bsd.options.mk edit (SCAN_DEPENDS lists it): $(cat "$bd/readers-bsd.options.mk" 2>/dev/null)"
echo
column -t -s$'\t' "$b_results"
echo
echo "raw: $b_results; logs: $blogs"
exit 0
fi

log "portsynth $rev; $bob_version; kit $kit; $(wc -l <"$pkgpaths") pkgpaths; $threads threads; $reps reps"
log "load at start: $(cut -d' ' -f1-3 /proc/loadavg)"
started=$(date -u '+%Y-%m-%d %H:%M UTC')
for rep in $(seq 1 "$reps"); do
    run_both "$rep" cold cold
    if [ "$rep" = 1 ]; then
        "$bob" -c "$bob_dir/config.lua" util print-pscan >"$workdir/bob.pscan" 2>/dev/null
    fi
    run_both "$rep" warm
    append_comment mk/bsd.options.mk
    run_both "$rep" options
    append_comment textproc/libxml2/buildlink3.mk
    run_both "$rep" bl3
done
readers_options=$(readers mk/bsd.options.mk)
readers_bl3=$(readers textproc/libxml2/buildlink3.mk)

# --- an edit that changes what pbulk-index prints (untimed, once) ---------------
cat >>"$tree/textproc/libxml2/buildlink3.mk" <<'EOF'
# bench-pkgsrc.sh: an edit that matters
PKG_FAIL_REASON+=	"bench-pkgsrc: textproc/libxml2/buildlink3.mk edited"
EOF
env RAYON_NUM_THREADS="$threads" "$binary" --config "$ps_dir/portsynth.toml" -v status \
    >"$logs/semantic-portsynth.out" 2>"$logs/semantic-portsynth.err"
unshare -m --propagation private "$bob" -c "$bob_dir/config.lua" scan >"$logs/semantic-bob.out" 2>"$logs/semantic-bob.err"
"$bob" -c "$bob_dir/config.lua" util print-pscan >"$logs/semantic-bob.pscan" 2>/dev/null
# bob after `bob clean` (what it would have said had it noticed)
"$bob" -c "$bob_dir/config.lua" clean >"$logs/semantic-bob-clean.out" 2>&1
unshare -m --propagation private "$bob" -c "$bob_dir/config.lua" scan >"$logs/semantic-bob-cleaned.out" 2>"$logs/semantic-bob-cleaned.err"
restore_tree

# --- the whole tree (optional) -----------------------------------------------------
if [ "$whole" = 1 ]; then
    wdir=$workdir/whole
    if [ ! -e "$wdir/tree/.done" ]; then
        rm -rf "$wdir/tree" && mkdir -p "$wdir/tree"
        zstd -dc "$shared/pkgsrc-2014.tar.zst" | tar -x -C "$wdir/tree"
        touch "$wdir/tree/.done"
    fi
    cat >"$wdir/portsynth.toml" <<EOF
framework = "pkgsrc"
ports_dir = "$wdir/tree/pkgsrc"
build_base = "$wdir/base"
bootstrap_kit = "$kit"
EOF
    if [ ! -e "$wdir/.scanned" ]; then
        log "cold whole-tree scan (1-3 h on 2 CPUs; not paused around)"
        /usr/bin/time -f '%e %U %S' -o "$wdir/cold.time" env RAYON_NUM_THREADS="$threads" \
            "$binary" --config "$wdir/portsynth.toml" -v status >"$wdir/cold.out" 2>"$wdir/cold.err" \
            || die "the cold whole-tree status failed (exit $?), see $wdir/cold.err"
        touch "$wdir/.scanned"
    fi
    for rep in $(seq 1 "$reps"); do
        timed "$rep-whole-portsynth" env RAYON_NUM_THREADS="$threads" "$binary" --config "$wdir/portsynth.toml" -v status
        line=$(grep '^scan: ' "$logs/$rep-whole-portsynth.err" | tail -1)
        printf '%s\twhole\tportsynth\t1\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$rep" "$wall" "$cpu" \
            "$(echo "$line" | awk '{ print $(NF-3) }')" "$(echo "$line" | awk '{ print $2 }')" "$load" \
            "$(grep -E '^[0-9]+ to build' "$logs/$rep-whole-portsynth.out" | tail -1)" \
            "$(grep '^files: ' "$logs/$rep-whole-portsynth.err" | tail -1)" >>"$results"
    done
fi

# --- the table -----------------------------------------------------------------------
median() { sort -g | awk '{ v[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
col() {   # phase tool column
    awk -F'\t' -v p="$1" -v t="$2" -v c="$3" 'NR > 1 && $2 == p && $3 == t { print $c }' "$results"
}
ratios() {   # phase column: portsynth / bob of each repetition
    awk -F'\t' -v p="$1" -v c="$2" 'NR > 1 && $2 == p { v[$1 "," $3] = $c; r[$1] = 1 }
        END { for (k in r) if (v[k ",bob"] > 0) printf "%.3f\n", v[k ",portsynth"] / v[k ",bob"] }' "$results"
}
range() { sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { print lo "-" hi }'; }
echo
echo "portsynth pkgsrc scan vs $bob_version, $(date -u '+%Y-%m-%d %H:%M UTC') (started $started)"
echo "portsynth $rev; kit $(basename "$kit"); $(wc -l <"$pkgpaths") pkgpaths and their closure; $threads scan threads each"
echo "$(nproc) CPUs; $reps repetitions per phase, alternating which tool goes first; medians"
[ ${#pause[@]} -gt 0 ] && echo "paused while timing: process groups ${pause[*]}"
echo
printf '| %-8s | %-9s | %9s | %8s | %8s | %8s | %11s |\n' phase tool wall "wall x" CPU "CPU x" "bmake runs"
printf '|%s|\n' "----------|-----------|-----------|----------|----------|----------|-------------"
for phase in cold warm options bl3; do
    for tool in portsynth bob; do
        w=$(col $phase $tool 5 | median); c=$(col $phase $tool 6 | median); s=$(col $phase $tool 7 | median)
        if [ $tool = portsynth ]; then
            wr="$(ratios $phase 5 | median)x"; cr="$(ratios $phase 6 | median)x"
            # CPU times are counted in 10 ms ticks: no ratio of a few ticks
            awk -v a="$c" -v b="$(col $phase bob 6 | median)" 'BEGIN { exit !(a < 0.1 || b < 0.1) }' && cr="(< 0.1 s)"
        else
            wr=1 cr=1
        fi
        printf '| %-8s | %-9s | %8ss | %8s | %7ss | %8s | %11s |\n' $phase $tool "$w" "$wr" "$c" "$cr" "$s"
    done
done
echo
echo "wall x / CPU x: median over the repetitions of portsynth / bob measured in the same repetition;"
echo "CPU = user + system time of the whole process tree (wait4), counted in 10 ms ticks."
echo "bmake runs: pkgpaths each tool ran \`bmake pbulk-index\` in (its own count: portsynth -v, bob's summary line)."
echo "1-minute load during the measurements: $(awk -F'\t' 'NR > 1 && $2 != "whole" { print $9 }' "$results" | range)"
echo "pkgpaths that read the edited file (pbulk-index's SCAN_DEPENDS, in bob's scan):"
echo "  mk/bsd.options.mk: $readers_options;  textproc/libxml2/buildlink3.mk: $readers_bl3"
bob_part() { awk -F'\t' 'NR > 1 && $2 == "cold" && $3 == "bob" { print $11 }' "$results" | awk -v k="$1" '{ for (i = 1; i < NF; i++) if ($i == k) print $(i + 1) }' | median; }
echo "bob's cold runs by its own stopwatch (medians): creating the sandbox $(bob_part create) s, scanning $(bob_part scan) s, destroying the sandbox $(bob_part destroy) s"
echo "plans: portsynth: $(col cold portsynth 10 | sort -u | head -1)"
echo "       bob:       $(col cold bob 10 | sort -u | head -1)"
echo
echo "after an edit that changes pbulk-index's output (PKG_FAIL_REASON in textproc/libxml2/buildlink3.mk):"
echo "  portsynth: $(grep '^scan: ' "$logs/semantic-portsynth.err" | tail -1); $(grep -E '^[0-9]+ to build' "$logs/semantic-portsynth.out" | tail -1)"
echo "             $(grep -c 'bench-pkgsrc: textproc/libxml2/buildlink3.mk edited' "$logs/semantic-portsynth.out" || true) plan lines name the new PKG_FAIL_REASON"
echo "  bob:       $(grep -E '^All|^Scanned' "$logs/semantic-bob.out" | tail -1); $(grep -E '^[0-9]+ pending' "$logs/semantic-bob.out" | tail -1)"
echo "             $(grep -c '^PKG_FAIL_REASON=.*bench-pkgsrc' "$logs/semantic-bob.pscan" || true) records of its stored scan carry the new PKG_FAIL_REASON"
echo "  bob after 'bob clean': $(grep -E '^Scanned' "$logs/semantic-bob-cleaned.out" | tail -1); $(grep -E '^[0-9]+ pending' "$logs/semantic-bob-cleaned.out" | tail -1)"
if [ "$whole" = 1 ]; then
    echo
    echo "whole tree, warm no-change portsynth status: median $(col whole portsynth 5 | median) s wall, $(col whole portsynth 6 | median) s CPU;"
    echo "  $(col whole portsynth 8 | head -1) pkgpaths from the cache, $(col whole portsynth 7 | median) scanned; cold scan: $(cat "$workdir/whole/cold.time") (wall user sys)"
fi
echo
echo "raw numbers: $results; logs: $logs"
