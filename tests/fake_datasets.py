"""Tiny fake data made by the tests (no downloads): datasets in published layouts, and a frozen
"backbone" for the engine tests."""

import pickle

import jax
import jax.numpy as jnp
import numpy as np
from PIL import Image

SIZE = (12, 16)  # (H, W) of every fake image


def write_image(path, seed=0, size=SIZE):
  path.parent.mkdir(parents=True, exist_ok=True)
  Image.fromarray(np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)
  return path


def write_mask(path, boxes, value=255, size=SIZE):
  """A mask PNG with `value` inside each (top, left, bottom, right) box."""
  path.parent.mkdir(parents=True, exist_ok=True)
  mask = np.zeros(size, np.uint8)
  for top, left, bottom, right in boxes:
    mask[top:bottom, left:right] = value
  Image.fromarray(mask).save(path)
  return path


def sensum(root, objects=("capsule", "softgel"), folds=("0", "1"), size=SIZE):
  """Per object: normal ids 0-9, defective ids 0-5 (masks); per fold the train / test lists below."""
  for obj in objects:
    for i in range(10):
      write_image(root / obj / "negative" / "data" / f"{i:03d}.png", i, size)
    for i in range(6):
      write_image(root / obj / "positive" / "data" / f"{i:03d}.png", 20 + i, size)
      write_mask(root / obj / "positive" / "annotation" / f"{i:03d}.png", [(2, 2, 5, 7)], size=size)
    for fold in folds:
      split = root / "sensum_splits" / obj / fold
      for folder in ("train", "test"):
        (split / folder).mkdir(parents=True)
      pickle_file(split / "train" / "neg.pckl", [(i, True) for i in range(8)])
      pickle_file(split / "train" / "pos_100.pckl", [(i, True) for i in range(4)])
      pickle_file(split / "train" / "pos_50.pckl", [(i, i < 2) for i in range(4)])
      pickle_file(split / "test" / "neg.pckl", [(8, True), (9, True)])
      pickle_file(split / "test" / "pos.pckl", [(4, True), (5, True)])
  return root


def pickle_file(path, content):
  with open(path, "wb") as f:
    pickle.dump(content, f)




LOCO_DEFECTS = [  # a defects_config.json with one absolute and one relative saturation threshold
    {"defect_name": "missing_pin", "pixel_value": 255, "saturation_threshold": 6, "relative_saturation": False},
    {"defect_name": "scratch", "pixel_value": 134, "saturation_threshold": 0.5, "relative_saturation": True},
]


def mvtec_loco(root, category="juice_bottle", defects_config=True, n_train=2):
  """A tiny MVTec LOCO AD category: two validation and two good test images, and one image per anomaly kind
  with two defect channels (000.png of type 255 over 4 pixels, 001.png of type 134 over 24)."""
  import json
  base = root / category
  for i in range(n_train):
    write_image(base / "train" / "good" / f"{i:03d}.png", i)
  for i in range(2):
    write_image(base / "validation" / "good" / f"{i:03d}.png", 10 + i)
    write_image(base / "test" / "good" / f"{i:03d}.png", 20 + i)
  for defect in ("logical_anomalies", "structural_anomalies"):
    write_image(base / "test" / defect / "000.png", 30)
    write_mask(base / "ground_truth" / defect / "000" / "000.png", [(0, 0, 2, 2)])
    write_mask(base / "ground_truth" / defect / "000" / "001.png", [(8, 10, 12, 16)], value=134)
  if defects_config:
    (base / "defects_config.json").write_text(json.dumps(LOCO_DEFECTS))
  return root


def tiny_frozen(grid: int):
  """(features_fn, params) standing in for a frozen backbone: resize to grid × grid, project 3 → 6, tanh."""
  def features(proj, images):
    x = jax.image.resize(images, (images.shape[0], grid, grid, 3), "linear")
    return jnp.tanh(x @ proj)
  return features, jnp.asarray(np.random.default_rng(0).normal(size=(3, 6)), jnp.float32)
