"""The measurement plan: load, validate against the JSON Schema, check meaning, hash.

A plan is the contract's frozen promise of how outcomes will be measured. Loading fails
with every problem named by file, key path and cause, because a validator must be able to
tell a plan author exactly what to fix. The canonical hash is taken over a normalised
JSON form, so re-formatting or re-ordering keys never changes it, while any change of
meaning does.

Loading is strict because money follows the plan: no typo or YAML trick may change its
meaning unseen. Duplicate keys, anchors, aliases, merge keys and explicit tags are
refused; metric and method parameters are typed and bounded by the METRICS and
METHOD_SPECS registries; amounts are exact decimals that fit the warehouse; names that
become namespaces, folders and tables, and paths that are read from disk, are checked.
Accessors fill in defaults (parameters, `unit_check`, `quality`) without changing the
document, so the hash stays the hash of what was written.
"""

from __future__ import annotations

import copy
import datetime as dt
import difflib
import fnmatch
import hashlib
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache, lru_cache
from pathlib import Path
from typing import Any

import yaml

from utfall.domains import diabetes as _diabetes
from utfall.errors import UserError
from utfall.estimators.base import registry as estimator_registry
from utfall.kinds import employment_status as _employment_status
from utfall.kinds import lab_results as _lab_results
from utfall.kinds import participants as _participants
from utfall.kinds import public_costs as _public_costs
from utfall.params import ParamSpec
from utfall.payments.base import registry as payment_registry
from utfall.payments.base import rule_problems as payment_rule_problems
from utfall.payments.base import rules_item_schema as payment_rules_item_schema

#: Package data (in the repository, utfall/schemas links to the card's schemas/ folder).
SCHEMA_PATH = Path(__file__).parent / "schemas" / "plan.schema.json"

#: Source kinds and the canonical columns each must map (optional ones may be absent).
SOURCE_KINDS: dict[str, dict[str, bool]] = {
    "employee_roster": {
        "personnummer": True,
        "birth_year": True,
        "sex": True,
        "unit_id": True,
        "employment_extent": True,
        "employed_from": True,
        "employed_to": False,
    },
    "sick_leave_spells": {
        "personnummer": True,
        "spell_start": True,
        "spell_end": True,
        "extent": True,
    },
    # One row per person. `person_id` may be a pseudonym already; values that are valid
    # identity numbers are pseudonymised on ingest. Outcome and covariate columns are
    # named by the source's `outcome_columns` and `covariates`.
    "person_table": {
        "person_id": True,
        "treatment": True,
    },
    # One row per unit and period; `treated` (mapped by `treatment_values`) or
    # `treatment_start` (a date, empty = never treated) says which units are treated.
    "unit_panel": {
        "unit_id": True,
        "period": True,
        "treated": False,
        "treatment_start": False,
        "weight": False,
    },
    # Person-level kinds of the outcome contracts (one module each in utfall/kinds, whose
    # row checks are utfall.domains' validate functions); participants take `covariates`.
    "participants": dict(_participants.COLUMNS),
    "lab_results": dict(_lab_results.COLUMNS),
    "employment_status": dict(_employment_status.COLUMNS),
    "public_costs": dict(_public_costs.COLUMNS),
}
#: Source kinds with a person_id column (a pseudonym, or an identity number hashed on ingest).
PERSON_ID_KINDS: tuple[str, ...] = (
    "person_table",
    "participants",
    "lab_results",
    "employment_status",
    "public_costs",
)

#: Source kinds mapped by their columns alone (one extract, no personnummer required),
#: whose outcome and covariate columns the plan names per source.
GENERIC_KINDS: tuple[str, ...] = ("person_table", "unit_panel")


@dataclass(frozen=True)
class MetricSpec:
    """An outcome metric: the source kind its events come from, its parameters, and the
    data shape (utfall.estimators.base.DATA_SHAPES) it gives an estimator."""

    source_kind: str
    parameters: Mapping[str, ParamSpec] = field(default_factory=dict)
    description: str = ""
    data: str = "unit_panel"
    #: Whether an effect relative to the counterfactual level means something, given the
    #: outcome's parameters: yes for levels (a share, a rate, a cost), no for a change from
    #: baseline (its counterfactual may be 0 or negative). A plan may say otherwise per
    #: outcome (`relative_effect`).
    relative: Callable[[Mapping[str, Any]], bool] = lambda _params: True
    #: Whether the metric measures only what was observed by an interim payment period's
    #: `through` (`measured_plan`; the HbA1c follow-ups: samples up to it, windows complete
    #: by it). One that does not (a person table has no dates) cannot measure an interim
    #: period: a plan error.
    cut_at_period_end: bool = True


@dataclass(frozen=True)
class MethodSpec:
    """A counterfactual method and its parameters."""

    parameters: Mapping[str, ParamSpec] = field(default_factory=dict)
    description: str = ""


