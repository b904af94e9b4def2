"""After the demo, one printed command opens the console on the demo's database, with a
sign-in that works."""

from __future__ import annotations

import re
from pathlib import Path

from argon2 import PasswordHasher
from sqlalchemy.orm import Session

from breachwatch.devkit.demo import SIGNIN_FILE, demo_sign_in
from breachwatch.incidents import users
from breachwatch.storage.db import make_engine
from breachwatch.storage.migrate import upgrade


def test_the_demo_prints_how_to_look_and_the_sign_in_works(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'breachwatch.db'}")
    upgrade(engine)
    first = demo_sign_in(engine, tmp_path)
    again = demo_sign_in(engine, tmp_path)  # a second demo run in the same folder
    assert "make console" in again and f"sqlite:///{tmp_path / 'breachwatch.db'}" in again
    assert (tmp_path / SIGNIN_FILE).read_text() == again
    password = re.search(r"sign in as  demo  with the password  (\S+)", again).group(1)  # type: ignore[union-attr]
    assert password not in first
    with Session(engine) as session:
        user = users.authenticate(session, "demo", password, hasher=PasswordHasher())
        assert user is not None and user.role == "admin"
    engine.dispose()
