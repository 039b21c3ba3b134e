"""Registry of frozen feature backbones and the one way to get one with its weights.

Every backbone is a Linen module whose `__call__` maps a normalised NHWC image batch to
`{"layer1": ..., "layer4": ...}` (the requested subset), named by output stride 4/8/16/32,
so the front-ends in `jaxad.nn.features` work with any of them.

Weights (`load_backbone`): an explicit converted file (`*.safetensors` written by
`jaxad.nn.weights.save_converted`), an explicit PyTorch/safetensors source file, or a registry
name from `jaxad.nn.weights.KNOWN_WEIGHTS`. A source is converted once and cached as
`<cache>/weights/converted/<name>.safetensors` (or `<arch>-<sha256[:16]>.safetensors` for an
explicit file) with the source's sha256 in its metadata. Random weights (`random_variables`)
only for `weights="random"` (the default only of `tiny_test`, a test backbone without weights).
Nothing is downloaded here (`jaxad weights download` does that).
"""

from __future__ import annotations

import dataclasses
import functools
import os
import warnings
from pathlib import Path
from typing import Callable, Mapping, Sequence

import flax.linen as nn
from flax import traverse_util
import jax
import jax.numpy as jnp
import numpy as np

from jaxad.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from jaxad.errors import ConfigError, DataError, WeightsError
from jaxad.nn import convert, efficientnet_lite, resnet, torch_checkpoint
from jaxad.nn import weights as weights_lib

# TF EfficientNet-Lite ("inception-style", for post-quantisation): (x·255 − 127) / 128.
TF_LITE_MEAN = (127.0 / 255,) * 3
TF_LITE_STD = (128.0 / 255,) * 3
STAGE_STRIDES = {"layer1": 4, "layer2": 8, "layer3": 16, "layer4": 32}
_INIT_SIZE = 64  # Input side used to trace the variable shapes (any size ≥ 32 gives the same tree).


class TinyBackbone(nn.Module):
  """Test-only backbone: a stride-2 stem and four stride-2 3×3 convs (layer1..layer4); random init."""
  stages: Sequence[str] = ("layer2", "layer3")
  widths: tuple[int, int, int, int] = (8, 16, 24, 32)
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, images_BxHxWx3) -> dict[str, jnp.ndarray]:
    deepest = max(resnet.STAGE_NAMES.index(s) for s in self.stages)
    x = nn.relu(nn.Conv(self.widths[0], (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)), dtype=self.dtype,
                        name="stem")(images_BxHxWx3.astype(self.dtype)))
    out = {}
    for i, name in enumerate(resnet.STAGE_NAMES[:deepest + 1]):
      x = nn.relu(nn.Conv(self.widths[i], (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)), dtype=self.dtype,
                          name=name)(x))
      if name in self.stages:
        out[name] = x
    return out


@dataclasses.dataclass(frozen=True)
class BackboneSpec:
  """A registered backbone.

  Attributes:
    arch: architecture name understood by `jaxad.nn.convert` (None: nothing to convert).
    build: (stages, dtype, folded=False) -> Linen module; folded: its BatchNorms folded into the convs
      (`jaxad.nn.fold`; variables from `fold_batch_norms(variables, bn_eps)`).
    stage_channels: channels of layer1..layer4.
    default_weights: registry name of the pretrained weights, "random" (test backbone only), or
      None (no registered weights: pass a file).
    input_mean, input_std: per-channel normalisation of [0, 1] RGB images the weights expect.
    bn_eps: the BatchNorm epsilon (None: the network has no BatchNorm).
  """
  arch: str | None
  build: Callable[..., nn.Module]
  stage_channels: Mapping[str, int]
  default_weights: str | None
  bn_eps: float | None
  input_mean: tuple[float, float, float] = IMAGENET_MEAN
  input_std: tuple[float, float, float] = IMAGENET_STD
  stage_strides: Mapping[str, int] = dataclasses.field(default_factory=lambda: dict(STAGE_STRIDES))


def _resnet_spec(arch: str, default_weights: str | None) -> BackboneSpec:
  config = resnet.RESNET_CONFIGS[arch]
  return BackboneSpec(arch, lambda stages, dtype, folded=False: resnet.ResNet(config, stages, dtype=dtype,
                                                                             folded=folded),
                      resnet.stage_channels(config), default_weights, resnet.BN_EPS)


def _lite_spec(arch: str) -> BackboneSpec:
  config = efficientnet_lite.LITE_CONFIGS[arch]
  build = lambda stages, dtype, folded=False: efficientnet_lite.EfficientNetLite(config, stages, dtype=dtype,
                                                                               folded=folded)
  return BackboneSpec(arch, build, config.stage_channels(), arch, efficientnet_lite.BN_EPS, TF_LITE_MEAN, TF_LITE_STD)


