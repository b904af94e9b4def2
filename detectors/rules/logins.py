"""Rules on logins: credential stuffing from one address, and brute force on one account.

Thresholds, and why:

* Credential stuffing fires when, within 10 minutes, one address has at least 10 failed logins
  over at least 5 accounts that have *not* logged in successfully from it in that time, and
  failures outnumber successes from it. A user mistyping a password 2-3 times is one account.
  An office behind one NAT address does have several people mistype at 9 am, but each of them
  then gets in, and the office's successes far outnumber its failures; a stuffing run is
  almost all failures over accounts that stay failed.
* Successful logins from that address during the run, or up to an hour after its last
  failure, are the attacker's: each such account gets its own finding (kind
  ``account_takeover``) so the incident joins up with what the account does next.
* Brute force fires on 10 failed logins to one account within 10 minutes (from any address)
  and turns critical if a successful login follows within the hour. A user who forgot a
  password gives up, or resets it, long before 10 tries; a reset before the login is named and
  lowers the severity, because it is what the owner regaining access looks like.

Each partition sees the accounts hashed to it, so with P partitions an address's failures are
split about P ways; the thresholds hold per partition and a run over many accounts still
crosses them on each (reporting it under one finding id, as the key is address and day), while
a small run spread thin may not.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from breachwatch.core.batch import ACTIONS, K_AUTH, among
from breachwatch.core.events import AuthEvent
from breachwatch.core.findings import MAX_EVIDENCE, DetectionContext, Severity
from breachwatch.detectors.rules.books import Book
from breachwatch.detectors.rules.core import (
    Hit,
    Verdict,
    bounded_add,
    day_of,
    listing,
    log_bonus,
    minute_of,
    num,
    plural,
    rule,
    span,
    when,
)

WINDOW = 600.0  # seconds over which failures are counted
STUFFING_MIN_FAILURES = 10
STUFFING_MIN_ACCOUNTS = 5  # distinct accounts failing without a success, per address
HOT = 3600.0  # how long after an address's (or account's) last failure a success is suspect
BRUTE_MIN_FAILURES = 10
MAX_WINDOW_FAILURES = 1000  # per address: beyond this the window is "the last 1000 failures"
MAX_WINDOW_SUCCESSES = 200
MAX_ADDRESSES = 50_000
MAX_ACCOUNTS = 100_000
MAX_ACCOUNT_FAILURES = 100
MAX_NAMED_ACCOUNTS = 2_000  # distinct accounts counted exactly per run; beyond, "at least"
MAX_COMPROMISED = 1000
MAX_TENANTS = 50
MAX_IPS = 20


def dump_event(ev: AuthEvent) -> str:
    """An event as JSON text that validates back to an equal event (absent stays absent)."""
    return ev.model_dump_json(exclude_unset=True)


def load_event(text: str) -> AuthEvent:
    return AuthEvent.model_validate_json(text)


# --- credential stuffing ---------------------------------------------------------------------


class Takeover:
    """Successful logins to one account from an address running credential stuffing."""

    __slots__ = ("account", "first", "logins", "run", "tenant")

    def __init__(self, run: StuffingRun, ev: AuthEvent, t: float) -> None:
        self.run = run
        self.account = ev.actor_id
        self.tenant = ev.actor_tenant
        self.first = t
        self.logins = 0

    @property
    def key(self) -> str:
        return f"{self.run.ip}|{self.run.day}"

    def verdict(self) -> Verdict:
        run = self.run
        times = f" ({plural(self.logins, 'successful login')} in all)" if self.logins > 1 else ""
        reasons = (
            f"{self.account} logged in successfully from {run.ip} at {when(self.first)}{times}",
            f"that address failed {plural(run.failures, 'login')} against {run.accounts_text()}"
            f" {span(run.first, run.last_fail)}: this login is most likely the attacker's",
        )
        return Verdict(
            severity="critical",
            score=min(100.0, 92.0 + log_bonus(self.logins, 4.0, 8.0)),
            title=f"{self.account} logged in from {run.ip}, an address running credential stuffing",
            reasons=reasons,
            tenant_ids=(self.tenant or "",),
            source_ips=(run.ip,),
            facts={
                "logins": self.logins,
                "stuffing_failures": run.failures,
                "stuffing_accounts": run.account_count(),
            },
            kind="account_takeover",
        )

    def dump(self) -> list[Any]:
        return [self.account, self.tenant, self.first, self.logins]

    @classmethod
    def restore(cls, run: StuffingRun, row: list[Any]) -> Takeover:
        obj = cls.__new__(cls)
        obj.run = run
        obj.account, obj.tenant, obj.first, obj.logins = row
        return obj


class StuffingRun:
    """One address's credential-stuffing run, from the failures that revealed it onwards."""

    __slots__ = (
        "accounts",
        "accounts_over",
        "at_detection",
        "day",
        "failures",
        "first",
        "ip",
        "last_fail",
        "takeovers",
        "tenants",
    )

    def __init__(self, ip: str, first: float) -> None:
        self.ip = ip
        self.first = first
        # Keyed by address and day, so the partitions that each see part of a run (accounts are
        # spread over them) report it under one finding id.
        self.day = day_of(first)
        self.last_fail = first
        self.failures = 0
        self.accounts: set[str] = set()
        self.accounts_over = False
        self.tenants: list[str] = []
        self.at_detection: dict[str, float] = {}
        self.takeovers: dict[str, Takeover] = {}

    @property
    def key(self) -> str:
        return f"{self.ip}|{self.day}"

    @property
    def until(self) -> float:
        return self.last_fail + HOT + WINDOW

    def add_failure(self, ev: AuthEvent, t: float) -> None:
        self.failures += 1
        if t > self.last_fail:
            self.last_fail = t
        if len(self.accounts) < MAX_NAMED_ACCOUNTS:
            self.accounts.add(ev.actor_id)
        elif ev.actor_id not in self.accounts:
            self.accounts_over = True
        bounded_add(self.tenants, ev.actor_tenant, MAX_TENANTS)

    def account_count(self) -> int:
        return len(self.accounts)

    def accounts_text(self) -> str:
        n = len(self.accounts)
        return ("at least " if self.accounts_over else "") + plural(n, "account")

    def takeover(self, ev: AuthEvent, t: float) -> Takeover | None:
        tk = self.takeovers.get(ev.actor_id)
        if tk is None:
            if len(self.takeovers) >= MAX_COMPROMISED:
                return None
            tk = self.takeovers[ev.actor_id] = Takeover(self, ev, t)
        tk.logins += 1
        return tk

    def verdict(self) -> Verdict:
        d = self.at_detection
        taken = sorted(self.takeovers)
        title = f"Credential stuffing from {self.ip}: {plural(self.failures, 'failed login')}"
        title += f" against {self.accounts_text()}"
        if taken:
            title += f", then {plural(len(taken), 'account')} logged in"
        reasons = [
            f"{plural(self.failures, 'failed login')} from {self.ip} against {self.accounts_text()}"
            f" {span(self.first, self.last_fail)}",
            f"when detected at {when(d.get('t', self.first))}, the previous 10 minutes held"
            f" {plural(int(d.get('failures', 0)), 'failure')} over {plural(int(d.get('accounts', 0)), 'account')},"
            f" {num(d.get('unrecovered', 0))} of them with no successful login from this address, and"
            f" {num(d.get('successes', 0))} successful logins"
            f" (the rule fires at {STUFFING_MIN_FAILURES} failures over {STUFFING_MIN_ACCOUNTS} such accounts)",
        ]
        if taken:
            reasons.append(
                f"{plural(len(taken), 'account')} then logged in successfully from the same address: "
                f"{listing(taken)}; treat these accounts as compromised"
            )
        if self.tenants:
            reasons.append(
                f"the accounts tried belong to {plural(len(self.tenants), 'tenant')}: {listing(self.tenants)}"
            )
        severity: Severity = "critical" if taken else "high"
        score = 92.0 + log_bonus(len(taken), 4.0, 8.0) if taken else 70.0 + log_bonus(self.failures, 5.0, 20.0)
        return Verdict(
            severity=severity,
            score=min(score, 100.0),
            title=title,
            reasons=tuple(reasons),
            tenant_ids=tuple(self.tenants),
            source_ips=(self.ip,),
            facts={
                "failures": self.failures,
                "accounts": len(self.accounts),
                "compromised_accounts": len(taken),
                **{f"detection_{k}": v for k, v in d.items() if k != "t"},
            },
        )

    def dump(self) -> dict[str, Any]:
        return {
            "ip": self.ip,
            "first": self.first,
            "day": self.day,
            "last_fail": self.last_fail,
            "failures": self.failures,
            "accounts": sorted(self.accounts),
            "accounts_over": self.accounts_over,
            "tenants": self.tenants,
            "at_detection": self.at_detection,
            "takeovers": [tk.dump() for tk in self.takeovers.values()],
        }

    @classmethod
    def restore(cls, d: dict[str, Any]) -> StuffingRun:
        obj = cls(d["ip"], d["first"])
        obj.day = d["day"]
        obj.last_fail = d["last_fail"]
        obj.failures = d["failures"]
        obj.accounts = set(d["accounts"])
        obj.accounts_over = d["accounts_over"]
        obj.tenants = list(d["tenants"])
        obj.at_detection = dict(d["at_detection"])
        for row in d["takeovers"]:
            tk = Takeover.restore(obj, row)
            obj.takeovers[tk.account] = tk
        return obj


