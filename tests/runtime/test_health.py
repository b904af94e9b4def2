"""``run``'s /healthz (alive) and /readyz (doing its share, or why not), on a real broker."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request

from traffic import send_reads

from breachwatch.core.settings import Settings
from breachwatch.devkit.local_kafka import free_port
from breachwatch.runtime import app
from breachwatch.runtime.service import STALLED_AFTER_S, Service
from breachwatch.streams.kafka_client import ensure_topics


def get(port: int, path: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_run_is_ready_once_its_partitions_are_assigned(bw_settings: Settings, kafka_bootstrap: str) -> None:
    port = free_port()
    settings = bw_settings.model_copy(update={"metrics_port": port})
    ensure_topics(settings, kafka_bootstrap)
    send_reads(settings, kafka_bootstrap, 5)
    service = Service(settings, kafka_bootstrap, app.build_pipeline(settings, app.database(settings)))
    worker = threading.Thread(target=service.run)
    with app.metrics_server(settings, service):
        assert get(port, "/readyz") == (503, {"status": "not ready", "reasons": ["starting"]})
        assert get(port, "/healthz") == (200, {"status": "alive"})
        worker.start()
        try:
            deadline = time.monotonic() + 60
            while get(port, "/readyz")[0] != 200:
                assert time.monotonic() < deadline, f"never ready: {get(port, '/readyz')}"
                time.sleep(0.2)
            assert get(port, "/readyz") == (200, {"status": "ready"})
            assert len(service.consumer.assignment()) == 3 * settings.partitions
        finally:
            service.stop()
            worker.join(60)
        assert get(port, "/readyz") == (503, {"status": "not ready", "reasons": ["stopping"]})
        # A loop that stopped coming round is what liveness catches (and only that).
        service.health.last_loop_at = time.monotonic() - STALLED_AFTER_S - 1
        assert get(port, "/healthz") == (503, {"status": "stalled"})
