"""Checkpoints: each unit's detector state with the input offsets it reflects, written in the
same transaction as the findings of the batch that produced it.

A unit's state is a head (each detector's non-itemised state) in ``checkpoints`` and its items
(one actor's profile and carried events) in ``checkpoint_items``; a checkpoint of changes writes
only the items changed since the last saved one and is fenced by ``seq`` (``StaleCheckpoint``).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Integer, LargeBinary, String, delete, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Mapped, Session, mapped_column

from breachwatch.core.clock import utcnow
from breachwatch.core.events import Tenant
from breachwatch.core.findings import Finding
from breachwatch.core.justification import StaffAccess
from breachwatch.incidents.store import IncidentStore, RecordResult
from breachwatch.notifier.notices import remember_tenants
from breachwatch.privacy.transparency import record_staff_accesses
from breachwatch.storage.db import Base, dialect_insert


class CheckpointRow(Base):
    """Detector state of one unit (``streams.units``: actor unit p under key p, log unit p
    under -1-p), with the input offsets it reflects."""

    __tablename__ = "checkpoints"

    group_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    partition: Mapped[int] = mapped_column(Integer, primary_key=True)
    offsets: Mapped[dict[str, Any]] = mapped_column(default=dict)  # topic -> next offset
    state: Mapped[bytes] = mapped_column(LargeBinary)  # zlib-compressed JSON
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)
    # Raised by every write: a checkpoint holding only what changed is written only over the
    # one it was built on (see ``incidents.store.StaleCheckpoint``).
    seq: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class CheckpointItemRow(Base):
    """One item of a unit's itemised detector state (``detectors.base.StateDelta``: one
    actor's profile and carried events), written when it changes, with its checkpoint."""

    __tablename__ = "checkpoint_items"

    group_id: Mapped[str] = mapped_column(String(200), primary_key=True)
    partition: Mapped[int] = mapped_column(Integer, primary_key=True)
    detector: Mapped[str] = mapped_column(String(100), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    value: Mapped[bytes] = mapped_column(LargeBinary)  # zlib-compressed JSON


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Detector state of one unit (``partition`` holds its key, see ``streams.units``) and
    the next input offset per topic."""

    group_id: str
    partition: int
    offsets: dict[str, int]
    state: dict[str, Any]
    # Itemised detector states (``detectors.base.StateDelta``), per detector: loaded, every
    # item; to write, the items changed and the keys dropped, and the detectors whose items
    # are complete (what the store held of them before goes).
    items: dict[str, dict[str, Any]] = field(default_factory=dict)
    dropped: dict[str, list[str]] = field(default_factory=dict)
    complete: frozenset[str] = frozenset()
    # Loaded: how many times the checkpoint was written. To write: the write it builds on,
    # which must still be the stored one if it holds only some items of a detector.
    seq: int = 0

    @property
    def partial(self) -> bool:
        """Whether it holds only the changed items of some detector (see ``StaleCheckpoint``)."""
        return any(name not in self.complete for name in self.items)


class StaleCheckpoint(Exception):
    """A unit's checkpoint was written by another consumer after the one a checkpoint of
    changes was built on (a consumer the group had given up on, still writing): those changes
    would land on a state their writer never saw. Nothing of the batch is stored."""

    def __init__(self, partitions: list[int]) -> None:
        super().__init__(f"checkpoints of units {partitions} were written by another consumer meanwhile")
        self.partitions = partitions


def encode_state(state: dict[str, Any]) -> bytes:
    return zlib.compress(json.dumps(state, separators=(",", ":")).encode(), 3)


def decode_state(blob: bytes) -> dict[str, Any]:
    return json.loads(zlib.decompress(blob))


def _write_checkpoint(session: Session, cp: Checkpoint) -> int | None:
    """Write a checkpoint's row; its sequence number after, or None if it holds changes built
    on a write that is no longer the stored one."""
    table = CheckpointRow.__table__
    values = {"offsets": cp.offsets, "state": encode_state(cp.state), "updated_at": utcnow()}
    if cp.partial:
        stmt = (
            update(table)
            .where(table.c.group_id == cp.group_id, table.c.partition == cp.partition, table.c.seq == cp.seq)
            .values(**values, seq=table.c.seq + 1)
            .returning(table.c.seq)
        )
        return session.execute(stmt).scalar_one_or_none()
    ins = dialect_insert(session, table).values(group_id=cp.group_id, partition=cp.partition, seq=1, **values)
    ins = ins.on_conflict_do_update(
        index_elements=[table.c.group_id, table.c.partition], set_={**values, "seq": table.c.seq + 1}
    )
    return int(session.execute(ins.returning(table.c.seq)).scalar_one())


def _write_items(session: Session, cp: Checkpoint) -> None:
    """A checkpoint's itemised states: void the complete ones' earlier items, delete the dropped
    keys, then insert or replace the changed items (one statement for all of them)."""
    unit = (CheckpointItemRow.group_id == cp.group_id, CheckpointItemRow.partition == cp.partition)
    for detector in cp.complete:
        session.execute(delete(CheckpointItemRow).where(*unit, CheckpointItemRow.detector == detector))
    for detector, keys in cp.dropped.items():
        for i in range(0, len(keys), _ITEMS_PER_DELETE):
            chunk = keys[i : i + _ITEMS_PER_DELETE]
            session.execute(
                delete(CheckpointItemRow).where(
                    *unit, CheckpointItemRow.detector == detector, CheckpointItemRow.key.in_(chunk)
                )
            )
    rows = [
        {"group_id": cp.group_id, "partition": cp.partition, "detector": d, "key": k, "value": encode_state(v)}
        for d, items in cp.items.items()
        for k, v in items.items()
    ]
    if rows:
        table = CheckpointItemRow.__table__
        ins = dialect_insert(session, table)
        keys = list(table.primary_key.columns)
        session.execute(ins.on_conflict_do_update(index_elements=keys, set_={"value": ins.excluded.value}), rows)


# Items deleted per statement: well under every database's limit on bound parameters.
_ITEMS_PER_DELETE = 500


class CheckpointStore:
    """Reads and writes units' checkpoints; a write joins the batch's transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def load(self, group_id: str, partition: int) -> Checkpoint | None:
        """The unit's checkpoint with every saved item, or None if it has none."""
        with Session(self.engine) as session:
            row = session.get(CheckpointRow, (group_id, partition))
            if row is None:
                return None
            items: dict[str, dict[str, Any]] = {}
            for detector, key, value in session.execute(
                select(CheckpointItemRow.detector, CheckpointItemRow.key, CheckpointItemRow.value).where(
                    CheckpointItemRow.group_id == group_id, CheckpointItemRow.partition == partition
                )
            ):
                items.setdefault(detector, {})[key] = decode_state(value)
            return Checkpoint(group_id, partition, dict(row.offsets), decode_state(row.state), items, seq=row.seq)

    def save(self, checkpoints: Sequence[Checkpoint]) -> dict[int, int]:
        """Write checkpoints in a transaction of their own (see ``write``)."""
        with Session(self.engine) as session, session.begin():
            return self.write(session, checkpoints)

    @staticmethod
    def write(session: Session, checkpoints: Sequence[Checkpoint]) -> dict[int, int]:
        """Write checkpoints in the caller's transaction; per unit, its sequence number now.
        Raises ``StaleCheckpoint`` (the caller's transaction must then roll back) if any holds
        changes built on a write that is no longer the stored one."""
        seqs: dict[int, int] = {}
        stale = []
        for cp in checkpoints:
            seq = _write_checkpoint(session, cp)
            if seq is None:
                stale.append(cp.partition)
                continue
            seqs[cp.partition] = seq
            _write_items(session, cp)
        if stale:
            raise StaleCheckpoint(stale)
        return seqs


def commit_batch(
    store: IncidentStore,
    checkpoints: CheckpointStore,
    findings: Sequence[Finding],
    states: Sequence[Checkpoint],
    tenants: Mapping[str, Tenant] | None = None,
    accesses: Sequence[StaffAccess] = (),
) -> tuple[RecordResult, dict[int, int]]:
    """Make one batch durable, in one transaction, so all parts are stored or none is:

    1. the findings, correlated into incidents (the store's hooks queue their pages);
    2. the staff accesses judged, for the tenants' transparency log (keyed by event, so a
       re-delivered batch adds none), and the directory entries of their tenants (the
       monthly summary is addressed from them);
    3. the checkpoints of the detector state that produced them.

    The consumer commits its offsets only after this returns. A stale checkpoint (another
    consumer wrote the unit since) raises ``StaleCheckpoint`` and rolls back all of it."""
    with Session(store.engine) as session, session.begin():
        result = store.record_in(session, findings, tenants)
        if accesses:
            record_staff_accesses(session, accesses)
            if tenants:
                wanted = sorted({a.tenant_id for a in accesses})
                remember_tenants(session, (tenants[t] for t in wanted if t in tenants))
        seqs = checkpoints.write(session, states)
    return result, seqs
