"""The measurement plan: every class of error is named by file, key path and problem;
the canonical hash ignores formatting and key order but not meaning."""

from __future__ import annotations

import copy
import functools
import json
import subprocess
import sys
from pathlib import Path
from unittest.mock import ANY

import pytest
import yaml

from utfall.cli import EXAMPLE_PLAN
from utfall.plan import (
    METHOD_SPECS,
    METHODS,
    METRIC_SOURCE_KIND,
    METRICS,
    QUALITY_DEFAULTS,
    RESERVED_SOURCE_NAMES,
    SOURCE_KINDS,
    UNRESERVED_KINDS,
    ParamSpec,
    PlanError,
    load_plan,
    plan_schema,
)


def _write(tmp_path: Path, data: dict, name: str = "plan.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


@functools.cache
def _example_data() -> dict:
    return yaml.safe_load(EXAMPLE_PLAN.read_text(encoding="utf-8"))


@pytest.fixture
def data() -> dict:
    """The example plan's data, the test's own to change: a deep copy of the file read once
    (reading the YAML again cost ~11 ms in each of ~160 tests)."""
    return copy.deepcopy(_example_data())


def _problems(tmp_path: Path, data: dict) -> list[tuple[str, str]]:
    path = _write(tmp_path, data)
    with pytest.raises(PlanError) as err:
        load_plan(path)
    assert str(path) in str(err.value)
    return err.value.problems


def test_example_plan_loads(example_plan):
    assert example_plan.contract_id == "demokommun-korttidssjuk-2025"
    assert example_plan.hash.startswith("sha256:") and len(example_plan.hash) == 71


def test_example_plan_hash_is_pinned(example_plan):
    # The loader's reading of the example must not drift: its hash is in signed reports.
    assert example_plan.hash == (
        "sha256:86397a0110ecbb04b1a3e34a2349709def111537de045620fef145717211b9bc"
    )


def test_missing_key(tmp_path, data):
    del data["counterfactual"]["confidence"]
    assert ("counterfactual.confidence", "required key is missing") in _problems(tmp_path, data)


def test_missing_top_level_section(tmp_path, data):
    del data["payment"]
    assert ("payment", "required key is missing") in _problems(tmp_path, data)


def test_wrong_type(tmp_path, data):
    data["disclosure"]["min_cell_size"] = "five"
    [(key, problem)] = _problems(tmp_path, data)
    assert key == "disclosure.min_cell_size"
    assert "expected integer" in problem and "'five'" in problem


def test_unknown_method(tmp_path, data):
    data["counterfactual"]["method"] = "crystal_ball"
    [(key, problem)] = _problems(tmp_path, data)
    assert key == "counterfactual.method"
    assert "unknown method 'crystal_ball'" in problem and "did_2x2" in problem


def test_bad_date(tmp_path, data):
    data["periods"]["baseline"]["start"] = "2022-02-30"
    [(key, problem)] = _problems(tmp_path, data)
    assert key == "periods.baseline.start"
    assert "'2022-02-30' is not a valid date" in problem


def test_bad_date_unquoted_in_yaml(tmp_path):
    text = EXAMPLE_PLAN.read_text(encoding="utf-8").replace('"2024-12-31"', "2024-13-31")
    path = tmp_path / "plan.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PlanError) as err:
        load_plan(path)
    assert ("periods.baseline.end", "'2024-13-31' is not a valid date (YYYY-MM-DD)") in (
        err.value.problems
    )


def test_dates_out_of_order(tmp_path, data):
    data["periods"]["measurement"]["start"] = "2024-10-01"
    keys = [k for k, _ in _problems(tmp_path, data)]
    assert "periods.measurement.start" in keys


def test_unknown_source(tmp_path, data):
    data["outcomes"][0]["source"] = "payroll"
    [(key, problem)] = _problems(tmp_path, data)
    assert key == "outcomes[0].source"
    assert "unknown source 'payroll'" in problem and "roster, sick_leave" in problem


def test_unknown_roster_source_and_payment_outcome(tmp_path, data):
    data["cohort"]["roster_source"] = "staff"
    data["payment"]["outcome"] = "happiness"
    keys = dict(_problems(tmp_path, data))
    assert "unknown source 'staff'" in keys["cohort.roster_source"]
    assert "unknown outcome 'happiness'" in keys["payment.outcome"]


def test_unknown_key_and_missing_column_mapping(tmp_path, data):
    data["contract"]["colour"] = "blue"
    problems = _problems(tmp_path, data)
    assert any(k == "contract" and "colour" in p for k, p in problems)
    data = yaml.safe_load(EXAMPLE_PLAN.read_text(encoding="utf-8"))
    del data["sources"][1]["columns"]["extent"]
    assert ("sources[1].columns.extent", "required column mapping is missing") in _problems(
        tmp_path, data
    )


def test_unit_both_treated_and_comparison(tmp_path, data):
    data["cohort"]["comparison_units"].append("HEMTJ-01")
    assert any("HEMTJ-01" in p for _, p in _problems(tmp_path, data))


def test_not_yaml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("contract: [unclosed\n", encoding="utf-8")
    with pytest.raises(PlanError, match="not valid YAML"):
        load_plan(bad)
    with pytest.raises(PlanError, match="file not found"):
        load_plan(tmp_path / "nope.yaml")


def test_every_problem_is_reported_at_once(tmp_path, data):
    data["counterfactual"]["method"] = "magic"
    data["periods"]["baseline"]["end"] = "2024-02-30"
    assert len(_problems(tmp_path, data)) == 2


def test_hash_stable_across_key_order_and_formatting(tmp_path, data, example_plan):
    reordered = dict(reversed(list(data.items())))
    reordered["contract"] = dict(reversed(list(data["contract"].items())))
    path = tmp_path / "other.yaml"
    path.write_text(json.dumps(reordered, indent=7), encoding="utf-8")  # JSON is YAML too
    assert load_plan(path).hash == example_plan.hash
    assert load_plan(_write(tmp_path, data, "dumped.yaml")).hash == example_plan.hash


def test_hash_changes_with_meaning(tmp_path, data, example_plan):
    data["payment"]["rules"][1]["target_relative_reduction"] = 0.10
    assert load_plan(_write(tmp_path, data)).hash != example_plan.hash


def test_schema_methods_match_engine():
    schema_methods = plan_schema()["properties"]["counterfactual"]["properties"]["method"]["enum"]
    assert sorted(schema_methods) == sorted(METHODS)


def test_plan_show_cli(example_plan):
    out = subprocess.run(
        [sys.executable, "-m", "utfall.cli", "plan", "show", str(EXAMPLE_PLAN)],
        capture_output=True,
        text=True,
        check=True,
    )
    assert example_plan.hash in out.stdout


def test_plan_show_cli_bad_plan(tmp_path, data, capsys):
    """In-process (`cli.main`): test_plan_show_cli above runs the real command."""
    from utfall.cli import main

    data["counterfactual"]["method"] = "magic"
    path = _write(tmp_path, data)
    assert main(["plan", "show", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: counterfactual.method: unknown method 'magic'" in err
    assert "Traceback" not in err


# --- YAML: nothing the reader does silently may change the plan's meaning --------------


def _yaml_problems(tmp_path: Path, text: str) -> list[tuple[str, str]]:
    path = tmp_path / "plan.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PlanError) as err:
        load_plan(path)
    assert str(path) in str(err.value)
    return err.value.problems


def _example_text() -> str:
    return EXAMPLE_PLAN.read_text(encoding="utf-8")


def _line_of(text: str, needle: str, start: int = 0) -> int:
    return text[: text.index(needle, start)].count("\n") + 1


def test_duplicate_key_names_path_and_both_lines(tmp_path):
    # The trap: the last key wins, so a plan *showing* 1 400 000 would pay 10 000 000.
    text = _example_text().replace(
        '      amount: "1400000.00"\n',
        '      amount: "1400000.00"\n      amount: "10000000.00"\n',
    )
    first = _line_of(text, 'amount: "1400000.00"')
    second = _line_of(text, 'amount: "10000000.00"')
    assert _yaml_problems(tmp_path, text) == [
        (
            "payment.rules[1].amount",
            f"duplicate key (lines {first} and {second}); YAML would silently keep only the last",
        )
    ]


def test_duplicate_keys_everywhere_are_all_reported(tmp_path):
    text = _example_text()
    text = text.replace("plan_version: 1\n", "plan_version: 1\nplan_version: 1\n")
    text = text.replace('{start: "2022-01-01",', '{start: "2022-01-01", start: "2021-01-01",')
    text = text.replace("  min_cell_size: 5\n", "  min_cell_size: 5\n  min_cell_size: 3\n")
    keys = [k for k, _ in _yaml_problems(tmp_path, text)]
    assert keys == ["plan_version", "periods.baseline.start", "disclosure.min_cell_size"]


def test_anchor_and_alias_are_refused(tmp_path):
    text = (
        _example_text()
        .replace("  treated_units: [", "  treated_units: &units [")
        .replace("  comparison_units: [SKOLA-01,", "  comparison_units: *units\n  x: [SKOLA-01,")
    )
    anchor = _line_of(text, "&units")
    alias = _line_of(text, "*units")
    assert _yaml_problems(tmp_path, text) == [
        (
            "cohort.treated_units",
            f"anchor &units (line {anchor}) is not allowed; write each value out in full",
        ),
        (
            "cohort.comparison_units",
            f"alias *units (line {alias}) is not allowed; write the value out in full",
        ),
    ]


def test_merge_key_is_refused(tmp_path):
    text = _example_text().replace(
        "    - kind: linear_to_target\n",
        '    - kind: linear_to_target\n      <<: {amount: "1.00"}\n',
    )
    line = _line_of(text, "<<:")
    assert _yaml_problems(tmp_path, text) == [
        (
            "payment.rules[1]",
            f"merge key << (line {line}) is not allowed; write the keys out in full",
        )
    ]


def test_explicit_tags_and_non_text_keys_are_refused(tmp_path):
    text = _example_text().replace("  min_cell_size: 5", "  min_cell_size: !!int '014'\n  14: x")
    line = _line_of(text, "!!int")
    assert _yaml_problems(tmp_path, text) == [
        ("disclosure.min_cell_size", f"explicit tag !!int (line {line}) is not allowed; remove it"),
        ("disclosure", f"key 14 (line {line + 1}) is not text; put it in quotes"),
    ]


def test_yaml_1_1_number_and_boolean_readings_do_not_apply(tmp_path, data):
    # YAML 1.1 reads 014 as octal 12, 1:30 as 90 and `off` as false; here they stay text,
    # so the schema names them instead of a different number reaching the payment.
    text = _example_text().replace("  min_cell_size: 5", "  min_cell_size: 014")
    text = text.replace("  seed: 20250101", "  seed: 1:30")
    text = text.replace("  investor: null", "  investor: off")
    text = text.replace("  confidence: 0.95", "  confidence: 95e-2")
    problems = _yaml_problems(tmp_path, text)
    assert problems == [
        ("counterfactual.confidence", "expected number, got str '95e-2'"),
        ("counterfactual.seed", "expected integer, got str '1:30'"),
        ("disclosure.min_cell_size", "expected integer, got str '014'"),
    ]


def test_an_integral_float_is_not_an_integer(tmp_path, data):
    data["disclosure"]["min_cell_size"] = 5.0
    assert _problems(tmp_path, data) == [
        ("disclosure.min_cell_size", "expected integer, got float 5.0")
    ]


# --- Metric and method registries: parameters are typed and bounded ------------------

STATUTORY_DEFAULTS = {"max_spell_day": 14, "period_rule": "statutory", "reillness_days": 5}


def test_registry_source_kinds_derive_from_metrics():
    assert METRIC_SOURCE_KIND == {name: m.source_kind for name, m in METRICS.items()}
    assert METRICS["short_term_sick_days_per_employee"].parameters["max_spell_day"] == (
        ParamSpec("integer", default=14, minimum=1, maximum=365, description=ANY)
    )
    assert list(METRICS["sick_leave_rate"].parameters) == ["day_basis"]
    assert METRICS["sick_leave_rate"].parameters["day_basis"].choices == (
        "working_days",
        "calendar_days",
    )
    assert METHODS["did_2x2"] == ("weight", "inference", "scale")


def test_schema_enums_equal_the_registries():
    props = plan_schema()["properties"]
    metric_enum = props["outcomes"]["items"]["properties"]["metric"]["enum"]
    method_enum = props["counterfactual"]["properties"]["method"]["enum"]
    kind_enum = props["sources"]["items"]["properties"]["kind"]["enum"]
    assert sorted(metric_enum) == sorted(METRICS) and len(metric_enum) == len(METRICS)
    assert sorted(method_enum) == sorted(METHOD_SPECS) and len(method_enum) == len(METHODS)
    assert sorted(kind_enum) == sorted(SOURCE_KINDS)


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (14.5, "expected integer, got float 14.5"),
        (14.0, "expected integer, got float 14.0"),
        ("14", "expected integer, got str '14'"),
        (True, "expected integer, got bool True"),
        (0, "must be between 1 and 365, got 0"),
        (366, "must be between 1 and 365, got 366"),
    ],
)
def test_metric_parameter_type_and_range(tmp_path, data, value, problem):
    data["outcomes"][0]["parameters"]["max_spell_day"] = value
    assert _problems(tmp_path, data) == [("outcomes[0].parameters.max_spell_day", problem)]


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("period_rule", "per_period", "'per_period' is not one of: statutory, per_spell"),
        ("period_rule", 5, "expected string, got int 5"),
        ("reillness_days", -1, "must be between 0 and 30, got -1"),
        ("reillness_days", 31, "must be between 0 and 30, got 31"),
        ("reillness_days", 5.0, "expected integer, got float 5.0"),
        ("reillness_days", "5", "expected integer, got str '5'"),
    ],
)
def test_sick_period_parameters_are_checked(tmp_path, data, name, value, problem):
    data["outcomes"][0]["parameters"][name] = value
    assert _problems(tmp_path, data) == [(f"outcomes[0].parameters.{name}", problem)]


