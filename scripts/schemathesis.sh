#!/usr/bin/env bash
# Exercises the HTTP API with schemathesis (property-based tests generated from the OpenAPI
# document the API serves at /api/v1/openapi.json): no 5xx, no crash, every answer matching
# the document, authentication enforced.
#
# Starts `vigil run` on the vendored main corpus in a temporary data dir, waits until it is
# ready and has indexed events, runs schemathesis against it with a bounded number of
# examples and a time budget, and stops vigil. Exits non-zero when schemathesis finds a
# failure or vigil dies.
#
#   bash scripts/schemathesis.sh                 # default budget
#   ST_MAX_EXAMPLES=500 ST_MAX_TIME=900 bash scripts/schemathesis.sh   # a longer run
#
# Environment:
#   VIGIL_BIN        the vigil binary (default: built here, $CARGO_TARGET_DIR/debug/vigil)
#   ST_MAX_EXAMPLES  test cases per operation (default 100)
#   ST_MAX_TIME      time budget of the schemathesis run, seconds (default 180)
#   ST_SEED          random seed, for a reproducible run (default: random)
#   ST_REPORT_DIR    keep the JUnit report there (default: discarded)
#
# schemathesis is pinned and installed into its own virtualenv under $HOME/.cache/vigil
# (or the temp dir when that does not exist), not into the system Python.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

ST_VERSION=4.32.5
MAX_EXAMPLES=${ST_MAX_EXAMPLES:-100}
MAX_TIME=${ST_MAX_TIME:-180}
PYTHON=${PYTHON:-python3}

say() { echo "schemathesis.sh: $*"; }
die() {
    echo "schemathesis.sh: error: $*" >&2
    exit 1
}

tmp=$(mktemp -d)
vigil_pid=
cleanup() {
    if [ -n "$vigil_pid" ] && kill -0 "$vigil_pid" 2>/dev/null; then
        kill -TERM "$vigil_pid" 2>/dev/null || true
        for _ in $(seq 50); do
            kill -0 "$vigil_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$vigil_pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

# schemathesis, pinned, in its own virtualenv.
if [ -d "$HOME/.cache/vigil" ]; then
    venv="$HOME/.cache/vigil/schemathesis-$ST_VERSION"
else
    venv="$tmp/schemathesis-venv"
fi
if [ ! -x "$venv/bin/st" ]; then
    say "installing schemathesis $ST_VERSION into $venv"
    "$PYTHON" -m venv "$venv" || die "cannot create a virtualenv (python3-venv missing?)"
    PIP_DISABLE_PIP_VERSION_CHECK=1 "$venv/bin/pip" install --quiet "schemathesis==$ST_VERSION" ||
        die "pip install schemathesis==$ST_VERSION failed"
fi

# The vigil binary.
if [ -n "${VIGIL_BIN:-}" ]; then
    vigil=$VIGIL_BIN
else
    cargo build --quiet --bin vigil
    vigil="${CARGO_TARGET_DIR:-target}/debug/vigil"
fi
[ -x "$vigil" ] || die "no vigil binary at $vigil"

# A free port and a throw-away token.
port=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
token=$("$PYTHON" -c 'import secrets; print(secrets.token_hex(24))')
base="http://127.0.0.1:$port"

gunzip -c testdata/corpus/main.log.gz >"$tmp/main.log"
say "starting vigil run on 127.0.0.1:$port over $(wc -l <"$tmp/main.log") corpus lines"
"$vigil" run --data-dir "$tmp/data" --file "$tmp/main.log" --listen "127.0.0.1:$port" \
    --api-token "$token" >"$tmp/vigil.log" 2>&1 &
vigil_pid=$!

# GET url [auth] -> prints "status body"; "000" when nothing answers.
http_get() {
    "$PYTHON" - "$1" "${2:-}" <<'EOF'
import sys, urllib.request, urllib.error
request = urllib.request.Request(sys.argv[1])
if sys.argv[2]:
    request.add_header("Authorization", "Bearer " + sys.argv[2])
try:
    with urllib.request.urlopen(request, timeout=5) as r:
        print(r.status, r.read().decode("utf-8", "replace"))
except urllib.error.HTTPError as e:
    print(e.code, e.read().decode("utf-8", "replace"))
except Exception:
    print("000")
EOF
}

# Ready, and the corpus (or some of it) searchable: the generated requests then meet hits.
deadline=$((SECONDS + 120))
until [ "$(http_get "$base/readyz" | cut -d' ' -f1)" = 200 ] &&
    http_get "$base/api/v1/search?limit=1" "$token" | grep -q '"total":[1-9]'; do
    if ! kill -0 "$vigil_pid" 2>/dev/null; then
        cat "$tmp/vigil.log" >&2
        die "vigil exited before it was ready"
    fi
    if [ $SECONDS -ge $deadline ]; then
        cat "$tmp/vigil.log" >&2
        die "vigil not ready with events indexed after 120 s"
    fi
    sleep 0.5
done
say "vigil ready: $(http_get "$base/api/v1/search?limit=1" "$token" | grep -o '"total":[0-9]*')"

# positive_data_acceptance is left out: the document cannot describe which strings are valid
# queries, so schema-valid requests with a query that does not parse are rightly 400s.
report_args=()
if [ -n "${ST_REPORT_DIR:-}" ]; then
    mkdir -p "$ST_REPORT_DIR"
    report_args=(--report junit --report-dir "$ST_REPORT_DIR")
fi
seed_args=()
if [ -n "${ST_SEED:-}" ]; then
    seed_args=(--seed "$ST_SEED")
fi
status=0
"$venv/bin/st" run "$base/api/v1/openapi.json" \
    --url "$base" \
    -H "Authorization: Bearer $token" \
    --checks all \
    --exclude-checks positive_data_acceptance \
    --max-examples "$MAX_EXAMPLES" \
    --max-time "$MAX_TIME" \
    --workers 1 \
    --request-timeout 30 \
    "${seed_args[@]}" "${report_args[@]}" || status=$?

# The process must have survived all of it.
if ! kill -0 "$vigil_pid" 2>/dev/null; then
    cat "$tmp/vigil.log" >&2
    die "vigil died during the run"
fi
if [ "$(http_get "$base/healthz" | cut -d' ' -f1)" != 200 ]; then
    cat "$tmp/vigil.log" >&2
    die "vigil unhealthy after the run"
fi
if [ $status -ne 0 ]; then
    say "schemathesis found failures (exit $status); vigil's log:"
    tail -n 50 "$tmp/vigil.log" >&2
    exit $status
fi
say "passed: no 5xx, every answer matches the document"
