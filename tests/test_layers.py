"""Imports flow one way (docs/ARCHITECTURE.md): each module imports only from lower layers."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "nerflite"

# module prefix -> (layer, layers it may import)
LAYERS = [
    ("nerflite.data", 1, {0, 1}),
    ("nerflite.models", 3, {0, 1, 2, 3}),
    ("nerflite.engine", 4, {0, 1, 2, 3, 4}),
    ("nerflite.fields", 2, {0, 2}),
    ("nerflite.raymath", 2, {0, 2}),  # sampling, occupancy, marching, compositing
    ("nerflite.viewer", 4, {0, 1, 2, 3, 4}),
    ("nerflite.view", 5, {0, 1, 2, 3, 4, 5}),
    ("nerflite.demo", 5, {0, 1, 2, 3, 4, 5}),
    ("nerflite.rays", 0, {0}),
    ("nerflite.cameras", 0, {0}),
    ("nerflite.lens", 0, {0}),
    ("nerflite.metrics", 0, {0}),
    ("nerflite.camera_paths", 0, {0}),
    ("nerflite.utils", 0, {0}),
    ("nerflite", 2, {0, 2}),  # rigid_body, mesh, geometry, ...
]


def layer_of(module: str) -> tuple[int, set[int]]:
    for prefix, layer, allowed in LAYERS:
        if module == prefix or module.startswith(prefix + "."):
            return layer, allowed
    raise AssertionError(module)


def module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return {m for m in out if m == "nerflite" or m.startswith("nerflite.")}


def test_imports_follow_the_layers():
    violations = []
    for path in sorted(PKG.rglob("*.py")):
        me = module_name(path)
        my_layer, allowed = layer_of(me)
        for dep in imported_modules(path):
            if dep == "nerflite":
                continue
            dep_layer, _ = layer_of(dep)
            if dep_layer not in allowed:
                violations.append(f"{me} (layer {my_layer}) imports {dep} (layer {dep_layer})")
    assert not violations, "\n".join(violations)


def module_edges(path: Path, known: set[str]) -> set[str]:
    """The nerflite modules ``path`` imports, anywhere in the file (deferred imports too);
    ``from package import submodule`` counts as an import of the submodule."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("nerflite"))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("nerflite"):
            subs = {f"{node.module}.{a.name}" for a in node.names} & known
            out.update(subs or {node.module})
    return out & known


def test_no_import_cycles():
    """No module reaches itself through imports (a deferred import inside a function counts: it
    only hides a circle)."""
    paths = {module_name(p): p for p in PKG.rglob("*.py")}
    graph = {m: module_edges(p, set(paths)) - {m} for m, p in paths.items()}
    cycles, state = [], {}

    def visit(m: str, stack: list[str]) -> None:
        state[m] = "open"
        for dep in sorted(graph[m]):
            if state.get(dep) == "open":
                cycles.append(" -> ".join(stack[stack.index(dep):] + [dep]))
            elif dep not in state:
                visit(dep, stack + [dep])
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    packages = {m for m, p in paths.items() if p.name == "__init__.py"}
    real = [c for c in cycles if not set(c.split(" -> ")) & packages]  # a package and its own modules
    assert not real, "import cycles:\n" + "\n".join(real)
