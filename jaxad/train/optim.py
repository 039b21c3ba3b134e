"""Optimiser builders with PyTorch semantics (methods.md §1.3 item 5).

Learning rates and weight decays live in the optimiser state through
`optax.inject_hyperparams`, so each sweep member carries its own values (optax #932).
Schedules that depend only on static settings (MultiStepLR, StepLR) multiply the update
afterwards, which equals scaling the learning rate (decoupled decay included).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax.numpy as jnp
import optax


def torch_adamw(lr, weight_decay) -> optax.GradientTransformation:
  """torch.optim.AdamW (decoupled decay θ ← θ − lr·wd·θ; betas 0.9/0.999, eps 1e-8)."""
  return optax.inject_hyperparams(optax.adamw)(learning_rate=lr, weight_decay=weight_decay,
                                               b1=0.9, b2=0.999, eps=1e-8)


def _coupled_adam(learning_rate, weight_decay):
  return optax.chain(optax.add_decayed_weights(weight_decay), optax.scale_by_adam(b1=0.9, b2=0.999, eps=1e-8),
                     optax.scale(-learning_rate))


def torch_adam(lr, weight_decay) -> optax.GradientTransformation:
  """torch.optim.Adam with weight_decay: *coupled* L2 (wd·θ added to the gradient first)."""
  return optax.inject_hyperparams(_coupled_adam)(learning_rate=lr, weight_decay=weight_decay)


def multistep_factor(milestones: Sequence[int], gamma: float, steps_per_epoch: int) -> Callable:
  """MultiStepLR stepped once per epoch, as a function of the optimiser step count."""
  milestones = jnp.asarray(list(milestones), jnp.int32)

  def factor(count):
    epoch = count // steps_per_epoch
    return gamma ** jnp.sum(epoch >= milestones).astype(jnp.float32)

  return factor


def step_factor(step_size: int, gamma: float) -> Callable:
  """StepLR stepped every iteration (EfficientAD: ×0.1 at 95 % of the steps)."""
  return lambda count: gamma ** (count // step_size).astype(jnp.float32)


def with_schedule(tx: optax.GradientTransformation, factor: Callable | None) -> optax.GradientTransformation:
  return tx if factor is None else optax.chain(tx, optax.scale_by_schedule(factor))
