"""Sweep grids: the fields that vary, and the members and static points they expand into.

A grid maps a field of the method's `Static` or `Hparams` to the values it takes (as text, the
way `--set` reads them). Every combination is one member, numbered in `itertools.product`
order of the grid as given. Members that share their `Static` values form one static point:
one compiled program, whose members are stacked on the M axis and vmapped.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import numbers
import re

from jaxad import config as config_lib
from jaxad.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class Member:
  index: int  # global member number
  static_values: tuple[tuple[str, str], ...]  # swept Static fields → value text
  dynamic_values: tuple[tuple[str, str], ...]  # swept Hparams fields → value text


@dataclasses.dataclass(frozen=True)
class Point:
  """One static setting: a resolved `Static`, its base `Hparams` and the members trained with it."""

  index: int
  static_values: dict[str, str]
  static: object
  members: list[Member]
  hparams: list  # one Hparams per member


_RANGE = re.compile(r"([+-]?\d+)\s*:\s*([+-]?\d+)")
SECTION_KEYS = ("grid", "members_per_chunk", "memory_budget_gb", "select", "shard")  # an experiment's `sweep`


def parse_grid_args(items: list[str]) -> dict[str, list[str]]:
  """`FIELD=V1,V2,…`, `FIELD=A:B` (integers A..B-1) or `FIELD=V1;V2` (values holding commas, e.g. tuples).

  Only the first '=' splits. `A:B` is a range only as a field's one value with integer ends; other
  values holding ':' (paths such as C:/w.pth, names such as hf:org/x) are kept whole, and numbers
  around ':' that are not such a range are refused, never read as text.
  """
  grid = {}
  for item in items:
    key, eq, values = item.partition("=")
    key = key.strip()
    if not eq or not key:
      raise ConfigError(f"--grid expects FIELD=VALUES, got {item!r}")
    if key in grid:
      raise ConfigError(f"--grid {key} is given twice; put all its values in one --grid")
    sep = ";" if ";" in values else ","
    parts = [v.strip() for v in values.split(sep) if v.strip()]
    ranges = [_RANGE.fullmatch(v) for v in parts]
    if len(parts) == 1 and ranges[0]:
      parts = [str(i) for i in range(int(ranges[0][1]), int(ranges[0][2]))]
    elif any(ranges):
      listed = [str(i) for v, m in zip(parts, ranges) for i in (range(int(m[1]), int(m[2])) if m else [v])]
      raise ConfigError(f"--grid {item!r}: a range A:B must be the field's only value; list every value "
                        f"instead: {key}={sep.join(listed)}")
    for v in parts:
      if ":" in v and all(_is_number(p) for p in v.split(":")):
        raise ConfigError(f"--grid {item!r}: {v!r} is not a range: A:B takes two integers (A..B-1), e.g. "
                          f"{key}=0:3; list other numbers with commas")
    if not parts:
      raise ConfigError(f"--grid {item!r} gives no values" + (" (A:B is the integers A..B-1)" if ":" in values else ""))
    grid[key] = parts
  return grid


def _is_number(text: str) -> bool:
  """Whether `text` is a number or empty (an end of a would-be range such as 0.5:2, 0: or 0:2:3)."""
  if not text.strip():
    return True
  try:
    float(text)
  except ValueError:
    return False
  return True


def as_text(value) -> str:
  """A grid value from an experiment file as `--set` text (tuples → "a,b")."""
  if isinstance(value, (tuple, list)):
    return ",".join(str(v) for v in value)
  return str(value)


def _is_scalar(value) -> bool:
  return value is None or isinstance(value, (str, numbers.Number))


def grid_from_experiment(section: dict, source: str) -> dict[str, list[str]]:
  """The `grid` of an experiment file's `sweep` section: {field: [values] or range(…)} as text.

  A tuple is one value there (image_size (64, 64)), so a field's values must be a list or a range.
  """
  grid = section.get("grid", {})
  if not isinstance(grid, dict):
    raise ConfigError(f"{source}: sweep['grid'] must map field names to lists of values, got {grid!r}")
  out = {}
  for key, values in grid.items():
    if not isinstance(key, str) or not key:
      raise ConfigError(f"{source}: sweep grid keys must be field names, got {key!r}")
    if isinstance(values, tuple):
      raise ConfigError(f"{source}: sweep grid field {key!r} is the tuple {values!r}; a tuple is one value here, so "
                        f"write [{values!r}] for that one value or {list(values)!r} for {len(values)} values")
    if not isinstance(values, (list, range)):
      raise ConfigError(f"{source}: sweep grid field {key!r} must be a list of values (e.g. [0.8, 1.6] or range(3)), "
                        f"got {values!r}")
    if not values:
      raise ConfigError(f"{source}: sweep grid field {key!r} has no values")
    for v in values:
      if not (_is_scalar(v) or isinstance(v, (tuple, list)) and v and all(_is_scalar(x) for x in v)):
        raise ConfigError(f"{source}: sweep grid field {key!r}: value {v!r} is neither a number, a text nor a "
                          "tuple of them")
    out[key] = [as_text(v) for v in values]
  return out


def check_section(section, source) -> None:
  """Refuses an experiment's `sweep` section with a key other than SECTION_KEYS or a mistyped value."""
  if not isinstance(section, dict):
    raise ConfigError(f"{source}: 'sweep' must be a dict with keys {', '.join(SECTION_KEYS)}, got {section!r}")
  unknown = [repr(k) for k in section if k not in SECTION_KEYS]
  if unknown:
    raise ConfigError(f"{source}: unknown sweep key(s) {', '.join(unknown)}; accepted: {', '.join(SECTION_KEYS)}")
  grid_from_experiment(section, source)
  n = section.get("members_per_chunk")
  if n is not None and (isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1):
    raise ConfigError(f"{source}: sweep['members_per_chunk'] must be an integer ≥ 1 or None, got {n!r}")
  gb = section.get("memory_budget_gb")
  if gb is not None and (isinstance(gb, bool) or not isinstance(gb, numbers.Real) or not 0 < gb < math.inf):
    raise ConfigError(f"{source}: sweep['memory_budget_gb'] must be a positive number of GB or None, got {gb!r}")
  if not isinstance(section.get("shard", True), bool):
    raise ConfigError(f"{source}: sweep['shard'] must be True or False, got {section['shard']!r}")
  from jaxad.evaluate.report import METRIC_ORDER
  if section.get("select", "image_auroc") not in METRIC_ORDER:
    raise ConfigError(f"{source}: sweep['select'] {section['select']!r} is not a metric; choose one of "
                      f"{', '.join(METRIC_ORDER)}")


