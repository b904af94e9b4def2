"""Law-enforcement delays applied to duties: which clocks a request holds back, until when, and
where each restarts.

A request holds back only the duties whose regime's rule file allows it (``Duty.delay_terms``),
only if the person who asked may (``requested_by``) and in a form the law accepts, and only if
it came before the duty was due. While it holds, the duty is paused: no due time runs. When it
ends (the date it names, the date it is lifted, or the longest an oral or unrenewed request may
hold), the clock restarts.

Where it restarts is a reading: the statutes say notice is made "promptly after" (Cal. Civ. Code
1798.82(c)), "as soon as" (Tex. Bus. & Com. Code 521.053(d)) or "after" (N.Y. Gen. Bus. Law
899-aa(4)) the agency says it no longer impedes the investigation, and 45 CFR 164.412 delays
notice "for the time period specified". Read as suspending the clock, the time left would run
again after the delay; read as the statutes word it, notice is due when the delay ends. The
earlier is docketed: the deadline (and the internal target) move to the end of the delay if
they fall inside it, and are unchanged if they fall after it.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from breachwatch.notifier.duties.engine import Duty
from breachwatch.notifier.duties.facts import utc
from breachwatch.notifier.duties.provisos import DelayTerms


@dataclass(frozen=True, slots=True)
class DelayRequest:
    """One request to hold notice back, as recorded: who may have asked, how, from and until when."""

    ref: str  # the record's id, so a duty can name the request that holds it
    requested_by: Literal["law_enforcement", "attorney_general"]
    form: Literal["written", "oral"]
    requested_at: datetime
    until: datetime | None = None  # the end the request names; None: until the agency says
    lifted_at: datetime | None = None  # when the agency said notice may go ahead


@dataclass(frozen=True, slots=True)
class Hold:
    """How one request holds one duty: from when, until when (None: not yet known), and why."""

    ref: str
    provision: str
    start: datetime
    end: datetime | None
    capped: bool  # the end is the most the law allows (an oral request, an unrenewed one)
    original_due_at: datetime | None
    original_target_at: datetime | None

    def paused(self, now: datetime) -> bool:
        return self.end is None or now < self.end


def effective_end(terms: DelayTerms, request: DelayRequest) -> tuple[datetime | None, bool]:
    """When the request stops holding the duty, and whether that is the law's cap."""
    ends = [t for t in (request.until, request.lifted_at) if t is not None]
    end = min(ends) if ends else None
    caps = []
    if request.form == "oral" and terms.oral_max_days is not None:
        caps.append(request.requested_at + timedelta(days=terms.oral_max_days))
    if terms.max_days is not None:
        caps.append(request.requested_at + timedelta(days=terms.max_days))
    cap = min(caps) if caps else None
    if cap is not None and (end is None or cap < end):
        return cap, True
    return end, False


def applies(terms: DelayTerms | None, request: DelayRequest, duty: Duty) -> bool:
    """Whether the law lets this request hold this duty back."""
    if terms is None or request.requested_by not in terms.requested_by or request.form not in terms.forms:
        return False
    if duty.clock_started_at is None:
        return False  # a clock that has not started has nothing to hold
    deadline = duty.due_at or duty.target_at
    return deadline is None or request.requested_at < deadline


def hold(duty: Duty, requests: Iterable[DelayRequest]) -> tuple[Duty, tuple[Hold, ...]]:
    """The duty with its due time and target after every request that may hold it, and the holds.

    A paused duty with no known end has no due time or target; see the module docstring for
    where a clock restarts.
    """
    holds: list[Hold] = []
    current = duty
    for request in sorted(requests, key=lambda r: r.requested_at):
        utc(request.requested_at, "requested_at")
        if not applies(duty.delay_terms, request, current):
            continue
        assert duty.delay_terms is not None  # checked by applies
        end, capped = effective_end(duty.delay_terms, request)
        holds.append(
            Hold(
                ref=request.ref,
                provision=duty.delay_terms.provision,
                start=request.requested_at,
                end=end,
                capped=capped,
                original_due_at=current.due_at,
                original_target_at=current.target_at,
            )
        )
        current = current.model_copy(
            update={"due_at": _later(current.due_at, end), "target_at": _later(current.target_at, end)}
        )
    return current, tuple(holds)


def hold_all(duties: Sequence[Duty], requests: Sequence[DelayRequest]) -> list[tuple[Duty, tuple[Hold, ...]]]:
    """:func:`hold` for each duty."""
    return [hold(d, requests) for d in duties]


def _later(moment: datetime | None, end: datetime | None) -> datetime | None:
    if moment is None:
        return None
    if end is None:
        return None  # paused until the agency says: no due time runs
    return max(moment, end)
