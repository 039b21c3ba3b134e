"""Linen layers and initialisers with PyTorch's exact semantics (methods.md §1.3 items 3–4).

* `xavier_normal`: torch.nn.init.xavier_normal_ — an *untruncated* normal with
  std = sqrt(2 / (fan_in + fan_out)), fans including the kernel area. (Flax's
  `glorot_normal` is truncated, hence not used.)
* `torch_uniform_bias(fan_in)`: PyTorch's default bias init U(±1/√fan_in).
* `torch_default_kernel`: PyTorch's default Conv/Linear weight init
  (kaiming_uniform with a=√5 ⇒ U(±1/√fan_in)).
* `TorchBatchNorm`: BatchNorm with PyTorch's update rule — running ← (1 − m)·running + m·batch
  with m = 0.1, and the running variance updated with the *unbiased* batch variance
  (Flax's BatchNorm uses the biased one); normalisation in training uses the biased
  variance, as PyTorch does.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

xavier_normal = nn.initializers.variance_scaling(1.0, "fan_avg", "normal")
torch_default_kernel = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


def torch_uniform_bias(fan_in: int):
  """PyTorch's default bias initialiser U(−1/√fan_in, 1/√fan_in)."""
  bound = 1.0 / (fan_in ** 0.5)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


class TorchBatchNorm(nn.Module):
  """BatchNorm over all axes but the last, with PyTorch's momentum and running-variance rule."""

  momentum: float = 0.1
  epsilon: float = 1e-5
  dtype: Any = None

  @nn.compact
  def __call__(self, x, use_running_average: bool):
    features = x.shape[-1]
    scale = self.param("scale", nn.initializers.ones, (features,))
    bias = self.param("bias", nn.initializers.zeros, (features,))
    ra_mean = self.variable("batch_stats", "mean", jnp.zeros, (features,))
    ra_var = self.variable("batch_stats", "var", jnp.ones, (features,))
    axes = tuple(range(x.ndim - 1))
    if use_running_average:
      mean, var = ra_mean.value, ra_var.value
    else:
      x32 = x.astype(jnp.float32)
      mean = x32.mean(axes)
      var = jnp.square(x32 - mean).mean(axes)
      if not self.is_initializing():
        n = x.size // features
        unbiased = var * (n / max(n - 1, 1))
        ra_mean.value = (1 - self.momentum) * ra_mean.value + self.momentum * mean
        ra_var.value = (1 - self.momentum) * ra_var.value + self.momentum * unbiased
    y = (x - mean) * jax.lax.rsqrt(var + self.epsilon) * scale + bias
    return y.astype(self.dtype or x.dtype)