def expand(method, base_overrides: dict[str, str], grid: dict[str, list[str]], build_static) -> list[Point]:
  """The static points of `grid` with their members (global numbering over the whole grid).

  build_static(overrides) -> (static, hp) resolves a method's Static and default Hparams.
  """
  static_fields = {f.name for f in dataclasses.fields(method.static_cls)}
  hp_fields = {f.name for f in dataclasses.fields(method.hparams_cls)}
  unknown = sorted(set(grid) - static_fields - hp_fields)
  if unknown:
    raise ConfigError(f"cannot sweep {', '.join(unknown)}: not a field of {method.name}'s Static or Hparams; "
                      f"dynamic (one program): {', '.join(sorted(hp_fields))}; static (one program each): "
                      f"{', '.join(sorted(static_fields))}")
  keys = list(grid)
  points: dict[tuple, Point] = {}
  base_hparams = {}
  for index, combo in enumerate(itertools.product(*grid.values())):
    values = dict(zip(keys, combo))
    svals = tuple((k, v) for k, v in values.items() if k in static_fields)
    dvals = tuple((k, v) for k, v in values.items() if k not in static_fields)
    if svals not in points:
      static, base_hparams[svals] = build_static({**base_overrides, **dict(svals)})
      for other in points.values():
        if other.static == static:
          raise ConfigError(f"--grid {_show(svals)} and {_show(other.static_values.items())} give the same settings; "
                            f"separate values that contain commas with ';', e.g. image_size=64,64;128,128")
      points[svals] = Point(len(points), dict(svals), static, [], [])
    hp = config_lib.apply_overrides(base_hparams[svals], dict(dvals))
    method.check_hparams(hp)
    for member, other in zip(points[svals].members, points[svals].hparams):
      if other == hp:
        raise ConfigError(f"--grid: members {member.index} and {index} are the same setting "
                          f"({_show(member.static_values + member.dynamic_values)}); give each value once, and separate "
                          "values that contain commas with ';', e.g. image_size=64,64;128,128")
    points[svals].members.append(Member(index, svals, dvals))
    points[svals].hparams.append(hp)
  return list(points.values())


def _show(values) -> str:
  return " ".join(f"{k}={v}" for k, v in values)
