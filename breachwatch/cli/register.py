"""``breachwatch register ...`` (the breach register: list, show, export, write, assess, logs) and
the decisions on a breach under ``breachwatch notices ...`` (moment, delay add|lift|list,
safe-harbour, contacts). Thin: parse, call one function of ``notifier.register`` or
``notifier.notices.decisions``, print. Whoever decides is named with ``--by`` and must be an
active console user holding the role the console asks for the same decision."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from sqlalchemy.orm import Session

from breachwatch.cli.common import (
    cli_actor,
    database_session,
    db_option,
    jsonable,
    optional_ts,
    parse_ts,
    settings_or_exit,
)
from breachwatch.core.settings import Settings
from breachwatch.incidents.users import ROLE_RANK, UserRow
from breachwatch.notifier.duties import REQUESTERS
from breachwatch.notifier.notices import NoticeError
from breachwatch.notifier.notices import decisions as dec
from breachwatch.notifier.notices.harm import FACTORS, LEVELS
from breachwatch.notifier.notices.moments import PERSON_MOMENTS
from breachwatch.notifier.register import entries, export

_session = database_session


def _person(session: Session, name: str, role: str) -> str:
    """The console user who decides; refused unless active and holding ``role``."""
    user = session.get(UserRow, name.strip().lower())
    if user is None or user.disabled:
        raise click.ClickException(f"--by: no active console user {name[:64]!r} (add one with breachwatch users add)")
    if ROLE_RANK[user.role] < ROLE_RANK[role]:
        raise click.ClickException(f"--by: {user.username} is a {user.role}; this needs the {role} role")
    return user.username


def _decide(role: str, by: str, db_url: str | None, write: Callable[[Session, str, Settings], Any]) -> Any:
    settings = settings_or_exit(db_url=db_url)
    try:
        with _session(settings) as session:
            return write(session, _person(session, by, role), settings)
    except (NoticeError, LookupError) as exc:
        raise click.ClickException(str(exc).strip("'\"")) from None


def _print(data: Any) -> None:
    click.echo(json.dumps(jsonable(data), indent=2, ensure_ascii=False))


def _by(f: Any) -> Any:
    return click.option("--by", "by", required=True, help="the console user deciding (recorded in the audit trail)")(f)


# --- breachwatch register -----------------------------------------------------------------------


@click.group("register")
def register_group() -> None:
    """The breach register: every confirmed breach, notified or not, with its decisions."""


@register_group.command("list")
@click.option("--notified/--not-notified", "notified", default=None, help="only breaches notified (or not)")
@click.option("--tenant", default=None, help="only this tenant's breaches")
@click.option("--json", "as_json", is_flag=True, help="print the entries as JSON")
@db_option
def list_cmd(notified: bool | None, tenant: str | None, as_json: bool, db_url: str | None) -> None:
    """One line per confirmed breach: when, which tenants, notified or not, decisions, kept until."""
    with _session(settings_or_exit(db_url=db_url)) as session:
        found = entries.entries(session, notified=notified, tenant_id=tenant)
    if as_json:
        _print({"entries": found})
        return
    if not found:
        click.echo("no confirmed breach")
        return
    for e in found:
        tenants = ", ".join(
            f"{t['tenant_id']} ({'notified' if t['notified'] else 'not notified'})" for t in e["tenants"]
        )
        decisions = "; ".join(f"{a['jurisdiction']} {a['owner']}: {a['decision']}" for a in e["assessments"]) or "-"
        kept = "until a person decides" if e["keep_until_decided_by_person"] else (e["keep_until"] or "-")
        click.echo(
            f"{e['incident_id']}  confirmed {e['confirmed_at']}  {tenants}  decisions: {decisions}  keep: {kept}"
        )


@register_group.command("show")
@click.argument("incident_id")
@db_option
def show_cmd(incident_id: str, db_url: str | None) -> None:
    """One breach's whole register entry, as JSON."""
    try:
        with _session(settings_or_exit(db_url=db_url)) as session:
            _print(entries.entry(session, incident_id))
    except LookupError as exc:
        raise click.ClickException(str(exc).strip("'\"")) from None


@register_group.command("export")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["json", "csv"]),
    default="json",
    show_default=True,
    help="JSON (one document) or CSV (one row per breach)",
)
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="file (default: stdout)")
@db_option
def export_cmd(fmt: str, out: Path | None, db_url: str | None) -> None:
    """The whole register as JSON or CSV (one CSV row per breach, tenant and jurisdiction)."""
    with _session(settings_or_exit(db_url=db_url)) as session:
        body, count = export.audited_export(session, cli_actor(), fmt, "cli")
    if out is None:
        click.echo(body, nl=False)
    else:
        out.write_text(body, encoding="utf-8")
        click.echo(f"{count} breach(es) written to {out}", err=True)


