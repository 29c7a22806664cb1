"""The package's layers: every import runs down the layer order, none sideways, no cycles.

Parses every module under ``src/initlab`` with :mod:`ast` (imports inside functions included)
and checks the architecture of ``shared/DESIGN.md``: a module imports only its own package and
lower layers; policy, datadriven and diagnostics never import each other; the files form no
import cycle; no package holds more than a fifth of the source lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

import initlab

SRC = Path(initlab.__file__).parent

# Low to high. Units in one tuple share a layer and may not import each other.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("_checks", "_files", "_imports", "_version"),
    ("fans", "gains"),
    ("initializers",),
    ("introspect",),
    ("policy", "datadriven", "diagnostics"),
    ("pretrained", "parameterize"),
    ("datasets", "zoo", "schemes", "reports"),
    ("experiments",),
    ("cli",),
    ("__init__", "__main__"),  # the facade and the entry point
)
LEVEL = {unit: level for level, units in enumerate(LAYERS) for unit in units}


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC).with_suffix("").parts
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        found[".".join(("initlab", *parts))] = path
    return found


MODULES = _modules()


def _unit(module: str) -> str:
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def _imports(module: str, path: Path) -> set[str]:
    """Every initlab module that ``module`` imports, at any depth of its code."""
    is_package = path.name == "__init__.py"
    targets = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = module.split(".")[: len(module.split(".")) - node.level + is_package]
                stem = ".".join(base + ([node.module] if node.module else []))
            else:
                stem = node.module or ""
            # "from a import b": b is a module (a.b) or a name defined in a
            names = [
                f"{stem}.{alias.name}" if f"{stem}.{alias.name}" in MODULES else stem
                for alias in node.names
            ]
        else:
            continue
        for name in names:
            if name == "initlab" or name.startswith("initlab."):
                while name not in MODULES and "." in name:
                    name = name.rsplit(".", 1)[0]
                targets.add(name)
    targets.discard(module)
    return targets


GRAPH = {module: _imports(module, path) for module, path in MODULES.items()}


def test_every_unit_has_a_layer():
    assert {_unit(m) for m in MODULES} <= set(LEVEL), set(map(_unit, MODULES)) - set(LEVEL)


def test_no_import_runs_up_or_sideways():
    wrong = []
    for module, targets in GRAPH.items():
        unit = _unit(module)
        for target in targets:
            other = _unit(target)
            if other == unit and unit != "__init__":
                continue
            if unit in ("__init__", "__main__"):
                continue  # the facade re-exports every layer
            if LEVEL[other] >= LEVEL[unit]:
                wrong.append(
                    f"{module} -> {target} ({unit}: layer {LEVEL[unit]}, {other}: "
                    f"layer {LEVEL[other]})"
                )
    assert not wrong, "imports against the layer order:\n" + "\n".join(sorted(wrong))


def test_no_import_cycles_between_files():
    # A package's __init__ re-exports its own modules, so edges into and out of package
    # faces are followed like any other; a cycle through them is still a cycle.
    cycles = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(GRAPH.get(node, ())):
            if MODULES.get(nxt, Path()).name == "__init__.py" or nxt == "initlab":
                continue  # a package face only re-exports; its edges are the modules'
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(stack[stack.index(nxt) :] + [nxt]))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for module in sorted(MODULES):
        if module not in state and MODULES[module].name != "__init__.py":
            visit(module)
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_no_package_holds_more_than_a_fifth_of_the_lines():
    lines: dict[str, int] = {}
    for module, path in MODULES.items():
        unit = _unit(module)
        lines[unit] = lines.get(unit, 0) + len(path.read_text().splitlines())
    total = sum(lines.values())
    assert max(lines.values()) <= 0.2 * total, {u: round(n / total, 3) for u, n in lines.items()}


def test_the_parser_sees_imports_inside_functions_and_relative_ones(tmp_path):
    # The checker itself: an import hidden in a function body and a relative import are both
    # edges, so an upward import cannot hide from the layer test.
    path = tmp_path / "plan.py"
    path.write_text(
        "def f():\n    from initlab.datadriven.lsuv import lsuv_\n"
        "from . import rules\nfrom ..zoo import models\n"
    )
    found = _imports("initlab.policy.plan", path)
    assert found == {"initlab.datadriven.lsuv", "initlab.policy.rules", "initlab.zoo.models"}
