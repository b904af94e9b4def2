"""Template linter: every customer notice, in every language, for every jurisdiction it
serves, must render every content element the law asks of it.

Required elements per jurisdiction are the core set (nature; categories and approximate numbers
of people and records; contact point / DPO; likely consequences; measures; advice to
individuals; whether information follows in phases) plus whatever the vendor's processor duties
there list (``notifier.duties`` rules); a regulator-report draft must carry the elements of each
authority report the customer owes. Templates declare what they render: HTML sections carry
``data-element="nature cause"``, and text sections start with ``{{ mark("nature", "cause") }}``
(an empty string in real notices, a marker when linting). The linter renders each template with
a fully known and a barely known breach and checks that each required element's section is
there and not empty, so a template that drops a section, or hides it behind a condition, fails.

German and Urdu notices are also checked for English (``lint_language``): in their template
files, in every rendered notice (leaving out data and the citations of foreign statutes), and
in the rule texts they quote, whose local form (``duties/rules/l10n``) must exist for the laws
that have one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from jinja2 import TemplateError

from breachwatch.notifier.blast_radius import BlastRadius, CategoryCount, TenantImpact
from breachwatch.notifier.duties import Duty, RuleSet, default_rules, duties_for
from breachwatch.notifier.duties.l10n import missing as missing_local_texts
from breachwatch.notifier.duties.l10n import rule_texts
from breachwatch.notifier.lint_language import CHECKED_LANGUAGES, english_words, source_problems, visible_text
from breachwatch.notifier.notices.content import (
    CORE_ELEMENTS,
    CUSTOMER_NOTICE,
    FOLLOWUP,
    REGULATOR_DRAFT,
    NoticeRenderer,
    direction,
    duty_context,
    notice_context,
)
from breachwatch.notifier.render import TEMPLATES_DIR

NOTICE_LOCALES: tuple[str, ...] = ("en", "de", "ur")
UNKNOWN_JURISDICTION = "ZZ"
PARTS: tuple[str, ...] = ("subject.txt.j2", "body.txt.j2", "body.html.j2")
_MARK = re.compile(r"⟦([a-z_ ]*)⟧")
_VOID = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
)
_T0 = datetime(2026, 11, 25, 15, 0, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class LintProblem:
    """One thing wrong with one template, in one locale, for one jurisdiction."""

    message_type: str
    locale: str
    jurisdiction: str  # "" when not specific to one
    part: str  # subject | text | html | files | render
    message: str
    element: str = ""

    def __str__(self) -> str:
        where = "/".join(p for p in (self.message_type, self.locale) if p)
        juris = f" [{self.jurisdiction}]" if self.jurisdiction else ""
        elem = f" element {self.element!r}" if self.element else ""
        return f"{where}{juris} {self.part}:{elem} {self.message}"


def lint_mark(*names: str) -> str:
    """The marker a text section renders while linting."""
    return "⟦" + " ".join(names) + "⟧"


class _Sections(HTMLParser):
    """Collects the text inside every element that has a ``data-element`` attribute, and the
    ``lang`` and ``dir`` of the ``<html>`` element."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lang: str | None = None
        self.dir: str | None = None
        self.text: dict[str, list[str]] = {}
        self._open: list[list[Any]] = []  # [tag, names, nesting depth of the same tag]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "html":
            self.lang, self.dir = values.get("lang"), values.get("dir")
        if tag in _VOID:
            return
        for entry in self._open:
            if entry[0] == tag:
                entry[2] += 1
        if "data-element" in values:
            names = (values.get("data-element") or "").split()
            for n in names:
                self.text.setdefault(n, [])
            self._open.append([tag, names, 0])

    def handle_endtag(self, tag: str) -> None:
        for entry in reversed(self._open):
            if entry[0] == tag:
                if entry[2] == 0:
                    self._open.remove(entry)
                else:
                    entry[2] -= 1
                break

    def handle_data(self, data: str) -> None:
        for _, names, _ in self._open:
            for n in names:
                self.text[n].append(data)


def html_elements(html: str) -> tuple[dict[str, str], str | None, str | None]:
    """(element -> text of its sections, <html lang>, <html dir>)."""
    parser = _Sections()
    parser.feed(html)
    parser.close()
    return {k: " ".join("".join(v).split()) for k, v in parser.text.items()}, parser.lang, parser.dir


