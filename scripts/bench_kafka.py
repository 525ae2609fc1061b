#!/usr/bin/env python3
"""Helper of scripts/bench-kafka.sh: generates the audit log, creates topics, waits for a
shipper to deliver every event (measuring its wall time and CPU), and checks what rsyslog
put on its topic against the file. Kafka through confluent-kafka (its bundled librdkafka
talks to tansu; Debian's 2.0 does not). Never sends record headers (tansu breaks on them).

    bench_kafka.py gen CORPUS OUT EVENTS
    bench_kafka.py create-topics BROKERS TOPIC:PARTITIONS...
    bench_kafka.py wait-topic BROKERS TOPIC EVENTS --pid PID --start T0 [--broker-pid PID]
    bench_kafka.py wait-index VIGIL DATA_DIR EVENTS --pid PID --start T0 [--broker-pid PID]
    bench_kafka.py count BROKERS TOPIC
    bench_kafka.py verify-raw BROKERS TOPIC FILE

wait-* print one JSON object: count (what was there at the end), seconds (from T0, the
shipper's start as time.time(), to the poll that first saw EVENTS, or to the last progress
when it never got there), cpu (user + system seconds of PID at that moment), rss_peak_mb,
broker_cpu (the broker's CPU seconds over the same span), complete (bool), first_seconds (from T0 to the first poll that saw any).
"""

import gzip
import argparse
import hashlib
import json
import os
import subprocess
import sys
import time

POLL = 0.2  # seconds between counts
CLK_TCK = os.sysconf("SC_CLK_TCK")


def die(msg):
    sys.exit(f"bench_kafka.py: {msg}")


# ---------------------------------------------------------------- generating the audit log


def gen(args):
    """EVENTS lines: the corpus repeated, request ids made unique per copy (as `vigil bench`
    does), the last copy cut short. Lines keep the corpus's own bytes apart from the id."""
    with (gzip.open if args.corpus.endswith(".gz") else open)(args.corpus, "rb") as f:
        corpus = [line for line in f.read().split(b"\n") if line.strip()]
    if not corpus:
        die(f"{args.corpus} is empty")
    # Locate each line's request id once: `"request":{..."id":"<id>"` as Vault writes it
    # (request.id is the first key of request). Lines without one get a bench_copy field.
    located = []
    for line in corpus:
        entry = json.loads(line)
        rid = (entry.get("request") or {}).get("id")
        needle = b'"request":{"id":"' + rid.encode() + b'"' if isinstance(rid, str) else None
        if needle and line.count(needle) == 1:
            at = line.index(needle) + len(b'"request":{"id":"')
            located.append((line[:at], line[at:]))  # the id is at the start of tail
        elif rid is not None:
            die(f"request.id not where expected in: {line[:200]!r}")
        else:
            located.append((None, line))
    written = size = 0
    longest = 0
    with open(args.out, "wb", buffering=1 << 20) as out:
        copy = 0
        while written < args.events:
            for head, tail in located:
                if written == args.events:
                    break
                if head is None:  # no request id: add a field to make the line unique
                    line = tail[:-1] + b',"bench_copy":' + str(copy).encode() + b"}\n"
                else:
                    line = head + str(copy).encode() + b"-" + tail + b"\n"
                out.write(line)
                written += 1
                size += len(line)
                longest = max(longest, len(line) - 1)
            copy += 1
    print(json.dumps({"events": written, "bytes": size, "longest_line": longest}))


# ---------------------------------------------------------------- Kafka


def consumer(brokers):
    from confluent_kafka import Consumer

    return Consumer(
        {
            "bootstrap.servers": brokers,
            "group.id": "vigil-bench-reader",
            "enable.auto.commit": False,
            "allow.auto.create.topics": False,
        }
    )


def create_topics(args):
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": args.brokers})
    wanted = []
    for spec in args.topics:
        name, _, partitions = spec.partition(":")
        wanted.append(NewTopic(name, int(partitions or 1), 1))
    for name, future in admin.create_topics(wanted).items():
        try:
            future.result(30)
        except KafkaException as e:
            if e.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise


