"""What the notice workflow needs beyond ``Settings``: tenants' contractual deadlines, the
vendor's identity as the notices name it, and the approval rule.

Read once per call site from two optional TOML files named by environment variables (the
same convention as ``BREACHWATCH_CONFIG``), then passed around as a frozen value:

* ``BREACHWATCH_CONTRACTS_FILE``: tenant id -> notification deadline in hours, either
  ``t-rhein = 24`` or a table ``[t-rhein]`` with ``hours`` and ``reference`` (the clause).
* ``BREACHWATCH_NOTICES_FILE``: ``approvals`` (1 or 2), ``[vendor]`` (name, contact_email,
  contact_phone, dpo_name, dpo_email, address), ``sendgrid_webhook_public_key``, and the duties'
  facts about tenants: ``[all_tenants]`` and ``[tenants.<id>]`` (see ``tenant_facts``).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from breachwatch.core.settings import ConfigError, Settings
from breachwatch.notifier.duties import ContractualOverride
from breachwatch.notifier.message import is_address
from breachwatch.notifier.notices.tenant_facts import TenantFacts, parse_all

CONTRACTS_ENV = "BREACHWATCH_CONTRACTS_FILE"
NOTICES_ENV = "BREACHWATCH_NOTICES_FILE"
MAX_CONTRACT_HOURS = 24 * 365


@dataclass(frozen=True, slots=True)
class Vendor:
    """The reporting entity and its contact point / DPO, as every notice names them."""

    name: str
    contact_email: str
    contact_phone: str = ""
    dpo_name: str = ""
    dpo_email: str = ""
    address: str = ""

    def as_context(self) -> dict[str, str]:
        return {
            "name": self.name,
            "contact_email": self.contact_email,
            "contact_phone": self.contact_phone,
            "dpo_name": self.dpo_name,
            "dpo_email": self.dpo_email,
            "address": self.address,
        }


@dataclass(frozen=True, slots=True)
class NoticeConfig:
    """Contract terms by tenant, the vendor's identity, and how many approvers a notice needs."""

    vendor: Vendor
    contracts: Mapping[str, ContractualOverride] = field(default_factory=dict)
    approvals: int = 1
    sendgrid_webhook_public_key: str | None = None
    all_tenants: TenantFacts = field(default_factory=TenantFacts)
    tenants: Mapping[str, TenantFacts] = field(default_factory=dict)

    def overrides_for(self, tenant_id: str) -> tuple[ContractualOverride, ...]:
        term = self.contracts.get(tenant_id)
        return (term,) if term is not None else ()

    def facts_for(self, tenant_id: str) -> TenantFacts:
        """Traits, jurisdictions, encryption and category map entries configured for a tenant."""
        return self.tenants.get(tenant_id) or self.all_tenants


def _read_toml(path: Path, variable: str) -> dict[str, Any]:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"{variable}: cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{variable}: {path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{variable}: {path} is not UTF-8 text (byte {exc.start})") from None
    except RecursionError:  # tomllib recurses per nesting level
        raise ConfigError(f"{variable}: {path} is nested too deeply") from None


def parse_contracts(data: Mapping[str, Any], variable: str = CONTRACTS_ENV) -> dict[str, ContractualOverride]:
    """Tenant id -> contract term, from ``{tenant: hours}`` or ``{tenant: {hours, reference}}``."""
    terms: dict[str, ContractualOverride] = {}
    for tenant_id, value in data.items():
        if isinstance(value, Mapping):
            hours, reference = value.get("hours"), value.get("reference") or "Customer contract"
        else:
            hours, reference = value, "Customer contract"
        if isinstance(hours, bool) or not isinstance(hours, int) or not 1 <= hours <= MAX_CONTRACT_HOURS:
            raise ConfigError(f"{variable}: {tenant_id[:80]!r}: hours must be a whole number from 1 to 8760")
        if not isinstance(reference, str):
            raise ConfigError(f"{variable}: {tenant_id[:80]!r}: reference must be text")
        terms[tenant_id] = ContractualOverride(
            reference=f"{reference}: notify within {hours} hours of becoming aware", amount=hours, unit="hours"
        )
    return terms


def _vendor(raw: Any, settings: Settings) -> Vendor:
    raw = raw if isinstance(raw, Mapping) else {}
    contact = str(raw.get("contact_email") or settings.mail_from)
    dpo_email = str(raw.get("dpo_email") or "")
    for name, value in (("contact_email", contact), ("dpo_email", dpo_email)):
        if value and not is_address(value):
            raise ConfigError(f"{NOTICES_ENV}: vendor.{name} must be a plain email address")
    return Vendor(
        name=str(raw.get("name") or contact.rpartition("@")[2]),
        contact_email=contact,
        contact_phone=str(raw.get("contact_phone") or ""),
        dpo_name=str(raw.get("dpo_name") or ""),
        dpo_email=dpo_email,
        address=str(raw.get("address") or ""),
    )


def load_notice_config(settings: Settings, environ: Mapping[str, str] | None = None) -> NoticeConfig:
    """The notice configuration from the files named in ``environ`` (default: the process
    environment); a missing variable means "none" (no contract terms, one approver)."""
    env = os.environ if environ is None else environ
    contracts: dict[str, ContractualOverride] = {}
    if env.get(CONTRACTS_ENV):
        contracts = parse_contracts(_read_toml(Path(env[CONTRACTS_ENV]), CONTRACTS_ENV))
    raw: dict[str, Any] = {}
    if env.get(NOTICES_ENV):
        raw = _read_toml(Path(env[NOTICES_ENV]), NOTICES_ENV)
    approvals = raw.get("approvals", 1)
    if approvals not in (1, 2) or isinstance(approvals, bool):
        raise ConfigError(f"{NOTICES_ENV}: approvals must be 1 or 2")
    key = raw.get("sendgrid_webhook_public_key")
    all_tenants, tenants = parse_all(raw, NOTICES_ENV)
    return NoticeConfig(
        vendor=_vendor(raw.get("vendor"), settings),
        contracts=contracts,
        approvals=int(approvals),
        sendgrid_webhook_public_key=str(key) if key else None,
        all_tenants=all_tenants,
        tenants=tenants,
    )
