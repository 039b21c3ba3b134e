"""The host training loop shared by every method (single runs are sweeps with M = 1).

Per step: the frozen backbone features of the batch are computed once and shared by all M
members; `jit(vmap(method.train_step))` updates every member. When they fit a memory budget
(and the static config allows it) the frozen features of the whole train split are computed
once and kept on device; otherwise each step computes them from the images. On accelerators
K steps run inside one compiled `lax.scan` (no host round trip per step); on the CPU backend
each step is its own compiled call (see `use_scan`). The data order is a
seeded permutation per epoch (shared by all members, derived from the step, so resuming
needs no iterator state beyond the step); member randomness is `fold_in(key(seed_m), step)`, and the
parameters are initialised from `key(seed_m)`, or from `key(init_seed_m)` where a member sets that (≥ 0): a
sweep over both separates the init's share of the seed-to-seed spread from the training randomness'.

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

from jaxad import atomic, config as config_lib, provenance
from jaxad.checkpoint import Checkpointer
from jaxad.errors import ConfigError, JaxadError
from jaxad.train.state import TrainState, keep_if_finite

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
  loss_weight: np.ndarray | None = None  # (N, H, W) float32 per-pixel loss weights (SSN JIMS supervised)
  original_mask: list[np.ndarray] | None = None  # N (H_i, W_i) bool masks at each image's own size (eval_size=original)
  original_channels: list[tuple] | None = None  # N tuples of MVTec LOCO defect `Channel`s (sPRO; eval_size=original)
  file_name: list[str] = dataclasses.field(default_factory=list)
  defect_type: list[str] = dataclasses.field(default_factory=list)

  def __len__(self) -> int:
    return len(self.label)


def hparams_record(hps_M) -> dict:
  """Stacked Hparams as config.json and checkpoints store them: {field: [one value per member]}."""
  return {k: np.asarray(v).tolist() for k, v in dataclasses.asdict(hps_M).items()}


def model_record(method, static, hps_M) -> dict:
  """What a checkpoint records of the members it holds (`jaxad fit` adds its run settings)."""
  return {"model": method.name, "static": config_lib.to_record(static), "hparams": hparams_record(hps_M)}


def settings_differences(stored: dict, want: dict) -> list[str]:
  """The model settings in which two records differ: the model, or a static/hparams field both hold
  (a field only one jaxad version has is not compared)."""
  if stored.get("model") != want["model"]:
    return ["model"]
  def same(a, b):  # tuples as the stored lists; NaN equals NaN
    return json.dumps(a) == json.dumps(b)
  return [f"{part}.{k}" for part in ("static", "hparams") for k in sorted(set(stored.get(part, {})) & set(want[part]))
          if not same(stored[part][k], want[part][k])]


def member_keys(hps_M, init: bool = False) -> jax.Array:
  """One PRNG key per member, from its seed (init: from its init_seed where that is ≥ 0)."""
  seed_M = jnp.asarray(hps_M.seed)
  if init and hasattr(hps_M, "init_seed"):
    seed_M = jnp.where(jnp.asarray(hps_M.init_seed) >= 0, jnp.asarray(hps_M.init_seed), seed_M)
  return jax.vmap(lambda s: jax.random.key(s))(seed_M.astype(jnp.uint32))


def epoch_permutation(data_seed: int, epoch: int, n: int) -> np.ndarray:
  return np.random.default_rng([data_seed, epoch]).permutation(n)


def uniform_sampler(n: int, data_seed: int):
  """The default epoch order: a seeded permutation of the n train samples per epoch."""
  return lambda epoch: epoch_permutation(data_seed, epoch, n)


def batch_indices(sampler, step: int, batch_size: int, steps_per_epoch: int) -> np.ndarray:
  """The sample indices of training step `step`; an epoch's last batch is smaller when the epoch
  length is not a multiple of the batch size and the method keeps that batch (steps_per_epoch = ⌈n/b⌉)."""
  epoch, i = divmod(step, steps_per_epoch)
  return sampler(epoch)[i * batch_size:(i + 1) * batch_size]


def batch_length(step: int, batch_size: int, steps_per_epoch: int, epoch_len: int) -> int:
  """len(batch_indices(...)) without drawing the epoch's order."""
  return min(batch_size, epoch_len - (step % steps_per_epoch) * batch_size)


def same_length_steps(start: int, limit: int, batch_size: int, steps_per_epoch: int, epoch_len: int) -> int:
  """How many steps from `start` (1 to `limit`) have start's batch length: a compiled chunk never
  mixes an epoch's last, smaller batch with full ones."""
  first = batch_length(start, batch_size, steps_per_epoch, epoch_len)
  k = 1
  while k < limit and batch_length(start + k, batch_size, steps_per_epoch, epoch_len) == first:
    k += 1
  return k


