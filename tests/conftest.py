"""Shared test set-up: quiet TensorFlow, reset global Keras state between tests."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # pylint: disable=g-import-not-at-top
import pytest


@pytest.fixture(autouse=True)
def _reset_keras_global_state():
  yield
  keras.mixed_precision.set_global_policy("float32")
  keras.backend.clear_session()


def pytest_collection_modifyitems(config, items):
  """tf.test.TestCase.test_session is a deprecated helper, not a test."""
  del config
  items[:] = [item for item in items if item.name != "test_session"]
