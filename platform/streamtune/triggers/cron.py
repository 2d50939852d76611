"""Five-field cron expressions (minute hour day-of-month month day-of-week), in UTC.

Each field takes ``*``, a number, a range ``a-b``, a list ``a,b``, and a step ``*/n`` or ``a-b/n``. Day of
week runs 0-6 from Sunday (7 is Sunday too). As in classic cron, when both day fields are restricted a day
matches either of them. ``@hourly``, ``@daily`` (``@midnight``), ``@weekly`` and ``@monthly`` are shorthands.

Example:
    >>> c = Cron.parse("30 2 * * *")
    >>> import datetime as dt
    >>> ts = dt.datetime(2026, 11, 26, 14, 0, tzinfo=dt.timezone.utc).timestamp()
    >>> dt.datetime.fromtimestamp(c.latest(ts), dt.timezone.utc).isoformat()
    '2026-11-26T02:30:00+00:00'
    >>> Cron.parse("*/15 * * * *").latest(ts + 1000) - ts
    900.0
    >>> Cron.parse("61 * * * *")  # doctest: +IGNORE_EXCEPTION_DETAIL
    Traceback (most recent call last):
    ValueError: minute field "61": 61 is outside 0-59
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

__all__ = ["Cron"]

_FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7))
_SHORTHANDS = {"@hourly": "0 * * * *", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
               "@weekly": "0 0 * * 0", "@monthly": "0 0 1 * *"}
_LOOKBACK_DAYS = 366 * 5
"""How far back :meth:`Cron.latest` looks for a slot (a 29 February may be years away)."""


def _part(text: str, name: str, low: int, high: int) -> set[int]:
    base, _, step_text = text.partition("/")
    step = int(step_text) if step_text else 1
    if step < 1:
        raise ValueError(f'{name} field "{text}": the step must be 1 or more')
    if base == "*":
        first, last = low, high
    elif "-" in base:
        a, b = base.split("-", 1)
        first, last = int(a), int(b)
    else:
        first = last = int(base)
        if step_text:
            last = high
    for value in (first, last):
        if not low <= value <= high:
            raise ValueError(f'{name} field "{text}": {value} is outside {low}-{high}')
    if first > last:
        raise ValueError(f'{name} field "{text}": the range runs backwards')
    return set(range(first, last + 1, step))


def _field(text: str, name: str, low: int, high: int) -> set[int]:
    try:
        values: set[int] = set()
        for part in text.split(","):
            values |= _part(part, name, low, high)
        return values
    except ValueError as exc:
        if str(exc).startswith(name):
            raise
        raise ValueError(f'{name} field "{text}": not a number, range, list or step') from None


@dataclass(frozen=True)
class Cron:
    """A parsed cron expression; :meth:`latest` gives the last slot at or before a time."""

    expression: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]
    any_day: bool
    any_weekday: bool

    @classmethod
    def parse(cls, expression: str) -> Cron:
        """Parse ``expression``; raises ValueError naming the field, its text and the rule."""
        text = _SHORTHANDS.get(expression.strip(), expression.strip())
        parts = text.split()
        if len(parts) != 5:
            raise ValueError(f'"{expression}" has {len(parts)} fields; a cron expression has 5 '
                             "(minute hour day-of-month month day-of-week) or is @hourly/@daily/@weekly/@monthly")
        sets = [_field(p, *spec) for p, spec in zip(parts, _FIELDS, strict=True)]
        weekdays = {d % 7 for d in sets[4]}
        return cls(expression, frozenset(sets[0]), frozenset(sets[1]), frozenset(sets[2]), frozenset(sets[3]),
                   frozenset(weekdays), parts[2] == "*", parts[4] == "*")

    def _day_matches(self, day: dt.date) -> bool:
        if day.month not in self.months:
            return False
        in_month, in_week = day.day in self.days, (day.weekday() + 1) % 7 in self.weekdays
        if self.any_day or self.any_weekday:
            return in_month and in_week
        return in_month or in_week

    def latest(self, now: float) -> float | None:
        """Unix time of the latest slot at or before ``now`` (UTC), or None if none in the last five years."""
        moment = dt.datetime.fromtimestamp(now, dt.UTC).replace(second=0, microsecond=0)
        day = moment.date()
        for back in range(_LOOKBACK_DAYS):
            if self._day_matches(day):
                limit = (moment.hour, moment.minute) if back == 0 else (23, 59)
                slots = [(h, m) for h in self.hours for m in self.minutes if (h, m) <= limit]
                if slots:
                    h, m = max(slots)
                    return dt.datetime(day.year, day.month, day.day, h, m, tzinfo=dt.UTC).timestamp()
            day -= dt.timedelta(days=1)
        return None
