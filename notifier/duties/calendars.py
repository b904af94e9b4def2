"""Deadline arithmetic: elapsed hours, calendar days and months, US / Brazilian business days.

Conventions (also stated in ``rules/_policy.toml``, where counsel reads them). Each fixed
deadline has a legal due time (what the law allows, on its earliest defensible reading) and an
internal target (never later):

* ``hours``: elapsed time, N x 1 h after the clock start. Due and target are the same.
* ``calendar_days``: "within N days after X" excludes the day of X and ends when the Nth
  following local day ends (CA Gov. Code 6800 and 6806, N.Y. Gen. Constr. Law 19-20, Acts
  Interpretation Act 1901 (Cth) s36, EU Regulation 1182/71 art. 3). The local day is the
  jurisdiction's; a jurisdiction with several zones takes the zone whose day ends first for
  this clock start. Extensions for a last day that is a weekend or holiday are not taken.
  Target: the earlier of that and N x 24 h elapsed.
* ``calendar_months``: ends when the local day with the same number N months later ends (the
  last day of the month where there is no such day). Target: that day at the start's local time.
* business days: on the calendar's own local dates, the Nth business day after the clock
  start's date (the start day excluded). Due when that day ends, or at the rule's cut-off
  time (EDGAR: 17:30 Eastern); target: that day at the clock start's local time, if earlier.

Holidays are computed by rule, not listed, so no year runs out.
"""

from __future__ import annotations

import functools
from calendar import monthrange
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from types import MappingProxyType
from typing import Literal
from zoneinfo import ZoneInfo

FixedUnit = Literal["hours", "calendar_days", "calendar_months", "us_business_days", "br_business_days"]
FIXED_UNITS: tuple[str, ...] = ("hours", "calendar_days", "calendar_months", "us_business_days", "br_business_days")

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
    """Brazil's statutory national holidays (feriados nacionais) of ``year``.

    Only what federal law declares: Lei 662/1949 art. 1 as worded by Lei 10.607/2002 (1 January,
    21 April, 1 May, 7 September, 2 November, 15 November, 25 December), Lei 6.802/1980
    (12 October) and Lei 14.759/2023 (20 November, from 2024). Carnival, Ash Wednesday and Corpus
    Christi are optional days off for federal staff (ponto facultativo, set each year by
    ministerial order), and Good Friday is a religious holiday that municipal law declares under
    Lei 9.093/1995 art. 2: none is a national holiday, so all count as business days, which is
    the earlier reading. Brazil does not move holidays that fall on a weekend.
    """
    days = {
        date(year, 1, 1): "Confraternização Universal (New Year's Day)",
        date(year, 4, 21): "Tiradentes",
        date(year, 5, 1): "Dia do Trabalho (Labour Day)",
        date(year, 9, 7): "Independência do Brasil",
        date(year, 10, 12): "Nossa Senhora Aparecida",
        date(year, 11, 2): "Finados (All Souls' Day)",
        date(year, 11, 15): "Proclamação da República",
        date(year, 12, 25): "Natal (Christmas Day)",
    }
    # Lei 14.759 of 21 December 2023 made 20 November a national holiday; its first was in 2024.
    if year >= 2024:
        days[date(year, 11, 20)] = "Dia Nacional de Zumbi e da Consciência Negra"
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

    def nth_business_day_after(self, day: date, days: int) -> date:
        """The Nth business day after ``day`` (``day`` itself is not counted)."""
        if days < 1:
            raise ValueError(f"business days must be at least 1, got {days}")
        counted = 0
        while counted < days:
            day += timedelta(days=1)
            counted += self.is_business_day(day)
        return day

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
    if unit == "calendar_months":
        return due_in_months(start, amount, ("UTC",)).target
    if unit in BUSINESS_CALENDARS:
        return BUSINESS_CALENDARS[unit].add_business_days(start, amount)
    raise ValueError(f"unknown deadline unit {unit!r}; expected one of {', '.join(FIXED_UNITS)}")


# --- Legal due times -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DueTime:
    """When a fixed deadline falls due: legal due time and internal target, both in UTC.

    ``last_day`` is the last local day the act may be done on and ``zone`` the zone whose day
    it is (both None for elapsed hours).
    """

    due: datetime
    target: datetime
    last_day: date | None = None
    zone: str | None = None


