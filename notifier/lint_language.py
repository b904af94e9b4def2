"""The language half of the template linter: no English inside a German or Urdu notice.

A notice in another language must not carry English sentences: not in its templates, not in
the labels they look words up in, and not in the rule texts they quote. The check looks for
English function words and the notice vocabulary (``the``, ``within``, ``breach``...) as
separate Latin-script words; data the customer or the vendor wrote (names, record types,
addresses) and the original citation of a foreign statute that has no local form are left out
of it, and the duties of laws that do have one must have it (``duties.l10n.REQUIRED``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from html.parser import HTMLParser
from pathlib import Path

# English words that are not also German words; none of them is a name or a citation.
ENGLISH_WORDS = frozenset(
    [
        "the",
        "and",
        "of",
        "to",
        "your",
        "you",
        "we",
        "our",
        "with",
        "for",
        "this",
        "that",
        "these",
        "is",
        "are",
        "were",
        "has",
        "have",
        "had",
        "will",
        "would",
        "shall",
        "should",
        "must",
        "may",
        "be",
        "been",
        "by",
        "or",
        "from",
        "which",
        "who",
        "when",
        "where",
        "within",
        "after",
        "before",
        "not",
        "if",
        "only",
        "any",
        "it",
        "its",
        "their",
        "they",
        "unless",
        "without",
        "under",
        "yet",
        "please",
        "than",
        "notify",
        "notification",
        "notice",
        "breach",
        "deadline",
        "draft",
        "report",
        "hours",
        "days",
        "affected",
        "unknown",
        "measures",
        "records",
        "planned",
        "done",
    ]
)
CHECKED_LANGUAGES = frozenset({"de", "ur"})
_LATIN_WORD = re.compile(r"[A-Za-z]+(?:'[a-z]+)?")
_JINJA = re.compile(r"\{#.*?#\}|\{%.*?%\}|\{\{.*?\}\}", re.DOTALL)
_TAG = re.compile(r"<[^>]*>")
_MARKER = re.compile(r"⟦[a-z_ ]*⟧")  # the linter's element markers, named in English


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in ("style", "script", "title"):
            self._skip += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script", "title") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.parts.append(data)


def visible_text(html: str) -> str:
    """The text a reader sees in ``html``."""
    parser = _Text()
    parser.feed(html)
    parser.close()
    return " ".join(parser.parts)


def english_words(text: str, allowed: Iterable[str] = ()) -> list[str]:
    """The English words in ``text``, in order of first appearance, after removing each
    ``allowed`` string (data values, citations of foreign statutes)."""
    text = _MARKER.sub(" ", text)
    for value in sorted({a for a in allowed if a}, key=len, reverse=True):
        text = text.replace(value, " ")
    found = [w.lower() for w in _LATIN_WORD.findall(text)]
    return list(dict.fromkeys(w for w in found if w in ENGLISH_WORDS))


def template_source_text(source: str) -> str:
    """What a template writes literally: its text without Jinja tags, comments, expressions
    and HTML tags, plus the string values of the labels it sets (``{% set x = "..." %}``)."""
    labels = " ".join(re.findall(r'"([^"{}]*)"\s*[,}]', " ".join(re.findall(r"\{%\s*set.*?%\}", source, re.DOTALL))))
    return _TAG.sub(" ", _JINJA.sub(" ", source)) + " " + labels


def source_problems(templates_dir: Path, message_types: Iterable[str]) -> list[tuple[str, str, str, list[str]]]:
    """(message type, language, file, English words) for each German or Urdu template file
    that writes English."""
    out = []
    for message_type in message_types:
        for language in sorted(CHECKED_LANGUAGES):
            folder = templates_dir / message_type / language
            for path in sorted(folder.glob("*.j2")) if folder.is_dir() else []:
                words = english_words(template_source_text(path.read_text(encoding="utf-8")))
                if words:
                    out.append((message_type, language, path.name, words))
    return out
