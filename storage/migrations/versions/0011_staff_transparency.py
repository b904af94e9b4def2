"""Staff access a tenant can see and approve: ``staff_accesses`` (the transparency log, one row
per vendor-staff access with its justification), ``access_approval_policies`` (tenants that
require approval before staff access) and ``access_requests`` (requests and their decisions),
and ``api_tokens.tenant_id`` (a token scoped to one tenant's transparency log).

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 09:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "staff_accesses",
        sa.Column("access_id", sa.String(length=24), nullable=False),
        sa.Column("event_id", sa.String(length=128), nullable=False),
        sa.Column("tenant_id", sa.String(length=128), nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("staff_id", sa.String(length=128), nullable=False),
        sa.Column("staff_name", sa.String(length=256), nullable=True),
        sa.Column("staff_team", sa.String(length=32), nullable=True),
        sa.Column("office_country", sa.String(length=2), nullable=True),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("resource_type", sa.String(length=64), nullable=False),
        sa.Column("sensitivity", sa.String(length=16), nullable=False),
        sa.Column("records", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("cited_ticket", sa.String(length=128), nullable=True),
        sa.Column("ticket_id", sa.String(length=128), nullable=True),
        sa.Column("ticket_kind", sa.String(length=16), nullable=True),
        sa.Column("requested_by", sa.String(length=16), nullable=True),
        sa.Column("purpose", sa.String(length=32), nullable=True),
        sa.Column("ticket_summary", sa.String(length=512), nullable=True),
        sa.Column("approval_required", sa.Boolean(), nullable=False),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("justified", sa.Boolean(), nullable=False),
        sa.Column("problems", sa.JSON(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("access_id"),
    )
    op.create_index("ix_staff_accesses_tenant_ts", "staff_accesses", ["tenant_id", "ts", "access_id"])
    op.create_table(
        "access_approval_policies",
        sa.Column("policy_id", sa.String(length=24), nullable=False),
        sa.Column("tenant_id", sa.String(length=128), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("approvers", sa.JSON(), nullable=False),
        sa.Column("locale", sa.String(length=16), nullable=True),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("ended_by", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("policy_id"),
    )
    op.create_index(
        op.f("ix_access_approval_policies_tenant_id"), "access_approval_policies", ["tenant_id"], unique=False
    )
    op.create_table(
        "access_requests",
        sa.Column("request_id", sa.String(length=64), nullable=False),
        sa.Column("tenant_id", sa.String(length=128), nullable=False),
        sa.Column("staff_ids", sa.JSON(), nullable=False),
        sa.Column("staff_names", sa.JSON(), nullable=False),
        sa.Column("ticket_id", sa.String(length=128), nullable=True),
        sa.Column("purpose", sa.String(length=32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("filed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("filed_by", sa.String(length=200), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("decided_by", sa.String(length=320), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_by", sa.String(length=320), nullable=True),
        sa.Column("links", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("request_id"),
    )
    op.create_index("ix_access_requests_tenant", "access_requests", ["tenant_id", "starts_at"])
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.add_column(sa.Column("tenant_id", sa.String(length=128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_tokens", schema=None) as batch_op:
        batch_op.drop_column("tenant_id")
    op.drop_index("ix_access_requests_tenant", table_name="access_requests")
    op.drop_table("access_requests")
    op.drop_index(op.f("ix_access_approval_policies_tenant_id"), table_name="access_approval_policies")
    op.drop_table("access_approval_policies")
    op.drop_index("ix_staff_accesses_tenant_ts", table_name="staff_accesses")
    op.drop_table("staff_accesses")
