"""Serving and training from arrays need neither grain nor tensorflow-datasets (only reading a dataset does).

The GPU machines used for benchmarks have neither; `jaxad.infer`, `jaxad.export`, `jaxad.run`
(with splits passed in) and the methods must import there.
"""

import subprocess
import sys

CODE = """
import sys
sys.modules["grain"] = None  # an import of either now raises ImportError
sys.modules["tensorflow_datasets"] = None
import jaxad.infer, jaxad.export, jaxad.run, jaxad.evaluate.evaluator, jaxad.train.loop
from jaxad.models import get_method
for name in ("supersimplenet", "simplenet", "efficient_ad"):
  method = get_method(name)
  method.preprocessing(method.resolve(method.static_cls()))
"""


def test_inference_and_training_modules_import_without_grain_or_tfds():
  result = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
