"""Runs a sweep: static points one after another, each as member chunks trained as one vmapped program.

Per static point: the frozen backbone is built once, and each category's train features (when the engine
caches them) are computed once for all chunks; the chunk size is the largest M that
fits the device (jaxad.sweep.memory, on the point's first category) unless given; each chunk
(a `Group`) is trained and evaluated by `jaxad.run.run_category` with its M axis split over
the local devices (a 1-D mesh "members"), the splits loaded once per category and shared by
the chunks. Frozen (non-finite) members are reported, never raised. Finished groups are read
back from their reports, so an interrupted sweep resumes where it stopped (unfinished groups
resume from their checkpoints. With several processes (`jaxad.sweep.processes`), process p trains
the groups whose ordinal is p modulo the process count, and the one that finds every group done
when it finishes writes the tables.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax
import numpy as np

from jaxad import config as config_lib
from jaxad.errors import ConfigError
from jaxad.evaluate import report
from jaxad.models import get_method
from jaxad.run import build_static, finished, list_categories, load_splits, run_category
from jaxad.sweep import grid as grid_lib, memory, outputs, plan as plan_lib
from jaxad.train.state import stack_members


@dataclasses.dataclass(frozen=True)
class SweepOptions:
  members_per_chunk: int | None = None  # None: the largest that fits the device (memory estimate)
  memory_budget_bytes: int | None = None  # None: the device's free memory (the CPU backend needs a budget)
  shard: bool = True  # split each chunk's M axis over the local devices
  select: str = "image_auroc"  # metric that picks the best member per category
  processes: tuple[int, int] = (1, 0)  # (count, this process's index): see jaxad.sweep.processes


def _shared_category_settings(run_cfg) -> dict:
  """The experiment's per-category settings when every category of the sweep has the same ones; a sweep
  compiles one program per grid point, so categories that need different settings are refused."""
  from jaxad.run import category_overrides, check_category_settings
  check_category_settings(run_cfg.category_settings)
  categories = list(run_cfg.categories) or list_categories(run_cfg.data, run_cfg.data_options) or [None]
  first = category_overrides(run_cfg.category_settings, categories[0])
  for category in categories[1:]:
    other = category_overrides(run_cfg.category_settings, category)
    if other != first:
      raise ConfigError(f"categories {categories[0]} and {category} need different settings ({first} vs {other}); "
                        "sweep them one group at a time with --category")
  return first


def run_sweep(run_cfg, overrides: dict[str, str], grid: dict[str, list[str]], options: SweepOptions = SweepOptions(),
              log=print) -> list[dict] | None:
  """Trains and evaluates every member of `grid`; writes the sweep tables and plots; returns the rows.

  With several processes: trains this process's share; returns None when other processes' groups are
  still unfinished (the last to finish writes the tables)."""
  method = get_method(run_cfg.model)  # a Method.run protocol's options are refused by its resolve: engine path
  if run_cfg.category_settings:
    overrides = {**overrides, **_shared_category_settings(run_cfg)}
  points = grid_lib.expand(method, overrides, grid,
                           lambda o: build_static(run_cfg.model, o, check_hparams=False)[1:])  # members checked there
  config_lib.check_known(overrides, points[0].static, points[0].hparams[0])
  categories = list(run_cfg.categories) or list_categories(run_cfg.data, run_cfg.data_options) or [None]
  n_proc, proc = options.processes
  if n_proc > 1 and options.members_per_chunk is None:
    raise ConfigError("with several processes give --members-per-chunk: every process must plan the same chunks")
  workdir = Path(run_cfg.workdir)
  key = {"model": method.name, "data": run_cfg.data, "categories": categories, "data_seed": run_cfg.data_seed,
         "val_fraction": run_cfg.val_fraction, "overrides": overrides, "grid": grid,
         **({"data_options": run_cfg.data_options} if run_cfg.data_options else {})}  # older plans have none
  plan = plan_lib.load(workdir, key) or {"key": key, "points": {}}
  n_devices = len(jax.local_devices()) if options.shard else 1
  log(f"{sum(len(p.members) for p in points)} members in {len(points)} static point(s): "
      f"{', '.join(f'{k} × {len(v)}' for k, v in grid.items())}")

  ordinal = 0
  everyone = []  # (category dir, static, stacked hparams) of every group of every process
  for point in points:
    frozen = method.make_frozen(point.static)
    splits = {}
    groups = plan_lib.groups_of(plan, point.index)
    if groups is None:
      per_chunk, record = options.members_per_chunk, None
      budget = memory.device_budget(jax.local_devices()[0], options.memory_budget_bytes)
      used = max(1, min(n_devices, len(point.members)))  # devices a chunk is split over
      if per_chunk is None and budget is None:
        per_chunk = -(-len(point.members) // used) * used
        log(f"point {point.index}: the {jax.default_backend()} backend reports no memory and no "
            "--memory-budget was given: one chunk")
      elif per_chunk is None:
        splits = {categories[0]: load_splits(run_cfg, method, point.static, categories[0])}
        est = memory.estimate(method, point.static, point.hparams[0], splits[categories[0]]["train"], frozen,
                              data_seed=run_cfg.data_seed, steps_per_call=run_cfg.chunk,
                              eval_batch_size=run_cfg.eval_batch_size, budget=budget,
                              members_needed=-(-len(point.members) // used))
        per_chunk, record = est.members_per_device() * used, est.record()
        log(f"point {point.index}: {est.member_bytes / 2**20:.1f} MiB per member"
            f"{'' if est.exact else ' (upper bound)'}, {est.shared_bytes / 2**20:.1f} MiB shared, budget "
            f"{est.budget_bytes / 2**30:.2f} GiB per device ({est.budget_source}) → up to {per_chunk} members "
            "per chunk")
      groups = plan_lib.plan_point(point.index, [m.index for m in point.members], per_chunk, n_devices,
                                   len(points))
      plan_lib.record_point(plan, point.index, point.static_values, groups, record)
      if proc == 0:
        plan_lib.save(workdir, plan)
    mine = [g for i, g in enumerate(groups, ordinal) if i % n_proc == proc]
    ordinal += len(groups)
    hparams = {m.index: hp for m, hp in zip(point.members, point.hparams)}
    group_hps = {g.name: stack_members(plan_lib.padded([hparams[m] for m in g.members], g.slots)) for g in groups}
    everyone += [(workdir / g.dir / (c or "default"), point.static, group_hps[g.name])
                 for g in groups for c in categories]
    for category in categories:
      todo = [g for g in mine if not finished(workdir / g.dir / (category or "default"), run_cfg, method,
                                              point.static, group_hps[g.name])]
      if todo and category not in splits:
        splits = {category: load_splits(run_cfg, method, point.static, category)}  # one category in memory
      train_features = {}  # the point's cached train features of this category: computed once for its chunks
      for group in todo:
        hps_M = group_hps[group.name]
        mesh = _mesh(group, options.shard, log)
        log(f"[{category}] group {group.name}: members {_span(group.members)} "
            f"({group.slots} slots on {group.devices} device(s))")
        run_category(dataclasses.replace(run_cfg, workdir=str(workdir / group.dir)), method, point.static, hps_M,
                     category, log=log, splits=splits[category], frozen=frozen, mesh=mesh, raise_non_finite=False,
                     shared_features=train_features)

  if n_proc > 1:
    pending = [d for d, static, hps_M in everyone if not finished(d, run_cfg, method, static, hps_M)]
    if pending:
      log(f"process {proc} of {n_proc}: its groups are done; {len(pending)} group × category run(s) of other "
          "processes are not (the last process to finish writes the tables; a rerun resumes unfinished ones)")
      return None
  rows, scores = collect_rows(workdir, points, categories, plan)
  outputs.write(rows, list(grid), workdir, options.select, scores)
  return rows


def _mesh(group, shard: bool, log):
  """The 1-D "members" mesh a group's M axis is split over; None (one device) when the group was
  planned for one device, when sharding is off, or when fewer devices are present than planned."""
  if group.devices == 1 or not shard:
    return None
  devices = jax.local_devices()
  if len(devices) < group.devices:
    log(f"group {group.name} was planned for {group.devices} devices; {len(devices)} present: one device")
    return None
  return jax.sharding.Mesh(np.array(devices[:group.devices]), ("members",))


def _span(members) -> str:
  return f"{members[0]}–{members[-1]}" if len(members) > 1 else str(members[0])


def collect_rows(workdir: Path, points, categories, plan: dict) -> tuple[list[dict], dict]:
  """Every member × category: swept values, group, alive (from the checkpoint) and test metrics; and
  {(category, member): its test image scores (report.read_image_scores)}, for the chunks that wrote them."""
  from jaxad.checkpoint import Checkpointer
  by_member = {m.index: (m, hp, p) for p in points for m, hp in zip(p.members, p.hparams)}
  rows, scores = [], {}
  for category in categories:
    for group in plan_lib.all_groups(plan):
      cat_dir = workdir / group.dir / (category or "default")
      reported = json.loads((cat_dir / "report.json").read_text())
      ckpt = Checkpointer(cat_dir)
      alive = ckpt.restore_meta(ckpt.latest_step())["alive"]
      ckpt.close()
      if (cat_dir / "test_scores.csv").exists():  # chunks evaluated before jaxad wrote it have none
        per_slot = report.read_image_scores(cat_dir / "test_scores.csv")
        scores.update({(category or "default", m): per_slot[slot] for slot, m in enumerate(group.members)})
      for slot, m in enumerate(group.members):
        member, hp, point = by_member[m]
        values = {k: _table_value(getattr(point.static, k)) for k, _ in member.static_values}
        values.update({k: _table_value(getattr(hp, k)) for k, _ in member.dynamic_values})
        metrics = {k: reported[slot][k] for k in report.METRIC_ORDER if k in reported[slot]}
        rows.append({"category": category or "default", "member": m, **values, "group": group.name,
                     "alive": bool(alive[slot]), **metrics})
  rows.sort(key=lambda r: (categories.index(r["category"]) if r["category"] in categories else 0, r["member"]))
  return rows, scores


def _table_value(v):
  if isinstance(v, tuple):
    return grid_lib.as_text(v)
  return float(f"{v:.7g}") if isinstance(v, float) else v  # float32 storage: the digits the value was given with


def member_location(workdir: str | Path, member: int) -> tuple[Path, int]:
  """(group dir, slot) of a global member of the sweep in `workdir` (from its sweep.json)."""
  path = Path(workdir) / plan_lib.PLAN_FILE
  groups = plan_lib.all_groups(json.loads(path.read_text()))
  for g in groups:
    if member in g.members:
      return Path(workdir) / g.dir, g.members.index(member)
  known = sorted(m for g in groups for m in g.members)
  raise ConfigError(f"{path} has no member {member}" + (f"; members: {known[0]}–{known[-1]}" if known else ""))
