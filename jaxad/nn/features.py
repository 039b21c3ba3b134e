"""Backbone-agnostic feature front-ends of SimpleNet and SuperSimpleNet (methods.md §2.2, §3.3).

Both take the dict of named stages that every `jaxad.nn` backbone returns, channel-last.

SimpleNet (DonaldRR/SimpleNet `_embed`, `common.py` PatchMaker/MeanMapper/Aggregator):
zero-padded p×p unfold of each layer, flattened in (c, kh, kw) order; deeper layers brought to
the first layer's grid by bilinear resizing (align_corners=False) of the *unfolded* maps;
per-layer `adaptive_avg_pool1d` to `pretrain_dim`; layers stacked; `adaptive_avg_pool1d` of
the concatenation to `target_dim`.
Implementation notes (same numbers up to float32 rounding): the channel pooling is linear and
acts per pixel while the resize acts per channel, so the pooling of a deeper layer runs before
its resize (on 1536 or 768 channels instead of 9·C); the order unfold → resize is kept. When
every window is uniform (WRN: windows of 3/6 then 2), both poolings collapse into one mean over
contiguous groups per layer (groups of 6 of the 4608-long layer2 patch vector and 12 of the
9216-long layer3 vector). Otherwise torch's windows [floor(i·L/n), ceil((i+1)·L/n)) are used.

SuperSimpleNet ("upscaling" extractor, official `model/feature_extractor.py`): every layer
resized bilinearly to 2× the first layer's size, concatenated, then a 3×3 average pool with
stride 1, padding 1 and count_include_pad=True. Resize and pooling are both separable linear
maps, so they are applied as one matrix pair per layer. Official uses align_corners=True,
anomalib align_corners=False.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from jaxad.ops.resize import resize, resize_matrix
from jaxad.ops.separable import apply_separable


def adaptive_pool_windows(length: int, out_size: int) -> tuple[np.ndarray, np.ndarray]:
  """torch `adaptive_avg_pool1d` windows: start = floor(i·L/n), end = ceil((i+1)·L/n)."""
  i = np.arange(out_size)
  return (i * length) // out_size, -((-(i + 1) * length) // out_size)


def adaptive_avg_pool_channels(x, out_size: int):
  """`adaptive_avg_pool1d` over the last axis of x (any leading shape)."""
  length = x.shape[-1]
  if length % out_size == 0:
    return x.reshape(*x.shape[:-1], out_size, length // out_size).mean(-1)
  starts, ends = adaptive_pool_windows(length, out_size)
  width = int((ends - starts).max())
  index = starts[:, None] + np.arange(width)[None, :]
  weights = (index < ends[:, None]) / (ends - starts)[:, None]
  gathered = x[..., np.minimum(index, length - 1)]
  return (gathered * jnp.asarray(weights, x.dtype)).sum(-1)


def unfold_patches(feats_BxHxWxC, patchsize: int = 3):
  """Zero-padded stride-1 unfold; returns (B, H, W, C·p·p) flattened in (c, kh, kw) order."""
  if patchsize % 2 != 1:
    raise ValueError(f"patchsize must be odd (the grid must keep its size), got {patchsize}")
  pad = patchsize // 2
  # A one-hot grouped conv: exact, channel-major (c, kh, kw) like torch's Unfold.
  return jax.lax.conv_general_dilated_patches(
      feats_BxHxWxC, (patchsize, patchsize), (1, 1), ((pad, pad), (pad, pad)),
      dimension_numbers=("NHWC", "OIHW", "NHWC"), precision=jax.lax.Precision.HIGHEST)


def _check_layers(stages: Mapping, layers: Sequence[str]) -> None:
  missing = [name for name in layers if name not in stages]
  if missing or not layers:
    raise ValueError(f"front-end needs stages {tuple(layers)}, the backbone returned {tuple(stages)}")


def _uniform_group_sizes(lengths: list[int], pretrain_dim: int, target_dim: int) -> list[int] | None:
  """Per-layer group sizes of the closed form, or None when some window is not uniform."""
  total = len(lengths) * pretrain_dim
  if total % target_dim or any(n % pretrain_dim for n in lengths):
    return None
  pairs = total // target_dim
  if pretrain_dim % pairs:
    return None  # A second-stage window would straddle two layers.
  return [n // pretrain_dim * pairs for n in lengths]


def simplenet_patch_features(stages: Mapping[str, jnp.ndarray], layers: Sequence[str] = ("layer2", "layer3"),
                             patchsize: int = 3, pretrain_dim: int = 1536, target_dim: int = 1536):
  """SimpleNet's aggregated patch features on the first layer's grid.

  Args:
    stages: backbone output {name: feats_BxhxwxC}.
    layers: the stages to use; the first one sets the output grid.
    patchsize: unfold window (odd).
    pretrain_dim: per-layer pooled length ("pretrain_embed_dimension").
    target_dim: final length ("target_embed_dimension").

  Returns:
    feats_BxHxWxD with D = target_dim; SimpleNet's rows are `.reshape(-1, D)` (batch-major, then y, x).
  """
  _check_layers(stages, layers)
  out_hw = stages[layers[0]].shape[1:3]
  lengths = [stages[name].shape[-1] * patchsize * patchsize for name in layers]
  groups = _uniform_group_sizes(lengths, pretrain_dim, target_dim)
  pooled = []
  for i, name in enumerate(layers):
    patches = unfold_patches(stages[name], patchsize)
    if groups is not None:
      layer = adaptive_avg_pool_channels(patches, lengths[i] // groups[i])
    else:
      layer = adaptive_avg_pool_channels(patches, pretrain_dim)
    if i > 0:
      layer = resize(layer, out_hw, "bilinear", align_corners=False)
    pooled.append(layer)
  stacked = jnp.concatenate(pooled, axis=-1)
  return stacked if groups is not None else adaptive_avg_pool_channels(stacked, target_dim)


def _box3_matrix(n: int) -> np.ndarray:
  """1-D 3-tap mean with zero padding counted (AvgPool 3/1/1, count_include_pad=True)."""
  return (np.abs(np.arange(n)[:, None] - np.arange(n)[None, :]) <= 1) / 3.0


def supersimplenet_features(stages: Mapping[str, jnp.ndarray], layers: Sequence[str] = ("layer2", "layer3"),
                            align_corners: bool = True):
  """SuperSimpleNet's upscaled, concatenated and 3×3-averaged features.

  Args:
    stages: backbone output {name: feats_BxhxwxC}.
    layers: stages to concatenate, in channel order; the output grid is 2× the first one's.
    align_corners: bilinear convention (official SSN True, anomalib False).

  Returns:
    feats_BxHxWxC with (H, W) = 2 × the first layer's size and C = the sum of the layers' channels.
  """
  _check_layers(stages, layers)
  h, w = (2 * n for n in stages[layers[0]].shape[1:3])
  box_h, box_w = _box3_matrix(h), _box3_matrix(w)
  maps = []
  for name in layers:
    in_h, in_w = stages[name].shape[1:3]
    mat_h = box_h @ resize_matrix(in_h, h, "bilinear", align_corners)
    mat_w = box_w @ resize_matrix(in_w, w, "bilinear", align_corners)
    maps.append(apply_separable(stages[name], mat_h, mat_w))
  return jnp.concatenate(maps, axis=-1)
