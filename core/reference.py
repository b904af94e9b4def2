"""The compacted reference topics (tenants, staff, tickets) held as in-memory tables.

The latest value per key wins; a ``None`` value (a Kafka tombstone) deletes the key. Ticket
look-ups are by validity interval, not by "open now", so a replay of old events and the live
service judge a staff access the same way whatever order the ticket and the access arrive in.
Beside them, ``grants`` holds the access approvals BreachWatch itself records (tenants that
require approval before staff access, and their requests), which staff accesses are judged
against too.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime, timedelta

from breachwatch.core.events import STAFF, TENANTS, TICKETS, Reference, Staff, Tenant, Ticket
from breachwatch.core.justification import AccessGrants

# A ticket is often opened a little after the engineer starts looking, and closed a little
# before the last page view is logged; accept accesses within this margin of its interval.
TICKET_GRACE = timedelta(minutes=15)


class ReferenceTables:
    """Latest tenant, staff and ticket records by key, with a ticket index for look-ups."""

    def __init__(self) -> None:
        self.tenants: dict[str, Tenant] = {}
        self.staff: dict[str, Staff] = {}
        self.tickets: dict[str, Ticket] = {}
        self._tickets_by_pair: dict[tuple[str, str], set[str]] = defaultdict(set)
        self._tickets_by_tenant: dict[str, set[str]] = defaultdict(set)
        self.grants = AccessGrants()

    def apply(self, topic: str, key: str, value: Reference | None) -> None:
        """Apply one record of a compacted topic (``topic`` without any deployment prefix)."""
        if topic == TENANTS:
            self._put(self.tenants, key, value)
        elif topic == STAFF:
            self._put(self.staff, key, value)
        elif topic == TICKETS:
            old = self.tickets.get(key)
            if old is not None:
                for sid in old.staff_ids:
                    self._tickets_by_pair[(old.tenant_id, sid)].discard(key)
                self._tickets_by_tenant[old.tenant_id].discard(key)
            self._put(self.tickets, key, value)
            if isinstance(value, Ticket):
                for sid in value.staff_ids:
                    self._tickets_by_pair[(value.tenant_id, sid)].add(key)
                self._tickets_by_tenant[value.tenant_id].add(key)
        else:
            raise ValueError(f"not a reference topic: {topic}")

    @staticmethod
    def _put(table: dict, key: str, value: Reference | None) -> None:
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value

    def covering_ticket(
        self, staff_id: str, tenant_id: str, ts: datetime, grace: timedelta = TICKET_GRACE
    ) -> Ticket | None:
        """A ticket for ``tenant_id`` naming ``staff_id`` that was open at ``ts``, if any."""
        # In id order: when two tickets cover the access, the same one is named every time.
        for tid in sorted(self._tickets_by_pair.get((tenant_id, staff_id), ())):
            t = self.tickets[tid]
            if t.opened_at - grace <= ts and (t.closed_at is None or ts <= t.closed_at + grace):
                return t
        return None

    def tickets_naming(self, staff_id: str, tenant_id: str) -> list[Ticket]:
        """Every ticket for ``tenant_id`` that names ``staff_id``, whenever open (by id)."""
        return [self.tickets[t] for t in sorted(self._tickets_by_pair.get((tenant_id, staff_id), ()))]

    def tickets_of(self, tenant_id: str) -> list[Ticket]:
        """Every ticket for ``tenant_id`` (by id)."""
        return [self.tickets[t] for t in sorted(self._tickets_by_tenant.get(tenant_id, ()))]

    def tenant_opted_out(self, tenant_id: str) -> bool:
        t = self.tenants.get(tenant_id)
        return bool(t and t.ai_training_opt_out)

    def __len__(self) -> int:
        return len(self.tenants) + len(self.staff) + len(self.tickets)
