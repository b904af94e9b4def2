"""The incident-handling commands: the web console, users and API tokens, the audit check,
retention, a tenant's data rights, silences and escalation. ``register(main)`` adds them to
the ``breachwatch`` command. Thin: parse, call one domain function, print."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import click
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from breachwatch.cli.common import cli_actor, db_option, echo, settings_or_exit
from breachwatch.cli.main import SettingError
from breachwatch.core.settings import ConfigError, Settings

PASSWORD_ENV = "BREACHWATCH_NEW_USER_PASSWORD"
ESCALATION_ENV = "BREACHWATCH_ESCALATION_FILE"


def _settings(**overrides: Any) -> Settings:
    return settings_or_exit(**overrides)


@contextmanager
def _database(settings: Settings) -> Iterator[Engine]:
    """The configured database, migrated to the current schema."""
    from breachwatch.storage.db import make_engine
    from breachwatch.storage.migrate import upgrade

    engine = make_engine(settings.db_url)
    try:
        upgrade(engine)
        yield engine
    finally:
        engine.dispose()


def _actor() -> str:
    """Who runs a command, as the audit trail names them."""
    return cli_actor()


# --- console ------------------------------------------------------------------------------------


@click.command("console")
@click.option("--host", default=None, help="address to listen on (default: BREACHWATCH_CONSOLE_HOST)")
@click.option("--port", type=click.IntRange(1, 65535), default=None, help="port (default: BREACHWATCH_CONSOLE_PORT)")
@db_option
def console(host: str | None, port: int | None, db_url: str | None) -> None:
    """Serve the on-call web console and the JSON API."""
    import uvicorn

    from breachwatch.console.app import create_app
    from breachwatch.incidents.users import list_users
    from breachwatch.runtime import logs

    settings = _settings(console_host=host, console_port=port, db_url=db_url)
    logs.setup_logging(settings)
    with _database(settings) as engine:
        with Session(engine) as session:
            if not list_users(session):
                echo("no users yet: create the first admin with `breachwatch users add NAME --role admin`")
        echo(f"console on http://{settings.console_host}:{settings.console_port}/")
        uvicorn.run(
            create_app(settings, engine),
            host=settings.console_host,
            port=settings.console_port,
            log_level=settings.log_level.lower(),
            log_config=None,  # its loggers go through the process's handler (plain text or ECS JSON)
            server_header=False,
            # The console decides whom to believe about the client's address
            # (BREACHWATCH_CONSOLE_TRUSTED_PROXIES); uvicorn must not rewrite it first.
            proxy_headers=False,
        )


# --- users and tokens ---------------------------------------------------------------------------


@click.group("users")
def users_group() -> None:
    """Console users and their roles (viewer, responder, approver, admin)."""


def _new_password() -> str:
    value = os.environ.get(PASSWORD_ENV)
    if value:
        return value
    if not sys.stdin.isatty():
        raise click.ClickException(f"no terminal to ask for the password: set {PASSWORD_ENV}")
    return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))


@users_group.command("add")
@click.argument("username")
@click.option(
    "--role",
    type=click.Choice(["viewer", "responder", "approver", "admin"]),
    required=True,
    help="what the user may do (each role may also do what the ones before it may)",
)
@click.option("--email", default=None, help="for silence reminders")
@db_option
def users_add(username: str, role: str, email: str | None, db_url: str | None) -> None:
    """Create a user; the password comes from a prompt or BREACHWATCH_NEW_USER_PASSWORD."""
    from breachwatch.incidents import users
    from breachwatch.storage import audit

    password = _new_password()
    with _database(_settings(db_url=db_url)) as engine:
        try:
            with Session(engine) as session, session.begin():
                audit.serialize_writes(session)
                users.add_user(session, username, role, password, email=email)
                audit.record(session, _actor(), "user.add", f"user:{username}", {"role": role})
        except users.UserError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"user {username} added with role {role}")


@users_group.command("list")
@db_option
def users_list(db_url: str | None) -> None:
    """List users."""
    from breachwatch.incidents import users

    with _database(_settings(db_url=db_url)) as engine, Session(engine) as session:
        for u in users.list_users(session):
            state = " (disabled)" if u.disabled else ""
            click.echo(f"{u.username}\t{u.role}\t{u.email or ''}{state}")


@users_group.command("disable")
@click.argument("username")
@db_option
def users_disable(username: str, db_url: str | None) -> None:
    """Lock a user out: sessions end and tokens are revoked at once."""
    from breachwatch.incidents import users
    from breachwatch.storage import audit

    with _database(_settings(db_url=db_url)) as engine:
        try:
            with Session(engine) as session, session.begin():
                audit.serialize_writes(session)
                users.disable(session, username)
                audit.record(session, _actor(), "user.disable", f"user:{username}", {})
        except users.UserError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"user {username} disabled")


@users_group.command("password")
@click.argument("username")
@db_option
def users_password(username: str, db_url: str | None) -> None:
    """Set a new password (prompt or BREACHWATCH_NEW_USER_PASSWORD); ends the user's sessions."""
    from breachwatch.incidents import users
    from breachwatch.storage import audit

    password = _new_password()
    with _database(_settings(db_url=db_url)) as engine:
        try:
            with Session(engine) as session, session.begin():
                audit.serialize_writes(session)
                users.set_password(session, username, password)
                audit.record(session, _actor(), "user.password", f"user:{username}", {})
        except users.UserError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"password of {username} changed")


