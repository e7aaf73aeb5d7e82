"""The import structure (issue: every module on its floor), measured from the code.

Every ``import`` of the package (module level and inside functions alike) is read with
``ast``. The package has no import circles, no module imports from a higher floor than its
own, and no benchmark imports from tests/ or from another benchmark.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "edgeconv"

#: floors, bottom up: a module may import from its own floor and the floors below
FLOORS = [
    ("edgeconv.errors", "edgeconv.quiet", "edgeconv.progress", "edgeconv.protobuf"),
    ("edgeconv.config", "edgeconv.fileio", "edgeconv.options", "edgeconv.kernels"),
    ("edgeconv.metadata", "edgeconv.data", "edgeconv.ops"),
    ("edgeconv.models", "edgeconv.runtime"),
    ("edgeconv.profiling",),
    ("edgeconv.train",),
    ("edgeconv.translate", "edgeconv.gan", "edgeconv.segmentation"),
    ("edgeconv.export",),
    ("edgeconv.quickstart", "edgeconv.envelope"),
    # the CLI: the pieces its command modules share, the command modules, the root group
    ("edgeconv.commands.common", "edgeconv.commands.config_options"),
    ("edgeconv.commands",),
    ("edgeconv.cli", "edgeconv.__main__"),
]


def floor_of(module: str) -> int | None:
    if module == "edgeconv":      # the package's __init__: torch-free, imports errors only
        return 1
    best = None
    for n, prefixes in enumerate(FLOORS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and (best is None or
                                                                 len(p) > best[1]):
                best = (n, len(p))
    return None if best is None else best[0]


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    me = module_name(path)
    pkg = me if path.name == "__init__.py" else me.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = pkg.split(".")
                base = ".".join(up[:len(up) - node.level + 1] + ([base] if base else []))
            out.add(base)
            out.update(f"{base}.{a.name}" for a in node.names)
    return out


def package_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {}
    for mod, path in files.items():
        targets = set()
        for imp in imports_of(path):
            while imp and imp not in files:
                imp = imp.rpartition(".")[0]
            if imp and imp != mod and not mod.startswith(imp + ".") and imp != "edgeconv":
                targets.add(imp)
        graph[mod] = targets
    return graph


def test_no_import_circles():
    graph = package_graph()
    index, low, stack, on, sccs = {}, {}, [], set(), []

    def strong(v):  # Tarjan
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(sorted(comp))

    for v in graph:
        if v not in index:
            strong(v)
    assert not sccs, f"import circles: {sccs}"


def test_no_upward_imports():
    bad = []
    for mod, targets in package_graph().items():
        f = floor_of(mod)
        assert f is not None, f"{mod} has no floor in tests/test_structure.py FLOORS"
        for t in targets:
            ft = floor_of(t)
            if ft is not None and ft > f:
                bad.append(f"{mod} (floor {f + 1}) imports {t} (floor {ft + 1})")
    assert not bad, "imports that run up a floor:\n" + "\n".join(sorted(bad))


def test_benchmarks_import_neither_tests_nor_each_other():
    benches = {p.stem for p in (ROOT / "benchmarks").glob("*.py")}
    bad = []
    for path in sorted((ROOT / "benchmarks").glob("*.py")):
        text = path.read_text()
        if '"tests"' in text or "'tests'" in text or "/ \"tests\"" in text:
            bad.append(f"{path.name}: puts tests/ on the path")
        for imp in imports_of(path):
            top = imp.split(".")[0]
            if top in ("tests", "conftest", "_kernels", "_models", "_unlock_models") or \
                    top.startswith("test_") or (top in benches and top != path.stem):
                bad.append(f"{path.name}: imports {imp}")
    assert not bad, "\n".join(bad)


def test_no_function_reads_an_undefined_global():
    """Every name a function reads from its module's globals exists there (or in builtins):
    the static check that would have caught ``quickstart`` reading an option it never
    declared (a NameError only when a user ran the README's main command)."""
    import builtins
    import importlib
    import symtable

    bad = []
    for path in sorted(PACKAGE.rglob("*.py")):
        mod_name = module_name(path)
        mod = importlib.import_module(mod_name)

        def walk(table):
            if table.get_type() != "module":
                for sym in table.get_symbols():
                    name = sym.get_name()
                    if (sym.is_global() and sym.is_referenced() and not sym.is_assigned()
                            and not hasattr(mod, name) and not hasattr(builtins, name)):
                        bad.append(f"{mod_name}: {table.get_name()} reads {name}")
            for child in table.get_children():
                walk(child)

        walk(symtable.symtable(path.read_text(), str(path), "exec"))
    assert not bad, bad
