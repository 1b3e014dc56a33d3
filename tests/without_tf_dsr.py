"""Scripts for a Python process in which `import tf_dsr` fails: what an
exported SavedModel promises (it loads and serves with TensorFlow alone).

`loader(body)` is a script that blocks tf_dsr, runs `body` once per model
name given on its command line (`root`, `name`, `result` in scope) and
prints `result` as JSON, with the tf_dsr modules that got imported.
"""

_PREAMBLE = r"""
import json, sys
sys.modules["tf_dsr"] = None  # `import tf_dsr` now raises ImportError
try:
    import tf_dsr
    blocked = False
except ImportError:
    blocked = True
import numpy as np
import tensorflow as tf

root = sys.argv[1]
result = {"blocked": blocked, "models": {}}
for name in sys.argv[2:]:
    loaded = tf.saved_model.load(f"{root}/{name}")
"""

_EPILOGUE = r"""
result["tf_dsr_modules"] = sorted(
    m for m, module in sys.modules.items() if m.startswith("tf_dsr") and module is not None)
print(json.dumps(result))
"""


def loader(body):
    """The script: `body` is indented one level (inside the loop)."""
    return _PREAMBLE + body.strip("\n") + "\n" + _EPILOGUE