class AddressWatch:
    """The last 10 minutes of logins from one address, counted so each event costs O(1)."""

    __slots__ = ("fail_by", "fails", "last", "ok_by", "oks", "pending", "run", "unrecovered")

    def __init__(self) -> None:
        # The failures in the window are held only while there are any (else the shared
        # ``()``): most addresses are a user's or an office's, with a success or two in ten
        # minutes and no failure, and a deque costs over 600 bytes even empty.
        self.fails: deque[tuple[float, str]] | tuple[()] = ()
        # Successes, with the event only while failures are in the window (a takeover's evidence).
        # (A list: there are few, and the rare office with many pops its oldest in a memmove.)
        self.oks: list[tuple[float, str, AuthEvent | None]] = []
        # Failures not yet part of a run, kept as the evidence a run will start with.
        self.pending: deque[tuple[float, AuthEvent]] | tuple[()] = ()
        self.fail_by: dict[str, int] = {}
        self.ok_by: dict[str, int] = {}
        self.unrecovered = 0  # accounts with failures and no success in the window
        self.last = float("-inf")
        self.run: StuffingRun | None = None

    def _drop_fail(self, account: str) -> None:
        c = self.fail_by[account] - 1
        if c:
            self.fail_by[account] = c
        else:
            del self.fail_by[account]
            if account not in self.ok_by:
                self.unrecovered -= 1

    def _drop_ok(self, account: str) -> None:
        c = self.ok_by[account] - 1
        if c:
            self.ok_by[account] = c
        else:
            del self.ok_by[account]
            if account in self.fail_by:
                self.unrecovered += 1

    def add_fail(self, t: float, account: str) -> None:
        c = self.fail_by.get(account, 0)
        if c == 0 and account not in self.ok_by:
            self.unrecovered += 1
        self.fail_by[account] = c + 1
        fails = self.fails
        if not fails:
            fails = self.fails = deque()
        fails.append((t, account))
        if len(fails) > MAX_WINDOW_FAILURES:
            self._drop_fail(fails.popleft()[1])

    def add_ok(self, t: float, account: str, ev: AuthEvent | None) -> None:
        c = self.ok_by.get(account, 0)
        if c == 0 and account in self.fail_by:
            self.unrecovered -= 1
        self.ok_by[account] = c + 1
        oks = self.oks
        oks.append((t, account, ev))
        if len(oks) > MAX_WINDOW_SUCCESSES:
            self._drop_ok(oks.pop(0)[1])

    def hold_pending(self, t: float, ev: AuthEvent) -> None:
        """Keep a failure (the last ``MAX_EVIDENCE``) as evidence for a run it may start."""
        pending = self.pending
        if not pending:
            pending = self.pending = deque(maxlen=MAX_EVIDENCE)
        pending.append((t, ev))

    def advance(self, t: float) -> bool:
        """Move the window to ``t``; False if ``t`` is too late to count in it."""
        if t > self.last:
            self.last = t
        cutoff = self.last - WINDOW
        fails, oks, pending = self.fails, self.oks, self.pending
        if fails and fails[0][0] < cutoff:
            while fails and fails[0][0] < cutoff:
                self._drop_fail(fails.popleft()[1])
            if not fails:
                self.fails = ()
        if oks and oks[0][0] < cutoff:
            gone = next((k for k, ok in enumerate(oks) if ok[0] >= cutoff), len(oks))
            for ok in oks[:gone]:
                self._drop_ok(ok[1])
            del oks[:gone]
        if pending and pending[0][0] < cutoff:
            while pending and pending[0][0] < cutoff:
                pending.popleft()
            if not pending:
                self.pending = ()
        run = self.run
        if run is not None and self.last > run.last_fail + HOT:
            self.run = None  # the run is over; a new one must cross the thresholds again
        return t >= cutoff

    def revealed(self) -> bool:
        n = len(self.fails)
        return n >= STUFFING_MIN_FAILURES and self.unrecovered >= STUFFING_MIN_ACCOUNTS and n > len(self.oks)

    def dump(self) -> list[Any]:
        # A list, not a dict: most addresses are an office's logins, and there are many.
        return [
            self.last,
            [[t, a] for t, a in self.fails],
            [[t, a, dump_event(e)] if e else [t, a] for t, a, e in self.oks],
            [[t, dump_event(e)] for t, e in self.pending],
            self.run.dump() if self.run else None,
        ]

    @classmethod
    def restore(cls, row: list[Any]) -> AddressWatch:
        last, fails, oks, pending, run = row
        w = cls()
        for t, a in fails:
            w.add_fail(t, a)
        for t, a, *e in oks:
            w.add_ok(t, a, load_event(e[0]) if e else None)
        for t, e in pending:
            w.hold_pending(t, load_event(e))
        w.last = last
        w.run = StuffingRun.restore(run) if run else None
        return w


