"""torchvision ResNet v1.5 (ResNet-18/34/50/101, WideResNet-50-2/101-2) as a frozen feature extractor.

Reference: torchvision `models/resnet.py` (He et al. 2016, "v1.5": the stride of a bottleneck
sits on its 3×3 conv). Layout NHWC; the input is an ImageNet-normalised float image.
Torch padding is reproduced explicitly: stem conv 7×7/2 pad 3, max-pool 3×3/2 pad 1 with
−inf padding, 3×3 convs pad 1. BatchNorm always uses its running statistics (eps 1e-5),
because the backbones are frozen.

Parameter names follow torchvision's (`conv1`, `bn1`, `layer3_0/conv2`, `layer3_0/downsample_conv`),
so `jaxad.nn.convert` maps a torchvision or timm state dict one-to-one.

`__call__` runs only up to the deepest stage in `stages` (SimpleNet and SuperSimpleNet never
run layer4), and returns `{"layer2": ..., "layer3": ...}`. `classify` runs the whole network and
the fc head (used to check converted weights).

`folded=True` builds the same network with every BatchNorm folded into the conv before it (the
convs get a bias, the BatchNorms are gone; variables from `jaxad.nn.fold.fold_batch_norms`): the
frozen backbones run this way (`jaxad.nn.frozen`), with fewer kernels and parameter arrays.

Deviations: none in inference mode (training-mode BatchNorm is not supported); the folded form
differs from the unfolded one by float rounding only (tests/test_fold.py).
"""

from __future__ import annotations

import dataclasses
from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

STAGE_NAMES = ("layer1", "layer2", "layer3", "layer4")
BN_EPS = 1e-5
BOTTLENECK_EXPANSION = 4


def _batch_norm(dtype, name: str, folded: bool = False):
  """BatchNorm with running statistics; the identity when it is folded into the conv before it."""
  if folded:
    return lambda x: x
  return nn.BatchNorm(use_running_average=True, momentum=0.9, epsilon=BN_EPS, dtype=dtype, name=name)


def _conv(features: int, kernel: int, stride: int, dtype, name: str, folded: bool = False) -> nn.Conv:
  pad = (kernel - 1) // 2
  return nn.Conv(features, (kernel, kernel), strides=(stride, stride), padding=((pad, pad), (pad, pad)),
                 use_bias=folded, dtype=dtype, name=name)


class BasicBlock(nn.Module):
  """Two 3×3 convs with a residual (ResNet-18/34)."""
  planes: int
  stride: int = 1
  downsample: bool = False
  dtype: jnp.dtype = jnp.float32
  folded: bool = False

  def setup(self):
    self.conv1 = _conv(self.planes, 3, self.stride, self.dtype, "conv1", self.folded)
    self.bn1 = _batch_norm(self.dtype, "bn1", self.folded)
    self.conv2 = _conv(self.planes, 3, 1, self.dtype, "conv2", self.folded)
    self.bn2 = _batch_norm(self.dtype, "bn2", self.folded)
    if self.downsample:
      self.downsample_conv = _conv(self.planes, 1, self.stride, self.dtype, "downsample_conv", self.folded)
      self.downsample_bn = _batch_norm(self.dtype, "downsample_bn", self.folded)

  def __call__(self, x_BxHxWxC):
    y = nn.relu(self.bn1(self.conv1(x_BxHxWxC)))
    y = self.bn2(self.conv2(y))
    shortcut = self.downsample_bn(self.downsample_conv(x_BxHxWxC)) if self.downsample else x_BxHxWxC
    return nn.relu(y + shortcut)


class Bottleneck(nn.Module):
  """1×1 → 3×3 (strided) → 1×1 with a residual (ResNet-50/101 and the wide variants)."""
  planes: int
  stride: int = 1
  downsample: bool = False
  width: int = 0
  dtype: jnp.dtype = jnp.float32
  folded: bool = False

  def setup(self):
    self.conv1 = _conv(self.width, 1, 1, self.dtype, "conv1", self.folded)
    self.bn1 = _batch_norm(self.dtype, "bn1", self.folded)
    self.conv2 = _conv(self.width, 3, self.stride, self.dtype, "conv2", self.folded)
    self.bn2 = _batch_norm(self.dtype, "bn2", self.folded)
    self.conv3 = _conv(self.planes * BOTTLENECK_EXPANSION, 1, 1, self.dtype, "conv3", self.folded)
    self.bn3 = _batch_norm(self.dtype, "bn3", self.folded)
    if self.downsample:
      self.downsample_conv = _conv(self.planes * BOTTLENECK_EXPANSION, 1, self.stride, self.dtype, "downsample_conv",
                                   self.folded)
      self.downsample_bn = _batch_norm(self.dtype, "downsample_bn", self.folded)

  def __call__(self, x_BxHxWxC):
    y = nn.relu(self.bn1(self.conv1(x_BxHxWxC)))
    y = nn.relu(self.bn2(self.conv2(y)))
    y = self.bn3(self.conv3(y))
    shortcut = self.downsample_bn(self.downsample_conv(x_BxHxWxC)) if self.downsample else x_BxHxWxC
    return nn.relu(y + shortcut)