@register_group.command("write")
@click.argument("incident_id")
@click.option("--facts", default=None, help="what happened, as the register records it")
@click.option("--effects", default=None, help="its effects on the people concerned")
@click.option("--remedial-action", "remedial_action", default=None, help="what was done about it")
@_by
@db_option
def write_cmd(
    incident_id: str, facts: str | None, effects: str | None, remedial_action: str | None, by: str, db_url: str | None
) -> None:
    """Write the register's account of a breach: its facts, effects and remedial action."""
    _decide(
        "responder",
        by,
        db_url,
        lambda s, who, _: entries.write(
            s, incident_id, by=who, facts=facts, effects=effects, remedial_action=remedial_action
        ),
    )
    click.echo(f"{incident_id}: the register's account is saved")


def _factors(values: tuple[str, ...]) -> dict[str, dict[str, str]]:
    out = {}
    for value in values:
        name, _, rest = value.partition("=")
        level, _, note = rest.partition(":")
        if not name or not level:
            raise click.BadParameter(f"{value!r}: write FACTOR=LEVEL[:note], e.g. acquired=low:stopped before download")
        out[name.strip()] = {"level": level.strip(), "note": note.strip()}
    return out


@register_group.command("assess")
@click.argument("incident_id")
@click.option("--tenant", "tenant_id", required=True, help="the tenant whose data subjects the assessment is for")
@click.option("--jurisdiction", required=True, help="where the data subjects concerned live, e.g. DE or US-CA")
@click.option("--owner", type=click.Choice(["vendor", "customer"]), required=True, help="whose decision this is")
@click.option(
    "--factor",
    "factors",
    multiple=True,
    help=f"FACTOR=LEVEL[:note]; factors: {', '.join(FACTORS)}; levels: {', '.join(LEVELS)}",
)
@click.option(
    "--decision",
    type=click.Choice(["notify", "no_notify"]),
    required=True,
    help="whether the people concerned must be told",
)
@click.option("--reasons", default="", help="required not to notify")
@click.option("--waive", multiple=True, help="a duty the no-notify decision covers (default: every one it may)")
@_by
@db_option
def assess_cmd(
    incident_id: str,
    tenant_id: str,
    jurisdiction: str,
    owner: str,
    factors: tuple[str, ...],
    decision: str,
    reasons: str,
    waive: tuple[str, ...],
    by: str,
    db_url: str | None,
) -> None:
    """Record a risk-of-harm assessment of one tenant's breach in one jurisdiction, and its decision."""
    result = _decide(
        "approver",
        by,
        db_url,
        lambda s, who, settings: dec.record_assessment(
            s,
            incident_id,
            tenant_id,
            jurisdiction.upper(),
            owner=owner,
            factors=_factors(factors),
            decision=decision,
            reasons=reasons,
            waive=list(waive) or None,
            by=who,
            settings=settings,
        ),
    )
    covered = f"; covers {', '.join(result['waived'])}" if result["waived"] else ""
    click.echo(f"assessment {result['assessment_id']}: {decision}{covered}")


@register_group.command("logs")
@db_option
def logs_cmd(db_url: str | None) -> None:
    """HIPAA annual logs: breaches under 500 per covered entity and local year, and when each is due."""
    with _session(settings_or_exit(db_url=db_url)) as session:
        logs = entries.hipaa_annual_logs(session)
    for log in logs:
        click.echo(
            f"{log['tenant_id']} {log['year']}: {len(log['incidents'])} breach(es), due by the end of "
            f"{log['due_last_day']} ({log['due_zone']}): {', '.join(log['incidents'])}"
        )
    if not logs:
        click.echo("no breach is logged for HHS")


# --- decisions under breachwatch notices ---------------------------------------------------------


@click.command("moment")
@click.argument("incident_id")
@click.argument("moment", type=click.Choice(PERSON_MOMENTS))
@click.option("--at", "at", required=True, help="RFC 3339 with its offset, e.g. 2026-11-24T09:00:00Z")
@click.option("--note", default="", help="how the moment was established (kept with it)")
@_by
@db_option
def moment_cmd(incident_id: str, moment: str, at: str, note: str, by: str, db_url: str | None) -> None:
    """Record when the entity became aware, determined a breach, finished its assessment or
    determined materiality; the clocks that start there move and the notices are redrafted."""
    result = _decide(
        "approver",
        by,
        db_url,
        lambda s, who, settings: dec.record_moment(
            s, incident_id, moment, parse_ts(at), by=who, note=note, settings=settings
        ),
    )
    click.echo(f"{moment} recorded at {result['at']}; redrafted: {', '.join(result['redrafted']) or 'none'}")


@click.group("delay")
def delay_group() -> None:
    """Law-enforcement requests to delay notice: only the clocks their law allows are held."""


