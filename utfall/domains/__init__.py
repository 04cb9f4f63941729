"""Pure domain modules of the outcome contracts (no warehouse, no Dagster): one module per
kind of data, each turning delivered rows into checked rows (with quarantined rows and their
rule) and into the per-person outcomes the estimators and payment rules read.

* :mod:`utfall.domains.hba1c`: lab results, HbA1c in IFCC mmol/mol (NGSP and Mono-S % converted);
* :mod:`utfall.domains.participants`: who took part, when, why they left, covariates;
* :mod:`utfall.domains.diabetes`: HbA1c outcomes at 12 and 24 months per participant;
* :mod:`utfall.domains.employment`: monthly employment status, entered and sustained work,
  earnings, and the rate card's events frame;
* :mod:`utfall.domains.public_costs`: public cost per person and month, savings;
* :mod:`utfall.domains.person`: the estimators' ``person`` frame from per-person outcomes.

Every ``validate(rows) -> (valid, quarantined)`` keeps the nothing-lost rule: valid rows +
quarantined rows = delivered rows, each quarantined row with its ``rule`` and ``detail``.
They take the pseudonymised frame (``person_id``), after ingest has checked and replaced the
identity numbers.

Wiring (for the pipeline; sketched, not done here): source kinds ``lab_results``,
``participants``, ``employment_status`` and ``public_costs`` whose row checks call these
``validate`` functions; outcome metrics that call ``diabetes.outcomes`` /
``employment.outcomes`` (+ ``public_costs.totals``) and ``person.person_frame`` to build the
``person`` data shape; the rate card's ``events`` from ``employment.events``; share_of_savings'
``persons_treated`` from the person frame. Simulated deliveries with known truth:
:mod:`utfall.simulate_cohorts`.
"""
