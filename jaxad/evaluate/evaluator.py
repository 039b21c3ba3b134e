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


def predict_split(predict_fn, states, frozen_vars, images_NxHxWx3: np.ndarray, batch_size: int = 16) -> dict:
  """Host numpy outputs: score (M, N), map_score (M, N), anomaly_map (M, N, H, W)."""
  n = len(images_NxHxWx3)
  batch_size = max(1, min(batch_size, n))
  parts: dict[str, list] = {}
  for start in range(0, n, batch_size):
    chunk = images_NxHxWx3[start:start + batch_size]
    valid = len(chunk)
    if valid < batch_size:
      chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch_size - valid, axis=0)])
    out = jax.device_get(predict_fn(states, frozen_vars, jnp.asarray(chunk)))
    for k, v in out.items():
      parts.setdefault(k, []).append(np.asarray(v)[:, :valid])
  return {k: np.concatenate(v, axis=1) for k, v in parts.items()}


LOCO_KINDS = {"logical_anomalies": "image_auroc_logical", "structural_anomalies": "image_auroc_structural"}


def loco_image_aurocs(scores_N: np.ndarray, split) -> dict:
  """MVTec LOCO AD's image metric, as its official evaluation computes it: the AUROC of each anomaly
  kind against the good images, and their mean (`image_auroc_loco`, the number the EfficientAD paper
  reports); {} for any other test split. `image_auroc` pools both kinds, a count-weighted mix."""
  label = np.asarray(split.label)
  defect_type = np.asarray(split.defect_type)
  if len(defect_type) != len(label) or set(defect_type[label == 1]) != set(LOCO_KINDS):
    return {}
  out = {}
  for kind, key in LOCO_KINDS.items():
    keep = (label == 0) | (defect_type == kind)
    out[key] = metrics_lib.image_auroc(scores_N[keep], label[keep])
  out["image_auroc_loco"] = float(np.mean(list(out.values())))
  return out


def score_members(preds: dict, split) -> list[dict]:
  """All metrics of jaxad.metrics for each member, plus the map-max image AUROC ("seg" score) and, on
  MVTec LOCO AD, the per-kind AUROCs (`loco_image_aurocs`)."""
  rows = []
  for m in range(preds["score"].shape[0]):
    row = metrics_lib.compute_all(preds["score"][m], split.label, preds["anomaly_map"][m], split.mask,
                                  split.components)
    row["image_auroc_map_max"] = metrics_lib.compute_all(preds["map_score"][m], split.label)["image_auroc"]
    row.update(loco_image_aurocs(np.asarray(preds["score"][m]), split))
    rows.append({k: float(v) for k, v in row.items()})
  return rows
