"""Anomaly-detection metrics: AUROC, average precision, F1-max and AUPRO (methods.md §5).

All metrics run on the host in numpy with exact int64 counts, so they stay exact for the
65 M pixels of 1,000 maps of 256×256; jax arrays are accepted (converted with `np.asarray`).

* `auroc`: exact ROC with one point per distinct score, as sklearn `roc_auc_score` and
  torchmetrics `BinaryAUROC` (ties count one half).
* `average_precision`: sklearn `average_precision_score` (Σ ΔRecall · Precision, step-wise,
  no interpolation); on pixels this is "AP-loc".
* `f1_max`: anomalib `F1Max`, max over PR-curve thresholds of 2PR / (P + R + 1e-10).
* `aupro`: anomalib's current `AUPRO` (PR #3115) and the MVTec AD evaluation code: sort all
  pixels by score, global FPR over background pixels, per-region TPR averaged over regions
  (a region is one (image, component label) pair), one point per distinct score, (0, 0)
  prepended, the point at FPR = `fpr_limit` linearly interpolated, trapezoid area divided by
  `fpr_limit`. Deviation: anomalib returns 0 when there is no region or no background pixel;
  here that is an error, because the metric is undefined.

Speed: float32 scores are sorted as one packed uint64 key (order-preserving score bits in the
high half, label or region index in the low half), which numpy sorts ~10× faster than an
`argsort`. Scores that float32 cannot represent exactly fall back to a stable `argsort`.
"""

from __future__ import annotations

import sys
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike
from scipy import ndimage

from jaxad.errors import JaxadError

__all__ = [
  "MetricInputError", "auroc", "average_precision", "f1_max", "image_auroc", "image_ap",
  "image_f1_max", "pixel_auroc", "pixel_ap", "pixel_f1_max", "aupro", "connected_components",
  "compute_all",
]

_F1_EPS = 1e-10  # anomalib F1Max
_HIGH, _LOW = (1, 0) if sys.byteorder == "little" else (0, 1)  # uint32 halves of a uint64


class MetricInputError(JaxadError, ValueError):
  """Scores, labels, masks or components that a metric cannot be computed from."""


class _Counts(NamedTuple):
  """Cumulative true/false positives at each distinct score, highest score first."""
  tps: np.ndarray  # int64
  fps: np.ndarray  # int64


# ---------------------------------------------------------------------------------------------
# Input checks.

def _scores(x: ArrayLike, name: str) -> np.ndarray:
  arr = np.asarray(x)
  if arr.size == 0:
    raise MetricInputError(f"{name} is empty")
  if arr.dtype == bool:
    arr = arr.astype(np.float32)
  elif not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
    raise MetricInputError(f"{name} must hold real numbers, got dtype {arr.dtype}")
  if np.issubdtype(arr.dtype, np.floating) and np.isnan(arr).any():
    raise MetricInputError(f"{name} contains NaN ({int(np.isnan(arr).sum())} values)")
  return arr


def _binary(x: ArrayLike, name: str) -> np.ndarray:
  arr = np.asarray(x)
  if arr.dtype == bool:
    return arr
  if not np.issubdtype(arr.dtype, np.number):
    raise MetricInputError(f"{name} must be 0/1 or bool, got dtype {arr.dtype}")
  is_one = arr == 1
  if not (is_one | (arr == 0)).all():
    bad = np.unique(arr[~(is_one | (arr == 0))])[:5]
    raise MetricInputError(f"{name} must contain only 0 and 1, found e.g. {bad.tolist()}")
  return is_one


def _same_shape(a: np.ndarray, b: np.ndarray, names: str, ndim: int | None = None) -> None:
  if a.shape != b.shape:
    raise MetricInputError(f"{names}: shapes differ, {a.shape} vs {b.shape}")
  if ndim is not None and a.ndim != ndim:
    raise MetricInputError(f"{names}: expected {ndim}-D arrays, got shape {a.shape}")


def _both_classes(positives: int, total: int, name: str) -> None:
  if positives == 0 or positives == total:
    kind = "anomalous (1)" if positives == total else "normal (0)"
    raise MetricInputError(f"{name} are all {kind}; the metric needs both classes")


