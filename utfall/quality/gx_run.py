"""Run Great Expectations 1.x on an in-memory frame; the only module that touches GX.

One ephemeral context (nothing is written to disk, no progress bars) is built on first use
and kept for the process: building it costs milliseconds, but importing GX costs seconds,
so the import happens here, inside functions, never when utfall is imported.

GX has no Polars backend; frames are handed over as pandas. Two GX behaviours are guarded:

* an expectation that cannot be evaluated (a bad parameter type, e.g. a `datetime.date`
  bound on a datetime column) comes back as "failed" with an empty result and the error
  hidden in `exception_info`; here it raises instead, because it is a bug in a suite, not a
  fact about the delivery;
* an `ExpectationSuite` is set-like and, when expectations are added one by one, silently
  drops one equal to another apart from `meta`; suites are built from a list instead, and
  each expectation carries its position so results come back in suite order.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Sequence
from typing import Any

import polars as pl

_LOCK = threading.Lock()
_POSITION = "utfall_position"


@functools.cache
def _batch_definition() -> Any:
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    context.config.analytics_enabled = False
    asset = context.data_sources.add_pandas("utfall").add_dataframe_asset("frame")
    return asset.add_batch_definition_whole_dataframe("whole_frame")


def to_pandas(frame: pl.DataFrame) -> Any:
    """`frame` as pandas, dates as nanosecond datetimes.

    Polars hands dates over as datetime64[ms]; GX's range checks on those take a slow
    path (1.1 s instead of 0.03 s for 70 000 rows), on datetime64[ns] a vectorised one.
    """
    dates = [c for c, t in frame.schema.items() if t == pl.Date]
    return frame.with_columns(pl.col(dates).cast(pl.Datetime("ns"))).to_pandas()


def warm_up() -> None:
    """Import GX and build the context now (e.g. outside a timed section)."""
    _batch_definition()


def _raised(exception_info: Any) -> str | None:
    """The first error message hidden in an EVR's exception_info, or None."""
    if not isinstance(exception_info, dict):
        return None
    if exception_info.get("raised_exception"):
        return str(exception_info.get("exception_message") or "unknown error")
    for value in exception_info.values():
        if isinstance(value, dict) and (
            value.get("raised_exception") or value.get("exception_traceback")
        ):
            return str(value.get("exception_message") or value.get("exception_traceback"))
    return None


def validate(
    suite_name: str,
    frame: pl.DataFrame | Any,  # polars, or pandas from to_pandas()
    expectations: Sequence[Any],
    index_column: str | None = None,
) -> list[dict[str, Any]]:
    """Validate `frame` against a suite of `expectations`; the results as JSON dicts, in order.

    With `index_column` (for small derived frames of months or units, never person rows)
    the results list every unexpected row by that column; otherwise they carry counts only,
    so no delivered value reaches a result, a report or Data Docs.
    """
    import great_expectations as gx

    batch_definition = _batch_definition()
    staged = []
    for position, expectation in enumerate(expectations):
        expectation.meta = {**(expectation.meta or {}), _POSITION: position}
        staged.append(expectation)
    suite = gx.ExpectationSuite(name=suite_name, expectations=staged)
    data = to_pandas(frame) if isinstance(frame, pl.DataFrame) else frame
    if index_column is not None:
        result_format: dict[str, Any] = {
            "result_format": "COMPLETE",
            "unexpected_index_column_names": [index_column],
        }
    else:
        result_format = {"result_format": "BASIC", "partial_unexpected_count": 0}
    with _LOCK:
        batch = batch_definition.get_batch(batch_parameters={"dataframe": data})
        outcome = batch.validate(suite, result_format=result_format)
    results = sorted(
        (r.to_json_dict() for r in outcome.results),
        key=lambda r: r["expectation_config"]["meta"][_POSITION],
    )
    if len(results) != len(staged):  # pragma: no cover - a GX behaviour change
        raise RuntimeError(f"GX returned {len(results)} results for {len(staged)} expectations")
    for r in results:
        error = _raised(r.get("exception_info"))
        if error is not None:
            kind = r["expectation_config"]["type"]
            raise RuntimeError(
                f"Great Expectations could not evaluate {kind} in {suite_name}: {error}"
            )
    return results


def unexpected_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The unexpected rows of a result validated with an index column, as dicts holding the
    index column and the judged column(s)."""
    return list(result.get("result", {}).get("unexpected_index_list") or [])