#: Outcome metrics the engine implements (the JSON Schema's enum must match).
METRICS: dict[str, MetricSpec] = {
    "short_term_sick_days_per_employee": MetricSpec(
        source_kind="sick_leave_spells",
        parameters={
            "max_spell_day": ParamSpec(
                "integer",
                default=14,
                minimum=1,
                maximum=365,
                description="days 1..max_spell_day of each sick period count as short-term",
            ),
            "period_rule": ParamSpec(
                "string",
                default="statutory",
                choices=("statutory", "per_spell"),
                description=(
                    "statutory: a person's spells are joined into sick periods as under "
                    "sjuklönelagen (a change of extent continues the period, and so does "
                    "falling ill again within reillness_days of its end); per_spell: every "
                    "delivered spell is a period of its own"
                ),
            ),
            "reillness_days": ParamSpec(
                "integer",
                default=5,
                minimum=0,
                maximum=30,
                description=(
                    "statutory rule: a spell starting after at most this many sick-free "
                    "calendar days since the period's last sick day continues the period"
                ),
            ),
        },
        description="sick-leave days in days 1..max_spell_day of a sick period, per employee",
    ),
    "sick_leave_rate": MetricSpec(
        source_kind="sick_leave_spells",
        parameters={
            "day_basis": ParamSpec(
                "string",
                default="working_days",
                choices=("working_days", "calendar_days"),
                description=(
                    "working_days (SKR's key figure): sick hours over scheduled hours, with "
                    "scheduled days = Monday to Friday except Swedish public holidays and "
                    "Midsummer, Christmas and New Year's Eve; calendar_days: every day counts"
                ),
            ),
        },
        description="sick-leave share of scheduled hours",
    ),
    "person_value": MetricSpec(
        source_kind="person_table",
        parameters={
            "column": ParamSpec(
                "string",
                default=None,
                description="required: the name of one of the source's outcome_columns",
            ),
        },
        description="one outcome value per person, from a person_table source",
        data="person",
        cut_at_period_end=False,
    ),
    "panel_value": MetricSpec(
        source_kind="unit_panel",
        parameters={
            "column": ParamSpec(
                "string",
                default=None,
                description="required: the name of one of the source's outcome_columns",
            ),
        },
        description="one outcome value per unit and period (weighted by the source's "
        "weight column, if mapped), from a unit_panel source",
    ),
    "hba1c_outcome": MetricSpec(
        source_kind="lab_results",
        parameters={
            "outcome": ParamSpec(
                "string",
                default=None,
                choices=_diabetes.OUTCOMES,
                description=(
                    "required: below_42_{12,24}m (1 = back below 42 mmol/mol), "
                    "progressed_48_{12,24}m (1 = at or above 48) or change_{12,24}m (mmol/mol "
                    "against baseline), at the 12- or 24-month follow-up (utfall.domains.diabetes)"
                ),
            ),
            "window_days": ParamSpec(
                "integer",
                default=90,
                minimum=1,
                maximum=183,
                description="a follow-up sample counts within this many days of the anniversary",
            ),
        },
        description="an HbA1c outcome per participant at 12 or 24 months, from lab_results and "
        "the plan's participants source (its covariates are the estimator's)",
        data="person",
        relative=lambda params: not str(params.get("outcome")).startswith("change_"),
    ),
    "employment_outcome": MetricSpec(
        source_kind="employment_status",
        parameters={
            "outcome": ParamSpec(
                "string",
                default=None,
                choices=("entered_work", "sustained_13_weeks", "sustained_26_weeks", "earnings"),
                description=(
                    "required: entered_work (1 = an employed month after enrolment), "
                    "sustained_13_weeks / sustained_26_weeks (1 = 3 / 6 consecutive employed "
                    "months), earnings (kronor delivered for the months after enrolment; a "
                    "month without earnings counts 0), to the end of the measurement period "
                    "(utfall.domains.employment)"
                ),
            ),
        },
        description="an employment outcome per participant, from employment_status and the "
        "plan's participants source; the rate card's events are the treated participants'",
        data="person",
    ),
    "public_cost": MetricSpec(
        source_kind="public_costs",
        parameters={
            "months": ParamSpec(
                "integer",
                default=12,
                minimum=1,
                maximum=120,
                description=(
                    "the window: the cost over this many calendar months after the enrolment "
                    "month (12: enrolled in March 2024, April 2024 to March 2025); persons "
                    "whose window ends after the measurement period are left out"
                ),
            ),
        },
        description="public cost per participant (all cost types, exact sums, in the "
        "contract's currency) over a window after enrolment, from public_costs and the plan's "
        "participants source; the effect is the cost per person against the counterfactual, "
        "and savings = -effect x persons treated",
        data="person",
    ),
}
#: Metrics that must be given these parameters (no default makes sense).
REQUIRED_METRIC_PARAMETERS: dict[str, tuple[str, ...]] = {
    "person_value": ("column",),
    "panel_value": ("column",),
    "hba1c_outcome": ("outcome",),
    "employment_outcome": ("outcome",),
}
#: A participants source's own columns a person method's formulas may name (besides the
#: plan's covariates): age (numeric) and sex (categorical, F/M).
PARTICIPANT_COVARIATES: tuple[str, ...] = ("age", "sex")
#: Metrics on person-level kinds that also read the plan's one participants source.
PARTICIPANT_METRICS: tuple[str, ...] = ("hba1c_outcome", "employment_outcome", "public_cost")
#: Which source kind each metric reads its events from (derived from METRICS).
METRIC_SOURCE_KIND: dict[str, str] = {name: m.source_kind for name, m in METRICS.items()}

#: Counterfactual methods the engine implements, from the estimator registry (one module
#: per method in utfall/estimators); the plan schema's method enum is filled from it.
METHOD_SPECS: dict[str, MethodSpec] = {
    name: MethodSpec(parameters=e.parameters, description=e.description)
    for name, e in estimator_registry().items()
}
#: Each method's parameter names (derived from METHOD_SPECS).
METHODS: dict[str, tuple[str, ...]] = {
    name: tuple(m.parameters) for name, m in METHOD_SPECS.items()
}


#: Source kinds whose names a source may take: plans already name a person_table source
#: "participants", and no table, view or asset key is named after a source's kind.
UNRESERVED_KINDS: frozenset[str] = frozenset({"participants", "lab_results"})

#: Names of internal tables and schemas a source must not take (its name becomes a table).
RESERVED_SOURCE_NAMES: frozenset[str] = frozenset(
    {
        "deliveries",
        "rows",
        "reconciliation",
        "runs",
        "published",
        "meta",
        "quality",
        "effects",
        "outcome_panel",
        "payments_proposed",
        "payment_proposal",
        "employee_roster",
        "sick_leave_spells",
        "values",
        "source_values",
    }
) | (frozenset(SOURCE_KINDS) - UNRESERVED_KINDS)

#: Data-quality defaults: what `Plan.quality` returns for keys a plan leaves out. Severity
#: `block` stops the run, `warn` lists the failure in the report, `off` skips the check;
#: the other values are shares in (0, 1]. Read it, do not change it.
QUALITY_DEFAULTS: dict[str, Any] = {
    "control_file": None,
    "expectations": {
        "volume_vs_history": {"severity": "warn", "max_relative_change": 0.15},
        "volume_vs_baseline": {"severity": "warn", "max_relative_change": 0.30},
        "periods_present": {"severity": "block"},
        "units_present": {"severity": "block"},
        "null_share": {"severity": "warn", "max_share": 0.02},
        "value_ranges": {"severity": "block"},
    },
}

#: Money: DECIMAL(18,2) holds amounts below 10^16 in absolute value, sums included.
MAX_AMOUNT_EXCLUSIVE = Decimal(10) ** 16

#: What each pattern of the plan schema means, for messages a plan author can act on.
_PATTERN_MEANINGS = {
    "^[a-z0-9][a-z0-9_-]{0,62}$": (
        "is not a valid contract id: 1 to 63 characters, lower-case letters a-z, digits, "
        "'_' or '-', starting with a letter or digit"
    ),
    "^[a-z][a-z0-9_]{0,62}$": (
        "is not a valid name: 1 to 63 characters, lower-case letters a-z, digits or '_', "
        "starting with a letter"
    ),
    "^(0|[1-9][0-9]{0,15})(\\.[0-9]{1,2})?$": (
        'is not an amount: a decimal string such as "1400000.00", with at most 16 '
        "digits before the point, no leading zero, and at most 2 decimals"
    ),
    "^[A-Z]{3}$": "is not a currency code: three upper-case letters, such as SEK",
}


class PlanError(UserError, ValueError):
    """A plan that cannot be used; lists every problem as `file: key.path: problem`."""

    def __init__(self, path: Path | str, problems: list[tuple[str, str]]):
        self.path = str(path)
        self.problems = problems
        lines = [f"{self.path}: {key or '<root>'}: {problem}" for key, problem in problems]
        super().__init__("invalid measurement plan\n  " + "\n  ".join(lines))


_MERGE_TAG = "tag:yaml.org,2002:merge"