@dataclasses.dataclass(frozen=True)
class ResNetConfig:
  """Architecture of one torchvision ResNet variant."""
  block: str                      # "basic" or "bottleneck"
  layers: tuple[int, int, int, int]
  width_per_group: int = 64
  stem_width: int = 64


RESNET_CONFIGS = {
  "resnet18": ResNetConfig("basic", (2, 2, 2, 2)),
  "resnet34": ResNetConfig("basic", (3, 4, 6, 3)),
  "resnet50": ResNetConfig("bottleneck", (3, 4, 6, 3)),
  "resnet101": ResNetConfig("bottleneck", (3, 4, 23, 3)),
  "wide_resnet50_2": ResNetConfig("bottleneck", (3, 4, 6, 3), width_per_group=128),
  "wide_resnet101_2": ResNetConfig("bottleneck", (3, 4, 23, 3), width_per_group=128),
}


def stage_channels(config: ResNetConfig) -> dict[str, int]:
  """Output channels of layer1..layer4."""
  expansion = 1 if config.block == "basic" else BOTTLENECK_EXPANSION
  return {name: 64 * 2**i * expansion for i, name in enumerate(STAGE_NAMES)}


class ResNet(nn.Module):
  """A torchvision ResNet that returns the named stages it is asked for.

  Attributes:
    config: the architecture (see `RESNET_CONFIGS`).
    stages: the stage names to return; only the layers up to the deepest one run.
    num_classes: size of the fc head used by `classify`.
    dtype: computation dtype (parameters stay float32).
    folded: BatchNorms folded into the convs (see the module docstring).
  """
  config: ResNetConfig
  stages: Sequence[str] = ("layer2", "layer3")
  num_classes: int = 1000
  dtype: jnp.dtype = jnp.float32
  folded: bool = False

  def setup(self):
    unknown = [s for s in self.stages if s not in STAGE_NAMES]
    if unknown or not self.stages:
      raise ValueError(f"ResNet stages must be a non-empty subset of {STAGE_NAMES}, got {tuple(self.stages)}")
    cfg = self.config
    self.conv1 = nn.Conv(cfg.stem_width, (7, 7), strides=(2, 2), padding=((3, 3), (3, 3)), use_bias=self.folded,
                         dtype=self.dtype, name="conv1")
    self.bn1 = _batch_norm(self.dtype, "bn1", self.folded)
    in_channels = cfg.stem_width
    layers = []
    for i, num_blocks in enumerate(cfg.layers):
      planes = 64 * 2**i
      blocks = []
      for b in range(num_blocks):
        stride = 2 if (i > 0 and b == 0) else 1
        if cfg.block == "basic":
          out_channels = planes
          block = BasicBlock(planes, stride, downsample=(stride != 1 or in_channels != out_channels),
                             dtype=self.dtype, folded=self.folded, name=f"{STAGE_NAMES[i]}_{b}")
        else:
          out_channels = planes * BOTTLENECK_EXPANSION
          width = planes * cfg.width_per_group // 64
          block = Bottleneck(planes, stride, downsample=(stride != 1 or in_channels != out_channels), width=width,
                             dtype=self.dtype, folded=self.folded, name=f"{STAGE_NAMES[i]}_{b}")
        blocks.append(block)
        in_channels = out_channels
      layers.append(blocks)
    self.layers = layers
    self.fc = nn.Dense(self.num_classes, dtype=self.dtype, name="fc")

  def _stem(self, images_BxHxWx3):
    x = nn.relu(self.bn1(self.conv1(images_BxHxWx3.astype(self.dtype))))
    return nn.max_pool(x, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)))

  def __call__(self, images_BxHxWx3) -> dict[str, jnp.ndarray]:
    """Returns {stage name: feats_BxhxwxC} for the requested stages."""
    deepest = max(STAGE_NAMES.index(s) for s in self.stages)
    x = self._stem(images_BxHxWx3)
    out = {}
    for i in range(deepest + 1):
      for block in self.layers[i]:
        x = block(x)
      if STAGE_NAMES[i] in self.stages:
        out[STAGE_NAMES[i]] = x
    return out

  def classify(self, images_BxHxWx3):
    """ImageNet logits (B, num_classes): all stages, global average pool, fc."""
    x = self._stem(images_BxHxWx3)
    for blocks in self.layers:
      for block in blocks:
        x = block(x)
    return self.fc(jnp.mean(x, axis=(1, 2)))
