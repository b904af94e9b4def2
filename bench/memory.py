"""Resident memory per active actor profile, at 10k and 100k actors.

    python -m bench.memory [--actors 10000 100000] [--events-per-actor 4] [--mature-days 21]

Feeds one partition worker (every detector) with a login and a few reads per actor, in
event-time order, then measures the Python heap held by the detectors (tracemalloc, after a
collection, events released) and the size of their checkpoint.

Those profiles are young (a few events each). A profile that has watched its actor for weeks
holds far more (hour histograms, daily and hourly baselines, places, data types), so the
bench also replays the simulated dump (``--mature-days`` days of 60 tenants, as the other
benches use) and measures, with every profile live, the heap of a copy of each, restored
from its checkpoint as after a restart. Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
import tracemalloc
from datetime import UTC, datetime, timedelta

from bench.common import dump_for, emit, model_for
from breachwatch.core.events import AccessEvent, AuthEvent, Event
from breachwatch.core.reference import ReferenceTables
from breachwatch.core.settings import load_settings
from breachwatch.detectors.learned.detector import LearnedDetector, load_model
from breachwatch.detectors.learned.profiles import SHARED_ARRAYS, ActorProfile
from breachwatch.runtime import app
from breachwatch.runtime.checkpoints import encode_state
from breachwatch.runtime.pipeline import PartitionWorker, Stats
from breachwatch.runtime.replay import replay

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)


def events_for(actors: range, per_actor: int, later: timedelta = timedelta(0)) -> list[Event]:
    out: list[Event] = []
    for n in actors:
        tenant = f"t-{n % 200:03d}"
        actor = f"u-{n:07d}"
        ts = T0 + later + timedelta(seconds=n * 0.5)
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
    live, packed = learned.profile_counts
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


def checkpoint_cost(actors: int, per_actor: int, live_max: int | None = None) -> dict[str, float]:
    """Seconds to build and encode a unit's checkpoint (as the store writes it: the head, and
    each changed actor as an item) holding every actor, then the next one, after 1% of the
    actors acted again a minute later (``per_actor`` events each). That one also writes the
    actors whose carried events expired meanwhile (an hour after their last event)."""
    settings = load_settings(**({} if live_max is None else {"profile_live_max": live_max}))
    worker = PartitionWorker(0, app.detector_factory(settings)(), ReferenceTables(), Stats())
    chunk = 5000
    for start in range(0, actors, chunk):
        worker.detect(events_for(range(start, min(actors, start + chunk)), per_actor))

    def write() -> tuple[float, int, int]:
        started = time.perf_counter()
        cp = worker.checkpoint("bench", {})
        size = len(encode_state(cp.state)) + sum(len(encode_state(v)) for d in cp.items.values() for v in d.values())
        took = time.perf_counter() - started
        worker.saved(cp.seq + 1)  # as if the store wrote it as the next write
        return took, sum(map(len, cp.items.values())), size

    full_s, full_items, full_bytes = write()
    # A minute after the last actor's first event, 1% of the actors act again.
    back = max(1, actors // 100)
    worker.detect(events_for(range(back), per_actor, later=timedelta(seconds=actors * 0.5 + 60)))
    next_s, next_items, next_bytes = write()
    return {
        "actors": actors,
        "first_checkpoint_s": round(full_s, 3),
        "first_checkpoint_items": full_items,
        "first_checkpoint_bytes": full_bytes,
        "next_checkpoint_s": round(next_s, 3),
        "next_checkpoint_items": next_items,
        "next_checkpoint_bytes": next_bytes,
    }


def measure_mature(tenants: int, days: int) -> dict[str, float]:
    """Heap per profile of actors watched for ``days`` days: the dump replayed with every
    profile kept live, then each profile copied (as a checkpoint restores it) under
    tracemalloc, and packed for comparison."""
    dump = dump_for(tenants, days)
    model, key = model_for(dump)
    settings = load_settings(profile_live_max=10**9, pseudonym_key=key)
    trained = load_model(model, key.encode())
    pipeline = app.build_pipeline(settings, app.database(settings, "sqlite://"), trained, notify=False)
    replay(dump, pipeline, partitions=4, max_bytes=settings.max_message_bytes)
    profiles = [
        p
        for w in pipeline.workers.values()
        for d in w.detectors
        if isinstance(d, LearnedDetector)
        for p in d._profiles.values()
    ]
    # Through JSON, as a checkpoint travels: copies share no objects with the live profiles.
    saved = [json.dumps(p.to_dict(), separators=(",", ":")) for p in profiles]
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    # Parsed inside the measurement: what a profile keeps of its parsed checkpoint is its own.
    copies = [ActorProfile.from_dict(json.loads(s)) for s in saved]
    gc.collect()
    held = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    packed = sum(len(p.pack()) for p in copies)
    return {
        "parts": parts(copies),
        "days": days,
        "mature_profiles": len(copies),
        "bytes_per_mature_profile": round(held / max(1, len(copies))),
        "packed_bytes_per_mature_profile": round(packed / max(1, len(copies))),
        "checkpoint_bytes_per_mature_profile": round(sum(map(len, saved)) / max(1, len(saved))),
    }


# What a profile's bytes are, by part (``parts``): its slots grouped.
PARTS: dict[str, tuple[str, ...]] = {
    "hourly windows": ("wb", "wv", "rep_vec"),
    "rings (hourly, daily, session and gap baselines)": (
        "hour_ring",
        "sens_ring",
        "day_ring",
        "spread_ring",
        "export_ring",
        "session_ring",
        "gap_ring",
    ),
    "tables (places, agents, data types)": ("tab", "tv"),
    "hour histogram and surprises": ("hours", "hour_surp"),
}


def _size(obj: object, seen: set[int]) -> int:
    """Bytes of ``obj`` and what it holds, each object once; interned strings, small ints and
    the arrays every new profile shares are everyone's, so no one profile's."""
    if id(obj) in seen or obj is None or isinstance(obj, bool) or (isinstance(obj, int) and -5 <= obj <= 256):
        return 0
    if isinstance(obj, str) and sys.intern(obj) is obj:
        return 0
    seen.add(id(obj))
    n = sys.getsizeof(obj)
    if isinstance(obj, dict):
        n += sum(_size(k, seen) + _size(v, seen) for k, v in obj.items())
    elif isinstance(obj, list | tuple):
        n += sum(_size(v, seen) for v in obj)
    return n


def parts(profiles: list[ActorProfile]) -> dict[str, int]:
    """Average bytes per profile of each part (``PARTS``), the rest being the object itself and
    its scalars; sizes as ``sys.getsizeof`` reports them, so they add up to about what
    tracemalloc measures."""
    shared = {id(v) for v in SHARED_ARRAYS}
    grouped = {slot: part for part, slots in PARTS.items() for slot in slots}
    total: dict[str, int] = dict.fromkeys([*PARTS, "object and scalars"], 0)
    for p in profiles:
        seen = set(shared)
        total["object and scalars"] += sys.getsizeof(p)
        for slot in ActorProfile.__slots__:
            if hasattr(p, slot) and not slot.startswith("_"):
                total[grouped.get(slot, "object and scalars")] += _size(getattr(p, slot), seen)
    return {part: round(n / max(1, len(profiles))) for part, n in total.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--actors", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--events-per-actor", type=int, default=4)
    ap.add_argument(
        "--live-max", type=int, default=None, help="BREACHWATCH_PROFILE_LIVE_MAX for the run (default: the setting's)"
    )
    ap.add_argument(
        "--mature-days", type=int, default=21, help="days of the replayed dump for mature profiles (0: skip)"
    )
    ap.add_argument("--mature-tenants", type=int, default=60, help="tenants of that dump")
    args = ap.parse_args()
    results = []
    checkpoints = []
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
        c = checkpoint_cost(n, args.events_per_actor, args.live_max)
        print(
            f"  a checkpoint of all of them takes {c['first_checkpoint_s']:.2f} s "
            f"({c['first_checkpoint_bytes'] / 1e6:.1f} MB); after 1% acted again, the next one writes "
            f"{c['next_checkpoint_items']:,} actors in {c['next_checkpoint_s']:.3f} s "
            f"({c['next_checkpoint_bytes'] / 1e6:.2f} MB)",
            flush=True,
        )
        checkpoints.append(c)
    mature = measure_mature(args.mature_tenants, args.mature_days) if args.mature_days > 0 else None
    if mature is not None:
        print(
            f"{mature['mature_profiles']:,} profiles after {mature['days']} days: "
            f"{mature['bytes_per_mature_profile']:,} B heap each, "
            f"{mature['packed_bytes_per_mature_profile']:,} B packed, "
            f"{mature['checkpoint_bytes_per_mature_profile']:,} B checkpoint",
            flush=True,
        )
        print("  of which: " + ", ".join(f"{n:,} B {part}" for part, n in mature["parts"].items()), flush=True)
    emit({"bench": "memory", "results": results, "checkpoints": checkpoints, "mature": mature})


if __name__ == "__main__":
    main()
