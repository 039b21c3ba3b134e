"""SuperSimpleNet's latent anomaly generator as a pure function of a PRNG key (methods.md §3.5).

Reference: SuperSimpleNet `AnomalyGenerator` (official) / anomalib `anomaly_generator.py`.
Batch duplication, Gaussian noise N(0, σ²) on every element, applied only where
noise_mask = Perlin mask (× (1 − real mask) unless `overlap`) is 1; targets updated.
The same noise is added to the raw features for the JIMS classification head.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from jaxad.ops.perlin import perlin_masks


def duplicate(x):
  return jnp.concatenate([x, x], axis=0)


def generate_anomalies(key, feats_BxHxWxC, adapted_BxHxWxC, masks_BxHxW, labels_B, *, noise_std,
                       perlin_threshold, overlap: bool, p_empty: float = 0.5, rescale_if_empty: bool = False):
  """Returns (noised raw feats, noised adapted feats, masks, labels), each with 2B samples.

  `feats_BxHxWxC` may be None (ICPR: the classification head reads the adapted features).
  """
  b, h, w, _ = adapted_BxHxWxC.shape
  key_noise, key_perlin = jax.random.split(key)
  adapted = duplicate(adapted_BxHxWxC)
  masks = duplicate(masks_BxHxW)
  labels = duplicate(labels_B.astype(jnp.float32))
  # Drawn flat and reshaped: XLA compiles rank-4 threefry draws several times slower on CPU.
  noise = noise_std * jax.random.normal(key_noise, (adapted.size,), adapted.dtype).reshape(adapted.shape)
  noise_mask = perlin_masks(key_perlin, 2 * b, (h, w), perlin_threshold, p_empty=p_empty,
                            rescale_if_empty=rescale_if_empty)
  if not overlap:
    noise_mask = noise_mask * (1.0 - masks)
  new_masks = (masks + noise_mask > 0).astype(jnp.float32)
  new_labels = jnp.maximum(labels, jnp.any(noise_mask > 0, axis=(1, 2)).astype(jnp.float32))
  masked_noise = noise * noise_mask[..., None]
  noised_adapted = adapted + masked_noise
  noised_feats = None if feats_BxHxWxC is None else duplicate(feats_BxHxWxC) + masked_noise
  return noised_feats, noised_adapted, new_masks, new_labels