def test_sick_period_parameters_are_read(tmp_path, data):
    data["outcomes"][0]["parameters"].update(period_rule="per_spell", reillness_days=0)
    plan = load_plan(_write(tmp_path, data))
    assert plan.outcome_parameters("short_term_sick_days") == {
        "max_spell_day": 14,
        "period_rule": "per_spell",
        "reillness_days": 0,
    }
    data["outcomes"][0]["parameters"]["reillness_days"] = 30
    assert (
        load_plan(_write(tmp_path, data)).outcome_parameters("short_term_sick_days")[
            "reillness_days"
        ]
        == 30
    )


def test_metric_parameter_bounds_are_allowed(tmp_path, data):
    for value in (1, 365):
        data["outcomes"][0]["parameters"]["max_spell_day"] = value
        plan = load_plan(_write(tmp_path, data))
        assert plan.outcome_parameters("short_term_sick_days")["max_spell_day"] == value


def test_unknown_metric_parameter_suggests(tmp_path, data):
    data["outcomes"][0]["parameters"] = {"max_spel_day": 7}
    data["outcomes"][1]["parameters"] = {"max_spell_day": 7}
    assert _problems(tmp_path, data) == [
        (
            "outcomes[0].parameters.max_spel_day",
            "unknown parameter of metric short_term_sick_days_per_employee; "
            "did you mean 'max_spell_day'? (expected: max_spell_day, period_rule, "
            "reillness_days)",
        ),
        (
            "outcomes[1].parameters.max_spell_day",
            "unknown parameter of metric sick_leave_rate (expected: day_basis)",
        ),
    ]


