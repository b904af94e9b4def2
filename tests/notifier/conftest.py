"""Fixtures for the notifier tests: a fresh SQLite store, a settable clock, real local SendGrid
and SMTP servers on 127.0.0.1, and incidents built as the store makes them."""

from tests.fixtures.notifier_env import *  # noqa: F403
