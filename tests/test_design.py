"""The contract design aid: simulated power and expected payment by true effect."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest

from utfall.cli import main, simulate_deliveries
from utfall.design import GridPoint, _interpolate_mde, design, render, simulated_effect
from utfall.pipeline import run


@pytest.fixture(scope="module")
def tiny(example_plan):
    return design(
        example_plan,
        employees=400,
        replications=6,
        effects=[0.0, 0.3, 0.6],
        progress=lambda _m: None,
    )


def test_power_and_payment_increase_with_the_effect(tiny):
    powers = [p.power for p in tiny.grid]
    assert powers == sorted(powers) and powers[-1] > powers[0]
    assert powers[-1] == 1.0
    payments = [p.mean_payment for p in tiny.grid]
    assert payments[-1] > payments[0]
    assert all(len(p.payments) == 6 for p in tiny.grid)
    # A big effect pays the whole variable part; paying on the point estimate pays at
    # least as much as the plan's (threshold) basis at every effect.
    assert tiny.grid[-1].mean_payment == tiny.at_risk == Decimal("1400000")
    assert all(p.mean_payment_point >= p.mean_payment for p in tiny.grid)


def test_mde_lies_between_the_grid_points_that_bracket_80_percent(tiny):
    below = [p.effect for p in tiny.grid if p.power < 0.8]
    above = [p.effect for p in tiny.grid if p.power >= 0.8]
    assert tiny.mde is not None and max(below) <= tiny.mde <= min(above)
    assert math.isfinite(tiny.mde_normal) and tiny.mde_normal > 0


def test_render_is_a_readable_table(tiny):
    text = render(tiny)
    assert "true effect" in text and "power" in text and "mean payment" in text
    assert "payment basis: threshold" in text
    assert f"minimum detectable effect (80 % power): {tiny.mde:.1%}" in text
    rows = [line.split() for line in text.splitlines() if line.strip()[:1].isdigit()]
    assert [row[0] for row in rows] == ["0.0%", "30.0%", "60.0%"]
    assert rows[-1][1] == "100%" and rows[-1][3] == "1,400,000"


def _point(effect: float, power: float) -> GridPoint:
    zero = Decimal(0)
    return GridPoint(effect, 10, power, effect, 0.05, zero, zero, ())


@pytest.mark.parametrize(
    ("powers", "mde"),
    [
        ([0.0, 0.5, 0.9], 0.1 + 0.1 * 0.3 / 0.4),  # linear between 50 % and 90 %
        ([0.0, 0.8, 1.0], 0.1),
        ([0.85, 0.9, 1.0], 0.0),
        ([0.0, 0.2, 0.7], None),  # never reached on the grid
    ],
)
def test_interpolated_mde(powers, mde):
    got = _interpolate_mde([_point(0.1 * i, p) for i, p in enumerate(powers)])
    assert got == (None if mde is None else pytest.approx(mde))


def test_render_says_when_the_grid_never_reaches_80_percent(tiny):
    from dataclasses import replace

    text = render(replace(tiny, mde=None))
    assert "above 60.0%, the largest effect simulated" in text


def test_in_memory_effect_equals_the_pipelines(example_plan, tmp_path):
    """The design aid computes what the pipeline would on the same (clean) deliveries."""
    simulate_deliveries(example_plan.path, tmp_path / "d", 600, 0.12, 0.0, 77)
    result = run(
        example_plan, tmp_path / "w.duckdb", tmp_path / "d", tmp_path / "r", lambda _m: None
    )
    piped = next(e for e in result.effects if e.outcome == "short_term_sick_days").to_dict()
    mine = simulated_effect(example_plan, 600, 0.12, 77)
    for key in ("estimate", "std_error", "relative_estimate", "relative_ci_low", "ci_high"):
        assert mine[key] == pytest.approx(piped[key], rel=1e-12, abs=1e-12)


def test_cli_design_prints_the_table_and_progress(example_plan, capsys):
    code = main(
        [
            "design",
            str(example_plan.path),
            "--employees",
            "300",
            "--replications",
            "2",
            "--effects",
            "0",
            "0.5",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 0
    assert "minimum detectable effect" in out and "4 simulated contracts" in out
    assert "[1/2] true effect 0.0%" in err and "[2/2] true effect 50.0%" in err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--replications", "1"], "--replications: must be at least 2, got 1"),
        (["--employees", "0"], "--employees: must be at least 1, got 0"),
        (["--effects", "12"], "--effects: must lie between 0 and 1 (0.12 = 12 %), got 12"),
    ],
)
def test_cli_design_refuses_bad_arguments(example_plan, capsys, args, message):
    with pytest.raises(SystemExit) as exc:
        main(["design", str(example_plan.path), *args])
    assert exc.value.code == 2 and message in capsys.readouterr().err
