"""What the commands share: settings with their errors as usage errors, progress on stderr,
time arguments, JSON output and the CPUs a process may use."""

from __future__ import annotations

import getpass
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from sqlalchemy.orm import Session

from breachwatch.cli.main import SettingError
from breachwatch.core.settings import ConfigError, Settings, load_settings
from breachwatch.runtime.logs import json_logging


def settings_or_exit(**overrides: Any) -> Settings:
    """The settings, or an error naming the bad one (exit status 2)."""
    try:
        return load_settings(**overrides)
    except ConfigError as exc:
        raise SettingError(str(exc)) from None


def echo(msg: str) -> None:
    """Progress goes to stderr, so stdout carries only the command's result; where the process
    logs JSON, as a log record, so that a log shipper never meets a plain line."""
    if json_logging():
        logging.getLogger("breachwatch.progress").info(msg)
    else:
        click.echo(msg, err=True)


def parse_ts(text: str) -> datetime:
    """An RFC 3339 time with an offset, or a usage error that shows one."""
    try:
        ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"{text!r} is not an RFC 3339 time (e.g. 2026-11-24T00:00:00Z)") from None
    if ts.tzinfo is None:
        raise click.BadParameter(f"{text!r} has no offset; write e.g. 2026-11-24T00:00:00Z")
    return ts


def db_option(f: Any) -> Any:
    """The ``--db URL`` option of commands that read or write the incident database."""
    return click.option("--db", "db_url", default=None, help="SQLAlchemy URL (default: BREACHWATCH_DB_URL)")(f)


def optional_ts(text: str | None) -> datetime | None:
    """``parse_ts`` of an option that may be absent (None or empty: no bound)."""
    return parse_ts(text) if text else None


def jsonable(obj: Any) -> Any:
    """Models, dataclasses, times and paths as plain JSON values."""
    if hasattr(obj, "model_dump"):
        return obj.model_dump(mode="json")
    if hasattr(obj, "__dataclass_fields__"):
        return {k: jsonable(getattr(obj, k)) for k in obj.__dataclass_fields__}
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, Path):
        return str(obj)
    return obj


def cpus() -> int:
    """CPUs this process may use (a container's limit, not the host's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def cli_actor() -> str:
    """Who runs a command, as the audit trail names them."""
    try:
        name = getpass.getuser()
    except (KeyError, OSError):
        name = "unknown"
    return f"cli:{name}"


@contextmanager
def database_session(settings: Settings) -> Iterator[Session]:
    """One transaction on the configured database (migrated first), committed on success."""
    from breachwatch.runtime.app import database

    engine = database(settings)
    try:
        with Session(engine) as session, session.begin():
            yield session
    finally:
        engine.dispose()
