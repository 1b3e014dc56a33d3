"""The method registry: every training method by name, in one table.

`tf-dsr compare`, `tf-dsr train --method` and the examples' `--method`
read this table and nothing else to know which methods exist, how to
build each one's callback, what network it starts from and whether it
trains twice as long. A method's options are its callback's constructor
arguments: the command line offers them, and a comparison passes each
method the ones it takes, with no list of options kept anywhere else.
Adding a method is a core file (`tf_dsr/core/<method>.py`), a method
file (`tf_dsr/methods/<method>.py`, its callback) and one `Method` entry
here.
"""

import inspect
import re
import types
from typing import NamedTuple
from typing import Optional

from tf_dsr.methods.dsr import DynamicReparam
from tf_dsr.methods.gradual import GradualPruning
from tf_dsr.methods.rigl import RigL
from tf_dsr.methods.set import SET

# How a method's network starts.
SPARSE = "sparse"  # sparse layers at the target sparsity
DENSE_START = "dense_start"  # sparse layers at sparsity 0, pruned during training
DENSE = "dense"  # plain Keras layers, all weights
THIN = "thin"  # plain Keras layers, narrower: as many weights as the sparse net

class Run(NamedTuple):
    """What a method's callback may learn of the run it trains in.

    Attributes:
        sparsity: float in [0, 1), the target sparsity.
        seed: int, the run's seed.
        total_steps: int, optimizer steps of the whole run.
    """

    sparsity: float
    seed: int
    total_steps: int = 1


class Method(NamedTuple):
    """One entry of the registry.

    Attributes:
        name: the name on command lines and in result files.
        label: how tables and plots name it.
        network: how its network starts (`SPARSE`, `DENSE_START`, `DENSE`,
            `THIN`).
        callback: its callback class, or None (no mask updates).
        preset: constructor arguments this entry fixes (DSR with gradient
            growth is `DynamicReparam` with `growth="gradient"`).
        doubled_epochs: trains twice as many epochs in the paper's
            comparison (static sparse and thin dense).
        summary: one line for `--help`.
        moves_between_layers: its updates move weights between layers (a
            global budget), so a per-layer sparsity plot shows something.
    """

    name: str
    label: str
    network: str
    callback: Optional[type] = None
    preset: types.MappingProxyType = types.MappingProxyType({})
    doubled_epochs: bool = False
    summary: str = ""
    moves_between_layers: bool = False

    @property
    def updates_masks(self):
        return self.callback is not None

    @property
    def sparse(self):
        """Whether the network has tf_dsr sparse layers."""
        return self.network in (SPARSE, DENSE_START)

    def options(self):
        """dict, option name -> `inspect.Parameter`: the callback's
        constructor arguments, less those the entry or the run sets."""
        if self.callback is None:
            return {}
        parameters = inspect.signature(self.callback).parameters
        return {name: parameter for name, parameter in parameters.items()
                if name not in self.preset and name not in self.callback.set_by_run
                and parameter.kind is parameter.POSITIONAL_OR_KEYWORD}

    def make_callback(self, run, **options):
        """The method's callback for `run`, given the `options` it takes.

        Options the method does not take but another method of the
        registry does are ignored, so one set of options can be offered to
        every method of a comparison; a name no method takes is refused.
        None for methods with no mask updates.

        Raises:
            ValueError: an option no method of the registry takes.
        """
        known = {name for method in REGISTRY.values() for name in method.options()}
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(
                f"No method takes the option(s) {unknown}. The options are "
                f"{sorted(known)}; `seed` and the sparsity come from the run.")
        if self.callback is None:
            return None
        own = {name: value for name, value in options.items()
               if name in self.options() and value is not None}
        return self.callback.for_run(run, **self.preset, **own)


def option_help(callback, name):
    """The `Args:` text of `callback`'s docstring for argument `name` (one
    line), or ''."""
    doc = inspect.getdoc(callback) or ""
    match = re.search(rf"^\s*{re.escape(name)}: (.*(?:\n\s{{8,}}.*)*)", doc, re.MULTILINE)
    return " ".join(match.group(1).split()) if match else ""


REGISTRY = {
    method.name: method
    for method in (
        Method("dsr", "DSR", SPARSE, DynamicReparam,
               types.MappingProxyType({"growth": "random"}),
               summary="DynamicReparam: global threshold, weights move between layers",
               moves_between_layers=True),
        Method("dsr-gradient", "DSR, gradient growth", SPARSE, DynamicReparam,
               types.MappingProxyType({"growth": "gradient"}),
               summary="DynamicReparam(growth='gradient'): grows where |dL/dW| is largest",
               moves_between_layers=True),
        Method("rigl", "RigL", SPARSE, RigL,
               summary="RigL: per layer, drop smallest |W|, grow largest |dL/dW|"),
        Method("set", "SET", SPARSE, SET,
               summary="SET: per layer, drop smallest |W|, grow at random"),
        Method("static", "static sparse", SPARSE, doubled_epochs=True,
               summary="fixed random masks"),
        Method("gradual", "compressed sparse (gradual)", DENSE_START, GradualPruning,
               summary="dense start, GradualPruning to the target (Zhu & Gupta)"),
        Method("dense", "full dense", DENSE,
               summary="the full dense network"),
        Method("thin", "thin dense", THIN, doubled_epochs=True,
               summary="a narrower dense network with as many weights"),
    )
}

METHODS = tuple(REGISTRY)


def get(name):
    """The registry entry called `name`.

    Raises:
        ValueError: no method has that name.
    """
    if name not in REGISTRY:
        raise ValueError(f"Unknown method {name!r}. Choose from {METHODS}.")
    return REGISTRY[name]


def make_callback(name, run, **options):
    """The mask-updating callback of method `name` for `run` (a `Run`), or
    None (static, dense, thin)."""
    return get(name).make_callback(run, **options)


def is_full_dense(name):
    """Whether method `name` trains the full dense network (no sparsity:
    results hold it once per seed, with sparsity None)."""
    return get(name).network == DENSE


def options(names):
    """dict, option name -> the methods among `names` that take it, in
    the order the registry lists methods and their signatures options."""
    taken = {}
    for name in names:
        for option in get(name).options():
            taken.setdefault(option, []).append(name)
    return taken
