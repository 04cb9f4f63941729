"""Registries found by module discovery: every module of a package that defines a member.

Sources, metrics, estimators and payment rules are extension points; adding one is one
module and its tests. `discover` imports a package's modules (sorted by name, so the order
is the same everywhere), keeps each module-level member of the given type, and refuses two
members with the same name.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import Any


def discover(package: Any, attribute: str, kind: type, name_of: Callable[[Any], str]) -> dict:
    """``{name: member}`` for every module of `package` defining `attribute` (an instance
    of `kind`), sorted by name; a non-`kind` member or a repeated name is an error."""
    found: dict[str, Any] = {}
    for info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{package.__name__}.{info.name}")
        member = getattr(module, attribute, None)
        if member is None:
            continue
        if not isinstance(member, kind):
            raise TypeError(f"{module.__name__}.{attribute} is not a {kind.__name__}")
        name = name_of(member)
        if name in found:
            raise ValueError(f"two {package.__name__} members are named {name!r}")
        found[name] = member
    return dict(sorted(found.items()))
