"""Every `>>>` example in tf_dsr's docstrings runs as written.

Examples may use `keras`, `tf`, `np` and `tf_dsr` without importing them,
and `model`, `x` and `y` where the text leaves them to the user: `model` is
a compiled sparse LeNet-300-100 for the 64-pixel digits (sparsity 0.9,
seed 0), `x` and `y` are the 1,438 training digits of
`tf_dsr.app.data.load_digits()`. Each docstring gets fresh ones, a fixed
random seed and its own working directory; its printed output must match
the text (`...` stands for any text, whitespace runs are equal).
"""

import copy
import doctest
import importlib
import inspect
import pkgutil

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_dsr
from tf_dsr.app.data import load_digits

OPTIONS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


def _modules():
    names = [tf_dsr.__name__] + [
        info.name for info in pkgutil.walk_packages(tf_dsr.__path__, tf_dsr.__name__ + ".")
    ]
    return [importlib.import_module(name) for name in sorted(names)]


def _collect():
    finder = doctest.DocTestFinder()
    return {test.name: test for module in _modules() for test in finder.find(module)
            if test.examples}


DOCTESTS = _collect()


def _public_names():
    """`tf_dsr.X` and `tf_dsr.models.X` names, with the object each names."""
    names = {f"tf_dsr.{name}": getattr(tf_dsr, name) for name in tf_dsr.__all__}
    names.update({
        f"tf_dsr.models.{name}": obj for name, obj in vars(tf_dsr.models).items()
        if not name.startswith("_") and inspect.isfunction(obj)
    })
    return {name: obj for name, obj in names.items() if not inspect.ismodule(obj)}


def _namespace():
    (x, y), _ = load_digits(seed=0)
    model = tf_dsr.models.lenet_300_100((64,), 10, sparsity=0.9, seed=0)
    model.compile(
        keras.optimizers.SGD(0.1, momentum=0.9, nesterov=True),
        keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return {"keras": keras, "tf": tf, "np": np, "tf_dsr": tf_dsr,
            "model": model, "x": x, "y": y}


def test_every_public_example_is_collected():
    public = _public_names()
    with_examples = {
        name for name, obj in public.items() if ">>>" in (inspect.getdoc(obj) or "")
    }
    # Sparse classes are named like their Keras class (`SparseDense.__qualname__
    # == "Dense"`); their module binds them by their tf_dsr name, `sparse_name`.
    qualified = {
        name: f"{obj.__module__}.{getattr(obj, 'sparse_name', obj.__qualname__)}"
        for name, obj in public.items()
    }
    missing = sorted(name for name in with_examples if qualified[name] not in DOCTESTS)
    assert not missing, f"examples not collected: {missing}"
    # The names a user starts from all show how they are used.
    must = {"SparseDense", "SparseConv2D", "DynamicReparam", "SET", "GradualPruning",
            "SparsityHistory", "sparsify", "strip", "export", "to_tflite", "load_model",
            "sparsity_summary", "erk_sparsities"}
    assert {f"tf_dsr.{name}" for name in must} <= with_examples
    assert {name for name in public if name.startswith("tf_dsr.models.")} <= with_examples


@pytest.mark.parametrize("name", sorted(DOCTESTS))
def test_docstring_example_runs_as_written(name, tmp_path, monkeypatch):
    test = copy.copy(DOCTESTS[name])
    test.globs = {**test.globs, **_namespace()}
    monkeypatch.chdir(tmp_path)
    keras.utils.set_random_seed(0)
    report = []
    runner = doctest.DocTestRunner(optionflags=OPTIONS)
    result = runner.run(test, out=report.append, clear_globs=True)
    assert result.attempted == len(test.examples)
    assert result.failed == 0, "".join(report)