def test_method_parameters_are_checked(tmp_path, data):
    data["counterfactual"]["parameters"] = {"weight": "headcount", "wieght": "equal"}
    assert _problems(tmp_path, data) == [
        ("counterfactual.parameters.weight", "'headcount' is not one of: exposure, equal"),
        (
            "counterfactual.parameters.wieght",
            "unknown parameter of method did_2x2; did you mean 'weight'? "
            "(expected: weight, inference, scale)",
        ),
    ]
    data["counterfactual"]["parameters"] = {"weight": 1}
    assert _problems(tmp_path, data) == [
        ("counterfactual.parameters.weight", "expected string, got int 1")
    ]
    data["counterfactual"]["parameters"] = {"inference": "bootstrap"}
    assert _problems(tmp_path, data) == [
        (
            "counterfactual.parameters.inference",
            "'bootstrap' is not one of: analytic, randomization, wild_bootstrap",
        )
    ]
    data["counterfactual"]["parameters"] = {"inference": "wild_bootstrap", "scale": "relative"}
    assert _problems(tmp_path, data) == [
        (
            "counterfactual.parameters.inference",
            "wild_bootstrap is available on the absolute scale only (scale is 'relative'); "
            "use analytic or randomization",
        )
    ]
    data["counterfactual"]["parameters"] = {"inference": "wild_bootstrap"}
    plan = load_plan(_write(tmp_path, data))
    assert plan.counterfactual_parameters["inference"] == "wild_bootstrap"
    data["counterfactual"]["parameters"] = {"scale": "log"}
    assert _problems(tmp_path, data) == [
        ("counterfactual.parameters.scale", "'log' is not one of: absolute, relative")
    ]
    data["counterfactual"]["parameters"] = {"inference": "randomization", "scale": "relative"}
    plan = load_plan(_write(tmp_path, data))
    assert plan.counterfactual_parameters == {
        "weight": "exposure",
        "inference": "randomization",
        "scale": "relative",
    }


def test_parameter_defaults(tmp_path, data, example_plan):
    defaults = {"weight": "exposure", "inference": "analytic", "scale": "absolute"}
    assert example_plan.outcome_parameters("short_term_sick_days") == STATUTORY_DEFAULTS
    assert example_plan.outcome_parameters("sick_leave_rate") == {"day_basis": "working_days"}
    # the example states scale: relative (its target is a relative reduction)
    assert example_plan.counterfactual_parameters == {**defaults, "scale": "relative"}
    del data["outcomes"][0]["parameters"]
    del data["counterfactual"]["parameters"]
    plan = load_plan(_write(tmp_path, data))
    assert plan.outcome_parameters("short_term_sick_days") == STATUTORY_DEFAULTS
    assert plan.counterfactual_parameters == defaults


# --- Money: exact, positive, and within what the warehouse stores --------------------

AMOUNT_FORM = (
    'is not an amount: a decimal string such as "1400000.00", with at most 16 digits '
    "before the point, no leading zero, and at most 2 decimals"
)


@pytest.mark.parametrize(
    "amount", ["1400000.001", "1e6", "-5.00", "12345678901234567", "01400000", "1,400,000", " 5"]
)
def test_amount_form(tmp_path, data, amount):
    data["payment"]["rules"][1]["amount"] = amount
    assert _problems(tmp_path, data) == [("payment.rules[1].amount", f"{amount!r} {AMOUNT_FORM}")]


def test_amount_with_a_trailing_newline_is_refused(tmp_path, data):
    data["payment"]["rules"][1]["amount"] = "1400000.00\n"  # what `amount: |` gives
    assert _problems(tmp_path, data) == [
        ("payment.rules[1].amount", f"'1400000.00\\n' {AMOUNT_FORM}")
    ]


