"""Lab results: HbA1c rows checked and converted to IFCC mmol/mol.

Input: a polars frame with one row per lab result

    person_id    Utf8   the person's pseudonym
    sample_date  Date   the day the sample was taken
    analyte      Utf8   "HbA1c" (also "hba1c", "b-hba1c", "hemoglobin a1c", "NPU27300")
    value        Float64 (or Utf8: "6,5" and "6.5" are both read as 6.5)
    unit         Utf8   see UNITS

Conversions (all HbA1c is stored in IFCC mmol/mol; the applied one is named in `conversion`):

* ``ifcc``: delivered in mmol/mol, kept as delivered (no rounding).
* ``ngsp``: NGSP/DCCT %, by the NGSP-IFCC master equation (NGSP = 0.09148 IFCC + 2.152,
  www.ngsp.org/ifcc.asp), solved for IFCC: mmol/mol = 10.929 x (% - 2.152).
* ``mono_s``: the Swedish Mono-S %. Swedish laboratories reported HbA1c in Mono-S % until they
  switched to IFCC mmol/mol on 1 September 2010 (www.hba1c.nu). A Mono-S value is ~1 %-unit
  below an NGSP value, so converting it as NGSP would overstate HbA1c by ~11 mmol/mol. We
  convert it by the IFCC network's master equation for Mono-S (Hoelzel W et al., Clin Chem
  2004;50:166-74; as published by the IFCC HbA1c network, information.ifcchba1c.org, "Master
  equations"): IFCC mmol/mol = 10.11 x MonoS - 8.9. (A Swedish variant, 10.45 x MonoS - 10.62,
  is also quoted; we found no source for it to cite. The two differ by 0.34 x MonoS - 1.72:
  under 0.22 mmol/mol for Mono-S 5.0-5.7 % (IFCC 42-49, where the contracts' thresholds lie),
  0.7 at 7 %. A plan that will not accept that can quarantine instead, see ``mono_s``.)

Which % scale: a unit naming its scale ("% NGSP", "% DCCT", "% Mono-S") is taken at its word;
a plain "%" ("procent", "percent") is Mono-S when sampled before 2010-09-01 (the Swedish
cut-over, MONO_S_UNTIL is the last Mono-S day, 2010-08-31) and NGSP from that day on (a
Swedish laboratory then reports mmol/mol; a % value is a point-of-care device or a foreign
laboratory on the NGSP scale). With ``mono_s="quarantine"`` Mono-S values are quarantined
(rule ``mono_s_not_converted``) instead of converted.

Rounding: a converted value is rounded to whole mmol/mol, half up (the precision Swedish
laboratories report IFCC HbA1c in), computed in exact decimals from the delivered value:
6.5 % NGSP = 10.929 x 4.348 = 47.519 -> 48 mmol/mol; Mono-S 5.5 % = 46.705 -> 47.

Quarantine rules (first that applies, in this order), column `rule`:

* ``missing_field``: person_id, sample_date, analyte, value or unit empty;
* ``not_hba1c``: another analyte (this module handles HbA1c only; split a lab file by
  analyte first);
* ``value_not_a_number``: a text value that does not read as a number;
* ``unknown_unit``: a unit not in UNITS;
* ``mono_s_not_converted``: (only with ``mono_s="quarantine"``) a Mono-S value;
* ``out_of_range``: the value in mmol/mol outside the hard range 15-200 (bounds valid);
* ``duplicate_row``: a later exact copy (person, date, analyte, value and unit as delivered)
  of a row already accepted. Different values of one person on one day are both kept (the
  outcome definitions average them).

Valid rows outside 20-150 mmol/mol (bounds fine) carry ``warning = "outside_20_150"``.
"""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

import polars as pl

MONO_S_UNTIL = dt.date(2010, 8, 31)
#: What a plan may do with Mono-S values (lab_results source key `mono_s`).
MONO_S_CHOICES = ("convert", "quarantine")
HARD_RANGE = (Decimal(15), Decimal(200))
WARN_RANGE = (Decimal(20), Decimal(150))
NGSP_SLOPE, NGSP_OFFSET = Decimal("10.929"), Decimal("2.152")
MONO_S_SLOPE, MONO_S_INTERCEPT = Decimal("10.11"), Decimal("-8.9")

ANALYTES = {"hba1c", "b-hba1c", "hb a1c", "hemoglobin a1c", "haemoglobin a1c", "npu27300"}
#: Delivered unit (lower case, spaces removed) -> scale; "percent" = decided by the date.
UNITS = {
    "mmol/mol": "ifcc",
    "mmol/molhb": "ifcc",
    "ifcc": "ifcc",
    "%": "percent",
    "procent": "percent",
    "percent": "percent",
    "%ngsp": "ngsp",
    "%dcct": "ngsp",
    "ngsp": "ngsp",
    "%mono-s": "mono_s",
    "%monos": "mono_s",
    "mono-s": "mono_s",
    "monos": "mono_s",
}
INPUT = ("person_id", "sample_date", "analyte", "value", "unit")
VALID_SCHEMA = {
    "person_id": pl.Utf8,
    "sample_date": pl.Date,
    "analyte": pl.Utf8,
    "value_delivered": pl.Float64,
    "unit_delivered": pl.Utf8,
    "conversion": pl.Utf8,
    "hba1c_mmol_mol": pl.Float64,
    "warning": pl.Utf8,
}