@click.group("tokens")
def tokens_group() -> None:
    """API tokens for automation (stored hashed; shown once)."""


@tokens_group.command("create")
@click.argument("username")
@click.option("--name", default="api", show_default=True, help="what the token is for")
@click.option(
    "--expires-days", type=click.IntRange(1, 3650), default=None, help="days until it expires (default: never)"
)
@click.option(
    "--tenant",
    "tenant_id",
    default=None,
    help="a tenant's own token, issued by USERNAME: it reads only that tenant's transparency log",
)
@db_option
def tokens_create(
    username: str, name: str, expires_days: int | None, tenant_id: str | None, db_url: str | None
) -> None:
    """Create a token acting as USERNAME (or, with --tenant, a tenant's token); prints it once."""
    from breachwatch.incidents import users
    from breachwatch.storage import audit

    with _database(_settings(db_url=db_url)) as engine:
        try:
            with Session(engine) as session, session.begin():
                audit.serialize_writes(session)
                row, token = users.create_token(
                    session,
                    username,
                    name,
                    expires_in=timedelta(days=expires_days) if expires_days else None,
                    tenant_id=tenant_id,
                )
                token_id = row.token_id
                detail = {"user": username, "name": name, "tenant": tenant_id}
                audit.record(session, _actor(), "token.create", f"token:{token_id}", detail)
        except users.UserError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(token)
    whose = f"tenant {tenant_id} (issued by {username})" if tenant_id else username
    click.echo(f"token {token_id} for {whose}: store it now, it is not shown again", err=True)


@tokens_group.command("list")
@click.argument("username", required=False)
@db_option
def tokens_list(username: str | None, db_url: str | None) -> None:
    """List tokens (ids, owners, last use; never the secrets)."""
    from breachwatch.incidents import users

    with _database(_settings(db_url=db_url)) as engine, Session(engine) as session:
        for t in users.list_tokens(session, username):
            state = "revoked" if t.revoked_at else "active"
            used = t.last_used_at.isoformat() if t.last_used_at else "never used"
            scope = f"tenant:{t.tenant_id}" if t.tenant_id else "user"
            click.echo(f"{t.token_id}\t{t.username}\t{t.name}\t{state}\t{used}\t{scope}")


@tokens_group.command("revoke")
@click.argument("token_id")
@db_option
def tokens_revoke(token_id: str, db_url: str | None) -> None:
    """Revoke a token by its id."""
    from breachwatch.incidents import users
    from breachwatch.storage import audit

    with _database(_settings(db_url=db_url)) as engine, Session(engine) as session, session.begin():
        audit.serialize_writes(session)
        if not users.revoke_token(session, token_id):
            raise click.ClickException(f"no active token {token_id}")
        audit.record(session, _actor(), "token.revoke", f"token:{token_id}", {})
    click.echo(f"token {token_id} revoked")


# --- audit --------------------------------------------------------------------------------------


@click.group("audit")
def audit_group() -> None:
    """The hash-chained audit trail."""


