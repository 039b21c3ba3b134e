"""jaxad.ops.resize / blur against torch.nn.functional.interpolate and torchvision's gaussian_blur."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision_functional = pytest.importorskip("torchvision.transforms.functional")

import jax.numpy as jnp  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from jaxad.ops.blur import torchvision_gaussian_blur  # noqa: E402
from jaxad.ops.resize import resize, resize_matrix  # noqa: E402

pytestmark = pytest.mark.parity

# (in H, in W) -> (out H, out W): the project's sizes (128→56, 64→36, 18→36), mixed and odd ones.
# Large sizes (900→256) are checked through their 1-D matrices below (the full numpy resize of a
# 900×900 image is slow to compute, the matrices are what matters).
SIZE_CASES = [
    ((128, 128), (56, 56)),
    ((64, 64), (36, 36)),
    ((18, 18), (36, 36)),
    ((37, 20), (11, 64)),
    ((333, 47), (1000, 47)),
]
MODES = [
    ("nearest", {}),
    ("bilinear", {"align_corners": False}),
    ("bilinear", {"align_corners": True}),
    ("bilinear", {"align_corners": False, "antialias": True}),
    ("bilinear", {"align_corners": True, "antialias": True}),
]
BILINEAR = [(ac, aa) for ac in (False, True) for aa in (False, True)]


def _torch_resize(x_BxHxWxC: np.ndarray, size, mode: str, **kwargs) -> np.ndarray:
  t = torch.from_numpy(x_BxHxWxC).permute(0, 3, 1, 2)
  return F.interpolate(t, size=size, mode=mode, **kwargs).permute(0, 2, 3, 1).numpy()


@pytest.mark.parametrize("backend", ["numpy", "jax"])
@pytest.mark.parametrize("align_corners,antialias", BILINEAR)
@pytest.mark.parametrize("in_size,out_size", SIZE_CASES)
def test_bilinear_matches_torch(in_size, out_size, align_corners, antialias, backend):
  x = np.random.default_rng(0).random((1, *in_size, 2), dtype=np.float32)
  expected = _torch_resize(x, out_size, "bilinear", align_corners=align_corners, antialias=antialias)
  inputs = x if backend == "numpy" else jnp.asarray(x)
  got = resize(inputs, out_size, "bilinear", align_corners=align_corners, antialias=antialias)
  assert isinstance(got, np.ndarray) == (backend == "numpy")
  np.testing.assert_allclose(np.asarray(got), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("backend", ["numpy", "jax"])
@pytest.mark.parametrize("in_size,out_size", SIZE_CASES)
def test_nearest_matches_torch(in_size, out_size, backend):
  x = np.random.default_rng(1).random((1, *in_size, 2), dtype=np.float32)
  expected = _torch_resize(x, out_size, "nearest")
  inputs = x if backend == "numpy" else jnp.asarray(x)
  np.testing.assert_allclose(np.asarray(resize(inputs, out_size, "nearest")), expected, rtol=0, atol=1e-5)


def test_channels_first_maps_match_torch():
  x = np.random.default_rng(2).random((3, 36, 20), dtype=np.float32)
  expected = F.interpolate(torch.from_numpy(x)[:, None], size=(256, 96), mode="bilinear").numpy()[:, 0]
  got = resize(jnp.asarray(x), (256, 96), "bilinear", channels_last=False)
  np.testing.assert_allclose(np.asarray(got), expected, rtol=0, atol=1e-5)


def _torch_matrix(in_size: int, out_size: int, mode: str, kwargs: dict) -> np.ndarray:
  """torch's 1-D resize matrix: resizing the width of an identity image gives its transpose."""
  eye = torch.eye(in_size, dtype=torch.float32)[None, None]
  return F.interpolate(eye, size=(in_size, out_size), mode=mode, **kwargs)[0, 0].numpy().T


def _jaxad_matrix(in_size: int, out_size: int, mode: str, kwargs: dict) -> np.ndarray:
  return resize_matrix(in_size, out_size, mode, kwargs.get("align_corners", False), kwargs.get("antialias", False))


@pytest.mark.parametrize("mode,kwargs", MODES)
def test_all_small_size_pairs_match_torch(mode, kwargs):
  """Every 1-D resize between sizes 1..32."""
  for in_size in range(1, 33):
    for out_size in range(1, 33):
      np.testing.assert_allclose(_jaxad_matrix(in_size, out_size, mode, kwargs),
                                 _torch_matrix(in_size, out_size, mode, kwargs),
                                 rtol=0, atol=1e-6, err_msg=f"{mode} {kwargs} {in_size}->{out_size}")


@pytest.mark.parametrize("mode,kwargs", MODES)
@pytest.mark.parametrize("in_size,out_size", [(900, 256), (256, 900), (1000, 333), (333, 1000), (256, 64)])
def test_large_size_matrices_match_torch(in_size, out_size, mode, kwargs):
  """Large inputs, where float32 source coordinates (as torch computes them) matter."""
  np.testing.assert_allclose(_jaxad_matrix(in_size, out_size, mode, kwargs),
                             _torch_matrix(in_size, out_size, mode, kwargs), rtol=0, atol=1e-6)


@pytest.mark.parametrize("backend", ["numpy", "jax"])
@pytest.mark.parametrize("shape", [(2, 64, 48), (1, 30, 30), (1, 256, 256)])
def test_torchvision_gaussian_blur_matches(shape, backend):
  x = np.random.default_rng(3).random(shape, dtype=np.float32)
  expected = torchvision_functional.gaussian_blur(torch.from_numpy(x)[:, None], kernel_size=[25, 25],
                                                  sigma=[4.0, 4.0])[:, 0].numpy()
  inputs = x if backend == "numpy" else jnp.asarray(x)
  got = torchvision_gaussian_blur(inputs, kernel_size=25, sigma=4.0)
  np.testing.assert_allclose(np.asarray(got), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("hw", [(16, 16), (33, 45), (31, 31)])
def test_penalty_transform_equals_torchvision(hw):
  """EfficientAD's penalty transform, Resize((2h, 2w)) → CenterCrop((h, w)), bit for bit on PIL images,
  odd sizes included (torchvision rounds the crop corner half to even)."""
  from PIL import Image
  from torchvision import transforms
  from jaxad.models.efficient_ad.penalty import nelson_transform
  image = np.random.default_rng(0).integers(0, 256, (50, 70, 3), np.uint8)
  want = transforms.Compose([transforms.Resize((2 * hw[0], 2 * hw[1])), transforms.CenterCrop(hw)])
  np.testing.assert_array_equal(nelson_transform(image, hw), np.asarray(want(Image.fromarray(image))))