def text_elements(text: str) -> dict[str, str]:
    """Element -> the text that follows its marker up to the next marker."""
    out: dict[str, str] = {}
    pieces = _MARK.split(text)
    # split() alternates: text, names, text, names, text...
    for i in range(1, len(pieces), 2):
        body = " ".join(pieces[i + 1].split()) if i + 1 < len(pieces) else ""
        for name in pieces[i].split():
            out[name] = (out.get(name, "") + " " + body).strip()
    return out


def jurisdictions(rules: RuleSet) -> list[str]:
    """Every jurisdiction code a rule file names, plus the code for "unknown"."""
    codes = {c for regime in rules.regimes for c in regime.applies_to if c != "*"}
    return sorted(codes) + [UNKNOWN_JURISDICTION]


def _duties(code: str, rules: RuleSet) -> tuple[list[Duty], list[Duty]]:
    # Nothing known about the breach yet: threshold duties stay in, so the widest set is checked.
    common: dict[str, Any] = {"affected_subjects": None, "data_categories": (), "aware_at": _T0, "rules": rules}
    return duties_for(code, role="processor", **common), duties_for(code, role="controller", **common)


def required_notice_elements(vendor: Sequence[Duty]) -> tuple[str, ...]:
    """The core elements plus those of every processor-to-controller duty."""
    extra = [e for d in vendor if d.whom.kind == "controller" for e in d.required_elements]
    return tuple(dict.fromkeys([*CORE_ELEMENTS, *extra]))


# What a person would write into a notice in its language.
PROBE_FACTS: dict[str, dict[str, str]] = {
    "en": {
        "summary": "An attacker signed in with a guessed password.",
        "cause": "a reused password",
        "changes": "the counts were corrected",
    },
    "de": {
        "summary": "Ein Angreifer hat sich mit einem erratenen Passwort angemeldet.",
        "cause": "ein wiederverwendetes Passwort",
        "changes": "die Zahlen wurden berichtigt",
    },
    "ur": {
        "summary": "حملہ آور نے اندازے سے پاس ورڈ لگا کر لاگ ان کیا۔",
        "cause": "دوبارہ استعمال شدہ پاس ورڈ",
        "changes": "گنتی درست کی گئی",
    },
}
# Data the probe puts in every notice as the customer or the vendor wrote it (names, record types).
PROBE_DATA: tuple[str, ...] = (
    "Lint Example GmbH",
    "Unisen Cloud ERP",
    "Dana Example",
    "1 Example Street",
    "customer",
    "invoice",
    "unheard_of_kind",
    "notice-lint",
    "inc-lint",
    "t-lint",
)


def _probe(kind: str, full: bool, language: str = "en") -> tuple[TenantImpact, dict[str, Any], dict[str, str]]:
    if full:
        impact = TenantImpact(
            tenant_id="t-lint",
            categories=(
                CategoryCount(
                    resource_type="customer",
                    sensitivity="personal",
                    records=48211,
                    events=3,
                    actions=("export", "read"),
                ),
                CategoryCount(
                    resource_type="invoice", sensitivity="financial", records=920, events=2, actions=("read",)
                ),
            ),
            data_categories=("financial", "personal"),
            records=49131,
            subjects=48211,
            personal_data=True,
            nature=("confidentiality",),
            first_at=_T0 - timedelta(hours=5),
            last_at=_T0 - timedelta(hours=4),
        )
        facts = {
            **PROBE_FACTS.get(language, PROBE_FACTS["en"]),
            "phase": "preliminary" if kind == "initial" else "update",
        }
        vendor = {
            "name": "Unisen Cloud ERP",
            "contact_email": "privacy@unisen.example",
            "contact_phone": "+49 30 0000",
            "dpo_name": "Dana Example",
            "dpo_email": "dpo@unisen.example",
            "address": "1 Example Street",
        }
    else:
        impact = TenantImpact(tenant_id="t-lint", records=None, subjects=None, subjects_basis="unknown")
        facts = {}
        vendor = {
            "name": "Unisen Cloud ERP",
            "contact_email": "privacy@unisen.example",
            "contact_phone": "",
            "dpo_name": "",
            "dpo_email": "",
            "address": "",
        }
    return impact, facts, vendor


