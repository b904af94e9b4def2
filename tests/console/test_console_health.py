"""The console's /healthz and /readyz: answered without signing in, saying nothing else."""

from __future__ import annotations

import shutil
from pathlib import Path

from fastapi.testclient import TestClient

from breachwatch.console.app import create_app
from breachwatch.core.settings import Settings
from breachwatch.storage.db import make_engine
from breachwatch.storage.migrate import upgrade


def test_health_and_readiness_need_no_sign_in_and_set_no_cookie(client: TestClient) -> None:
    for path, body in (("/healthz", {"status": "alive"}), ("/readyz", {"status": "ready"})):
        answer = client.get(path, follow_redirects=False)
        assert answer.status_code == 200, path
        assert answer.json() == body
        assert "set-cookie" not in answer.headers
    # Everything else still asks a stranger to sign in.
    assert client.get("/incidents", follow_redirects=False).status_code == 303


def test_readiness_names_a_database_that_is_away(settings: Settings, tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    engine = make_engine(f"sqlite:///{folder / 'bw.db'}")
    upgrade(engine)
    with TestClient(create_app(settings, engine), base_url="https://testserver") as client:
        assert client.get("/readyz").status_code == 200
        engine.dispose()
        shutil.rmtree(folder)  # the database is gone: no connection can be opened
        answer = client.get("/readyz")
        assert answer.status_code == 503
        assert answer.json() == {"status": "not ready", "reasons": ["database unreachable"]}
        assert client.get("/healthz").status_code == 200  # alive: restarting would not help
