"""A callback that records how sparse each layer is as training goes on."""

import numbers

import keras

import tf_dsr.counting as counting
from tf_dsr.layers.find import find_sparse_kernels


class SparsityHistory(keras.callbacks.Callback):
    """Records the sparsity of every sparse kernel during training.

    DSR moves weights between layers: a layer that keeps more surviving
    weights receives more of the regrown ones (Mostafa & Wang, ICML 2019,
    Algorithm 1). This callback makes that visible. It reads the masks
    at the start of training, every `every` optimizer steps (if given) and
    at the end of every epoch. Place it after the mask-updating callback
    in the `callbacks` list so that a reallocation on the same step is
    already applied when it reads.

    Reading a mask copies it to the host; with `every` set, keep it a
    multiple of the reallocation period and large enough not to slow
    training.

    Args:
        every: int or None. Also record every `every` optimizer steps.
            None (default) records at the start and after each epoch only.

    Attributes:
        history: dict with lists of equal length: `"step"` (optimizer
            step), `"epoch"` (epochs completed), `"sparsity"` (global
            fraction of zeros over the sparse kernels) and `"layers"`, a
            dict from kernel name (the layer's name for a top-level layer
            with one kernel; see `sparsity_summary`) to its sparsity.

    Example:

    >>> sparsity_history = tf_dsr.SparsityHistory()
    >>> history = model.fit(x, y, epochs=5, verbose=0, callbacks=[
    ...     tf_dsr.DynamicReparam(600, 100), sparsity_history])
    >>> sparsity_history.history["step"]  # at the start and after each epoch
    [0, 45, 90, 135, 180, 225]
    >>> len(sparsity_history.history["layers"]["dense_300"])
    6
    """

    def __init__(self, every=None):
        super().__init__()
        if every is not None and (
            isinstance(every, bool) or not isinstance(every, numbers.Integral) or every < 1
        ):
            raise ValueError(
                f"`every` must be a positive int (optimizer steps) or None. "
                f"Received: every={every!r}."
            )
        self.every = None if every is None else int(every)
        self.history = {"step": [], "epoch": [], "sparsity": [], "layers": {}}
        self._kernels = []
        self._epoch = 0
        self._last_recorded = None

    def set_model(self, model):
        super().set_model(model)
        self._kernels = find_sparse_kernels(model)
        if not self._kernels:
            raise ValueError(
                f"Model {model.name!r} has no tf_dsr sparse layers, so there is "
                "no sparsity to record. Build it with tf_dsr.SparseDense or "
                "tf_dsr.SparseConv2D."
            )

    def _step(self):
        return int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

    def record(self, step=None):
        """Appends the current per-layer sparsity (at `step`, default now)."""
        step = self._step() if step is None else int(step)
        if step == self._last_recorded:
            # Same masks as the last entry; only the epoch count moved on.
            self.history["epoch"][-1] = self._epoch
            return
        self._last_recorded = step
        num_weights = num_active = 0
        layers = self.history["layers"]
        for name, pair in self._kernels:
            active, size = counting.num_active(pair.mask), pair.size
            layers.setdefault(name, []).append(1.0 - active / size)
            num_weights += size
            num_active += active
        self.history["step"].append(step)
        self.history["epoch"].append(self._epoch)
        self.history["sparsity"].append(1.0 - num_active / num_weights)

    def on_train_begin(self, logs=None):
        self._epoch = 0
        self.record()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch

    def on_train_batch_end(self, batch, logs=None):
        if self.every is not None:
            step = self._step()
            if step % self.every == 0:
                self.record(step)

    def on_epoch_end(self, epoch, logs=None):
        self._epoch = epoch + 1
        self.record()
