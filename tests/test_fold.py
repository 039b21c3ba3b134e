"""BatchNorm folding (jaxad.nn.fold): the folded backbone computes what the unfolded one does."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from jaxad.nn import backbones
from jaxad.nn.fold import fold_batch_norms
from jaxad.nn.frozen import frozen_backbone

STAGES = ("layer1", "layer2", "layer3", "layer4")


def _with_random_batch_norms(variables, seed: int) -> dict:
  """The variables with every BatchNorm given non-trivial statistics and affine parameters."""
  rng = np.random.default_rng(seed)
  flat = traverse_util.flatten_dict(variables)
  draw = {"scale": lambda n: rng.uniform(0.5, 1.5, n), "bias": lambda n: rng.normal(0, 0.2, n),
          "mean": lambda n: rng.normal(0, 0.2, n), "var": lambda n: rng.uniform(0.5, 2.0, n)}
  for key, value in flat.items():
    if any("bn" in part for part in key) and key[-1] in draw:
      flat[key] = jnp.asarray(draw[key[-1]](value.shape), jnp.float32)
  return traverse_util.unflatten_dict(flat)


@pytest.mark.parametrize("name", ["resnet18", "efficientnet_lite0"])
def test_folded_network_equals_unfolded(name):
  spec = backbones.BACKBONES[name]
  module = spec.build(STAGES, jnp.float32)
  variables = _with_random_batch_norms(backbones.random_variables(module, seed=1, method="classify"), seed=2)
  folded_vars = fold_batch_norms(variables, spec.bn_eps)
  folded = spec.build(STAGES, jnp.float32, folded=True)
  images = jnp.asarray(np.random.default_rng(3).standard_normal((2, 64, 48, 3)), jnp.float32)

  expected = jax.jit(module.apply)(variables, images)
  got = jax.jit(folded.apply)(folded_vars, images)
  for stage in STAGES:
    scale = float(jnp.abs(expected[stage]).max())
    np.testing.assert_allclose(got[stage], expected[stage], rtol=0, atol=2e-5 * scale, err_msg=stage)
  logits = jax.jit(lambda v, x, m: m.apply(v, x, method="classify"), static_argnums=2)
  np.testing.assert_allclose(logits(folded_vars, images, folded), logits(variables, images, module), rtol=1e-4,
                             atol=1e-4)
  # one array per conv kernel and one per bias; no BatchNorm left
  assert "batch_stats" not in folded_vars
  n_convs = sum(1 for k in traverse_util.flatten_dict(variables["params"]) if k[-1] == "kernel")
  assert len(jax.tree.leaves(folded_vars)) == 2 * n_convs
  assert len(jax.tree.leaves(folded_vars)) < len(jax.tree.leaves(variables)) / 2


def test_frozen_backbone_runs_folded_and_matches_the_loaded_network():
  stages = ("layer2", "layer3")
  stages_fn, frozen_vars = frozen_backbone("resnet18", stages, weights="random")
  module, variables = backbones.load_backbone("resnet18", stages, weights="random")
  assert "batch_stats" not in frozen_vars and "batch_stats" in variables
  images = jnp.asarray(np.random.default_rng(0).standard_normal((1, 64, 64, 3)), jnp.float32)
  got = jax.jit(stages_fn)(frozen_vars, images)
  expected = backbones.apply_backbone(module, variables, images, stages)
  for stage in stages:
    scale = float(jnp.abs(expected[stage]).max())
    np.testing.assert_allclose(got[stage], expected[stage], rtol=0, atol=2e-5 * scale, err_msg=stage)
  # bfloat16 variables give a bfloat16 folded network
  bf16 = jax.tree.map(lambda x: x.astype(jnp.bfloat16), frozen_vars)
  assert jax.jit(stages_fn)(bf16, images)["layer3"].dtype == jnp.bfloat16


def test_a_batch_norm_without_its_conv_is_an_error():
  variables = {"params": {"bn1": {"scale": np.ones(2), "bias": np.zeros(2)}},
               "batch_stats": {"bn1": {"mean": np.zeros(2), "var": np.ones(2)}}}
  with pytest.raises(ValueError, match="bn1 follows no conv conv1"):
    fold_batch_norms(variables, 1e-5)
