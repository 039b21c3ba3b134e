"""Anomaly-detection metrics: AUROC, average precision, F1-max, AUPRO (methods.md §5) and AU-sPRO.

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
* `au_spro`: MVTec LOCO AD's official localisation metric (`mvtec_loco_ad_evaluation`): as AUPRO,
  but a region is one annotated defect (one ground-truth PNG, not a connected component; defects
  may overlap), its overlap saturates, min(TP / saturation area, 1), and false positives are the
  pixels outside every defect of their image. The official code samples thresholds (refined until
  the curve is fine); here every distinct score is one, the limit of that sampling. Deviation: a
  saturation area of 0 (int(fraction · area) of a tiny defect), a division by zero there, counts as 1.

Speed and memory: float32 scores are sorted as one packed uint64 key (order-preserving score bits
in the high half, label or region index in the low half), which numpy sorts ~10× faster than an
`argsort`. Scores that float32 cannot represent exactly fall back to a stable `argsort`. All four
curve metrics then come from one pass over the sorted keys in chunks of `_CHUNK` elements, running
counts carried, so beyond the inputs the pixel metrics hold ~8 bytes per pixel (the keys) plus
O(chunk).
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
  "image_f1_max", "pixel_auroc", "pixel_ap", "pixel_f1_max", "aupro", "au_spro", "connected_components",
  "compute_all",
]

_F1_EPS = 1e-10  # anomalib F1Max
_CHUNK = 1 << 22  # elements per step of the chunked passes (keys, curve walk)
_HIGH, _LOW = (1, 0) if sys.byteorder == "little" else (0, 1)  # uint32 halves of a uint64


class MetricInputError(JaxadError, ValueError):
  """Scores, labels, masks or components that a metric cannot be computed from."""


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
# Sorting.

class _Sorted(NamedTuple):
  """Scores sorted highest first, as comparable keys, with each one's uint32 payload (0 = negative)."""
  keys: np.ndarray
  payload: np.ndarray


def _sort_descending(scores: np.ndarray, payload: np.ndarray | None = None,
                     foreground: np.ndarray | None = None,
                     foreground_payload: np.ndarray | None = None) -> _Sorted:
  """Sorts by score, highest first, carrying a uint32 payload: `payload` for every element, or
  `foreground_payload` at the flat indices `foreground` and 0 elsewhere."""
  scores = scores.reshape(-1)
  if scores.dtype != np.float32:
    as_f32 = scores.astype(np.float32)
    if not np.array_equal(as_f32, scores):
      if payload is None:
        payload = np.zeros(scores.size, np.uint32)
        payload[foreground] = foreground_payload
      order = np.argsort(scores, kind="stable")[::-1]
      return _Sorted(scores[order], payload.reshape(-1)[order])
    scores = as_f32
  packed = np.empty(scores.size, np.uint64)
  halves = packed.view(np.uint32)
  high, low = halves[_HIGH::2], halves[_LOW::2]
  for start in range(0, scores.size, _CHUNK):  # chunked, so the temporaries stay small
    bits = np.negative(scores[start:start + _CHUNK])  # ascending -score = descending score
    bits += np.float32(0)  # -0.0 becomes +0.0, so the two zeros tie
    bits = bits.view(np.uint32)
    flip = bits >> np.uint32(31)
    flip *= np.uint32(0x7FFFFFFF)
    flip |= np.uint32(0x80000000)
    bits ^= flip  # unsigned order of the bits = float order
    high[start:start + _CHUNK] = bits
  if payload is None:
    low[:] = 0
    low[foreground] = foreground_payload
  else:
    low[:] = payload.reshape(-1)
  packed.sort()
  return _Sorted(high, low)


# ---------------------------------------------------------------------------------------------
# One pass over the curve.

