"""Serving artefacts: a trained model's predict as StableHLO (jax.export) with its parameters alongside.

An artefact (`jaxad export`, `export_run`) is one zip file holding

  predict.bin   `jax.export` serialisation of f(params, images_BxHxWx3 uint8) → {"score": (B,),
                "map_score": (B,), "anomaly_map": (B, h, w)} float32, B symbolic (any batch size);
                pre-processing (resize, normalisation) and map post-processing run inside it
  params.npz    the parameter leaves in call order (bfloat16 leaves stored as their uint16 bits)
  meta.json     input size, dtype, parameter dtypes, method, Static record, validation threshold,
                platforms, versions

With `embed_params=True` (`jaxad export --embed-params`) the parameters are constants inside
predict.bin, which is then f(images) alone (params.npz is empty, meta "params": "embedded"): one
self-contained program whose calls pass one array, for the lowest per-call host time.

`load(path)` needs jax and numpy only (no flax, no jaxad model code); the same takes a few lines
anywhere:

  z = zipfile.ZipFile(path); meta = json.loads(z.read("meta.json"))
  exp = jax.export.deserialize(bytearray(z.read("predict.bin")))
  npz = np.load(io.BytesIO(z.read("params.npz")))
  params = [npz[f"p{i}"].view(d) for i, d in enumerate(meta["param_dtypes"])]
  out = exp.call(params, images_uint8)          # exp.call(images_uint8) when the params are embedded
"""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import jax
import numpy as np

FORMAT = "jaxad-export-1"
PLATFORMS = ("cpu", "cuda", "rocm", "tpu")  # what jax.export lowers for
OUTPUTS = ("score", "map_score", "anomaly_map")  # what predict.bin returns


class ExportedModel:
  """A loaded artefact: call it on uint8 images (B, H, W, 3) of the exported size."""

  def __init__(self, exported, params: list, meta: dict):
    self.exported, self.meta = exported, meta
    self.params = [jax.device_put(p) for p in params]
    self.embedded = meta.get("params") == "embedded"
    self._call = jax.jit(exported.call)

  @property
  def input_hw(self) -> tuple[int, int]:
    return tuple(self.meta["input_hw"])

  def __call__(self, images_BxHxWx3) -> dict:
    shape, dtype = tuple(np.shape(images_BxHxWx3)), getattr(images_BxHxWx3, "dtype", None)
    if len(shape) != 4 or shape[1:] != (*self.input_hw, 3) or dtype != np.uint8:
      raise ValueError(f"this export takes uint8 RGB images (B, {self.input_hw[0]}, {self.input_hw[1]}, 3), got "
                       f"shape {shape} and dtype {dtype}: resize them to the exported size (jaxad export "
                       f"--input-size), keep 3 channels and convert to uint8")
    return self._call(images_BxHxWx3) if self.embedded else self._call(self.params, images_BxHxWx3)


