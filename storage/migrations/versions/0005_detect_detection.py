"""``incidents.detected_at``: the event time at which an incident's first finding was raised
(the newest event the detectors had seen then), so time to detect is read off the incident.

Existing incidents take the earliest ``detected_at`` of their findings (which the findings
have always carried), or the earliest finding time where none has one.

Revision ID: 0005_detect
Revises: 0004
Create Date: 2026-12-07 06:30:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_detect"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.add_column(sa.Column("detected_at", sa.DateTime(timezone=True), nullable=True))
    op.execute(
        "UPDATE incidents SET detected_at = (SELECT MIN(COALESCE(f.detected_at, f.ts)) FROM findings f "
        "WHERE f.incident_id = incidents.incident_id)"
    )


def downgrade() -> None:
    with op.batch_alter_table("incidents", schema=None) as batch_op:
        batch_op.drop_column("detected_at")
