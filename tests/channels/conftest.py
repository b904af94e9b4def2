"""A local HTTP receiver on 127.0.0.1 for the Slack, PagerDuty and generic-webhook channels:
it records every request and answers with scripted statuses."""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.fixtures.notifier_env import *  # noqa: F403


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """What the receiver got, and what it will answer next (default: ``default``)."""

    default: tuple[int, dict[str, str], bytes] = (200, {}, b"ok")
    requests: list[Received] = field(default_factory=list)
    script: deque[tuple[int, dict[str, str], bytes]] = field(default_factory=deque)
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer_next(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.script.append((status, headers or {}, body))


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with receiver.lock:
                receiver.requests.append(Received("POST", self.path, dict(self.headers.items()), body))
                status, headers, reply = receiver.script.popleft() if receiver.script else receiver.default
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

    return Handler


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(rec))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    rec.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield rec
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)
