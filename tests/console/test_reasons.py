"""The reasons the incident page lists, repeats folded: what folds into one line and what must stay two."""

from __future__ import annotations

from breachwatch.console.words import distinct_reasons


def test_a_reason_re_reported_with_growing_counts_is_one_line_the_latest_in_the_first_place() -> None:
    reasons = [
        "exported 2 times in the last hour",
        "first activity from Germany (DE) for this user",
        "exported 3 times in the last hour",
        "exported 1,204 times in the last hour",
    ]
    assert distinct_reasons(reasons) == [
        "exported 1,204 times in the last hour",
        "first activity from Germany (DE) for this user",
    ]


def test_the_same_words_in_another_order_and_other_times_are_one_line() -> None:
    reasons = [
        "the accounts tried belong to 3 tenants: t-a, t-b and t-c",
        "the accounts tried belong to 3 tenants: t-c, t-a and t-b",
        "11 failed logins between 15:17:43 and 15:27:30 UTC on 2026-12-01",
        "12 failed logins between 15:17:43 and 15:29:02 UTC on 2026-12-01",
    ]
    assert len(distinct_reasons(reasons)) == 2


def test_runs_from_different_addresses_stay_apart() -> None:
    reasons = [
        "34 failed logins from 192.0.2.140 against 12 accounts",
        "23 failed logins from 192.0.2.97 against 7 accounts",
        "27 failed logins from 192.0.2.140 against 11 accounts",
        "5 failed logins from 2001:db8::7 against 5 accounts",
        "6 failed logins from 2001:db8::8 against 5 accounts",
        "a login from 198.51.100.0/24, a network new for this tenant.",
        "a login from 203.0.113.0/24, a network new for this tenant.",
    ]
    assert distinct_reasons(reasons) == [
        "27 failed logins from 192.0.2.140 against 11 accounts",
        "23 failed logins from 192.0.2.97 against 7 accounts",
        "5 failed logins from 2001:db8::7 against 5 accounts",
        "6 failed logins from 2001:db8::8 against 5 accounts",
        "a login from 198.51.100.0/24, a network new for this tenant.",
        "a login from 203.0.113.0/24, a network new for this tenant.",
    ]


def test_figures_that_look_like_addresses_still_fold() -> None:
    assert len(distinct_reasons(["score 0.95 at 15:13:02", "score 0.97 at 16:01:44"])) == 1
