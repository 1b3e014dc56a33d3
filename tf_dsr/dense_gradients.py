"""The dense gradient of a masked kernel, captured during `model.fit`.

A sparse layer computes with `W * M` (kernel times mask), so the gradient
Keras' optimizer receives is `dL/dW = dL/d(W * M) * M`: zero wherever
the mask is 0. Gradient-based growth (RigL, Evci et al., ICML 2020, and
`DynamicReparam(growth="gradient")`) ranks the inactive positions by
`|dL/d(W * M)|`, the *dense* gradient that multiplication hides.

`DenseGradients` attaches a gradient hook to each given kernel
(`tf_dsr.gradient_hooks.set_gradient_hook`): where the layer computes with
`W * M` it computes with `identity(W * M)` instead, an identity whose
backward pass, besides passing the gradient on unchanged, writes it into
a float32 variable of the kernel's shape -- when, and only when, capture
is requested. The user's model, `compile` and `fit` are unchanged: the
hook lives in the layer and Keras' own `train_step` runs it.

What it costs when not requested: per kernel, an identity in the forward
pass and a `tf.cond` in the backward pass; per training step, one read of
the request flag and one counter increment for all kernels. Inference
runs the identities only. When requested, each kernel's gradient is cast
to float32 and written. BUILD_NOTES.md ("How the dense gradient is
obtained", "Dense gradient: cost per step") has the measured figures.

Semantics, settled once here:

- **Which step.** Every training step that runs while capture is
  requested overwrites the variables: they hold the dense gradient of
  the most recent such step. With `steps_per_execution=k`, a request made
  between two executions covers the k steps of the next execution, and
  the variables hold the gradient of its last step.
- **Several uses in one step.** A layer called several times in one
  traced step (a shared layer) gets the sum of the gradients of its uses:
  the first gradient of a step is assigned, the following ones are added
  (a per-step token, created once per traced graph and replica, tells
  them apart). Eagerly (`run_eagerly=True`) every use gets its own token,
  so a shared layer holds the gradient of one use only.
  Recurrent layers compute each masked kernel once per call, so the
  gradient is summed over time steps by TensorFlow itself.
- **MirroredStrategy.** The variables are `ON_READ` with `SUM`
  aggregation: each replica writes its own gradient locally (no
  communication during the step), and reading them outside
  `strategy.run` (eagerly, or in a `tf.function`) sums the replicas.
  Keras divides each replica's loss by the number of replicas, so the sum
  is the gradient of the loss over the global batch, the same as one
  device computes for that batch (up to the order of floating-point
  additions).
- **Mixed precision.** The gradient is the one TensorFlow computes for
  the product in the compute dtype (float16 under `mixed_float16`), cast
  to float32. Under a `LossScaleOptimizer` the loss Keras differentiates
  is multiplied by the optimizer's dynamic scale, and so is the captured
  gradient: it is *not* unscaled. Ranking the positions of one kernel by
  magnitude does not change with a positive scale; divide by the scale
  the step used if absolute values matter. On a step where the scaled
  float16 gradient overflows, the captured values hold Inf or NaN (that
  step is one the LossScaleOptimizer skips): check `tf.math.is_finite`
  before ranking.
- **XLA.** The hook is plain TensorFlow (`tf.custom_gradient`, `tf.cond`,
  variable assignment) and compiles with `jit_compile=True`.

Retracing: Keras traces `model.train_function` once and reuses it. The
hooks are part of the layers' `call`, so they are in a train function
traced after `DenseGradients` was created and absent from one traced
before; after `detach()` a train function traced while attached still
runs the (inert, disarmed) hooks. Both are settled by
`model.make_train_function(force=True)`: a callback calls it in
`on_train_begin` (Keras looks `model.train_function` up at every step).
A request that finds no hook in the train function is visible:
`captured` stays False after the step.

Export: `tf_dsr.export`, `tf_dsr.to_tflite` and `tf_dsr.strip` never see
the hooks (they read `kernel * mask` without them). Keras' own
`model.export` / `tf.saved_model.save` trace the layers' `call` and would
capture the hooks' variables: detach first.
"""

import contextlib
import threading
import weakref

import tensorflow as tf

from tf_dsr.layers.base import SparseKernel
from tf_dsr.gradient_hooks import remove_gradient_hook
from tf_dsr.gradient_hooks import set_gradient_hook

_ON_READ = tf.VariableSynchronization.ON_READ


