"""Soak: ``breachwatch run`` killed with SIGKILL many times over a large dump, then checked.

    python -m bench.soak [--kills 60] [--events 100000] [--seed 20261126] [--churn]

Starts the local broker (or uses ``KAFKA_BOOTSTRAP``), simulates a dump of at least
``--events`` events with attack scenarios and six malformed messages, and runs the crash
harness (``bench.crash``): ``--kills`` SIGKILLs at random points, each followed by a restart,
then one run to the end, compared with an uninterrupted replay of the same dump. Prints one
JSON line last: kills, events, duplicates, missing and extra incidents (by detector), alerts
delivered and repeated, and whether every partition was committed to its end.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
from collections import Counter
from pathlib import Path

from bench.common import broker, emit, run_settings
from bench.crash import count_events, crash_and_recover, make_crash_dump
from breachwatch.incidents.model import IncidentOut

DAYS = 10
# Events the simulator writes per tenant over DAYS days (3,555 with seed 23 and 30 tenants).
EVENTS_PER_TENANT = 3_500


def dump_with(events: int, out: Path) -> Path:
    """A crash dump of at least ``events`` events: more tenants until the simulation has enough."""
    tenants = max(3, math.ceil(events / EVENTS_PER_TENANT))
    while True:
        dump = make_crash_dump(out / f"dump-t{tenants}", days=DAYS, tenants=tenants, malformed=6)
        if count_events(dump) - 6 >= events:
            return dump
        tenants = math.ceil(tenants * 1.2)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kills", type=int, default=60)
    ap.add_argument("--events", type=int, default=100_000)
    ap.add_argument("--seed", type=int, default=20261126, help="seed of the kill times")
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument(
        "--churn",
        action="store_true",
        help="a second consumer runs throughout; the one killed (or stopped) and restarted visits its group",
    )
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="breachwatch-soak-") as tmp, broker() as bootstrap:
        work = Path(tmp)
        dump = dump_with(args.events, work)
        settings = run_settings(bootstrap, work, args.partitions)

        def progress(n: int) -> None:
            print(f"kill {n}/{args.kills}", file=sys.stderr, flush=True)

        report = crash_and_recover(
            settings, bootstrap, dump, work, kills=args.kills, seed=args.seed, progress=progress, churn=args.churn
        )
        if report.final_exit_code != 0:
            print(report.final_stderr, file=sys.stderr)
        result = {"bench": "soak", "churn": args.churn, **report.as_dict(), "final_exit_code": report.final_exit_code}
        for label, incidents in (("missing", report.missing), ("extra", report.extra)):
            for i in incidents:
                print(f"{label}: {i.kind} {i.detectors} actors={i.actor_ids} ips={i.source_ips}", file=sys.stderr)

        # Matched, yet not alike: e.g. an address-centric incident split in two, or one with
        # other evidence. Listed so that a difference in the counts can be read off.
        def alike(i: IncidentOut) -> tuple[str, tuple[str, ...], tuple[str, ...], int]:
            return (i.kind, tuple(sorted(i.actor_ids)), tuple(sorted(i.source_ips)), len(i.evidence_event_ids))

        live, steady = Counter(map(alike, report.live)), Counter(map(alike, report.replayed))
        for label, only in (("only after kills", live - steady), ("only uninterrupted", steady - live)):
            for (kind, actors, ips, n), times in sorted(only.items()):
                print(f"{label}: {times}x {kind} actors={list(actors)} ips={list(ips)} evidence={n}", file=sys.stderr)
        emit(result)
    ok = (
        report.final_exit_code == 0
        and report.partitions_behind == 0
        and not report.duplicates
        and not report.missing
        and report.alerts_repeated == 0
    )
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
