"""How many sweep members fit on a device: compiled memory of the train step and of predict.

The train step (the engine's compiled chunk function, the same one `loop.fit` runs) and the
evaluation's predict function are compiled for M = 1 and M = 2 members on abstract inputs;
their memory analyses (arguments + outputs − donated aliases + temporaries) give a shared part
and a per-member part, `bytes(M) ≈ shared + M · per_member`. When M times the M = 1 program
already fits (an upper bound), the M = 2 compilation is skipped. The budget is the device's
free memory (`memory_stats`) times a safety fraction, or a configured number of bytes (backends
that report no memory, i.e. CPU, need one).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxad.evaluate import evaluator
from jaxad.train import loop
from jaxad.train.state import stack_members

SAFETY_FRACTION = 0.85


@dataclasses.dataclass(frozen=True)
class Estimate:
  shared_bytes: int  # memory that does not grow with M (frozen features, backbone, data)
  member_bytes: int  # memory per member (parameters, optimiser state, activations)
  budget_bytes: int  # memory one device offers
  budget_source: str  # "device memory_stats" or "configured"
  exact: bool  # False: member_bytes is the whole M = 1 program (an upper bound; M = 2 not compiled)

  def members_per_device(self) -> int:
    """The largest M one device holds (at least 1)."""
    return max(1, int((self.budget_bytes - self.shared_bytes) // max(self.member_bytes, 1)))

  def record(self) -> dict:
    return {**dataclasses.asdict(self), "members_per_device": self.members_per_device()}


def compiled_bytes(compiled) -> int:
  """Peak memory of one compiled program from its memory analysis."""
  m = compiled.memory_analysis()
  return int(m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes + m.temp_size_in_bytes)


def device_budget(device, configured_bytes: int | None) -> tuple[int, str] | None:
  """(bytes, source): the configured budget if given, else the device's free memory × SAFETY_FRACTION;
  None when neither is known (the CPU backend reports no memory)."""
  if configured_bytes is not None:
    return int(configured_bytes), "configured"
  stats = device.memory_stats() or {}
  if "bytes_limit" not in stats:
    return None
  return int(SAFETY_FRACTION * (stats["bytes_limit"] - stats.get("bytes_in_use", 0))), "device memory_stats"


def _abstract(tree):
  return jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), jax.dtypes.canonicalize_dtype(x.dtype)), tree)


def estimate(method, static, hp, train, frozen, *, data_seed: int, steps_per_call: int, eval_batch_size: int,
             budget: tuple[int, str], members_needed: int) -> Estimate:
  """Shared and per-member memory of training and evaluating `static` on `train` on one device.

  budget: (bytes, source) from `device_budget`; members_needed: the members one device would hold
  in a single chunk (skips the M = 2 compilation when that many fit by the upper bound).
  Mirrors `loop.fit`'s choices (prepared train split, feature cache, lax.scan on accelerators).
  """
  features_fn, frozen_vars = frozen
  sampler = None
  if method.prepare_train is not None:
    train, sampler = method.prepare_train(static, train, data_seed)
  epoch_len = len(sampler(0)) if sampler is not None else len(train)
  trainer = loop.Trainer(method, static, epoch_len, features_fn)
  h, w = static.image_size
  example = jax.eval_shape(features_fn, frozen_vars, jax.ShapeDtypeStruct((1, h, w, 3), jnp.float32))
  cached = loop.feature_cache_fits(static, example, len(train))
  host = _abstract({k: v[:1] for k, v in loop.host_arrays(train).items()})
  scan = loop.use_scan()
  k = steps_per_call if scan else 1
  batch = min(static.batch_size, epoch_len)
  lead = (k, batch) if scan else (batch,)
  with_rows = lambda spec, rows: jax.ShapeDtypeStruct(rows + spec.shape[1:], spec.dtype)
  if cached:
    source = {name: with_rows(spec, (len(train),)) for name, spec in host.items() if name != "image"}
    source["feats"] = with_rows(example, (len(train),))
    selectors = jax.ShapeDtypeStruct(lead, jnp.int32)
  else:
    source = _abstract(frozen_vars)
    selectors = {name: with_rows(spec, lead) for name, spec in host.items()}
  step_inputs = getattr(method, "step_inputs", None)
  stream = step_inputs(static, data_seed) if step_inputs is not None else None
  if stream is not None:
    aux = _abstract(stream(np.arange(k)))
    if not scan:
      aux = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape[1:], s.dtype), aux)
    selectors = {"sel": selectors, "aux": aux}
  predict_fn = evaluator.make_predict_fn(method, static, features_fn, (h, w))
  images = jax.ShapeDtypeStruct((eval_batch_size, h, w, 3), jnp.float32)

  def total(m: int) -> int:
    hps_M = _abstract(stack_members([hp] * m))
    states = jax.eval_shape(trainer.init_states, hps_M, example)
    train_bytes = compiled_bytes(trainer.chunk_fn(cached, scan).lower(states, hps_M, source, selectors).compile())
    predict_bytes = compiled_bytes(predict_fn.lower(states, _abstract(frozen_vars), images).compile())
    return max(train_bytes, predict_bytes)

  one = total(1)
  if members_needed * one <= budget[0]:
    return Estimate(shared_bytes=0, member_bytes=one, budget_bytes=budget[0], budget_source=budget[1], exact=False)
  member = max(total(2) - one, 1)
  return Estimate(shared_bytes=max(one - member, 0), member_bytes=member, budget_bytes=budget[0],
                  budget_source=budget[1], exact=True)
