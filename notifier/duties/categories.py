"""Legal data categories of the ERP's records: a configurable map from resource types.

The map is data (``categories.toml`` beside this module); a tenant may pass its own. A
resource type the map does not know yields its sensitivity label's categories and is reported
as uncategorised, so the engine keeps the duties it could trigger as undecided.
"""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from breachwatch.notifier.duties.engine import DATA_CATEGORIES, SENSITIVITY_CATEGORIES

DEFAULT_CATEGORY_MAP = Path(__file__).resolve().parent / "categories.toml"


@dataclass(frozen=True, slots=True)
class Classified:
    """The legal categories of some records, and the resource types whose categories are unknown."""

    categories: frozenset[str]
    uncategorised: tuple[str, ...] = ()


@dataclass(frozen=True)
class CategoryMap:
    """Resource type -> legal data categories, with a fallback by sensitivity label."""

    resource_types: Mapping[str, frozenset[str]]
    sensitivity: Mapping[str, frozenset[str]] = field(default_factory=lambda: dict(SENSITIVITY_CATEGORIES))

    def __post_init__(self) -> None:
        for name, categories in (*self.resource_types.items(), *self.sensitivity.items()):
            unknown = sorted(set(categories) - set(DATA_CATEGORIES))
            if unknown:
                raise ValueError(f"category map: {name!r} names unknown data categories {unknown}")

    def classify(self, records: Iterable[tuple[str, str]]) -> Classified:
        """Categories of (resource type, sensitivity) pairs; unmapped types are named as such."""
        found: set[str] = set()
        unknown: list[str] = []
        for resource_type, sensitivity in records:
            mapped = self.resource_types.get(resource_type)
            if mapped is None:
                found |= self.sensitivity.get(sensitivity, frozenset())
                unknown.append(f"resource type {resource_type!r}")
            else:
                found |= mapped
        return Classified(frozenset(found), tuple(dict.fromkeys(unknown)))


def load_category_map(path: str | Path | None = None) -> CategoryMap:
    """Read a category map file (default: the bundled ``categories.toml``)."""
    with Path(path or DEFAULT_CATEGORY_MAP).open("rb") as fh:
        raw = tomllib.load(fh)
    return CategoryMap(
        resource_types={k: frozenset(v) for k, v in raw.get("resource_types", {}).items()},
        sensitivity={k: frozenset(v) for k, v in raw.get("sensitivity", dict(SENSITIVITY_CATEGORIES)).items()},
    )


@functools.lru_cache(maxsize=1)
def default_category_map() -> CategoryMap:
    """The bundled category map, loaded once."""
    return load_category_map()
