"""A contact sheet of a dataset category for a quick visual check of images and masks.

One row per test defect type ("good" first), `per_type` images each (the first in sorted
file order), every image scaled to fit a `size`×`size` tile; the mask is shown as a red tint
with a red outline, and each row is labelled with its defect type. Images go through
`load_sample`, so a bad file fails here with the same DataError as in training.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import scipy.ndimage
from PIL import Image, ImageDraw

from jaxad.data.images import load_sample
from jaxad.data.readers import read_dataset
from jaxad.data.records import SampleRef
from jaxad.errors import ConfigError, DataError

_RED = np.array([255, 0, 0], np.float32)
_TINT = 0.35  # opacity of the red fill over anomalous pixels
_LABEL_HEIGHT = 16
_PAD = 4
_BACKGROUND = (32, 32, 32)
_TEXT = (235, 235, 235)


def _tile(ref: SampleRef, size: int) -> Image.Image:
  """The image scaled to fit size×size (aspect kept, top-aligned), mask tinted and outlined in red."""
  sample = load_sample(ref)
  height, width = sample["image"].shape[:2]
  scale = size / max(height, width)
  new_size = (max(1, round(width * scale)), max(1, round(height * scale)))
  image = np.asarray(Image.fromarray(sample["image"]).resize(new_size, Image.Resampling.BILINEAR), np.float32)
  mask = np.asarray(Image.fromarray(sample["mask"] * 255).resize(new_size, Image.Resampling.NEAREST)) > 0
  outline = mask & ~scipy.ndimage.binary_erosion(mask, iterations=1, border_value=0)
  image[mask] = (1 - _TINT) * image[mask] + _TINT * _RED
  image[outline] = _RED
  tile = Image.new("RGB", (size, size), _BACKGROUND)
  tile.paste(Image.fromarray(image.round().astype(np.uint8)), ((size - new_size[0]) // 2, 0))
  return tile


def contact_sheet(root: str | os.PathLike, out_png: str | os.PathLike, *, format: str = "auto",  # noqa: A002
                  category: str | None = None, per_type: int = 4, size: int = 128, **read_options) -> Path:
  """Writes a PNG grid of test images per defect type with their masks in red.

  Args:
    root: dataset root (any layout `read_dataset` reads).
    out_png: output PNG path (parent folders are created).
    format: dataset layout, as `read_dataset`.
    category: category to show (may be None for single-category datasets).
    per_type: images per defect type.
    size: tile side in pixels.
    **read_options: passed to `read_dataset`.

  Returns:
    The written path.

  Raises:
    DataError: as `read_dataset` / `load_sample`, or the PNG cannot be written.
    ConfigError: per_type < 1 or size < 8.
  """
  if per_type < 1 or size < 8:
    raise ConfigError(f"per_type must be >= 1 and size >= 8, got {per_type} and {size}")
  test = read_dataset(root, format=format, category=category, **read_options)["test"]
  by_type: dict[str, list[SampleRef]] = {}
  for ref in test:
    by_type.setdefault(ref.defect_type, []).append(ref)
  defect_types = sorted(by_type, key=lambda name: (name != "good", name))
  if not defect_types:
    raise DataError(f"no test images to show in dataset root {root}")
  width = _PAD + per_type * (size + _PAD)
  row_height = _LABEL_HEIGHT + size + _PAD
  sheet = Image.new("RGB", (width, _PAD + row_height * len(defect_types)), _BACKGROUND)
  draw = ImageDraw.Draw(sheet)
  for row, defect_type in enumerate(defect_types):
    top = _PAD + row * row_height
    refs = by_type[defect_type]
    draw.text((_PAD, top + 2), f"{defect_type} ({len(refs)})", fill=_TEXT)
    for col, ref in enumerate(refs[:per_type]):
      sheet.paste(_tile(ref, size), (_PAD + col * (size + _PAD), top + _LABEL_HEIGHT))
  out = Path(out_png)
  try:
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, format="PNG")
  except OSError as e:
    raise DataError(f"cannot write contact sheet {out}: {e}") from None
  return out
