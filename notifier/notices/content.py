"""What a notice says: the template context built from the blast radius, the duties and the
notice's own facts, and the renderer with the locale-aware number and date filters.

Everything in the context is plain data. Words that need translating travel as keys
(``personal``, ``revoke_sessions``, ``confidentiality``) and the templates of each locale
turn them into sentences, so adding a language never touches this module.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from babel import Locale, UnknownLocaleError
from jinja2 import pass_context
from jinja2.runtime import Context

from breachwatch.notifier.blast_radius import BlastRadius, TenantImpact
from breachwatch.notifier.duties import Duty
from breachwatch.notifier.duties.l10n import localise
from breachwatch.notifier.message import one_line
from breachwatch.notifier.render import TEMPLATES_DIR, VALUE_MAX, Rendered, Renderer, locale_chain

CUSTOMER_NOTICE = "customer_notice"
FOLLOWUP = "followup"
REGULATOR_DRAFT = "regulator_draft"
NOTICE_TYPES: tuple[str, ...] = (CUSTOMER_NOTICE, FOLLOWUP, REGULATOR_DRAFT)
PHASES: tuple[str, ...] = ("preliminary", "update", "final")
RTL_LANGUAGES = frozenset({"ar", "fa", "he", "ps", "sd", "ug", "ur", "yi"})
MAX_CATEGORIES = 20

# The content elements every customer notice carries, whatever the jurisdiction (GDPR Art 33(3)
# plus advice and phasing); a jurisdiction's own processor duties add to these.
CORE_ELEMENTS: tuple[str, ...] = (
    "nature",
    "categories",
    "approx_subjects",
    "approx_records",
    "contact_dpo",
    "consequences",
    "measures",
    "advice",
    "phased",
)


CONSEQUENCES_BY_CATEGORY: Mapping[str, tuple[str, ...]] = {
    "personal": ("phishing", "identity_misuse"),
    "government_id": ("identity_theft",),
    "financial_account": ("payment_fraud",),
    "financial": ("financial_fraud",),
    "credentials": ("account_misuse",),
    "health": ("discrimination", "distress"),
    "health_insurance": ("insurance_fraud",),
    "phi": ("discrimination", "distress"),
    "biometric": ("identity_theft",),
    "genetic": ("discrimination",),
    "special_category": ("discrimination", "distress"),
    "children": ("distress",),
    "elderly": ("financial_fraud",),
    "secrecy_protected": ("distress",),
}
ADVICE_BY_CATEGORY: Mapping[str, tuple[str, ...]] = {
    "personal": ("phishing_vigilance",),
    "government_id": ("credit_freeze",),
    "financial_account": ("watch_statements", "block_cards"),
    "financial": ("watch_statements",),
    "credentials": ("change_passwords", "enable_mfa"),
    "health_insurance": ("watch_statements",),
}
NATURE_CONSEQUENCES: Mapping[str, str] = {"integrity": "data_altered", "availability": "data_lost"}
EMPTY_LAW: Mapping[str, Any] = {
    "moments": [],
    "jurisdictions": [],
    "undecided": [],
    "advisories": [],
    "exempted": [],
    "holds": [],
    "substitute": [],
    "waived": [],
}


def direction(locale: str) -> str:
    """``rtl`` for right-to-left languages, else ``ltr``."""
    return "rtl" if locale.split("-")[0].lower() in RTL_LANGUAGES else "ltr"


def no_marks(*names: str) -> str:
    """Production stand-in for the linter's element marker: renders nothing."""
    return ""


def _unique(values: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(v for v in values if v))


def default_measures(kind: str) -> list[dict[str, Any]]:
    """What a draft says was done before anyone edited it: only that the breach was detected,
    confirmed and is being investigated (true once it is confirmed). Any other measure, done or
    planned, is listed only once a person chose it (``revise_notice``): a draft never promises
    what nobody decided."""
    return [{"key": "investigation", "text": "", "done": True}]


def _iso(value: datetime | None) -> str:
    return value.astimezone(UTC).isoformat() if value is not None else ""


