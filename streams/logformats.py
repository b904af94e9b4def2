"""Plain log lines -> ``erp.logs`` records: line formats as data, and parsing one line.

A format is one regular expression with named groups and a small field map (which groups make
the time, the service, the node, the level, the message, the label) plus a session rule. Adding a
format means adding a ``LineFormat`` value. Parsing is pure (no I/O, no clock, no state): each
line becomes an ``Imported`` (a record valid under ``applog.schema.json``, with any label the
file carries kept beside it, never in it) or a ``Rejected`` with a reason a person can act on.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo

Level = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]
SessionRule = Literal["none", "node", "window", "node_window", "message"]
LEVELS: frozenset[str] = frozenset({"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"})
SESSION_RULES: tuple[str, ...] = ("node", "window", "node_window", "message", "none")

# Limits of applog.schema.json, kept here so that every record made validates.
MAX_EVENT_ID = 128
MAX_SERVICE = 64
MAX_HOST = 128
MAX_MESSAGE = 65536
_EXCERPT = 120


@dataclass(frozen=True, slots=True)
class LineFormat:
    """How one kind of log line maps onto an ``erp.logs`` record.

    ``pattern`` defines the groups named in ``ts_groups``, ``service_group`` and
    ``message_group``; the node, level and label groups are optional. The time is the
    ``ts_groups`` joined by one space and read with ``ts_format`` in the zone ``tz``; a format
    whose lines carry no year (syslog) takes it from ``year``.
    """

    name: str
    description: str
    pattern: re.Pattern[str]
    ts_groups: tuple[str, ...]
    ts_format: str
    service_group: str
    message_group: str
    tz: str = "UTC"
    node_group: str | None = None
    level_group: str | None = None
    label_group: str | None = None
    level_map: Mapping[str, Level] = field(default_factory=dict)
    default_level: Level | None = None  # for lines without a level; None: a level is required
    normal_label: str = "-"  # the label meaning "not an alert"
    service_clean: re.Pattern[str] | None = None  # a service name is cut at its first match
    service_default: str | None = None  # for lines that name no service (None: rejected)
    needs_year: bool = False
    year: int | None = None
    session: SessionRule = "node"
    window: timedelta = timedelta(hours=1)
    session_regex: re.Pattern[str] | None = None  # for session="message"


@dataclass(frozen=True, slots=True)
class Imported:
    """One accepted line: its record and, kept apart for scoring, the file's label for it."""

    lineno: int
    record: dict[str, Any]
    label: str | None
    normal_label: str = "-"

    @property
    def is_alert(self) -> bool:
        return self.label is not None and self.label != self.normal_label


@dataclass(frozen=True, slots=True)
class Rejected:
    """One line that could not become a record, and why (``kind``: empty, format, timestamp,
    level, service or encoding; ``reason`` in words); ``text`` is the whole line (None if it is
    not UTF-8), so nothing is lost."""

    lineno: int
    kind: str
    reason: str
    text: str | None


Result = Imported | Rejected

_SYSLOG_LEVELS: dict[str, Level] = {
    "DEBUG": "DEBUG",
    "INFO": "INFO",
    "NOTICE": "INFO",
    "WARN": "WARNING",
    "WARNING": "WARNING",
    "ERR": "ERROR",
    "ERROR": "ERROR",
    "CRIT": "CRITICAL",
    "CRITICAL": "CRITICAL",
    "ALERT": "CRITICAL",
    "EMERG": "CRITICAL",
    "FATAL": "CRITICAL",
}

# Loghub's BGL: label, epoch seconds, date, node, local time, node again, type, component, level,
# message (a few real lines end after the level). The epoch field shows the local times are US
# Pacific (UTC-7 in June, UTC-8 in December).
BGL = LineFormat(
    name="bgl",
    description="Blue Gene/L RAS log as in Loghub: label epoch date node time node type component level message",
    pattern=re.compile(
        r"^(?P<label>\S+) (?P<epoch>\d+) (?P<date>\d{4}\.\d{2}\.\d{2}) (?P<node>\S+) "
        r"(?P<time>\d{4}-\d{2}-\d{2}-\d{2}\.\d{2}\.\d{2}\.\d{6}) (?P<node2>\S+) (?P<type>\S+) "
        r"(?P<component>\S+) (?P<level>\S+)(?: (?P<message>.*))?$"
    ),
    ts_groups=("time",),
    ts_format="%Y-%m-%d-%H.%M.%S.%f",
    tz="America/Los_Angeles",
    service_group="component",
    message_group="message",
    node_group="node",
    level_group="level",
    label_group="label",
    level_map={
        "INFO": "INFO",
        "WARNING": "WARNING",
        "ERROR": "ERROR",
        "SEVERE": "ERROR",
        "FATAL": "CRITICAL",
        "FAILURE": "CRITICAL",
    },
)

