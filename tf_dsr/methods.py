"""The method registry: every training method by name, in one table.

`tf-dsr compare`, `tf-dsr train --method` and the examples' `--method`
read this table and nothing else to know which methods exist, how to
build each one's callback, what network it starts from and whether it
trains twice as long. Adding a method is a core file
(`tf_dsr/core/<method>.py`), a callback file
(`tf_dsr/callbacks/<method>.py`) and one `Method` entry here.

Every callback builder receives the same `Settings`, the knobs the
comparison shares across methods (one prune fraction, one period, one
stop epoch), and keeps what it needs.
"""

import numbers
from typing import Callable
from typing import NamedTuple
from typing import Optional

# How a method's network starts.
SPARSE = "sparse"  # sparse layers at the target sparsity
DENSE_START = "dense_start"  # sparse layers at sparsity 0, pruned during training
DENSE = "dense"  # plain Keras layers, all weights
THIN = "thin"  # plain Keras layers, narrower: as many weights as the sparse net


class Settings(NamedTuple):
    """What a callback builder may use.

    Attributes:
        sparsity: float in [0, 1), the target sparsity.
        seed: int, the run's seed.
        prune_target: N_prune: a float in (0, 1) (a fraction of the active
            weights; SET prunes that fraction per layer) or an int count
            (SET shares it out in proportion to active weights, the DSR
            paper's equal-N_prune comparison). RigL ignores it.
        period: int steps between mask updates, or a schedule
            `{epoch: steps}`.
        stop_epoch: int or None, first epoch without mask updates.
        total_steps: int, optimizer steps of the whole run.
        drop_fraction: float or None, RigL's alpha (None: the registry's).
        gradual_steps: `(begin_step, end_step)` of gradual pruning, or
            None for `(0, 75% of total_steps)` (Zhu & Gupta prune over
            most of training, then fine-tune).
    """

    sparsity: float
    seed: int
    prune_target: object = 0.05
    period: object = 100
    stop_epoch: Optional[int] = None
    total_steps: int = 1
    drop_fraction: Optional[float] = None
    gradual_steps: Optional[tuple] = None


class Method(NamedTuple):
    """One entry of the registry.

    Attributes:
        name: the name on command lines and in result files.
        label: how tables and plots name it.
        network: how its network starts (`SPARSE`, `DENSE_START`, `DENSE`,
            `THIN`).
        make_callback: function `Settings -> callback`, or None (no mask
            updates).
        doubled_epochs: trains twice as many epochs in the paper's
            comparison (static sparse and thin dense).
        summary: one line for `--help`.
        reads: the `Settings` fields its callback uses beyond sparsity,
            seed and total steps (`"prune_target"`, `"drop_fraction"`,
            `"period"`, `"stop_epoch"`): the command lines print those and
            refuse options the chosen methods would ignore.
        moves_between_layers: its updates move weights between layers (a
            global budget), so a per-layer sparsity plot shows something.
    """

    name: str
    label: str
    network: str
    make_callback: Optional[Callable]
    doubled_epochs: bool = False
    summary: str = ""
    reads: frozenset = frozenset()
    moves_between_layers: bool = False

    @property
    def updates_masks(self):
        return self.make_callback is not None

    @property
    def sparse(self):
        """Whether the network has tf_dsr sparse layers."""
        return self.network in (SPARSE, DENSE_START)


def _dsr(growth):
    def make(settings):
        import tf_dsr

        return tf_dsr.DynamicReparam(
            prune_target=settings.prune_target, period=settings.period,
            stop_epoch=settings.stop_epoch, seed=settings.seed, growth=growth)

    return make


def _set(settings):
    import tf_dsr

    # The DSR paper's SET baseline prunes fraction N_prune / active per layer.
    target = settings.prune_target
    by_count = isinstance(target, numbers.Integral) and not isinstance(target, bool)
    return tf_dsr.SET(prune_fraction=None if by_count else target,
                      prune_target=target if by_count else None, period=settings.period,
                      stop_epoch=settings.stop_epoch, seed=settings.seed)


def _rigl(settings):
    import tf_dsr

    drop_fraction = settings.drop_fraction
    return tf_dsr.RigL(drop_fraction=RIGL_DROP_FRACTION if drop_fraction is None else drop_fraction,
                       period=settings.period, stop_epoch=settings.stop_epoch,
                       seed=settings.seed)


def _gradual(settings):
    import tf_dsr

    if settings.gradual_steps is None:
        # Zhu & Gupta: reach the target at ~75% of training, then fine-tune.
        begin_step, end_step = 0, max(1, int(round(0.75 * settings.total_steps)))
    else:
        begin_step, end_step = settings.gradual_steps
    period = settings.period
    if not isinstance(period, dict):
        period = min(period, end_step - begin_step)
    return tf_dsr.GradualPruning(
        final_sparsity=settings.sparsity, begin_step=begin_step, end_step=end_step,
        initial_sparsity=0.0, period=period, seed=settings.seed)


RIGL_DROP_FRACTION = 0.3

_PRUNE_PERIOD_STOP = frozenset({"prune_target", "period", "stop_epoch"})

REGISTRY = {
    method.name: method
    for method in (
        Method("dsr", "DSR", SPARSE, _dsr("random"),
               summary="DynamicReparam: global threshold, weights move between layers",
               reads=_PRUNE_PERIOD_STOP, moves_between_layers=True),
        Method("dsr-gradient", "DSR, gradient growth", SPARSE, _dsr("gradient"),
               summary="DynamicReparam(growth='gradient'): grows where |dL/dW| is largest",
               reads=_PRUNE_PERIOD_STOP, moves_between_layers=True),
        Method("rigl", "RigL", SPARSE, _rigl,
               summary="RigL: per layer, drop smallest |W|, grow largest |dL/dW|",
               reads=frozenset({"drop_fraction", "period", "stop_epoch"})),
        Method("set", "SET", SPARSE, _set,
               summary="SET: per layer, drop smallest |W|, grow at random",
               reads=_PRUNE_PERIOD_STOP),
        Method("static", "static sparse", SPARSE, None, doubled_epochs=True,
               summary="fixed random masks"),
        Method("gradual", "compressed sparse (gradual)", DENSE_START, _gradual,
               summary="dense start, GradualPruning to the target (Zhu & Gupta)",
               reads=frozenset({"period"})),
        Method("dense", "full dense", DENSE, None,
               summary="the full dense network"),
        Method("thin", "thin dense", THIN, None, doubled_epochs=True,
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


def make_callback(name, settings):
    """The mask-updating callback of method `name`, or None (static, dense, thin)."""
    method = get(name)
    return method.make_callback(settings) if method.updates_masks else None


def is_full_dense(name):
    """Whether method `name` trains the full dense network (no sparsity:
    results hold it once per seed, with sparsity None)."""
    return get(name).network == DENSE


def readers(names, setting):
    """The methods among `names` whose callback reads `Settings.<setting>`."""
    return [name for name in names if setting in get(name).reads]