def test_amount_as_a_yaml_number_is_refused(tmp_path, data):
    data["payment"]["rules"][1]["amount"] = 1400000.0
    assert _problems(tmp_path, data) == [
        ("payment.rules[1].amount", "expected string, got float 1400000.0")
    ]


def test_largest_amounts_load(tmp_path, data):
    data["payment"]["rules"][0]["amount"] = "0.01"
    data["payment"]["rules"][1]["amount"] = "9999999999999999.98"
    assert load_plan(_write(tmp_path, data)).payment["rules"][1]["amount"] == (
        "9999999999999999.98"
    )


def test_amount_must_be_positive(tmp_path, data):
    data["payment"]["rules"][0]["amount"] = "0.00"
    assert _problems(tmp_path, data) == [("payment.rules[0].amount", "must be greater than 0")]


def test_sum_of_amounts_must_fit_decimal_18_2(tmp_path, data):
    data["payment"]["rules"][0]["amount"] = "0.02"
    data["payment"]["rules"][1]["amount"] = "9999999999999999.98"
    assert _problems(tmp_path, data) == [
        (
            "payment.rules",
            "the amounts sum to 10000000000000000.00, too large for DECIMAL(18,2) "
            "(must be below 10^16)",
        )
    ]


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (0, "must be greater than 0, got 0"),
        (-0.1, "must be greater than 0, got -0.1"),
        (1.2, "must be at most 1, got 1.2"),
        ("0.12", "expected number, got str '0.12'"),
        (True, "expected number, got bool True"),
    ],
)
def test_target_relative_reduction_range(tmp_path, data, value, problem):
    data["payment"]["rules"][1]["target_relative_reduction"] = value
    assert _problems(tmp_path, data) == [("payment.rules[1].target_relative_reduction", problem)]


def test_target_of_one_is_allowed(tmp_path, data):
    data["payment"]["rules"][1]["target_relative_reduction"] = 1
    assert load_plan(_write(tmp_path, data)).payment["rules"][1]["target_relative_reduction"] == 1


def test_a_fixed_rule_takes_no_target(tmp_path, data):
    # A linear rule mistyped as `fixed` would pay in full whatever the outcome.
    # (The example's threshold basis then has no variable rule to decide, which is named too.)
    data["payment"]["rules"][1]["kind"] = "fixed"
    assert _problems(tmp_path, data) == [
        (
            "payment.rules[1].target_relative_reduction",
            "a fixed rule takes no target_relative_reduction; only guaranteed_conditional, "
            "linear_to_target take one",
        ),
        (
            "payment.basis",
            "basis threshold needs a rule that pays on the effect (guaranteed_conditional, "
            "linear_to_target, share_of_savings, threshold_tiers): it decides what those pay",
        ),
    ]


@pytest.mark.parametrize("currency", ["sek", "SEKR", "SE", "kr"])
def test_currency_code(tmp_path, data, currency):
    data["payment"]["currency"] = currency
    assert _problems(tmp_path, data) == [
        (
            "payment.currency",
            f"{currency!r} is not a currency code: three upper-case letters, such as SEK",
        )
    ]


# --- Names: ids become namespaces, folders, table names, asset keys ------------------

CONTRACT_ID_FORM = (
    "is not a valid contract id: 1 to 63 characters, lower-case letters a-z, digits, "
    "'_' or '-', starting with a letter or digit"
)
NAME_FORM = (
    "is not a valid name: 1 to 63 characters, lower-case letters a-z, digits or '_', "
    "starting with a letter"
)


@pytest.mark.parametrize(
    "contract_id", ["Demo", "-demo", "demo/x", "../x", "demo x", "a" * 64, "", "demo\n", "dëmo"]
)
def test_contract_id_form(tmp_path, data, contract_id):
    data["contract"]["id"] = contract_id
    assert _problems(tmp_path, data) == [("contract.id", f"{contract_id!r} {CONTRACT_ID_FORM}")]


@pytest.mark.parametrize("contract_id", ["a", "9", "a" * 63, "x_y-z"])
def test_contract_id_edges_allowed(tmp_path, data, contract_id):
    data["contract"]["id"] = contract_id
    assert load_plan(_write(tmp_path, data)).contract_id == contract_id


@pytest.mark.parametrize("name", ["Roster", "1roster", "roster-x", "a" * 64, "roster\n"])
def test_source_name_form(tmp_path, data, name):
    data["sources"][0]["name"] = name
    data["cohort"]["roster_source"] = name
    assert _problems(tmp_path, data) == [("sources[0].name", f"{name!r} {NAME_FORM}")]


@pytest.mark.parametrize("name", sorted(RESERVED_SOURCE_NAMES))
def test_reserved_source_names(tmp_path, data, name):
    data["sources"][1]["name"] = name
    for o in data["outcomes"]:
        o["source"] = name
    assert _problems(tmp_path, data) == [
        ("sources[1].name", f"{name!r} is reserved for an internal table; choose another name")
    ]


def test_reserved_source_names_cover_the_internal_tables():
    assert {
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
    } | (set(SOURCE_KINDS) - UNRESERVED_KINDS) <= RESERVED_SOURCE_NAMES


@pytest.mark.parametrize("outcome_id", ["Short", "9days", "short-term", "", "x\n"])
def test_outcome_id_form(tmp_path, data, outcome_id):
    data["outcomes"][1]["id"] = outcome_id
    assert _problems(tmp_path, data) == [("outcomes[1].id", f"{outcome_id!r} {NAME_FORM}")]


def test_unit_ids_without_surrounding_whitespace(tmp_path, data):
    data["cohort"]["treated_units"][2] = "HEMTJ-03 "
    data["cohort"]["comparison_units"][0] = "\tSKOLA-01"
    assert _problems(tmp_path, data) == [
        ("cohort.treated_units[2]", "'HEMTJ-03 ' has leading or trailing whitespace"),
        ("cohort.comparison_units[0]", "'\\tSKOLA-01' has leading or trailing whitespace"),
    ]


def test_unit_ids_non_empty_text(tmp_path, data):
    data["cohort"]["treated_units"][0] = ""
    data["cohort"]["comparison_units"][0] = 7
    assert _problems(tmp_path, data) == [
        ("cohort.comparison_units[0]", "expected string, got int 7"),
        ("cohort.treated_units[0]", "must not be empty"),
    ]


