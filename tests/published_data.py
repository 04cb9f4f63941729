"""Published example data in the ``person`` shape, for tests that reproduce published numbers.

The data ship inside the ``causaldata`` package on PyPI (test extra, pinned in pyproject.toml);
nothing is downloaded at run time. Each loader returns a polars frame with ``person_id``
(Utf8), ``treated`` (Int8), ``y`` (Float64) and the covariates under their source names
(numbers as Float64, categories as Utf8), ready for an estimator or to be written out as a
person table for an end-to-end plan test (``write_csv``).

* :func:`nhefs` - NHEFS, the 1 566 complete cases used in Hernan and Robins, *Causal
  Inference: What If* (2020), chapters 12-13: treated = quit smoking (qsmk) between 1971 and
  1982, y = weight gain 1971-1982 in kg (wt82_71).
* :func:`nsw` - the NSW experimental sample (LaLonde 1986; Dehejia and Wahba 1999) as in
  Cunningham, *Causal Inference: The Mixtape* (2021), ch. 5: 185 treated and 260 control men,
  treated = job training, y = real earnings 1978 (re78, USD).
"""

from __future__ import annotations

import polars as pl

#: Hernan and Robins, What If, Program 12.2/12.3: the propensity model of quitting smoking.
NHEFS_PROPENSITY = (
    "C(sex) + C(race) + age + I(age**2) + C(education) + smokeintensity + I(smokeintensity**2)"
    " + smokeyrs + I(smokeyrs**2) + C(exercise) + C(active) + wt71 + I(wt71**2)"
)
NSW_COVARIATES = "age + educ + black + hisp + marr + nodegree + re74 + re75"


def nhefs() -> pl.DataFrame:
    """NHEFS complete cases (1 566 persons), see the module docstring."""
    from causaldata import nhefs_complete

    raw = nhefs_complete.load_pandas().data
    numeric = ["age", "smokeintensity", "smokeyrs", "wt71"]
    categories = ["sex", "race", "education", "exercise", "active"]
    frame = pl.DataFrame(
        {
            "person_id": raw["seqn"].astype(int).astype(str).tolist(),
            "treated": raw["qsmk"].astype(int).tolist(),
            "y": raw["wt82_71"].astype(float).tolist(),
        }
        | {c: raw[c].astype(float).tolist() for c in numeric}
        | {c: raw[c].astype(str).tolist() for c in categories}
    )
    return frame.with_columns(pl.col("treated").cast(pl.Int8))


def nsw() -> pl.DataFrame:
    """NSW experimental sample (445 persons), see the module docstring."""
    from causaldata import nsw_mixtape

    raw = nsw_mixtape.load_pandas().data
    covs = ["age", "educ", "black", "hisp", "marr", "nodegree", "re74", "re75"]
    frame = pl.DataFrame(
        {
            "person_id": raw["data_id"]
            .astype(str)
            .str.cat(raw.index.astype(str), sep="-")
            .tolist(),
            "treated": raw["treat"].astype(int).tolist(),
            "y": raw["re78"].astype(float).tolist(),
        }
        | {c: raw[c].astype(float).tolist() for c in covs}
    )
    return frame.with_columns(pl.col("treated").cast(pl.Int8))
