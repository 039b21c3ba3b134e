"""EfficientAD's autoencoder input augmentation (methods.md §4.5), on the device.

One of {brightness, contrast, saturation}, chosen uniformly per image, with a factor
U(lo, hi) = U(0.8, 1.2): torchvision `ColorJitter(0.2)` variants in a `RandomChoice`
(nelson, on PIL images) or the functional adjustments on [0, 1] tensors (anomalib). This is
the float-tensor form (torchvision `adjust_*`): brightness x·f; contrast
f·x + (1 − f)·mean(gray(x)); saturation f·x + (1 − f)·gray(x); each clamped to [0, 1], with
gray = 0.2989 R + 0.587 G + 0.114 B. Input and output are ImageNet-normalised.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxad.data.transforms import IMAGENET_MEAN, IMAGENET_STD

_GRAY = (0.2989, 0.587, 0.114)


def color_adjust(images01_BxHxWx3, choice_B, factor_B):
  """Applies brightness (0), contrast (1) or saturation (2) with `factor_B` to [0, 1] images."""
  f = factor_B[:, None, None, None]
  gray = jnp.tensordot(images01_BxHxWx3, jnp.asarray(_GRAY, images01_BxHxWx3.dtype), axes=([-1], [0]))[..., None]
  brightness = images01_BxHxWx3 * f
  contrast = f * images01_BxHxWx3 + (1 - f) * gray.mean(axis=(1, 2, 3), keepdims=True)
  saturation = f * images01_BxHxWx3 + (1 - f) * gray
  c = choice_B[:, None, None, None]
  out = jnp.where(c == 0, brightness, jnp.where(c == 1, contrast, saturation))
  return jnp.clip(out, 0.0, 1.0)


def augment_ae_input(key, images_BxHxWx3, lo: float = 0.8, hi: float = 1.2):
  """Random colour adjustment of ImageNet-normalised images (one choice and factor per image)."""
  mean, std = jnp.asarray(IMAGENET_MEAN), jnp.asarray(IMAGENET_STD)
  k_choice, k_factor = jax.random.split(key)
  b = images_BxHxWx3.shape[0]
  choice = jax.random.randint(k_choice, (b,), 0, 3)
  factor = jax.random.uniform(k_factor, (b,), images_BxHxWx3.dtype, lo, hi)
  adjusted = color_adjust(images_BxHxWx3 * std + mean, choice, factor)
  return (adjusted - mean) / std