def _context(
    message_type: str,
    locale: str,
    code: str,
    vendor_duties: Sequence[Duty],
    customer_duties: Sequence[Duty],
    full: bool,
) -> dict[str, Any]:
    kind = "followup" if message_type == FOLLOWUP else "initial"
    impact, facts, vendor = _probe(kind, full, locale.split("-")[0])
    radius = BlastRadius(
        incident_id="inc-lint", window_start=_T0 - timedelta(hours=6), window_end=_T0, tenants=(impact,)
    )
    return notice_context(
        notice_id="notice-lint",
        version=2 if kind == "followup" else 1,
        kind=kind,
        locale=locale,
        tenant_id="t-lint",
        tenant_name="Lint Example GmbH" if full else "",
        jurisdiction=code,
        incident_id="inc-lint",
        incident_kind="account_takeover" if full else "unheard_of_kind",
        impact=impact,
        radius=radius,
        vendor=vendor,
        facts=facts,
        vendor_duties=[duty_context(d) for d in vendor_duties],
        customer_duties=[duty_context(d) for d in customer_duties],
        confirmed_at=_T0,
        detected_at=_T0 - timedelta(hours=1),
        issued_at=_T0 + timedelta(hours=2),
        previous={"version": 1, "sent_at": (_T0 + timedelta(hours=1)).isoformat()} if kind == "followup" else None,
        mark=lint_mark,
    )


def _check_files(templates_dir: Path, locales: Sequence[str]) -> list[LintProblem]:
    problems = []
    for message_type in (CUSTOMER_NOTICE, FOLLOWUP, REGULATOR_DRAFT):
        for locale in locales:
            for part in PARTS:
                if not (templates_dir / message_type / locale / part).is_file():
                    problems.append(LintProblem(message_type, locale, "", "files", f"{part} is missing"))
    return problems


def _check_syntax(renderer: NoticeRenderer, templates_dir: Path) -> list[LintProblem]:
    problems = []
    for path in sorted(templates_dir.rglob("*.j2")):
        rel = path.relative_to(templates_dir)
        try:
            # Compiling (not just parsing) also warms the cache the renders below use.
            renderer.env.get_template(rel.as_posix())
        except TemplateError as exc:
            parts = rel.parts
            problems.append(
                LintProblem(
                    parts[0], parts[1] if len(parts) > 2 else "", "", "files", f"{rel}: {type(exc).__name__}: {exc}"
                )
            )
    return problems


def _check_render(
    renderer: NoticeRenderer,
    message_type: str,
    locale: str,
    codes: Sequence[str],
    vendor: Sequence[Duty],
    customer: Sequence[Duty],
) -> list[LintProblem]:
    problems: list[LintProblem] = []
    shown = codes[0] if len(codes) == 1 else f"{codes[0]} (+{len(codes) - 1} alike)"
    authority = [d for d in customer if d.whom.kind == "authority"]
    if message_type == REGULATOR_DRAFT:
        required = tuple(dict.fromkeys(e for d in authority for e in d.required_elements))
    else:
        required = required_notice_elements(vendor)
    for full in (True, False):
        probe = "known facts" if full else "unknown facts"
        context = _context(message_type, locale, codes[0], vendor, customer, full)
        try:
            rendered = renderer.render(message_type, locale, context)
        except Exception as exc:
            problems.append(LintProblem(message_type, locale, shown, "render", f"{probe}: {type(exc).__name__}: {exc}"))
            continue
        if rendered.locale != locale:
            problems.append(
                LintProblem(
                    message_type, locale, shown, "files", f"fell back to {rendered.locale!r}: no templates of its own"
                )
            )
            continue
        if not rendered.subject.strip():
            problems.append(LintProblem(message_type, locale, shown, "subject", f"{probe}: empty subject"))
        if _MARK.search(rendered.subject) or (rendered.html and _MARK.search(rendered.html)):
            problems.append(LintProblem(message_type, locale, shown, "html", "element markers belong in text parts"))
        in_text = text_elements(rendered.text)
        html_map, lang, html_dir = html_elements(rendered.html or "")
        if rendered.html is None:
            problems.append(LintProblem(message_type, locale, shown, "html", "no HTML part"))
        else:
            if lang != locale:
                problems.append(LintProblem(message_type, locale, shown, "html", f"<html lang> is {lang!r}"))
            if (html_dir or "ltr") != direction(locale):
                problems.append(
                    LintProblem(
                        message_type,
                        locale,
                        shown,
                        "html",
                        f"<html dir> is {html_dir!r}, expected {direction(locale)!r}",
                    )
                )
        problems += _check_english(message_type, locale, shown, probe, rendered, vendor, customer)
        for element in required:
            for part, found in (("text", in_text), ("html", html_map)):
                if part == "html" and rendered.html is None:
                    continue
                if element not in found:
                    problems.append(LintProblem(message_type, locale, shown, part, f"{probe}: not rendered", element))
                elif not found[element]:
                    problems.append(
                        LintProblem(message_type, locale, shown, part, f"{probe}: section is empty", element)
                    )
    return problems


