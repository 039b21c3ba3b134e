"""The convolution of jaxad's trainable modules (drop-in for `nn.Conv(conv_general_dilated=...)`).

`lax.conv_general_dilated` with two fixes for cases XLA compiles badly; the parameters and the
unbatched numbers are those of a plain convolution (1×1: a channel matmul).

1. Sweeps. A sweep vmaps the train step over M members, each with its own kernel *and* its own
   input (the heads see member-specific noise). `jax.vmap` of a convolution then becomes one
   grouped convolution (`feature_group_count = M`; its kernel gradient a `batch_group_count`
   one), which XLA:CPU runs ~9× slower than M separate convolutions
   (benchmarks/conv_speed.py), making a CPU sweep slower than M separate runs. Here
   * 1×1 kernels with stride 1 and no padding are a `dot_general` over channels: their vmap is a
     batched matmul on every backend (also faster than XLA's 1×1 conv on CPU when unbatched);
   * other kernels run inside a `custom_vjp` whose forward, input gradient and kernel gradient
     each carry a `custom_vmap` rule: with two operands batched (the member case), member mode
     "unrolled" emits one ordinary convolution per member, "grouped" keeps XLA's grouped one.
     Batched in one operand only (the shared image into each member's first conv), XLA's own
     batching is a plain convolution already and is kept.
   `member_mode()` is read when a function is traced: "auto" (default) is "unrolled" on CPU and
   "grouped" elsewhere (cuDNN has grouped kernels; M small launches would cost more);
   `use_member_mode(...)` overrides it for programs traced inside the block.
2. Padding larger than the kernel's reach (output larger than the input: the padded PDN's 4×4
   convs with padding 3, the autoencoder decoder's 4×4 convs with padding 2). XLA:CPU computes
   such a kernel gradient as a convolution whose window is the whole input: 1–2 GFLOP/s, 16–50×
   slower than the forward pass. On CPU the input is padded explicitly and the convolution run
   with VALID padding, which XLA differentiates well; same result up to float rounding.

k×k convolutions support reverse-mode differentiation (custom_vjp), not forward mode.
"""

from __future__ import annotations

import contextlib
import functools
from typing import Sequence

import jax
import jax.numpy as jnp
from jax import lax
from jax.custom_batching import custom_vmap

MEMBER_MODES = ("auto", "unrolled", "grouped")
_mode = ["auto"]


def member_mode() -> str:
  """The member batching mode of programs traced now ("unrolled" or "grouped")."""
  if _mode[0] != "auto":
    return _mode[0]
  return "unrolled" if jax.default_backend() == "cpu" else "grouped"


@contextlib.contextmanager
def use_member_mode(name: str):
  """Trace the programs built inside this block with member batching mode `name` (one of MEMBER_MODES)."""
  if name not in MEMBER_MODES:
    raise ValueError(f"member conv mode must be one of {MEMBER_MODES}, got {name!r}")
  previous, _mode[0] = _mode[0], name
  try:
    yield
  finally:
    _mode[0] = previous


def _member_mapped(fn, operands: tuple[int, int]):
  """`fn` with a vmap rule: one `fn` per member when both `operands` are batched in mode "unrolled"."""

  @custom_vmap
  def op(*args):
    return fn(*args)

  @op.def_vmap
  def rule(axis_size, in_batched, *args):
    if member_mode() == "unrolled" and all(in_batched[i] for i in operands):
      outs = [fn(*(a[m] if b else a for a, b in zip(args, in_batched))) for m in range(axis_size)]
      return jnp.stack(outs), True
    return jax.vmap(fn, in_axes=tuple(0 if b else None for b in in_batched))(*args), True

  return op


@functools.lru_cache(maxsize=None)
def _conv_with_rules(static: tuple):
  conv = functools.partial(lax.conv_general_dilated, **dict(static))
  forward = _member_mapped(conv, (0, 1))
  input_grad = _member_mapped(lambda x, w, g: jax.vjp(conv, x, w)[1](g)[0], (1, 2))
  kernel_grad = _member_mapped(lambda x, w, g: jax.vjp(conv, x, w)[1](g)[1], (0, 2))

  @jax.custom_vjp
  def f(x, w):
    return forward(x, w)

  def f_fwd(x, w):
    return forward(x, w), (x, w)

  def f_bwd(res, g):
    x, w = res
    return input_grad(x, w, g), kernel_grad(x, w, g)

  f.defvjp(f_fwd, f_bwd)
  return f


