"""SuperSimpleNet losses (methods.md §3.7). Sign convention: anomalous → positive logit.

Total = truncated L1 on the map (mean over normal pixels + mean over anomalous pixels,
each over its own set, an empty set contributing 0) + focal loss on the map (γ = 4, no α,
mean) + focal loss on the image logit. JIMS (supervised) weights the map losses per pixel
(distance transform) and computes them over segmented samples only; with all samples
segmented and unit weights this is exactly the ICPR loss. Masked means keep shapes
static (no boolean indexing).

Focal loss on logits (BCE-with-logits × (1 − p_t)^γ), as anomalib and the JIMS code; the ICPR
code used BCE on sigmoid outputs (same maths, log clamped at −100: differs only at saturation).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax


def focal_elementwise(logits, targets, gamma):
  probs = jax.nn.sigmoid(logits)
  p_t = probs * targets + (1 - probs) * (1 - targets)
  return optax.sigmoid_binary_cross_entropy(logits, targets) * (1 - p_t) ** gamma


def _masked_mean(values, weights):
  total = jnp.sum(weights)
  return jnp.where(total > 0, jnp.sum(values * weights) / jnp.maximum(total, 1), 0.0)


def ssn_loss(map_logits_NxHxW, score_logits_N, masks_NxHxW, labels_N, *, margin, gamma,
             is_segmented_N=None, pixel_weights_NxHxW=None):
  """Returns (total loss, dict of parts)."""
  seg = jnp.ones_like(labels_N) if is_segmented_N is None else is_segmented_N.astype(map_logits_NxHxW.dtype)
  seg_px = jnp.broadcast_to(seg[:, None, None], map_logits_NxHxW.shape)
  weights = 1.0 if pixel_weights_NxHxW is None else pixel_weights_NxHxW
  normal_px = (masks_NxHxW == 0).astype(map_logits_NxHxW.dtype) * seg_px
  anomalous_px = (masks_NxHxW > 0).astype(map_logits_NxHxW.dtype) * seg_px
  l1_normal = _masked_mean(jax.nn.relu(map_logits_NxHxW + margin) * weights, normal_px)
  l1_anomalous = _masked_mean(jax.nn.relu(margin - map_logits_NxHxW) * weights, anomalous_px)
  focal_map = _masked_mean(focal_elementwise(map_logits_NxHxW, masks_NxHxW, gamma) * weights, seg_px)
  focal_score = jnp.mean(focal_elementwise(score_logits_N, labels_N, gamma))
  parts = dict(l1_normal=l1_normal, l1_anomalous=l1_anomalous, focal_map=focal_map, focal_score=focal_score)
  return l1_normal + l1_anomalous + focal_map + focal_score, parts
