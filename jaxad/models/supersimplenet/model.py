"""SuperSimpleNet's trainable modules in Linen (methods.md §3.4, §3.6).

Reference: blaz-r/SuperSimpleNet `model/supersimplenet.py` (ICPR 2024 and JIMS 2025) and
anomalib `SupersimplenetModel`. NHWC layout; the feature extractor (frozen backbone +
upscaling front-end) lives in jaxad.nn and is not part of these parameters.

Initialisation as the reference: Xavier-normal (untruncated) on every conv/linear weight,
PyTorch-default uniform biases, BatchNorm weight 1 / bias 0, PyTorch BatchNorm semantics.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxad.nn.layers import TorchBatchNorm, torch_uniform_bias, xavier_normal
from jaxad.ops import conv as conv_ops


def _conv(features: int, in_features: int, kernel: int, *, use_bias: bool = True, name: str | None = None):
  return nn.Conv(features, (kernel, kernel), padding="SAME", use_bias=use_bias, kernel_init=xavier_normal,
                 bias_init=torch_uniform_bias(in_features * kernel * kernel), name=name,
                 conv_general_dilated=conv_ops.conv_general_dilated)


class FeatureAdaptor(nn.Module):
  """1×1 convolution C → C with bias (a per-pixel linear layer)."""

  @nn.compact
  def __call__(self, feats_BxHxWxC):
    c = feats_BxHxWxC.shape[-1]
    return _conv(c, c, 1, name="projection")(feats_BxHxWxC)


class SegmentationHead(nn.Module):
  """Conv1×1 C→hidden, BatchNorm, LeakyReLU(0.2), Conv1×1 hidden→1 without bias."""

  hidden: int = 1024

  @nn.compact
  def __call__(self, feats_BxHxWxC, train: bool):
    c = feats_BxHxWxC.shape[-1]
    x = _conv(self.hidden, c, 1, name="conv1")(feats_BxHxWxC)
    x = TorchBatchNorm(name="bn")(x, use_running_average=not train)
    x = nn.leaky_relu(x, negative_slope=0.2)
    return _conv(1, self.hidden, 1, use_bias=False, name="conv2")(x)[..., 0]


class ClassificationHead(nn.Module):
  """Conv5×5 (C+1)→hidden 'same', BatchNorm, ReLU; [max(D), avg(D), max(M), avg(M)] → Linear → logit."""

  hidden: int = 128

  @nn.compact
  def __call__(self, feats_BxHxWxC, map_BxHxW, map_for_pool_BxHxW, train: bool):
    x = jnp.concatenate([feats_BxHxWxC, map_BxHxW[..., None]], axis=-1)
    x = _conv(self.hidden, x.shape[-1], 5, name="conv")(x)
    x = TorchBatchNorm(name="bn")(x, use_running_average=not train)
    dec_BxHxWxD = nn.relu(x)
    pooled_Bx258 = jnp.concatenate([
        dec_BxHxWxD.max(axis=(1, 2)),
        dec_BxHxWxD.mean(axis=(1, 2)),
        map_for_pool_BxHxW.max(axis=(1, 2))[:, None],
        map_for_pool_BxHxW.mean(axis=(1, 2))[:, None],
    ], axis=-1)
    fan_in = pooled_Bx258.shape[-1]
    logit_Bx1 = nn.Dense(1, kernel_init=xavier_normal, bias_init=torch_uniform_bias(fan_in), name="fc")(pooled_Bx258)
    return logit_Bx1[:, 0]


class SuperSimpleNetHeads(nn.Module):
  """Adaptor + segmentation-detection module.

  Attributes:
    adapt_cls_features: the classification head reads adapted features (ICPR) or the raw
      ones (JIMS).
    stop_grad: the classification head sees the map through stop_gradient (unsupervised).
  """

  adapt_cls_features: bool = True
  stop_grad: bool = True
  seg_hidden: int = 1024
  cls_hidden: int = 128

  def setup(self):
    self.adaptor = FeatureAdaptor()
    self.seg_head = SegmentationHead(self.seg_hidden)
    self.cls_head = ClassificationHead(self.cls_hidden)

  def adapt(self, feats_BxHxWxC):
    return self.adaptor(feats_BxHxWxC)

  def segdec(self, seg_feats_BxHxWxC, cls_feats_BxHxWxC, train: bool):
    """Returns (map logits (B, H, W), score logits (B,))."""
    map_BxHxW = self.seg_head(seg_feats_BxHxWxC, train)
    map_in = jax.lax.stop_gradient(map_BxHxW) if self.stop_grad else map_BxHxW
    score_B = self.cls_head(cls_feats_BxHxWxC, map_in, map_in, train)
    return map_BxHxW, score_B

  def __call__(self, feats_BxHxWxC, train: bool = False):
    """Inference (no anomaly generation): (map logits, score logits)."""
    adapted = self.adapt(feats_BxHxWxC)
    cls_feats = adapted if self.adapt_cls_features else feats_BxHxWxC
    return self.segdec(adapted, cls_feats, train)