@dataclasses.dataclass
class Trainer:
  """Compiled functions of one (method, static, frozen features) point, for M members.

  The hyperparameters are arguments of the compiled functions (not constants), so one
  compilation serves every category and every sweep chunk of the same shapes.
  """

  method: object
  static: object
  n_train: int
  features_fn: object
  mesh: object = None  # jax.sharding.Mesh with axis "members": each device steps its share of the members

  def __post_init__(self):
    self.spe = self.method.steps_per_epoch(self.static, self.n_train)
    self.total = self.method.total_steps(self.static, self.n_train)
    self.features = _jit_features(self.features_fn)
    self.init_states = _jit_init(self.method, self.static, self.spe)

  def chunk_fn(self, cached: bool, scan: bool | None = None):
    return _jit_chunk(self.method, self.static, self.spe, self.features_fn, cached, use_scan() if scan is None else scan,
                      self.mesh)

  def run_steps(self, states, hps_M, source, selectors, cached: bool):
    """Runs the K steps given by `selectors` (leading axis K); returns (states, metrics with a K axis).

    cached: source = the device feature cache and selectors = batch indices (K, B);
    otherwise source = frozen variables and selectors = stacked batches with images.
    """
    scan = use_scan()
    run_chunk = self.chunk_fn(cached, scan)
    if scan:
      return run_chunk(states, hps_M, source, selectors)
    per_step = []
    for j in range(jax.tree.leaves(selectors)[0].shape[0]):
      states, metrics = run_chunk(states, hps_M, source, jax.tree.map(lambda x: x[j], selectors))
      per_step.append(metrics)
    return states, jax.tree.map(lambda *xs: jnp.stack(xs), *per_step)


def use_scan() -> bool:
  """K steps per compiled `lax.scan` on accelerators; one compiled call per step on the CPU backend."""
  return jax.default_backend() != "cpu"


@functools.lru_cache(maxsize=16)
def _jit_features(features_fn):
  return jax.jit(features_fn)


@functools.lru_cache(maxsize=16)
def _jit_init(method, static, spe: int):
  """jit((hps_M, example_feats) → stacked TrainState)."""

  def run(hps_M, example_feats):
    keys = jax.vmap(lambda k: jax.random.fold_in(k, INIT_TAG))(member_keys(hps_M, init=True))
    return jax.vmap(lambda key, hp: method.init(static, key, hp, example_feats, spe))(keys, hps_M)

  return jax.jit(run)


def _member_step(method, static, spe: int):
  def step_one(state, feats, batch, key, hp):
    new, metrics = method.train_step(static, state, feats, batch, jax.random.fold_in(key, state.step), hp, spe)
    return keep_if_finite(new, state, metrics["loss"]), metrics

  return jax.vmap(step_one, in_axes=(0, None, None, 0, 0))


def _step_body(method, static, spe: int, features_fn, cached: bool):
  """(states, hps_M, keys, source, selector) → (states, metrics_M) for one step.

  cached: source = device cache {"feats", "mask", …}, selector = batch indices (B,).
  not cached: source = frozen variables, selector = the batch itself (images included).
  """
  step = _member_step(method, static, spe)

  def body(states, hps_M, keys, source, selector):
    aux = {}
    if isinstance(selector, dict) and "aux" in selector:  # Method.step_inputs entries for this step
      aux, selector = selector["aux"], selector["sel"]
    if cached:
      batch = {k: v[selector] for k, v in source.items() if k != "feats"}
      feats = source["feats"][selector]
    else:
      feats = jax.lax.stop_gradient(features_fn(source, selector["image"]))
      batch = {k: v for k, v in selector.items() if k != "image"}
    return step(states, feats, {**batch, **aux}, keys, hps_M)

  return body


