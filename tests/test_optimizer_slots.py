"""Optimizer slots: found for every built-in Keras optimizer, reset to the
value a fresh weight has, and never silently skipped."""

import keras
import numpy as np
import pytest
import tensorflow as tf

import tf_dsr
from tf_dsr import optimizer_slots

# name -> (factory, slot name suffixes the kernel must have reset). The
# suffixes come from Keras' public naming `{variable path}_{slot name}`, an
# oracle independent of the private attributes optimizer_slots reads.
OPTIMIZERS = {
    "SGD": (lambda: keras.optimizers.SGD(0.1), ()),
    "SGD momentum": (lambda: keras.optimizers.SGD(0.1, momentum=0.9), ("momentum",)),
    "Adam": (lambda: keras.optimizers.Adam(), ("momentum", "velocity")),
    "Adam amsgrad": (
        lambda: keras.optimizers.Adam(amsgrad=True), ("momentum", "velocity", "velocity_hat"),
    ),
    "AdamW": (lambda: keras.optimizers.AdamW(), ("momentum", "velocity")),
    "Nadam": (lambda: keras.optimizers.Nadam(), ("momentum", "velocity")),
    "Adamax": (lambda: keras.optimizers.Adamax(), ("momentum", "norm")),
    "RMSprop": (lambda: keras.optimizers.RMSprop(), ("velocity",)),
    "RMSprop momentum centered": (
        lambda: keras.optimizers.RMSprop(momentum=0.9, centered=True),
        ("velocity", "momentum", "average_gradient"),
    ),
    "Adagrad": (
        lambda: keras.optimizers.Adagrad(initial_accumulator_value=0.3), ("accumulator",),
    ),
    "Adadelta": (
        lambda: keras.optimizers.Adadelta(),
        ("accumulated_grad", "accumulated_delta_var"),
    ),
    "Adafactor": (lambda: keras.optimizers.Adafactor(), ()),
    "Lion": (lambda: keras.optimizers.Lion(), ("momentum",)),
    "Lamb": (lambda: keras.optimizers.Lamb(), ("momentum", "velocity")),
    "Ftrl": (
        lambda: keras.optimizers.Ftrl(initial_accumulator_value=0.2), ("accumulator", "linear"),
    ),
    "Muon": (lambda: keras.optimizers.Muon(), ("momentum",)),
    "ScheduleFreeAdamW": (lambda: keras.optimizers.ScheduleFreeAdamW(), ("momentum", "velocity")),
}


def _model():
    return keras.Sequential([
        keras.Input((6,)),
        tf_dsr.SparseDense(8, sparsity=0.5, seed=1),
        tf_dsr.SparseDense(3, sparsity=0.5, seed=2),
    ])


def _named_slots(optimizer, kernel):
    """The optimizer's variables named after `kernel` and shaped like it."""
    prefix = kernel.path.replace("/", "_") + "_"
    return {
        v.name[len(prefix):]: v for v in optimizer.variables
        if v.name.startswith(prefix) and tuple(v.shape) == tuple(kernel.shape)
    }


def _built(name, loss_scale):
    make, suffixes = OPTIMIZERS[name]
    model = _model()
    optimizer = make()
    if loss_scale:
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    optimizer.build(model.trainable_variables)
    return model, optimizer, suffixes


def test_every_builtin_optimizer_is_covered():
    # A Keras upgrade that adds an optimizer makes this fail, so that its
    # slots are studied, not left to a warning at training time.
    builtins = {
        name for name in dir(keras.optimizers)
        if isinstance(getattr(keras.optimizers, name), type)
        and issubclass(getattr(keras.optimizers, name), keras.optimizers.Optimizer)
    }
    wrappers = {"Optimizer", "LossScaleOptimizer", "MultiOptimizer"}
    assert builtins - wrappers == set(optimizer_slots.supported_optimizers())
    assert {name.split()[0] for name in OPTIMIZERS} == set(optimizer_slots.supported_optimizers())


@pytest.mark.parametrize("loss_scale", [False, True], ids=["plain", "loss_scale"])
@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_slots_are_found_and_reset_to_a_fresh_weights_state(name, loss_scale):
    model, optimizer, suffixes = _built(name, loss_scale)
    inner = optimizer.inner_optimizer if loss_scale else optimizer
    rng = np.random.default_rng(0)
    for layer in model.layers:
        kernel, mask = layer.kernel_variable, layer.mask.numpy()
        named = _named_slots(inner, kernel)
        fresh = {suffix: named[suffix].numpy().copy() for suffix in suffixes}

        slots = optimizer_slots.kernel_slots(optimizer, kernel)
        assert sorted(id(s.variable) for s in slots) == sorted(id(named[s]) for s in suffixes)

        # Stale state everywhere, then the reset.
        stale = {}
        for suffix in suffixes:
            stale[suffix] = rng.uniform(1.0, 2.0, kernel.shape).astype("float32")
            named[suffix].assign(stale[suffix])
        for slot in slots:
            slot.reset_inactive(tf.constant(mask))
        for suffix in suffixes:
            value = named[suffix].numpy()
            np.testing.assert_array_equal(value[mask == 0], fresh[suffix][mask == 0])
            np.testing.assert_array_equal(value[mask == 1], stale[suffix][mask == 1])


