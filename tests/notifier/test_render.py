"""Rendering of message templates: content of the on-call alert, locale fallback, sandboxing,
and that attacker-controlled event fields stay inert text."""

from __future__ import annotations

import email
import email.policy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from jinja2.exceptions import SecurityError, UndefinedError

from breachwatch.channels.mime import build_email
from breachwatch.incidents.tables import EvidenceRow
from breachwatch.notifier.message import SUBJECT_MAX, OutboxMessage
from breachwatch.notifier.oncall_context import alert_context
from breachwatch.notifier.render import Renderer, UnknownMessageType, locale_chain, render

ATTACK_HTML = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def _context(incident_factory: Callable[..., Any], tenants: dict[str, Any] | None = None, **kw: Any) -> dict:
    console_url = kw.pop("console_url", "https://console.unisen.example")
    incident, findings, evidence = incident_factory(**kw)
    return alert_context(incident, findings, evidence, tenants or {}, console_url=console_url)


def test_oncall_alert_names_what_who_where_why_and_what_to_do(incident_factory, rhein_tenant) -> None:
    r = render("oncall_alert", "en", _context(incident_factory, {"t-rhein": rhein_tenant}))

    assert r.locale == "en"
    assert r.subject.startswith("[BreachWatch] HIGH bulk_export")
    assert "inc-7f3a9c21e4b05d18" in r.subject
    for body in (r.text, r.html):
        assert body is not None
        assert "Bulk export of customer records by u-hans" in body
        assert "u-hans" in body
        assert "t-rhein" in body and "Rhein Logistik GmbH" in body
        assert "185.220.101.5" in body
        assert "exported 48211 personal records in one request (baseline 40)" in body
        assert "Suspend the session" in body
        assert "87/100" in body
        assert "https://console.unisen.example/incidents/inc-7f3a9c21e4b05d18" in body
        assert "2026-11-24 02:39:55 UTC" in body  # evidence window start
    assert "t-rhein/customer | 48211 | 185.220.101.5 | NL" in r.text
    assert "<td>export</td><td>t-rhein/customer</td><td>48211</td>" in r.html
    assert "Records touched: 48211." in r.text


def test_oncall_alert_without_console_url_or_tenant_name_omits_them(incident_factory) -> None:
    r = render("oncall_alert", "en", _context(incident_factory, console_url=None))
    assert "console" not in r.text.lower().replace("shown as recorded", "")
    assert "<a href" not in (r.html or "")
    assert "Rhein Logistik" not in r.text


def test_console_url_must_be_http(incident_factory) -> None:
    r = render("oncall_alert", "en", _context(incident_factory, console_url="javascript:alert(1)"))
    assert "javascript:" not in r.text and "javascript:" not in (r.html or "")


def test_evidence_table_lists_only_the_first_rows(incident_factory) -> None:
    incident, findings, evidence = incident_factory()
    ctx = alert_context(incident, findings, evidence, {}, max_rows=2)
    r = render("oncall_alert", "en", ctx)
    assert "First 2 of 3" in r.text
    assert "48211 | 185.220.101.5" not in r.text  # the third (latest) event is not in the table


@pytest.mark.parametrize(
    ("locale", "chain"),
    [
        ("de-AT", ["de-AT", "de", "en"]),
        ("de_at", ["de-AT", "de", "en"]),
        ("zh-hant-tw", ["zh-Hant-TW", "zh-Hant", "zh", "en"]),
        ("en", ["en"]),
        (None, ["en"]),
        ("../../etc/passwd", ["en"]),
        ("de/../../x", ["en"]),
    ],
)
def test_locale_chain(locale: str | None, chain: list[str]) -> None:
    assert locale_chain(locale) == chain


def test_missing_locale_falls_back_to_english(incident_factory) -> None:
    ctx = _context(incident_factory)
    assert render("oncall_alert", "de-AT", ctx).locale == "en"
    assert render("oncall_alert", "../../../etc", ctx).text == render("oncall_alert", "en", ctx).text


def _write(folder: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")


def test_language_override_is_used_for_a_regional_locale(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "notice/en/subject.txt.j2": "Security notice for {{ tenant }}",
            "notice/en/body.txt.j2": "Dear {{ tenant }}",
            "notice/en/body.html.j2": "<p>Dear {{ tenant }}</p>",
            "notice/de/subject.txt.j2": "Sicherheitshinweis für {{ tenant }}",
            "notice/de/body.txt.j2": "Sehr geehrte {{ tenant }}",
        },
    )
    renderer = Renderer(tmp_path)
    de = renderer.render("notice", "de-AT", {"tenant": "Rhein Logistik GmbH"})
    assert (de.locale, de.subject, de.text) == (
        "de",
        "Sicherheitshinweis für Rhein Logistik GmbH",
        "Sehr geehrte Rhein Logistik GmbH",
    )
    assert de.html is None  # the German override has no HTML part; English is not mixed in
    fr = renderer.render("notice", "fr-CA", {"tenant": "Rhein Logistik GmbH"})
    assert (fr.locale, fr.html) == ("en", "<p>Dear Rhein Logistik GmbH</p>")


