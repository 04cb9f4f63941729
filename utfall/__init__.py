"""utfall: the Dagster-free domain core (plan, readers, validation, metrics, estimators,
payments, reports, CLI). A validator can re-run every number with this package alone."""

__version__ = "0.1.0"
