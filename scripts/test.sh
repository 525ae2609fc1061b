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
step cargo fmt --all --check
step cargo clippy --workspace --all-targets --quiet -- -D warnings
step cargo nextest run --workspace --no-fail-fast

if [ ${#failed[@]} -gt 0 ]; then
    printf 'test.sh: FAILED: %s\n' "${failed[@]}" >&2
    exit 1
fi
echo "test.sh: all checks passed"
