"""Dagster wiring for utfall: Definitions, resources and jobs. Logic lives in `utfall`."""
