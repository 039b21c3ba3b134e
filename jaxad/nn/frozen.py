"""A frozen backbone as a pure function of ImageNet-normalised images (what every method uses).

The data pipeline always produces ImageNet-normalised images (methods.md §1.2); backbones
whose weights expect another normalisation (EfficientNet-Lite: mean 127/255, std 128/255)
get an exact affine re-normalisation on the device. The backbone computes in the dtype of the
variables it is given: float32 as loaded, bfloat16 when the inference engine casts them (jaxad.infer).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from jaxad.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from jaxad.nn.backbones import apply_backbone, get_spec, load_backbone
from jaxad.nn.fold import fold_batch_norms


def frozen_backbone(name: str, stages: Sequence[str], weights=None):
  """(stages_fn, variables): stages_fn(variables, images_BxHxWx3) -> {stage: stop_gradient(feats)}."""
  stages = tuple(stages)
  module, variables = load_backbone(name, stages=stages, weights=weights)
  spec = get_spec(name)
  folded = spec.bn_eps is not None
  if folded:
    variables = fold_batch_norms(variables, spec.bn_eps)
    module = spec.build(stages, jnp.float32, folded=True)
  scale = jnp.asarray(IMAGENET_STD, jnp.float32) / jnp.asarray(spec.input_std, jnp.float32)
  shift = (jnp.asarray(IMAGENET_MEAN, jnp.float32) - jnp.asarray(spec.input_mean, jnp.float32)) / jnp.asarray(
      spec.input_std, jnp.float32)
  same = tuple(spec.input_mean) == IMAGENET_MEAN and tuple(spec.input_std) == IMAGENET_STD
  modules = {jnp.dtype(jnp.float32): module}

  def stages_fn(frozen_vars, images_BxHxWx3):
    dtype = jnp.dtype(jax.tree.leaves(frozen_vars)[0].dtype)
    if dtype not in modules:
      modules[dtype] = spec.build(stages, dtype, folded=folded)
    x = images_BxHxWx3 if same else images_BxHxWx3 * scale.astype(dtype) + shift.astype(dtype)
    return apply_backbone(modules[dtype], frozen_vars, x, stages)

  return stages_fn, variables
