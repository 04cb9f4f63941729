"""Right-hand sides of model formulas as evaluators write them, turned into float64 matrices.

A plan names covariates as a string, e.g. ``covariates: "age + I(age**2) + C(educ)"``. This
module parses that string with a small grammar of its own (Python's ``ast`` for the pieces,
never ``eval``), so a plan cannot run code, and builds the design matrix from a polars frame.

Grammar (patsy/formulaic spelling for the subset a measurement plan needs)::

    rhs     := "" | "1" | term ("+" term)*
    term    := factor (":" factor)*          # interaction: product of the factors' columns
             | factor "*" factor             # a*b  =  a + b + a:b   (top level only)
    factor  := name                          # numeric column, or categorical if text/bool
             | C(name)                       # categorical: one dummy per level but the first
             | I(expr) | fn(expr)            # numeric expression; fn in log, exp, sqrt, abs
    expr    := numbers, column names, + - * / ** and fn(...)   (arithmetic only inside I())

A categorical factor in an interaction keeps all its levels when the term without it is not
already in the model (patsy's rule: ``x:C(g)`` alone is one slope of x per level of g).

Numbers are cast to Float64 *before* any term is built (an Int8 age squared would overflow:
100**2 does not fit in 8 bits). Categorical levels are sorted (numbers numerically, text as
text); the first level is the reference and gets no column, as in patsy's Treatment coding.
Column names follow patsy (``C(educ)[T.2]``, ``age:C(sex)[T.M]``) so results line up with
statsmodels. The intercept is never part of the matrix: each estimator adds its own.

Missing values are refused, not dropped (a silently smaller sample changes the estimand): the
error names the column and how many rows are missing. So is a term that is not finite
(``log`` of zero) and a name that is not a column.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

import numpy as np
import polars as pl

from utfall.estimators.base import EstimationError

__all__ = ["DesignMatrix", "FormulaError", "Formula", "parse", "design_matrix"]

_FUNCTIONS = {"log": pl.Expr.log, "exp": pl.Expr.exp, "sqrt": pl.Expr.sqrt, "abs": pl.Expr.abs}
_NUMERIC = (pl.Int8, pl.Int16, pl.Int32, pl.Int64, pl.UInt8, pl.UInt16, pl.UInt32, pl.UInt64)
_NUMERIC += (pl.Float32, pl.Float64, pl.Decimal)


#: Columns of the ``person`` shape that a covariate formula must not use.
RESERVED = {"treated": "treatment indicator", "y": "outcome", "person_id": "identifier"}


class FormulaError(EstimationError):
    """A plan's formula cannot be read or does not fit the data."""


@dataclass(frozen=True)
class Factor:
    """One factor of a term: a column used as numeric or categorical, or an expression."""

    label: str  # as printed in column names
    kind: str  # "numeric" | "categorical" | "auto"
    node: ast.expr | None  # the expression of a numeric factor; None for a plain column
    column: str | None  # the column of a plain or C() factor


@dataclass(frozen=True)
class Formula:
    """A parsed right-hand side: terms, each a tuple of factors, and the columns it reads."""

    text: str
    parameter: str
    terms: tuple[tuple[Factor, ...], ...]
    columns: tuple[str, ...]


@dataclass(frozen=True)
class DesignMatrix:
    """Float64 columns (no intercept) and their names, one row per input row."""

    names: tuple[str, ...]
    matrix: np.ndarray


