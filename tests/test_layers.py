"""Imports run only downward: each module of the package imports only modules of a
lower layer (docs/architecture.md draws the same layers).

Every import counts: at the top of a module, inside a function, and under
TYPE_CHECKING, since each is a dependency a reader has to follow.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "inboxleads"

# Lowest first. A module may import from any layer below its own, never from its own
# layer or one above. The stand-in server (`sandbox.*`) is layered the same way; the
# runner (its in-process use) and the command line sit above it.
LAYERS: list[set[str]] = [
    # Values and helpers that import nothing of the package.
    {"inboxleads", "errors", "outlet", "identifiers", "answers", "events"},
    # Pure pieces on those values: how options are declared, the files the tool
    # writes; the client is the HTTP edge, on answers alone.
    {"options", "files", "columns", "batching", "pacing", "stops", "client"},
    {"journal", "lock", "inputs", "sandbox.config"},
    {"reader", "reports", "job", "sandbox.state"},
    {"ledger", "sandbox.app"},
    {"accounting", "engine", "sandbox.server"},
    {"sandbox"},
    {"display", "explain"},
    {"runner"},
    {"cli"},
    {"entry"},
    {"__main__"},
]


def rank_of() -> dict[str, int]:
    return {name: rank for rank, layer in enumerate(LAYERS) for name in layer}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts) or "inboxleads"


def imports_of(path: Path) -> set[str]:
    """The package's modules that `path` imports, by the names LAYERS uses."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level:
            here = package.split(".") if package else []
            base = here[: len(here) - (node.level - 1)]
            if node.module:
                found.add(".".join([*base, node.module]))
            else:  # `from . import x`: a module, or a name of the package itself
                for alias in node.names:
                    module = ".".join([*base, alias.name])
                    known = (PACKAGE / module.replace(".", "/")).with_suffix(".py").exists()
                    found.add(module if known else ".".join(base) or "inboxleads")
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names = [node.module] if isinstance(node, ast.ImportFrom) else []
            names += [a.name for a in node.names] if isinstance(node, ast.Import) else []
            for full in names:
                if full and (full == "inboxleads" or full.startswith("inboxleads.")):
                    found.add(full.removeprefix("inboxleads.") if full != "inboxleads" else full)
    return {m for m in found if m != name}


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_has_a_layer() -> None:
    ranks = rank_of()
    assert {module_name(p) for p in MODULES} == set(ranks)


@pytest.mark.parametrize("path", MODULES, ids=module_name)
def test_a_module_imports_only_from_layers_below_its_own(path: Path) -> None:
    ranks = rank_of()
    name = module_name(path)
    upward = sorted(m for m in imports_of(path) if ranks[m] >= ranks[name])
    assert not upward, f"{name} imports {upward}, which are not below it"


def test_the_check_sees_imports_in_functions_and_under_type_checking() -> None:
    assert "reports" in imports_of(PACKAGE / "ledger.py")  # imported under TYPE_CHECKING only
    assert "lock" in imports_of(PACKAGE / "runner.py")  # imported inside a function
    assert "inboxleads" in imports_of(PACKAGE / "client.py")  # from . import __version__
