"""``breachwatch transparency ...``, ``breachwatch access-approval ...`` and
``breachwatch access-requests ...``: thin commands over ``privacy.transparency``,
``privacy.approvals`` and ``privacy.staff_mail``."""

from __future__ import annotations

import getpass
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import click
from sqlalchemy.orm import Session

from breachwatch.cli.common import db_option, optional_ts, parse_ts, settings_or_exit
from breachwatch.core.settings import ConfigError, Settings


def _actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli:unknown"


@contextmanager
def _session(settings: Settings, *, write: bool = True) -> Iterator[Session]:
    from breachwatch.runtime.app import database

    engine = database(settings)
    try:
        with Session(engine) as session:
            if write:
                with session.begin():
                    yield session
            else:
                yield session
    finally:
        engine.dispose()


# --- transparency ---------------------------------------------------------------------------------


@click.group("transparency")
def transparency_group() -> None:
    """Tenants' transparency logs: every vendor-staff access to their data and its justification."""


@transparency_group.command("export")
@click.argument("tenant")
@click.option("--since", default=None, metavar="TIME", help="from this time (RFC 3339, e.g. 2026-11-01T00:00:00Z)")
@click.option("--until", default=None, metavar="TIME", help="before this time")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["json", "csv"]),
    default="json",
    show_default=True,
    help="JSON (a list of records) or CSV (one row per access)",
)
@click.option("--out", type=click.Path(dir_okay=False, writable=True), default=None, help="default: stdout")
@db_option
def transparency_export(
    tenant: str, since: str | None, until: str | None, fmt: str, out: str | None, db_url: str | None
) -> None:
    """TENANT's staff accesses, one record per access (ts, staff, action, records, ticket_id,
    justified, reason, ...), staff named as BREACHWATCH_TRANSPARENCY_STAFF_IDENTITY says."""
    from breachwatch.privacy import transparency
    from breachwatch.storage import audit

    settings = settings_or_exit(db_url=db_url)
    lo, hi = optional_ts(since), optional_ts(until)
    identity = transparency.identity_from(settings)
    sink = open(out, "w", encoding="utf-8", newline="") if out else sys.stdout  # noqa: SIM115 - closed below
    n = 0
    try:
        with _session(settings) as session:
            rows = transparency.iter_rows(session, tenant, since=lo, until=hi)

            def entries() -> Iterator[dict[str, object]]:
                nonlocal n
                for row in rows:
                    n += 1
                    yield transparency.entry(row, identity)

            for piece in transparency.export(entries(), fmt):  # type: ignore[arg-type]
                sink.write(piece)
            audit.serialize_writes(session)
            audit.record(session, _actor(), "transparency.export", f"tenant:{tenant}", {"entries": n, "format": fmt})
    finally:
        if out:
            sink.close()
    click.echo(f"{n} staff accesses of {tenant}" + (f" written to {out}" if out else ""), err=True)


@transparency_group.command("summaries")
@click.option("--month", default=None, metavar="YYYY-MM", help="default: last month")
@click.option("--tenant", default=None, help="only this tenant (default: every tenant with staff access that month)")
@db_option
def transparency_summaries(month: str | None, tenant: str | None, db_url: str | None) -> None:
    """Queue the monthly summaries to tenants' security contacts (once per tenant and month:
    running it again queues nothing new). The service queues last month's by itself."""
    from breachwatch.privacy.staff_mail import Month, queue_month, queue_summary

    settings = settings_or_exit(db_url=db_url)
    try:
        which = Month.parse(month) if month else Month.before(datetime.now(UTC))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--month") from None
    with _session(settings) as session:
        if tenant:
            queued = {tenant: len(queue_summary(session, tenant, which, settings))}
        else:
            queued = queue_month(session, which, settings)
    click.echo(json.dumps({"month": str(which), "queued": queued}))


# --- approval policy --------------------------------------------------------------------------------


@click.group("access-approval")
def approval_group() -> None:
    """Tenants that require approval before vendor staff access their data."""


@approval_group.command("require")
@click.argument("tenant")
@click.option("--approver", "approvers", multiple=True, required=True, help="an approver's e-mail (repeat for more)")
@click.option("--locale", default=None, help="language of the approvers' e-mails (default: the tenant's)")
@db_option
def approval_require(tenant: str, approvers: tuple[str, ...], locale: str | None, db_url: str | None) -> None:
    """From now on, TENANT requires approval before staff access (or: change its approvers)."""
    from breachwatch.privacy import approvals

    settings = settings_or_exit(db_url=db_url)
    try:
        with _session(settings) as session:
            row = approvals.require_approval(session, tenant, approvers, _actor(), locale=locale)
            since = row.since.isoformat()
    except approvals.ApprovalError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{tenant} requires approval before staff access since {since} ({len(approvers)} approver(s))")