class _PlanLoader(yaml.SafeLoader):
    """A SafeLoader that refuses every YAML construct able to change a plan's meaning unseen.

    It collects problems (key path, message) instead of stopping at the first:

    * a key given twice in one mapping (PyYAML keeps the last one silently);
    * anchors `&a`, aliases `*a` and merge keys `<<` (one edit then changes several places);
    * explicit tags such as `!!int` or `!!timestamp` (they bring back YAML 1.1 readings);
    * keys that are not text (JSON, which the hash is taken over, has only text keys).

    Plain scalars are typed narrowly, the YAML 1.2 (JSON-like) way: only `true`/`false`
    are booleans, so `severity: off` stays the text "off"; only decimal integers without a
    leading zero are integers, so `014` (octal 12 in YAML 1.1) and `1:30` (sexagesimal 90)
    stay text and fail the schema instead of becoming other numbers; floats need a point,
    as in YAML 1.1 (so what PyYAML writes reads back the same); dates stay text, so a bad
    date is reported, not a crash; `.inf`, `.nan` and `1_000` stay text.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._problems: list[tuple[int, str, str]] = []
        self._path_stack: list[tuple[Any, ...]] = []
        self._node_paths: dict[int, tuple[Any, ...]] = {}

    def _problem(self, line: int, path: tuple[Any, ...], message: str) -> None:
        self._problems.append((line, _key_path(path), message))

    @property
    def problems(self) -> list[tuple[str, str]]:
        """(key path, problem) in the order of the lines they are on."""
        return [(key, message) for _, key, message in sorted(self._problems)]

    def compose_node(self, parent: Any, index: Any) -> Any:
        parent_path = self._path_stack[-1] if self._path_stack else ()
        if parent is None:
            path: tuple[Any, ...] = ()
        elif isinstance(index, yaml.ScalarNode):  # a mapping value, under its key
            path = (*parent_path, index.value)
        elif isinstance(index, int):  # a sequence item
            path = (*parent_path, index)
        else:  # a mapping key (or a value under a complex key): name the mapping
            path = parent_path
        if self.check_event(yaml.AliasEvent):
            event = self.get_event()
            line = event.start_mark.line + 1
            self._problem(
                line,
                path,
                f"alias *{event.anchor} (line {line}) is not allowed; write the value out in full",
            )
            # A placeholder, never the anchored node: nothing is shared or expanded.
            return yaml.ScalarNode("tag:yaml.org,2002:null", "", event.start_mark, event.end_mark)
        event = self.peek_event()
        line = event.start_mark.line + 1
        if event.anchor is not None:
            self._problem(
                line,
                path,
                f"anchor &{event.anchor} (line {line}) is not allowed; "
                "write each value out in full",
            )
            event.anchor = None
        if getattr(event, "tag", None) is not None:
            tag = event.tag.replace("tag:yaml.org,2002:", "!!", 1)
            self._problem(line, path, f"explicit tag {tag} (line {line}) is not allowed; remove it")
            event.tag = None  # read it as if untagged, so the remaining checks still run
        self._path_stack.append(path)
        try:
            node = super().compose_node(parent, index)
        finally:
            self._path_stack.pop()
        self._node_paths[id(node)] = path
        return node

    def construct_mapping(self, node: Any, deep: bool = False) -> Any:
        if isinstance(node, yaml.MappingNode):
            path = self._node_paths.get(id(node), ())
            first_line: dict[Any, int] = {}
            kept = []
            for key_node, value_node in node.value:
                line = key_node.start_mark.line + 1
                if key_node.tag == _MERGE_TAG:
                    self._problem(
                        line,
                        path,
                        f"merge key << (line {line}) is not allowed; write the keys out in full",
                    )
                    continue
                key = self.construct_object(key_node, deep=True)
                if not isinstance(key, str):
                    self._problem(
                        line, path, f"key {key!r} (line {line}) is not text; put it in quotes"
                    )
                    continue
                if key in first_line:
                    self._problem(
                        line,
                        (*path, key),
                        f"duplicate key (lines {first_line[key]} and {line}); "
                        "YAML would silently keep only the last",
                    )
                    continue
                first_line[key] = line
                kept.append((key_node, value_node))
            node.value = kept
        return super().construct_mapping(node, deep=deep)


# Implicit typing of plain scalars: YAML 1.2's core schema, narrowed (see _PlanLoader).
_PlanLoader.yaml_implicit_resolvers = {}
for _tag, _regexp, _first in (
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", list("tTfF")),
    ("tag:yaml.org,2002:int", r"^[-+]?(?:0|[1-9][0-9]*)$", list("-+0123456789")),
    (
        "tag:yaml.org,2002:float",
        r"^[-+]?(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?$",  # a point, as YAML 1.1
        list("-+.0123456789"),
    ),
    (_MERGE_TAG, r"^(?:<<)$", ["<"]),
):
    _PlanLoader.add_implicit_resolver(_tag, re.compile(_regexp), _first)


def _read_yaml(text: str) -> tuple[Any, list[tuple[str, str]]]:
    """The document and the problems of its YAML form (raises yaml.YAMLError if not YAML)."""
    loader = _PlanLoader(text)
    try:
        return loader.get_single_data(), loader.problems
    finally:
        loader.dispose()


@cache
def plan_schema() -> dict[str, Any]:
    """The plan's JSON Schema, with the allowed counterfactual methods filled in from the
    estimator registry (so a new estimator module needs no schema edit)."""
    schema = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    method = schema["properties"]["counterfactual"]["properties"]["method"]
    method["enum"] = sorted(METHOD_SPECS)
    rules = schema["properties"]["payment"]["properties"]["rules"]
    rules["items"] = payment_rules_item_schema()  # from the payment rule registry
    schema["properties"]["outcomes"]["items"]["properties"]["metric"]["enum"] = list(METRICS)
    schema["properties"]["sources"]["items"]["properties"]["kind"]["enum"] = list(SOURCE_KINDS)
    return schema


@dataclass(frozen=True)
class Plan:
    """A validated plan. `data` is the normalised document; accessors give typed views."""

    path: Path
    data: dict[str, Any]
    hash: str
    #: The payment period a run measures (`utfall.payments.periods.measured_plan`: `data`'s
    #: measurement period then ends on its `through`); None for the plan as written.
    payment_period: Any = field(default=None, compare=False, repr=False)
    #: sha256 of the text `load_plan` read: the same text loads to the same plan (and hash).
    text_sha256: str | None = field(default=None, compare=False, repr=False)

    @property
    def contract_id(self) -> str:
        return self.data["contract"]["id"]

    def period(self, name: str) -> tuple[dt.date, dt.date]:
        p = self.data["periods"][name]
        return dt.date.fromisoformat(p["start"]), dt.date.fromisoformat(p["end"])

    @property
    def sources(self) -> list[dict[str, Any]]:
        return self.data["sources"]

    def source(self, name: str) -> dict[str, Any]:
        for s in self.sources:
            if s["name"] == name:
                return s
        raise KeyError(name)

    def sources_of_kind(self, kind: str) -> list[dict[str, Any]]:
        return [s for s in self.sources if s["kind"] == kind]

    def source_columns(self, name: str) -> dict[str, str]:
        """Every column a source reads (see :func:`source_columns`)."""
        return source_columns(self.source(name))

    def treatment_groups(self, name: str) -> dict[str, str]:
        """A generic source's delivered treatment value -> "treated" / "comparison"."""
        values = self.source(name).get("treatment_values") or {}
        return {str(v): group for group in ("treated", "comparison") for v in values.get(group, [])}

    @property
    def has_cohort(self) -> bool:
        """True for plans measuring employees of named units (the roster's cohort)."""
        return "cohort" in self.data

    @property
    def roster_source(self) -> str | None:
        return self.data["cohort"]["roster_source"] if self.has_cohort else None

    @property
    def data_shape(self) -> str:
        """The input shape of the plan's counterfactual method (a DATA_SHAPES key)."""
        return estimator_registry()[self.counterfactual["method"]].data

    @property
    def treated_units(self) -> list[str]:
        return list(self.data["cohort"]["treated_units"]) if self.has_cohort else []

    @property
    def comparison_units(self) -> list[str]:
        return list(self.data["cohort"]["comparison_units"]) if self.has_cohort else []

    @property
    def unit_check(self) -> str:
        """'error' (default): a cohort unit missing from the roster stops the run;
        'warn': it is listed in the report instead."""
        return self.data.get("cohort", {}).get("unit_check", "error")

    @property
    def min_employment_extent(self) -> int:
        cohort = self.data.get("cohort", {})
        return int(cohort.get("eligibility", {}).get("min_employment_extent", 0))

    @property
    def outcomes(self) -> list[dict[str, Any]]:
        return self.data["outcomes"]

    def outcome(self, outcome_id: str) -> dict[str, Any]:
        for o in self.outcomes:
            if o["id"] == outcome_id:
                return o
        raise KeyError(outcome_id)

    def relative_effect(self, outcome_id: str) -> bool:
        """Whether the outcome's effect is also reported relative to the counterfactual
        level: the outcome's `relative_effect`, else its metric's default (MetricSpec)."""
        outcome = self.outcome(outcome_id)
        if "relative_effect" in outcome:
            return bool(outcome["relative_effect"])
        return METRICS[outcome["metric"]].relative(self.outcome_parameters(outcome_id))

    def outcome_parameters(self, outcome_id: str) -> dict[str, Any]:
        """The outcome's metric parameters, defaults filled in for those not given."""
        outcome = self.outcome(outcome_id)
        spec = METRICS[outcome["metric"]]
        return _with_defaults(spec.parameters, outcome.get("parameters") or {})

    @property
    def counterfactual(self) -> dict[str, Any]:
        return self.data["counterfactual"]

    @property
    def counterfactual_parameters(self) -> dict[str, Any]:
        """The method's parameters, defaults filled in for those not given."""
        spec = METHOD_SPECS[self.counterfactual["method"]]
        return _with_defaults(spec.parameters, self.counterfactual.get("parameters") or {})

    @property
    def payment(self) -> dict[str, Any]:
        return self.data["payment"]

    @property
    def quality(self) -> dict[str, Any]:
        """The data-quality config with every default filled in (a fresh copy):
        {"control_file": str | None, "expectations": {name: {"severity": ..., params}}}."""
        given = self.data.get("quality", {})
        given_expectations = given.get("expectations", {})
        expectations = {}
        for name, defaults in QUALITY_DEFAULTS["expectations"].items():
            merged = {**defaults, **given_expectations.get(name, {})}
            expectations[name] = {k: v if k == "severity" else float(v) for k, v in merged.items()}
        return {"control_file": given.get("control_file"), "expectations": expectations}

    @property
    def min_cell_size(self) -> int:
        return int(self.data["disclosure"]["min_cell_size"])


