"""``checkpoint_items``: a unit's detector state by item (one actor's profile, carried events
and, once evicted, when it was last seen), so that a checkpoint writes the actors that changed
since the last one rather than every actor the unit knows.

Existing checkpoints keep their whole state in ``checkpoints.state``; a consumer restoring
one writes all of its actors as items at its next checkpoint. ``checkpoints.seq`` counts the
writes of each unit's checkpoint, so that a checkpoint of changes is written only over the one
it was built on. Downgrading folds the items back into the states.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 03:55:00.000000
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("checkpoints", schema=None) as batch_op:
        batch_op.add_column(sa.Column("seq", sa.Integer(), server_default="0", nullable=False))
    op.create_table(
        "checkpoint_items",
        sa.Column("group_id", sa.String(length=200), nullable=False),
        sa.Column("partition", sa.Integer(), nullable=False),
        sa.Column("detector", sa.String(length=100), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("group_id", "partition", "detector", "key"),
    )


def downgrade() -> None:
    # Older code reads a checkpoint's whole state from ``checkpoints.state``: fold each unit's
    # items back into it (an item holds an actor's entries of "profiles", "carry" and
    # "register").
    bind = op.get_bind()
    items = bind.execute(sa.text("SELECT group_id, partition, detector, key, value FROM checkpoint_items")).all()
    by_unit: dict[tuple[str, int], dict[str, dict[str, dict]]] = {}
    for group_id, partition, detector, key, value in items:
        by_unit.setdefault((group_id, partition), {}).setdefault(detector, {})[key] = json.loads(zlib.decompress(value))
    for (group_id, partition), detectors in by_unit.items():
        row = bind.execute(
            sa.text("SELECT state FROM checkpoints WHERE group_id = :g AND partition = :p"),
            {"g": group_id, "p": partition},
        ).first()
        if row is None:
            continue
        state = json.loads(zlib.decompress(row[0]))
        for detector, held in detectors.items():
            head = state.setdefault(detector, {})
            head["register"] = {k: it["register"] for k, it in held.items() if "register" in it}
            head["profiles"] = {k: it["profile"] for k, it in held.items() if "profile" in it}
            head["carry"] = {k: it["carry"] for k, it in held.items() if "carry" in it}
        bind.execute(
            sa.text("UPDATE checkpoints SET state = :s WHERE group_id = :g AND partition = :p"),
            {"s": zlib.compress(json.dumps(state, separators=(",", ":")).encode(), 3), "g": group_id, "p": partition},
        )
    op.drop_table("checkpoint_items")
    with op.batch_alter_table("checkpoints", schema=None) as batch_op:
        batch_op.drop_column("seq")
