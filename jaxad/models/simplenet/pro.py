"""The official SimpleNet "PRO" (DonaldRR/SimpleNet `metrics.compute_pro`): NON-STANDARD, opt-in only.

Report it as "simplenet_pro (non-standard)"; it is not comparable with the MVTec / anomalib
AU-PRO (`jaxad.metrics.aupro`, methods.md §2.9, §5). What the official code does:

* 200 thresholds `np.arange(min, max, (max − min) / 200)` over all maps; binary map = map > th.
* Per-region overlap on the binary map **dilated with a 5×5 square** (cv2.dilate): for every
  8-connected ground-truth region of every image, the fraction of its pixels covered; PRO = the
  mean over all regions of all images.
* FPR = (undilated positives on background) / (background pixels), global.
* Keep the thresholds with FPR < 0.3, divide FPR by its largest kept value, trapezoid area of PRO
  over FPR in threshold order (sklearn `auc`, which accepts a decreasing x).

Here the same numbers come without a Python loop over thresholds: dilating (map > th) with a
5×5 square equals thresholding the 5×5 maximum filter of the map, so each region's and the
background's counts for all thresholds come from sorted values. Masks must be binary (the
official code gets float masks from a bilinear resize; skimage's `label` truncates them, so its
regions are the pixels equal to 1, as the == 255 masks here, while its FPR weights background
by 1 − mask; on binary masks both agree).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike
from scipy import ndimage

from jaxad.metrics import MetricInputError, connected_components

LABEL = "simplenet_pro (non-standard)"


def _count_above(sorted_values: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
  """How many values are > each threshold."""
  return sorted_values.size - np.searchsorted(sorted_values, thresholds, side="right")


def simplenet_pro(maps_NxHxW: ArrayLike, masks_NxHxW: ArrayLike, num_thresholds: int = 200,
                  fpr_limit: float = 0.3, dilation: int = 5) -> float:
  """The official SimpleNet "PRO" value (module docstring); label it `LABEL` in reports."""
  maps = np.asarray(maps_NxHxW, np.float64)
  masks = np.asarray(masks_NxHxW)
  if maps.ndim != 3 or maps.shape != masks.shape:
    raise MetricInputError(f"simplenet_pro needs maps and masks of the same (N, H, W) shape, got {maps.shape} "
                           f"and {masks.shape}")
  if np.isnan(maps).any():
    raise MetricInputError("anomaly maps contain NaN")
  components = connected_components(masks)
  foreground = components > 0
  if not foreground.any() or foreground.all():
    raise MetricInputError("simplenet_pro needs both anomalous and normal pixels")
  low, high = maps.min(), maps.max()
  if not high > low:
    raise MetricInputError("simplenet_pro needs maps that are not constant")
  thresholds = np.arange(low, high, (high - low) / num_thresholds)

  dilated_maps = ndimage.maximum_filter(maps, size=(1, dilation, dilation), mode="nearest")
  region_of_pixel = components[foreground]
  order = np.lexsort((dilated_maps[foreground], region_of_pixel))
  regions_sorted, values_sorted = region_of_pixel[order], dilated_maps[foreground][order]
  starts = np.flatnonzero(np.r_[True, regions_sorted[1:] != regions_sorted[:-1]])
  ends = np.r_[starts[1:], regions_sorted.size]
  overlaps = [_count_above(values_sorted[s:e], thresholds) / (e - s) for s, e in zip(starts, ends)]
  pro = np.mean(overlaps, axis=0)

  background = np.sort(maps[~foreground])
  fpr = _count_above(background, thresholds) / background.size

  keep = fpr < fpr_limit
  if not keep.any() or fpr[keep].max() == 0:
    raise MetricInputError(f"simplenet_pro: no threshold has 0 < FPR < {fpr_limit}")
  fpr_kept = fpr[keep] / fpr[keep].max()
  pro_kept = pro[keep]
  return float(abs(np.sum(np.diff(fpr_kept) * (pro_kept[1:] + pro_kept[:-1]) / 2.0)))