def _components(x: ArrayLike, name: str) -> np.ndarray:
  arr = np.asarray(x)
  if not np.issubdtype(arr.dtype, np.integer) and arr.dtype != bool:
    raise MetricInputError(f"{name} must hold integer component labels, got dtype {arr.dtype}")
  if arr.dtype != bool and (arr < 0).any():
    raise MetricInputError(f"{name} has negative labels; use 0 for background, >0 for regions")
  return arr


# ---------------------------------------------------------------------------------------------
# Sorting and counting.

def _descending(scores: np.ndarray, payload: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Sorts `payload` (uint32) by score, highest first; returns (tie-group ends, payload)."""
  scores = scores.reshape(-1)
  payload = payload.reshape(-1)
  if scores.dtype != np.float32:
    as_f32 = scores.astype(np.float32)
    if not np.array_equal(as_f32, scores):
      order = np.argsort(scores, kind="stable")[::-1]
      return _tie_ends(scores[order]), payload[order]
    scores = as_f32
  bits = np.negative(scores)  # ascending -score = descending score
  bits += np.float32(0)  # -0.0 becomes +0.0, so the two zeros tie
  bits = bits.view(np.uint32)
  flip = bits >> np.uint32(31)
  flip *= np.uint32(0x7FFFFFFF)
  flip |= np.uint32(0x80000000)
  bits ^= flip  # unsigned order of the bits = float order
  packed = np.empty(scores.size, np.uint64)
  halves = packed.view(np.uint32)
  halves[_HIGH::2] = bits
  halves[_LOW::2] = payload
  packed.sort()
  return _tie_ends(halves[_HIGH::2]), halves[_LOW::2]


def _tie_ends(keys_desc: np.ndarray) -> np.ndarray:
  """Index of the last element of each run of equal keys."""
  return np.append(np.flatnonzero(keys_desc[1:] != keys_desc[:-1]), keys_desc.size - 1)


def _counts_from_sorted(ends: np.ndarray, positive_desc: np.ndarray) -> _Counts:
  cumulative = positive_desc.astype(np.int64)
  np.cumsum(cumulative, out=cumulative)
  tps = cumulative[ends]
  return _Counts(tps, ends.astype(np.int64) + 1 - tps)


def _binary_counts(scores: np.ndarray, labels: np.ndarray, name: str) -> _Counts:
  _same_shape(scores, labels, f"{name} scores/labels")
  _both_classes(int(labels.sum()), labels.size, f"{name} labels")
  ends, labels_desc = _descending(scores, labels.astype(np.uint32))
  return _counts_from_sorted(ends, labels_desc)


def _auroc(c: _Counts) -> float:
  tps = np.concatenate([[0], c.tps])
  fps = np.concatenate([[0], c.fps])
  twice_area = np.sum(np.diff(fps) * (tps[1:] + tps[:-1]))  # exact in int64
  return float(twice_area / (2.0 * c.tps[-1] * c.fps[-1]))


def _average_precision(c: _Counts) -> float:
  precision = c.tps / (c.tps + c.fps)
  return float(np.sum(np.diff(c.tps, prepend=0) * precision) / c.tps[-1])


def _f1_max(c: _Counts) -> float:
  precision = c.tps / (c.tps + c.fps)
  recall = c.tps / c.tps[-1]
  return float(np.max(2 * precision * recall / (precision + recall + _F1_EPS)))


# ---------------------------------------------------------------------------------------------
# Public metrics on flat scores.

def auroc(scores_N: ArrayLike, labels_N: ArrayLike) -> float:
  """Area under the exact ROC curve (= sklearn `roc_auc_score`); any matching shapes."""
  return _auroc(_binary_counts(_scores(scores_N, "scores"), _binary(labels_N, "labels"), "auroc"))


def average_precision(scores_N: ArrayLike, labels_N: ArrayLike) -> float:
  """Step-wise average precision (= sklearn `average_precision_score`)."""
  counts = _binary_counts(_scores(scores_N, "scores"), _binary(labels_N, "labels"), "ap")
  return _average_precision(counts)


def f1_max(scores_N: ArrayLike, labels_N: ArrayLike) -> float:
  """Best F1 over all thresholds (= anomalib `F1Max`)."""
  counts = _binary_counts(_scores(scores_N, "scores"), _binary(labels_N, "labels"), "f1_max")
  return _f1_max(counts)


def _image_counts(scores_N: ArrayLike, labels_N: ArrayLike) -> _Counts:
  scores = _scores(scores_N, "image scores")
  labels = _binary(labels_N, "image labels")
  _same_shape(scores, labels, "image scores/labels", ndim=1)
  return _binary_counts(scores, labels, "image")


def _pixel_counts(maps_NxHxW: ArrayLike, masks_NxHxW: ArrayLike) -> _Counts:
  maps = _scores(maps_NxHxW, "anomaly maps")
  masks = _binary(masks_NxHxW, "masks")
  _same_shape(maps, masks, "anomaly maps/masks", ndim=3)
  return _binary_counts(maps, masks, "pixel")


def image_auroc(scores_N: ArrayLike, labels_N: ArrayLike) -> float:
  """Image-level AUROC from one score and one 0/1 label per image."""
  return _auroc(_image_counts(scores_N, labels_N))


def image_ap(scores_N: ArrayLike, labels_N: ArrayLike) -> float:
  """Image-level average precision ("AP-det")."""
  return _average_precision(_image_counts(scores_N, labels_N))


def image_f1_max(scores_N: ArrayLike, labels_N: ArrayLike) -> float:
  """Image-level F1-max."""
  return _f1_max(_image_counts(scores_N, labels_N))


def pixel_auroc(maps_NxHxW: ArrayLike, masks_NxHxW: ArrayLike) -> float:
  """Pixel AUROC over all pixels of all images pooled."""
  return _auroc(_pixel_counts(maps_NxHxW, masks_NxHxW))


def pixel_ap(maps_NxHxW: ArrayLike, masks_NxHxW: ArrayLike) -> float:
  """Pixel average precision over all pixels pooled ("AP-loc")."""
  return _average_precision(_pixel_counts(maps_NxHxW, masks_NxHxW))


def pixel_f1_max(maps_NxHxW: ArrayLike, masks_NxHxW: ArrayLike) -> float:
  """Pixel F1-max over all pixels pooled."""
  return _f1_max(_pixel_counts(maps_NxHxW, masks_NxHxW))


# ---------------------------------------------------------------------------------------------
# Regions and AUPRO.

def connected_components(mask_HxW: ArrayLike) -> np.ndarray:
  """8-connected component labels (int32, 0 = background) of a binary (H, W) mask.

  A stack (N, H, W) is labelled image by image (no connection across images); its labels
  are then unique over the whole stack.
  """
  mask = _binary(mask_HxW, "mask")
  if mask.ndim not in (2, 3):
    raise MetricInputError(f"mask must be (H, W) or (N, H, W), got shape {mask.shape}")
  structure = np.ones((3, 3), bool)
  if mask.ndim == 3:
    structure = np.stack([np.zeros_like(structure), structure, np.zeros_like(structure)])
  labels, _ = ndimage.label(mask, structure=structure, output=np.int32)
  return labels


def _region_index(components_NxHxW: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """Renumbers regions 1..R by (image, label); returns (index_NxHxW uint32, sizes_R)."""
  flat = components_NxHxW.reshape(-1)
  foreground = np.flatnonzero(flat)
  image_of_pixel = foreground // (flat.size // components_NxHxW.shape[0])
  pair = image_of_pixel * (int(flat.max()) + 1) + flat[foreground]
  _, region_of_pixel = np.unique(pair, return_inverse=True)
  index = np.zeros(flat.size, np.uint32)
  index[foreground] = region_of_pixel + 1
  return index.reshape(components_NxHxW.shape), np.bincount(region_of_pixel)


class _SortedPixels(NamedTuple):
  """Pixels by descending score: tie-group ends, region index (0 = background), counts."""
  ends: np.ndarray
  region_desc: np.ndarray
  region_sizes: np.ndarray
  counts: _Counts  # tps = anomalous pixels, fps = background pixels


def _sorted_pixels(maps_NxHxW: ArrayLike, components_NxHxW: ArrayLike) -> _SortedPixels:
  maps = _scores(maps_NxHxW, "anomaly maps")
  comps = _components(components_NxHxW, "components")
  _same_shape(maps, comps, "anomaly maps/components", ndim=3)
  index, sizes = _region_index(comps)
  ends, region_desc = _descending(maps, index)
  return _SortedPixels(ends, region_desc, sizes, _counts_from_sorted(ends, region_desc != 0))


def _check_fpr_limit(fpr_limit: float) -> None:
  if not 0.0 < fpr_limit <= 1.0:
    raise MetricInputError(f"fpr_limit must be in (0, 1], got {fpr_limit}")


def _aupro(pixels: _SortedPixels, fpr_limit: float) -> float:
  background = pixels.counts.fps
  num_regions = pixels.region_sizes.size
  if num_regions == 0 or background[-1] == 0:
    raise MetricInputError("aupro needs at least one anomalous region and one background pixel")
  inverse_size = np.concatenate([[0.0], 1.0 / pixels.region_sizes])
  overlap = inverse_size[pixels.region_desc]
  np.cumsum(overlap, out=overlap)
  fpr = np.concatenate([[0.0], background / background[-1]])
  pro = np.concatenate([[0.0], overlap[pixels.ends] / num_regions])
  last = np.searchsorted(fpr, fpr_limit, side="right") - 1  # last point with fpr <= limit
  fpr_clip, pro_clip = fpr[:last + 1], pro[:last + 1]
  if fpr[last] < fpr_limit:
    step = (fpr_limit - fpr[last]) / (fpr[last + 1] - fpr[last])
    fpr_clip = np.append(fpr_clip, fpr_limit)
    pro_clip = np.append(pro_clip, pro[last] + step * (pro[last + 1] - pro[last]))
  area = np.sum(np.diff(fpr_clip) * (pro_clip[1:] + pro_clip[:-1])) / 2.0
  return float(area / fpr_limit)


def aupro(maps_NxHxW: ArrayLike, components_NxHxW: ArrayLike, fpr_limit: float = 0.3) -> float:
  """Normalised area under the PRO curve up to `fpr_limit` (MVTec / anomalib AUPRO).

  Args:
    maps_NxHxW: anomaly scores, higher = more anomalous.
    components_NxHxW: int labels per image, 0 = background, each label > 0 one region
      (per image: label 1 of image 0 and label 1 of image 1 are two regions). A binary
      mask works only if every image has at most one region; else use `connected_components`.
    fpr_limit: upper integration limit on the global false positive rate.
  """
  _check_fpr_limit(fpr_limit)
  return _aupro(_sorted_pixels(maps_NxHxW, components_NxHxW), fpr_limit)


def compute_all(image_scores_N: ArrayLike, image_labels_N: ArrayLike,
                maps_NxHxW: ArrayLike | None = None, masks_NxHxW: ArrayLike | None = None,
                components_NxHxW: ArrayLike | None = None, fpr_limit: float = 0.3
                ) -> dict[str, float]:
  """All metrics; pixel metrics (one shared sort) only when `maps_NxHxW` is given.

  Returns keys image_auroc, image_ap, image_f1_max and, with maps, pixel_auroc, pixel_ap,
  pixel_f1_max and aupro. Masks must hold both classes (so there is at least one region for
  AUPRO). Components are computed from the masks (8-connectivity) when not given; given
  components must be > 0 exactly where the mask is 1.
  """
  _check_fpr_limit(fpr_limit)
  counts = _image_counts(image_scores_N, image_labels_N)
  result = {"image_auroc": _auroc(counts), "image_ap": _average_precision(counts),
            "image_f1_max": _f1_max(counts)}
  if maps_NxHxW is None:
    return result
  if masks_NxHxW is None:
    raise MetricInputError("pixel metrics need masks_NxHxW together with maps_NxHxW")
  maps = _scores(maps_NxHxW, "anomaly maps")
  masks = _binary(masks_NxHxW, "masks")
  _same_shape(maps, masks, "anomaly maps/masks", ndim=3)
  _both_classes(int(masks.sum()), masks.size, "mask pixels")
  if components_NxHxW is None:
    comps = connected_components(masks)
  else:
    comps = _components(components_NxHxW, "components")
    _same_shape(comps, masks, "components/masks")
    if not np.array_equal(comps > 0, masks):
      raise MetricInputError("components disagree with masks (components > 0 must equal masks)")
  pixels = _sorted_pixels(maps, comps)
  result.update(pixel_auroc=_auroc(pixels.counts), pixel_ap=_average_precision(pixels.counts),
                pixel_f1_max=_f1_max(pixels.counts), aupro=_aupro(pixels, fpr_limit))
  return result
