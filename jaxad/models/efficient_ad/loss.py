"""EfficientAD training losses (methods.md §4.5; anomalib 2.7.0 `EfficientAdModel.compute_losses`).

With T̂ the normalised teacher output, S the student (2C channels), A the autoencoder:
  d_ST = (T̂(x) − S(x)[:C])²; L_hard = mean of the d_ST elements ≥ quantile(d_ST, p_hard);
  L_pen = mean(S(P)[:C]²) on a penalty (ImageNet) image P; L_ST = L_hard + L_pen;
  L_AE = mean((T̂(x_aug) − A(x_aug))²); L_STAE = mean((A(x_aug) − S(x_aug)[C:])²), A not detached;
  total = L_ST + L_AE + L_STAE.
Static shapes: the hard loss is a masked mean, the quantile `jnp.quantile(method="linear")`
(= torch.quantile). Deviation: anomalib first random-subsamples d_ST to 2²⁴ elements when it is
larger (only for batch·C·H·W > 16.7 M, i.e. never at batch 1, 256×256); jaxad always uses all.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def hard_feature_loss(d_st, p_hard: float = 0.999):
  """Mean of the elements of `d_st` (any shape) that are ≥ its linear-interpolated `p_hard` quantile."""
  flat = d_st.reshape(-1)
  threshold = jnp.quantile(flat, p_hard, method="linear")
  mask = (flat >= threshold).astype(flat.dtype)
  return jnp.sum(flat * mask) / jnp.sum(mask)


def penalty_loss(student_penalty_BxHxWx2C, out_channels: int):
  """mean(S(P)[..., :C]²)."""
  return jnp.mean(jnp.square(student_penalty_BxHxWx2C[..., :out_channels]))


def efficient_ad_losses(teacher_norm_BxHxWxC, student_BxHxWx2C, student_penalty_BxHxWx2C,
                        teacher_aug_norm_BxHxWxC, ae_aug_BxHxWxC, student_aug_BxHxWx2C, p_hard: float = 0.999):
  """Returns (total, dict(st, hard, penalty, ae, stae)).

  Args:
    teacher_norm_BxHxWxC: T̂(x), already normalised (treated as constant).
    student_BxHxWx2C: S(x).
    student_penalty_BxHxWx2C: S(P) on the penalty image; None: no penalty (nelson's "none").
    teacher_aug_norm_BxHxWxC: T̂(x_aug) (constant).
    ae_aug_BxHxWxC: A(x_aug) (gradients flow into both L_AE and L_STAE).
    student_aug_BxHxWx2C: S(x_aug).
    p_hard: hard-feature quantile.
  """
  c = teacher_norm_BxHxWxC.shape[-1]
  teacher = jax.lax.stop_gradient(teacher_norm_BxHxWxC)
  teacher_aug = jax.lax.stop_gradient(teacher_aug_norm_BxHxWxC)
  d_st = jnp.square(teacher - student_BxHxWx2C[..., :c])
  hard = hard_feature_loss(d_st, p_hard)
  penalty = (jnp.zeros((), d_st.dtype) if student_penalty_BxHxWx2C is None
             else penalty_loss(student_penalty_BxHxWx2C, c))
  ae = jnp.mean(jnp.square(teacher_aug - ae_aug_BxHxWxC))
  stae = jnp.mean(jnp.square(ae_aug_BxHxWxC - student_aug_BxHxWx2C[..., c:]))
  st = hard + penalty
  return st + ae + stae, dict(st=st, hard=hard, penalty=penalty, ae=ae, stae=stae)