class TopicCounter:
    """Messages in a topic: the high watermarks minus the low ones, over its partitions."""

    def __init__(self, brokers, topic):
        self.topic = topic
        self.consumer = consumer(brokers)
        self.partitions = None

    def __call__(self):
        from confluent_kafka import TopicPartition

        if self.partitions is None:
            meta = self.consumer.list_topics(self.topic, timeout=10).topics.get(self.topic)
            if meta is None or meta.error is not None or not meta.partitions:
                return 0
            self.partitions = sorted(meta.partitions)
        total = 0
        for p in self.partitions:
            low, high = self.consumer.get_watermark_offsets(
                TopicPartition(self.topic, p), timeout=10, cached=False
            )
            total += max(high - low, 0)
        return total


class IndexCounter:
    """Events in a Vigil index: `vigil search '*' --limit 1` prints the total on stderr."""

    def __init__(self, vigil, data_dir):
        self.cmd = [vigil, "search", "--data-dir", data_dir, "--limit", "1", "*"]

    def __call__(self):
        out = subprocess.run(
            self.cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=60
        )
        if out.returncode != 0:
            return 0  # no index yet
        # "<hits> of <total> matching events"
        for line in out.stderr.splitlines():
            words = line.split()
            if len(words) >= 3 and words[1] == "of" and words[0].isdigit():
                return int(words[2])
        return 0


def cpu_seconds(pid):
    """utime + stime of a process (all its threads), in seconds; None once it is gone."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    # After the comm field: state is fields[0], utime fields[11], stime fields[12].
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def running(pid):
    """Not exited, and not a zombie its parent has yet to reap."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def rss_peak_mb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def wait(count, args):
    """Polls `count` until it reaches args.events, or makes no progress for args.stall
    seconds, or args.timeout passes. Prints the JSON result; exit status 0 either way (the
    caller reports an incomplete delivery)."""
    broker_cpu0 = cpu_seconds(args.broker_pid)
    deadline = time.time() + args.timeout
    last, last_change = -1, time.time()
    first = None  # seconds from T0 to the first poll that saw anything
    errors = 0
    while True:
        try:
            n = count()
        except Exception as e:  # a dropped connection: librdkafka reconnects; count again
            errors += 1
            print(f"bench_kafka.py: counting failed ({e}); retrying", file=sys.stderr)
            if errors > 20 or not running(args.broker_pid or args.pid):
                raise
            time.sleep(1)
            continue
        now = time.time()
        if n != last:
            if first is None and n > 0:
                first = now - args.start
            last, last_change = n, now
            snapshot = (now - args.start, cpu_seconds(args.pid), cpu_seconds(args.broker_pid))
        if n >= args.events:
            break
        if not running(args.pid):
            print(f"bench_kafka.py: process {args.pid} exited at {n} events", file=sys.stderr)
            break
        if now > deadline or (n > 0 and now - last_change > args.stall) or (
            n == 0 and now - args.start > args.stall * 3
        ):
            break
        time.sleep(args.poll)
    seconds, cpu, broker_cpu1 = snapshot
    peak = rss_peak_mb(args.pid)
    # A little longer: more than EVENTS would mean duplicates.
    if last >= args.events:
        time.sleep(args.settle)
        last = max(last, count())
    result = {
        "count": last,
        "complete": last == args.events,
        "seconds": round(seconds, 3),
        "first_seconds": round(first, 3) if first is not None else None,
        "cpu": cpu,
        "rss_peak_mb": peak,
        "broker_cpu": (
            round(broker_cpu1 - broker_cpu0, 2)
            if broker_cpu0 is not None and broker_cpu1 is not None
            else None
        ),
    }
    print(json.dumps(result))


def wait_topic(args):
    wait(TopicCounter(args.brokers, args.topic), args)


def wait_index(args):
    wait(IndexCounter(args.vigil, args.data_dir), args)


def count(args):
    print(TopicCounter(args.brokers, args.topic)())


