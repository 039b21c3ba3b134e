"""The two record types every dataset reader and pipeline share.

A reader turns a dataset root in its published layout into `SampleRef`s (paths and
labels, cheap); `load_sample` (jaxad.data.images) turns one into a `Sample` dict of numpy
arrays. TFDS builders store exactly the `Sample` fields.
"""

from __future__ import annotations

import dataclasses
from typing import TypedDict

import numpy as np

SPLITS = ("train", "validation", "test")


@dataclasses.dataclass(frozen=True)
class SampleRef:
  """One image of a dataset, by reference.

  Attributes:
    image_path: absolute path of the image file.
    mask_paths: ground-truth mask files (several for MVTec LOCO's per-region PNGs; empty for
      normal images and for anomalous images without a mask).
    label: 0 normal, 1 anomalous.
    defect_type: "good" for normal images, otherwise the defect folder/class name.
    split: "train", "validation" or "test".
    is_segmented: True when the pixel mask is known (normal images: all zeros, known);
      False for weakly labelled anomalous images (image label only).
    file_name: path relative to the category root, stable across machines (used as key).
  """

  image_path: str
  mask_paths: tuple[str, ...]
  label: int
  defect_type: str
  split: str
  is_segmented: bool
  file_name: str


class Sample(TypedDict):
  """A loaded sample at the file's own resolution."""

  image: np.ndarray  # (H, W, 3) uint8 RGB
  mask: np.ndarray  # (H, W) uint8 in {0, 1}
  components: np.ndarray  # (H, W) int32 connected-component labels of mask (8-connectivity), 0 = background
  label: int
  defect_type: str
  file_name: str
  is_segmented: bool