def test_unknown_message_type_and_missing_context_raise(tmp_path: Path, incident_factory) -> None:
    with pytest.raises(UnknownMessageType):
        render("no_such_message", "en", {})
    with pytest.raises(UnknownMessageType):
        render("../oncall_alert", "en", {})
    ctx = _context(incident_factory)
    del ctx["reasons"]
    with pytest.raises(UndefinedError):
        render("oncall_alert", "en", ctx)


def test_templates_run_in_a_sandbox(tmp_path: Path) -> None:
    _write(
        tmp_path,
        {
            "evil/en/subject.txt.j2": "x",
            "evil/en/body.txt.j2": "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        },
    )
    with pytest.raises(SecurityError):
        Renderer(tmp_path).render("evil", "en", {})


def test_html_in_event_fields_is_escaped(incident_factory, rhein_tenant) -> None:
    tenant = rhein_tenant.model_copy(update={"name": ATTACK_HTML})
    r = render(
        "oncall_alert", "en", _context(incident_factory, {"t-rhein": tenant}, title=ATTACK_HTML, actor='u-"><b>x')
    )
    assert r.html is not None
    assert "<script>" not in r.html and "<img" not in r.html and "<b>x" not in r.html
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in r.html
    assert "&#34;&gt;&lt;b&gt;x" in r.html
    # Plain text keeps the characters as they were: no markup is interpreted there.
    assert ATTACK_HTML in r.text


def test_template_syntax_in_event_fields_is_not_evaluated(incident_factory) -> None:
    title = "{{ 7*7 }} {% for x in range(3) %}loop{% endfor %} ${7*7} #{7*7}"
    r = render("oncall_alert", "en", _context(incident_factory, title=title))
    for part in (r.subject, r.text, r.html or ""):
        assert "{{ 7*7 }}" in part
        assert "loop{% endfor %}" in part
        assert "49" not in part
        assert "looplooploop" not in part


def test_line_breaks_in_subject_fields_cannot_add_headers(incident_factory) -> None:
    title = "Export\r\nBcc: victim@evil.example\r\n\r\n<html>body</html>\u202egnp.exe\x00\x1b[31m"
    r = render("oncall_alert", "en", _context(incident_factory, title=title))

    assert not any(c in r.subject for c in "\r\n\x00\x1b\u202e")
    assert "Bcc: victim@evil.example" in r.subject  # still visible to the reader, as text
    # The subject and the body's one-line fields carry no break a mail client would honour.
    assert "\nBcc:" not in r.text
    msg = OutboxMessage("m-1", "email", "oncall@unisen.example", r.subject, r.text, r.html)
    parsed = email.message_from_bytes(
        build_email(msg, "breachwatch@unisen.example", _fixed_now()).as_bytes(), policy=email.policy.default
    )
    assert parsed["Bcc"] is None
    assert parsed["To"] == "oncall@unisen.example"
    assert "Bcc: victim@evil.example" in str(parsed["Subject"])


def test_a_100k_character_field_stays_inert_and_bounded(incident_factory) -> None:
    huge = ("A" * 50_000) + "\n{{ 7*7 }}<b>" + ("B" * 50_000)
    incident, findings, evidence = incident_factory(title=huge, reasons=[huge], source_ips=[huge])
    # The store keeps the event as received; the renderer must cope even beyond the contract.
    evidence.append(
        EvidenceRow(
            incident_id=incident.incident_id,
            event_id="a-huge",
            finding_id="f-0001",
            topic="erp.access",
            ts=evidence[0].ts,
            event_json=json.dumps({"actor_id": huge, "action": huge, "resource_type": huge}),
        )
    )
    r = render("oncall_alert", "en", alert_context(incident, findings, evidence, {}))
    assert len(r.subject) <= SUBJECT_MAX
    assert r.subject.endswith("…")
    assert len(r.text) < 30_000
    assert r.html is not None and len(r.html) < 40_000 and "<b>" not in r.html
    assert "49" not in r.text


def _fixed_now() -> Any:
    import datetime as dt

    return dt.datetime(2026, 11, 24, 3, 0, tzinfo=dt.UTC)
