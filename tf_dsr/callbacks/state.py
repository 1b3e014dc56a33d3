"""Reallocation state that must survive a restart, kept in variables."""

import keras

STATE_ATTRIBUTE = "_tf_dsr_state"


class ReparamState(keras.layers.Layer):
    """Variables of a reallocation method: threshold, last step, count.

    The callback attaches one to its model as the attribute
    `_tf_dsr_state`, so Keras weight files (`model.save_weights`,
    `.keras`, `ModelCheckpoint`, `BackupAndRestore`) save and restore it
    with the model. For `tf.train.Checkpoint`, pass it explicitly
    (`tf.train.Checkpoint(model=model, dsr=callback.state)`).
    """

    def __init__(self, initial_threshold=1e-3, **kwargs):
        super().__init__(trainable=False, **kwargs)
        self.threshold = self.add_weight(
            shape=(), name="threshold", dtype="float32", trainable=False,
            initializer=keras.initializers.Constant(initial_threshold),
        )
        self.last_step = self.add_weight(
            shape=(), name="last_step", dtype="int64", trainable=False,
            initializer="zeros",
        )
        self.num_reallocations = self.add_weight(
            shape=(), name="num_reallocations", dtype="int64",
            trainable=False, initializer="zeros",
        )
        self.built = True


def attach_state(model, initial_threshold=1e-3):
    """Returns the model's `ReparamState`, creating it if needed."""
    state = getattr(model, STATE_ATTRIBUTE, None)
    if state is None:
        strategy = getattr(model, "distribute_strategy", None)
        if strategy is not None:
            with strategy.scope():
                state = ReparamState(initial_threshold, name="tf_dsr_state")
        else:
            state = ReparamState(initial_threshold, name="tf_dsr_state")
        # The model's Keras tracker is locked once built; the state is not
        # a sublayer of the model's graph, only something its weight files
        # carry, which Keras finds by walking attributes.
        object.__setattr__(model, STATE_ATTRIBUTE, state)
    return state