@audit_group.command("verify")
@click.option("--anchor", default=None, metavar="SEQ:HASH", help="a (seq, hash) recorded earlier, e.g. by this command")
@db_option
def audit_verify(anchor: str | None, db_url: str | None) -> None:
    """Recompute the audit chain; names every edited or deleted row and exits 1 if any."""
    from breachwatch.storage import audit

    pin: tuple[int, str] | None = None
    if anchor:
        seq, _, digest = anchor.partition(":")
        if not seq.isdigit() or len(digest) != 64:
            raise click.BadParameter("expected SEQ:HASH with a 64-character hash", param_hint="--anchor")
        pin = (int(seq), digest)
    with _database(_settings(db_url=db_url)) as engine, Session(engine) as session:
        result = audit.verify(session, anchor=pin)
    for problem in result.problems:
        click.echo(f"BROKEN {problem}")
    click.echo(
        f"{'ok' if result.ok else 'FAILED'}: {result.rows} rows checked; "
        f"head {result.head_seq or 0}:{result.head_hash or audit.GENESIS}"
    )
    if not result.ok:
        sys.exit(1)


# --- retention and data rights ------------------------------------------------------------------


@click.group("retention")
def retention_group() -> None:
    """Evidence retention (privacy policy 5)."""


@retention_group.command("apply")
@click.option(
    "--mode",
    type=click.Choice(["anonymise", "purge"]),
    default="anonymise",
    show_default=True,
    help="anonymise (keyed pseudonyms, needs BREACHWATCH_PSEUDONYM_KEY) or purge the expired evidence",
)
@click.option(
    "--days", type=click.IntRange(1, 36500), default=None, help="default: BREACHWATCH_EVIDENCE_RETENTION_DAYS"
)
@click.option("--dry-run", is_flag=True, help="count what would change, change nothing")
@db_option
def retention_apply(mode: str, days: int | None, dry_run: bool, db_url: str | None) -> None:
    """Anonymise (or purge) evidence older than the retention period, and delete staff
    accesses older than BREACHWATCH_TRANSPARENCY_RETENTION_DAYS from the transparency log."""
    from breachwatch.privacy import retention, transparency

    settings = _settings(db_url=db_url)
    key = settings.secret("pseudonym_key")
    if mode == "anonymise" and not key:
        raise SettingError("anonymising needs BREACHWATCH_PSEUDONYM_KEY (or use --mode purge)")
    with _database(settings) as engine:
        try:
            report = retention.apply(
                engine,
                retention_days=days or settings.evidence_retention_days,
                mode=mode,  # type: ignore[arg-type]
                key=key.encode() if key else None,
                actor=_actor(),
                dry_run=dry_run,
            )
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
        with Session(engine) as session, session.begin():
            staff = transparency.apply_retention(
                session, settings.transparency_retention_days, _actor(), dry_run=dry_run
            )
    click.echo(json.dumps({**report.as_dict(), **staff}))


@click.group("tenant")
def tenant_group() -> None:
    """A tenant's data rights (privacy policy 7)."""


@tenant_group.command("export")
@click.argument("tenant")
@click.option("--out", "out", type=click.Path(dir_okay=False, path_type=Path), default=None, help="default: stdout")
@db_option
def tenant_export(tenant: str, out: Path | None, db_url: str | None) -> None:
    """Write the tenant's incidents, notices and the staff accesses to its data as JSON."""
    from breachwatch.privacy.data_rights import export_tenant
    from breachwatch.privacy.transparency import identity_from
    from breachwatch.storage import audit

    settings = _settings(db_url=db_url)
    with _database(settings) as engine, Session(engine) as session, session.begin():
        audit.serialize_writes(session)
        doc = export_tenant(session, tenant, _actor(), identity=identity_from(settings))
    text = json.dumps(doc, indent=2, ensure_ascii=False, default=str) + "\n"
    if out is None:
        click.echo(text, nl=False)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text, encoding="utf-8")
        click.echo(f"{len(doc['incidents'])} incidents of {tenant} written to {out}", err=True)


@tenant_group.command("erase")
@click.argument("tenant")
@click.option("--yes", is_flag=True, help="do not ask for confirmation")
@db_option
def tenant_erase(tenant: str, yes: bool, db_url: str | None) -> None:
    """Erase the tenant's incidents, evidence and notices."""
    from breachwatch.privacy.data_rights import erase_tenant

    if not yes:
        click.confirm(f"Erase every incident, evidence event and notice of tenant {tenant}?", abort=True)
    with _database(_settings(db_url=db_url)) as engine, Session(engine) as session, session.begin():
        result = erase_tenant(session, tenant, _actor())
    click.echo(json.dumps({"tenant_id": tenant, **result.as_dict()}))


# --- silences -----------------------------------------------------------------------------------


@click.group("silences")
def silences_group() -> None:
    """Silences: matching incidents are recorded but not paged until they end."""


