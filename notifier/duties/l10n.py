"""Rule texts in the customer's language: the provision as local legal writing cites it, the
recipient and the condition, from ``rules/l10n/<language>.toml`` keyed by duty id.

Notices never show a rule file's English prose in another language: a duty with no entry shows
its provision as the original citation (the name of a foreign statute) and its condition only
as a conditional duty. ``REQUIRED`` names, per language, the duties that must have an entry:
those of laws with an official version in that language, and the vendor's own contract duty.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

L10N_DIR = Path(__file__).parent / "rules" / "l10n"
FIELDS = frozenset({"provision", "whom", "condition"})
# Duty-id prefixes whose texts a notice in that language must have in local form.
REQUIRED: Mapping[str, tuple[str, ...]] = {
    "de": ("eu.", "eu-nis2.", "contract."),
    "ur": ("pk.", "contract."),
}


class L10nFileError(ValueError):
    """A localisation file is unreadable or has a field that is not a rule text."""


@lru_cache(maxsize=16)
def rule_texts(language: str, directory: Path = L10N_DIR) -> Mapping[str, Mapping[str, str]]:
    """Duty id -> {provision, whom, condition} in ``language`` (empty for English or none)."""
    path = directory / f"{language}.toml"
    if not path.is_file():
        return {}
    try:
        with path.open("rb") as fh:
            raw = tomllib.load(fh)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise L10nFileError(f"{path}: {exc}") from None
    out: dict[str, dict[str, str]] = {}
    for rule_id, texts in raw.items():
        if not isinstance(texts, dict) or not set(texts) <= FIELDS:
            raise L10nFileError(f"{path}: [{rule_id}] may hold only {', '.join(sorted(FIELDS))}")
        if not all(isinstance(v, str) and v.strip() for v in texts.values()):
            raise L10nFileError(f"{path}: [{rule_id}] texts must be non-empty strings")
        out[rule_id] = dict(texts)
    return out


def localise(duty: Mapping[str, Any], locale: str) -> dict[str, Any]:
    """``duty`` (a template's duty dict) with ``provision_local``, ``whom_local`` and
    ``condition_local`` for ``locale`` (empty strings where there is no local text)."""
    texts = rule_texts(locale.split("-")[0].lower()).get(str(duty.get("rule_id", "")), {})
    return {
        **duty,
        "provision_local": texts.get("provision", ""),
        "whom_local": texts.get("whom", ""),
        "condition_local": texts.get("condition", ""),
    }


def missing(language: str, rule_ids: list[str]) -> list[str]:
    """The duty ids among ``rule_ids`` that ``language`` requires in local form but lacks."""
    prefixes = REQUIRED.get(language, ())
    have = rule_texts(language)
    return [r for r in rule_ids if r.startswith(prefixes) and "provision" not in have.get(r, {})]
