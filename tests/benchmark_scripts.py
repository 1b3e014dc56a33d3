"""Loads a script of `benchmarks/` as a module, for the tests that run it."""

import importlib.util
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def load(name):
    """The module of `benchmarks/<name>.py`, executed afresh (as
    `<name>_benchmark`, apart from any module of that name)."""
    path = os.path.join(REPO, "benchmarks", f"{name}.py")
    spec = importlib.util.spec_from_file_location(f"{name}_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
