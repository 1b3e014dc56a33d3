"""Shared pytest set-up and fixtures."""

import gc

import keras
import pytest
import tensorflow as tf

NUM_LOGICAL_CPUS = 4

# The files that take longest, longest first (from `--durations=0` of a full
# run; refresh the order when it changes). `--dist loadfile` hands files
# out in collection order to whichever worker runs low: dealt first, the
# long files are spread over both workers, and the many short files that
# follow even out their finishing times. Only the order changes: a file's
# tests stay together and in their order, so module fixtures build once.
LONGEST_FIRST = (
    "tests/test_keras_hub.py",
    "tests/callbacks/test_layer_family.py",
    "tests/layers/test_contract.py",
    "tests/test_readme.py",
    "tests/examples/test_examples.py",
    "tests/callbacks/test_resume.py",
    "tests/callbacks/test_rigl_callback.py",
    "tests/test_in_place.py",
    "tests/test_any_model.py",
    "tests/test_docstrings.py",
    "tests/callbacks/test_block_methods.py",
    "tests/saving/test_tflite.py",
    "tests/test_dense_gradients.py",
    "tests/saving/test_savedmodel.py",
    "tests/distribute/test_mirrored.py",
    "tests/callbacks/test_dsr.py",
    "tests/callbacks/test_switching.py",
    "tests/benchmarks/test_transformer_cost.py",
    "tests/distribute/test_multi_worker.py",
    "tests/saving/test_state.py",
)


def pytest_configure(config):
    # Distribution tests need several devices; on one CPU they are logical
    # devices, which must be declared before TensorFlow initialises. Other
    # tests are unaffected: ops default to the first device.
    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration()] * NUM_LOGICAL_CPUS
    )


def pytest_collection_modifyitems(config, items):
    rank = {path: i for i, path in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))


def pytest_collection_finish(session):
    # TensorFlow, Keras and the collected modules are ~0.5 million objects
    # that live as long as the process: moved out of the collector's reach,
    # they are not traversed again by every full collection that tracing's
    # allocations set off (the collector then does the same work on the
    # tests' own objects only).
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True)
def _fresh_keras_session():
    # Layer names and the global graph state are per session; tests that
    # compare names must not see earlier tests' layers. Skipping the
    # garbage collection keeps this at milliseconds instead of ~0.3 s.
    keras.backend.clear_session(free_memory=False)
    yield
