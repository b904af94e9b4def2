"""Online log template mining: a compact Drain-style miner whose whole state is plain JSON.

Variable parts of a message (numbers, hex ids, addresses, UUIDs, emails, quoted strings,
timestamps, fixed-width register words, values after dot leaders, location ids) are masked
first; messages are then clustered by a fixed-depth prefix tree and token similarity
(He et al., "Drain", ICWS 2017), and positions that differ inside a cluster
become ``<*>``. Written here rather than taken from drain3 so that the state round-trips
through ``json`` (a checkpoint must not be able to run code when loaded) and stays bounded.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import Any

from breachwatch.detectors.logs.caches import remember

WILDCARD = "<*>"
_KEY_WILDCARD = "=" + WILDCARD  # the end of a key=value token whose value varies
_NO_TOKEN = ""  # the prefix key of a message shorter than the tree depth

# One pattern per kind, applied in this order, each only when a cheap test says the line may
# hold one (one combined pattern is slower: every alternative is tried at every position).
# Each pattern consumes its first character before a look-behind checks the one before it:
# a pattern that starts with a character class lets the regex engine skip ahead to
# candidates, and checking only at token starts keeps long tokens from being rescanned
# from every character (quadratic time).
_STR = re.compile(r"""["'](?<![\w\\]["'])(?:(?<=")[^"\n]{0,512}"(?!\s*:)|(?<=')[^'\n]{0,512}'(?!\w))""")
_EMAIL = re.compile(r"[\w.+-](?<![\w.+-][\w.+-])[\w.+-]{0,63}@[\w-]{1,63}(?:\.[\w-]{1,63}){1,8}")
_UUID = re.compile(
    r"[0-9a-fA-F](?<![\w-][0-9a-fA-F])[0-9a-fA-F]{7}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
    r"(?![\w-])"
)
_TS = re.compile(
    r"\d(?<![\w.]\d)\d{3}-\d{2}-\d{2}(?:[T ]\d{2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?)?(?!\w)"
)
# Rare enough (guarded by "::" or seven colons) to afford a look-ahead at each token start.
_IP6 = re.compile(r"(?<![\w:])(?=[0-9a-fA-F:]{0,39}::|(?:[0-9a-fA-F]{1,4}:){7}[0-9a-fA-F])[0-9a-fA-F:]{2,39}(?![\w:])")
_IP4 = re.compile(r"\d(?<![\w.]\d)\d{0,2}(?:\.\d{1,3}){3}(?::\d{1,5})?(?![\w.])")
# Hex ids and numbers in one pass: a run of hex digits is an id only if it mixes digits and
# letters (or starts with 0x); a run of plain digits is a number.
_HEX_NUM = re.compile(
    r"(?P<HEX>\b(?:0[xX][0-9a-fA-F]+|[0-9a-fA-F]{8,128})\b)"
    r"|(?P<NUM>[-+\d](?<![\w.][-+\d])(?:(?<=\d)|\d)\d*(?:[.,]\d+)*)"
)
_DIGIT = re.compile(r"\d")
_ASCII_DIGIT = re.compile(r"[0-9]")
# Infrastructure logs (register dumps, hardware inventories) need three more masks, each run
# only where a cheap test says it may match. Before the masks above: zero-padded words of 8 or
# 16 hex digits and the all-ones word, so one register field gets one type whatever its value
# (``00106404`` would be a number, ``0010b5c8`` a hex id, ``ffffffff`` a word). After them:
# values after dot leaders (``enable..............0``), and ids of several digit-bearing
# segments (``R62-M1-Nf-C:J03-U11``); plain numbers are ``<NUM>`` by then, so these see only
# digits glued to letters.
_WORD = re.compile(r"(?<![\w.:-])(?:0[0-9a-fA-F]{15}|0[0-9a-fA-F]{7}|f{16}|f{8})(?![\w.:-])")
_LEADER = re.compile(r"(?<=\.\.\.)(?=[0-9A-Fa-fxX]*\d)[0-9A-Fa-fxX]+\b")
_LOC = re.compile(
    r"(?<![\w:-])[A-Za-z]{0,4}\d+[A-Za-z]*(?:[-:][A-Za-z]*\d*[A-Za-z]*)*[-:][A-Za-z]{0,4}\d+[A-Za-z]*(?![\w:-])"
)
_LOC_HINT = re.compile(r"\d[A-Za-z]{0,4}[-:][A-Za-z]{0,4}\d")
# A line's shape: its UTF-8 bytes with nonzero ASCII digits made one digit. Every mask treats
# 1-9 alike (only the register-word mask looks for a leading 0), so lines of one shape mask
# alike wherever the masked text keeps no digit (whether it keeps one is itself a matter of
# shape); their template is remembered by shape, which log lines repeat far more often than
# text. Bytes, because ``bytes.translate`` with a 256-byte table is a tenth of the cost of
# ``str.translate`` with a mapping, and "surrogatepass" keeps the key one-to-one for any text.
_SHAPE = bytes.maketrans(b"23456789", b"11111111")
# A timestamp whose date and time are separated by a space: the one non-quoted variable that
# spans two whitespace-separated tokens.
_SPACED_TS = re.compile(r"-\d\d \d\d:\d\d")
# Lines and tokens longer than these are masked afresh each time: they rarely repeat, and
# remembering them would let a few huge lines fill the memory meant for thousands.
_CACHED_LINE_CHARS = 512
_CACHED_TOKEN_CHARS = 128


def _hex_or_num(m: re.Match[str]) -> str:
    if m.lastgroup == "NUM":
        return "<NUM>"
    s = m.group()
    if s.isdigit():
        return "<NUM>"
    if s[1] in "xX" or any(c.isdigit() for c in s):
        return "<HEX>"
    return s  # letters only, such as "deadbeef": a word as far as anyone can tell


def _mask_words(text: str) -> str:
    return _WORD.sub("<HEX>", text) if ("0" in text or "ffffffff" in text) else text


def _mask_glued(masked: str) -> str:
    """Dot-leader values and location ids, in text whose plain numbers are masked already."""
    if "..." in masked:
        masked = _LEADER.sub("<NUM>", masked)
    if _LOC_HINT.search(masked) is not None:
        masked = _LOC.sub("<ID>", masked)
    return masked


def mask(line: str) -> str:
    """Replace the variable parts of one log line by typed placeholders such as ``<NUM>``:
    quoted strings, emails, UUIDs, timestamps, IPv6 and IPv4 addresses, register words, hex
    ids, numbers, dot-leader values and location ids."""
    line = _mask_words(line)
    if '"' in line or "'" in line:
        line = _STR.sub("<STR>", line)
    if "@" in line:
        line = _EMAIL.sub("<EMAIL>", line)
    if _DIGIT.search(line) is None:
        if "::" in line:
            line = _IP6.sub("<IP>", line)
        return line
    return _mask_numeric(line)


def _mask_numeric(line: str) -> str:
    """The masks that need a digit somewhere in the line, after quoted strings and emails."""
    if "-" in line:
        line = _UUID.sub("<UUID>", line)
        line = _TS.sub("<TS>", line)
    if "::" in line or line.count(":") >= 7:
        line = _IP6.sub("<IP>", line)
    if "." in line:
        line = _IP4.sub("<IP>", line)
    return _mask_glued(_HEX_NUM.sub(_hex_or_num, line))


def _masks_per_token(line: str) -> bool:
    """Whether ``line`` can be masked token by token (``_token_masks``) with the result of
    ``mask(line)``: true unless a variable may span whitespace (a quoted string; a date and a
    time separated by a space) or the IPv6 guard counts colons across tokens (seven in the
    line). No other pattern matches whitespace, and every look-around sees whitespace and a
    token's edge alike."""
    return '"' not in line and "'" not in line and line.count(":") < 7 and _SPACED_TS.search(line) is None