def test_accumulators_restart_from_their_initial_value_not_zero():
    for name, initial in (("Adagrad", 0.3), ("Ftrl", 0.2)):
        model, optimizer, _ = _built(name, loss_scale=False)
        kernel = model.layers[0].kernel_variable
        accumulator = _named_slots(optimizer, kernel)["accumulator"]
        accumulator.assign(tf.fill(kernel.shape, 5.0))
        for slot in optimizer_slots.kernel_slots(optimizer, kernel):
            slot.reset_inactive(model.layers[0].mask.value)
        inactive = model.layers[0].mask.numpy() == 0
        np.testing.assert_allclose(accumulator.numpy()[inactive], initial)


def test_reset_replaces_nan_state():
    model, optimizer, _ = _built("Adam", loss_scale=False)
    kernel, mask = model.layers[0].kernel_variable, model.layers[0].mask.numpy()
    momentum = _named_slots(optimizer, kernel)["momentum"]
    momentum.assign(tf.fill(kernel.shape, float("nan")))
    for slot in optimizer_slots.kernel_slots(optimizer, kernel):
        slot.reset_inactive(tf.constant(mask))
    assert np.all(momentum.numpy()[mask == 0] == 0.0)


def test_multi_optimizer_resets_the_slots_of_the_sub_optimizer_owning_the_kernel():
    model = _model()
    first, second = model.layers
    adam, sgd = keras.optimizers.Adam(), keras.optimizers.SGD(0.1, momentum=0.9)
    optimizer_map = keras.optimizers.OptimizerMap(default_optimizer=sgd)
    optimizer_map[first.kernel_variable.path] = adam
    optimizer = keras.optimizers.MultiOptimizer(optimizer_map)
    optimizer.build(model.trainable_variables)

    first_slots = optimizer_slots.kernel_slots(optimizer, first.kernel_variable)
    second_slots = optimizer_slots.kernel_slots(optimizer, second.kernel_variable)
    named_first = _named_slots(adam, first.kernel_variable)
    named_second = _named_slots(sgd, second.kernel_variable)
    assert sorted(id(s.variable) for s in first_slots) == sorted(
        id(named_first[s]) for s in ("momentum", "velocity"))
    assert [id(s.variable) for s in second_slots] == [id(named_second["momentum"])]


def test_unbuilt_or_absent_optimizer_has_no_slots():
    model = _model()
    assert optimizer_slots.kernel_slots(None, model.layers[0].kernel_variable) == []
    assert optimizer_slots.kernel_slots(keras.optimizers.Adam(), model.layers[0].kernel_variable) == []


def test_frozen_kernel_has_no_slots():
    model = _model()
    optimizer = keras.optimizers.Adam()
    optimizer.build([model.layers[1].kernel_variable])
    assert optimizer_slots.kernel_slots(optimizer, model.layers[0].kernel_variable) == []


def test_unsupported_optimizer_is_named_in_a_warning(monkeypatch):
    class MyAdam(keras.optimizers.Adam):
        pass

    monkeypatch.setattr(optimizer_slots, "_warned", set())
    model = _model()
    optimizer = MyAdam()
    optimizer.build(model.trainable_variables)
    with pytest.warns(UserWarning, match="MyAdam is not one whose state tf_dsr resets"):
        assert optimizer_slots.kernel_slots(optimizer, model.layers[0].kernel_variable) == []


def test_renamed_attribute_raises_instead_of_resetting_nothing(monkeypatch):
    model = _model()
    optimizer = keras.optimizers.Adam()
    optimizer.build(model.trainable_variables)
    monkeypatch.setitem(
        optimizer_slots._SLOT_ATTRIBUTES, "Adam", lambda o: [("_first_moments", 0.0)]
    )
    with pytest.raises(RuntimeError, match="Adam has no attribute `_first_moments`"):
        optimizer_slots.kernel_slots(optimizer, model.layers[0].kernel_variable)


def test_renamed_index_method_raises(monkeypatch):
    model = _model()
    optimizer = keras.optimizers.SGD(0.1, momentum=0.9)
    optimizer.build(model.trainable_variables)
    owner = next(c for c in type(optimizer).__mro__ if "_get_variable_index" in vars(c))
    monkeypatch.delattr(owner, "_get_variable_index")
    with pytest.raises(RuntimeError, match="SGD has no `_get_variable_index` method"):
        optimizer_slots.kernel_slots(optimizer, model.layers[0].kernel_variable)


def test_callback_raises_at_train_start_when_slots_cannot_be_found(monkeypatch):
    model = _model()
    model.compile(keras.optimizers.Adam(), "mse")
    monkeypatch.setitem(
        optimizer_slots._SLOT_ATTRIBUTES, "Adam", lambda o: [("_first_moments", 0.0)]
    )
    weights = [w.copy() for w in model.get_weights()]
    x = np.zeros((8, 6), "float32")
    y = np.zeros((8, 3), "float32")
    with pytest.raises(RuntimeError, match="_first_moments"):
        model.fit(x, y, verbose=0, callbacks=[tf_dsr.DynamicReparam(2, period=1, seed=0)])
    assert int(model.optimizer.iterations.numpy()) == 0
    for before, after in zip(weights, model.get_weights()):
        np.testing.assert_array_equal(after, before)
