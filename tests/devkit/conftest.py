"""A fresh SQLite store, a settable clock and real local SendGrid and SMTP servers."""

from tests.fixtures.notifier_env import *  # noqa: F403
