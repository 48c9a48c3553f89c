"""The runtime's package layout is its pipeline picture: no import cycles, and no import that
runs back up a layer (docs/ARCHITECTURE.md). Imports inside functions count too; only
imports under `if TYPE_CHECKING:` (annotations) are exempt."""
from __future__ import annotations

import ast
from pathlib import Path

RUNTIME = Path(__file__).resolve().parent.parent / "runtime"

#: Lower layers never import higher ones; a package may import its own layer's earlier
#: entries only where the order below says so (left may not import right within a row).
LAYERS = [
    ("runtime", "system", "models"),
    ("schedule", "audio"),
    ("speech", "quality"),
    ("display", "render"),  # the sink contract (Picture) is display's; render fills it
    ("config",),
    ("pipeline",),
    ("service",),
    ("commands",),
    ("cli", "__main__"),
]
RANK = {name: (layer, pos) for layer, row in enumerate(LAYERS) for pos, name in enumerate(row)}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(RUNTIME.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports_of(path: Path, modules: set[str]) -> set[str]:
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    tree = ast.parse(path.read_text())
    skip = _type_checking_lines(tree)
    found: set[str] = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", 0) in skip:
            continue
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [mod] + [f"{mod}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t in modules and t != name)
    return found


def graph() -> dict[str, set[str]]:
    paths = sorted(RUNTIME.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return {module_name(p): imports_of(p, modules) for p in paths}


def stage(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "runtime"


def test_every_package_is_placed_in_a_layer():
    assert {stage(m) for m in graph()} <= set(RANK)


def test_no_import_runs_back_up_a_layer():
    upward = []
    for module, targets in graph().items():
        for target in targets:
            if target == "runtime":
                continue
            a, b = RANK[stage(module)], RANK[stage(target)]
            if b > a:
                upward.append(f"{module} -> {target}")
    assert upward == []


def test_no_import_cycles():
    edges = graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(trail[trail.index(nxt):] + [nxt]) if nxt in trail else nxt)
            elif nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert cycles == []


def test_each_package_says_what_it_owns():
    for init in sorted(RUNTIME.glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and len(doc) > 80, f"{init}: one paragraph on what the package owns"
