"""Runs one outbox delivery pass in its own process and SIGKILLs that process at the point
named by ``BREACHWATCH_TEST_KILL_AT``: ``before`` the provider is called, ``during`` the call
(the request is on the wire, the answer not yet read) or ``after`` it (the provider accepted the
message, the outcome is not yet recorded). Anything else runs the pass to the end.

Configured like the service, from ``BREACHWATCH_*`` variables (database, SendGrid key and host).
Used by test_notice_delivery.py; not a test module itself.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import sys
from typing import Any

from breachwatch.channels.registry import build_channels
from breachwatch.core.settings import load_settings
from breachwatch.notifier.message import EMAIL, OutboxMessage
from breachwatch.runtime.app import outbox_dispatcher
from breachwatch.storage.db import make_engine


def die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


class KillingChannel:
    """Wraps the real channel and dies at the chosen point of the first send."""

    def __init__(self, inner: Any, at: str) -> None:
        self.inner = inner
        self.at = at

    def send(self, message: OutboxMessage) -> str | None:
        if self.at == "before":
            die()
        if self.at == "during":
            original = http.client.HTTPConnection.getresponse

            def getresponse(conn: http.client.HTTPConnection, *args: Any, **kwargs: Any) -> Any:
                die()  # the whole request was written; the answer is never read
                return original(conn, *args, **kwargs)

            http.client.HTTPConnection.getresponse = getresponse  # type: ignore[method-assign]
        provider_id = self.inner.send(message)
        if self.at == "after":
            die()
        return provider_id

    def lookup(self, message_id: str) -> Any:
        return self.inner.lookup(message_id)


def main() -> None:
    settings = load_settings()
    engine = make_engine(settings.db_url)
    channels = build_channels(settings)
    channels[EMAIL] = KillingChannel(channels[EMAIL], os.environ.get("BREACHWATCH_TEST_KILL_AT", ""))
    # The service's own dispatcher: send guard and receipts included.
    report = outbox_dispatcher(settings, engine, channels).dispatch_due()
    print(json.dumps({k: getattr(report, k) for k in report.__dataclass_fields__}))


if __name__ == "__main__":
    main()
