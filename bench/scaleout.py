"""One consumer against two (separate processes, one group) on the same partitioned topics.

    python -m bench.scaleout [--tenants 60] [--days 21] [--partitions 4] [--logs DIR]

For each consumer count the dump is produced into fresh topics, the consumers are started as
``breachwatch run`` processes, and the time is taken from their start until the group's
committed offsets reach the end of every partition (``speedup``), and from the group's first
commit, which leaves out the processes' start-up (``speedup_streaming``). The seconds at which
each partition number caught up show how evenly the consumers shared the work. The incidents
of both runs are compared: per-actor state moves with its unit, so a rebalance must not
change what is found. Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import (
    CpuUse,
    GroupLag,
    broker,
    count_events,
    dump_for,
    emit,
    process_cpu,
    run_settings,
    service_env,
)
from bench.crash import duplicates, unmatched
from breachwatch.incidents.store import IncidentStore
from breachwatch.runtime import app
from breachwatch.streams.kafka_client import ensure_topics
from breachwatch.streams.produce import produce_dump


def run_group(
    bootstrap: str, work: Path, dump: Path, consumers: int, partitions: int, logs: Path | None = None
) -> tuple[float, list, dict[str, float]]:
    settings = run_settings(bootstrap, work, partitions)
    ensure_topics(settings, bootstrap)
    produce_dump(settings, bootstrap, dump)
    env = {**os.environ, **service_env(settings)}
    app.database(settings)  # create the schema once, before the consumers race to
    measure = GroupLag(settings, bootstrap)
    total = sum(measure().values())
    started = time.perf_counter()
    outs = [
        (logs / f"{consumers}-consumers-{n}.log").open("w") if logs is not None else subprocess.DEVNULL
        for n in range(consumers)
    ]
    procs = [subprocess.Popen([sys.executable, "-m", "breachwatch", "run"], env=env, stderr=out) for out in outs]
    try:
        consumer_cpu = 0.0
        done: dict[int, float] = {}
        first_commit: float | None = None
        with CpuUse() as machine:
            while True:
                lag = measure()
                now = time.perf_counter() - started
                if first_commit is None and sum(lag.values()) < total:
                    first_commit = now
                done.update({p: round(now, 1) for p, n in lag.items() if n == 0 and p not in done})
                if len(done) == len(lag):
                    break
                consumer_cpu = sum(process_cpu(p.pid) for p in procs)
                time.sleep(0.25)
        elapsed = time.perf_counter() - started
        consumer_cpu = max(consumer_cpu, sum(process_cpu(p.pid) for p in procs))
    finally:
        measure.close()
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait(60)
        for out in outs:
            if out != subprocess.DEVNULL:
                out.close()  # type: ignore[union-attr]
    cpu = {
        # Cores kept busy over the run, by everything on the machine (the broker included).
        "machine_cores_busy": round(machine.machine, 2),
        "consumer_cores": round(consumer_cpu / elapsed, 2),
        # Seconds from the start until each partition number was caught up: with two consumers
        # the spread shows how evenly the work was shared.
        "caught_up_s": dict(sorted(done.items())),
        # When the group first committed: the consumers' start-up (imports, model, reference
        # tables, joining) lies before it.
        "first_commit_s": round(first_commit or 0.0, 2),
    }
    return elapsed, IncidentStore(app.database(settings)).incidents(), cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tenants", type=int, default=60)
    ap.add_argument("--days", type=int, default=21)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--logs", type=Path, default=None, help="keep each consumer's log in this folder")
    args = ap.parse_args()
    if args.logs is not None:
        args.logs.mkdir(parents=True, exist_ok=True)
    dump = dump_for(args.tenants, args.days)
    total = count_events(dump)
    with tempfile.TemporaryDirectory() as tmp, broker() as bootstrap:
        one_s, one, cpu_one = run_group(bootstrap, Path(tmp), dump, 1, args.partitions, args.logs)
        print(f"1 consumer: {total / one_s:,.0f} events/s; cores busy {cpu_one}", flush=True)
        two_s, two, cpu_two = run_group(bootstrap, Path(tmp), dump, 2, args.partitions, args.logs)
        print(f"2 consumers: {total / two_s:,.0f} events/s; cores busy {cpu_two}", flush=True)

    # Findings do not depend on the batches, but with two consumers the partitions' findings
    # reach the store in another order, and an address-centric incident (several partitions
    # feed it) may gather its evidence differently; what must hold is that each incident has
    # a counterpart in the other run (same actors or addresses, shared evidence) and nothing
    # is opened twice.
    only_one = unmatched(one, two)
    only_two = unmatched(two, one)
    emit(
        {
            "bench": "scaleout",
            "events": total,
            "partitions": args.partitions,
            "one_eps": round(total / one_s),
            "two_eps": round(total / two_s),
            "speedup": round(one_s / two_s, 2),
            # The same from the group's first commit to caught up: the time spent streaming.
            "speedup_streaming": round((one_s - cpu_one["first_commit_s"]) / (two_s - cpu_two["first_commit_s"]), 2),
            "cpu_one": cpu_one,
            "cpu_two": cpu_two,
            "cores": os.cpu_count(),
            "incidents_one": len(one),
            "incidents_two": len(two),
            "unmatched_one": len(only_one),
            "unmatched_two": len(only_two),
            "duplicates_one": len(duplicates(one)),
            "duplicates_two": len(duplicates(two)),
            "unmatched_kinds": sorted({i.kind for i in only_one + only_two}),
        }
    )


if __name__ == "__main__":
    main()
