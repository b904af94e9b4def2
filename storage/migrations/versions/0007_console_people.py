"""The people working an incident: its assignee, comments and the users they mention, and
the checklist tasks someone ticked.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28 09:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "incident_assignments",
        sa.Column("incident_id", sa.String(length=64), nullable=False),
        sa.Column("assignee", sa.String(length=64), nullable=False),
        sa.Column("assigned_by", sa.String(length=200), nullable=False),
        sa.Column("assigned_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["incident_id"], ["incidents.incident_id"]),
        sa.PrimaryKeyConstraint("incident_id"),
    )
    with op.batch_alter_table("incident_assignments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_incident_assignments_assignee"), ["assignee"], unique=False)
    op.create_table(
        "incident_comments",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("incident_id", sa.String(length=64), nullable=False),
        sa.Column("author", sa.String(length=200), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["incident_id"], ["incidents.incident_id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("incident_comments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_incident_comments_incident_id"), ["incident_id"], unique=False)
    op.create_table(
        "incident_mentions",
        sa.Column("comment_id", sa.Integer(), nullable=False),
        sa.Column("username", sa.String(length=64), nullable=False),
        sa.Column("incident_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["comment_id"], ["incident_comments.id"]),
        sa.ForeignKeyConstraint(["incident_id"], ["incidents.incident_id"]),
        sa.PrimaryKeyConstraint("comment_id", "username"),
    )
    with op.batch_alter_table("incident_mentions", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_incident_mentions_incident_id"), ["incident_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_incident_mentions_username"), ["username"], unique=False)
    op.create_table(
        "incident_tasks",
        sa.Column("incident_id", sa.String(length=64), nullable=False),
        sa.Column("task_id", sa.String(length=32), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("done_by", sa.String(length=200), nullable=False),
        sa.Column("done_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["incident_id"], ["incidents.incident_id"]),
        sa.PrimaryKeyConstraint("incident_id", "task_id"),
    )


def downgrade() -> None:
    op.drop_table("incident_tasks")
    with op.batch_alter_table("incident_mentions", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_incident_mentions_username"))
        batch_op.drop_index(batch_op.f("ix_incident_mentions_incident_id"))
    op.drop_table("incident_mentions")
    with op.batch_alter_table("incident_comments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_incident_comments_incident_id"))
    op.drop_table("incident_comments")
    with op.batch_alter_table("incident_assignments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_incident_assignments_assignee"))
    op.drop_table("incident_assignments")