def _curve_metrics(ordered: _Sorted, positives: int, region_sizes: np.ndarray | None = None,
                   fpr_limit: float = 1.0) -> dict[str, float]:
  """AUROC, AP, F1-max and, with `region_sizes`, AUPRO in one streamed pass over the sorted scores.

  The curve has one point per distinct score (the end of each run of equal keys), (0, 0)
  prepended. It is walked in chunks of `_CHUNK` elements with the running counts carried, so
  the memory beyond the sorted keys stays O(chunk). Counts are exact int64; with regions a
  payload > 0 is a region index (1-based) and a true positive is any foreground pixel.
  """
  keys, payload = ordered
  total = keys.size
  negatives = total - positives
  if region_sizes is not None:
    inverse_size = np.concatenate([[0.0], 1.0 / region_sizes])
    num_regions = region_sizes.size
  tp_prev, fp_prev, fpr_prev, pro_prev = 0, 0, 0.0, 0.0
  tp_carry, overlap_carry = 0, 0.0
  twice_auroc, ap_sum, f1_best, pro_area, pro_done = 0, 0.0, 0.0, 0.0, False
  for start in range(0, total, _CHUNK):
    stop = min(start + _CHUNK, total)
    keys_c = keys[start:stop]
    if stop < total:
      is_end = keys_c != keys[start + 1:stop + 1]
    else:
      is_end = np.append(keys_c[1:] != keys_c[:-1], True)
    ends = np.flatnonzero(is_end)  # may be empty: one run of ties spans the chunk
    cumulative = np.cumsum(payload[start:stop] != 0, dtype=np.int64)
    cumulative += tp_carry
    tp_carry = int(cumulative[-1])
    tps = cumulative[ends]
    fps = ends + (start + 1) - tps
    tps_with_prev = np.concatenate([[tp_prev], tps])
    fps_with_prev = np.concatenate([[fp_prev], fps])
    twice_auroc += int(np.sum(np.diff(fps_with_prev) * (tps_with_prev[1:] + tps_with_prev[:-1])))
    precision = tps / (tps + fps)
    ap_sum += float(np.sum(np.diff(tps_with_prev) * precision))
    recall = tps / positives
    f1_best = max(f1_best, float(np.max(2 * precision * recall / (precision + recall + _F1_EPS),
                                        initial=0.0)))
    if region_sizes is not None:
      overlap = _carried_cumsum(inverse_size[payload[start:stop]], overlap_carry)
      overlap_carry = overlap[-1]
      if not pro_done:
        fpr = np.concatenate([[fpr_prev], fps / negatives])
        pro = np.concatenate([[pro_prev], overlap[ends] / num_regions])
        pro_area, pro_done = _pro_area(fpr, pro, fpr_limit, pro_area)
        fpr_prev, pro_prev = fpr[-1], pro[-1]
    tp_prev, fp_prev = int(tps_with_prev[-1]), int(fps_with_prev[-1])
  result = {"auroc": twice_auroc / (2.0 * positives * negatives), "ap": ap_sum / positives,
            "f1_max": f1_best}
  if region_sizes is not None:
    result["aupro"] = pro_area / fpr_limit
  return result


def _carried_cumsum(values: np.ndarray, carry: float) -> np.ndarray:
  """Running sum of `values` started from `carry` (the same additions as one long cumsum)."""
  values[0] += carry
  return np.cumsum(values, out=values)


def _pro_area(fpr: np.ndarray, pro: np.ndarray, fpr_limit: float, area: float) -> tuple[float, bool]:
  """Adds the trapezoids of the PRO curve points (first = the previous chunk's last) up to
  `fpr_limit`, the point at the limit linearly interpolated; returns (area, limit reached)."""
  last = np.searchsorted(fpr, fpr_limit, side="right") - 1  # last point with fpr <= limit
  fpr_clip, pro_clip = fpr[:last + 1], pro[:last + 1]
  done = last + 1 < fpr.size
  if done and fpr[last] < fpr_limit:
    step = (fpr_limit - fpr[last]) / (fpr[last + 1] - fpr[last])
    fpr_clip = np.append(fpr_clip, fpr_limit)
    pro_clip = np.append(pro_clip, pro[last] + step * (pro[last + 1] - pro[last]))
  return area + float(np.sum(np.diff(fpr_clip) * (pro_clip[1:] + pro_clip[:-1])) / 2.0), done


def _binary_metrics(scores: np.ndarray, labels: np.ndarray, name: str) -> dict[str, float]:
  _same_shape(scores, labels, f"{name} scores/labels")
  positives = int(labels.sum())
  _both_classes(positives, labels.size, f"{name} labels")
  return _curve_metrics(_sort_descending(scores, labels.astype(np.uint32)), positives)


# ---------------------------------------------------------------------------------------------
# Public metrics on flat scores.

def auroc(scores_N: ArrayLike, labels_N: ArrayLike) -> float:
  """Area under the exact ROC curve (= sklearn `roc_auc_score`); any matching shapes."""
  return _binary_metrics(_scores(scores_N, "scores"), _binary(labels_N, "labels"), "auroc")["auroc"]


def average_precision(scores_N: ArrayLike, labels_N: ArrayLike) -> float:
  """Step-wise average precision (= sklearn `average_precision_score`)."""
  return _binary_metrics(_scores(scores_N, "scores"), _binary(labels_N, "labels"), "ap")["ap"]


