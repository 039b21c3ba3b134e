"""Separable linear maps on the two spatial axes of channel-last arrays.

Resizing and blurring an image are both linear along each axis, so each is a pair of small
matrices (out_h × in_h, out_w × in_w) built once on the host in float64. Applying them is
two matmuls, which is exact (up to float32 rounding), works on numpy and jax arrays alike,
runs well on GPU/TPU matrix units and needs no gather.
"""

from __future__ import annotations

import numpy as np


def apply_separable(x, mat_h: np.ndarray, mat_w: np.ndarray, *, channels_last: bool = True):
  """Returns `mat_h @ x @ mat_w.T` over the spatial axes of x.

  Args:
    x: array of shape (..., H, W, C) if channels_last else (..., H, W); numpy or jax.
    mat_h: (H_out, H) matrix.
    mat_w: (W_out, W) matrix.
    channels_last: whether x has a trailing channel axis.

  Returns:
    Array of shape (..., H_out, W_out[, C]), float32 (numpy in → numpy out, jax in → jax out).
  """
  if isinstance(x, np.ndarray) or np.isscalar(x):
    xp, kw = np, {"optimize": True}
    x = np.asarray(x, np.float32)
  else:
    import jax
    import jax.numpy as jnp
    xp, kw = jnp, {"precision": jax.lax.Precision.HIGHEST}
    if not jnp.issubdtype(x.dtype, jnp.floating):
      x = x.astype(jnp.float32)
  mat_h = xp.asarray(mat_h, dtype=x.dtype)
  mat_w = xp.asarray(mat_w, dtype=x.dtype)
  if channels_last:
    y = xp.einsum("oh,...hwc->...owc", mat_h, x, **kw)
    return xp.einsum("pw,...owc->...opc", mat_w, y, **kw)
  y = xp.einsum("oh,...hw->...ow", mat_h, x, **kw)
  return xp.einsum("pw,...ow->...op", mat_w, y, **kw)
