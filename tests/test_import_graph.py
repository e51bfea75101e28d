"""The package's import graph, read from the source (AST, nothing imported): imports run one way.

Over ftlab/ and the root entry scripts: no import cycle; no module imports a higher layer (LAYERS, low to
high; the root scripts are the top); no `sys.path` edit; and no ftlab import inside a function, except
ftlab/cli.py's lazy sub-command table (which uses importlib). Each check is also run on a planted package
that breaks it, so the test can fail.
"""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Optional, Set, Tuple

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Layers, low to high: a module may import its own layer or a lower one. The longest matching prefix wins.
LAYERS: Dict[str, int] = {
    "ftlab.io": 0, "ftlab.hardware": 0, "ftlab.commandline": 0,
    "ftlab.metrics": 1, "ftlab.models": 1, "ftlab.data": 1,
    "ftlab.speed": 2,
    "ftlab.methods": 3,
    "ftlab.runs": 4,
    "ftlab.train": 5,
    "ftlab.analysis": 6, "ftlab.llm": 6,
    "ftlab.cli": 7, "ftlab.__main__": 7, "ftlab": 7,  # ftlab/__init__.py: a docstring only
}
ROOT_LAYER = 8  # dataHelper.py, train.py, eval.py
FUNCTION_IMPORTS_ALLOWED = {"ftlab.cli"}


def module_files(root: Path, package: str) -> Dict[str, Path]:
    """module name -> file, for the package under root and the .py files at root (the entry scripts)."""
    files = {p.stem: p for p in root.glob("*.py")}
    for path in (root / package).rglob("*.py"):
        parts = path.relative_to(root).with_suffix("").parts
        files[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return files


def imports_of(path: Path, name: str, known: Set[str]) -> List[Tuple[str, int, bool]]:
    """(imported project module, line, inside a function) for every import of a project module in `path`."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inside = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            targets: List[str] = []
            if isinstance(child, ast.Import):
                targets = [a.name for a in child.names]
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:  # relative: resolve against this module's package
                    anchor = package.split(".")[:len(package.split(".")) - (child.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                # `from ftlab.runs import modelcard` imports the module ftlab.runs.modelcard
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in child.names]
            for target in targets:
                module = longest_known(target, known)
                if module is not None and module != name:
                    found.append((module, child.lineno, inside))
            visit(child, inside)

    visit(tree, False)
    return found


def longest_known(target: str, known: Set[str]) -> Optional[str]:
    parts = target.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in known:
            return ".".join(parts[:n])
    return None


def layer_of(module: str, layers: Dict[str, int], root_layer: int) -> int:
    if "." not in module and module not in layers:
        return root_layer  # a root entry script
    best = max((p for p in layers if module == p or module.startswith(p + ".")), key=len)
    return layers[best]


def find_cycle(graph: Dict[str, Set[str]]) -> Optional[List[str]]:
    """One import cycle as [a, b, ..., a], or None (depth-first search with colours)."""
    state: Dict[str, int] = {}
    stack: List[str] = []

    def dfs(node: str) -> Optional[List[str]]:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = dfs(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = dfs(node)
            if cycle:
                return cycle
    return None


def sys_path_edits(path: Path) -> List[int]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [n.lineno for n in ast.walk(tree) if isinstance(n, ast.Attribute) and n.attr == "path"
            and isinstance(n.value, ast.Name) and n.value.id == "sys"]


def check(root: Path, package: str = "ftlab", layers: Dict[str, int] = LAYERS, root_layer: int = ROOT_LAYER,
          function_imports_allowed: Set[str] = FUNCTION_IMPORTS_ALLOWED) -> List[str]:
    """Every violation of the rules above, one line each ([] when the graph is clean)."""
    files = module_files(root, package)
    known = set(files)
    graph: Dict[str, Set[str]] = {name: set() for name in files}
    problems = []
    for name, path in sorted(files.items()):
        here = layer_of(name, layers, root_layer)
        for target, line, inside in imports_of(path, name, known):
            graph[name].add(target)
            there = layer_of(target, layers, root_layer)
            where = f"{path.relative_to(root)}:{line}"
            if there > here:
                problems.append(f"{where}: upward import {name} (layer {here}) -> {target} (layer {there})")
            if inside and name not in function_imports_allowed:
                problems.append(f"{where}: {target} imported inside a function")
        problems += [f"{path.relative_to(root)}:{line}: sys.path edit" for line in sys_path_edits(path)]
    cycle = find_cycle(graph)
    if cycle:
        problems.append("import cycle: " + " -> ".join(cycle))
    return problems


def test_the_package_imports_run_one_way():
    assert check(ROOT) == []


def test_labs_and_tests_edit_no_sys_path():
    offenders = [f"{p.relative_to(ROOT)}:{line}" for folder in ("labs", "tests") for p in (ROOT / folder).glob("*.py")
                 for line in sys_path_edits(p)]
    assert offenders == []


def test_every_package_module_has_a_layer():
    """A new top-level part of ftlab/ must be placed in LAYERS (else it would sit in the top package layer)."""
    parts = {p.name if p.is_dir() else p.stem for p in (ROOT / "ftlab").iterdir()
             if (p.is_dir() and (p / "__init__.py").exists()) or (p.suffix == ".py" and p.stem != "__init__")}
    assert {f"ftlab.{part}" for part in parts} <= set(LAYERS)


def plant(tmp_path: Path, files: Dict[str, str]) -> Path:
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return tmp_path


PLANTED_LAYERS = {"pkg.low": 0, "pkg.high": 1, "pkg": 1}


@pytest.mark.parametrize("files, expected", [
    ({"pkg/low/a.py": "from pkg.high import b\n", "pkg/high/b.py": "", "pkg/__init__.py": "",
      "pkg/low/__init__.py": "", "pkg/high/__init__.py": ""}, "upward import pkg.low.a (layer 0) -> pkg.high.b"),
    ({"pkg/low/a.py": "import pkg.low.b\n", "pkg/low/b.py": "from . import a\n", "pkg/__init__.py": "",
      "pkg/low/__init__.py": ""}, "import cycle: pkg.low.a -> pkg.low.b -> pkg.low.a"),
    ({"pkg/low/a.py": "def f():\n    from pkg.low import b\n", "pkg/low/b.py": "", "pkg/__init__.py": "",
      "pkg/low/__init__.py": ""}, "pkg/low/a.py:2: pkg.low.b imported inside a function"),
    ({"pkg/low/a.py": "import sys\nsys.path.insert(0, '.')\n", "pkg/__init__.py": "", "pkg/low/__init__.py": ""},
     "pkg/low/a.py:2: sys.path edit"),
    ({"pkg/low/a.py": "import entry\n", "entry.py": "import pkg.low.a\n", "pkg/__init__.py": "",
      "pkg/low/__init__.py": ""}, "upward import pkg.low.a (layer 0) -> entry (layer 2)"),
])
def test_the_checker_finds_a_planted_violation(tmp_path, files, expected):
    problems = check(plant(tmp_path, files), "pkg", PLANTED_LAYERS, 2, set())
    assert any(expected in p for p in problems), problems


def test_the_checker_passes_a_clean_planted_package(tmp_path):
    root = plant(tmp_path, {"pkg/__init__.py": "", "pkg/low/__init__.py": "", "pkg/low/a.py": "import os\n",
                            "pkg/high/__init__.py": "", "pkg/high/b.py": "from pkg.low import a\nfrom pkg.low.a import os\n",
                            "entry.py": "from pkg.high import b\n"})
    assert check(root, "pkg", PLANTED_LAYERS, 2, set()) == []
