"""Package structure: no import cycles inside opacity_jax, no private names used across modules.

Imports are read with `ast` from the source files (module-level and function-level alike), so a
cycle hidden by deferring an import into a function body still counts. A package importing its
own submodules (``opacity_jax/serve/__init__.py`` importing ``opacity_jax.serve.surrogate``) is
not a cycle: the package is just a namespace over them.

Private names: ``from m import _x`` or ``m._x`` where ``m`` is another opacity_jax module fails.
Private *modules* (``opacity_jax._compat``) and private aliases (``import ... as _el``) are fine.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "opacity_jax"


def _module_name(path):
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _sources():
    return {_module_name(p): p for p in sorted(PKG.rglob("*.py"))}


MODULES = _sources()


def _resolve(mod, node):
    """Absolute module name of an ImportFrom's base (handles relative imports)."""
    if not node.level:
        return node.module or ""
    is_pkg = MODULES[mod].name == "__init__.py"
    base = mod.split(".")
    base = base if is_pkg else base[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _existing(name):
    """The longest prefix of dotted `name` that is an opacity_jax module, or None."""
    parts = name.split(".")
    while parts:
        cand = ".".join(parts)
        if cand in MODULES:
            return cand
        parts.pop()
    return None


def _scan(mod):
    """(imported modules, private uses) of one module; private uses are (line, text)."""
    tree = ast.parse(MODULES[mod].read_text(), filename=str(MODULES[mod]))
    deps, private = set(), []
    aliases = {}  # local name -> opacity_jax module it is bound to
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("opacity_jax"):
                    target = _existing(a.name)
                    if target:
                        deps.add(target)
                    if a.asname:
                        aliases[a.asname] = a.name
                    else:
                        aliases.setdefault(a.name.split(".")[0], a.name.split(".")[0])
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(mod, node)
            if not base.startswith("opacity_jax"):
                continue
            for a in node.names:
                sub = f"{base}.{a.name}"
                if sub in MODULES:
                    deps.add(sub)
                    aliases[a.asname or a.name] = sub
                    continue
                target = _existing(base)
                if target:
                    deps.add(target)
                if a.name.startswith("_") and not a.name.startswith("__") and target != mod:
                    private.append((node.lineno, f"from {base} import {a.name}"))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            target = aliases.get(node.value.id)
            if (target and target != mod and node.attr.startswith("_")
                    and not node.attr.startswith("__") and f"{target}.{node.attr}" not in MODULES):
                private.append((node.lineno, f"{node.value.id}.{node.attr}"))
    deps.discard(mod)
    return deps, private


GRAPH = {}
PRIVATE = {}
for _m in MODULES:
    GRAPH[_m], PRIVATE[_m] = _scan(_m)


def _edges(mod):
    """Dependencies, where importing a package counts as importing its __init__ only; and a
    package's own submodules are not counted for the package itself."""
    is_pkg = MODULES[mod].name == "__init__.py"
    return {d for d in GRAPH[mod] if not (is_pkg and d.startswith(mod + "."))}


def _cycles():
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in _edges(v):
            if w not in index:
                visit(w)
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
                out.append(sorted(comp))

    for v in sorted(MODULES):
        if v not in index:
            visit(v)
    return out


def _cycle_path(comp):
    """One concrete import loop through a strongly connected component, for the message."""
    comp_set = set(comp)
    start = comp[0]
    prev = {start: None}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in sorted(_edges(v) & comp_set):
                if w == start:
                    path = [v]
                    while prev[path[-1]] is not None:
                        path.append(prev[path[-1]])
                    return " -> ".join(reversed(path)) + " -> " + start
                if w not in prev:
                    prev[w] = v
                    nxt.append(w)
        frontier = nxt
    return " -> ".join(comp)


def test_scanner_sees_the_package():
    # Guards the test itself: an empty or broken scan would pass every check below vacuously.
    assert "opacity_jax.train.loop" in MODULES and len(MODULES) > 40
    assert "opacity_jax.physics.constants" in GRAPH["opacity_jax.physics.planck"]


def test_scanner_detects_a_cycle_and_a_private_import(tmp_path, monkeypatch):
    # A deferred (function-level) import closing a loop, and both spellings of a private use.
    a, b = tmp_path / "a.py", tmp_path / "b.py"
    a.write_text("def f():\n    from opacity_jax.b import _g\n")
    b.write_text("from opacity_jax import a\nx = a._h\n")
    monkeypatch.setitem(MODULES, "opacity_jax.a", a)
    monkeypatch.setitem(MODULES, "opacity_jax.b", b)
    for m in ("opacity_jax.a", "opacity_jax.b"):
        deps, private = _scan(m)
        monkeypatch.setitem(GRAPH, m, deps)
        monkeypatch.setitem(PRIVATE, m, private)
    assert ["opacity_jax.a", "opacity_jax.b"] in _cycles()
    assert [t for _, t in PRIVATE["opacity_jax.a"]] == ["from opacity_jax.b import _g"]
    assert [t for _, t in PRIVATE["opacity_jax.b"]] == ["a._h"]


def test_no_import_cycles():
    loops = [f"{_cycle_path(c)}  (modules in this cycle group: {', '.join(c)})" for c in _cycles()]
    assert not loops, "import cycles inside opacity_jax:\n  " + "\n  ".join(loops)


def test_no_imports_through_old_paths():
    # Old paths (opacity_jax._moved) are for users; inside the package they would hide edges
    # from the cycle check above, since no file exists there.
    from opacity_jax._moved import MOVED
    bad = []
    for m, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                base = _resolve(m, node)
                names = [base] + [f"{base}.{a.name}" for a in node.names]
            bad += [f"{path.relative_to(ROOT)}:{node.lineno}: {n}" for n in names if n in MOVED]
    assert not bad, "imports of moved modules by their old path:\n  " + "\n  ".join(bad)


def test_no_private_names_across_modules():
    bad = [f"{MODULES[m].relative_to(ROOT)}:{line}: {text}"
           for m in sorted(PRIVATE) for line, text in PRIVATE[m]]
    assert not bad, "private names used from another module:\n  " + "\n  ".join(bad)


if __name__ == "__main__":
    raise SystemExit(pytest.main([__file__, "-q"]))
