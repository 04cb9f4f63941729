"""Registry discovery: one module per member, found in name order; a wrong type or a name
used twice is refused (the estimator and payment-rule registries both use it)."""

from __future__ import annotations

import sys
import types

import pytest

from utfall.params import ParamSpec
from utfall.registry import discover

MEMBER = "from utfall.params import ParamSpec\nITEM = ParamSpec('string', None, description={!r})\n"


def _package(root, monkeypatch, modules: dict[str, str]) -> types.ModuleType:
    pkg = root / "regpkg"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("", encoding="utf-8")
    for name, body in modules.items():
        (pkg / f"{name}.py").write_text(body, encoding="utf-8")
    monkeypatch.syspath_prepend(str(root))
    for key in [k for k in sys.modules if k == "regpkg" or k.startswith("regpkg.")]:
        monkeypatch.delitem(sys.modules, key)
    import regpkg

    return regpkg


def _name(member: ParamSpec) -> str:
    return member.description


def test_members_are_found_sorted_and_modules_without_one_are_skipped(tmp_path, monkeypatch):
    modules = {"zeta": MEMBER.format("a"), "alpha": MEMBER.format("b"), "helpers": "X = 1\n"}
    pkg = _package(tmp_path, monkeypatch, modules)
    found = discover(pkg, "ITEM", ParamSpec, _name)
    assert list(found) == ["a", "b"]
    assert all(isinstance(m, ParamSpec) for m in found.values())


def test_a_member_of_the_wrong_type_is_refused(tmp_path, monkeypatch):
    pkg = _package(tmp_path, monkeypatch, {"one": "ITEM = 3\n"})
    with pytest.raises(TypeError, match=r"regpkg\.one\.ITEM is not a ParamSpec"):
        discover(pkg, "ITEM", ParamSpec, _name)


def test_a_name_used_twice_is_refused(tmp_path, monkeypatch):
    modules = {"one": MEMBER.format("x"), "two": MEMBER.format("x")}
    pkg = _package(tmp_path, monkeypatch, modules)
    with pytest.raises(ValueError, match="two regpkg members are named 'x'"):
        discover(pkg, "ITEM", ParamSpec, _name)
