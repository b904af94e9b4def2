"""The rule on an account granting itself an administrator role.

A ``role_change`` event names the account whose roles changed (``actor_id``) and carries the
session it was made in. When that session is one the same account opened by logging in, the
account changed its own roles: separation of duties forbids a user to approve their own
privileges, so an administrator role gained that way is privilege escalation whatever
follows, and the on-call wants it at the change, not once the new rights have been used.
A change made by an administrator for a colleague comes from the administrator's session (or
none), never from one the colleague opened, and does not fire.

Sessions are learned from the account's own successful logins and second factors over the
last day; all of an account's events share its partition, so every unit sees them.
"""

from __future__ import annotations

from typing import Any

from breachwatch.core.batch import ACTIONS, K_AUTH, OUTCOMES, among
from breachwatch.core.events import AuthEvent
from breachwatch.core.findings import DetectionContext
from breachwatch.detectors.rules.books import Book
from breachwatch.detectors.rules.core import Hit, Verdict, listing, minute_of, rule, when

# Roles that administer users, roles and credentials: the ones worth granting oneself.
PRIVILEGED_ROLES = frozenset({"admin", "administrator", "owner", "superuser", "security_admin", "user_admin"})
SESSION_HORIZON = 86400.0  # how long after its last login event a session counts as the account's
MAX_SESSIONS = 8  # per account: the most recent ones
MAX_ACCOUNTS = 100_000
EPISODE_SPAN = 3600.0  # later self-grants of one account within this join its finding


class SelfGrant:
    """An account's administrator role granted from its own session."""

    __slots__ = ("account", "at", "granted", "ip", "login_at", "roles", "session", "tenant")

    def __init__(self, ev: AuthEvent, t: float, login_at: float, granted: frozenset[str]) -> None:
        self.account = ev.actor_id
        self.tenant = ev.actor_tenant
        self.at = t
        self.login_at = login_at
        self.ip = ev.ip
        self.session = ev.session_id
        self.roles = tuple(ev.roles or ())
        # What this change added, not every administrator role it left: an account that held
        # one and gave itself another is named for the one it took.
        self.granted = tuple(sorted(granted))

    @property
    def key(self) -> str:
        return minute_of(self.at)

    def verdict(self) -> Verdict:
        granted = list(self.granted)
        source = f" from {self.ip}" if self.ip else ""
        reasons = (
            f"{self.account}'s roles became {listing(list(self.roles))} at {when(self.at)}{source}",
            f"the change was made in session {self.session}, which {self.account} itself opened at"
            f" {when(self.login_at)}: the account was given {listing(granted)} from its own session",
            "an administrator changing a colleague's roles does so from their own session; a user"
            " granting itself administrator rights is what separation of duties forbids",
        )
        return Verdict(
            severity="high",
            score=80.0,
            title=f"{self.account} gained the {listing(granted)} role in a session of its own",
            reasons=reasons,
            tenant_ids=(self.tenant or "",),
            source_ips=(self.ip,) if self.ip else (),
            facts={"roles_after": list(self.roles), "granted": granted, "session_opened_at": self.login_at},
        )

    def dump(self) -> list[Any]:
        return [
            self.account,
            self.tenant,
            self.at,
            self.login_at,
            self.ip,
            self.session,
            list(self.roles),
            list(self.granted),
        ]


