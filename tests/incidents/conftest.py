"""A migrated database on SQLite and on a real PostgreSQL (a fresh database per test), a cheap
password hasher, and incidents made by the real store."""

from tests.fixtures.incident_db import *  # noqa: F403