def _check_english(
    message_type: str,
    locale: str,
    shown: str,
    probe: str,
    rendered: Any,
    vendor: Sequence[Duty],
    customer: Sequence[Duty],
) -> list[LintProblem]:
    language = locale.split("-")[0]
    if language not in CHECKED_LANGUAGES:
        return []
    local = rule_texts(language)
    # A foreign statute without a local form is cited as it is named; nothing else may be English.
    citations = [d.provision for d in (*vendor, *customer) if "provision" not in local.get(d.rule_id, {})]
    allowed = [*PROBE_DATA, *citations]
    problems = []
    for part, text in (
        ("subject", rendered.subject),
        ("text", rendered.text),
        ("html", visible_text(rendered.html or "")),
    ):
        words = english_words(text, allowed)
        if words:
            problems.append(
                LintProblem(
                    message_type, locale, shown, part, f"{probe}: English in a {language} notice: {', '.join(words)}"
                )
            )
    return problems


def _check_sources(templates_dir: Path, locales: Sequence[str]) -> list[LintProblem]:
    languages = {loc.split("-")[0] for loc in locales}
    return [
        LintProblem(message_type, language, "", "files", f"{name} writes English: {', '.join(words)}")
        for message_type, language, name, words in source_problems(
            templates_dir, (CUSTOMER_NOTICE, FOLLOWUP, REGULATOR_DRAFT)
        )
        if language in languages
    ]


def _check_rule_texts(locales: Sequence[str], rules: RuleSet) -> list[LintProblem]:
    rule_ids = [d.id for regime in (*rules.regimes, rules.default) for d in regime.duties]
    problems = []
    for language in sorted({loc.split("-")[0] for loc in locales} & CHECKED_LANGUAGES):
        for rule_id in missing_local_texts(language, rule_ids):
            problems.append(
                LintProblem(
                    "rules", language, "", "files", f"duty {rule_id} has no {language} provision in duties/rules/l10n"
                )
            )
    return problems


def lint_templates(
    templates_dir: Path = TEMPLATES_DIR,
    *,
    locales: Sequence[str] = NOTICE_LOCALES,
    rules: RuleSet | None = None,
    only: Iterable[str] | None = None,
) -> list[LintProblem]:
    """Every problem found in the notice templates under ``templates_dir`` (empty: all good).

    ``only`` limits the jurisdictions checked (default: every one the rules name).
    """
    rules = rules or default_rules()
    templates_dir = Path(templates_dir)
    renderer = NoticeRenderer(templates_dir)
    problems = _check_files(templates_dir, locales) + _check_syntax(renderer, templates_dir)
    problems += _check_sources(templates_dir, locales) + _check_rule_texts(locales, rules)
    # Jurisdictions whose duties are the same render the same notice: check each group once.
    groups: dict[tuple[str, ...], tuple[list[str], list[Duty], list[Duty]]] = {}
    for code in list(only) if only is not None else jurisdictions(rules):
        vendor, customer = _duties(code, rules)
        key = tuple(sorted(d.rule_id for d in (*vendor, *customer)))
        groups.setdefault(key, ([], vendor, customer))[0].append(code)
    for codes, vendor, customer in groups.values():
        for message_type in (CUSTOMER_NOTICE, FOLLOWUP, REGULATOR_DRAFT):
            for locale in locales:
                problems += _check_render(renderer, message_type, locale, codes, vendor, customer)
    return problems
