#!/usr/bin/env bash
# THE test command: installs the test dependencies, then checks formatting,
# lints and runs every test of the workspace (real OpenBao included).
# Run it from anywhere: bash scripts/test.sh
# Self-contained: the tests read the corpus vendored in testdata/corpus.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# A build cache shared between runs: under $HOME/.cache/vigil when that exists
# (CI creates it). An explicit CARGO_TARGET_DIR wins.
if [ "${CI:-}" = true ]; then
    mkdir -p "$HOME/.cache/vigil"
fi
if [ -d "$HOME/.cache/vigil" ] && [ -z "${CARGO_TARGET_DIR:-}" ]; then
    export CARGO_TARGET_DIR="$HOME/.cache/vigil/target"
    mkdir -p "$CARGO_TARGET_DIR"
fi

bash scripts/install-test-deps.sh

# Every step runs even when an earlier one failed, so one run shows all the
# problems; the exit status is non-zero if any step failed.
failed=()
step() {
    echo "test.sh: $*"
    if ! "$@"; then
        failed+=("$*")
    fi
}
# Fuzz targets, ten seconds each (fuzz/README.md documents the longer runs). libFuzzer
# needs a nightly toolchain; without one the step says so and is skipped.
fuzz_short() {
    if ! cargo +nightly --version >/dev/null 2>&1; then
        echo "test.sh: no nightly toolchain: fuzz targets skipped (see fuzz/README.md)"
        return 0
    fi
    local target
    for target in $(cd fuzz && cargo +nightly fuzz list); do
        (cd fuzz && CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$PWD/target}" \
            cargo +nightly fuzz run "$target" -- -max_total_time=10 -print_final_stats=0 \
            >/tmp/vigil-fuzz-"$target".log 2>&1) || {
            tail -n 40 /tmp/vigil-fuzz-"$target".log >&2
            return 1
        }
        echo "test.sh: fuzz $target: 10 s, no crash"
    done
}
if [ -d "$HOME/.cache/vigil" ]; then
    export FUZZ_TARGET_DIR="$HOME/.cache/vigil/fuzz-target"
fi

step cargo fmt --all --check
step cargo clippy --workspace --all-targets --quiet -- -D warnings
step cargo nextest run --workspace --no-fail-fast
step fuzz_short
# The HTTP API against its OpenAPI document: no 5xx, every answer as documented.
step env VIGIL_BIN="${CARGO_TARGET_DIR:-target}/debug/vigil" bash scripts/schemathesis.sh

if [ ${#failed[@]} -gt 0 ]; then
    printf 'test.sh: FAILED: %s\n' "${failed[@]}" >&2
    exit 1
fi
echo "test.sh: all checks passed"