def verify_raw(args):
    """Every message of TOPIC against the lines of FILE: each line exactly once, byte for
    byte, and in file order within a partition. Prints a JSON summary: messages, exact
    (matching a line), duplicates, missing lines, messages that are not a line (truncated: a
    prefix of one; other), out_of_order (messages behind a later line of the file already
    read from the same partition), partitions (messages per partition)."""
    from confluent_kafka import OFFSET_BEGINNING, TopicPartition

    lines = {}  # hash -> [line number, times seen]
    with open(args.file, "rb") as f:
        for number, line in enumerate(f):
            lines[hashlib.blake2b(line.rstrip(b"\n"), digest_size=16).digest()] = [number, 0]
    c = consumer(args.brokers)
    meta = c.list_topics(args.topic, timeout=10).topics.get(args.topic)
    if meta is None or meta.error is not None:
        die(f"no topic {args.topic}")
    ends = {}
    for p in meta.partitions:
        low, high = c.get_watermark_offsets(TopicPartition(args.topic, p), timeout=10)
        if high > low:
            ends[p] = high
    c.assign([TopicPartition(args.topic, p, OFFSET_BEGINNING) for p in ends])
    messages = exact = duplicates = out_of_order = 0
    per_partition = {}
    newest = {}  # partition -> highest line number read from it so far
    others = []
    deadline = time.time() + args.timeout
    while ends:
        if time.time() > deadline:
            die(f"read {args.topic} only partly within {args.timeout} s; left: {ends}")
        for msg in c.consume(10000, 1.0):
            if msg.error():
                die(f"consume: {msg.error()}")
            p = msg.partition()
            if p not in ends or msg.offset() >= ends[p]:
                continue
            messages += 1
            per_partition[p] = per_partition.get(p, 0) + 1
            value = msg.value() or b""
            seen = lines.get(hashlib.blake2b(value, digest_size=16).digest())
            if seen is None:
                others.append(value)
            else:
                number, times = seen
                exact += times == 0
                duplicates += times > 0
                seen[1] = times + 1
                if number < newest.get(p, -1):
                    out_of_order += 1
                newest[p] = max(newest.get(p, -1), number)
            if msg.offset() + 1 >= ends[p]:
                del ends[p]
    c.close()
    missing = sum(1 for _, times in lines.values() if times == 0)
    truncated = 0
    other_examples = []
    if others:
        with open(args.file, "rb") as f:
            file_lines = [line.rstrip(b"\n") for line in f]
        for value in others:
            if any(line.startswith(value) for line in file_lines if len(line) > len(value)):
                truncated += 1
            elif len(other_examples) < 3:
                other_examples.append(value[:300].decode("utf-8", "replace"))
    print(
        json.dumps(
            {
                "messages": messages,
                "exact": exact,
                "duplicates": duplicates,
                "missing_lines": missing,
                "truncated": truncated,
                "other": len(others) - truncated,
                "out_of_order": out_of_order,
                "partitions": {str(p): n for p, n in sorted(per_partition.items())},
                "other_examples": other_examples,
            }
        )
    )


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("gen")
    p.add_argument("corpus")
    p.add_argument("out")
    p.add_argument("events", type=int)
    p.set_defaults(fn=gen)

    p = sub.add_parser("create-topics")
    p.add_argument("brokers")
    p.add_argument("topics", nargs="+")
    p.set_defaults(fn=create_topics)

    def waiting(p):
        p.add_argument("events", type=int)
        p.add_argument("--pid", type=int, required=True)
        p.add_argument("--start", type=float, required=True)
        p.add_argument("--broker-pid", type=int)
        p.add_argument("--timeout", type=float, default=900)
        p.add_argument("--stall", type=float, default=30, help="seconds without progress")
        p.add_argument("--settle", type=float, default=3, help="seconds to watch for extras")
        p.add_argument("--poll", type=float, default=POLL, help="seconds between counts")

    p = sub.add_parser("wait-topic")
    p.add_argument("brokers")
    p.add_argument("topic")
    waiting(p)
    p.set_defaults(fn=wait_topic)

    p = sub.add_parser("wait-index")
    p.add_argument("vigil")
    p.add_argument("data_dir")
    waiting(p)
    p.set_defaults(fn=wait_index)

    p = sub.add_parser("count")
    p.add_argument("brokers")
    p.add_argument("topic")
    p.set_defaults(fn=count)

    p = sub.add_parser("verify-raw")
    p.add_argument("brokers")
    p.add_argument("topic")
    p.add_argument("file")
    p.add_argument("--timeout", type=float, default=300)
    p.set_defaults(fn=verify_raw)

    args = ap.parse_args()
    args.fn(args)


if __name__ == "__main__":
    main()
