"""The SQL stores' statements as data: the query files, their loader, and their use."""

from __future__ import annotations

import ast
import re
from importlib import resources
from pathlib import Path

import pytest

import durable.stores.sql
from durable.stores.sql.loader import NAMES, QueryFileError, from_text, load, parse

DIALECTS = ["sqlite", "postgres"]
SQL_PACKAGE = Path(durable.stores.sql.__file__).parent
# The store methods that take a block's name as their first argument.
TAKES_A_NAME = {"_write_one", "_one", "_all_rows", "_fenced_with_record", "_fenced_write", "steps"}


def _text(dialect: str) -> str:
    path = resources.files("durable.stores.sql").joinpath("queries", f"{dialect}.sql")
    return path.read_text(encoding="utf-8")


def _names_used() -> set[str]:
    """Every block name the sql package's code asks for: SQL["x"], SQL.steps("x"), a
    method that takes a name, or a ``name`` variable given one."""
    used: set[str] = set()

    def strings(node: ast.AST | None) -> list[str]:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return [node.value]
        if isinstance(node, ast.IfExp):
            return strings(node.body) + strings(node.orelse)
        return []

    for module in SQL_PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(module.read_text())):
            if isinstance(node, ast.Subscript) and getattr(node.value, "attr", None) == "SQL":
                used.update(strings(node.slice))
            elif isinstance(node, ast.Call) and node.args:
                if getattr(node.func, "attr", None) in TAKES_A_NAME:
                    used.update(strings(node.args[0]))
            elif isinstance(node, ast.Assign):
                for target in node.targets:
                    value = node.value
                    pairs = (
                        zip(target.elts, value.elts, strict=False)
                        if isinstance(target, ast.Tuple) and isinstance(value, ast.Tuple)
                        else [(target, value)]
                    )
                    for t, v in pairs:
                        if isinstance(t, ast.Name) and t.id == "name":
                            used.update(strings(v))
    return used


@pytest.mark.parametrize("dialect", DIALECTS)
def test_each_dialect_defines_exactly_the_names_the_store_uses(dialect):
    assert load(dialect).names() == NAMES
    used = _names_used()
    assert used - NAMES == set(), "the store asks for blocks that no file defines"
    assert NAMES - used == set(), "blocks that nothing uses"


def test_both_dialects_define_the_same_names():
    assert parse(_text("sqlite")).keys() == parse(_text("postgres")).keys()


def test_a_missing_block_is_an_error_at_load_naming_it():
    text = re.sub(r"-- name: wake\n.*?;\n", "", _text("sqlite"), flags=re.DOTALL)
    with pytest.raises(QueryFileError, match=r"sqlite\.sql has no block named wake"):
        from_text(text, "sqlite.sql")


def test_an_unknown_or_repeated_block_is_an_error():
    text = _text("postgres")
    with pytest.raises(QueryFileError, match="does not use: extra"):
        from_text(text + "\n-- name: extra\nSELECT 1;\n", "postgres.sql")
    with pytest.raises(QueryFileError, match="'get' is defined twice"):
        parse(text + "\n-- name: get\nSELECT 1;\n", "postgres.sql")
    with pytest.raises(QueryFileError, match="before the first"):
        parse("SELECT 1;\n-- name: get\nSELECT 2;\n")
    with pytest.raises(QueryFileError, match="does not end with ';'"):
        parse("-- name: get\nSELECT 2\n")


def test_blocks_hold_none_one_or_several_statements_without_comments():
    blocks = parse(
        "-- a file comment\n\n"
        "-- name: none\n-- (nothing to do here)\n\n"
        "-- name: one\n-- what it does\nSELECT 1\n-- a note\n  FROM t;\n"
        "-- name: two\nSELECT 1;\nSELECT 2;\n"
    )
    assert blocks == {"none": (), "one": ("SELECT 1\nFROM t",), "two": ("SELECT 1", "SELECT 2")}
    sqlite, postgres = load("sqlite"), load("postgres")
    assert len(sqlite.steps("purge")) == len(postgres.steps("purge")) == 5
    assert len(sqlite.steps("claim")) == 2  # pick, then take (see the file)
    assert postgres.steps("server_time") and not sqlite.steps("server_time")
    with pytest.raises(KeyError, match="'purge' is not one statement"):
        sqlite["purge"]


def test_each_file_uses_its_drivers_parameter_style_only():
    for sql in parse(_text("sqlite")).values():
        assert not any("%(" in s for s in sql)
    named = re.compile(r"(?<![:\w]):[a-z_]+")  # :name, but not a ::cast
    for sql in parse(_text("postgres")).values():
        assert not any(named.search(s) for s in sql), sql


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
def test_every_statement_is_short_enough_for_the_driver_to_cache_its_parsing(dialect):
    # psycopg parses a statement's placeholders again on every execution when it is
    # longer than 4096 bytes (MAX_CACHED_STATEMENT_LENGTH): a cost each hot transition
    # would pay
    queries = load(dialect)
    too_long = {
        name: len(sql.encode())
        for name in queries.names()
        for sql in queries.steps(name)
        if len(sql.encode()) > 4096
    }
    assert too_long == {}
