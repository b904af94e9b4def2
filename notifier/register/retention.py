"""How long the record of a breach must be kept, per regime (``retention.toml``), and until when
one register entry is kept: the latest date any regime that concerns it requires."""

from __future__ import annotations

import calendar
import functools
import tomllib
from collections.abc import Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

RETENTION_FILE = Path(__file__).resolve().parent / "retention.toml"
# A moment a retention period may count from, and the recorded moments that stand in for it
# (the latest: keeping a record longer is the safe side).
FROM: Mapping[str, tuple[str, ...]] = {
    "recorded": ("confirmed",),
    "determined": ("determined", "confirmed"),
    "aware": ("aware", "confirmed"),
}


class Retention(BaseModel):
    """One regime's record-keeping duty."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    provision: str = Field(min_length=1)
    period: Literal["years", "months", "not_stated"]
    amount: int | None = Field(default=None, ge=1, le=100)
    from_: Literal["recorded", "determined", "aware"] = Field(default="recorded", alias="from")
    text: str = Field(min_length=1)
    source: str = Field(min_length=1)
    unconfirmed: bool = False

    @model_validator(mode="after")
    def _amount_with_period(self) -> Retention:
        if (self.period == "not_stated") != (self.amount is None):
            raise ValueError("a period of years or months needs an amount; not_stated takes none")
        return self

    def keep_until(self, moments: Mapping[str, datetime]) -> datetime | None:
        """The last moment the record must be kept (None: no period is stated, keep it)."""
        if self.amount is None:
            return None
        start = next((moments[m] for m in FROM[self.from_] if m in moments), None)
        if start is None:
            return None
        return add_months(start, self.amount * 12 if self.period == "years" else self.amount)


def add_months(moment: datetime, months: int) -> datetime:
    """The same day and time ``months`` later (the month's last day where it is shorter)."""
    index = moment.month - 1 + months
    year, month = moment.year + index // 12, index % 12 + 1
    return moment.replace(year=year, month=month, day=min(moment.day, calendar.monthrange(year, month)[1]))


@functools.lru_cache(maxsize=1)
def retention_rules(path: Path = RETENTION_FILE) -> dict[str, Retention]:
    """Regime id -> its record-keeping duty, validated (a wrong entry names itself)."""
    with path.open("rb") as fh:
        raw = tomllib.load(fh)
    out = {}
    for regime, entry in raw.items():
        try:
            out[regime] = Retention.model_validate(entry)
        except ValidationError as exc:
            raise ValueError(f"{path.name}: [{regime}]: {exc.errors()[0]['msg']}") from None
    return out


def retention_for(
    regimes: Iterable[str], moments: Mapping[str, datetime]
) -> tuple[list[dict[str, object]], datetime | None, bool]:
    """(each concerned regime's duty with its keep-until date, the entry's keep-until date, whether
    some regime states no period so the entry is kept until a person decides)."""
    rules = retention_rules()
    lines: list[dict[str, object]] = []
    for regime in sorted(set(regimes) & set(rules)):
        rule = rules[regime]
        until = rule.keep_until(moments)
        lines.append(
            {
                "regime": regime,
                "provision": rule.provision,
                "period": rule.period if rule.amount is None else f"{rule.amount} {rule.period}",
                "from": rule.from_,
                "text": rule.text,
                "keep_until": until.isoformat() if until else None,
                "unconfirmed": rule.unconfirmed,
            }
        )
    open_ended = any(line["keep_until"] is None for line in lines)
    dates = [datetime.fromisoformat(str(line["keep_until"])) for line in lines if line["keep_until"]]
    return lines, max(dates) if dates else None, open_ended
