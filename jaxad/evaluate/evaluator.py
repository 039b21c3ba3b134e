"""Runs a method's compiled predict over a split for M stacked members and scores it.

The frozen features of each batch are computed once and shared by all members; the
predict function (resize, blur, sigmoid included) runs on the device, compiled once per
batch shape (the last batch is padded, so a split compiles exactly once).
"""

from __future__ import annotations

import functools

import numpy as np
import jax
import jax.numpy as jnp

from jaxad import metrics as metrics_lib
from jaxad.data import loco_channels
from jaxad.infer.engine import pad_batch
from jaxad.ops.resize import resize


@functools.lru_cache(maxsize=16)
def make_predict_fn(method, static, features_fn, image_hw: tuple[int, int], mesh=None):
  """jit((states_M, frozen_vars, images_BxHxWx3) → dict of (M, B, ...) arrays).

  Cached: the chunks and categories of a sweep share one compilation per shape.
  mesh: members split over its "members" axis (`shard_map`, as the training step of a sweep).
  """

  def run(states, frozen_vars, images):
    feats = features_fn(frozen_vars, images)
    return jax.vmap(lambda s: method.predict(static, s, feats, image_hw))(states)

  if mesh is not None:
    spec = jax.sharding.PartitionSpec
    run = jax.shard_map(run, mesh=mesh, in_specs=(spec("members"), spec(), spec()), out_specs=spec("members"))
  return jax.jit(run)


def predict_split(predict_fn, states, frozen_vars, images_NxHxWx3: np.ndarray, batch_size: int = 16,
                  progress: bool = False) -> dict:
  """Host numpy outputs: score (M, N), map_score (M, N), anomaly_map (M, N, H, W); a progress bar on request."""
  from tqdm.auto import tqdm
  n = len(images_NxHxWx3)
  batch_size = max(1, min(batch_size, n))
  parts: dict[str, list] = {}
  with tqdm(total=n, desc="predicting", unit="img", leave=False, disable=not progress) as bar:
    for start in range(0, n, batch_size):
      chunk = images_NxHxWx3[start:start + batch_size]
      valid = len(chunk)
      out = jax.device_get(predict_fn(states, frozen_vars, jnp.asarray(pad_batch(chunk, batch_size))))
      for k, v in out.items():
        parts.setdefault(k, []).append(np.asarray(v)[:, :valid])
      bar.update(valid)
  return {k: np.concatenate(v, axis=1) for k, v in parts.items()}


LOCO_KINDS = {kind: kind.split("_")[0] for kind in loco_channels.KINDS}  # folder → report name


def _loco_subsets(split) -> dict[str, np.ndarray]:
  """{"logical" / "structural": indices of that kind's images and the good ones}, as MVTec LOCO AD's
  official evaluation scores each kind; {} for any other test split."""
  label = np.asarray(split.label)
  defect_type = np.asarray(split.defect_type)
  if len(defect_type) != len(label) or set(defect_type[label == 1]) != set(LOCO_KINDS):
    return {}
  return {name: np.flatnonzero((label == 0) | (defect_type == kind)) for kind, name in LOCO_KINDS.items()}


def loco_image_aurocs(scores_N: np.ndarray, split) -> dict:
  """MVTec LOCO AD's image metric, as its official evaluation computes it: the AUROC of each anomaly
  kind against the good images, and their mean (`image_auroc_loco`, the number the EfficientAD paper
  reports); {} for any other test split. `image_auroc` pools both kinds, a count-weighted mix."""
  label = np.asarray(split.label)
  out = {f"image_auroc_{name}": metrics_lib.image_auroc(scores_N[keep], label[keep])
         for name, keep in _loco_subsets(split).items()}
  if out:
    out["image_auroc_loco"] = float(np.mean(list(out.values())))
  return out


def scores_at_original_size(static) -> bool:
  """Whether a method's test metrics are taken at each image's original size (EfficientAD
  `eval_size="original"`); its splits must then carry `original_mask`."""
  return getattr(static, "eval_size", "input") == "original"


@functools.partial(jax.jit, static_argnums=1)
def _resize_grid(grid_BxHxW, size: tuple[int, int]):
  return resize(grid_BxHxW, size, "bilinear", align_corners=False, antialias=False, channels_last=False)


def _same_size_runs(sizes: list[tuple[int, int]], limit: int):
  """[start, stop) runs of consecutive images of one size, at most `limit` long."""
  start = 0
  for i in range(1, len(sizes) + 1):
    if i == len(sizes) or sizes[i] != sizes[start] or i - start == limit:
      yield start, i
      start = i


