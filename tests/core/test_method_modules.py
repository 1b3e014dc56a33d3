"""Each method's core stands on the shared floor, never on a sibling method.

`tf_dsr/core/` holds one module per method (DSR's `reallocation`, `set`,
`rigl`, `gradual`) and the parts they share (counting, seeds, sharing
out, drop and growth rules, selection, the update skeleton, blocks). A
method module imports shared modules only: a new method is one new file,
and changing one method never changes another.
"""

import ast
import pathlib

import pytest

import tf_dsr.core

CORE = pathlib.Path(tf_dsr.core.__file__).parent
SHARED = {"__init__", "blocks", "counts", "drop", "growth", "seeds", "selection",
          "sharing", "update"}
METHODS = sorted(p.stem for p in CORE.glob("*.py") if p.stem not in SHARED)


def core_imports(source):
    """Names of the `tf_dsr.core` modules that `source` imports."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: `from . import set`, `from .set import x`
                base = "tf_dsr.core" + ("." + node.module if node.module else "")
            else:
                base = node.module or ""
            modules = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for module in modules:
            parts = module.split(".")
            if parts[:2] == ["tf_dsr", "core"] and len(parts) > 2:
                names.add(parts[2])
    return names & ({p.stem for p in CORE.glob("*.py")} - {"__init__"})


def test_the_method_modules_are_the_expected_ones():
    assert METHODS == ["gradual", "reallocation", "rigl", "set"]


@pytest.mark.parametrize("method", METHODS)
def test_a_method_module_imports_no_other_method_module(method):
    imported = core_imports((CORE / f"{method}.py").read_text())
    assert not imported & set(METHODS), (
        f"tf_dsr/core/{method}.py imports the method module(s) "
        f"{sorted(imported & set(METHODS))}: move what they share to a shared "
        f"module ({sorted(SHARED - {'__init__'})})."
    )
    assert imported <= SHARED


@pytest.mark.parametrize("method", ["set", "rigl"])
def test_no_shared_module_imports_a_method_module(method):
    for shared in sorted(SHARED - {"__init__"}):
        assert method not in core_imports((CORE / f"{shared}.py").read_text()), shared


@pytest.mark.parametrize("source,expected", [
    ("from tf_dsr.core.set import drop_smallest", {"set"}),
    ("from tf_dsr.core import reallocation", {"reallocation"}),
    ("from tf_dsr.core import set as set_core, seeds", {"set", "seeds"}),
    ("import tf_dsr.core.rigl", {"rigl"}),
    ("from . import gradual", {"gradual"}),
    ("from .reallocation import prune", {"reallocation"}),
    ("def f():\n    from tf_dsr.core.set import prune_counts", {"set"}),
    ("import tensorflow as tf\nfrom tf_dsr.layers import base", set()),
])
def test_core_imports_finds_every_form_of_import(source, expected):
    # The check above is only as good as this parser: every way of
    # importing a sibling must be seen.
    assert core_imports(source) == expected
