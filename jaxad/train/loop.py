"""The host training loop shared by every method (single runs are sweeps with M = 1).

Per step: the frozen backbone features of the batch are computed once and shared by all M
members; `jit(vmap(method.train_step))` updates every member. With `cache_features` the
frozen features of the whole train split are computed once and kept on device, and K steps
run inside one compiled `lax.scan` (no host round trip per step). The data order is a
seeded permutation per epoch (shared by all members, derived from the step, so resuming
needs no iterator state beyond the step); member randomness is `fold_in(key(seed_m), step)`.

Checkpoints are written every `ckpt_every` steps (a multiple of the scan chunk) and at the
end; a restarted run resumes from the latest complete one and produces bitwise the same
result on CPU. A member whose loss becomes non-finite is frozen (`alive=False`); for M = 1
the run stops with a clear message.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxad import provenance
from jaxad.checkpoint import Checkpointer
from jaxad.errors import JaxadError
from jaxad.train.state import TrainState

INIT_TAG, TRAIN_TAG = 0, 1


class NonFiniteLossError(JaxadError):
  """Training produced a non-finite loss."""


@dataclasses.dataclass
class SplitData:
  """One split preprocessed in memory (host numpy)."""

  image: np.ndarray  # (N, H, W, 3) float32, ImageNet-normalised
  mask: np.ndarray  # (N, H, W) float32 {0, 1}
  label: np.ndarray  # (N,) int32
  is_segmented: np.ndarray  # (N,) bool
  components: np.ndarray | None = None  # (N, H, W) int32
  file_name: list[str] = dataclasses.field(default_factory=list)
  defect_type: list[str] = dataclasses.field(default_factory=list)

  def __len__(self) -> int:
    return len(self.label)


def member_keys(hps_M) -> jax.Array:
  """One PRNG key per member, from its seed."""
  return jax.vmap(lambda s: jax.random.key(s))(jnp.asarray(hps_M.seed, jnp.uint32))


def epoch_permutation(data_seed: int, epoch: int, n: int) -> np.ndarray:
  return np.random.default_rng([data_seed, epoch]).permutation(n)


def batch_indices(data_seed: int, step: int, n: int, batch_size: int, steps_per_epoch: int) -> np.ndarray:
  epoch, i = divmod(step, steps_per_epoch)
  return epoch_permutation(data_seed, epoch, n)[i * batch_size:(i + 1) * batch_size]


@dataclasses.dataclass
class Trainer:
  """Compiled functions of one (method, static) point for M members."""

  method: object
  static: object
  hps_M: object
  n_train: int
  features_fn: object
  frozen_vars: object

  def __post_init__(self):
    self.spe = self.method.steps_per_epoch(self.static, self.n_train)
    self.total = self.method.total_steps(self.static, self.n_train)
    self.features = jax.jit(self.features_fn)

  def init_states(self, example_feats) -> TrainState:
    keys = jax.vmap(lambda k: jax.random.fold_in(k, INIT_TAG))(member_keys(self.hps_M))
    init_one = lambda key, hp: self.method.init(self.static, key, hp, example_feats, self.spe)
    return jax.jit(jax.vmap(init_one))(keys, self.hps_M)

  @functools.cached_property
  def _member_step(self):
    def step_one(state, feats, batch, key, hp):
      new, metrics = self.method.train_step(self.static, state, feats, batch,
                                            jax.random.fold_in(key, state.step), hp, self.spe)
      from jaxad.train.state import keep_if_finite
      return keep_if_finite(new, state, metrics["loss"]), metrics

    return jax.vmap(step_one, in_axes=(0, None, None, 0, 0))

  def _keys(self):
    return jax.vmap(lambda k: jax.random.fold_in(k, TRAIN_TAG))(member_keys(self.hps_M))

  @functools.cached_property
  def scan_chunk(self):
    """(states, cache, idx_KxB) → (states, metrics_KxM): K steps over cached features, one call."""

    def run(states, cache, idx_KxB):
      keys = self._keys()

      def body(states, idx_B):
        batch = {k: v[idx_B] for k, v in cache.items() if k != "feats"}
        return self._member_step(states, cache["feats"][idx_B], batch, keys, self.hps_M)

      return jax.lax.scan(body, states, idx_KxB)

    return jax.jit(run, donate_argnums=0)

  @functools.cached_property
  def image_step(self):
    """(states, batch with images) → (states, metrics_M): one step, features computed inside."""

    def run(states, frozen_vars, batch):
      feats = jax.lax.stop_gradient(self.features_fn(frozen_vars, batch["image"]))
      rest = {k: v for k, v in batch.items() if k != "image"}
      return self._member_step(states, feats, rest, self._keys(), self.hps_M)

    return jax.jit(run, donate_argnums=0)


def compute_features(features, frozen_vars, images_NxHxWx3: np.ndarray, batch_size: int = 32) -> jax.Array:
  """Frozen features of many images, batch by batch (padding the last batch to one shape)."""
  outs = []
  n = len(images_NxHxWx3)
  for start in range(0, n, batch_size):
    chunk = images_NxHxWx3[start:start + batch_size]
    pad = batch_size - len(chunk) if n > batch_size else 0
    if pad:
      chunk = np.concatenate([chunk, np.repeat(chunk[-1:], pad, axis=0)])
    out = features(frozen_vars, jnp.asarray(chunk))
    outs.append(out[:len(chunk) - pad] if pad else out)
  return jnp.concatenate(outs)


def fit(method, static, hps_M, train: SplitData, workdir: str | Path, *, data_seed: int = 0,
        max_steps: int | None = None, chunk: int = 25, ckpt_every: int = 500, progress: bool = True,
        config_record: dict | None = None, frozen=None) -> TrainState:
  """Trains M members on `train` and returns their stacked final states (resuming if possible).

  Args:
    method: a `Method` record; static: its resolved static config; hps_M: stacked Hparams.
    train: the preprocessed train split.
    workdir: where checkpoints, metrics.jsonl and provenance.json go.
    data_seed: seed of the shared data order.
    max_steps: overrides the method's total steps (smoke runs).
    chunk: steps per compiled call (and logging cadence).
    ckpt_every: checkpoint cadence in steps (rounded up to a multiple of `chunk`).
    config_record: JSON-able description of the run stored in checkpoints.
    frozen: optional precomputed (features_fn, frozen_vars).
  """
  workdir = Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  features_fn, frozen_vars = frozen or method.make_frozen(static)
  trainer = Trainer(method, static, hps_M, len(train), features_fn, frozen_vars)
  total = max_steps if max_steps is not None else trainer.total
  batch_size = min(static.batch_size, len(train))
  chunk = max(1, min(chunk, total))
  ckpt_every = max(chunk, -(-ckpt_every // chunk) * chunk)
  m = int(np.shape(hps_M.seed)[0])

  feats_all = compute_features(trainer.features, frozen_vars, train.image)
  cache = {"feats": feats_all, "mask": jnp.asarray(train.mask), "label": jnp.asarray(train.label),
           "is_segmented": jnp.asarray(train.is_segmented)}
  states = trainer.init_states(feats_all[:1])

  ckpt = Checkpointer(workdir)
  start = 0
  latest = ckpt.latest_step()
  if latest is not None:
    states, meta = ckpt.restore(latest, states)
    start = int(meta["step"])
  prov = provenance.collect()
  (workdir / "provenance.json").write_text(json.dumps(prov, indent=2))
  meta_base = {"config": config_record or {}, "provenance": prov, "data_seed": data_seed, "total_steps": total}

  bar = _progress(total, start, progress)
  log_path = workdir / "metrics.jsonl"
  step = start
  try:
    while step < total:
      k = min(chunk, total - step)
      idx = np.stack([batch_indices(data_seed, s, len(train), batch_size, trainer.spe) for s in range(step, step + k)])
      t0 = time.perf_counter()
      states, metrics = trainer.scan_chunk(states, cache, jnp.asarray(idx))
      metrics = jax.device_get(metrics)
      alive = np.asarray(jax.device_get(states.alive))
      dt = time.perf_counter() - t0
      step += k
      _log(log_path, step, metrics, alive, k * batch_size / dt)
      if bar is not None:
        bar.update(k)
        bar.set_postfix(loss=f"{float(np.mean(metrics['loss'][-1])):.4f}", img_s=f"{k * batch_size / dt:.0f}")
      if not alive.any() or (m == 1 and not alive[0]):
        bad = int(np.argmax(~np.isfinite(metrics["loss"][:, 0]))) if m == 1 else None
        raise NonFiniteLossError(
            f"training stopped: the loss became non-finite near step {step - k + (bad or 0) + 1}; "
            "lower the learning rate or noise, or check the input data")
      if step % ckpt_every == 0 or step == total:
        ckpt.save(step, states, {**meta_base, "step": step, "alive": alive.tolist()})
  finally:
    if bar is not None:
      bar.close()
    ckpt.close()
  return states


def _log(path: Path, step: int, metrics: dict, alive: np.ndarray, images_per_s: float) -> None:
  """Appends the last step of a chunk to metrics.jsonl (per-member lists)."""
  rec = {"step": step, "images_per_s": round(images_per_s, 2), "alive": alive.tolist()}
  for name, values in metrics.items():
    rec[name] = np.asarray(values[-1], np.float64).round(6).tolist()
  with open(path, "a") as f:
    f.write(json.dumps(rec) + "\n")


def _progress(total: int, start: int, enabled: bool):
  if not enabled:
    return None
  from tqdm.auto import tqdm
  return tqdm(total=total, initial=start, unit="step", dynamic_ncols=True, leave=True)
