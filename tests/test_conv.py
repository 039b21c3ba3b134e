"""jaxad.ops.conv: same numbers as lax.conv_general_dilated, per member, in every member mode."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxad.ops import conv as conv_ops

M = 3
CASES = [  # kernel, stride, padding: SSN's 5×5 SAME and 1×1, PDN/autoencoder 4×4 stride 2 and VALID
    (5, 1, "SAME"), (1, 1, "SAME"), (4, 2, ((1, 1), (1, 1))), (3, 1, "VALID"), (4, 1, ((3, 3), (3, 3)))]


def _members(kernel, stride, padding, conv_fn):
  kwargs = {} if conv_fn is None else {"conv_general_dilated": conv_fn}
  conv = nn.Conv(6, (kernel, kernel), strides=(stride, stride), padding=padding, **kwargs)
  x_MxBxHxWxC = jnp.asarray(np.random.default_rng(0).normal(size=(M, 2, 9, 9, 5)), jnp.float32)
  params = jax.vmap(lambda k: conv.init(k, x_MxBxHxWxC[0]))(jax.random.split(jax.random.key(1), M))

  def loss(p, x):
    return jnp.sum(jnp.sin(conv.apply(p, x)))

  return conv, params, x_MxBxHxWxC, jax.grad(loss, argnums=(0, 1))


@pytest.mark.parametrize("kernel,stride,padding", CASES)
@pytest.mark.parametrize("mode", ["grouped", "unrolled"])
def test_vmapped_forward_and_gradients_equal_per_member_lax(kernel, stride, padding, mode):
  conv, params, x, grad = _members(kernel, stride, padding, conv_ops.conv_general_dilated)
  ref_conv, _, _, ref_grad = _members(kernel, stride, padding, None)
  with conv_ops.use_member_mode(mode):
    out = jax.jit(jax.vmap(conv.apply))(params, x)
    grads = jax.jit(jax.vmap(grad))(params, x)
  for m in range(M):
    p_m = jax.tree.map(lambda a: a[m], params)
    np.testing.assert_allclose(out[m], ref_conv.apply(p_m, x[m]), rtol=1e-5, atol=1e-5)
    for got, want in zip(jax.tree.leaves(jax.tree.map(lambda a: a[m], grads)), jax.tree.leaves(ref_grad(p_m, x[m]))):
      np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)


def test_shared_input_into_member_kernels():
  """The first conv of a member sees the shared image: only the kernel and cotangent are batched."""
  conv, params, x, grad = _members(4, 1, ((3, 3), (3, 3)), conv_ops.conv_general_dilated)
  with conv_ops.use_member_mode("unrolled"):
    grads = jax.vmap(grad, in_axes=(0, None))(params, x[0])
  for m in range(M):
    p_m = jax.tree.map(lambda a: a[m], params)
    want = grad(p_m, x[0])
    for got, w in zip(jax.tree.leaves(jax.tree.map(lambda a: a[m], grads)), jax.tree.leaves(want)):
      np.testing.assert_allclose(got, w, rtol=1e-4, atol=1e-5)


def test_unbatched_kxk_is_lax_bitwise():
  conv, params, x, _ = _members(5, 1, "SAME", conv_ops.conv_general_dilated)
  ref_conv, *_ = _members(5, 1, "SAME", None)
  p0 = jax.tree.map(lambda a: a[0], params)
  np.testing.assert_array_equal(conv.apply(p0, x[0]), ref_conv.apply(p0, x[0]))


def test_unrolled_mode_emits_no_grouped_convolution():
  conv, params, x, grad = _members(5, 1, "SAME", conv_ops.conv_general_dilated)
  for mode, grouped_expected in (("unrolled", False), ("grouped", True)):
    with conv_ops.use_member_mode(mode):
      hlo = jax.jit(jax.vmap(grad)).lower(params, x).as_text()
    has_grouped = f"feature_group_count = {M}" in hlo or f"batch_group_count = {M}" in hlo
    assert has_grouped == grouped_expected, mode


def test_mode_validation_and_auto():
  with pytest.raises(ValueError, match="member conv mode"):
    with conv_ops.use_member_mode("fast"):
      pass
  assert conv_ops.member_mode() == ("unrolled" if jax.default_backend() == "cpu" else "grouped")


@pytest.mark.parametrize("kernel,padding,prepadded", [(4, ((3, 3), (3, 3)), True), (4, ((2, 2), (2, 2)), True),
                                                      (5, "SAME", False), (4, ((1, 1), (1, 1)), False)])
def test_output_larger_than_input_is_prepadded_on_cpu(kernel, padding, prepadded):
  """Padding beyond the kernel's reach: an explicit pad + VALID conv (XLA:CPU's kernel gradient is slow otherwise)."""
  conv, params, x, grad = _members(kernel, 1, padding, conv_ops.conv_general_dilated)
  p0 = jax.tree.map(lambda a: a[0], params)
  jaxpr = str(jax.make_jaxpr(lambda p: conv.apply(p, x[0]))(p0))
  assert ("pad[" in jaxpr) == (prepadded and jax.default_backend() == "cpu")
