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
#: The GX release whose `Expectation` kwargs helpers `_build_configuration_once` replaces
#: (the same code with one line moved); any other release is left alone.
_HELPERS_OF = "1.24.1"


@functools.cache
def _batch_definition() -> Any:
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    context.config.analytics_enabled = False
    asset = context.data_sources.add_pandas("utfall").add_dataframe_asset("frame")
    return asset.add_batch_definition_whole_dataframe("whole_frame")


@functools.cache
def _build_configuration_once() -> None:
    """Let GX build an expectation's configuration once per kwargs lookup, not once per key.

    `Expectation.configuration` is a property that builds a new `ExpectationConfiguration`
    (pydantic `dict()` and a regex on the class name) on every access, and GX 1.24's
    `_get_domain_kwargs`, `_get_success_kwargs` and `_get_success_kwarg` read it once per
    key, ~100 times per expectation validated: about a third of a pipeline run's GX time.
    Their replacements below are GX's code with `self.configuration.kwargs` read once per
    call; the configuration is rebuilt from the unchanged expectation, so the values are the
    same. `camel_to_snake` (class name to expectation type) is a pure function and memoised.
    """
    import great_expectations as gx
    from great_expectations.exceptions import InvalidExpectationKwargsError
    from great_expectations.expectations import expectation as module

    if gx.__version__ != _HELPERS_OF:  # pragma: no cover - another GX: keep its own code
        return
    expectation = module.Expectation

    def _get_success_kwarg(self: Any, key: str, default: Any = None) -> Any:
        kwargs = self.configuration.kwargs
        if key in kwargs:
            return kwargs[key]
        field = self.__fields__.get(key)
        if field is not None:
            return field.default if not field.required else default
        module.logger.warning(
            f'_get_success_kwarg called with key "{key}", '
            f"but it is not a known field of {type(self).__name__}"
        )
        return default

    def _get_domain_kwargs(self: Any) -> dict[str, str | None]:
        kwargs = self.configuration.kwargs
        domain_kwargs = {
            key: kwargs.get(key, self._get_default_value(key)) for key in self.domain_keys
        }
        missing_kwargs = set(self.domain_keys) - set(domain_kwargs.keys())
        if missing_kwargs:
            raise InvalidExpectationKwargsError(f"Missing domain kwargs: {list(missing_kwargs)}")
        return domain_kwargs

    def _get_success_kwargs(self: Any) -> dict[str, Any]:
        domain_kwargs = self._get_domain_kwargs()
        kwargs = self.configuration.kwargs
        success_kwargs = {
            key: kwargs.get(key, self._get_default_value(key)) for key in self.success_keys
        }
        success_kwargs.update(domain_kwargs)
        return success_kwargs

    module.camel_to_snake = functools.cache(module.camel_to_snake)
    expectation._get_success_kwarg = _get_success_kwarg
    expectation._get_domain_kwargs = _get_domain_kwargs
    expectation._get_success_kwargs = _get_success_kwargs


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
    _build_configuration_once()
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