def test_unit_listed_twice_is_named(tmp_path, data):
    data["cohort"]["treated_units"] += ["FSK-02", "HEMTJ-01"]
    data["cohort"]["comparison_units"].append("ADM-04")
    assert _problems(tmp_path, data) == [
        ("cohort.comparison_units", "listed more than once: ADM-04"),
        ("cohort.treated_units", "listed more than once: FSK-02, HEMTJ-01"),
    ]


# --- Source paths stay inside the deliveries directory -------------------------------


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("/data/roster.csv", "is absolute; give a path relative to the deliveries directory"),
        (
            "~/roster.csv",
            "is a home-directory path; give a path relative to the deliveries directory",
        ),
        ("C:roster.csv", "starts with a drive; give a path relative to the deliveries directory"),
        (
            "c:/x/roster.csv",
            "starts with a drive; give a path relative to the deliveries directory",
        ),
        ("hr\\roster.csv", "contains a backslash; separate folders with /"),
        ("../roster.csv", "has a '..' component; it must stay inside the deliveries directory"),
        ("a/../../b.csv", "has a '..' component; it must stay inside the deliveries directory"),
        ("a/..", "has a '..' component; it must stay inside the deliveries directory"),
        ("roster\x00.csv", "contains a control character"),
    ],
)
def test_source_path_must_stay_inside_deliveries(tmp_path, data, path, problem):
    data["sources"][0]["path"] = path
    assert _problems(tmp_path, data) == [("sources[0].path", f"{path!r} {problem}")]


@pytest.mark.parametrize("path", ["hr/2025/roster_*.csv", "r[0-9]?.csv", "..roster.csv", "./a.csv"])
def test_relative_and_glob_paths_allowed(tmp_path, data, path):
    data["sources"][0]["path"] = path
    assert load_plan(_write(tmp_path, data)).source("roster")["path"] == path


# --- Messages name the fix ------------------------------------------------------------


def test_unknown_key_suggests(tmp_path, data):
    data["payment"]["rules"][1]["target_relative_reductoin"] = 0.1
    del data["payment"]["rules"][1]["target_relative_reduction"]
    assert _problems(tmp_path, data) == [
        (
            "payment.rules[1]",
            "unknown key 'target_relative_reductoin'; did you mean 'target_relative_reduction'?",
        )
    ]


def test_unknown_column_suggests(tmp_path, data):
    data["sources"][0]["columns"]["personummer"] = data["sources"][0]["columns"].pop("personnummer")
    problems = _problems(tmp_path, data)
    assert problems[0] == (
        "sources[0].columns.personummer",
        "not a column of kind employee_roster; did you mean 'personnummer'? (expected: "
        "personnummer, birth_year, sex, unit_id, employment_extent, employed_from, employed_to)",
    )
    assert problems[1:] == [
        ("sources[0].columns.personnummer", "required column mapping is missing")
    ]


# --- cohort.unit_check -----------------------------------------------------------------


def test_unit_check_defaults_to_error(example_plan):
    assert "unit_check" not in example_plan.data["cohort"]
    assert example_plan.unit_check == "error"


@pytest.mark.parametrize("value", ["error", "warn"])
def test_unit_check_values(tmp_path, data, value, example_plan):
    data["cohort"]["unit_check"] = value
    plan = load_plan(_write(tmp_path, data))
    assert plan.unit_check == value
    assert plan.hash != example_plan.hash  # a stated choice is part of the frozen plan


def test_unit_check_unknown_value(tmp_path, data):
    data["cohort"]["unit_check"] = "warning"
    assert _problems(tmp_path, data) == [
        (
            "cohort.unit_check",
            "unknown value 'warning'; did you mean 'warn'? (expected one of: error, warn)",
        )
    ]


# --- quality ---------------------------------------------------------------------------


def test_quality_defaults(example_plan):
    assert "quality" not in example_plan.data
    assert example_plan.quality == QUALITY_DEFAULTS
    assert QUALITY_DEFAULTS == {
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
    example_plan.quality["expectations"]["null_share"]["severity"] = "off"
    assert QUALITY_DEFAULTS["expectations"]["null_share"]["severity"] == "warn"  # a copy


def test_quality_partial_config_is_completed(tmp_path, data):
    data["quality"] = {
        "control_file": "control.csv",
        "expectations": {"null_share": {"max_share": 1}, "units_present": {"severity": "warn"}},
    }
    quality = load_plan(_write(tmp_path, data)).quality
    assert quality["control_file"] == "control.csv"
    assert quality["expectations"]["null_share"] == {"severity": "warn", "max_share": 1.0}
    assert quality["expectations"]["units_present"] == {"severity": "warn"}
    assert quality["expectations"]["value_ranges"] == {"severity": "block"}
    assert list(quality["expectations"]) == list(QUALITY_DEFAULTS["expectations"])
    load_plan(_write(tmp_path, data | {"quality": {}}))  # an empty section is allowed


def test_severity_off_unquoted_is_the_word_off(tmp_path):
    text = _example_text() + "\nquality:\n  expectations:\n    null_share: {severity: off}\n"
    path = tmp_path / "plan.yaml"
    path.write_text(text, encoding="utf-8")
    assert load_plan(path).quality["expectations"]["null_share"]["severity"] == "off"


def test_unknown_expectation_suggests(tmp_path, data):
    data["quality"] = {"expectations": {"volume_vs_histroy": {"severity": "warn"}}}
    assert _problems(tmp_path, data) == [
        (
            "quality.expectations",
            "unknown key 'volume_vs_histroy'; did you mean 'volume_vs_history'?",
        )
    ]


@pytest.mark.parametrize(
    ("expectation", "setting", "problem"),
    [
        (
            "periods_present",
            {"severity": "stop"},
            (
                "quality.expectations.periods_present.severity",
                "unknown value 'stop' (expected one of: block, warn, off)",
            ),
        ),
        (
            "value_ranges",
            {"severity": False},
            (
                "quality.expectations.value_ranges.severity",
                "unknown value False (expected one of: block, warn, off)",
            ),
        ),
        (
            "volume_vs_history",
            {"max_relative_change": 0},
            (
                "quality.expectations.volume_vs_history.max_relative_change",
                "must be greater than 0, got 0",
            ),
        ),
        (
            "volume_vs_baseline",
            {"max_relative_change": 1.5},
            (
                "quality.expectations.volume_vs_baseline.max_relative_change",
                "must be at most 1, got 1.5",
            ),
        ),
        (
            "null_share",
            {"max_share": "2%"},
            ("quality.expectations.null_share.max_share", "expected number, got str '2%'"),
        ),
        (
            "units_present",
            {"max_share": 0.1},
            (
                "quality.expectations.units_present",
                "unknown key 'max_share'; expected one of: severity",
            ),
        ),
        (
            "null_share",
            {"max_relative_change": 0.1},
            (
                "quality.expectations.null_share",
                "unknown key 'max_relative_change'; expected one of: severity, max_share",
            ),
        ),
        (
            "null_share",
            None,
            ("quality.expectations.null_share", "expected object, got null (an empty value)"),
        ),
    ],
)
def test_expectation_settings(tmp_path, data, expectation, setting, problem):
    data["quality"] = {"expectations": {expectation: setting}}
    assert _problems(tmp_path, data) == [problem]


def test_unknown_quality_key(tmp_path, data):
    data["quality"] = {"control": "control.csv"}
    assert _problems(tmp_path, data) == [
        ("quality", "unknown key 'control'; did you mean 'control_file'?")
    ]


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("/srv/control.csv", "is absolute; give a path relative to the deliveries directory"),
        ("../control.csv", "has a '..' component; it must stay inside the deliveries directory"),
        ("hr\\control.csv", "contains a backslash; separate folders with /"),
    ],
)
def test_control_file_path_rules(tmp_path, data, path, problem):
    data["quality"] = {"control_file": path}
    assert _problems(tmp_path, data) == [("quality.control_file", f"{path!r} {problem}")]