@delay_group.command("add")
@click.argument("incident_id")
@click.option(
    "--requested-by",
    type=click.Choice(list(REQUESTERS)),
    default="law_enforcement",
    show_default=True,
    help="who asked for the delay",
)
@click.option("--agency", required=True, help="the agency that asked, as it named itself")
@click.option("--official", required=True, help="who asked")
@click.option(
    "--form",
    type=click.Choice(["written", "oral"]),
    required=True,
    help="how it asked, written or oral (an oral request delays notice less under some laws: HIPAA 164.412(b))",
)
@click.option("--requested-at", "requested_at", required=True, help="RFC 3339 with its offset")
@click.option("--until", default=None, help="RFC 3339 with its offset (default: until the agency says)")
@click.option("--reference", default="", help="their case or letter reference")
@_by
@db_option
def delay_add(
    incident_id: str,
    requested_by: str,
    agency: str,
    official: str,
    form: str,
    requested_at: str,
    until: str | None,
    reference: str,
    by: str,
    db_url: str | None,
) -> None:
    """Record a request to delay notice; prints the duties it holds back."""
    result = _decide(
        "approver",
        by,
        db_url,
        lambda s, who, settings: dec.record_delay(
            s,
            incident_id,
            requested_by=requested_by,
            agency=agency,
            official=official,
            form=form,
            requested_at=parse_ts(requested_at),
            until=optional_ts(until),
            reference=reference,
            by=who,
            settings=settings,
        ),
    )
    click.echo(f"delay {result['delay_id']} recorded")
    for h in result["holds"]:
        click.echo(
            f"  holds {h['rule_id']} ({h['tenant_id']}): {h['provision']}, until {h['end'] or 'the agency says'}"
        )
    if not result["holds"]:
        click.echo("  holds no clock: no duty of this breach lets this requester delay it")


@delay_group.command("lift")
@click.argument("delay_id")
@click.option("--at", "at", default=None, help="when the agency said notice may go ahead (default: now)")
@click.option("--note", default="", help="what the agency said (kept with it)")
@_by
@db_option
def delay_lift(delay_id: str, at: str | None, note: str, by: str, db_url: str | None) -> None:
    """Record that the agency said notice may go ahead: the held clocks restart."""
    result = _decide(
        "approver",
        by,
        db_url,
        lambda s, who, settings: dec.lift_delay(
            s, delay_id, at=optional_ts(at) or datetime.now(UTC), by=who, note=note, settings=settings
        ),
    )
    click.echo(f"delay {delay_id} lifted; restarted: {', '.join(h['rule_id'] for h in result['restarted']) or 'none'}")


@delay_group.command("list")
@click.argument("incident_id")
@db_option
def delay_list(incident_id: str, db_url: str | None) -> None:
    """The incident's delays with the duties each holds, as JSON."""
    with _session(settings_or_exit(db_url=db_url)) as session:
        _print(dec.delays(session, incident_id))


@click.command("safe-harbour")
@click.argument("incident_id")
@click.option("--tenant", "tenant_id", required=True, help="the tenant whose data it is")
@click.option(
    "--applies/--does-not-apply", "applies", required=True, help="whether the data reached was encrypted, its key safe"
)
@click.option("--encrypted", "encrypted", multiple=True, help="an encrypted resource type (default: as configured)")
@click.option("--reason", required=True, help="why, as the record will show it")
@_by
@db_option
def safe_harbour_cmd(
    incident_id: str,
    tenant_id: str,
    applies: bool,
    encrypted: tuple[str, ...],
    reason: str,
    by: str,
    db_url: str | None,
) -> None:
    """Decide the encryption safe harbour for one tenant's breach."""
    result = _decide(
        "approver",
        by,
        db_url,
        lambda s, who, settings: dec.decide_safe_harbour(
            s,
            incident_id,
            tenant_id,
            applies=applies,
            encrypted_resource_types=list(encrypted) or None,
            reason=reason,
            by=who,
            settings=settings,
        ),
    )
    words = "applies" if applies else "does not apply"
    click.echo(f"safe harbour {words}; redrafted: {', '.join(result['redrafted']) or 'none'}")


@click.command("contacts")
@click.argument("incident_id")
@click.option("--tenant", "tenant_id", required=True, help="the tenant whose people lack contact details")
@click.option("--missing", type=click.IntRange(0), required=True, help="people without usable contact details")
@click.option("--note", default="", help="what is known of them (kept with it)")
@_by
@db_option
def contacts_cmd(incident_id: str, tenant_id: str, missing: int, note: str, by: str, db_url: str | None) -> None:
    """Record how many affected people have no usable contact details (substitute notice)."""
    _decide(
        "responder",
        by,
        db_url,
        lambda s, who, settings: dec.record_contact_gap(
            s, incident_id, tenant_id, missing, note=note, by=who, settings=settings
        ),
    )
    click.echo(f"{missing} people without contact details recorded for {tenant_id}")


COMMANDS = (register_group,)
NOTICE_COMMANDS = (moment_cmd, delay_group, safe_harbour_cmd, contacts_cmd)