class AddressBook(Book[AddressWatch]):
    """Login windows of the addresses seen logging in lately (credential stuffing's memory)."""

    state_key = "addresses"

    def __init__(self) -> None:
        super().__init__(AddressWatch, MAX_ADDRESSES)

    def watch(self, ip: str) -> AddressWatch:
        return self.get_or_add(ip, AddressWatch)

    def expired(self, entry: AddressWatch, watermark: float) -> bool:
        return entry.last < watermark - WINDOW and (entry.run is None or entry.run.until < watermark)


def _start_run(ip: str, w: AddressWatch, t: float) -> list[Hit]:
    run = w.run = StuffingRun(ip, w.fails[0][0])
    evidence: list[AuthEvent] = []
    for pt, ev in w.pending:
        run.add_failure(ev, pt)
        evidence.append(ev)
    w.pending = ()
    # Failures the evidence buffer no longer holds (beyond its cap) still count.
    run.failures = max(run.failures, len(w.fails))
    for a in w.fail_by:
        if len(run.accounts) < MAX_NAMED_ACCOUNTS:
            run.accounts.add(a)
    run.at_detection = {
        "t": t,
        "failures": len(w.fails),
        "accounts": len(w.fail_by),
        "unrecovered": w.unrecovered,
        "successes": len(w.oks),
    }
    hits: list[Hit] = []
    for ts, _, ok in w.oks:
        if ts >= run.first and ok is not None:
            tk = run.takeover(ok, ts)
            evidence.append(ok)
            if tk is not None:
                hits.append(Hit(key=tk.key, actor_id=tk.account, episode=tk, events=(ok,), until=run.until))
    hits.insert(0, Hit(key=run.key, actor_id=None, episode=run, events=tuple(evidence), until=run.until))
    return hits


