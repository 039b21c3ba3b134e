"""anomalib EfficientAD state dicts → Flax variables of `model.PDN` / `model.AutoEncoder` + statistics.

Keys (anomalib 2.7.0 `EfficientAdModel`; under `model.` in a Lightning checkpoint):
`teacher.conv1..4` (S) / `conv1..6` (M), `student.conv*`, `ae.encoder.enconv1..6`,
`ae.decoder.deconv1..8` (`.weight` OIHW → HWIO, `.bias`), buffers `mean_std.{mean,std}` (1, C, 1, 1)
and `quantiles.{qa_st,qb_st,qa_ae,qb_ae}` (scalars). The size (S/M) and C are read from the
teacher keys. A bare teacher state dict (`conv*` keys, the released `pretrained_teacher_*.pth`)
is converted by `convert_teacher`. Every missing, unexpected or misshaped key is reported at once.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import numpy as np

from jaxad.nn.convert import StateDictMismatchError

_PDN_CONVS = {"s": 4, "m": 6}
_PREFIXES = ("", "model.")
_QUANTILE_KEYS = ("qa_st", "qb_st", "qa_ae", "qb_ae")
_MAX_LISTED = 25


def _conv_keys(torch_prefix: str, flax_path: tuple[str, ...]) -> dict[str, tuple[tuple[str, ...], str]]:
  return {f"{torch_prefix}.weight": ((*flax_path, "kernel"), "conv"),
          f"{torch_prefix}.bias": ((*flax_path, "bias"), "vector")}


def pdn_table(size: str, torch_prefix: str = "") -> dict[str, tuple[tuple[str, ...], str]]:
  """torch key → (flax params path, layout) for a PDN."""
  table = {}
  for i in range(1, _PDN_CONVS[size] + 1):
    table.update(_conv_keys(f"{torch_prefix}conv{i}", (f"conv{i}",)))
  return table


def ae_table(torch_prefix: str = "ae.") -> dict[str, tuple[tuple[str, ...], str]]:
  """torch key → (flax params path, layout) for the autoencoder."""
  table = {}
  for i in range(1, 7):
    table.update(_conv_keys(f"{torch_prefix}encoder.enconv{i}", ("encoder", f"enconv{i}")))
  for i in range(1, 9):
    table.update(_conv_keys(f"{torch_prefix}decoder.deconv{i}", ("decoder", f"deconv{i}")))
  return table


@functools.lru_cache(maxsize=None)
def param_shapes(size: str, out_channels: int) -> dict[str, dict[tuple[str, ...], tuple[int, ...]]]:
  """Flax param shapes of teacher, student and ae (from `eval_shape`, a 256×256 input)."""
  import jax
  import jax.numpy as jnp
  from flax import traverse_util

  from jaxad.models.efficient_ad.model import build_networks

  image = jnp.zeros((1, 256, 256, 3), jnp.float32)
  shapes = {}
  for name, net in zip(("teacher", "student", "ae"), build_networks(size, out_channels)):
    variables = jax.eval_shape(net.init, jax.random.key(0), image)
    shapes[name] = {path: tuple(leaf.shape) for path, leaf in traverse_util.flatten_dict(variables["params"]).items()}
  return shapes


def _listing(title: str, items: list[str]) -> str:
  shown = ", ".join(items[:_MAX_LISTED])
  more = f" ... and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else ""
  return f"{len(items)} {title}: {shown}{more}"


def _is_float(value: np.ndarray) -> bool:
  return value.dtype.kind == "f" or value.dtype.name.startswith(("bfloat16", "float8"))


def _detect(state_dict: Mapping, teacher_prefix: str) -> tuple[str, int | None]:
  """(size, C): M if `conv5` exists, C from the last teacher conv's output channels."""
  size = "m" if f"{teacher_prefix}conv5.weight" in state_dict else "s"
  last = np.shape(state_dict.get(f"{teacher_prefix}conv{_PDN_CONVS[size]}.weight"))
  return size, (int(last[0]) if len(last) == 4 else None)