def original_size_metrics(grid_NxHxW: np.ndarray, split, batch_size: int = 8) -> dict:
  """One member's metrics with its maps at each test image's original size (nelson / MVTec protocol).

  Each map is resized (PyTorch bilinear) from its grid to the size of the image's original mask; the
  image score is its maximum. Pixel metrics pool every pixel of every image (any mix of sizes): the
  maps and 8-connected regions are laid end to end, region labels made unique per image.
  """
  masks = split.original_mask
  if masks is None or len(masks) != len(grid_NxHxW):
    raise ValueError("original-size scoring needs the test split loaded with original_masks=True")
  sizes = [tuple(m.shape) for m in masks]
  starts = np.cumsum([0] + [h * w for h, w in sizes])
  total = int(starts[-1])
  maps_P = np.empty(total, np.float32)
  regions_P = np.zeros(total, np.int32)
  scores_N = np.empty(len(masks), np.float32)
  at, regions = 0, 0
  for start, stop in _same_size_runs(sizes, batch_size):
    resized = np.asarray(_resize_grid(jnp.asarray(grid_NxHxW[start:stop]), sizes[start]))
    for i, map_HxW in zip(range(start, stop), resized):
      n = map_HxW.size
      maps_P[at:at + n] = map_HxW.reshape(-1)
      scores_N[i] = map_HxW.max()
      labels = metrics_lib.connected_components(masks[i])
      regions_P[at:at + n] = np.where(labels > 0, labels + regions, 0).reshape(-1)
      regions += int(labels.max())
      at += n
  shape = (1, total, 1)  # one "image": the region labels are already unique across images
  row = metrics_lib.compute_all(scores_N, split.label, maps_P.reshape(shape),
                                components_NxHxW=regions_P.reshape(shape))
  row["image_auroc_map_max"] = row["image_auroc"]
  row.update(loco_image_aurocs(scores_N, split))
  del regions_P
  channels = getattr(split, "original_channels", None)
  if channels is not None:
    maps = [maps_P[a:b] for a, b in zip(starts[:-1], starts[1:])]
    row.update(loco_au_spros(maps, channels, split))
  return row


SPRO_FPR_LIMIT = 0.05  # the MVTec LOCO AD paper's and evaluation's main integration limit


def loco_au_spros(maps: list, channels: list, split) -> dict:
  """MVTec LOCO AD's localisation metric as its official evaluation reports it: the AU-sPRO up to FPR
  0.05 of each anomaly kind with the good images (`au_spro_logical`, `au_spro_structural`) and their
  mean (`au_spro`). Maps at each image's original size; channels from `jaxad.data.loco_channels`."""
  out = {f"au_spro_{name}": metrics_lib.au_spro(
      [maps[i] for i in keep], [[(c.pixels, c.saturation_area) for c in channels[i]] for i in keep], SPRO_FPR_LIMIT)
      for name, keep in _loco_subsets(split).items()}
  if out:
    out["au_spro"] = float(np.mean(list(out.values())))
  return out


def score_members(preds: dict, split, official_image_scores=None) -> list[dict]:
  """All metrics of jaxad.metrics for each member, plus the map-max image AUROC ("seg" score) and, on
  MVTec LOCO AD, the per-kind AUROCs (`loco_image_aurocs`). Predictions with a "grid_map" are
  scored at each image's original size (`original_size_metrics`). With `official_image_scores`
  (`Method.official_image_scores`), image AUROC and AP of the scores as the reference ranks them too.
  A member whose predictions are not all finite gets an empty row (no metrics)."""
  rows = []
  for m in range(preds["score"].shape[0]):
    if not all(np.isfinite(preds[k][m]).all() for k in ("score", "anomaly_map", "grid_map") if k in preds):
      rows.append({})  # a diverged member (frozen in a sweep): its metrics are undefined
      continue
    if "grid_map" in preds:
      row = original_size_metrics(preds["grid_map"][m], split)
    else:
      row = metrics_lib.compute_all(preds["score"][m], split.label, preds["anomaly_map"][m], split.mask,
                                    split.components)
      row["image_auroc_map_max"] = metrics_lib.compute_all(preds["map_score"][m], split.label)["image_auroc"]
      row.update(loco_image_aurocs(np.asarray(preds["score"][m]), split))
    if official_image_scores is not None:
      official = metrics_lib.compute_all(official_image_scores(np.asarray(preds["score"][m])), split.label)
      row.update(image_auroc_official=official["image_auroc"], image_ap_official=official["image_ap"])
    rows.append({k: float(v) for k, v in row.items()})
  return rows
