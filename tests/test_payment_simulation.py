"""scripts/payment_under_uncertainty.py: payments by true effect and basis, whole pipeline."""

from __future__ import annotations

import importlib.util
from decimal import Decimal
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "payment_under_uncertainty.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("payment_under_uncertainty", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bases_compared(script, example_plan):
    terms = script.bases(example_plan)
    assert list(terms) == ["point_estimate", "conservative_ci_bound", "plan: threshold"]
    assert terms["plan: threshold"] == example_plan.payment
    assert "threshold_relative_reduction" not in terms["point_estimate"]
    assert script.variable_maximum(example_plan) == Decimal("1400000.00")


@pytest.mark.slow
def test_conservative_bases_pay_less_for_noise(script, example_plan, capsys):
    """Few replications (3 per effect, about 30 s), so only wide bands: with the same seeds
    the conservative bases never pay more than the point estimate, the point estimate pays
    more at the full effect than at none, and the plan's basis pays little for no effect."""
    results = script.simulate_payments(
        example_plan, [0.0, 0.12], replications=3, employees=2000, progress=lambda _m: None
    )
    at_risk = script.variable_maximum(example_plan)
    for by_basis in results.values():
        for name in ("conservative_ci_bound", "plan: threshold"):
            assert all(
                c <= p for c, p in zip(by_basis[name], by_basis["point_estimate"], strict=True)
            )
    mean = {e: script.summarise(v["point_estimate"], at_risk)["mean"] for e, v in results.items()}
    assert mean[0.12] > mean[0.0]
    assert script.summarise(results[0.0]["plan: threshold"], at_risk)["share"] < 0.25