def duty_context(duty: Duty | Mapping[str, Any]) -> dict[str, Any]:
    """One duty as templates see it (from an engine ``Duty`` or a stored row's dict)."""
    if isinstance(duty, Duty):
        return {
            "rule_id": duty.rule_id,
            "title": duty.title,
            "whom_kind": duty.whom.kind,
            "whom": duty.whom.name,
            "provision": duty.provision,
            "regime": duty.regime_name,
            "basis": duty.basis,
            "draft": duty.draft,
            "unit": duty.deadline.unit,
            "amount": duty.deadline.amount,
            "deadline_text": duty.deadline.text,
            "due_at": _iso(duty.due_at),
            "target_at": _iso(duty.target_at),
            "clock_started_at": _iso(duty.clock_started_at),
            "elements": list(duty.required_elements),
            "conditions": list(duty.conditions),
            "clock_start": duty.clock_start,
            "clock_start_text": duty.clock_start_text or "",
            "moment_used": duty.moment_used or "",
            "moment_is_fallback": duty.moment_is_fallback,
            "due_last_day": duty.due_last_day.isoformat() if duty.due_last_day else "",
            "due_zone": duty.due_zone or "",
            "jurisdictions": [duty.jurisdiction],
            "hold": {},
            "substitute": duty.substitute.model_dump(mode="json") if duty.substitute is not None else {},
            "waived": {},
        }
    return dict(duty)


