"""The tree shows the architecture: no import cycle, no layer imports a higher one, and no
module reads /proc by hand (psutil does). Read from the AST of every module, imports inside
functions included, so nothing has to be imported to be checked."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pitools"

SHARED = {"pitools.errors", "pitools.config", "pitools.params_yaml", "pitools.memory", "pitools.progress",
          "pitools.locks", "pitools.version"}
LAYERS = [("data", 1), ("kernels", 1), ("engine", 2), ("search", 3), ("market", 4), ("box", 5), ("notebook", 5)]
TOP = {"pitools", "pitools.__main__", "pitools.cli", "pitools.conftest"}  # conftest: the doctests' folder


def module_names(root: Path) -> dict[str, Path]:
    out = {}
    for path in root.rglob("*.py"):
        parts = path.relative_to(root.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports(root: Path) -> dict[str, list[tuple[str, int]]]:
    """Each module's pitools imports (target module, line); `from pkg import sub` counts sub."""
    names = module_names(root)
    graph: dict[str, list[tuple[str, int]]] = {}
    for mod, path in names.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        found = []
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found += [(a.name, node.lineno) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                for a in node.names:
                    found.append((f"{target}.{a.name}" if f"{target}.{a.name}" in names else target, node.lineno))
        graph[mod] = [(t, line) for t, line in found if t in names and t != mod]
    return graph


def find_cycle(graph: dict[str, list[tuple[str, int]]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for t, _ in graph.get(m, []):
            if state.get(t) == 1:
                return stack[stack.index(t):] + [t]
            if t not in state and (c := visit(t)):
                return c
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (c := visit(m)):
            return c
    return None


def rank(mod: str) -> tuple[int, str]:
    if mod in TOP:
        return 9, "top"
    if mod in SHARED:
        return 0, "shared"
    for layer, r in LAYERS:
        if mod == f"pitools.{layer}" or mod.startswith(f"pitools.{layer}."):
            return r, layer
    raise AssertionError(f"{mod} belongs to no layer: put it in a layer folder or add it to this test")


def test_no_import_cycle():
    cycle = find_cycle(imports(PACKAGE))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_checker_finds_a_cycle(tmp_path):
    pkg = tmp_path / "pitools"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from pitools import b\n")
    (pkg / "b.py").write_text("from .a import f\n")
    assert find_cycle(imports(pkg)) in (["pitools.a", "pitools.b", "pitools.a"], ["pitools.b", "pitools.a", "pitools.b"])


def test_no_layer_imports_a_higher_one():
    wrong = []
    for mod, targets in imports(PACKAGE).items():
        r, layer = rank(mod)
        for t, line in targets:
            tr, tlayer = rank(t)
            if tr > r or (tr == r and {layer, tlayer} == {"box", "notebook"}) or (
                    layer == "kernels" and tlayer == "data") or (layer == "data" and tlayer == "kernels"):
                wrong.append(f"{mod} (line {line}, layer {layer}) imports {t} (layer {tlayer})")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("layer", ["engine", "search", "market", "box", "notebook"])
def test_ls_pitools_shows_the_layers(layer):
    assert (PACKAGE / layer / "__init__.py").read_text().startswith('"""'), f"pitools/{layer}/ says what it is"


def test_no_module_reads_proc_by_hand():
    hits = []
    for mod, path in module_names(PACKAGE).items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("/proc"):
                hits.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: {node.value!r}")
    assert not hits, "read it through psutil (pitools.memory):\n" + "\n".join(hits)


# A statement keyword and what follows it in SQL; uppercase only (the house style), so prose such
# as "select the universe" or "update the model" is not taken for SQL.
SQL = re.compile(r"\b(SELECT\s+(DISTINCT\s+)?[\w*(]|INSERT\s+(OR\s+\w+\s+)?INTO|UPDATE\s+\w+\s+SET|DELETE\s+FROM|"
                 r"CREATE\s+(TABLE|INDEX|UNIQUE|VIEW)|ALTER\s+TABLE|DROP\s+(TABLE|INDEX)|PRAGMA\s+\w+)")
DATABASE_MODULE = "pitools.market.db"
NOTEBOOKS = PACKAGE.parent / "notebooks"


def sql_in_source(source: str, where: str) -> list[str]:
    """Every string constant (f-strings' literal parts too) of `source` that holds a SQL statement."""
    hits = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.search(node.value):
            hits.append(f"{where}:{node.lineno}: {node.value.strip()[:70]!r}")
    return hits


def notebook_code(path: Path) -> str:
    cells = json.loads(path.read_text())["cells"]
    # IPython magics and shell lines are not Python: blank them, keep the line numbers
    return "\n".join("\n".join("" if ln.lstrip().startswith(("%", "!")) else ln
                               for ln in "".join(c["source"]).splitlines())
                     for c in cells if c["cell_type"] == "code")


def test_no_sql_outside_the_database_module():
    hits = []
    for mod, path in module_names(PACKAGE).items():
        if mod != DATABASE_MODULE:
            hits += sql_in_source(path.read_text(), str(path.relative_to(PACKAGE.parent)))
    for nb in sorted(NOTEBOOKS.glob("*.ipynb")):
        hits += sql_in_source(notebook_code(nb), str(nb.relative_to(PACKAGE.parent)))
    assert not hits, "SQL belongs in pitools/market/db.py, called by name:\n" + "\n".join(hits)


def test_the_sql_checker_finds_sql_and_not_prose():
    src = ('q = "SELECT MAX(night) FROM evaluations"\n'
           'db.conn.execute(f"DELETE FROM {table} WHERE night = ?")\n'
           'w = "INSERT OR REPLACE INTO regimes (session) VALUES (?)"\n'
           'doc = "Select the universe, then update the model and insert a row into the report."\n')
    assert sorted(h.split(":")[1] for h in sql_in_source(src, "x")) == ["1", "2", "3"]
    assert sql_in_source(notebook_code(NOTEBOOKS / "05_report.ipynb"), "05") == []
    assert len(sql_in_source((PACKAGE / "market" / "db.py").read_text(), "db")) >= 10  # where SQL lives, it is seen