@rule(
    name="credential_stuffing",
    kind="credential_stuffing",
    severity="high",
    description="One address failed logins over many accounts in 10 minutes; logins that follow are takeovers.",
    playbook=(
        "Block or challenge the address at the edge, force a password reset and revoke sessions"
        " for every account named as logged in, and check those accounts' activity since the login."
    ),
    inputs=(AuthEvent,),
    memory=AddressBook,
    wants=lambda b: (b.column("kinds") == K_AUTH) & (b.column("action") == ACTIONS["login"]),
)
def credential_stuffing(ev: AuthEvent, book: AddressBook, ctx: DetectionContext) -> list[Hit] | None:
    if ev.action != "login":
        return None
    ip = ev.ip
    if not ip:
        return None
    t = ev.ts.timestamp()
    if ev.outcome == "failure":
        w = book.watch(ip)
        in_window = w.advance(t)
        if in_window:
            w.add_fail(t, ev.actor_id)
        run = w.run
        if run is None:
            if in_window:
                w.hold_pending(t, ev)
                if w.revealed():
                    return _start_run(ip, w, t)
            return None
        run.add_failure(ev, t)
        return [Hit(key=run.key, actor_id=None, episode=run, events=(ev,), until=run.until)]
    # Successes are counted for every address, so that an office's many good logins outweigh
    # its few typos even when the typos come after the logins.
    w = book.watch(ip)
    if w.advance(t):
        w.add_ok(t, ev.actor_id, ev if w.fails else None)
    run = w.run
    if run is None or t < run.first:
        return None
    tk = run.takeover(ev, t)
    hits = [Hit(key=run.key, actor_id=None, episode=run, events=(ev,), until=run.until)]
    if tk is not None:
        hits.append(Hit(key=tk.key, actor_id=tk.account, episode=tk, events=(ev,), until=run.until))
    return hits


