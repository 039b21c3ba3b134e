"""The frozen teacher PDN's weights: from the weights registry, a file, or random (tests).

Sources (`Static.teacher`):
* a registry name (`efficientad_teacher_s` / `_m`: anomalib's `efficientad_pretrained_weights.zip`,
  nelson1425's teachers renamed; `jaxad weights download NAME` puts it in the cache) or a
  PyTorch state-dict file with the same `conv{i}.weight/bias` keys (`convert.convert_teacher`);
* a `jaxad distill` output (a jaxad converted-weights safetensors file, arch `efficientad_pdn_<size>`);
* "random": PyTorch-default initialisation from a seed (tests and smoke runs only).
"""

from __future__ import annotations

import os
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from jaxad.errors import WeightsError
from jaxad.models.efficient_ad.model import PDN


def teacher_arch(size: str) -> str:
  return f"efficientad_pdn_{size}"


def random_teacher(size: str, out_channels: int, seed: int = 0) -> dict:
  """PyTorch-default random PDN variables (`{"params": ...}`)."""
  return PDN(size, out_channels).init(jax.random.key(seed, impl="rbg"), jnp.zeros((1, 64, 64, 3), jnp.float32))


def _check(variables: dict, size: str, out_channels: int, source: str) -> dict:
  expected = jax.eval_shape(PDN(size, out_channels).init, jax.random.key(0), jnp.zeros((1, 64, 64, 3)))
  want = jax.tree_util.tree_flatten_with_path(expected)[0]
  try:
    got = {jax.tree_util.keystr(p): np.shape(v) for p, v in jax.tree_util.tree_flatten_with_path(variables)[0]}
  except Exception:  # noqa: BLE001 — any malformed tree is reported below
    got = {}
  bad = [f"{jax.tree_util.keystr(p)} {got.get(jax.tree_util.keystr(p), 'missing')} (expected {tuple(s.shape)})"
         for p, s in want if got.get(jax.tree_util.keystr(p)) != tuple(s.shape)]
  if bad or len(got) != len(want):
    raise WeightsError(f"teacher weights {source} do not fit a PDN-{size.upper()} with C={out_channels}: "
                       + "; ".join(bad[:8]) + (f" ({len(got)} tensors, expected {len(want)})" if not bad else ""))
  return jax.tree.map(lambda v: jnp.asarray(v, jnp.float32), variables)


def load_teacher(spec: str, size: str, out_channels: int, cache_dir: str | os.PathLike | None = None) -> dict:
  """Teacher variables `{"params": {"conv1": ..., ...}}` for `Static.teacher`.

  Raises:
    WeightsError: unknown name, file missing or not in the cache (the message says how to get
      it), or weights of another size / channel count.
  """
  if spec == "random":
    return random_teacher(size, out_channels)
  from jaxad.nn import weights as weights_lib
  from jaxad.nn.torch_checkpoint import load_state_dict
  from jaxad.models.efficient_ad.convert import convert_teacher

  try:
    path = weights_lib.resolve(spec, cache_dir)
  except WeightsError as e:
    raise WeightsError(f"EfficientAD teacher: {e}. Get the published teacher with `jaxad weights download "
                       f"efficientad_teacher_{size}`, distil one with `jaxad distill`, or set teacher=random "
                       "(untrained; smoke tests only)") from None
  path = Path(path)
  if path.suffix == ".safetensors":
    try:
      tree, meta = weights_lib.load_converted(path)
    except WeightsError:
      tree, meta = None, None  # A plain safetensors state dict: read it as a PyTorch checkpoint below.
    if tree is not None:
      if meta.get("arch") not in (None, teacher_arch(size)):
        raise WeightsError(f"{path} holds '{meta.get('arch')}' weights, not the teacher '{teacher_arch(size)}'")
      return _check({"params": tree.get("params", tree)}, size, out_channels, str(path))
  converted = convert_teacher(load_state_dict(path), source=str(path))
  if converted["size"] != size:
    raise WeightsError(f"{path} is a PDN-{converted['size'].upper()} teacher but size={size!r} was asked for")
  return _check(converted["params"], size, out_channels, str(path))
