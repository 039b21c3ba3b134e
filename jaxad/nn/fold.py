"""BatchNorm folding for frozen backbones: conv → BatchNorm(running statistics) becomes one conv with a bias.

With s = scale / sqrt(var + eps) per output channel, BatchNorm(conv(x, W)) = conv(x, W·s) + (bias − mean·s),
exact up to float rounding. The folded network launches one kernel per conv instead of a conv and an
elementwise pass (XLA on GPUs fuses conv + bias + ReLU, and the residual add, into the cuDNN call), and
has one parameter array per conv instead of five, which shortens every call's argument list.

Pairs are found by name: each `…conv…` scope with a sibling scope of the same name with "conv" replaced
by "bn" (torchvision ResNets: conv1/bn1, downsample_conv/downsample_bn; EfficientNet-Lite:
conv_stem/bn_stem, conv_dw/bn_dw, …). Everything else (Dense heads) is kept as it is.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax.numpy as jnp
import numpy as np


def fold_batch_norms(variables: Mapping, eps: float) -> dict:
  """{"params", "batch_stats"} of a network with conv → BatchNorm pairs → {"params"} of its folded form.

  The computation is float64 on the host; the folded arrays are float32 jax arrays. A BatchNorm with no
  conv to fold into raises ValueError (the folded module would have nowhere to put it).
  """
  return {"params": _fold(variables["params"], variables.get("batch_stats", {}), eps, "")}


def _fold(params: Mapping, stats: Mapping, eps: float, where: str) -> dict:
  out = {}
  bns = {name for name in params if "bn" in name}
  for name, value in params.items():
    if name in bns:
      conv = name.replace("bn", "conv")
      if conv not in params:
        raise ValueError(f"BatchNorm {where}{name} follows no conv {where}{conv}: it cannot be folded")
      continue
    bn = name.replace("conv", "bn")
    if "conv" in name and bn in params:
      out[name] = _fold_pair(value, params[bn], stats[bn], eps)
    elif "kernel" in value:
      out[name] = dict(value)
    else:
      out[name] = _fold(value, stats.get(name, {}), eps, f"{where}{name}/")
  return out


def _fold_pair(conv: Mapping, bn: Mapping, stats: Mapping, eps: float) -> dict:
  """{"kernel", "bias"} of a conv (kernel (kh, kw, in/groups, out), bias optional) followed by BatchNorm."""
  s_C = np.asarray(bn["scale"], np.float64) / np.sqrt(np.asarray(stats["var"], np.float64) + eps)
  kernel = np.asarray(conv["kernel"], np.float64) * s_C
  bias_C = np.asarray(bn["bias"], np.float64) - np.asarray(stats["mean"], np.float64) * s_C
  if "bias" in conv:
    bias_C = bias_C + np.asarray(conv["bias"], np.float64) * s_C
  return {"kernel": jnp.asarray(kernel, jnp.float32), "bias": jnp.asarray(bias_C, jnp.float32)}