BACKBONES: dict[str, BackboneSpec] = {
  "wide_resnet50_2": _resnet_spec("wide_resnet50_2", "wide_resnet50_2.tv_in1k"),
  "resnet18": _resnet_spec("resnet18", "resnet18.tv_in1k"),
  "resnet50": _resnet_spec("resnet50", None),
  "wide_resnet101_2": _resnet_spec("wide_resnet101_2", "wide_resnet101_2.tv_in1k"),
  "efficientnet_lite0": _lite_spec("efficientnet_lite0"),
  "efficientnet_lite2": _lite_spec("efficientnet_lite2"),
  "tiny_test": BackboneSpec(None, lambda stages, dtype, folded=False: TinyBackbone(stages=stages, dtype=dtype),
                            dict(zip(resnet.STAGE_NAMES, TinyBackbone.widths)), "random", None),
}


def get_spec(name: str) -> BackboneSpec:
  """The registry record of backbone `name`; ConfigError listing the known names otherwise."""
  if name not in BACKBONES:
    raise ConfigError(f"unknown backbone '{name}'; known: {', '.join(BACKBONES)}")
  return BACKBONES[name]


def normalize_images(name: str, images_BxHxWx3):
  """Normalises [0, 1] RGB images the way backbone `name`'s weights expect."""
  spec = get_spec(name)
  mean = jnp.asarray(spec.input_mean, jnp.float32)
  std = jnp.asarray(spec.input_std, jnp.float32)
  return (images_BxHxWx3 - mean) / std


def _variable_shapes(module: nn.Module, method: str | None = None) -> dict:
  init = module.init if method is None else functools.partial(module.init, method=method)
  shapes = jax.eval_shape(init, jax.random.key(0), jnp.zeros((1, _INIT_SIZE, _INIT_SIZE, 3), jnp.float32))
  return traverse_util.flatten_dict(dict(shapes))


def random_variables(module: nn.Module, seed: int = 0, method: str | None = None) -> dict:
  """Random frozen-backbone variables for tests and benchmarks, drawn with numpy (no XLA compile).

  Kernels ~ N(0, 2/fan_in) (He), biases 0, BatchNorm the identity (scale 1, bias 0, mean 0, var 1).
  `method` selects the code path whose variables are created (e.g. "classify" for the head).
  """
  rng = np.random.default_rng(seed)
  out = {}
  for path, shape in _variable_shapes(module, method).items():
    leaf, shape = path[-1], tuple(shape.shape)
    if leaf == "kernel":
      fan_in = int(np.prod(shape[:-1]))
      value = rng.standard_normal(shape, np.float32) * np.float32(np.sqrt(2.0 / fan_in))
    else:
      value = np.ones(shape, np.float32) if leaf in ("scale", "var") else np.zeros(shape, np.float32)
    out[path] = jnp.asarray(value)
  return traverse_util.unflatten_dict(out)


def _select(variables: Mapping, module: nn.Module, name: str, source: str) -> dict:
  """The variables `module` uses, taken from a full-network tree; WeightsError on any mismatch."""
  flat = traverse_util.flatten_dict(dict(variables))
  needed = _variable_shapes(module)
  missing = [("/".join(k)) for k in needed if k not in flat]
  misshaped = [f"{'/'.join(k)} {tuple(np.shape(flat[k]))} (expected {tuple(s.shape)})"
               for k, s in needed.items() if k in flat and tuple(np.shape(flat[k])) != tuple(s.shape)]
  if missing or misshaped:
    raise WeightsError(f"weights {source} do not fit backbone '{name}': "
                       f"{len(missing)} missing {missing[:10]}, {len(misshaped)} misshaped {misshaped[:10]}")
  return traverse_util.unflatten_dict({k: jnp.asarray(flat[k], jnp.float32) for k in needed})


def _converted_dir(cache_dir) -> Path:
  return weights_lib.cache_dir_path(cache_dir) / "converted"


def _is_converted_file(path: Path) -> bool:
  if path.suffix != ".safetensors":
    return False
  from safetensors import safe_open
  try:
    with safe_open(path, "np") as f:
      return (f.metadata() or {}).get("format") == weights_lib.CONVERTED_FORMAT
  except Exception:  # Not readable as safetensors: let the source reader report it.
    return False


def _load_converted_checked(path: Path, arch: str) -> dict:
  tree, meta = weights_lib.load_converted(path)
  if meta.get("arch") not in (None, arch):
    raise WeightsError(f"{path} holds converted '{meta.get('arch')}' weights, not '{arch}'")
  return tree