def _fill(state_dict, prefix, table, shapes, relevant, misshaped) -> dict:
  from flax import traverse_util

  flat = {}
  for key, (path, layout) in table.items():
    if key not in relevant:
      continue
    value = np.asarray(state_dict[prefix + key])
    converted = value.transpose(2, 3, 1, 0) if layout == "conv" and value.ndim == 4 else value
    expected = shapes.get(path) if shapes else None
    if expected is None or converted.shape != expected or not _is_float(value):
      wanted = (f"{(expected[3], expected[2], expected[0], expected[1]) if layout == 'conv' else expected} float"
                if expected else "a size the teacher's channel count C can be read from")
      misshaped.append(f"{prefix + key} {tuple(value.shape)} {value.dtype} (expected {wanted})")
      continue
    flat[path] = np.ascontiguousarray(converted, dtype=np.float32)
  return {"params": traverse_util.unflatten_dict(flat)} if flat else {"params": {}}


def _raise(where: str, what: str, missing: list[str], unexpected: list[str], misshaped: list[str]) -> None:
  if missing or unexpected or misshaped:
    parts = [_listing(t, items) for t, items in (("missing", missing), ("unexpected", unexpected),
                                                 ("misshaped", misshaped)) if items]
    raise StateDictMismatchError(f"state dict{where} does not match {what}: " + "; ".join(parts),
                                 missing, unexpected, misshaped)


def convert_efficient_ad(state_dict: Mapping[str, np.ndarray], *, source: str | None = None) -> dict:
  """Converts an anomalib `EfficientAdModel` state dict (with or without the `model.` prefix).

  Returns:
    dict(size, out_channels, teacher, student, ae (each {"params": ...}), mean (C,), std (C,),
    quantiles {qa_st, qb_st, qa_ae, qb_ae} as float32 numpy scalars).

  Raises:
    StateDictMismatchError (a WeightsError) listing all missing, unexpected and misshaped keys.
  """
  where = f" in {source}" if source else ""
  keys = set(state_dict)
  prefix = max(_PREFIXES, key=lambda p: sum(k.startswith(p + "teacher.") for k in keys))
  size, channels = _detect(state_dict, prefix + "teacher.")
  tables = {"teacher": pdn_table(size, "teacher."), "student": pdn_table(size, "student."), "ae": ae_table()}
  buffers = {"mean_std.mean": (1, channels, 1, 1), "mean_std.std": (1, channels, 1, 1)}
  buffers.update({f"quantiles.{q}": () for q in _QUANTILE_KEYS})
  relevant = {k[len(prefix):] for k in keys if k.startswith(prefix)}
  expected_keys = set(buffers).union(*(t.keys() for t in tables.values()))
  missing = sorted(prefix + k for k in expected_keys - relevant)
  unexpected = sorted(prefix + k for k in relevant - expected_keys)
  misshaped: list[str] = []
  shapes = param_shapes(size, channels) if channels else {}
  out: dict = dict(size=size, out_channels=channels)
  for name, table in tables.items():
    out[name] = _fill(state_dict, prefix, table, shapes.get(name), relevant, misshaped)
  for key, shape in buffers.items():
    if key not in relevant:
      continue
    value = np.asarray(state_dict[prefix + key])
    if channels is None or value.size != int(np.prod(shape)) or not _is_float(value):
      misshaped.append(f"{prefix + key} {tuple(value.shape)} {value.dtype} (expected {shape} float)")
      continue
    buffer_name = key.split(".")[1]
    if key.startswith("mean_std."):
      out[buffer_name] = value.reshape(-1).astype(np.float32)
    else:
      out.setdefault("quantiles", {})[buffer_name] = np.float32(value.reshape(()))
  _raise(where, f"anomalib EfficientAD (size {size.upper()}, C={channels})", missing, unexpected, misshaped)
  return out


def convert_teacher(state_dict: Mapping[str, np.ndarray], *, source: str | None = None) -> dict:
  """Converts a bare PDN state dict (`conv{i}.weight/bias`, e.g. anomalib's pretrained teacher).

  Returns:
    dict(size, out_channels, params) with params the Flax `{"params": ...}` of `PDN`.
  """
  where = f" in {source}" if source else ""
  size, channels = _detect(state_dict, "")
  table = pdn_table(size)
  relevant = set(state_dict)
  missing = sorted(set(table) - relevant)
  unexpected = sorted(relevant - set(table))
  misshaped: list[str] = []
  shapes = param_shapes(size, channels)["teacher"] if channels else {}
  variables = _fill(state_dict, "", table, shapes, relevant, misshaped)
  _raise(where, f"an EfficientAD PDN-{size.upper()} (C={channels})", missing, unexpected, misshaped)
  return dict(size=size, out_channels=channels, params=variables)
