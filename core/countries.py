"""Country names for the ISO 3166 codes events carry: people read "Qatar", not "QA"."""

from __future__ import annotations

from functools import lru_cache

from babel import Locale


@lru_cache(maxsize=1)
def _names() -> dict[str, str]:
    return dict(Locale("en").territories)


def name(code: object) -> str:
    """``Qatar`` for ``QA``; anything that is not a known two-letter code is returned as it is."""
    text = "" if code is None else str(code)
    return _names().get(text.upper(), text) if len(text) == 2 else text


def labelled(code: object) -> str:
    """``Qatar (QA)``: the name for people, the code for searching logs."""
    text = "" if code is None else str(code)
    full = name(text)
    return f"{full} ({text})" if full != text else text
