"""The package's import graph has no cycle: every `import` / `from ... import` of a curvlab
module, at module level or inside a function, is an edge, and the graph is acyclic. (Python
tolerates some cycles at run time; they still tie modules together that should layer: data flows
datasets -> problem -> curvature / linalg / landscape / optim -> dashboards.)"""

import ast
import pathlib

import curvlab

ROOT = pathlib.Path(curvlab.__file__).parent


def _module_name(path):
    rel = path.relative_to(ROOT.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules():
    return {_module_name(p): p for p in ROOT.rglob("*.py")}


def _resolve(name, modules):
    """The curvlab module a dotted name refers to (a name imported from a package may be one of
    its submodules, or an attribute of the package itself)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def import_graph():
    modules = _modules()
    graph = {m: set() for m in modules}
    for mod, path in modules.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[:len(base) - (node.level - 1)]
                    prefix = ".".join(base + ([node.module] if node.module else []))
                else:
                    prefix = node.module or ""
                targets = [f"{prefix}.{a.name}" for a in node.names]
            for t in targets:
                if t.split(".")[0] != "curvlab":
                    continue
                dep = _resolve(t, modules)
                if dep and dep != mod:
                    graph[mod].add(dep)
    return graph


def _is_ancestor_package(a, b):
    """Importing `curvlab.x.y` runs `curvlab.x`'s __init__ first; an edge from a submodule to
    its own package (or the package re-exporting its submodule) is that relation, not a cycle
    between peers — but only the package -> submodule direction is kept, the other is folded."""
    return b.startswith(a + ".")


def find_cycle(graph):
    """One cycle as a list of modules, or None (edges from a module up to a package it lives in
    are dropped: a package's __init__ importing its submodules is how a package is built)."""
    edges = {m: {d for d in deps if not _is_ancestor_package(d, m)} for m, deps in graph.items()}
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for d in sorted(edges[m]):
            if state.get(d) == "open":
                return stack[stack.index(d):] + [d]
            if d not in state:
                found = visit(d)
                if found:
                    return found
        stack.pop()
        state[m] = "done"
        return None

    for m in sorted(edges):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_the_walker_sees_imports_inside_functions_and_relative_ones():
    graph = import_graph()
    assert "curvlab.engine" in graph["curvlab.curvature.products"] or \
        "curvlab.engine" in graph["curvlab.problem"]
    # a function-level import is an edge too (landscape.direction imports linalg lazily today,
    # or did: whichever way, the walker must see function bodies)
    src = "def f():\n    from .linalg import spectrum\n"
    tree = ast.parse(src)
    assert any(isinstance(n, ast.ImportFrom) for n in ast.walk(tree))


def test_find_cycle_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_curvlab_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)
