"""jaxad.ops without torch: scipy's Gaussian filter parity and resize invariants."""

import jax.numpy as jnp
import numpy as np
import pytest
import scipy.ndimage

from jaxad.ops.blur import scipy_gaussian_filter, torchvision_gaussian_blur
from jaxad.ops.resize import resize, resize_matrix


@pytest.mark.parametrize("backend", ["numpy", "jax"])
@pytest.mark.parametrize("shape,sigma", [((2, 64, 48), 4.0), ((1, 288, 288), 4.0), ((1, 20, 12), 4.0),
                                         ((3, 9, 7), 1.5)])
def test_scipy_gaussian_filter_matches_scipy(shape, sigma, backend):
  """Includes maps smaller than the radius 16 (scipy reflects repeatedly; numpy 'symmetric' too)."""
  x = np.random.default_rng(0).random(shape, dtype=np.float32)
  expected = np.stack([scipy.ndimage.gaussian_filter(m.astype(np.float64), sigma=sigma) for m in x])
  inputs = x if backend == "numpy" else jnp.asarray(x)
  got = np.asarray(scipy_gaussian_filter(inputs, sigma=sigma))
  np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


def test_scipy_gaussian_filter_channels_last():
  x = np.random.default_rng(1).random((20, 24, 3), dtype=np.float32)
  expected = scipy.ndimage.gaussian_filter(x.astype(np.float64), sigma=(4.0, 4.0, 0.0))
  np.testing.assert_allclose(scipy_gaussian_filter(x, 4.0, channels_last=True), expected, rtol=0, atol=1e-5)


def test_blurs_preserve_constants_and_reject_bad_sizes():
  x = np.full((1, 40, 30), 0.25, np.float32)
  np.testing.assert_allclose(scipy_gaussian_filter(x), x, atol=1e-6)
  np.testing.assert_allclose(torchvision_gaussian_blur(x), x, atol=1e-6)
  with pytest.raises(ValueError, match="odd"):
    torchvision_gaussian_blur(x, kernel_size=24)
  with pytest.raises(ValueError, match="larger"):
    torchvision_gaussian_blur(np.zeros((1, 10, 10), np.float32), kernel_size=25)


@pytest.mark.parametrize("method,align_corners,antialias",
                         [("nearest", False, False), ("bilinear", False, False), ("bilinear", True, False),
                          ("bilinear", False, True)])
def test_resize_matrix_rows_are_convex_weights(method, align_corners, antialias):
  for in_size, out_size in [(900, 256), (18, 36), (7, 1), (1, 5)]:
    mat = resize_matrix(in_size, out_size, method, align_corners, antialias)
    assert mat.shape == (out_size, in_size)
    assert (mat >= 0).all()
    np.testing.assert_allclose(mat.sum(axis=1), 1.0, atol=1e-6)


def test_align_corners_keeps_the_corner_pixels():
  x = np.random.default_rng(2).random((5, 7, 1), dtype=np.float32)
  y = resize(x, (9, 13), align_corners=True)
  for i, j in [(0, 0), (0, -1), (-1, 0), (-1, -1)]:
    np.testing.assert_allclose(y[i, j], x[i, j], atol=1e-6)


def test_same_size_resize_returns_float32_for_integer_inputs():
  x = np.arange(12, dtype=np.uint8).reshape(3, 4, 1)
  for inputs in (x, jnp.asarray(x)):
    y = resize(inputs, (3, 4))
    assert y.dtype == np.float32
    np.testing.assert_array_equal(np.asarray(y), x.astype(np.float32))
