"""Message templates: a message type and a locale map to sandboxed Jinja2 templates.

Templates live in ``templates/<message_type>/<locale>/`` as ``subject.txt.j2``,
``body.txt.j2`` and (optional) ``body.html.j2``; a locale without its own templates falls
back to its language and then to English (``de-AT`` -> ``de`` -> ``en``). Every value a
template prints is treated as untrusted data: it is made one line, stripped of control
and bidi characters and capped in length, HTML templates escape it, and the subject is
made header-safe, so an event field can never become markup, a template or a header.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined, TemplateNotFound
from jinja2.sandbox import SandboxedEnvironment
from markupsafe import Markup

from breachwatch.notifier.message import SUBJECT_MAX, header_text, one_line

TEMPLATES_DIR = Path(__file__).parent / "templates"
DEFAULT_LOCALE = "en"
# Longest text one interpolated value may add to a body; evidence fields are short, and a
# 100k-character field must not bloat or break a page.
VALUE_MAX = 2000
_LOCALE = re.compile(r"^[A-Za-z]{2,3}(?:[-_][A-Za-z0-9]{1,8}){0,3}$")
_MESSAGE_TYPE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class UnknownMessageType(LookupError):
    """No templates exist for this message type (in any locale of the fallback chain)."""


@dataclass(frozen=True, slots=True)
class Rendered:
    """A rendered message: header-safe subject, plain-text body, optional HTML body."""

    subject: str
    text: str
    html: str | None
    locale: str  # the locale whose templates were used


def locale_chain(locale: str | None) -> list[str]:
    """Locales to try, most specific first, always ending in English.

    A value that is not a plausible BCP 47 tag (tenant data is not trusted, and this becomes
    a directory name) goes straight to English.
    """
    chain: list[str] = []
    if locale and _LOCALE.fullmatch(locale):
        parts = locale.replace("_", "-").split("-")
        canon = [parts[0].lower()]
        for p in parts[1:]:
            canon.append(p.upper() if len(p) == 2 else p.title() if len(p) == 4 else p.lower())
        chain = ["-".join(canon[:i]) for i in range(len(canon), 0, -1)]
    if DEFAULT_LOCALE not in chain:
        chain.append(DEFAULT_LOCALE)
    return chain


def _finalize(value: Any) -> Any:
    # Runs on every {{ }} before escaping; structure belongs to templates, not to values.
    if value is None:
        return ""
    if isinstance(value, bool | int | float):
        return value
    if isinstance(value, Markup):
        return Markup(one_line(value, VALUE_MAX * 2))
    return one_line(value, VALUE_MAX)


def _autoescape(name: str | None) -> bool:
    return name is not None and name.endswith((".html.j2", ".html"))


def _clip(value: Any, limit: int = 80) -> str:
    return one_line(value, limit)


class Renderer:
    """Renders message types from one templates folder; the Jinja environment is built once."""

    def __init__(self, templates_dir: Path = TEMPLATES_DIR) -> None:
        self.templates_dir = templates_dir
        self.env = SandboxedEnvironment(
            loader=FileSystemLoader(str(templates_dir)),
            autoescape=_autoescape,
            undefined=StrictUndefined,
            finalize=_finalize,
            trim_blocks=True,
            lstrip_blocks=True,
            keep_trailing_newline=True,
            auto_reload=False,
        )
        self.env.filters["clip"] = _clip

    def _locale_for(self, message_type: str, locale: str | None) -> str:
        for candidate in locale_chain(locale):
            folder = self.templates_dir / message_type / candidate
            if (folder / "subject.txt.j2").is_file() and (folder / "body.txt.j2").is_file():
                return candidate
        raise UnknownMessageType(f"no templates for message type {message_type!r}")

    def render(self, message_type: str, locale: str | None, context: Mapping[str, Any]) -> Rendered:
        """Render ``message_type`` in ``locale`` (with fallback) from plain-data ``context``."""
        if not _MESSAGE_TYPE.fullmatch(message_type):
            raise UnknownMessageType(f"not a message type name: {message_type[:70]!r}")
        used = self._locale_for(message_type, locale)
        base = f"{message_type}/{used}"
        ctx = dict(context)
        ctx.setdefault("locale", used)
        subject = self.env.get_template(f"{base}/subject.txt.j2").render(ctx)
        text = self.env.get_template(f"{base}/body.txt.j2").render(ctx)
        try:
            html_template = self.env.get_template(f"{base}/body.html.j2")
        except TemplateNotFound:
            html = None
        else:
            html = html_template.render(ctx)
        return Rendered(subject=header_text(subject, SUBJECT_MAX), text=text, html=html, locale=used)


@lru_cache(maxsize=4)
def default_renderer(templates_dir: Path = TEMPLATES_DIR) -> Renderer:
    """The shared renderer of the packaged templates (templates are compiled once)."""
    return Renderer(templates_dir)


def render(message_type: str, locale: str | None, context: Mapping[str, Any]) -> Rendered:
    """Render a packaged message type; see ``Renderer.render``."""
    return default_renderer().render(message_type, locale, context)