def local_date(moment: datetime, zone: str) -> date:
    """The date on the wall calendar of ``zone`` at ``moment``."""
    return _require_aware(moment).astimezone(ZoneInfo(zone)).date()


def end_of_day(day: date, zone: str) -> datetime:
    """The instant the local ``day`` ends in ``zone`` (when the next local day begins), in UTC."""
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=ZoneInfo(zone)).astimezone(UTC)


def add_months(day: date, months: int) -> date:
    """The day with the same number ``months`` later, or that month's last day if it has none."""
    year, month_index = divmod(day.year * 12 + day.month - 1 + months, 12)
    return date(year, month_index + 1, min(day.day, monthrange(year, month_index + 1)[1]))


def _earliest_end(days: Sequence[tuple[date, str]]) -> tuple[datetime, date, str]:
    """Of several (last local day, zone) pairs, the one whose day ends first."""
    if not days:
        raise ValueError("a day-based deadline needs at least one time zone")
    return min((end_of_day(day, zone), day, zone) for day, zone in days)


def due_in_days(start: datetime, days: int, zones: Sequence[str]) -> DueTime:
    """N calendar days after ``start``: the end of the Nth following local day, earliest zone."""
    due, last, zone = _earliest_end([(local_date(start, z) + timedelta(days=days), z) for z in zones])
    return DueTime(due=due, target=min(due, add_calendar_days(start, days)), last_day=last, zone=zone)


def due_in_months(start: datetime, months: int, zones: Sequence[str]) -> DueTime:
    """N months after ``start``: the end of the same-numbered local day, earliest zone."""
    due, last, zone = _earliest_end([(add_months(local_date(start, z), months), z) for z in zones])
    same_time = datetime.combine(last, start.astimezone(ZoneInfo(zone)).time(), tzinfo=ZoneInfo(zone))
    return DueTime(due=due, target=min(due, same_time.astimezone(UTC)), last_day=last, zone=zone)


def due_in_business_days(start: datetime, days: int, calendar: BusinessCalendar, cutoff: time | None) -> DueTime:
    """N business days after ``start``'s local date: due when that day ends or at ``cutoff``."""
    zone = ZoneInfo(calendar.zone)
    local = _require_aware(start).astimezone(zone)
    last = calendar.nth_business_day_after(local.date(), days)
    due = end_of_day(last, calendar.zone) if cutoff is None else datetime.combine(last, cutoff, zone).astimezone(UTC)
    same_time = datetime.combine(last, local.time(), tzinfo=zone).astimezone(UTC)
    return DueTime(due=due, target=min(due, same_time), last_day=last, zone=calendar.zone)


def due_time(
    start: datetime, amount: int, unit: FixedUnit, zones: Sequence[str], cutoff: time | None = None
) -> DueTime:
    """The legal due time and internal target of ``amount`` ``unit`` counted from ``start``.

    ``zones`` are the jurisdiction's time zones (day and month counts take the one whose day
    ends first); business days use their calendar's own zone. ``cutoff`` is a local time of day
    by which the act must be done on the last day (business days only).
    """
    if amount < 1:
        raise ValueError(f"a deadline amount must be at least 1, got {amount}")
    if unit == "hours":
        due = add_hours(start, amount)
        return DueTime(due=due, target=due)
    if unit == "calendar_days":
        return due_in_days(start, amount, zones)
    if unit == "calendar_months":
        return due_in_months(start, amount, zones)
    if unit in BUSINESS_CALENDARS:
        return due_in_business_days(start, amount, BUSINESS_CALENDARS[unit], cutoff)
    raise ValueError(f"unknown deadline unit {unit!r}; expected one of {', '.join(FIXED_UNITS)}")


def calendar_year(moment: datetime, zones: Sequence[str]) -> int:
    """The local calendar year of ``moment``; where zones disagree (at New Year), the earlier."""
    return min(local_date(moment, z).year for z in zones)


def due_after_year_end(year: int, days: int, zones: Sequence[str]) -> DueTime:
    """N days after the end of local calendar ``year``: the end of the Nth day of the next year."""
    due, last, zone = _earliest_end([(date(year, 12, 31) + timedelta(days=days), z) for z in zones])
    return DueTime(due=due, target=due, last_day=last, zone=zone)


def year_end(year: int, zones: Sequence[str]) -> datetime:
    """The first instant after local calendar ``year`` ends, in the zone where it ends first."""
    return _earliest_end([(date(year, 12, 31), z) for z in zones])[0]
