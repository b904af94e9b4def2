"""Deadline arithmetic: elapsed hours, calendar days, and US / Brazilian business days.

Conventions (also stated in ``rules/_policy.toml``, where counsel reads them):

* ``hours`` and ``calendar_days`` are elapsed time: N days is N x 24 hours after the clock
  start, computed in UTC, so a daylight-saving change never moves a deadline. This falls due
  no later than the "end of the Nth day" reading, so it is the safer of the two.
* business days: take the clock start's date in the calendar's home time zone, count the
  following dates that are business days (Monday to Friday and not a holiday) and fall due on
  the Nth of them at the same local wall-clock time as the clock start. Local dates matter
  here because a holiday is a local date (a Tuesday-evening start in New York is already
  Wednesday in UTC).

Holidays are computed by rule, not listed, so no year runs out.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from types import MappingProxyType
from typing import Literal
from zoneinfo import ZoneInfo

FixedUnit = Literal["hours", "calendar_days", "us_business_days", "br_business_days"]
FIXED_UNITS: tuple[str, ...] = ("hours", "calendar_days", "us_business_days", "br_business_days")

MONDAY, THURSDAY, FRIDAY, SATURDAY, SUNDAY = 0, 3, 4, 5, 6


def easter_sunday(year: int) -> date:
    """Gregorian Easter Sunday (the anonymous Gregorian computus), valid for any year after 1582."""
    golden = year % 19
    century, year_of_century = divmod(year, 100)
    leap_centuries, century_rest = divmod(century, 4)
    correction = (century + 8) // 25
    moon_correction = (century - correction + 1) // 3
    epact = (19 * golden + century - leap_centuries - moon_correction + 15) % 30
    leap_years, year_rest = divmod(year_of_century, 4)
    weekday_offset = (32 + 2 * century_rest + 2 * leap_years - epact - year_rest) % 7
    shift = (golden + 11 * epact + 22 * weekday_offset) // 451
    month, day = divmod(epact + weekday_offset - 7 * shift + 114, 31)
    return date(year, month, day + 1)


def nth_weekday(year: int, month: int, weekday: int, n: int) -> date:
    """The nth (1-based) given weekday of a month, e.g. the 4th Thursday of November."""
    first = date(year, month, 1)
    return first + timedelta(days=(weekday - first.weekday()) % 7 + 7 * (n - 1))


def last_weekday(year: int, month: int, weekday: int) -> date:
    """The last given weekday of a month, e.g. the last Monday of May."""
    next_month = date(year + month // 12, month % 12 + 1, 1)
    last = next_month - timedelta(days=1)
    return last - timedelta(days=(last.weekday() - weekday) % 7)


def _observed(day: date) -> date:
    """US federal observance (5 U.S.C. 6103 and EO 11582): Saturday -> Friday, Sunday -> Monday."""
    if day.weekday() == SATURDAY:
        return day - timedelta(days=1)
    if day.weekday() == SUNDAY:
        return day + timedelta(days=1)
    return day


def _us_legal_holidays(year: int) -> list[tuple[date, str]]:
    """The eleven federal legal holidays of a year on their legal (not observed) dates."""
    days = [
        (date(year, 1, 1), "New Year's Day"),
        (nth_weekday(year, 1, MONDAY, 3), "Birthday of Martin Luther King, Jr."),
        (nth_weekday(year, 2, MONDAY, 3), "Washington's Birthday (Presidents Day)"),
        (last_weekday(year, 5, MONDAY), "Memorial Day"),
        (date(year, 7, 4), "Independence Day"),
        (nth_weekday(year, 9, MONDAY, 1), "Labor Day"),
        (nth_weekday(year, 10, MONDAY, 2), "Columbus Day"),
        (date(year, 11, 11), "Veterans Day"),
        (nth_weekday(year, 11, THURSDAY, 4), "Thanksgiving Day"),
        (date(year, 12, 25), "Christmas Day"),
    ]
    # Juneteenth became a federal holiday in June 2021.
    if year >= 2021:
        days.append((date(year, 6, 19), "Juneteenth National Independence Day"))
    return days


@functools.lru_cache(maxsize=64)
def us_federal_holidays(year: int) -> Mapping[date, str]:
    """Observed US federal holidays that fall in ``year``.

    A Saturday New Year's Day of ``year + 1`` is observed on 31 December of ``year``, so that
    date is included here.
    """
    observed: dict[date, str] = {}
    for day, name in _us_legal_holidays(year) + _us_legal_holidays(year + 1):
        moved = _observed(day)
        if moved.year == year:
            observed[moved] = name if moved == day else f"{name} (observed)"
    return MappingProxyType(dict(sorted(observed.items())))


@functools.lru_cache(maxsize=64)
def br_national_holidays(year: int) -> Mapping[date, str]:
    """Brazilian national holidays and national optional days off of ``year``.

    Carnival Monday and Tuesday and Corpus Christi are federal optional days (pontos
    facultativos) rather than statutory holidays, but public offices, ANPD included, close on
    them, so they are not counted as business days. Brazil does not move holidays that fall
    on a weekend.
    """
    easter = easter_sunday(year)
    days = {
        date(year, 1, 1): "Confraternização Universal (New Year's Day)",
        easter - timedelta(days=48): "Carnival Monday",
        easter - timedelta(days=47): "Carnival Tuesday",
        easter - timedelta(days=2): "Good Friday (Paixão de Cristo)",
        date(year, 4, 21): "Tiradentes",
        date(year, 5, 1): "Labour Day (Dia do Trabalho)",
        easter + timedelta(days=60): "Corpus Christi",
        date(year, 9, 7): "Independence Day",
        date(year, 10, 12): "Nossa Senhora Aparecida",
        date(year, 11, 2): "All Souls' Day (Finados)",
        date(year, 11, 15): "Proclamation of the Republic",
        date(year, 12, 25): "Christmas Day",
    }
    # Law 14,759/2023 made Black Consciousness Day a national holiday from 2024.
    if year >= 2024:
        days[date(year, 11, 20)] = "Black Consciousness Day (Consciência Negra)"
    return MappingProxyType(dict(sorted(days.items())))


@dataclass(frozen=True, slots=True)
class BusinessCalendar:
    """A business-day calendar: weekends off plus a rule-computed holiday set, in a home zone."""

    name: str
    zone: str  # IANA zone whose local dates the holidays are
    holidays: Callable[[int], Mapping[date, str]]

    def holiday_name(self, day: date) -> str | None:
        """The holiday on ``day``, or None."""
        return self.holidays(day.year).get(day)

    def is_business_day(self, day: date) -> bool:
        """Monday to Friday and not a holiday."""
        return day.weekday() < SATURDAY and self.holiday_name(day) is None

    def add_business_days(self, start: datetime, days: int) -> datetime:
        """The Nth business day after ``start``'s local date, at ``start``'s local time, in UTC."""
        if days < 1:
            raise ValueError(f"business days must be at least 1, got {days}")
        zone = ZoneInfo(self.zone)
        local = _require_aware(start).astimezone(zone)
        day = local.date()
        counted = 0
        while counted < days:
            day += timedelta(days=1)
            if self.is_business_day(day):
                counted += 1
        # US zones change clocks only on Sundays and Brazil has no DST, so the wall-clock
        # time always exists exactly once on a business day.
        due_local = datetime.combine(day, local.time(), tzinfo=zone)
        return due_local.astimezone(UTC)


US_FEDERAL = BusinessCalendar("US federal business days", "America/New_York", us_federal_holidays)
BRAZIL = BusinessCalendar("Brazilian national business days", "America/Sao_Paulo", br_national_holidays)
BUSINESS_CALENDARS: Mapping[str, BusinessCalendar] = MappingProxyType(
    {"us_business_days": US_FEDERAL, "br_business_days": BRAZIL}
)


def _require_aware(moment: datetime) -> datetime:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"a deadline needs a time-zone-aware clock start, got naive {moment.isoformat()}")
    return moment


def add_hours(start: datetime, hours: int) -> datetime:
    """Elapsed hours after ``start``, in UTC."""
    return _require_aware(start).astimezone(UTC) + timedelta(hours=hours)


def add_calendar_days(start: datetime, days: int) -> datetime:
    """N x 24 hours after ``start``, in UTC (same UTC time of day, N dates later)."""
    return _require_aware(start).astimezone(UTC) + timedelta(days=days)


def advance(start: datetime, amount: int, unit: FixedUnit) -> datetime:
    """When a fixed deadline of ``amount`` ``unit`` counted from ``start`` falls due, in UTC."""
    if amount < 1:
        raise ValueError(f"a deadline amount must be at least 1, got {amount}")
    if unit == "hours":
        return add_hours(start, amount)
    if unit == "calendar_days":
        return add_calendar_days(start, amount)
    if unit in BUSINESS_CALENDARS:
        return BUSINESS_CALENDARS[unit].add_business_days(start, amount)
    raise ValueError(f"unknown deadline unit {unit!r}; expected one of {', '.join(FIXED_UNITS)}")
