"""The benchmarks' shared helpers."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from bench import common


def test_a_kept_model_this_version_cannot_read_is_trained_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A model file left by an older version (unsigned) made every benchmark on that dump fail
    # with "the model file is not signed"; it is trained again instead.
    monkeypatch.setattr(common, "BENCH_DIR", tmp_path)
    dump = tmp_path / "dump"
    dump.mkdir()
    (dump / "labels.json").write_text(json.dumps({"clean_until": "2026-11-01T00:00:00Z"}))
    stale = dump / "model.skops"
    stale.write_bytes(b"PK\x03\x04 an unsigned model of an older version")
    trained: list[list[str]] = []

    def train(cmd: list[str], **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
        trained.append(cmd)
        Path(cmd[cmd.index("--model") + 1]).write_bytes(b"new")
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(common.subprocess, "run", train)
    model, key = common.model_for(dump)
    assert model == stale and model.read_bytes() == b"new"
    assert len(trained) == 1 and "train" in trained[0] and len(key) == 64
