"""EfficientAD networks in Linen, NHWC (methods.md §4.1–4.2).

Reference: anomalib 2.7.0 `efficient_ad/torch_model.py` (`SmallPatchDescriptionNetwork`,
`MediumPatchDescriptionNetwork`, `Encoder`, `Decoder`, `AutoEncoder`); same layers as
nelson1425/EfficientAD. Parameter names follow anomalib (`conv1..conv4` / `conv1..conv6`,
`encoder.enconv1..6`, `decoder.deconv1..8`) so `convert.py` is a table.

Deviation: anomalib ImageNet-normalises the [0, 1] input inside every PDN/AE forward; here the
modules take already normalised images (`imagenet_normalize`), as nelson's dataset transform.
Average pooling counts the zero padding (torch `count_include_pad=True`); decoder resizes are
PyTorch-exact bilinear, align_corners=False, no antialias (`jaxad.ops.resize`).
Initialisation: PyTorch defaults (kernel U(±1/√fan_in), bias U(±1/√fan_in)).
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax.numpy as jnp

from jaxad.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from jaxad.nn.layers import torch_default_kernel, torch_uniform_bias
from jaxad.ops import conv as conv_ops
from jaxad.ops.resize import resize


def imagenet_normalize(images_BxHxWx3):
  """(x − mean) / std with the ImageNet statistics, x in [0, 1] (anomalib `imagenet_norm_batch`)."""
  return (images_BxHxWx3 - jnp.asarray(IMAGENET_MEAN)) / jnp.asarray(IMAGENET_STD)


def _conv(features: int, in_features: int, kernel: int, stride: int, pad: int, name: str) -> nn.Conv:
  return nn.Conv(features, (kernel, kernel), strides=(stride, stride), padding=((pad, pad), (pad, pad)),
                 kernel_init=torch_default_kernel, bias_init=torch_uniform_bias(in_features * kernel * kernel),
                 name=name, conv_general_dilated=conv_ops.conv_general_dilated)


def _avg_pool(x_BxHxWxC, pad: int):
  """torch AvgPool2d(2, 2, padding=pad) with count_include_pad=True: zero-pad, then a VALID mean."""
  x = jnp.pad(x_BxHxWxC, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  return nn.avg_pool(x, (2, 2), strides=(2, 2), padding="VALID")


# (name, out channels (None = out_channels), kernel, padding when padding=True, ReLU after, avg-pool after)
_PDN_LAYERS = {
    "s": (("conv1", 128, 4, 3, True, True), ("conv2", 256, 4, 3, True, True), ("conv3", 256, 3, 1, True, False),
          ("conv4", None, 4, 0, False, False)),
    "m": (("conv1", 256, 4, 3, True, True), ("conv2", 512, 4, 3, True, True), ("conv3", 512, 1, 0, True, False),
          ("conv4", 512, 3, 1, True, False), ("conv5", None, 4, 0, True, False), ("conv6", None, 1, 0, False, False)),
}


class PDN(nn.Module):
  """Patch description network (teacher: `out_channels` = C; student: 2C).

  Attributes:
    size: "s" or "m".
    out_channels: output channels.
    padding: paddings (3, pool 1, 3, pool 1, 1, 0) instead of none (256 input → 64×64, else 56×56).
  """

  size: str = "s"
  out_channels: int = 384
  padding: bool = False

  @nn.compact
  def __call__(self, images_BxHxWx3):
    x = images_BxHxWx3
    pad_mult = 1 if self.padding else 0
    for name, features, kernel, pad, relu, pool in _PDN_LAYERS[self.size]:
      features = features or self.out_channels
      x = _conv(features, x.shape[-1], kernel, 1, pad * pad_mult, name)(x)
      if relu:
        x = nn.relu(x)
      if pool:
        x = _avg_pool(x, pad_mult)
    return x


def code_kernel(image_size: tuple[int, int]) -> tuple[int, int]:
  """Kernel of the encoder's last conv: 8×8 (the references) for inputs ≥ 256 px; for smaller inputs
  (jaxad extension, tests and CPU runs) the whole remaining H/32 × W/32 grid, so the code stays 1×1."""
  return tuple(8 if side >= 256 else max(side // 32, 1) for side in image_size)


class Encoder(nn.Module):
  """Five conv4/2/pad1 + ReLU (3→32→32→64→64→64), then conv8/1/pad0 64→64: 256 → 1×1×64."""

  @nn.compact
  def __call__(self, images_BxHxWx3):
    x = images_BxHxWx3
    for i, features in enumerate((32, 32, 64, 64, 64), start=1):
      x = nn.relu(_conv(features, x.shape[-1], 4, 2, 1, f"enconv{i}")(x))
    kh, kw = code_kernel(images_BxHxWx3.shape[1:3])
    return nn.Conv(64, (kh, kw), padding="VALID", kernel_init=torch_default_kernel,
                   bias_init=torch_uniform_bias(64 * kh * kw), name="enconv6",
                   conv_general_dilated=conv_ops.conv_general_dilated)(x)


def decoder_sizes(image_size: tuple[int, int], padding: bool) -> list[tuple[int, int]]:
  """The seven bilinear resize targets of anomalib's decoder for an input of `image_size` (H, W).

  Sizes are clamped at 1 (only matters below 128 px, where anomalib's first size would be 0).
  """
  h, w = image_size
  sizes = [(max(h // 64 - 1, 1), max(w // 64 - 1, 1)), (h // 32, w // 32), (h // 16 - 1, w // 16 - 1),
           (h // 8, w // 8), (h // 4 - 1, w // 4 - 1), (h // 2 - 1, w // 2 - 1)]
  last_offset = 0 if padding else 8
  sizes.append((math.ceil(h / 4) - last_offset, math.ceil(w / 4) - last_offset))
  return sizes


class Decoder(nn.Module):
  """Six (resize → conv4/1/pad2 → ReLU → Dropout), resize → conv3 + ReLU, conv3 64→C."""

  out_channels: int = 384
  padding: bool = False
  dropout: float = 0.2

  @nn.compact
  def __call__(self, code_Bx1x1x64, image_size: tuple[int, int], deterministic: bool = True):
    sizes = decoder_sizes(image_size, self.padding)
    x = code_Bx1x1x64
    for i, size in enumerate(sizes[:6], start=1):
      x = resize(x, size, "bilinear", align_corners=False, antialias=False)
      x = nn.relu(_conv(64, 64, 4, 1, 2, f"deconv{i}")(x))
      x = nn.Dropout(self.dropout, deterministic=deterministic, name=f"dropout{i}")(x)
    x = resize(x, sizes[6], "bilinear", align_corners=False, antialias=False)
    x = nn.relu(_conv(64, 64, 3, 1, 1, "deconv7")(x))
    return _conv(self.out_channels, 64, 3, 1, 1, "deconv8")(x)


class AutoEncoder(nn.Module):
  """Encoder + decoder; output C×56×56 for a 256×256 input (64×64 with padding).

  Dropout needs the "dropout" rng when `deterministic=False` (training).
  """

  out_channels: int = 384
  padding: bool = False
  dropout: float = 0.2

  @nn.compact
  def __call__(self, images_BxHxWx3, deterministic: bool = True):
    code_Bx1x1x64 = Encoder(name="encoder")(images_BxHxWx3)
    image_size = images_BxHxWx3.shape[1:3]
    decoder = Decoder(self.out_channels, self.padding, self.dropout, name="decoder")
    return decoder(code_Bx1x1x64, image_size, deterministic)


def build_networks(size: str = "s", out_channels: int = 384, padding: bool = False,
                   dropout: float = 0.2) -> tuple[PDN, PDN, AutoEncoder]:
  """(teacher with C outputs, student with 2C outputs, autoencoder with C outputs)."""
  teacher = PDN(size, out_channels, padding)
  student = PDN(size, 2 * out_channels, padding)
  return teacher, student, AutoEncoder(out_channels, padding, dropout)
