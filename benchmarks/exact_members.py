"""Is a sweep member its run alone? `jaxad sweep --exact` (and other arms) against `jaxad fit`, leaf by leaf.

Usage:  python benchmarks/exact_members.py --config experiments/supersimplenet_embedded.py:128 --category chip \
            --grid noise_std=1.6 --seeds 2 [--vmapped] [--sharded D] [--processes P] [--workdir /tmp/jaxad_exact] \
            [--out benchmarks/results/exact_members_ssn_128px_chip_cpu]

Runs these commands (each skips or resumes what its folder under --workdir already holds):
`jaxad fit --config C --category X` (the config's own seed S), `jaxad sweep --config C --grid G --grid
seed=S,…,S+N-1 --exact`; with --vmapped the same sweep as one vmapped chunk on one device; with --sharded D
in chunks of D split over D devices, one member per device (on the CPU, D forced host devices); with
--processes P as --exact split over P processes started at once (`--num-processes P --process-id p`; on a
GPU host each should see its own device, e.g. through CUDA_VISIBLE_DEVICES). Then compares the fit's final
checkpoint with the member of each sweep that has the fit's seed: for every state leaf (parameters,
BatchNorm statistics, optimiser state) whether it is bitwise equal and its largest absolute difference,
grouped by the leaf's top two path levels, and the test metrics of every arm. Writes OUT.json and OUT.md;
"wall s" is each command's time in this script's run (a folder finished earlier is only read back).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

CLI = "import sys; from jaxad.cli import main; sys.exit(main(sys.argv[1:]))"
METRICS = ("image_auroc", "image_auroc_map_max", "pixel_auroc", "pixel_ap", "aupro")


def run_cli(*commands: list[str], env: dict | None = None) -> float:
  """Runs each `jaxad ARGS` in a fresh process, all at once; returns the wall seconds until the last ends."""
  t0 = time.perf_counter()
  procs = []
  for args in commands:
    print("$ jaxad", " ".join(args), flush=True)
    procs.append(subprocess.Popen([sys.executable, "-c", CLI, *args], env=env))
  for proc, args in zip(procs, commands):
    if proc.wait() != 0:
      raise SystemExit(f"jaxad {' '.join(args)} failed (exit {proc.returncode})")
  return time.perf_counter() - t0


def trained_member(workdir: Path, category: str, member: int):
  """The final state of `member` of the run or sweep in `workdir` (a sweep: its global member number)."""
  from jaxad.run import find_member, load_trained
  from jaxad.train.state import index_member
  category_dir, slot, _ = find_member(workdir, category, member)
  return index_member(load_trained(category_dir)[3], slot)


def compare(a, b) -> list[dict]:
  """Per group of leaves (top two path levels): leaves, how many are bitwise equal, largest |a − b|."""
  import jax
  groups: dict[str, dict] = {}
  for (path, x), y in zip(jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b)):
    keys = [getattr(k, "name", None) or str(getattr(k, "key", getattr(k, "idx", k))) for k in path]
    name = "/".join(keys[:2])
    x, y = np.asarray(x), np.asarray(y)
    g = groups.setdefault(name, {"leaves": 0, "bitwise_equal": 0, "max_abs_diff": 0.0})
    g["leaves"] += 1
    g["bitwise_equal"] += int(np.array_equal(x, y, equal_nan=True))
    if x.dtype.kind == "f":
      diff = float(np.nanmax(np.abs(x.astype(np.float64) - y))) if x.size else 0.0
      g["max_abs_diff"] = max(g["max_abs_diff"], diff)
  return [{"leaves_of": k, **v} for k, v in groups.items()]


def main() -> None:
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--config", required=True)
  p.add_argument("--category", required=True)
  p.add_argument("--grid", action="append", default=[], help="extra --grid of both sweeps (e.g. noise_std=1.6)")
  p.add_argument("--seeds", type=int, default=2, help="the sweeps' members: the fit's seed S, S+1, …, S+N-1")
  p.add_argument("--vmapped", action="store_true", help="also the sweep as one vmapped chunk")
  p.add_argument("--sharded", type=int, default=0, metavar="D",
                 help="also the sweep in chunks of D members on D devices, one each (CPU: D forced host devices)")
  p.add_argument("--processes", type=int, default=0, metavar="P", help="also --exact split over P processes")
  p.add_argument("--max-steps", type=int, default=None)
  p.add_argument("--workdir", type=Path, default=Path("/tmp/jaxad_exact"))
  p.add_argument("--out", type=Path, default=None, help="OUT.json / OUT.md (default: print only)")
  args = p.parse_args()

  from jaxad import provenance
  common = ["--config", args.config, "--category", args.category, "--no-progress"]
  common += ["--max-steps", str(args.max_steps)] if args.max_steps else []
  dirs = {"fit": "fit", "sweep --exact": "exact", "sweep (vmapped chunk)": "vmapped",
          f"sweep (one member per device, {args.sharded} devices)": f"sharded{args.sharded}",
          f"sweep --exact, {args.processes} processes": f"exact_{args.processes}_processes"}
  seconds = {"fit": run_cli(["fit", *common, "--workdir", str(args.workdir / "fit")])}
  fit_dir = args.workdir / "fit" / args.category
  seed = json.loads((fit_dir / "config.json").read_text())["hparams"]["seed"][0]
  grid = [a for g in args.grid for a in ("--grid", g)]
  grid += ["--grid", "seed=" + ",".join(str(seed + i) for i in range(args.seeds))]  # the fit's seed first
  exact = ["sweep", *common, *grid, "--exact"]
  arms = {"sweep --exact": [exact]}  # arm: its commands, run at once (and the environment of them all)
  env = {}
  if args.vmapped:
    arms["sweep (vmapped chunk)"] = [["sweep", *common, *grid, "--members-per-chunk", str(args.seeds), "--no-shard"]]
  if args.sharded:
    arm = f"sweep (one member per device, {args.sharded} devices)"
    arms[arm] = [["sweep", *common, *grid, "--members-per-chunk", str(args.sharded)]]
    env[arm] = {**os.environ, "XLA_FLAGS": (os.environ.get("XLA_FLAGS", "") +
                                            f" --xla_force_host_platform_device_count={args.sharded}").strip()}
  if args.processes:
    arms[f"sweep --exact, {args.processes} processes"] = [
        [*exact, "--num-processes", str(args.processes), "--process-id", str(p)] for p in range(args.processes)]
  for arm, commands in arms.items():
    seconds[arm] = run_cli(*[[*c, "--workdir", str(args.workdir / dirs[arm])] for c in commands], env=env.get(arm))

  reference = trained_member(args.workdir / "fit", args.category, 0)
  rows = [{"arm": "fit", "member": 0, "seed": seed, "wall_s": round(seconds["fit"], 1),
           **{k: json.loads((fit_dir / "report.json").read_text())[0].get(k) for k in METRICS}}]
  details = {}
  for arm in arms:
    sweep_dir = args.workdir / dirs[arm]
    result = next(r for r in json.loads((sweep_dir / "sweep_results.json").read_text())
                  if r["seed"] == seed and r["category"] == args.category)
    groups = compare(trained_member(sweep_dir, args.category, result["member"]), reference)
    details[arm] = groups
    rows.append({"arm": arm, "member": result["member"], "seed": seed, "wall_s": round(seconds[arm], 1),
                 **{k: result.get(k) for k in METRICS},
                 "leaves_bitwise_equal": (f"{sum(g['bitwise_equal'] for g in groups)}/"
                                          f"{sum(g['leaves'] for g in groups)}"),
                 "max_abs_diff": max(g["max_abs_diff"] for g in groups)})
  record = {"command": "python " + " ".join(sys.argv), "provenance": provenance.collect(), "rows": rows,
            "leaf_groups": details}
  lines = ["| arm | member | seed | leaves bitwise equal to fit | max abs diff | wall s | "
           + " | ".join(METRICS) + " |", "|---" * (6 + len(METRICS)) + "|"]
  for r in rows:
    lines.append(f"| {r['arm']} | {r['member']} | {r['seed']} | {r.get('leaves_bitwise_equal', '–')} | "
                 f"{format(r['max_abs_diff'], '.3g') if 'max_abs_diff' in r else '–'} | {r['wall_s']} | "
                 + " | ".join(f"{r[k]:.3f}" if isinstance(r[k], float) else "–" for k in METRICS) + " |")
  for arm, groups in details.items():
    lines += ["", f"{arm}, by leaf group:", "", "| leaves of | leaves | bitwise equal | max abs diff |",
              "|---|---|---|---|"]
    lines += [f"| {g['leaves_of']} | {g['leaves']} | {g['bitwise_equal']} | {g['max_abs_diff']:.3g} |" for g in groups]
  table = "\n".join(lines)
  print(table)
  if args.out:
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(record, indent=2))
    args.out.with_suffix(".md").write_text(f"`{record['command']}`\n\n{table}\n")


if __name__ == "__main__":
  main()
