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


def keep_if_finite(new: TrainState, old: TrainState, loss) -> TrainState:
  """Freezes a member whose loss or state became non-finite; the others are unaffected."""
  finite = jnp.isfinite(loss)
  for leaf in jax.tree.leaves((new.params, new.batch_stats)):
    finite = finite & jnp.all(jnp.isfinite(leaf))
  ok = finite & old.alive
  chosen = jax.tree.map(lambda a, b: jnp.where(ok, a, b), new, old)
  return chosen.replace(alive=ok)