# Loghub's Thunderbird: label, epoch, date, node, syslog time, host, "program[pid]:" message. No
# level field. Lines without a program (kernel boot lines) name none: service "kernel".
THUNDERBIRD = LineFormat(
    name="thunderbird",
    description="Thunderbird syslog as in Loghub: label epoch date node Mon d hh:mm:ss host program[pid]: message",
    pattern=re.compile(
        r"^(?P<label>\S+) (?P<epoch>\d+) (?P<date>\d{4}\.\d{2}\.\d{2}) (?P<node>\S+) "
        r"(?P<month>[A-Z][a-z]{2}) +(?P<day>\d{1,2}) (?P<time>\d{2}:\d{2}:\d{2}) (?P<host>\S+) "
        r"(?:(?P<program>[^:\s\[]+)(?:\[\d+\])?: )?(?P<message>.*)$"
    ),
    ts_groups=("date", "time"),
    ts_format="%Y.%m.%d %H:%M:%S",
    tz="America/Denver",
    service_group="program",
    message_group="message",
    node_group="node",
    label_group="label",
    default_level="INFO",
    service_clean=re.compile(r"[(/]"),
    service_default="kernel",
)

# Loghub's HDFS: "081109 203615 148 INFO dfs.DataNode$PacketResponder: message"; the session is
# the block a message is about (Xu et al., SOSP 2009).
HDFS = LineFormat(
    name="hdfs",
    description="Hadoop HDFS as in Loghub: yymmdd hhmmss pid LEVEL component: message (session: the block id)",
    pattern=re.compile(
        r"^(?P<date>\d{6}) (?P<time>\d{6}) (?P<pid>\d+) (?P<level>[A-Z]+) (?P<component>[^:\s]+): (?P<message>.*)$"
    ),
    ts_groups=("date", "time"),
    ts_format="%y%m%d %H%M%S",
    service_group="component",
    message_group="message",
    level_group="level",
    level_map={"INFO": "INFO", "WARN": "WARNING", "ERROR": "ERROR", "FATAL": "CRITICAL", "DEBUG": "DEBUG"},
    session="message",
    session_regex=re.compile(r"blk_-?\d+"),
)

# Classic syslog (RFC 3164 style, as /var/log/messages writes it): "Mon d hh:mm:ss host
# program[pid]: message". The line has no year (``--year``) and no level; a level word opening
# the message ("error: ...", "<warning>") is read as the level.
SYSLOG = LineFormat(
    name="syslog",
    description="syslog (RFC 3164 style): Mon d hh:mm:ss host program[pid]: [level:] message; needs --year",
    pattern=re.compile(
        r"^(?P<month>[A-Z][a-z]{2}) +(?P<day>\d{1,2}) (?P<time>\d{2}:\d{2}:\d{2}) (?P<host>\S+) "
        r"(?:(?P<program>[^:\s\[]+)(?:\[\d+\])?: )?"
        r"(?:<?(?P<level>(?i:debug|info|notice|warn|warning|err|error|crit|critical|alert|emerg|fatal))>?:? )?"
        r"(?P<message>.*)$"
    ),
    ts_groups=("month", "day", "time"),
    ts_format="%b %d %H:%M:%S",
    service_group="program",
    message_group="message",
    node_group="host",
    level_group="level",
    level_map=_SYSLOG_LEVELS,
    default_level="INFO",
    service_clean=re.compile(r"[(/]"),
    service_default="kernel",
    needs_year=True,
)

# Lines that start with an ISO 8601 time, then a host, a program and optionally a level:
# "2026-11-02T08:00:01.5Z web-1 billing[311]: ERROR payment declined ...".
ISO = LineFormat(
    name="iso",
    description="ISO 8601 time host program[pid]: [LEVEL] message (the time in UTC unless it has an offset)",
    pattern=re.compile(
        r"^(?P<ts>\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:[.,]\d{1,6})?(?:Z|[+-]\d{2}:?\d{2})?) "
        r"(?P<host>\S+) (?P<program>[^:\s\[]+)(?:\[\d+\])?: "
        r"(?:\[?(?P<level>(?i:debug|info|notice|warn|warning|err|error|crit|critical|alert|emerg|fatal))\]?:? )?"
        r"(?P<message>.*)$"
    ),
    ts_groups=("ts",),
    ts_format="iso",
    service_group="program",
    message_group="message",
    node_group="host",
    level_group="level",
    level_map=_SYSLOG_LEVELS,
    default_level="INFO",
)

FORMATS: dict[str, LineFormat] = {f.name: f for f in (BGL, THUNDERBIRD, HDFS, SYSLOG, ISO)}


def with_options(
    fmt: LineFormat,
    *,
    session: SessionRule | None = None,
    window: timedelta | None = None,
    year: int | None = None,
    tz: str | None = None,
) -> LineFormat:
    """A copy of ``fmt`` with another session rule, window, year or time zone."""
    changes: dict[str, Any] = {}
    if session is not None:
        changes["session"] = session
    if window is not None:
        changes["window"] = window
    if year is not None:
        changes["year"] = year
    if tz is not None:
        ZoneInfo(tz)  # an unknown zone fails here, naming it
        changes["tz"] = tz
    return replace(fmt, **changes) if changes else fmt


def _excerpt(line: str) -> str:
    return line[:_EXCERPT] + ("…" if len(line) > _EXCERPT else "")


