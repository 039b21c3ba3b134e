"""Sweep speed: wall time of training M members as a sweep against M separate runs (M = 1, 8, 32).

Usage:  python benchmarks/sweep_speed.py [--quick] [--members 1,8,32] [--steps N] [--memory-budget GB]
                                        [--out benchmarks/results/sweep_speed]

For SuperSimpleNet and EfficientAD (skipped with a message while `efficient_ad` is not in
jaxad.models), on random weights and random images (speed does not depend on their values):
- sweep: the M members trained as `jaxad sweep` trains one static point — chunks of the
  largest M that fits the device (jaxad.sweep.memory; one chunk on a CPU without
  --memory-budget), each chunk one `loop.fit` of the stacked members (vmapped step, shared
  frozen features, final checkpoint);
- separate: M runs of one member each (`loop.fit` with M = 1, as M `jaxad fit` calls would train).
Both arms are timed warm: every program shape is compiled by a first, untimed run (its wall
time is reported as `first_run_s`); the memory estimate's compilations are not timed either.
Evaluation is not included. Ratios: sweep / separate (below 1: the sweep saves time) and sweep
/ one run (the GPU goal: 32 members in under 4× one model). `--quick`: tiny backbone and
images, few steps (a CPU smoke setting). Writes <out>[_quick].json and .md with device,
versions and settings.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from jaxad import provenance
from jaxad.models import available, get_method
from jaxad.sweep import memory, plan as plan_lib
from jaxad.train import loop
from jaxad.train.state import stack_members


def settings(name: str, quick: bool):
  """(static overrides, number of train images, swept Hparams field and its base value)."""
  if name == "supersimplenet":
    if quick:
      return dict(backbone="tiny_test", backbone_weights="random", image_size=(64, 64), batch_size=8, seg_hidden=32,
                  cls_hidden=8), 32, ("noise_std", 0.015)
    return dict(backbone_weights="random"), 64, ("noise_std", 0.015)  # paper: WideResNet-50-2, 256², batch 32
  if name == "efficient_ad":
    if quick:
      return dict(image_size=(64, 64), out_channels=16, teacher="random", penalty="none"), 16, ("lr", 1e-4)
    return dict(teacher="random"), 64, ("lr", 1e-4)  # paper: PDN-S, 256², batch 1, penalty images
  raise ValueError(name)


def members(method, static, n: int, field: str, base: float) -> list:
  hp = method.default_hparams(static)
  return [dataclasses.replace(hp, seed=i, **{field: base * (1 + 0.1 * (i % 4))}) for i in range(n)]


def train(method, static, hps: list, data, frozen, steps: int) -> float:
  """Wall seconds of one `loop.fit` of the stacked `hps` (fresh work directory)."""
  with tempfile.TemporaryDirectory() as workdir:
    t0 = time.perf_counter()
    states = loop.fit(method, static, stack_members(hps), data, workdir, max_steps=steps, chunk=steps,
                      ckpt_every=steps, progress=False, frozen=frozen)
    jax.block_until_ready(states)
    return time.perf_counter() - t0


def bench_method(name: str, quick: bool, sizes: list[int], steps: int, budget_bytes: int | None, log,
                 separate_runs: int | None = None, on_row=lambda row: None) -> list[dict]:
  """Rows for M in `sizes`; `on_row` sees each as it is measured, `log` each phase (a run cut short keeps them)."""
  method = get_method(name)
  overrides, n_train, (field, base) = settings(name, quick)
  static = method.resolve(dataclasses.replace(method.static_cls(), **overrides))
  h, w = static.image_size
  rng = np.random.default_rng(0)
  data = loop.SplitData(image=rng.normal(size=(n_train, h, w, 3)).astype(np.float32),
                        mask=np.zeros((n_train, h, w), np.float32), label=np.zeros(n_train, np.int32),
                        is_segmented=np.ones(n_train, bool))
  frozen = method.make_frozen(static)
  budget = memory.device_budget(jax.local_devices()[0], budget_bytes)
  one = members(method, static, 1, field, base)
  compile_one = train(method, static, one, data, frozen, steps)  # compiles M = 1
  one_run = train(method, static, one, data, frozen, steps)
  log(f"{name}: one run {one_run:.2f} s warm ({compile_one:.1f} s with compilation)")
  rows = []
  for m in sizes:
    hps = members(method, static, m, field, base)
    per_chunk, est = m, None
    t0 = time.perf_counter()
    if budget is not None and m > 1:
      est = memory.estimate(method, static, hps[0], data, frozen, data_seed=0, steps_per_call=steps,
                            eval_batch_size=16, budget=budget, members_needed=m)
      per_chunk = est.members_per_device()
    slots, _, n_chunks = plan_lib.chunking(m, per_chunk, 1)
    chunks = [plan_lib.padded(hps[k * slots:(k + 1) * slots], slots) for k in range(n_chunks)]
    log(f"{name} M={m}: memory estimate {time.perf_counter() - t0:.1f} s, {n_chunks} chunk(s) of {slots}")
    first = train(method, static, chunks[0], data, frozen, steps)  # compiles this chunk shape
    log(f"{name} M={m}: first (compiling) run of a chunk {first:.1f} s")
    sweep = sum(train(method, static, c, data, frozen, steps) for c in chunks)
    timed = hps[:separate_runs] if separate_runs else hps  # every separate run costs the same: a sample may stand in
    separate = sum(train(method, static, [hp], data, frozen, steps) for hp in timed) * m / len(timed)
    row = {"method": name, "members": m, "chunks": n_chunks, "members_per_chunk": slots, "steps": steps,
           "sweep_s": sweep, "separate_s": separate, "separate_runs_timed": len(timed), "one_run_s": one_run,
           "sweep_vs_separate": sweep / separate,
           "sweep_vs_one_run": sweep / one_run, "first_run_s": first,
           "memory": est.record() if est is not None else None}
    log(f"{name} M={m}: sweep {sweep:.2f} s ({n_chunks} chunk(s) of {slots}), {m} separate runs {separate:.2f} s, "
        f"ratio {sweep / separate:.3f}; sweep / one run {sweep / one_run:.2f}")
    rows.append(row)
    on_row(row)
  return rows


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  parser.add_argument("--quick", action="store_true", help="tiny backbone and images (CPU smoke setting)")
  parser.add_argument("--members", default="1,8,32", help="sweep sizes M")
  parser.add_argument("--separate-runs", type=int, default=None,
                      help="time this many of the M separate runs and scale to M (default: all M)")
  parser.add_argument("--methods", default="supersimplenet,efficient_ad", help="comma-separated methods to time")
  parser.add_argument("--steps", type=int, default=None, help="train steps per run (default 10 quick, 200 full)")
  parser.add_argument("--memory-budget", type=float, default=None, metavar="GB",
                      help="memory per device for chunking (default: the device's free memory; none on CPU)")
  parser.add_argument("--out", default="benchmarks/results/sweep_speed")
  args = parser.parse_args()
  sizes = [int(m) for m in args.members.split(",")]
  steps = args.steps or (10 if args.quick else 200)
  budget = None if args.memory_budget is None else int(args.memory_budget * 2**30)
  rows, skipped = [], []
  out = Path(args.out + ("_quick" if args.quick else ""))

  def write() -> None:
    write_results(out, args.quick, steps, skipped, rows)

  for name in args.methods.split(","):
    if name not in available():
      skipped.append(name)
      print(f"skipping {name}: not registered in jaxad.models (available: {', '.join(available())})")
      continue
    bench_method(name, args.quick, sizes, steps, budget, lambda m: print(m, flush=True), args.separate_runs,
                 on_row=lambda row: (rows.append(row), write()))
  print(write_results(out, args.quick, steps, skipped, rows))


def write_results(out: Path, quick: bool, steps: int, skipped: list[str], rows: list[dict]) -> str:
  """Writes <out>.json and .md (after every row); returns the Markdown."""
  prov = provenance.collect()
  record = {"benchmark": "sweep_speed", "quick": quick, "steps": steps, "skipped": skipped,
            "settings": {name: settings(name, quick)[0] for name in ("supersimplenet", "efficient_ad")},
            "provenance": prov, "rows": rows}
  out.parent.mkdir(parents=True, exist_ok=True)
  out.with_suffix(".json").write_text(json.dumps(record, indent=2, default=str))
  cols = ["method", "members", "chunks", "members_per_chunk", "steps", "sweep_s", "separate_s", "one_run_s",
          "sweep_vs_separate", "sweep_vs_one_run", "first_run_s"]
  lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
  for r in rows:
    lines.append("| " + " | ".join(f"{r[c]:.3g}" if isinstance(r[c], float) else str(r[c]) for c in cols) + " |")
  header = (f"device: {prov['device_kind']} ({len(prov['devices'])} device(s)), jax {prov['versions']['jax']}, "
            f"jaxad {prov['git']['commit']}{' (dirty)' if prov['git']['dirty'] else ''}; "
            f"{'quick' if quick else 'paper'} settings, {steps} steps per run; training only (no evaluation)")
  table = header + "\n\n" + "\n".join(lines) + "\n"
  out.with_suffix(".md").write_text(table)
  return table


if __name__ == "__main__":
  main()
