"""Data contracts: the plan's JSON Schema and a Pandera model per source kind.

Each source kind has two models. `*Rows` checks each delivered row on its own (values as
delivered, as text). `*Set` checks rules across rows (duplicates, overlaps) on the rows
that passed, with types. Every check's name is the quarantine rule a failing row gets.
"""

from utfall.schemas.roster import RosterRows, RosterSet
from utfall.schemas.sick_leave import SickLeaveRows, SickLeaveSet

#: Row- and set-level models for each source kind named in the plan.
MODELS = {
    "employee_roster": (RosterRows, RosterSet),
    "sick_leave_spells": (SickLeaveRows, SickLeaveSet),
}

__all__ = ["MODELS", "RosterRows", "RosterSet", "SickLeaveRows", "SickLeaveSet"]