def load(path: str | Path) -> ExportedModel:
  """Reads an artefact written by `jaxad export` (jax and numpy only)."""
  path = Path(path)
  try:
    with zipfile.ZipFile(path) as z:
      meta = json.loads(z.read("meta.json"))
      blob = z.read("predict.bin")
      npz = np.load(io.BytesIO(z.read("params.npz")))
      params = [npz[f"p{i}"].view(np.dtype(d)) if d == "bfloat16" else npz[f"p{i}"]
                for i, d in enumerate(meta["param_dtypes"])]
  except (OSError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as e:
    raise ValueError(f"{path} is not a jaxad export artefact: {type(e).__name__}: {e}") from None
  if meta.get("format") != FORMAT:
    raise ValueError(f"{path}: format {meta.get('format')!r}, expected {FORMAT!r}")
  return ExportedModel(jax.export.deserialize(bytearray(blob)), params, meta)


def export_engine(engine, input_hw: tuple[int, int], platforms: tuple[str, ...] | None = None,
                  embed_params: bool = False):
  """(jax.export.Exported, parameter leaves) of one member's predict for uint8 inputs of `input_hw`
  (no leaves with `embed_params`: they are constants of the exported program)."""
  import jax.numpy as jnp

  from jaxad.errors import ConfigError
  if engine.members != 1:
    raise ConfigError(f"export needs one member, the engine holds {engine.members}")
  leaves, treedef = jax.tree.flatten(engine.params)
  map_range = engine.map_range

  def predict(params, images_BxHxWx3):
    states, frozen_vars = jax.tree.unflatten(treedef, params)
    out = engine.forward(states, frozen_vars, images_BxHxWx3, map_range)
    return {k: v[0] for k, v in out.items() if k in OUTPUTS}  # not EfficientAD's evaluation-only grid_map

  (batch,) = jax.export.symbolic_shape("b")
  spec = jax.ShapeDtypeStruct((batch, *input_hw, 3), jnp.uint8)
  if embed_params:
    exported = jax.export.export(jax.jit(lambda images: predict(leaves, images)), platforms=platforms)(spec)
    return exported, []
  param_specs = [jax.ShapeDtypeStruct(x.shape, x.dtype) for x in leaves]
  exported = jax.export.export(jax.jit(predict), platforms=platforms)(param_specs, spec)
  return exported, leaves


def write(path: str | Path, exported, leaves: list, meta: dict) -> Path:
  """Writes the zip artefact (see the module docstring)."""
  path = Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  host = [np.asarray(x) for x in jax.device_get(leaves)]
  dtypes = [str(x.dtype) for x in host]
  buf = io.BytesIO()
  np.savez(buf, **{f"p{i}": x.view(np.uint16) if d == "bfloat16" else x for i, (x, d) in enumerate(zip(host, dtypes))})
  meta = {"format": FORMAT, **meta, "param_dtypes": dtypes, "platforms": list(exported.platforms),
          "jax": jax.__version__}
  with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as z:
    z.writestr("meta.json", json.dumps(meta, indent=2))
    z.writestr("predict.bin", bytes(exported.serialize()))
    z.writestr("params.npz", buf.getvalue())
  return path


def export_run(category_dir: str | Path, out: str | Path, *, member: int = 0, dtype: str = "float32",
               input_hw: tuple[int, int] | None = None, platforms: tuple[str, ...] | None = None,
               embed_params: bool = False, sweep_member: int | None = None) -> Path:
  """Exports member `member` (the index on the run's M axis) of the trained run in `category_dir` to the
  artefact `out`; `sweep_member`, the sweep's number of that member, is what meta.json records then."""
  from jaxad import config as config_lib
  from jaxad.errors import ConfigError
  from jaxad.infer import InferenceEngine
  from jaxad.run import load_trained, select_member, validation_threshold

  category_dir = Path(category_dir)
  if input_hw is not None and (len(input_hw) != 2 or min(input_hw) < 1):
    raise ConfigError(f"--input-size must be two positive integers (H W), got {' '.join(map(str, input_hw))}")
  unknown = sorted(set(platforms or ()) - set(PLATFORMS))
  if unknown:
    raise ConfigError(f"--platforms: unknown platform(s) {', '.join(unknown)}; choose from {', '.join(PLATFORMS)}")
  method, static, hps_M, states, frozen, record = load_trained(category_dir)
  states = select_member(states, member, category_dir)
  engine = InferenceEngine(method, static, states, frozen, dtype=dtype)
  input_hw = tuple(input_hw or static.image_size)
  exported, leaves = export_engine(engine, input_hw, platforms, embed_params)
  threshold = validation_threshold(category_dir, member)
  numbering = {"member": member} if sweep_member is None else {"member": sweep_member, "sweep_slot": member}
  meta = {"method": method.name, "category": record.get("category"), **numbering, "dtype": dtype,
          "input_hw": list(input_hw), "model_hw": list(static.image_size), "input_dtype": "uint8",
          "outputs": {"score": "(B,)", "map_score": "(B,)", "anomaly_map": f"(B, {static.image_size[0]}, "
                      f"{static.image_size[1]})"},
          "score_threshold_q99_validation": threshold, "static": config_lib.to_record(static),
          "params": "embedded" if embed_params else "arguments"}
  return write(out, exported, leaves, meta)