# --- brute force on one account ----------------------------------------------------------------


class BruteForce:
    """Repeated failed logins to one account, and what followed them."""

    __slots__ = (
        "account",
        "at_detection",
        "failures",
        "first",
        "ips",
        "last_fail",
        "login_ip",
        "login_t",
        "logins",
        "reset_t",
        "started",
        "tenant",
    )

    def __init__(self, account: str, tenant: str | None, first: float) -> None:
        self.account = account
        self.tenant = tenant
        self.first = first
        self.started = minute_of(first)
        self.last_fail = first
        self.failures = 0
        self.at_detection = 0
        self.ips: list[str] = []
        self.login_t: float | None = None
        self.login_ip: str | None = None
        self.logins = 0
        self.reset_t: float | None = None

    @property
    def key(self) -> str:
        return self.started

    @property
    def until(self) -> float:
        return self.last_fail + HOT + WINDOW

    def add_failure(self, ev: AuthEvent, t: float) -> None:
        self.failures += 1
        if t > self.last_fail:
            self.last_fail = t
        bounded_add(self.ips, ev.ip, MAX_IPS)

    def verdict(self) -> Verdict:
        froms = f" from {listing(self.ips)}" if self.ips else ""
        reasons = [
            f"{plural(self.failures, 'failed login')} to {self.account} {span(self.first, self.last_fail)}{froms}",
            f"{num(self.at_detection)} of them within 10 minutes (the rule fires at {BRUTE_MIN_FAILURES})",
        ]
        severity: Severity
        title = f"Brute force on {self.account}: {plural(self.failures, 'failed login')}"
        if self.login_t is not None:
            same = self.login_ip in self.ips
            where = f" from {self.login_ip}" if self.login_ip else ""
            where += (", an address that had been failing" if same else ", a different address") if where else ""
            reasons.append(f"then a successful login at {when(self.login_t)}{where}")
            title += ", then a successful login"
            if self.reset_t is not None and self.reset_t <= self.login_t:
                reasons.append(
                    f"a password reset succeeded at {when(self.reset_t)}, before that login, which is what"
                    f" the owner regaining access looks like; confirm with the owner"
                )
                severity, score = "high", 80.0
            else:
                severity, score = "critical", 92.0
        else:
            severity = "medium"
            score = 45.0 + log_bonus(self.failures, 10.0, 25.0)
        return Verdict(
            severity=severity,
            score=min(score, 100.0),
            title=title,
            reasons=tuple(reasons),
            tenant_ids=(self.tenant or "",),
            source_ips=tuple(self.ips) + ((self.login_ip,) if self.login_ip else ()),
            facts={
                "failures": self.failures,
                "failures_10min_at_detection": self.at_detection,
                "addresses": len(self.ips),
                "successful_logins": self.logins,
            },
        )

    FIELDS = (
        "account",
        "tenant",
        "first",
        "started",
        "last_fail",
        "failures",
        "at_detection",
        "ips",
        "login_t",
        "login_ip",
        "logins",
        "reset_t",
    )

    def dump(self) -> list[Any]:
        return [getattr(self, f) for f in self.FIELDS]

    @classmethod
    def restore(cls, row: list[Any]) -> BruteForce:
        obj = cls.__new__(cls)
        for f, v in zip(cls.FIELDS, row, strict=True):
            setattr(obj, f, v)
        return obj


