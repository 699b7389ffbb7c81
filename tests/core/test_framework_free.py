"""The core is framework-free in its logic: no framework's name in any identifier, import or
string of ``weightmap/**.py`` (docstrings and comments are for people and may name them), except
the registry's list of built-in adapters and the public names of the per-framework helper
modules (``weightmap.keras.KerasFreeze``). Every fact about a framework is asked of its adapter
(``registry.convention``, ``registry.output_kinds``, ``adapter.load_into`` / ``run_file`` ...)."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import weightmap

CORE = Path(weightmap.__file__).resolve().parent
FRAMEWORK = re.compile(r"(?i)torch|keras|onnx|tensorflow|tf_keras")
# (file relative to weightmap/, the name or string allowed there)
ALLOWED_NAMES = {("keras.py", "KerasFreeze")}      # public API: weightmap.keras.KerasFreeze


def _docstrings(tree: ast.AST) -> set[int]:
    """ids of the string constants that are documentation: a module's, class's or function's
    docstring, or a bare string under an assignment (an attribute's docstring)."""
    return {id(node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)}


def _builtin_table(tree: ast.AST) -> set[int]:
    """ids of every node inside ``BUILTIN = {...}`` (the registry's list of built-in adapters)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "BUILTIN"
                                                for t in node.targets):
            return {id(n) for n in ast.walk(node.value)}
    return set()


def framework_names(source: str, rel: str) -> list[tuple[int, str]]:
    """(line, text) of every identifier, imported name or non-documentation string in
    ``source`` that names a framework, minus the allowed ones."""
    tree = ast.parse(source)
    skip = _docstrings(tree) | (_builtin_table(tree) if rel == "registry.py" else set())
    hits = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
        elif isinstance(node, ast.Name):
            text = node.id
        elif isinstance(node, ast.Attribute):
            text = node.attr
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            text = node.name
        elif isinstance(node, ast.arg):
            text = node.arg
        elif isinstance(node, ast.alias):
            text = node.name
        elif isinstance(node, ast.ImportFrom):
            text = node.module or ""
        elif isinstance(node, ast.keyword):
            text = node.arg or ""
        else:
            continue
        if FRAMEWORK.search(text) and (rel, text) not in ALLOWED_NAMES:
            hits.append((getattr(node, "lineno", 0), text))
    return hits


def test_no_framework_name_in_core_code():
    found = [f"weightmap/{path.relative_to(CORE).as_posix()}:{line}: {text[:80]!r}"
             for path in sorted(CORE.rglob("*.py"))
             for line, text in framework_names(path.read_text(encoding="utf-8"),
                                               path.relative_to(CORE).as_posix())]
    assert not found, "framework names in core code (ask the adapter's convention, output " \
                      "kinds or runners instead):\n" + "\n".join(found)


def test_the_scan_finds_a_framework_branch_in_code_not_in_docs():
    source = '''"""Reads torch and Keras files."""
# a comment about onnx
def pick(graph):
    """A docstring naming tf_keras."""
    if graph.framework == "keras":
        return torch_layout(graph)
    from weightmap_onnx import reader
    return f"{graph.format}-live"
'''
    assert sorted(framework_names(source, "x.py")) == \
        [(5, "keras"), (6, "torch_layout"), (7, "weightmap_onnx")]


def test_only_the_builtin_table_of_the_registry_may_name_them():
    source = 'BUILTIN = {"torch": "weightmap_torch:ADAPTER"}\nOTHER = {"keras": 1}\n'
    assert [t for _l, t in framework_names(source, "registry.py")] == ["keras"]
    assert len(framework_names(source, "api.py")) == 3
