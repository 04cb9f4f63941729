"""The docs: generated pages are current, the analyst's example queries run, links resolve,
and the README starts with the two commands."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from utfall import warehouse

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SQL_BLOCK = re.compile(r"```sql\n(.*?)```", re.S)


def _gen_docs():
    spec = importlib.util.spec_from_file_location("gen_docs", ROOT / "scripts" / "gen_docs.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("page", ["plan-reference.md", "data-dictionary.md"])
def test_generated_pages_are_current(page):
    gen = _gen_docs()
    path = DOCS / page
    make = {gen.PLAN_REFERENCE: gen.plan_reference, gen.DATA_DICTIONARY: gen.data_dictionary}
    assert path.read_text(encoding="utf-8") == make[path](), (
        f"docs/{page} is stale: run .venv/bin/python scripts/gen_docs.py"
    )


def test_check_mode_names_a_stale_page(tmp_path, monkeypatch, capsys):
    gen = _gen_docs()
    stale = tmp_path / "plan-reference.md"
    stale.write_text("old\n", encoding="utf-8")
    monkeypatch.setattr(gen, "ROOT", tmp_path)
    monkeypatch.setattr(gen, "PAGES", {stale: gen.plan_reference})
    assert gen.main(["--check"]) == 1
    assert "plan-reference.md is stale" in capsys.readouterr().err
    assert stale.read_text(encoding="utf-8") == "old\n"  # --check writes nothing
    assert gen.main([]) == 0 and gen.main(["--check"]) == 0


def test_plan_reference_lists_every_schema_key():
    import json

    text = (DOCS / "plan-reference.md").read_text(encoding="utf-8")
    schema = json.loads((ROOT / "schemas" / "plan.schema.json").read_text(encoding="utf-8"))
    for key in schema["properties"]:
        assert f"| `{key}` |" in text, key
    assert "| `disclosure.min_cell_size` | integer | yes | ≥ 1 |" in text


def test_data_dictionary_describes_every_mart_column():
    from utfall.warehouse.marts import VIEWS

    text = (DOCS / "data-dictionary.md").read_text(encoding="utf-8")
    for view in VIEWS:
        assert f"## {view.name}" in text
        for column, meaning in view.columns.items():
            assert f"| `{column}` |" in text and meaning.split(".")[0] in text, (view, column)


def test_analyst_queries_run_on_the_demo_warehouse(demo_warehouse):
    blocks = SQL_BLOCK.findall((DOCS / "analyst.md").read_text(encoding="utf-8"))
    assert len(blocks) >= 8
    con = warehouse.connect(demo_warehouse.warehouse, read_only=True)
    try:
        for sql in blocks:
            rows = con.sql(sql).fetchall()
            if "-- may return no rows" not in sql:
                assert rows, sql
    finally:
        con.close()


def test_readme_starts_with_the_two_commands_and_links_each_users_page():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    first_block = readme.split("```")[1]
    assert "python3 scripts/dev.py demo" in first_block
    assert "python3 scripts/dev.py test" in first_block
    head = readme[: readme.index("## ")]
    for page in ("data-team", "validator", "analyst", "plan-reference", "data-dictionary"):
        assert f"(docs/{page}.md)" in head, page


def test_relative_links_in_docs_resolve():
    broken = []
    for page in [ROOT / "README.md", *DOCS.glob("*.md")]:
        for target in re.findall(r"\]\(([^)#:\s]+)(?:#[^)]*)?\)", page.read_text("utf-8")):
            if not (page.parent / target).exists():
                broken.append(f"{page.name}: {target}")
    assert not broken, broken
