"""Shared pytest set-up and fixtures."""

import keras
import pytest
import tensorflow as tf

NUM_LOGICAL_CPUS = 4


def pytest_configure(config):
    # Distribution tests need several devices; on one CPU they are logical
    # devices, which must be declared before TensorFlow initialises. Other
    # tests are unaffected: ops default to the first device.
    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration()] * NUM_LOGICAL_CPUS
    )


@pytest.fixture(autouse=True)
def _fresh_keras_session():
    # Layer names and the global graph state are per session; tests that
    # compare names must not see earlier tests' layers. Skipping the
    # garbage collection keeps this at milliseconds instead of ~0.3 s.
    keras.backend.clear_session(free_memory=False)
    yield