class OwnSessions:
    """The sessions one account opened lately, with when each was last confirmed, and its
    latest self-grant (so repeats within the hour join one finding)."""

    __slots__ = ("grant", "last", "opened", "roles", "roles_at")

    def __init__(self) -> None:
        # Session id, time of its first login event, the next session...: one small tuple, as
        # most accounts have a session or two open (a dict costs several times as much, and
        # every account that logged in within the horizon has an entry).
        self.opened: tuple[Any, ...] = ()
        self.last = 0.0  # epoch: no login seen (JSON cannot hold -inf)
        self.grant: SelfGrant | None = None
        # The roles after the account's last role change seen, and when: a change that keeps an
        # administrator role the account already had grants nothing.
        self.roles: tuple[str, ...] | None = None
        self.roles_at = 0.0

    def changed_roles(self, roles: tuple[str, ...], t: float) -> frozenset[str]:
        """Note the roles after a change at ``t``; the administrator roles it newly grants (all of
        them when no earlier change of this account is remembered)."""
        before = self.roles or ()
        self.roles, self.roles_at = roles, t
        return PRIVILEGED_ROLES.intersection(roles).difference(before)

    def opened_at(self, session: str) -> float | None:
        """When ``session`` was first seen (None if it is not one of the account's)."""
        o = self.opened
        for k in range(0, len(o), 2):
            if o[k] == session:
                return o[k + 1]
        return None

    def note(self, session: str, t: float) -> None:
        if t > self.last:
            self.last = t
        o = self.opened
        if session in o[::2]:
            return
        if len(o) >= 2 * MAX_SESSIONS:
            # The session opened longest ago goes (the first of them if several tie).
            k = 2 * min(range(len(o) // 2), key=lambda n: o[2 * n + 1])
            o = o[:k] + o[k + 2 :]
        self.opened = (*o, session, t)

    def sessions(self) -> list[list[Any]]:
        """[session id, time of its first login event] of each, oldest added first."""
        o = self.opened
        return [[o[k], o[k + 1]] for k in range(0, len(o), 2)]

    def dump(self) -> list[Any]:
        grant = self.grant.dump() if self.grant else None
        roles = list(self.roles) if self.roles is not None else None
        return [self.last, self.sessions(), grant, roles, self.roles_at]

    @classmethod
    def restore(cls, row: list[Any]) -> OwnSessions:
        w = cls()
        w.last = row[0]
        # A dict first, as before: a session listed twice keeps its last time, in its first place.
        w.opened = tuple(x for s, t in dict(row[1]).items() for x in (s, t))
        if row[2]:
            g = SelfGrant.__new__(SelfGrant)
            g.account, g.tenant, g.at, g.login_at, g.ip, g.session, roles = row[2][:7]
            g.roles = tuple(roles)
            # Checkpoints from before the granted roles were kept: the administrator roles it left.
            g.granted = tuple(row[2][7]) if len(row[2]) > 7 else tuple(sorted(PRIVILEGED_ROLES.intersection(roles)))
            w.grant = g
        if len(row) > 3 and row[3] is not None:
            w.roles, w.roles_at = tuple(row[3]), row[4]
        return w


class SessionBook(Book[OwnSessions]):
    """Each account's recent sessions (the self-granted role rule's memory)."""

    state_key = "accounts"

    def __init__(self) -> None:
        super().__init__(OwnSessions, MAX_ACCOUNTS)

    def expired(self, entry: OwnSessions, watermark: float) -> bool:
        return max(entry.last, entry.roles_at) < watermark - SESSION_HORIZON


_SESSION_OR_ROLE = among(ACTIONS, "login", "mfa", "role_change")


@rule(
    name="self_granted_role",
    kind="privilege_escalation",
    severity="high",
    description="An account gained an administrator role in a change made from its own session.",
    playbook=(
        "Ask the tenant's administrators whether anyone granted this role; if not, revoke it and the"
        " account's sessions and tokens, and review what the account read or changed since the grant."
    ),
    inputs=(AuthEvent,),
    memory=SessionBook,
    wants=lambda b: (
        (b.column("kinds") == K_AUTH)
        & _SESSION_OR_ROLE[b.column("action")]
        & (b.column("outcome") == OUTCOMES["success"])
    ),
)
def self_granted_role(ev: AuthEvent, book: SessionBook, ctx: DetectionContext) -> Hit | None:
    session = ev.session_id
    if ev.outcome != "success":
        return None
    t = ev.ts.timestamp()
    if ev.action != "role_change":
        if session and ev.action in ("login", "mfa"):
            book.get_or_add(ev.actor_id, OwnSessions).note(session, t)
        return None
    # Every change is noted, from whatever session, so the next one is judged on what it adds.
    w = book.get_or_add(ev.actor_id, OwnSessions)
    granted = w.changed_roles(tuple(ev.roles or ()), t)
    opened = w.opened_at(session) if session else None
    if not granted or opened is None or t - w.last > SESSION_HORIZON:
        return None
    grant = w.grant
    if grant is None or t - grant.at > EPISODE_SPAN:
        grant = w.grant = SelfGrant(ev, t, opened, granted)
    return Hit(key=grant.key, actor_id=ev.actor_id, episode=grant, events=(ev,), until=grant.at + EPISODE_SPAN)
