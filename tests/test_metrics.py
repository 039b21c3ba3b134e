"""jaxad.metrics against hand-computed values, sklearn and a slow per-threshold AUPRO."""

import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

from jaxad import metrics
from jaxad.errors import JaxadError


def _sklearn_f1_max(scores, labels):
  precision, recall, _ = precision_recall_curve(labels, scores)
  return np.max(2 * precision * recall / (precision + recall + 1e-10))


def _slow_aupro(maps, comps, fpr_limit):
  """One PRO point per distinct score by direct thresholding, then clipped trapezoids."""
  regions = [comps[n] == label for n in range(len(comps)) for label in np.unique(comps[n])
             if label > 0]
  image_of_region = [n for n in range(len(comps)) for label in np.unique(comps[n]) if label > 0]
  background = comps == 0
  fprs, pros = [0.0], [0.0]
  for threshold in np.unique(maps)[::-1]:
    predicted = maps >= threshold
    fprs.append((predicted & background).sum() / background.sum())
    pros.append(np.mean([predicted[n][region].mean()
                         for n, region in zip(image_of_region, regions)]))
  area = 0.0
  for f0, f1, p0, p1 in zip(fprs[:-1], fprs[1:], pros[:-1], pros[1:]):
    if f1 <= fpr_limit:
      area += (f1 - f0) * (p0 + p1) / 2
    else:
      p_limit = p0 + (p1 - p0) * (fpr_limit - f0) / (f1 - f0)
      area += (fpr_limit - f0) * (p0 + p_limit) / 2
      break
  return area / fpr_limit