@functools.lru_cache(maxsize=32)
def _jit_chunk(method, static, spe: int, features_fn, cached: bool, scan: bool, mesh=None):
  """jit((states, hps_M, source, selectors) → (states, metrics)).

  scan=True: selectors carry a leading K axis and the K steps run inside one `lax.scan`
  (accelerators: no host round trip per step). scan=False: one step per call — on the
  CPU backend XLA runs a while-loop body several times slower than the same step as its
  own program, so the host loop dispatches steps one by one (asynchronously).
  mesh: the members are split over the mesh's "members" axis with `shard_map` (each device
  runs the vmapped step on its own members, shared inputs replicated); XLA's automatic
  partitioning of the vmapped (grouped) convolutions fails for one member per device.
  """
  body = _step_body(method, static, spe, features_fn, cached)

  def run(states, hps_M, source, selectors):
    keys = jax.vmap(lambda k: jax.random.fold_in(k, TRAIN_TAG))(member_keys(hps_M))
    if not scan:
      return body(states, hps_M, keys, source, selectors)
    return jax.lax.scan(lambda st, sel: body(st, hps_M, keys, source, sel), states, selectors)

  if mesh is not None:
    spec = jax.sharding.PartitionSpec
    run = jax.shard_map(run, mesh=mesh, in_specs=(spec("members"), spec("members"), spec(), spec()),
                        out_specs=(spec("members"), spec(None, "members") if scan else spec("members")))
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


CACHE_BUDGET_BYTES = 2 << 30


def feature_cache_fits(static, example_feats, n_train: int, budget_bytes: int = CACHE_BUDGET_BYTES) -> bool:
  """Whether `fit` keeps the frozen features of all n_train samples on device."""
  return getattr(static, "cache_features", True) and (
      example_feats.size * example_feats.dtype.itemsize * n_train <= budget_bytes)


def host_arrays(train: SplitData) -> dict[str, np.ndarray]:
  """The per-sample arrays a training batch is gathered from."""
  host = {"image": train.image, "mask": train.mask, "label": train.label, "is_segmented": train.is_segmented}
  if train.loss_weight is not None:
    host["loss_weight"] = train.loss_weight
  return host