def source_columns(source: dict[str, Any]) -> dict[str, str]:
    """Every column a source reads: canonical or plan-given name -> delivered column.

    For the generic kinds these are the kind's mapped columns, then the source's
    `outcome_columns` and `covariates` under the names the plan gives them."""
    columns = dict(source["columns"])
    columns.update(source.get("outcome_columns") or {})
    columns.update({k: v["column"] for k, v in (source.get("covariates") or {}).items()})
    return columns


def _with_defaults(specs: Mapping[str, ParamSpec], given: Mapping[str, Any]) -> dict[str, Any]:
    return {name: given.get(name, spec.default) for name, spec in specs.items()}


def did_you_mean(word: str, choices: Any) -> str:
    """'; did you mean 'x'?' for the closest of `choices`, or '' if none is close."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def _type_name(value: Any) -> str:
    if value is None:
        return "null (an empty value)"
    return f"{type(value).__name__} {value!r}"


def _range_text(spec: ParamSpec) -> str:
    if spec.minimum is not None and spec.maximum is not None:
        return f"between {spec.minimum} and {spec.maximum}"
    if spec.minimum is not None:
        return f"at least {spec.minimum}"
    return f"at most {spec.maximum}"


def parameter_problems(
    key: str, owner: str, specs: Mapping[str, ParamSpec], given: Mapping[str, Any]
) -> list[tuple[str, str]]:
    """Problems of `given` parameters against their specs; `owner` names whose they are."""
    problems: list[tuple[str, str]] = []
    for name, value in given.items():
        at = f"{key}.{name}"
        spec = specs.get(name)
        if spec is None:
            if not specs:
                problems.append((at, f"unknown parameter: {owner} takes no parameters"))
            else:
                problems.append(
                    (
                        at,
                        f"unknown parameter of {owner}{did_you_mean(name, specs)} "
                        f"(expected: {', '.join(specs)})",
                    )
                )
            continue
        if spec.type == "integer":
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif spec.type == "number":
            ok = isinstance(value, int | float) and not isinstance(value, bool)
        else:
            ok = isinstance(value, str)
        if not ok:
            problems.append((at, f"expected {spec.type}, got {_type_name(value)}"))
        elif spec.choices is not None and value not in spec.choices:
            problems.append((at, f"{value!r} is not one of: {', '.join(spec.choices)}"))
        elif (spec.minimum is not None and value < spec.minimum) or (
            spec.maximum is not None and value > spec.maximum
        ):
            problems.append((at, f"must be {_range_text(spec)}, got {value!r}"))
    return problems


def canonical_json(data: Any) -> str:
    """Normalised JSON text: sorted keys, no whitespace, UTF-8 kept (the hashed form)."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def plan_hash(data: dict[str, Any]) -> str:
    return "sha256:" + hashlib.sha256(canonical_json(data).encode("utf-8")).hexdigest()


