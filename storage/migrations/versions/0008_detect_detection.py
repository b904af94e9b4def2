"""``incidents.detected_at``: the event time at which an incident's first finding was raised
(the newest event the detectors had seen then), so time to detect is read off the incident;
``risk_contributions``: signals below the incident threshold, booked to their actor's and
tenant's risk ledgers.

Existing incidents take the earliest ``detected_at`` of their findings (which the findings
have always carried), or the earliest finding time where none has one.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 06:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("detected_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(
        "UPDATE incidents SET detected_at = (SELECT MIN(COALESCE(f.detected_at, f.ts)) FROM findings f "
        "WHERE f.incident_id = incidents.incident_id)"
    )
    op.create_table(
        "risk_contributions",
        sa.Column("finding_id", sa.String(length=64), nullable=False),
        sa.Column("actor_id", sa.String(length=128), nullable=True),
        sa.Column("tenant_id", sa.String(length=128), nullable=True),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source", sa.String(length=100), nullable=False),
        sa.Column("points", sa.Float(), nullable=False),
        sa.Column("what", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("finding_id"),
    )
    with op.batch_alter_table("risk_contributions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_risk_contributions_actor_id"), ["actor_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_risk_contributions_tenant_id"), ["tenant_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_risk_contributions_ts"), ["ts"], unique=False)


def downgrade() -> None:
    op.drop_table("risk_contributions")
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.drop_column("detected_at")
