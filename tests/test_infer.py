"""Inference engine: one compilation per stream, device pre-processing, bfloat16 path, map post-processing,
input checks, lazy batches."""

import numpy as np
import pytest

import jax
import jax.numpy as jnp

from jaxad.data.transforms import normalize_image, resize_image
from jaxad.evaluate.evaluator import make_predict_fn
from jaxad.infer import InferenceEngine
from jaxad.infer.preprocess import preprocess_images
from jaxad.models import get_method
from jaxad.models.supersimplenet import config as cfg
from jaxad.train import loop
from jaxad.train.state import stack_members

HW = (48, 48)

_COMPILES: list[str] = []


def _on_event(event: str, duration: float, **kwargs) -> None:
  if event == "/jax/core/compile/backend_compile_duration":
    _COMPILES.append(kwargs.get("fun_name", "?"))


jax.monitoring.register_event_duration_secs_listener(_on_event)


def random_states(method, static, features_fn, frozen_vars, members: int, seed: int = 0):
  """Stacked TrainStates with random values of the right shapes (no init compilation: fast on CPU)."""
  example = jax.eval_shape(features_fn, frozen_vars, jax.ShapeDtypeStruct((1, *static.image_size, 3), jnp.float32))
  trainer = loop.Trainer(method, static, 8, features_fn)
  shapes = jax.eval_shape(trainer.init_states, stack_members([cfg.Hparams(seed=i) for i in range(members)]), example)
  rng = np.random.default_rng(seed)

  def fill(s):
    if not jnp.issubdtype(s.dtype, jnp.floating):
      return jnp.ones(s.shape, s.dtype)
    fan_in = int(np.prod(s.shape[1:-1])) if len(s.shape) > 2 else 1
    return jnp.asarray(np.abs(rng.normal(1.0, 0.3, s.shape)) if len(s.shape) == 2 else
                       rng.normal(0.0, fan_in ** -0.5, s.shape), s.dtype)

  return jax.tree.map(fill, shapes)


@pytest.fixture(scope="module")
def tiny():
  """(method, static, states_M with M = 2, (features_fn, frozen_vars)) with random weights."""
  method = get_method("supersimplenet")
  static = cfg.resolve(cfg.Static(backbone="tiny_test", backbone_weights="random", image_size=HW, batch_size=4,
                                  seg_hidden=16, cls_hidden=8))
  features_fn, frozen_vars = method.make_frozen(static)
  return method, static, random_states(method, static, features_fn, frozen_vars, 2), (features_fn, frozen_vars)


def _images(n, hw=(64, 80), seed=0):
  return np.random.default_rng(seed).integers(0, 256, (n, *hw, 3), dtype=np.uint8)


def test_stream_of_same_shaped_batches_compiles_once(tiny):
  method, static, states, frozen = tiny
  engine = InferenceEngine(method, static, states, frozen)
  batches = [_images(3, seed=i) for i in range(6)]
  _COMPILES.clear()
  outs = list(engine.stream(batches))
  assert len(outs) == 6 and outs[0]["anomaly_map"].shape == (2, 3, *HW)
  assert len(_COMPILES) == 1, _COMPILES  # the predict program only: no stray eager ops, no recompilation
  assert engine.compiled_count() == 1
  # A new batch shape (or dtype) compiles once more; the old one is still cached.
  list(engine.stream([_images(3, hw=(50, 50), seed=i) for i in range(5)]))
  list(engine.stream(batches[:2]))
  assert len(_COMPILES) == 2 and engine.compiled_count() == 2


def test_stream_matches_the_evaluator_and_predict_array_pads(tiny):
  method, static, states, (features_fn, frozen_vars) = tiny
  engine = InferenceEngine(method, static, states, (features_fn, frozen_vars))
  images = _images(7, hw=HW)  # no resize: the host pipeline and the device give the same input
  prep = method.preprocessing(static)
  host = np.stack([normalize_image(resize_image(im, HW, prep)) for im in images])
  ref = jax.device_get(make_predict_fn(method, static, features_fn, HW)(states, frozen_vars, jnp.asarray(host)))
  got = engine.predict_array(images, batch_size=3)  # 3 + 3 + 1 (padded)
  assert engine.compiled_count() == 1
  for k in ("score", "map_score", "anomaly_map"):
    assert got[k].shape == ref[k].shape
    np.testing.assert_allclose(got[k], ref[k], rtol=1e-4, atol=1e-4 * np.abs(ref[k]).max())
  # Prepared float inputs skip the device pre-processing and give the same result.
  again = engine.predict_array(host, batch_size=4)
  np.testing.assert_allclose(again["score"], ref["score"], rtol=1e-5, atol=1e-6)