def _token_masks(token: str) -> tuple[str, str, bool]:
    """One token of a line ``_masks_per_token`` accepts: its mask if the line (emails masked)
    holds a digit, its mask if it does not, and whether this token (emails masked) holds one."""
    token = _mask_words(token)
    if "@" in token:
        token = _EMAIL.sub("<EMAIL>", token)
    digitless = _IP6.sub("<IP>", token) if "::" in token else token
    return _mask_numeric(token), digitless, _DIGIT.search(token) is not None


def _wildcard_for(old: str, new: str) -> str:
    """What a template token becomes when a line differs there: ``key=<*>`` if both are
    ``key=value`` pairs with the same key (the key is constant text worth keeping), else ``<*>``."""
    cut = old.find("=")
    if cut > 0 and new.startswith(old[: cut + 1]):
        return old[: cut + 1] + WILDCARD
    return WILDCARD


def _has_digit(token: str) -> bool:
    # str.isdigit's notion of a digit (wider than the masks' ``\d``); an ASCII token has none
    # but 0-9, which one regex search finds in C.
    if token.isascii():
        return _ASCII_DIGIT.search(token) is not None
    return any(c.isdigit() for c in token)


class _Template:
    __slots__ = ("leaf", "size", "tid", "tokens")

    def __init__(self, tid: int, tokens: list[str], size: int, leaf: _Leaf) -> None:
        self.tid = tid
        self.tokens = tokens
        self.size = size
        self.leaf = leaf


