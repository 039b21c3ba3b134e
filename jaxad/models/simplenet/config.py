"""SimpleNet configuration: every number the method uses (methods.md §2, official run.sh).

`Static` holds what changes shapes or the compiled program; `Hparams` holds the scalars a
sweep stacks on a leading M axis and vmaps. Defaults are the official MVTec AD settings
(DonaldRR/SimpleNet run.sh: resize 329, crop 288, batch 8, 40 meta-epochs × 4 GAN epochs,
σ 0.015, margin 0.5, seed 0).
"""

from __future__ import annotations

import dataclasses

import flax.struct

from jaxad import config as config_lib
from jaxad.errors import ConfigError

RESIZE_RATIO = 329 / 288  # Official: shorter side 329, then center crop 288.


@dataclasses.dataclass(frozen=True)
class Static:
  """Shape-defining and structural settings."""

  backbone: str = "wide_resnet50_2"  # torchvision IMAGENET1K_V1 weights (methods.md §1.1)
  backbone_weights: str | None = None  # name or path; None = the backbone's default weights
  layers: tuple[str, ...] = ("layer2", "layer3")
  image_size: tuple[int, int] = (288, 288)  # (H, W) of the center crop; one number means square
  resize_shorter: int | None = None  # shorter side before the crop; None = round(max(image_size) · 329 / 288)
  patchsize: int = 3  # PatchMaker unfold window (stride 1, zero padding)
  pretrain_embed_dim: int = 1536  # per-layer adaptive pooling length
  target_embed_dim: int = 1536  # aggregated feature length (adaptor width)
  dsc_hidden: int = 1024  # discriminator hidden width
  batch_size: int = 8
  drop_last: bool = False  # True: drop each epoch's last, smaller batch (one compiled shape; official keeps it)
  meta_epochs: int = 40  # the official code evaluates after each meta-epoch
  gan_epochs: int = 4  # passes over the train set per meta-epoch (160 in all)
  blur_sigma: float = 4.0  # scipy.ndimage.gaussian_filter(σ=4, truncate=4), mode 'reflect'
  blur_truncate: float = 4.0
  cache_features: bool = True  # keep the frozen train features on device when they fit (exact: no augmentation)
  select_on_test: bool = False  # official best-of-meta-epochs model selection ON THE TEST SET (optimistic)
  official_pro: bool = False  # also report the official non-standard "PRO" (labelled)


@flax.struct.dataclass
class Hparams:
  """Dynamic scalars (vmappable over a sweep's M axis)."""

  noise_std: float = 0.015  # Gaussian noise σ added after the adaptor (run.sh; CLI default 0.05)
  margin: float = 0.5  # truncated-L1 margin th (run.sh `dsc_margin`; CLI default 0.8)
  lr_adaptor: float = 1e-4  # AdamW, 0.1 · lr with lr = 1e-3
  wd_adaptor: float = 1e-2  # torch AdamW default decay
  lr_dsc: float = 2e-4  # Adam with coupled L2
  wd_dsc: float = 1e-5
  seed: int = 0  # official `--seed 0`
  init_seed: int = -1  # ≥ 0: the parameter init's own seed (`seed` then drives only the training
  #   randomness); -1: `seed`. Not in the references (one seed drives both there)


def resolve(static: Static) -> Static:
  """Fills `resize_shorter`, makes a one-number image size square, validates.

  The protocol options (`select_on_test`, `official_pro`) are refused here because the shared
  engine only evaluates the final model; `jaxad fit --model simplenet` goes through
  `jaxad.models.simplenet.protocol`, which strips them before calling this and runs them
  itself, so they are never silently ignored.
  """
  size = config_lib.image_hw(static.image_size)
  shorter = static.resize_shorter
  if shorter is None:
    shorter = int(round(max(size) * RESIZE_RATIO))
  if shorter < min(size):
    raise ConfigError(f"resize_shorter={shorter} is below the crop {size}: the shorter side is resized to "
                      f"resize_shorter, then the crop is cut from it")
  positive = dict(patchsize=static.patchsize, pretrain_embed_dim=static.pretrain_embed_dim,
                  target_embed_dim=static.target_embed_dim, dsc_hidden=static.dsc_hidden,
                  batch_size=static.batch_size, meta_epochs=static.meta_epochs, gan_epochs=static.gan_epochs)
  bad = {k: v for k, v in positive.items() if v < 1}
  if bad:
    raise ConfigError(f"these settings must be positive: {bad}")
  if static.patchsize % 2 != 1:
    raise ConfigError(f"patchsize must be odd, got {static.patchsize}")
  if static.blur_sigma <= 0 or static.blur_truncate <= 0:
    raise ConfigError("blur_sigma and blur_truncate must be positive")
  if not static.layers:
    raise ConfigError("layers must name at least one backbone stage")
  if static.select_on_test or static.official_pro:
    raise ConfigError("select_on_test and official_pro are protocol options: `jaxad fit --model simplenet` "
                      "(jaxad.models.simplenet.protocol) runs them; the shared engine alone would ignore them")
  return dataclasses.replace(static, image_size=size, resize_shorter=shorter, layers=tuple(static.layers))


def check_hparams(hp: Hparams) -> None:
  """Range checks of one member's scalars (raises ConfigError)."""
  config_lib.check_ranges(hp, at_least_zero=("noise_std", "margin", "lr_adaptor", "wd_adaptor", "lr_dsc", "wd_dsc"))
  config_lib.check_init_seed(hp)


def default_hparams(static: Static) -> Hparams:
  """The official MVTec AD values (run.sh)."""
  del static
  return Hparams()