def _window(rhs_shape, rhs_dilation, dn) -> list[int]:
  return [(rhs_shape[d] - 1) * r + 1 for d, r in zip(dn.rhs_spec[2:], rhs_dilation or [1] * (len(rhs_shape) - 2))]


def _explicit_pads(lhs_shape, rhs_shape, strides, padding, rhs_dilation, dn) -> list[tuple[int, int]]:
  if not isinstance(padding, str):
    return [tuple(p) for p in padding]
  return lax.padtype_to_pads([lhs_shape[d] for d in dn.lhs_spec[2:]], _window(rhs_shape, rhs_dilation, dn), strides,
                             padding)


def _output_larger_than_input(lhs_shape, rhs_shape, strides, padding, lhs_dilation, rhs_dilation, dn) -> bool:
  if any(d != 1 for d in (lhs_dilation or ())):
    return False
  pads = _explicit_pads(lhs_shape, rhs_shape, strides, padding, rhs_dilation, dn)
  sizes = [lhs_shape[d] for d in dn.lhs_spec[2:]]
  return any((n + lo + hi - k) // s + 1 > n
             for n, (lo, hi), k, s in zip(sizes, pads, _window(rhs_shape, rhs_dilation, dn), strides))


def _hashable(value):
  if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):  # keep ConvDimensionNumbers
    return tuple(_hashable(v) for v in value)
  return value


def conv_general_dilated(lhs, rhs, window_strides: Sequence[int], padding, lhs_dilation=None, rhs_dilation=None,
                         dimension_numbers=None, feature_group_count: int = 1, precision=None,
                         preferred_element_type=None):
  """`lax.conv_general_dilated` with the fixes above (the signature flax's nn.Conv calls)."""
  dn = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
  if jax.default_backend() == "cpu" and _output_larger_than_input(lhs.shape, rhs.shape, window_strides, padding,
                                                                   lhs_dilation, rhs_dilation, dn):
    pads = _explicit_pads(lhs.shape, rhs.shape, window_strides, padding, rhs_dilation, dn)
    widths = [(0, 0)] * lhs.ndim
    for dim, pad in zip(dn.lhs_spec[2:], pads):
      widths[dim] = tuple(pad)
    lhs, padding = jnp.pad(lhs, widths), [(0, 0)] * len(pads)
  spatial = [rhs.shape[d] for d in dn.rhs_spec[2:]]
  no_padding = padding in ("SAME", "VALID") or (not isinstance(padding, str) and all(tuple(p) == (0, 0) for p in padding))
  pointwise = (all(k == 1 for k in spatial) and all(s == 1 for s in window_strides) and feature_group_count == 1
               and no_padding and all(d == 1 for d in (lhs_dilation or ())) and dn.lhs_spec[1] == lhs.ndim - 1
               and dn.out_spec == dn.lhs_spec and dn.rhs_spec[:2] == (rhs.ndim - 1, rhs.ndim - 2))
  if pointwise:  # channels-last 1×1: a matmul over the channel axis
    kernel_IxO = rhs.reshape(rhs.shape[-2], rhs.shape[-1])
    return lax.dot_general(lhs, kernel_IxO, (((lhs.ndim - 1,), (0,)), ((), ())), precision=precision,
                           preferred_element_type=preferred_element_type)
  static = dict(window_strides=tuple(window_strides), padding=_hashable(padding),
                lhs_dilation=_hashable(lhs_dilation), rhs_dilation=_hashable(rhs_dilation),
                dimension_numbers=_hashable(dimension_numbers), feature_group_count=feature_group_count,
                precision=precision, preferred_element_type=preferred_element_type)
  return _conv_with_rules(tuple(sorted(static.items())))(lhs, rhs)
