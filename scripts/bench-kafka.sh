#!/usr/bin/env bash
# Kafka shippers side by side, on one audit log and one broker:
#
#   1. vigil collect   file -> topic vigil-audit    (parse, HMAC checks, redact, sign)
#   2. rsyslog         file -> topic rsyslog-audit  (imfile -> omkafka, the raw line)
#   3. vigil index     topic vigil-audit -> index   (verify, parse, index)
#
# Each is timed from its start until everything is there (the topic's watermarks sum to
# EVENTS, or the index total is EVENTS), and its CPU seconds (user + system, all threads,
# from /proc/PID/stat) are read at that moment. Prints events/s and CPU seconds per million
# events of each, and the ratios vigil collect / rsyslog; then checks that every line reached
# rsyslog's topic once and unchanged, and that Vigil quarantined nothing.
#
#   bash scripts/bench-kafka.sh [EVENTS]        (default 200000, about 285 MB)
#
# Needs: tansu under ~/.cache/vigil/tansu (bash scripts/install-test-deps.sh builds it) or
# $VIGIL_TANSU; Debian's rsyslog and rsyslog-kafka and PyPI's confluent-kafka, installed here
# when missing. Debian's librdkafka (2.0) fails its ApiVersions handshake with tansu, so
# rsyslogd runs with LD_LIBRARY_PATH pointing at the newer librdkafka inside the
# confluent-kafka wheel.
#
# Environment: VIGIL_BENCH_KEEP=1 keeps the work directory (logs, configs, broker database);
# VIGIL_BENCH_CORPUS overrides the corpus whose lines are repeated; PYTHON the interpreter;
# VIGIL_BENCH_RSYSLOG_RESUBMIT=off runs omkafka without resubmitOnFailure (it then loses
# lines whenever librdkafka's local queue is full); VIGIL_BENCH_RSYSLOG_WORKERS=N gives
# rsyslog's main queue N workers (1 by default here, to keep the file's order).
set -euo pipefail

EVENTS=${1:-200000}
case $EVENTS in
'' | *[!0-9]*) echo "usage: bash scripts/bench-kafka.sh [EVENTS]" >&2 && exit 2 ;;
esac
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PYTHON=${PYTHON:-python3}
HELPER=$ROOT/scripts/bench_kafka.py
CORPUS=${VIGIL_BENCH_CORPUS:-$ROOT/testdata/corpus/main.log.gz}
TANSU=${VIGIL_TANSU:-$HOME/.cache/vigil/tansu/bin/tansu}
VIGIL=$ROOT/target/release/vigil
STALL=60 # seconds without progress before a shipper is declared stuck
RSYSLOG_RESUBMIT=${VIGIL_BENCH_RSYSLOG_RESUBMIT:-on}
case $RSYSLOG_RESUBMIT in
on | off) ;;
*) echo "bench-kafka: VIGIL_BENCH_RSYSLOG_RESUBMIT is on or off" >&2 && exit 2 ;;
esac
RSYSLOG_WORKERS=${VIGIL_BENCH_RSYSLOG_WORKERS:-1}
case $RSYSLOG_WORKERS in
'' | *[!0-9]* | 0) echo "bench-kafka: VIGIL_BENCH_RSYSLOG_WORKERS is a number" >&2 && exit 2 ;;
esac

say() { echo "bench-kafka: $*" >&2; }
die() {
    echo "bench-kafka: error: $*" >&2
    exit 1
}
helper() { "$PYTHON" "$HELPER" "$@"; }

# ------------------------------------------------------------------ dependencies
export DEBIAN_FRONTEND=noninteractive PIP_DISABLE_PIP_VERSION_CHECK=1
SUDO=
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo -n"; fi
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
missing=()
for pkg in rsyslog rsyslog-kafka; do
    dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]} (apt-get)"
    quiet $SUDO apt-get update || die "apt-get update failed"
    # The package may try to start the system rsyslog; this script never uses it.
    quiet $SUDO apt-get install -y --no-install-recommends "${missing[@]}" ||
        die "apt-get install ${missing[*]} failed"