def test_control_file_must_not_be_a_delivery(tmp_path, data):
    data["quality"] = {"control_file": "sick_leave_control.csv"}
    assert _problems(tmp_path, data) == [
        (
            "quality.control_file",
            "'sick_leave_control.csv' matches the path 'sick_leave*.csv' of source "
            "'sick_leave', so it would be read as a delivery",
        )
    ]


def test_schema_expectations_equal_the_defaults():
    schema = plan_schema()
    names = schema["properties"]["quality"]["properties"]["expectations"]["properties"]
    assert list(names) == list(QUALITY_DEFAULTS["expectations"])
    for name, ref in names.items():
        definition = schema["$defs"][ref["$ref"].rsplit("/", 1)[1]]
        assert list(definition["properties"]) == list(QUALITY_DEFAULTS["expectations"][name])
    quality_keys = schema["properties"]["quality"]["properties"]
    assert sorted(quality_keys) == sorted(QUALITY_DEFAULTS)


def test_one_delivered_column_mapped_twice(tmp_path, data):
    data["sources"][0]["columns"]["sex"] = "personnummer"
    assert (
        "sources[0].columns.sex",
        "delivered column 'personnummer' is already mapped to 'personnummer'; "
        "each delivered column may be mapped once",
    ) in _problems(tmp_path, data)


# --- payment basis: threshold and tiers -------------------------------------------------------

TIERS = [
    {"min_relative_reduction": 0.0, "share": 0.5},
    {"min_relative_reduction": 0.06, "share": 1},
]


def test_threshold_basis_with_tiers_loads(tmp_path, data):
    data["payment"]["tiers"] = TIERS
    payment = load_plan(_write(tmp_path, data)).payment
    assert payment["basis"] == "threshold" and payment["tiers"] == TIERS


def test_threshold_defaults_to_zero(tmp_path, data):
    del data["payment"]["threshold_relative_reduction"]
    assert "threshold_relative_reduction" not in load_plan(_write(tmp_path, data)).payment


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (-0.01, "must be at least 0, got -0.01"),
        (1, "must be less than 1, got 1"),
        ("0.02", "expected number, got str '0.02'"),
        (True, "expected number, got bool True"),
        (None, "expected number, got null (an empty value)"),
    ],
)
def test_threshold_type_and_range(tmp_path, data, value, problem):
    data["payment"]["threshold_relative_reduction"] = value
    assert _problems(tmp_path, data) == [("payment.threshold_relative_reduction", problem)]


@pytest.mark.parametrize(
    ("tier", "key", "problem"),
    [
        ({"min_relative_reduction": 0.0, "share": 1.5}, "share", "must be at most 1, got 1.5"),
        ({"min_relative_reduction": 0.0, "share": -0.1}, "share", "must be at least 0, got -0.1"),
        (
            {"min_relative_reduction": 0.0, "share": "1"},
            "share",
            "expected number, got str '1'",
        ),
        (
            {"min_relative_reduction": 1.0, "share": 1},
            "min_relative_reduction",
            "must be less than 1, got 1.0",
        ),
        (
            {"min_relative_reduction": -0.02, "share": 1},
            "min_relative_reduction",
            "must be at least 0, got -0.02",
        ),
        ({"share": 1}, "min_relative_reduction", "required key is missing"),
    ],
)
def test_tier_types_and_ranges(tmp_path, data, tier, key, problem):
    data["payment"]["tiers"] = [tier]
    assert _problems(tmp_path, data) == [(f"payment.tiers[0].{key}", problem)]


def test_tier_unknown_key_and_empty_list(tmp_path, data):
    data["payment"]["tiers"] = [{"min_relative_reduction": 0.0, "shar": 1}]
    assert _problems(tmp_path, data) == [
        ("payment.tiers[0].share", "required key is missing"),
        ("payment.tiers[0]", "unknown key 'shar'; did you mean 'share'?"),
    ]
    data["payment"]["tiers"] = []
    assert _problems(tmp_path, data) == [("payment.tiers", "must list at least one item")]


def test_tiers_ascend_and_shares_do_not_fall(tmp_path, data):
    data["payment"]["tiers"] = [
        {"min_relative_reduction": 0.06, "share": 1},
        {"min_relative_reduction": 0.06, "share": 0.5},
        {"min_relative_reduction": 0.03, "share": 1},
    ]
    assert _problems(tmp_path, data) == [
        (
            "payment.tiers[1].min_relative_reduction",
            "0.06 is not above the previous tier's 0.06; list tiers in ascending order",
        ),
        (
            "payment.tiers[1].share",
            "0.5 is below the previous tier's 1; a better result must not pay a smaller share",
        ),
        (
            "payment.tiers[2].min_relative_reduction",
            "0.03 is not above the previous tier's 0.06; list tiers in ascending order",
        ),
    ]


def test_tier_below_the_threshold(tmp_path, data):
    data["payment"]["threshold_relative_reduction"] = 0.02
    data["payment"]["tiers"] = TIERS
    assert _problems(tmp_path, data) == [
        (
            "payment.tiers[0].min_relative_reduction",
            "0.0 is below threshold_relative_reduction 0.02; a tier applies only once the "
            "threshold is cleared, so start the tiers at or above it",
        )
    ]


