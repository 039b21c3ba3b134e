"""`jaxad sweep`: train many models at once — dynamic hyperparameters stacked on one axis and vmapped.

Example:  jaxad sweep --data embedded --grid noise_std=0.8,1.6,3.2 --grid seed=0:3
Every combination of the grids becomes a member of one stacked model; the frozen backbone
features are computed once per batch and shared. Only `Hparams` fields (scalars: σ, Perlin
threshold, learning rates, weight decays, loss margins, seed) can be swept this way.
"""

from __future__ import annotations

import itertools


def register(subparsers) -> None:
  from jaxad.cli.fit import add_common
  p = subparsers.add_parser("sweep", help="train a grid of hyperparameters as one vmapped program",
                            description=__doc__)
  add_common(p)
  p.add_argument("--grid", action="append", required=True, metavar="FIELD=V1,V2,...|A:B",
                 help="values of one Hparams field (comma list, or A:B for the integers A..B-1); repeatable")
  p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (smoke runs)")
  p.add_argument("--no-progress", action="store_true", help="no progress bar")
  p.set_defaults(func=main)


def parse_grid(items: list[str]) -> dict[str, list[str]]:
  from jaxad.errors import ConfigError
  grid = {}
  for item in items:
    if "=" not in item:
      raise ConfigError(f"--grid expects FIELD=VALUES, got {item!r}")
    key, values = item.split("=", 1)
    if ":" in values and "," not in values:
      lo, hi = values.split(":")
      grid[key.strip()] = [str(v) for v in range(int(lo), int(hi))]
    else:
      grid[key.strip()] = [v.strip() for v in values.split(",") if v.strip()]
  return grid


def main(args) -> int:
  import dataclasses
  from jaxad import config as config_lib
  from jaxad.cli.fit import resolve_run
  from jaxad.errors import ConfigError
  from jaxad.evaluate.report import markdown_table
  from jaxad.run import build_static, run as run_all

  run, overrides = resolve_run(args)
  if run.workdir.startswith("runs/") and not args.workdir:
    run = dataclasses.replace(run, workdir=run.workdir + "_sweep")
  method, static, hp = build_static(run.model, overrides)
  grid = parse_grid(args.grid)
  hp_fields = {f.name for f in dataclasses.fields(hp)}
  not_dynamic = sorted(set(grid) - hp_fields)
  if not_dynamic:
    raise ConfigError(f"cannot sweep {', '.join(not_dynamic)} in one program (not a dynamic Hparams field); "
                      f"sweepable: {', '.join(sorted(hp_fields))}")
  keys = list(grid)
  hps = [config_lib.apply_overrides(hp, dict(zip(keys, combo))) for combo in itertools.product(*grid.values())]
  print(f"{len(hps)} members: {', '.join(f'{k} × {len(v)}' for k, v in grid.items())}")
  rows = run_all(run, overrides, hps_list=hps)
  print(markdown_table(rows))
  print(f"\nreports, overlays and checkpoints: {run.workdir}")
  return 0
