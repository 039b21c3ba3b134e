"""Binary Perlin-noise masks from a PRNG key (SuperSimpleNet's anomaly regions, methods.md §3.5).

Reference: SuperSimpleNet `generate_perlin` / anomalib `generate_perlin_noise` (DRAEM's
`rand_perlin_2d`): on the next power-of-two grid (P_h, P_w) of the feature map, draw per-axis
scales 2^k with k uniform in [0, 6), unit gradients with angles U[0, 2π) on the
(s_h + 1) × (s_w + 1) lattice, quintic fade, bilinear blend of the four corner dot
products, × √2; resize bilinearly (align_corners=False) to the feature grid; threshold
(value > threshold); with probability 1/2 replace the whole mask by zeros.

Everything has static shapes: the gradient lattice is drawn at its largest size
(33 × 33) and indexed by the sampled scale, so the function jits and vmaps.

Deviations: a scale larger than the power-of-two grid is clamped to the grid size; the reference
would fail there. This needs a grid smaller than 32: feature maps of 16 or less, i.e. SuperSimpleNet
images of 64 px or less, such as the quick start's 16 × 16 grid, where scale 32 (drawn for one axis
in 6) becomes 16.
`rescale_if_empty=True` reproduces anomalib's newer fix (#2936: min-max rescale to [−1, 1]
when no value exceeds the threshold); the official code does not do this (default False).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxad.ops.resize import resize

MAX_LOG2_SCALE = 5  # scales 2^0 … 2^5


def next_power_of_two(n: int) -> int:
  return 1 << (int(n) - 1).bit_length()


def _fade(t):
  return 6 * t**5 - 15 * t**4 + 10 * t**3


LATTICE = 2**MAX_LOG2_SCALE + 1


def perlin_noise(angles_LxL, shape_pow2: tuple[int, int], log2_scale_h, log2_scale_w):
  """Perlin noise of `shape_pow2` (powers of two) for traced integer log2 scales.

  `angles_LxL` holds the gradient angles of the largest lattice; entry [i, j] is the
  gradient at lattice point (i, j), as the reference's `angles[i, j]`.
  """
  ph, pw = shape_pow2
  angles = angles_LxL
  grads = jnp.stack([jnp.cos(angles), jnp.sin(angles)], axis=-1)  # (L, L, 2)
  sh = jnp.left_shift(1, log2_scale_h)
  sw = jnp.left_shift(1, log2_scale_w)
  # Grid coordinate of pixel k along an axis: k * s / P; cell = floor, frac = coordinate mod 1.
  coord_h = jnp.arange(ph) * sh / ph
  coord_w = jnp.arange(pw) * sw / pw
  cell_h = jnp.floor(coord_h).astype(jnp.int32)
  cell_w = jnp.floor(coord_w).astype(jnp.int32)
  frac_h = (coord_h - cell_h)[:, None]
  frac_w = (coord_w - cell_w)[None, :]

  def corner(dh, dw):
    g = grads[(cell_h + dh)[:, None], (cell_w + dw)[None, :]]  # (ph, pw, 2)
    return g[..., 0] * (frac_h - dh) + g[..., 1] * (frac_w - dw)

  n00, n10, n01, n11 = corner(0, 0), corner(1, 0), corner(0, 1), corner(1, 1)
  t_h, t_w = _fade(frac_h), _fade(frac_w)
  top = n00 + t_h * (n10 - n00)
  bottom = n01 + t_h * (n11 - n01)
  return jnp.sqrt(2.0) * (top + t_w * (bottom - top))


def perlin_mask(key, shape: tuple[int, int], threshold, *, p_empty: float = 0.5,
                rescale_if_empty: bool = False):
  """One binary (float32 0/1) mask of `shape` (the feature grid)."""
  h, w = shape
  ph, pw = next_power_of_two(h), next_power_of_two(w)
  # One flat uniform draw per mask (scales, the empty flag and the lattice angles): a single
  # threefry call compiles much faster than several, and is as random.
  u = jax.random.uniform(key, (3 + LATTICE * LATTICE,))
  max_h = min(MAX_LOG2_SCALE, ph.bit_length() - 1)
  max_w = min(MAX_LOG2_SCALE, pw.bit_length() - 1)
  log2_h = jnp.floor(u[0] * (MAX_LOG2_SCALE + 1)).astype(jnp.int32)
  log2_w = jnp.floor(u[1] * (MAX_LOG2_SCALE + 1)).astype(jnp.int32)
  empty = u[2] < p_empty
  angles = 2 * jnp.pi * u[3:].reshape(LATTICE, LATTICE)
  noise = perlin_noise(angles, (ph, pw), jnp.minimum(log2_h, max_h), jnp.minimum(log2_w, max_w))
  if rescale_if_empty:
    lo, hi = noise.min(), noise.max()
    rescaled = 2 * (noise - lo) / jnp.maximum(hi - lo, 1e-12) - 1
    noise = jnp.where(jnp.any(noise > threshold), noise, rescaled)
  if (ph, pw) != (h, w):
    noise = resize(noise, (h, w), "bilinear", channels_last=False)
  mask = (noise > threshold).astype(jnp.float32)
  return jnp.where(empty, 0.0, mask)


def perlin_masks(key, n: int, shape: tuple[int, int], threshold, **kwargs):
  """n independent masks, shape (n, h, w)."""
  return jax.vmap(lambda k: perlin_mask(k, shape, threshold, **kwargs))(jax.random.split(key, n))
