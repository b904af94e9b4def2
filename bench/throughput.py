"""Events/s of the bare kafka-python consumer, of ``run`` and of ``replay`` on the same dump.

    python -m bench.throughput [--tenants 60] [--days 21] [--partitions 4] [--model PATH | --no-model] [--jobs N]
                               [--profile run.html]

Starts the local broker (or uses ``KAFKA_BOOTSTRAP``), produces a simulated dump into fresh
topics, then measures in one run: the bare consume rate (poll, no decoding: the ceiling, with
the service's own fetch sizes), the service with every detector and a trained model (by
default one trained on the dump's clean days, see ``bench.common.model_for``) from first poll
until caught up, and a replay of the dump in one process and with detection in ``--jobs`` worker processes
(default: one per CPU). With ``--profile``, the service then runs once more over the same
topics (a new group and database) under pyinstrument: the page is written there, and where an
event's time goes, stage by stage, is printed (``bench.stages``). Prints one JSON line last.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

from kafka import KafkaConsumer

from bench import stages
from bench.common import CpuUse, broker, count_actors, count_events, dump_for, emit, model_for, run_settings
from breachwatch.core.events import ACTOR_TOPICS, EVENT_TOPICS, LOG_TOPICS
from breachwatch.runtime import app
from breachwatch.runtime.pipeline import fewer_collections
from breachwatch.runtime.replay import replay
from breachwatch.runtime.service import Service
from breachwatch.streams.kafka_client import client_options, ensure_topics, fetch_options, know_partitions
from breachwatch.streams.produce import produce_dump


def bare_consume(settings, bootstrap: str, total: int) -> float:  # type: ignore[no-untyped-def]
    consumer = KafkaConsumer(
        **client_options(settings, bootstrap),
        group_id=settings.group_id + "-bare",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        **fetch_options(settings),
    )
    topics = [settings.topic(t) for t in EVENT_TOPICS]
    consumer.subscribe(topics)
    know_partitions(consumer, topics)
    seen = 0
    started = None
    while seen < total:
        polled = consumer.poll(timeout_ms=1000)
        if polled and started is None:
            started = time.perf_counter()
        seen += sum(len(v) for v in polled.values())
    elapsed = time.perf_counter() - (started or time.perf_counter())
    consumer.close()
    return seen / elapsed


def judging_us(per_event: dict[str, float], consumed: dict[str, int]) -> float:
    """Microseconds an event took to decode and judge in the run, averaged over what it consumed:
    the service's own cost meter (``streams.units.CostMeter``) per unit kind, which times only
    that, outside any profiler."""
    events = {
        "actor": sum(consumed.get(t, 0) for t in ACTOR_TOPICS),
        "log": sum(consumed.get(t, 0) for t in LOG_TOPICS),
    }
    total = sum(events[k] for k in per_event)
    return 1e6 * sum(per_event[k] * events[k] for k in per_event) / max(1, total)


def profile_run(settings, bootstrap: str, model, work: Path, page: Path, us_per_event: float) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """The service once more from the start of the same topics (its own group and database),
    under pyinstrument; the stages' microseconds per event, scaled to ``us_per_event``."""
    from pyinstrument import Profiler

    again = settings.model_copy(
        update={"group_id": settings.group_id + "-profiled", "db_url": f"sqlite:///{work / 'profiled.db'}"}
    )
    service = Service(again, bootstrap, app.build_pipeline(again, app.database(again), model))
    profiler = Profiler(interval=0.001)
    with fewer_collections():
        profiler.start()
        service.run(until_caught_up=True)
        profiler.stop()
    page.write_text(profiler.output_html())
    # ``pyinstrument --load <file> -r text`` renders it again, in any of its forms.
    profiler.last_session.save(page.with_suffix(".pyisession"))
    us = stages.per_event_us(stages.stage_seconds(profiler.last_session.root_frame()), us_per_event)
    print(f"where run's {us_per_event:.1f} µs per event go (profile: {page}):", flush=True)
    for stage, x in us.items():
        print(f"  {x:6.1f} µs  {stage}", flush=True)
    return us


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tenants", type=int, default=60)
    ap.add_argument("--days", type=int, default=21)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--model", type=Path, default=None, help="model file (default: trained on the dump)")
    ap.add_argument("--no-model", action="store_true", help="learned detectors without a model")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="replay worker processes")
    ap.add_argument("--profile", type=Path, default=None, help="profile a second run; write pyinstrument's page here")
    args = ap.parse_args()

    dump = dump_for(args.tenants, args.days)
    total = count_events(dump)
    actors = count_actors(dump)
    print(f"dump: {total:,} events, {actors:,} actors", flush=True)
    extra: dict[str, object] = {}
    if args.model is not None:
        extra["model_path"] = args.model
    elif not args.no_model:
        extra["model_path"], extra["pseudonym_key"] = model_for(dump)
        extra["model_signing_key"] = extra["pseudonym_key"]
    with tempfile.TemporaryDirectory() as tmp, broker() as bootstrap:
        work = Path(tmp)
        settings = run_settings(bootstrap, work, args.partitions, **extra)
        ensure_topics(settings, bootstrap)
        t0 = time.perf_counter()
        produce_dump(settings, bootstrap, dump)
        produce_eps = total / (time.perf_counter() - t0)
        print(f"produced at {produce_eps:,.0f} events/s", flush=True)

        with CpuUse() as bare_cpu:
            bare_eps = bare_consume(settings, bootstrap, total)
        print(f"bare consume: {bare_eps:,.0f} events/s; {bare_cpu}", flush=True)

        model = app.load_model(settings)
        engine = app.database(settings)
        pipeline = app.build_pipeline(settings, engine, model)
        service = Service(settings, bootstrap, pipeline)
        t0 = time.perf_counter()
        # As ``breachwatch run`` does (see ``breachwatch.runtime.app.run_service``).
        with fewer_collections(), CpuUse() as run_cpu:
            stats = service.run(until_caught_up=True)
        run_s = time.perf_counter() - t0
        consumed = sum(stats["consumed"].values())
        run_eps = consumed / run_s
        print(f"run: {consumed:,} events in {run_s:.1f}s = {run_eps:,.0f} events/s; {run_cpu}", flush=True)
        judge_us = judging_us(pipeline.costs.per_event(), stats["consumed"])
        bare_us = 1e6 / bare_eps
        print(
            f"per event: bare {bare_us:.1f} µs, run {1e6 / run_eps:.1f} µs; decoding and judging alone "
            f"{judge_us:.1f} µs (the service's cost meter), so run/bare <= {bare_us / (bare_us + judge_us):.2f} "
            "in one process",
            flush=True,
        )

        stage_us: dict[str, float] | None = None
        if args.profile is not None:
            stage_us = profile_run(settings, bootstrap, model, work, args.profile, 1e6 / run_eps)

        replay_eps: dict[int, float] = {}
        replay_cpu_us = 0.0
        for jobs in sorted({1, args.jobs}):
            r_engine = app.database(settings, f"sqlite:///{work / f'replay-{jobs}.db'}")
            r_pipeline = app.build_pipeline(settings, r_engine, model, notify=False)
            cpu_started = time.process_time()
            report = replay(
                dump, r_pipeline, partitions=args.partitions, max_bytes=settings.max_message_bytes, jobs=jobs
            )
            replay_eps[jobs] = report.events_per_second
            print(f"replay (jobs={jobs}): {report.events:,} events = {replay_eps[jobs]:,.0f} events/s", flush=True)
            if jobs == 1:
                # CPU time, which other work on a shared machine inflates far less than wall time.
                replay_cpu_us = 1e6 * (time.process_time() - cpu_started) / max(1, report.events)
                print(f"replay (jobs=1): {replay_cpu_us:.1f} µs of CPU per event", flush=True)

    emit(
        {
            "bench": "throughput",
            "events": total,
            "actors": actors,
            "partitions": args.partitions,
            "produce_eps": round(produce_eps),
            "bare_eps": round(bare_eps),
            "run_eps": round(run_eps),
            "replay_eps": round(replay_eps[args.jobs]),
            "replay_jobs": args.jobs,
            "replay_eps_one_process": round(replay_eps[1]),
            "ratio": round(run_eps / bare_eps, 3),
            "cpu_bare": bare_cpu.as_dict(),
            "cpu_run": run_cpu.as_dict(),
            "incidents_run": stats["incidents_opened"],
            "model": str(settings.model_path) if settings.model_path else None,
            "bare_us_per_event": round(1e6 / bare_eps, 1),
            "run_us_per_event": round(1e6 / run_eps, 1),
            # The same per event in this process's CPU time (kafka-python's network thread included).
            "bare_cpu_us_per_event": round(1e6 / bare_eps * bare_cpu.own, 1),
            "run_cpu_us_per_event": round(1e6 / run_eps * run_cpu.own, 1),
            "replay_cpu_us_per_event_one_process": round(replay_cpu_us, 1),
            "run_judging_us_per_event": round(judge_us, 1),
            "run_stage_us_per_event": stage_us,
        }
    )


if __name__ == "__main__":
    main()
