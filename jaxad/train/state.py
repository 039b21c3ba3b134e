"""The per-member training state and helpers for the sweep axis M.

Every array of a `TrainState` used by the engine has a leading M axis (M = 1 for a single
run); `index_member` / `stack_members` move between the stacked and single forms.
"""

from __future__ import annotations

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class TrainState:
  step: jax.Array  # int32 scalar: optimiser steps taken
  params: Any
  batch_stats: Any
  opt_state: Any
  alive: jax.Array  # bool scalar: False once a loss went non-finite (the member is then frozen)


def index_member(tree, m: int):
  """Member m of a stacked pytree."""
  return jax.tree.map(lambda x: x[m], tree)


def stack_members(trees: list):
  """Stacks M pytrees of identical structure on a new leading axis."""
  return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def over_members(fn, in_axes: tuple, exact: bool | None = None):
  """`fn` of one member, over the leading M axis of the arguments whose `in_axes` entry is 0 (None: shared).

  exact: the members are unrolled, each an unbatched program inside the compiled one, so its numbers are
  bitwise those of a run of its own (M = 1) whichever chunk it shares; compiling takes longer as M grows (a
  `lax.map` loop would compile once, but XLA:CPU rounds its body differently from the same program
  unlooped). Not exact: one `jax.vmap` program, whose batched kernels round differently, which long
  training amplifies (README, Sweeps). None: exact on the CPU backend (as fast once compiled), vmapped on
  accelerators (where M programs one after another would cost speed).
  """
  batched = jax.vmap(fn, in_axes=in_axes)

  def mapped(*args):
    m = jax.tree.leaves([a for a, ax in zip(args, in_axes) if ax is not None])[0].shape[0]
    if m > 1 and not (jax.default_backend() == "cpu" if exact is None else exact):
      return batched(*args)
    return stack_members([fn(*(index_member(a, i) if ax is not None else a for a, ax in zip(args, in_axes)))
                          for i in range(m)])

  return mapped


def keep_if_finite(new: TrainState, old: TrainState, loss) -> TrainState:
  """Freezes a member whose loss or state became non-finite; the others are unaffected."""
  finite = jnp.isfinite(loss)
  for leaf in jax.tree.leaves((new.params, new.batch_stats)):
    finite = finite & jnp.all(jnp.isfinite(leaf))
  ok = finite & old.alive
  chosen = jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, old)
  return chosen.replace(alive=ok)