fi
if ! "$PYTHON" -c 'import confluent_kafka' 2>/dev/null; then
    say "installing confluent-kafka (pip)"
    quiet "$PYTHON" -m pip install --root-user-action=ignore confluent-kafka ||
        die "pip install confluent-kafka failed"
fi
"$TANSU" --version >/dev/null 2>&1 ||
    die "no tansu at $TANSU: run bash scripts/install-test-deps.sh (or set VIGIL_TANSU)"
[ -r "$CORPUS" ] || die "no corpus at $CORPUS (set VIGIL_BENCH_CORPUS)"

say "building vigil (cargo build --release)"
(cd "$ROOT" && cargo build --release --quiet) || die "cargo build --release failed"
COMMIT=$(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo unknown)
if [ -n "$(cd "$ROOT" && git status --porcelain --untracked-files=no 2>/dev/null || true)" ]; then
    COMMIT="$COMMIT with uncommitted changes"
fi
TANSU_VERSION=$("$TANSU" --version | awk '{print $NF}')

# The librdkafka bundled with confluent-kafka, for rsyslogd's omkafka.
NEW_RDKAFKA=$("$PYTHON" - <<'EOF'
import glob, os, confluent_kafka
pkg = os.path.dirname(confluent_kafka.__file__)
for pattern in ("../confluent_kafka.libs/librdkafka*.so*", ".libs/librdkafka*.so*",
                "librdkafka*.so*", "../confluent_kafka*.libs/librdkafka*.so*"):
    found = sorted(glob.glob(os.path.join(pkg, pattern)))
    if found:
        print(os.path.realpath(found[0]))
        break
EOF
)
[ -n "$NEW_RDKAFKA" ] || die "no librdkafka found inside the confluent-kafka package"

# ------------------------------------------------------------------ processes and cleanup
WORK=$(mktemp -d "${TMPDIR:-/tmp}/vigil-bench-kafka.XXXXXX")
STARTED=()        # pids of everything this script started
declare -A REAPED # ... and those of them already stopped and waited for: their pids may
                  # belong to someone else by now, so they are never signalled again

