"""PyTorch state dicts → Flax variables for the backbones in `jaxad.nn`.

Accepted key names: torchvision's (== timm's) for the ResNets; ml-illustrated/lukemelas
(`_blocks.N._depthwise_conv`) and timm (`blocks.G.I.conv_dw`) for EfficientNet-Lite.
Layouts: conv OIHW → HWIO (a depthwise (C, 1, k, k) kernel becomes (k, k, 1, C), which is
Flax's `feature_group_count=C` layout), linear (out, in) → (in, out); BatchNorm
weight/bias → params scale/bias, running_mean/var → batch_stats mean/var.
`num_batches_tracked` is ignored. Every mismatch is reported at once.
"""

from __future__ import annotations

import functools
from typing import Callable, Mapping

import numpy as np

from jaxad.errors import WeightsError
from jaxad.nn import efficientnet_lite, resnet

# torch key -> (collection, flax path, layout)
Table = dict[str, tuple[str, tuple[str, ...], str]]
CONVERTIBLE = (*resnet.RESNET_CONFIGS, *efficientnet_lite.LITE_CONFIGS)
# Classification-head keys of EfficientNet-Lite (lukemelas and timm names); ResNets: "fc.".
LITE_HEAD_PREFIXES = ("_fc.", "classifier.", "_conv_head.", "conv_head.", "_bn1.", "bn2.")
_MAX_LISTED = 25


class StateDictMismatchError(WeightsError):
  """A state dict does not fit the architecture; `missing`, `unexpected`, `misshaped` hold every key."""

  def __init__(self, message: str, missing: list[str], unexpected: list[str], misshaped: list[str]):
    super().__init__(message)
    self.missing, self.unexpected, self.misshaped = missing, unexpected, misshaped


def _bn(table: Table, torch_prefix: str, flax_path: tuple[str, ...]) -> None:
  for torch_name, collection, flax_name in (("weight", "params", "scale"), ("bias", "params", "bias"),
                                            ("running_mean", "batch_stats", "mean"),
                                            ("running_var", "batch_stats", "var")):
    table[f"{torch_prefix}.{torch_name}"] = (collection, (*flax_path, flax_name), "vector")


def _conv(table: Table, torch_key: str, flax_path: tuple[str, ...]) -> None:
  table[torch_key] = ("params", (*flax_path, "kernel"), "conv")


def _dense(table: Table, torch_prefix: str, flax_path: tuple[str, ...]) -> None:
  table[f"{torch_prefix}.weight"] = ("params", (*flax_path, "kernel"), "dense")
  table[f"{torch_prefix}.bias"] = ("params", (*flax_path, "bias"), "vector")


def _resnet_table(config: resnet.ResNetConfig) -> Table:
  table: Table = {}
  _conv(table, "conv1.weight", ("conv1",))
  _bn(table, "bn1", ("bn1",))
  in_channels = config.stem_width
  n_convs = 2 if config.block == "basic" else 3
  for i, (num_blocks, out_channels) in enumerate(zip(config.layers, resnet.stage_channels(config).values())):
    for b in range(num_blocks):
      prefix, path = f"layer{i + 1}.{b}", (f"layer{i + 1}_{b}",)
      for k in range(1, n_convs + 1):
        _conv(table, f"{prefix}.conv{k}.weight", (*path, f"conv{k}"))
        _bn(table, f"{prefix}.bn{k}", (*path, f"bn{k}"))
      if b == 0 and (i > 0 or in_channels != out_channels):
        _conv(table, f"{prefix}.downsample.0.weight", (*path, "downsample_conv"))
        _bn(table, f"{prefix}.downsample.1", (*path, "downsample_bn"))
      in_channels = out_channels
  _dense(table, "fc", ("fc",))
  return table


def _lite_table(config: efficientnet_lite.LiteConfig, naming: str) -> Table:
  lukemelas = naming == "lukemelas"
  table: Table = {}
  _conv(table, "_conv_stem.weight" if lukemelas else "conv_stem.weight", ("conv_stem",))
  _bn(table, "_bn0" if lukemelas else "bn1", ("bn_stem",))
  flat = 0
  for g, group in enumerate(config.groups()):
    for i, spec in enumerate(group):
      path = (f"blocks_{g}_{i}",)
      if lukemelas:
        prefix = f"_blocks.{flat}"
        names = {"pw": ("_expand_conv", "_bn0"), "dw": ("_depthwise_conv", "_bn1"), "pwl": ("_project_conv", "_bn2")}
      else:
        prefix = f"blocks.{g}.{i}"
        if spec.expand_ratio == 1:  # timm's DepthwiseSeparableConv
          names = {"dw": ("conv_dw", "bn1"), "pwl": ("conv_pw", "bn2")}
        else:
          names = {"pw": ("conv_pw", "bn1"), "dw": ("conv_dw", "bn2"), "pwl": ("conv_pwl", "bn3")}
      for part, (conv_name, bn_name) in names.items():
        if part == "pw" and spec.expand_ratio == 1:
          continue
        _conv(table, f"{prefix}.{conv_name}.weight", (*path, f"conv_{part}"))
        _bn(table, f"{prefix}.{bn_name}", (*path, f"bn_{part}"))
      flat += 1
  _conv(table, "_conv_head.weight" if lukemelas else "conv_head.weight", ("conv_head",))
  _bn(table, "_bn1" if lukemelas else "bn2", ("bn_head",))
  _dense(table, "_fc" if lukemelas else "classifier", ("classifier",))
  return table


