"""Prometheus metrics and a health endpoint for ``run``, read from the service's own counters."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector


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


def serve(host: str, port: int, service: Any) -> ThreadingHTTPServer:
    registry = CollectorRegistry()
    registry.register(ServiceCollector(service))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path == "/metrics":
                body, ctype, code = generate_latest(registry), "text/plain; version=0.0.4", 200
            elif self.path == "/healthz":
                h = service.health
                code = 200 if h.status in ("ok", "starting") else 503
                body, ctype = json.dumps({"status": h.status, "detail": h.detail}).encode(), "application/json"
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
