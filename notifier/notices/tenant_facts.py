"""What the duties need to know about a tenant that the tenant directory does not say: entity
traits, where its data subjects live, which of its records leave the ERP encrypted, and how its
own resource types map to legal data categories.

Read from the notices file (``BREACHWATCH_NOTICES_FILE``): ``[all_tenants]`` applies to every
tenant and ``[tenants.<tenant id>]`` adds to it or overrides it::

    [all_tenants]
    vendor_traits = { hipaa_business_associate = false }

    [tenants.t-hudson]
    traits = { sec_registrant = true, hipaa_covered_entity = false }
    data_subjects_by_jurisdiction = { US-NY = 40000, US-NJ = 9000 }
    encrypted_resource_types = ["payment_card"]
    resource_types = { patient_visit = ["personal", "health", "phi"] }

``traits`` are the tenant's own (as controller); ``vendor_traits`` are the vendor's towards that
tenant (as processor). Either is a list (the traits held; the rest unknown) or a table of
trait = true/false; a trait not named is unknown and the duties that need it are listed as
undecided. ``encrypted`` = true declares every resource type of the tenant encrypted.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from breachwatch.core.settings import ConfigError
from breachwatch.notifier.duties import DATA_CATEGORIES, ENTITY_TRAITS, CategoryMap, default_category_map

JURISDICTION = re.compile(r"^[A-Z]{2}(-[A-Z0-9]{1,3})?$")
KEYS = frozenset(
    {
        "traits",
        "vendor_traits",
        "data_subjects_by_jurisdiction",
        "encrypted",
        "encrypted_resource_types",
        "resource_types",
    }
)
MAX_SUBJECTS = 10_000_000_000


@dataclass(frozen=True)
class TenantFacts:
    """The duties' facts about one tenant, as configured (defaults merged in)."""

    traits: Mapping[str, bool] = field(default_factory=dict)
    vendor_traits: Mapping[str, bool] = field(default_factory=dict)
    data_subjects_by_jurisdiction: Mapping[str, int] = field(default_factory=dict)
    encrypted: bool = False
    encrypted_resource_types: frozenset[str] = frozenset()
    resource_types: Mapping[str, frozenset[str]] = field(default_factory=dict)

    def category_map(self, base: CategoryMap | None = None) -> CategoryMap:
        """The bundled map with this tenant's resource types added or replaced."""
        base = base or default_category_map()
        if not self.resource_types:
            return base
        return CategoryMap(resource_types={**base.resource_types, **self.resource_types}, sensitivity=base.sensitivity)

    def is_encrypted(self, resource_type: str) -> bool:
        return self.encrypted or resource_type in self.encrypted_resource_types

    def over(self, defaults: TenantFacts) -> TenantFacts:
        """These facts with ``defaults`` filling what they leave out."""
        return TenantFacts(
            traits={**defaults.traits, **self.traits},
            vendor_traits={**defaults.vendor_traits, **self.vendor_traits},
            data_subjects_by_jurisdiction=self.data_subjects_by_jurisdiction or defaults.data_subjects_by_jurisdiction,
            encrypted=self.encrypted or defaults.encrypted,
            encrypted_resource_types=defaults.encrypted_resource_types | self.encrypted_resource_types,
            resource_types={**defaults.resource_types, **self.resource_types},
        )


def _traits(value: Any, where: str) -> dict[str, bool]:
    if isinstance(value, list):
        value = dict.fromkeys(value, True)
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: a list of traits or a table of trait = true/false")
    out: dict[str, bool] = {}
    for name, held in value.items():
        if name not in ENTITY_TRAITS:
            raise ConfigError(f"{where}: unknown trait {str(name)[:60]!r}; expected one of: {', '.join(ENTITY_TRAITS)}")
        if not isinstance(held, bool):
            raise ConfigError(f"{where}.{name}: true or false")
        out[str(name)] = held
    return out


def _jurisdictions(value: Any, where: str) -> dict[str, int]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: a table of jurisdiction code = number of people")
    out: dict[str, int] = {}
    for code, count in value.items():
        if not JURISDICTION.match(str(code)):
            raise ConfigError(f"{where}: {str(code)[:20]!r} is not a jurisdiction code like 'DE' or 'US-CA'")
        if isinstance(count, bool) or not isinstance(count, int) or not 0 <= count <= MAX_SUBJECTS:
            raise ConfigError(f"{where}.{code}: a whole number of people")
        out[str(code)] = count
    return out


def _resource_types(value: Any, where: str) -> dict[str, frozenset[str]]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where}: a table of resource type = [legal data categories]")
    out: dict[str, frozenset[str]] = {}
    for name, categories in value.items():
        if not isinstance(categories, list) or not all(isinstance(c, str) for c in categories):
            raise ConfigError(f"{where}.{str(name)[:60]}: a list of data categories")
        unknown = sorted(set(categories) - set(DATA_CATEGORIES))
        if unknown:
            raise ConfigError(
                f"{where}.{str(name)[:60]}: unknown data categories {unknown}; expected some of: "
                + ", ".join(DATA_CATEGORIES)
            )
        out[str(name)] = frozenset(categories)
    return out


def parse_tenant_facts(raw: Any, where: str) -> TenantFacts:
    """One ``[all_tenants]`` or ``[tenants.<id>]`` table; a wrong key or value names itself."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: a table")
    unknown = sorted(set(raw) - KEYS)
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown}; expected some of: {', '.join(sorted(KEYS))}")
    encrypted = raw.get("encrypted", False)
    if not isinstance(encrypted, bool):
        raise ConfigError(f"{where}.encrypted: true or false")
    types = raw.get("encrypted_resource_types", [])
    if not isinstance(types, list) or not all(isinstance(t, str) and t for t in types):
        raise ConfigError(f"{where}.encrypted_resource_types: a list of resource types")
    return TenantFacts(
        traits=_traits(raw.get("traits", {}), f"{where}.traits"),
        vendor_traits=_traits(raw.get("vendor_traits", {}), f"{where}.vendor_traits"),
        data_subjects_by_jurisdiction=_jurisdictions(
            raw.get("data_subjects_by_jurisdiction", {}), f"{where}.data_subjects_by_jurisdiction"
        ),
        encrypted=encrypted,
        encrypted_resource_types=frozenset(types),
        resource_types=_resource_types(raw.get("resource_types", {}), f"{where}.resource_types"),
    )


def parse_all(raw: Mapping[str, Any], variable: str) -> tuple[TenantFacts, dict[str, TenantFacts]]:
    """(the defaults, tenant id -> facts with the defaults merged in) from a notices file."""
    defaults = parse_tenant_facts(raw.get("all_tenants", {}), f"{variable}: all_tenants")
    tenants = raw.get("tenants", {})
    if not isinstance(tenants, Mapping):
        raise ConfigError(f"{variable}: tenants: a table of [tenants.<tenant id>] tables")
    return defaults, {
        str(tid): parse_tenant_facts(value, f"{variable}: tenants.{str(tid)[:80]}").over(defaults)
        for tid, value in tenants.items()
    }
