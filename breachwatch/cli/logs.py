"""``breachwatch import-logs``: a plain log file (BGL, Thunderbird, HDFS, syslog, ISO-timestamped
lines) as a dump folder, to replay, train on or backtest against its labels."""

from __future__ import annotations

import json
import sys
from datetime import datetime, timedelta
from pathlib import Path

import click

from breachwatch.cli.common import parse_ts
from breachwatch.streams.logformats import FORMATS, SESSION_RULES, with_options
from breachwatch.streams.logimport import import_file

_FORMAT_HELP = "; ".join(f"{f.name}: {f.description}" for f in FORMATS.values())


@click.command("import-logs")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path), required=True, help="dump folder")
@click.option("--format", "fmt_name", type=click.Choice(sorted(FORMATS)), required=True, help=_FORMAT_HELP)
@click.option(
    "--session",
    type=click.Choice(SESSION_RULES),
    default=None,
    help="what a session is: the node (split after 30 min idle by the detector), a time window, "
    "both, an id found in the message (hdfs: the block), or none (default: the format's)",
)
@click.option("--window-minutes", type=click.FloatRange(min=1.0 / 60), default=None, help="window length")
@click.option("--year", type=click.IntRange(1970, 9999), default=None, help="year of lines that carry none (syslog)")
@click.option("--tz", default=None, help="time zone of lines without an offset, e.g. Europe/Berlin")
@click.option("--source", default=None, help="event id prefix (default: the file name)")
@click.option(
    "--labels", "with_labels", is_flag=True, help="also write labels.json from the lines' labels (bgl, thunderbird)"
)
@click.option("--clean-until", default=None, help="labels.json's training cut (default: two thirds into the file)")
def import_logs(
    path: Path,
    out: Path,
    fmt_name: str,
    session: str | None,
    window_minutes: float | None,
    year: int | None,
    tz: str | None,
    source: str | None,
    with_labels: bool,
    clean_until: str | None,
) -> None:
    """Turn a plain log file into a dump folder: erp.logs.jsonl, rejected.jsonl, labels.json."""
    fmt = FORMATS[fmt_name]
    if with_labels and fmt.label_group is None:
        raise click.BadParameter(f"{fmt_name} lines carry no labels", param_hint="--labels")
    if fmt.needs_year and year is None:
        raise click.BadParameter(f"{fmt_name} lines carry no year: give one", param_hint="--year")
    try:
        fmt = with_options(
            fmt,
            session=session,  # type: ignore[arg-type]
            window=timedelta(minutes=window_minutes) if window_minutes else None,
            year=year,
            tz=tz,
        )
    except (KeyError, ValueError) as exc:
        raise click.BadParameter(f"unknown time zone {tz!r} ({exc})", param_hint="--tz") from None
    cut: datetime | None = parse_ts(clean_until) if clean_until else None
    summary = import_file(path, out, fmt, source=source, labels=with_labels, clean_until=cut, report=sys.stderr)
    click.echo(json.dumps(summary.as_dict(), indent=2))
    if summary.imported == 0:
        raise click.ClickException(f"no line of {path} could be read as {fmt_name}; see {out / 'rejected.jsonl'}")


COMMANDS = (import_logs,)
