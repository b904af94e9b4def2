"""``breachwatch train`` learns the log detector from the history's log records and the model file
carries it: a deployment started from the file judges log sessions at once."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from breachwatch.core.settings import load_settings
from breachwatch.detectors.learned.detector import load_model, save_model
from breachwatch.detectors.logs.detector import LogDetector
from breachwatch.runtime.training import train_from_dump
from tests.detectors.logs.test_log_detector import FLOWS, SERVICE, SMALL, Stream, history_of, run


def test_a_log_only_history_trains_a_model_file_whose_log_detector_is_not_blind(tmp_path: Path) -> None:
    dump = tmp_path / "dump"
    dump.mkdir()
    records = history_of(400)
    with (dump / "erp.logs.jsonl").open("w") as fh:
        for r in records:
            fh.write(r.model_dump_json(exclude_none=True) + "\n")
    until = records[-1].ts + timedelta(seconds=1)
    trained = train_from_dump(load_settings(), dump, until, b"k" * 32)
    assert trained.metadata["logs_only"] is True
    assert trained.logs is not None
    assert trained.report.log_history.endswith(f"sessions learned per service: {SERVICE} 400")
    path = tmp_path / "model.skops"
    save_model(trained, path, b"fictional-model-signing-key")
    loaded = load_model(path, b"fictional-model-signing-key")
    assert loaded.logs == json.loads(json.dumps(trained.logs))

    stream = Stream(seed=5)
    cut = [stream.record(stream.fill(t), session="s-first") for t in FLOWS[1][:2]]
    findings = run(LogDetector(trained=loaded.logs, **SMALL), [*cut, stream.idle(20)])  # type: ignore[arg-type]
    assert [f.facts["session"] for f in findings] == ["s-first"]
