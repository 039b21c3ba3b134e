"""PyTorch SuperSimpleNet checkpoints → Flax variables of `SuperSimpleNetHeads`.

Two key namings are accepted and detected from the keys:
  * official (blaz-r/SuperSimpleNet `model/supersimplenet.py`, ICPR and JIMS; `save_model`
    writes `weights.pt` without the frozen `feature_extractor.*`): `feature_adaptor.projection`,
    `discriminator.seg.{0,1,3}`, `discriminator.dec_head.{0,1}`, `discriminator.fc_score`;
  * anomalib (`SupersimplenetModel`): `adaptor.projection`, `segdec.seg_head.{0,1,3}`,
    `segdec.cls_conv.{0,1}`, `segdec.cls_fc`; in a Lightning checkpoint these are under `model.`.
A leading `module.` (nn.DataParallel) and/or `model.` is stripped. Ignored: keys outside that
prefix (a Lightning module's other state), the model's frozen or parameter-free parts
(`feature_extractor.*`, `anomaly_generator.*`, `anomaly_map_generator.*`) and
`num_batches_tracked`. Layouts: conv OIHW → HWIO, linear (out, in) → (in, out), BatchNorm
weight/bias/running_mean/running_var → params scale/bias, batch_stats mean/var.
The feature width C is read from the checkpoint (adaptor, else segmentation conv); hidden
widths are checked against the arguments. Every mismatch is reported at once.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping

import numpy as np

from jaxad.nn.convert import StateDictMismatchError

# torch key -> (collection, flax path, layout)
Table = dict[str, tuple[str, tuple[str, ...], str]]

_PREFIXES = ("", "model.", "module.", "module.model.")
_IGNORED_PARTS = ("feature_extractor.", "anomaly_generator.", "anomaly_map_generator.")
_MAX_LISTED = 25


def _table(adaptor: str, seg: str, cls_conv: str, cls_fc: str) -> Table:
  table: Table = {}

  def conv(torch_prefix: str, flax_path: tuple[str, ...], bias: bool = True) -> None:
    table[f"{torch_prefix}.weight"] = ("params", (*flax_path, "kernel"), "conv")
    if bias:
      table[f"{torch_prefix}.bias"] = ("params", (*flax_path, "bias"), "vector")

  def batch_norm(torch_prefix: str, flax_path: tuple[str, ...]) -> None:
    for torch_name, collection, flax_name in (("weight", "params", "scale"), ("bias", "params", "bias"),
                                              ("running_mean", "batch_stats", "mean"),
                                              ("running_var", "batch_stats", "var")):
      table[f"{torch_prefix}.{torch_name}"] = (collection, (*flax_path, flax_name), "vector")

  conv(adaptor, ("adaptor", "projection"))
  conv(f"{seg}.0", ("seg_head", "conv1"))
  batch_norm(f"{seg}.1", ("seg_head", "bn"))
  conv(f"{seg}.3", ("seg_head", "conv2"), bias=False)
  conv(f"{cls_conv}.0", ("cls_head", "conv"))
  batch_norm(f"{cls_conv}.1", ("cls_head", "bn"))
  table[f"{cls_fc}.weight"] = ("params", ("cls_head", "fc", "kernel"), "dense")
  table[f"{cls_fc}.bias"] = ("params", ("cls_head", "fc", "bias"), "vector")
  return table


TABLES: dict[str, Table] = {
    "official": _table("feature_adaptor.projection", "discriminator.seg", "discriminator.dec_head",
                       "discriminator.fc_score"),
    "anomalib": _table("adaptor.projection", "segdec.seg_head", "segdec.cls_conv", "segdec.cls_fc"),
}

_TO_FLAX = {
    "conv": lambda w: w.transpose(2, 3, 1, 0) if w.ndim == 4 else w,
    "dense": lambda w: w.T if w.ndim == 2 else w,
    "vector": lambda w: w,
}
_TORCH_SHAPE = {
    "conv": lambda s: (s[3], s[2], s[0], s[1]),
    "dense": lambda s: (s[1], s[0]),
    "vector": lambda s: s,
}


@functools.lru_cache(maxsize=None)
def head_shapes(channels: int, seg_hidden: int, cls_hidden: int) -> dict[tuple[str, ...], tuple[int, ...]]:
  """Shapes of every variable of `SuperSimpleNetHeads` for C = `channels` (from `eval_shape`)."""
  import jax
  import jax.numpy as jnp
  from flax import traverse_util

  from jaxad.models.supersimplenet.model import SuperSimpleNetHeads

  module = SuperSimpleNetHeads(seg_hidden=seg_hidden, cls_hidden=cls_hidden)
  variables = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, 8, 8, channels), jnp.float32))
  return {path: tuple(leaf.shape) for path, leaf in traverse_util.flatten_dict(dict(variables)).items()}


def _best_match(keys: set[str]) -> tuple[str, str, int]:
  """(naming, prefix, number of matching keys) with the most table keys present."""
  scored = [(sum(prefix + k in keys for k in table), naming, prefix)
            for naming, table in TABLES.items() for prefix in _PREFIXES]
  count, naming, prefix = max(scored, key=lambda s: s[0])
  return naming, prefix, count


def _channels(state_dict: Mapping[str, np.ndarray], table: Table, prefix: str) -> int | None:
  """C from the adaptor (C, C, 1, 1) or the segmentation conv (hidden, C, 1, 1)."""
  for torch_key, (_, path, _) in table.items():
    if path in (("adaptor", "projection", "kernel"), ("seg_head", "conv1", "kernel")):
      shape = np.shape(state_dict.get(prefix + torch_key))
      if len(shape) == 4:
        return int(shape[1])
  return None


def _is_float(dtype: np.dtype) -> bool:
  """numpy floats and ml_dtypes' bfloat16 / float8 (what `load_state_dict` returns for those)."""
  return dtype.kind == "f" or dtype.name.startswith(("bfloat16", "float8"))


