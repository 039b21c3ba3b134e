"""`jaxad sweep`: train many models at once — dynamic hyperparameters stacked on one axis and vmapped.

Examples:  jaxad sweep --data embedded --grid noise_std=0.8,1.6,3.2 --grid seed=0:3
           jaxad sweep --data embedded --grid "image_size=64,64;128,128" --grid seed=0:4
           jaxad sweep --config experiments/supersimplenet_embedded.py     (its `sweep` section)
Every combination of the grids is a member. `Hparams` fields (σ, Perlin threshold, learning
rates, weight decays, loss margins, seed) are stacked on the M axis of one compiled program; the
frozen backbone features are computed once per batch and shared. `Static` fields (image size,
backbone, head widths, epochs…) make one program per value ("static point"). Each point's
members are trained in chunks of the largest M that fits the device, each chunk's M axis split
over the local devices; `--exact` trains the members one at a time with `jaxad fit`'s program
instead, bit for bit as their runs alone. Writes sweep_results.{csv,md,json} (every member's
hyperparameters and metrics), sweep_best.* (best member per category by --select, a test-split
metric), sweep_seeds.* (with seed swept: each setting's mean ± std over its seeds, the best by
its mean) and plots/*.png; `jaxad extract` turns one member into a run for `jaxad test` /
`jaxad predict`.
Running the same command again resumes an interrupted sweep.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers) -> None:
  from jaxad.cli.fit import add_common
  p = subparsers.add_parser("sweep", help="train a grid of hyperparameters as vmapped programs",
                            description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  add_common(p, workdir_help="output folder (default: the --config file's workdir, else runs/<model>_<data>; "
                                 "'_sweep' appended to either when it is under runs/)")
  p.add_argument("--grid", action="append", default=[], metavar="FIELD=V1,V2,...|A:B|V1;V2",
                 help="values of one Static or Hparams field (comma list; A:B alone for the integers A..B-1, "
                      "other values may hold ':', e.g. C:/w.pth; ';' between values that contain commas); "
                      "repeatable; adds to the experiment's sweep section (a field named in both takes these values)")
  p.add_argument("--members-per-chunk", type=int, default=None,
                 help="members trained at once (default: the largest chunk that fits the device's memory)")
  p.add_argument("--memory-budget", type=float, default=None, metavar="GB",
                 help="memory per device for the chunk size (default: the device's free memory; the CPU backend "
                      "reports none, so without this flag a CPU sweep is one chunk)")
  p.add_argument("--no-shard", action="store_true", help="keep each chunk on one device")
  p.add_argument("--exact", action="store_true",
                 help="train the members one after another, each with `jaxad fit`'s own compiled program (compiled "
                      "once, on one device): every member equals `jaxad fit` of its setting bit for bit, at the speed "
                      "of separate runs (a vmapped chunk rounds differently, which long training amplifies)")
  p.add_argument("--select", default=None, help="metric that picks the best member per category and, with seeds "
                 "swept, the best setting by its mean over seeds (image_auroc)")
  p.add_argument("--distributed", action="store_true",
                 help="one of several processes (hosts) sharing the sweep's chunks through a --workdir on a shared "
                      "filesystem; this process's number and the count from SLURM, Open MPI or MPICH (see README)")
  p.add_argument("--num-processes", type=int, default=None,
                 help="the number of processes sharing the sweep (with --process-id; instead of --distributed)")
  p.add_argument("--process-id", type=int, default=None, help="this process's number, 0..N-1 (with --num-processes)")
  p.add_argument("--max-steps", type=int, default=None, help="stop after this many steps (smoke runs)")
  p.add_argument("--no-progress", action="store_true", help="no progress bar")
  p.set_defaults(func=main)


def main(args) -> int:
  import dataclasses
  from jaxad import config as config_lib
  from jaxad.cli.fit import resolve_run
  from jaxad.errors import ConfigError
  from jaxad.evaluate.report import METRIC_ORDER, markdown_table
  from jaxad.experiments_loader import load_experiment
  from jaxad.sweep import grid as grid_lib
  from jaxad.sweep.processes import resolve as resolve_processes
  from jaxad.sweep.runner import SweepOptions, run_sweep

  processes = resolve_processes(args.num_processes, args.process_id, args.distributed)
  section = load_experiment(args.config).get("sweep", {}) if args.config else {}
  grid = {**grid_lib.grid_from_experiment(section, args.config or ""), **grid_lib.parse_grid_args(args.grid)}
  if not grid:
    raise ConfigError("nothing to sweep: give --grid FIELD=VALUES or a --config whose get_config has a sweep section")
  run, overrides = resolve_run(args)
  if run.workdir.startswith("runs/") and not args.workdir:
    run = dataclasses.replace(run, workdir=run.workdir + "_sweep")
  if "overlays" not in config_lib.parse_set_args(args.set):
    run = dataclasses.replace(run, overlays=0)  # M × 12 pictures per category: only on request
  budget_gb = args.memory_budget if args.memory_budget is not None else section.get("memory_budget_gb")
  if args.exact and args.members_per_chunk not in (None, 1):
    raise ConfigError("--exact trains one member at a time; it cannot take --members-per-chunk "
                      f"{args.members_per_chunk}")
  options = SweepOptions(
      members_per_chunk=(1 if args.exact else args.members_per_chunk if args.members_per_chunk is not None
                         else section.get("members_per_chunk")),
      memory_budget_bytes=None if budget_gb is None else int(float(budget_gb) * 2**30),
      shard=not args.exact and not args.no_shard and section.get("shard", True),
      select=args.select or section.get("select", "image_auroc"), processes=processes)
  if options.select not in METRIC_ORDER:
    raise ConfigError(f"--select {options.select!r} is not a metric; choose one of {', '.join(METRIC_ORDER)}")
  if options.members_per_chunk is not None and options.members_per_chunk < 1:
    raise ConfigError(f"--members-per-chunk must be at least 1, got {options.members_per_chunk}")
  if budget_gb is not None and float(budget_gb) <= 0:
    raise ConfigError(f"--memory-budget must be positive (GB), got {budget_gb}")
  if args.exact:
    import jax
    if (n := jax.local_device_count()) > 1:
      print(f"jaxad sweep --exact: this process trains on one of the {n} devices it sees. To use all, start one "
            f"process per device, each seeing only its own (e.g. CUDA_VISIBLE_DEVICES=p), with --num-processes {n} "
            f"--process-id p (README: Sweeps, Exactness)", file=sys.stderr)
  rows = run_sweep(run, overrides, grid, options)
  if rows is None:  # other processes still train; the last to finish writes the tables
    return 0
  from jaxad.sweep.outputs import best_per_category, seeds_markdown
  best = best_per_category(rows, options.select)
  if not best:
    print(f"jaxad sweep: no alive member has a finite {options.select} (not a metric of this dataset, or every "
          "member diverged): sweep_best is empty", file=sys.stderr)
  print(markdown_table(best))
  seeds_file = Path(run.workdir) / "sweep_seeds.json"  # written by this sweep when it swept ≥ 2 seeds
  seeds = json.loads(seeds_file.read_text()) if "seed" in grid and seeds_file.exists() else []
  if seeds:
    print(f"\nmean ± std over seeds (sample std, n − 1):\n{seeds_markdown(seeds)}")
  print(f"\n{len(rows)} rows in {run.workdir}/sweep_results.{{csv,md,json}}; best per category: sweep_best.*; "
        + ("over seeds: sweep_seeds.*; " if seeds else "") + f"plots: {run.workdir}/plots/")
  return 0