def f1_max(scores_N: ArrayLike, labels_N: ArrayLike) -> float:
  """Best F1 over all thresholds (= anomalib `F1Max`)."""
  return _binary_metrics(_scores(scores_N, "scores"), _binary(labels_N, "labels"), "f1_max")["f1_max"]


def _image_metrics(scores_N: ArrayLike, labels_N: ArrayLike) -> dict[str, float]:
  scores = _scores(scores_N, "image scores")
  labels = _binary(labels_N, "image labels")
  _same_shape(scores, labels, "image scores/labels", ndim=1)
  return _binary_metrics(scores, labels, "image")


def _pixel_metrics(maps_NxHxW: ArrayLike, masks_NxHxW: ArrayLike) -> dict[str, float]:
  maps = _scores(maps_NxHxW, "anomaly maps")
  masks = _binary(masks_NxHxW, "masks")
  _same_shape(maps, masks, "anomaly maps/masks", ndim=3)
  return _binary_metrics(maps, masks, "pixel")


def image_auroc(scores_N: ArrayLike, labels_N: ArrayLike) -> float:
  """Image-level AUROC from one score and one 0/1 label per image."""
  return _image_metrics(scores_N, labels_N)["auroc"]


def image_ap(scores_N: ArrayLike, labels_N: ArrayLike) -> float:
  """Image-level average precision ("AP-det")."""
  return _image_metrics(scores_N, labels_N)["ap"]


def image_f1_max(scores_N: ArrayLike, labels_N: ArrayLike) -> float:
  """Image-level F1-max."""
  return _image_metrics(scores_N, labels_N)["f1_max"]


def pixel_auroc(maps_NxHxW: ArrayLike, masks_NxHxW: ArrayLike) -> float:
  """Pixel AUROC over all pixels of all images pooled."""
  return _pixel_metrics(maps_NxHxW, masks_NxHxW)["auroc"]


def pixel_ap(maps_NxHxW: ArrayLike, masks_NxHxW: ArrayLike) -> float:
  """Pixel average precision over all pixels pooled ("AP-loc")."""
  return _pixel_metrics(maps_NxHxW, masks_NxHxW)["ap"]


def pixel_f1_max(maps_NxHxW: ArrayLike, masks_NxHxW: ArrayLike) -> float:
  """Pixel F1-max over all pixels pooled."""
  return _pixel_metrics(maps_NxHxW, masks_NxHxW)["f1_max"]


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


