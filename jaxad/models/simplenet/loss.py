"""SimpleNet's truncated L1 loss (methods.md §2.6). Sign convention: normal → positive score.

L = mean(max(0, th − D(true))) + mean(max(0, th + D(fake))), each mean over all its patches.
The logged fractions are p_true = frac(D(true) ≥ th) and p_fake = frac(D(fake) < −th), as the
official `_train_discriminator` logs them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def truncated_l1(true_scores, fake_scores, margin):
  """Returns (loss, dict of parts: true_loss, fake_loss, p_true, p_fake)."""
  true_loss = jnp.mean(jax.nn.relu(margin - true_scores))
  fake_loss = jnp.mean(jax.nn.relu(fake_scores + margin))
  parts = dict(true_loss=true_loss, fake_loss=fake_loss,
               p_true=jnp.mean((true_scores >= margin).astype(jnp.float32)),
               p_fake=jnp.mean((fake_scores < -margin).astype(jnp.float32)))
  return true_loss + fake_loss, parts