def load_plan(path: str | Path) -> Plan:
    """Read, validate and hash a plan file; raise PlanError naming every problem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PlanError(path, [("", "file not found")]) from None
    except UnicodeDecodeError as exc:
        raise PlanError(
            path, [("", f"not UTF-8 text ({exc.reason} at byte {exc.start})")]
        ) from None
    data, problems, digest = _checked(text)
    if problems:
        raise PlanError(path, list(problems))
    # A fresh copy each time: callers (and `measured_plan`) may derive plans from `data`.
    return Plan(
        path=path.resolve(),
        data=copy.deepcopy(data),
        hash=digest,
        text_sha256=hashlib.sha256(text.encode("utf-8")).hexdigest(),
    )


@lru_cache(maxsize=32)
def _checked(text: str) -> tuple[Any, list[tuple[str, str]], str]:
    """(document, problems, hash) of a plan's text, remembered per process by the text.

    Parsing the YAML (a pure-Python loader, for positions and duplicate keys) and checking
    it costs ~50 ms, and a Dagster run reads its plan file once per asset; the result
    depends on the text alone, so the same text is checked once. Callers copy the document.
    """
    try:
        data, yaml_problems = _read_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        return None, [(where, f"not valid YAML: {getattr(exc, 'problem', exc)}")], ""
    if yaml_problems:
        return None, yaml_problems, ""
    if not isinstance(data, dict):
        return None, [("", "the plan must be a YAML mapping")], ""
    problems = _schema_problems(data)
    if not problems:
        problems = _meaning_problems(data)
    if problems:
        return None, problems, ""
    return data, [], plan_hash(data)


def _key_path(parts: Any) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _pattern_keyword(validator: Any, pattern: str, instance: Any, schema: Any) -> Any:
    """JSON Schema `pattern`, except that `$` means the very end of the text.

    (Python's `$` also matches before a final newline, so `id: |` with "abc\\n" would pass.)
    """
    from jsonschema.exceptions import ValidationError

    if not validator.is_type(instance, "string"):
        return
    anchored = (
        pattern[:-1] + r"\Z" if pattern.endswith("$") and not pattern.endswith("\\$") else pattern
    )
    if not re.search(anchored, instance):
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


@cache
def _schema_validator() -> Any:
    """The plan schema's validator, with `integer` meaning an int: not 5.0, not true."""
    from jsonschema import Draft202012Validator, FormatChecker, validators

    strict_integer = Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _checker, x: isinstance(x, int) and not isinstance(x, bool)
    )
    cls = validators.extend(
        Draft202012Validator,
        validators={"pattern": _pattern_keyword},
        type_checker=strict_integer,
    )
    return cls(plan_schema(), format_checker=FormatChecker())


def _schema_problems(data: dict[str, Any]) -> list[tuple[str, str]]:
    problems = []
    for err in sorted(
        _schema_validator().iter_errors(data), key=lambda e: (list(map(str, e.path)), e.message)
    ):
        key = _key_path(err.absolute_path)
        value, inst = err.validator_value, err.instance
        if err.validator == "required":
            missing = err.message.split("'")[1] if "'" in err.message else err.message
            key = f"{key}.{missing}" if key else missing
            problems.append((key, "required key is missing"))
        elif err.validator == "additionalProperties":
            known = list(err.schema.get("properties", {}))
            for extra in sorted(k for k in inst if k not in known):
                hint = did_you_mean(extra, known) or f"; expected one of: {', '.join(known)}"
                problems.append((key, f"unknown key {extra!r}{hint}"))
        elif err.validator == "enum":
            allowed = ", ".join(map(str, value))
            what = "method" if key.endswith("method") else "value"
            problems.append(
                (
                    key,
                    f"unknown {what} {inst!r}{did_you_mean(inst, value)} "
                    f"(expected one of: {allowed})",
                )
            )
        elif err.validator == "format" and value == "date":
            problems.append((key, f"{inst!r} is not a valid date (YYYY-MM-DD)"))
        elif err.validator == "type":
            expected = " or ".join(value) if isinstance(value, list) else value
            problems.append((key, f"expected {expected}, got {_type_name(inst)}"))
        elif err.validator == "pattern" and value in _PATTERN_MEANINGS:
            problems.append((key, f"{inst!r} {_PATTERN_MEANINGS[value]}"))
        elif err.validator in _BOUND_WORDS:
            problems.append((key, f"must be {_BOUND_WORDS[err.validator]} {value}, got {inst!r}"))
        elif err.validator == "uniqueItems":
            twice = sorted({str(x) for x in inst if inst.count(x) > 1})
            problems.append((key, f"listed more than once: {', '.join(twice)}"))
        elif err.validator == "minLength" and value == 1:
            problems.append((key, "must not be empty"))
        elif err.validator == "minItems" and value == 1:
            problems.append((key, "must list at least one item"))
        else:
            problems.append((key, err.message))
    return problems


_BOUND_WORDS = {
    "minimum": "at least",
    "exclusiveMinimum": "greater than",
    "maximum": "at most",
    "exclusiveMaximum": "less than",
}


def delivery_path_problem(value: str) -> str | None:
    """Why `value` cannot be a path below the deliveries directory, or None if it can.

    Glob characters are allowed; symbolic links are resolved (and refused) at ingest.
    """
    if value.startswith(("/", "~")):
        what = "absolute" if value.startswith("/") else "a home-directory path"
        return f"{value!r} is {what}; give a path relative to the deliveries directory"
    if re.match(r"[A-Za-z]:", value):
        return f"{value!r} starts with a drive; give a path relative to the deliveries directory"
    if "\\" in value:
        return f"{value!r} contains a backslash; separate folders with /"
    if ".." in value.split("/"):
        return f"{value!r} has a '..' component; it must stay inside the deliveries directory"
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        return f"{value!r} contains a control character"
    return None