def _region_index(components_NxHxW: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
  """Numbers regions 1..R by (image, label); returns (flat foreground indices, their region
  numbers as uint32, region sizes (R,))."""
  flat = components_NxHxW.reshape(-1)
  foreground = np.flatnonzero(flat)
  labels_per_image = int(flat.max(initial=0)) + 1
  pair = foreground // (flat.size // components_NxHxW.shape[0])  # image of each pixel
  pair *= labels_per_image
  pair += flat[foreground]
  if components_NxHxW.shape[0] * labels_per_image <= max(flat.size, 1 << 20):
    present = np.zeros(components_NxHxW.shape[0] * labels_per_image, np.uint32)
    present[pair] = 1
    np.cumsum(present, out=present)  # 1-based number of each present (image, label) pair
    region = present[pair]
  else:  # sparse, large labels: a sort instead of a table
    region = (np.unique(pair, return_inverse=True)[1] + 1).astype(np.uint32)
  return foreground, region, np.bincount(region)[1:]


def _check_fpr_limit(fpr_limit: float) -> None:
  if not 0.0 < fpr_limit <= 1.0:
    raise MetricInputError(f"fpr_limit must be in (0, 1], got {fpr_limit}")


def _region_metrics(maps: np.ndarray, comps: np.ndarray, fpr_limit: float) -> dict[str, float]:
  """Pixel AUROC, AP and F1-max (foreground = any region) and AUPRO, from one sort."""
  foreground, region, sizes = _region_index(comps)
  if sizes.size == 0 or foreground.size == comps.size:
    raise MetricInputError("aupro needs at least one anomalous region and one background pixel")
  ordered = _sort_descending(maps, foreground=foreground, foreground_payload=region)
  del foreground, region
  return _curve_metrics(ordered, int(sizes.sum()), sizes, fpr_limit)


def _checked_maps_and_components(maps_NxHxW: ArrayLike, components_NxHxW: ArrayLike
                                 ) -> tuple[np.ndarray, np.ndarray]:
  maps = _scores(maps_NxHxW, "anomaly maps")
  comps = _components(components_NxHxW, "components")
  _same_shape(maps, comps, "anomaly maps/components", ndim=3)
  return maps, comps


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
  return _region_metrics(*_checked_maps_and_components(maps_NxHxW, components_NxHxW), fpr_limit)["aupro"]


def compute_all(image_scores_N: ArrayLike, image_labels_N: ArrayLike,
                maps_NxHxW: ArrayLike | None = None, masks_NxHxW: ArrayLike | None = None,
                components_NxHxW: ArrayLike | None = None, fpr_limit: float = 0.3
                ) -> dict[str, float]:
  """All metrics; pixel metrics (one shared sort) only when `maps_NxHxW` is given.

  Returns keys image_auroc, image_ap, image_f1_max and, with maps, pixel_auroc, pixel_ap,
  pixel_f1_max and aupro. Masks must hold both classes (so there is at least one region for
  AUPRO). Components are computed from the masks (8-connectivity) when not given; given
  components must be > 0 exactly where the mask is 1, and alone (no masks) they are the masks.
  """
  _check_fpr_limit(fpr_limit)
  image = _image_metrics(image_scores_N, image_labels_N)
  result = {"image_auroc": image["auroc"], "image_ap": image["ap"], "image_f1_max": image["f1_max"]}
  if maps_NxHxW is None:
    return result
  if masks_NxHxW is None and components_NxHxW is None:
    raise MetricInputError("pixel metrics need masks_NxHxW or components_NxHxW with maps_NxHxW")
  if masks_NxHxW is None:
    maps, comps = _checked_maps_and_components(maps_NxHxW, components_NxHxW)
  else:
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
    del masks
  pixel = _region_metrics(maps, comps, fpr_limit)
  result.update(pixel_auroc=pixel["auroc"], pixel_ap=pixel["ap"], pixel_f1_max=pixel["f1_max"],
                aupro=pixel["aupro"])
  return result


def au_spro(maps: "list[ArrayLike]", channels: "list[list[tuple[ArrayLike, int]]]",
            fpr_limit: float = 0.05) -> float:
  """Normalised area under the sPRO curve up to `fpr_limit` (MVTec LOCO AD's AU-sPRO; 0.05 its default).

  Args:
    maps: one anomaly map per image, any sizes (each flattened row-major).
    channels: per image, its annotated defects as (flat pixel indices into that map, saturation area);
      an empty list for a good image. Defects may overlap.
    fpr_limit: upper integration limit on the false positive rate pooled over all images' defect-free
      pixels.

  Each defect's overlap at a threshold is min(TP / saturation area, 1), so only its `saturation
  area` highest-scoring pixels count: they enter the sorted curve with weight 1 / saturation area,
  and the PRO pass of `aupro` (regions of that "size") integrates the mean over defects.
  """
  _check_fpr_limit(fpr_limit)
  if len(maps) != len(channels):
    raise MetricInputError(f"au_spro: {len(maps)} maps but channels for {len(channels)} images")
  negatives, events, saturation = [], [], []
  for i, (map_any, defects) in enumerate(zip(maps, channels)):
    flat = _scores(map_any, f"anomaly map {i}").reshape(-1)
    defect_free = np.ones(flat.size, bool)
    for pixels_any, area in defects:
      pixels = np.asarray(pixels_any)
      if pixels.size == 0 or not np.issubdtype(pixels.dtype, np.integer):
        raise MetricInputError(f"au_spro: image {i} has a defect with no pixel indices (or non-integer ones)")
      if pixels.min() < 0 or pixels.max() >= flat.size:
        raise MetricInputError(f"au_spro: image {i} has defect pixel indices outside its {flat.size} pixels")
      if not 1 <= int(area) <= pixels.size:
        raise MetricInputError(f"au_spro: image {i} has a saturation area {area} outside 1..{pixels.size}")
      defect_free[pixels] = False
      values = flat[pixels]
      area = int(area)
      events.append(values if area == values.size else -np.partition(-values, area - 1)[:area])
      saturation.append(area)
    negatives.append(flat[defect_free])
  if not saturation or not sum(n.size for n in negatives):
    raise MetricInputError("au_spro needs at least one annotated defect and one defect-free pixel")
  num_negative = sum(n.size for n in negatives)
  dtype = np.result_type(*negatives, *events)
  scores = np.concatenate(negatives + events).astype(dtype, copy=False)
  del negatives
  event_defect = np.repeat(np.arange(1, len(saturation) + 1, dtype=np.uint32), saturation)
  ordered = _sort_descending(scores, foreground=np.arange(num_negative, scores.size),
                             foreground_payload=event_defect)
  del scores, event_defect
  return _curve_metrics(ordered, int(sum(saturation)), np.asarray(saturation, np.float64), fpr_limit)["aupro"]
