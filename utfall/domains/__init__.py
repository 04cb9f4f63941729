"""Pure domain modules of the outcome contracts (no warehouse, no Dagster): one module per
kind of data, each turning delivered rows into checked rows (with quarantined rows and their
rule) and into the per-person outcomes the estimators and payment rules read.

* :mod:`utfall.domains.hba1c`: lab results, HbA1c in IFCC mmol/mol (NGSP and Mono-S % converted);
* :mod:`utfall.domains.diabetes`: HbA1c outcomes at 12 and 24 months per participant;
* :mod:`utfall.domains.employment`: monthly employment status, entered and sustained work;
* :mod:`utfall.domains.public_costs`: public cost per person and month, savings.
"""
