"""The package's structure: imports follow the layers of docs/architecture.md (a module imports only its own
layer and those below it, function-level imports included) and no modules import each other in a circle."""

from __future__ import annotations

import ast
from pathlib import Path

import gstrim

SRC = Path(gstrim.__file__).parent
# bottom to top; a module's layer is the first prefix that names it
LAYERS = [
    ("base", ["gstrim.errors", "gstrim.options", "gstrim.progress", "gstrim.threads", "gstrim.scene", "gstrim.camera",
              "gstrim.kmeans", "gstrim.kmeans_kernels", "gstrim.devices", "gstrim.timing", "gstrim.kernel_cache",
              "gstrim.resources", "gstrim.version"]),
    ("io", ["gstrim.io"]),
    ("render", ["gstrim.render"]),
    ("data", ["gstrim.data", "gstrim.example"]),
    ("metrics", ["gstrim.metrics", "gstrim.records", "gstrim.evaluate", "gstrim.info"]),
    ("train", ["gstrim.train"]),
    ("methods", ["gstrim.prune", "gstrim.compress"]),
    ("report", ["gstrim.report"]),
    ("view", ["gstrim.view"]),
    ("pipelines", ["gstrim.pipelines"]),
    ("cli", ["gstrim.cli"]),
    ("api", ["gstrim"]),  # the package root: `gstrim.trim()` calls a verb
]


def _modules() -> dict[str, Path]:
    found = {}
    for path in SRC.rglob("*.py"):
        parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _imports(path: Path, name: str, modules: dict) -> set[str]:
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    targets = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                targets.add(sub if sub in modules else base)
    return {t for t in targets if t in modules and t != name}


def _layer(module: str) -> int:
    for rank, (_, prefixes) in enumerate(LAYERS):
        if any(module == p or (module.startswith(p + ".") and p != "gstrim") for p in prefixes):
            return rank
    raise AssertionError(f"{module} has no layer: add it to LAYERS and docs/architecture.md")


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(path, name, modules) for name, path in modules.items()}


def test_imports_follow_the_layers():
    graph = _graph()
    against = [f"{a} ({LAYERS[_layer(a)][0]}) imports {b} ({LAYERS[_layer(b)][0]})"
               for a, targets in graph.items() for b in targets if _layer(b) > _layer(a)]
    assert not against, "\n".join(against)


def test_no_import_circles():
    graph = _graph()
    index, low, stack, on_stack, circles = {}, {}, [], set(), []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert not circles, circles


def test_a_lower_layer_never_imports_a_verb():
    graph = _graph()
    for module, targets in graph.items():
        if _layer(module) < _layer("gstrim.pipelines.run"):
            assert not any(t.startswith("gstrim.pipelines") or t.startswith("gstrim.cli") for t in targets), module
