"""The verdicts on a fixed simulated dump, pinned: incidents, findings, evidence, reasons, scores.

A small labelled dump (``simulate`` with a fixed seed), a model trained on its clean days with a
fixed pseudonym key, and a replay in one process: every incident's JSON line and every finding
the detectors raised (signals included: id, kind, severity, score, times, title, reasons,
facts, and each evidence event as the store keeps it) are digested and compared with
``golden/verdicts.json``. Making detection faster must leave all of it alone.

When the digests may change: only with a change of detection itself (a rule, a feature, the
model, the wording of a reason, the choice of evidence), stated as such in the commit that
changes them. Then regenerate the file with
``python -m tests.runtime.test_golden_verdicts`` and say in that commit what moved.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from breachwatch.core.findings import Finding
from breachwatch.core.settings import Settings, load_settings
from breachwatch.devkit.simulate import simulate
from breachwatch.runtime import app
from breachwatch.runtime.replay import replay
from breachwatch.runtime.training import train_from_dump

GOLDEN = Path(__file__).with_name("golden") / "verdicts.json"
SEED, DAYS, TENANTS, ATTACK_DAYS = 5, 10, 5, 3
PARTITIONS = 2
KEY = "golden-" + "5" * 25  # a pseudonym key for this test alone


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:20]


def finding_form(f: Finding) -> dict[str, Any]:
    """What of a finding must not move: everything it says, and its evidence as stored."""
    return {
        "id": f.finding_id,
        "detector": f.detector,
        "kind": f.kind,
        "severity": f.severity,
        "score": f.score,
        "ts": f.ts.isoformat(),
        "detected_at": f.detected_at.isoformat() if f.detected_at else None,
        "title": f.title,
        "reasons": list(f.reasons),
        "playbook": f.playbook,
        "facts": f.facts,
        "actor": f.actor_id,
        "tenants": list(f.tenant_ids),
        "ips": list(f.source_ips),
        "dedup": f.dedup_key,
        "signal": f.signal,
        "evidence": [e.model_dump_json(exclude_none=True) for e in f.events],
    }


def _settings(work: Path, **extra: Any) -> Settings:
    return load_settings(outbox_dir=work / "outbox", partitions=PARTITIONS, pseudonym_key=SecretStr(KEY), **extra)


def verdicts(work: Path, dump: Path, model: Any, **extra: Any) -> dict[str, Any]:
    """Replay ``dump`` with ``model``; the digests of its incidents and findings."""
    settings = _settings(work, **extra)
    pipeline = app.build_pipeline(settings, app.database(settings, "sqlite://"), model, notify=False)
    raised: list[Finding] = []
    detect: Callable[..., list[Finding]] = pipeline.detect

    def detect_and_keep(*args: Any) -> list[Finding]:
        found = detect(*args)
        raised.extend(found)
        return found

    pipeline.detect = detect_and_keep  # type: ignore[method-assign]
    replay(dump, pipeline, partitions=PARTITIONS, max_bytes=settings.max_message_bytes, jobs=1)
    incidents = pipeline.store.incidents()
    return {
        "incidents": {i.incident_id: _digest(i.to_json_line()) for i in incidents},
        "findings": sorted(f"{f.finding_id} {_digest(finding_form(f))}" for f in raised),
        "reasons": sorted({r for f in raised for r in f.reasons}),
    }


def golden_dump(work: Path) -> tuple[Path, Any]:
    dump = work / "dump"
    simulate(dump, seed=SEED, days=DAYS, tenants=TENANTS, attack_days=ATTACK_DAYS)
    until = datetime.fromisoformat(json.loads((dump / "labels.json").read_text())["clean_until"])
    model = train_from_dump(_settings(work), dump, until, KEY.encode())
    return dump, model


@pytest.fixture(scope="module")
def dump_and_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Any]:
    work = tmp_path_factory.mktemp("golden")
    return (work, *golden_dump(work))


def _compare(got: dict[str, Any], want: dict[str, Any]) -> None:
    assert got["incidents"] == want["incidents"], "incidents moved: " + ", ".join(
        sorted(set(got["incidents"].items()) ^ set(want["incidents"].items()))[0]
    )
    moved = sorted(set(got["findings"]) ^ set(want["findings"]))
    assert not moved, f"{len(moved)} finding digests differ, e.g. {moved[:4]}"


def test_the_verdicts_on_the_golden_dump_are_as_pinned(dump_and_model: tuple[Path, Path, Any]) -> None:
    work, dump, model = dump_and_model
    got = verdicts(work, dump, model)
    want = json.loads(GOLDEN.read_text())
    # The dump must keep testing every kind it was chosen for.
    assert len(want["incidents"]) >= 15 and len(want["findings"]) >= 40
    _compare(got, want)
    # A partition sees the actors hashed to it: a tenant's users, its staff visits, its export
    # sizes are a sample there, and no reason may speak for the whole tenant or all staff.
    whole = ("any vendor staff", "no one else in this tenant", "no one in this tenant", "no other user of")
    assert not [r for r in got["reasons"] if any(w in r for w in whole)]
    assert [r for r in got["reasons"] if "this one is compared with" in r]


def test_packing_idle_actors_moves_no_verdict(dump_and_model: tuple[Path, Path, Any]) -> None:
    """Profiles of actors idle for ten minutes packed however few are live: the same verdicts."""
    work, dump, model = dump_and_model
    got = verdicts(work, dump, model, profile_live_max=0, profile_pack_after_s=600)
    _compare(got, json.loads(GOLDEN.read_text()))


def main(argv: list[str]) -> None:
    """Write ``golden/verdicts.json`` anew (see the module's docstring for when)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        dump, model = golden_dump(work)
        got = verdicts(work, dump, model)
        del got["reasons"]  # pinned through the findings' digests
    GOLDEN.parent.mkdir(exist_ok=True)
    GOLDEN.write_text(json.dumps(got, indent=1, sort_keys=True) + "\n")
    print(f"{GOLDEN}: {len(got['incidents'])} incidents, {len(got['findings'])} findings")


if __name__ == "__main__":
    main(sys.argv[1:])
