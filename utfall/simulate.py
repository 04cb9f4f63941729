"""Deterministic, vectorised simulator of a municipality's sick-leave deliveries, KNOWN effect.

Purpose: synthetic roster and sick-leave files for an internal outcome contract (a municipality
pays a health provider to reduce short-term sick days, i.e. days 1-14 of each sick-leave spell,
per employee). Treated = employees of the units the provider serves, comparison = the other
units. The true effect is known, so estimators and validators can be proven against it.

Model
-----
Population (one roster line per employee, no unit changes):

* unit sizes: employees are assigned to units with probabilities ~ Gamma(4) weights;
* age at ``baseline_start`` uniform on [20, 67) years, birth date follows; sex is a woman with
  probability 0.70; 3 % get a samordningsnummer (day of month + 60); the serial's third digit is
  even for women, odd for men; Luhn check digit over YYMMDDNNN; personnummer unique;
* employment: 10 % are hired during the window (``employed_from`` uniform in it), 10 % leave
  during it (``employed_to`` uniform in it), the rest are employed throughout (tenure before
  ``baseline_start`` uniform up to min(20 years, age - 18)); ``employment_extent`` is 100 % (70 %),
  90 (5 %), 80 (8 %), 75 (10 %) or 50 (7 %).

Sick-leave onsets, per employee-month (calendar months overlapping the window):

    count ~ Poisson(base/365.25 * exposed_days * frailty_i * level_u * season_m * shock_uq)

* ``base`` = 2.6 onsets per employee-year (calibrated: ~10 short-term sick days per
  employee-year, see ``truth["realized"]["short_term_days_per_employee_year"]``);
* ``exposed_days``: days of the month the person is employed within the window (the
  "employment" factor);
* ``frailty_i`` ~ Gamma(shape 1.5, mean 1), individual;
* ``level_u`` ~ lognormal, sd 0.25 on the log scale, mean 1: units differ;
* ``season_m`` = 1 + 0.25 cos(2 pi (month - 2) / 12): winter peak in February;
* ``shock_uq`` ~ lognormal, sd 0.10, mean 1, one per unit x calendar quarter: the cluster noise
  that makes the unit (not the employee) the unit of analysis.

Scenario factors, for testing estimators where their assumptions fail (all off by default, and
then the output is bit-for-bit the same as without them; recorded in ``truth["spec"]``):

* ``treated_level_ratio`` L: treated units' rate x L (treated and comparison levels differ);
* ``common_shock`` s from ``common_shock_start`` (default ``intervention_start``): every unit's
  rate x (1 - s) from that day (a month straddling the day gets the share of its calendar days
  on or after it), e.g. a drop after a pandemic peak. Proportional, so parallel in ratios but
  not in levels when L != 1;
* ``treated_trend_per_quarter`` b: treated units' rate x max(1 + b k, 0), k = calendar quarters
  since the quarter of ``baseline_start`` (a treated-only linear trend; not an effect).

Onset day uniform among the exposed days of the month. Duration: with probability 0.88 short,
a geometric(p = 0.30) on 1..14 days truncated at 14 (mean ~3 days); with probability 0.12 long,
floor(15 * 12**U) for U ~ U(0, 1), i.e. log-uniform on 15..180 days. Spell extent 100 % (85 %),
75 (4 %), 50 (8 %) or 25 (3 %). Spells are cut at the end of employment and at
``measurement_end`` (the data are an extract at that date); there are no spells starting before
``baseline_start`` (no left-censored spells).

Overlaps of a person's generated spells are resolved vectorised: sort by (person, start, end),
``start = max(start, running max of the previous ends + 1)``, drop the spell if start > end.
Spells may be adjacent (start = previous end + 1) but never overlap.

Effect, by thinning: each resolved spell of a treated-unit employee starting on/after
``intervention_start`` is dropped with probability ``effect``. The expected relative reduction in
treated short-term sick days from spells starting in the measurement period is therefore exactly
``effect``. Spells that started before ``intervention_start`` and spill (at most 13 short-term
days) into the measurement period are not thinned; they dilute the reduction of all treated
short-term days in the measurement period by about 1 % of ``effect`` for a one-year measurement
period (0.1187 instead of 0.12). ``truth["realized"]`` gives the sample counterfactual (the same
spells without thinning), the realized relative reduction, and its expectation given the spells
(``effect`` x share of counterfactual days coming from thinnable spells).

Short-term sick days (truth definition): per spell, the days from ``spell_start`` to
``min(spell_end, spell_start + 13)`` clipped to the period, times extent / 100.

Random streams: each model component draws from its own ``numpy.random.default_rng`` seeded by
``SeedSequence([seed, stream_id])``, so changing ``effect`` only changes which spells are thinned
(the thinning uniforms are fixed per spell) and changing ``defect_rate`` leaves the clean data
untouched. Output is identical between calls with the same spec.

Defects (``defect_rate`` R): round(R x clean rows) defects per file, split evenly over the kinds.
Each defect row is defective in exactly one way, and no defect row is the original of another
defect. In-place defects replace a clean row (the row no longer loads); extra rows are inserted at
seeded random positions (a duplicate always after its original).

* spells ``invalid_checksum`` (in place): the personnummer's check digit is changed;
* spells ``end_before_start`` (in place): start and end swapped on a spell of >= 2 days;
* spells ``unknown_extent`` (in place): extent set to 20, 30, 60 or 90;
* spells ``overlapping_spell`` (extra row): same person and extent, interval strictly inside a
  clean spell of >= 3 days (start > original start, end <= original end);
* spells ``duplicate_row`` (extra row): exact copy of a clean row, placed after it;
* roster ``invalid_checksum`` (in place): check digit changed, only on employees with no spells;
* roster ``duplicate_row`` (extra row): exact copy of a clean roster row, placed after it.

If too few rows are eligible (e.g. few employees without spells) a kind gets fewer defects; the
truth always holds the counts actually made (``truth["defects"]``), their 0-based row positions
in the delivered frames (``truth["defect_rows"]``) and the rows that should load
(``truth["clean_rows"]``). Delivery order of clean rows: roster by (unit_id, personnummer),
spells by (spell_start, personnummer, spell_end). Realized numbers in the truth are computed on
the simulated spells before defects (in-place defects remove those spells from what loads).

Validator order for which the counts are exact: (1) row checks (checksum, end < start, extent
outside {25, 50, 75, 100}); (2) exact duplicates among the remaining rows, the later copy being
the defect; (3) overlaps among the remaining spells: sort a person's spells by (start, end) and
flag every spell starting on or before the running max end of the earlier ones. An invalid-
checksum spell also refers to no roster person; count it once, as ``invalid_checksum``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

if TYPE_CHECKING:
    from utfall.plan import Plan

__all__ = ["SimulatedDeliveries", "SimulationSpec", "simulate"]

# --- model parameters ---------------------------------------------------------------------
_BASE_ONSETS_PER_YEAR = 2.6
_FRAILTY_SHAPE = 1.5
_UNIT_LEVEL_SD = 0.25
_SHOCK_SD = 0.10
_SEASON_AMPLITUDE = 0.25
_SEASON_PEAK_MONTH = 2
_UNIT_SIZE_SHAPE = 4.0
_P_LONG = 0.12
_SHORT_GEOM_P = 0.30
_SHORT_MAX = 14
_LONG_MIN = 15
_LONG_MAX = 180
_SPELL_EXTENTS = (100, 75, 50, 25)
_SPELL_EXTENT_P = (0.85, 0.04, 0.08, 0.03)
_EMPLOYMENT_EXTENTS = (100, 90, 80, 75, 50)
_EMPLOYMENT_EXTENT_P = (0.70, 0.05, 0.08, 0.10, 0.07)
_P_WOMAN = 0.70
_P_SAMORDNING = 0.03
_P_HIRED = 0.10
_P_LEAVER = 0.10
_MIN_AGE_YEARS = 20
_MAX_AGE_YEARS = 67  # exclusive
_MAX_TENURE_YEARS = 20
_SHORT_TERM_DAYS = 14
_VALID_EXTENTS = (25, 50, 75, 100)
_UNKNOWN_EXTENTS = (20, 30, 60, 90)

_SPELL_DEFECT_KINDS = (
    "invalid_checksum",
    "end_before_start",
    "overlapping_spell",
    "unknown_extent",
    "duplicate_row",
)
_ROSTER_DEFECT_KINDS = ("invalid_checksum", "duplicate_row")

_STREAMS = {
    "units": 1,
    "population": 2,
    "employment": 3,
    "rates": 4,
    "onsets": 5,
    "spells": 6,
    "thinning": 7,
    "roster_defects": 8,
    "spell_defects": 9,
}

_EPOCH = date(1970, 1, 1)
_DAYS_PER_YEAR = 365.25


@dataclass(frozen=True)
class SimulationSpec:
    treated_units: tuple[str, ...]
    comparison_units: tuple[str, ...]
    baseline_start: date  # first day of data
    intervention_start: date  # effect starts here (= first day of measurement)
    measurement_end: date  # last day of data (inclusive)
    employees: int = 4000
    effect: float = 0.12  # true relative reduction of sick-leave onsets for treated units
    defect_rate: float = 0.0  # share of delivered rows turned into defects
    seed: int = 20260101
    # Departures from parallel trends / equal levels (defaults leave the output unchanged):
    treated_level_ratio: float = 1.0  # treated units' onset rate x this (level difference)
    common_shock: float = 0.0  # proportional drop in every unit's onset rate from ...
    common_shock_start: date | None = None  # ... this day (None = intervention_start)
    treated_trend_per_quarter: float = 0.0  # treated rate x (1 + this x quarters since start)


@dataclass(frozen=True)
class SimulatedDeliveries:
    roster: pl.DataFrame  # one row per delivered roster line, in delivery order
    spells: pl.DataFrame  # one row per delivered sick-leave line, in delivery order
    truth: dict  # JSON-serialisable


def _rng(seed: int, stream: str) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, _STREAMS[stream]]))


def _day(d: date) -> int:
    return (d - _EPOCH).days


def _validate(spec: SimulationSpec) -> None:
    treated, comparison = tuple(spec.treated_units), tuple(spec.comparison_units)
    if not treated or not comparison:
        raise ValueError("need at least one treated and one comparison unit")
    units = treated + comparison
    if not all(isinstance(u, str) and u for u in units):
        raise ValueError("unit ids must be non-empty strings")
    if len(set(units)) != len(units):
        raise ValueError("unit ids must be unique and treated/comparison disjoint")
    for name in ("baseline_start", "intervention_start", "measurement_end"):
        if not isinstance(getattr(spec, name), date):
            raise ValueError(f"{name} must be a datetime.date")
    if not spec.baseline_start < spec.intervention_start <= spec.measurement_end:
        raise ValueError("need baseline_start < intervention_start <= measurement_end")
    if isinstance(spec.employees, bool) or not isinstance(spec.employees, int):
        raise ValueError("employees must be an int")
    if spec.employees < 1:
        raise ValueError("employees must be >= 1")
    if not 0.0 <= spec.effect <= 1.0:
        raise ValueError("effect must be in [0, 1]")
    if not 0.0 <= spec.defect_rate <= 0.5:
        raise ValueError("defect_rate must be in [0, 0.5]")
    if isinstance(spec.seed, bool) or not isinstance(spec.seed, int) or spec.seed < 0:
        raise ValueError("seed must be a non-negative int")
    if not (isinstance(spec.treated_level_ratio, int | float) and spec.treated_level_ratio > 0):
        raise ValueError("treated_level_ratio must be > 0")
    if not 0.0 <= spec.common_shock < 1.0:
        raise ValueError("common_shock must be in [0, 1)")
    if spec.common_shock_start is not None and not isinstance(spec.common_shock_start, date):
        raise ValueError("common_shock_start must be a datetime.date or None")
    if not -1.0 < spec.treated_trend_per_quarter < 1.0:
        raise ValueError("treated_trend_per_quarter must be in (-1, 1)")


def _luhn(nine: np.ndarray) -> np.ndarray:
    """Check digit for integers YYMMDDNNN (vectorised Luhn, weights 2,1,2,... from the left)."""
    total = np.zeros(nine.shape, dtype=np.int64)
    rest = nine.astype(np.int64)
    for pos in range(9):  # pos 0 = rightmost digit, which has weight 2
        digit = rest % 10
        rest //= 10
        prod = digit * (2 if pos % 2 == 0 else 1)
        total += prod // 10 + prod % 10
    return (10 - total % 10) % 10


def _ymd(days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    d = days.astype("datetime64[D]")
    y = d.astype("datetime64[Y]")
    m = d.astype("datetime64[M]")
    year = y.astype(np.int64) + 1970
    month = (m - y.astype("datetime64[M]")).astype(np.int64) + 1
    dom = (d - m.astype("datetime64[D]")).astype(np.int64) + 1
    return year, month, dom


def _split(total: int, kinds: int) -> list[int]:
    return [total // kinds + (1 if i < total % kinds else 0) for i in range(kinds)]


def _n_defects(rate: float, rows: int) -> int:
    return int(np.floor(rate * rows + 0.5))


def _pick(order: np.ndarray, eligible: np.ndarray, used: np.ndarray, n: int) -> np.ndarray:
    cand = order[eligible[order] & ~used[order]][:n]
    used[cand] = True
    return np.sort(cand)


def _insert_order(n_clean: int, slots: np.ndarray) -> np.ndarray:
    """Row order after inserting extra rows; ``slots[k]`` = s means "before clean row s"."""
    key = np.concatenate([2 * np.arange(n_clean, dtype=np.int64) + 1, 2 * slots.astype(np.int64)])
    tie = np.arange(n_clean + len(slots), dtype=np.int64)
    return np.lexsort((tie, key))


def _pnr_strings(date8: np.ndarray, serial: np.ndarray, check: np.ndarray) -> pl.Series:
    frame = pl.DataFrame({"d": date8, "s": serial, "c": check})
    return frame.select(
        pl.format(
            "{}-{}{}",
            pl.col("d").cast(pl.String),
            pl.col("s").cast(pl.String).str.zfill(3),
            pl.col("c").cast(pl.String),
        ).alias("personnummer")
    ).to_series()


def _as_date(days: np.ndarray, name: str) -> pl.Series:
    return pl.Series(name, days.astype(np.int32)).cast(pl.Date)


def _short_term(
    start: np.ndarray, end: np.ndarray, extent: np.ndarray, lo: int, hi: int
) -> np.ndarray:
    """Extent-weighted short-term days per spell in [lo, hi], in percent-days (int64, exact)."""
    first = np.maximum(start, lo)
    last = np.minimum(np.minimum(end, start + _SHORT_TERM_DAYS - 1), hi)
    return np.maximum(last - first + 1, 0).astype(np.int64) * extent.astype(np.int64)


def _exposure(a: np.ndarray, b: np.ndarray, lo: int, hi: int) -> int:
    return int(np.maximum(np.minimum(b, hi) - np.maximum(a, lo) + 1, 0).sum())


def spec_for_plan(
    plan: Plan,
    *,
    employees: int,
    effect: float,
    seed: int,
    defect_rate: float = 0.0,
    **factors: Any,
) -> SimulationSpec:
    """A simulation of the plan's own units and periods (`factors`: the scenario fields,
    e.g. treated_level_ratio, common_shock); the one place that maps a plan to a spec."""
    b0, _ = plan.period("baseline")
    m0, m1 = plan.period("measurement")
    return SimulationSpec(
        treated_units=tuple(plan.treated_units),
        comparison_units=tuple(plan.comparison_units),
        baseline_start=b0,
        intervention_start=m0,
        measurement_end=m1,
        employees=employees,
        effect=effect,
        defect_rate=defect_rate,
        seed=seed,
        **factors,
    )


def simulate(spec: SimulationSpec) -> SimulatedDeliveries:
    """Simulate roster and sick-leave deliveries for ``spec``; see the module docstring."""
    _validate(spec)
    seed = spec.seed
    treated_units = tuple(spec.treated_units)
    units = treated_units + tuple(spec.comparison_units)
    n_units = len(units)
    n = spec.employees
    bs = _day(spec.baseline_start)
    is_ = _day(spec.intervention_start)
    me = _day(spec.measurement_end)

    # --- units -----------------------------------------------------------------------------------
    rng = _rng(seed, "units")
    unit_w = rng.gamma(_UNIT_SIZE_SHAPE, size=n_units)
    unit_w /= unit_w.sum()
    unit_level = np.exp(rng.normal(0.0, _UNIT_LEVEL_SD, n_units) - _UNIT_LEVEL_SD**2 / 2)
    first_q = _ymd(np.array([bs]))
    last_q = _ymd(np.array([me]))
    q0 = int(first_q[0][0] * 4 + (first_q[1][0] - 1) // 3)
    n_quarters = int(last_q[0][0] * 4 + (last_q[1][0] - 1) // 3) - q0 + 1
    shock = np.exp(rng.normal(0.0, _SHOCK_SD, (n_units, n_quarters)) - _SHOCK_SD**2 / 2)
    is_treated_unit = np.arange(n_units) < len(treated_units)

    # --- population ------------------------------------------------------------------------------
    rng = _rng(seed, "population")
    unit_idx = rng.choice(n_units, size=n, p=unit_w)
    age_days = rng.integers(
        int(_MIN_AGE_YEARS * _DAYS_PER_YEAR), int(_MAX_AGE_YEARS * _DAYS_PER_YEAR), size=n
    )
    birth = bs - age_days
    woman = rng.random(n) < _P_WOMAN
    samordning = rng.random(n) < _P_SAMORDNING
    b_year, b_month, b_dom = _ymd(birth)
    date8 = b_year * 10000 + b_month * 100 + b_dom + np.where(samordning, 60, 0)
    serial = np.zeros(n, dtype=np.int64)
    todo = np.arange(n)
    while todo.size:  # re-draw serials of colliding people; loops over rounds, not rows
        head = rng.integers(0, 100, size=todo.size)
        last = 2 * rng.integers(0, 5, size=todo.size) + np.where(woman[todo], 0, 1)
        serial[todo] = head * 10 + last
        key = date8 * 1000 + serial
        _, first_idx = np.unique(key, return_index=True)
        ok = np.zeros(n, dtype=bool)
        ok[first_idx] = True
        ok &= serial != 0
        todo = np.flatnonzero(~ok)
    check = _luhn((date8 % 1_000_000) * 1000 + serial)
    pnr_key = date8 * 10_000 + serial * 10 + check  # numeric order == string order

    # --- employment ------------------------------------------------------------------------------
    rng = _rng(seed, "employment")
    category = rng.random(n)
    hired = category < _P_HIRED
    leaver = (category >= _P_HIRED) & (category < _P_HIRED + _P_LEAVER)
    max_tenure = np.minimum(
        int(_MAX_TENURE_YEARS * _DAYS_PER_YEAR),
        age_days - int(18 * _DAYS_PER_YEAR),
    )
    tenure = 1 + np.floor(rng.random(n) * max_tenure).astype(np.int64)
    hire_day = bs + rng.integers(1, me - bs + 1, size=n)
    leave_day = bs + rng.integers(0, me - bs, size=n)
    employed_from = np.where(hired, hire_day, bs - tenure)
    employed_to = np.where(leaver, leave_day, -1)  # -1 = null (still employed)
    emp_extent = rng.choice(np.array(_EMPLOYMENT_EXTENTS), size=n, p=_EMPLOYMENT_EXTENT_P)
    exp_a = np.maximum(employed_from, bs)  # employed within the window: [exp_a, exp_b]
    exp_b = np.where(leaver, employed_to, me)

    # --- onsets per employee-month ---------------------------------------------------------------
    months = np.arange(
        np.datetime64(spec.baseline_start, "M"), np.datetime64(spec.measurement_end, "M") + 1
    )
    m_lo = np.maximum(months.astype("datetime64[D]").astype(np.int64), bs)
    m_hi = np.minimum((months + 1).astype("datetime64[D]").astype(np.int64) - 1, me)
    m_year = months.astype("datetime64[Y]").astype(np.int64) + 1970
    m_month = (months - months.astype("datetime64[Y]").astype("datetime64[M]")).astype(np.int64) + 1
    m_quarter = m_year * 4 + (m_month - 1) // 3 - q0
    season = 1.0 + _SEASON_AMPLITUDE * np.cos(2 * np.pi * (m_month - _SEASON_PEAK_MONTH) / 12)

    rng = _rng(seed, "rates")
    frailty = rng.gamma(_FRAILTY_SHAPE, 1.0 / _FRAILTY_SHAPE, size=n)
    lo = np.maximum(exp_a[:, None], m_lo[None, :])
    days = np.maximum(np.minimum(exp_b[:, None], m_hi[None, :]) - lo + 1, 0)
    lam = (
        (_BASE_ONSETS_PER_YEAR / _DAYS_PER_YEAR)
        * days
        * (frailty * unit_level[unit_idx])[:, None]
        * season[None, :]
        * shock[unit_idx][:, m_quarter]
    )
    # Scenario factors; applied only when not at their defaults, so the default output is
    # bit-for-bit what it was before they existed.
    if spec.treated_level_ratio != 1.0 or spec.treated_trend_per_quarter != 0.0:
        trend = np.maximum(1.0 + spec.treated_trend_per_quarter * m_quarter, 0.0)
        treated_factor = spec.treated_level_ratio * trend  # per month
        lam = lam * np.where(is_treated_unit[unit_idx][:, None], treated_factor[None, :], 1.0)
    if spec.common_shock != 0.0:
        shock_day = _day(spec.common_shock_start or spec.intervention_start)
        m_first = months.astype("datetime64[D]").astype(np.int64)
        m_last = (months + 1).astype("datetime64[D]").astype(np.int64) - 1
        after = np.clip(m_last - np.maximum(m_first, shock_day) + 1, 0, None)
        share_after = after / (m_last - m_first + 1)  # of the calendar month
        lam = lam * (1.0 - spec.common_shock * share_after)[None, :]
    counts = _rng(seed, "onsets").poisson(lam).ravel()
    del lam
    cells = np.flatnonzero(counts)
    cell = np.repeat(cells, counts[cells])
    n_months = len(months)
    person = cell // n_months
    n_gen = len(cell)

    rng = _rng(seed, "spells")
    start = lo.ravel()[cell] + np.floor(rng.random(n_gen) * days.ravel()[cell]).astype(np.int64)
    del lo, days, counts, cells, cell
    is_long = rng.random(n_gen) < _P_LONG
    u_short = rng.random(n_gen)
    u_long = rng.random(n_gen)
    q = 1.0 - _SHORT_GEOM_P
    short_dur = 1 + np.floor(np.log1p(-u_short * (1.0 - q**_SHORT_MAX)) / np.log(q))
    short_dur = np.clip(short_dur, 1, _SHORT_MAX)
    long_dur = np.floor(_LONG_MIN * (_LONG_MAX / _LONG_MIN) ** u_long)
    long_dur = np.clip(long_dur, _LONG_MIN, _LONG_MAX)
    duration = np.where(is_long, long_dur, short_dur).astype(np.int64)
    end = np.minimum(start + duration - 1, exp_b[person])
    extent = rng.choice(np.array(_SPELL_EXTENTS), size=n_gen, p=_SPELL_EXTENT_P)
    thin_u = _rng(seed, "thinning").random(n_gen)

    # --- resolve overlaps per person (vectorised), then thin -------------------------------------
    gen = pl.DataFrame(
        {
            "person": person,
            "start": start,
            "end": end,
            "extent": extent.astype(np.int64),
            "thin_u": thin_u,
            "gen": np.arange(n_gen, dtype=np.int64),
        }
    ).sort(["person", "start", "end", "gen"])
    resolved = (
        gen.with_columns(prev_end=pl.col("end").cum_max().shift(1).over("person"))
        .with_columns(
            start=pl.max_horizontal(pl.col("start"), pl.col("prev_end").fill_null(-(2**40)) + 1)
        )
        .filter(pl.col("start") <= pl.col("end"))
    )
    r_person = resolved["person"].to_numpy()
    r_start = resolved["start"].to_numpy()
    r_end = resolved["end"].to_numpy()
    r_extent = resolved["extent"].to_numpy()
    r_treated = is_treated_unit[unit_idx[r_person]]
    dropped = r_treated & (r_start >= is_) & (resolved["thin_u"].to_numpy() < spec.effect)
    kept = ~dropped

    # --- truth: realized short-term days (clean data, before defects) ----------------------------
    periods = {"baseline": (bs, is_ - 1), "measurement": (is_, me)}
    person_treated = is_treated_unit[unit_idx]
    by_group: dict = {}
    for group, flag in (("treated", True), ("comparison", False)):
        by_group[group] = {}
        for pname, (plo, phi) in periods.items():
            st = _short_term(r_start, r_end, r_extent, plo, phi)
            sel = r_treated == flag
            pm = person_treated == flag
            by_group[group][pname] = {
                "short_term_days": int(st[sel & kept].sum()) / 100,
                "short_term_days_counterfactual": int(st[sel].sum()) / 100,
                "exposure_person_days": _exposure(exp_a[pm], exp_b[pm], plo, phi),
                "employees": int((pm & (np.minimum(exp_b, phi) >= np.maximum(exp_a, plo))).sum()),
            }
    st_meas = _short_term(r_start, r_end, r_extent, is_, me)
    thinnable = int(st_meas[r_treated & (r_start >= is_)].sum()) / 100
    obs = by_group["treated"]["measurement"]["short_term_days"]
    cf = by_group["treated"]["measurement"]["short_term_days_counterfactual"]
    st_all = int(_short_term(r_start, r_end, r_extent, bs, me).sum()) / 100
    exposure_all = _exposure(exp_a, exp_b, bs, me)
    realized = {
        "treated_short_term_days_measurement": obs,
        "treated_short_term_days_measurement_counterfactual": cf,
        "relative_reduction": (1.0 - obs / cf) if cf > 0 else None,
        "expected_relative_reduction_given_spells": (
            spec.effect * thinnable / cf if cf > 0 else None
        ),
        "spells_generated": int(n_gen),
        "spells_after_overlap_resolution": int(len(r_start)),
        "spells_dropped_by_thinning": int(dropped.sum()),
        "short_term_days_per_employee_year": (
            st_all / (exposure_all / _DAYS_PER_YEAR) if exposure_all else None
        ),
        "by_group": by_group,
    }

    # --- clean deliveries (delivery order) -------------------------------------------------------
    roster_order = np.lexsort((pnr_key, np.array(units)[unit_idx]))
    s_person = r_person[kept]
    s_start = r_start[kept]
    s_end = r_end[kept]
    s_extent = r_extent[kept]
    spell_order = np.lexsort((s_end, pnr_key[s_person], s_start))
    s_person, s_start, s_end, s_extent = (
        a[spell_order] for a in (s_person, s_start, s_end, s_extent)
    )
    ro_person = roster_order
    ro_check = check[ro_person].copy()
    n_roster = n
    n_spells = len(s_person)

    # --- roster defects --------------------------------------------------------------------------
    rng = _rng(seed, "roster_defects")
    roster_counts = dict(
        zip(
            _ROSTER_DEFECT_KINDS,
            _split(_n_defects(spec.defect_rate, n_roster), len(_ROSTER_DEFECT_KINDS)),
            strict=True,
        )
    )
    has_spell = np.zeros(n, dtype=bool)
    has_spell[s_person] = True
    order = rng.permutation(n_roster)
    used = np.zeros(n_roster, dtype=bool)
    r_bad = _pick(order, ~has_spell[ro_person], used, roster_counts["invalid_checksum"])
    r_dup = _pick(order, np.ones(n_roster, dtype=bool), used, roster_counts["duplicate_row"])
    ro_check[r_bad] = (ro_check[r_bad] + rng.integers(1, 10, size=len(r_bad))) % 10
    r_slots = rng.integers(r_dup + 1, n_roster + 1) if len(r_dup) else np.zeros(0, np.int64)
    r_rows = np.concatenate([np.arange(n_roster), r_dup])  # source clean row of each output row
    r_out = _insert_order(n_roster, r_slots)
    r_src = r_rows[r_out]
    r_pos = np.empty(len(r_out), dtype=np.int64)
    r_pos[r_out] = np.arange(len(r_out))
    rp = ro_person[r_src]
    roster = (
        pl.DataFrame(
            [
                _pnr_strings(date8[rp], serial[rp], ro_check[r_src]),
                pl.Series("birth_year", b_year[rp].astype(np.int64)),
                pl.Series("sex", np.where(woman[rp], "K", "M")).cast(pl.String),
                pl.Series("unit_id", np.array(units, dtype=object)[unit_idx[rp]], dtype=pl.String),
                pl.Series("employment_extent", emp_extent[rp].astype(np.int64)),
                _as_date(employed_from[rp], "employed_from"),
                _as_date(np.maximum(employed_to[rp], 0), "employed_to"),
                pl.Series("_still_employed", employed_to[rp] < 0),
            ]
        )
        .with_columns(
            employed_to=pl.when(pl.col("_still_employed"))
            .then(None)
            .otherwise(pl.col("employed_to"))
        )
        .drop("_still_employed")
    )

    # --- spell defects ---------------------------------------------------------------------------
    rng = _rng(seed, "spell_defects")
    spell_counts = dict(
        zip(
            _SPELL_DEFECT_KINDS,
            _split(_n_defects(spec.defect_rate, n_spells), len(_SPELL_DEFECT_KINDS)),
            strict=True,
        )
    )
    order = rng.permutation(n_spells)
    used = np.zeros(n_spells, dtype=bool)
    span = s_end - s_start
    anyrow = np.ones(n_spells, dtype=bool)
    picked = {  # most constrained first
        "overlapping_spell": _pick(order, span >= 2, used, spell_counts["overlapping_spell"]),
        "end_before_start": _pick(order, span >= 1, used, spell_counts["end_before_start"]),
        "invalid_checksum": _pick(order, anyrow, used, spell_counts["invalid_checksum"]),
        "unknown_extent": _pick(order, anyrow, used, spell_counts["unknown_extent"]),
        "duplicate_row": _pick(order, anyrow, used, spell_counts["duplicate_row"]),
    }
    c_check = check[s_person].copy()
    c_start, c_end, c_extent = s_start.copy(), s_end.copy(), s_extent.copy()
    bad = picked["invalid_checksum"]
    c_check[bad] = (c_check[bad] + rng.integers(1, 10, size=len(bad))) % 10
    swap = picked["end_before_start"]
    c_start[swap], c_end[swap] = s_end[swap], s_start[swap]
    unk = picked["unknown_extent"]
    c_extent[unk] = rng.choice(np.array(_UNKNOWN_EXTENTS), size=len(unk))
    ov = picked["overlapping_spell"]
    ov_start = s_start[ov] + 1 + np.floor(rng.random(len(ov)) * span[ov]).astype(np.int64)
    ov_end = ov_start + np.floor(rng.random(len(ov)) * (s_end[ov] - ov_start + 1)).astype(np.int64)
    dup = picked["duplicate_row"]
    ov_slots = rng.integers(0, n_spells + 1, size=len(ov))
    dup_slots = rng.integers(dup + 1, n_spells + 1) if len(dup) else np.zeros(0, np.int64)
    all_person = np.concatenate([s_person, s_person[ov], s_person[dup]])
    all_check = np.concatenate([c_check, c_check[ov], c_check[dup]])
    all_start = np.concatenate([c_start, ov_start, c_start[dup]])
    all_end = np.concatenate([c_end, ov_end, c_end[dup]])
    all_extent = np.concatenate([c_extent, s_extent[ov], c_extent[dup]])
    s_out = _insert_order(n_spells, np.concatenate([ov_slots, dup_slots]))
    s_pos = np.empty(len(s_out), dtype=np.int64)
    s_pos[s_out] = np.arange(len(s_out))
    sp = all_person[s_out]
    spells = pl.DataFrame(
        [
            _pnr_strings(date8[sp], serial[sp], all_check[s_out]),
            _as_date(all_start[s_out], "spell_start"),
            _as_date(all_end[s_out], "spell_end"),
            pl.Series("extent", all_extent[s_out].astype(np.int64)),
        ]
    )
    n_ov = len(ov)
    extra_ov = n_spells + np.arange(n_ov)
    extra_dup = n_spells + n_ov + np.arange(len(dup))
    spell_rows = {
        "invalid_checksum": s_pos[bad],
        "end_before_start": s_pos[swap],
        "overlapping_spell": s_pos[extra_ov],
        "unknown_extent": s_pos[unk],
        "duplicate_row": s_pos[extra_dup],
    }
    roster_rows = {
        "invalid_checksum": r_pos[r_bad],
        "duplicate_row": r_pos[n_roster + np.arange(len(r_dup))],
    }

    truth = {
        "effect": float(spec.effect),
        "estimand": (
            "relative reduction of short-term (days 1-14, extent-weighted) sick days of "
            "treated-unit employees in the measurement period, caused by thinning sick-leave "
            "onsets by `effect` from intervention_start"
        ),
        "spec": {
            "treated_units": list(treated_units),
            "comparison_units": list(spec.comparison_units),
            "baseline_start": spec.baseline_start.isoformat(),
            "intervention_start": spec.intervention_start.isoformat(),
            "measurement_end": spec.measurement_end.isoformat(),
            "employees": int(n),
            "effect": float(spec.effect),
            "defect_rate": float(spec.defect_rate),
            "seed": int(seed),
            "treated_level_ratio": float(spec.treated_level_ratio),
            "common_shock": float(spec.common_shock),
            "common_shock_start": (spec.common_shock_start or spec.intervention_start).isoformat(),
            "treated_trend_per_quarter": float(spec.treated_trend_per_quarter),
        },
        "model": {
            "base_onsets_per_employee_year": _BASE_ONSETS_PER_YEAR,
            "frailty_gamma_shape": _FRAILTY_SHAPE,
            "unit_level_lognormal_sd": _UNIT_LEVEL_SD,
            "unit_quarter_shock_lognormal_sd": _SHOCK_SD,
            "season_amplitude": _SEASON_AMPLITUDE,
            "season_peak_month": _SEASON_PEAK_MONTH,
            "p_long_spell": _P_LONG,
            "short_duration_geometric_p": _SHORT_GEOM_P,
            "long_duration_range": [_LONG_MIN, _LONG_MAX],
        },
        "units": {
            u: {
                "group": "treated" if is_treated_unit[i] else "comparison",
                "employees": int((unit_idx == i).sum()),
                "level": round(float(unit_level[i]), 6),  # informational
            }
            for i, u in enumerate(units)
        },
        "realized": realized,
        "defects": {
            "roster": {k: int(len(v)) for k, v in roster_rows.items()},
            "spells": {k: int(len(v)) for k, v in spell_rows.items()},
        },
        "defect_rows": {  # 0-based row positions in the delivered frames
            "roster": {k: np.sort(v).tolist() for k, v in roster_rows.items()},
            "spells": {k: np.sort(v).tolist() for k, v in spell_rows.items()},
        },
        "clean_rows": {
            "roster": int(n_roster - len(r_bad)),
            "spells": int(n_spells - len(bad) - len(swap) - len(unk)),
        },
        "delivered_rows": {"roster": int(roster.height), "spells": int(spells.height)},
    }
    return SimulatedDeliveries(roster=roster, spells=spells, truth=truth)
