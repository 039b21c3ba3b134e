"""EfficientAD configuration: every number the method uses (methods.md §4).

`Static` holds what changes shapes or the compiled program; `Hparams` holds scalars that a
sweep can stack on a leading axis. References: nelson1425/EfficientAD `efficientad.py` and
anomalib 2.7.0 `EfficientAdModel` / `EfficientAd` (Lightning module).
"""

from __future__ import annotations

import dataclasses

import flax.struct

from jaxad import config as config_lib
from jaxad.errors import ConfigError

SIZES = ("s", "m")
POSTPROCESS = ("anomalib", "nelson")
COMPUTE_DTYPES = ("float32", "bfloat16")
TEACHER_STATS = ("nelson", "anomalib")
EVAL_SIZES = ("input", "original")


@dataclasses.dataclass(frozen=True)
class Static:
  """Shape-defining and structural settings."""

  size: str = "s"  # PDN size: "s" (EfficientAD-S) or "m" (EfficientAD-M)
  padding: bool = False  # conv/pool padding in PDN and decoder sizing (anomalib and nelson default False)
  pad_maps: bool = True  # anomalib: zero-pad raw 56×56 maps by 4 px before resizing (only if padding=False)
  postprocess: str = "anomalib"  # "anomalib": pad raw maps, resize, normalise; "nelson": normalise, pad, resize
  image_size: tuple[int, int] = (256, 256)  # (H, W) network input; both references resize to 256×256
  eval_size: str = "input"  # test metrics at "input" size (anomalib) or each image's "original" size (nelson and the
  #   MVTec evaluation: the map is resized to the image's size, its maximum is the score); "original" needs nelson
  out_channels: int = 384  # teacher channels C; the student has 2C
  train_steps: int = 70000  # nelson --train_steps; anomalib max_steps
  batch_size: int = 1  # anomalib raises if ≠ 1
  lr_decay_fraction: float = 0.95  # StepLR step_size = int(0.95 · train_steps), γ = 0.1
  lr_decay_gamma: float = 0.1  # StepLR factor
  dropout: float = 0.2  # decoder dropout rate, active only in training (nelson and anomalib)
  teacher: str | None = None  # registry name, weights file (anomalib .pth or `jaxad distill` output) or "random";
  #   None = "efficientad_teacher_<size>" (anomalib's release of nelson's teachers)
  teacher_stats: str = "nelson"  # μ/σ of the teacher outputs: "nelson" (two passes) or "anomalib" (Σy, Σy²)
  penalty: str = "bundled"  # penalty images: "bundled" (photos shipped with scikit-image/scikit-learn, random
  #   crops), a folder of images (ImageNet/Imagenette: nelson's resize 2·size, center crop), or "none"
  penalty_pool: int = 1000  # penalty images held in host memory (folder: a seeded random subset; bundled: crops);
  #   0 streams: every step gets its own image (folder: a shuffled pass over all files, as nelson)
  image_resize: str = "pil-bilinear"  # nelson: torchvision Resize on PIL images; anomalib: torch-bilinear-antialias
  cache_features: bool = True  # keep the train images on device (the step gathers its batch there)
  compute_dtype: str = "float32"  # training convolutions: "bfloat16" runs teacher, student and AE on bfloat16
  #   copies of the float32 parameters (losses, gradients, Adam in float32); not in the references


@flax.struct.dataclass
class Hparams:
  """Dynamic scalars."""

  lr: float = 1e-4  # Adam learning rate (student + AE)
  weight_decay: float = 1e-5  # torch Adam coupled L2
  p_hard: float = 0.999  # hard-feature quantile of d_ST
  quantile_a: float = 0.9  # q_a of the validation maps
  quantile_b: float = 0.995  # q_b of the validation maps
  map_scale: float = 0.1  # normalised map = 0.1 · (map − q_a) / (q_b − q_a)
  weight_st: float = 0.5  # combined = 0.5 · ST + 0.5 · AE
  weight_ae: float = 0.5  # weight of the normalised AE map in the combination
  aug_min: float = 0.8  # AE input augmentation factor ~ U(0.8, 1.2) (brightness | contrast | saturation)
  aug_max: float = 1.2
  seed: int = 42  # nelson and anomalib benchmark seed
  init_seed: int = -1  # ≥ 0: the parameter init's own seed (`seed` then drives only the training
  #   randomness); -1: `seed`. Not in the references (one seed drives both there)


