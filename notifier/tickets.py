"""Which ticket an incident has in an outside ticketing system (its Jira issue), so every later
change lands on that one ticket.

The key is stored as soon as the ticket is made, in a transaction of its own; a ticketing
channel that finds none (a crash between making the ticket and storing its key) searches the
system for the incident's label before it makes another (``channels.jira``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, Session, mapped_column

from breachwatch.core.clock import utcnow
from breachwatch.notifier.message import OutboxMessage
from breachwatch.notifier.outbox import OutboxRow
from breachwatch.storage.db import Base, insert_or_ignore


class TicketRow(Base):
    """An incident's ticket in one system."""

    __tablename__ = "incident_tickets"

    system: Mapped[str] = mapped_column(String(32), primary_key=True)
    incident_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    ticket_key: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class TicketBook:
    """The tickets of one system, read and written in short transactions of their own (a
    channel calls it between HTTP requests, outside any batch)."""

    def __init__(self, engine: Engine, system: str) -> None:
        self.engine = engine
        self.system = system

    def key(self, incident_id: str) -> str | None:
        with Session(self.engine) as session:
            return session.scalar(
                select(TicketRow.ticket_key).where(
                    TicketRow.system == self.system, TicketRow.incident_id == incident_id
                )
            )

    def remember(self, incident_id: str, key: str) -> str:
        """Store the incident's ticket key; the key stored first wins and is returned."""
        with Session(self.engine) as session, session.begin():
            insert_or_ignore(
                session,
                TicketRow.__table__,
                {"system": self.system, "incident_id": incident_id, "ticket_key": key, "created_at": utcnow()},
            )
        return self.key(incident_id) or key

    def message(self, message_id: str) -> OutboxMessage | None:
        """The outbox message with this id (what an interrupted send was about)."""
        with Session(self.engine) as session:
            row = session.get(OutboxRow, message_id)
            return row.to_message() if row is not None else None
