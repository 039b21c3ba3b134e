"""SimpleNet and SuperSimpleNet front-ends against slow, literal numpy versions of the reference procedures."""

import functools

import jax
import numpy as np
import pytest

from jaxad.nn import features


def _bilinear_matrix(n_in: int, n_out: int, align_corners: bool) -> np.ndarray:
  """Direct 1-D bilinear interpolation weights (torch F.interpolate conventions, no antialias)."""
  mat = np.zeros((n_out, n_in))
  for dst in range(n_out):
    if align_corners:
      src = dst * (n_in - 1) / (n_out - 1) if n_out > 1 else 0.0
    else:
      src = max((dst + 0.5) * n_in / n_out - 0.5, 0.0)
    i0 = min(int(np.floor(src)), n_in - 1)
    i1 = min(i0 + 1, n_in - 1)
    mat[dst, i0] += 1.0 - (src - i0)
    mat[dst, i1] += src - i0
  return mat


def _resize(x_BxHxWxC, size, align_corners):
  mat_h = _bilinear_matrix(x_BxHxWxC.shape[1], size[0], align_corners)
  mat_w = _bilinear_matrix(x_BxHxWxC.shape[2], size[1], align_corners)
  return np.einsum("Hh,Ww,bhw...->bHW...", mat_h, mat_w, x_BxHxWxC)


def _adaptive_avg_pool1d(v, n):
  length = v.shape[-1]
  return np.stack([v[..., (i * length) // n:-(-((i + 1) * length) // n)].mean(-1) for i in range(n)], axis=-1)


def _unfold(x_BxHxWxC, p):
  b, h, w, c = x_BxHxWxC.shape
  padded = np.pad(x_BxHxWxC, ((0, 0), (p // 2, p // 2), (p // 2, p // 2), (0, 0)))
  out = np.zeros((b, h, w, c, p, p))
  for kh in range(p):
    for kw in range(p):
      out[..., kh, kw] = padded[:, kh:kh + h, kw:kw + w, :]
  return out


def reference_simplenet(stages, layers, patchsize, pretrain_dim, target_dim):
  """Literal order of SimpleNet `_embed`: unfold → upsample every patch map → pool per layer → stack → pool."""
  b, h, w, _ = stages[layers[0]].shape
  per_layer = []
  for i, name in enumerate(layers):
    patches = _unfold(stages[name].astype(np.float64), patchsize)
    if i > 0:
      patches = _resize(patches, (h, w), align_corners=False)
    per_layer.append(_adaptive_avg_pool1d(patches.reshape(b, h, w, -1), pretrain_dim))
  stacked = np.stack(per_layer, axis=-2).reshape(b, h, w, -1)
  return _adaptive_avg_pool1d(stacked, target_dim)


def reference_supersimplenet(stages, layers, align_corners):
  h, w = (2 * n for n in stages[layers[0]].shape[1:3])
  x = np.concatenate([_resize(stages[name].astype(np.float64), (h, w), align_corners) for name in layers], -1)
  padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
  return sum(padded[:, i:i + h, j:j + w] for i in range(3) for j in range(3)) / 9.0


def _random_stages(rng, sizes):
  return {name: rng.standard_normal((2, h, w, c)).astype(np.float32) for name, (h, w, c) in sizes.items()}


@pytest.mark.parametrize("sizes, layers, patchsize, pretrain_dim, target_dim", [
  # WideResNet-50-2 channels: uniform windows, closed form.
  ({"layer2": (6, 5, 512), "layer3": (3, 3, 1024)}, ("layer2", "layer3"), 3, 1536, 1536),
  # EfficientNet-Lite0 channels (360 and 1008 < 1536): torch's overlapping windows.
  ({"layer2": (5, 7, 40), "layer3": (3, 4, 112)}, ("layer2", "layer3"), 3, 1536, 1536),
  # Three layers, 5×5 patches, ragged windows in both poolings.
  ({"layer1": (8, 6, 6), "layer2": (4, 3, 10), "layer3": (2, 2, 14)}, ("layer1", "layer2", "layer3"), 5, 100, 70),
  # Uniform per-layer windows whose second-stage windows straddle layers (general path).
  ({"layer2": (4, 4, 8), "layer3": (2, 2, 16)}, ("layer2", "layer3"), 3, 24, 16),
])
def test_simplenet_patch_features(rng, sizes, layers, patchsize, pretrain_dim, target_dim):
  stages = _random_stages(rng, sizes)
  got = jax.jit(functools.partial(features.simplenet_patch_features, layers=layers, patchsize=patchsize,
                                  pretrain_dim=pretrain_dim, target_dim=target_dim))(stages)
  want = reference_simplenet(stages, layers, patchsize, pretrain_dim, target_dim)
  assert got.shape == want.shape == (2, *sizes[layers[0]][:2], target_dim)
  np.testing.assert_allclose(np.asarray(got), want, rtol=0, atol=2e-6 * np.abs(want).max())


@pytest.mark.parametrize("align_corners", [True, False])
def test_supersimplenet_features(rng, align_corners):
  stages = _random_stages(rng, {"layer2": (5, 7, 6), "layer3": (3, 4, 10)})
  got = jax.jit(functools.partial(features.supersimplenet_features, align_corners=align_corners))(stages)
  want = reference_supersimplenet(stages, ("layer2", "layer3"), align_corners)
  assert got.shape == want.shape == (2, 10, 14, 16)
  np.testing.assert_allclose(np.asarray(got), want, rtol=0, atol=2e-6 * np.abs(want).max())


def test_adaptive_pool_windows_match_torch_rule():
  starts, ends = features.adaptive_pool_windows(10, 4)
  assert starts.tolist() == [0, 2, 5, 7] and ends.tolist() == [3, 5, 8, 10]


def test_front_end_input_errors(rng):
  stages = _random_stages(rng, {"layer2": (4, 4, 3)})
  with pytest.raises(ValueError, match="layer3"):
    features.simplenet_patch_features(stages)
  with pytest.raises(ValueError, match="odd"):
    features.simplenet_patch_features(stages, layers=("layer2",), patchsize=2)
  with pytest.raises(ValueError, match="layer3"):
    features.supersimplenet_features(stages)
