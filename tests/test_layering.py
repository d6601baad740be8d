"""The package's layers: kernels <- runtime <- bench <- tuner <- cli/plots.

A module imports only from its own layer or the ones below it, and no modules import each
other in a circle. Every import statement counts, wherever it stands: at the top, inside a
function (it runs sooner or later) or under `if TYPE_CHECKING:` (the types still tie the
modules together). Read from the source with `ast`; nothing is imported."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "vitune"
# Lowest first. A module belongs to the layer of its longest listed prefix (a package
# listed here covers its submodules; the package root "vitune" covers itself only).
LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("base", ("vitune.logs",)),  # package-wide constants, importing nothing of vitune
    ("kernels", ("vitune.kernels",)),
    ("runtime", ("vitune.runtime", "vitune")),  # "vitune": the package's public names
    ("bench", ("vitune.bench",)),
    ("tuner", ("vitune.tuner",)),
    ("cli", ("vitune.cli", "vitune.plots")),
)


def module_files(root: Path, package: str = PACKAGE) -> dict[str, Path]:
    """Module name -> file, for every .py file of the package."""
    modules = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path
    return modules


def layer_of(module: str, layers=LAYERS) -> int:
    """The index of the module's layer; ValueError for a module no layer lists."""
    best, best_len = None, -1
    for index, (_, prefixes) in enumerate(layers):
        for prefix in prefixes:
            covers = module == prefix or ("." in prefix and module.startswith(prefix + "."))
            if covers and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    if best is None:
        raise ValueError(f"{module} is in no layer: add it (or its package) to LAYERS in "
                         "tests/test_layering.py")
    return best


def imports_of(module: str, path: Path, modules: dict[str, Path]
               ) -> list[tuple[str, int]]:
    """(imported vitune module, line) for every import statement in the file."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the module's own package up
                anchor = module.split(".")
                anchor = anchor if is_package else anchor[:-1]
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                # `from package import submodule` imports the submodule
                sub = f"{base}.{alias.name}"
                found.append((sub if sub in modules else base, node.lineno))
    return [(name, line) for name, line in found
            if name == PACKAGE or name.startswith(PACKAGE + ".")]


def import_graph(root: Path = ROOT, package: str = PACKAGE
                 ) -> tuple[dict[str, Path], dict[str, list[tuple[str, int]]]]:
    modules = module_files(root, package)
    return modules, {m: imports_of(m, p, modules) for m, p in modules.items()}


def layer_faults(modules: dict[str, Path], graph: dict[str, list[tuple[str, int]]],
                 root: Path = ROOT, layers=LAYERS) -> list[str]:
    faults = []
    for module, imported in graph.items():
        try:
            own = layer_of(module, layers)
        except ValueError as exc:
            faults.append(str(exc))
            continue
        for target, line in imported:
            try:
                theirs = layer_of(target, layers)
            except ValueError as exc:
                faults.append(str(exc))
                continue
            if theirs > own:
                where = modules[module].relative_to(root)
                allowed = ", ".join(name for name, _ in layers[:own + 1])
                faults.append(f"{where}:{line} imports {target} (layer {layers[theirs][0]}), "
                              f"but {module} is in layer {layers[own][0]}, which may import "
                              f"from {allowed} only")
    return sorted(set(faults))


def cycles(modules: dict[str, Path], graph: dict[str, list[tuple[str, int]]],
           root: Path = ROOT) -> list[str]:
    """One line per import circle: each module of it, the file and line of its import of
    the next. Strongly connected components (Tarjan), then a shortest circle in each."""
    edges = {m: sorted({t for t, _ in imported if t in graph and t != m})
             for m, imported in graph.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
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
                components.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    lines = []
    for component in components:
        members = set(component)
        start = component[0]
        # shortest way back to start, inside the component (breadth first)
        previous: dict[str, str] = {}
        frontier = [start]
        while frontier and start not in previous:
            following = []
            for v in frontier:
                for w in edges[v]:
                    if w in members and w not in previous:
                        previous[w] = v
                        following.append(w)
            frontier = following
        back = [start]  # start, the module importing it, the one importing that, ...
        while (v := previous[back[-1]]) != start:
            back.append(v)
        circle = [start, *reversed(back[1:])]  # start imports the next, ..., the last start
        steps = []
        for a, b in zip(circle, circle[1:] + circle[:1], strict=True):
            line = min(line for t, line in graph[a] if t == b)
            steps.append(f"{modules[a].relative_to(root)}:{line} imports {b}")
        lines.append("import circle: " + "; ".join(steps)
                     + (f" (circles among {', '.join(component)})" if len(circle) < len(component)
                        else ""))
    return lines


def test_every_import_respects_the_layers():
    modules, graph = import_graph()
    faults = layer_faults(modules, graph)
    assert not faults, "imports against the layers:\n" + "\n".join(faults)


def test_no_import_circles():
    modules, graph = import_graph()
    found = cycles(modules, graph)
    assert not found, "\n".join(found)


def test_the_checks_catch_a_backward_import_and_a_circle(tmp_path):
    """The checker itself, on a small package: a bench module importing the tuner, two
    runtime modules importing each other (one lazily), a module no layer lists."""
    files = {
        "__init__.py": "",
        "runtime/__init__.py": "",
        "runtime/a.py": "from vitune.runtime import b\n",
        "runtime/b.py": "def f():\n    from vitune.runtime.a import x\n",
        "bench/__init__.py": "",
        "bench/timer.py": "import os\n\n\ndef g():\n    from ..tuner import loop\n",
        "tuner/__init__.py": "",
        "tuner/loop.py": "from vitune.bench.timer import g\n",
        "stray.py": "",
    }
    for name, text in files.items():
        path = tmp_path / "vitune" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    modules, graph = import_graph(tmp_path)
    faults = layer_faults(modules, graph, tmp_path)
    assert any(f.startswith("vitune/bench/timer.py:5 imports vitune.tuner.loop (layer tuner)")
               for f in faults), faults
    assert any("vitune.stray is in no layer" in f for f in faults), faults
    assert len(faults) == 2, faults
    found = cycles(modules, graph, tmp_path)
    assert len(found) == 2, found  # runtime a <-> b; bench.timer <-> tuner.loop
    assert ("import circle: vitune/runtime/a.py:1 imports vitune.runtime.b; "
            "vitune/runtime/b.py:2 imports vitune.runtime.a") in found


@pytest.mark.parametrize("module, layer", [
    ("vitune", "runtime"), ("vitune.kernels.vision_attn.space", "kernels"),
    ("vitune.runtime.api", "runtime"), ("vitune.cli", "cli"), ("vitune.logs", "base")])
def test_layer_of(module, layer):
    assert LAYERS[layer_of(module)][0] == layer
