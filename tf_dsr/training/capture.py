"""Arming the dense-gradient capture for the step before each update.

Methods that grow by gradient (RigL, `DynamicReparam(growth="gradient")`)
rank inactive positions by the dense gradient of the step before each
update (`tf_dsr.dense_gradients.DenseGradients`). Writing it at every
step would cost a dense gradient copy per kernel and step, so this
controller arms the capture only between the batch end before a due update
and that update, and keeps one owner of the hooks per model: a model's
layers carry the hooks of one capture at a time.
"""

import tensorflow as tf

from tf_dsr.dense_gradients import DenseGradients


def retrace_train_function(model):
    """Makes Keras trace `model.train_function` again at the next step.

    The hooks live in the layers' `call`: a function traced before they
    were attached (or after they were detached) does not match them. Keras
    looks `model.train_function` up at every step.
    """
    if model is not None and getattr(model, "optimizer", None) is not None:
        model.make_train_function(force=True)


class GradientCapture:
    """The dense-gradient capture of one callback's kernels on one model.

    Args:
        owner: the callback the capture serves (its `detach_gradients()` is
            what a later owner calls to take the model's hooks over).
    """

    def __init__(self, owner):
        self._owner = owner
        self._gradients = None
        self._model = None
        self._model_state = None
        self.armed = False

    @property
    def attached(self):
        return self._gradients is not None

    def attach(self, model, model_state, kernels):
        """Puts hooks on `kernels` (once), taking them over from any other
        callback that holds the model's hooks."""
        if self._gradients is not None:
            return
        previous = model_state.gradient_user
        if previous is not None and previous is not self._owner:
            previous.detach_gradients()
        self._gradients = DenseGradients(kernels)
        self._model, self._model_state = model, model_state
        model_state.gradient_user = self._owner
        retrace_train_function(model)

    def detach(self):
        """Removes the hooks (idempotent)."""
        if self._gradients is None:
            return
        self._gradients.detach()
        self._gradients = None
        self.armed = False
        if self._model_state.gradient_user is self._owner:
            self._model_state.gradient_user = None
        retrace_train_function(self._model)

    def arm(self):
        """Captures the gradient of the following step(s)."""
        self._gradients.request()
        self.armed = True

    def release(self):
        """Stops capturing (the captured values stay)."""
        if self._gradients is not None:
            self._gradients.release()
        self.armed = False

    def captured(self):
        """Whether a gradient was captured since the last `arm()`."""
        if self._gradients is None:
            return False
        return bool(tf.convert_to_tensor(self._gradients.captured).numpy())

    def requested(self):
        """Whether the layers' hooks will write the next step's gradient
        (reads the in-graph flag that `armed` mirrors)."""
        return self.attached and self._gradients.is_requested()

    def finite(self):
        return self._gradients.finite()

    def values(self):
        """The captured gradients as tensors (in the update's graph)."""
        return [tf.convert_to_tensor(v) for v in self._gradients.variables]

    def variables(self):
        return self._gradients.variables