def _parse_time(fmt: LineFormat, groups: Mapping[str, str | None]) -> datetime | str:
    """The record time in UTC, or the reason it cannot be read."""
    parts = [groups.get(g) for g in fmt.ts_groups]
    if any(p is None for p in parts):
        return f"no timestamp in field(s) {', '.join(fmt.ts_groups)}"
    text = " ".join(p for p in parts if p is not None)
    if fmt.ts_format == "iso":
        try:
            ts = datetime.fromisoformat(text.replace(",", ".").replace("Z", "+00:00"))
        except ValueError:
            return f"timestamp {text!r} is not an ISO 8601 time"
        return (ts if ts.tzinfo is not None else ts.replace(tzinfo=ZoneInfo(fmt.tz))).astimezone(UTC)
    if fmt.needs_year:
        if fmt.year is None:
            return f"{fmt.name} lines carry no year: give one (--year)"
        text = f"{fmt.year} {text}"
    try:
        local = datetime.strptime(text, ("%Y " if fmt.needs_year else "") + fmt.ts_format)
    except ValueError:
        return f"timestamp {text!r} does not match {fmt.ts_format!r}"
    return local.replace(tzinfo=ZoneInfo(fmt.tz)).astimezone(UTC)


def _level(fmt: LineFormat, groups: Mapping[str, str | None]) -> str:
    raw = groups.get(fmt.level_group) if fmt.level_group else None
    if raw is None:
        return fmt.default_level or "no level field"
    mapped = fmt.level_map.get(raw.upper())
    if mapped is not None:
        return mapped
    return f"unknown level {raw!r} (known: {', '.join(sorted(fmt.level_map))})"


def _service(fmt: LineFormat, raw: str | None) -> str:
    if not raw:
        return fmt.service_default or ""
    if fmt.service_clean is not None:
        m = fmt.service_clean.search(raw)
        if m is not None and m.start() > 0:
            raw = raw[: m.start()]
    return raw.lower()[:MAX_SERVICE]


def _session(fmt: LineFormat, node: str | None, ts: datetime, message: str) -> str | None:
    """The session id: the node, a time window, both, or an id found in the message."""
    rule = fmt.session
    if rule == "none":
        return None
    if rule == "message":
        m = fmt.session_regex.search(message) if fmt.session_regex is not None else None
        return m.group() if m is not None else None
    step = max(int(fmt.window.total_seconds()), 1)
    # Windows are aligned on the epoch, so a record always lands in the same window.
    start = datetime.fromtimestamp(int(ts.timestamp()) // step * step, tz=UTC)
    window = f"w{start:%Y%m%dT%H%M%S}Z+{step}s"
    if rule == "window":
        return window
    if node is None:
        return None
    return node[:MAX_HOST] if rule == "node" else f"{node[:MAX_HOST]}@{window}"


def event_id(source: str, lineno: int, line: str) -> str:
    """Stable per line of a file: a replay of the same file gives the same ids (so duplicates
    count once), and two files with the same name give different ones."""
    digest = hashlib.blake2b(line.encode("utf-8", "surrogatepass"), digest_size=6).hexdigest()
    return f"{source[:80]}:{lineno}:{digest}"


def parse_line(line: str, fmt: LineFormat, lineno: int = 1, source: str = "import") -> Result:
    """One log line as a record, or why not."""
    text = line.rstrip("\r\n")
    if not text.strip():
        return Rejected(lineno, "empty", "empty line", text)
    m = fmt.pattern.match(text)
    if m is None:
        return Rejected(lineno, "format", f"does not match the {fmt.name} line format ({fmt.description})", text)
    groups = m.groupdict()
    ts = _parse_time(fmt, groups)
    if isinstance(ts, str):
        return Rejected(lineno, "timestamp", ts, text)
    level = _level(fmt, groups)
    if level not in LEVELS:
        return Rejected(lineno, "level", level, text)
    service = _service(fmt, groups.get(fmt.service_group))
    if not service:
        return Rejected(lineno, "service", f"no service: field {fmt.service_group!r} is empty", text)
    message = groups.get(fmt.message_group) or ""
    attrs: dict[str, Any] = {"source_line": lineno}
    if len(message) > MAX_MESSAGE:
        # Kept, cut to the contract's limit: one huge line is still evidence worth replaying.
        attrs["message_chars"] = len(message)
        message = message[:MAX_MESSAGE]
    node = groups.get(fmt.node_group) if fmt.node_group else None
    record: dict[str, Any] = {
        "event_id": event_id(source, lineno, text),
        "ts": ts.isoformat(timespec="microseconds").replace("+00:00", "Z"),
        "service": service,
        "level": level,
        "message": message,
        "attrs": attrs,
    }
    if node:
        record["host"] = node[:MAX_HOST]
    session = _session(fmt, node, ts, message)
    if session is not None:
        record["session_id"] = session
    label = groups.get(fmt.label_group) if fmt.label_group else None
    return Imported(lineno, record, label, fmt.normal_label)


def excerpt(text: str | None) -> str:
    """The start of a rejected line, for a one-line report."""
    return _excerpt(text) if text is not None else "(not UTF-8)"
