"""`jaxad export` → `jaxad.export.load`: a tiny trained model's scores reproduced from the artefact alone."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from jaxad.cli import main


SETTINGS = {"backbone": "tiny_test", "backbone_weights": "random", "image_size": "(64, 64)", "batch_size": "4",
            "seg_hidden": "8", "cls_hidden": "4"}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
  """A run folder as `jaxad fit` writes it (config.json, checkpoint, validation.json) of a tiny SuperSimpleNet.

  The weights are random (right shapes, no initialiser compiled), not trained: export does not depend
  on their values, and compiling a training step would double this file's runtime (fit → predict is
  covered by test_end_to_end). Returns (workdir, uint8 test images).
  """
  import dataclasses
  import jax
  import jax.numpy as jnp
  from jaxad import config as config_lib
  from jaxad.checkpoint import Checkpointer
  from jaxad.infer import InferenceEngine
  from jaxad.run import RunConfig, build_static, validation_statistics
  from jaxad.train import loop
  from jaxad.train.state import stack_members

  workdir = tmp_path_factory.mktemp("run")
  cat = workdir / "brick"
  cat.mkdir()
  method, static, hp = build_static("supersimplenet", SETTINGS)
  hps = stack_members([hp])
  features_fn, frozen_vars = method.make_frozen(static)
  example = jax.eval_shape(features_fn, frozen_vars, jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32))
  shapes = jax.eval_shape(loop.Trainer(method, static, 8, features_fn).init_states, hps, example)
  rng = np.random.default_rng(0)
  states = jax.tree.map(lambda s: jnp.asarray(rng.normal(0.0, 0.3, s.shape) if len(s.shape) > 2 else
                                              np.abs(rng.normal(1.0, 0.5, s.shape)), s.dtype)
                        if jnp.issubdtype(s.dtype, jnp.floating) else jnp.ones(s.shape, s.dtype), shapes)
  record = {"run": config_lib.to_record(RunConfig(workdir=str(workdir))), "model": method.name,
            "category": "brick", "n_train": 8, "static": config_lib.to_record(static),
            "hparams": {k: np.asarray(v).tolist() for k, v in dataclasses.asdict(hps).items()}}
  (cat / "config.json").write_text(json.dumps(record))
  ckpt = Checkpointer(cat)
  ckpt.save(1, states, {"step": 1})
  ckpt.close()
  images = rng.integers(0, 256, (6, 64, 64, 3), dtype=np.uint8)
  val = InferenceEngine(method, static, states, (features_fn, frozen_vars)).predict_array(images)
  (cat / "validation.json").write_text(json.dumps(validation_statistics(val)))
  return workdir, images


def _engine_scores(workdir, images, dtype="float32"):
  import jax
  from jaxad.infer import InferenceEngine
  from jaxad.run import load_trained
  method, static, _, states, frozen, _ = load_trained(workdir / "brick")
  engine = InferenceEngine(method, static, jax.tree.map(lambda x: x[:1], states), frozen, dtype=dtype)
  return engine.predict_array(images, batch_size=len(images))


def test_export_round_trip_reproduces_the_scores(trained, tmp_path):
  from jaxad.export import load
  workdir, images = trained
  path = tmp_path / "model.jaxad"
  assert main(["export", "--workdir", str(workdir), "--out", str(path)]) == 0
  model = load(path)
  assert model.input_hw == (64, 64) and model.meta["method"] == "supersimplenet"
  assert model.meta["score_threshold_q99_validation"] is not None
  ref = _engine_scores(workdir, images)
  for batch in (images, images[:2]):  # the batch size is symbolic: one artefact serves any
    out = model(batch)
    n = len(batch)
    np.testing.assert_allclose(np.asarray(out["score"]), ref["score"][0, :n], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(out["anomaly_map"]), ref["anomaly_map"][0, :n], rtol=1e-5, atol=1e-6)
  assert np.ptp(ref["score"]) > 0  # the images give different scores: the comparison means something

  # Served by a process that cannot import flax or jaxad's model code.
  np.save(tmp_path / "images.npy", images)
  script = (f"import sys\nfor m in ('flax', 'optax', 'jaxad.models', 'jaxad.nn', 'jaxad.train'):\n"
            f"  sys.modules[m] = None\n"
            f"import numpy as np\nfrom jaxad.export import load\n"
            f"out = load({str(path)!r})(np.load({str(tmp_path / 'images.npy')!r}))\n"
            f"np.save({str(tmp_path / 'served.npy')!r}, np.asarray(out['score']))\n")
  done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                        env={"JAX_PLATFORMS": "cpu", "PATH": "/usr/bin:/bin"}, cwd=Path(__file__).parent.parent)
  assert done.returncode == 0, done.stderr[-2000:]
  np.testing.assert_allclose(np.load(tmp_path / "served.npy"), ref["score"][0], rtol=1e-5, atol=1e-6)


def test_bfloat16_export_and_bad_inputs(trained, tmp_path):
  from jaxad.export import load
  workdir, images = trained
  images = images[:3]
  path = tmp_path / "bf16.jaxad"
  assert main(["export", "--workdir", str(workdir), "--dtype", "bfloat16", "--out", str(path)]) == 0
  model = load(path)
  assert "bfloat16" in model.meta["param_dtypes"] and json.loads(json.dumps(model.meta))["dtype"] == "bfloat16"
  ref = _engine_scores(workdir, images, "bfloat16")
  np.testing.assert_allclose(np.asarray(model(images)["score"]), ref["score"][0], rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match="not a jaxad export"):
    load(tmp_path / "missing.jaxad")
  h, w = model.input_hw
  for bad in (images[..., :2], images.astype(np.uint16), images[0], np.zeros((1, h + 1, w, 3), np.uint8)):
    with pytest.raises(ValueError, match=rf"takes uint8 RGB images \(B, {h}, {w}, 3\)"):
      model(bad)
  assert main(["export", "--workdir", str(workdir), "--member", "3", "--out", str(tmp_path / "x.jaxad")]) == 2


def test_export_with_embedded_params_serves_the_images_alone(trained, tmp_path):
  from jaxad.export import load
  workdir, images = trained
  path = tmp_path / "embedded.jaxad"
  assert main(["export", "--workdir", str(workdir), "--embed-params", "--out", str(path)]) == 0
  model = load(path)
  assert model.embedded and model.params == [] and model.meta["params"] == "embedded"
  assert len(model.exported.in_avals) == 1  # the images
  ref = _engine_scores(workdir, images)
  out = model(images)
  np.testing.assert_allclose(np.asarray(out["score"]), ref["score"][0], rtol=1e-5, atol=1e-6)
  np.testing.assert_allclose(np.asarray(out["anomaly_map"]), ref["anomaly_map"][0], rtol=1e-5, atol=1e-6)
