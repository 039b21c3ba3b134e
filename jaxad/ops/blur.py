"""Gaussian smoothing of anomaly maps, as each reference implementation does it.

Two different blurs are used by the methods (methods.md §1.3 item 6) and they are not
interchangeable:

* `torchvision_gaussian_blur` — torchvision `GaussianBlur(kernel_size, sigma)` (SuperSimpleNet
  official; anomalib's kornia blur has the same kernel and border): kernel of odd size k,
  weights exp(−x²/2σ²) normalised, torch "reflect" padding (edge pixel not repeated).
* `scipy_gaussian_filter` — `scipy.ndimage.gaussian_filter(sigma, truncate=4)` (SimpleNet):
  radius round(truncate·σ), scipy's default mode "reflect", which repeats the edge pixel
  (numpy "symmetric").

Both are expressed as separable (n × n) matrices that include the padding, so they apply
to numpy or jax arrays through `apply_separable` (device side inside compiled predict).
"""

from __future__ import annotations

import functools

import numpy as np

from jaxad.ops.separable import apply_separable


def _gaussian_kernel(radius: int, sigma: float) -> np.ndarray:
  x = np.arange(-radius, radius + 1, dtype=np.float64)
  k = np.exp(-0.5 * (x / sigma) ** 2)
  return k / k.sum()


@functools.lru_cache(maxsize=64)
def blur_matrix(n: int, sigma: float, radius: int, pad_mode: str) -> np.ndarray:
  """(n, n) float64 matrix of a 1-D Gaussian blur with the given numpy pad mode."""
  kernel = _gaussian_kernel(radius, sigma)
  # Build the matrix by tracing where each padded index comes from.
  idx = np.pad(np.arange(n), radius, mode=pad_mode)
  mat = np.zeros((n, n), np.float64)
  for i in range(n):
    np.add.at(mat[i], idx[i:i + 2 * radius + 1], kernel)
  return mat


def torchvision_gaussian_blur(x, kernel_size: int = 25, sigma: float = 4.0, *, channels_last: bool = False):
  """torchvision.transforms.functional.gaussian_blur on (..., H, W) maps (or (..., H, W, C))."""
  if kernel_size % 2 != 1:
    raise ValueError(f"kernel_size must be odd, got {kernel_size}")
  radius = kernel_size // 2
  h_axis = -3 if channels_last else -2
  h, w = x.shape[h_axis], x.shape[h_axis + 1]
  if radius >= min(h, w):
    raise ValueError(f"reflect padding of {radius} needs maps larger than {radius}, got {h}x{w}")
  return apply_separable(x, blur_matrix(h, float(sigma), radius, "reflect"),
                         blur_matrix(w, float(sigma), radius, "reflect"), channels_last=channels_last)


def scipy_gaussian_filter(x, sigma: float = 4.0, truncate: float = 4.0, *, channels_last: bool = False):
  """scipy.ndimage.gaussian_filter over the two spatial axes (mode 'reflect' = numpy 'symmetric')."""
  radius = int(truncate * float(sigma) + 0.5)
  h_axis = -3 if channels_last else -2
  h, w = x.shape[h_axis], x.shape[h_axis + 1]
  return apply_separable(x, blur_matrix(h, float(sigma), radius, "symmetric"),
                         blur_matrix(w, float(sigma), radius, "symmetric"), channels_last=channels_last)