class AccountWatch:
    """One account's recent failed logins and, once they add up, its brute-force episode."""

    __slots__ = ("episode", "fails", "last")

    def __init__(self) -> None:
        self.fails: deque[tuple[float, AuthEvent]] = deque()
        self.last = float("-inf")
        self.episode: BruteForce | None = None

    def advance(self, t: float) -> bool:
        if t > self.last:
            self.last = t
        cutoff = self.last - WINDOW
        fails = self.fails
        while fails and fails[0][0] < cutoff:
            fails.popleft()
        ep = self.episode
        if ep is not None and self.last > ep.last_fail + HOT:
            self.episode = None
        return t >= cutoff

    def dump(self) -> dict[str, Any]:
        return {
            "fails": [[t, dump_event(e)] for t, e in self.fails],
            "last": self.last,
            "episode": self.episode.dump() if self.episode else None,
        }

    @classmethod
    def restore(cls, d: dict[str, Any]) -> AccountWatch:
        w = cls()
        w.fails.extend((t, load_event(e)) for t, e in d["fails"])
        w.last = d["last"]
        w.episode = BruteForce.restore(d["episode"]) if d["episode"] else None
        return w


class AccountBook(Book[AccountWatch]):
    """Recent failed logins per account (brute force's memory)."""

    state_key = "accounts"

    def __init__(self) -> None:
        super().__init__(AccountWatch, MAX_ACCOUNTS)

    def expired(self, entry: AccountWatch, watermark: float) -> bool:
        return entry.last < watermark - WINDOW and (entry.episode is None or entry.episode.until < watermark)


_LOGIN_OR_RESET = among(ACTIONS, "login", "password_reset")


@rule(
    name="brute_force",
    kind="brute_force",
    severity="medium",
    description="Ten or more failed logins to one account in 10 minutes; critical if a login follows.",
    playbook=(
        "If a login followed, call the account owner through a known channel, revoke the"
        " session and force a password reset; otherwise lock the account or rate-limit the"
        " addresses named, and watch for a login from them."
    ),
    inputs=(AuthEvent,),
    memory=AccountBook,
    wants=lambda b: (b.column("kinds") == K_AUTH) & _LOGIN_OR_RESET[b.column("action")],
)
def brute_force(ev: AuthEvent, book: AccountBook, ctx: DetectionContext) -> Hit | None:
    action = ev.action
    if action != "login" and action != "password_reset":
        return None
    account = ev.actor_id
    w = book.get(account)
    if ev.outcome == "failure":
        if action != "login":
            return None
        t = ev.ts.timestamp()
        w = book.get_or_add(account, AccountWatch)
        in_window = w.advance(t)
        ep = w.episode
        if ep is not None:
            ep.add_failure(ev, t)
            return Hit(key=ep.key, actor_id=account, episode=ep, events=(ev,), until=ep.until)
        if not in_window:
            return None
        w.fails.append((t, ev))
        if len(w.fails) > MAX_ACCOUNT_FAILURES:
            w.fails.popleft()
        if len(w.fails) < BRUTE_MIN_FAILURES:
            return None
        ep = w.episode = BruteForce(account, ev.actor_tenant, w.fails[0][0])
        for ft, fe in w.fails:
            ep.add_failure(fe, ft)
        ep.at_detection = len(w.fails)
        evidence = tuple(e for _, e in w.fails)
        w.fails.clear()
        return Hit(key=ep.key, actor_id=account, episode=ep, events=evidence, until=ep.until)
    if w is None:
        return None
    t = ev.ts.timestamp()
    w.advance(t)
    ep = w.episode
    if ep is None:
        if action == "login":
            # The owner got in: the failures before were typos, not an attack in progress.
            w.fails.clear()
        return None
    if t < ep.first:
        return None
    if action == "password_reset":
        if ep.reset_t is None:
            ep.reset_t = t
    else:
        ep.logins += 1
        if ep.login_t is None:
            ep.login_t = t
            ep.login_ip = ev.ip
    return Hit(key=ep.key, actor_id=account, episode=ep, events=(ev,), until=ep.until)
