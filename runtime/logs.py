"""Where log lines go and what they look like: plain text for a person at a terminal, or one
ECS JSON object per line (Elastic Common Schema field names, written by ``ecs-logging``) for a
log shipper; the same for BreachWatch's own loggers, the libraries' and uvicorn's.

Libraries' chatter that needs no person (each Alembic migration's docstring, a Kafka client
that reconnects) is DEBUG: the service reports what matters once in its own words (the
database was migrated; Kafka is away, and back).
"""

from __future__ import annotations

import copy
import logging
import re
import sys
from typing import Any

import ecs_logging

from breachwatch.core.settings import Settings

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
SERVICE_NAME = "breachwatch"
# kafka-python's reports of the connection to a broker coming and going, and of the retries it
# makes on its own: the service itself says when Kafka is away and when it is back. (Its other
# warnings stay, e.g. a network loop blocked for seconds.)
KAFKA_CONNECTIVITY = re.compile(
    r"connect|coordinator|heartbeat|metadata|bootstrap|no node available|node ?not ?ready|not leader|"
    r"rebalanc|broker.*(?:not available|unavailable)",
    re.IGNORECASE,
)
# ... except where a person must act: permissions, another member with this instance id.
NEEDS_A_PERSON = re.compile(r"authori[sz]|fenced|fatal", re.IGNORECASE)


class EcsFormatter(ecs_logging.StdlibFormatter):
    """ECS JSON; uvicorn's access lines also as ECS ``http``, ``url`` and ``client`` fields."""

    def __init__(self) -> None:
        super().__init__(extra={"service": {"name": SERVICE_NAME}}, exclude_fields=["color_message"])

    def format_to_ecs(self, record: logging.LogRecord) -> dict[str, Any]:
        doc: dict[str, Any] = super().format_to_ecs(record)
        if record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == 5:
            client, method, path, version, status = record.args
            doc["client"] = {"address": str(client).rsplit(":", 1)[0]}
            doc["http"] = {"version": str(version), "request": {"method": method}}
            doc["http"]["response"] = {"status_code": int(status)}
            doc["url"] = {"path": str(path).split("?", 1)[0]}
        return doc


class QuietHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """stderr, with library chatter that needs no person shown as DEBUG (so only at DEBUG).

    The record is copied, not changed: other handlers (a test's log capture) see it as logged.
    """

    def __init__(self, level: int) -> None:
        super().__init__(sys.stderr)
        self.setLevel(level)

    def handle(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.CRITICAL and _is_chatter(record):
            if self.level > logging.DEBUG:
                return False  # the logger passed it at its own level; as DEBUG it is not shown
            record = copy.copy(record)
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return bool(super().handle(record))


def _is_chatter(record: logging.LogRecord) -> bool:
    if record.name == "alembic" or record.name.startswith("alembic."):
        return record.levelno < logging.WARNING
    if record.name.startswith("kafka."):
        message = str(record.msg)
        return bool(KAFKA_CONNECTIVITY.search(message)) and not NEEDS_A_PERSON.search(message)
    return False


def setup_logging(settings: Settings) -> None:
    """Every record of the process through one handler on stderr, in the configured format."""
    level = logging.getLevelName(settings.log_level)
    handler = QuietHandler(level)
    handler.setFormatter(EcsFormatter() if settings.log_format == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # kafka-python logs every connection at INFO and a line per fetch at DEBUG: its warnings
    # and errors only (the handler lowers those about connectivity).
    logging.getLogger("kafka").setLevel(max(logging.WARNING, level))
    logging.getLogger("alembic").setLevel(logging.NOTSET)
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)  # its plugin list, at import
    # uvicorn's loggers through the same handler (the console starts uvicorn with
    # ``log_config=None``, so it gives them no handlers of its own).
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "uvicorn.asgi"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True


def json_logging() -> bool:
    """Whether the process logs ECS JSON (then progress lines must be log records too)."""
    return any(isinstance(h.formatter, EcsFormatter) for h in logging.getLogger().handlers)
