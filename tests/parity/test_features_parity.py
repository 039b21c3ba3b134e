"""SimpleNet / SuperSimpleNet front-ends vs the reference procedures written in torch (methods.md §2.2, §3.3)."""

import functools

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import jax  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from jaxad.nn import features  # noqa: E402

pytestmark = pytest.mark.parity


def torch_simplenet_embed(maps_nchw, patchsize=3, pretrain_dim=1536, target_dim=1536):
  """SimpleNet `_embed` as in DonaldRR/SimpleNet: PatchMaker unfold, patch-map upsampling, MeanMapper, Aggregator."""
  unfold = torch.nn.Unfold(kernel_size=patchsize, stride=1, padding=(patchsize - 1) // 2)
  patches, grids = [], []
  for feats in maps_nchw:
    b, c = feats.shape[:2]
    patches.append(unfold(feats).reshape(b, c, patchsize, patchsize, -1).permute(0, 4, 1, 2, 3))
    grids.append(tuple(feats.shape[2:]))
  ref_h, ref_w = grids[0]
  for i in range(1, len(patches)):
    (h, w), x = grids[i], patches[i]
    x = x.reshape(x.shape[0], h, w, *x.shape[2:]).permute(0, 3, 4, 5, 1, 2)
    lead = x.shape[:-2]
    x = F.interpolate(x.reshape(-1, 1, h, w), size=(ref_h, ref_w), mode="bilinear", align_corners=False)
    x = x.reshape(*lead, ref_h, ref_w).permute(0, 4, 5, 1, 2, 3)
    patches[i] = x.reshape(x.shape[0], -1, *x.shape[-3:])
  flat = [x.reshape(-1, *x.shape[-3:]) for x in patches]
  pooled = [F.adaptive_avg_pool1d(x.reshape(len(x), 1, -1), pretrain_dim).squeeze(1) for x in flat]
  stacked = torch.stack(pooled, dim=1)
  return F.adaptive_avg_pool1d(stacked.reshape(len(stacked), 1, -1), target_dim).reshape(len(stacked), -1)


@pytest.mark.parametrize("shapes, pretrain_dim, target_dim", [
  ([(512, 12, 10), (1024, 6, 5)], 1536, 1536),   # WideResNet-50-2, odd layer3 grid
  ([(40, 9, 7), (112, 5, 4)], 1536, 1536),       # EfficientNet-Lite0
  ([(24, 8, 8), (40, 4, 4), (112, 2, 2)], 100, 70),
])
def test_simplenet_matches_torch(rng, shapes, pretrain_dim, target_dim):
  maps = [rng.standard_normal((2, h, w, c)).astype(np.float32) for c, h, w in shapes]
  names = ("layer1", "layer2", "layer3")[-len(maps):]
  want = torch_simplenet_embed([torch.from_numpy(m).permute(0, 3, 1, 2) for m in maps], 3, pretrain_dim,
                               target_dim).numpy()
  got = jax.jit(functools.partial(features.simplenet_patch_features, layers=names, pretrain_dim=pretrain_dim,
                                  target_dim=target_dim))(dict(zip(names, maps)))
  got = np.asarray(got).reshape(-1, target_dim)  # SimpleNet's rows: batch-major, then (y, x).
  np.testing.assert_allclose(got, want, rtol=0, atol=2e-6 * np.abs(want).max())


@pytest.mark.parametrize("align_corners", [True, False])
def test_supersimplenet_matches_torch(rng, align_corners):
  layer2 = rng.standard_normal((2, 9, 7, 32)).astype(np.float32)
  layer3 = rng.standard_normal((2, 5, 4, 48)).astype(np.float32)
  size = (18, 14)
  upscaled = [F.interpolate(torch.from_numpy(m).permute(0, 3, 1, 2), size=size, mode="bilinear",
                            align_corners=align_corners) for m in (layer2, layer3)]
  want = torch.nn.AvgPool2d(3, stride=1, padding=1)(torch.cat(upscaled, dim=1)).permute(0, 2, 3, 1).numpy()
  got = jax.jit(functools.partial(features.supersimplenet_features, align_corners=align_corners))(
      {"layer2": layer2, "layer3": layer3})
  np.testing.assert_allclose(np.asarray(got), want, rtol=0, atol=2e-6 * np.abs(want).max())
