"""The register exported: JSON (every entry whole) or CSV (one row per breach, tenant and
jurisdiction where data subjects live, with that jurisdiction's latest assessment)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy.orm import Session

from breachwatch.notifier.register.entries import entries as register_entries
from breachwatch.storage import audit

MEDIA_TYPES: dict[str, str] = {"json": "application/json", "csv": "text/csv; charset=utf-8"}

CSV_COLUMNS: tuple[str, ...] = (
    "incident_id",
    "kind",
    "confirmed_at",
    "confirmed_by",
    "detected_at",
    "window_start",
    "window_end",
    "tenant_id",
    "tenant_name",
    "jurisdiction",
    "own_jurisdiction",
    "affected_low",
    "affected_high",
    "records",
    "subjects",
    "data_categories",
    "duties",
    "exempted",
    "undecided",
    "notified",
    "notified_at",
    "vendor_decision",
    "vendor_factors",
    "vendor_reasons",
    "vendor_decided_by",
    "vendor_decided_at",
    "customer_decision",
    "customer_reasons",
    "customer_decided_by",
    "customer_decided_at",
    "facts",
    "effects",
    "remedial_action",
    "delays",
    "keep_until",
    "keep_until_decided_by_person",
)
# A cell a spreadsheet would run as a formula starts with one of these (CSV injection).
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def to_json(entries: Iterable[Mapping[str, Any]]) -> str:
    return json.dumps({"entries": list(entries)}, indent=2, ensure_ascii=False, default=str)


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return "'" + text if text.startswith(_FORMULA) else text


def _rows(e: Mapping[str, Any]) -> Iterable[dict[str, Any]]:
    detected = next((m["at"] for m in e["moments"] if m["moment"] == "detected"), None)
    delays = [
        f"{d['agency']} ({d['official']}) {d['requested_at']} until {d['until'] or d['lifted_at'] or 'lifted'}"
        for d in e["delays"]
    ]
    for t in e["tenants"]:
        for j in t["jurisdictions"] or [{"code": t["jurisdiction"], "own": True, "assessments": {}}]:
            vendor = (j.get("assessments") or {}).get("vendor") or {}
            customer = (j.get("assessments") or {}).get("customer") or {}
            yield {
                "incident_id": e["incident_id"],
                "kind": e["kind"],
                "confirmed_at": e["confirmed_at"],
                "confirmed_by": e["confirmed_by"],
                "detected_at": detected,
                "window_start": e["window_start"],
                "window_end": e["window_end"],
                "tenant_id": t["tenant_id"],
                "tenant_name": t["tenant_name"],
                "jurisdiction": j["code"],
                "own_jurisdiction": j.get("own", False),
                "affected_low": j.get("affected_low"),
                "affected_high": j.get("affected_high"),
                "records": t["records"],
                "subjects": t["subjects"],
                "data_categories": " ".join(t["data_categories"]),
                "duties": " ".join(j.get("duties") or []),
                "exempted": " ".join(x["rule_id"] for x in j.get("exempted") or []),
                "undecided": " ".join(x["rule_id"] for x in j.get("undecided") or []),
                "notified": t["notified"],
                "notified_at": t["notified_at"],
                "vendor_decision": vendor.get("decision"),
                "vendor_factors": vendor.get("factors"),
                "vendor_reasons": vendor.get("reasons"),
                "vendor_decided_by": vendor.get("assessed_by"),
                "vendor_decided_at": vendor.get("assessed_at"),
                "customer_decision": customer.get("decision"),
                "customer_reasons": customer.get("reasons"),
                "customer_decided_by": customer.get("assessed_by"),
                "customer_decided_at": customer.get("assessed_at"),
                "facts": e["facts"],
                "effects": e["effects"],
                "remedial_action": e["remedial_action"],
                "delays": "; ".join(delays),
                "keep_until": e["keep_until"],
                "keep_until_decided_by_person": e["keep_until_decided_by_person"],
            }


def to_csv(entries: Iterable[Mapping[str, Any]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    for e in entries:
        for row in _rows(e):
            writer.writerow({k: _cell(v) for k, v in row.items()})
    return out.getvalue()


def audited_export(session: Session, actor: str, fmt: str, via: str) -> tuple[str, int]:
    """The whole register as ``fmt`` (json, else csv), and how many breaches it holds; the export is audited
    (who, format, how many, and ``via`` console, api or cli) in the caller's transaction."""
    found = register_entries(session)
    audit.record(session, actor, "register.export", "register", {"format": fmt, "entries": len(found), "via": via})
    return (to_json(found) if fmt == "json" else to_csv(found)), len(found)
