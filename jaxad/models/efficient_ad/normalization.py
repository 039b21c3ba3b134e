"""EfficientAD teacher-feature statistics and anomaly-map normalisation (methods.md §4.4, §4.6).

Teacher statistics: anomalib accumulates Σy, Σy² per channel in one pass, std = sqrt(E[y²] − μ²);
nelson1425 takes two passes: μ = mean of per-image channel means, σ = sqrt(mean of per-image mean
squared deviations from μ) (equal for equal-size images up to rounding).
Maps: map_ST = channel mean of (T̂ − S[:C])², map_AE = channel mean of (A − S[C:])²;
normalised = 0.1·(map − q_a)/(q_b − q_a); combined = 0.5·ST + 0.5·AE (anomalib `forward`).
Post-processing ("anomalib", `pad_maps`): each raw map zero-padded by 4 px, resized to the input
size, then normalised, so quantiles are taken over resized maps; ("nelson"): quantiles over raw
maps, the combined normalised map zero-padded by 4 px and resized to the output size.
"""

from __future__ import annotations

import jax.numpy as jnp

from jaxad.errors import ConfigError
from jaxad.ops.resize import resize

MAP_PAD = 4  # px of zeros around a 56×56 map (receptive-field offset of the unpadded PDN)


def channel_sums(teacher_BxHxWxC):
  """(Σy, Σy², count) per channel of one batch, for the one-pass (anomalib) statistics."""
  y = teacher_BxHxWxC.astype(jnp.float32)
  return y.sum(axis=(0, 1, 2)), jnp.square(y).sum(axis=(0, 1, 2)), y.shape[0] * y.shape[1] * y.shape[2]


def mean_std_one_pass(channel_sum_C, channel_sum_sq_C, count: int):
  """anomalib: μ = Σy/n, σ = sqrt(Σy²/n − μ²)."""
  mean = channel_sum_C / count
  return mean, jnp.sqrt(channel_sum_sq_C / count - jnp.square(mean))


def mean_std_two_pass(teacher_outputs):
  """nelson: μ = mean of per-image channel means, σ = sqrt(mean over images of the per-image mean of
  (y − μ)²). `teacher_outputs()` yields the (B, H, W, C) batches; it is called once per pass, so the
  outputs are computed twice rather than held."""
  means = jnp.concatenate([y.mean(axis=(1, 2)) for y in teacher_outputs()])
  mean = means.mean(axis=0)
  sq_devs = jnp.concatenate([jnp.square(y - mean).mean(axis=(1, 2)) for y in teacher_outputs()])
  return mean, jnp.sqrt(sq_devs.mean(axis=0))


def normalize_teacher(teacher_BxHxWxC, mean_C, std_C):
  """(T − μ) / σ."""
  return (teacher_BxHxWxC - mean_C) / std_C


def raw_maps(teacher_norm_BxHxWxC, student_BxHxWx2C, ae_BxHxWxC):
  """(map_ST, map_AE), each (B, H, W): channel means of the squared differences."""
  c = teacher_norm_BxHxWxC.shape[-1]
  map_st = jnp.mean(jnp.square(teacher_norm_BxHxWxC - student_BxHxWx2C[..., :c]), axis=-1)
  map_ae = jnp.mean(jnp.square(ae_BxHxWxC - student_BxHxWx2C[..., c:]), axis=-1)
  return map_st, map_ae


def pad_and_resize(map_BxHxW, size: tuple[int, int], pad: int = MAP_PAD):
  """Zero-pad by `pad` px per side, then PyTorch bilinear (align_corners=False) resize to `size`."""
  return resize_grid_map(jnp.pad(map_BxHxW, ((0, 0), (pad, pad), (pad, pad))), size)


def map_quantiles(maps, quantile_a: float = 0.9, quantile_b: float = 0.995):
  """(q_a, q_b) over all elements of the validation maps (linear interpolation, = torch.quantile)."""
  flat = jnp.concatenate([jnp.ravel(m) for m in maps]) if isinstance(maps, (list, tuple)) else jnp.ravel(maps)
  return jnp.quantile(flat, quantile_a, method="linear"), jnp.quantile(flat, quantile_b, method="linear")


def normalize_map(map_, q_a, q_b, scale: float = 0.1):
  """scale · (map − q_a) / (q_b − q_a)."""
  return scale * (map_ - q_a) / (q_b - q_a)


def combined_map(map_st, map_ae, quantiles: dict, weight_st: float = 0.5, weight_ae: float = 0.5,
                 scale: float = 0.1):
  """weight_st · normalised ST + weight_ae · normalised AE; `quantiles` has qa_st, qb_st, qa_ae, qb_ae."""
  st = normalize_map(map_st, quantiles["qa_st"], quantiles["qb_st"], scale)
  ae = normalize_map(map_ae, quantiles["qa_ae"], quantiles["qb_ae"], scale)
  return weight_st * st + weight_ae * ae


def anomaly_map(map_st, map_ae, quantiles: dict, output_size: tuple[int, int], *, postprocess: str = "anomalib",
                pad_maps: bool = True, weight_st: float = 0.5, weight_ae: float = 0.5, scale: float = 0.1):
  """Final (B, H_out, W_out) anomaly map from raw (B, h, w) maps; the image score is its max.

  postprocess "anomalib": pad (if `pad_maps`) and resize each raw map, then normalise and combine;
  "nelson": normalise and combine the raw maps, then pad (if `pad_maps`) and resize.
  `quantiles` must have been computed on maps processed the same way (`postprocess_maps`).
  """
  pad = MAP_PAD if pad_maps else 0
  if postprocess == "anomalib":
    map_st, map_ae = pad_and_resize(map_st, output_size, pad), pad_and_resize(map_ae, output_size, pad)
    return combined_map(map_st, map_ae, quantiles, weight_st, weight_ae, scale)
  if postprocess == "nelson":
    return resize_grid_map(nelson_grid_map(map_st, map_ae, quantiles, pad_maps=pad_maps, weight_st=weight_st,
                                           weight_ae=weight_ae, scale=scale), output_size)
  raise ConfigError(f"postprocess must be 'anomalib' or 'nelson', got {postprocess!r}")


def nelson_grid_map(map_st, map_ae, quantiles: dict, *, pad_maps: bool = True, weight_st: float = 0.5,
                    weight_ae: float = 0.5, scale: float = 0.1):
  """nelson's combined normalised map on the PDN grid, zero-padded by 4 px if `pad_maps`: (B, h + 8, w + 8).
  `resize_grid_map` of it to any size is the anomaly map at that size (nelson resizes to the original image)."""
  pad = MAP_PAD if pad_maps else 0
  combined = combined_map(map_st, map_ae, quantiles, weight_st, weight_ae, scale)
  return jnp.pad(combined, ((0, 0), (pad, pad), (pad, pad)))


def resize_grid_map(map_BxHxW, size: tuple[int, int]):
  """PyTorch bilinear (align_corners=False) resize of a (B, H, W) map to `size`."""
  return resize(map_BxHxW, size, "bilinear", align_corners=False, antialias=False, channels_last=False)


def postprocess_maps(map_st, map_ae, output_size: tuple[int, int], *, postprocess: str = "anomalib",
                     pad_maps: bool = True):
  """The raw maps as the quantiles are taken over them: resized (anomalib) or unchanged (nelson)."""
  if postprocess == "nelson":
    return map_st, map_ae
  pad = MAP_PAD if pad_maps else 0
  return pad_and_resize(map_st, output_size, pad), pad_and_resize(map_ae, output_size, pad)
