"""The log detector's open sessions as checkpoint items (one row per open session, written when
it changes), like the learned detector's actors since 0004. No table changes: this version
reads a log state with its sessions in the head as it stands, and writes them as items from
its next checkpoint on. Going back folds them into the head again, which the code before
reads.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 23:30:00.000000
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LOGS = "logs"  # the log detector's name in checkpoints
WHOLE_VERSION = 2  # the log state version the code before reads: sessions in the head


def upgrade() -> None:
    return None


def downgrade() -> None:
    bind = op.get_bind()
    rows = bind.execute(
        sa.text("SELECT group_id, partition, value FROM checkpoint_items WHERE detector = :d"), {"d": LOGS}
    ).all()
    by_unit: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for group_id, partition, value in rows:
        by_unit.setdefault((group_id, partition), []).append(json.loads(zlib.decompress(value)))
    units = bind.execute(sa.text("SELECT group_id, partition, state FROM checkpoints")).all()
    for group_id, partition, blob in units:
        state = json.loads(zlib.decompress(blob))
        head = state.get(LOGS)
        if not head or "sessions" in head:
            continue  # no log state, or already whole
        items = sorted(by_unit.get((group_id, partition), []), key=lambda it: int(it["order"]))
        head.pop("next_order", None)
        head["version"] = WHOLE_VERSION
        head["sessions"] = [it["session"] for it in items]
        bind.execute(
            sa.text("UPDATE checkpoints SET state = :s WHERE group_id = :g AND partition = :p"),
            {"s": zlib.compress(json.dumps(state, separators=(",", ":")).encode(), 3), "g": group_id, "p": partition},
        )
    bind.execute(sa.text("DELETE FROM checkpoint_items WHERE detector = :d"), {"d": LOGS})