def _meaning_problems(data: dict[str, Any]) -> list[tuple[str, str]]:
    """Rules a JSON Schema cannot say: order of dates, references between sections."""
    problems: list[tuple[str, str]] = []
    periods = data["periods"]
    ranges = {}
    for name in ("baseline", "measurement"):
        start = dt.date.fromisoformat(periods[name]["start"])
        end = dt.date.fromisoformat(periods[name]["end"])
        ranges[name] = (start, end)
        if end < start:
            problems.append((f"periods.{name}.end", f"{end} is before start {start}"))
        word, starts, ends = PERIOD_BOUNDARIES[periods["frequency"]]
        if start.day != 1 or start.month not in starts:
            problems.append((f"periods.{name}.start", f"{start} does not start a {word}"))
        if (end + dt.timedelta(days=1)).day != 1 or end.month not in ends:
            problems.append((f"periods.{name}.end", f"{end} does not end a {word}"))
    if ranges["measurement"][0] <= ranges["baseline"][1]:
        problems.append(("periods.measurement.start", "must come after the baseline period ends"))

    if periods["frequency"] != "quarterly":
        for o in data["outcomes"]:
            if METRICS[o["metric"]].source_kind in ("sick_leave_spells", "employee_roster"):
                problems.append(
                    (
                        "periods.frequency",
                        f"outcome {o['id']!r} (metric {o['metric']}) is measured by quarter; "
                        "use frequency quarterly",
                    )
                )
                break

    names = [s["name"] for s in data["sources"]]
    for i, s in enumerate(data["sources"]):
        if names.count(s["name"]) > 1:
            problems.append((f"sources[{i}].name", f"duplicate source name {s['name']!r}"))
        if s["name"] in RESERVED_SOURCE_NAMES:
            problems.append(
                (
                    f"sources[{i}].name",
                    f"{s['name']!r} is reserved for an internal table; choose another name",
                )
            )
        path_problem = delivery_path_problem(s["path"])
        if path_problem:
            problems.append((f"sources[{i}].path", path_problem))
        spec = SOURCE_KINDS[s["kind"]]
        for col in s["columns"]:
            if col not in spec:
                problems.append(
                    (
                        f"sources[{i}].columns.{col}",
                        f"not a column of kind {s['kind']}{did_you_mean(col, spec)} "
                        f"(expected: {', '.join(spec)})",
                    )
                )
        for col, required in spec.items():
            if required and col not in s["columns"]:
                problems.append(
                    (f"sources[{i}].columns.{col}", "required column mapping is missing")
                )
        problems += _generic_source_problems(i, s)
        problems += _person_source_problems(i, s)
        delivered: dict[str, str] = {}
        variable = [
            (f"outcome_columns.{k}", v) for k, v in (s.get("outcome_columns") or {}).items()
        ]
        variable += [
            (f"covariates.{k}.column", v["column"]) for k, v in (s.get("covariates") or {}).items()
        ]
        for col, name in [*s["columns"].items(), *variable]:
            if name in delivered:
                # One delivered column read as two: e.g. the personnummer column mapped to
                # `sex` as well would carry identity numbers into a plain column.
                at = col if "." in col else f"columns.{col}"
                problems.append(
                    (
                        f"sources[{i}].{at}",
                        f"delivered column {name!r} is already mapped to {delivered[name]!r}; "
                        "each delivered column may be mapped once",
                    )
                )
            else:
                delivered[name] = col

    def check_source(key: str, name: str, kind: str) -> None:
        if name not in names:
            problems.append((key, f"unknown source {name!r}; plan sources: {', '.join(names)}"))
        elif data["sources"][names.index(name)]["kind"] != kind:
            problems.append((key, f"source {name!r} is not of kind {kind}"))

    cohort = data.get("cohort")
    needs_cohort = [
        s["name"] for s in data["sources"] if s["kind"] in ("employee_roster", "sick_leave_spells")
    ]
    if cohort is None and needs_cohort:
        problems.append(
            (
                "cohort",
                "required key is missing: sources of kind employee_roster or "
                f"sick_leave_spells ({', '.join(needs_cohort)}) are measured for the cohort's "
                "treated and comparison units",
            )
        )
    if cohort is not None:
        check_source("cohort.roster_source", cohort["roster_source"], "employee_roster")
        for group in ("treated_units", "comparison_units"):
            for j, unit in enumerate(cohort[group]):
                if unit != unit.strip():
                    problems.append(
                        (f"cohort.{group}[{j}]", f"{unit!r} has leading or trailing whitespace")
                    )
        both = set(cohort["treated_units"]) & set(cohort["comparison_units"])
        if both:
            problems.append(
                ("cohort.comparison_units", f"units also treated: {', '.join(sorted(both))}")
            )

    outcome_ids = [o["id"] for o in data["outcomes"]]
    for i, o in enumerate(data["outcomes"]):
        metric = METRICS[o["metric"]]
        check_source(f"outcomes[{i}].source", o["source"], metric.source_kind)
        if outcome_ids.count(o["id"]) > 1:
            problems.append((f"outcomes[{i}].id", f"duplicate outcome id {o['id']!r}"))
        if o["metric"] in PARTICIPANT_METRICS:
            n_part = sum(1 for s in data["sources"] if s["kind"] == "participants")
            if n_part != 1:
                problems.append(
                    (
                        f"outcomes[{i}].metric",
                        f"metric {o['metric']} needs exactly one source of kind participants "
                        f"(the plan has {n_part})",
                    )
                )
        given = o.get("parameters") or {}
        problems += parameter_problems(
            f"outcomes[{i}].parameters", f"metric {o['metric']}", metric.parameters, given
        )
        for name in REQUIRED_METRIC_PARAMETERS.get(o["metric"], ()):
            if name not in given:
                problems.append(
                    (
                        f"outcomes[{i}].parameters.{name}",
                        f"required key is missing (metric {o['metric']}: "
                        f"{metric.parameters[name].description})",
                    )
                )
        column = given.get("column")
        if "column" in metric.parameters and isinstance(column, str) and o["source"] in names:
            source = data["sources"][names.index(o["source"])]
            known = source.get("outcome_columns") or {}
            if source["kind"] == metric.source_kind and column not in known:
                problems.append(
                    (
                        f"outcomes[{i}].parameters.column",
                        f"{column!r} is not one of source {o['source']!r}'s outcome_columns"
                        f"{did_you_mean(column, known)} (expected: {', '.join(known) or 'none'})",
                    )
                )
    problems += _shape_problems(data)
    if not problems:
        problems += _formula_problems(data)

    cf = data["counterfactual"]
    cf_params = cf.get("parameters") or {}
    cf_problems = parameter_problems(
        "counterfactual.parameters",
        f"method {cf['method']}",
        METHOD_SPECS[cf["method"]].parameters,
        cf_params,
    )
    problems += cf_problems
    check = estimator_registry()[cf["method"]].check
    if not cf_problems and check is not None:
        given = _with_defaults(METHOD_SPECS[cf["method"]].parameters, cf_params)
        problems += [(f"counterfactual.parameters.{key}", text) for key, text in check(given)]

    control_file = data.get("quality", {}).get("control_file")
    if control_file is not None:
        path_problem = delivery_path_problem(control_file)
        if path_problem:
            problems.append(("quality.control_file", path_problem))
        for s in data["sources"]:
            if fnmatch.fnmatchcase(control_file.lower(), s["path"].lower()):
                problems.append(
                    (
                        "quality.control_file",
                        f"{control_file!r} matches the path {s['path']!r} of source "
                        f"{s['name']!r}, so it would be read as a delivery",
                    )
                )

    payment = data["payment"]
    if payment["outcome"] not in outcome_ids:
        problems.append(
            (
                "payment.outcome",
                f"unknown outcome {payment['outcome']!r}; plan outcomes: {', '.join(outcome_ids)}",
            )
        )
    problems += payment_rule_problems(payment["rules"])
    problems += _relative_payment_problems(data, payment)
    problems += _payment_period_problems(
        payment, ranges["measurement"], data["periods"]["frequency"]
    )
    problems += _interim_period_problems(data, payment, ranges["measurement"][1])
    problems += _payment_basis_problems(payment)
    # an estimator's own check may name the same formula problem as _formula_problems: once
    return list(dict.fromkeys(problems))


