"""Incident changes to outside systems: ordered outbox messages (``outbox.ordering_key`` and
``seq``: an incident's changes to one system go out one at a time, in order), the incident's
ticket in each ticketing system (``incident_tickets``), and webhook deliveries received from
outside systems, once each (``inbound_deliveries``).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07 09:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("ordering_key", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("seq", sa.Integer(), nullable=True))
        batch_op.create_index("ix_outbox_order", ["ordering_key", "channel", "seq"], unique=True)
    op.create_table(
        "incident_tickets",
        sa.Column("system", sa.String(length=32), nullable=False),
        sa.Column("incident_id", sa.String(length=64), nullable=False),
        sa.Column("ticket_key", sa.String(length=100), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("system", "incident_id"),
    )
    op.create_table(
        "inbound_deliveries",
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("delivery_id", sa.String(length=128), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("incident_id", sa.String(length=255), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("source", "delivery_id"),
    )


def downgrade() -> None:
    op.drop_table("inbound_deliveries")
    op.drop_table("incident_tickets")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_order")
        batch_op.drop_column("seq")
        batch_op.drop_column("ordering_key")