def _tables(arch: str) -> list[Table]:
  if arch in resnet.RESNET_CONFIGS:
    return [_resnet_table(resnet.RESNET_CONFIGS[arch])]
  if arch in efficientnet_lite.LITE_CONFIGS:
    config = efficientnet_lite.LITE_CONFIGS[arch]
    return [_lite_table(config, "lukemelas"), _lite_table(config, "timm")]
  raise WeightsError(f"no converter for architecture {arch!r}; known: {sorted(CONVERTIBLE)}")




@functools.lru_cache(maxsize=None)
def _flax_shapes(arch: str) -> dict[tuple[str, ...], tuple[int, ...]]:
  """Shapes of every variable of the full network (stages and head), from `eval_shape`."""
  import jax
  import jax.numpy as jnp
  from flax import traverse_util

  if arch in resnet.RESNET_CONFIGS:
    module = resnet.ResNet(resnet.RESNET_CONFIGS[arch])
  else:
    module = efficientnet_lite.EfficientNetLite(efficientnet_lite.LITE_CONFIGS[arch])
  variables = jax.eval_shape(functools.partial(module.init, method=module.classify),
                             jax.random.key(0), jnp.zeros((1, 64, 64, 3), jnp.float32))
  return {path: tuple(leaf.shape) for path, leaf in traverse_util.flatten_dict(dict(variables)).items()}


_TO_FLAX: dict[str, Callable[[np.ndarray], np.ndarray]] = {
  "conv": lambda w: w.transpose(2, 3, 1, 0) if w.ndim == 4 else w,
  "dense": lambda w: w.T if w.ndim == 2 else w,
  "vector": lambda w: w,
}
_TORCH_SHAPE: dict[str, Callable[[tuple[int, ...]], tuple[int, ...]]] = {
  "conv": lambda s: (s[3], s[2], s[0], s[1]),
  "dense": lambda s: (s[1], s[0]),
  "vector": lambda s: s,
}


def _is_head(key: str, arch: str) -> bool:
  if arch in resnet.RESNET_CONFIGS:
    return key.startswith("fc.")
  return key.startswith(LITE_HEAD_PREFIXES)


def _strip_module_prefix(state_dict: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]:
  if state_dict and all(k.startswith("module.") for k in state_dict):  # saved from nn.DataParallel
    return {k[len("module."):]: v for k, v in state_dict.items()}
  return state_dict


def _listing(title: str, items: list[str]) -> str:
  shown = ", ".join(items[:_MAX_LISTED])
  more = f" ... and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else ""
  return f"{len(items)} {title}: {shown}{more}"


def convert_state_dict(arch: str, state_dict: Mapping[str, np.ndarray], *, head: bool = True,
                       source: str | None = None) -> dict:
  """Converts a PyTorch state dict of `arch` into Flax variables.

  Args:
    arch: one of `CONVERTIBLE` (e.g. "wide_resnet50_2", "efficientnet_lite0").
    state_dict: torch key → array (numpy; torch tensors are accepted via `np.asarray`).
    head: whether the classification head (fc / conv_head + classifier) must be present and
      converted; with False, head keys are neither required nor reported as unexpected.
    source: file name used in error messages.

  Returns:
    {"params": ..., "batch_stats": ...} nested dicts of float32 numpy arrays.

  Raises:
    StateDictMismatchError (a WeightsError) listing all missing, unexpected and misshaped keys.
  """
  from flax import traverse_util

  tables = _tables(arch)
  state_dict = _strip_module_prefix(state_dict)
  keys = {k for k in state_dict if not k.endswith("num_batches_tracked")}
  table = max(tables, key=lambda t: len(keys & t.keys()))
  if not head:
    table = {k: v for k, v in table.items() if not _is_head(k, arch)}
    keys = {k for k in keys if not _is_head(k, arch)}
  shapes = _flax_shapes(arch)

  missing = [k for k in table if k not in keys]
  unexpected = sorted(keys - table.keys())
  misshaped, flat = [], {}
  for key, (collection, path, layout) in table.items():
    if key not in keys:
      continue
    value = np.asarray(state_dict[key])
    expected = shapes[(collection, *path)]
    converted = _TO_FLAX[layout](value)
    if converted.shape != expected or not np.issubdtype(value.dtype, np.floating):
      misshaped.append(f"{key} {tuple(value.shape)} {value.dtype} (expected {_TORCH_SHAPE[layout](expected)} float)")
      continue
    flat[(collection, *path)] = np.ascontiguousarray(converted, dtype=np.float32)

  if missing or unexpected or misshaped:
    where = f" in {source}" if source else ""
    parts = [_listing(t, items) for t, items in (("missing", missing), ("unexpected", unexpected),
                                                 ("misshaped", misshaped)) if items]
    raise StateDictMismatchError(f"state dict{where} does not match {arch}: " + "; ".join(parts),
                                 missing, unexpected, misshaped)
  return traverse_util.unflatten_dict(flat)
