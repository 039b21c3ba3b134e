"""The per-sample steps of jaxad.data.transforms as grain transforms (the streaming pipeline and `load_split`).

Kept apart from transforms.py so that code which only needs the pure functions and
`PreprocessConfig` (inference, export, the model configs) does not import grain.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import grain
import numpy as np

from jaxad.data.images import connected_components
from jaxad.data.transforms import PreprocessConfig, normalize_image, resize_image, resize_mask


@dataclasses.dataclass(frozen=True)
class Resize(grain.transforms.Map):
  """Sample dict → the same dict with image (h, w, 3) float32 in [0, 1] and mask (h, w) uint8."""

  image_size: tuple[int, int]
  config: PreprocessConfig

  def map(self, element: dict[str, Any]) -> dict[str, Any]:
    out = dict(element)
    out["image"] = resize_image(element["image"], self.image_size, self.config)
    out["mask"] = resize_mask(element["mask"], self.image_size, self.config)
    out.pop("components", None)  # Stale after resizing; `Finalize` recomputes it when asked.
    return out


class RandomFlip(grain.transforms.RandomMap):
  """Flips image and mask left-right and up-down, each with probability 1/2 (grain-seeded rng)."""

  def random_map(self, element: dict[str, Any], rng: np.random.Generator) -> dict[str, Any]:
    flip_lr, flip_ud = rng.random(2) < 0.5
    out = dict(element)
    for key in ("image", "mask"):
      value = out[key]
      if flip_lr:
        value = value[:, ::-1]
      if flip_ud:
        value = value[::-1]
      out[key] = np.ascontiguousarray(value)
    return out


@dataclasses.dataclass(frozen=True)
class Finalize(grain.transforms.Map):
  """Last per-sample step: normalisation, float mask, typed scalars, optional components."""

  normalize: bool = True
  with_components: bool = False

  def map(self, element: dict[str, Any]) -> dict[str, Any]:
    out = dict(element)
    image = element["image"]
    out["image"] = normalize_image(image) if self.normalize else image.astype(np.float32)
    if self.with_components:
      out["components"] = connected_components(element["mask"])
    out["mask"] = element["mask"].astype(np.float32)
    out["label"] = np.int32(element["label"])
    out["is_segmented"] = np.bool_(element["is_segmented"])
    return out