MIN_IMAGE_SIDE = 64  # smallest input whose PDN output is non-empty (64 → 8×8 without padding)


def validate(static: Static) -> Static:
  """Checks the static settings; returns them unchanged.

  The references need ≥ 256 px (the AE's 8×8 code conv); jaxad accepts ≥ 64 px by shrinking that
  conv's kernel to the remaining grid (`model.code_kernel`), a documented extension for small runs.
  """
  if static.size not in SIZES:
    raise ConfigError(f"EfficientAD size must be one of {SIZES}, got {static.size!r}")
  if static.postprocess not in POSTPROCESS:
    raise ConfigError(f"postprocess must be one of {POSTPROCESS}, got {static.postprocess!r}")
  if static.eval_size not in EVAL_SIZES:
    raise ConfigError(f"eval_size must be one of {EVAL_SIZES}, got {static.eval_size!r}")
  if static.eval_size == "original" and static.postprocess != "nelson":
    raise ConfigError("eval_size=original is nelson's protocol and needs postprocess=nelson (anomalib's "
                      f"quantiles are taken over maps at the input size), got postprocess={static.postprocess}")
  if static.compute_dtype not in COMPUTE_DTYPES:
    raise ConfigError(f"compute_dtype must be one of {COMPUTE_DTYPES}, got {static.compute_dtype!r}")
  if static.teacher_stats not in TEACHER_STATS:
    raise ConfigError(f"teacher_stats must be one of {TEACHER_STATS}, got {static.teacher_stats!r}")
  h, w = config_lib.image_hw(static.image_size)
  if min(h, w) < MIN_IMAGE_SIDE:
    raise ConfigError(f"image_size must be at least {MIN_IMAGE_SIDE}×{MIN_IMAGE_SIDE}, got {static.image_size}")
  bad = {k: v for k, v in dict(batch_size=static.batch_size, train_steps=static.train_steps).items() if v < 1}
  if bad:
    raise ConfigError(f"these settings must be positive: {bad}")
  if static.penalty_pool < 0:
    raise ConfigError(f"penalty_pool must be 0 (stream) or positive (a pool), got {static.penalty_pool}")
  if not 0.0 < static.lr_decay_fraction <= 1.0:
    raise ConfigError(f"lr_decay_fraction must be in (0, 1], got {static.lr_decay_fraction}")
  config_lib.check_ranges(static, positive=("out_channels",), at_least_zero=("lr_decay_gamma",),
                          below_one=("dropout",))
  return static


def check_hparams(hp: Hparams) -> None:
  """Range checks of one member's scalars (raises ConfigError)."""
  config_lib.check_ranges(hp, at_least_zero=("lr", "weight_decay", "weight_st", "weight_ae", "aug_min", "aug_max"),
                          positive=("map_scale",), fraction=("p_hard", "quantile_a", "quantile_b"))
  config_lib.check_init_seed(hp)
  if not hp.quantile_a < hp.quantile_b:
    raise ConfigError(f"quantile_a must be below quantile_b (the map is scaled by 1/(q_b − q_a)), got "
                      f"{hp.quantile_a} and {hp.quantile_b}")
  if not hp.aug_min <= hp.aug_max:
    raise ConfigError(f"aug_min must not exceed aug_max, got {hp.aug_min} and {hp.aug_max}")


def resolve(static: Static) -> Static:
  """Fills the teacher default from the size; makes a one-number image size square; validates."""
  updates = {}
  if static.teacher is None:
    updates["teacher"] = f"efficientad_teacher_{static.size}"
  updates["image_size"] = config_lib.image_hw(static.image_size)
  return validate(dataclasses.replace(static, **updates))


def default_hparams(static: Static) -> Hparams:
  del static  # Same defaults for S and M.
  return Hparams()
