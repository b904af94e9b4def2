"""``bench.stages`` charges a real profile's time to the part of the service that spent it."""

from __future__ import annotations

import json
import time

from pyinstrument import Profiler

from bench.stages import IDLE, OTHER, per_event_us, stage_of, stage_seconds
from breachwatch.streams.decode import decode
from tests.streams.test_decode import GOOD

LINE = json.dumps(GOOD).encode()  # a valid access event


def test_library_time_is_charged_to_the_part_of_the_service_that_called_it() -> None:
    profiler = Profiler(interval=0.0005)
    profiler.start()
    started = time.perf_counter()
    while time.perf_counter() - started < 0.3:
        for _ in range(200):
            decode("erp.access", LINE, 10_000)
    time.sleep(0.2)
    profiler.stop()
    seconds = stage_seconds(profiler.last_session.root_frame())
    # pydantic's validator (C, under pydantic's own Python) is the decoder's time, the sleep is
    # waiting, and only this test's loop is left over.
    assert seconds["decode (pydantic)"] > 0.2
    assert seconds[IDLE] > 0.15
    assert seconds.get(OTHER, 0.0) < 0.5 * seconds["decode (pydantic)"]


def test_stage_names_follow_the_innermost_known_file() -> None:
    assert stage_of("/srv/app/detectors/rules/logins.py") == "detect: rules"
    assert stage_of("/srv/app/detectors/profiles.py") == "detect: learned (profiles, features, forest)"
    assert stage_of("/srv/app/detectors/templates_miner.py") == "detect: log sessions"
    assert stage_of("/srv/app/detectors/logs/count_model.py") == "detect: log sessions"
    assert stage_of("/usr/lib/python3/site-packages/kafka/record/default_records.py").startswith("kafka-python")
    assert stage_of("/usr/lib/python3/site-packages/sklearn/tree/_classes.py") is None
    # The service's own loop and the checkpoints' encoding are named, not left as "other".
    assert stage_of("/srv/app/runtime/pipeline.py").startswith("consumer loop")
    assert stage_of("/srv/app/runtime/checkpoints.py").startswith("store")


def test_stages_are_scaled_to_the_unprofiled_cost_per_event() -> None:
    us = per_event_us({"a": 3.0, "b": 1.0}, 40.0)
    assert us == {"a": 30.0, "b": 10.0}
    assert list(us) == ["a", "b"]
