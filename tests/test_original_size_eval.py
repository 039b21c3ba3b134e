"""EfficientAD's `eval_size="original"` (nelson's protocol): maps resized to each test image's own size."""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import average_precision_score, roc_auc_score

from jaxad.errors import ConfigError
from jaxad.evaluate import evaluator
from jaxad.models.efficient_ad import config as cfg
from jaxad.models.efficient_ad import normalization as norm
from jaxad.models.efficient_ad import steps


def _slow_aupro(maps, masks, fpr_limit=0.3):
  """PRO by direct thresholding over per-image lists of any sizes (8-connected regions per image)."""
  regions = []
  for n, mask in enumerate(masks):
    labels, count = ndimage.label(mask, structure=np.ones((3, 3)))
    regions += [(n, labels == k) for k in range(1, count + 1)]
  background = sum(int((~m).sum()) for m in masks)
  fprs, pros = [0.0], [0.0]
  for threshold in np.unique(np.concatenate([m.ravel() for m in maps]))[::-1]:
    predicted = [m >= threshold for m in maps]
    fprs.append(sum(int((p & ~m).sum()) for p, m in zip(predicted, masks)) / background)
    pros.append(np.mean([predicted[n][region].mean() for n, region in regions]))
  area = 0.0
  for f0, f1, p0, p1 in zip(fprs[:-1], fprs[1:], pros[:-1], pros[1:]):
    if f1 <= fpr_limit:
      area += (f1 - f0) * (p0 + p1) / 2
    else:
      area += (fpr_limit - f0) * (p0 + p0 + (p1 - p0) * (fpr_limit - f0) / (f1 - f0)) / 2
      break
  return area / fpr_limit


def _mixed_size_split(rng):
  """Five images of three sizes (not grouped), anomalous ones with two regions each, of sizes that differ
  between images (so regions merged across images would change AU-PRO)."""
  sizes = [(12, 10), (12, 10), (9, 14), (12, 10), (7, 7)]
  masks = []
  for i, (h, w) in enumerate(sizes):
    mask = np.zeros((h, w), bool)
    if i % 2 == 0:
      mask[1:3 + i // 2, 2:5] = True
      mask[h - 2:, w - 2 - i // 2:] = True
    masks.append(mask)
  return types.SimpleNamespace(label=np.array([1, 0, 1, 0, 1], np.int32), defect_type=["crack", "good"] * 2 + ["crack"],
                               original_mask=masks), sizes


def test_original_size_metrics_match_torch_resize_and_per_image_references():
  """nelson: F.interpolate(map, (orig_h, orig_w), bilinear) per image, score = its max; pixel metrics and
  AU-PRO over all pixels of all sizes (the MVTec evaluation's lists of maps)."""
  torch = pytest.importorskip("torch")
  rng = np.random.default_rng(0)
  split, sizes = _mixed_size_split(rng)
  grid = rng.random((5, 6, 6)).astype(np.float32)
  got = evaluator.original_size_metrics(grid, split, batch_size=2)  # runs of 2 split the first three images

  maps = [torch.nn.functional.interpolate(torch.from_numpy(grid[i][None, None]), size=hw, mode="bilinear",
                                          align_corners=False)[0, 0].numpy() for i, hw in enumerate(sizes)]
  scores = np.array([m.max() for m in maps])
  pixels = np.concatenate([m.ravel() for m in maps])
  truth = np.concatenate([m.ravel() for m in split.original_mask])
  assert got["image_auroc"] == pytest.approx(roc_auc_score(split.label, scores), abs=1e-12)
  assert got["image_auroc_map_max"] == got["image_auroc"]
  assert got["pixel_auroc"] == pytest.approx(roc_auc_score(truth, pixels), abs=1e-6)
  assert got["pixel_ap"] == pytest.approx(average_precision_score(truth, pixels), abs=1e-6)
  assert got["aupro"] == pytest.approx(_slow_aupro(maps, split.original_mask), abs=1e-6)


def test_original_size_metrics_equal_the_stacked_metrics_when_sizes_agree():
  rng = np.random.default_rng(1)
  grid = rng.random((4, 5, 5)).astype(np.float32)
  masks = np.zeros((4, 11, 13), bool)
  masks[0, 2:6, 3:7] = masks[0, 8:, :2] = masks[2, 4:9, 5:12] = True
  split = types.SimpleNamespace(label=np.array([1, 0, 1, 0]), defect_type=[""] * 4, original_mask=list(masks))
  maps = np.asarray(norm.resize_grid_map(jnp.asarray(grid), (11, 13)))
  from jaxad import metrics
  expected = metrics.compute_all(maps.max(axis=(1, 2)), split.label, maps, masks)
  got = evaluator.original_size_metrics(grid, split)
  assert {k: got[k] for k in expected} == pytest.approx(expected, abs=1e-12)


def test_original_size_scoring_needs_the_original_masks():
  split = types.SimpleNamespace(label=np.array([0, 1]), defect_type=["", ""], original_mask=None)
  with pytest.raises(ValueError, match="original_masks=True"):
    evaluator.original_size_metrics(np.zeros((2, 4, 4), np.float32), split)


def test_eval_size_original_needs_nelson_postprocessing():
  with pytest.raises(ConfigError, match="postprocess=nelson"):
    cfg.resolve(cfg.Static(eval_size="original"))
  with pytest.raises(ConfigError, match="eval_size"):
    cfg.resolve(cfg.Static(eval_size="native"))
  assert cfg.resolve(cfg.Static(eval_size="original", postprocess="nelson")).eval_size == "original"


def test_predict_grid_map_resizes_to_the_anomaly_map():
  """The grid map is the padded map before its resize: resized to the input size it is the anomaly map,
  and "input" evaluation is unchanged (no grid map)."""
  side, channels = 64, 8
  nelson = cfg.resolve(cfg.Static(image_size=(side, side), out_channels=channels, teacher="random",
                                  postprocess="nelson"))
  original = cfg.resolve(cfg.Static(image_size=(side, side), out_channels=channels, teacher="random",
                                    postprocess="nelson", eval_size="original"))
  images = jnp.asarray(np.random.default_rng(0).normal(size=(2, side, side, 3)), jnp.float32)
  state = steps.init(nelson, jax.random.key(0), cfg.Hparams(), images, 1)
  rng = np.random.default_rng(1)
  state = state.replace(batch_stats=dict(state.batch_stats, teacher=jax.tree.map(
      lambda x: jnp.asarray(rng.normal(size=x.shape) * 0.1, x.dtype), state.batch_stats["teacher"])))
  plain = steps.predict(nelson, state, images, (side, side))
  out = steps.predict(original, state, images, (side, side))
  assert "grid_map" not in plain and out["grid_map"].shape == (2, 16, 16)  # the 8×8 grid of 64 px + 4 px of zeros per side
  np.testing.assert_array_equal(out["anomaly_map"], plain["anomaly_map"])
  np.testing.assert_array_equal(norm.resize_grid_map(out["grid_map"], (side, side)), out["anomaly_map"])
  np.testing.assert_array_equal(out["grid_map"][:, :4], 0.0)
