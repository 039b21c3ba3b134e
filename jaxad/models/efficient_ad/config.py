"""EfficientAD configuration: every number the method uses (methods.md §4).

`Static` holds what changes shapes or the compiled program; `Hparams` holds scalars that a
sweep can stack on a leading axis. References: nelson1425/EfficientAD `efficientad.py` and
anomalib 2.7.0 `EfficientAdModel` / `EfficientAd` (Lightning module).
"""

from __future__ import annotations

import dataclasses

import flax.struct

from jaxad.errors import ConfigError

SIZES = ("s", "m")
POSTPROCESS = ("anomalib", "nelson")


@dataclasses.dataclass(frozen=True)
class Static:
  """Shape-defining and structural settings."""

  size: str = "s"  # PDN size: "s" (EfficientAD-S) or "m" (EfficientAD-M)
  padding: bool = False  # conv/pool padding in PDN and decoder sizing (anomalib and nelson default False)
  pad_maps: bool = True  # anomalib: zero-pad raw 56×56 maps by 4 px before resizing (only if padding=False)
  postprocess: str = "anomalib"  # "anomalib": pad raw maps, resize, normalise; "nelson": normalise, pad, resize
  image_size: tuple[int, int] = (256, 256)  # (H, W) network input; both references resize to 256×256
  out_channels: int = 384  # teacher channels C; the student has 2C
  train_steps: int = 70000  # nelson --train_steps; anomalib max_steps
  batch_size: int = 1  # anomalib raises if ≠ 1
  lr_decay_fraction: float = 0.95  # StepLR step_size = int(0.95 · train_steps), γ = 0.1
  lr_decay_gamma: float = 0.1  # StepLR factor
  dropout: float = 0.2  # decoder dropout rate, active only in training (nelson and anomalib)
  hard_loss_max_elems: int = 2 ** 24  # anomalib random-subsamples d_ST above this (torch.quantile limit)


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


def validate(static: Static) -> Static:
  """Checks the static settings; returns them unchanged."""
  if static.size not in SIZES:
    raise ConfigError(f"EfficientAD size must be one of {SIZES}, got {static.size!r}")
  if static.postprocess not in POSTPROCESS:
    raise ConfigError(f"postprocess must be one of {POSTPROCESS}, got {static.postprocess!r}")
  h, w = static.image_size
  if min(h, w) < 256:  # the AE encoder's final 8×8 conv needs ≥ 8 px after five stride-2 convs
    raise ConfigError(f"image_size must be at least 256×256 for the autoencoder, got {static.image_size}")
  if static.batch_size < 1 or static.train_steps < 1:
    raise ConfigError("batch_size and train_steps must be positive")
  return static
