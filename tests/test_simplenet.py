"""SimpleNet: loss, noise placement, BatchNorm rows, scores, official PRO and a tiny fit through the engine.

The patch aggregation is checked against a literal slow version in tests/test_features.py and
the blur against scipy in tests/test_ops.py; not repeated here.
"""

import dataclasses
import functools
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage
from skimage import measure

from jaxad import metrics
from jaxad.errors import ConfigError
from jaxad.evaluate import evaluator
from jaxad.models import get_method
from jaxad.models.simplenet import config as cfg
from jaxad.models.simplenet import protocol, steps
from jaxad.models.simplenet.anomaly import gaussian_noise
from jaxad.models.simplenet.loss import truncated_l1
from jaxad.models.simplenet.pro import simplenet_pro
from jaxad.ops.resize import resize
from jaxad.train import loop
from jaxad.train.state import stack_members

from fake_datasets import tiny_frozen

METHOD = get_method("simplenet")
STATIC = cfg.resolve(cfg.Static(image_size=(32, 32), batch_size=4, meta_epochs=2, gan_epochs=2, dsc_hidden=8))
# Compiled once per test session: eager op-by-op dispatch is slow on the shared CPU.
init = jax.jit(functools.partial(METHOD.init, STATIC), static_argnums=3)
train_step = jax.jit(lambda state, feats, key, hp: METHOD.train_step(STATIC, state, feats, {}, key, hp, 2))
forward_train = jax.jit(lambda variables, feats, key: steps.forward_train(STATIC, variables, feats, key, 0.1))


@pytest.fixture(scope="module")
def frozen():
  return tiny_frozen(grid=8)


@pytest.fixture(scope="module")
def state(frozen, train_data):
  feats = frozen[0](frozen[1], jnp.asarray(train_data.image[:4]))
  return init(jax.random.key(0), cfg.Hparams(), feats, 2), feats


def test_loss_hand_case():
  true = jnp.array([0.5, 0.9, 0.2, -0.1])
  fake = jnp.array([-0.5, -0.9, 0.0, 0.3])
  loss, parts = truncated_l1(true, fake, 0.5)
  assert parts["true_loss"] == pytest.approx((0 + 0 + 0.3 + 0.6) / 4)
  assert parts["fake_loss"] == pytest.approx((0 + 0 + 0.5 + 0.8) / 4)
  assert (float(parts["p_true"]), float(parts["p_fake"])) == (0.5, 0.25)  # D ≥ th counts; D = −th does not
  assert loss == pytest.approx(0.225 + 0.325)
  g_true, g_fake = jax.grad(lambda t, f: truncated_l1(t, f, 0.5)[0], argnums=(0, 1))(true, fake)
  np.testing.assert_allclose(g_true, [0, 0, -0.25, -0.25])  # normal patches pushed up, only inside the margin
  np.testing.assert_allclose(g_fake, [0, 0, 0.25, 0.25])


