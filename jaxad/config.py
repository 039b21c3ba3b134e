"""Typed `key=value` overrides of frozen config dataclasses, and JSON records of configs."""

from __future__ import annotations

import dataclasses
import json
import operator
import typing

from jaxad.errors import ConfigError


def _parse(text: str, like, field_type) -> object:
  t = str(field_type)
  text = text.strip()
  if text.lower() in ("none", "null"):
    if not t or "None" in t or "Optional" in t:  # the field may be None (or its type is unknown)
      return None
    if field_type is str:
      return text  # a plain string setting whose value is the word (EfficientAD's penalty=none)
    raise ValueError(f"this setting ({getattr(field_type, '__name__', t)}) cannot be None")
  if isinstance(like, bool) or t in ("bool", "bool | None"):
    if text.lower() in ("1", "true", "yes", "on"):
      return True
    if text.lower() in ("0", "false", "no", "off"):
      return False
    raise ValueError(f"expected true/false, got {text!r}")
  if isinstance(like, tuple) or t.startswith("tuple"):
    items = [p for p in text.strip("()[] ").split(",") if p.strip()]
    inner = like[0] if like else (float if "float" in t else int if "int" in t else str)
    kind = type(inner) if not isinstance(inner, type) else inner
    return tuple(kind(p.strip()) for p in items)
  if isinstance(like, int) or t in ("int", "int | None"):
    return int(float(text)) if "e" in text.lower() else int(text)
  if isinstance(like, float) or t in ("float", "float | None"):
    return float(text)
  return text


def check_init_seed(hp) -> None:
  """Raises ConfigError unless a member's `init_seed` is ≥ 0 or −1 (use its `seed`)."""
  if not hp.init_seed >= -1:
    raise ConfigError(f"init_seed must be ≥ 0 (the parameter init's own seed) or -1 (the member's seed), "
                      f"got {hp.init_seed}")


def image_hw(value) -> tuple[int, int]:
  """(H, W) from an `image_size` setting: one number (square) or two, all positive."""
  try:
    size = tuple(operator.index(v) for v in (value if hasattr(value, "__len__") else (value,)))
  except TypeError:
    size = ()
  if len(size) == 1:
    size = size * 2
  if len(size) != 2 or min(size) < 1:
    raise ConfigError(f"image_size must be one or two positive integers (H,W), got {value}")
  return size


def check_ranges(obj, *, at_least_zero: tuple[str, ...] = (), positive: tuple[str, ...] = (),
                 fraction: tuple[str, ...] = (), below_one: tuple[str, ...] = ()) -> None:
  """Raises one ConfigError naming every listed field of `obj` outside its range (NaN is outside all).

  at_least_zero: ≥ 0; positive: > 0; fraction: in [0, 1]; below_one: in [0, 1). A tuple field
  is checked item by item; None passes (an unset optional setting).
  """
  rules = [(at_least_zero, lambda v: v >= 0, "≥ 0"), (positive, lambda v: v > 0, "> 0"),
           (fraction, lambda v: 0 <= v <= 1, "in [0, 1]"), (below_one, lambda v: 0 <= v < 1, "in [0, 1)")]
  bad = []
  for names, ok, text in rules:
    for name in names:
      value = getattr(obj, name)
      items = value if isinstance(value, tuple) else (value,)
      if value is not None and not all(ok(v) for v in items):
        bad.append(f"{name}={value} (must be {text})")
  if bad:
    raise ConfigError(f"setting(s) out of range: {'; '.join(bad)}")


def apply_overrides(obj, overrides: dict[str, str]):
  """Returns a copy of dataclass `obj` with the overrides that name its fields; unknown keys ignored."""
  fields = {f.name: f for f in dataclasses.fields(obj)}
  hints = typing.get_type_hints(type(obj))
  updates = {}
  for key, text in overrides.items():
    if key in fields:
      try:
        updates[key] = _parse(text, getattr(obj, key), hints.get(key, ""))
      except ValueError as e:
        raise ConfigError(f"setting {key}={text}: {e}") from None  # from --set, --grid or an experiment file
  return dataclasses.replace(obj, **updates)


def parse_set_args(items: list[str] | None) -> dict[str, str]:
  out = {}
  for item in items or []:
    if "=" not in item:
      raise ConfigError(f"--set expects key=value, got {item!r}")
    key, value = item.split("=", 1)
    out[key.strip()] = value
  return out


def check_known(overrides: dict[str, str], *dataclass_objs, extra: tuple[str, ...] = ()) -> None:
  known = set(extra)
  for obj in dataclass_objs:
    known |= {f.name for f in dataclasses.fields(obj)}
  unknown = sorted(set(overrides) - known)
  if unknown:
    raise ConfigError(f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")


def to_record(obj) -> dict:
  """JSON-able dict of a dataclass (arrays become lists)."""
  out = {}
  for f in dataclasses.fields(obj):
    v = getattr(obj, f.name)
    if hasattr(v, "tolist"):
      v = v.tolist()
    out[f.name] = list(v) if isinstance(v, tuple) else v
  json.dumps(out)
  return out