def _convert_and_cache(source: Path, arch: str, source_name: str, sha256: str, cache_path: Path | None) -> dict:
  tree = convert.convert_state_dict(arch, torch_checkpoint.load_state_dict(source), source=str(source))
  if cache_path is not None:
    try:
      cache_path.parent.mkdir(parents=True, exist_ok=True)
      weights_lib.save_converted(tree, cache_path, source_sha256=sha256, source_name=source_name,
                                 extra_meta={"arch": arch})
    except OSError as e:
      warnings.warn(f"could not cache converted weights at {cache_path}: {e}", stacklevel=3)
  return tree


def _full_variables(spec: BackboneSpec, weights: str | os.PathLike, cache_dir) -> tuple[dict, str]:
  """Converted variables of the whole network for a path or registry name, and a label for errors."""
  path = Path(weights).expanduser()
  if path.is_file():
    if _is_converted_file(path):
      return _load_converted_checked(path, spec.arch), str(path)
    sha256 = weights_lib.sha256_file(path)
    cache_path = _converted_dir(cache_dir) / f"{spec.arch}-{sha256[:16]}.safetensors"
    if cache_path.is_file():
      return _load_converted_checked(cache_path, spec.arch), str(cache_path)
    return _convert_and_cache(path, spec.arch, path.name, sha256, cache_path), str(path)
  name = str(weights)
  record = weights_lib.get_record(name) if name in weights_lib.KNOWN_WEIGHTS else None
  if record is None:
    raise WeightsError(f"weights '{name}' are neither an existing file nor a known name "
                       f"(known: {', '.join(weights_lib.KNOWN_WEIGHTS)}; or 'random')")
  if record.arch != spec.arch:
    raise WeightsError(f"weights '{name}' are for '{record.arch}', not for backbone architecture '{spec.arch}'")
  cache_path = _converted_dir(cache_dir) / f"{name}.safetensors"
  if cache_path.is_file():
    tree, meta = weights_lib.load_converted(cache_path)
    if meta.get("source_sha256", "").startswith(record.sha256.lower()) and meta.get("arch") == spec.arch:
      return tree, str(cache_path)
  source = weights_lib.resolve(name, cache_dir)
  return _convert_and_cache(source, spec.arch, name, weights_lib.sha256_file(source), cache_path), name


def load_backbone(name: str, stages: Sequence[str] = ("layer2", "layer3"), weights: str | os.PathLike | None = None,
                  cache_dir: str | os.PathLike | None = None, *, dtype: jnp.dtype = jnp.float32,
                  seed: int = 0) -> tuple[nn.Module, dict]:
  """Builds backbone `name` returning `stages` and loads its variables.

  Args:
    name: a key of `BACKBONES`.
    stages: stage names to return (subset of layer1..layer4); deeper layers are not built.
    weights: None (the registry default), a registry name, a source checkpoint path
      (.pth/.pt/.safetensors), a converted .safetensors path, or "random".
    cache_dir: cache root as in `jaxad.nn.weights` (default $JAXAD_CACHE or ~/.cache/jaxad).
    dtype: computation dtype (parameters stay float32).
    seed: numpy seed for weights="random" (see `random_variables`).

  Returns:
    (module, variables) with variables = {"params": ..., "batch_stats": ...} as jax arrays,
    restricted to what `stages` needs.

  Raises:
    ConfigError: unknown backbone or stage names. WeightsError: weights missing, corrupt, or
      not matching the architecture.
  """
  spec = get_spec(name)
  stages = tuple(stages)
  bad = [s for s in stages if s not in STAGE_STRIDES]
  if bad or not stages:
    raise ConfigError(f"stages must be a non-empty subset of {tuple(STAGE_STRIDES)}, got {stages}")
  module = spec.build(stages, dtype)
  weights = spec.default_weights if weights is None else weights
  if str(weights) == "random":
    return module, random_variables(module, seed)
  if spec.arch is None:
    raise WeightsError(f"backbone '{name}' has no pretrained weights; use weights='random'")
  if weights is None:
    raise WeightsError(f"no weights are registered for backbone '{name}'; pass a checkpoint file as weights=")
  full, label = _full_variables(spec, weights, cache_dir)
  return module, _select(full, module, name, label)


def apply_backbone(module: nn.Module, variables: Mapping, images_BxHxWx3, stages: Sequence[str]) -> dict:
  """Runs the frozen backbone and returns {stage: stop_gradient(feats_BxhxwxC)} for `stages`."""
  if images_BxHxWx3.ndim != 4 or images_BxHxWx3.shape[-1] != 3:
    raise DataError(f"backbone input must be a (B, H, W, 3) image batch, got shape {tuple(images_BxHxWx3.shape)}")
  feats = module.apply(variables, images_BxHxWx3)
  missing = [s for s in stages if s not in feats]
  if missing:
    raise ConfigError(f"stages {missing} were not computed; the backbone was built for {tuple(feats)}")
  return {s: jax.lax.stop_gradient(feats[s]) for s in stages}