class _Leaf:
    __slots__ = ("key", "templates", "version")

    def __init__(self, key: tuple[int, str, str]) -> None:
        self.key = key
        self.templates: list[_Template] = []
        # Bumped on any change to this leaf's templates; a cached match is valid only while
        # the leaf it was found in is unchanged, which keeps the cache invisible in results.
        self.version = 0


# A remembered match: the masked line, its template, the template's leaf, the leaf's version, the
# line's token count and the routing epoch of lines of that count when it was found (valid while
# both are unchanged).
_Hit = tuple[str, _Template, _Leaf, int, int, int]


class TemplateMiner:
    """Online Drain-style template miner with bounded size and JSON-able state.

    Parameters
    ----------
    similarity : float
        Share of a template's constant tokens a line must repeat to join it (Drain's ``st``).
    max_templates : int
        Cap on templates kept; the least recently matched one is dropped beyond it.
    max_children : int
        Cap on distinct prefix tokens per tree node; more go to the wildcard branch.
    max_tokens : int
        Tokens of a line that are mined; the rest are folded into one trailing token.
    max_chars : int
        Characters of a line's first line that are mined.
    cache_size : int
        Lines, masked lines and tokens whose masking or match is remembered (a speed-up with
        no effect on results).
    """

    def __init__(
        self,
        similarity: float = 0.5,
        max_templates: int = 2000,
        max_children: int = 100,
        max_tokens: int = 64,
        max_chars: int = 1024,
        cache_size: int = 20_000,
    ) -> None:
        self.similarity = similarity
        self.max_templates = max_templates
        self.max_children = max_children
        self.max_tokens = max_tokens
        self.max_chars = max_chars
        self.cache_size = cache_size
        self._next_id = 1
        # Least recently matched first: the eviction order.
        self._templates: OrderedDict[int, _Template] = OrderedDict()
        self._leaves: dict[tuple[int, str, str], _Leaf] = {}
        self._first: dict[int, set[str]] = {}
        self._second: dict[tuple[int, str], set[str]] = {}
        self._routing_epoch = 0  # counts changes of the tree's routing
        self._route_of: dict[int, int] = {}  # token count -> the epoch its routing last changed
        self._reset_caches()

    def _reset_caches(self) -> None:
        # Log lines repeat heavily, and their tokens more so. Masking is a pure function of the
        # text, and a line's template is the one last found for it while neither its tree leaf
        # nor the routing above has changed since (``_Hit``): both are remembered, so the common
        # line costs one dictionary look-up. ``_known`` holds lines by what their masked text
        # depends on (``_key``); ``_cache`` holds matches by masked text, for a line of a new
        # shape that masks as an old one; ``_literal`` the tokens of a shape that keep digits.
        self._known: dict[bytes | str | tuple[str | bytes, ...], _Hit] = {}
        self._lines: dict[str, _Hit] = {}  # by the line's text, the quickest look-up of all
        self._cache: dict[str, _Hit] = {}
        self._literal: dict[bytes, tuple[int, ...]] = {}
        self._masked_tokens: dict[str, tuple[str, str, bool]] = {}

    # ----------------------------------------------------------------- mining

    def _first_line(self, message: str) -> str:
        """What is mined of ``message``: its first line, cut to ``max_chars``."""
        if len(message) > self.max_chars or "\n" in message:
            message = message[: self.max_chars]
            cut = message.find("\n")
            if cut >= 0:
                message = message[:cut]
        return message

    def _key(self, line: str, shape: bytes) -> str | tuple[str | bytes, ...]:
        """What the masked text of a line whose masked text keeps a digit depends on: its shape
        and the tokens that keep digits (``route=/api/v2/items``) where it is masked token by
        token (whose tokens keep digits is a matter of shape, like the rest), else its text."""
        literal = self._literal.get(shape)
        if literal is None:
            return line
        tokens = line.split()
        return (shape, *[tokens[i] for i in literal])

    def preprocess(self, message: str) -> str:
        """What is mined of ``message``: its first line, cut to ``max_chars``, masked, with runs
        of whitespace made one space."""
        line = self._first_line(message)
        shape = line.encode("utf-8", "surrogatepass").translate(_SHAPE)
        hit = self._known.get(shape) or self._known.get(self._key(line, shape))
        return hit[0] if hit is not None else self._mask_line(line)[0]

    def _mask_line(self, line: str) -> tuple[str, tuple[int, ...] | None]:
        """``line`` masked, and which of its tokens keep a digit (None: not masked by token)."""
        if not _masks_per_token(line):
            return " ".join(mask(line).split()), None
        known = self._masked_tokens
        parts = []
        digits = False
        for tok in line.split():
            m = known.get(tok)
            if m is None:
                m = _token_masks(tok)
                if len(tok) <= _CACHED_TOKEN_CHARS:
                    remember(known, tok, m, self.cache_size)
            parts.append(m)
            digits = digits or m[2]
        chosen = [m[0] if digits else m[1] for m in parts]
        return " ".join(chosen), tuple(i for i, m in enumerate(chosen) if _DIGIT.search(m) is not None)

    def add(self, message: str) -> tuple[int, bool]:
        """Mine one message; return its template id and whether the template is new."""
        line = message if len(message) <= self.max_chars and "\n" not in message else self._first_line(message)
        # Most lines repeat one seen lately, word for word: one look-up of the text, which
        # spares computing the shape and the key (``_key``) that the rest are found by.
        hit = self._lines.get(line)
        shape = None
        if hit is None:
            shape = line.encode("utf-8", "surrogatepass").translate(_SHAPE)
            known = self._known
            hit = known.get(shape) or known.get(self._key(line, shape))
        literal = None
        if hit is not None:
            masked, tpl, leaf, version, n, epoch = hit
            if leaf.version == version and self._route_of.get(n, 0) == epoch:
                tpl.size += 1
                self._templates.move_to_end(tpl.tid)
                if shape is not None and len(line) <= _CACHED_LINE_CHARS:
                    remember(self._lines, line, hit, self.cache_size)
                return tpl.tid, False
        else:
            masked, literal = self._mask_line(line)
        tpl, created = self._match(masked)
        if len(line) <= _CACHED_LINE_CHARS:
            if shape is None:
                shape = line.encode("utf-8", "surrogatepass").translate(_SHAPE)
            self._remember(line, shape, masked, literal)
        return tpl.tid, created

    def _remember(self, line: str, shape: bytes, masked: str, literal: tuple[int, ...] | None) -> None:
        """Remember the match just made for ``masked`` under the key of ``line``: its shape, or
        ``_key``'s where its masked text keeps a digit (``literal``: which tokens, if just masked)."""
        known = self._known
        if len(known) >= self.cache_size:
            known.clear()
            self._literal.clear()
        if _DIGIT.search(masked) is None:
            # A masked line without digits is the mask of every line of its shape.
            key: bytes | str | tuple[str | bytes, ...] = shape
        else:
            if literal:
                self._literal[shape] = literal
            key = self._key(line, shape)
        known[key] = self._cache[masked]
        remember(self._lines, line, known[key], self.cache_size)

    def _match(self, line: str) -> tuple[_Template, bool]:
        """The template of masked ``line`` (created if none is similar enough), generalised to
        cover it; and whether it is new. Remembered by ``line`` (see ``_reset_caches``)."""
        hit = self._cache.get(line)
        if hit is not None:
            _, tpl, leaf, version, n, epoch = hit
            if leaf.version == version and self._route_of.get(n, 0) == epoch:
                tpl.size += 1
                self._templates.move_to_end(tpl.tid)
                return tpl, False
        tokens = line.split()
        if len(tokens) > self.max_tokens:
            tokens = [*tokens[: self.max_tokens - 1], WILDCARD]
        leaf = self._find_leaf(tokens)
        tpl = self._best_match(leaf, tokens) if leaf is not None else None
        created = tpl is None
        if tpl is None:
            tpl = self._create(tokens)
        else:
            self._generalise(tpl, tokens)
            tpl.size += 1
            self._templates.move_to_end(tpl.tid)
        n = len(tokens)
        hit = (line, tpl, tpl.leaf, tpl.leaf.version, n, self._route_of.get(n, 0))
        remember(self._cache, line, hit, self.cache_size)
        return tpl, created

    def _find_leaf(self, tokens: list[str]) -> _Leaf | None:
        n = len(tokens)
        first = self._first.get(n)
        if first is None:
            return None
        k1 = self._search_key(first, tokens[0] if n > 0 else _NO_TOKEN)
        if k1 is None:
            return None
        second = self._second.get((n, k1))
        if second is None:
            return None
        k2 = self._search_key(second, tokens[1] if n > 1 else _NO_TOKEN)
        if k2 is None:
            return None
        return self._leaves.get((n, k1, k2))

    @staticmethod
    def _search_key(children: set[str], token: str) -> str | None:
        if token in children and not _has_digit(token):
            return token
        return WILDCARD if WILDCARD in children else None

    def _insert_key(self, children: set[str], token: str) -> str:
        """The child a new template goes under, Drain's rules: tokens with digits and
        overflow past ``max_children`` share the wildcard branch."""
        if _has_digit(token):
            return WILDCARD
        if token in children:
            return token
        if WILDCARD in children:
            return token if len(children) < self.max_children else WILDCARD
        return token if len(children) + 1 < self.max_children else WILDCARD

    def _best_match(self, leaf: _Leaf, tokens: list[str]) -> _Template | None:
        n = len(tokens)
        best: _Template | None = None
        best_sim = -1.0
        best_params = -1
        for tpl in leaf.templates:
            same = 0
            params = 0
            for a, b in zip(tpl.tokens, tokens, strict=True):
                if a == b:
                    same += 1
                elif a == WILDCARD or (a.endswith(_KEY_WILDCARD) and b.startswith(a[:-3])):
                    params += 1
            sim = same / n if n else 1.0
            if sim > best_sim or (sim == best_sim and params > best_params):
                best, best_sim, best_params = tpl, sim, params
        return best if best is not None and best_sim >= self.similarity else None

    def _generalise(self, tpl: _Template, tokens: list[str]) -> None:
        changed = False
        tt = tpl.tokens
        for i, tok in enumerate(tokens):
            old = tt[i]
            if old != tok and old != WILDCARD:
                new = _wildcard_for(old, tok)
                if new != old:
                    tt[i] = new
                    changed = True
        if changed:
            tpl.leaf.version += 1

    def _create(self, tokens: list[str]) -> _Template:
        n = len(tokens)
        first = self._first.setdefault(n, set())
        k1 = self._insert_key(first, tokens[0] if n > 0 else _NO_TOKEN)
        if k1 not in first:
            first.add(k1)
            self._reroute(n)
        second = self._second.setdefault((n, k1), set())
        k2 = self._insert_key(second, tokens[1] if n > 1 else _NO_TOKEN)
        if k2 not in second:
            second.add(k2)
            self._reroute(n)
        key = (n, k1, k2)
        leaf = self._leaves.get(key)
        if leaf is None:
            leaf = self._leaves[key] = _Leaf(key)
        tpl = _Template(self._next_id, list(tokens), 1, leaf)
        self._next_id += 1
        leaf.templates.append(tpl)
        leaf.version += 1
        self._templates[tpl.tid] = tpl
        while len(self._templates) > self.max_templates:
            self._evict(next(iter(self._templates)))
        return tpl

    def _evict(self, tid: int) -> None:
        tpl = self._templates.pop(tid)
        leaf = tpl.leaf
        leaf.templates.remove(tpl)
        leaf.version += 1
        if not leaf.templates:
            # Prune the empty branch so the tree is exactly what its templates imply; the
            # state holds only templates, and a reload must route every line the same way.
            n, k1, k2 = leaf.key
            del self._leaves[leaf.key]
            second = self._second[(n, k1)]
            second.discard(k2)
            if not second:
                del self._second[(n, k1)]
                first = self._first[n]
                first.discard(k1)
                if not first:
                    del self._first[n]
            self._reroute(n)

    def _reroute(self, n: int) -> None:
        """Lines of ``n`` tokens may now be routed to another leaf: their remembered matches
        lapse (the routing of lines of other lengths is untouched)."""
        self._routing_epoch += 1
        self._route_of[n] = self._routing_epoch

    # ----------------------------------------------------------------- look-ups

    def template(self, tid: int) -> str | None:
        """The template text of ``tid``, or ``None`` if it was never made or was evicted."""
        tpl = self._templates.get(tid)
        return " ".join(tpl.tokens) if tpl is not None else None

    def size(self, tid: int) -> int:
        """How many lines matched template ``tid`` (0 if unknown)."""
        tpl = self._templates.get(tid)
        return tpl.size if tpl is not None else 0

    def __len__(self) -> int:
        return len(self._templates)

    def __contains__(self, tid: object) -> bool:
        return tid in self._templates

    # ----------------------------------------------------------------- state

    def state(self) -> dict[str, Any]:
        """Plain JSON-able state: templates in eviction order, each with its tree leaf."""
        return {
            "next_id": self._next_id,
            # Leaves keep their templates in match-priority order, which decides ties.
            "leaves": [
                [list(key), [[t.tid, list(t.tokens), t.size] for t in leaf.templates]]
                for key, leaf in self._leaves.items()
            ],
            "lru": list(self._templates),
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore what ``state()`` returned (the cache starts empty; results are unaffected)."""
        self._next_id = int(state["next_id"])
        self._templates = OrderedDict()
        self._leaves = {}
        self._first = {}
        self._second = {}
        self._reset_caches()
        self._routing_epoch = 0
        self._route_of = {}
        by_id: dict[int, _Template] = {}
        for raw_key, templates in state["leaves"]:
            n, k1, k2 = int(raw_key[0]), str(raw_key[1]), str(raw_key[2])
            leaf = _Leaf((n, k1, k2))
            self._leaves[leaf.key] = leaf
            self._first.setdefault(n, set()).add(k1)
            self._second.setdefault((n, k1), set()).add(k2)
            for tid, tokens, size in templates:
                tpl = _Template(int(tid), [str(t) for t in tokens], int(size), leaf)
                leaf.templates.append(tpl)
                by_id[tpl.tid] = tpl
        for tid in state["lru"]:
            self._templates[int(tid)] = by_id[int(tid)]