def fit(method, static, hps_M, train: SplitData, workdir: str | Path, *, data_seed: int = 0,
        max_steps: int | None = None, chunk: int = 25, ckpt_every: int = 500, progress: bool = True,
        config_record: dict | None = None, frozen=None, cache_budget_bytes: int = CACHE_BUDGET_BYTES,
        mesh: jax.sharding.Mesh | None = None, raise_non_finite: bool = True, on_start=None,
        shared_features: dict | None = None) -> TrainState:
  """Trains M members on `train` and returns their stacked final states (resuming if possible).

  Args:
    method: a `Method` record; static: its resolved static config; hps_M: stacked Hparams.
    train: the preprocessed train split.
    workdir: where checkpoints, metrics.jsonl and provenance.json go.
    data_seed: seed of the shared data order.
    max_steps: overrides the method's total steps (smoke runs).
    chunk: steps per compiled call (and logging cadence); a call stops early before an epoch's
      last, smaller batch, which runs as its own call (a second compiled shape).
    ckpt_every: checkpoint cadence in steps (rounded up to a multiple of `chunk`): a checkpoint
      is saved after the call that reaches or crosses each multiple.
    config_record: JSON-able description of the run stored in checkpoints (default: `model_record`); a
      checkpoint in `workdir` whose model settings differ from it is refused, not resumed.
    frozen: optional precomputed (features_fn, frozen_vars).
    cache_budget_bytes: the train features are cached on device when they fit in this budget
      (and the static config allows it); otherwise each step computes them from the images.
    mesh: a 1-D mesh with axis "members": the M axis of states and hparams is split over its
      devices (M a multiple of their number), the shared inputs are replicated.
    raise_non_finite: raise `NonFiniteLossError` when every member (or the only one) is frozen;
      sweeps pass False and report frozen members instead.
    on_start: called once the checkpoint (if any) is known to resume this run, before anything is
      written: a refused resume leaves the run folder as it was.
    shared_features: a dict kept by the caller for runs of the same static config and train split (a sweep's
      chunks of one category): the first run stores the cached train features there, the others reuse them.
  """
  workdir = Path(workdir)
  workdir.mkdir(parents=True, exist_ok=True)
  features_fn, frozen_vars = frozen or method.make_frozen(static)
  sampler = None
  if method.prepare_train is not None:
    train, sampler = method.prepare_train(static, train, data_seed)
  sampler = sampler or uniform_sampler(len(train), data_seed)
  epoch_len = len(sampler(0))
  trainer = Trainer(method, static, epoch_len, features_fn, mesh)
  total = max_steps if max_steps is not None else trainer.total
  batch_size = min(static.batch_size, epoch_len)
  chunk = max(1, min(chunk, total))
  ckpt_every = max(chunk, -(-ckpt_every // chunk) * chunk)
  m = int(np.shape(hps_M.seed)[0])

  example = trainer.features(frozen_vars, jnp.asarray(train.image[:1]))
  cached = feature_cache_fits(static, example, len(train), cache_budget_bytes)
  host = host_arrays(train)
  if cached:
    cache = {k: jnp.asarray(v) for k, v in host.items() if k != "image"}
    shared_features = {} if shared_features is None else shared_features
    if "train" not in shared_features:
      shared_features["train"] = compute_features(trainer.features, frozen_vars, train.image)
    cache["feats"] = shared_features["train"]
  states = trainer.init_states(hps_M, example)
  stream = method.step_inputs(static, data_seed) if method.step_inputs is not None else None

  config_record = config_record or model_record(method, static, hps_M)
  ckpt = Checkpointer(workdir)
  start = 0
  latest = ckpt.latest_step()
  if latest is not None:
    states, meta = ckpt.restore(latest, states)
    stored = meta.get("config") or {}
    differs = settings_differences(stored, config_record) if "model" in stored else []
    if differs:
      ckpt.close()
      raise ConfigError(f"{workdir} holds a checkpoint of another run (settings that differ from this run's: "
                        f"{', '.join(differs)}); use another workdir, or delete that folder to start over")
    start = int(meta["step"])
    if start > total:
      ckpt.close()
      raise ConfigError(f"{workdir}: its checkpoint is at step {start}, past this run's {total} steps "
                        "(a smaller --max-steps?); use another --workdir")
  elif method.prepare_state is not None:
    states = method.prepare_state(static, states, train)
  if on_start is not None:
    on_start()
  _truncate_log(workdir / "metrics.jsonl", start)  # steps after the checkpoint (or all, from scratch) are redone
  prov = provenance.collect()
  if stream is not None and getattr(stream, "provenance", None):
    prov["step_inputs"] = stream.provenance
  (workdir / "provenance.json").write_text(json.dumps(prov, indent=2))
  meta_base = {"config": config_record, "provenance": prov, "data_seed": data_seed, "total_steps": total}

  source = cache if cached else frozen_vars
  if mesh is not None:  # members split over the devices; shared inputs replicated
    spec, sharding = jax.sharding.PartitionSpec, jax.sharding.NamedSharding
    states, hps_M = jax.device_put((states, hps_M), sharding(mesh, spec("members")))
    source = jax.device_put(source, sharding(mesh, spec()))
  bar = _progress(total, start, progress)
  log_path = workdir / "metrics.jsonl"
  step = start
  try:
    while step < total:
      k = same_length_steps(step, min(chunk, total - step), batch_size, trainer.spe, epoch_len)
      idx = np.stack([batch_indices(sampler, s, batch_size, trainer.spe) for s in range(step, step + k)])
      t0 = time.perf_counter()
      selectors = jnp.asarray(idx) if cached else {name: jnp.asarray(v[idx]) for name, v in host.items()}
      if stream is not None:
        aux = {name: jnp.asarray(v) for name, v in stream(np.arange(step, step + k)).items()}
        selectors = {"sel": selectors, "aux": aux}
      states, metrics = trainer.run_steps(states, hps_M, source, selectors, cached)
      metrics = jax.device_get(metrics)
      alive = np.asarray(jax.device_get(states.alive))
      dt = time.perf_counter() - t0
      step += k
      _log(log_path, step, metrics, alive, idx.size / dt)
      if bar is not None:
        bar.update(k)
        bar.set_postfix(loss=f"{float(np.mean(metrics['loss'][-1])):.4f}", img_s=f"{idx.size / dt:.0f}")
      if raise_non_finite and (not alive.any() or (m == 1 and not alive[0])):
        bad = int(np.argmax(~np.isfinite(metrics["loss"][:, 0]))) if m == 1 else None
        raise NonFiniteLossError(
            f"training stopped: the loss became non-finite near step {step - k + (bad or 0) + 1}; "
            "lower the learning rate or noise, or check the input data")
      if step // ckpt_every > (step - k) // ckpt_every or step == total:
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


def _truncate_log(path: Path, last_step: int) -> None:
  """On resume, drops log lines of steps after the restored checkpoint (they will be redone), and a
  last line cut short by a kill mid-append."""
  if path.exists():
    keep = [line for line in path.read_text().splitlines() if _logged_step(line) <= last_step]
    atomic.write_text(path, "".join(line + "\n" for line in keep))


def _logged_step(line: str) -> float:
  try:
    return json.loads(line)["step"]
  except (ValueError, KeyError, TypeError):
    return float("inf")


def _progress(total: int, start: int, enabled: bool):
  if not enabled:
    return None
  from tqdm.auto import tqdm
  return tqdm(total=total, initial=start, unit="step", dynamic_ncols=True, leave=True)
