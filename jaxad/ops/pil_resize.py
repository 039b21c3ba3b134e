"""Pillow's BILINEAR resize of uint8 images, bit-exact, as matrices applied on the device.

Pillow (`Resample.c`, 8 bits per channel) resizes in two passes, horizontal then vertical, each
rounding to uint8. Each output pixel sums its antialiased triangle-filter taps with fixed-point
weights: the float64 weights of `precompute_coeffs`, normalised to sum 1, become integers
`int(0.5 + w · 2^22)`, and the pass outputs `clip((Σ weight · pixel + 2^21) >> 22, 0, 255)`.

Pillow ≤ 12 always runs the horizontal pass first; Pillow 13 runs the vertical one first for some
size pairs, and the rounding in between makes the order matter. `pass_order` therefore asks the
installed Pillow (it resizes a seeded random probe of the same sizes, once per size pair, and
keeps the order whose emulation matches it bit for bit), so the device result equals the host
pipeline's PIL resize whatever Pillow is installed.

The integer sums reach 2^30, beyond float32's exact range, so each weight matrix is split into
base-2^s digits small enough that every per-digit sum stays below 2^24 (exact in float32 at
`Precision.HIGHEST`, in any summation order); the digit sums are recombined in int32. A centre
crop after the resize (torchvision `Resize(int)` + `CenterCrop`) is a slice of the output rows
and columns, i.e. of the matrices' rows.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

PRECISION_BITS = 32 - 8 - 2  # Pillow's fixed-point weights for 8-bit images
_EXACT_FLOAT32 = 1 << 24


def pil_bilinear_weights(in_size: int, out_size: int) -> np.ndarray:
  """(out_size, in_size) int64 fixed-point weights of Pillow's bilinear resize along one axis."""
  scale = in_size / out_size
  filterscale = max(scale, 1.0)
  support = 1.0 * filterscale  # the bilinear filter's support is 1
  ss = 1.0 / filterscale
  weights = np.zeros((out_size, in_size), np.int64)
  for xx in range(out_size):  # the float64 operations of precompute_coeffs, in its order
    center = (xx + 0.5) * scale
    xmin = max(int(center - support + 0.5), 0)
    xmax = min(int(center + support + 0.5), in_size) - xmin
    taps = [max(0.0, 1.0 - abs((x + xmin - center + 0.5) * ss)) for x in range(xmax)]
    total = sum(taps)  # C accumulates left to right, as sum() does
    for x, w in enumerate(taps):
      w = w / total if total != 0.0 else w
      weights[xx, xmin + x] = int(0.5 + w * (1 << PRECISION_BITS)) if w >= 0 else int(-0.5 + w * (1 << PRECISION_BITS))
  return weights


def _digits(weights: np.ndarray) -> tuple[int, list[np.ndarray]]:
  """(bits per digit s, [digit matrices, least significant first]) with every per-digit sum of
  uint8 pixels below 2^24."""
  taps = max(1, int(np.count_nonzero(weights, axis=1).max()))
  bits = max(1, int(math.floor(math.log2(_EXACT_FLOAT32 / (255 * taps)))))
  top = int(weights.max()).bit_length()
  return bits, [((weights >> shift) & ((1 << bits) - 1)).astype(np.float32) for shift in range(0, top, bits)]


def _pass(x, weights: np.ndarray, spec: str):
  """One rounded fixed-point pass: einsum `spec` of the weight matrix with uint8-valued float32 x."""
  bits, digits = _digits(weights)
  total = None
  for k, digit in enumerate(digits):
    part = jnp.einsum(spec, jnp.asarray(digit), x, precision=jax.lax.Precision.HIGHEST).astype(jnp.int32)
    part = part << (bits * k)
    total = part if total is None else total + part
  rounded = (total + (1 << (PRECISION_BITS - 1))) >> PRECISION_BITS
  return jnp.clip(rounded, 0, 255).astype(jnp.float32)


def _host_pass(x_HxW: np.ndarray, weights: np.ndarray, axis: int) -> np.ndarray:
  """One rounded pass in float64 (exact: the sums stay below 2^53), for the order probe."""
  y = np.moveaxis(np.tensordot(weights.astype(np.float64), x_HxW, axes=([1], [axis])), 0, axis)
  return np.clip((y.astype(np.int64) + (1 << (PRECISION_BITS - 1))) >> PRECISION_BITS, 0, 255).astype(np.float64)


@functools.lru_cache(maxsize=256)
def pass_order(in_hw: tuple[int, int], out_hw: tuple[int, int]) -> str:
  """"hv" (horizontal pass first) or "vh": the order the installed Pillow uses for this resize."""
  from PIL import Image
  probe = np.random.default_rng(0).integers(0, 256, in_hw, dtype=np.uint8)
  ref = np.asarray(Image.fromarray(probe).resize(out_hw[::-1], Image.Resampling.BILINEAR), np.float64)
  wh, ww = pil_bilinear_weights(in_hw[0], out_hw[0]), pil_bilinear_weights(in_hw[1], out_hw[1])
  x = probe.astype(np.float64)
  if np.array_equal(_host_pass(_host_pass(x, wh, 0), ww, 1), ref):
    return "vh"
  return "hv"  # Pillow's classic order (also when the two orders agree)


def pil_bilinear_resize(images_BxHxWxC, weights_h: np.ndarray, weights_w: np.ndarray, order: str = "hv"):
  """uint8-valued images (B, H, W, C) → Pillow's bilinear result (B, h, w, C) as float32 integers.

  weights_h (h, H) and weights_w (w, W) come from `pil_bilinear_weights`, optionally sliced to a crop
  (the crop is a slice of the output, so it does not change the pass order: ask `pass_order` with
  the full output size).
  """
  x = images_BxHxWxC.astype(jnp.float32)
  if order == "vh":
    return _pass(_pass(x, weights_h, "oh,bhwc->bowc"), weights_w, "pw,bhwc->bhpc")
  return _pass(_pass(x, weights_w, "pw,bhwc->bhpc"), weights_h, "oh,bhwc->bowc")