def test_constant_params_give_the_same_outputs_with_one_argument(tiny):
  method, static, states, frozen = tiny
  images = _images(5, hw=HW)
  engine = InferenceEngine(method, static, states, frozen)
  # the engine keeps what predict reads: no optimiser state
  assert engine.params[0].opt_state is None and len(jax.tree.leaves(engine.params)) < len(
      jax.tree.leaves((states, frozen[1])))
  baked = InferenceEngine(method, static, states, frozen, constant_params=True)
  ref, got = engine.predict_array(images, batch_size=5), baked.predict_array(images, batch_size=5)
  for k in ref:
    np.testing.assert_allclose(got[k], ref[k], rtol=1e-5, atol=1e-6 * np.abs(ref[k]).max())
  assert baked.compiled_count() == 1
  assert len(jax.tree.leaves(baked.lower(jnp.asarray(images)).args_info)) == 1  # the images only


@pytest.mark.parametrize("resize", ["cv2-bilinear", "pil-bilinear", "torch-bilinear-antialias", "torch-bilinear"])
def test_device_preprocessing_matches_the_host_pipeline(resize):
  from jaxad.data.transforms import PreprocessConfig
  config = PreprocessConfig(image_resize=resize, resize_shorter=52 if resize == "pil-bilinear" else None)
  images = _images(2, hw=(70, 90))
  host = np.stack([normalize_image(resize_image(im, (48, 40), config)) for im in images])
  dev = np.asarray(jax.jit(lambda x: preprocess_images(x, (48, 40), config))(images))
  gray = 1.0 / 255.0 / 0.225  # one gray level in normalised units (largest over the channels)
  tol = gray * 1.01 if resize == "cv2-bilinear" else 1e-5
  assert np.abs(dev - host).max() <= tol
  # Only float summation order differs (cv2's uint8 rounding can then flip); PIL is reproduced bit for bit.
  assert np.mean(np.abs(dev - host) > gray / 2) < (0.0 if resize == "pil-bilinear" else 2e-3) + 1e-12


# Up- and downscaling, a 16× reduction, one axis unchanged, and size pairs for which Pillow 13 runs
# its vertical pass first (300×200 → 256², 69×82 → 10×58).
@pytest.mark.parametrize("in_hw, out_hw", [((64, 64), (73, 73)), ((40, 90), (64, 64)), ((300, 200), (256, 256)),
                                           ((69, 82), (10, 58)), ((1024, 1024), (64, 64)), ((37, 41), (256, 41)),
                                           ((5, 7), (3, 2))])
def test_pil_bilinear_on_device_equals_pillow(in_hw, out_hw):
  from PIL import Image
  from jaxad.ops.pil_resize import pass_order, pil_bilinear_resize, pil_bilinear_weights
  image = np.random.default_rng(sum(in_hw)).integers(0, 256, (*in_hw, 3), dtype=np.uint8)
  want = np.asarray(Image.fromarray(image).resize(out_hw[::-1], Image.Resampling.BILINEAR))
  got = pil_bilinear_resize(jnp.asarray(image[None]), pil_bilinear_weights(in_hw[0], out_hw[0]),
                            pil_bilinear_weights(in_hw[1], out_hw[1]), pass_order(in_hw, out_hw))
  np.testing.assert_array_equal(np.asarray(got)[0], want)


