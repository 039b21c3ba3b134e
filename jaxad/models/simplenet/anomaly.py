"""SimpleNet's anomalous-feature generator as a pure function of a PRNG key (methods.md §2.4).

Reference: DonaldRR/SimpleNet `_train_discriminator` with mix_noise=1: i.i.d. Gaussian noise
N(0, σ²) on every element of the *adapted* features (after the adaptor, never on the raw
backbone features); fake = adapted + ε. The official code draws ε on the CPU with torch's
global RNG; here it comes from the step's key (different numbers, same distribution).
"""

from __future__ import annotations

import jax


def gaussian_noise(key, like, noise_std):
  """σ · N(0, 1) with the shape and dtype of `like`, drawn flat (rank-4 threefry draws compile slowly on CPU)."""
  return noise_std * jax.random.normal(key, (like.size,), like.dtype).reshape(like.shape)


def fake_features(key, adapted_BxHxWxC, noise_std):
  """The anomalous features: adapted + ε."""
  return adapted_BxHxWxC + gaussian_noise(key, adapted_BxHxWxC, noise_std)