def ngsp_to_ifcc(percent: Decimal) -> Decimal:
    """NGSP % to IFCC mmol/mol, unrounded: 10.929 x (% - 2.152)."""
    return NGSP_SLOPE * (percent - NGSP_OFFSET)


def mono_s_to_ifcc(percent: Decimal) -> Decimal:
    """Swedish Mono-S % to IFCC mmol/mol, unrounded: 10.11 x % - 8.9."""
    return MONO_S_SLOPE * percent + MONO_S_INTERCEPT


def _number(value: object) -> Decimal | None:
    if isinstance(value, float):
        return Decimal(repr(value))
    text = str(value).strip().replace("\u00a0", "").replace(" ", "").replace(",", ".")
    try:
        d = Decimal(text)
    except InvalidOperation:
        return None
    return d if d.is_finite() else None


def _scale(unit: str, sample_date: dt.date) -> str | None:
    scale = UNITS.get(unit.strip().lower().replace(" ", ""))
    if scale == "percent":
        return "mono_s" if sample_date <= MONO_S_UNTIL else "ngsp"
    return scale


def read(
    number: Decimal, unit: str, sample_date: dt.date, *, mono_s: str = "convert"
) -> tuple[str | None, str | None, Decimal | None]:
    """One HbA1c value read: (rule, detail, None) when it must be quarantined for
    unknown_unit, mono_s_not_converted or out_of_range, else (None, scale, mmol/mol): the
    scale (ifcc, ngsp, mono_s) names the conversion applied (see the module docstring)."""
    scale = _scale(unit, sample_date)
    if scale is None:
        return "unknown_unit", unit, None
    if scale == "mono_s" and mono_s == "quarantine":
        return "mono_s_not_converted", f"{number} % Mono-S", None
    if scale == "ifcc":
        mmol = number
    else:
        exact = ngsp_to_ifcc(number) if scale == "ngsp" else mono_s_to_ifcc(number)
        mmol = exact.quantize(Decimal(1), rounding=ROUND_HALF_UP)
    if not HARD_RANGE[0] <= mmol <= HARD_RANGE[1]:
        return "out_of_range", f"{mmol} mmol/mol outside 15-200", None
    return None, scale, mmol


def validate(rows: pl.DataFrame, *, mono_s: str = "convert") -> tuple[pl.DataFrame, pl.DataFrame]:
    """(valid, quarantined): valid HbA1c rows in mmol/mol (VALID_SCHEMA, in input order) and
    the input rows that failed, with `rule` and `detail` (see the module docstring).

    The rules are utfall.domains.labs.validate's (one copy of them), which handles every
    analyte; here a row of another analyte is quarantined `not_hba1c` instead, and the
    stored value is named `hba1c_mmol_mol`."""
    from utfall.domains import labs

    if mono_s not in MONO_S_CHOICES:
        raise ValueError(f"mono_s must be 'convert' or 'quarantine', not {mono_s!r}")
    missing = [c for c in INPUT if c not in rows.columns]
    if missing:
        raise ValueError(f"lab rows: column(s) {', '.join(missing)} missing")
    extra = [c for c in rows.columns if c.startswith("_")]  # lineage rides along
    pos = "__hba1c_position"
    tagged = rows.select(*INPUT, *extra).with_row_index(pos)
    analyte = pl.col("analyte").cast(pl.Utf8).str.strip_chars().str.to_lowercase()
    empty = pl.any_horizontal(
        [pl.col(c).is_null() | (pl.col(c).cast(pl.Utf8).str.strip_chars() == "") for c in INPUT]
    )
    other = ~empty & ~analyte.is_in(sorted(ANALYTES))
    valid, bad = labs.validate(tagged.filter(~other), mono_s=mono_s)
    not_hba1c = [
        {
            **row,
            "value": None if row["value"] is None else str(row["value"]),
            "rule": "not_hba1c",
            "detail": row["analyte"],
        }
        for row in tagged.filter(other).to_dicts()
    ]
    lineage = {c: rows.schema[c] for c in extra}
    quarantine_schema = {**labs.QUARANTINE_SCHEMA, pos: pl.UInt32} | lineage
    bad = pl.concat(
        [bad.select(*quarantine_schema), pl.DataFrame(not_hba1c, schema=quarantine_schema)]
    ).sort(pos)
    valid = valid.rename({"value": "hba1c_mmol_mol"}).sort(pos)
    return (
        valid.select(*VALID_SCHEMA, *extra).cast(VALID_SCHEMA | lineage),
        bad.drop(pos),
    )
