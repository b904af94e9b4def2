"""``correlation_keys``: what each finding can be correlated on (its actor, the attacking
network it is about, the networks an actor's finding came from), so that a finding about an
attacking network finds an actor's incident stored before it.

Existing findings get their actor's key, or their incident's group key when they have no
actor; findings of incidents still open also get the networks of the evidence they brought.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 01:02:52.417268
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from breachwatch.core.ids import network_prefix

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Closed incidents are never correlated with (see incidents.model.CLOSED_STATUSES).
_CLOSED = ("resolved", "false_positive")


def upgrade() -> None:
    op.create_table(
        "correlation_keys",
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("finding_id", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(["finding_id"], ["findings.finding_id"]),
        sa.PrimaryKeyConstraint("key", "finding_id"),
    )
    with op.batch_alter_table("correlation_keys", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_correlation_keys_finding_id"), ["finding_id"], unique=False)
    op.execute(
        "INSERT INTO correlation_keys (key, finding_id) "
        "SELECT 'actor:' || actor_id, finding_id FROM findings WHERE actor_id IS NOT NULL"
    )
    op.execute(
        "INSERT INTO correlation_keys (key, finding_id) "
        "SELECT i.group_key, f.finding_id FROM findings f JOIN incidents i ON i.incident_id = f.incident_id "
        "WHERE f.actor_id IS NULL AND (i.group_key LIKE 'net:%' OR i.group_key LIKE 'ip:%')"
    )
    bind = op.get_bind()
    rows = bind.execute(
        sa.text(
            "SELECT f.finding_id, f.actor_id, e.event_json FROM findings f "
            "JOIN incidents i ON i.incident_id = f.incident_id "
            "JOIN evidence e ON e.incident_id = f.incident_id AND e.finding_id = f.finding_id "
            "WHERE i.status NOT IN :closed"
        ).bindparams(sa.bindparam("closed", expanding=True)),
        {"closed": list(_CLOSED)},
    )
    have = {tuple(r) for r in bind.execute(sa.text("SELECT finding_id, key FROM correlation_keys"))}
    new: list[dict[str, str]] = []
    for finding_id, actor_id, event_json in rows:
        ip = json.loads(event_json).get("ip")
        if not ip:
            continue
        n = network_prefix(ip)
        key = f"src:{n or ip}" if actor_id else (f"net:{n}" if n else f"ip:{ip}")
        if (finding_id, key) not in have:
            have.add((finding_id, key))
            new.append({"key": key, "finding_id": finding_id})
    if new:
        bind.execute(sa.text("INSERT INTO correlation_keys (key, finding_id) VALUES (:key, :finding_id)"), new)


def downgrade() -> None:
    with op.batch_alter_table("correlation_keys", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_correlation_keys_finding_id"))
    op.drop_table("correlation_keys")
