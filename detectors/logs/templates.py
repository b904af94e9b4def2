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
# A line's shape: nonzero digits made one digit. Every mask treats 1-9 alike (only the
# register-word mask looks for a leading 0), so lines of one shape mask alike wherever the
# masked text keeps no digit; those are remembered by shape, which log lines repeat far more
# often than text.
_SHAPE = str.maketrans("23456789", "11111111")
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
        self._routing_epoch = 0
        self._cache: dict[str, tuple[_Template, _Leaf, int, int]] = {}
        # Log lines repeat heavily, and their tokens more so: masking is a pure function of
        # the text, so its results are remembered, per line shape, per line and per token.
        self._masked_shapes: dict[str, str] = {}
        self._masked_lines: dict[str, str] = {}
        self._masked_tokens: dict[str, tuple[str, str, bool]] = {}

    # ----------------------------------------------------------------- mining

    def preprocess(self, message: str) -> str:
        """What is mined of ``message``: its first line, cut to ``max_chars``, masked, with runs
        of whitespace made one space. Remembered per line and per token, so a line or a token
        seen before is not masked again."""
        line = message[: self.max_chars]
        cut = line.find("\n")
        if cut >= 0:
            line = line[:cut]
        shape = line.translate(_SHAPE)
        masked = self._masked_shapes.get(shape)
        if masked is not None:
            return masked
        masked = self._masked_lines.get(line)
        if masked is not None:
            return masked
        masked = self._mask_line(line)
        if len(line) <= _CACHED_LINE_CHARS:
            # A masked line without digits is the mask of every line of its shape.
            cache = self._masked_lines if _DIGIT.search(masked) is not None else self._masked_shapes
            key = line if cache is self._masked_lines else shape
            if len(cache) >= self.cache_size:
                cache.clear()
            cache[key] = masked
        return masked

    def _mask_line(self, line: str) -> str:
        if _masks_per_token(line):
            known = self._masked_tokens
            parts = []
            digits = False
            for tok in line.split():
                m = known.get(tok)
                if m is None:
                    m = _token_masks(tok)
                    if len(tok) <= _CACHED_TOKEN_CHARS:
                        if len(known) >= self.cache_size:
                            known.clear()
                        known[tok] = m
                parts.append(m)
                digits = digits or m[2]
            return " ".join([m[0] if digits else m[1] for m in parts])
        return " ".join(mask(line).split())

    def add(self, message: str) -> tuple[int, bool]:
        """Mine one message; return its template id and whether the template is new."""
        line = self.preprocess(message)
        hit = self._cache.get(line)
        if hit is not None:
            tpl, leaf, version, epoch = hit
            if leaf.version == version and epoch == self._routing_epoch:
                tpl.size += 1
                self._templates.move_to_end(tpl.tid)
                return tpl.tid, False
        tokens = line.split()
        if len(tokens) > self.max_tokens:
            tokens = [*tokens[: self.max_tokens - 1], WILDCARD]
        leaf = self._find_leaf(tokens)
        tpl = self._best_match(leaf, tokens) if leaf is not None else None
        created = tpl is None
        if tpl is None:
            tpl = self._create(tokens)
            leaf = tpl.leaf
        else:
            self._generalise(tpl, tokens)
            tpl.size += 1
            self._templates.move_to_end(tpl.tid)
        if len(self._cache) >= self.cache_size:
            self._cache.clear()
        self._cache[line] = (tpl, tpl.leaf, tpl.leaf.version, self._routing_epoch)
        return tpl.tid, created

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
            self._routing_epoch += 1
        second = self._second.setdefault((n, k1), set())
        k2 = self._insert_key(second, tokens[1] if n > 1 else _NO_TOKEN)
        if k2 not in second:
            second.add(k2)
            self._routing_epoch += 1
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
            self._routing_epoch += 1

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
        self._cache = {}
        self._masked_shapes = {}
        self._masked_lines = {}
        self._masked_tokens = {}
        self._routing_epoch = 0
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
