"""SuperSimpleNet configuration: every number the method uses (methods.md §3).

`Static` holds what changes shapes or the compiled program (one compilation per distinct
value); `Hparams` holds scalars that a sweep stacks on a leading M axis and vmaps.
Fields left as None are derived from `variant` and `supervised` by `resolve`, following the
official configs (ICPR 2024 `run_unsup`/`run_sup`, JIMS 2025 merged train.py).
"""

from __future__ import annotations

import dataclasses

import flax.struct

from jaxad import config as config_lib
from jaxad.errors import ConfigError

VARIANTS = ("icpr", "jims")
COMPUTE_DTYPES = ("float32", "bfloat16")


@dataclasses.dataclass(frozen=True)
class Static:
  """Shape-defining and structural settings."""

  variant: str = "icpr"  # "icpr" (ICPR 2024) or "jims" (2025 journal extension)
  supervised: bool = False  # trains on anomalous images with masks (KSDD2 / SensumSODF protocol)
  backbone: str = "wide_resnet50_2"  # torchvision IMAGENET1K_V1 weights (methods.md §1.1)
  backbone_weights: str | None = None  # name or path; None = the backbone's default weights
  layers: tuple[str, ...] = ("layer2", "layer3")
  image_size: tuple[int, int] = (256, 256)  # (H, W); KSDD2 (640, 232), Sensum capsule (320, 192)
  image_antialias: bool = False  # official: cv2 bilinear (no antialias); anomalib: True
  feature_align_corners: bool = True  # official True; anomalib False
  mask_align_corners: bool | None = None  # ICPR False, JIMS True (mask downsampling)
  adapt_cls_features: bool | None = None  # ICPR True (cls head reads adapted), JIMS False (raw)
  stop_grad: bool | None = None  # True unsupervised, False supervised
  clip_grad_norm: float | None = -1.0  # -1 = derive: 1.0 supervised, None unsupervised
  overlap: bool | None = None  # noise may overlap real defects: True unsupervised, False supervised
  flips: bool | None = None  # positives ×4 with flips (supervised)
  dilate: int | None = None  # JIMS supervised: 7×7 dilation of train masks; else 0
  distance_transform: tuple[float, float] | None = None  # JIMS supervised (w, p) = (3, 2)
  perlin_p_empty: float = 0.5  # probability that a sample gets no synthetic anomaly
  perlin_rescale_if_empty: bool = False  # anomalib #2936 fix; not in the official code
  seg_hidden: int = 1024
  cls_hidden: int = 128
  batch_size: int = 32  # the generator doubles it to 64 feature maps
  drop_last: bool = False  # True: drop each epoch's last, smaller batch (one compiled shape; official keeps it)
  epochs: int = 300
  lr_milestones: tuple[float, ...] = (0.8, 0.9)  # MultiStepLR at these fractions of the epochs
  lr_gamma: float = 0.4
  blur_kernel: int = 25  # torchvision GaussianBlur(25, σ=4), torch "reflect" padding
  blur_sigma: float = 4.0
  cache_features: bool = True  # keep frozen train features on device (exact: no augmentation)
  compute_dtype: str = "float32"  # training: "bfloat16" runs adaptor and heads on bfloat16 copies of the float32
  #   parameters (anomaly generation, losses, BatchNorm statistics, gradients and AdamW stay float32); not official


@flax.struct.dataclass
class Hparams:
  """Dynamic scalars (vmappable over a sweep's M axis)."""

  noise_std: float = 0.015  # Gaussian noise σ (tuned for WideResNet-50-2 V1 features)
  perlin_threshold: float = 0.2  # MVTec AD 0.2; VisA and supervised 0.6
  lr_adaptor: float = 1e-4
  wd_adaptor: float = 1e-2  # torch AdamW default
  lr_heads: float = 2e-4
  wd_heads: float = 1e-5
  trunc_margin: float = 0.5  # truncated-L1 margin th
  focal_gamma: float = 4.0
  seed: int = 42  # official unsupervised seed (supervised: 456654)
  init_seed: int = -1  # ≥ 0: the parameter init's own seed (`seed` then drives only the training
  #   randomness); -1: `seed`. Not in the references (one seed drives both there)


def resolve(static: Static) -> Static:
  """Fills the variant- and supervision-dependent defaults; validates."""
  if static.variant not in VARIANTS:
    raise ConfigError(f"variant must be one of {VARIANTS}, got {static.variant!r}")
  jims = static.variant == "jims"
  sup = static.supervised
  derived = dict(
      mask_align_corners=jims,
      adapt_cls_features=not jims,
      stop_grad=not sup,
      overlap=not sup,
      flips=sup,
      dilate=7 if (jims and sup) else 0,
      distance_transform=(3.0, 2.0) if (jims and sup) else None,
  )
  updates = {k: v for k, v in derived.items() if getattr(static, k) is None}
  updates["image_size"] = config_lib.image_hw(static.image_size)
  if static.clip_grad_norm == -1.0:
    updates["clip_grad_norm"] = 1.0 if sup else None
  out = dataclasses.replace(static, **updates)
  bad = {k: v for k, v in dict(batch_size=out.batch_size, epochs=out.epochs).items() if v < 1}
  if bad:
    raise ConfigError(f"these settings must be positive: {bad}")
  if out.blur_kernel % 2 != 1:
    raise ConfigError(f"blur_kernel must be odd, got {out.blur_kernel}")
  config_lib.check_ranges(out, positive=("seg_hidden", "cls_hidden", "blur_kernel", "blur_sigma", "clip_grad_norm"),
                          at_least_zero=("dilate", "lr_gamma", "distance_transform"),
                          fraction=("perlin_p_empty", "lr_milestones"))
  if out.compute_dtype not in COMPUTE_DTYPES:
    raise ConfigError(f"compute_dtype must be one of {COMPUTE_DTYPES}, got {out.compute_dtype!r}")
  return out


def check_hparams(hp: Hparams) -> None:
  """Range checks of one member's scalars (raises ConfigError)."""
  config_lib.check_ranges(hp, at_least_zero=("noise_std", "lr_adaptor", "wd_adaptor", "lr_heads", "wd_heads",
                                             "trunc_margin", "focal_gamma"), fraction=("perlin_threshold",))
  config_lib.check_init_seed(hp)


def default_hparams(static: Static) -> Hparams:
  """Paper defaults for this setting (supervised configs use threshold 0.6 and seed 456654)."""
  if static.supervised:
    return Hparams(perlin_threshold=0.6, seed=456654)
  return Hparams()