def _random_maps(rng, n=4, size=10, levels=25):
  """Maps with many ties, and masks of a few random rectangles per anomalous image."""
  maps = (rng.integers(0, levels, (n, size, size)) / levels).astype(np.float32)
  masks = np.zeros((n, size, size), bool)
  for i in range(n // 2):
    for _ in range(2):
      y, x = rng.integers(0, size - 3, 2)
      h, w = rng.integers(1, 4, 2)
      masks[i, y:y + h, x:x + w] = True
      maps[i, y:y + h, x:x + w] += np.float32(0.3)
  return maps, masks


# --- hand-computed --------------------------------------------------------------------------

def test_hand_computed_binary_metrics():
  scores, labels = [0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]
  assert metrics.auroc(scores, labels) == pytest.approx(0.75, abs=1e-12)
  # Thresholds 0.8, 0.4, 0.35: precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1.
  assert metrics.average_precision(scores, labels) == pytest.approx(0.5 + 0.5 * 2 / 3, abs=1e-12)
  assert metrics.f1_max(scores, labels) == pytest.approx(0.8, abs=1e-9)


def test_hand_computed_auroc_with_ties():
  # Pairs (pos, neg): (0.5, 0.5) counts 1/2, the other three 1 => 3.5 / 4.
  assert metrics.image_auroc([0.5, 0.5, 0.2, 0.9], [1, 0, 0, 1]) == pytest.approx(0.875)
  # -0.0 and +0.0 are the same score.
  assert metrics.auroc([-0.0, 0.0], [0, 1]) == pytest.approx(0.5)


def test_hand_computed_aupro_two_regions():
  # Row of 6 pixels: region 1 = pixels 0-1, region 2 = pixel 3, background = 2, 4, 5.
  # Scores 0.9 | 0.8 tie (bg, r2) | 0.5 | 0.3 | 0.1 give the PRO curve
  # (0,0) (0,.25) (1/3,.75) (2/3,.75) (2/3,1) (1,1).
  maps = np.array([0.9, 0.3, 0.8, 0.8, 0.5, 0.1], np.float32).reshape(1, 1, 6)
  comps = np.array([1, 1, 0, 2, 0, 0]).reshape(1, 1, 6)
  assert metrics.aupro(maps, comps, fpr_limit=1.0) == pytest.approx(1 / 6 + 1 / 4 + 1 / 3)
  # At FPR 0.3 the tie segment gives PRO .25 + .5 * .3 / (1/3) = .7.
  assert metrics.aupro(maps, comps, fpr_limit=0.3) == pytest.approx(0.3 * (0.25 + 0.7) / 2 / 0.3)


def test_regions_are_per_image():
  maps = np.array([0.9, 0.3, 0.8, 0.8, 0.5, 0.1], np.float32).reshape(1, 1, 6)
  comps = np.array([1, 1, 0, 2, 0, 0]).reshape(1, 1, 6)
  split_maps = np.stack([maps[0, :, :3], maps[0, :, 3:]])
  split_comps = np.stack([comps[0, :, :3], (comps[0, :, 3:] > 0).astype(int)])  # both label 1
  assert metrics.aupro(split_maps, split_comps) == pytest.approx(metrics.aupro(maps, comps))


def test_connected_components_8_connectivity():
  mask = np.array([[1, 0, 0, 1],
                   [0, 1, 0, 1],
                   [0, 0, 0, 0],
                   [1, 1, 0, 0]])
  labels = metrics.connected_components(mask)
  assert labels.dtype == np.int32
  assert labels[0, 0] == labels[1, 1] != labels[0, 3]  # diagonal neighbours join
  assert len(np.unique(labels)) == 4
  stack = metrics.connected_components(np.stack([mask, mask]))
  assert len(np.unique(stack)) == 7  # no region spans two images
  np.testing.assert_array_equal(stack[0] > 0, mask > 0)


# --- against sklearn and the slow reference -------------------------------------------------

# float32 and exact float64/int scores take the packed sort, other float64 the argsort path.
@pytest.mark.parametrize("seed, dtype", [(0, np.float32), (1, np.float64), (2, np.int64)])
def test_binary_metrics_match_sklearn_with_ties(seed, dtype):
  rng = np.random.default_rng(seed)
  labels = rng.random(500) < 0.3
  scores = (rng.integers(0, 40, 500) + 8 * labels).astype(dtype)
  scores = scores / 7 if dtype == np.float64 else scores
  assert metrics.auroc(scores, labels) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
  assert metrics.average_precision(scores, labels) == pytest.approx(
      average_precision_score(labels, scores), abs=1e-12)
  assert metrics.f1_max(scores, labels) == pytest.approx(
      _sklearn_f1_max(scores, labels), abs=1e-12)


def test_pixel_metrics_match_sklearn(rng):
  maps, masks = _random_maps(rng)
  flat_maps, flat_masks = maps.ravel(), masks.ravel()
  assert metrics.pixel_auroc(maps, masks) == pytest.approx(roc_auc_score(flat_masks, flat_maps))
  assert metrics.pixel_ap(maps, masks) == pytest.approx(
      average_precision_score(flat_masks, flat_maps))
  assert metrics.pixel_f1_max(maps, masks) == pytest.approx(
      _sklearn_f1_max(flat_maps, flat_masks))


@pytest.mark.parametrize("seed, fpr_limit", [(0, 0.3), (1, 0.3), (2, 0.05), (3, 1.0)])
def test_aupro_matches_slow_reference(seed, fpr_limit):
  maps, masks = _random_maps(np.random.default_rng(seed))
  comps = metrics.connected_components(masks)
  expected = _slow_aupro(maps, comps, fpr_limit)
  assert metrics.aupro(maps, comps, fpr_limit) == pytest.approx(expected, abs=1e-9)


# Chunk sizes that split runs of tied scores and put chunk ends on and off tie-group ends; one
# element per chunk is the extreme. The pass over the curve and the key packing are chunked.
@pytest.mark.parametrize("chunk", [1, 3, 7, 64])
@pytest.mark.parametrize("fpr_limit", [0.05, 0.3, 1.0])
def test_chunked_pass_equals_one_chunk_and_references(monkeypatch, chunk, fpr_limit):
  maps, masks = _random_maps(np.random.default_rng(4), levels=6)  # long runs of ties
  scores, labels = maps.reshape(len(maps), -1).max(1), masks.any((1, 2))
  whole = metrics.compute_all(scores, labels, maps, masks, fpr_limit=fpr_limit)
  monkeypatch.setattr(metrics, "_CHUNK", chunk)
  chunked = metrics.compute_all(scores, labels, maps, masks, fpr_limit=fpr_limit)
  assert chunked == pytest.approx(whole, abs=1e-12)
  assert chunked["pixel_auroc"] == whole["pixel_auroc"]  # exact integer area
  flat_maps, flat_masks = maps.ravel(), masks.ravel()
  assert chunked["pixel_auroc"] == pytest.approx(roc_auc_score(flat_masks, flat_maps), abs=1e-12)
  assert chunked["pixel_ap"] == pytest.approx(average_precision_score(flat_masks, flat_maps), abs=1e-12)
  assert chunked["pixel_f1_max"] == pytest.approx(_sklearn_f1_max(flat_maps, flat_masks), abs=1e-12)
  expected = _slow_aupro(maps, metrics.connected_components(masks), fpr_limit)
  assert chunked["aupro"] == pytest.approx(expected, abs=1e-9)


def test_compute_all_takes_components_without_masks(rng):
  maps, masks = _random_maps(rng)
  scores, labels = maps.reshape(len(maps), -1).max(1), masks.any((1, 2))
  comps = metrics.connected_components(masks)
  assert metrics.compute_all(scores, labels, maps, components_NxHxW=comps) == metrics.compute_all(
      scores, labels, maps, masks)


def test_sparse_large_region_labels_take_the_sort_path():
  """Labels too large for a lookup table are numbered by a sort; the AUPRO is the same."""
  maps, masks = _random_maps(np.random.default_rng(5))
  comps = metrics.connected_components(masks)
  huge = np.where(comps > 0, comps.astype(np.int64) * 10_000_019, 0)
  assert metrics.aupro(maps, huge) == pytest.approx(metrics.aupro(maps, comps), abs=1e-12)


def test_invariant_to_monotone_transform_and_input_type(rng):
  maps, masks = _random_maps(rng)
  comps = metrics.connected_components(masks)
  # float64 values float32 cannot hold exactly take the argsort path instead of the packed sort.
  transformed = np.exp(3 * maps.astype(np.float64)) - 0.5
  assert metrics.aupro(transformed, comps) == pytest.approx(metrics.aupro(maps, comps), abs=1e-12)
  assert metrics.pixel_auroc(transformed, masks) == pytest.approx(
      metrics.pixel_auroc(maps, masks), abs=1e-12)
  assert metrics.aupro(jnp.asarray(maps), jnp.asarray(comps)) == metrics.aupro(maps, comps)
  assert metrics.pixel_auroc(-maps, masks) == pytest.approx(1 - metrics.pixel_auroc(maps, masks))


def test_compute_all(rng):
  maps, masks = _random_maps(rng)
  scores, labels = maps.reshape(len(maps), -1).max(1), masks.any((1, 2))
  result = metrics.compute_all(scores, labels, maps, masks)
  assert result == pytest.approx({
      "image_auroc": metrics.image_auroc(scores, labels),
      "image_ap": metrics.image_ap(scores, labels),
      "image_f1_max": metrics.image_f1_max(scores, labels),
      "pixel_auroc": metrics.pixel_auroc(maps, masks),
      "pixel_ap": metrics.pixel_ap(maps, masks),
      "pixel_f1_max": metrics.pixel_f1_max(maps, masks),
      "aupro": metrics.aupro(maps, metrics.connected_components(masks)),
  }, abs=1e-12)
  per_image_comps = np.stack([metrics.connected_components(m) for m in masks])
  assert metrics.compute_all(scores, labels, maps, masks, per_image_comps) == result
  assert set(metrics.compute_all(scores, labels)) == {"image_auroc", "image_ap", "image_f1_max"}


# --- bad input ------------------------------------------------------------------------------

@pytest.mark.parametrize("call, message", [
    (lambda: metrics.auroc([0.1, 0.2], [1, 1]), "all anomalous"),
    (lambda: metrics.image_ap([0.1, 0.2], [0, 0]), "all normal"),
    (lambda: metrics.auroc([0.1, 0.2, 0.3], [0, 1]), "shapes differ"),
    (lambda: metrics.f1_max([0.1, np.nan], [0, 1]), "NaN"),
    (lambda: metrics.auroc([0.1, 0.2], [0, 2]), "only 0 and 1"),
    (lambda: metrics.auroc([], []), "empty"),
    (lambda: metrics.image_auroc(np.zeros((2, 2)), np.eye(2)), "1-D"),
    (lambda: metrics.pixel_auroc(np.zeros((2, 2)), np.eye(2)), "3-D"),
    (lambda: metrics.aupro(np.zeros((1, 2, 2)), np.zeros((1, 2, 2), int)), "region"),
    (lambda: metrics.aupro(np.zeros((1, 2, 2)), np.ones((1, 2, 2), int)), "background"),
    (lambda: metrics.aupro(np.zeros((1, 1, 2)), [[[0, 1]]], fpr_limit=0), "fpr_limit"),
    (lambda: metrics.aupro(np.zeros((1, 1, 2)), [[[0.0, 1.0]]]), "integer"),
    (lambda: metrics.compute_all([0.1, 0.2], [0, 1], np.zeros((2, 1, 2))), "masks"),
    (lambda: metrics.compute_all([0.1, 0.2], [0, 1], np.zeros((2, 1, 2)), np.eye(2)),
     "maps/masks: shapes differ"),
    (lambda: metrics.compute_all([0.1, 0.2], [0, 1], np.zeros((2, 2)), np.eye(2)), "3-D"),
    (lambda: metrics.compute_all([0.1, 0.2], [0, 1], np.zeros((2, 1, 2)),
                                 [[[0, 1]], [[0, 0]]], [[[0, 0]], [[0, 1]]]), "disagree"),
])
def test_bad_input_raises(call, message):
  with pytest.raises(metrics.MetricInputError, match=message) as info:
    call()
  assert isinstance(info.value, ValueError) and isinstance(info.value, JaxadError)


def test_mvtec_loco_image_auroc_is_the_mean_of_the_two_kinds():
  """The official LOCO evaluation scores each anomaly kind against the good images and averages; pooling differs."""
  import types
  from jaxad.evaluate.evaluator import loco_image_aurocs
  kinds = ["good"] * 4 + ["logical_anomalies"] * 4 + ["structural_anomalies"] * 2
  split = types.SimpleNamespace(label=np.array([0] * 4 + [1] * 6), defect_type=kinds)
  scores = np.array([0.1, 0.2, 0.3, 0.9,  0.15, 0.25, 0.35, 0.95,  1.0, 1.1])
  out = loco_image_aurocs(scores, split)
  logical = roc_auc_score([0] * 4 + [1] * 4, scores[:8])
  assert out["image_auroc_logical"] == pytest.approx(logical) and out["image_auroc_structural"] == 1.0
  assert out["image_auroc_loco"] == pytest.approx((logical + 1.0) / 2)
  assert out["image_auroc_loco"] != pytest.approx(roc_auc_score(split.label, scores))  # not the pooled AUROC
  mvtec = types.SimpleNamespace(label=split.label, defect_type=["good"] * 4 + ["crack"] * 6)
  assert loco_image_aurocs(scores, mvtec) == {}