# Running (not exited, not a zombie waiting to be reaped).
alive() {
    local state
    state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f1) || return 1
    [ -n "$state" ] && [ "$state" != Z ]
}
# SIGTERM, then SIGKILL after 10 s. Only our own children, by pid.
stop_pid() {
    local pid=$1 i
    [ -z "${REAPED[$pid]:-}" ] || return 0
    if alive "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        for i in $(seq 100); do
            alive "$pid" || break
            sleep 0.1
        done
    fi
    if alive "$pid"; then
        say "pid $pid did not exit 10 s after SIGTERM; killing it"
        kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
    REAPED[$pid]=1
}
cleanup() {
    local pid
    for pid in "${STARTED[@]}"; do stop_pid "$pid"; done
    if [ "${VIGIL_BENCH_KEEP:-}" = 1 ]; then
        say "kept $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

now() { date +%s.%N; }
# Dies with MESSAGE, saying how the broker ended when it is gone.
fail() {
    local status=0
    if [ -n "${BROKER_PID:-}" ] && ! alive "$BROKER_PID"; then
        wait "$BROKER_PID" 2>/dev/null || status=$?
        REAPED[$BROKER_PID]=1
        say "the broker is gone (exit status $status$([ "$status" -gt 128 ] && echo ", signal $((status - 128))")); its log ends:"
        tail -15 "$WORK/kafka/tansu.log" >&2
        BROKER_PID=
    fi
    die "$*"
}
free_port() {
    "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# ------------------------------------------------------------------ broker
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
mkdir -p "$WORK/kafka"
BROKER_PID=
for attempt in 1 2 3 4 5; do
    PORT=$(free_port)
    BROKERS=127.0.0.1:$PORT
    (
        cd "$WORK/kafka"
        # tansu reads its flags from the environment too: keep stray ones out.
        exec env -u CLUSTER_ID -u LISTENER_URL -u ADVERTISED_LISTENER_URL -u STORAGE_ENGINE \
            -u SCHEMA_REGISTRY -u OTEL_EXPORTER_OTLP_ENDPOINT \
            "$TANSU" broker --listener-url "tcp://$BROKERS" \
            --advertised-listener-url "tcp://$BROKERS" --storage-engine sqlite://tansu.db
    ) >>"$WORK/kafka/tansu.log" 2>&1 </dev/null &
    BROKER_PID=$!
    STARTED+=("$BROKER_PID")
    for i in $(seq 150); do
        alive "$BROKER_PID" || break
        if (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then break; fi
        sleep 0.2
    done
    sleep 0.3 # tansu exits when it could not bind: still running means the port is its own
    if alive "$BROKER_PID" && (exec 3<>"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null; then
        break
    fi
    stop_pid "$BROKER_PID"
    BROKER_PID=
done
[ -n "$BROKER_PID" ] || die "tansu did not start: $(tail -5 "$WORK/kafka/tansu.log")"
say "tansu $TANSU_VERSION on $BROKERS (pid $BROKER_PID, SQLite in $WORK/kafka)"

# ------------------------------------------------------------------ the audit log
LOG=$WORK/audit.log
say "generating $EVENTS events from $CORPUS"
GEN=$(helper gen "$CORPUS" "$LOG" "$EVENTS")
BYTES=$("$PYTHON" -c 'import json, sys; print(json.loads(sys.argv[1])["bytes"])' "$GEN")
LONGEST=$("$PYTHON" -c 'import json, sys; print(json.loads(sys.argv[1])["longest_line"])' "$GEN")
say "$LOG: $EVENTS lines, $BYTES bytes, longest line $LONGEST bytes"

# Both topics alike: 3 partitions, as vigil creates its own by default.
helper create-topics "$BROKERS" vigil-audit:3 rsyslog-audit:3

# Waits until TOPIC holds EVENTS messages (or the index total is EVENTS) and writes the
# result JSON to $WORK/NAME.json. Args: NAME PID START wait-topic|wait-index ARGS...
measure() {
    local name=$1 pid=$2 start=$3
    shift 3
    helper "$@" "$EVENTS" --pid "$pid" --start "$start" --broker-pid "$BROKER_PID" \
        --stall "$STALL" >"$WORK/$name.json" || fail "measuring $name failed"
    say "$name: $(cat "$WORK/$name.json")"
}

export VIGIL_LOG=warn VIGIL_NODE_NAME=bench
DATA=$WORK/vigil-data

# ------------------------------------------------------------------ 1. vigil collect
say "1/3 vigil collect -> vigil-audit"
START=$(now)
"$VIGIL" collect --kafka "$BROKERS" --data-dir "$DATA" --file "$LOG" \
    >"$WORK/collect.log" 2>&1 </dev/null &
PID=$!
STARTED+=("$PID")
measure collect "$PID" "$START" wait-topic "$BROKERS" vigil-audit
stop_pid "$PID"

# ------------------------------------------------------------------ 2. rsyslog
say "2/3 rsyslog imfile -> omkafka -> rsyslog-audit"
RS=$WORK/rsyslog
mkdir -p "$RS/state" "$RS/lib"
ln -sf "$NEW_RDKAFKA" "$RS/lib/librdkafka.so.1"
# No imuxsock/imklog: nothing but the file in and Kafka out, so it leaves the system's
# /dev/log alone. maxMessageSize above the longest audit line (the default, 8k, truncates).
# The same producer settings as Vigil's: idempotent, acks=all, lz4, linger 5 ms, 64 MiB of
# local queue, one key for the whole file (so one partition, in order, as Vigil keys by
# file). imfile reads far faster than the broker takes, so librdkafka's queue fills; omkafka
# then drops the message ("Local: Queue full"), whatever action.resumeRetryCount says, unless
# resubmitOnFailure is on (VIGIL_BENCH_RSYSLOG_RESUBMIT=off shows the loss); resubmitted
# lines land out of order. One worker on the main queue: rsyslog's default starts a second
# one under load, and two workers reorder about one line in eight (VIGIL_BENCH_RSYSLOG_WORKERS).
cat >"$RS/rsyslog.conf" <<EOF
global(workDirectory="$RS/state" maxMessageSize="1m")
main_queue(queue.workerThreads="$RSYSLOG_WORKERS")
module(load="imfile")
module(load="omkafka")
template(name="raw" type="string" string="%rawmsg%")
input(type="imfile" File="$LOG" Tag="vault" ruleset="kafka" readMode="0")
ruleset(name="kafka") {
  action(type="omkafka" name="kafka" broker=["$BROKERS"] topic="rsyslog-audit"
         template="raw" key="vault-audit"
         confParam=["compression.codec=lz4", "acks=all", "enable.idempotence=true",
                    "linger.ms=5", "queue.buffering.max.kbytes=65536"]
         resubmitOnFailure="$RSYSLOG_RESUBMIT" action.resumeRetryCount="-1")
}
EOF
LD_LIBRARY_PATH=$RS/lib rsyslogd -N1 -f "$RS/rsyslog.conf" >"$RS/check.log" 2>&1 ||
    die "rsyslogd rejected its config: $(cat "$RS/check.log")"
START=$(now)
LD_LIBRARY_PATH=$RS/lib rsyslogd -n -f "$RS/rsyslog.conf" -i "$RS/rsyslogd.pid" \
    >"$RS/rsyslogd.log" 2>&1 </dev/null &
PID=$!
STARTED+=("$PID")
sleep 0.5
grep -q "$NEW_RDKAFKA" "/proc/$PID/maps" 2>/dev/null ||
    say "warning: rsyslogd does not have $NEW_RDKAFKA mapped (yet?): $(grep rdkafka "/proc/$PID/maps" | head -1)"
measure rsyslog "$PID" "$START" wait-topic "$BROKERS" rsyslog-audit
stop_pid "$PID"

# ------------------------------------------------------------------ 3. vigil index
say "3/3 vigil index <- vigil-audit"
START=$(now)
"$VIGIL" index --kafka "$BROKERS" --data-dir "$DATA" >"$WORK/index.log" 2>&1 </dev/null &
PID=$!
STARTED+=("$PID")
measure index "$PID" "$START" wait-index "$VIGIL" "$DATA" --poll 0.5
stop_pid "$PID"

# ------------------------------------------------------------------ correctness
alive "$BROKER_PID" || fail "the broker stopped"
say "checking rsyslog-audit against the file, line by line"
helper verify-raw "$BROKERS" rsyslog-audit "$LOG" >"$WORK/verify.json" ||
    fail "verify-raw failed"
QUARANTINED=$(helper count "$BROKERS" vigil-quarantine 2>/dev/null || echo 0)
QUARANTINE_FILE=$(wc -l <"$DATA/quarantine.jsonl" 2>/dev/null || echo 0)

# ------------------------------------------------------------------ report
# rsyslogd's complaints, summarised: one line per message that did not fit the queue is many.
RSYSLOG_QUEUE_FULL=$(grep -c 'Local: Queue full' "$RS/rsyslogd.log" || true)
RSYSLOG_NOISE=$(grep -v -e '^$' -e 'Local: Queue full' -e 'internal message (6,' "$RS/rsyslogd.log" | cut -c1-240 | head -5 || true)
if [ "${RSYSLOG_QUEUE_FULL:-0}" -gt 0 ]; then
    RSYSLOG_NOISE="omkafka: $RSYSLOG_QUEUE_FULL x 'Failed to produce ... Local: Queue full' (resubmitOnFailure=$RSYSLOG_RESUBMIT, $RSYSLOG_WORKERS main queue worker(s))
$RSYSLOG_NOISE"
fi
RSYSLOG_VERSION=$(rsyslogd -v 2>/dev/null | awk 'NR == 1 {print $2}' || true)
NEW_RDKAFKA_VERSION=$("$PYTHON" -c 'import confluent_kafka; print(confluent_kafka.libversion()[0])')
VIGIL_RDKAFKA_VERSION=$(sed -n '/^name = "rdkafka-sys"/{n;s/.*+\([0-9.]*\)".*/\1/p}' "$ROOT/Cargo.lock")
VERSIONS="vigil $("$VIGIL" --version | awk '{print $NF}') ($COMMIT, librdkafka $VIGIL_RDKAFKA_VERSION), \
rsyslog $RSYSLOG_VERSION with librdkafka $NEW_RDKAFKA_VERSION, tansu $TANSU_VERSION; \
load average $LOAD_BEFORE before, $(cut -d' ' -f1-3 /proc/loadavg) after"
"$PYTHON" - "$WORK" "$EVENTS" "$BYTES" "$QUARANTINED" "$QUARANTINE_FILE" "$VERSIONS" \
    "$RSYSLOG_NOISE" <<'EOF'
import json, os, sys
work, events, size, quarantined, quarantine_file, versions, rsyslog_noise = (
    sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5], sys.argv[6], sys.argv[7])
r = {n: json.load(open(os.path.join(work, n + ".json"))) for n in ("collect", "rsyslog", "index")}
verify = json.load(open(os.path.join(work, "verify.json")))
label = {"collect": "vigil collect (file -> Kafka)", "rsyslog": "rsyslog imfile -> omkafka",
         "index": "vigil index (Kafka -> index)"}
print()
print(f"{events} events, {size / 1e6:.0f} MB, {os.cpu_count()} CPUs; {versions}")
print(f"{'shipper':32} {'delivered':>10} {'seconds':>8} {'first at':>8} {'events/s':>9} {'CPU s':>7} "
      f"{'CPU s/M ev':>10} {'peak RSS MB':>11} {'broker CPU s':>12}")
for n in ("collect", "rsyslog", "index"):
    x = r[n]
    x["eps"] = x["count"] / x["seconds"] if x["seconds"] > 0 else 0
    x["cpm"] = x["cpu"] / x["count"] * 1e6 if x["count"] and x["cpu"] is not None else float("nan")
    print(f"{label[n]:32} {x['count']:>10} {x['seconds']:>8.1f} {x['first_seconds'] or 0:>8.1f} {x['eps']:>9,.0f} {x['cpu']:>7.2f} "
          f"{x['cpm']:>10.1f} {x['rss_peak_mb'] or 0:>11.0f} {x['broker_cpu'] or 0:>12.1f}")
c, s = r["collect"], r["rsyslog"]
print()
print(f"vigil collect / rsyslog: events/s x{c['eps'] / s['eps']:.2f}, "
      f"CPU s per million events x{c['cpm'] / s['cpm']:.2f}")
print("seconds: from the shipper's start until all events were there; first at: until the first was")
print()
problems = []
for n in ("collect", "rsyslog", "index"):
    if not r[n]["complete"]:
        problems.append(f"{label[n]}: {r[n]['count']} of {events} delivered")
if verify["exact"] != events or verify["messages"] != events:
    problems.append(f"rsyslog-audit vs the file: {json.dumps(verify)}")
notes = []
if verify["out_of_order"]:
    notes.append(f"rsyslog-audit: {verify['out_of_order']} messages out of file order "
                 f"(per partition: {verify['partitions']})")
if quarantined.strip() not in ("0", ""):
    problems.append(f"vigil-quarantine holds {quarantined.strip()} messages")
if quarantine_file.strip() not in ("0", ""):
    problems.append(f"the collector quarantined {quarantine_file.strip()} lines")
if rsyslog_noise.strip():
    print("rsyslogd said:\n  " + rsyslog_noise.strip().replace("\n", "\n  "))
for note in notes:
    print("note: " + note)
if problems:
    print("PROBLEMS:")
    for p in problems:
        print("  " + p)
    sys.exit(1)
print(f"correct: vigil-audit and rsyslog-audit hold {events} messages each; every line is in "
      f"rsyslog-audit once, byte for byte; the index holds {events} events; nothing quarantined")
EOF
