#!/usr/bin/env bash
# Installs the host prerequisites (Debian, as root) and builds the release
# binary. Idempotent: installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

# Programs the builder, the ports framework and the tests need, and the
# Debian package that provides each.
declare -A NEEDS=(
    [bmake]=bmake [zstd]=zstd [curl]=curl [patch]=patch [gcc]=gcc [make]=make
    [python3]=python3 [sha256sum]=coreutils [tar]=tar [gzip]=gzip [ip]=iproute2
    [ps]=procps [unshare]=util-linux [mkfs.ext4]=e2fsprogs
    # The Slurm testbed (scripts/slurm-testbed, docs/SLURM.md).
    [slurmctld]=slurmctld [slurmd]=slurmd [sbatch]=slurm-client [slurmdbd]=slurmdbd
    [munged]=munge [mariadbd]=mariadb-server-core [mariadb]=mariadb-client-core
    [nsenter]=util-linux [flock]=util-linux
    # The HTML report's browser tests (tests/report_browser.rs).
    [chromium]=chromium [chromedriver]=chromium-driver
)
missing=()
for program in "${!NEEDS[@]}"; do
    command -v "$program" >/dev/null 2>&1 || missing+=("${NEEDS[$program]}")
done
# Libraries and tools the real pkgsrc tree's bootstrap and packages use from
# the host (../shared/pkgsrc/README.md): they are pkgsrc's "builtin" ones.
for package in libc6-dev build-essential g++ bzip2 xz-utils groff-base zlib1g-dev libbz2-dev \
    libncurses-dev liblzma-dev libssl-dev bsdutils; do
    dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup.sh: missing packages (${missing[*]}); run as root to install them" >&2
        exit 1
    fi
    echo "setup.sh: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v cargo >/dev/null 2>&1; then
    [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
fi
if ! command -v cargo >/dev/null 2>&1; then
    echo "setup.sh: installing the Rust toolchain (rustup)"
    apt-get install -y -qq --no-install-recommends ca-certificates >/dev/null
    curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal >/dev/null
    export PATH="$HOME/.cargo/bin:$PATH"
fi

scripts/make-distfiles
cargo build --release --locked
echo "setup.sh: ready: $(pwd)/target/release/portsynth"