def test_bfloat16_path_stays_close_to_float32(tiny):
  method, static, states, frozen = tiny
  images = _images(12, hw=HW)
  f32 = InferenceEngine(method, static, states, frozen).predict_array(images, batch_size=4)
  bf16_engine = InferenceEngine(method, static, states, frozen, dtype="bfloat16")
  assert all(x.dtype == jnp.bfloat16 for x in jax.tree.leaves(bf16_engine.params)
             if jnp.issubdtype(x.dtype, jnp.floating))
  bf16 = bf16_engine.predict_array(images, batch_size=4)
  assert bf16["anomaly_map"].dtype == np.float32 and bf16["score"].dtype == np.float32
  for k in ("score", "anomaly_map"):
    scale = np.abs(f32[k]).max()
    err = np.abs(bf16[k] - f32[k]).max() / scale
    assert 1e-5 < err < 0.05, (k, err)  # really computed in bfloat16, and still close
  # Rankings barely move: Spearman correlation of the image scores per member.
  for m in range(2):
    ranks = [np.argsort(np.argsort(p["score"][m])) for p in (f32, bf16)]
    assert np.corrcoef(*ranks)[0, 1] > 0.9


def test_maps_at_input_size_and_normalised_on_device(tiny):
  method, static, states, frozen = tiny
  images = _images(2, hw=(60, 72))
  base = InferenceEngine(method, static, states, frozen).predict_array(images)
  lo, hi = np.array([0.5, -1.0]), np.array([2.0, 3.0])
  engine = InferenceEngine(method, static, states, frozen, map_size="input", map_range=(lo, hi))
  out = engine.predict_array(images)
  assert out["anomaly_map"].shape == (2, 2, 60, 72)
  from jaxad.ops.resize import resize
  expected = (resize(base["anomaly_map"], (60, 72), channels_last=False) - lo[:, None, None, None]) / (
      hi - lo)[:, None, None, None]
  np.testing.assert_allclose(out["anomaly_map"], expected, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(out["score"], base["score"], rtol=1e-6)


def test_bad_settings_are_one_line_errors(tiny):
  from jaxad.errors import ConfigError, DataError
  method, static, states, frozen = tiny
  with pytest.raises(ConfigError, match="dtype"):
    InferenceEngine(method, static, states, frozen, dtype="float16")
  engine = InferenceEngine(method, static, states, frozen)
  with pytest.raises(DataError, match="prepared float images"):
    engine(np.zeros((1, 30, 30, 3), np.float32))


def test_images_of_another_dtype_channel_count_or_rank_are_named(tiny):
  from jaxad.errors import DataError
  method, static, states, frozen = tiny
  engine = InferenceEngine(method, static, states, frozen)
  rgb = _images(2, hw=(40, 40))
  cases = [(rgb.astype(np.uint16) * 257, r"got uint16: convert them to uint8 RGB \(16-bit: keep the high byte"),
           (np.concatenate([rgb, rgb[..., :1]], -1), r"\(B, H, W, 3\) RGB batch, got shape \(2, 40, 40, 4\); RGBA"),
           (np.zeros((2, *HW, 4), np.float32), "got shape .*; RGBA images: drop the alpha channel"),
           (rgb[..., :1], r"got shape \(2, 40, 40, 1\); gray images: repeat the channel"),
           (rgb[..., 0], r"got shape \(2, 40, 40\); gray images"),
           (rgb[0], r"got shape \(40, 40, 3\); one image needs a batch axis"),
           (rgb.astype(np.int32), "got int32: convert them to uint8 RGB"),
           (rgb > 128, "got bool")]
  for images, match in cases:
    with pytest.raises(DataError, match=match):
      engine(images)
  # What the docstring promises: uint8 RGB of any size, and floating network inputs of the model's size.
  assert engine(rgb)["score"].shape == (2, 2)
  assert engine(np.zeros((2, *HW, 3), np.float32))["score"].shape == (2, 2)


def test_predict_batches_pulls_chunks_lazily_and_drops_padding(tiny):
  method, static, states, frozen = tiny
  engine = InferenceEngine(method, static, states, frozen)
  images = _images(7, hw=HW)
  pulled = []

  def chunks():
    for start in range(0, 7, 3):
      pulled.append(start)
      yield images[start:start + 3]

  outs = []
  for out in engine.predict_batches(chunks(), 3):
    outs.append(out)
    assert len(pulled) <= len(outs) + 2  # computing and transferred ahead, not all of them
  assert [o["score"].shape for o in outs] == [(2, 3), (2, 3), (2, 1)]
  ref = engine.predict_array(images, batch_size=3)
  for k in ref:
    np.testing.assert_array_equal(np.concatenate([o[k] for o in outs], axis=1), ref[k])
  assert engine.compiled_count() == 1