def _listing(title: str, items: list[str]) -> str:
  shown = ", ".join(items[:_MAX_LISTED])
  more = f" ... and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else ""
  return f"{len(items)} {title}: {shown}{more}"


def convert_heads(state_dict: Mapping[str, np.ndarray], *, seg_hidden: int = 1024, cls_hidden: int = 128,
                  source: str | None = None) -> dict:
  """Converts an official or anomalib SuperSimpleNet state dict into `SuperSimpleNetHeads` variables.

  Args:
    state_dict: torch key → array (numpy; torch tensors are accepted via `np.asarray`).
    seg_hidden, cls_hidden: hidden widths the heads are built with (the references use 1024, 128).
    source: file name used in error messages.

  Returns:
    {"params": ..., "batch_stats": ...} nested dicts of float32 numpy arrays.

  Raises:
    StateDictMismatchError (a WeightsError) listing all missing, unexpected and misshaped keys.
  """
  from flax import traverse_util

  where = f" in {source}" if source else ""
  keys = set(state_dict)
  naming, prefix, count = _best_match(keys)
  table = TABLES[naming]
  if count == 0:
    expected = sorted(TABLES["official"]) + sorted(TABLES["anomalib"])
    raise StateDictMismatchError(
        f"no SuperSimpleNet head weights{where}: expected official (feature_adaptor.*, discriminator.*) or "
        f"anomalib (adaptor.*, segdec.*) key names; " + _listing("keys found", sorted(keys)),
        expected, sorted(keys), [])
  relevant = {k[len(prefix):] for k in keys if k.startswith(prefix)}
  relevant = {k for k in relevant if not k.endswith("num_batches_tracked") and not k.startswith(_IGNORED_PARTS)}
  channels = _channels(state_dict, table, prefix)

  missing = [prefix + k for k in table if k not in relevant]
  unexpected = sorted(prefix + k for k in relevant - table.keys())
  misshaped, flat = [], {}
  shapes = head_shapes(channels, seg_hidden, cls_hidden) if channels else {}
  for key, (collection, path, layout) in table.items():
    if key not in relevant:
      continue
    value = np.asarray(state_dict[prefix + key])
    converted = _TO_FLAX[layout](value)
    expected = shapes.get((collection, *path))
    if expected is None or converted.shape != expected or not _is_float(value.dtype):
      wanted = f"{_TORCH_SHAPE[layout](expected)} float" if expected else "a 4-d conv weight to read C from"
      misshaped.append(f"{prefix + key} {tuple(value.shape)} {value.dtype} (expected {wanted})")
      continue
    flat[(collection, *path)] = np.ascontiguousarray(converted, dtype=np.float32)

  if missing or unexpected or misshaped:
    parts = [_listing(t, items) for t, items in (("missing", missing), ("unexpected", unexpected),
                                                 ("misshaped", misshaped)) if items]
    raise StateDictMismatchError(f"state dict{where} does not match SuperSimpleNet ({naming} key names): "
                                 + "; ".join(parts), missing, unexpected, misshaped)
  return traverse_util.unflatten_dict(flat)


def load_supersimplenet_checkpoint(path: str | os.PathLike, *, seg_hidden: int = 1024,
                                   cls_hidden: int = 128) -> dict:
  """Reads an official `weights.pt` or an anomalib checkpoint (without torch) and converts its heads.

  Raises:
    WeightsError: unreadable file, or weights that do not fit (every mismatch listed).
  """
  from jaxad.nn.torch_checkpoint import load_state_dict

  return convert_heads(load_state_dict(path), seg_hidden=seg_hidden, cls_hidden=cls_hidden,
                       source=os.fspath(path))
