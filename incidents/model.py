"""The incident as every outside party sees it: ``replay --out``, the API, exports."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Status = Literal["open", "acknowledged", "investigating", "contained", "resolved", "false_positive"]
STATUSES: tuple[str, ...] = ("open", "acknowledged", "investigating", "contained", "resolved", "false_positive")
CLOSED_STATUSES: frozenset[str] = frozenset({"resolved", "false_positive"})


class AttackTechnique(BaseModel):
    """A MITRE ATT&CK technique the incident's findings stand for, under the tactic seen."""

    model_config = ConfigDict(frozen=True)

    technique_id: str  # e.g. "T1110.004"
    technique: str  # e.g. "Brute Force: Credential Stuffing"
    tactic_id: str  # e.g. "TA0006"
    tactic: str  # e.g. "Credential Access"


class IncidentOut(BaseModel):
    """One incident, in the JSON shape fixed for ``replay --out`` and reused everywhere."""

    model_config = ConfigDict(frozen=True)

    incident_id: str
    opened_at: datetime  # event time of the first finding's earliest evidence
    updated_at: datetime
    # Event time of the newest event the pipeline had seen when the first finding was raised:
    # ``detected_at - opened_at`` is how long the activity ran before it was caught.
    detected_at: datetime | None = None
    severity: Literal["low", "medium", "high", "critical"]
    kind: str
    title: str
    actor_ids: list[str] = Field(default_factory=list)
    tenant_ids: list[str] = Field(default_factory=list)
    source_ips: list[str] = Field(default_factory=list)
    detectors: list[str] = Field(default_factory=list)
    score: float = Field(ge=0, le=100)
    evidence_event_ids: list[str] = Field(default_factory=list, max_length=1000)
    status: Status = "open"
    reasons: list[str] = Field(default_factory=list)
    # The ATT&CK techniques of every kind of finding the incident holds (``core/attack.toml``).
    attack: list[AttackTechnique] = Field(default_factory=list)

    def to_json_line(self) -> str:
        return self.model_dump_json() + "\n"
