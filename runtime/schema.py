"""The whole schema: every package's tables on the one ``Base``, and the database brought to it.

Each package declares its own tables; importing them all here, at the composition root, is what
makes the metadata complete before the database is migrated (and before a revision is compared).
"""

from __future__ import annotations

from sqlalchemy import MetaData
from sqlalchemy.engine import Engine

# Imported for their tables: each module declares some on ``Base``.
from breachwatch.incidents import ledger, lifecycle, people, tables, users
from breachwatch.notifier import outbox, tickets
from breachwatch.notifier.notices import models, records
from breachwatch.notifier.paging import escalation, inbound, silences
from breachwatch.notifier.register import models as register_models
from breachwatch.privacy import approvals, transparency
from breachwatch.runtime import checkpoints
from breachwatch.storage import audit
from breachwatch.storage.db import Base
from breachwatch.storage.migrate import upgrade

TABLE_MODULES = (
    tables,
    ledger,
    lifecycle,
    users,
    people,
    audit,
    outbox,
    models,
    records,
    register_models,
    escalation,
    silences,
    checkpoints,
    tickets,
    inbound,
    transparency,
    approvals,
)


def metadata() -> MetaData:
    """Every table of the product."""
    return Base.metadata


def init_db(engine: Engine) -> None:
    """Bring the database to the current schema (Alembic migrations; adopts older databases)."""
    upgrade(engine)
