"""The sweep plan: static points split into member chunks ("groups"), stored in `<workdir>/sweep.json`.

A group is the unit the engine trains: the members of one static point stacked on the M axis
(`slots` of them: the real members, then copies of the last one as padding so that every
group of a point has one shape — one compilation — and M is a multiple of the devices it is
split over). Each group is an ordinary `jaxad fit` work directory (`<group>/<category>/` with
config.json, checkpoints holding the M axis, reports): the workdir itself when the sweep is one
group, else `<workdir>/p<point>c<chunk>`. A re-run with the same sweep reuses the stored plan,
so resumed groups keep their shapes.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from jaxad import atomic
from jaxad.errors import ConfigError

PLAN_FILE = "sweep.json"


@dataclasses.dataclass(frozen=True)
class Group:
  name: str
  point: int
  members: tuple[int, ...]  # global member numbers, in slot order (padding not included)
  slots: int  # stacked size M of the compiled program (members + padding)
  devices: int  # local devices its M axis is split over
  dir: str  # its work directory relative to the sweep's: "." (a one-group sweep) or the name


def chunking(n_members: int, members_per_chunk: int, n_devices: int) -> tuple[int, int, int]:
  """(slots, devices, chunks): balanced chunks of at most `members_per_chunk` (rounded down to a
  multiple of the devices used, at least one per device) whose size is a multiple of the devices."""
  devices = max(1, min(n_devices, n_members))
  per_chunk = max(devices, members_per_chunk // devices * devices)
  chunks = -(-n_members // per_chunk)
  slots = -(-(-(-n_members // chunks)) // devices) * devices
  return slots, devices, chunks


def plan_point(point_index: int, members: list[int], members_per_chunk: int, n_devices: int,
               n_points: int) -> list[Group]:
  slots, devices, chunks = chunking(len(members), members_per_chunk, n_devices)
  single = n_points == 1 and chunks == 1
  return [Group(name, point_index, tuple(members[k * slots:(k + 1) * slots]), slots, devices,
                "." if single else name) for k in range(chunks) for name in [f"p{point_index}c{k}"]]


def padded(items: list, slots: int) -> list:
  """`items` followed by copies of its last element up to `slots`."""
  return list(items) + [items[-1]] * (slots - len(items))


def load(workdir: str | Path, key: dict) -> dict | None:
  """The stored plan of this sweep (None when the workdir has none); a different sweep is an error."""
  from jaxad.run import same_path
  path = Path(workdir) / PLAN_FILE
  if not path.exists():
    return None
  stored = json.loads(path.read_text())
  key = json.loads(json.dumps(key))
  old = stored.get("key", {})
  differs = sorted(k for k in set(key) | set(old) if old.get(k) != key.get(k)
                   and not (k == "data" and same_path(str(old.get(k)), str(key.get(k)))))  # older plans: relative
  if differs or list(old.get("grid", {})) != list(key["grid"]):  # the grid's order numbers the members
    differs = differs or ["the order of the grid's fields"]
    raise ConfigError(f"{path} describes a different sweep (differs in: {', '.join(differs)}); "
                      "use another --workdir or delete it")
  return stored


def save(workdir: str | Path, plan: dict) -> None:
  path = Path(workdir) / PLAN_FILE
  path.parent.mkdir(parents=True, exist_ok=True)
  atomic.write_text(path, json.dumps(plan, indent=2))


def groups_of(plan: dict, point: int) -> list[Group] | None:
  entry = plan["points"].get(str(point))
  if entry is None:
    return None
  return [Group(g["name"], point, tuple(g["members"]), g["slots"], g["devices"], g["dir"]) for g in entry["groups"]]


def all_groups(plan: dict) -> list[Group]:
  return [g for point in sorted(plan["points"], key=int) for g in groups_of(plan, int(point))]


def record_point(plan: dict, point: int, static_values: dict, groups: list[Group], memory: dict | None) -> None:
  plan["points"][str(point)] = {"static": static_values, "memory": memory,
                                "groups": [{k: list(v) if isinstance(v, tuple) else v
                                            for k, v in dataclasses.asdict(g).items() if k != "point"}
                                           for g in groups]}
