"""``breachwatch notices ...`` and ``breachwatch templates lint``: thin commands over
``notifier.notices``, ``notifier.outbox`` and ``notifier.lint``. Register with ``register(main)``."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from sqlalchemy import select

from breachwatch.cli.common import database_session, settings_or_exit
from breachwatch.cli.main import SettingError
from breachwatch.core.settings import ConfigError, Settings
from breachwatch.notifier import notices
from breachwatch.notifier.notices.models import NoticeRow


def _settings() -> Settings:
    return settings_or_exit()


_session = database_session


def _next_deadline(n: dict[str, Any]) -> str:
    open_duties = [d for d in n["duties"] if d["owner"] == "vendor" and d["status"] not in ("met", "met_late")]
    if not open_duties:
        return "-"
    d = min(open_duties, key=lambda d: d["target_at"] or "9999")
    return f"{d['status']} {d['target_at'] or ''} ({d['rule_id']})".strip()


@click.group("notices")
def notices_group() -> None:
    """Customer breach notices: list, preview, approve, send."""


@notices_group.command("list")
@click.option("--incident", "incident_id", default=None, help="only this incident's notices")
@click.option("--json", "as_json", is_flag=True, help="print JSON")
def list_cmd(incident_id: str | None, as_json: bool) -> None:
    """Notices with their status, version and the next deadline the vendor owes."""
    settings = _settings()
    with _session(settings) as session:
        if incident_id:
            incident_ids = [incident_id]
        else:
            incident_ids = list(
                dict.fromkeys(session.scalars(select(NoticeRow.incident_id).order_by(NoticeRow.created_at)))
            )
        rows = [n for i in incident_ids for n in notices.list_notices(session, i)]
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    if not rows:
        click.echo("no notices")
        return
    for n in rows:
        click.echo(
            f"{n['notice_id']}  v{n['version']} {n['status']:<16} {n['tenant_id']} ({n['jurisdiction']}, {n['locale']})"
            f"  incident {n['incident_id']}  next: {_next_deadline(n)}"
        )
        for problem in n["problems"]:
            click.echo(f"    ! {problem}")


@notices_group.command("preview")
@click.argument("notice_id")
@click.option("--version", type=int, default=None, help="default: the current version")
@click.option("--locale", default=None, help="default: the tenant's language")
@click.option("--html", "show_html", is_flag=True, help="print the HTML part instead of the text")
@click.option("--regulator-draft", "draft", is_flag=True, help="print the regulator-report draft")
def preview_cmd(notice_id: str, version: int | None, locale: str | None, show_html: bool, draft: bool) -> None:
    """Print exactly what a notice version sends."""
    settings = _settings()
    with _session(settings) as session:
        try:
            p = notices.preview_notice(session, notice_id, version=version, locale=locale)
        except notices.NoticeError as exc:
            raise click.ClickException(str(exc)) from None
    part = p["regulator_draft"] if draft else p
    if part is None:
        raise click.ClickException("this notice has no regulator-report draft")
    click.echo(f"Subject: {part['subject']}")
    click.echo(
        f"Version: {p['version']} ({p['version_status']}), locale {p['locale']}, to {', '.join(p['recipients'])}"
    )
    click.echo("")
    click.echo((part["html"] or "") if show_html else part["text"])


@notices_group.command("approve")
@click.argument("notice_id")
@click.option("--by", "approver", required=True, help="the approving console user (approver role), e.g. alice")
def approve_cmd(notice_id: str, approver: str) -> None:
    """Approve the current version; once approved by enough people it is sealed and queued."""
    settings = _settings()
    try:
        with _session(settings) as session:
            result = notices.approve_notice(
                session,
                notice_id,
                approver,
                confirmer_may_approve_alone=settings.notice_confirmer_may_approve_alone,
            )
    except notices.NoticeError as exc:
        raise click.ClickException(str(exc)) from None
    if result["status"] == "approved":
        click.echo(
            f"{notice_id} v{result['version']} approved by {', '.join(result['approvals'])}; "
            f"{result['queued']} message(s) queued"
        )
    else:
        click.echo(f"{notice_id} v{result['version']}: approval recorded; {result['waiting_for']}")


@notices_group.command("unknown")
def unknown_cmd() -> None:
    """Notice messages whose delivery nobody could confirm: each waits for `notices outcome`."""
    settings = _settings()
    with _session(settings) as session:
        rows = notices.unknown_deliveries(session)
    if not rows:
        click.echo("no message waits for a decision")
    for r in rows:
        click.echo(f"{r['message_id']}  notice {r['notice_id']} v{r['version']} to {r['recipient']}: {r['last_error']}")


@notices_group.command("outcome")
@click.argument("message_id")
@click.option("--arrived/--not-arrived", required=True, help="what the provider's logs or the recipient say")
@click.option("--by", "person", required=True, help="the deciding console user (approver role)")
def outcome_cmd(message_id: str, arrived: bool, person: str) -> None:
    """Decide a message whose outcome is unknown: it arrived (recorded as sent), or it did not
    (sent again, unless its version was superseded or withdrawn)."""
    settings = _settings()
    try:
        with _session(settings) as session:
            outcome = notices.resolve_unknown(session, message_id, arrived=arrived, by=person)
    except notices.NoticeError as exc:
        raise click.ClickException(str(exc)) from None
    words = {
        "sent": "recorded as sent",
        "resending": "queued to be sent again",
        "not_resent": "not sent again: its version was superseded or withdrawn",
    }
    click.echo(f"{message_id}: {words[outcome]}")


@notices_group.command("send")
@click.option(
    "--limit", type=click.IntRange(1, 10_000), default=100, show_default=True, help="most messages sent in this pass"
)
def send_cmd(limit: int) -> None:
    """One delivery pass over the outbox (notices and pages), then print what happened."""
    from breachwatch.runtime.app import database, delivery_channels, outbox_dispatcher

    settings = _settings()
    engine = database(settings)
    try:
        try:
            channels = delivery_channels(settings, engine)
        except ConfigError as exc:
            raise click.ClickException(str(exc)) from None
        report = outbox_dispatcher(settings, engine, channels).dispatch_due(limit=limit)
    finally:
        engine.dispose()
    click.echo(json.dumps({k: getattr(report, k) for k in report.__dataclass_fields__}))
    if report.unknown:
        click.echo(f"{report.unknown} message(s) have an unknown outcome and wait for a person", err=True)


@notices_group.command("deadlines")
def deadlines_cmd() -> None:
    """Page the on-call team for deadlines that are near or past (safe to run repeatedly)."""
    settings = _settings()
    now = datetime.now(UTC)
    try:
        with _session(settings) as session:
            pages = notices.check_deadlines(session, settings, now)
            overdue = notices.overdue_duties(session, now)
    except ConfigError as exc:
        raise SettingError(str(exc)) from None
    for p in pages:
        click.echo(f"paged: {p.notice_id} {p.rule_id} {p.threshold} ({len(p.message_ids)} message(s))")
    for d in overdue:
        click.echo(f"OVERDUE: {d['notice_id']} {d['rule_id']} target {d['target_at']}", err=True)


@click.group("templates")
def templates_group() -> None:
    """Message templates."""


@templates_group.command("lint")
@click.option(
    "--dir",
    "templates_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="templates folder (default: the packaged templates)",
)
def lint_cmd(templates_dir: Path | None) -> None:
    """Check every notice template renders every required element, per language and jurisdiction."""
    from breachwatch.notifier.lint import lint_templates
    from breachwatch.notifier.render import TEMPLATES_DIR

    problems = lint_templates(templates_dir or TEMPLATES_DIR)
    for p in problems:
        click.echo(str(p), err=True)
    if problems:
        click.echo(f"{len(problems)} problem(s)", err=True)
        sys.exit(1)
    click.echo("templates ok")


COMMANDS = (notices_group, templates_group)
