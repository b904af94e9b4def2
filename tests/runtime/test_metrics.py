"""The service's histograms, as Prometheus reads them."""

from __future__ import annotations

import pytest

from breachwatch.runtime.metrics import Histogram


def test_buckets_count_values_up_to_and_including_their_bound() -> None:
    h = Histogram([0.1, 1.0, 10.0])
    h.observe([0.05, 0.1, 0.5, 1.0, 3.0, 10.0, 99.0])
    h.observe([])
    buckets, total = h.cumulative()
    assert buckets == [("0.1", 2.0), ("1", 4.0), ("10", 6.0), ("+Inf", 7.0)]
    assert total == pytest.approx(113.65)
    assert h.count == 7
