"""Lab results of every analyte the contracts read, each checked and stored in one unit.

Input: a polars frame with one row per lab result (as utfall.domains.hba1c): person_id,
sample_date (Date), analyte, value (a number, or text with a decimal point or comma), unit.

Analytes (ANALYTES; the delivered name is matched in lower case, spaces kept):

=============== ============ ======================================== ========= ==========
analyte stored  unit stored  delivered units -> conversion             hard      warning
=============== ============ ======================================== ========= ==========
HbA1c           mmol/mol     utfall.domains.hba1c (ifcc, ngsp, mono_s) 15-200    20-150
fasting_glucose mmol/L       mmol/L (mmol_l), mg/dL (mg_dl: / 18.016)  1-50      3-20
weight          kg           kg (kg)                                   20-350    35-250
bmi             kg/m2        kg/m2, kg/m² (kg_m2)                      10-80     15-60
=============== ============ ======================================== ========= ==========

* Glucose in mg/dL is divided by 18.016 (the molar mass of glucose, 180.16 g/mol, over the
  dL-to-L factor 10) and rounded half up to 2 decimals, in exact decimals from the delivered
  value: 126 mg/dL = 6.99378... -> 6.99 mmol/L; 100 mg/dL = 5.5506... -> 5.55. Values
  delivered in the stored unit are kept as delivered (no rounding). HbA1c: see
  utfall.domains.hba1c (whole mmol/mol; NGSP by 10.929 x (% - 2.152), Mono-S by
  10.11 x % - 8.9, or quarantined with ``mono_s="quarantine"``).
* The hard ranges are physiological limits (a value outside is a unit or entry error); the
  warning ranges mark values worth a second look in a cohort of adults (column `warning`,
  ``outside_<low>_<high>``). Both include their bounds. The non-HbA1c ranges are this
  project's choice, not a laboratory's reference interval.

Quarantine rules (first that applies, in this order), column `rule`:

* ``missing_field``: person_id, sample_date, analyte, value or unit empty;
* ``unknown_analyte``: an analyte not in ANALYTES (the delivered name in `detail`);
* ``value_not_a_number``;
* ``unknown_unit``: a unit the analyte is not delivered in;
* ``mono_s_not_converted``: (HbA1c, only with ``mono_s="quarantine"``) a Mono-S value;
* ``out_of_range``: the stored value outside the analyte's hard range;
* ``duplicate_row``: a later exact copy (person, date, analyte, value and unit as delivered)
  of a row already accepted.

Output (VALID_SCHEMA): the delivered value and unit, `conversion` (the delivered scale, which
says whether and how the value was converted), `value` in the stored `unit`, `warning`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

import polars as pl

from utfall.domains import hba1c


@dataclass(frozen=True)
class Analyte:
    """An analyte stored in `unit`: delivered names, delivered units (normalised: lower case,
    spaces removed) -> (conversion name, divisor or None for as delivered), ranges."""

    name: str
    unit: str
    names: frozenset[str]
    units: dict[str, tuple[str, Decimal | None]]
    hard: tuple[Decimal, Decimal]
    warn: tuple[Decimal, Decimal]
    #: Converted values are rounded half up to this quantum.
    quantum: Decimal = Decimal("0.01")


GLUCOSE_MG_DL_PER_MMOL_L = Decimal("18.016")

HBA1C = Analyte(
    name="HbA1c",
    unit="mmol/mol",
    names=frozenset(hba1c.ANALYTES),
    units={},  # read by utfall.domains.hba1c.read
    hard=hba1c.HARD_RANGE,
    warn=hba1c.WARN_RANGE,
    quantum=Decimal(1),
)
ANALYTES: dict[str, Analyte] = {
    a.name: a
    for a in (
        HBA1C,
        Analyte(
            name="fasting_glucose",
            unit="mmol/L",
            names=frozenset(
                {
                    "fasting_glucose",
                    "fasting glucose",
                    "fasting plasma glucose",
                    "glucose, fasting",
                    "fpg",
                    "fp-glukos",
                    "fp-glucose",
                    "fasteglukos",
                    "p-glukos, fastande",
                }
            ),
            units={"mmol/l": ("mmol_l", None), "mg/dl": ("mg_dl", GLUCOSE_MG_DL_PER_MMOL_L)},
            hard=(Decimal(1), Decimal(50)),
            warn=(Decimal(3), Decimal(20)),
        ),
        Analyte(
            name="weight",
            unit="kg",
            names=frozenset({"weight", "body weight", "vikt", "kroppsvikt"}),
            units={"kg": ("kg", None)},
            hard=(Decimal(20), Decimal(350)),
            warn=(Decimal(35), Decimal(250)),
        ),
        Analyte(
            name="bmi",
            unit="kg/m2",
            names=frozenset({"bmi", "body mass index"}),
            units={"kg/m2": ("kg_m2", None), "kg/m²": ("kg_m2", None), "kg/m^2": ("kg_m2", None)},
            hard=(Decimal(10), Decimal(80)),
            warn=(Decimal(15), Decimal(60)),
        ),
    )
}
#: Delivered analyte name (lower case, stripped) -> stored analyte name.
NAMES: dict[str, str] = {n: a.name for a in ANALYTES.values() for n in a.names}

INPUT = hba1c.INPUT
VALID_SCHEMA = {
    "person_id": pl.Utf8,
    "sample_date": pl.Date,
    "analyte": pl.Utf8,
    "value_delivered": pl.Float64,
    "unit_delivered": pl.Utf8,
    "conversion": pl.Utf8,
    "value": pl.Float64,
    "unit": pl.Utf8,
    "warning": pl.Utf8,
}
QUARANTINE_SCHEMA = {
    "person_id": pl.Utf8,
    "sample_date": pl.Date,
    "analyte": pl.Utf8,
    "value": pl.Utf8,
    "unit": pl.Utf8,
    "rule": pl.Utf8,
    "detail": pl.Utf8,
}


def glucose_mg_dl_to_mmol_l(mg_dl: Decimal) -> Decimal:
    """Glucose mg/dL to mmol/L, unrounded: mg/dL / 18.016."""
    return mg_dl / GLUCOSE_MG_DL_PER_MMOL_L


def _bound(d: Decimal) -> str:
    return format(d.normalize(), "f")


def read(
    analyte: Analyte, number: Decimal, unit: str, sample_date: dt.date, *, mono_s: str
) -> tuple[str | None, str | None, Decimal | None]:
    """(rule, detail, None) for a value to quarantine, else (None, conversion, stored value)."""
    if analyte is HBA1C:
        return hba1c.read(number, unit, sample_date, mono_s=mono_s)
    conversion = analyte.units.get(unit.strip().lower().replace(" ", ""))
    if conversion is None:
        return "unknown_unit", unit, None
    name, divisor = conversion
    value = number
    if divisor is not None:
        value = (number / divisor).quantize(analyte.quantum, rounding=ROUND_HALF_UP)
    low, high = analyte.hard
    if not low <= value <= high:
        return (
            "out_of_range",
            f"{value} {analyte.unit} outside {_bound(low)}-{_bound(high)}",
            None,
        )
    return None, name, value


def warning(analyte: Analyte, value: Decimal) -> str | None:
    low, high = analyte.warn
    return None if low <= value <= high else f"outside_{_bound(low)}_{_bound(high)}"


def validate(rows: pl.DataFrame, *, mono_s: str = "convert") -> tuple[pl.DataFrame, pl.DataFrame]:
    """(valid, quarantined): valid rows in their analyte's stored unit (VALID_SCHEMA, in input
    order) and the input rows that failed, with `rule` and `detail` (module docstring)."""
    if mono_s not in hba1c.MONO_S_CHOICES:
        raise ValueError(f"mono_s must be 'convert' or 'quarantine', not {mono_s!r}")
    missing = [c for c in INPUT if c not in rows.columns]
    if missing:
        raise ValueError(f"lab rows: column(s) {', '.join(missing)} missing")
    valid: list[dict] = []
    bad: list[dict] = []
    seen: set[tuple] = set()
    extra = [c for c in rows.columns if c.startswith("_")]  # lineage rides along
    for row in rows.select(*INPUT, *extra).to_dicts():
        rule, detail = None, None
        key = tuple(str(row[c]).strip() for c in INPUT)
        empty = [c for c in INPUT if row[c] is None or not str(row[c]).strip()]
        if empty:
            rule, detail = "missing_field", ", ".join(empty)
        elif (name := NAMES.get(row["analyte"].strip().lower())) is None:
            rule, detail = "unknown_analyte", row["analyte"]
        elif (number := hba1c._number(row["value"])) is None:
            rule, detail = "value_not_a_number", str(row["value"])
        else:
            analyte = ANALYTES[name]
            rule, detail, value = read(
                analyte, number, row["unit"], row["sample_date"], mono_s=mono_s
            )
            if rule is None and key in seen:
                rule, detail = "duplicate_row", None
            elif rule is None:
                seen.add(key)
                valid.append(
                    {
                        "person_id": row["person_id"],
                        "sample_date": row["sample_date"],
                        "analyte": analyte.name,
                        "value_delivered": float(number),
                        "unit_delivered": row["unit"],
                        "conversion": detail,
                        "value": float(value),
                        "unit": analyte.unit,
                        "warning": warning(analyte, value),
                        **{c: row[c] for c in extra},
                    }
                )
        if rule is not None:
            delivered = None if row["value"] is None else str(row["value"])
            bad.append({**row, "value": delivered, "rule": rule, "detail": detail})
    lineage = {c: rows.schema[c] for c in extra}
    return (
        pl.DataFrame(valid, schema=VALID_SCHEMA | lineage),
        pl.DataFrame(bad, schema=QUARANTINE_SCHEMA | lineage),
    )
