"""Approval seals: ``notice_deliveries.content_digest`` (the digest of each notice message when
its version was approved) and ``outbox.sealed_digest`` (the seal the dispatcher checks before it
hands a message to a channel). Messages queued before this revision carry no seal.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 09:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sealed_digest", sa.String(length=64), nullable=True))
    with op.batch_alter_table("notice_deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("content_digest", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("notice_deliveries", schema=None) as batch_op:
        batch_op.drop_column("content_digest")
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_column("sealed_digest")
