"""``findings.suppressed``: a finding attached to an incident marked false positive instead of
opening and paging a new incident (existing findings were never suppressed); ``findings.actor_id``
indexed for the look-up of an actor's false positives that every batch makes.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 12:07:04.243962
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # sa.false() renders per backend (0 on SQLite, false on PostgreSQL); a literal would not.
    with op.batch_alter_table("findings", schema=None) as batch_op:
        batch_op.add_column(sa.Column("suppressed", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.create_index(batch_op.f("ix_findings_actor_id"), ["actor_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("findings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_findings_actor_id"))
        batch_op.drop_column("suppressed")
