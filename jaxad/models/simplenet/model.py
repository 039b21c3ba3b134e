"""SimpleNet's trainable modules in Linen (methods.md §2.3, §2.5).

Reference: DonaldRR/SimpleNet `simplenet.py` (`Projection` with pre_proj=1, layer_type=0;
`Discriminator` with dsc_layers=2, dsc_hidden=1024). Both act per patch on the last axis, so
they take channel-last feature maps (B, H, W, C) directly; the official code flattens the
patches to rows (B·H·W, C), which is the same computation.

Initialisation as the reference `init_weight`: Xavier-normal (untruncated) on every Linear
weight, PyTorch's default uniform biases, BatchNorm weight 1 / bias 0 with PyTorch's running
statistics rule. The discriminator's BatchNorm normalises over every row it is given:
in training that is cat(true, fake), all 2·B·H·W patches.
"""

from __future__ import annotations

import flax.linen as nn

from jaxad.nn.layers import TorchBatchNorm, torch_uniform_bias, xavier_normal


def _linear(features: int, in_features: int, *, use_bias: bool = True, name: str | None = None) -> nn.Dense:
  return nn.Dense(features, use_bias=use_bias, kernel_init=xavier_normal, bias_init=torch_uniform_bias(in_features),
                  name=name)


class Adaptor(nn.Module):
  """The feature adaptor ("pre_projection"): one Linear C → C with bias, no activation."""

  @nn.compact
  def __call__(self, feats_BxHxWxC):
    c = feats_BxHxWxC.shape[-1]
    return _linear(c, c, name="fc")(feats_BxHxWxC)


class Discriminator(nn.Module):
  """Linear C → hidden, BatchNorm, LeakyReLU(0.2), Linear hidden → 1 without bias; returns (B, H, W)."""

  hidden: int = 1024

  @nn.compact
  def __call__(self, feats_BxHxWxC, train: bool):
    c = feats_BxHxWxC.shape[-1]
    x = _linear(self.hidden, c, name="fc")(feats_BxHxWxC)
    x = TorchBatchNorm(name="bn")(x, use_running_average=not train)
    x = nn.leaky_relu(x, negative_slope=0.2)
    return _linear(1, self.hidden, use_bias=False, name="tail")(x)[..., 0]


class SimpleNetHeads(nn.Module):
  """Adaptor + discriminator; parameters under "adaptor" and "discriminator" (two optimisers)."""

  dsc_hidden: int = 1024

  def setup(self):
    self.adaptor = Adaptor()
    self.discriminator = Discriminator(self.dsc_hidden)

  def adapt(self, feats_BxHxWxC):
    return self.adaptor(feats_BxHxWxC)

  def discriminate(self, feats_NxHxWxC, train: bool):
    """Discriminator logits D (normal → positive), shape (N, H, W)."""
    return self.discriminator(feats_NxHxWxC, train)

  def __call__(self, feats_BxHxWxC, train: bool = False):
    """D(adaptor(feats)) without noise, (B, H, W)."""
    return self.discriminate(self.adapt(feats_BxHxWxC), train)