@silences_group.command("add")
@click.option("--reason", required=True, help="why, for the audit trail and the reminders")
@click.option("--hours", type=click.FloatRange(min=0.01, max=90 * 24), default=None, help="how long (default 24)")
@click.option("--until", "until", type=click.DateTime(["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"]), default=None, help="UTC")
@click.option("--actor", default=None, help="match incidents of this actor id")
@click.option("--tenant", default=None, help="match incidents touching this tenant id")
@click.option("--kind", default=None, help="match incidents of this kind")
@click.option("--ip", default=None, help="an address or a network such as 198.51.100.0/24")
@click.option("--owner", default=None, help="the console user who owns it (default: you)")
@db_option
def silences_add(
    reason: str,
    hours: float | None,
    until: datetime | None,
    actor: str | None,
    tenant: str | None,
    kind: str | None,
    ip: str | None,
    owner: str | None,
    db_url: str | None,
) -> None:
    """Add a silence; prints its id."""
    from breachwatch.notifier.paging import silences

    if hours is not None and until is not None:
        raise click.UsageError("give --hours or --until, not both")
    now = datetime.now(UTC)
    ends = until.replace(tzinfo=UTC) if until else now + timedelta(hours=hours or 24)
    with _database(_settings(db_url=db_url)) as engine:
        try:
            with Session(engine) as session, session.begin():
                row = silences.add(
                    session,
                    owner or _actor(),
                    reason,
                    ends,
                    actor_id=actor,
                    tenant_id=tenant,
                    kind=kind,
                    ip=ip,
                    now=now,
                )
                silence_id = row.silence_id
        except silences.SilenceError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(silence_id)


@silences_group.command("list")
@click.option("--all", "include_ended", is_flag=True, help="include ended silences")
@db_option
def silences_list(include_ended: bool, db_url: str | None) -> None:
    """List silences in force (one JSON object per line)."""
    from breachwatch.notifier.paging import silences

    with _database(_settings(db_url=db_url)) as engine, Session(engine) as session:
        for s in silences.list_silences(session, include_ended=include_ended):
            click.echo(
                json.dumps(
                    {
                        "silence_id": s.silence_id,
                        "owner": s.owner,
                        "reason": s.reason,
                        "matchers": s.matchers,
                        "starts_at": s.starts_at.isoformat(),
                        "ends_at": s.ends_at.isoformat(),
                        "expired_at": s.expired_at.isoformat() if s.expired_at else None,
                    }
                )
            )


@silences_group.command("expire")
@click.argument("silence_id")
@db_option
def silences_expire(silence_id: str, db_url: str | None) -> None:
    """End a silence now."""
    from breachwatch.notifier.paging import silences

    with _database(_settings(db_url=db_url)) as engine:
        try:
            with Session(engine) as session, session.begin():
                silences.expire(session, silence_id, _actor())
        except silences.SilenceError as exc:
            raise click.ClickException(str(exc)) from None
    click.echo(f"silence {silence_id} ended")


# --- escalation ---------------------------------------------------------------------------------


@click.command("escalate")
@click.option(
    "--escalation-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help=f"the chain (TOML; default: {ESCALATION_ENV}, else one level of the on-call addresses)",
)
@click.option("--every", type=click.FloatRange(min=5), default=None, help="keep running, one pass every N seconds")
@click.option("--deliver", is_flag=True, help="also deliver due outbox messages (when no `run` service does)")
@db_option
def escalate(escalation_file: Path | None, every: float | None, deliver: bool, db_url: str | None) -> None:
    """Re-page unacknowledged incidents, escalate up the chain, remind silence owners."""
    from breachwatch.notifier.paging import escalation
    from breachwatch.runtime import app, logs

    settings = _settings(db_url=db_url)
    logs.setup_logging(settings)
    path = escalation_file or (Path(os.environ[ESCALATION_ENV]) if os.environ.get(ESCALATION_ENV) else None)
    try:
        policy = escalation.load_policy(path, settings)
    except ConfigError as exc:
        raise SettingError(str(exc)) from None
    with _database(settings) as engine:
        while True:
            report = escalation.run_once(engine, settings, policy)
            if deliver:
                app.dispatcher(settings, engine).drain()
            click.echo(
                json.dumps(
                    {
                        "checked": report.checked,
                        "pages": report.paged,
                        "silenced": report.silenced,
                        "reminders": report.reminders,
                        "messages": report.messages,
                    }
                )
            )
            if every is None:
                return
            time.sleep(every)


COMMANDS = (
    console,
    users_group,
    tokens_group,
    audit_group,
    retention_group,
    tenant_group,
    silences_group,
    escalate,
)
