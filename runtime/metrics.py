"""Prometheus metrics and the health endpoints of ``run`` (/healthz alive, /readyz ready), read
from the service's own counters and state."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, ProcessCollector, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

# Seconds from an event's Kafka timestamp to the end of the batch that took it in: seconds when
# the service keeps up, up to hours while it catches up on a backlog.
LATENCY_BUCKETS: tuple[float, ...] = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0)
# Seconds to decode, judge and durably record one batch.
BATCH_BUCKETS: tuple[float, ...] = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0)


class Histogram:
    """Observations counted into fixed buckets, a batch at a time (one numpy call, not one
    Python call per event), and read by the scrape thread.

    Each update binds new arrays rather than changing them in place, so a scrape sees the
    counts of some whole number of batches.
    """

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = np.asarray(bounds, dtype=float)
        self._state: tuple[np.ndarray, float] = (np.zeros(len(bounds) + 1, dtype=np.int64), 0.0)

    def observe(self, values: Sequence[float] | np.ndarray) -> None:
        v = np.asarray(values, dtype=float)
        if v.size == 0:
            return
        # side="left": a value equal to a bound counts in that bound's bucket (Prometheus' "le").
        slots = np.bincount(np.searchsorted(self.bounds, v, side="left"), minlength=len(self.bounds) + 1)
        counts, total = self._state
        self._state = (counts + slots, total + float(v.sum()))

    def cumulative(self) -> tuple[list[tuple[str, float]], float]:
        """(le, count) pairs, +Inf last, and the sum of the observations."""
        counts, total = self._state
        running = np.cumsum(counts)
        les = [f"{b:g}" for b in self.bounds] + ["+Inf"]
        return [(le, float(n)) for le, n in zip(les, running, strict=True)], total

    @property
    def count(self) -> int:
        return int(self._state[0].sum())


class ServiceCollector(Collector):
    """Exposes ``Pipeline.stats`` at scrape time: no per-event metric calls on the hot path."""

    def __init__(self, service: Any) -> None:
        self.service = service

    def collect(self) -> Iterator[Any]:
        stats = self.service.pipeline.stats
        consumed = CounterMetricFamily("breachwatch_events_consumed", "Events consumed", labels=["topic"])
        for topic, n in stats.consumed.items():
            consumed.add_metric([topic], n)
        yield consumed
        dlq = CounterMetricFamily("breachwatch_dead_letters", "Messages sent to a dead-letter topic", labels=["topic"])
        for topic, n in stats.dead_lettered.items():
            dlq.add_metric([topic], n)
        yield dlq
        errs = CounterMetricFamily("breachwatch_detector_errors", "Detector failures on a batch", labels=["detector"])
        for name, n in stats.detector_errors.items():
            errs.add_metric([name], n)
        yield errs
        yield CounterMetricFamily("breachwatch_findings", "Findings recorded", value=stats.findings)
        yield CounterMetricFamily("breachwatch_incidents_opened", "Incidents opened", value=stats.incidents_opened)
        healthy = GaugeMetricFamily("breachwatch_healthy", "1 when the service is ok, 0 when degraded")
        healthy.add_metric([], 1.0 if self.service.health.status == "ok" else 0.0)
        yield healthy
        lag = GaugeMetricFamily(
            "breachwatch_consumer_lag",
            "Messages on an assigned partition this consumer has not taken in yet",
            labels=["topic", "partition"],
        )
        try:
            for (topic, partition), n in sorted(self.service.lag().items()):
                lag.add_metric([topic, str(partition)], n)
        except Exception:  # the consumer is closing or rebalancing: this scrape shows no lag
            log.debug("consumer lag unavailable", exc_info=True)
        yield lag
        # Live profiles cost kilobytes each and packed ones a few hundred bytes: the number to
        # watch when tuning BREACHWATCH_PROFILE_LIVE_MAX against the process's memory.
        live = packed = 0
        for worker in list(self.service.pipeline.workers.values()):  # one C call: safe while units change
            for d in worker.detectors:
                counts = getattr(d, "profile_counts", None)  # the learned detector's; no import of it here
                if counts is not None:
                    live, packed = live + counts[0], packed + counts[1]
        profiles = GaugeMetricFamily("breachwatch_actor_profiles", "Actor profiles held, by state", labels=["state"])
        profiles.add_metric(["live"], live)
        profiles.add_metric(["packed"], packed)
        yield profiles
        cost = GaugeMetricFamily(
            "breachwatch_event_cost_seconds",
            "Time to decode and judge one event, by unit kind, as measured here (once enough events were)",
            labels=["kind"],
        )
        for kind, seconds in sorted(self.service.pipeline.costs.per_event().items()):
            cost.add_metric([kind], seconds)
        yield cost
        for name, doc, hist in (
            (
                "breachwatch_event_latency_seconds",
                "From an event's Kafka timestamp to the end of the batch that took it in",
                self.service.event_latency,
            ),
            (
                "breachwatch_batch_seconds",
                "Time to decode, judge and durably record one batch",
                self.service.batch_time,
            ),
        ):
            buckets, total = hist.cumulative()
            family = HistogramMetricFamily(name, doc)
            family.add_metric([], buckets, total)
            yield family


def _alive(service: Any) -> tuple[int, dict[str, Any]]:
    """/healthz: whether to restart the process, nothing more."""
    return (200, {"status": "alive"}) if service.alive() else (503, {"status": "stalled"})


def _ready(service: Any) -> tuple[int, dict[str, Any]]:
    """/readyz: whether the process does its share now, and if not, why (in fixed words)."""
    reasons = service.readiness()
    return (503, {"status": "not ready", "reasons": reasons}) if reasons else (200, {"status": "ready"})


def serve(host: str, port: int, service: Any) -> ThreadingHTTPServer:
    """/metrics, /healthz and /readyz of ``service`` on ``host:port``, from a daemon thread."""
    registry = CollectorRegistry()
    registry.register(ServiceCollector(service))
    # process_resident_memory_bytes, process_cpu_seconds_total, open file descriptors.
    ProcessCollector(registry=registry)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                body, ctype, code = generate_latest(registry), "text/plain; version=0.0.4", 200
            elif self.path in ("/healthz", "/readyz"):
                code, answer = _alive(service) if self.path == "/healthz" else _ready(service)
                body, ctype = json.dumps(answer).encode(), "application/json"
            else:
                body, ctype, code = b"not found\n", "text/plain", 404
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return server