def _relative_payment_problems(
    data: Mapping[str, Any], payment: Mapping[str, Any]
) -> list[tuple[str, str]]:
    """A rule that pays on the relative improvement (linear_to_target, threshold_tiers,
    guaranteed_conditional) needs a payment outcome whose relative effect means something."""
    from utfall.payments.base import registry as rule_registry

    outcome = next((o for o in data["outcomes"] if o["id"] == payment["outcome"]), None)
    if outcome is None or outcome.get("metric") not in METRICS:
        return []
    if "relative_effect" in outcome:
        relative = bool(outcome["relative_effect"])
    else:
        given = outcome.get("parameters") or {}
        relative = METRICS[outcome["metric"]].relative(
            _with_defaults(METRICS[outcome["metric"]].parameters, given)
        )
    rules = rule_registry()
    reads = {kind: rule.reads for kind, rule in rules.items()}
    kinds = sorted({r["kind"] for r in payment["rules"] if "effect" in reads.get(r["kind"], ())})
    if relative or not kinds:
        return []
    return [
        (
            "payment.outcome",
            f"outcome {outcome['id']!r} has no relative effect (a change from baseline, or "
            f"relative_effect: false), but the rules {', '.join(kinds)} pay on the relative "
            "improvement; pay on a level outcome instead",
        )
    ]


#: Per frequency: its name, and the months its periods start and end in (the plan's
#: baseline and measurement must start and end on such boundaries).
PERIOD_BOUNDARIES: dict[str, tuple[str, tuple[int, ...], tuple[int, ...]]] = {
    "quarterly": ("quarter", (1, 4, 7, 10), (3, 6, 9, 12)),
    "monthly": ("month", tuple(range(1, 13)), tuple(range(1, 13))),
    "annual": ("year", (1,), (12,)),
}

#: Names the estimator frames use themselves: a plan's outcome or covariate name may not
#: take one (person frames hold person_id, treated, y; unit panels their fixed columns).
FRAME_COLUMNS: frozenset[str] = frozenset(
    {
        "person_id",
        "treated",
        "y",
        "unit_id",
        "group",
        "period",
        "period_start",
        "phase",
        "treatment_start",
        "numerator",
        "denominator",
        "treatment",
        "weight",
    }
)


def _generic_source_problems(i: int, s: dict[str, Any]) -> list[tuple[str, str]]:
    """The plan keys of the generic kinds: only on them, and each consistent."""
    problems: list[tuple[str, str]] = []
    at = f"sources[{i}]"
    keys = ("treatment_values", "outcome_columns", "covariates")
    if s["kind"] not in GENERIC_KINDS:
        for k in keys:
            if k in s and not (k == "covariates" and s["kind"] == "participants"):
                problems.append(
                    (
                        f"{at}.{k}",
                        f"a source of kind {s['kind']} takes no {k}; only the kinds "
                        f"{', '.join(GENERIC_KINDS)} do",
                    )
                )
        return problems
    outcomes = s.get("outcome_columns") or {}
    covariates = s.get("covariates") or {}
    if not outcomes:
        problems.append(
            (f"{at}.outcome_columns", "required key is missing: name at least one outcome column")
        )
    if s["kind"] == "unit_panel" and covariates:
        problems.append(
            (f"{at}.covariates", "a unit_panel takes no covariates (only a person_table does)")
        )
    for name in [*outcomes, *covariates]:
        if name in FRAME_COLUMNS:
            problems.append(
                (
                    f"{at}.{'outcome_columns' if name in outcomes else 'covariates'}.{name}",
                    f"{name!r} is a column of the estimator's frame; choose another name",
                )
            )
    for name in sorted(set(outcomes) & set(covariates)):
        problems.append((f"{at}.covariates.{name}", f"{name!r} is also an outcome column's name"))
    cols = s["columns"]
    uses_flag = s["kind"] == "person_table" or "treated" in cols
    if s["kind"] == "unit_panel" and ("treated" in cols) == ("treatment_start" in cols):
        problems.append(
            (
                f"{at}.columns",
                "map exactly one of treated (a flag, with treatment_values) and "
                "treatment_start (a date; empty = never treated)",
            )
        )
    values = s.get("treatment_values")
    if uses_flag and values is None:
        problems.append(
            (
                f"{at}.treatment_values",
                "required key is missing: which delivered values of the treatment column "
                "mean treated and which comparison",
            )
        )
    elif not uses_flag and values is not None:
        problems.append(
            (f"{at}.treatment_values", "only a mapped treated column takes treatment_values")
        )
    elif values is not None:
        both = {str(v) for v in values["treated"]} & {str(v) for v in values["comparison"]}
        if both:
            problems.append(
                (
                    f"{at}.treatment_values.comparison",
                    f"values also treated: {', '.join(sorted(both))}",
                )
            )
    return problems


#: Plan keys of the person-level kinds: key -> the one kind that takes it.
PERSON_SOURCE_KEYS: dict[str, str] = {"mono_s": "lab_results", "eligibility": "participants"}


def _person_source_problems(i: int, s: dict[str, Any]) -> list[tuple[str, str]]:
    """`mono_s` only on lab_results; `eligibility` only on participants, over its numeric
    columns (age, numeric covariates), each with min <= max."""
    problems: list[tuple[str, str]] = []
    at = f"sources[{i}]"
    for key, kind in PERSON_SOURCE_KEYS.items():
        if key in s and s["kind"] != kind:
            problems.append((f"{at}.{key}", f"only a source of kind {kind} takes {key}"))
    if s["kind"] != "participants":
        return problems
    covariates = s.get("covariates") or {}
    numeric = ["age", *(k for k, v in covariates.items() if v["type"] == "numeric")]
    for column, bounds in (s.get("eligibility") or {}).items():
        if column not in numeric:
            what = (
                "a categorical covariate"
                if column in covariates
                else "not a numeric column of the source"
            )
            problems.append(
                (
                    f"{at}.eligibility.{column}",
                    f"{column!r} is {what}{did_you_mean(column, numeric)} "
                    f"(eligibility may name: {', '.join(numeric)})",
                )
            )
        low, high = bounds.get("min"), bounds.get("max")
        if low is not None and high is not None and low > high:
            problems.append(
                (f"{at}.eligibility.{column}", f"min {low} is above max {high}: nobody is eligible")
            )
    return problems


#: Method parameters that are formulas over a person table's columns (right-hand sides).
FORMULA_PARAMETERS = ("propensity", "covariates")