def _strategy_of(kernels):
    """The distribution strategy the kernels' variables were created under.

    Raises:
        ValueError: if the kernels come from different strategies.
    """
    strategies = {}
    for pair in kernels:
        variable = getattr(pair.kernel, "value", pair.kernel)
        strategy = getattr(variable, "distribute_strategy", None)
        strategies[id(strategy)] = strategy
    if len(strategies) > 1:
        raise ValueError(
            "DenseGradients: the given kernels were created under "
            f"{len(strategies)} different distribution strategies. Pass the "
            "kernels of one model, built under one `strategy.scope()`."
        )
    return next(iter(strategies.values()))


def _check_kernels(kernels):
    if not isinstance(kernels, (list, tuple)):
        raise TypeError(
            "DenseGradients expects a list of tf_dsr SparseKernel. Received: "
            f"{type(kernels).__name__}. Use "
            "`[pair for _, pair in tf_dsr.layers.find_sparse_kernels(model)]`."
        )
    for index, pair in enumerate(kernels):
        if not isinstance(pair, SparseKernel):
            raise TypeError(
                f"DenseGradients expects a list of tf_dsr SparseKernel; item "
                f"{index} is a {type(pair).__name__}. Note that "
                "`find_sparse_kernels(model)` gives (name, SparseKernel) "
                "pairs: pass `[pair for _, pair in find_sparse_kernels(model)]`."
            )
    if not kernels:
        raise ValueError(
            "DenseGradients received no kernel. Pass the SparseKernels of a "
            "model with tf_dsr sparse layers (`find_sparse_kernels(model)`)."
        )
    seen = set()
    for pair in kernels:
        key = (id(pair.layer), pair.attribute)
        if key in seen:
            raise ValueError(
                f"DenseGradients received the {pair.attribute} of layer "
                f"'{pair.layer.name}' twice. Pass each kernel once."
            )
        seen.add(key)