@pytest.mark.parametrize("basis", ["point_estimate", "conservative_ci_bound"])
def test_threshold_keys_only_under_the_threshold_basis(tmp_path, data, basis):
    data["payment"]["basis"] = basis
    data["payment"]["tiers"] = TIERS
    assert _problems(tmp_path, data) == [
        (
            "payment.threshold_relative_reduction",
            f"basis {basis} takes no threshold_relative_reduction; only basis threshold does",
        ),
        ("payment.tiers", f"basis {basis} takes no tiers; only basis threshold does"),
    ]


def test_unknown_basis(tmp_path, data):
    data["payment"]["basis"] = "treshold"
    assert _problems(tmp_path, data) == [
        (
            "payment.basis",
            "unknown value 'treshold'; did you mean 'threshold'? (expected one of: "
            "point_estimate, conservative_ci_bound, threshold)",
        )
    ]


def test_threshold_basis_needs_a_linear_rule(tmp_path, data):
    rule = data["payment"]["rules"][1]
    rule["kind"] = "fixed"
    del rule["target_relative_reduction"]
    assert _problems(tmp_path, data) == [
        (
            "payment.basis",
            "basis threshold needs a rule that pays on the effect (guaranteed_conditional, "
            "linear_to_target, share_of_savings, threshold_tiers): it decides what those pay",
        )
    ]


def test_rate_day_basis_is_checked(tmp_path, data):
    data["outcomes"][1]["parameters"] = {"day_basis": "weekdays"}
    [(key, problem)] = _problems(tmp_path, data)
    assert key == "outcomes[1].parameters.day_basis"
    assert "working_days" in problem and "calendar_days" in problem


# --- Generic source kinds (person_table, unit_panel) and the method's data shape ---------


@pytest.fixture
def panel_data() -> dict:
    import copy

    from tests.test_sources_panel import BASE_PLAN

    return copy.deepcopy(BASE_PLAN)


@pytest.fixture
def person_data() -> dict:
    import copy

    from tests.test_sources_person import BASE_PLAN

    return copy.deepcopy(BASE_PLAN)


def test_a_unit_panel_plan_needs_no_cohort(tmp_path, panel_data):
    plan = load_plan(_write(tmp_path, panel_data))
    assert not plan.has_cohort and plan.roster_source is None
    assert plan.treated_units == [] and plan.min_employment_extent == 0
    assert plan.data_shape == "unit_panel"
    assert plan.source_columns("units") == {
        "unit_id": "enhet",
        "period": "period",
        "treated": "behandlad",
        "weight": "vikt",
        "employment": "sysselsatta",
    }
    assert plan.treatment_groups("units") == {"1": "treated", "0": "comparison"}


def test_sick_leave_sources_still_need_a_cohort(tmp_path, data):
    del data["cohort"]
    assert _problems(tmp_path, data) == [
        (
            "cohort",
            "required key is missing: sources of kind employee_roster or sick_leave_spells "
            "(roster, sick_leave) are measured for the cohort's treated and comparison units",
        )
    ]


def test_a_person_plan_loads(tmp_path, person_data):
    plan = load_plan(_write(tmp_path, person_data))
    assert plan.data_shape == "person" and not plan.has_cohort
    assert plan.source_columns("participants") == {
        "person_id": "id",
        "treatment": "grupp",
        "hba1c": "hba1c_mmol",
        "age": "alder",
        "educ": "utbildning",
    }


def test_a_person_outcome_with_a_panel_method_is_refused(tmp_path, person_data):
    person_data["counterfactual"] = {"method": "did_2x2", "confidence": 0.95, "seed": 1}
    assert _problems(tmp_path, person_data) == [
        (
            "outcomes[0].metric",
            "method did_2x2 estimates from unit_panel data and needs outcomes measured per "
            "unit and period (metric panel_value from a unit_panel source, or a sick-leave "
            "metric); metric person_value gives person data",
        )
    ]


def test_a_person_method_with_a_panel_outcome_is_refused(tmp_path, panel_data, monkeypatch):
    """Every method of shape `person` refuses a panel outcome (none may be registered yet:
    then the check is exercised through a registered copy of did_2x2 declared `person`)."""
    import dataclasses

    from utfall import plan as plan_module

    person_methods = [n for n, e in plan_module.estimator_registry().items() if e.data == "person"]
    if person_methods:
        method = person_methods[0]
    else:
        method = "did_2x2"
        registry = dict(plan_module.estimator_registry())
        registry[method] = dataclasses.replace(registry[method], data="person")
        monkeypatch.setattr(plan_module, "estimator_registry", lambda: registry)
    panel_data["counterfactual"] = {"method": method, "confidence": 0.95, "seed": 1}
    problems = plan_module._shape_problems(panel_data)
    assert problems == [
        (
            "outcomes[0].metric",
            f"method {method} estimates from person data and needs outcomes of metric "
            "person_value from a person_table source; metric panel_value gives unit_panel data",
        )
    ]


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda d: d["outcomes"][0].pop("parameters"),
            [
                (
                    "outcomes[0].parameters.column",
                    "required key is missing (metric panel_value: required: the name of one "
                    "of the source's outcome_columns)",
                )
            ],
        ),
        (
            lambda d: d["outcomes"][0]["parameters"].update(column="employmnt"),
            [
                (
                    "outcomes[0].parameters.column",
                    "'employmnt' is not one of source 'units''s outcome_columns; did you mean "
                    "'employment'? (expected: employment)",
                )
            ],
        ),
        (
            lambda d: d["sources"][0]["columns"].update(treatment_start="start"),
            [
                (
                    "sources[0].columns",
                    "map exactly one of treated (a flag, with treatment_values) and "
                    "treatment_start (a date; empty = never treated)",
                )
            ],
        ),
        (
            lambda d: d["sources"][0]["columns"].pop("treated"),
            [
                (
                    "sources[0].columns",
                    "map exactly one of treated (a flag, with treatment_values) and "
                    "treatment_start (a date; empty = never treated)",
                ),
                (
                    "sources[0].treatment_values",
                    "only a mapped treated column takes treatment_values",
                ),
            ],
        ),
        (
            lambda d: d["sources"][0].pop("treatment_values"),
            [
                (
                    "sources[0].treatment_values",
                    "required key is missing: which delivered values of the treatment "
                    "column mean treated and which comparison",
                )
            ],
        ),
        (
            lambda d: d["sources"][0]["treatment_values"].update(comparison=["0", 1]),
            [("sources[0].treatment_values.comparison", "values also treated: 1")],
        ),
        (
            lambda d: d["sources"][0]["outcome_columns"].update(y="andra"),
            [
                (
                    "sources[0].outcome_columns.y",
                    "'y' is a column of the estimator's frame; choose another name",
                )
            ],
        ),
        (
            lambda d: d["sources"][0]["outcome_columns"].update(other="vikt"),
            [
                (
                    "sources[0].outcome_columns.other",
                    "delivered column 'vikt' is already mapped to 'weight'; each delivered "
                    "column may be mapped once",
                )
            ],
        ),
        (
            lambda d: d["sources"][0].update(
                covariates={"age": {"column": "alder", "type": "numeric"}}
            ),
            [
                (
                    "sources[0].covariates",
                    "a unit_panel takes no covariates (only a person_table does)",
                )
            ],
        ),
        (
            lambda d: d["sources"][0].pop("outcome_columns"),
            [
                (
                    "outcomes[0].parameters.column",
                    "'employment' is not one of source 'units''s outcome_columns (expected: none)",
                ),
                (
                    "sources[0].outcome_columns",
                    "required key is missing: name at least one outcome column",
                ),
            ],
        ),
        (
            lambda d: d["sources"][0]["columns"].update(person_id="id"),
            [
                (
                    "sources[0].columns.person_id",
                    "not a column of kind unit_panel; did you mean 'period'? (expected: "
                    "unit_id, period, treated, treatment_start, weight)",
                )
            ],
        ),
    ],
)
def test_generic_source_problems(tmp_path, panel_data, change, expected):
    change(panel_data)
    assert sorted(_problems(tmp_path, panel_data)) == sorted(expected)


