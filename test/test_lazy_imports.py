"""Imports sit where a reader looks for them: at the top of the module.

An import inside a function is kept only where it pays for itself: a heavy or optional dependency
(torch, cv2, scipy, matplotlib, rclpy and the ROS message packages, rosbags, ...) that a light caller
(``inerf-ros --help``, a ROS-free helper) must not load, or a module of this package imported late to
break an import cycle or keep a command's ``--help`` fast. Such an import says why, in a comment on
its line or on the line above it (one comment serves a block of consecutive imports). A standard
library module or a light dependency (numpy, PyYAML, tqdm, Pillow, safetensors) is never imported
late: it costs nothing worth saving, and a reader expects it at the top.
"""
from __future__ import annotations

import ast
import io
import re
import sys
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "inerf_ros"

LIGHT = set(sys.stdlib_module_names) | {"numpy", "yaml", "tqdm", "PIL", "safetensors"}
NOQA = re.compile(r"\s*noqa(:\s*[A-Z]+[0-9]+(\s*,\s*[A-Z]+[0-9]+)*)?", re.IGNORECASE)


def _comment_lines(source: str) -> set[int]:
    """Lines that carry a comment with a word in it (a bare ``# noqa`` says no why)."""
    lines = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            if NOQA.sub("", token.string.lstrip("#")).strip(" -"):
                lines.add(token.start[0])
    return lines


def _imported_modules(node: ast.Import | ast.ImportFrom) -> list[str]:
    if isinstance(node, ast.ImportFrom):
        return ["." * node.level + (node.module or "")]
    return [alias.name for alias in node.names]


def _function_imports(tree: ast.AST):
    """(import, the import statement opening its block of consecutive imports) inside any function."""
    for function in ast.walk(tree):
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for block in ast.walk(function):
            for field in ("body", "orelse", "finalbody", "handlers"):
                statements = getattr(block, field, None)
                if not isinstance(statements, list):
                    continue
                first = None
                for statement in statements:
                    if isinstance(statement, (ast.Import, ast.ImportFrom)):
                        first = first or statement
                        yield statement, first
                    else:
                        first = None


def lazy_import_problems(source: str, name: str = "<source>") -> list[str]:
    """``name:line: why`` for each function-level import that is light, or heavy without a comment."""
    tree = ast.parse(source)
    comments = _comment_lines(source)
    problems, seen = [], set()
    for node, first in _function_imports(tree):
        if id(node) in seen:  # a nested function's imports are reached from each enclosing function
            continue
        seen.add(id(node))
        for module in _imported_modules(node):
            top = module.split(".")[0]
            if top in LIGHT:
                problems.append(f"{name}:{node.lineno}: '{module}' is light: import it at the top of the module")
            elif not {node.lineno, first.lineno, first.lineno - 1} & comments:
                problems.append(f"{name}:{node.lineno}: lazy import of '{module}' without a comment saying why")
    return problems


def test_function_level_imports_are_heavy_and_say_why():
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        problems += lazy_import_problems(path.read_text(), str(path.relative_to(ROOT)))
    assert not problems, f"{len(problems)} function-level imports to move or explain:\n" + "\n".join(problems)


def test_the_scan_bites():
    source = (
        "import os\n\n\n"
        "def light():\n    import json\n    return json\n\n\n"
        "def silent():\n    import torch\n    return torch\n\n\n"
        "def explained():\n"
        "    # lazy: torch is heavy; --help must not import it\n"
        "    import torch\n    from torch import nn\n    return torch, nn\n\n\n"
        "def inline():\n    import cv2  # lazy: only this path needs OpenCV\n    return cv2\n\n\n"
        "def nested():\n    if True:\n        from inerf_ros.nerf import render\n    return render\n\n\n"
        "def noqa():\n    import scipy  # noqa: F401\n    return scipy\n"
    )
    problems = lazy_import_problems(source, "bad.py")
    assert problems == [
        "bad.py:5: 'json' is light: import it at the top of the module",
        "bad.py:10: lazy import of 'torch' without a comment saying why",
        "bad.py:28: lazy import of 'inerf_ros.nerf' without a comment saying why",
        "bad.py:33: lazy import of 'scipy' without a comment saying why",
    ], problems
