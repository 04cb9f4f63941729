# TEMP SHIM
import polars as pl


def monthly_profile(kind, staged, plan):
    return pl.DataFrame(schema={"month": pl.Date, "rows": pl.Int64})


def check_source(kind, name, staged, plan, config, history):
    return []


def check_control_file(path, delivered):
    return []
