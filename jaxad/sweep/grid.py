"""Sweep grids: the fields that vary, and the members and static points they expand into.

A grid maps a field of the method's `Static` or `Hparams` to the values it takes (as text, the
way `--set` reads them). Every combination is one member, numbered in `itertools.product`
order of the grid as given. Members that share their `Static` values form one static point:
one compiled program, whose members are stacked on the M axis and vmapped.
"""

from __future__ import annotations

import dataclasses
import itertools

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


def parse_grid_args(items: list[str]) -> dict[str, list[str]]:
  """`FIELD=V1,V2,…`, `FIELD=A:B` (integers A..B-1) or `FIELD=V1;V2` (values holding commas, e.g. tuples)."""
  grid = {}
  for item in items:
    if "=" not in item:
      raise ConfigError(f"--grid expects FIELD=VALUES, got {item!r}")
    key, values = (s.strip() for s in item.split("=", 1))
    if key in grid:
      raise ConfigError(f"--grid {key} is given twice; put all its values in one --grid")
    if ";" in values:
      grid[key] = [v.strip() for v in values.split(";") if v.strip()]
    elif ":" in values and "," not in values:
      try:
        lo, hi = (int(v) for v in values.split(":"))
      except ValueError:
        raise ConfigError(f"--grid {item!r}: A:B takes two integers (A..B-1)") from None
      grid[key] = [str(v) for v in range(lo, hi)]
    else:
      grid[key] = [v.strip() for v in values.split(",") if v.strip()]
    if not grid[key]:
      raise ConfigError(f"--grid {item!r} gives no values")
  return grid


def as_text(value) -> str:
  """A grid value from an experiment file as `--set` text (tuples → "a,b")."""
  if isinstance(value, (tuple, list)):
    return ",".join(str(v) for v in value)
  return str(value)


def grid_from_experiment(section: dict, source: str) -> dict[str, list[str]]:
  """The `grid` of an experiment file's `sweep` section: {field: [values]} (a range counts as a list)."""
  grid = section.get("grid", {})
  if not isinstance(grid, dict):
    raise ConfigError(f"{source}: sweep['grid'] must map field names to lists of values")
  out = {}
  for key, values in grid.items():
    values = list(values) if isinstance(values, (list, tuple, range)) else [values]
    if not values:
      raise ConfigError(f"{source}: sweep grid field {key!r} has no values")
    out[key] = [as_text(v) for v in values]
  return out


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
