"""Outcome payments under the plan's terms, in exact decimal money: one module per rule kind.

* `base`: the rule interface (:class:`Rule`, :class:`Inputs`, :class:`Due`), the registry
  found by module discovery, money helpers and the plan checks of the rules;
* `basis`: where in the effect estimate's interval the rules read the improvement;
* `proposal`: :func:`propose`, the lines and totals, interim and final payment periods;
* one module per kind: `fixed`, `linear_to_target`, `threshold_tiers`, `rate_card`,
  `share_of_savings`, `guaranteed_conditional`, `none` (each states its formula).

Every amount is computed from exact Decimals (plan numbers as the Decimal of their written
form, improvements rounded to 0.0001) and rounded once to öre with ROUND_HALF_EVEN.
"""

from utfall.payments.base import (
    CENT,
    SHARE,
    Due,
    Inputs,
    PaymentInputError,
    Rule,
    get,
    registry,
    rule_problems,
    rules_item_schema,
)
from utfall.payments.basis import (
    BASES,
    POINTS,
    absolute_at,
    evidence_share,
    improvement_at,
    measured_improvement,
)
from utfall.payments.proposal import on_effect, propose, variable_maximum

__all__ = [
    "BASES",
    "CENT",
    "POINTS",
    "SHARE",
    "Due",
    "Inputs",
    "PaymentInputError",
    "Rule",
    "absolute_at",
    "evidence_share",
    "get",
    "improvement_at",
    "measured_improvement",
    "on_effect",
    "propose",
    "registry",
    "rule_problems",
    "rules_item_schema",
    "variable_maximum",
]
