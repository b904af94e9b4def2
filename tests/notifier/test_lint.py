"""The template linter passes the packaged templates and fails a template that drops, hides or
empties a required element, a missing language, a wrong text direction, or broken syntax."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from breachwatch.notifier.lint import html_elements, lint_templates, text_elements
from breachwatch.notifier.render import TEMPLATES_DIR


@pytest.fixture
def templates(tmp_path: Path) -> Path:
    """A copy of the packaged templates to break."""
    target = tmp_path / "templates"
    shutil.copytree(TEMPLATES_DIR, target)
    return target


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new), encoding="utf-8")


def test_the_packaged_templates_pass() -> None:
    assert lint_templates() == []


def test_a_notice_without_advice_fails_for_every_jurisdiction(templates: Path) -> None:
    _edit(templates / "customer_notice/de/body.txt.j2", "{{ s.sec_advice() }}\n", "")
    problems = lint_templates(templates)
    assert problems
    assert {(p.message_type, p.locale, p.part, p.element) for p in problems} == {
        ("customer_notice", "de", "text", "advice")
    }
    named = {code for p in problems for code in [p.jurisdiction.split()[0]]}
    assert {"AT", "GB", "US-CA", "PK"} <= named  # one group per set of duties, every group fails


def test_a_section_shown_only_when_facts_are_known_fails(templates: Path) -> None:
    # The counts section must say "not yet known" rather than vanish.
    _edit(
        templates / "customer_notice/en/body.html.j2",
        "{{ s.sec_numbers() }}\n",
        "{% if scope.records is not none %}{{ s.sec_numbers() }}{% endif %}\n",
    )
    problems = lint_templates(templates, only=["DE"])
    assert {(p.locale, p.part, p.element) for p in problems} == {
        ("en", "html", "approx_subjects"),
        ("en", "html", "approx_records"),
    }
    assert all("unknown facts" in p.message for p in problems)


def test_an_empty_contact_section_fails(templates: Path) -> None:
    _edit(templates / "customer_notice/ur/_sections.html.j2", "<h2>رابطہ</h2>\n", "")
    path = templates / "customer_notice/ur/_sections.html.j2"
    text = path.read_text(encoding="utf-8")
    start = text.index('<section data-element="contact contact_dpo contact_channels">')
    end = text.index("</section>", start)
    path.write_text(
        text[:start] + '<section data-element="contact contact_dpo contact_channels">\n' + text[end:], encoding="utf-8"
    )
    problems = lint_templates(templates, only=["PK"])
    assert {(p.locale, p.part, p.element, p.message.split(": ")[-1]) for p in problems} >= {
        ("ur", "html", "contact_dpo", "section is empty")
    }


def test_a_processor_duty_element_is_required_where_it_applies(templates: Path) -> None:
    # US state rules ask the maintainer to tell the owner how many residents are affected.
    _edit(
        templates / "customer_notice/en/_sections.txt.j2",
        '{{ mark("approx_subjects", "approx_records", "subjects_by_jurisdiction") }}',
        '{{ mark("approx_subjects", "approx_records") }}',
    )
    problems = lint_templates(templates, only=["DE", "US-NY"])
    assert {(p.jurisdiction, p.element) for p in problems if p.message_type == "customer_notice"} == {
        ("US-NY", "subjects_by_jurisdiction")
    }


def test_the_regulator_draft_must_carry_each_authority_element(templates: Path) -> None:
    _edit(templates / "regulator_draft/de/body.txt.j2", "{{ mark(name) }}", "")
    problems = lint_templates(templates, only=["DE"])
    assert {p.element for p in problems} == {
        "nature",
        "categories",
        "approx_subjects",
        "approx_records",
        "contact_dpo",
        "consequences",
        "measures",
        "reasons_for_delay",
        "phased",
    }
    assert {(p.message_type, p.locale, p.part) for p in problems} == {("regulator_draft", "de", "text")}


def test_a_missing_language_and_a_wrong_direction_fail(templates: Path) -> None:
    (templates / "followup/ur/body.html.j2").unlink()
    _edit(templates / "customer_notice/ur/body.html.j2", 'dir="rtl">\n<head>', 'dir="ltr">\n<head>')
    problems = lint_templates(templates, only=["PK"])
    messages = {(p.message_type, p.locale, p.part, p.message) for p in problems}
    assert ("followup", "ur", "files", "body.html.j2 is missing") in messages
    assert ("customer_notice", "ur", "html", "<html dir> is 'ltr', expected 'rtl'") in messages


def test_broken_syntax_is_reported_with_the_file(templates: Path) -> None:
    (templates / "customer_notice/en/_sections.txt.j2").write_text("{% macro sec_what_happened() %}\n", "utf-8")
    problems = lint_templates(templates, only=["DE"])
    assert any(p.part == "files" and "_sections.txt.j2" in p.message for p in problems)
    assert any(p.part == "render" and p.locale == "en" for p in problems)


def test_section_parsers() -> None:
    text = "intro ⟦nature cause⟧WHAT\nbody\n⟦advice⟧\n   \n⟦phased⟧more"
    assert text_elements(text) == {"nature": "WHAT body", "cause": "WHAT body", "advice": "", "phased": "more"}
    found, lang, direction = html_elements(
        '<html lang="ur" dir="rtl"><section data-element="a b"><p>x<br>y</p><section>z</section></section>'
        '<div data-element="c"> </div></html>'
    )
    assert (found, lang, direction) == ({"a": "xyz", "b": "xyz", "c": ""}, "ur", "rtl")


# --- the customer's language ----------------------------------------------------------------


def test_an_english_fragment_in_a_german_template_fails(templates: Path) -> None:
    _edit(
        templates / "customer_notice/de/_sections.txt.j2",
        "Betroffene Personen: die Personen,",
        "Betroffene Personen: please notify the people within 72 hours,",
    )
    problems = lint_templates(templates, only=["DE"])
    assert problems
    assert {(p.message_type, p.locale) for p in problems} == {("customer_notice", "de"), ("followup", "de")}
    assert any(
        p.part == "files" and "_sections.txt.j2 writes English: please, notify, the, within" in p.message
        for p in problems
    )
    assert any(p.part == "text" and "English in a de notice" in p.message for p in problems)


def test_rule_conditions_quoted_in_english_fail_in_urdu(templates: Path) -> None:
    # The rule file's own English condition instead of its local form.
    _edit(
        templates / "customer_notice/ur/_sections.txt.j2",
        "{{ d.condition_local or L.condition_unstated }}",
        '{{ d.conditions|join("; ") }}',
    )
    problems = lint_templates(templates, only=["DE"])
    assert {(p.locale, p.part) for p in problems} == {("ur", "text")}
    assert all("English in a ur notice" in p.message and "the" in p.message for p in problems)


def test_an_english_label_in_a_german_label_table_fails(templates: Path) -> None:
    _edit(templates / "customer_notice/de/_labels.j2", '"Identitätsdiebstahl"', '"identity theft by the attacker"')
    problems = lint_templates(templates, only=["DE"])
    assert any(p.part == "files" and p.message.startswith("_labels.j2 writes English: by, the") for p in problems)


def test_laws_with_a_local_form_must_have_it() -> None:
    from breachwatch.notifier.duties.l10n import missing

    assert missing("de", ["eu.art33-2.controller", "eu.art99.new", "us-ca.1798-82.owner"]) == ["eu.art99.new"]
    assert missing("ur", ["pk.commission", "pk.new", "contract.customer"]) == ["pk.new"]
    assert missing("en", ["eu.art99.new"]) == []
