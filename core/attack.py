"""MITRE ATT&CK techniques of each detection kind, as data (``attack.toml``, with its source).

Every detector raises findings of a kind (``Finding.kind``); this maps a kind to the
techniques it stands for, each under the tactic it is seen at, so an incident, an export or
a console page can name them without each detector repeating the table.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

# The ATT&CK release whose ids and names the table (``attack.toml``) uses.
ATTACK_VERSION = "v16"


@dataclass(frozen=True, slots=True)
class Technique:
    """One technique under one tactic, in the shape incidents carry it."""

    technique_id: str
    technique: str
    tactic_id: str
    tactic: str

    def as_dict(self) -> dict[str, str]:
        return {
            "technique_id": self.technique_id,
            "technique": self.technique,
            "tactic_id": self.tactic_id,
            "tactic": self.tactic,
        }

    @property
    def url(self) -> str:
        """The technique's page on the ATT&CK site (sub-techniques under their parent)."""
        return "https://attack.mitre.org/techniques/" + self.technique_id.replace(".", "/") + "/"


@cache
def _data() -> dict[str, Any]:
    text = resources.files("breachwatch.core").joinpath("attack.toml").read_text(encoding="utf-8")
    return tomllib.loads(text)


@cache
def kind_techniques() -> dict[str, tuple[Technique, ...]]:
    """Every kind's techniques, checked against the technique and tactic tables."""
    data = _data()
    tactics: dict[str, str] = data["tactics"]
    techniques: dict[str, dict[str, Any]] = data["techniques"]
    out: dict[str, tuple[Technique, ...]] = {}
    for kind, pairs in data["kinds"].items():
        found = []
        for technique_id, tactic_id in pairs:
            spec = techniques.get(technique_id)
            if spec is None or tactic_id not in spec["tactics"] or tactic_id not in tactics:
                raise ValueError(f"attack.toml: {kind} names {technique_id} under {tactic_id}, which ATT&CK does not")
            found.append(Technique(technique_id, spec["name"], tactic_id, tactics[tactic_id]))
        out[kind] = tuple(found)
    return out


def techniques_of(kinds: Iterable[str]) -> list[Technique]:
    """The techniques of ``kinds``, each pair once, in the order the kinds name them."""
    table = kind_techniques()
    seen: dict[tuple[str, str], Technique] = {}
    for kind in kinds:
        for t in table.get(kind, ()):
            seen.setdefault((t.technique_id, t.tactic_id), t)
    return list(seen.values())