class DenseGradients:
    """Captures `dL/d(kernel * mask)` of sparse kernels during training.

    Creating it attaches a gradient hook to every given kernel; the hooks
    do nothing until `request()` is called. From then on, every training
    step writes the dense gradient of each kernel into `variables`, until
    `release()`. See the module docstring for which step is held, the
    costs, MirroredStrategy, mixed precision, XLA and retracing.

    Args:
        kernels: list of `tf_dsr.SparseKernel`, e.g.
            `[pair for _, pair in tf_dsr.layers.find_sparse_kernels(model)]`.
            Built layers only; each kernel once; one distribution strategy
            (the variables are created under it).

    Attributes:
        variables: list of float32 `tf.Variable`s aligned with `kernels`,
            each of its kernel's shape, holding the dense gradient of the
            most recent training step run while requested (zeros before).
        captured: boolean `tf.Variable`, True once a gradient was written
            since the last `request()`.

    Raises:
        TypeError: if `kernels` is not a list of `SparseKernel`.
        ValueError: if it is empty, repeats a kernel, mixes strategies, or
            a kernel already has a hook (another `DenseGradients`).

    Example:

    >>> from tf_dsr.dense_gradients import DenseGradients
    >>> model = keras.Sequential([keras.Input((4,)), tf_dsr.SparseDense(3, sparsity=0.5)])
    >>> model.compile("sgd", "mse")
    >>> pairs = [p for _, p in tf_dsr.layers.find_sparse_kernels(model)]
    >>> capture = DenseGradients(pairs)
    >>> capture.request()
    >>> _ = model.fit(np.ones((8, 4)), np.ones((8, 3)), verbose=0)
    >>> capture.release()
    >>> bool(capture.captured.numpy()), tuple(capture.variables[0].shape)
    (True, (4, 3))
    >>> capture.detach()
    """

    def __init__(self, kernels):
        _check_kernels(kernels)
        self.kernels = list(kernels)
        strategy = _strategy_of(self.kernels)
        scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
        with scope:
            # ON_READ: replicas write locally during the step; a read outside
            # `strategy.run` aggregates (SUM for gradients).
            self.variables = [
                tf.Variable(
                    tf.zeros(pair.mask.shape, tf.float32),
                    trainable=False,
                    name=f"dense_gradient_{index}",
                    synchronization=_ON_READ,
                    aggregation=tf.VariableAggregation.SUM,
                )
                for index, pair in enumerate(self.kernels)
            ]
            # The token of the step each variable was last written at.
            self._written_at = [
                tf.Variable(
                    tf.constant(-1, tf.int64),
                    trainable=False,
                    name=f"dense_gradient_step_{index}",
                    synchronization=_ON_READ,
                    aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
                )
                for index in range(len(self.kernels))
            ]
            self._steps = tf.Variable(
                tf.constant(0, tf.int64),
                trainable=False,
                name="dense_gradient_steps",
                synchronization=_ON_READ,
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
            )
            self.captured = tf.Variable(
                False,
                trainable=False,
                name="dense_gradient_captured",
                synchronization=_ON_READ,
                aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
            )
            # Set from outside `strategy.run`: mirrored, read by every replica.
            self._requested = tf.Variable(
                False, trainable=False, name="dense_gradient_requested"
            )
        # graph -> {thread: (token, requested)}: one per traced step and replica
        # thread (MirroredStrategy traces each replica in its own thread).
        self._tokens = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()
        self._finite_fn = None
        self._attached = []
        try:
            for index, pair in enumerate(self.kernels):
                set_gradient_hook(pair, self._hook(index))
                self._attached.append(pair)
        except ValueError:
            self.detach()
            raise

    # ----- what the caller uses ----------------------------------------
    def request(self):
        """Arms capture for the following training steps (until `release`).

        Resets `captured` to False. Call it outside `strategy.run` (from a
        callback or eagerly), before the step whose gradient is wanted.
        """
        self._check_attached("request")
        self._requested.assign(True)
        self.captured.assign(False)

    def is_requested(self):
        """Whether the next step's gradient will be written (reads the
        in-graph flag: one host read)."""
        return bool(self._requested.numpy())

    def release(self):
        """Disarms capture: the following steps leave `variables` unchanged."""
        self._requested.assign(False)

    def detach(self):
        """Removes the hooks from the layers.

        The layers then compute exactly what they computed before this
        object was created. A train function Keras traced while attached
        still holds the (disarmed) hooks until it is rebuilt: call
        `model.make_train_function(force=True)`. Idempotent.
        """
        self._requested.assign(False)
        for pair in self._attached:
            remove_gradient_hook(pair)
        self._attached = []

    def finite(self):
        """Whether every captured value is finite (False after a float16
        loss-scale overflow: the gradient holds Inf or NaN)."""
        if self._finite_fn is None:
            self._finite_fn = tf.function(
                lambda: tf.reduce_all([
                    tf.reduce_all(tf.math.is_finite(tf.convert_to_tensor(v)))
                    for v in self.variables
                ]),
                autograph=False,
            )
        return bool(self._finite_fn().numpy())

    @property
    def attached(self):
        """True until `detach()`."""
        return bool(self._attached)

    def _check_attached(self, what):
        if not self._attached:
            raise ValueError(
                f"DenseGradients.{what}(): this capture was detached from its "
                "layers. Create a new DenseGradients for the model."
            )

    # ----- the hook ----------------------------------------------------
    def _step(self):
        """`(token, requested)` for the step being traced.

        `token` differs between training steps and is shared by every use
        of every kernel within one step; `requested` is the request flag,
        read once per step for all kernels.
        """
        if tf.executing_eagerly():
            return self._steps.assign_add(1), self._requested.read_value()
        graph = tf.compat.v1.get_default_graph()
        thread = threading.get_ident()
        with self._lock:
            steps = self._tokens.setdefault(graph, {})
            step = steps.get(thread)
            if step is None:
                step = steps[thread] = (
                    self._steps.assign_add(1), self._requested.read_value())
        return step

    def _hook(self, index):
        variable = self.variables[index]
        written_at = self._written_at[index]
        num_rows = int(self.kernels[index].mask.shape[0])

        def hook(value, indices=None):
            def write(gradient, token):
                gradient = tf.cast(gradient, tf.float32)
                if indices is not None:
                    # Rows gathered from a table: their gradients land on
                    # their rows, summed over repeated indices.
                    gradient = tf.math.unsorted_segment_sum(
                        tf.reshape(gradient, [-1, gradient.shape[-1]]),
                        tf.reshape(tf.cast(indices, tf.int64), [-1]),
                        num_rows,
                    )
                # Later uses of the kernel in the same step add to the first.
                same_step = tf.equal(written_at.read_value(), token)
                written = tf.cond(
                    same_step,
                    lambda: variable.assign_add(gradient, read_value=False),
                    lambda: variable.assign(gradient, read_value=False),
                )
                with tf.control_dependencies([written]):
                    return tf.group(
                        written_at.assign(token, read_value=False),
                        self.captured.assign(True, read_value=False),
                    )

            @tf.custom_gradient
            def watched(x):
                def backward(upstream):
                    # Created in the backward pass, so inference never
                    # increments the step counter.
                    token, requested = self._step()
                    done = tf.cond(
                        requested,
                        lambda: _as_flag(write(upstream, token)),
                        lambda: tf.constant(False),
                    )
                    # The gradient does not wait for the write: tf.function's
                    # automatic control dependencies run every stateful op
                    # (under XLA too) and order it before later reads of
                    # the variables in the same function.
                    del done
                    return upstream

                return tf.identity(x), backward

            return watched(value)

        return hook


def _as_flag(op):
    with tf.control_dependencies([op]):
        return tf.constant(True)

