"""Persistence: method state, `.keras` loading, SavedModel and TFLite export.

`state` holds each method's variables, saved with the model's weights;
`record` notes which layers are sparse so that `keras_file.load_model`
can rebuild them; `savedmodel` and `tflite` write inference artifacts
without tf_dsr inside.
"""

from tf_dsr.saving.keras_file import load_model
from tf_dsr.saving.savedmodel import export
from tf_dsr.saving.state import MethodState
from tf_dsr.saving.state import ModelState
from tf_dsr.saving.tflite import tflite_ops
from tf_dsr.saving.tflite import to_tflite
