"""Resident memory per active actor profile, at 10k and 100k actors.

    python -m bench.memory [--actors 10000 100000] [--events-per-actor 4]

Feeds one partition worker (every detector) with a login and a few reads per actor, in
event-time order, then measures the Python heap held by the detectors (tracemalloc, after a
collection, events released) and the size of their checkpoint. Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import gc
import json
import tracemalloc
from datetime import UTC, datetime, timedelta

from bench.common import emit
from breachwatch import app
from breachwatch.settings import load_settings
from detectors.learned import LearnedDetector
from streams.models import AccessEvent, AuthEvent, Event
from streams.pipeline import PartitionWorker, Stats
from streams.tables import ReferenceTables

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)


def events_for(actors: range, per_actor: int) -> list[Event]:
    out: list[Event] = []
    for n in actors:
        tenant = f"t-{n % 200:03d}"
        actor = f"u-{n:07d}"
        ts = T0 + timedelta(seconds=n * 0.5)
        out.append(
            AuthEvent.model_validate_json(
                json.dumps(
                    {
                        "event_id": f"l-{n}",
                        "ts": ts.isoformat(),
                        "actor_id": actor,
                        "actor_type": "customer_user",
                        "actor_tenant": tenant,
                        "action": "login",
                        "outcome": "success",
                        "ip": f"203.0.{n % 250}.{n % 200 + 1}",
                        "country": "PK",
                        "session_id": f"s-{n}",
                    }
                )
            )
        )
        for k in range(per_actor - 1):
            out.append(
                AccessEvent.model_validate_json(
                    json.dumps(
                        {
                            "event_id": f"a-{n}-{k}",
                            "ts": (ts + timedelta(seconds=k + 1)).isoformat(),
                            "actor_id": actor,
                            "actor_type": "customer_user",
                            "actor_tenant": tenant,
                            "tenant_id": tenant,
                            "action": "read",
                            "resource_type": "invoice",
                            "sensitivity": "financial",
                            "records": 5 + k,
                            "ip": f"203.0.{n % 250}.{n % 200 + 1}",
                            "country": "PK",
                            "session_id": f"s-{n}",
                        }
                    )
                )
            )
    return out


def measure(actors: int, per_actor: int, live_max: int | None = None) -> dict[str, float]:
    settings = load_settings(**({} if live_max is None else {"profile_live_max": live_max}))
    worker = PartitionWorker(0, app.detector_factory(settings)(), ReferenceTables(), Stats())
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    chunk = 5000
    for start in range(0, actors, chunk):
        batch = events_for(range(start, min(actors, start + chunk)), per_actor)
        worker.detect(batch)
        del batch
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - base
    state_bytes = len(json.dumps(worker.state(), separators=(",", ":")))
    learned = next(d for d in worker.detectors if isinstance(d, LearnedDetector))
    live, packed = len(learned._profiles), len(learned._packed)
    packed_bytes = sum(map(len, learned._packed.values()))
    # What the parts hold, by freeing them one after the other: the last hour's events each
    # actor carries as evidence, then the live profiles themselves.
    learned._carry.clear()
    learned._packed_carry.clear()
    gc.collect()
    without_evidence = tracemalloc.get_traced_memory()[0] - base
    learned._profiles.clear()
    gc.collect()
    without_live = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    return {
        "actors": actors,
        "bytes_per_actor": round(held / actors),
        "evidence_bytes_per_actor": round((held - without_evidence) / actors),
        "bytes_per_live_profile": round((without_evidence - without_live) / max(1, live)),
        "checkpoint_bytes_per_actor": round(state_bytes / actors),
        # Profiles of actors idle for ``PACK_AFTER`` are packed; the rest are live objects.
        "live_profiles": live,
        "packed_profiles": packed,
        "packed_bytes_per_profile": round(packed_bytes / max(1, packed)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--actors", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--events-per-actor", type=int, default=4)
    ap.add_argument(
        "--live-max", type=int, default=None, help="BREACHWATCH_PROFILE_LIVE_MAX for the run (default: the setting's)"
    )
    args = ap.parse_args()
    results = []
    for n in args.actors:
        r = measure(n, args.events_per_actor, args.live_max)
        print(
            f"{n:,} actors: {r['bytes_per_actor']:,} B heap per actor "
            f"({r['evidence_bytes_per_actor']:,} B of it carried evidence), "
            f"{r['bytes_per_live_profile']:,} B per live profile, "
            f"{r['checkpoint_bytes_per_actor']:,} B checkpoint; "
            f"{r['live_profiles']:,} profiles live, {r['packed_profiles']:,} packed "
            f"({r['packed_bytes_per_profile']:,} B each)",
            flush=True,
        )
        results.append(r)
    emit({"bench": "memory", "results": results})


if __name__ == "__main__":
    main()
