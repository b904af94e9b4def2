"""Clocks as the law starts them, and the records a breach is decided from.

``notice_duties`` gains where each clock starts (the anchor, the recorded moment used and
whether it stood in), the last local day and its zone, the jurisdictions a duty is for, and any
law-enforcement hold, substitute notice and no-notify decision. New tables: the incident's
moments, each notice's jurisdictions, law-enforcement delays, risk-of-harm assessments, the
encryption safe-harbour decision, missing contact details, and the breach register.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 08:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WHEN = sa.DateTime(timezone=True)


def _duty_columns() -> list[sa.Column]:
    return [
        sa.Column("clock_start", sa.String(length=40), server_default="", nullable=False),
        sa.Column("clock_start_text", sa.Text(), server_default="", nullable=False),
        sa.Column("moment_used", sa.String(length=64), nullable=True),
        sa.Column("moment_is_fallback", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("due_last_day", sa.Date(), nullable=True),
        sa.Column("due_zone", sa.String(length=64), nullable=True),
        sa.Column("jurisdictions", sa.JSON(), server_default="[]", nullable=False),
        sa.Column("hold", sa.JSON(), server_default="{}", nullable=False),
        sa.Column("substitute", sa.JSON(), server_default="{}", nullable=False),
        sa.Column("waived", sa.JSON(), server_default="{}", nullable=False),
    ]


def upgrade() -> None:
    with op.batch_alter_table("notice_duties", schema=None) as batch_op:
        for column in _duty_columns():
            batch_op.add_column(column)
    op.create_table(
        "notice_moments",
        sa.Column("incident_id", sa.String(length=64), nullable=False),
        sa.Column("moment", sa.String(length=32), nullable=False),
        sa.Column("at", WHEN, nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("recorded_by", sa.String(length=200), nullable=False),
        sa.Column("recorded_at", WHEN, nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["incident_id"], ["incidents.incident_id"]),
        sa.PrimaryKeyConstraint("incident_id", "moment"),
    )
    op.create_table(
        "notice_jurisdictions",
        sa.Column("notice_id", sa.String(length=64), nullable=False),
        sa.Column("jurisdiction", sa.String(length=16), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("affected_low", sa.Integer(), nullable=False),
        sa.Column("affected_high", sa.Integer(), nullable=True),
        sa.Column("duties", sa.JSON(), nullable=False),
        sa.Column("undecided", sa.JSON(), nullable=False),
        sa.Column("advisories", sa.JSON(), nullable=False),
        sa.Column("exempted", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["notice_id"], ["notices.notice_id"]),
        sa.PrimaryKeyConstraint("notice_id", "jurisdiction"),
    )
    op.create_table(
        "notice_delays",
        sa.Column("delay_id", sa.String(length=64), nullable=False),
        sa.Column("incident_id", sa.String(length=64), nullable=False),
        sa.Column("requested_by", sa.String(length=32), nullable=False),
        sa.Column("agency", sa.Text(), nullable=False),
        sa.Column("official", sa.Text(), nullable=False),
        sa.Column("form", sa.String(length=16), nullable=False),
        sa.Column("requested_at", WHEN, nullable=False),
        sa.Column("until", WHEN, nullable=True),
        sa.Column("reference", sa.Text(), nullable=False),
        sa.Column("recorded_by", sa.String(length=200), nullable=False),
        sa.Column("recorded_at", WHEN, nullable=False),
        sa.Column("lifted_at", WHEN, nullable=True),
        sa.Column("lifted_by", sa.String(length=200), nullable=True),
        sa.Column("lifted_note", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["incident_id"], ["incidents.incident_id"]),
        sa.PrimaryKeyConstraint("delay_id"),
    )
    with op.batch_alter_table("notice_delays", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_notice_delays_incident_id"), ["incident_id"], unique=False)
    op.create_table(
        "notice_harm_assessments",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("incident_id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=128), nullable=False),
        sa.Column("jurisdiction", sa.String(length=16), nullable=False),
        sa.Column("owner", sa.String(length=16), nullable=False),
        sa.Column("factors", sa.JSON(), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("reasons", sa.Text(), nullable=False),
        sa.Column("waived", sa.JSON(), nullable=False),
        sa.Column("assessed_by", sa.String(length=200), nullable=False),
        sa.Column("assessed_at", WHEN, nullable=False),
        sa.ForeignKeyConstraint(["incident_id"], ["incidents.incident_id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("notice_harm_assessments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_notice_harm_assessments_incident_id"), ["incident_id"], unique=False)
    op.create_table(
        "notice_safe_harbour",
        sa.Column("incident_id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=128), nullable=False),
        sa.Column("applies", sa.Boolean(), nullable=False),
        sa.Column("encrypted_resource_types", sa.JSON(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("decided_by", sa.String(length=200), nullable=False),
        sa.Column("decided_at", WHEN, nullable=False),
        sa.ForeignKeyConstraint(["incident_id"], ["incidents.incident_id"]),
        sa.PrimaryKeyConstraint("incident_id", "tenant_id"),
    )
    op.create_table(
        "notice_contact_gaps",
        sa.Column("incident_id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=128), nullable=False),
        sa.Column("missing", sa.Integer(), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.Column("recorded_by", sa.String(length=200), nullable=False),
        sa.Column("recorded_at", WHEN, nullable=False),
        sa.ForeignKeyConstraint(["incident_id"], ["incidents.incident_id"]),
        sa.PrimaryKeyConstraint("incident_id", "tenant_id"),
    )
    op.create_table(
        "breach_register",
        sa.Column("incident_id", sa.String(length=64), nullable=False),
        sa.Column("facts", sa.Text(), nullable=False),
        sa.Column("effects", sa.Text(), nullable=False),
        sa.Column("remedial_action", sa.Text(), nullable=False),
        sa.Column("updated_by", sa.String(length=200), nullable=False),
        sa.Column("updated_at", WHEN, nullable=False),
        sa.ForeignKeyConstraint(["incident_id"], ["incidents.incident_id"]),
        sa.PrimaryKeyConstraint("incident_id"),
    )


def downgrade() -> None:
    op.drop_table("breach_register")
    op.drop_table("notice_contact_gaps")
    op.drop_table("notice_safe_harbour")
    with op.batch_alter_table("notice_harm_assessments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notice_harm_assessments_incident_id"))
    op.drop_table("notice_harm_assessments")
    with op.batch_alter_table("notice_delays", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_notice_delays_incident_id"))
    op.drop_table("notice_delays")
    op.drop_table("notice_jurisdictions")
    op.drop_table("notice_moments")
    with op.batch_alter_table("notice_duties", schema=None) as batch_op:
        for column in reversed(_duty_columns()):
            batch_op.drop_column(column.name)
