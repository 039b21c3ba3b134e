"""Image pre-processing on the device: uint8 (B, H, W, 3) → the network input of a method.

The same steps as the host pipeline (`jaxad.data.transforms.resize_image` + `normalize_image`)
as array functions inside the compiled predict: resize (and, for `resize_shorter`, the centre
crop, folded into the resize matrices), uint8 rounding where the reference resampler works on
uint8 images, /255 and the ImageNet normalisation, all in float32.

Resamplers: "torch-bilinear", "torch-bilinear-antialias" and "cv2-bilinear" use the host's own
matrices (equal up to float32 summation order, so a cv2 rounding can flip by one gray level on
rare pixels); "pil-bilinear" reproduces Pillow's fixed-point two-pass resize bit for bit
(`jaxad.ops.pil_resize`), so SimpleNet's and EfficientAD's device inputs equal the host pipeline's.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from jaxad.data.transforms import IMAGENET_MEAN, IMAGENET_STD, PreprocessConfig, _resized_size_and_crop
from jaxad.errors import DataError
from jaxad.ops.pil_resize import pass_order, pil_bilinear_resize, pil_bilinear_weights
from jaxad.ops.resize import resize_matrix
from jaxad.ops.separable import apply_separable



def resize_matrices(in_hw: tuple[int, int], size: tuple[int, int], config: PreprocessConfig):
  """(mat_h, mat_w) of resize (+ centre crop) from `in_hw` to `size`, or None when it is the identity."""
  if config.image_resize == "none":
    if tuple(in_hw) != tuple(size):
      raise DataError(f"images are {tuple(in_hw)} but image_resize='none' needs {tuple(size)}")
    return None
  (mid_h, mid_w), (top, left) = _resized_size_and_crop(in_hw[0], in_hw[1], tuple(size), config.resize_shorter)
  antialias = config.image_resize == "torch-bilinear-antialias"  # pil-bilinear: _pil_resize_and_crop
  mat_h = resize_matrix(in_hw[0], mid_h, "bilinear", False, antialias)[top:top + size[0]]
  mat_w = resize_matrix(in_hw[1], mid_w, "bilinear", False, antialias)[left:left + size[1]]
  if all(m.shape[0] == m.shape[1] and np.array_equal(m, np.eye(len(m))) for m in (mat_h, mat_w)):
    return None
  return mat_h, mat_w


def preprocess_images(images_BxHxWx3, size: tuple[int, int], config: PreprocessConfig):
  """uint8 images of any size → float32 network input of `size` (jax arrays, traceable)."""
  x = images_BxHxWx3.astype(jnp.float32)
  in_hw = tuple(images_BxHxWx3.shape[1:3])
  if config.image_resize == "pil-bilinear":
    x = _pil_resize_and_crop(x, in_hw, tuple(size), config.resize_shorter)
  else:
    mats = resize_matrices(in_hw, size, config)
    if mats is not None:
      x = apply_separable(x, *mats)
      if config.image_resize == "cv2-bilinear":  # OpenCV resamples uint8 images
        x = jnp.clip(jnp.floor(x + 0.5), 0.0, 255.0)
  x = x / np.float32(255.0)
  if config.normalize:
    x = (x - jnp.asarray(IMAGENET_MEAN)) / jnp.asarray(IMAGENET_STD)
  return x


def _pil_resize_and_crop(x, in_hw: tuple[int, int], size: tuple[int, int], resize_shorter: int | None):
  """Pillow's bilinear resize (to `size`, or of the shorter side to `resize_shorter` + centre crop)."""
  (mid_h, mid_w), (top, left) = _resized_size_and_crop(in_hw[0], in_hw[1], size, resize_shorter)
  if (mid_h, mid_w) == in_hw:  # PIL returns a copy: only the crop remains
    return x[:, top:top + size[0], left:left + size[1]]
  weights_h = pil_bilinear_weights(in_hw[0], mid_h)[top:top + size[0]]
  weights_w = pil_bilinear_weights(in_hw[1], mid_w)[left:left + size[1]]
  return pil_bilinear_resize(x, weights_h, weights_w, pass_order(in_hw, (mid_h, mid_w)))