def test_noise_only_after_adaptor_and_batchnorm_over_all_rows(state):
  state0, feats = state
  variables = {"params": state0.params, "batch_stats": state0.batch_stats}
  key = jax.random.key(7)
  out, new_stats = forward_train(variables, feats, key)
  fc = state0.params["adaptor"]["fc"]
  np.testing.assert_allclose(out["adapted"], feats @ fc["kernel"] + fc["bias"], rtol=1e-5, atol=1e-6)
  noise = gaussian_noise(key, out["adapted"], 0.1)
  np.testing.assert_allclose(out["fake"] - out["adapted"], noise, rtol=0, atol=2e-7)  # float rounding only
  noised_before = (feats + noise) @ fc["kernel"] + fc["bias"]  # what noise *before* the adaptor would give
  assert float(jnp.abs(out["fake"] - noised_before).max()) > 1e-2
  # The discriminator's BatchNorm normalises over all 2·B·H·W rows of cat(true, fake).
  d = state0.params["discriminator"]
  rows = jnp.concatenate([out["adapted"], out["fake"]]).reshape(-1, feats.shape[-1])
  h = rows @ d["fc"]["kernel"] + d["fc"]["bias"]
  mean, var = h.mean(0), h.var(0)
  h = (h - mean) / jnp.sqrt(var + 1e-5) * d["bn"]["scale"] + d["bn"]["bias"]
  scores = (jax.nn.leaky_relu(h, 0.2) @ d["tail"]["kernel"]).reshape(2, *feats.shape[:3])
  np.testing.assert_allclose(out["true_scores"], scores[0], rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(out["fake_scores"], scores[1], rtol=1e-4, atol=1e-5)
  n = rows.shape[0]
  np.testing.assert_allclose(new_stats["discriminator"]["bn"]["var"], 0.9 + 0.1 * var * n / (n - 1), rtol=1e-5)
  # train_step optimises exactly this forward pass.
  _, metrics = train_step(state0, feats, key, cfg.Hparams(noise_std=0.1))
  expected, _ = truncated_l1(out["true_scores"], out["fake_scores"], 0.5)
  assert float(metrics["loss"]) == pytest.approx(float(expected), rel=1e-6)


def test_no_gradient_reaches_the_backbone(frozen, train_data, state):
  features_fn, proj = frozen
  state0, _ = state

  def loss_of_backbone(p):
    f = jax.lax.stop_gradient(features_fn(p, jnp.asarray(train_data.image[:4])))
    _, metrics = METHOD.train_step(STATIC, state0, f, {}, jax.random.key(0), cfg.Hparams(), 2)
    return metrics["loss"]

  assert float(jnp.abs(jax.jit(jax.grad(loss_of_backbone))(proj)).max()) == 0.0


def test_score_is_patch_max_before_upsampling_and_map_is_blurred_upsample(state):
  state0, feats = state
  feats = feats.at[1, 2, 5].add(3.0)  # One odd patch: a sharp peak that the blur flattens.
  out = jax.jit(lambda s, f: METHOD.predict(STATIC, s, f, (32, 32)))(state0, feats)
  patch = np.asarray(jax.jit(functools.partial(steps.patch_scores, STATIC))(state0, feats))
  np.testing.assert_array_equal(out["score"], patch.max(axis=(1, 2)))
  up = np.asarray(resize(patch.astype(np.float64), (32, 32), "bilinear", align_corners=False, channels_last=False))
  expected = np.stack([scipy.ndimage.gaussian_filter(m, sigma=4.0, truncate=4.0, mode="reflect") for m in up])
  np.testing.assert_allclose(out["anomaly_map"], expected, rtol=1e-4, atol=1e-5)
  np.testing.assert_allclose(out["map_score"], expected.max(axis=(1, 2)), rtol=1e-4, atol=1e-5)
  assert float(out["map_score"][1]) < float(out["score"][1])


def test_fit_through_the_engine(tmp_path, frozen, train_data):
  """160-pass bookkeeping, and the loss falls on a task made easy (large noise, fast learning rates)."""
  hps = stack_members([cfg.Hparams(seed=1, noise_std=0.5, lr_dsc=1e-2, lr_adaptor=1e-3)])
  static = dataclasses.replace(STATIC, meta_epochs=4)
  states = loop.fit(METHOD, static, hps, train_data, tmp_path / "fit", frozen=frozen, chunk=4, ckpt_every=16,
                    progress=False)
  assert METHOD.total_steps(static, 8) == 4 * 2 * 2 == int(states.step[0])
  logged = [json.loads(line) for line in (tmp_path / "fit" / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in logged] == [4, 8, 12, 16]
  assert logged[-1]["loss"][0] < 0.75 * logged[0]["loss"][0]


def test_an_epochs_last_smaller_batch_trains_as_officially(tmp_path, frozen):
  """10 images at batch 4: steps of 4, 4 and 2 images per epoch (the official DataLoader keeps the last
  batch), each epoch a permutation; resuming across the smaller batch equals an uninterrupted run."""
  rng = np.random.default_rng(4)
  ten = loop.SplitData(image=rng.normal(size=(10, 32, 32, 3)).astype(np.float32),
                       mask=np.zeros((10, 32, 32), np.float32), label=np.zeros(10, np.int32),
                       is_segmented=np.ones(10, bool))
  static = dataclasses.replace(STATIC, meta_epochs=2, gan_epochs=1)
  assert METHOD.steps_per_epoch(static, 10) == 3 and METHOD.total_steps(static, 10) == 6
  assert METHOD.steps_per_epoch(dataclasses.replace(static, drop_last=True), 10) == 2
  sampler = loop.uniform_sampler(10, 0)
  batches = [loop.batch_indices(sampler, s, 4, 3) for s in range(6)]
  assert [len(b) for b in batches] == [4, 4, 2] * 2
  assert [loop.batch_length(s, 4, 3, 10) for s in range(6)] == [4, 4, 2] * 2
  assert sorted(np.concatenate(batches[3:]).tolist()) == list(range(10))
  hps = stack_members([cfg.Hparams(seed=5)])
  fit = functools.partial(loop.fit, METHOD, static, hps, ten, frozen=frozen, chunk=4, ckpt_every=1, progress=False)
  whole = fit(tmp_path / "whole")
  logged = [json.loads(line) for line in (tmp_path / "whole" / "metrics.jsonl").read_text().splitlines()]
  assert [r["step"] for r in logged] == [2, 3, 5, 6]  # a compiled call stops before each smaller batch
  fit(tmp_path / "resumed", max_steps=3)
  resumed = fit(tmp_path / "resumed")
  assert int(whole.step[0]) == int(resumed.step[0]) == 6
  jax.tree.map(lambda a, b: np.testing.assert_array_equal(np.asarray(a), np.asarray(b)), whole.params, resumed.params)


def test_selection_on_test_keeps_best_meta_epoch(tmp_path, frozen, train_data):
  """The official rule on a run whose test labels are random: selected = argmax of the recorded curve."""
  rng = np.random.default_rng(2)
  test = dataclasses.replace(train_data, label=np.array([0, 1] * 4, np.int32),
                             mask=(rng.random((8, 32, 32)) > 0.9).astype(np.float32))
  static = dataclasses.replace(STATIC, meta_epochs=3, gan_epochs=1)
  hps = stack_members([cfg.Hparams(seed=3)])
  predict_fn = evaluator.make_predict_fn(METHOD, static, frozen[0], (32, 32))
  best, history = protocol.fit_selecting_on_test(METHOD, static, hps, train_data, test, frozen, predict_fn,
                                                 log=lambda *_: None)
  curve = [(h["image_auroc"][0], h["pixel_auroc"][0]) for h in history]
  winner = max(range(3), key=lambda i: (curve[i][0], curve[i][1], -i))
  assert int(best.step[0]) == (winner + 1) * 2
  preds = evaluator.predict_split(predict_fn, best, frozen[1], test.image)
  assert metrics.image_auroc(preds["score"][0], test.label) == pytest.approx(curve[winner][0])


def test_config_resolution_and_protocol_flags():
  s = cfg.resolve(cfg.Static(image_size=(112,)))
  assert (s.image_size, s.resize_shorter) == ((112, 112), 128)
  assert cfg.resolve(cfg.Static()).resize_shorter == 329
  assert METHOD.preprocessing(s).resize_shorter == 128
  with pytest.raises(ConfigError, match="protocol"):
    cfg.resolve(cfg.Static(select_on_test=True))
  rest, flags = protocol.split_flags({"select_on_test": "true", "noise_std": "0.02"})
  assert rest == {"noise_std": "0.02"} and flags == {"select_on_test": True, "official_pro": False}
  assert protocol.is_better(0.9, 0.5, (0.9, 0.4)) and not protocol.is_better(0.9, 0.4, (0.9, 0.4))


def _official_pro_literal(masks, amaps, num_th=200):
  """DonaldRR/SimpleNet metrics.compute_pro, restated with scipy/skimage instead of cv2/pandas."""
  binary = np.zeros_like(amaps, dtype=bool)
  low, high = amaps.min(), amaps.max()
  fprs, pros = [], []
  for th in np.arange(low, high, (high - low) / num_th):
    binary[amaps <= th] = 0
    binary[amaps > th] = 1
    overlaps = []
    for b, mask in zip(binary, masks):
      dilated = scipy.ndimage.binary_dilation(b, np.ones((5, 5), bool))
      for region in measure.regionprops(measure.label(mask)):
        overlaps.append(dilated[region.coords[:, 0], region.coords[:, 1]].sum() / region.area)
    inverse = 1 - masks
    fprs.append(np.logical_and(inverse, binary).sum() / inverse.sum())
    pros.append(np.mean(overlaps))
  fprs, pros = np.array(fprs), np.array(pros)
  keep = fprs < 0.3
  x, y = fprs[keep] / fprs[keep].max(), pros[keep]
  return abs(np.sum(np.diff(x) * (y[1:] + y[:-1]) / 2))


def test_simplenet_pro_hand_case():
  """2×2 region with values 0.2..0.8; background: one pixel 1.0 and three 0.7, far away, the rest 0.

  FPR (normalised) is 1 while th < 0.7 and 1/4 after; the dilated overlap is 1 while any region pixel
  exceeds th (th < 0.8), so the area is 1 − 1/4. Undilated it would be (1 − 1/4) · 1/4.
  """
  maps = np.zeros((1, 10, 10))
  maps[0, 1:3, 1:3] = [[0.2, 0.4], [0.6, 0.8]]
  maps[0, 9, 9] = 1.0
  maps[0, 9, :3] = 0.7
  masks = np.zeros((1, 10, 10), np.uint8)
  masks[0, 1:3, 1:3] = 1
  assert simplenet_pro(maps, masks) == pytest.approx(0.75)
  assert simplenet_pro(maps, masks, dilation=1) == pytest.approx(0.75 / 4)


def test_simplenet_pro_matches_literal_official_procedure():
  rng = np.random.default_rng(0)
  masks = np.zeros((3, 20, 20), np.uint8)
  masks[0, 3:7, 4:9] = 1
  masks[0, 12:14, 14:19] = 1
  masks[2, 8:15, 2:6] = 1
  maps = scipy.ndimage.gaussian_filter(rng.random((3, 20, 20)), (0, 1.5, 1.5)) + 0.15 * masks
  assert simplenet_pro(maps, masks) == pytest.approx(_official_pro_literal(masks, maps), rel=1e-9)