def notice_context(
    *,
    notice_id: str,
    version: int,
    kind: str,
    locale: str,
    tenant_id: str,
    tenant_name: str,
    jurisdiction: str,
    incident_id: str,
    incident_kind: str,
    impact: TenantImpact,
    radius: BlastRadius,
    vendor: Mapping[str, str],
    facts: Mapping[str, Any],
    vendor_duties: Sequence[Mapping[str, Any]],
    customer_duties: Sequence[Mapping[str, Any]],
    confirmed_at: datetime,
    detected_at: datetime,
    issued_at: datetime,
    previous: Mapping[str, Any] | None = None,
    mark: Callable[..., str] = no_marks,
    law: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The context of ``customer_notice``, ``followup`` and ``regulator_draft`` templates;
    ``law`` is what ``law_context`` reads of the notice's jurisdictions and clocks."""
    categories = [c.model_dump(mode="json") for c in impact.categories[:MAX_CATEGORIES]]
    more = max(len(impact.categories) - MAX_CATEGORIES, 0)
    data_categories = list(impact.data_categories)
    consequences = _unique(c for cat in data_categories for c in CONSEQUENCES_BY_CATEGORY.get(cat, ()))
    consequences += [NATURE_CONSEQUENCES[n] for n in impact.nature if n in NATURE_CONSEQUENCES]
    advice = _unique(a for cat in data_categories for a in ADVICE_BY_CATEGORY.get(cat, ()))
    measures = list(facts.get("measures") or default_measures(incident_kind))
    phase = str(facts.get("phase") or ("preliminary" if kind == "initial" else "update"))
    vendor_duties = [localise(d, locale) for d in vendor_duties]
    customer_duties = [localise(d, locale) for d in customer_duties]
    authority_duties = [d for d in customer_duties if d.get("whom_kind") == "authority"]
    return {
        "locale": locale,
        "dir": direction(locale),
        "mark": mark,
        "notice": {
            "id": notice_id,
            "reference": f"{notice_id}-v{version}",
            "version": version,
            "kind": kind,
            "phase": phase if phase in PHASES else "update",
            "issued_at": _iso(issued_at),
            "previous_version": (previous or {}).get("version"),
            "previous_sent_at": (previous or {}).get("sent_at") or "",
            "changes": str(facts.get("changes") or ""),
        },
        "vendor": dict(vendor),
        "tenant": {"id": tenant_id, "name": tenant_name, "jurisdiction": jurisdiction},
        "incident": {"id": incident_id, "kind": incident_kind},
        "breach": {
            "nature": list(impact.nature) or ["confidentiality"],
            "summary": str(facts.get("summary") or ""),
            "cause": str(facts.get("cause") or ""),
            "window_start": _iso(radius.window_start),
            "window_end": _iso(radius.window_end),
            "first_access": _iso(impact.first_at),
            "last_access": _iso(impact.last_at),
            "detected_at": _iso(detected_at),
            "confirmed_at": _iso(confirmed_at),
            "denied_events": impact.denied_events,
        },
        "scope": {
            "categories": categories,
            "more_categories": more,
            "data_categories": data_categories,
            "personal_data": impact.personal_data,
            "records": impact.records,
            "records_lower_bound": impact.records_lower_bound,
            "subjects": impact.subjects,
            "subjects_basis": impact.subjects_basis,
            "jurisdiction": jurisdiction,
            "corrected": impact.corrected,
        },
        "consequences": consequences or ["loss_of_confidentiality"],
        "consequences_note": str(facts.get("consequences_note") or ""),
        "measures": measures,
        "advice": advice + ["contact_us"],
        "law_enforcement": {
            "delay": bool(facts.get("law_enforcement_delay", False)),
            "involved": facts.get("law_enforcement_involved"),
        },
        "duties": {"vendor": list(vendor_duties), "customer": list(customer_duties)},
        "authority_duties": authority_duties,
        "law": _local_law(law, locale),
    }


def _local_law(law: Mapping[str, Any] | None, locale: str) -> dict[str, Any]:
    """``law`` with each entry naming a duty given its provision's local form, where there is one."""
    out = {**EMPTY_LAW, **(law or {})}
    for key in ("undecided", "advisories", "exempted", "holds", "substitute", "waived"):
        out[key] = [localise(e, locale) if isinstance(e, Mapping) and "rule_id" in e else e for e in out[key]]
    return out


# --- the renderer with locale-aware filters ---------------------------------------------------

_GROUPING = {"de": ".", "en": ",", "ur": ","}
_DATE_FORMATS = {"de": "%d.%m.%Y, %H:%M UTC", "en": "%d %b %Y, %H:%M UTC", "ur": "%Y-%m-%d %H:%M UTC"}


def _language(ctx: Context) -> str:
    return str(ctx.get("locale") or "en").split("-")[0].lower()


@pass_context
def _num(ctx: Context, value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "" if value is None else str(value)
    text = f"{int(value):,}"
    return text.replace(",", _GROUPING.get(_language(ctx), ","))


@lru_cache(maxsize=16)
def _cldr(language: str) -> Locale:
    """The CLDR data of a message's language (plural rules, country names); English when
    Babel does not know the language."""
    try:
        return Locale.parse(language)
    except (UnknownLocaleError, ValueError):
        return Locale.parse("en")


@pass_context
def _country(ctx: Context, code: Any) -> str:
    """A country's name in the message's language from its ISO 3166 code (the CLDR names,
    through Babel): a customer reads "Pakistan", "Deutschland", not "PK", "DE". A code CLDR
    does not know is shown as it is."""
    if not isinstance(code, str) or not code:
        return "" if code is None else str(code)
    return _cldr(_language(ctx)).territories.get(code.upper(), code)


@pass_context
def _count(ctx: Context, value: Any, one: str, other: str, **forms: str) -> str:
    """``value`` and the noun in the form its number takes in the message's language.

    The form is chosen by the Unicode CLDR plural rules (through Babel), not ``value == 1``:
    the rules differ by language (French counts 0 as "one"; Arabic has six forms), and a
    template may pass ``zero``, ``two``, ``few`` or ``many`` where its language has them.
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        return f"{_num(ctx, value)} {other}".strip()
    category = _cldr(_language(ctx)).plural_form(value)
    noun = one if category == "one" else forms.get(category, other)
    return f"{_num(ctx, value)} {noun}"


@pass_context
def _when(ctx: Context, value: Any) -> str:
    if not value:
        return ""
    try:
        moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    except ValueError:
        return ""
    if moment.tzinfo is None:
        return ""
    return moment.astimezone(UTC).strftime(_DATE_FORMATS.get(_language(ctx), _DATE_FORMATS["en"]))


def clean(value: Any) -> Any:
    """``value`` with every string in it made one line and capped, however deeply nested."""
    if isinstance(value, str):
        return one_line(value, VALUE_MAX)
    if isinstance(value, Mapping):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    return value


def _keep(value: Any) -> Any:
    return "" if value is None else value


class NoticeRenderer(Renderer):
    """The shared sandboxed renderer plus ``num`` and ``when`` filters that follow the locale.

    Notice templates are built from macros (one per section), whose output is multi-line
    template text. So the context is cleaned once, up front (every string one line, capped),
    instead of at each ``{{ }}``: data still cannot add a line, a header or markup (HTML is
    still autoescaped), and a section keeps its line breaks.
    """

    def __init__(self, templates_dir: Path = TEMPLATES_DIR) -> None:
        super().__init__(templates_dir)
        # Before any template is compiled: finalize is baked into compiled templates.
        self.env.finalize = _keep
        self.env.filters["num"] = _num
        self.env.filters["count"] = _count
        self.env.filters["country"] = _country
        self.env.filters["when"] = _when

    def render(self, message_type: str, locale: str | None, context: Mapping[str, Any]) -> Rendered:
        return super().render(message_type, locale, {k: v if callable(v) else clean(v) for k, v in context.items()})


@lru_cache(maxsize=4)
def notice_renderer(templates_dir: Path = TEMPLATES_DIR) -> NoticeRenderer:
    return NoticeRenderer(templates_dir)


def rendering_locale(locale: str | None) -> str:
    """The tag a notice is recorded under: the most specific plausible form of ``locale``."""
    return locale_chain(locale)[0]