def _split_top(text: str, sep: str) -> list[str]:
    """Split on ``sep`` outside parentheses (``I(a*b)`` keeps its ``*``)."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth < 0:
                raise ValueError("unbalanced ')'")
        elif ch == sep and depth == 0:
            if sep == "*" and text[i + 1 : i + 2] == "*":
                continue  # a ** at top level belongs to an expression, not an interaction
            if sep == "*" and text[i - 1 : i] == "*":
                continue
            parts.append(text[start:i])
            start = i + 1
    if depth != 0:
        raise ValueError("unbalanced '('")
    parts.append(text[start:])
    return [p.strip() for p in parts]


def _names_in(node: ast.AST) -> list[str]:
    """Column names an expression reads (not function names, not the ``np`` of np.log)."""
    skip = {id(n.value) for n in ast.walk(node) if isinstance(n, ast.Attribute)}
    skip |= {id(n.func) for n in ast.walk(node) if isinstance(n, ast.Call)}
    return [n.id for n in ast.walk(node) if isinstance(n, ast.Name) and id(n) not in skip]


def _check_expr(node: ast.AST, where: str) -> None:
    """Allow only numbers, names, arithmetic and the whitelisted functions."""
    ok = (ast.Expression, ast.BinOp, ast.UnaryOp, ast.Name, ast.Load, ast.Constant, ast.Call)
    ok += (ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Pow, ast.USub, ast.UAdd, ast.Attribute)
    for n in ast.walk(node):
        if not isinstance(n, ok):
            raise ValueError(f"{where}: {type(n).__name__} is not allowed in a formula")
        if isinstance(n, ast.Constant) and (
            isinstance(n.value, bool) or not isinstance(n.value, (int, float))
        ):
            raise ValueError(f"{where}: only numbers may appear as constants")
        if isinstance(n, ast.Attribute) and not (
            isinstance(n.value, ast.Name) and n.value.id in ("np", "numpy") and n.attr in _FUNCTIONS
        ):
            raise ValueError(f"{where}: only np.log, np.exp, np.sqrt, np.abs are allowed")
        if isinstance(n, ast.Call):
            name = _call_name(n)
            if name not in _FUNCTIONS or n.keywords or len(n.args) != 1:
                raise ValueError(
                    f"{where}: unknown function {name!r} (allowed: I, C, "
                    f"{', '.join(sorted(_FUNCTIONS))}, each with one argument)"
                )


def _call_name(node: ast.Call) -> str:
    f = node.func
    if isinstance(f, ast.Name):
        return f.id
    if isinstance(f, ast.Attribute):
        return f.attr if isinstance(f.value, ast.Name) and f.value.id in ("np", "numpy") else "?"
    return "?"


def _factor(text: str) -> Factor:
    try:
        node = ast.parse(text, mode="eval").body
    except SyntaxError:
        raise ValueError(f"cannot read {text!r}") from None
    if isinstance(node, ast.Name):
        return Factor(text, "auto", None, node.id)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "C":
        if len(node.args) != 1 or node.keywords or not isinstance(node.args[0], ast.Name):
            raise ValueError(f"{text!r}: C() takes one column name")
        return Factor(text, "categorical", None, node.args[0].id)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "I":
        if len(node.args) != 1 or node.keywords:
            raise ValueError(f"{text!r}: I() takes one expression")
        inner = node.args[0]
        _check_expr(inner, repr(text))
        return Factor(text, "numeric", inner, None)
    if not isinstance(node, ast.Call):
        raise ValueError(
            f"{text!r} is not allowed outside I(): write arithmetic as I(...); the intercept "
            f"cannot be removed"
        )
    _check_expr(node, repr(text))
    return Factor(text, "numeric", node, None)


def parse(text: str | None, parameter: str = "covariates") -> Formula:
    """Parse a right-hand side; ``parameter`` names the plan parameter in errors."""
    raw = (text or "").strip()
    if raw.startswith("~"):
        raw = raw[1:].strip()
    if "~" in raw:
        raise FormulaError(
            f"parameter {parameter}: give only the right-hand side (e.g. 'age + C(educ)'), "
            f"not a whole formula"
        )
    terms: list[tuple[Factor, ...]] = []
    try:
        pieces = [] if raw in ("", "1") else _split_top(raw, "+")
        for piece in pieces:
            if not piece:
                raise ValueError("an empty term (two '+' in a row, or a trailing '+')")
            if piece == "1":
                continue  # the intercept is always there
            stars = _split_top(piece, "*")
            if len(stars) > 1:
                facs = [tuple(_factor(f) for f in _split_top(s, ":")) for s in stars]
                for f in facs:
                    terms.append(f)
                terms.append(tuple(x for f in facs for x in f))
                continue
            terms.append(tuple(_factor(f) for f in _split_top(piece, ":")))
    except ValueError as exc:
        raise FormulaError(f"parameter {parameter}: {exc} in {raw!r}") from None
    seen: dict[str, tuple[Factor, ...]] = {}
    for t in terms:
        seen.setdefault(":".join(f.label for f in t), t)
    columns: list[str] = []
    for t in seen.values():
        for f in t:
            for c in [f.column] if f.column else _names_in(f.node):
                if c not in columns:
                    columns.append(c)
    return Formula(raw, parameter, tuple(seen.values()), tuple(columns))


def _expr(node: ast.AST) -> pl.Expr:
    """Translate a checked expression into a polars expression on Float64 columns."""
    if isinstance(node, ast.Constant):
        return pl.lit(float(node.value), dtype=pl.Float64)
    if isinstance(node, ast.Name):
        return pl.col(node.id)
    if isinstance(node, ast.UnaryOp):
        inner = _expr(node.operand)
        return -inner if isinstance(node.op, ast.USub) else inner
    if isinstance(node, ast.BinOp):
        a, b = _expr(node.left), _expr(node.right)
        op = type(node.op)
        if op is ast.Add:
            return a + b
        if op is ast.Sub:
            return a - b
        if op is ast.Mult:
            return a * b
        if op is ast.Div:
            return a / b
        return a.pow(b)
    if isinstance(node, ast.Call):
        return _FUNCTIONS[_call_name(node)](_expr(node.args[0]))
    raise AssertionError(type(node).__name__)  # _check_expr let through something unknown


def _levels(series: pl.Series) -> list:
    return sorted(series.unique().to_list())


def _level_label(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def design_matrix(data: pl.DataFrame, formula: Formula) -> DesignMatrix:
    """The formula's columns for ``data``: numeric columns cast to Float64 first."""
    reserved = [c for c in formula.columns if c in RESERVED]
    if reserved:
        raise FormulaError(
            f"parameter {formula.parameter}: {reserved[0]!r} is the person table's "
            f"{RESERVED[reserved[0]]}, not a covariate; remove it from the formula"
        )
    missing = [c for c in formula.columns if c not in data.columns]
    if missing:
        raise FormulaError(
            f"parameter {formula.parameter}: no column {missing[0]!r} in the person data "
            f"(columns: {', '.join(data.columns)})"
        )
    frame = data.select(formula.columns)
    for c in formula.columns:
        nulls = frame[c].null_count()
        if nulls:
            raise FormulaError(
                f"parameter {formula.parameter}: column {c!r} is missing in {nulls} of "
                f"{frame.height} rows; impute or exclude those persons before measuring"
            )
    frame = frame.with_columns(
        [pl.col(c).cast(pl.Float64) for c in formula.columns if frame[c].dtype in _NUMERIC]
    )
    names: list[str] = []
    cols: list[np.ndarray] = []
    earlier: list[frozenset[str]] = [frozenset()]
    for term in formula.terms:
        parts: list[list[tuple[str, np.ndarray]]] = []
        for f in term:
            rest = frozenset(g.label for g in term if g is not f)
            # patsy's rule: a category loses its reference level only when the term without
            # it is already in the model (x:C(g) alone gets one slope per level)
            full = rest not in earlier
            parts.append(_factor_columns(frame, f, formula.parameter, full))
        earlier.append(frozenset(f.label for f in term))
        combined = [("", np.ones(frame.height))]
        for p in parts:
            combined = [
                (f"{n1}:{n2}" if n1 else n2, v1 * v2) for n1, v1 in combined for n2, v2 in p
            ]
        for n, v in combined:
            if not np.all(np.isfinite(v)):
                bad = int(np.sum(~np.isfinite(v)))
                raise FormulaError(
                    f"parameter {formula.parameter}: term {n!r} is not a finite number in "
                    f"{bad} rows (e.g. log of zero or a negative number)"
                )
            names.append(n)
            cols.append(v)
    matrix = np.column_stack(cols) if cols else np.empty((data.height, 0))
    return DesignMatrix(tuple(names), np.ascontiguousarray(matrix, dtype=np.float64))


def _factor_columns(
    frame: pl.DataFrame, f: Factor, parameter: str, full: bool = False
) -> list[tuple[str, np.ndarray]]:
    if f.node is not None:
        for c in _names_in(f.node):
            if frame[c].dtype != pl.Float64:
                raise FormulaError(
                    f"parameter {parameter}: {f.label!r} does arithmetic on column {c!r}, "
                    f"which is not numeric ({frame[c].dtype}); use C({c}) for a category"
                )
        values = frame.select(_expr(f.node).alias("v"))["v"].to_numpy()
        return [(f.label, values.astype(np.float64))]
    series = frame[f.column]
    categorical = f.kind == "categorical" or series.dtype not in (pl.Float64,)
    if not categorical:
        return [(f.label, series.to_numpy().astype(np.float64))]
    levels = _levels(series)
    label = f.label if f.kind == "categorical" else f.column
    out = []
    for level in levels if full else levels[1:]:
        name = f"{label}[{_level_label(level)}]" if full else f"{label}[T.{_level_label(level)}]"
        out.append((name, (series == level).to_numpy().astype(np.float64)))
    return out