def test_generic_keys_on_a_sick_leave_source_are_refused(tmp_path, data):
    data["sources"][1]["outcome_columns"] = {"x": "x"}
    assert _problems(tmp_path, data) == [
        (
            "sources[1].outcome_columns",
            "a source of kind sick_leave_spells takes no outcome_columns; only the kinds "
            "person_table, unit_panel do",
        )
    ]


@pytest.mark.parametrize(
    ("change", "key"),
    [
        (lambda s: s["csv"].update(decimal=";"), "sources[0].csv.decimal"),
        (lambda s: s["covariates"]["age"].update(type="ordinal"), "sources[0].covariates.age.type"),
        (lambda s: s["outcome_columns"].update({"Bad-Name": "x"}), "sources[0].outcome_columns"),
        (lambda s: s["treatment_values"].update(treated=[]), "sources[0].treatment_values.treated"),
    ],
)
def test_generic_source_schema(tmp_path, person_data, change, key):
    source = person_data["sources"][0]
    source["csv"] = {"delimiter": ";", "decimal": ","}
    change(source)
    assert key in [k for k, _ in _problems(tmp_path, person_data)]


def test_annual_and_monthly_frequencies(tmp_path, panel_data, data):
    panel_data["periods"]["frequency"] = "annual"
    assert load_plan(_write(tmp_path, panel_data)).data["periods"]["frequency"] == "annual"
    panel_data["periods"]["measurement"] = {"start": "2024-04-01", "end": "2024-12-31"}
    assert _problems(tmp_path, panel_data) == [
        ("periods.measurement.start", "2024-04-01 does not start a year")
    ]
    panel_data["periods"]["frequency"] = "monthly"
    panel_data["periods"]["measurement"] = {"start": "2024-02-01", "end": "2024-02-29"}
    assert load_plan(_write(tmp_path, panel_data)).period("measurement")[1].day == 29
    data["periods"]["frequency"] = "monthly"
    assert _problems(tmp_path, data) == [
        (
            "periods.frequency",
            "outcome 'short_term_sick_days' (metric short_term_sick_days_per_employee) is "
            "measured by quarter; use frequency quarterly",
        )
    ]


@pytest.mark.parametrize(
    ("formula", "expected"),
    [
        (
            "agee + C(educ)",
            "'agee' is not a covariate of the plan's person table; did you mean 'age'? "
            "(covariates: age, educ)",
        ),
        (
            "age + I(hba1c**2)",
            "'hba1c' is not a covariate of the plan's person table (covariates: age, educ)",
        ),
        ("age + + educ", "parameter covariates: an empty term"),
        ("y ~ age", "parameter covariates: give only the right-hand side"),
        ("__import__('os')", "parameter covariates: "),
    ],
)
def test_a_person_methods_formula_names_only_covariates(tmp_path, person_data, formula, expected):
    person_data["counterfactual"]["parameters"] = {"covariates": formula}
    (problem,) = _problems(tmp_path, person_data)
    assert problem[0] == "counterfactual.parameters.covariates"
    assert problem[1].startswith(expected), problem[1]


@pytest.mark.parametrize("through", ["2024-06-30", "2024-12-31"], ids=["interim", "final"])
def test_an_interim_period_needs_metrics_that_cut_at_its_through(tmp_path, through):
    """A person table has no dates, so an interim period would count outcomes from after its
    `through`: refused, naming the outcome. A single final period (ending with the measurement
    period) is not; nor is the health bond's HbA1c with an interim period (it cuts there)."""
    import copy as _copy

    from tests.test_sources_person import BASE_PLAN
    from utfall.paths import EXAMPLE_PLANS

    data = _copy.deepcopy(BASE_PLAN)
    periods = [{"name": "final", "kind": "final", "through": "2024-12-31"}]
    if through != "2024-12-31":
        periods.insert(0, {"name": "interim", "kind": "interim", "through": through})
    data["payment"]["periods"] = periods
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    if through == "2024-12-31":
        load_plan(path)
        return
    with pytest.raises(PlanError) as err:
        load_plan(path)
    ((where, text),) = err.value.problems
    assert where == "outcomes[0].metric"
    assert text.startswith("person_value does not cut its data at a payment period's `through`")
    assert "interim period(s) 'interim'" in text
    health = yaml.safe_load((EXAMPLE_PLANS / "health_bond.yaml").read_text(encoding="utf-8"))
    health["payment"]["periods"] = [
        {"name": "interim", "kind": "interim", "through": "2024-12-31"},
        {"name": "final", "kind": "final", "through": "2025-12-31"},
    ]
    path.write_text(yaml.safe_dump(health, sort_keys=False), encoding="utf-8")
    load_plan(path)
