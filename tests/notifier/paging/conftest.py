"""Paging works on incidents the real store made, on SQLite and on PostgreSQL."""

from tests.fixtures.incident_db import *  # noqa: F403
