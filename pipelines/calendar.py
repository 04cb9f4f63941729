"""A contract's calendar for Dagster: when deliveries are due, when it runs, its periods.

From the plan's optional `delivery` section (defaults in brackets):

    delivery:
      due_cron: "0 9 15 1,4,7,10 *"   # when each quarter's delivery is due [09:00 on the 15th
                                      #   of the month after each quarter]
      window_days: 14                 # a load this many days before a due time counts [14]
      schedule_cron: "0 6 * * 1"      # the periodic run [the due time]
      timezone: Europe/Stockholm      # of both crons [Europe/Stockholm]

The raw assets get a cron freshness policy: at each due time the contract's deliveries must
have been loaded within the window before it, or Dagster shows them as late (FAIL) until a
delivery is loaded. Measurement periods become time-window partitions (quarters of the
measurement period, keys are their first day).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dagster import FreshnessPolicy, TimeWindowPartitionsDefinition
from dagster._utils.schedules import is_valid_cron_schedule

from utfall.errors import UserError
from utfall.plan import Plan

DEFAULT_DUE_CRON = "0 9 15 1,4,7,10 *"
DEFAULT_WINDOW_DAYS = 14
DEFAULT_TIMEZONE = "Europe/Stockholm"
#: First day of each quarter: the partitions' cron.
QUARTER_CRON = "0 0 1 1,4,7,10 *"


class CalendarError(UserError):
    """The plan's delivery calendar cannot be used."""


@dataclass(frozen=True)
class Calendar:
    due_cron: str
    window: dt.timedelta
    schedule_cron: str
    timezone: str

    def freshness(self) -> FreshnessPolicy:
        """Fresh when loaded within the window before the latest due time."""
        return FreshnessPolicy.cron(
            deadline_cron=self.due_cron, lower_bound_delta=self.window, timezone=self.timezone
        )


def calendar(plan: Plan) -> Calendar:
    """The plan's delivery calendar, checked: a bad value names the plan file and key."""
    section = plan.data.get("delivery") or {}
    where = f"{plan.path}: delivery"
    due = section.get("due_cron", DEFAULT_DUE_CRON)
    tz = section.get("timezone", DEFAULT_TIMEZONE)
    schedule = section.get("schedule_cron", due)
    days = section.get("window_days", DEFAULT_WINDOW_DAYS)
    for key, cron in (("due_cron", due), ("schedule_cron", schedule)):
        if not isinstance(cron, str) or not is_valid_cron_schedule(cron):
            raise CalendarError(
                f"{where}.{key}: {cron!r} is not a cron expression "
                "(five fields: minute hour day month weekday)"
            )
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 366:
        raise CalendarError(f"{where}.window_days: {days!r} is not a whole number of days 1..366")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise CalendarError(f"{where}.timezone: {tz!r} is not a known time zone") from None
    return Calendar(due, dt.timedelta(days=days), schedule, tz)


def measurement_partitions(plan: Plan) -> TimeWindowPartitionsDefinition:
    """One partition per quarter of the measurement period, keyed by its first day."""
    start, end = plan.period("measurement")
    return TimeWindowPartitionsDefinition(
        cron_schedule=QUARTER_CRON,
        start=dt.datetime(start.year, start.month, start.day),
        end=dt.datetime.combine(end + dt.timedelta(days=1), dt.time()),
        fmt="%Y-%m-%d",
        end_offset=0,
    )