def _formula_problems(data: dict[str, Any]) -> list[tuple[str, str]]:
    """A person method's formulas may name only covariates of its outcomes' person tables;
    a formula that cannot be read, or names another column, is named here, before any data
    arrive, instead of failing the run."""
    cf = data["counterfactual"]
    if estimator_registry()[cf["method"]].data != "person":
        return []
    from utfall.estimators.formula import FormulaError, parse

    names = [s["name"] for s in data["sources"]]
    covariates: dict[str, str] = {}
    for o in data["outcomes"]:
        if o["source"] in names:
            source = data["sources"][names.index(o["source"])]
            covariates.update({c: o["source"] for c in source.get("covariates") or {}})
        if o["metric"] in PARTICIPANT_METRICS:
            for s in data["sources"]:
                if s["kind"] == "participants":
                    covariates.update({c: s["name"] for c in PARTICIPANT_COVARIATES})
                    covariates.update({c: s["name"] for c in s.get("covariates") or {}})
    problems = []
    for name in FORMULA_PARAMETERS:
        text = (cf.get("parameters") or {}).get(name)
        if not isinstance(text, str) or not text.strip():
            continue
        at = f"counterfactual.parameters.{name}"
        try:
            formula = parse(text, name)
        except FormulaError as exc:
            problems.append((at, str(exc)))
            continue
        for column in formula.columns:
            if column not in covariates:
                problems.append(
                    (
                        at,
                        f"{column!r} is not a covariate of the plan's person table"
                        f"{did_you_mean(column, covariates)} (covariates: "
                        f"{', '.join(covariates) or 'none'})",
                    )
                )
    return problems


def _shape_problems(data: dict[str, Any]) -> list[tuple[str, str]]:
    """The counterfactual method's data shape must be what every outcome's metric gives: a
    person method needs person_value outcomes (a person_table), a unit-panel method
    outcomes measured per unit and period (a unit_panel, or the sick-leave panel)."""
    method = data["counterfactual"]["method"]
    shape = estimator_registry()[method].data
    problems = []
    for i, o in enumerate(data["outcomes"]):
        metric = METRICS[o["metric"]]
        if metric.data != shape:
            need = (
                "outcomes of metric person_value from a person_table source"
                if shape == "person"
                else "outcomes measured per unit and period (metric panel_value from a "
                "unit_panel source, or a sick-leave metric)"
            )
            problems.append(
                (
                    f"outcomes[{i}].metric",
                    f"method {method} estimates from {shape} data and needs {need}; "
                    f"metric {o['metric']} gives {metric.data} data",
                )
            )
    return problems


def _payment_basis_problems(payment: dict[str, Any]) -> list[tuple[str, str]]:
    """The threshold basis's keys: only under that basis, tiers ascending and reachable.

    (Types and ranges are the schema's: numbers, thresholds in [0, 1), shares in [0, 1].)
    """
    problems: list[tuple[str, str]] = []
    if payment["basis"] != "threshold":
        for key in ("threshold_relative_reduction", "tiers"):
            if key in payment:
                problems.append(
                    (
                        f"payment.{key}",
                        f"basis {payment['basis']} takes no {key}; only basis threshold does",
                    )
                )
        return problems
    threshold = payment.get("threshold_relative_reduction", 0)
    tiers = payment.get("tiers") or []
    for j, tier in enumerate(tiers):
        at = f"payment.tiers[{j}]"
        if tier["min_relative_reduction"] < threshold:
            problems.append(
                (
                    f"{at}.min_relative_reduction",
                    f"{tier['min_relative_reduction']!r} is below threshold_relative_reduction "
                    f"{threshold!r}; a tier applies only once the threshold is cleared, so "
                    "start the tiers at or above it",
                )
            )
        if j == 0:
            continue
        before = tiers[j - 1]
        if tier["min_relative_reduction"] <= before["min_relative_reduction"]:
            problems.append(
                (
                    f"{at}.min_relative_reduction",
                    f"{tier['min_relative_reduction']!r} is not above the previous tier's "
                    f"{before['min_relative_reduction']!r}; list tiers in ascending order",
                )
            )
        if tier["share"] < before["share"]:
            problems.append(
                (
                    f"{at}.share",
                    f"{tier['share']!r} is below the previous tier's {before['share']!r}; a "
                    "better result must not pay a smaller share",
                )
            )
    on_effect = [
        k for k, r in payment_registry().items() if r.reads & {"effect", "effect_absolute"}
    ]
    if not any(r["kind"] in on_effect and r.get("savings") != "total" for r in payment["rules"]):
        problems.append(
            (
                "payment.basis",
                f"basis threshold needs a rule that pays on the effect ({', '.join(on_effect)}): "
                "it decides what those pay",
            )
        )
    return problems


def _interim_period_problems(
    data: Mapping[str, Any], payment: Mapping[str, Any], measurement_end: dt.date
) -> list[tuple[str, str]]:
    """An interim payment period measures data up to its `through`: every outcome's metric
    must cut its data there, or the interim would count what happened after it."""
    interim = [
        p["name"]
        for p in payment.get("periods") or []
        if dt.date.fromisoformat(p["through"]) < measurement_end
    ]
    if not interim:
        return []
    problems = []
    for i, o in enumerate(data.get("outcomes") or []):
        spec = METRICS.get(o.get("metric"))
        if spec is not None and not spec.cut_at_period_end:
            problems.append(
                (
                    f"outcomes[{i}].metric",
                    f"{o['metric']} does not cut its data at a payment period's `through`, so "
                    f"interim period(s) {', '.join(map(repr, interim))} would count data from "
                    "after it; pay this contract in one final period",
                )
            )
    return problems


def _payment_period_problems(
    payment: dict[str, Any], measurement: tuple[dt.date, dt.date], frequency: str = "monthly"
) -> list[tuple[str, str]]:
    """Payment periods: unique names, ascending `through` dates within the measurement
    period, each ending a period of the plan's frequency (a run of the period measures
    whole periods up to it), interim ones then one final one that ends with the
    measurement period."""
    periods = payment.get("periods")
    if not periods:
        if "clawback" in payment:
            return [("payment.clawback", "clawback needs payment periods; list them or remove it")]
        return []
    problems: list[tuple[str, str]] = []
    start, end = measurement
    seen: dict[str, int] = {}
    for j, p in enumerate(periods):
        at = f"payment.periods[{j}]"
        if p["name"] in seen:
            problems.append(
                (
                    f"{at}.name",
                    f"duplicate period name {p['name']!r} (also periods[{seen[p['name']]}])",
                )
            )
        seen.setdefault(p["name"], j)
        through = dt.date.fromisoformat(p["through"])
        if not start <= through <= end:
            problems.append(
                (f"{at}.through", f"{through} is outside the measurement period {start}..{end}")
            )
        word, _starts, ends = PERIOD_BOUNDARIES[frequency]
        if (through + dt.timedelta(days=1)).day != 1 or through.month not in ends:
            problems.append(
                (
                    f"{at}.through",
                    f"{through} does not end a {word} (the plan's frequency is {frequency}), "
                    "so a period's data would be cut in part",
                )
            )
        if j and through <= dt.date.fromisoformat(periods[j - 1]["through"]):
            problems.append(
                (
                    f"{at}.through",
                    f"{through} is not after the previous period's {periods[j - 1]['through']}",
                )
            )
        last = j == len(periods) - 1
        if last and p["kind"] != "final":
            problems.append((f"{at}.kind", "the last period must be the final one"))
        if not last and p["kind"] == "final":
            problems.append(
                (f"{at}.kind", "only the last period can be final; the others are interim")
            )
        if last and p["kind"] == "final" and through != end:
            problems.append(
                (
                    f"{at}.through",
                    f"the final period must end with the measurement period, on {end}",
                )
            )
    return problems