@approval_group.command("release")
@click.argument("tenant")
@db_option
def approval_release(tenant: str, db_url: str | None) -> None:
    """From now on, TENANT no longer requires approval."""
    from breachwatch.privacy import approvals

    with _session(settings_or_exit(db_url=db_url)) as session:
        if not approvals.release_approval(session, tenant, _actor()):
            raise click.ClickException(f"{tenant} does not require approval")
    click.echo(f"{tenant} no longer requires approval before staff access")


# --- requests ------------------------------------------------------------------------------------


@click.group("access-requests")
def requests_group() -> None:
    """Requests for staff access to tenants that require approval."""


@requests_group.command("file")
@click.option("--tenant", required=True, help="the tenant whose data the staff need")
@click.option("--staff", "staff", multiple=True, required=True, help="a staff id (repeat for more), or ID=Name")
@click.option(
    "--purpose",
    required=True,
    type=click.Choice(["troubleshooting", "support_on_request", "maintenance", "security"]),
    help="why, in the privacy policy's words (section 6.1)",
)
@click.option("--from", "starts", required=True, metavar="TIME", help="start of the window (RFC 3339)")
@click.option("--until", "ends", required=True, metavar="TIME", help="end of the window (RFC 3339)")
@click.option("--ticket", default=None, help="the ticket the access is for")
@click.option("--reason", default="", help="what the approver is told")
@click.option("--id", "request_id", default=None, help="the ticketing system's own id for it")
@db_option
def requests_file(
    tenant: str,
    staff: tuple[str, ...],
    purpose: str,
    starts: str,
    ends: str,
    ticket: str | None,
    reason: str,
    request_id: str | None,
    db_url: str | None,
) -> None:
    """File a request; the tenant's approvers are e-mailed a link to decide. Prints its id."""
    from breachwatch.privacy import approvals
    from breachwatch.privacy.staff_mail import file_and_ask

    settings = settings_or_exit(db_url=db_url)
    pairs = [s.partition("=") for s in staff]
    req = approvals.AccessRequestIn(
        tenant_id=tenant,
        staff_ids=tuple(p[0] for p in pairs),
        purpose=purpose,
        starts_at=parse_ts(starts),
        ends_at=parse_ts(ends),
        ticket_id=ticket,
        reason=reason,
        staff_names={p[0]: p[2] for p in pairs if p[2]},
        request_id=request_id,
    )
    try:
        with _session(settings) as session:
            row = file_and_ask(session, req, _actor(), settings)
            out = approvals.as_dict(row)
    except (approvals.ApprovalError, ConfigError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(out["request_id"])
    click.echo(f"pending until {out['expires_at']}; the approvers of {tenant} are asked", err=True)


@requests_group.command("list")
@click.option("--tenant", default=None, help="only this tenant's requests")
@db_option
def requests_list(tenant: str | None, db_url: str | None) -> None:
    """Requests, newest first, with their state."""
    from breachwatch.privacy import approvals

    with _session(settings_or_exit(db_url=db_url), write=False) as session:
        for r in approvals.requests_of(session, tenant):
            d = approvals.as_dict(r)
            click.echo(
                f"{d['request_id']}\t{d['tenant_id']}\t{d['state']}\t{','.join(d['staff_ids'])}\t"
                f"{d['purpose']}\t{d['starts_at']}\t{d['ends_at']}"
            )


@requests_group.command("show")
@click.argument("request_id")
@db_option
def requests_show(request_id: str, db_url: str | None) -> None:
    """One request as JSON."""
    from breachwatch.privacy import approvals

    with _session(settings_or_exit(db_url=db_url), write=False) as session:
        try:
            click.echo(json.dumps(approvals.as_dict(approvals.get(session, request_id)), indent=2))
        except approvals.ApprovalError as exc:
            raise click.ClickException(str(exc)) from None


@requests_group.command("revoke")
@click.argument("request_id")
@click.option("--by", default=None, help="who asked for it (default: you)")
@db_option
def requests_revoke(request_id: str, by: str | None, db_url: str | None) -> None:
    """End an approval now (for instance at the tenant's request)."""
    from breachwatch.privacy import approvals

    try:
        with _session(settings_or_exit(db_url=db_url)) as session:
            approvals.revoke(session, request_id, by or _actor())
    except approvals.ApprovalError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{request_id} revoked")


@requests_group.command("expire")
@db_option
def requests_expire(db_url: str | None) -> None:
    """Mark requests nobody decided in time as expired (the service does this every minute)."""
    from breachwatch.privacy import approvals

    with _session(settings_or_exit(db_url=db_url)) as session:
        expired = approvals.expire_due(session)
    click.echo(json.dumps({"expired": expired}))


COMMANDS = (transparency_group, approval_group, requests_group)
