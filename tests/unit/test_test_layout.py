"""The tests' own shape: shared helpers live in support modules and conftest files, so a test
module never imports another test module (running one file alone then runs only its tests, and
moving a test never breaks another file), and each fixture is defined once."""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def all_test_modules() -> list[Path]:
    return sorted(TESTS.rglob("test_*.py"))


def imported_modules(path: Path) -> Iterator[str]:
    """Every module an import statement in `path` names, `from x import y` giving x and x.y."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = "." * node.level + (node.module or "")
            yield base
            yield from (f"{base.rstrip('.')}.{alias.name}".lstrip(".") for alias in node.names)


def is_test_module(name: str) -> bool:
    return name.rsplit(".", 1)[-1].startswith("test_")


def fixtures(path: Path) -> Iterator[str]:
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and any(
            "fixture" in ast.unparse(decorator) for decorator in node.decorator_list
        ):
            yield node.name


def test_the_layout_check_sees_imports_of_test_modules() -> None:
    source = TESTS / "unit" / "test_test_layout.py"
    assert {"pathlib", "pathlib.Path", "collections.defaultdict"} <= set(imported_modules(source))
    assert is_test_module("tests.integration.test_cli")
    assert is_test_module("test_cli")
    assert not is_test_module("tests.cli_support")
    assert not is_test_module("tests.integration.conftest")


def test_no_test_module_imports_another_test_module() -> None:
    offenders = [
        f"{path.relative_to(TESTS)} imports {name}"
        for path in all_test_modules()
        for name in sorted(set(imported_modules(path)))
        if is_test_module(name)
    ]
    assert offenders == [], "move shared helpers to a support module or a conftest.py"


def test_each_fixture_is_defined_once() -> None:
    where: dict[str, list[str]] = defaultdict(list)
    for path in sorted(TESTS.rglob("*.py")):
        for name in fixtures(path):
            where[name].append(str(path.relative_to(TESTS)))
    assert {name: paths for name, paths in where.items() if len(paths) > 1} == {}
