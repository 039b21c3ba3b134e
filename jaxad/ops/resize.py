"""Resizing with PyTorch's exact semantics (`torch.nn.functional.interpolate`).

`jax.image.resize` antialiases when shrinking and has no `align_corners`; the three methods
were trained with specific PyTorch resizes (methods.md §1.3), so jaxad reproduces them:

* bilinear, `align_corners=False`: source = (dst + 0.5)·in/out − 0.5, clamped at 0;
  this is also OpenCV's INTER_LINEAR (used by SuperSimpleNet's albumentations pipeline) up to
  OpenCV's 11-bit fixed-point rounding of uint8 images.
* bilinear, `align_corners=True`: source = dst·(in − 1)/(out − 1).
* bilinear with `antialias=True` (torchvision `Resize`, ≈ PIL bilinear): a triangle filter
  widened by the scale factor when shrinking, weights normalised per output pixel.
* nearest (PyTorch's legacy "nearest" = OpenCV INTER_NEAREST): source = floor(dst·in/out).

Source coordinates are computed in float32 as PyTorch's kernels do for float32 tensors
(scale = (float)in/out; for align_corners=False, scale·(dst + 0.5) − 0.5 rounded once, as the
FMA of its compiled CPU/CUDA kernels), so results match torch on float32 to ~1e-7. Exact
float64 coordinates differ from torch float32 by up to ~1e-4 for large inputs, and nearest
indices by one pixel for some size pairs (e.g. 14 → 46).
"""

from __future__ import annotations

import functools
from typing import Literal

import numpy as np

from jaxad.ops.separable import apply_separable

Method = Literal["bilinear", "nearest"]


@functools.lru_cache(maxsize=256)
def resize_matrix(in_size: int, out_size: int, method: Method = "bilinear",
                  align_corners: bool = False, antialias: bool = False) -> np.ndarray:
  """The (out_size, in_size) float64 matrix of a 1-D PyTorch resize."""
  if in_size < 1 or out_size < 1:
    raise ValueError(f"resize sizes must be positive, got {in_size} -> {out_size}")
  mat = np.zeros((out_size, in_size), np.float64)
  dst = np.arange(out_size)
  if method == "nearest":
    if out_size == in_size:
      src = dst
    elif out_size == 2 * in_size:
      src = dst // 2
    else:  # floorf(dst · (float)in/out) in float32, as torch's nearest_idx.
      src = np.floor(dst.astype(np.float32) * (np.float32(in_size) / np.float32(out_size))).astype(int)
    mat[dst, np.minimum(src, in_size - 1)] = 1.0
    return mat
  if method != "bilinear":
    raise ValueError(f"unknown resize method {method!r}")
  if align_corners:
    scale = np.float32(in_size - 1) / np.float32(out_size - 1) if out_size > 1 else np.float32(0.0)
  else:
    scale = np.float32(in_size) / np.float32(out_size)
  if antialias:
    support = float(scale) if scale >= 1.0 else 1.0
    inv = 1.0 / float(scale) if scale >= 1.0 else 1.0
    for i in range(out_size):
      center = float(np.float32(float(scale) * (i + 0.5)))  # torch stores the centre as float32.
      lo = max(int(center - support + 0.5), 0)
      hi = min(int(center + support + 0.5), in_size)
      j = np.arange(lo, hi)
      w = np.clip(1.0 - np.abs((j - center + 0.5) * inv), 0.0, None)
      total = w.sum()
      if total > 0:
        mat[i, lo:hi] = w / total
    return mat
  if align_corners:
    src = dst.astype(np.float32) * scale
  else:  # One rounding of scale·(dst + 0.5) − 0.5: torch's compiled kernels fuse it into an FMA.
    src = np.maximum((float(scale) * (dst + 0.5) - 0.5).astype(np.float32), np.float32(0.0))
  i0 = np.minimum(np.floor(src).astype(int), in_size - 1)
  i1 = np.minimum(i0 + 1, in_size - 1)
  frac = np.clip(src - i0.astype(np.float32), np.float32(0.0), np.float32(1.0))
  np.add.at(mat, (dst, i0), (np.float32(1.0) - frac).astype(np.float64))
  np.add.at(mat, (dst, i1), frac.astype(np.float64))
  return mat


def resize(x, size: tuple[int, int], method: Method = "bilinear", *, align_corners: bool = False,
           antialias: bool = False, channels_last: bool = True):
  """Resizes the spatial axes of x (numpy or jax; (..., H, W, C) or (..., H, W)) to `size`.

  Returns float32. Integer inputs are converted first; round the result yourself if needed.
  """
  h_axis = -3 if channels_last else -2
  in_h, in_w = x.shape[h_axis], x.shape[h_axis + 1]
  out_h, out_w = int(size[0]), int(size[1])
  if (in_h, in_w) == (out_h, out_w) and not antialias:
    if isinstance(x, np.ndarray):
      return np.asarray(x, np.float32)
    return x if np.issubdtype(x.dtype, np.floating) else x.astype(np.float32)
  mat_h = resize_matrix(in_h, out_h, method, align_corners, antialias)
  mat_w = resize_matrix(in_w, out_w, method, align_corners, antialias)
  return apply_separable(x, mat_h, mat_w, channels_last=channels_last)


def shorter_side_size(h: int, w: int, shorter: int) -> tuple[int, int]:
  """torchvision `Resize(int)`: scales the shorter side to `shorter`, keeping the aspect ratio."""
  if h <= w:
    return shorter, int(shorter * w / h)
  return int(shorter * h / w), shorter


def center_crop_box(h: int, w: int, crop: int) -> tuple[int, int]:
  """Top-left corner of torchvision's `CenterCrop(crop)` (rounds like torchvision)."""
  return int(round((h - crop) / 2.0)), int(round((w - crop) / 2.0))


