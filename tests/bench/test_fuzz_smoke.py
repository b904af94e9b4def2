"""Hostile input, CI-sized: every fuzz target of ``bench.fuzz`` on its seeds and on a few hundred
generated inputs (random bytes, and seeds with bytes inserted, overwritten, cut or repeated).

A failure is a parser breaking its contract; hypothesis prints the smallest input it found.
The long coverage-guided campaign is ``python -m bench.fuzz``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bench.fuzz import TARGETS

# Generated inputs per target: about 4,000 in all, sized so each target takes a second or two.
EXAMPLES = {
    "decode": 1000,
    "settings": 400,
    "model": 40,
    "duties": 80,
    "sendgrid": 150,
    "signatures": 800,
    "miner": 500,
    "logs": 200,
    "dump": 150,
    "console": 500,
}


def mutate(seed: bytes, edits: list[tuple[int, int, bytes]]) -> bytes:
    """``seed`` with each edit applied: insert, overwrite, cut, or repeat a slice at ``position``."""
    out = bytearray(seed)
    for position, op, blob in edits:
        at = position % (len(out) + 1)
        if op == 0:
            out[at:at] = blob
        elif op == 1:
            out[at : at + len(blob)] = blob
        elif op == 2:
            del out[at : at + len(blob) + 1]
        else:
            out[at:at] = out[at : at + 64] * (1 + len(blob) % 8)
    return bytes(out)


def inputs(seeds: list[bytes]) -> st.SearchStrategy[bytes]:
    edits = st.lists(st.tuples(st.integers(0, 1 << 16), st.integers(0, 3), st.binary(max_size=24)), max_size=8)
    return st.one_of(st.binary(max_size=2048), st.builds(mutate, st.sampled_from(seeds), edits))


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz")


@pytest.mark.parametrize("name", list(EXAMPLES))
def test_parser_keeps_its_contract_on_hostile_input(name: str, work: Path) -> None:
    one, seeds = TARGETS[name].prepare(work)
    for seed in seeds:  # the seeds include deep JSON, huge strings, wrong types, odd unicode and times
        one(seed)

    @settings(
        max_examples=EXAMPLES[name],
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much],
    )
    @given(data=inputs(seeds))
    def fuzz(data: bytes) -> None:
        one(data)

    fuzz()


def test_every_target_is_in_the_smoke_run() -> None:
    assert set(EXAMPLES) == set(TARGETS)


def test_mutations_change_seeds() -> None:
    seed = b'{"event_id": "e-1"}'
    assert mutate(seed, [(3, 0, b"XY")]) == b'{"eXYvent_id": "e-1"}'
    assert mutate(seed, [(0, 2, b"")]) == seed[1:]
    assert mutate(seed, [(0, 1, b"[[")]) == b"[[event_id" + seed[10:]
    assert mutate(seed, [(0, 3, b"")]) == seed + seed
